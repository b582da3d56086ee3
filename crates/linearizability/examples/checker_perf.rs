//! Times the checker on a generated linearizable history: 10 clients,
//! 10,000 operations over 5 keys, fresh values, a few failed and
//! indeterminate operations.
//!
//! `cargo run --release -p synod-linearizability --example checker_perf [seed] [info_rate]`
//!
//! Prints one `checker time` line per run for the harness to report; exits
//! non-zero if the checker does not find the history linearizable, which
//! would be a checker bug.

use rand::rngs::StdRng;
use rand::SeedableRng;
use std::process::ExitCode;
use std::time::Instant;
use synod_linearizability::generate::{linearizable_history, GenConfig};
use synod_linearizability::{check_report, Limits};

fn main() -> ExitCode {
    let arg = |n: usize| std::env::args().nth(n);
    let seed = match arg(1).map(|s| s.parse::<u64>()) {
        None => 1,
        Some(Ok(seed)) => seed,
        Some(Err(e)) => {
            eprintln!("seed: {e}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = GenConfig::default();
    match arg(2).map(|s| s.parse::<f64>()) {
        None => {}
        Some(Ok(rate)) if (0.0..=1.0).contains(&rate) => cfg.info_rate = rate,
        Some(_) => {
            eprintln!("info rate: a probability between 0 and 1");
            return ExitCode::from(2);
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let generated = Instant::now();
    let history = linearizable_history(&mut rng, &cfg);
    let generate_ms = generated.elapsed().as_secs_f64() * 1e3;

    let started = Instant::now();
    let report = check_report(&history, Limits::unlimited());
    let check_ms = started.elapsed().as_secs_f64() * 1e3;

    let states: u64 = report.keys.iter().map(|k| k.states).sum();
    let indeterminate: usize = report.keys.iter().map(|k| k.indeterminate).sum();
    let failed: usize = report.keys.iter().map(|k| k.failed).sum();
    println!(
        "seed {seed}: {} clients, {} ops ({failed} failed, {indeterminate} indeterminate), {} keys, generated in {generate_ms:.1} ms",
        cfg.processes,
        history.operations().len(),
        report.keys.len()
    );
    println!("verdict: {}", report.result);
    println!("states visited: {states}");
    println!("checker time: {check_ms:.1} ms");
    if report.result.is_linearizable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
