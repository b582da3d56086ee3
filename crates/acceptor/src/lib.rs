//! The acceptor: Paxos' memory.
//!
//! [`Acceptor`] is the protocol logic, a pure function of its state and one
//! message: it returns the [`Record`]s to make durable and the messages to
//! send, and the caller must sync the records before sending any message
//! (the [`actor`] shell does so with group commit). An acceptor
//!
//! - promises a ballot in reply to `Prepare` (p1a) only if it is higher than
//!   any it promised, and reports everything it accepted from the proposer's
//!   first unchosen slot on (p1b). Strictly higher: a proposer that restarted
//!   without memory may build a ballot it used before, and two phase 1 runs
//!   under one ballot could pick different values for one slot in that same
//!   ballot. Because any two majorities intersect, the second run cannot
//!   collect a majority of promises, and the proposer moves to a higher round;
//! - resends what it accepted in a slot range when a learner asks (`Fetch`),
//!   so lost p2b copies can be recovered;
//! - accepts a value in reply to `Accept` (p2a) only if it has not promised a
//!   higher ballot, and tells the proposer and every learner (p2b; only
//!   the learner on its own node gets the value with the vote, the others
//!   have it from the leader);
//! - answers a refused ballot with `Preempted`, naming the ballot it promised,
//!   so the proposer can step down instead of retrying blindly;
//! - confirms a leader's ballot for a read-index round (`Confirm`) if it has
//!   promised nothing higher, so the leader knows it still leads;
//! - grants a pre-vote (`PreVote`) only for a ballot it would promise, and
//!   only once it has heard nothing for `lease_ticks` from the proposer
//!   whose ballot it follows (its phase 1, accepts, read confirmations or
//!   heartbeats). A proposer runs phase 1 only after a majority granted, so
//!   one that was cut off from a healthy leader (a partition, a one-way
//!   link) cannot raise its ballot and depose that leader when it comes
//!   back; the acceptors still hear the leader and say no. This is Raft's
//!   pre-vote with acceptors as the voters; it touches liveness only, never
//!   what a promise or an accept means, and needs no disk write. Time is
//!   a tick counter advanced by [`Acceptor::tick`];
//! - forgets every slot below the leader's `Compact` mark. The leader sends
//!   one only when a majority of replicas hold durable snapshots covering
//!   those slots: they are chosen, applied, and recoverable without us. The
//!   mark is durable and reported in every promise, so a new leader never
//!   re-proposes (no-ops!) into slots whose chosen value we dropped. A p2a
//!   for such a slot is not accepted; its sender gets the mark back
//!   (`Compacted`), since a leader whose phase 1 saw an older mark would
//!   otherwise wait there for votes forever.
//!
//! Because a compacted log keeps growing on disk with dead records, the
//! logic asks its shell to rewrite storage (`Output::rewrite`) once the
//! records written since the last rewrite outnumber the live ones.

#[cfg(feature = "actor")]
pub mod actor;

use synod_storage::{AcceptorState, Record};
use synod_types::{
    AcceptorMsg, Ballot, LearnerMsg, Message, NodeId, PromiseEntry, ProposerMsg, Slot, Value,
};

/// Effects of handling one message. `persist` must be durable before any of
/// `send` leaves the node. `rewrite`: replace storage with
/// [`Acceptor::state`] (after `persist`), to drop dead records.
#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub persist: Vec<Record>,
    pub send: Vec<(NodeId, Message)>,
    pub rewrite: bool,
}

pub struct Acceptor {
    /// Our node id: a learner with the same id shares our process and gets
    /// values with its votes.
    me: NodeId,
    learners: Vec<NodeId>,
    state: AcceptorState,
    /// Records written since storage last held only live state.
    written: u64,
    now: u64,
    /// When the proposer of the ballot we follow last showed it is alive;
    /// `None` since a restart.
    contact: Option<u64>,
    /// Pre-votes wait this long after the last contact.
    lease_ticks: u64,
    /// Bytes of values one promise page or fetch answer gathers.
    message_budget: usize,
    /// A leader told us every slot below this is chosen. Memory only: a
    /// fact once true stays true, and after a restart we simply know less.
    chosen_below: Slot,
    proposers: Vec<NodeId>,
}

/// Rewrite once this many more records were written than are live.
const REWRITE_SLACK: u64 = 4096;

