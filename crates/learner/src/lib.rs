//! The learner: finds out which value each slot chose.
//!
//! A value is chosen for a slot once a majority of acceptors accepted it in
//! the same ballot; acceptors copy every p2b to the learners, so the learner
//! only counts. The votes carry no value except from the acceptor on the
//! learner's own node; a learner without one gets the value from the
//! leader (`Proposed`). Since one ballot proposes one value per slot, a
//! majority of votes for `(ballot, slot)` plus that ballot's value is a
//! choice. When a slot is chosen the learner tells the replicas and
//! proposers it is home learner for ([`Topology::home_learner`]: `Decide`,
//! and `Chosen` so a future leader starts phase 1 past it), and reports it
//! to local observers. It keeps the chosen log in memory to answer replicas
//! that fell behind or lost their home learner (`CatchUp`).
//!
//! A learner is not durable, and p2b copies sent to it can be lost, so it
//! repairs itself. When it has evidence that the log goes further than its
//! contiguous prefix of learned slots (a vote for a later slot, or the
//! leader's `Progress`) and the prefix does not move for `repair_ticks`, it
//! asks every acceptor what it holds in the missing range (`Fetch`).
//!
//! The answers decide a slot in two ways:
//!
//! - as ordinary votes: a majority in one ballot means chosen;
//! - for a slot the leader had reported chosen (below its `first_unchosen`)
//!   *before this fetch round was sent*: once a majority of acceptors
//!   answered the round, the value with the highest ballot among their
//!   answers is the chosen one. Why: if `v` was chosen in ballot `b` by a
//!   majority `Q`, every answering majority meets `Q`, an acceptor in both
//!   answered after the choice with a ballot `≥ b`, and every proposal in
//!   a ballot `≥ b` carries `v`.
//!
//! That rule is *only* sound for answers given after the choice — a
//! majority holding one value in different ballots is not in general
//! chosen — so both halves of "after" are enforced:
//!
//! - each round has its own id, echoed in `Fetched`, and only answers
//!   carrying the current id count towards it. Rounds repeat the same slot
//!   range, so without the id a late answer to an earlier round (given
//!   before the choice) would be taken for a fresh one;
//! - the rule covers only slots below `first_unchosen` as it stood when the
//!   round was sent, not as it stands when the answers are in: a slot the
//!   leader reports chosen while the round is out may have been chosen
//!   after some acceptors answered.
//!
//! "Answering majority" is per slot: an acceptor speaks for a slot only if
//! its answer covers it. One that compacted the slot, or that cut its
//! answer short at the message budget before reaching it (`covered_to`), is
//! not a witness there; taking its silence for "accepted nothing" could
//! hide the higher ballot it holds.
//!
//! The simulator found the schedule that needs both (seed 9165100): an
//! acceptor's answer to an earlier round arrived late, holding the ballot-1
//! value of a slot that ballot 2 went on to choose with another value.
//!
//! Round ids start from a base the shell passes in (a fresh one per start),
//! so a late answer addressed to an earlier life of this learner cannot
//! match a round of this one.

#[cfg(feature = "actor")]
pub mod actor;

use std::collections::{BTreeMap, BTreeSet};
use synod_types::{
    majority, AcceptorMsg, Ballot, LearnerMsg, Message, NodeId, PromiseEntry, ProposerMsg,
    ReplicaMsg, Slot, Topology, Value,
};

#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub send: Vec<(NodeId, Message)>,
    /// Slots chosen by this message, for local observers.
    pub decided: Vec<(Slot, Value)>,
}

/// Per ballot: the value, once known, and which acceptors accepted it.
type SlotVotes = BTreeMap<Ballot, (Option<Value>, BTreeSet<NodeId>)>;

/// What one acceptor holds in a fetched range, slot by slot.
type Holdings = BTreeMap<Slot, (Ballot, Value)>;

/// One round of asking the acceptors for a slot range.
struct Repair {
    round: u64,
    from_slot: Slot,
    to_slot: Slot,
    /// The leader had reported every slot below this chosen when the round
    /// was sent, so every answer to it was given after those choices.
    chosen_below: Slot,
    /// Per acceptor: the slots its answer speaks for (from its compaction
    /// mark to where it cut the answer short) and what it holds there.
    answers: BTreeMap<NodeId, (std::ops::Range<Slot>, Holdings)>,
}

