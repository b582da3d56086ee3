//! Actix shell around [`Proposer`]: deliveries and a periodic tick in,
//! messages out.

use crate::Proposer;
use actix::prelude::*;
use std::time::Duration;
use synod_transport::{Deliver, Outbound, Router};
use synod_types::{Ballot, NodeId, ProposerMsg};

pub struct ProposerActor {
    logic: Proposer,
    router: Addr<Router>,
    tick: Duration,
}

/// Who leads, as far as this proposer knows.
#[derive(Message)]
#[rtype(result = "ProposerStatus")]
pub struct GetProposerStatus;

#[derive(Debug, Clone, MessageResponse)]
pub struct ProposerStatus {
    pub is_leader: bool,
    pub leader: Option<NodeId>,
    pub ballot: Ballot,
}

impl ProposerActor {
    pub fn new(logic: Proposer, router: Addr<Router>, tick: Duration) -> Self {
        ProposerActor {
            logic,
            router,
            tick,
        }
    }

    fn execute(&self, out: crate::Output) {
        for (to, msg) in out.send {
            self.router.do_send(Outbound { to, msg });
        }
    }
}

impl Actor for ProposerActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick, |act, _| {
            let out = act.logic.tick();
            act.execute(out);
        });
    }
}

impl Handler<Deliver<ProposerMsg>> for ProposerActor {
    type Result = ();
    fn handle(&mut self, d: Deliver<ProposerMsg>, _: &mut Context<Self>) {
        let out = self.logic.handle(d.from, d.msg);
        self.execute(out);
    }
}

impl Handler<GetProposerStatus> for ProposerActor {
    type Result = ProposerStatus;
    fn handle(&mut self, _: GetProposerStatus, _: &mut Context<Self>) -> ProposerStatus {
        ProposerStatus {
            is_leader: self.logic.is_leader(),
            leader: self.logic.leader().cloned(),
            ballot: self.logic.ballot().clone(),
        }
    }
}
