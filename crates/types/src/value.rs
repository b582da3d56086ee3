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
            .map(Command::approx_size)
            .sum::<usize>()
            + 8
    }
}

impl Command {
    /// Approximate wire size, used to bound messages by bytes.
    pub fn approx_size(&self) -> usize {
        self.op.len() + 24
    }
}

/// Soft cap on what one message gathers from many slots or commands
/// (catch-up decisions, repair answers, retried proposals). Such a message
/// stops growing once it holds this many bytes, but always holds at least
/// one item, so it stays within this budget plus its largest item; the node
/// checks at startup that this fits in a peer frame. Without the cap, 256
/// slots of 1 MiB batches would make a frame no peer accepts, dropped at
/// the sender on every retry.
pub const MESSAGE_BUDGET: usize = 4 << 20;

/// How many of `sizes`, from the front, one message takes under `budget`
/// (normally [`MESSAGE_BUDGET`]): at least one if there is any.
pub fn fits_in_budget(sizes: impl IntoIterator<Item = usize>, budget: usize) -> usize {
    let mut total = 0usize;
    let mut n = 0;
    for size in sizes {
        if n > 0 && total.saturating_add(size) > budget {
            break;
        }
        total = total.saturating_add(size);
        n += 1;
    }
    n
}

/// `commands` as one or more runs, each small enough for one message.
pub fn chunk_commands(mut commands: Vec<Command>, budget: usize) -> Vec<Vec<Command>> {
    let mut runs = Vec::new();
    while !commands.is_empty() {
        let n = fits_in_budget(commands.iter().map(Command::approx_size), budget);
        let rest = commands.split_off(n);
        runs.push(std::mem::replace(&mut commands, rest));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(bytes: usize) -> Command {
        Command {
            client: ClientId(1),
            seq: 1,
            op: vec![0; bytes].into(),
        }
    }

    #[test]
    fn commands_are_chunked_by_the_budget_and_none_is_lost() {
        let mib = 1 << 20;
        let sizes = [3 * mib, 3 * mib, 10, 10, 9 * mib, 1];
        let runs = chunk_commands(sizes.iter().map(|s| cmd(*s)).collect(), MESSAGE_BUDGET);
        let lens: Vec<Vec<usize>> = runs
            .iter()
            .map(|r| r.iter().map(|c| c.op.len()).collect())
            .collect();
        // An item over the budget travels alone; nothing is dropped or reordered.
        assert_eq!(
            lens,
            vec![vec![3 * mib], vec![3 * mib, 10, 10], vec![9 * mib], vec![1]]
        );
        assert!(chunk_commands(Vec::new(), MESSAGE_BUDGET).is_empty());
        assert_eq!(fits_in_budget([], MESSAGE_BUDGET), 0);
        // A budget of 1 byte: one item per message.
        assert_eq!(chunk_commands(vec![cmd(1), cmd(2)], 1).len(), 2);
    }
}