pub struct Learner {
    acceptors: Vec<NodeId>,
    proposers: Vec<NodeId>,
    /// Replicas and proposers we are the home learner of: they hear about
    /// chosen slots from us.
    decide_to: Vec<NodeId>,
    chosen_to: Vec<NodeId>,
    votes: BTreeMap<Slot, SlotVotes>,
    chosen: BTreeMap<Slot, (Ballot, Value)>,
    /// Most decisions sent in answer to one `CatchUp`, to bound message size.
    max_catch_up: usize,
    now: u64,
    /// Every slot below this is learned.
    first_unlearned: Slot,
    /// Evidence that slots up to here exist (exclusive).
    known_end: Slot,
    /// Every slot below this is chosen (the leader said so).
    committed: Slot,
    /// The fetch round in progress: its range and who answered what.
    repair: Option<Repair>,
    /// Id of the next fetch round.
    next_round: u64,
    /// Slots below this were dropped on the leader's `Compact`.
    compacted_below: Slot,
    /// `(first_unlearned, since)`: how long the prefix has not moved.
    stalled: Option<(Slot, u64)>,
    repair_ticks: u64,
    /// Most slots asked for in one `Fetch`.
    fetch_window: u64,
    /// Bytes of values one catch-up answer gathers.
    message_budget: usize,
}

