//! A disk that fails under a running acceptor stops the node (exit code 70)
//! and nothing that depended on the failed write is ever sent.

use actix::prelude::*;
use std::sync::{Arc, Mutex};
use synod_acceptor::actor::{AcceptorActor, EXIT_STORAGE_FAILURE};
use synod_acceptor::Acceptor;
use synod_storage::{AcceptorState, AcceptorStorage, Record, StorageError};
use synod_transport::{Deliver, LocalRoles, Register, Router, TransportConfig};
use synod_types::{AcceptorMsg, Ballot, NodeId, ProposerMsg, Value};

/// A disk that is full: appends land in a buffer, sync fails.
struct FullDisk;

impl AcceptorStorage for FullDisk {
    fn load(&mut self) -> Result<AcceptorState, StorageError> {
        Ok(AcceptorState::default())
    }
    fn append(&mut self, _: &[Record]) -> Result<(), StorageError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        Err(StorageError::Io {
            path: "acceptor.log".into(),
            source: std::io::Error::from_raw_os_error(28), // ENOSPC
        })
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
            Acceptor::new(vec![], AcceptorState::default()),
            Box::new(FullDisk),
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
