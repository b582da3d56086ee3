//! Deterministic simulator for Synod: whole clusters of the pure role logic
//! (acceptor, proposer, learner, replica) driven by one seeded RNG on a
//! virtual clock, with every Paxos invariant checked after every step.
//!
//! What the simulator owns (and the role crates do not): the "shell" around
//! the roles — a lossy, duplicating, reordering network with partitions, the
//! acceptor's disk ([`synod_storage::MemStorage`], synced before any reply
//! leaves, possibly crashing between append and sync), crash and restart of
//! nodes (acceptors recover from their disk, the other roles start fresh), a
//! virtual clock driving `tick()`, random clients with a small register
//! state machine ([`machine::Register`]), and the [`checker`].
//!
//! A run is a chaos phase (faults drawn from the seed, see [`Faults`]) then a
//! heal phase: faults stop, every node restarts, and the cluster must answer
//! every outstanding request, converge, and acknowledge one fresh write
//! within a bounded number of ticks.
//!
//! Invariants (see [`checker`]; any violation ends the run with the seed):
//!
//! - **agreement**: at most one value is chosen per slot (an oracle counts
//!   every vote an acceptor reveals), and every value a learner announces
//!   (`decided`, `Decide`, `Decisions`) is that chosen value;
//! - **validity**: every command in a vote and every applied operation was
//!   issued by a client, and nothing is applied twice (`at-most-once`);
//! - **replica-prefix / replica-digest / log-monotonic**: replicas apply one
//!   common history, equal `slot_out` means equal digest, logs only grow;
//! - **durability / recovery / promise-monotonic**: nothing an acceptor
//!   reveals is missing from its synced disk, a restart reloads exactly what
//!   was synced, and a promise never falls below a ballot already revealed;
//! - **reply**: an answer always carries an output, and two answers to the
//!   same request agree;
//! - at the end: **liveness** (every request answered, every chosen slot
//!   applied everywhere, a fresh write acknowledged, within
//!   [`SimOptions::heal_ticks`] and without a 3,000-tick stall), **final**
//!   (every replica equals the chosen log replayed; each register holds the
//!   last write in log order), **acked-lost** (every acknowledged request is
//!   in the log, answered as the log says) and **linearizability** (an
//!   operation acknowledged before another was issued precedes it in the log);
//! - **message-storm**: traffic stays bounded (a loop of messages breeding
//!   messages is reported rather than simulated for minutes).
//!
//! Fault knobs, drawn per seed ([`Faults`]): message loss, duplication,
//! delay and reordering, long delays, partitions, crash/restart of a subset
//! of nodes ([`CrashPolicy`]), crashes between an acceptor's append and its
//! sync, client count and think time, clients re-sending a request to
//! another replica, proposer window and batch size. [`SimOptions`] adds a
//! forced shape, `stress` (frequent crashes and partitions), injected bugs
//! ([`Bug`], to prove the checker bites) and `reliable_learner_feed`.
//!
//! Replay any seed bit for bit:
//!
//! ```text
//! cargo run -p synod-sim --release -- --seeds 1000            # seeds 0..1000
//! cargo run -p synod-sim --release -- --seed 42 --verbose     # one seed, full trace
//! ```
//!
//! Library use:
//!
//! ```
//! use synod_sim::{replay_command, run_seed, SimOptions};
//!
//! let opts = SimOptions::default();
//! let report = run_seed(7, &opts);
//! if let Err(violation) = &report.result {
//!     eprintln!("seed 7: {violation}\nreplay: {}", replay_command(&report, &opts));
//! }
//! // Same seed, same run, event for event.
//! assert_eq!(report.trace_hash, run_seed(7, &opts).trace_hash);
//! ```

pub mod checker;
pub mod config;
pub mod machine;
mod sim;
pub mod trace;

pub use checker::Violation;
pub use config::{Bug, CrashPolicy, Faults, Shape, SimOptions};
pub use sim::{run_seed, RunReport, Stats};

/// The command that replays `report`'s seed with the same options.
pub fn replay_command(report: &RunReport, opts: &SimOptions) -> String {
    let mut cmd = format!(
        "cargo run -p synod-sim --release -- --seed {} --verbose",
        report.seed
    );
    if let Some(shape) = opts.shape {
        cmd.push_str(&format!(" --shape {shape}"));
    }
    if opts.bug != Bug::None {
        cmd.push_str(&format!(" --bug {}", opts.bug.name()));
    }
    if opts.crash_policy == CrashPolicy::Rolling {
        cmd.push_str(" --crashes rolling");
    }
    let def = SimOptions::default();
    if opts.chaos_ticks != def.chaos_ticks {
        cmd.push_str(&format!(" --chaos-ticks {}", opts.chaos_ticks));
    }
    if opts.heal_ticks != def.heal_ticks {
        cmd.push_str(&format!(" --heal-ticks {}", opts.heal_ticks));
    }
    if opts.stress {
        cmd.push_str(" --stress");
    }
    if opts.reliable_learner_feed {
        cmd.push_str(" --reliable-learner-feed");
    }
    if opts.safety_only {
        cmd.push_str(" --safety-only");
    }
    if opts.tiny_messages {
        cmd.push_str(" --tiny-messages");
    }
    cmd
}
