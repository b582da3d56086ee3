//! `synod-sim`: run many seeds, or replay one with a trace.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;
use synod_sim::{replay_command, run_seed, Bug, CrashPolicy, Shape, SimOptions};

#[derive(Parser, Debug)]
#[command(
    name = "synod-sim",
    about = "Seeded deterministic simulator for Synod's Multi-Paxos roles"
)]
struct Args {
    /// Run this many seeds, starting at --start.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<u64>,
    /// First seed of --seeds.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay a single seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print every event of the run (with --seed).
    #[arg(long)]
    verbose: bool,
    /// Force the cluster shape: three, five or split (default: drawn from the seed).
    #[arg(long)]
    shape: Option<Shape>,
    /// Inject a bug to see the checker catch it: none, acceptor-amnesia, reveal-before-sync.
    #[arg(long, default_value = "none")]
    bug: Bug,
    /// Which nodes may crash: fixed (a per-seed minority) or rolling (any node, while a majority of acceptors and one node of each role stay up).
    #[arg(long, default_value = "fixed")]
    crashes: CrashPolicy,
    /// Ticks of faults and load before the heal phase.
    #[arg(long)]
    chaos_ticks: Option<u64>,
    /// Bound on the heal phase.
    #[arg(long)]
    heal_ticks: Option<u64>,
    /// At least one crash per 100 ticks and one partition per 200 ticks.
    #[arg(long)]
    stress: bool,
    /// Never lose an acceptor's p2b copy to a learner (sidesteps the known
    /// learner-gap liveness bug to explore the rest).
    #[arg(long)]
    reliable_learner_feed: bool,
    /// Print one line of counters per passing seed too.
    #[arg(long)]
    stats: bool,
    /// Skip the heal phase: check safety only.
    #[arg(long)]
    safety_only: bool,
    /// One item per message wherever messages are cut to a byte budget
    /// (promise pages, fetch and catch-up answers, retried proposals).
    #[arg(long)]
    tiny_messages: bool,
}

/// `println!` that shrugs off a closed pipe (`synod-sim ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let args = Args::parse();
    let def = SimOptions::default();
    let opts = SimOptions {
        shape: args.shape,
        bug: args.bug,
        crash_policy: args.crashes,
        chaos_ticks: args.chaos_ticks.unwrap_or(def.chaos_ticks),
        heal_ticks: args.heal_ticks.unwrap_or(def.heal_ticks),
        verbose: args.verbose,
        stress: args.stress,
        reliable_learner_feed: args.reliable_learner_feed,
        safety_only: args.safety_only,
        tiny_messages: args.tiny_messages,
    };
    let seeds = match (args.seed, args.seeds) {
        (Some(s), _) => s..s + 1,
        (None, Some(n)) => args.start..args.start + n,
        (None, None) => args.start..args.start + 100,
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    for seed in seeds.clone() {
        let report = run_seed(seed, &opts);
        match &report.result {
            Ok(()) => {
                passed += 1;
                if args.seed.is_some() || args.stats {
                    out!(
                        "seed={seed} shape={} ok: {:?} trace_hash={:#018x}",
                        report.shape,
                        report.stats,
                        report.trace_hash
                    );
                }
            }
            Err(v) => {
                failed += 1;
                out!(
                    "FAILED seed={seed}: {v}\n  shape={} faults: {}\n  replay: {}",
                    report.shape,
                    report.faults.summary(),
                    replay_command(&report, &opts)
                );
            }
        }
    }
    if args.seed.is_none() {
        out!(
            "ran seeds {}..{} in {:.2?}",
            seeds.start,
            seeds.end,
            started.elapsed()
        );
    }
    out!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