impl Learner {
    /// Fetch-round ids count up from `round_base`, which must keep them
    /// apart from the ids of any earlier run of this learner: the node
    /// draws a random base shifted left by 32 bits, the simulator shifts
    /// the restart tick (a learner starts at most one round per tick).
    pub fn new(me: NodeId, topology: &Topology, round_base: u64) -> Self {
        let homed_here = |nodes: &[NodeId]| -> Vec<NodeId> {
            nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| topology.home_learner(n, *i) == Some(&me))
                .map(|(_, n)| n.clone())
                .collect()
        };
        Learner {
            acceptors: topology.acceptors.clone(),
            proposers: topology.proposers.clone(),
            decide_to: homed_here(&topology.replicas),
            chosen_to: homed_here(&topology.proposers),
            votes: BTreeMap::new(),
            chosen: BTreeMap::new(),
            max_catch_up: 256,
            now: 0,
            first_unlearned: 0,
            known_end: 0,
            committed: 0,
            repair: None,
            next_round: round_base,
            compacted_below: 0,
            stalled: None,
            repair_ticks: 10,
            fetch_window: 256,
            message_budget: synod_types::MESSAGE_BUDGET,
        }
    }

    /// Overrides [`synod_types::MESSAGE_BUDGET`] (the simulator shrinks it
    /// so that catch-up answers are cut short).
    pub fn with_message_budget(mut self, bytes: usize) -> Self {
        self.message_budget = bytes;
        self
    }

    /// Every slot below this is learned.
    pub fn first_unlearned(&self) -> Slot {
        self.first_unlearned
    }

    /// Advances the clock by one tick; may ask acceptors for lost votes.
    pub fn tick(&mut self) -> Output {
        self.now += 1;
        let mut out = Output::default();
        if self.first_unlearned >= self.known_end {
            self.stalled = None;
            return out;
        }
        match self.stalled {
            Some((slot, since)) if slot == self.first_unlearned => {
                if self.now - since >= self.repair_ticks {
                    self.stalled = Some((slot, self.now));
                    let to_slot = self.known_end.min(slot.saturating_add(self.fetch_window));
                    let round = self.next_round;
                    self.next_round = self.next_round.wrapping_add(1);
                    self.repair = Some(Repair {
                        round,
                        from_slot: slot,
                        to_slot,
                        chosen_below: self.committed,
                        answers: BTreeMap::new(),
                    });
                    for a in &self.acceptors {
                        out.send.push((
                            a.clone(),
                            Message::Acceptor(AcceptorMsg::Fetch {
                                from_slot: slot,
                                to_slot,
                                round,
                            }),
                        ));
                    }
                }
            }
            _ => self.stalled = Some((self.first_unlearned, self.now)),
        }
        out
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
            LearnerMsg::Proposed {
                ballot,
                slot,
                value,
            } => self.handle_proposed(from, ballot, slot, value),
            LearnerMsg::CatchUp { from_slot } => self.handle_catch_up(from, from_slot),
            LearnerMsg::Progress { first_unchosen } => {
                self.known_end = self.known_end.max(first_unchosen);
                self.committed = self.committed.max(first_unchosen);
                Output::default()
            }
            LearnerMsg::Fetched {
                from_slot,
                to_slot,
                round,
                covered_to,
                entries,
                compacted_below,
            } => self.handle_fetched(
                from,
                (from_slot, to_slot),
                round,
                entries,
                (compacted_below, covered_to),
            ),
            LearnerMsg::Compact { below } => {
                // Only a leader knows what replicas hold in snapshots.
                if self.proposers.contains(&from) {
                    self.handle_compact(below);
                }
                Output::default()
            }
        }
    }

    fn handle_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        value: Option<Value>,
    ) -> Output {
        let mut out = Output::default();
        self.count_vote(from, ballot, slot, value, &mut out);
        out
    }

    /// The leader's value for `(ballot, slot)`: not a vote, but what the
    /// votes for that ballot are votes for.
    fn handle_proposed(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        value: Value,
    ) -> Output {
        let mut out = Output::default();
        if ballot.node != from || !self.proposers.contains(&from) {
            return out;
        }
        if slot < self.first_unlearned || self.chosen.contains_key(&slot) {
            return out;
        }
        let entry = self
            .votes
            .entry(slot)
            .or_default()
            .entry(ballot.clone())
            .or_insert_with(|| (None, BTreeSet::new()));
        if !Self::merge_value(&mut entry.0, value, slot, &ballot, &from) {
            return out;
        }
        if entry.1.len() >= majority(self.acceptors.len()) {
            if let Some(value) = entry.0.clone() {
                self.choose(slot, ballot, value, &mut out);
            }
        }
        out
    }

    /// Records `value` as the value of one `(ballot, slot)`; false if a
    /// different one is already recorded there.
    fn merge_value(
        known: &mut Option<Value>,
        value: Value,
        slot: Slot,
        ballot: &Ballot,
        from: &NodeId,
    ) -> bool {
        match known {
            Some(v) if *v != value => {
                // One ballot proposes one value per slot; anything else is a
                // protocol violation elsewhere and must not be counted.
                tracing::error!(slot, ?ballot, sender = %from, "two values for one slot in one ballot; ignored");
                false
            }
            Some(_) => true,
            None => {
                *known = Some(value);
                true
            }
        }
    }

    fn count_vote(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        value: Option<Value>,
        out: &mut Output,
    ) {
        if slot < self.first_unlearned
            || self.chosen.contains_key(&slot)
            || !self.acceptors.contains(&from)
        {
            return;
        }
        self.known_end = self.known_end.max(slot.saturating_add(1));
        let (known, voters) = self
            .votes
            .entry(slot)
            .or_default()
            .entry(ballot.clone())
            .or_insert_with(|| (None, BTreeSet::new()));
        if let Some(value) = value {
            if !Self::merge_value(known, value, slot, &ballot, &from) {
                return;
            }
        }
        voters.insert(from);
        // A majority without the value (the leader's `Proposed` was lost)
        // waits: the stalled prefix makes `tick` fetch it from acceptors.
        if voters.len() >= majority(self.acceptors.len()) {
            if let Some(value) = known.clone() {
                self.choose(slot, ballot, value, out);
            }
        }
    }

    fn handle_fetched(
        &mut self,
        from: NodeId,
        range: (Slot, Slot),
        round: u64,
        entries: Vec<PromiseEntry>,
        (compacted_below, covered_to): (Slot, Slot),
    ) -> Output {
        let mut out = Output::default();
        if !self.acceptors.contains(&from) {
            return out;
        }
        // An acceptor only compacts on the leader's word, so its mark is
        // as good as a `Compact` from the leader. Votes are facts whenever
        // they were given, so a late answer still counts as votes.
        self.handle_compact(compacted_below);
        for e in &entries {
            self.count_vote(
                from.clone(),
                e.ballot.clone(),
                e.slot,
                Some(e.value.clone()),
                &mut out,
            );
        }
        let Some(r) = self
            .repair
            .as_mut()
            .filter(|r| r.round == round && (r.from_slot, r.to_slot) == range)
        else {
            return out;
        };
        let held = entries
            .into_iter()
            .map(|e| (e.slot, (e.ballot, e.value)))
            .collect();
        r.answers.insert(from, (compacted_below..covered_to, held));
        if r.answers.len() < majority(self.acceptors.len()) {
            return out;
        }
        let Some(r) = self.repair.take() else {
            return out;
        };
        let quorum = majority(self.acceptors.len());
        for slot in r.from_slot..r.to_slot.min(r.chosen_below) {
            if slot < self.first_unlearned || self.chosen.contains_key(&slot) {
                continue;
            }
            // Only acceptors whose answer covers `slot` speak for it: one
            // that compacted it, or cut its answer short before it, says
            // nothing about what was chosen there.
            let witnesses: Vec<_> = r
                .answers
                .values()
                .filter(|(covered, _)| covered.contains(&slot))
                .collect();
            if witnesses.len() < quorum {
                continue;
            }
            let highest = witnesses
                .iter()
                .filter_map(|(_, m)| m.get(&slot))
                .max_by(|a, b| a.0.cmp(&b.0));
            if let Some((ballot, value)) = highest.cloned() {
                self.choose(slot, ballot, value, &mut out);
            }
        }
        out
    }

    /// Drops decisions and votes below `below`: a majority of replicas
    /// hold them in snapshots, and a replica that needs them gets one.
    fn handle_compact(&mut self, below: Slot) {
        if below <= self.compacted_below {
            return;
        }
        self.compacted_below = below;
        self.chosen = self.chosen.split_off(&below);
        self.votes = self.votes.split_off(&below);
        self.first_unlearned = self.first_unlearned.max(below);
        self.advance_first_unlearned();
        self.committed = self.committed.max(below);
        self.known_end = self.known_end.max(below);
        if self.repair.as_ref().is_some_and(|r| r.from_slot < below) {
            self.repair = None;
        }
    }

    fn advance_first_unlearned(&mut self) {
        // The bound only matters for a broken peer's slot numbers.
        while self.first_unlearned < Slot::MAX && self.chosen.contains_key(&self.first_unlearned) {
            self.first_unlearned += 1;
        }
    }

    fn choose(&mut self, slot: Slot, ballot: Ballot, value: Value, out: &mut Output) {
        self.votes.remove(&slot);
        self.chosen.insert(slot, (ballot.clone(), value.clone()));
        self.advance_first_unlearned();
        for r in &self.decide_to {
            out.send.push((
                r.clone(),
                Message::Replica(ReplicaMsg::Decide {
                    slot,
                    ballot: ballot.clone(),
                    value: value.clone(),
                }),
            ));
        }
        for p in &self.chosen_to {
            out.send.push((
                p.clone(),
                Message::Proposer(ProposerMsg::Chosen {
                    slot,
                    learned_below: self.first_unlearned,
                }),
            ));
        }
        out.decided.push((slot, value));
    }

    /// Answers with the contiguous run of decisions starting at `from_slot`.
    /// Decisions past a hole would not let the replica apply anything and
    /// would be sent again on every retry, so they are not sent; the hole
    /// itself is what `tick` repairs.
    fn handle_catch_up(&mut self, from: NodeId, from_slot: Slot) -> Output {
        if from_slot < self.compacted_below {
            let below = self.compacted_below;
            return Output {
                send: vec![(from, Message::Replica(ReplicaMsg::Compacted { below }))],
                decided: Vec::new(),
            };
        }
        let run = || {
            (from_slot..)
                .map_while(|slot| self.chosen.get(&slot).map(|(b, v)| (slot, b, v)))
                .take(self.max_catch_up)
        };
        let n = synod_types::fits_in_budget(
            run().map(|(_, _, v)| v.approx_size()),
            self.message_budget,
        );
        let entries: Vec<_> = run()
            .take(n)
            .map(|(slot, b, v)| (slot, b.clone(), v.clone()))
            .collect();
        let next = from_slot + entries.len() as Slot;
        let more = self.chosen.contains_key(&next);
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
    #[test]
    fn a_chosen_last_slot_under_a_compaction_mark_does_not_overflow() {
        let mut l = learner();
        accepted(&mut l, "a1", b(1), Slot::MAX, Value::Noop);
        accepted(&mut l, "a2", b(1), Slot::MAX, Value::Noop);
        l.handle(n("p1"), LearnerMsg::Compact { below: Slot::MAX });
        assert_eq!(l.first_unlearned(), Slot::MAX);
    }

    fn learner() -> Learner {
        Learner::new(
            n("l1"),
            &Topology {
                acceptors: vec![n("a1"), n("a2"), n("a3")],
                replicas: vec![n("r1")],
                proposers: vec![n("p1")],
                learners: vec![n("l1")],
            },
            0,
        )
    }
    fn accepted(l: &mut Learner, from: &str, ballot: Ballot, slot: Slot, value: Value) -> Output {
        l.handle(
            n(from),
            LearnerMsg::Accepted {
                ballot,
                slot,
                value: Some(value),
            },
        )
    }
    fn vote(l: &mut Learner, from: &str, ballot: Ballot, slot: Slot) -> Output {
        l.handle(
            n(from),
            LearnerMsg::Accepted {
                ballot,
                slot,
                value: None,
            },
        )
    }

    #[test]
    fn the_last_slot_number_from_a_broken_peer_does_not_overflow() {
        let mut l = learner();
        vote(&mut l, "a1", b(1), Slot::MAX);
        vote(&mut l, "a2", b(1), Slot::MAX);
        for _ in 0..200 {
            l.tick();
        }
        assert_eq!(l.first_unlearned(), 0);
    }
    fn v(x: u8) -> Value {
        Value::Batch(vec![synod_types::Command {
            client: synod_types::ClientId(1),
            seq: x as u64,
            op: vec![x].into(),
        }])
    }

    #[test]
    fn value_less_votes_choose_with_the_leaders_value_in_either_order() {
        // Votes first, then the leader's value.
        let mut l = learner();
        vote(&mut l, "a1", b(1), 0);
        assert!(
            vote(&mut l, "a2", b(1), 0).decided.is_empty(),
            "no value yet"
        );
        let proposed = |l: &mut Learner, from: &str, ballot: Ballot, value: Value| {
            l.handle(
                n(from),
                LearnerMsg::Proposed {
                    ballot,
                    slot: 0,
                    value,
                },
            )
        };
        // Only the ballot's own proposer speaks for its value.
        assert!(proposed(&mut l, "p2", b(1), v(9)).decided.is_empty());
        let out = proposed(&mut l, "p1", b(1), v(1));
        assert_eq!(out.decided, vec![(0, v(1))]);
        // Value first, then votes; a value of another ballot does not count.
        let mut l = learner();
        proposed(&mut l, "p1", b(2), v(2));
        vote(&mut l, "a1", b(1), 0);
        assert!(vote(&mut l, "a2", b(1), 0).decided.is_empty());
        vote(&mut l, "a3", b(2), 0);
        assert_eq!(vote(&mut l, "a1", b(2), 0).decided, vec![(0, v(2))]);
    }

    #[test]
    fn a_majority_whose_value_never_came_is_fetched() {
        let mut l = learner();
        vote(&mut l, "a1", b(1), 0);
        vote(&mut l, "a2", b(1), 0);
        let asked = (0..50)
            .map(|_| fetches(&l.tick()))
            .find(|f| !f.is_empty())
            .unwrap_or_default();
        assert_eq!(asked.len(), 3, "a fetch round to every acceptor");
        let out = fetched(&mut l, "a1", (0, 1), vec![(0, b(1), v(5))]);
        assert_eq!(out.decided, vec![(0, v(5))]);
    }

    #[test]
    fn decisions_go_only_to_the_replicas_and_proposers_homed_here() {
        let topology = Topology {
            acceptors: vec![n("n1"), n("n2"), n("n3")],
            replicas: vec![n("n1"), n("n2"), n("r9")],
            proposers: vec![n("n1"), n("p9")],
            learners: vec![n("n1"), n("n2")],
        };
        let mut l = Learner::new(n("n1"), &topology, 0);
        for a in ["n1", "n2"] {
            accepted(&mut l, a, b(1), 0, Value::Noop);
        }
        let mut to: Vec<NodeId> = l
            .handle(n("r9"), LearnerMsg::CatchUp { from_slot: 0 })
            .send
            .into_iter()
            .map(|(to, _)| to)
            .collect();
        assert_eq!(to, vec![n("r9")], "catch-up answers anyone");
        let mut l = Learner::new(n("n1"), &topology, 0);
        accepted(&mut l, "n1", b(1), 0, Value::Noop);
        let out = accepted(&mut l, "n2", b(1), 0, Value::Noop);
        to = out.send.into_iter().map(|(to, _)| to).collect();
        to.sort();
        // n1 is on our node; r9 (third replica) and p9 (second proposer)
        // have no learner of their own and fall to n1 and n2 by position.
        assert_eq!(to, vec![n("n1"), n("n1"), n("r9")]);
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
        assert!(out.send.contains(&(
            n("p1"),
            Message::Proposer(ProposerMsg::Chosen {
                slot: 0,
                learned_below: 1
            })
        )));
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

    #[test]
    fn catch_up_stops_at_a_hole() {
        let mut l = learner();
        for slot in [0, 1, 3] {
            accepted(&mut l, "a1", b(1), slot, Value::Noop);
            accepted(&mut l, "a2", b(1), slot, Value::Noop);
        }
        let out = l.handle(n("r9"), LearnerMsg::CatchUp { from_slot: 0 });
        assert_eq!(
            out.send,
            vec![(
                n("r9"),
                Message::Replica(ReplicaMsg::Decisions {
                    entries: vec![(0, b(1), Value::Noop), (1, b(1), Value::Noop)],
                    more: false
                })
            )]
        );
        assert!(l
            .handle(n("r9"), LearnerMsg::CatchUp { from_slot: 2 })
            .send
            .is_empty());
    }

    fn fetches(out: &Output) -> Vec<(NodeId, Slot, Slot)> {
        out.send
            .iter()
            .filter_map(|(to, m)| match m {
                Message::Acceptor(AcceptorMsg::Fetch {
                    from_slot, to_slot, ..
                }) => Some((to.clone(), *from_slot, *to_slot)),
                _ => None,
            })
            .collect()
    }

    /// The id of the fetch round `out` starts, if it starts one.
    fn round_of(out: &Output) -> Option<u64> {
        out.send.iter().find_map(|(_, m)| match m {
            Message::Acceptor(AcceptorMsg::Fetch { round, .. }) => Some(*round),
            _ => None,
        })
    }

    /// Ticks until the learner starts a fetch round; its range and id.
    fn next_round(l: &mut Learner) -> ((Slot, Slot), u64) {
        for _ in 0..50 {
            let out = l.tick();
            if let (Some(round), Some((_, from, to))) = (round_of(&out), fetches(&out).first()) {
                return ((*from, *to), round);
            }
        }
        panic!("no fetch round within 50 ticks");
    }

    /// An answer to the learner's current fetch round.
    fn fetched(
        l: &mut Learner,
        from: &str,
        range: (Slot, Slot),
        entries: Vec<(Slot, Ballot, Value)>,
    ) -> Output {
        let round = l.repair.as_ref().map_or(u64::MAX, |r| r.round);
        fetched_in(l, from, range, round, entries)
    }

    fn fetched_in(
        l: &mut Learner,
        from: &str,
        range: (Slot, Slot),
        round: u64,
        entries: Vec<(Slot, Ballot, Value)>,
    ) -> Output {
        let entries = entries
            .into_iter()
            .map(|(slot, ballot, value)| PromiseEntry {
                slot,
                ballot,
                value,
            })
            .collect();
        l.handle(
            n(from),
            LearnerMsg::Fetched {
                from_slot: range.0,
                to_slot: range.1,
                round,
                covered_to: range.1,
                entries,
                compacted_below: 0,
            },
        )
    }

    #[test]
    fn lost_votes_are_fetched_from_acceptors_when_the_prefix_stalls() {
        let mut l = learner();
        // Slot 1 is learned, slot 0 never got enough copies.
        accepted(&mut l, "a1", b(1), 0, Value::Noop);
        accepted(&mut l, "a1", b(1), 1, Value::Noop);
        accepted(&mut l, "a2", b(1), 1, Value::Noop);
        let mut asked = Vec::new();
        for _ in 0..11 {
            asked.extend(fetches(&l.tick()));
        }
        assert_eq!(
            asked,
            vec![(n("a1"), 0, 2), (n("a2"), 0, 2), (n("a3"), 0, 2)]
        );
        // The answers count like any vote.
        let out = fetched(&mut l, "a3", (0, 2), vec![(0, b(1), Value::Noop)]);
        assert_eq!(out.decided, vec![(0, Value::Noop)]);
        assert_eq!(l.first_unlearned(), 2);
        assert!(
            (0..30).all(|_| fetches(&l.tick()).is_empty()),
            "nothing missing, nothing fetched"
        );
    }

    fn set(x: u8) -> Value {
        Value::Batch(vec![synod_types::Command {
            client: synod_types::ClientId(1),
            seq: x as u64,
            op: vec![x].into(),
        }])
    }

    #[test]
    fn a_committed_slot_takes_the_highest_ballot_of_a_fresh_majority() {
        // Slot 0 was chosen (v in ballot 2); the acceptors now hold it in
        // different ballots, so no ballot has a majority any more.
        let mut l = learner();
        l.handle(n("p1"), LearnerMsg::Progress { first_unchosen: 1 });
        let asked: Vec<_> = (0..11).flat_map(|_| fetches(&l.tick())).collect();
        assert_eq!(asked.len(), 3);
        assert!(fetched(&mut l, "a1", (0, 1), vec![(0, b(1), set(7))])
            .decided
            .is_empty());
        let out = fetched(&mut l, "a2", (0, 1), vec![(0, b(3), set(9))]);
        assert_eq!(out.decided, vec![(0, set(9))]);
    }

    #[test]
    fn an_acceptor_that_compacted_a_slot_is_no_witness_for_it() {
        // Found by the simulator: slot 0 was chosen as 9 in ballot 3; two
        // acceptors compacted it away, the third still holds an older 7.
        let mut l = learner();
        l.handle(n("p1"), LearnerMsg::Progress { first_unchosen: 2 });
        let asked: Vec<_> = (0..11).flat_map(|_| fetches(&l.tick())).collect();
        let range = (asked[0].1, asked[0].2);
        assert_eq!(range, (0, 2));
        let answer = |l: &mut Learner, from: &str, entries: Vec<PromiseEntry>, compacted_below| {
            let round = l.repair.as_ref().map_or(u64::MAX, |r| r.round);
            l.handle(
                n(from),
                LearnerMsg::Fetched {
                    from_slot: 0,
                    to_slot: 2,
                    round,
                    covered_to: 2,
                    entries,
                    compacted_below,
                },
            )
        };
        let stale = PromiseEntry {
            slot: 0,
            ballot: b(1),
            value: set(7),
        };
        assert!(answer(&mut l, "a1", vec![stale], 0).decided.is_empty());
        let out = answer(&mut l, "a2", vec![], 1);
        assert!(out.decided.is_empty(), "{:?}", out.decided);
        // The compaction mark moved the learner past slot 0 instead.
        assert_eq!(l.first_unlearned(), 1);
        assert!(l.chosen(0).is_none());
    }

    #[test]
    fn mixed_ballots_never_decide_a_slot_not_known_chosen() {
        // Same answers, but nobody said slot 0 is chosen: v in ballots 1 and 3
        // is not a decision (a ballot-2 value elsewhere could still win).
        let mut l = learner();
        accepted(&mut l, "a3", b(9), 5, Value::Noop); // evidence the log goes on
        let asked: Vec<_> = (0..11).flat_map(|_| fetches(&l.tick())).collect();
        assert_eq!(asked[0].1, 0);
        let range = (asked[0].1, asked[0].2);
        assert!(fetched(&mut l, "a1", range, vec![(0, b(1), set(7))])
            .decided
            .is_empty());
        assert!(fetched(&mut l, "a2", range, vec![(0, b(3), set(7))])
            .decided
            .is_empty());
        assert_eq!(l.first_unlearned(), 0);
    }

    #[test]
    fn a_late_answer_to_an_earlier_round_is_no_witness() {
        // Found by the simulator (seed 9165100): slot 0 held 7 in ballot 1
        // at a1 only, then ballot 2 chose 9 with a1 and a2. a1's answer to
        // an earlier round, from before ballot 2, arrives late.
        let mut l = learner();
        l.handle(n("p1"), LearnerMsg::Progress { first_unchosen: 1 });
        let (range, first) = next_round(&mut l);
        let (again, second) = next_round(&mut l);
        assert_eq!(range, again, "rounds repeat the same range");
        assert_ne!(first, second, "but not the same id");
        assert!(fetched_in(&mut l, "a3", range, second, vec![])
            .decided
            .is_empty());
        let late = fetched_in(&mut l, "a1", range, first, vec![(0, b(1), set(7))]);
        assert!(late.decided.is_empty(), "{:?}", late.decided);
        let out = fetched_in(&mut l, "a2", range, second, vec![(0, b(2), set(9))]);
        assert_eq!(out.decided, vec![(0, set(9))]);
    }

    #[test]
    fn a_slot_reported_chosen_after_the_round_went_out_is_not_decided_by_it() {
        // The round goes out while slot 0 is not known chosen; a3 answers
        // before the choice (holding nothing), a1 holds 7 from ballot 1.
        // Ballot 2 then chooses 9 (a2, a3) and the leader reports it.
        let mut l = learner();
        accepted(&mut l, "a3", b(9), 5, Value::Noop); // evidence the log goes on
        let (range, round) = next_round(&mut l);
        assert_eq!(range.0, 0);
        fetched_in(&mut l, "a3", range, round, vec![]);
        l.handle(n("p1"), LearnerMsg::Progress { first_unchosen: 1 });
        let out = fetched_in(&mut l, "a1", range, round, vec![(0, b(1), set(7))]);
        assert!(out.decided.is_empty(), "{:?}", out.decided);
        assert!(l.chosen(0).is_none());
        // The next round, sent after the report, decides it.
        let (range, round) = next_round(&mut l);
        fetched_in(&mut l, "a1", range, round, vec![(0, b(1), set(7))]);
        let out = fetched_in(&mut l, "a2", range, round, vec![(0, b(2), set(9))]);
        assert_eq!(out.decided, vec![(0, set(9))]);
    }

    /// A value of `mib` MiB.
    fn big(mib: usize) -> Value {
        Value::Batch(vec![synod_types::Command {
            client: synod_types::ClientId(1),
            seq: 1,
            op: vec![0; mib << 20].into(),
        }])
    }

    #[test]
    fn an_answer_cut_short_speaks_only_for_the_slots_it_covers() {
        // a1 cut its answer before slot 1: it may hold a higher ballot
        // there, so it must not count as having accepted nothing.
        let mut l = learner();
        accepted(&mut l, "a3", b(9), 5, Value::Noop); // evidence the log goes on
        l.handle(n("p1"), LearnerMsg::Progress { first_unchosen: 2 });
        let (range, round) = next_round(&mut l);
        assert_eq!(range.0, 0);
        let answer = |l: &mut Learner, from: &str, covered_to, entries: Vec<PromiseEntry>| {
            l.handle(
                n(from),
                LearnerMsg::Fetched {
                    from_slot: range.0,
                    to_slot: range.1,
                    round,
                    covered_to,
                    entries,
                    compacted_below: 0,
                },
            )
        };
        let at = |slot, value| PromiseEntry {
            slot,
            ballot: b(1),
            value,
        };
        answer(&mut l, "a1", 1, vec![at(0, set(4))]);
        let out = answer(&mut l, "a2", range.1, vec![at(0, set(4)), at(1, set(7))]);
        assert_eq!(out.decided, vec![(0, set(4))], "slot 1 has one witness");
        assert!(l.chosen(1).is_none());
    }

    #[test]
    fn catch_up_answers_stay_within_the_message_budget() {
        let mut l = learner();
        for slot in 0..3 {
            accepted(&mut l, "a1", b(1), slot, big(3));
            accepted(&mut l, "a2", b(1), slot, big(3));
        }
        let out = l.handle(n("r1"), LearnerMsg::CatchUp { from_slot: 0 });
        match &out.send[..] {
            [(_, Message::Replica(ReplicaMsg::Decisions { entries, more }))] => {
                assert_eq!(entries.len(), 1, "3 MiB each: one fits a 4 MiB budget");
                assert!(more);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compaction_drops_old_decisions_and_redirects_catch_up() {
        let mut l = learner();
        for slot in 0..6 {
            accepted(&mut l, "a1", b(1), slot, Value::Noop);
            accepted(&mut l, "a2", b(1), slot, Value::Noop);
        }
        // Only a proposer may order it.
        l.handle(n("r1"), LearnerMsg::Compact { below: 6 });
        assert!(l.chosen(0).is_some());
        l.handle(n("p1"), LearnerMsg::Compact { below: 4 });
        assert!(l.chosen(3).is_none() && l.chosen(4).is_some());
        let out = l.handle(n("r1"), LearnerMsg::CatchUp { from_slot: 2 });
        assert_eq!(
            out.send,
            vec![(
                n("r1"),
                Message::Replica(ReplicaMsg::Compacted { below: 4 })
            )]
        );
        let out = l.handle(n("r1"), LearnerMsg::CatchUp { from_slot: 4 });
        assert!(
            matches!(&out.send[0].1, Message::Replica(ReplicaMsg::Decisions { entries, .. }) if entries.len() == 2)
        );
        // A restarted learner told to compact past what it knows starts there.
        let mut fresh = learner();
        fresh.handle(n("p1"), LearnerMsg::Compact { below: 100 });
        assert_eq!(fresh.first_unlearned(), 100);
    }

    #[test]
    fn two_values_in_one_ballot_are_never_counted_together() {
        let mut l = learner();
        accepted(&mut l, "a1", b(1), 0, Value::Noop);
        let other = Value::Batch(vec![]);
        assert!(accepted(&mut l, "a2", b(1), 0, other).decided.is_empty());
    }
}
