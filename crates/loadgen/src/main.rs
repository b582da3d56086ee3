//! `synod-loadgen` owns Synod's comparative benchmarking: a closed-loop
//! load generator that speaks RESP (Synod, redis-server) and etcd's v3 API
//! (native gRPC over HTTP/2, or the JSON gateway over plain HTTP/1.1), with
//! shared connections,
//! per-op timeouts, HDR latency histograms and one JSON line per run; and
//! `synod-loadgen report`, which turns those lines into `results.md`,
//! `throughput.svg` and `latency.svg`. `scripts/bench.sh` drives both.
//!
//! Exit codes: 0 done; 1 the run could not be carried out (unreachable
//! preload, unwritable output...); 2 bad arguments; 3 the run finished but
//! no operation succeeded.

mod config;
mod conn;
mod grpc;
mod http;
mod plot;
mod protocol;
mod report;
mod resp;
mod rng;
mod run;
mod stats;

use anyhow::{Context, Result};
use clap::Parser;
use config::{Cli, Command, RunConfig};
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Report(args)) = &cli.command {
        return match report::write(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("synod-loadgen report: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let cfg = match RunConfig::from_args(&cli.run) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("synod-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match load(cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("synod-loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(cfg: RunConfig) -> Result<ExitCode> {
    let rt = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    let json_out = cfg.json_out.clone();
    let out = rt.block_on(run::run(cfg))?;
    // Connection tasks of clients cut off at the hard stop are not waited for.
    rt.shutdown_background();
    println!("{}", out.record.summary(&out.first_error));
    if let Some(path) = json_out {
        let line = serde_json::to_string(&out.record).context("encoding the result")?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{line}").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if out.record.ops == 0 {
        eprintln!("synod-loadgen: no operation succeeded");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