impl Acceptor {
    /// `recovered` is what storage replayed; a fresh acceptor passes the default.
    pub fn new(me: NodeId, learners: Vec<NodeId>, recovered: AcceptorState) -> Self {
        let written = recovered.accepted.len() as u64;
        Acceptor {
            me,
            learners,
            state: recovered,
            written,
            now: 0,
            contact: None,
            lease_ticks: 0,
            message_budget: synod_types::MESSAGE_BUDGET,
            chosen_below: 0,
            proposers: Vec::new(),
        }
    }

    /// Overrides [`synod_types::MESSAGE_BUDGET`] (the simulator shrinks it
    /// so that every answer comes in pages).
    pub fn with_message_budget(mut self, bytes: usize) -> Self {
        self.message_budget = bytes;
        self
    }

    /// The proposers whose heartbeats may tell us the chosen prefix. With
    /// none (the default) we never learn one and promise from wherever a
    /// candidate asks: a slot number from anyone else could make every
    /// later leader skip a slot that is not chosen.
    pub fn with_proposers(mut self, proposers: Vec<NodeId>) -> Self {
        self.proposers = proposers;
        self
    }

    /// Sets how long after the last sign of life from the leader we follow
    /// pre-votes are refused: the proposers' shortest election timeout.
    /// With 0 (the default) pre-votes are granted for any ballot we would
    /// promise.
    pub fn with_pre_vote_lease(mut self, ticks: u64) -> Self {
        self.lease_ticks = ticks;
        self
    }

    /// Advances the clock by one tick.
    pub fn tick(&mut self) {
        self.now += 1;
    }

    /// The proposer of `ballot` reached us and `ballot` is at least what we
    /// promised: the leader (or candidate) we follow is alive.
    fn touch(&mut self, ballot: &Ballot) {
        if *ballot >= self.state.promised {
            self.contact = Some(self.now);
        }
    }

    fn handle_pre_vote(&mut self, from: NodeId, ballot: Ballot) -> Output {
        let mut out = Output::default();
        let quiet = self
            .contact
            .is_none_or(|t| self.now - t >= self.lease_ticks);
        // The proposer we follow may ask again (its phase 1 stalled): its
        // own liveness is no reason to refuse it.
        let ours = self.state.promised.node == from;
        if ballot <= self.state.promised {
            // Phase 1 would fail: say why, so a proposer that restarted
            // without memory of its ballots moves above ours.
            out.send.push((from, self.preempted(ballot)));
        } else if quiet || ours {
            out.send.push((
                from,
                Message::Proposer(ProposerMsg::PreVoteGranted { ballot }),
            ));
        }
        out
    }

    /// The whole durable state, for storage rewrites.
    pub fn state(&self) -> &AcceptorState {
        &self.state
    }

    pub fn promised(&self) -> &Ballot {
        &self.state.promised
    }

    pub fn accepted(&self, slot: Slot) -> Option<&(Ballot, Value)> {
        self.state.accepted.get(&slot)
    }

