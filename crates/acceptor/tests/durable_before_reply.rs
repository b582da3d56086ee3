//! The acceptor actor must not let a p1b/p2b leave before the records behind
//! it are synced, and one sync should cover accepts that queued meanwhile.

use actix::prelude::*;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_acceptor::actor::AcceptorActor;
use synod_acceptor::Acceptor;
use synod_storage::AcceptorState;
use synod_transport::{Deliver, LocalRoles, Register, Router, TransportConfig};

mod common;
use common::{Proposer, TestDisk};
use synod_types::{AcceptorMsg, Ballot, NodeId, ProposerMsg, Value};

#[actix_rt::test]
async fn replies_wait_for_sync_and_share_it() {
    let me = NodeId::new("n1");
    let router = Router::start(TransportConfig::new("t", me.clone())).unwrap();
    let (open, gate) = mpsc::channel();
    let syncs = Arc::new(Mutex::new(0));
    // `sync` blocks until the test lets it through, and counts.
    let counted = syncs.clone();
    let storage = TestDisk(move || {
        let _ = gate.recv();
        *counted.lock().unwrap() += 1;
        Ok(())
    });
    let acceptor = AcceptorActor::new(
        me.clone(),
        Acceptor::new(NodeId::new("a1"), vec![], AcceptorState::default()),
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
