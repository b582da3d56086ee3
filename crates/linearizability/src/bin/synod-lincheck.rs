//! `synod-lincheck [--max-states N] [--timeout-ms N] <history.jsonl | ->`
//!
//! Checks a recorded history for linearizability, prints the verdict and
//! per-key statistics, and exits 0 (linearizable), 1 (not linearizable) or
//! 2 (bad arguments, unreadable or malformed history, or out of budget).

use std::fs::File;
use std::io::{self, BufReader};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use synod_linearizability::{check_report, CheckResult, History, KeyVerdict, Limits};

const USAGE: &str = "usage: synod-lincheck [--max-states N] [--timeout-ms N] <history.jsonl | ->";

struct Args {
    path: String,
    limits: Limits,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut limits = Limits::default();
    let mut path = None;
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            text.parse()
                .map_err(|_| format!("{name}: not a number: {text:?}"))
        };
        match arg.as_str() {
            "--max-states" => limits.max_states = Some(number("--max-states")?),
            "--unlimited" => limits = Limits::unlimited(),
            "--timeout-ms" => {
                limits.max_time = Some(Duration::from_millis(number("--timeout-ms")?))
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ if path.is_none() && (arg == "-" || !arg.starts_with('-')) => path = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        }
    }
    let path = path.ok_or(USAGE.to_owned())?;
    Ok(Args { path, limits })
}

fn read_history(path: &str) -> Result<History, String> {
    let parsed = if path == "-" {
        History::from_jsonl(io::stdin().lock())
    } else {
        let file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
        History::from_jsonl(BufReader::new(file))
    };
    parsed.map_err(|e| format!("{path}: {e}"))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let history = match read_history(&args.path) {
        Ok(h) => h,
        Err(message) => {
            eprintln!("bad input: {message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let report = check_report(&history, args.limits);
    let elapsed = started.elapsed();

    println!(
        "{:<24} {:>7} {:>7} {:>7} {:>9} {:>10} {:>10}  verdict",
        "key", "ops", "failed", "info", "searched", "states", "ms"
    );
    for k in &report.keys {
        let verdict = match k.verdict {
            KeyVerdict::Linearizable => "ok".to_owned(),
            KeyVerdict::NotLinearizable => "NOT LINEARIZABLE".to_owned(),
            KeyVerdict::Unknown(why) => format!("unknown ({why:?} budget)"),
        };
        println!(
            "{:<24} {:>7} {:>7} {:>7} {:>9} {:>10} {:>10.1}  {verdict}",
            format!("{:?}", k.key),
            k.ops,
            k.failed,
            k.indeterminate,
            k.searched,
            k.states,
            k.elapsed.as_secs_f64() * 1e3,
        );
    }
    println!(
        "{} ops, {} keys, checker time {:.1} ms",
        history.operations().len(),
        report.keys.len(),
        elapsed.as_secs_f64() * 1e3
    );
    println!("{}", report.result);
    match report.result {
        CheckResult::Linearizable => ExitCode::SUCCESS,
        CheckResult::NotLinearizable(_) => ExitCode::from(1),
        CheckResult::Unknown { .. } => ExitCode::from(2),
    }
}
