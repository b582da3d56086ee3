//! The acceptor actor must not let a p1b/p2b leave before the records behind
//! it are synced, and one sync should cover accepts that queued meanwhile.

use actix::prelude::*;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_acceptor::actor::AcceptorActor;
use synod_acceptor::Acceptor;
use synod_storage::{AcceptorState, AcceptorStorage, Record, StorageError};
use synod_transport::{Deliver, LocalRoles, Register, Router, TransportConfig};
use synod_types::{AcceptorMsg, Ballot, NodeId, ProposerMsg, Value};

/// Storage whose `sync` blocks until the test allows it, and counts syncs.
struct Gated {
    gate: mpsc::Receiver<()>,
    syncs: Arc<Mutex<usize>>,
}

impl AcceptorStorage for Gated {
    fn load(&mut self) -> Result<AcceptorState, StorageError> {
        Ok(AcceptorState::default())
    }
    fn append(&mut self, _: &[Record]) -> Result<(), StorageError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        let _ = self.gate.recv();
        *self.syncs.lock().unwrap() += 1;
        Ok(())
    }
    fn rewrite(&mut self, _: &AcceptorState) -> Result<(), StorageError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        0
    }
}

struct Proposer(Arc<Mutex<Vec<ProposerMsg>>>);
impl Actor for Proposer {
    type Context = Context<Self>;
}
impl Handler<Deliver<ProposerMsg>> for Proposer {
    type Result = ();
    fn handle(&mut self, d: Deliver<ProposerMsg>, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(d.msg);
    }
}

#[actix_rt::test]
async fn replies_wait_for_sync_and_share_it() {
    let me = NodeId::new("n1");
    let router = Router::start(TransportConfig::new("t", me.clone())).unwrap();
    let (open, gate) = mpsc::channel();
    let syncs = Arc::new(Mutex::new(0));
    let storage = Gated {
        gate,
        syncs: syncs.clone(),
    };
    let acceptor = AcceptorActor::new(
        me.clone(),
        Acceptor::new(vec![], AcceptorState::default()),
        Box::new(storage),
        router.clone(),
    )
    .start();
    let seen = Arc::new(Mutex::new(Vec::new()));
    router.do_send(Register(LocalRoles {
        acceptor: Some(acceptor.clone().recipient()),
        proposer: Some(Proposer(seen.clone()).start().recipient()),
        ..Default::default()
    }));
    let ballot = Ballot::new(1, me.clone());
    for slot in 0..10 {
        acceptor.do_send(Deliver {
            from: me.clone(),
            msg: AcceptorMsg::Accept {
                ballot: ballot.clone(),
                slot,
                value: Value::Noop,
            },
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "a p2b left before its fsync"
    );

    // Let syncs through: all ten replies arrive, in far fewer than ten syncs
    // (the first sync covers slot 0, the next one everything queued behind it).
    for _ in 0..10 {
        let _ = open.send(());
    }
    for _ in 0..100 {
        if seen.lock().unwrap().len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let slots: Vec<u64> = seen
        .iter()
        .map(|m| match m {
            ProposerMsg::Accepted { slot, .. } => *slot,
            m => panic!("unexpected {m:?}"),
        })
        .collect();
    assert_eq!(slots, (0..10).collect::<Vec<_>>(), "replies in order");
    let n = *syncs.lock().unwrap();
    assert!(n <= 2, "group commit: {n} syncs for 10 accepts");
}
