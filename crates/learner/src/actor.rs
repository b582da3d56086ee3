//! Actix shell around [`Learner`], plus observer subscriptions: any local
//! actor can subscribe to [`Decided`] and receive each slot as it is chosen
//! (in the order slots are chosen, which is not always slot order).

use crate::Learner;
use actix::prelude::*;
use std::time::Duration;
use synod_transport::{Deliver, Outbound, Router};
use synod_types::{LearnerMsg, Slot, Value};

/// A slot was chosen.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Decided {
    pub slot: Slot,
    pub value: Value,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<Decided>);

pub struct LearnerActor {
    logic: Learner,
    router: Addr<Router>,
    tick: Duration,
    observers: Vec<Recipient<Decided>>,
}

impl LearnerActor {
    pub fn new(logic: Learner, router: Addr<Router>, tick: Duration) -> Self {
        LearnerActor {
            logic,
            router,
            tick,
            observers: Vec::new(),
        }
    }

    fn execute(&mut self, out: crate::Output) {
        for (to, msg) in out.send {
            self.router.do_send(Outbound { to, msg });
        }
        for (slot, value) in out.decided {
            for o in &self.observers {
                o.do_send(Decided {
                    slot,
                    value: value.clone(),
                });
            }
        }
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick, |act, _| {
            let out = act.logic.tick();
            act.execute(out);
        });
    }
}

impl Handler<Deliver<LearnerMsg>> for LearnerActor {
    type Result = ();
    fn handle(&mut self, d: Deliver<LearnerMsg>, _: &mut Context<Self>) {
        let out = self.logic.handle(d.from, d.msg);
        self.execute(out);
    }
}

impl Handler<Subscribe> for LearnerActor {
    type Result = ();
    fn handle(&mut self, Subscribe(r): Subscribe, _: &mut Context<Self>) {
        self.observers.push(r);
    }
}
