//! The proposer: leader election and getting commands into log slots.
//!
//! One proposer at a time acts as leader. Its life:
//!
//! ```text
//!  Follower ──election timeout──▶ PreCandidate ──majority of PreVoteGranted──▶ Candidate ──majority of Promise──▶ Leader
//!     ▲                               │                                           │                                │
//!     └──── leader heartbeat / higher ballot seen (Preempted / Heartbeat) ◀───────┴────────────────────────────────┘
//! ```
//!
//! - **PreCandidate**: asks the acceptors `PreVote(ballot)` for the ballot it
//!   would run with, changing nothing anywhere. An acceptor says yes only
//!   if it would promise that ballot and has not heard from the leader it
//!   follows for an election timeout (see the acceptor's docs). Only with a
//!   majority of yeses does the proposer raise its ballot and run phase 1.
//!   Without this, a proposer cut off from a healthy leader would keep
//!   raising its ballot and depose the leader as soon as it could reach
//!   the acceptors again.
//! - **Follower**: forwards `Propose` to the leader it knows and resets its
//!   randomized election deadline on every heartbeat. Different proposers
//!   draw different timeouts from their seeds, so after a leader dies one of
//!   them usually runs alone, and dueling candidates back off to fresh random
//!   deadlines instead of livelocking.
//! - **Candidate**: picks a ballot above every ballot it has seen and sends
//!   `Prepare(ballot, first_unchosen)` (p1a) to every acceptor. An acceptor
//!   holding more than one message's worth answers in pages; its promise
//!   counts once the pages cover every slot from `first_unchosen` on. Pages
//!   start no lower than the chosen prefix the acceptor heard of from a
//!   leader's heartbeat (`chosen_below`), and the candidate adopts that
//!   prefix: chosen slots need no new phase 2, so after a restart the new
//!   leader does not re-propose the whole log. Lost pages show as a
//!   `Preempted` at our own ballot when the `Prepare` is re-sent (an
//!   acceptor never promises one ballot twice); that starts a new ballot
//!   at once.
//! - **Leader**: on a majority of promises, re-proposes in every slot from
//!   `first_unchosen` on (`RECOVERY_WINDOW` slots at a time, before any new
//!   command) the value with the highest ballot any promise
//!   reported, fills the holes with `Noop`, and from then on runs only phase 2:
//!   one `Accept` (p2a) per slot, up to `window` slots in flight, each slot
//!   carrying a batch of queued commands. Batching is adaptive: an idle
//!   leader proposes a command the moment it arrives; a busy one lets
//!   commands pile up while the window is full and ships them together.
//!
//! **Read index.** A leader also serves linearizable reads that never enter
//! the log. A replica asks `ReadIndex`; the leader notes its `next_slot`
//! (one past every slot it has proposed) and runs one *confirmation round*:
//! `Confirm(ballot)` to the acceptors (a majority first when thrifty, like
//! accepts), each of which answers `Confirmed` if it has
//! promised nothing above `ballot`. Once a majority confirmed, the leader
//! answers the replica with that index, and the replica answers the read
//! from its own state after applying every slot below it. Why this is safe:
//!
//! - a write acknowledged before the read was issued is chosen in some slot
//!   `s`, in some ballot `b'`;
//! - `b'` is not above our ballot `b`: a majority had promised `b'` before
//!   the read began, and promises only grow, so it would meet the majority
//!   that confirmed `b` after the read began in an acceptor that both
//!   promised `b' > b` and confirmed `b`, which it refuses to do;
//! - if `b' < b`, our phase 1 met the chosen majority, so a promise reported
//!   `s` (or `s` was compacted, hence below where we started proposing), and
//!   we proposed from past it: `s < next_slot`. If `b' = b`, we proposed `s`
//!   ourselves: `s < next_slot` again.
//!
//! So every acknowledged write lies below the index, and the replica's state
//! once it applied past the index reflects them all. It may reflect later
//! writes too, which is fine: they were chosen before the read answered.
//! The leader's `first_unchosen` would *not* do as the index: a slot can be
//! chosen, applied and acknowledged by a replica before the leader hears a
//! majority of p2b for it. Rounds are batched: every read that arrives
//! while a round is out rides on the next one, so one quorum round serves
//! any number of reads.
//!
//! **Check quorum.** A leader that has not heard from a majority of
//! acceptors (accepts, read confirmations, or answers to the heartbeats it
//! also sends them) for an election timeout steps down. Pre-vote needs
//! this: acceptors that still hear a leader's heartbeats refuse to elect
//! another, so a leader that can send but not receive (a one-way fault)
//! would otherwise keep its followers and its acceptors loyal while
//! committing nothing.
//!
//! **Thrifty phase 2** (`ProposerConfig::thrifty`). A slot's `Accept` goes
//! first to a majority only: our own node's acceptor, then acceptors heard
//! from within two heartbeat intervals, in topology order. A majority is
//! all a value needs to be chosen and any two majorities intersect, so
//! phase 1 of a later leader still finds it; the acceptors left out just
//! have nothing for that slot, as if the message were lost. If the chosen
//! majority has not answered within `thrifty_fallback_ticks`, the slot goes
//! to every acceptor that has not voted. On 2 cores this saved one of three
//! fsyncs per slot and raised 64-client writes by about 12 %.
//!
//! Time is a tick counter advanced by [`Proposer::tick`]; randomness comes
//! from the seed given to [`Proposer::new`].

