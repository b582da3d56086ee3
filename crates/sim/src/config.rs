//! What a run looks like: cluster shape, fault knobs, injected bugs.
//!
//! Everything here is drawn from the seed (see [`Faults::draw`]), so a seed
//! alone names a whole scenario; [`SimOptions`] only overrides parts of it
//! from the command line or a test.

use std::fmt;
use std::str::FromStr;
use synod_types::SplitMix64;

/// Which roles live on which nodes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// Three nodes, each hosting all four roles.
    Three,
    /// Five nodes, each hosting all four roles.
    Five,
    /// Roles on separate nodes: 3 acceptors, 2 proposers, 2 learners, 2 replicas.
    Split,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Three, Shape::Five, Shape::Split];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Three => "three",
            Shape::Five => "five",
            Shape::Split => "split",
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Shape::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| format!("unknown shape {s:?} (three, five, split)"))
    }
}

/// A deliberate defect the simulator can inject to prove its checker bites.
/// None of these is something the protocol must tolerate.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Bug {
    #[default]
    None,
    /// A restarted acceptor comes back with an empty disk: it forgets every
    /// promise and every accepted value it ever revealed.
    AcceptorAmnesia,
    /// The acceptor shell sends before it syncs, and crashes between the two
    /// often: peers see promises and votes that the disk never kept.
    RevealBeforeSync,
    /// Read-index answers reach replicas with index 0, as if the replica
    /// served reads from whatever it had applied: stale reads.
    StaleReadIndex,
}

impl Bug {
    pub const ALL: [Bug; 4] = [
        Bug::None,
        Bug::AcceptorAmnesia,
        Bug::RevealBeforeSync,
        Bug::StaleReadIndex,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::None => "none",
            Bug::AcceptorAmnesia => "acceptor-amnesia",
            Bug::RevealBeforeSync => "reveal-before-sync",
            Bug::StaleReadIndex => "stale-read-index",
        }
    }
}

impl FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Bug::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| {
            format!(
                "unknown bug {s:?} (none, acceptor-amnesia, reveal-before-sync, stale-read-index)"
            )
        })
    }
}

/// Which nodes may crash over a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum CrashPolicy {
    /// A fixed set drawn per seed: a minority of the acceptors and at most one
    /// node of every other role group, so some learner and some replica live
    /// through the whole run.
    #[default]
    Fixed,
    /// Any node may crash, as long as a majority of acceptors and one node of
    /// every role group stay up at each instant. Over a long run every node
    /// may have restarted at some point (a rolling restart).
    Rolling,
}

impl FromStr for CrashPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed" => Ok(CrashPolicy::Fixed),
            "rolling" => Ok(CrashPolicy::Rolling),
            _ => Err(format!("unknown crash policy {s:?} (fixed, rolling)")),
        }
    }
}

/// Overrides and run length; the defaults are what `--seeds` uses.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Force a cluster shape instead of drawing it from the seed.
    pub shape: Option<Shape>,
    pub bug: Bug,
    pub crash_policy: CrashPolicy,
    /// Ticks of faults and client load before the heal phase.
    pub chaos_ticks: u64,
    /// Bound on the heal phase; not converging within it is a liveness failure.
    pub heal_ticks: u64,
    /// Print every event as it happens.
    pub verbose: bool,
    /// At least one crash per 100 ticks and one partition per 200 ticks,
    /// whatever the seed drew.
    pub stress: bool,
    /// Acceptors' p2b copies to learners are never lost (nor cut by a
    /// partition or the sender's crash). Learners now repair missed copies
    /// by fetching from acceptors; this knob takes that path out of play to
    /// explore the rest in isolation.
    pub reliable_learner_feed: bool,
    /// End after the chaos phase: no heal phase, so no liveness check.
    pub safety_only: bool,
    /// Shrink every role's message budget to one byte, so each message
    /// that gathers many slots or commands carries one: promises come in
    /// pages, fetch answers and catch-up answers are cut short, retried
    /// proposals split. The paths that keep real messages under the frame
    /// limit then run under every fault (sim values are a few bytes).
    pub tiny_messages: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            shape: None,
            bug: Bug::None,
            crash_policy: CrashPolicy::Fixed,
            chaos_ticks: 1000,
            heal_ticks: 20_000,
            verbose: false,
            stress: false,
            reliable_learner_feed: false,
            safety_only: false,
            tiny_messages: false,
        }
    }
}

