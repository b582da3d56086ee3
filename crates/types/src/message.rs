//! One inbound enum per role, so a message meant for an acceptor cannot be
//! handed to a learner by mistake: [`Message`] only wraps them for the wire.

use crate::{Ballot, Command, NodeId, Slot, Value};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The roles a node can host. A message's variant decides which one gets it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub enum Role {
    Proposer,
    Acceptor,
    Learner,
    Replica,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Proposer, Role::Acceptor, Role::Learner, Role::Replica];

    pub fn name(self) -> &'static str {
        match self {
            Role::Proposer => "proposer",
            Role::Acceptor => "acceptor",
            Role::Learner => "learner",
            Role::Replica => "replica",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A message in flight between two nodes; the destination node is known to
/// whoever routes it, the destination role is implied by `msg`.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
pub struct Envelope {
    pub from: NodeId,
    pub msg: Message,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
pub enum Message {
    Acceptor(AcceptorMsg),
    Proposer(ProposerMsg),
    Learner(LearnerMsg),
    Replica(ReplicaMsg),
}

impl Message {
    pub fn role(&self) -> Role {
        match self {
            Message::Acceptor(_) => Role::Acceptor,
            Message::Proposer(_) => Role::Proposer,
            Message::Learner(_) => Role::Learner,
            Message::Replica(_) => Role::Replica,
        }
    }
}

/// Messages an acceptor receives.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
pub enum AcceptorMsg {
    /// p1a: "promise to ignore ballots below `ballot`, and tell me what you
    /// accepted in every slot from `from_slot` on".
    Prepare { ballot: Ballot, from_slot: Slot },
    /// p2a: "accept `value` for `slot` in `ballot`".
    Accept {
        ballot: Ballot,
        slot: Slot,
        value: Value,
    },
    /// A learner lost track of slots `[from_slot, to_slot)`: "tell me what
    /// you hold there now" (answered with `LearnerMsg::Fetched`, which
    /// echoes `round` so the learner can tell this round's answers from
    /// late answers to an earlier one).
    Fetch {
        from_slot: Slot,
        to_slot: Slot,
        round: u64,
    },
    /// From the leader: a majority of replicas hold durable snapshots that
    /// cover every slot below `below`, so those slots may be forgotten.
    Compact { below: Slot },
    /// Read-index round `round`: "have you promised anything above
    /// `ballot`?" Answered with `ProposerMsg::Confirmed` (no) or
    /// `Preempted` (yes). Changes nothing, so it needs no disk write.
    Confirm { ballot: Ballot, round: u64 },
    /// The leader of `ballot` is alive (sent with every proposer heartbeat),
    /// so this acceptor turns down pre-votes for a while. Answered with
    /// `ProposerMsg::HeartbeatAck`, or `Preempted` if `ballot` is too low.
    Heartbeat {
        ballot: Ballot,
        /// Every slot below this is chosen (the leader's progress). Kept in
        /// memory only, so the acceptor can tell the next candidate where
        /// the undecided part of the log starts.
        first_unchosen: Slot,
    },
    /// Pre-vote: "would you promise `ballot` if I ran phase 1 with it, and
    /// have you lost touch with the leader you follow?" Answered with
    /// `ProposerMsg::PreVoteGranted`, with `Preempted` if `ballot` is too
    /// low, or not at all while the leader is alive. Changes nothing.
    PreVote { ballot: Ballot },
}

/// One slot an acceptor reports in its promise: what it accepted, in which ballot.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
pub struct PromiseEntry {
    pub slot: Slot,
    pub ballot: Ballot,
    pub value: Value,
}

/// Messages a proposer receives.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
pub enum ProposerMsg {
    /// p1b: the acceptor promised `ballot` and reports what it had accepted
    /// in `from_slot..more_from` (`None`: to the end). An acceptor holding
    /// more than one message's worth answers one `Prepare` with several
    /// such pages, back to back, the last with `more_from: None`; the
    /// proposer counts the promise once its pages cover everything from
    /// its first unchosen slot on.
    Promise {
        ballot: Ballot,
        accepted: Vec<PromiseEntry>,
        /// The acceptor forgot every slot below this (all chosen and in
        /// replicas' snapshots); the new leader must not re-propose there.
        compacted_below: Slot,
        /// The acceptor heard from a leader that every slot below this is
        /// chosen; its pages start there at the earliest. Chosen slots
        /// need no phase 2 from the new leader (learners fetch their values
        /// from the acceptors), so a leader elected after a restart does
        /// not re-propose the whole log.
        chosen_below: Slot,
        from_slot: Slot,
        more_from: Option<Slot>,
    },
    /// p2b: the acceptor accepted `slot` in `ballot`.
    Accepted { ballot: Ballot, slot: Slot },
    /// The acceptor refused `ballot` because it promised the higher `promised`.
    Preempted { ballot: Ballot, promised: Ballot },
    /// Commands to get into the log, from a replica or forwarded by a
    /// proposer that is not the leader.
    Propose { commands: Vec<Command> },
    /// Leader liveness and progress: every slot below `first_unchosen` is chosen.
    Heartbeat {
        ballot: Ballot,
        first_unchosen: Slot,
    },
    /// A learner saw `slot` chosen, and knows every slot below
    /// `learned_below` chosen (a learner that caught up past a compacted
    /// prefix reports slots far above a proposer that missed them; without
    /// the prefix the proposer would hold every such slot as a gap).
    Chosen { slot: Slot, learned_below: Slot },
    /// A replica's state up to (not including) `slot` is in a durable
    /// snapshot; the leader compacts below what a majority of replicas hold.
    SnapshotTaken { slot: Slot },
    /// A replica wants to serve the reads `ids` without a log write: "are
    /// you still the leader, and up to which slot must I apply first?"
    ReadIndex { ids: Vec<u64> },
    /// An acceptor's answer to `AcceptorMsg::Confirm`: it has promised
    /// nothing above `ballot`.
    Confirmed { ballot: Ballot, round: u64 },
    /// An acceptor's yes to `AcceptorMsg::PreVote` for `ballot`.
    PreVoteGranted { ballot: Ballot },
    /// An acceptor heard the leader's `AcceptorMsg::Heartbeat` for
    /// `ballot` and has promised nothing higher.
    HeartbeatAck { ballot: Ballot },
    /// An acceptor's answer to an `Accept` for a slot it has forgotten:
    /// every slot below `below` is chosen and in a majority of replicas'
    /// snapshots, so the leader must stop driving them (no acceptor that
    /// compacted will ever vote there again).
    Compacted { below: Slot },
}

/// Messages a learner receives.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
pub enum LearnerMsg {
    /// p2b copy for learners. Only a learner on the acceptor's own node
    /// gets the value (a free local copy); the others get the vote alone
    /// and the value from the leader's `Proposed`, so a value crosses the
    /// network once per learner instead of once per acceptor and learner.
    Accepted {
        ballot: Ballot,
        slot: Slot,
        value: Option<Value>,
    },
    /// From the leader, to learners with no acceptor on their node: the
    /// value it asks the acceptors to accept in `slot` under `ballot` (one
    /// ballot proposes one value per slot, so votes for `(ballot, slot)`
    /// are votes for it).
    Proposed {
        ballot: Ballot,
        slot: Slot,
        value: Value,
    },
    /// A replica asks for the decisions it lacks from `from_slot` on.
    CatchUp { from_slot: Slot },
    /// From the leader with each heartbeat: every slot below
    /// `first_unchosen` is chosen, so a learner that has not learned them
    /// all lost some p2b copies and should fetch them from the acceptors.
    Progress { first_unchosen: Slot },
    /// An acceptor's answer to `Fetch`: everything it holds in the range,
    /// as of when it answered (slots it has nothing for are simply absent).
    Fetched {
        from_slot: Slot,
        to_slot: Slot,
        /// The `round` of the `Fetch` this answers.
        round: u64,
        /// The answer speaks for `from_slot..covered_to` only: an acceptor
        /// holding more than one message's worth stops early, and is silent
        /// (not "accepted nothing") about the slots beyond.
        covered_to: Slot,
        entries: Vec<PromiseEntry>,
        /// The acceptor forgot every slot below this: "nothing here" means
        /// nothing only at or above it.
        compacted_below: Slot,
    },
    /// From the leader, as for acceptors: slots below `below` may go.
    Compact { below: Slot },
}

/// Messages a replica receives.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
pub enum ReplicaMsg {
    /// `value` was chosen for `slot`; `ballot` names the leader that got it
    /// chosen, which replicas use as their leader hint.
    Decide {
        slot: Slot,
        ballot: Ballot,
        value: Value,
    },
    /// A learner's answer to `CatchUp`: chosen slots in order, and whether it
    /// knows more past the last one (then the replica asks again at once).
    Decisions {
        entries: Vec<(Slot, Ballot, Value)>,
        more: bool,
    },
    /// A learner no longer holds slots below `below`: the replica needs a
    /// snapshot from a peer replica.
    Compacted { below: Slot },
    /// Peer replica: "send me your snapshot of `slot` from byte `offset`
    /// on" (`offset == 0`: start a download of your latest snapshot, and
    /// `slot` is ignored). The sender keeps a snapshot it is serving until
    /// the download ends, however many newer ones it takes meanwhile.
    SnapshotRequest { slot: Slot, offset: u64 },
    /// One chunk of the sender's latest durable snapshot, which covers the
    /// log below `slot` and is `total` bytes long. `total == 0`: none held.
    SnapshotChunk {
        slot: Slot,
        offset: u64,
        total: u64,
        data: bytes::Bytes,
    },
    /// The leader's answer to `ReadIndex`: after it received the request, a
    /// majority of acceptors confirmed its ballot, so every slot chosen
    /// before the request lies below `index`. The reads may be answered
    /// from local state once every slot below `index` is applied.
    ReadIndex { ids: Vec<u64>, index: Slot },
    /// The proposer asked cannot serve the reads `ids` (it does not lead);
    /// `leader` is whom it believes leads.
    NotLeader {
        ids: Vec<u64>,
        leader: Option<NodeId>,
    },
}