#[cfg(feature = "actor")]
pub mod actor;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use synod_types::{
    majority, AcceptorMsg, Ballot, ClientId, Command, LearnerMsg, Message, NodeId, PromiseEntry,
    ProposerMsg, ReplicaMsg, Slot, SplitMix64, Topology, Value,
};

/// Tunables, in ticks of the caller's clock.
#[derive(Clone, Debug)]
pub struct ProposerConfig {
    pub heartbeat_ticks: u64,
    /// An election timeout is drawn from `[t, 2t)`.
    pub election_timeout_ticks: u64,
    /// Resend p1a/p2a to acceptors that have not answered after this long.
    pub retransmit_ticks: u64,
    /// Slots in phase 2 at once.
    pub window: usize,
    pub max_batch: usize,
    pub max_batch_bytes: usize,
    /// Commands waiting for the window; beyond this new ones are dropped
    /// (the replica retries), so a stalled quorum cannot grow memory.
    pub max_queue: usize,
    /// Read requests waiting for a confirmation round, at most; beyond this
    /// new ones are refused (`NotLeader`) and the replica retries.
    pub max_reads: usize,
    /// Thrifty phase 2: send each new slot's `Accept` to a majority of
    /// acceptors only (our own node's first, then live ones in a fixed
    /// order) and to the others only if that majority has not answered
    /// within `thrifty_fallback_ticks`. Any majority is a quorum, so safety
    /// is unchanged; the acceptors left out skip one write and fsync per
    /// slot, and their votes stay off the network.
    pub thrifty: bool,
    pub thrifty_fallback_ticks: u64,
    /// Bytes of commands one forwarded `Propose` gathers
    /// ([`synod_types::MESSAGE_BUDGET`]).
    pub message_budget: usize,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            heartbeat_ticks: 5,
            election_timeout_ticks: 30,
            retransmit_ticks: 20,
            window: 4,
            max_batch: 512,
            max_batch_bytes: 1 << 20,
            max_queue: 100_000,
            max_reads: 100_000,
            thrifty: false,
            thrifty_fallback_ticks: 5,
            message_budget: synod_types::MESSAGE_BUDGET,
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub send: Vec<(NodeId, Message)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Slots in phase 2 at once while a new leader re-proposes what its phase 1
/// found. A proposer that lost its progress (a restart) and wins while the
/// old leader is gone re-proposes every slot its acceptors have not
/// compacted, thousands in a long log; sent at once, each retransmit
/// interval would resend them all (the simulator's message-storm check
/// caught this in 20,000-tick runs). Larger than the normal window, as these
/// slots carry no new commands and most are chosen already.
const RECOVERY_WINDOW: usize = 128;

/// One page of an acceptor's promise, as it arrived.
struct PromisePage {
    accepted: Vec<PromiseEntry>,
    compacted_below: Slot,
    chosen_below: Slot,
    /// The slots it speaks for: `from..to`, `to = None` meaning all after.
    covers: (Slot, Option<Slot>),
}

/// An acceptor's promise for our ballot, page by page.
#[derive(Default)]
struct PromisePages {
    entries: Vec<PromiseEntry>,
    compacted_below: Slot,
    /// Page start → page end (`None`: to the end of the log).
    pages: BTreeMap<Slot, Option<Slot>>,
    /// When the latest page arrived (our clock).
    last_page: u64,
}

impl PromisePages {
    /// Whether the pages together speak for every slot from `from` on:
    /// only then does this promise count towards the majority. One pass
    /// in page order: a page that starts past the coverage so far leaves a
    /// gap no later page (starting later still) can fill.
    fn covers_from(&self, from: Slot) -> bool {
        let mut reach = from;
        for (&start, &end) in &self.pages {
            if start > reach {
                return false;
            }
            match end {
                None => return true,
                Some(end) => reach = reach.max(end),
            }
        }
        false
    }
}

/// A confirmation round for read-index requests.
struct ReadRound {
    round: u64,
    /// `next_slot` when the round started: every slot chosen before any of
    /// its reads arrived lies below it.
    index: Slot,
    reads: Vec<(NodeId, Vec<u64>)>,
    acks: BTreeSet<NodeId>,
    sent_at: u64,
    /// As for accepts: the round went to every acceptor.
    widened: bool,
}

struct InFlight {
    value: Value,
    acks: BTreeSet<NodeId>,
    sent_at: u64,
    /// The `Accept` went to every acceptor (always, unless thrifty).
    widened: bool,
}

pub struct Proposer {
    me: NodeId,
    acceptors: Vec<NodeId>,
    /// The other proposers (heartbeat targets).
    peers: Vec<NodeId>,
    /// Told our progress with each heartbeat, so they notice lost votes.
    learners: Vec<NodeId>,
    replicas: Vec<NodeId>,
    /// Latest durable snapshot slot each replica reported.
    snapshots: BTreeMap<NodeId, Slot>,
    cfg: ProposerConfig,
    rng: SplitMix64,
    now: u64,

    phase: Phase,
    /// Our ballot while candidate or leader.
    ballot: Ballot,
    /// Highest ballot seen from anyone; the next election goes above it.
    max_seen: Ballot,
    leader: Option<NodeId>,
    deadline: u64,
    next_heartbeat: u64,

