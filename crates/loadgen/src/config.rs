//! Command line of `synod-loadgen` and its validation. `RunArgs` is what
//! clap parses; `RunConfig::from_args` checks it and is the only way to a
//! config the load run accepts, so every bad flag is reported in one line
//! before any connection is made.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "synod-loadgen",
    about = "Closed-loop load against Synod/Redis (RESP) or etcd (v3 JSON gateway); `report` turns results into tables and plots",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write results.md, throughput.svg and latency.svg from a results JSONL file.
    Report(ReportArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// JSON-lines file written by `--json-out`.
    #[arg(long)]
    pub input: PathBuf,
    /// Directory for results.md, throughput.svg and latency.svg (created if missing).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Label of the Synod local-3 runs (for the ratios section).
    #[arg(long, default_value = "synod-local3")]
    pub synod_label: String,
    /// Label of the Synod split-roles runs.
    #[arg(long, default_value = "synod-split")]
    pub split_label: String,
    /// Label of the etcd runs.
    #[arg(long, default_value = "etcd")]
    pub etcd_label: String,
    /// Label of the redis runs.
    #[arg(long, default_value = "redis")]
    pub redis_label: String,
    /// Markdown appended to results.md under "Setup" (machine, versions, commands).
    #[arg(long)]
    pub notes: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// resp://HOST:PORT[,HOST:PORT...] (Synod, redis-server) or
    /// etcd://HOST:PORT[,...] (etcd v3 JSON gateway) or
    /// etcd-grpc://HOST:PORT[,...] (etcd's gRPC, as its own clients use).
    /// Clients are spread round-robin over the addresses.
    #[arg(long)]
    pub target: Option<String>,
    /// Concurrent closed-loop clients (each has one request in flight).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// TCP connections (default: one per client). With fewer connections
    /// than clients, clients share them: requests are pipelined in order
    /// (RESP, HTTP/1.1) or run as concurrent HTTP/2 streams (etcd-grpc).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Size of the key set (keys are `key:0000000000` ...).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Fraction of reads in the mixed workload (default 0.5).
    #[arg(long)]
    pub read_ratio: Option<f64>,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Write every key once before the warmup, so reads hit.
    #[arg(long)]
    pub preload: bool,
    /// Per-operation timeout in seconds; a timed-out operation counts as an error.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Name of the system under test in the output (default: the target kind).
    #[arg(long)]
    pub label: Option<String>,
    /// Append one JSON line with the run's results to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Seed of the key and read/write choices and of the values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime worker threads of the load generator itself (1 = a single
    /// thread, leaving the other cores to the system under test).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Set,
    Get,
    Mixed,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Resp,
    /// etcd's v3 JSON gateway over HTTP/1.1.
    Etcd,
    /// etcd's native gRPC over HTTP/2.
    EtcdGrpc,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Resp => "resp",
            TargetKind::Etcd => "etcd",
            TargetKind::EtcdGrpc => "etcd-grpc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    /// `host:port` strings, as given.
    pub addrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub target: Target,
    pub clients: usize,
    pub connections: usize,
    pub keys: u64,
    pub value_size: usize,
    pub workload: Workload,
    /// Probability that an operation is a read (0 for set, 1 for get).
    pub read_ratio: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub preload: bool,
    pub label: String,
    pub json_out: Option<PathBuf>,
    pub seed: u64,
    pub threads: usize,
}

/// A flag that cannot be used; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

fn bad(msg: impl Into<String>) -> ArgError {
    ArgError(msg.into())
}

pub const MAX_CLIENTS: usize = 100_000;
pub const MAX_VALUE_SIZE: usize = 16 << 20;
pub const MAX_KEYS: u64 = 1_000_000_000;

