//! A disk that fails under a running acceptor stops the node (exit code 70)
//! and nothing that depended on the failed write is ever sent.

use actix::prelude::*;
use std::sync::{Arc, Mutex};
use synod_acceptor::actor::{AcceptorActor, EXIT_STORAGE_FAILURE};
use synod_acceptor::Acceptor;
use synod_storage::{AcceptorState, StorageError};
use synod_transport::{Deliver, LocalRoles, Register, Router, TransportConfig};

mod common;
use common::{Proposer, TestDisk};
use synod_types::{AcceptorMsg, Ballot, NodeId, Value};

#[test]
fn failed_sync_stops_the_node_without_acknowledging() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sys = System::new();
    let seen2 = seen.clone();
    sys.block_on(async move {
        let me = NodeId::new("n1");
        let router = Router::start(TransportConfig::new("t", me.clone())).unwrap();
        let acceptor = AcceptorActor::new(
            me.clone(),
            Acceptor::new(NodeId::new("a1"), vec![], AcceptorState::default()),
            // A full disk: appends land in a buffer, every sync fails.
            Box::new(TestDisk(|| {
                Err(StorageError::Io {
                    path: "acceptor.log".into(),
                    source: std::io::Error::from_raw_os_error(28), // ENOSPC
                })
            })),
            router.clone(),
        )
        .start();
        router.do_send(Register(LocalRoles {
            acceptor: Some(acceptor.clone().recipient()),
            proposer: Some(Proposer(seen2).start().recipient()),
            ..Default::default()
        }));
        acceptor.do_send(Deliver {
            from: me.clone(),
            msg: AcceptorMsg::Accept {
                ballot: Ballot::new(1, me),
                slot: 0,
                value: Value::Noop,
            },
        });
    });
    let code = sys.run_with_code().unwrap();
    assert_eq!(code, EXIT_STORAGE_FAILURE);
    assert!(
        seen.lock().unwrap().is_empty(),
        "a p2b left although its write failed"
    );
}