    /// Every slot below this is known chosen.
    first_unchosen: Slot,
    chosen_above: BTreeSet<Slot>,

    promises: BTreeMap<NodeId, PromisePages>,
    /// Acceptors we re-sent this ballot's `Prepare` to (their promise had
    /// stalled), and those of them that answered it with `Preempted` at our
    /// own ballot: their remaining pages are lost for this ballot.
    prepare_resent: BTreeSet<NodeId>,
    promise_lost: BTreeSet<NodeId>,
    /// The ballot a pre-vote is out for, and the acceptors that granted it.
    pre_vote: Option<(Ballot, BTreeSet<NodeId>)>,
    /// While leading: when each acceptor last answered under our ballot.
    heard: BTreeMap<NodeId, u64>,
    leader_since: u64,
    prepare_sent_at: u64,
    next_slot: Slot,
    inflight: BTreeMap<Slot, InFlight>,
    /// Slots a new leader's phase 1 left it to (re-)propose, not yet sent:
    /// `recover_next..recover_end`, going out `RECOVERY_WINDOW` at a time
    /// before any new command. Values phase 1 found are in `recovering`;
    /// every other slot of the range is a gap, filled with a no-op. Gaps
    /// are not stored, so a promise naming a far slot costs no memory.
    recovering: BTreeMap<Slot, Value>,
    recover_next: Slot,
    recover_end: Slot,
    queue: VecDeque<Command>,
    /// `(client, seq)` of every command queued or in flight under this
    /// leadership: replicas retry, and a retry of a command we already hold
    /// would only fill a slot with a duplicate.
    holding: BTreeSet<(ClientId, u64)>,

    /// Read-index requests that arrived since the current round started.
    reads_waiting: Vec<(NodeId, Vec<u64>)>,
    reads_waiting_count: usize,
    read_round: Option<ReadRound>,
    next_read_round: u64,
}

impl Proposer {
    pub fn new(me: NodeId, topology: &Topology, cfg: ProposerConfig, seed: u64) -> Self {
        let peers = topology
            .proposers
            .iter()
            .filter(|p| **p != me)
            .cloned()
            .collect();
        let mut p = Proposer {
            ballot: Ballot::new(0, me.clone()),
            me,
            acceptors: topology.acceptors.clone(),
            peers,
            learners: topology.learners.clone(),
            replicas: topology.replicas.clone(),
            snapshots: BTreeMap::new(),
            cfg,
            rng: SplitMix64::new(seed),
            now: 0,
            phase: Phase::Follower,
            max_seen: Ballot::zero(),
            leader: None,
            deadline: 0,
            next_heartbeat: 0,
            first_unchosen: 0,
            chosen_above: BTreeSet::new(),
            promises: BTreeMap::new(),
            pre_vote: None,
            heard: BTreeMap::new(),
            leader_since: 0,
            prepare_sent_at: 0,
            prepare_resent: BTreeSet::new(),
            promise_lost: BTreeSet::new(),
            next_slot: 0,
            inflight: BTreeMap::new(),
            recovering: BTreeMap::new(),
            recover_next: 0,
            recover_end: 0,
            queue: VecDeque::new(),
            holding: BTreeSet::new(),
            reads_waiting: Vec::new(),
            reads_waiting_count: 0,
            read_round: None,
            next_read_round: 0,
        };
        p.reset_deadline();
        p
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }
    pub fn is_leader(&self) -> bool {
        self.phase == Phase::Leader
    }
    pub fn leader(&self) -> Option<&NodeId> {
        self.leader.as_ref()
    }
    pub fn ballot(&self) -> &Ballot {
        &self.ballot
    }
    pub fn first_unchosen(&self) -> Slot {
        self.first_unchosen
    }
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn handle(&mut self, from: NodeId, msg: ProposerMsg) -> Output {
        let mut out = Output::default();
        match &msg {
            ProposerMsg::Accepted { ballot, .. }
            | ProposerMsg::Confirmed { ballot, .. }
            | ProposerMsg::HeartbeatAck { ballot } => self.heard_from(&from, ballot),
            _ => {}
        }
        match msg {
            ProposerMsg::Promise {
                ballot,
                accepted,
                compacted_below,
                chosen_below,
                from_slot,
                more_from,
            } => {
                let page = PromisePage {
                    accepted,
                    compacted_below,
                    chosen_below,
                    covers: (from_slot, more_from),
                };
                self.handle_promise(from, ballot, page, &mut out)
            }
            ProposerMsg::SnapshotTaken { slot } => {
                if self.replicas.contains(&from) {
                    let s = self.snapshots.entry(from).or_default();
                    *s = (*s).max(slot);
                }
            }
            ProposerMsg::Accepted { ballot, slot } => {
                self.handle_accepted(from, ballot, slot, &mut out)
            }
            ProposerMsg::Preempted { promised, .. } => {
                self.handle_preempted(from, promised, &mut out)
            }
            ProposerMsg::Propose { commands } => self.handle_propose(commands, &mut out),
            ProposerMsg::Heartbeat {
                ballot,
                first_unchosen,
            } => self.handle_heartbeat(from, ballot, first_unchosen, &mut out),
            ProposerMsg::ReadIndex { ids } => self.handle_read_index(from, ids, &mut out),
            ProposerMsg::Confirmed { ballot, round } => {
                self.handle_confirmed(from, ballot, round, &mut out)
            }
            ProposerMsg::PreVoteGranted { ballot } => {
                self.handle_pre_vote_granted(from, ballot, &mut out)
            }
            ProposerMsg::HeartbeatAck { .. } => {}
            ProposerMsg::Compacted { below } => {
                if self.acceptors.contains(&from) && self.learn_chosen_below(below) {
                    self.fill_window(&mut out);
                }
            }
            ProposerMsg::Chosen {
                slot,
                learned_below,
            } => {
                // Only a learner knows; anyone else's word on what is
                // chosen could make a leader skip live slots.
                if !self.learners.contains(&from) {
                    return out;
                }
                // `mark_chosen` may itself finish this slot and others
                // (all below the new first unchosen), so refill regardless.
                self.learn_chosen_below(learned_below);
                self.mark_chosen(slot);
                self.finish_slot(slot);
                self.fill_window(&mut out);
            }
        }
        out
    }

