//! Shared vocabulary of Synod: node ids, ballots, slots, the values a slot can
//! hold, the typed messages each role receives, and the [`StateMachine`] trait
//! replicas drive.
//!
//! Message flow (names from the lecture deck: p1a/p1b/p2a/p2b):
//!
//! ```text
//!  client ──RESP──▶ Replica ──Propose──▶ Proposer (leader)
//!                                          │  phase 1 once per leadership:
//!                                          ├── Prepare  (p1a) ──▶ Acceptor
//!                                          │◀─ Promise  (p1b) ───┘   (durable first)
//!                                          │  phase 2 per slot:
//!                                          ├── Accept   (p2a) ──▶ Acceptor
//!                                          ├── Proposed ──▶ Learners without an acceptor beside them
//!                                          │◀─ Accepted (p2b) ───┤   (durable first)
//!                                                                 └─ Accepted ──▶ Learner
//!                                                 (the value rides only to the learner on the
//!                                                  acceptor's own node; a majority of votes in
//!                                                  one ballot + that ballot's value ⇒ chosen)
//!  client ◀──RESP── Replica ◀──Decide── Learner ──Chosen──▶ Proposer
//!                 (each replica and proposer hears from its home learner;
//!                  the replica applies slots strictly in order and answers
//!                  once it has applied the request's slot)
//! ```
//!
//! Reads take a shortcut: `ReadIndex` from the replica to the leader, one
//! `Confirm`/`Confirmed` round with the acceptors, `ReadIndex` back with the
//! slot to apply up to; the replica then answers from its own state.
//!
//! Proposers also exchange `Heartbeat`s; a follower that hears none for a
//! randomized election timeout runs phase 1 with a higher ballot.

mod ballot;
mod message;
mod rng;
mod state_machine;
mod value;

pub use ballot::{Ballot, NodeId, Slot};
pub use message::{
    AcceptorMsg, Envelope, LearnerMsg, Message, PromiseEntry, ProposerMsg, ReplicaMsg, Role,
};
pub use rng::SplitMix64;
pub use state_machine::StateMachine;
pub use value::{chunk_commands, fits_in_budget, ClientId, Command, Value, MESSAGE_BUDGET};

/// Which nodes run which role: every role needs to know whom to talk to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub proposers: Vec<NodeId>,
    pub acceptors: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub replicas: Vec<NodeId>,
}

impl Topology {
    /// The learner that tells `node` (a replica or proposer) about chosen
    /// slots: the learner on its own node if there is one, else one picked
    /// by position so the load spreads. Every other learner stays quiet
    /// towards it; a replica that stops hearing from its learner polls the
    /// others (`CatchUp`), so this saves messages without a single point
    /// of failure.
    pub fn home_learner(&self, node: &NodeId, position: usize) -> Option<&NodeId> {
        if let Some(same) = self.learners.iter().find(|l| *l == node) {
            return Some(same);
        }
        if self.learners.is_empty() {
            return None;
        }
        self.learners.get(position % self.learners.len())
    }
}

/// Number of acceptors that form a majority of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any two majorities of the same acceptor set intersect, which is
        /// the fact every Paxos safety argument rests on.
        #[test]
        fn quorums_intersect(n in 1usize..12, a in any::<u64>(), b in any::<u64>()) {
            let q = majority(n);
            let pick = |mut seed: u64| {
                let mut rng = SplitMix64::new(seed);
                let mut set: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    seed = rng.next_u64();
                    set.swap(i, (seed % (i as u64 + 1)) as usize);
                }
                set.truncate(q);
                set
            };
            let (qa, qb) = (pick(a), pick(b));
            prop_assert!(qa.iter().any(|x| qb.contains(x)));
        }
    }
}