/// Parses `resp://h:p,h:p`, `etcd://h:p,...` or `etcd-grpc://h:p,...`.
pub fn parse_target(s: &str) -> Result<Target, ArgError> {
    let (kind, rest) = if let Some(r) = s.strip_prefix("resp://") {
        (TargetKind::Resp, r)
    } else if let Some(r) = s.strip_prefix("etcd://") {
        (TargetKind::Etcd, r)
    } else if let Some(r) = s.strip_prefix("etcd-grpc://") {
        (TargetKind::EtcdGrpc, r)
    } else {
        return Err(bad(format!(
            "--target {s:?}: expected resp://, etcd:// or etcd-grpc://HOST:PORT[,...]"
        )));
    };
    let mut addrs = Vec::new();
    for a in rest.split(',') {
        let a = a.trim();
        let (host, port) = a
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("--target: address {a:?} has no :PORT")))?;
        if host.is_empty() || host.contains('/') {
            return Err(bad(format!("--target: address {a:?} has no valid host")));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(bad(format!("--target: bad port {port:?} in {a:?}"))),
        }
        addrs.push(a.to_string());
    }
    Ok(Target { kind, addrs })
}

fn seconds(flag: &str, v: f64, allow_zero: bool) -> Result<Duration, ArgError> {
    let ok = v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v <= 86_400.0;
    if !ok {
        let want = if allow_zero { ">= 0" } else { "> 0" };
        return Err(bad(format!(
            "--{flag} {v}: must be {want} and at most 86400 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl RunConfig {
    pub fn from_args(a: &RunArgs) -> Result<RunConfig, ArgError> {
        let target = parse_target(
            a.target
                .as_deref()
                .ok_or_else(|| bad("--target is required (or use the `report` subcommand)"))?,
        )?;
        if a.clients == 0 || a.clients > MAX_CLIENTS {
            return Err(bad(format!(
                "--clients {}: must be between 1 and {MAX_CLIENTS}",
                a.clients
            )));
        }
        let connections = a.connections.unwrap_or(a.clients);
        if connections == 0 || connections > a.clients {
            return Err(bad(format!(
                "--connections {connections}: must be between 1 and --clients ({})",
                a.clients
            )));
        }
        if a.keys == 0 || a.keys > MAX_KEYS {
            return Err(bad(format!(
                "--keys {}: must be between 1 and {MAX_KEYS}",
                a.keys
            )));
        }
        if a.value_size == 0 || a.value_size > MAX_VALUE_SIZE {
            return Err(bad(format!(
                "--value-size {}: must be between 1 and {MAX_VALUE_SIZE}",
                a.value_size
            )));
        }
        let read_ratio = match (a.workload, a.read_ratio) {
            (Workload::Set, None) => 0.0,
            (Workload::Get, None) => 1.0,
            (Workload::Mixed, None) => 0.5,
            (Workload::Mixed, Some(r)) if (0.0..=1.0).contains(&r) => r,
            (Workload::Mixed, Some(r)) => {
                return Err(bad(format!("--read-ratio {r}: must be within 0..=1")))
            }
            (w, Some(_)) => {
                return Err(bad(format!(
                    "--read-ratio only applies to --workload mixed, not {}",
                    w.name()
                )))
            }
        };
        if a.threads == 0 || a.threads > 256 {
            return Err(bad(format!(
                "--threads {}: must be between 1 and 256",
                a.threads
            )));
        }
        let label = match &a.label {
            Some(l) if l.trim().is_empty() => return Err(bad("--label must not be empty")),
            Some(l) => l.clone(),
            None => target.kind.name().to_string(),
        };
        Ok(RunConfig {
            target,
            clients: a.clients,
            connections,
            keys: a.keys,
            value_size: a.value_size,
            workload: a.workload,
            read_ratio,
            duration: seconds("duration", a.duration, false)?,
            warmup: seconds("warmup", a.warmup, true)?,
            timeout: seconds("timeout", a.timeout, false)?,
            preload: a.preload,
            label,
            json_out: a.json_out.clone(),
            seed: a.seed,
            threads: a.threads,
        })
    }
}

/// The key with index `i`; preload and the workload use the same names.
pub fn key_name(i: u64) -> String {
    format!("key:{i:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunConfig, String> {
        let mut argv = vec!["synod-loadgen"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        assert!(cli.command.is_none());
        RunConfig::from_args(&cli.run).map_err(|e| e.0)
    }

    #[test]
    fn defaults_fill_in() {
        let c = parse(&["--target", "resp://127.0.0.1:7001,127.0.0.1:7002"]).unwrap();
        assert_eq!(c.target.kind, TargetKind::Resp);
        assert_eq!(c.target.addrs, vec!["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert_eq!(c.clients, 16);
        assert_eq!(c.connections, 16, "connections default to one per client");
        assert_eq!(c.keys, 10_000);
        assert_eq!(c.value_size, 256);
        assert_eq!(c.workload, Workload::Set);
        assert_eq!(c.read_ratio, 0.0);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.label, "resp");
        assert!(!c.preload);
    }

    #[test]
    fn etcd_target_and_explicit_flags() {
        let c = parse(&[
            "--target",
            "etcd://localhost:12379",
            "--clients",
            "64",
            "--connections",
            "8",
            "--workload",
            "mixed",
            "--read-ratio",
            "0.9",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--label",
            "etcd",
            "--preload",
        ])
        .unwrap();
        assert_eq!(c.target.kind, TargetKind::Etcd);
        assert_eq!((c.clients, c.connections), (64, 8));
        assert_eq!(c.read_ratio, 0.9);
        assert_eq!(c.duration, Duration::from_millis(500));
        assert_eq!(c.warmup, Duration::ZERO);
        assert!(c.preload);
        assert_eq!(
            parse(&["--target", "resp://h:1", "--workload", "get"])
                .unwrap()
                .read_ratio,
            1.0
        );
        assert_eq!(
            parse(&["--target", "resp://h:1", "--workload", "mixed"])
                .unwrap()
                .read_ratio,
            0.5
        );
    }

    #[test]
    fn rejects_bad_targets() {
        for (t, needle) in [
            ("http://h:1", "expected resp://"),
            ("resp://", "no :PORT"),
            ("resp://h", "no :PORT"),
            ("resp://:80", "no valid host"),
            ("resp://h:0", "bad port"),
            ("resp://h:70000", "bad port"),
            ("resp://h:1,h", "no :PORT"),
            ("etcd://h:x", "bad port"),
        ] {
            let e = parse(&["--target", t]).unwrap_err();
            assert!(e.contains(needle), "{t}: {e}");
        }
        assert!(parse(&[]).unwrap_err().contains("--target is required"));
    }

    #[test]
    fn rejects_bad_numbers() {
        let t = ["--target", "resp://h:1"];
        let cases: &[(&[&str], &str)] = &[
            (&["--clients", "0"], "--clients 0"),
            (&["--clients", "4", "--connections", "5"], "--connections 5"),
            (&["--connections", "0"], "--connections 0"),
            (&["--keys", "0"], "--keys 0"),
            (&["--value-size", "0"], "--value-size 0"),
            (&["--value-size", "99999999"], "--value-size"),
            (&["--duration", "0"], "--duration 0"),
            (&["--duration", "NaN"], "--duration"),
            (&["--warmup=-1"], "--warmup"),
            (&["--timeout", "0"], "--timeout"),
            (&["--read-ratio", "0.5"], "only applies to --workload mixed"),
            (
                &["--workload", "mixed", "--read-ratio", "1.5"],
                "--read-ratio",
            ),
            (&["--threads", "0"], "--threads"),
            (&["--label", " "], "--label"),
        ];
        for (extra, needle) in cases {
            let mut args = t.to_vec();
            args.extend_from_slice(extra);
            let e = parse(&args).unwrap_err();
            assert!(e.contains(needle), "{extra:?}: {e}");
        }
        // clap itself rejects an unknown workload and non-numbers.
        assert!(parse(&["--target", "resp://h:1", "--workload", "scan"]).is_err());
        assert!(parse(&["--target", "resp://h:1", "--clients", "many"]).is_err());
    }

    #[test]
    fn report_subcommand_parses() {
        let cli = Cli::try_parse_from([
            "synod-loadgen",
            "report",
            "--input",
            "r.jsonl",
            "--out-dir",
            "out",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Report(r)) => {
                assert_eq!(r.input, PathBuf::from("r.jsonl"));
                assert_eq!(r.etcd_label, "etcd");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_names_are_fixed_width() {
        assert_eq!(key_name(0), "key:0000000000");
        assert_eq!(key_name(9999), "key:0000009999");
    }
}