    /// Advances the clock by one tick: elections, heartbeats, retransmissions.
    pub fn tick(&mut self) -> Output {
        self.now += 1;
        let mut out = Output::default();
        match self.phase {
            Phase::Follower | Phase::PreCandidate | Phase::Candidate
                if self.now >= self.deadline =>
            {
                self.start_pre_vote(&mut out)
            }
            Phase::Candidate if self.now - self.prepare_sent_at >= self.cfg.retransmit_ticks => {
                self.prepare_sent_at = self.now;
                let msg = self.prepare_msg();
                for a in &self.acceptors {
                    if self.promise_stalled(a) {
                        out.send.push((a.clone(), msg.clone()));
                        self.prepare_resent.insert(a.clone());
                    }
                }
            }
            Phase::Leader if !self.has_quorum() => {
                tracing_debug(&self.me, "follower (no quorum heard)", &self.ballot);
                self.step_down(self.ballot.clone(), &mut out);
            }
            Phase::Leader => {
                if self.now >= self.next_heartbeat {
                    self.send_heartbeats(&mut out);
                }
                self.retransmit_accepts(&mut out);
                self.retransmit_confirm(&mut out);
                // A backstop: whatever emptied the window without refilling
                // it, slots waiting to go out do not wait past a tick.
                self.fill_window(&mut out);
            }
            _ => {}
        }
        out
    }

    fn heard_from(&mut self, from: &NodeId, ballot: &Ballot) {
        if self.phase == Phase::Leader && *ballot == self.ballot && self.acceptors.contains(from) {
            self.heard.insert(from.clone(), self.now);
        }
    }

    /// A majority of acceptors answered us within the last election
    /// timeout (or we have not led that long yet).
    fn has_quorum(&self) -> bool {
        let window = self.cfg.election_timeout_ticks.max(1);
        if self.now - self.leader_since < window {
            return true;
        }
        let live = self
            .heard
            .values()
            .filter(|t| self.now - **t < window)
            .count();
        live >= majority(self.acceptors.len())
    }

    fn reset_deadline(&mut self) {
        let t = self.cfg.election_timeout_ticks.max(1);
        self.deadline = self.now + self.rng.range(t, 2 * t);
    }

    fn prepare_msg(&self) -> Message {
        Message::Acceptor(AcceptorMsg::Prepare {
            ballot: self.ballot.clone(),
            from_slot: self.first_unchosen,
        })
    }

    /// The leader went quiet (or our phase 1 stalled): ask the acceptors
    /// whether they lost it too before raising our ballot.
    fn start_pre_vote(&mut self, out: &mut Output) {
        // Saturating: a round of u64::MAX can only come from a broken peer,
        // and must not wrap our ballots back to zero.
        let ballot = Ballot::new(self.max_seen.round.saturating_add(1), self.me.clone());
        // A stalled phase 1 of ours is over; commands it queued wait for
        // the next leader (us again, or whoever's heartbeat comes first).
        self.promises.clear();
        self.phase = Phase::PreCandidate;
        self.reset_deadline();
        tracing_debug(&self.me, "pre-candidate", &ballot);
        for a in &self.acceptors {
            out.send.push((
                a.clone(),
                Message::Acceptor(AcceptorMsg::PreVote {
                    ballot: ballot.clone(),
                }),
            ));
        }
        self.pre_vote = Some((ballot, BTreeSet::new()));
    }

    fn handle_pre_vote_granted(&mut self, from: NodeId, ballot: Ballot, out: &mut Output) {
        if self.phase != Phase::PreCandidate || !self.acceptors.contains(&from) {
            return;
        }
        let Some((asked, grants)) = &mut self.pre_vote else {
            return;
        };
        if *asked != ballot {
            return;
        }
        grants.insert(from);
        if grants.len() >= majority(self.acceptors.len()) {
            self.pre_vote = None;
            self.start_election(out);
        }
    }

    fn start_election(&mut self, out: &mut Output) {
        self.ballot = Ballot::new(self.max_seen.round.saturating_add(1), self.me.clone());
        self.max_seen = self.ballot.clone();
        self.phase = Phase::Candidate;
        self.leader = None;
        self.promises.clear();
        self.prepare_resent.clear();
        self.promise_lost.clear();
        self.inflight.clear();
        self.stop_recovery();
        self.prepare_sent_at = self.now;
        self.reset_deadline();
        tracing_debug(&self.me, "candidate", &self.ballot);
        let msg = self.prepare_msg();
        for a in &self.acceptors {
            out.send.push((a.clone(), msg.clone()));
        }
    }

