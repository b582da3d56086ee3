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
//! let report = synod_sim::run_seed(7, &synod_sim::SimOptions::default());
//! assert!(report.result.is_ok(), "{:?}", report.result);
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
    let mut cmd = format!("cargo run -p synod-sim --release -- --seed {} --verbose", report.seed);
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
    if opts.safety_only {
        cmd.push_str(" --safety-only");
    }
    cmd
}
