//! The learner: finds out which value each slot chose.
//!
//! A value is chosen for a slot once a majority of acceptors accepted it in
//! the same ballot; acceptors copy every p2b to the learners, so the learner
//! only counts. When a slot is chosen the learner tells every replica
//! (`Decide`) and every proposer (`Chosen`, so a future leader starts phase 1
//! past it), and reports it to local observers. It keeps the chosen log in
//! memory to answer replicas that fell behind (`CatchUp`).
//!
//! A learner is not durable: after a restart it only learns new slots. That
//! is safe because the acceptors are the durable memory, and a new leader's
//! phase 1 re-proposes anything a majority may have accepted.

#[cfg(feature = "actor")]
pub mod actor;

use std::collections::{BTreeMap, BTreeSet};
use synod_types::{
    majority, Ballot, LearnerMsg, Message, NodeId, ProposerMsg, ReplicaMsg, Slot, Value,
};

#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub send: Vec<(NodeId, Message)>,
    /// Slots chosen by this message, for local observers.
    pub decided: Vec<(Slot, Value)>,
}

pub struct Learner {
    acceptors: Vec<NodeId>,
    replicas: Vec<NodeId>,
    proposers: Vec<NodeId>,
    /// Per slot and ballot: the value and which acceptors accepted it.
    votes: BTreeMap<Slot, BTreeMap<Ballot, (Value, BTreeSet<NodeId>)>>,
    chosen: BTreeMap<Slot, (Ballot, Value)>,
    /// Most decisions sent in answer to one `CatchUp`, to bound message size.
    max_catch_up: usize,
}

impl Learner {
    pub fn new(acceptors: Vec<NodeId>, replicas: Vec<NodeId>, proposers: Vec<NodeId>) -> Self {
        Learner {
            acceptors,
            replicas,
            proposers,
            votes: BTreeMap::new(),
            chosen: BTreeMap::new(),
            max_catch_up: 256,
        }
    }

    pub fn chosen(&self, slot: Slot) -> Option<&Value> {
        self.chosen.get(&slot).map(|(_, v)| v)
    }

    pub fn handle(&mut self, from: NodeId, msg: LearnerMsg) -> Output {
        match msg {
            LearnerMsg::Accepted {
                ballot,
                slot,
                value,
            } => self.handle_accepted(from, ballot, slot, value),
            LearnerMsg::CatchUp { from_slot } => self.handle_catch_up(from, from_slot),
        }
    }

    fn handle_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        value: Value,
    ) -> Output {
        let mut out = Output::default();
        if self.chosen.contains_key(&slot) || !self.acceptors.contains(&from) {
            return out;
        }
        let by_ballot = self.votes.entry(slot).or_default();
        let (v, voters) = by_ballot
            .entry(ballot.clone())
            .or_insert_with(|| (value, BTreeSet::new()));
        voters.insert(from);
        if voters.len() < majority(self.acceptors.len()) {
            return out;
        }
        let value = v.clone();
        self.votes.remove(&slot);
        self.chosen.insert(slot, (ballot.clone(), value.clone()));
        for r in &self.replicas {
            out.send.push((
                r.clone(),
                Message::Replica(ReplicaMsg::Decide {
                    slot,
                    ballot: ballot.clone(),
                    value: value.clone(),
                }),
            ));
        }
        for p in &self.proposers {
            out.send
                .push((p.clone(), Message::Proposer(ProposerMsg::Chosen { slot })));
        }
        out.decided.push((slot, value));
        out
    }

    fn handle_catch_up(&mut self, from: NodeId, from_slot: Slot) -> Output {
        let mut range = self.chosen.range(from_slot..);
        let entries: Vec<_> = range
            .by_ref()
            .take(self.max_catch_up)
            .map(|(slot, (ballot, value))| (*slot, ballot.clone(), value.clone()))
            .collect();
        let more = range.next().is_some();
        let mut out = Output::default();
        if !entries.is_empty() {
            out.send.push((
                from,
                Message::Replica(ReplicaMsg::Decisions { entries, more }),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s)
    }
    fn b(r: u64) -> Ballot {
        Ballot::new(r, n("p1"))
    }
    fn learner() -> Learner {
        Learner::new(
            vec![n("a1"), n("a2"), n("a3")],
            vec![n("r1")],
            vec![n("p1")],
        )
    }
    fn accepted(l: &mut Learner, from: &str, ballot: Ballot, slot: Slot, value: Value) -> Output {
        l.handle(
            n(from),
            LearnerMsg::Accepted {
                ballot,
                slot,
                value,
            },
        )
    }

    #[test]
    fn chosen_needs_a_majority_in_one_ballot() {
        let mut l = learner();
        assert!(accepted(&mut l, "a1", b(1), 0, Value::Noop)
            .decided
            .is_empty());
        // Same acceptor twice is still one vote.
        assert!(accepted(&mut l, "a1", b(1), 0, Value::Noop)
            .decided
            .is_empty());
        // A vote in another ballot does not add up with ballot 1.
        assert!(accepted(&mut l, "a2", b(2), 0, Value::Noop)
            .decided
            .is_empty());
        // Unknown senders are not acceptors.
        assert!(accepted(&mut l, "x9", b(1), 0, Value::Noop)
            .decided
            .is_empty());
        let out = accepted(&mut l, "a3", b(1), 0, Value::Noop);
        assert_eq!(out.decided, vec![(0, Value::Noop)]);
        assert!(out.send.contains(&(
            n("r1"),
            Message::Replica(ReplicaMsg::Decide {
                slot: 0,
                ballot: b(1),
                value: Value::Noop
            })
        )));
        assert!(out
            .send
            .contains(&(n("p1"), Message::Proposer(ProposerMsg::Chosen { slot: 0 }))));
        // Decided once only.
        assert!(accepted(&mut l, "a2", b(1), 0, Value::Noop).send.is_empty());
    }

    #[test]
    fn catch_up_sends_known_decisions_from_slot() {
        let mut l = learner();
        for slot in 0..5 {
            accepted(&mut l, "a1", b(1), slot, Value::Noop);
            accepted(&mut l, "a2", b(1), slot, Value::Noop);
        }
        l.max_catch_up = 1;
        let out = l.handle(n("r9"), LearnerMsg::CatchUp { from_slot: 3 });
        assert_eq!(
            out.send,
            vec![(
                n("r9"),
                Message::Replica(ReplicaMsg::Decisions {
                    entries: vec![(3, b(1), Value::Noop)],
                    more: true
                })
            )]
        );
        let out = l.handle(n("r9"), LearnerMsg::CatchUp { from_slot: 4 });
        assert_eq!(
            out.send,
            vec![(
                n("r9"),
                Message::Replica(ReplicaMsg::Decisions {
                    entries: vec![(4, b(1), Value::Noop)],
                    more: false
                })
            )]
        );
        assert!(l
            .handle(n("r9"), LearnerMsg::CatchUp { from_slot: 5 })
            .send
            .is_empty());
    }
}