    fn handle_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        page: PromisePage,
        out: &mut Output,
    ) {
        if self.phase != Phase::Candidate
            || ballot != self.ballot
            || !self.acceptors.contains(&from)
        {
            return;
        }
        // The acceptor's pages start no lower than what it knows chosen,
        // so that must be known here before its coverage is judged.
        self.learn_chosen_below(page.chosen_below);
        // Late rather than lost, after all.
        self.promise_lost.remove(&from);
        let p = self.promises.entry(from).or_default();
        p.entries.extend(page.accepted);
        p.compacted_below = p.compacted_below.max(page.compacted_below);
        p.pages.insert(page.covers.0, page.covers.1);
        p.last_page = self.now;
        // Pages still arriving are progress: a long log may take longer to
        // send than an election timeout, and starting over would only send
        // it all again (behind the pages still queued).
        self.deadline = self
            .deadline
            .max(self.now + self.cfg.election_timeout_ticks.max(1));
        let complete = self
            .promises
            .values()
            .filter(|p| p.covers_from(self.first_unchosen))
            .count();
        if complete >= majority(self.acceptors.len()) {
            self.become_leader(out);
        }
    }

    /// Whether `acceptor`'s promise for our ballot is missing, or incomplete
    /// with no page for a retransmit interval.
    fn promise_stalled(&self, acceptor: &NodeId) -> bool {
        self.promises.get(acceptor).is_none_or(|p| {
            !p.covers_from(self.first_unchosen)
                && self.now - p.last_page >= self.cfg.retransmit_ticks
        })
    }

    fn become_leader(&mut self, out: &mut Output) {
        // For each slot, the value of the highest ballot any promise reported:
        // if that slot was (or may yet be) chosen, this is its value.
        let promises = std::mem::take(&mut self.promises);
        // Slots an acceptor compacted are chosen and applied by a majority of
        // replicas; re-proposing there (a no-op where its value is gone!)
        // would be wrong, so phase 2 starts past them.
        let compacted = promises
            .values()
            .map(|p| p.compacted_below)
            .max()
            .unwrap_or(0);
        if compacted > self.first_unchosen {
            self.first_unchosen = compacted;
            self.chosen_above = self.chosen_above.split_off(&compacted);
            self.advance_first_unchosen();
        }
        let mut found: BTreeMap<Slot, (Ballot, Value)> = BTreeMap::new();
        // Pages of acceptors outside the complete majority count too: any
        // value accepted in a ballot above the one a value was chosen in is
        // that value, so more reports can only agree with the majority's.
        for entry in promises.into_values().flat_map(|p| p.entries) {
            if entry.slot < self.first_unchosen {
                continue;
            }
            match found.get(&entry.slot) {
                Some((b, _)) if *b >= entry.ballot => {}
                _ => {
                    found.insert(entry.slot, (entry.ballot, entry.value));
                }
            }
        }
        let end = found
            .last_key_value()
            .map_or(self.first_unchosen, |(s, _)| s.saturating_add(1))
            .max(self.first_unchosen);
        self.phase = Phase::Leader;
        self.leader = Some(self.me.clone());
        self.leader_since = self.now;
        self.heard.clear();
        self.next_slot = end;
        tracing_debug(&self.me, "leader", &self.ballot);
        // Every slot below `end` counts as proposed by us from here on (the
        // read index relies on it); `fill_window` paces the sending.
        self.recovering = found.into_iter().map(|(s, (_, v))| (s, v)).collect();
        self.recover_next = self.first_unchosen;
        self.recover_end = end;
        self.send_heartbeats(out);
        self.fill_window(out);
    }

    fn send_accept(&mut self, slot: Slot, value: Value, out: &mut Output) {
        let msg = Message::Acceptor(AcceptorMsg::Accept {
            ballot: self.ballot.clone(),
            slot,
            value: value.clone(),
        });
        let targets = self.accept_targets();
        for a in &targets {
            out.send.push((a.clone(), msg.clone()));
        }
        self.send_proposed(slot, &value, &targets, out);
        self.inflight.insert(
            slot,
            InFlight {
                value,
                acks: BTreeSet::new(),
                sent_at: self.now,
                widened: targets.len() == self.acceptors.len(),
            },
        );
    }

    /// Where a new slot's `Accept` goes: every acceptor, or (thrifty) a
    /// majority: our own node's acceptor first (no network hop), then the
    /// acceptors heard from lately, in topology order so the choice stays
    /// put while they answer. Right after winning, nobody has answered the
    /// new ballot yet, so everyone counts as live.
    fn accept_targets(&self) -> Vec<NodeId> {
        if !self.cfg.thrifty {
            return self.acceptors.clone();
        }
        let fresh = self.now - self.leader_since < self.cfg.heartbeat_ticks.max(1) * 2;
        let live = |a: &NodeId| {
            fresh
                || self
                    .heard
                    .get(a)
                    .is_some_and(|t| self.now - *t <= self.cfg.heartbeat_ticks.max(1) * 2)
        };
        let mut ranked: Vec<(bool, bool, usize)> = self
            .acceptors
            .iter()
            .enumerate()
            .map(|(i, a)| (*a != self.me, !live(a), i))
            .collect();
        ranked.sort_unstable();
        ranked
            .into_iter()
            .take(majority(self.acceptors.len()))
            .map(|(_, _, i)| self.acceptors[i].clone())
            .collect()
    }

