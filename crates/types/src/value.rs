use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies one client session across the whole cluster. The front end that
/// accepts a client connection draws it at random (64 bits), so a restarted
/// node cannot reuse an id still remembered in the replicas' session table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct ClientId(pub u64);

/// One client request as it travels through the log. `op` is the state
/// machine's own encoding of its command: the consensus roles never look
/// inside it, which is what lets another state machine be plugged in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Command {
    pub client: ClientId,
    /// Request number within the client session, starting at 1. Replicas apply
    /// a `(client, seq)` pair at most once, however often it was proposed.
    pub seq: u64,
    pub op: Bytes,
}

/// What a slot of the log holds once chosen.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Value {
    /// Filler a new leader proposes for a slot phase 1 found empty, so later
    /// slots are not blocked behind a hole.
    Noop,
    /// Commands the leader batched into one slot, applied in this order.
    Batch(Vec<Command>),
}

impl Value {
    pub fn commands(&self) -> &[Command] {
        match self {
            Value::Noop => &[],
            Value::Batch(cmds) => cmds,
        }
    }

    /// Approximate wire size, used to bound batches by bytes.
    pub fn approx_size(&self) -> usize {
        self.commands()
            .iter()
            .map(|c| c.op.len() + 24)
            .sum::<usize>()
            + 8
    }
}
