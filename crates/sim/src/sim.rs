//! The simulation engine: nodes, network, disks, clients, clock.
//!
//! One [`SplitMix64`] seeded from the run's seed makes every choice (fault
//! draws, delays, which client talks to which replica, proposer seeds), and
//! every collection whose order matters is a `BTreeMap` or a `Vec`, so a seed
//! replays bit for bit.
//!
//! A tick is: scheduled faults (restarts, crashes, partitions) → deliver
//! every message due → `tick()` every live proposer and replica → clients act.
//! Each delivery and each role call is one step; the checker runs inside it.

use crate::checker::{self, violation, Check, Checker, Issued, Violation};
use crate::config::{Bug, CrashPolicy, Faults, Shape, SimOptions};
use crate::machine::{mix, RegOp, RegOutput, Register};
use crate::trace::{self, TraceHash};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::Write;
use synod_acceptor::Acceptor;
use synod_learner::Learner;
use synod_proposer::{Proposer, ProposerConfig};
use synod_replica::{Answer, Replica, ReplicaConfig, Reply, Snapshot};
use synod_storage::{AcceptorState, AcceptorStorage, MemStorage, Record};
use synod_types::{
    majority, Ballot, ClientId, LearnerMsg, Message, NodeId, ProposerMsg, ReplicaMsg, Role,
    SplitMix64, StateMachine, Topology,
};

/// Registers the clients use; few, so operations contend.
const KEYS: u64 = 3;
/// Share of client operations that are writes.
const WRITE_RATIO: f64 = 0.6;
/// Deliveries (and bytes) allowed per [`STORM_WINDOW`] ticks. Healthy runs
/// peak below a third of the count and a tenth of the bytes; more means
/// messages breed messages (a retry loop without progress), which would also
/// stall the simulator, so it is reported instead of being waited out.
const STORM_LIMIT: u64 = 30_000;
const STORM_BYTES: u64 = 3 << 19;
const STORM_WINDOW: u64 = 100;
/// Extra deliveries (and bytes) allowed per unit of progress made in the
/// window. Long runs have bursts that are all progress: a new leader
/// re-proposing thousands of slots, a replica catching up on a long log.
/// Each slot moved forward somewhere pays for a handful of messages; a loop
/// that moves nothing still trips the fixed limit.
const STORM_PER_PROGRESS: u64 = 16;
/// Most progress one delivery counts for: a jump to a mark (a heartbeat
/// telling a restarted proposer that thousands of slots are chosen) is news,
/// not thousands of units of work that could pay for traffic.
const STORM_STEP_CAP: u64 = 64;
const STORM_BYTES_PER_PROGRESS: u64 = 2048;
/// In the heal phase, this many ticks without any progress (no slot chosen,
/// applied or acknowledged) ends the run early as a liveness failure.
const STALL_TICKS: u64 = 3_000;

/// Counters of one run, for the summary and the determinism test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub ticks: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub crashes: u64,
    pub crashes_before_sync: u64,
    pub partitions: u64,
    pub leader_changes: u64,
    pub issued: u64,
    pub acked: u64,
    pub abandoned: u64,
    /// Final `slot_out` of the replicas (after the heal phase).
    pub slots: u64,
    /// Ticks the heal phase needed to converge.
    pub heal_ticks: u64,
    /// Longest command queue any proposer had (sampled every tick).
    pub max_queued: usize,
    /// Most messages and bytes delivered in one storm window.
    pub peak_window_msgs: u64,
    pub peak_window_bytes: u64,
    /// Replica snapshots made durable, acceptor storage rewrites.
    pub snapshots: u64,
    pub rewrites: u64,
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub shape: Shape,
    pub faults: Faults,
    pub result: Result<(), Violation>,
    pub stats: Stats,
    /// Hash of every event of the run: same seed ⇒ same hash.
    pub trace_hash: u64,
}

/// Runs one seed to completion (chaos, then heal and progress).
pub fn run_seed(seed: u64, opts: &SimOptions) -> RunReport {
    let mut sim = Sim::new(seed, opts.clone());
    let result = sim.run();
    if let Err(v) = &result {
        sim.log(|| format!("VIOLATION {v}"));
    }
    sim.stats.ticks = sim.now;
    RunReport {
        seed,
        shape: sim.shape,
        faults: sim.faults.clone(),
        result,
        stats: sim.stats.clone(),
        trace_hash: sim.hash.0,
    }
}

#[derive(Clone, Copy, Default)]
struct Roles {
    acceptor: bool,
    proposer: bool,
    learner: bool,
    replica: bool,
}

impl Roles {
    const ALL: Roles = Roles {
        acceptor: true,
        proposer: true,
        learner: true,
        replica: true,
    };

    fn hosts(&self, role: Role) -> bool {
        match role {
            Role::Acceptor => self.acceptor,
            Role::Proposer => self.proposer,
            Role::Learner => self.learner,
            Role::Replica => self.replica,
        }
    }
}

struct Node {
    id: NodeId,
    roles: Roles,
    up: bool,
    crashable: bool,
    down_until: u64,
    incarnation: u64,
    /// The acceptor's disk; survives crashes (only its synced part does).
    disk: MemStorage,
    /// What the disk durably holds, replayed record by record as each sync
    /// completes: the reference for "nothing revealed before persisted".
    durable: AcceptorState,
    acceptor: Option<Acceptor>,
    proposer: Option<Proposer>,
    learner: Option<Learner>,
    replica: Option<Replica<Register>>,
    /// The replica's durable snapshot; survives crashes.
    snapshot: Option<Snapshot>,
    was_leader: bool,
    /// Highest ballot this acceptor ever revealed (in a Promise or a vote):
    /// its promise may never fall below it, crash or not.
    revealed: Ballot,
    /// The replica's `slot_out` after its last step (logs only grow).
    slot_out: u64,
}

struct Packet {
    from: usize,
    to: usize,
    bytes: Vec<u8>,
    /// Exempt from loss, partitions and sender crashes (see
    /// [`SimOptions::reliable_learner_feed`]).
    reliable: bool,
}

struct Request {
    seq: u64,
    op: RegOp,
    op_bytes: Bytes,
    /// Replicas this request was handed to; any of them may answer.
    sent_to: Vec<usize>,
    last_sent: u64,
}

enum ClientState {
    Idle {
        next_at: u64,
    },
    Waiting(Request),
    /// The heal phase issues no new requests from the chaos clients.
    Stopped,
}

struct Client {
    id: ClientId,
    seq: u64,
    state: ClientState,
}

struct Ack {
    output: RegOutput,
    acked_at: u64,
}

/// An acknowledged read that was served by read index, not the log.
struct IndexRead {
    key: u8,
    output: RegOutput,
    issued_at: u64,
    acked_at: u64,
}

