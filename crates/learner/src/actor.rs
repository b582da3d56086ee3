//! Actix shell around [`Learner`], plus observer subscriptions: any local
//! actor can subscribe to [`Decided`] and receive each slot as it is chosen
//! (in the order slots are chosen, which is not always slot order).

use crate::Learner;
use actix::prelude::*;
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
    observers: Vec<Recipient<Decided>>,
}

impl LearnerActor {
    pub fn new(logic: Learner, router: Addr<Router>) -> Self {
        LearnerActor {
            logic,
            router,
            observers: Vec::new(),
        }
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;
}

impl Handler<Deliver<LearnerMsg>> for LearnerActor {
    type Result = ();
    fn handle(&mut self, d: Deliver<LearnerMsg>, _: &mut Context<Self>) {
        let out = self.logic.handle(d.from, d.msg);
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

impl Handler<Subscribe> for LearnerActor {
    type Result = ();
    fn handle(&mut self, Subscribe(r): Subscribe, _: &mut Context<Self>) {
        self.observers.push(r);
    }
}