/// Fault rates of one run, drawn from its seed. Probabilities are per
/// message (network) or per tick (crashes, partitions).
#[derive(Clone, Debug)]
pub struct Faults {
    /// A message is silently dropped.
    pub loss: f64,
    /// A message is delivered twice (each copy with its own delay).
    pub dup: f64,
    /// Every message takes `1..=max_delay` ticks; different draws reorder.
    pub max_delay: u64,
    /// A message is held back `1..=slow_extra` more ticks.
    pub slow: f64,
    pub slow_extra: u64,
    /// Per tick: a node of the crashable set goes down.
    pub crash: f64,
    /// A crashed node stays down this many ticks (range).
    pub down_min: u64,
    pub down_max: u64,
    /// An acceptor with records to persist crashes after `append` and before
    /// `sync`: the records are lost and its messages never leave.
    pub crash_before_sync: f64,
    /// Per tick: the network splits in two sides for a while.
    pub partition: f64,
    pub partition_min: u64,
    pub partition_max: u64,
    /// Number of concurrent clients.
    pub clients: usize,
    /// Ticks a client waits between two requests.
    pub think_max: u64,
    /// A client that waited this long re-sends the same request to another
    /// replica (None: it waits for its replica as long as it lives).
    pub client_retry: Option<u64>,
    /// Proposer window and batch size (small values exercise the edges).
    pub window: usize,
    pub max_batch: usize,
    /// Replicas snapshot every this many slots, which also drives how
    /// often the log is compacted and how often catch-up needs a snapshot.
    pub snapshot_every: u64,
    /// Replicas serve reads through the read index (else through the log).
    pub read_index: bool,
    /// Leaders send each slot to a majority of acceptors first (thrifty
    /// phase 2), the rest only on a slow answer.
    pub thrifty: bool,
}

impl Faults {
    /// No faults at all (the heal phase).
    pub fn calm(&self) -> Faults {
        Faults {
            loss: 0.0,
            dup: 0.0,
            slow: 0.0,
            crash: 0.0,
            crash_before_sync: 0.0,
            partition: 0.0,
            ..self.clone()
        }
    }

    /// Draws a scenario. Each knob is off in a good share of seeds, so
    /// failures can be attributed to a few active faults.
    pub fn draw(rng: &mut SplitMix64) -> Faults {
        let pct = |rng: &mut SplitMix64, on: f64, max_pct: u64| -> f64 {
            if rng.chance(on) {
                rng.range(1, max_pct + 1) as f64 / 100.0
            } else {
                0.0
            }
        };
        let loss = pct(rng, 0.7, 15);
        let dup = pct(rng, 0.5, 10);
        let max_delay = rng.range(1, 6);
        let slow = pct(rng, 0.5, 5);
        let slow_extra = rng.range(10, 150);
        let crash = if rng.chance(0.7) {
            1.0 / rng.range(80, 500) as f64
        } else {
            0.0
        };
        let down_min = rng.range(5, 40);
        let down_max = down_min + rng.range(1, 200);
        let crash_before_sync = if rng.chance(0.5) { 0.02 } else { 0.0 };
        let partition = if rng.chance(0.5) {
            1.0 / rng.range(150, 600) as f64
        } else {
            0.0
        };
        let partition_min = rng.range(10, 50);
        let partition_max = partition_min + rng.range(1, 200);
        let clients = rng.range(1, 6) as usize;
        let think_max = rng.range(1, 12);
        let client_retry = rng.chance(0.5).then(|| rng.range(40, 300));
        let window = [1, 2, 4, 64][rng.range(0, 4) as usize];
        let max_batch = [1, 3, 512][rng.range(0, 3) as usize];
        let snapshot_every = [5, 20, 60, u64::MAX][rng.range(0, 4) as usize];
        // Peeked, not drawn: seeds drawn before reads had a choice replay
        // the same scenario.
        let peek = rng.clone().next_u64();
        let read_index = peek & 1 == 0;
        let thrifty = peek & 2 == 0;
        Faults {
            loss,
            dup,
            max_delay,
            slow,
            slow_extra,
            crash,
            down_min,
            down_max,
            crash_before_sync,
            partition,
            partition_min,
            partition_max,
            clients,
            think_max,
            client_retry,
            window,
            max_batch,
            snapshot_every,
            read_index,
            thrifty,
        }
    }

    /// One line for the trace and failure reports.
    pub fn summary(&self) -> String {
        format!(
            "loss={:.2} dup={:.2} delay=1..={} slow={:.2}(+{}) crash={:.4}/tick down={}..{} crash_before_sync={:.2} \
             partition={:.4}/tick len={}..{} clients={} think<={} client_retry={:?} window={} max_batch={} snapshot_every={} reads={} thrifty={}",
            self.loss,
            self.dup,
            self.max_delay,
            self.slow,
            self.slow_extra,
            self.crash,
            self.down_min,
            self.down_max,
            self.crash_before_sync,
            self.partition,
            self.partition_min,
            self.partition_max,
            self.clients,
            self.think_max,
            self.client_retry,
            self.window,
            self.max_batch,
            self.snapshot_every,
            if self.read_index { "read-index" } else { "log" },
            self.thrifty,
        )
    }
}