    fn retransmit_accepts(&mut self, out: &mut Output) {
        let mut resend = Vec::new();
        for (slot, f) in self.inflight.iter_mut() {
            let age = self.now - f.sent_at;
            // Thrifty: the chosen majority is slow or gone; bring in the
            // rest now rather than after a full retransmit interval.
            if age < self.cfg.retransmit_ticks
                && (f.widened || age < self.cfg.thrifty_fallback_ticks)
            {
                continue;
            }
            f.sent_at = self.now;
            f.widened = true;
            let msg = Message::Acceptor(AcceptorMsg::Accept {
                ballot: self.ballot.clone(),
                slot: *slot,
                value: f.value.clone(),
            });
            for a in &self.acceptors {
                if !f.acks.contains(a) {
                    out.send.push((a.clone(), msg.clone()));
                }
            }
            resend.push((*slot, f.value.clone()));
        }
        // Learners may have missed the value too.
        for (slot, value) in resend {
            self.send_proposed(slot, &value, &self.acceptors, out);
        }
    }

    /// Learners with an acceptor on their node get values with its votes,
    /// if that acceptor was sent the `Accept`; the others need the value
    /// from us, once.
    fn send_proposed(&self, slot: Slot, value: &Value, targets: &[NodeId], out: &mut Output) {
        for l in &self.learners {
            if !targets.contains(l) {
                out.send.push((
                    l.clone(),
                    Message::Learner(LearnerMsg::Proposed {
                        ballot: self.ballot.clone(),
                        slot,
                        value: value.clone(),
                    }),
                ));
            }
        }
    }

    fn send_heartbeats(&mut self, out: &mut Output) {
        self.next_heartbeat = self.now + self.cfg.heartbeat_ticks;
        let msg = Message::Proposer(ProposerMsg::Heartbeat {
            ballot: self.ballot.clone(),
            first_unchosen: self.first_unchosen,
        });
        for p in &self.peers {
            out.send.push((p.clone(), msg.clone()));
        }
        // Acceptors that hear us turn down pre-votes of proposers that lost
        // touch with us.
        let alive = Message::Acceptor(AcceptorMsg::Heartbeat {
            ballot: self.ballot.clone(),
            first_unchosen: self.first_unchosen,
        });
        for a in &self.acceptors {
            out.send.push((a.clone(), alive.clone()));
        }
        let progress = Message::Learner(LearnerMsg::Progress {
            first_unchosen: self.first_unchosen,
        });
        for l in &self.learners {
            out.send.push((l.clone(), progress.clone()));
        }
        let below = self.compact_below();
        if below > 0 {
            for a in &self.acceptors {
                out.send
                    .push((a.clone(), Message::Acceptor(AcceptorMsg::Compact { below })));
            }
            for l in &self.learners {
                out.send
                    .push((l.clone(), Message::Learner(LearnerMsg::Compact { below })));
            }
        }
    }

    /// The highest slot below which a majority of replicas hold durable
    /// snapshots: the log below it is safe to forget everywhere. A replica
    /// that needs older slots is in the minority and fetches a snapshot from
    /// one of the majority; with fewer than a majority reporting, nothing
    /// is forgotten.
    pub fn compact_below(&self) -> Slot {
        let mut slots: Vec<Slot> = self.snapshots.values().copied().collect();
        slots.sort_unstable_by(|a, b| b.cmp(a));
        slots
            .get(majority(self.replicas.len()).saturating_sub(1))
            .copied()
            .unwrap_or(0)
            .min(self.first_unchosen)
    }

    /// Drops a slot from phase 2; true if it was ours.
    fn finish_slot(&mut self, slot: Slot) -> bool {
        match self.inflight.remove(&slot) {
            Some(f) => {
                for c in f.value.commands() {
                    self.holding.remove(&(c.client, c.seq));
                }
                true
            }
            None => false,
        }
    }

    fn handle_accepted(&mut self, from: NodeId, ballot: Ballot, slot: Slot, out: &mut Output) {
        if self.phase != Phase::Leader || ballot != self.ballot || !self.acceptors.contains(&from) {
            return;
        }
        let quorum = majority(self.acceptors.len());
        let Some(f) = self.inflight.get_mut(&slot) else {
            return;
        };
        f.acks.insert(from);
        if f.acks.len() >= quorum {
            self.finish_slot(slot);
            self.mark_chosen(slot);
            self.fill_window(out);
        }
    }

    fn handle_preempted(&mut self, from: NodeId, promised: Ballot, out: &mut Output) {
        if self.phase == Phase::Candidate
            && promised == self.ballot
            && self.prepare_resent.contains(&from)
            && self.promise_stalled(&from)
        {
            // The acceptor promised us, and (most likely) this answers the
            // Prepare we re-sent because its promise never fully arrived:
            // pages were lost. It will not answer one ballot twice (a
            // restarted proposer could otherwise lead a ballot a second
            // time), so its promise is gone for this ballot. Once the
            // acceptors left cannot make a majority, only a new ballot can
            // win: start one now rather than at the election deadline.
            // While they still can, the deadline decides (pages of the
            // others may still be on their way).
            self.promise_lost.insert(from);
            if self.acceptors.len() - self.promise_lost.len() < majority(self.acceptors.len()) {
                tracing_debug(&self.me, "candidate again (promises lost)", &self.ballot);
                self.start_pre_vote(out);
            }
        } else if promised > self.ballot && self.phase != Phase::Follower {
            self.step_down(promised, out);
        } else if promised > self.max_seen {
            self.max_seen = promised;
        }
    }

