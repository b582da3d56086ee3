//! How a user crate extends a Synod node without editing the role crates:
//!
//! - [`Counter`] is a custom deterministic [`StateMachine`] (a running sum)
//!   that replaces the KV store;
//! - [`DecisionLog`] is a custom actor that subscribes to the node's learner
//!   and sees every decided slot;
//! - [`start_node`] puts both into a node through [`NodeBuilder`] and returns
//!   the node's context, whose replica handle takes client commands.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use synod_learner::actor::{Decided, Subscribe};
use synod_node::{ClusterConfig, NodeBuilder, NodeContext, NodeError};
use synod_replica::actor::{ClientReply, ClientRequest};
use synod_types::{ClientId, Slot, StateMachine};
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Counter {
    total: i64,
}

#[derive(Serialize, Deserialize)]
pub enum CounterOp {
    Add(i64),
    Read,
}

impl StateMachine for Counter {
    type Command = CounterOp;
    type Output = i64;
    fn apply(&mut self, op: CounterOp) -> i64 {
        if let CounterOp::Add(n) = op {
            self.total = self.total.wrapping_add(n);
        }
        self.total
    }
    fn digest(&self) -> u64 {
        self.total as u64
    }
    fn snapshot(&self) -> Vec<u8> {
        self.total.to_le_bytes().to_vec()
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| "counter snapshot must be 8 bytes")?;
        self.total = i64::from_le_bytes(b);
        Ok(())
    }
}

/// Observer: records `(slot, number of commands)` for every decided slot.
pub struct DecisionLog {
    pub seen: Arc<Mutex<Vec<(Slot, usize)>>>,
}

impl Actor for DecisionLog {
    type Context = Context<Self>;
}

impl Handler<Decided> for DecisionLog {
    type Result = ();
    fn handle(&mut self, d: Decided, _: &mut Context<Self>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((d.slot, d.value.commands().len()));
        }
    }
}

/// Starts node `id` with the counter state machine and a decision log.
pub fn start_node(
    cfg: ClusterConfig,
    id: &str,
    seen: Arc<Mutex<Vec<(Slot, usize)>>>,
) -> Result<NodeContext, NodeError> {
    // The example's nodes start from fresh directories; a deployment runs
    // `synod init` once per node instead (see `synod_node::init`).
    NodeBuilder::new(cfg, id, Counter::default())
        .create_if_missing(true)
        .with_extension(move |ctx| {
            if let Some(learner) = &ctx.learner {
                let log = DecisionLog { seen }.start();
                learner.do_send(Subscribe(log.recipient()));
            }
            Ok(())
        })
        .start()
}

/// Submits one command through a node's replica and waits for its output.
pub async fn submit(
    ctx: &NodeContext,
    client: ClientId,
    seq: u64,
    op: CounterOp,
) -> Result<i64, String> {
    let replica = ctx.replica.as_ref().ok_or("node runs no replica")?;
    let bytes = synod_codec::encode(&op).map_err(|e| e.to_string())?;
    let (tx, rx) = oneshot::channel();
    replica.request.do_send(ClientRequest {
        client,
        seq,
        op: bytes.into(),
        reply: tx,
    });
    match rx.await.map_err(|e| e.to_string())? {
        ClientReply::Output(b) => synod_codec::decode(&b).map_err(|e| e.to_string()),
        ClientReply::Failed(e) => Err(e),
    }
}