pub(crate) struct Sim {
    seed: u64,
    opts: SimOptions,
    shape: Shape,
    faults: Faults,
    /// The faults in force: `faults` during chaos, none while healing.
    active: Faults,
    healing: bool,
    rng: SplitMix64,
    now: u64,
    nodes: Vec<Node>,
    index: BTreeMap<NodeId, usize>,
    acceptors: Vec<NodeId>,
    proposers: Vec<NodeId>,
    learners: Vec<NodeId>,
    replicas: Vec<NodeId>,
    pcfg: ProposerConfig,
    rcfg: ReplicaConfig,
    /// In flight, keyed by (delivery tick, send order).
    net: BTreeMap<(u64, u64), Packet>,
    next_packet: u64,
    /// Side of each node, and when the partition heals.
    partition: Option<(Vec<bool>, u64)>,
    clients: Vec<Client>,
    client_of: BTreeMap<ClientId, usize>,
    acks: BTreeMap<(ClientId, u64), Ack>,
    ops: BTreeMap<u64, RegOp>,
    next_op: u64,
    checker: Checker,
    stats: Stats,
    hash: TraceHash,
    /// Deliveries since tick `storm_since`, for the storm detector.
    storm_count: u64,
    storm_bytes: u64,
    storm_since: u64,
    /// Progress in this storm window: how far deliveries moved their
    /// node through the log (each capped, see [`STORM_STEP_CAP`]), and
    /// slots chosen since `storm_chosen`.
    storm_moved: u64,
    storm_chosen: u64,
    /// Deliveries per (role of message, variant name) in the current window.
    storm_kinds: BTreeMap<&'static str, u64>,
}

impl Sim {
    pub(crate) fn new(seed: u64, opts: SimOptions) -> Sim {
        let mut rng = SplitMix64::new(seed);
        // Always draw, then override: a forced shape keeps every other draw.
        let drawn = Shape::ALL[rng.range(0, 3) as usize];
        let shape = opts.shape.unwrap_or(drawn);
        let mut faults = Faults::draw(&mut rng);
        if opts.bug == Bug::StaleReadIndex {
            faults.read_index = true;
        }
        if opts.stress {
            // Frequent crashes and partitions, hence frequent leader changes:
            // where recovery bugs show.
            faults.crash = faults.crash.max(1.0 / 100.0);
            faults.partition = faults.partition.max(1.0 / 200.0);
        }
        let all = |name: &str| (NodeId::new(name), Roles::ALL);
        let only = |name: &str, f: fn(&mut Roles)| {
            let mut r = Roles::default();
            f(&mut r);
            (NodeId::new(name), r)
        };
        let layout: Vec<(NodeId, Roles)> = match shape {
            Shape::Three => ["n1", "n2", "n3"].map(all).into(),
            Shape::Five => ["n1", "n2", "n3", "n4", "n5"].map(all).into(),
            Shape::Split => vec![
                only("a1", |r| r.acceptor = true),
                only("a2", |r| r.acceptor = true),
                only("a3", |r| r.acceptor = true),
                only("p1", |r| r.proposer = true),
                only("p2", |r| r.proposer = true),
                only("l1", |r| r.learner = true),
                only("l2", |r| r.learner = true),
                only("r1", |r| r.replica = true),
                only("r2", |r| r.replica = true),
            ],
        };
        let pick = |f: fn(&Roles) -> bool| -> Vec<NodeId> {
            layout
                .iter()
                .filter(|(_, r)| f(r))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let acceptors = pick(|r| r.acceptor);
        let proposers = pick(|r| r.proposer);
        let learners = pick(|r| r.learner);
        let replicas = pick(|r| r.replica);
        let crashable = Self::draw_crashable(&mut rng, shape, &layout, opts.crash_policy);
        let nodes = layout
            .iter()
            .enumerate()
            .map(|(i, (id, roles))| Node {
                id: id.clone(),
                roles: *roles,
                up: false,
                crashable: crashable.contains(&i),
                down_until: 0,
                incarnation: 0,
                disk: MemStorage::default(),
                durable: AcceptorState::default(),
                acceptor: None,
                proposer: None,
                learner: None,
                replica: None,
                was_leader: false,
                revealed: Ballot::zero(),
                slot_out: 0,
                snapshot: None,
            })
            .collect::<Vec<_>>();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let snapshot_every = faults.snapshot_every;
        let read_index = faults.read_index;
        let message_budget = if opts.tiny_messages {
            1
        } else {
            synod_types::MESSAGE_BUDGET
        };
        let pcfg = ProposerConfig {
            window: faults.window,
            max_batch: faults.max_batch,
            thrifty: faults.thrifty,
            message_budget,
            ..ProposerConfig::default()
        };
        let clients = (0..faults.clients)
            .map(|_| Client {
                id: ClientId(rng.next_u64()),
                seq: 0,
                state: ClientState::Idle { next_at: 1 },
            })
            .collect::<Vec<Client>>();
        let client_of = clients.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        let checker = Checker::new(acceptors.len());
        let mut sim = Sim {
            seed,
            shape,
            active: faults.clone(),
            faults,
            healing: false,
            rng,
            now: 0,
            nodes,
            index,
            acceptors,
            proposers,
            learners,
            replicas,
            pcfg,
            // Small snapshots and chunks, so compaction, snapshot transfer
            // and restores happen many times per run.
            rcfg: ReplicaConfig {
                snapshot_every,
                chunk_bytes: 48,
                read_index,
                message_budget,
                ..ReplicaConfig::default()
            },
            net: BTreeMap::new(),
            next_packet: 0,
            partition: None,
            clients,
            client_of,
            acks: BTreeMap::new(),
            ops: BTreeMap::new(),
            next_op: 1,
            checker,
            stats: Stats::default(),
            hash: TraceHash::default(),
            storm_count: 0,
            storm_bytes: 0,
            storm_since: 0,
            storm_moved: 0,
            storm_chosen: 0,
            storm_kinds: BTreeMap::new(),
            opts,
        };
        for i in 0..sim.nodes.len() {
            sim.boot(i).expect("a fresh disk always matches its shadow");
        }
        sim
    }

    /// Which nodes may ever crash (see [`CrashPolicy`]).
    fn draw_crashable(
        rng: &mut SplitMix64,
        shape: Shape,
        layout: &[(NodeId, Roles)],
        policy: CrashPolicy,
    ) -> Vec<usize> {
        let n = layout.len();
        if policy == CrashPolicy::Rolling {
            return (0..n).collect();
        }
        let mut one_of = |group: &[usize]| group[rng.range(0, group.len() as u64) as usize];
        match shape {
            Shape::Three | Shape::Five => {
                let mut all: Vec<usize> = (0..n).collect();
                let mut out = Vec::new();
                for _ in 0..(n - majority(n)) {
                    let k = one_of(&all);
                    all.retain(|x| *x != k);
                    out.push(k);
                }
                out.sort_unstable();
                out
            }
            Shape::Split => {
                // One node of each role group (indices as laid out above).
                let groups: [&[usize]; 4] = [&[0, 1, 2], &[3, 4], &[5, 6], &[7, 8]];
                groups.iter().map(|g| one_of(g)).collect()
            }
        }
    }

    fn log(&self, f: impl FnOnce() -> String) {
        if self.opts.verbose {
            // A closed pipe (`| head`) must not abort the run.
            let _ = writeln!(std::io::stdout(), "t={:<6} {}", self.now, f());
        }
    }

    fn run(&mut self) -> Check {
        self.log(|| {
            format!(
                "seed={} shape={} faults: {}",
                self.seed,
                self.shape,
                self.faults.summary()
            )
        });
        let crashable: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.crashable)
            .map(|n| n.id.as_str())
            .collect();
        self.log(|| format!("crashable nodes: {crashable:?}"));
        for _ in 0..self.opts.chaos_ticks {
            self.step_tick()?;
        }
        if self.opts.safety_only {
            return Ok(());
        }
        self.heal()
    }