    /// View change: someone holds a higher ballot, so stop proposing. The
    /// commands of unfinished slots and of the queue go to the new leader;
    /// if some of them also get chosen through the new leader's phase 1 they
    /// appear twice in the log, and replicas apply each `(client, seq)` once.
    fn step_down(&mut self, higher: Ballot, out: &mut Output) {
        tracing_debug(&self.me, "follower", &higher);
        if higher > self.max_seen {
            self.max_seen = higher.clone();
        }
        self.phase = Phase::Follower;
        self.leader = (higher.node != self.me).then(|| higher.node.clone());
        let recovering = self.stop_recovery().into_values();
        let unfinished: Vec<Command> = std::mem::take(&mut self.inflight)
            .into_values()
            .map(|f| f.value)
            .chain(recovering)
            .flat_map(|v| v.commands().to_vec())
            .collect();
        for c in unfinished.into_iter().rev() {
            self.queue.push_front(c);
        }
        self.holding.clear();
        self.promises.clear();
        self.reset_deadline();
        self.forward_queue(out);
        self.refuse_reads(out);
    }

    fn handle_read_index(&mut self, from: NodeId, ids: Vec<u64>, out: &mut Output) {
        if self.phase != Phase::Leader
            || !self.replicas.contains(&from)
            || self.reads_waiting_count + ids.len() > self.cfg.max_reads
        {
            let leader = self.leader.clone().filter(|l| *l != self.me);
            out.send.push((
                from,
                Message::Replica(ReplicaMsg::NotLeader { ids, leader }),
            ));
            return;
        }
        self.reads_waiting_count += ids.len();
        self.reads_waiting.push((from, ids));
        if self.read_round.is_none() {
            self.start_read_round(out);
        }
    }

    fn start_read_round(&mut self, out: &mut Output) {
        if self.reads_waiting.is_empty() {
            return;
        }
        self.next_read_round += 1;
        self.reads_waiting_count = 0;
        let targets = self.accept_targets();
        let round = ReadRound {
            round: self.next_read_round,
            index: self.next_slot,
            reads: std::mem::take(&mut self.reads_waiting),
            acks: BTreeSet::new(),
            sent_at: self.now,
            widened: targets.len() == self.acceptors.len(),
        };
        let msg = Message::Acceptor(AcceptorMsg::Confirm {
            ballot: self.ballot.clone(),
            round: round.round,
        });
        // Any majority confirms leadership, so the thrifty choice of
        // acceptors serves here as it does for accepts.
        for a in targets {
            out.send.push((a, msg.clone()));
        }
        self.read_round = Some(round);
    }

    fn handle_confirmed(&mut self, from: NodeId, ballot: Ballot, round: u64, out: &mut Output) {
        if self.phase != Phase::Leader || ballot != self.ballot || !self.acceptors.contains(&from) {
            return;
        }
        let quorum = majority(self.acceptors.len());
        let Some(r) = self.read_round.as_mut().filter(|r| r.round == round) else {
            return;
        };
        r.acks.insert(from);
        if r.acks.len() < quorum {
            return;
        }
        let Some(done) = self.read_round.take() else {
            return;
        };
        for (replica, ids) in done.reads {
            out.send.push((
                replica,
                Message::Replica(ReplicaMsg::ReadIndex {
                    ids,
                    index: done.index,
                }),
            ));
        }
        self.start_read_round(out);
    }

    fn retransmit_confirm(&mut self, out: &mut Output) {
        let Some(r) = self.read_round.as_mut() else {
            return;
        };
        let age = self.now - r.sent_at;
        if age < self.cfg.retransmit_ticks && (r.widened || age < self.cfg.thrifty_fallback_ticks) {
            return;
        }
        r.sent_at = self.now;
        r.widened = true;
        let msg = Message::Acceptor(AcceptorMsg::Confirm {
            ballot: self.ballot.clone(),
            round: r.round,
        });
        for a in &self.acceptors {
            if !r.acks.contains(a) {
                out.send.push((a.clone(), msg.clone()));
            }
        }
    }

    /// We no longer lead: every read we hold goes back to its replica,
    /// which asks the new leader.
    fn refuse_reads(&mut self, out: &mut Output) {
        let mut reads = std::mem::take(&mut self.reads_waiting);
        self.reads_waiting_count = 0;
        if let Some(r) = self.read_round.take() {
            reads.extend(r.reads);
        }
        for (replica, ids) in reads {
            out.send.push((
                replica,
                Message::Replica(ReplicaMsg::NotLeader {
                    ids,
                    leader: self.leader.clone(),
                }),
            ));
        }
    }

