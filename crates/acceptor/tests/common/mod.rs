//! Test doubles shared by the acceptor actor tests.

use actix::prelude::*;
use std::sync::{Arc, Mutex};
use synod_storage::{AcceptorState, AcceptorStorage, Record, StorageError};
use synod_transport::Deliver;
use synod_types::ProposerMsg;

/// Storage that keeps nothing; `sync` runs the test's closure, which decides
/// when (and whether) a sync succeeds.
pub struct TestDisk<F>(pub F);

impl<F: FnMut() -> Result<(), StorageError> + Send> AcceptorStorage for TestDisk<F> {
    fn load(&mut self) -> Result<AcceptorState, StorageError> {
        Ok(AcceptorState::default())
    }
    fn append(&mut self, _: &[Record]) -> Result<(), StorageError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        (self.0)()
    }
    fn rewrite(&mut self, _: &AcceptorState) -> Result<(), StorageError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        0
    }
}

/// Stands in for the proposer: records every p1b/p2b that reaches it.
pub struct Proposer(pub Arc<Mutex<Vec<ProposerMsg>>>);

impl Actor for Proposer {
    type Context = Context<Self>;
}

impl Handler<Deliver<ProposerMsg>> for Proposer {
    type Result = ();
    fn handle(&mut self, d: Deliver<ProposerMsg>, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(d.msg);
    }
}
