//! Compact, human-readable renderings for the `--verbose` trace, and the
//! running hash that the determinism test compares.

use synod_types::{AcceptorMsg, Command, LearnerMsg, Message, ProposerMsg, ReplicaMsg, Value};

fn command(c: &Command) -> String {
    match synod_codec::decode::<crate::machine::RegOp>(&c.op) {
        Ok(op) => format!("{:x}/{}:{op:?}", c.client.0 & 0xffff, c.seq),
        Err(_) => format!("{:x}/{}:<{} bytes>", c.client.0 & 0xffff, c.seq, c.op.len()),
    }
}

/// `Noop` or `[client/seq:op, ...]`, with client ids shortened to 16 bits.
pub fn value(v: &Value) -> String {
    match v {
        Value::Noop => "Noop".to_string(),
        Value::Batch(cmds) => {
            let parts: Vec<String> = cmds.iter().map(command).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

pub fn message(m: &Message) -> String {
    match m {
        Message::Acceptor(AcceptorMsg::Prepare { ballot, from_slot }) => {
            format!("Prepare {ballot:?} from_slot={from_slot}")
        }
        Message::Acceptor(AcceptorMsg::Accept {
            ballot,
            slot,
            value: v,
        }) => {
            format!("Accept {ballot:?} slot={slot} {}", value(v))
        }
        Message::Proposer(ProposerMsg::Promise {
            ballot,
            accepted,
            compacted_below,
            chosen_below,
            from_slot,
            more_from,
        }) => {
            let parts: Vec<String> = accepted
                .iter()
                .map(|e| format!("{}@{:?}={}", e.slot, e.ballot, value(&e.value)))
                .collect();
            let to = more_from.map_or("end".to_string(), |s| s.to_string());
            format!(
                "Promise {ballot:?} slots {from_slot}..{to} compacted_below={compacted_below} \
                 chosen_below={chosen_below} accepted=[{}]",
                parts.join(", ")
            )
        }
        Message::Proposer(ProposerMsg::Accepted { ballot, slot }) => {
            format!("Accepted {ballot:?} slot={slot}")
        }
        Message::Proposer(ProposerMsg::Preempted { ballot, promised }) => {
            format!("Preempted {ballot:?} promised={promised:?}")
        }
        Message::Proposer(ProposerMsg::Propose { commands }) => {
            let parts: Vec<String> = commands.iter().map(command).collect();
            format!("Propose [{}]", parts.join(", "))
        }
        Message::Proposer(ProposerMsg::Heartbeat {
            ballot,
            first_unchosen,
        }) => {
            format!("Heartbeat {ballot:?} first_unchosen={first_unchosen}")
        }
        Message::Proposer(ProposerMsg::Chosen {
            slot,
            learned_below,
        }) => format!("Chosen slot={slot} learned_below={learned_below}"),
        Message::Acceptor(AcceptorMsg::Heartbeat {
            ballot,
            first_unchosen,
        }) => {
            format!("Heartbeat→acceptor {ballot:?} first_unchosen={first_unchosen}")
        }
        Message::Acceptor(AcceptorMsg::PreVote { ballot }) => format!("PreVote {ballot:?}"),
        Message::Proposer(ProposerMsg::PreVoteGranted { ballot }) => {
            format!("PreVoteGranted {ballot:?}")
        }
        Message::Proposer(ProposerMsg::HeartbeatAck { ballot }) => {
            format!("HeartbeatAck {ballot:?}")
        }
        Message::Proposer(ProposerMsg::Compacted { below }) => format!("Compacted below={below}"),
        Message::Learner(LearnerMsg::Accepted {
            ballot,
            slot,
            value: v,
        }) => match v {
            Some(v) => format!("Accepted→learner {ballot:?} slot={slot} {}", value(v)),
            None => format!("Accepted→learner {ballot:?} slot={slot} (vote only)"),
        },
        Message::Learner(LearnerMsg::Proposed {
            ballot,
            slot,
            value: v,
        }) => format!("Proposed {ballot:?} slot={slot} {}", value(v)),
        Message::Learner(LearnerMsg::CatchUp { from_slot }) => {
            format!("CatchUp from_slot={from_slot}")
        }
        Message::Learner(LearnerMsg::Progress { first_unchosen }) => {
            format!("Progress first_unchosen={first_unchosen}")
        }
        Message::Acceptor(AcceptorMsg::Fetch {
            from_slot,
            to_slot,
            round,
        }) => format!("Fetch slots {from_slot}..{to_slot} round={round}"),
        Message::Acceptor(AcceptorMsg::Compact { below }) => format!("Compact below={below}"),
        Message::Learner(LearnerMsg::Compact { below }) => format!("Compact below={below}"),
        Message::Proposer(ProposerMsg::SnapshotTaken { slot }) => {
            format!("SnapshotTaken slot={slot}")
        }
        Message::Replica(ReplicaMsg::Compacted { below }) => format!("Compacted below={below}"),
        Message::Replica(ReplicaMsg::SnapshotRequest { slot, offset }) => {
            format!("SnapshotRequest slot={slot} offset={offset}")
        }
        Message::Replica(ReplicaMsg::SnapshotChunk {
            slot,
            offset,
            total,
            data,
        }) => format!(
            "SnapshotChunk slot={slot} bytes {offset}..{} of {total}",
            offset + data.len() as u64
        ),
        Message::Learner(LearnerMsg::Fetched {
            from_slot,
            to_slot,
            round,
            entries,
            ..
        }) => {
            let parts: Vec<String> = entries
                .iter()
                .map(|e| format!("{}@{:?}={}", e.slot, e.ballot, value(&e.value)))
                .collect();
            format!(
                "Fetched {from_slot}..{to_slot} round={round} [{}]",
                parts.join(", ")
            )
        }
        Message::Replica(ReplicaMsg::Decide {
            slot,
            ballot,
            value: v,
        }) => {
            format!("Decide slot={slot} {ballot:?} {}", value(v))
        }
        Message::Acceptor(AcceptorMsg::Confirm { ballot, round }) => {
            format!("Confirm {ballot:?} round={round}")
        }
        Message::Proposer(ProposerMsg::Confirmed { ballot, round }) => {
            format!("Confirmed {ballot:?} round={round}")
        }
        Message::Proposer(ProposerMsg::ReadIndex { ids }) => format!("ReadIndex reads={ids:?}"),
        Message::Replica(ReplicaMsg::ReadIndex { ids, index }) => {
            format!("ReadIndex reads={ids:?} index={index}")
        }
        Message::Replica(ReplicaMsg::NotLeader { ids, leader }) => {
            format!("NotLeader reads={ids:?} leader={leader:?}")
        }
        Message::Replica(ReplicaMsg::Decisions { entries, more }) => {
            let first = entries.first().map_or(0, |e| e.0);
            let last = entries.last().map_or(0, |e| e.0);
            format!(
                "Decisions slots {first}..={last} ({} entries) more={more}",
                entries.len()
            )
        }
    }
}

/// The message's variant name, for counting.
pub fn kind(m: &Message) -> &'static str {
    match m {
        Message::Acceptor(AcceptorMsg::Prepare { .. }) => "Prepare",
        Message::Acceptor(AcceptorMsg::Accept { .. }) => "Accept",
        Message::Proposer(ProposerMsg::Promise { .. }) => "Promise",
        Message::Proposer(ProposerMsg::Accepted { .. }) => "Accepted",
        Message::Proposer(ProposerMsg::Preempted { .. }) => "Preempted",
        Message::Proposer(ProposerMsg::Propose { .. }) => "Propose",
        Message::Proposer(ProposerMsg::Heartbeat { .. }) => "Heartbeat",
        Message::Proposer(ProposerMsg::Chosen { .. }) => "Chosen",
        Message::Acceptor(AcceptorMsg::Heartbeat { .. }) => "Heartbeat→acceptor",
        Message::Acceptor(AcceptorMsg::PreVote { .. }) => "PreVote",
        Message::Proposer(ProposerMsg::PreVoteGranted { .. }) => "PreVoteGranted",
        Message::Proposer(ProposerMsg::HeartbeatAck { .. }) => "HeartbeatAck",
        Message::Proposer(ProposerMsg::Compacted { .. }) => "Compacted",
        Message::Learner(LearnerMsg::Accepted { .. }) => "Accepted→learner",
        Message::Learner(LearnerMsg::CatchUp { .. }) => "CatchUp",
        Message::Learner(LearnerMsg::Progress { .. }) => "Progress",
        Message::Acceptor(AcceptorMsg::Fetch { .. }) => "Fetch",
        Message::Acceptor(AcceptorMsg::Compact { .. }) => "Compact→acceptor",
        Message::Learner(LearnerMsg::Compact { .. }) => "Compact→learner",
        Message::Proposer(ProposerMsg::SnapshotTaken { .. }) => "SnapshotTaken",
        Message::Replica(ReplicaMsg::Compacted { .. }) => "Compacted",
        Message::Acceptor(AcceptorMsg::Confirm { .. }) => "Confirm",
        Message::Learner(LearnerMsg::Proposed { .. }) => "Proposed",
        Message::Proposer(ProposerMsg::Confirmed { .. }) => "Confirmed",
        Message::Proposer(ProposerMsg::ReadIndex { .. }) => "ReadIndex",
        Message::Replica(ReplicaMsg::ReadIndex { .. }) => "ReadIndex→replica",
        Message::Replica(ReplicaMsg::NotLeader { .. }) => "NotLeader",
        Message::Replica(ReplicaMsg::SnapshotRequest { .. }) => "SnapshotRequest",
        Message::Replica(ReplicaMsg::SnapshotChunk { .. }) => "SnapshotChunk",
        Message::Learner(LearnerMsg::Fetched { .. }) => "Fetched",
        Message::Replica(ReplicaMsg::Decide { .. }) => "Decide",
        Message::Replica(ReplicaMsg::Decisions { .. }) => "Decisions",
    }
}

/// FNV-1a, 64 bit: folds the bytes of every delivered message (and every
/// other event) into one number per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(pub u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    pub fn bytes(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn u64(&mut self, x: u64) {
        self.bytes(&x.to_le_bytes());
    }
}