    // ---------------------------------------------------------------- ticks

    fn step_tick(&mut self) -> Check {
        self.now += 1;
        self.hash.u64(self.now);
        self.fault_schedule()?;
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let p = entry.remove();
            self.deliver(p)?;
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                continue;
            }
            if let Some(a) = self.nodes[i].acceptor.as_mut() {
                a.tick();
            }
            if let Some(p) = self.nodes[i].proposer.as_mut() {
                self.stats.max_queued = self.stats.max_queued.max(p.queued());
                let out = p.tick();
                self.proposer_effects(i, out.send)?;
            }
            if let Some(l) = self.nodes[i].learner.as_mut() {
                let out = l.tick();
                self.learner_effects(i, out)?;
            }
            if let Some(r) = self.nodes[i].replica.as_mut() {
                let out = r.tick();
                self.replica_effects(i, out)?;
            }
        }
        self.clients_tick()
    }

    fn fault_schedule(&mut self) -> Check {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up && self.now >= self.nodes[i].down_until {
                self.boot(i)?;
            }
        }
        if let Some((_, until)) = &self.partition {
            if self.now >= *until {
                self.partition = None;
                self.log(|| "partition healed".to_string());
            }
        }
        if self.active.partition > 0.0
            && self.partition.is_none()
            && self.rng.chance(self.active.partition)
        {
            let sides: Vec<bool> = (0..self.nodes.len())
                .map(|_| self.rng.chance(0.5))
                .collect();
            if sides.iter().any(|s| *s) && sides.iter().any(|s| !*s) {
                let until = self.now
                    + self
                        .rng
                        .range(self.active.partition_min, self.active.partition_max + 1);
                let (a, b): (Vec<&NodeId>, Vec<&NodeId>) = {
                    let a = self
                        .nodes
                        .iter()
                        .zip(&sides)
                        .filter(|(_, s)| **s)
                        .map(|(n, _)| &n.id)
                        .collect();
                    let b = self
                        .nodes
                        .iter()
                        .zip(&sides)
                        .filter(|(_, s)| !**s)
                        .map(|(n, _)| &n.id)
                        .collect();
                    (a, b)
                };
                self.log(|| format!("partition {a:?} | {b:?} until t={until}"));
                self.stats.partitions += 1;
                self.partition = Some((sides, until));
            }
        }
        if self.active.crash > 0.0 && self.rng.chance(self.active.crash) {
            let candidates: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.can_crash(i))
                .collect();
            if !candidates.is_empty() {
                let i = candidates[self.rng.range(0, candidates.len() as u64) as usize];
                self.crash(i, "crash");
            }
        }
        Ok(())
    }

    /// A crash must leave a majority of acceptors and one node of every role
    /// group up; otherwise nothing could be required of the heal phase.
    fn can_crash(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        if !n.up || !n.crashable || self.healing {
            return false;
        }
        let up_after = |role: Role| {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(j, m)| *j != i && m.up && m.roles.hosts(role))
                .count()
        };
        up_after(Role::Acceptor) >= majority(self.acceptors.len())
            && up_after(Role::Proposer) >= 1
            && up_after(Role::Learner) >= 1
            && up_after(Role::Replica) >= 1
    }

    fn crash(&mut self, i: usize, why: &str) {
        self.stats.crashes += 1;
        let node = &mut self.nodes[i];
        node.up = false;
        node.incarnation += 1;
        node.acceptor = None;
        node.proposer = None;
        node.learner = None;
        node.replica = None;
        node.was_leader = false;
        // Unsynced records die with the process.
        node.disk = node.disk.reopen();
        if self.opts.bug == Bug::AcceptorAmnesia {
            node.disk = MemStorage::default();
            node.durable = AcceptorState::default();
        }
        node.down_until = self.now
            + self
                .rng
                .range(self.active.down_min, self.active.down_max + 1);
        let until = node.down_until;
        self.log(|| format!("CRASH {} ({why}), down until t={until}", self.nodes[i].id));
        // Messages to it are lost; its own outgoing ones may or may not
        // have left the machine.
        let rng = &mut self.rng;
        let before = self.net.len();
        self.net
            .retain(|_, p| p.to != i && (p.from != i || p.reliable || rng.chance(0.5)));
        self.stats.dropped += (before - self.net.len()) as u64;
        // Clients whose every replica died give up: the request is
        // indeterminate, and a client must not issue seq n+1 before n is
        // answered, so it starts a fresh session.
        for c in 0..self.clients.len() {
            let ClientState::Waiting(req) = &mut self.clients[c].state else {
                continue;
            };
            req.sent_to.retain(|r| *r != i);
            if req.sent_to.is_empty() {
                let seq = req.seq;
                let old = self.clients[c].id;
                self.client_of.remove(&old);
                let id = ClientId(self.rng.next_u64());
                self.client_of.insert(id, c);
                self.clients[c] = Client {
                    id,
                    seq: 0,
                    state: ClientState::Idle {
                        next_at: self.now + 1,
                    },
                };
                self.stats.abandoned += 1;
                self.log(|| {
                    format!(
                        "client {:x} abandons seq {seq}, continues as {:x}",
                        old.0 & 0xffff,
                        id.0 & 0xffff
                    )
                });
            }
        }
    }

    /// Starts (or restarts) node `i`: the acceptor from what its disk kept,
    /// every other role fresh, as they keep nothing durable.
    fn boot(&mut self, i: usize) -> Check {
        let now = self.now;
        let bug = self.opts.bug;
        let seed = mix(self.seed ^ ((i as u64) << 40) ^ self.nodes[i].incarnation);
        let topology = Topology {
            proposers: self.proposers.clone(),
            acceptors: self.acceptors.clone(),
            learners: self.learners.clone(),
            replicas: self.replicas.clone(),
        };
        // Each start of a replica gets its own range of read ids (the node
        // draws one at random); a restart tick is unique per node.
        let rcfg = ReplicaConfig {
            read_id_base: self.now << 32,
            ..self.rcfg.clone()
        };
        let node = &mut self.nodes[i];
        node.up = true;
        if node.roles.acceptor {
            let state = node.disk.load().expect("MemStorage never fails");
            if state != node.durable && bug == Bug::None {
                return Err(violation(
                    "recovery",
                    now,
                    format!(
                        "acceptor {} reloaded promised={:?} with {} accepted slots, but it had synced promised={:?} with {}",
                        node.id,
                        state.promised,
                        state.accepted.len(),
                        node.durable.promised,
                        node.durable.accepted.len()
                    ),
                ));
            }
            let acceptor = Acceptor::new(node.id.clone(), self.learners.clone(), state)
                .with_proposers(self.proposers.clone())
                .with_pre_vote_lease(self.pcfg.election_timeout_ticks)
                .with_message_budget(self.pcfg.message_budget);
            if acceptor.promised() < &node.revealed && bug == Bug::None {
                return Err(violation(
                    "promise-monotonic",
                    now,
                    format!(
                        "acceptor {} restarted with promise {:?} below {:?}, which it had revealed",
                        node.id,
                        acceptor.promised(),
                        node.revealed
                    ),
                ));
            }
            node.acceptor = Some(acceptor);
        }
        if node.roles.proposer {
            node.proposer = Some(Proposer::new(
                node.id.clone(),
                &topology,
                self.pcfg.clone(),
                seed,
            ));
        }
        if node.roles.learner {
            // Fetch-round ids, like read ids, get a range per start.
            node.learner = Some(
                Learner::new(node.id.clone(), &topology, now << 32)
                    .with_message_budget(self.pcfg.message_budget),
            );
        }
        if node.roles.replica {
            let fresh = || Replica::new(&node.id, &topology, rcfg.clone(), Register::default());
            node.replica = Some(match &node.snapshot {
                Some(snap) => Replica::restore(
                    &node.id,
                    &topology,
                    rcfg.clone(),
                    Register::default(),
                    snap.data.clone(),
                )
                .map_err(|e| violation("snapshot-restore", now, format!("{}: {e}", node.id)))?,
                None => fresh(),
            });
            node.slot_out = 0;
            self.checker.replica_restarted(i);
        }
        if node.incarnation > 0 {
            self.log(|| format!("RESTART {}", self.nodes[i].id));
        }
        Ok(())
    }

    // -------------------------------------------------------------- network

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|(sides, _)| sides[a] != sides[b])
    }

    fn send_all(&mut self, from: usize, sends: Vec<(NodeId, Message)>) -> Check {
        for (to_id, msg) in sends {
            let Some(&to) = self.index.get(&to_id) else {
                return Err(violation(
                    "routing",
                    self.now,
                    format!(
                        "{} sent {} to unknown node {to_id}",
                        self.nodes[from].id,
                        trace::message(&msg)
                    ),
                ));
            };
            if !self.nodes[to].roles.hosts(msg.role()) {
                return Err(violation(
                    "routing",
                    self.now,
                    format!(
                        "{} sent {} to {to_id}, which hosts no {}",
                        self.nodes[from].id,
                        trace::message(&msg),
                        msg.role()
                    ),
                ));
            }
            // Everything goes through the codec, as on the real wire.
            let bytes = synod_codec::encode(&msg).map_err(|e| {
                violation(
                    "codec",
                    self.now,
                    format!("encode {}: {e}", trace::message(&msg)),
                )
            })?;
            let reliable = self.opts.reliable_learner_feed
                && matches!(msg, Message::Learner(LearnerMsg::Accepted { .. }));
            self.post(from, to, bytes, reliable);
        }
        Ok(())
    }

    /// Puts a message on the wire. Between two roles of the same node the
    /// real router hands it to a local mailbox: no loss, no duplicate, no
    /// partition, next tick; only a crash of the node loses it.
    fn post(&mut self, from: usize, to: usize, bytes: Vec<u8>, reliable: bool) {
        let local = from == to;
        let reliable = reliable || local;
        if !self.nodes[to].up
            || (!reliable && (self.partitioned(from, to) || self.rng.chance(self.active.loss)))
        {
            self.stats.dropped += 1;
            return;
        }
        let copies = if !local && self.rng.chance(self.active.dup) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = if local {
                1
            } else {
                self.rng.range(1, self.active.max_delay + 1)
            };
            if !local && self.rng.chance(self.active.slow) {
                delay += self.rng.range(1, self.active.slow_extra + 1);
            }
            self.next_packet += 1;
            self.net.insert(
                (self.now + delay, self.next_packet),
                Packet {
                    from,
                    to,
                    bytes: bytes.clone(),
                    reliable,
                },
            );
        }
    }

    fn deliver(&mut self, p: Packet) -> Check {
        if !self.nodes[p.to].up || (!p.reliable && self.partitioned(p.from, p.to)) {
            self.stats.dropped += 1;
            return Ok(());
        }
        self.stats.delivered += 1;
        self.hash.u64(((p.from as u64) << 32) | p.to as u64);
        self.hash.bytes(&p.bytes);
        let msg: Message = synod_codec::decode(&p.bytes).map_err(|e| {
            violation(
                "codec",
                self.now,
                format!("decode of a message we encoded failed: {e}"),
            )
        })?;
        self.storm_check(&msg, p.bytes.len())?;
        let from = self.nodes[p.from].id.clone();
        self.log(|| {
            format!(
                "{} → {}: {}",
                from,
                self.nodes[p.to].id,
                trace::message(&msg)
            )
        });
        let i = p.to;
        let before = self.log_position(i);
        let result = self.dispatch(i, from, msg);
        let moved = self.log_position(i).saturating_sub(before);
        self.storm_moved += moved.min(STORM_STEP_CAP);
        result
    }

    fn dispatch(&mut self, i: usize, from: NodeId, msg: Message) -> Check {
        let (now, name) = (self.now, self.nodes[i].id.clone());
        let missing = |role: &str| {
            violation(
                "routing",
                now,
                format!("{name} got a {role} message but hosts no {role}"),
            )
        };
        match msg {
            Message::Acceptor(m) => {
                let a = self.nodes[i]
                    .acceptor
                    .as_mut()
                    .ok_or_else(|| missing("acceptor"))?;
                let out = a.handle(from, m);
                self.acceptor_effects(i, out)
            }
            Message::Proposer(m) => {
                let pr = self.nodes[i]
                    .proposer
                    .as_mut()
                    .ok_or_else(|| missing("proposer"))?;
                let out = pr.handle(from, m);
                self.proposer_effects(i, out.send)
            }
            Message::Learner(m) => {
                let l = self.nodes[i]
                    .learner
                    .as_mut()
                    .ok_or_else(|| missing("learner"))?;
                let out = l.handle(from, m);
                self.learner_effects(i, out)
            }
            Message::Replica(mut m) => {
                if let (Bug::StaleReadIndex, ReplicaMsg::ReadIndex { index, .. }) =
                    (self.opts.bug, &mut m)
                {
                    *index = 0;
                }
                let r = self.nodes[i]
                    .replica
                    .as_mut()
                    .ok_or_else(|| missing("replica"))?;
                let out = r.handle(from, m);
                self.replica_effects(i, out)
            }
        }
    }

    fn storm_check(&mut self, msg: &Message, bytes: usize) -> Check {
        if self.now >= self.storm_since + STORM_WINDOW {
            self.storm_since = self.now;
            self.storm_count = 0;
            self.storm_bytes = 0;
            self.storm_kinds.clear();
            self.storm_moved = 0;
            self.storm_chosen = self.checker.chosen().len() as u64;
        }
        self.storm_count += 1;
        self.storm_bytes += bytes as u64;
        self.stats.peak_window_msgs = self.stats.peak_window_msgs.max(self.storm_count);
        self.stats.peak_window_bytes = self.stats.peak_window_bytes.max(self.storm_bytes);
        *self.storm_kinds.entry(trace::kind(msg)).or_default() += 1;
        if self.storm_count <= STORM_LIMIT && self.storm_bytes <= STORM_BYTES {
            return Ok(());
        }
        // Over the fixed limit: only now is progress worth counting.
        let progress = self.storm_progress();
        if self.storm_count <= STORM_LIMIT + progress * STORM_PER_PROGRESS
            && self.storm_bytes <= STORM_BYTES + progress * STORM_BYTES_PER_PROGRESS
        {
            return Ok(());
        }
        let mut kinds: Vec<(u64, &str)> = self.storm_kinds.iter().map(|(k, n)| (*n, *k)).collect();
        kinds.sort_unstable_by(|a, b| b.cmp(a));
        kinds.truncate(4);
        Err(violation(
            "message-storm",
            self.now,
            format!(
                "{} messages ({} bytes) delivered since t={} with {progress} units of progress (limit \
                 {STORM_LIMIT} messages or {STORM_BYTES} bytes per {STORM_WINDOW} ticks, plus \
                 {STORM_PER_PROGRESS} messages or {STORM_BYTES_PER_PROGRESS} bytes per unit); most: {kinds:?}\n    {}",
                self.storm_count,
                self.storm_bytes,
                self.storm_since,
                self.stuck("state when the storm was detected").detail
            ),
        ))
    }

    // ------------------------------------------------------- role effects

    /// The acceptor shell, exactly as the real one: append, sync, and only
    /// then let the messages go.
    fn acceptor_effects(&mut self, i: usize, out: synod_acceptor::Output) -> Check {
        if !out.persist.is_empty() {
            self.nodes[i]
                .disk
                .append(&out.persist)
                .expect("MemStorage never fails");
            if self.opts.bug == Bug::RevealBeforeSync {
                self.record_votes(i, &out.send)?;
                self.send_all(i, out.send)?;
                if self.can_crash(i) && self.rng.chance(0.3) {
                    self.stats.crashes_before_sync += 1;
                    self.crash(i, "after sending, before sync (injected bug)");
                    return Ok(());
                }
                return self.sync(i, out.persist);
            }
            if self.active.crash_before_sync > 0.0
                && self.can_crash(i)
                && self.rng.chance(self.active.crash_before_sync)
            {
                self.stats.crashes_before_sync += 1;
                self.crash(i, "between append and sync: records and replies lost");
                return Ok(());
            }
            self.sync(i, out.persist)?;
        }
        if out.rewrite {
            let node = &mut self.nodes[i];
            if let Some(a) = &node.acceptor {
                node.disk
                    .rewrite(a.state())
                    .expect("MemStorage never fails");
                node.durable = a.state().clone();
                self.stats.rewrites += 1;
            }
        }
        if self.opts.bug == Bug::None {
            self.check_revealed(i, &out.send)?;
            self.check_promise(i, &out.send)?;
        }
        self.record_votes(i, &out.send)?;
        self.send_all(i, out.send)
    }

    fn sync(&mut self, i: usize, records: Vec<Record>) -> Check {
        let node = &mut self.nodes[i];
        node.disk.sync().expect("MemStorage never fails");
        for r in records {
            node.durable.apply(r);
        }
        Ok(())
    }

    /// Nothing an acceptor tells may be missing from its disk.
    fn check_revealed(&self, i: usize, sends: &[(NodeId, Message)]) -> Check {
        let node = &self.nodes[i];
        let name = node.id.as_str();
        for (_, m) in sends {
            match m {
                Message::Proposer(ProposerMsg::Promise {
                    ballot, accepted, ..
                }) => {
                    checker::revealed_promise(self.now, name, &node.durable, ballot)?;
                    for e in accepted {
                        checker::revealed_vote(
                            self.now,
                            name,
                            &node.durable,
                            e.slot,
                            &e.ballot,
                            Some(&e.value),
                        )?;
                    }
                }
                Message::Proposer(ProposerMsg::Accepted { ballot, slot }) => {
                    checker::revealed_vote(self.now, name, &node.durable, *slot, ballot, None)?;
                }
                Message::Learner(LearnerMsg::Accepted {
                    ballot,
                    slot,
                    value,
                }) => {
                    checker::revealed_vote(
                        self.now,
                        name,
                        &node.durable,
                        *slot,
                        ballot,
                        value.as_ref(),
                    )?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Promises only grow: the acceptor's promise is at least every ballot
    /// it has revealed so far.
    fn check_promise(&mut self, i: usize, sends: &[(NodeId, Message)]) -> Check {
        let node = &mut self.nodes[i];
        for (_, m) in sends {
            if let Message::Proposer(
                ProposerMsg::Promise { ballot, .. } | ProposerMsg::Accepted { ballot, .. },
            ) = m
            {
                if *ballot > node.revealed {
                    node.revealed = ballot.clone();
                }
            }
        }
        let promised = node
            .acceptor
            .as_ref()
            .map(|a| a.promised().clone())
            .unwrap_or_default();
        if promised < node.revealed {
            return Err(violation(
                "promise-monotonic",
                self.now,
                format!(
                    "acceptor {} promises {promised:?}, below {:?} which it revealed",
                    node.id, node.revealed
                ),
            ));
        }
        Ok(())
    }

    /// A vote counts from the moment it is revealed (a p2b leaves the
    /// acceptor): that is the textbook meaning of "a majority accepted".
    fn record_votes(&mut self, i: usize, sends: &[(NodeId, Message)]) -> Check {
        for (_, m) in sends {
            if let Message::Learner(LearnerMsg::Accepted {
                ballot,
                slot,
                value,
            }) = m
            {
                // Most copies carry no value: the vote is for what the
                // acceptor holds in that slot under that ballot.
                let held = self.nodes[i]
                    .acceptor
                    .as_ref()
                    .and_then(|a| a.accepted(*slot))
                    .filter(|(b, _)| b == ballot)
                    .map(|(_, v)| v.clone());
                let Some(value) = value.clone().or(held) else {
                    return Err(violation(
                        "vote",
                        self.now,
                        format!(
                            "acceptor {} voted for slot {slot} in {ballot:?} but holds no value there",
                            self.nodes[i].id
                        ),
                    ));
                };
                self.checker.vote(self.now, i, *slot, ballot, &value)?;
            }
        }
        Ok(())
    }

    fn proposer_effects(&mut self, i: usize, sends: Vec<(NodeId, Message)>) -> Check {
        let node = &mut self.nodes[i];
        if let Some(p) = &node.proposer {
            let leader = p.is_leader();
            if leader != node.was_leader {
                node.was_leader = leader;
                let ballot = p.ballot().clone();
                if leader {
                    self.stats.leader_changes += 1;
                }
                self.log(|| {
                    let what = if leader { "LEADER" } else { "steps down from" };
                    format!("{} {what} {ballot:?}", self.nodes[i].id)
                });
            }
        }
        self.send_all(i, sends)
    }

    fn learner_effects(&mut self, i: usize, out: synod_learner::Output) -> Check {
        let who = self.nodes[i].id.clone();
        for (slot, value) in &out.decided {
            self.checker
                .announced(self.now, who.as_str(), *slot, value)?;
        }
        for (_, m) in &out.send {
            match m {
                Message::Replica(ReplicaMsg::Decide { slot, value, .. }) => {
                    self.checker
                        .announced(self.now, who.as_str(), *slot, value)?;
                }
                Message::Replica(ReplicaMsg::Decisions { entries, .. }) => {
                    for (slot, _, value) in entries {
                        self.checker
                            .announced(self.now, who.as_str(), *slot, value)?;
                    }
                }
                _ => {}
            }
        }
        self.send_all(i, out.send)
    }

    fn replica_effects(&mut self, i: usize, mut out: synod_replica::Output) -> Check {
        // The sim's disk writes snapshots at once; a crash before this point
        // simply loses the snapshot, which is allowed.
        if let Some(snap) = out.snapshot.take() {
            let node = &mut self.nodes[i];
            if let Some(r) = node.replica.as_mut() {
                self.stats.snapshots += 1;
                node.snapshot = Some(snap.clone());
                let more = r.snapshot_durable(snap);
                out.send.extend(more.send);
                out.replies.extend(more.replies);
            }
        }
        let node = &mut self.nodes[i];
        if let Some(r) = &node.replica {
            if r.slot_out() < node.slot_out {
                return Err(violation(
                    "log-monotonic",
                    self.now,
                    format!(
                        "replica {} went back from slot_out {} to {}",
                        node.id,
                        node.slot_out,
                        r.slot_out()
                    ),
                ));
            }
            node.slot_out = r.slot_out();
            self.checker
                .replica(self.now, i, node.id.as_str(), r.slot_out(), r.state())?;
        }
        for reply in out.replies {
            self.on_reply(i, reply)?;
        }
        self.send_all(i, out.send)
    }

    // --------------------------------------------------------------- clients

    fn live_replicas(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].replica.is_some())
            .collect()
    }

    fn clients_tick(&mut self) -> Check {
        for c in 0..self.clients.len() {
            match &self.clients[c].state {
                ClientState::Idle { next_at } if self.now >= *next_at => {
                    if self.healing {
                        self.clients[c].state = ClientState::Stopped;
                    } else {
                        self.issue(c)?;
                    }
                }
                ClientState::Waiting(req) => {
                    let Some(after) = self.active.client_retry else {
                        continue;
                    };
                    let live = self.live_replicas();
                    if self.now - req.last_sent < after || live.is_empty() {
                        continue;
                    }
                    // Same (client, seq, op) again, through another replica:
                    // the session table must keep it at most once.
                    let r = live[self.rng.range(0, live.len() as u64) as usize];
                    let (id, seq, op_bytes) = (self.clients[c].id, req.seq, req.op_bytes.clone());
                    if let ClientState::Waiting(req) = &mut self.clients[c].state {
                        req.last_sent = self.now;
                        if !req.sent_to.contains(&r) {
                            req.sent_to.push(r);
                        }
                    }
                    self.log(|| {
                        format!(
                            "client {:x} retries seq {seq} at {}",
                            id.0 & 0xffff,
                            self.nodes[r].id
                        )
                    });
                    let out = self.nodes[r]
                        .replica
                        .as_mut()
                        .expect("live")
                        .handle_request(id, seq, op_bytes);
                    self.replica_effects(r, out)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Client `c` sends its next request to a random live replica.
    fn issue(&mut self, c: usize) -> Check {
        let live = self.live_replicas();
        if live.is_empty() {
            return Ok(());
        }
        let r = live[self.rng.range(0, live.len() as u64) as usize];
        let key = self.rng.range(0, KEYS) as u8;
        let id = self.next_op;
        self.next_op += 1;
        let op = if self.rng.chance(WRITE_RATIO) {
            RegOp::Set { key, value: id }
        } else {
            RegOp::Get { key, id }
        };
        self.send_request(c, r, op)
    }

    fn send_request(&mut self, c: usize, r: usize, op: RegOp) -> Check {
        let op_bytes = Bytes::from(synod_codec::encode(&op).expect("RegOp encodes"));
        let client = &mut self.clients[c];
        client.seq += 1;
        let (id, seq) = (client.id, client.seq);
        client.state = ClientState::Waiting(Request {
            seq,
            op,
            op_bytes: op_bytes.clone(),
            sent_to: vec![r],
            last_sent: self.now,
        });
        self.ops.insert(op.id(), op);
        self.checker.issue(
            id,
            seq,
            Issued {
                op_bytes: op_bytes.clone(),
                op_id: op.id(),
                tick: self.now,
            },
        );
        self.stats.issued += 1;
        self.log(|| {
            format!(
                "client {:x} seq {seq} → {}: {op:?}",
                id.0 & 0xffff,
                self.nodes[r].id
            )
        });
        let out = self.nodes[r]
            .replica
            .as_mut()
            .expect("live")
            .handle_request(id, seq, op_bytes);
        self.replica_effects(r, out)
    }

    fn on_reply(&mut self, r: usize, reply: Reply) -> Check {
        let Some(&c) = self.client_of.get(&reply.client) else {
            return Ok(()); // a session its client abandoned
        };
        let key = (reply.client, reply.seq);
        if reply.output == Answer::NoAnswer && reply.seq < self.clients[c].seq {
            // The replica gives up on a request its client already moved
            // past (answered elsewhere after a retry): no output is due.
            return Ok(());
        }
        // The sim's outputs are far below the session tables' byte bound,
        // so an `OutputDropped` is as wrong here as no output at all.
        let output = match &reply.output {
            Answer::Output(b) => synod_codec::decode::<RegOutput>(b).ok(),
            Answer::OutputDropped | Answer::NoAnswer => None,
        }
        .ok_or_else(|| {
            violation(
                "reply",
                self.now,
                format!(
                    "replica {} answered {:?}/{} without an output",
                    self.nodes[r].id, reply.client, reply.seq
                ),
            )
        })?;
        if let Some(prev) = self.acks.get(&key) {
            let index_read = self.faults.read_index
                && self
                    .checker
                    .issued
                    .get(&key)
                    .and_then(|i| self.ops.get(&i.op_id))
                    .is_some_and(|op| !op.is_write());
            // A retried read-index read is served again, later, by another
            // replica: it may see newer writes. The client took the first
            // answer; the checker places that one.
            if prev.output != output && !index_read {
                return Err(violation(
                    "reply",
                    self.now,
                    format!(
                        "replica {} answered {:?}/{} with {output:?}, an earlier answer was {:?}",
                        self.nodes[r].id, reply.client, reply.seq, prev.output
                    ),
                ));
            }
            return Ok(());
        }
        match &self.clients[c].state {
            ClientState::Waiting(req) if req.seq == reply.seq => {
                let op = req.op;
                self.log(|| {
                    format!(
                        "client {:x} seq {} acked by {}: {op:?} → {output:?}",
                        reply.client.0 & 0xffff,
                        reply.seq,
                        self.nodes[r].id
                    )
                });
                self.acks.insert(
                    key,
                    Ack {
                        output,
                        acked_at: self.now,
                    },
                );
                self.stats.acked += 1;
                let next_at = self.now + self.rng.range(0, self.active.think_max + 1);
                self.clients[c].state = ClientState::Idle { next_at };
                Ok(())
            }
            _ => Err(violation(
                "reply",
                self.now,
                format!(
                    "replica {} answered {:?}/{}, which its client is not waiting for",
                    self.nodes[r].id, reply.client, reply.seq
                ),
            )),
        }
    }

    // ------------------------------------------------------------ heal phase

    /// Faults stop and every node comes back; the cluster must then answer
    /// every outstanding request, converge, and take one more write.
    fn heal(&mut self) -> Check {
        self.healing = true;
        self.active = self.faults.calm();
        self.partition = None;
        self.log(|| "HEAL: faults off, every node restarts".to_string());
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                self.boot(i)?;
            }
        }
        let start = self.now;
        let deadline = self.now + self.opts.heal_ticks;
        let mut progress = self.progress();
        while !self.quiescent() {
            if self.now >= deadline || self.now >= progress.1 + STALL_TICKS {
                return Err(self.stuck(&format!(
                    "heal phase: outstanding requests did not complete / replicas did not converge \
                     (no progress since t={})",
                    progress.1
                )));
            }
            self.step_tick()?;
            progress = self.track_progress(progress);
        }
        // A fresh write, from a fresh client, must get through.
        let c = self.clients.len();
        let id = ClientId(self.rng.next_u64());
        self.clients.push(Client {
            id,
            seq: 0,
            state: ClientState::Stopped,
        });
        self.client_of.insert(id, c);
        let live = self.live_replicas();
        let r = live[self.rng.range(0, live.len() as u64) as usize];
        let value = self.next_op;
        self.next_op += 1;
        self.log(|| "HEAL: final write".to_string());
        self.send_request(c, r, RegOp::Set { key: 0, value })?;
        while !self.quiescent() {
            if self.now >= deadline || self.now >= progress.1 + STALL_TICKS {
                return Err(self.stuck(&format!(
                    "heal phase: the write issued after healing was not acknowledged / applied everywhere \
                     (no progress since t={})",
                    progress.1
                )));
            }
            self.step_tick()?;
            progress = self.track_progress(progress);
        }
        self.stats.heal_ticks = self.now - start;
        if !self.checker.canonical().contains(&value) {
            return Err(self.stuck("the write issued after healing was never applied"));
        }
        self.final_check()
    }

    /// A fingerprint of progress: chosen slots, applied slots, acks.
    fn progress(&self) -> ((usize, u64, u64), u64) {
        let applied = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.slot_out())
            .sum();
        (
            (self.checker.chosen().len(), applied, self.stats.acked),
            self.now,
        )
    }

    /// `(fingerprint, tick it last changed)`, updated.
    fn track_progress(&self, last: ((usize, u64, u64), u64)) -> ((usize, u64, u64), u64) {
        let now = self.progress();
        if now.0 != last.0 {
            now
        } else {
            last
        }
    }

    /// No client waits, every replica applied every chosen slot and has
    /// nothing pending.
    fn quiescent(&self) -> bool {
        if self
            .clients
            .iter()
            .any(|c| matches!(c.state, ClientState::Waiting(_)))
        {
            return false;
        }
        let want = self
            .checker
            .chosen()
            .last_key_value()
            .map_or(0, |(s, _)| s + 1);
        self.nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .all(|r| r.slot_out() >= want && r.pending() == 0)
    }

    /// Where node `i`'s roles stand in the log, summed: its proposer's
    /// first unchosen slot, its learner's first unlearned one, its
    /// replica's next to apply.
    fn log_position(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        n.proposer.as_ref().map_or(0, |x| x.first_unchosen())
            + n.learner.as_ref().map_or(0, |x| x.first_unlearned())
            + n.replica.as_ref().map_or(0, |x| x.slot_out())
    }

    /// Progress in the current storm window: slots newly chosen plus every
    /// role's forward movement through the log.
    fn storm_progress(&self) -> u64 {
        let chosen = (self.checker.chosen().len() as u64).saturating_sub(self.storm_chosen);
        self.storm_moved + chosen
    }

    fn stuck(&self, what: &str) -> Violation {
        let mut lines = vec![what.to_string()];
        let chosen = self.checker.chosen();
        let prefix = (0..).find(|s| !chosen.contains_key(s)).unwrap_or(0);
        lines.push(format!(
            "acceptors chose {} slots (contiguous up to {prefix}, highest {:?})",
            chosen.len(),
            chosen.last_key_value().map(|(s, _)| *s)
        ));
        // Chosen slots no live learner knows: no replica can ever get them.
        let learners: Vec<&Learner> = self
            .nodes
            .iter()
            .filter_map(|n| n.learner.as_ref())
            .collect();
        let unknown: Vec<u64> = chosen
            .keys()
            .copied()
            .filter(|s| learners.iter().all(|l| l.chosen(*s).is_none()))
            .collect();
        if !unknown.is_empty() {
            lines.push(format!(
                "{} chosen slots are known to no live learner, first: {:?}",
                unknown.len(),
                &unknown[..unknown.len().min(8)]
            ));
        }
        for n in &self.nodes {
            let mut parts = vec![format!("{}{}:", n.id, if n.up { "" } else { " (down)" })];
            if let Some(p) = &n.proposer {
                parts.push(format!(
                    "proposer {:?} {:?} first_unchosen={} leader={:?} inflight={} queued={}",
                    p.phase(),
                    p.ballot(),
                    p.first_unchosen(),
                    p.leader(),
                    p.inflight(),
                    p.queued()
                ));
            }
            if let Some(l) = &n.learner {
                let known = (0..).find(|s| l.chosen(*s).is_none()).unwrap_or(0);
                parts.push(format!("learner knows slots 0..{known}"));
            }
            if let Some(r) = &n.replica {
                parts.push(format!(
                    "replica slot_out={} pending={}",
                    r.slot_out(),
                    r.pending()
                ));
            }
            lines.push(parts.join(" "));
        }
        for c in &self.clients {
            if let ClientState::Waiting(req) = &c.state {
                let at: Vec<&str> = req
                    .sent_to
                    .iter()
                    .map(|r| self.nodes[*r].id.as_str())
                    .collect();
                lines.push(format!(
                    "client {:x} waits for seq {} at {at:?}",
                    c.id.0 & 0xffff,
                    req.seq
                ));
            }
        }
        violation("liveness", self.now, lines.join("\n    "))
    }

    /// End of run: rebuild the log from the acceptors' chosen values and
    /// hold every replica and every acknowledged answer against it.
    fn final_check(&mut self) -> Check {
        let now = self.now;
        let replicas: Vec<&Replica<Register>> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .collect();
        let slot_out = replicas[0].slot_out();
        self.stats.slots = slot_out;
        // Replay the chosen log with the replicas' at-most-once rule.
        let mut reference = Register::default();
        let mut sessions: BTreeMap<ClientId, u64> = BTreeMap::new();
        let mut applied: BTreeMap<(ClientId, u64), (usize, RegOutput)> = BTreeMap::new();
        for slot in 0..slot_out {
            let Some(value) = self.checker.chosen().get(&slot) else {
                return Err(violation(
                    "final",
                    now,
                    format!("replicas applied slot {slot}, which no majority of acceptors chose"),
                ));
            };
            for cmd in value.commands() {
                if sessions.get(&cmd.client).is_some_and(|s| *s >= cmd.seq) {
                    continue;
                }
                sessions.insert(cmd.client, cmd.seq);
                let op: RegOp = synod_codec::decode(&cmd.op).expect("validated at vote time");
                let pos = reference.applied().len();
                let out = reference.apply(op);
                applied.insert((cmd.client, cmd.seq), (pos, out));
            }
        }
        for (n, r) in self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref().map(|r| (n, r)))
        {
            if r.slot_out() != slot_out || r.state() != &reference {
                return Err(violation(
                    "final",
                    now,
                    format!(
                        "replica {} (slot_out {}, {} ops, digest {:#x}) differs from the chosen log replayed \
                         (slot_out {slot_out}, {} ops, digest {:#x})",
                        n.id,
                        r.slot_out(),
                        r.state().applied().len(),
                        r.state().digest(),
                        reference.applied().len(),
                        reference.digest()
                    ),
                ));
            }
        }
        // For each key, the surviving value is the last write in log order.
        let mut last_write: BTreeMap<u8, u64> = BTreeMap::new();
        for id in reference.applied() {
            if let Some(RegOp::Set { key, value }) = self.ops.get(id) {
                last_write.insert(*key, *value);
            }
        }
        if &last_write != reference.values() {
            return Err(violation(
                "final",
                now,
                format!(
                    "final registers {:?} are not the last writes in log order {last_write:?}",
                    reference.values()
                ),
            ));
        }
        // Every acknowledged request is in the log, answered as the log
        // says; reads served by read index are placed by what they returned.
        let mut index_reads = Vec::new();
        for ((client, seq), ack) in &self.acks {
            match applied.get(&(*client, *seq)) {
                None if self.faults.read_index => {
                    let op = self
                        .checker
                        .issued
                        .get(&(*client, *seq))
                        .and_then(|i| self.ops.get(&i.op_id).map(|op| (i.tick, *op)));
                    match op {
                        Some((issued_at, RegOp::Get { key, .. })) => index_reads.push(IndexRead {
                            key,
                            output: ack.output,
                            issued_at,
                            acked_at: ack.acked_at,
                        }),
                        _ => {
                            return Err(violation(
                                "acked-lost",
                                now,
                                format!(
                                "{client:?}/{seq} was acknowledged at t={} but is not in the log",
                                ack.acked_at
                            ),
                            ))
                        }
                    }
                }
                None => {
                    return Err(violation(
                        "acked-lost",
                        now,
                        format!(
                            "{client:?}/{seq} was acknowledged at t={} but is not in the log",
                            ack.acked_at
                        ),
                    ))
                }
                Some((_, out)) if *out != ack.output => {
                    return Err(violation(
                        "reply",
                        now,
                        format!(
                        "{client:?}/{seq} was answered {:?}, but replaying the log gives {out:?}",
                        ack.output
                    ),
                    ))
                }
                _ => {}
            }
        }
        let reads = self.place_reads(&reference, &applied, &index_reads)?;
        self.check_real_time(&applied, &reads)
    }

    /// Read-index reads are not in the log, so each is placed in it by its
    /// answer: a read that returned write `w` of key `k` saw a log prefix
    /// that contains `w` and not the next write to `k` (for "nothing": no
    /// write to `k` yet). That prefix must also contain every log op and
    /// every read acknowledged before the read was issued, and no log op
    /// issued after it was acknowledged. Returns each read as (ack tick,
    /// log position of the write it saw) for the real-time check of the
    /// log ops issued after it.
    fn place_reads(
        &self,
        reference: &Register,
        applied: &BTreeMap<(ClientId, u64), (usize, RegOutput)>,
        reads: &[IndexRead],
    ) -> Result<Vec<(u64, usize)>, Violation> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let mut write_pos: BTreeMap<u64, usize> = BTreeMap::new();
        let mut writes_of: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
        for (pos, id) in reference.applied().iter().enumerate() {
            if let Some(RegOp::Set { key, .. }) = self.ops.get(id) {
                write_pos.insert(*id, pos);
                writes_of.entry(*key).or_default().push(pos);
            }
        }
        // Where each read may sit: prefixes of `q` ops, `q` in [lo, hi].
        let mut placed = Vec::with_capacity(reads.len());
        for r in reads {
            let writes = writes_of.get(&r.key).map_or(&[][..], |w| &w[..]);
            let (lo, hi) = match r.output {
                None => (0, writes.first().copied().unwrap_or(usize::MAX)),
                Some(w) => {
                    let Some(&p) = write_pos.get(&w).filter(|_| {
                        matches!(self.ops.get(&w), Some(RegOp::Set { key, .. }) if *key == r.key)
                    }) else {
                        return Err(violation(
                            "stale-read",
                            self.now,
                            format!("a read of key {} returned {w}, which no chosen write of that key wrote", r.key),
                        ));
                    };
                    let next = writes.iter().copied().find(|&x| x > p);
                    (p + 1, next.unwrap_or(usize::MAX))
                }
            };
            placed.push((r, lo, hi));
        }
        // Lower bounds from everything acknowledged before a read was
        // issued, by ack tick; upper bounds from log ops issued after a read
        // was acknowledged, by issue tick.
        let mut before: Vec<(u64, usize)> = self
            .acks
            .iter()
            .filter_map(|(k, a)| applied.get(k).map(|(pos, _)| (a.acked_at, pos + 1)))
            .chain(placed.iter().map(|(r, lo, _)| (r.acked_at, *lo)))
            .collect();
        before.sort_unstable();
        let mut running = 0;
        for entry in before.iter_mut() {
            running = running.max(entry.1);
            entry.1 = running;
        }
        let mut after: Vec<(u64, usize)> = applied
            .iter()
            .filter_map(|(k, (pos, _))| self.checker.issued.get(k).map(|i| (i.tick, *pos)))
            .collect();
        after.sort_unstable();
        let mut running = usize::MAX;
        for entry in after.iter_mut().rev() {
            running = running.min(entry.1);
            entry.1 = running;
        }
        for (r, lo, hi) in &placed {
            let n = before.partition_point(|(t, _)| *t < r.issued_at);
            let must_include = if n == 0 { 0 } else { before[n - 1].1 };
            let m = after.partition_point(|(t, _)| *t <= r.acked_at);
            let must_exclude = after.get(m).map_or(usize::MAX, |e| e.1);
            if (*lo).max(must_include) > (*hi).min(must_exclude) {
                return Err(violation(
                    "stale-read",
                    self.now,
                    format!(
                        "a read of key {} issued at t={} and answered {:?} at t={} fits log prefixes {lo}..={hi}, \
                         but must see at least {must_include} ops (acknowledged before it) and at most {must_exclude}",
                        r.key, r.issued_at, r.output, r.acked_at
                    ),
                ));
            }
        }
        Ok(placed
            .iter()
            .filter(|(r, _, _)| r.output.is_some())
            .map(|(r, lo, _)| (r.acked_at, lo - 1))
            .collect())
    }

    /// Linearizability with the log as the linearization: an operation
    /// acknowledged before another was issued must come first in the log.
    /// `reads`: read-index reads as (ack tick, position of the write they
    /// saw): a log op issued after such a read must come after that write.
    fn check_real_time(
        &self,
        applied: &BTreeMap<(ClientId, u64), (usize, RegOutput)>,
        reads: &[(u64, usize)],
    ) -> Check {
        // (ack tick, log position) of every acknowledged op, by ack tick.
        let mut acked: Vec<(u64, usize)> = self
            .acks
            .iter()
            .filter_map(|(k, a)| applied.get(k).map(|(pos, _)| (a.acked_at, *pos)))
            .chain(reads.iter().copied())
            .collect();
        acked.sort_unstable();
        let mut prefix_max: Vec<(usize, u64)> = Vec::with_capacity(acked.len());
        for (t, pos) in &acked {
            let best =
                prefix_max.last().map_or(
                    (*pos, *t),
                    |&(p, pt)| if *pos > p { (*pos, *t) } else { (p, pt) },
                );
            prefix_max.push(best);
        }
        for ((client, seq), (pos, _)) in applied {
            let Some(issued) = self.checker.issued.get(&(*client, *seq)) else {
                continue;
            };
            // Ops acknowledged strictly before this one was issued.
            let n = acked.partition_point(|(t, _)| *t < issued.tick);
            if n == 0 {
                continue;
            }
            let (max_pos, at) = prefix_max[n - 1];
            if max_pos > *pos {
                return Err(violation(
                    "linearizability",
                    self.now,
                    format!(
                        "{client:?}/{seq} issued at t={} sits at log position {pos}, before an op acknowledged \
                         at t={at} (position {max_pos})",
                        issued.tick
                    ),
                ));
            }
        }
        Ok(())
    }
}