    fn handle_heartbeat(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first_unchosen: Slot,
        out: &mut Output,
    ) {
        // Only a proposer leads: anyone else's ballot or slot number could
        // depose us or make us skip slots that are not chosen.
        if !self.peers.contains(&from) {
            return;
        }
        // Everything below the leader's first unchosen slot is chosen, so a
        // future phase 1 of ours need not ask about it. If we lead, that
        // may have emptied our window: refill it, or recovered slots would
        // wait for the next client command.
        if self.learn_chosen_below(first_unchosen) {
            self.fill_window(out);
        }
        if ballot < self.max_seen {
            if self.phase == Phase::Leader {
                // A deposed leader is talking: tell it about us right away.
                out.send.push((
                    from,
                    Message::Proposer(ProposerMsg::Heartbeat {
                        ballot: self.ballot.clone(),
                        first_unchosen: self.first_unchosen,
                    }),
                ));
            }
            return;
        }
        if self.phase != Phase::Follower && ballot > self.ballot {
            self.step_down(ballot.clone(), out);
        }
        if self.phase == Phase::Follower {
            self.max_seen = ballot;
            self.leader = Some(from);
            self.reset_deadline();
            self.forward_queue(out);
        }
    }

    fn handle_propose(&mut self, commands: Vec<Command>, out: &mut Output) {
        match (&self.phase, &self.leader) {
            (Phase::Follower | Phase::PreCandidate, Some(l)) => {
                out.send.push((
                    l.clone(),
                    Message::Proposer(ProposerMsg::Propose { commands }),
                ));
            }
            _ => {
                for c in commands {
                    if self.queue.len() >= self.cfg.max_queue {
                        break;
                    }
                    if self.holding.insert((c.client, c.seq)) {
                        self.queue.push_back(c);
                    }
                }
                self.fill_window(out);
            }
        }
    }

    fn forward_queue(&mut self, out: &mut Output) {
        if let (Some(l), false) = (&self.leader, self.queue.is_empty()) {
            self.holding.clear();
            let queued = self.queue.drain(..).collect();
            for commands in synod_types::chunk_commands(queued, self.cfg.message_budget) {
                out.send.push((
                    l.clone(),
                    Message::Proposer(ProposerMsg::Propose { commands }),
                ));
            }
        }
    }

    fn fill_window(&mut self, out: &mut Output) {
        while self.phase == Phase::Leader
            && self.inflight.len() < self.cfg.window.max(RECOVERY_WINDOW)
        {
            if self.recover_next >= self.recover_end {
                break;
            }
            let slot = self.recover_next;
            self.recover_next += 1;
            let value = self.recovering.remove(&slot).unwrap_or(Value::Noop);
            if slot >= self.first_unchosen && !self.chosen_above.contains(&slot) {
                self.send_accept(slot, value, out);
            }
        }
        if self.recover_next < self.recover_end {
            return;
        }
        while self.phase == Phase::Leader
            && self.inflight.len() < self.cfg.window
            && !self.queue.is_empty()
            // The last slot number is never used: a broken peer's promise
            // could put us there, and reusing it would give it two values.
            && self.next_slot < Slot::MAX
        {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(c) = self.queue.front() {
                if !batch.is_empty()
                    && (batch.len() >= self.cfg.max_batch
                        || bytes + c.op.len() > self.cfg.max_batch_bytes)
                {
                    break;
                }
                bytes += c.op.len();
                batch.extend(self.queue.pop_front());
            }
            let slot = self.next_slot;
            self.next_slot += 1;
            self.send_accept(slot, Value::Batch(batch), out);
        }
    }

    /// Every slot below `slot` is chosen (a leader's progress, or an
    /// acceptor's compaction mark); true if that is news.
    fn learn_chosen_below(&mut self, slot: Slot) -> bool {
        if slot <= self.first_unchosen {
            return false;
        }
        self.first_unchosen = slot;
        self.chosen_above = self.chosen_above.split_off(&slot);
        self.advance_first_unchosen();
        // A leader's phase 1 already started it past every chosen slot;
        // this only keeps a confused proposer from filling chosen ones.
        self.next_slot = self.next_slot.max(self.first_unchosen);
        true
    }

    fn mark_chosen(&mut self, slot: Slot) {
        if slot >= self.first_unchosen {
            self.chosen_above.insert(slot);
            self.advance_first_unchosen();
        }
    }

    fn advance_first_unchosen(&mut self) {
        // The bound only matters for a broken peer's slot numbers.
        while self.first_unchosen < Slot::MAX && self.chosen_above.remove(&self.first_unchosen) {
            self.first_unchosen += 1;
        }
        // Slots we still drive in phase 2 but now know chosen (a learner
        // or a compaction mark said so, our p2b were lost): acceptors may
        // have forgotten them and would never answer, so stop waiting.
        // Commands of ours that lost such a slot are retried by replicas.
        let done: Vec<Slot> = self
            .inflight
            .range(..self.first_unchosen)
            .map(|(s, _)| *s)
            .collect();
        for slot in done {
            self.finish_slot(slot);
        }
        self.recovering = self.recovering.split_off(&self.first_unchosen);
        self.recover_next = self.recover_next.max(self.first_unchosen);
    }

    /// Ends a recovery; returns the values it had yet to send.
    fn stop_recovery(&mut self) -> BTreeMap<Slot, Value> {
        self.recover_next = 0;
        self.recover_end = 0;
        std::mem::take(&mut self.recovering)
    }
}

fn tracing_debug(me: &NodeId, phase: &str, ballot: &Ballot) {
    tracing::debug!(node = %me, ?ballot, "proposer is now {phase}");
}

#[cfg(test)]
mod tests;