    pub fn handle(&mut self, from: NodeId, msg: AcceptorMsg) -> Output {
        // A ballot is its proposer's own: a message carrying one may only
        // come from that proposer, and only from a configured one. Anyone
        // else (a peer in another role, or a process that says it is one)
        // could otherwise take promises or write accepted values in a
        // proposer's name.
        let ballot = match &msg {
            AcceptorMsg::Prepare { ballot, .. }
            | AcceptorMsg::Accept { ballot, .. }
            | AcceptorMsg::Confirm { ballot, .. }
            | AcceptorMsg::Heartbeat { ballot, .. }
            | AcceptorMsg::PreVote { ballot } => Some(ballot),
            AcceptorMsg::Fetch { .. } | AcceptorMsg::Compact { .. } => None,
        };
        let known = self.proposers.is_empty() || self.proposers.contains(&from);
        if ballot.is_some_and(|b| b.node != from || !known) {
            tracing::debug!(%from, ?ballot, "ignoring a ballot not sent by its proposer");
            return Output::default();
        }
        match &msg {
            AcceptorMsg::Prepare { ballot, .. }
            | AcceptorMsg::Accept { ballot, .. }
            | AcceptorMsg::Confirm { ballot, .. }
            | AcceptorMsg::Heartbeat { ballot, .. } => self.touch(ballot),
            AcceptorMsg::Fetch { .. }
            | AcceptorMsg::Compact { .. }
            | AcceptorMsg::PreVote { .. } => {}
        }
        let mut out = match msg {
            AcceptorMsg::Prepare { ballot, from_slot } => {
                self.handle_prepare(from, ballot, from_slot)
            }
            AcceptorMsg::Accept {
                ballot,
                slot,
                value,
            } => self.handle_accept(from, ballot, slot, value),
            AcceptorMsg::Heartbeat {
                ballot,
                first_unchosen,
            } => {
                // Even a deposed leader's progress is true: chosen is forever.
                if self.proposers.contains(&from) {
                    self.chosen_below = self.chosen_below.max(first_unchosen);
                }
                let mut out = Output::default();
                let answer = if ballot >= self.state.promised {
                    Message::Proposer(ProposerMsg::HeartbeatAck { ballot })
                } else {
                    self.preempted(ballot)
                };
                out.send.push((from, answer));
                out
            }
            AcceptorMsg::PreVote { ballot } => self.handle_pre_vote(from, ballot),
            AcceptorMsg::Fetch {
                from_slot,
                to_slot,
                round,
            } => self.handle_fetch(from, from_slot, to_slot, round),
            // Forgetting is only safe below what a leader knows replicas
            // hold in snapshots: nobody else may order it.
            AcceptorMsg::Compact { below } if self.proposers.contains(&from) => {
                self.handle_compact(below)
            }
            AcceptorMsg::Compact { .. } => Output::default(),
            AcceptorMsg::Confirm { ballot, round } => self.handle_confirm(from, ballot, round),
        };
        self.written += out.persist.len() as u64;
        if self.written > 2 * self.state.accepted.len() as u64 + REWRITE_SLACK {
            self.written = self.state.accepted.len() as u64 + 2;
            out.rewrite = true;
        }
        out
    }

    fn handle_compact(&mut self, below: Slot) -> Output {
        let mut out = Output::default();
        if below > self.state.compacted_below {
            self.state.compact(below);
            out.persist.push(Record::Compacted { below });
        }
        out
    }

    /// A read-index round: confirming `ballot` tells its leader that no
    /// higher ballot has got past us, so no other leader can have chosen
    /// anything with our help. Lower promises are fine (we may have missed
    /// the leader's phase 1); the answer changes nothing, so nothing is
    /// persisted, and the shell still sends it only after every earlier
    /// record is durable.
    fn handle_confirm(&mut self, from: NodeId, ballot: Ballot, round: u64) -> Output {
        let msg = if ballot >= self.state.promised {
            Message::Proposer(ProposerMsg::Confirmed { ballot, round })
        } else {
            self.preempted(ballot)
        };
        Output {
            send: vec![(from, msg)],
            ..Output::default()
        }
    }

    fn handle_fetch(&mut self, from: NodeId, from_slot: Slot, to_slot: Slot, round: u64) -> Output {
        let to_slot = to_slot.max(from_slot);
        let held = || self.state.accepted.range(from_slot..to_slot);
        let n = synod_types::fits_in_budget(
            held().map(|(_, (_, v))| v.approx_size()),
            self.message_budget,
        );
        // Cut short, the answer covers up to the first slot it leaves out.
        let covered_to = held().nth(n).map_or(to_slot, |(slot, _)| *slot);
        let entries = held()
            .take(n)
            .map(|(slot, (ballot, value))| PromiseEntry {
                slot: *slot,
                ballot: ballot.clone(),
                value: value.clone(),
            })
            .collect();
        Output {
            persist: Vec::new(),
            rewrite: false,
            send: vec![(
                from,
                Message::Learner(LearnerMsg::Fetched {
                    from_slot,
                    to_slot,
                    round,
                    covered_to,
                    entries,
                    compacted_below: self.state.compacted_below,
                }),
            )],
        }
    }

    fn handle_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: Slot) -> Output {
        let mut out = Output::default();
        if ballot <= self.state.promised {
            out.send.push((from, self.preempted(ballot)));
            return out;
        }
        self.state.promised = ballot.clone();
        out.persist.push(Record::Promise(ballot.clone()));
        // One page per message budget: a promise over a long uncompacted
        // log (a proposer that restarted without its progress) would
        // otherwise exceed the frame limit and be dropped at the sender,
        // every time, and no leader could ever be elected.
        let from_slot = from_slot.max(self.chosen_below);
        let mut rest: Vec<PromiseEntry> = self
            .state
            .accepted
            .range(from_slot..)
            .map(|(slot, (b, v))| PromiseEntry {
                slot: *slot,
                ballot: b.clone(),
                value: v.clone(),
            })
            .collect();
        let mut page_from = from_slot;
        loop {
            let n = synod_types::fits_in_budget(
                rest.iter().map(|e| e.value.approx_size()),
                self.message_budget,
            );
            let later = rest.split_off(n);
            let more_from = later.first().map(|e| e.slot);
            out.send.push((
                from.clone(),
                Message::Proposer(ProposerMsg::Promise {
                    ballot: ballot.clone(),
                    accepted: std::mem::replace(&mut rest, later),
                    compacted_below: self.state.compacted_below,
                    chosen_below: self.chosen_below,
                    from_slot: page_from,
                    more_from,
                }),
            ));
            match more_from {
                Some(next) => page_from = next,
                None => break,
            }
        }
        out
    }

    fn handle_accept(&mut self, from: NodeId, ballot: Ballot, slot: Slot, value: Value) -> Output {
        let mut out = Output::default();
        if ballot < self.state.promised {
            out.send.push((from, self.preempted(ballot)));
            return out;
        }
        if slot < self.state.compacted_below {
            // Chosen long ago and forgotten on purpose. A leader still
            // driving it learned its start from a phase 1 that saw an older
            // mark (a deposed leader's `Compact` can land after it): tell
            // it, or it waits for votes that will never come.
            out.send.push((
                from,
                Message::Proposer(ProposerMsg::Compacted {
                    below: self.state.compacted_below,
                }),
            ));
            return out;
        }
        // A retransmitted p2a we already hold needs no second disk write,
        // only a second answer (the first may have been lost).
        let already =
            matches!(self.state.accepted.get(&slot), Some((b, v)) if *b == ballot && *v == value);
        if !already {
            self.state.promised = ballot.clone();
            self.state
                .accepted
                .insert(slot, (ballot.clone(), value.clone()));
            out.persist.push(Record::Accept {
                slot,
                ballot: ballot.clone(),
                value: value.clone(),
            });
        }
        for l in &self.learners {
            out.send.push((
                l.clone(),
                Message::Learner(LearnerMsg::Accepted {
                    ballot: ballot.clone(),
                    slot,
                    value: (*l == self.me).then(|| value.clone()),
                }),
            ));
        }
        out.send.push((
            from,
            Message::Proposer(ProposerMsg::Accepted { ballot, slot }),
        ));
        out
    }

    fn preempted(&self, ballot: Ballot) -> Message {
        Message::Proposer(ProposerMsg::Preempted {
            ballot,
            promised: self.state.promised.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_types::{ClientId, Command};

    fn b(r: u64, n: &str) -> Ballot {
        Ballot::new(r, NodeId::new(n))
    }
    fn v(x: u8) -> Value {
        Value::Batch(vec![Command {
            client: ClientId(9),
            seq: 1,
            op: vec![x].into(),
        }])
    }
    /// A 3 MiB value: a message budget holds one of these, not two.
    fn big(x: u8) -> Value {
        Value::Batch(vec![Command {
            client: ClientId(9),
            seq: x as u64,
            op: vec![x; 3 << 20].into(),
        }])
    }
    /// Acceptor `n1`; learner `n1` shares its node, `l1` does not.
    fn acc() -> Acceptor {
        Acceptor::new(
            NodeId::new("n1"),
            vec![NodeId::new("l1"), NodeId::new("n1")],
            AcceptorState::default(),
        )
        .with_proposers(vec![
            NodeId::new("p0"),
            NodeId::new("p1"),
            NodeId::new("p2"),
        ])
    }
    fn prepare(a: &mut Acceptor, ballot: Ballot, from_slot: Slot) -> Output {
        a.handle(
            ballot.node.clone(),
            AcceptorMsg::Prepare { ballot, from_slot },
        )
    }
    fn accept(a: &mut Acceptor, ballot: Ballot, slot: Slot, value: Value) -> Output {
        a.handle(
            ballot.node.clone(),
            AcceptorMsg::Accept {
                ballot,
                slot,
                value,
            },
        )
    }

    fn pre_vote(a: &mut Acceptor, ballot: Ballot) -> Vec<(NodeId, Message)> {
        let out = a.handle(ballot.node.clone(), AcceptorMsg::PreVote { ballot });
        assert!(out.persist.is_empty(), "a pre-vote changes nothing");
        out.send
    }
    fn granted(ballot: &Ballot) -> Vec<(NodeId, Message)> {
        vec![(
            ballot.node.clone(),
            Message::Proposer(ProposerMsg::PreVoteGranted {
                ballot: ballot.clone(),
            }),
        )]
    }

    #[test]
    fn pre_votes_wait_until_the_leader_we_follow_goes_quiet() {
        let mut a = acc().with_pre_vote_lease(30);
        // Nobody led yet: granted at once, and nothing is promised.
        assert_eq!(pre_vote(&mut a, b(1, "p2")), granted(&b(1, "p2")));
        assert_eq!(a.promised(), &Ballot::zero());
        prepare(&mut a, b(1, "p1"), 0);
        for t in 0..60 {
            a.tick();
            if t % 10 == 9 {
                // The leader's heartbeats (or accepts) keep it alive.
                a.handle(
                    NodeId::new("p1"),
                    AcceptorMsg::Heartbeat {
                        ballot: b(1, "p1"),
                        first_unchosen: 0,
                    },
                );
            }
            assert!(pre_vote(&mut a, b(2, "p2")).is_empty(), "tick {t}");
        }
        // A stale leader's heartbeat is no sign of life of ours.
        a.handle(
            NodeId::new("p0"),
            AcceptorMsg::Heartbeat {
                ballot: b(0, "p0"),
                first_unchosen: 0,
            },
        );
        for _ in 0..29 {
            a.tick();
        }
        assert!(pre_vote(&mut a, b(2, "p2")).is_empty());
        a.tick();
        assert_eq!(pre_vote(&mut a, b(2, "p2")), granted(&b(2, "p2")));
        // Too low a ballot gets the promise it lost to, whatever the time.
        let low = pre_vote(&mut a, b(1, "p0"));
        assert!(
            matches!(&low[..], [(_, Message::Proposer(ProposerMsg::Preempted { promised, .. }))] if *promised == b(1, "p1")),
            "{low:?}"
        );
    }

    #[test]
    fn the_proposer_we_follow_may_always_ask_again() {
        let mut a = acc().with_pre_vote_lease(30);
        prepare(&mut a, b(3, "p2"), 0);
        // Its phase 1 stalled; its own retransmissions keep it "alive".
        assert!(pre_vote(&mut a, b(4, "p1")).is_empty());
        assert_eq!(pre_vote(&mut a, b(4, "p2")), granted(&b(4, "p2")));
    }

    #[test]
    fn confirm_answers_without_persisting_and_refuses_under_a_higher_promise() {
        let mut a = acc();
        prepare(&mut a, b(2, "p2"), 0);
        let confirm = |a: &mut Acceptor, ballot: Ballot| {
            a.handle(
                ballot.node.clone(),
                AcceptorMsg::Confirm { ballot, round: 9 },
            )
        };
        // Its own promised ballot and a higher one we never heard of: yes.
        for ballot in [b(2, "p2"), b(3, "p1")] {
            let out = confirm(&mut a, ballot.clone());
            assert!(out.persist.is_empty());
            assert_eq!(
                out.send,
                vec![(
                    ballot.node.clone(),
                    Message::Proposer(ProposerMsg::Confirmed { ballot, round: 9 })
                )]
            );
        }
        assert_eq!(a.promised(), &b(2, "p2"), "a confirm promises nothing");
        // A deposed leader is told who replaced it.
        let out = confirm(&mut a, b(1, "p1"));
        assert_eq!(
            out.send,
            vec![(
                NodeId::new("p1"),
                Message::Proposer(ProposerMsg::Preempted {
                    ballot: b(1, "p1"),
                    promised: b(2, "p2")
                })
            )]
        );
    }

    #[test]
    fn promise_is_persisted_and_reports_accepted_from_slot() {
        let mut a = acc();
        accept(&mut a, b(1, "p1"), 3, v(3));
        accept(&mut a, b(1, "p1"), 7, v(7));
        let out = prepare(&mut a, b(2, "p2"), 4);
        assert_eq!(out.persist, vec![Record::Promise(b(2, "p2"))]);
        assert_eq!(
            out.send,
            vec![(
                NodeId::new("p2"),
                Message::Proposer(ProposerMsg::Promise {
                    ballot: b(2, "p2"),
                    accepted: vec![PromiseEntry {
                        slot: 7,
                        ballot: b(1, "p1"),
                        value: v(7)
                    }],
                    compacted_below: 0,
                    chosen_below: 0,
                    from_slot: 4,
                    more_from: None,
                })
            )]
        );
    }

    #[test]
    fn a_promise_starts_where_a_leader_said_the_log_is_chosen() {
        let mut a = acc();
        for slot in 0..6 {
            accept(&mut a, b(1, "p1"), slot, v(slot as u8));
        }
        a.handle(
            NodeId::new("p1"),
            AcceptorMsg::Heartbeat {
                ballot: b(1, "p1"),
                first_unchosen: 4,
            },
        );
        // An older leader's lower mark does not move it back, and nobody
        // but a proposer moves it at all.
        a.handle(
            NodeId::new("p0"),
            AcceptorMsg::Heartbeat {
                ballot: b(0, "p0"),
                first_unchosen: 2,
            },
        );
        a.handle(
            NodeId::new("l1"),
            AcceptorMsg::Heartbeat {
                ballot: b(1, "p1"),
                first_unchosen: 6,
            },
        );
        match &prepare(&mut a, b(2, "p2"), 1).send[..] {
            [(
                _,
                Message::Proposer(ProposerMsg::Promise {
                    accepted,
                    chosen_below,
                    from_slot,
                    more_from: None,
                    ..
                }),
            )] => {
                assert_eq!(*chosen_below, 4);
                assert_eq!(*from_slot, 4);
                assert_eq!(
                    accepted.iter().map(|e| e.slot).collect::<Vec<_>>(),
                    vec![4, 5]
                );
            }
            m => panic!("unexpected {m:?}"),
        }
        // The mark is memory only: a restarted acceptor reports everything
        // it holds again (and nothing is lost from disk).
        let mut fresh = Acceptor::new(NodeId::new("a1"), vec![], a.state.clone());
        match &prepare(&mut fresh, b(3, "p2"), 1).send[0].1 {
            Message::Proposer(ProposerMsg::Promise {
                accepted,
                chosen_below,
                ..
            }) => {
                assert_eq!(*chosen_below, 0);
                assert_eq!(accepted.len(), 5);
            }
            m => panic!("unexpected {m:?}"),
        }
    }

    #[test]
    fn a_promise_over_more_than_a_message_comes_in_pages() {
        let mut a = acc();
        for slot in [3, 5, 9] {
            accept(&mut a, b(1, "p1"), slot, big(slot as u8));
        }
        let out = prepare(&mut a, b(2, "p2"), 1);
        assert_eq!(
            out.persist,
            vec![Record::Promise(b(2, "p2"))],
            "one promise"
        );
        let pages: Vec<(Slot, Option<Slot>, Vec<Slot>)> = out
            .send
            .iter()
            .map(|(_, m)| match m {
                Message::Proposer(ProposerMsg::Promise {
                    accepted,
                    from_slot,
                    more_from,
                    ..
                }) => (
                    *from_slot,
                    *more_from,
                    accepted.iter().map(|e| e.slot).collect(),
                ),
                m => panic!("{m:?}"),
            })
            .collect();
        assert_eq!(
            pages,
            vec![
                (1, Some(5), vec![3]),
                (5, Some(9), vec![5]),
                (9, None, vec![9])
            ]
        );
    }

    #[test]
    fn a_ballot_counts_only_from_its_own_configured_proposer() {
        let mut a = acc();
        // p2's ballot sent by p1, by a learner, and by a stranger that
        // names itself in the ballot: no promise, no vote, nothing written.
        for (from, ballot) in [("p1", b(5, "p2")), ("l1", b(5, "p2")), ("x9", b(5, "x9"))] {
            let from = NodeId::new(from);
            let msgs = [
                AcceptorMsg::Prepare {
                    ballot: ballot.clone(),
                    from_slot: 0,
                },
                AcceptorMsg::Accept {
                    ballot: ballot.clone(),
                    slot: 0,
                    value: v(1),
                },
                AcceptorMsg::PreVote {
                    ballot: ballot.clone(),
                },
                AcceptorMsg::Heartbeat {
                    ballot: ballot.clone(),
                    first_unchosen: 0,
                },
                AcceptorMsg::Confirm { ballot, round: 1 },
            ];
            for msg in msgs {
                let out = a.handle(from.clone(), msg);
                assert!(
                    out.persist.is_empty() && out.send.is_empty(),
                    "{from}: {out:?}"
                );
            }
        }
        assert!(a.accepted(0).is_none());
        // The same Prepare from p2 itself is promised.
        let out = prepare(&mut a, b(5, "p2"), 0);
        assert_eq!(out.persist, vec![Record::Promise(b(5, "p2"))]);
    }

    #[test]
    fn compaction_forgets_below_the_mark_and_promises_report_it() {
        let mut a = acc();
        for slot in 0..5 {
            accept(&mut a, b(1, "p1"), slot, v(slot as u8));
        }
        // Only a proposer may order it.
        let stray = a.handle(NodeId::new("l1"), AcceptorMsg::Compact { below: 5 });
        assert!(stray.persist.is_empty() && a.accepted(0).is_some());
        let out = a.handle(NodeId::new("p1"), AcceptorMsg::Compact { below: 3 });
        assert_eq!(out.persist, vec![Record::Compacted { below: 3 }]);
        assert!(out.send.is_empty());
        assert!(a.accepted(2).is_none() && a.accepted(3).is_some());
        // Never backwards.
        assert!(a
            .handle(NodeId::new("p1"), AcceptorMsg::Compact { below: 1 })
            .persist
            .is_empty());
        // A late p2a below the mark is not re-accepted and gets no vote;
        // its sender hears where the mark is, so it stops waiting there.
        let late = accept(&mut a, b(1, "p1"), 1, v(1));
        assert!(late.persist.is_empty() && !late.rewrite);
        assert_eq!(
            late.send,
            vec![(
                NodeId::new("p1"),
                Message::Proposer(ProposerMsg::Compacted { below: 3 })
            )]
        );
        assert!(a.accepted(1).is_none());
        match &prepare(&mut a, b(2, "p2"), 0).send[0].1 {
            Message::Proposer(ProposerMsg::Promise {
                accepted,
                compacted_below,
                ..
            }) => {
                assert_eq!(*compacted_below, 3);
                assert_eq!(
                    accepted.iter().map(|e| e.slot).collect::<Vec<_>>(),
                    vec![3, 4]
                );
            }
            m => panic!("unexpected {m:?}"),
        }
    }

    #[test]
    fn storage_rewrite_is_requested_once_dead_records_pile_up() {
        let mut a = acc();
        let mut rewrites = 0;
        for slot in 0..20_000u64 {
            rewrites += accept(&mut a, b(1, "p1"), slot, Value::Noop).rewrite as u32;
            if slot % 100 == 99 {
                rewrites += a
                    .handle(NodeId::new("p1"), AcceptorMsg::Compact { below: slot - 50 })
                    .rewrite as u32;
            }
        }
        assert!(a.state().accepted.len() <= 150);
        assert!((2..=6).contains(&rewrites), "{rewrites} rewrites");
    }

    #[test]
    fn lower_ballots_are_refused_with_the_promised_one() {
        let mut a = acc();
        prepare(&mut a, b(5, "p2"), 0);
        for out in [
            prepare(&mut a, b(4, "p1"), 0),
            accept(&mut a, b(5, "p1"), 0, v(1)),
        ] {
            assert!(
                out.persist.is_empty(),
                "a refusal must not change durable state"
            );
            assert_eq!(
                out.send,
                vec![(
                    NodeId::new("p1"),
                    Message::Proposer(ProposerMsg::Preempted {
                        ballot: out_ballot(&out),
                        promised: b(5, "p2")
                    })
                )]
            );
        }
        assert!(a.accepted(0).is_none());
    }

    fn out_ballot(out: &Output) -> Ballot {
        match &out.send[0].1 {
            Message::Proposer(ProposerMsg::Preempted { ballot, .. }) => ballot.clone(),
            m => panic!("unexpected {m:?}"),
        }
    }

    #[test]
    fn a_ballot_is_promised_once() {
        let mut a = acc();
        assert!(matches!(
            prepare(&mut a, b(2, "p1"), 0).send[0].1,
            Message::Proposer(ProposerMsg::Promise { .. })
        ));
        // The same ballot again (a restarted proposer reusing it) is refused.
        let again = prepare(&mut a, b(2, "p1"), 0);
        assert!(again.persist.is_empty());
        assert_eq!(
            again.send,
            vec![(
                NodeId::new("p1"),
                Message::Proposer(ProposerMsg::Preempted {
                    ballot: b(2, "p1"),
                    promised: b(2, "p1")
                })
            )]
        );
    }

    #[test]
    fn fetch_resends_accepted_values_in_range_to_the_learner() {
        let mut a = acc();
        for slot in [1, 4, 9] {
            accept(&mut a, b(1, "p1"), slot, v(slot as u8));
        }
        let out = a.handle(
            NodeId::new("l2"),
            AcceptorMsg::Fetch {
                from_slot: 2,
                to_slot: 9,
                round: 77,
            },
        );
        assert!(out.persist.is_empty());
        assert_eq!(
            out.send,
            vec![(
                NodeId::new("l2"),
                Message::Learner(LearnerMsg::Fetched {
                    from_slot: 2,
                    to_slot: 9,
                    round: 77,
                    covered_to: 9,
                    entries: vec![PromiseEntry {
                        slot: 4,
                        ballot: b(1, "p1"),
                        value: v(4)
                    }],
                    compacted_below: 0,
                })
            )]
        );
    }

    #[test]
    fn a_fetch_answer_stops_at_the_message_budget_and_says_where() {
        let mut a = acc();
        for slot in [2, 5, 7] {
            accept(&mut a, b(1, "p1"), slot, big(slot as u8));
        }
        let out = a.handle(
            NodeId::new("l2"),
            AcceptorMsg::Fetch {
                from_slot: 0,
                to_slot: 9,
                round: 1,
            },
        );
        match &out.send[..] {
            [(
                _,
                Message::Learner(LearnerMsg::Fetched {
                    entries,
                    covered_to,
                    to_slot,
                    ..
                }),
            )] => {
                assert_eq!(entries.len(), 1);
                assert_eq!(entries[0].slot, 2);
                assert_eq!(*covered_to, 5, "silent from the first slot left out");
                assert_eq!(*to_slot, 9, "the range asked is echoed");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accept_persists_then_tells_proposer_and_learners() {
        let mut a = acc();
        let out = accept(&mut a, b(1, "p1"), 0, v(1));
        assert_eq!(
            out.persist,
            vec![Record::Accept {
                slot: 0,
                ballot: b(1, "p1"),
                value: v(1)
            }]
        );
        assert_eq!(out.send.len(), 3);
        // The value travels only to the learner in our own process; the
        // other has it from the leader.
        assert!(out.send.contains(&(
            NodeId::new("l1"),
            Message::Learner(LearnerMsg::Accepted {
                ballot: b(1, "p1"),
                slot: 0,
                value: None
            })
        )));
        assert!(out.send.contains(&(
            NodeId::new("n1"),
            Message::Learner(LearnerMsg::Accepted {
                ballot: b(1, "p1"),
                slot: 0,
                value: Some(v(1))
            })
        )));
        assert!(out.send.contains(&(
            NodeId::new("p1"),
            Message::Proposer(ProposerMsg::Accepted {
                ballot: b(1, "p1"),
                slot: 0
            })
        )));
        // Equal ballot to the promise is allowed; higher raises the promise.
        accept(&mut a, b(3, "p2"), 1, v(2));
        assert_eq!(a.promised(), &b(3, "p2"));
        // A retransmission is answered again without a second disk write.
        let again = accept(&mut a, b(3, "p2"), 1, v(2));
        assert!(again.persist.is_empty());
        assert_eq!(again.send.len(), 3);
    }

    #[test]
    fn recovered_state_is_honoured() {
        let mut st = AcceptorState::default();
        st.apply(Record::Accept {
            slot: 2,
            ballot: b(4, "p1"),
            value: v(9),
        });
        let mut a = Acceptor::new(NodeId::new("a1"), vec![], st);
        let out = prepare(&mut a, b(3, "p2"), 0);
        assert!(matches!(
            out.send[0].1,
            Message::Proposer(ProposerMsg::Preempted { .. })
        ));
        let out = prepare(&mut a, b(5, "p2"), 0);
        match &out.send[0].1 {
            Message::Proposer(ProposerMsg::Promise { accepted, .. }) => {
                assert_eq!(
                    accepted,
                    &vec![PromiseEntry {
                        slot: 2,
                        ballot: b(4, "p1"),
                        value: v(9)
                    }]
                )
            }
            m => panic!("unexpected {m:?}"),
        }
    }
}
