//! `synod-jepsen`: a Jepsen-style harness for Synod. It runs real `synod`
//! processes, one per network namespace behind a bridge, drives them with
//! concurrent RESP clients while a seeded nemesis kills, pauses,
//! partitions and delays them, records every operation into a JSON-lines
//! history, then heals everything and checks that the cluster recovers,
//! that the replicas converge (same `applied` and `digest`), and that the
//! final values are consistent with the acknowledged writes.
//!
//! Must run as root. Everything it creates is named `synod-j*` and removed
//! at the end, on Ctrl-C, on failure, or with `--cleanup`.

mod client;
mod cluster;
mod history;
mod nemesis;
mod net;
mod plot;
mod signal;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cluster::{node_id, Cluster};
use history::{Op, Type, F};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(
    name = "synod-jepsen",
    about = "Jepsen-style fault injection for Synod (run as root)"
)]
struct Args {
    /// Cluster size (machines): 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// colocated: every role in one process per machine; split: roles as
    /// separate processes (3 acceptors, 2 proposers, 2 learners, 2
    /// replicas on 3 machines, like configs/split-roles.toml).
    #[arg(long, value_enum, default_value = "colocated")]
    layout: cluster::Layout,
    /// Seconds of client load under the nemesis.
    #[arg(long, default_value_t = 30)]
    time: u64,
    /// none, kill, pause, partition, isolate-leader, bridge, one-way,
    /// kill-all, delay, or all (cycles through every fault).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seeds the nemesis schedule and the clients' choices (default: clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The `synod` binary.
    #[arg(long, default_value = "target/release/synod")]
    bin: PathBuf,
    /// Run dirs are created under this directory.
    #[arg(long, default_value = "run/jepsen")]
    out: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    clients: u64,
    /// Size of the key set.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Per-operation client timeout.
    #[arg(long, default_value_t = 1000)]
    op_timeout_ms: u64,
    /// Each client waits a random 0..THINK ms between operations.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Operations in the whole run, at most; clients stop issuing once it
    /// is spent (the checker keeps the history in memory).
    #[arg(long, default_value_t = 1_000_000)]
    max_ops: u64,
    /// Checker budget per key, in search states (bounds its memory); a
    /// history it cannot decide within it is reported as unknown.
    #[arg(long, default_value_t = 200_000)]
    max_states: u64,
    /// Remove leftover namespaces, veths and the bridge, then exit.
    #[arg(long)]
    cleanup: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.cleanup {
        for r in net::cleanup() {
            println!("removed {r}");
        }
        return ExitCode::SUCCESS;
    }
    signal::install();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&args)));
    let removed = net::cleanup();
    eprintln!("teardown: removed {}", removed.join(", "));
    match outcome {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) if signal::stopped() => {
            eprintln!("synod-jepsen: interrupted");
            ExitCode::from(130)
        }
        Ok(Ok(false)) => {
            eprintln!("synod-jepsen: checks FAILED (see above)");
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("synod-jepsen: {e:#}");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("synod-jepsen: panicked");
            ExitCode::from(2)
        }
    }
}

/// One fault window, as written to `faults.jsonl`.
struct Window {
    fault: &'static str,
    detail: String,
    start_ns: u64,
    end_ns: u64,
}

/// Runs the whole test; Ok(false) when a check failed.
fn run(args: &Args) -> Result<bool> {
    if args.nodes != 3 && args.nodes != 5 {
        bail!("--nodes must be 3 or 5");
    }
    if args.layout == cluster::Layout::Split && args.nodes != 3 {
        bail!("--layout split runs on 3 machines: use --nodes 3");
    }
    if args.clients == 0 || args.keys == 0 {
        bail!("--clients and --keys must be positive");
    }
    let faults = nemesis::parse(&args.nemesis)?;
    let bin = std::fs::canonicalize(&args.bin)
        .with_context(|| format!("no synod binary at {}", args.bin.display()))?;
    net::check_tools()?;
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            % 1_000_000
    });
    std::fs::create_dir_all(&args.out)?;
    let dir = unique_dir(&args.out.join(timestamp()))?;
    let data = dir.join("data");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&logs)?;
    let dir = std::fs::canonicalize(&dir)?;
    let harness_log = dir.join("harness.log");
    let say = |msg: String| {
        eprintln!("[jepsen] {msg}");
        cluster::append_line(&harness_log, &msg);
    };
    say(format!(
        "run dir {} seed {seed} nodes {} layout {:?} nemesis {} time {}s",
        dir.display(),
        args.nodes,
        args.layout,
        args.nemesis,
        args.time
    ));

    let leftovers = net::cleanup();
    if !leftovers.is_empty() {
        say(format!("removed leftovers: {}", leftovers.join(", ")));
    }
    net::setup(args.nodes)?;
    let mut faults = faults;
    if faults.contains(&nemesis::Fault::Delay) && !net::netem_supported(0) {
        if faults.len() == 1 {
            bail!("this kernel has no sch_netem (tc netem): the delay nemesis cannot run");
        }
        say("this kernel has no sch_netem: skipping the delay fault".to_owned());
        faults.retain(|f| *f != nemesis::Fault::Delay);
    }
    let config = dir.join("cluster.toml");
    cluster::write_config(&config, args.nodes, args.layout, &dir.join("data"))?;
    let mut c = Cluster::new(bin, config, logs.clone(), args.nodes, args.layout);
    c.init_all()?;
    c.start_all()?;
    let Some(ready) = probe_write(&c, Duration::from_secs(30), "setup") else {
        bail!(
            "the cluster accepted no write within 30 s of starting (logs in {})",
            logs.display()
        );
    };
    say(format!(
        "cluster up: first write after {ready:?}, leader {:?}",
        c.leader().map(node_id)
    ));

    // Clients.
    let start = Instant::now();
    let recorder = history::Recorder::create(
        start,
        &dir.join("history.jsonl"),
        &dir.join("history.lincheck.jsonl"),
    )?;
    let shared = Arc::new(client::Shared {
        recorder,
        next_op: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        nodes: c.replica_nodes(),
        workers: args.clients,
        keys: (0..args.keys).map(|k| format!("k{k}")).collect(),
        op_timeout: Duration::from_millis(args.op_timeout_ms),
        seed,
        think: Duration::from_millis(args.think_ms),
        max_ops: args.max_ops,
    });
    let workers: Vec<_> = (0..args.clients)
        .map(|i| {
            let sh = shared.clone();
            std::thread::spawn(move || client::worker(i, sh))
        })
        .collect();

    // Nemesis: quiet, fault, quiet, fault... until --time is up.
    let mut rng = StdRng::seed_from_u64(seed);
    let end = start + Duration::from_secs(args.time);
    let faults_log = dir.join("faults.jsonl");
    let mut windows: Vec<Window> = Vec::new();
    let mut next = 0;
    let mut nemesis_error = None;
    loop {
        let quiet = Duration::from_millis(rng.gen_range(2000..4000));
        let hold = Duration::from_millis(rng.gen_range(3000..6000));
        if faults.is_empty() || Instant::now() + quiet + hold > end {
            signal::sleep(end.saturating_duration_since(Instant::now()));
            break;
        }
        if !signal::sleep(quiet) {
            break;
        }
        let fault = faults[next % faults.len()];
        next += 1;
        // The window opens once the fault is in place (finding the leader
        // and running iptables take a few ms).
        let injected = nemesis::inject(fault, &mut c, &mut rng);
        let start_ns = shared.recorder.now_ns();
        let detail = match &injected {
            Ok(d) => d.clone(),
            Err(e) => format!("injection failed: {e:#}"),
        };
        say(format!(
            "fault {} at {:.1}s: {detail}",
            fault.name(),
            start_ns as f64 / 1e9
        ));
        if injected.is_ok() {
            signal::sleep(hold);
        }
        let healed = nemesis::heal(&mut c);
        let end_ns = shared.recorder.now_ns();
        cluster::append_line(
            &faults_log,
            &json!({"fault": fault.name(), "detail": detail, "start_ns": start_ns,
                    "end_ns": end_ns, "heal_error": healed.as_ref().err().map(|e| format!("{e:#}"))})
            .to_string(),
        );
        say(format!(
            "healed {} at {:.1}s",
            fault.name(),
            end_ns as f64 / 1e9
        ));
        windows.push(Window {
            fault: fault.name(),
            detail,
            start_ns,
            end_ns,
        });
        if let Err(e) = injected.and(healed) {
            nemesis_error = Some(e);
            break;
        }
        if signal::stopped() {
            break;
        }
    }

    // Stop the clients (each finishes within one op timeout), heal, check.
    shared.stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }
    if shared.next_op.load(Ordering::SeqCst) >= args.max_ops {
        say(format!(
            "the clients stopped early at the op budget of {} (--max-ops)",
            args.max_ops
        ));
    }
    let events = shared.recorder.finish();
    let heal_result = nemesis::heal(&mut c);
    let final_heal_ns = shared.recorder.now_ns();
    let mut ok = true;
    let mut report = String::new();
    if let Err(e) = nemesis_error.map_or(heal_result, Err) {
        say(format!("nemesis error: {e:#}"));
        ok = false;
    }
    let interrupted = signal::stopped();
    if interrupted {
        say("interrupted: skipping the end-of-run checks".to_owned());
        writeln!(
            report,
            "INTERRUPTED: no recovery, convergence or final-value checks"
        )?;
        ok = false;
    }
    let ops = history::ops(&events);
    let recovered = if interrupted {
        None
    } else {
        probe_write(&c, Duration::from_secs(30), "final")
    };
    if !interrupted {
        end_checks(&mut c, &shared.keys, &ops, recovered, &mut report, &mut ok)?;
    }
    c.stop_all();

    if !interrupted {
        check_linearizable(
            &dir.join("history.lincheck.jsonl"),
            args.max_states,
            &mut report,
            &mut ok,
        )?;
    }
    let spans: Vec<(&str, u64, u64)> = windows
        .iter()
        .map(|w| (w.fault, w.start_ns, w.end_ns))
        .collect();
    let end_ns = ops
        .iter()
        .filter_map(|o| o.end.as_ref().map(|e| e.1))
        .max()
        .unwrap_or(final_heal_ns);
    let svg = dir.join("timeline.svg");
    std::fs::write(&svg, plot::timeline_svg(&ops, &spans, end_ns))?;
    writeln!(report, "timeline: {}", svg.display())?;
    let summary = summarize(
        args,
        seed,
        &dir,
        &ops,
        &windows,
        final_heal_ns,
        recovered,
        &report,
        ok,
    );
    println!("{summary}");
    std::fs::write(dir.join("summary.txt"), &summary)?;
    Ok(ok)
}

/// Runs the linearizability checker on the recorded history; a violation
/// or an exhausted search budget fails the run.
fn check_linearizable(
    path: &Path,
    max_states: u64,
    report: &mut String,
    ok: &mut bool,
) -> anyhow::Result<()> {
    use synod_linearizability::{check_report, CheckResult, History, Limits};
    let file = std::fs::File::open(path)?;
    let history = History::from_jsonl(std::io::BufReader::new(file))?;
    let started = std::time::Instant::now();
    let limits = Limits {
        max_states: Some(max_states),
        max_time: Some(Duration::from_secs(120)),
    };
    let r = check_report(&history, limits);
    let took = started.elapsed();
    match &r.result {
        CheckResult::Linearizable => writeln!(
            report,
            "linearizable: yes ({} ops checked in {took:?})",
            history.operations().len()
        )?,
        CheckResult::NotLinearizable(v) => {
            *ok = false;
            writeln!(report, "linearizable: NO ({took:?}): {v}")?;
        }
        other => {
            *ok = false;
            writeln!(report, "linearizable: unknown ({took:?}): {other:?}")?;
        }
    }
    Ok(())
}

/// After the final heal: recovery, convergence, final values, crashes.
fn end_checks(
    c: &mut Cluster,
    keys: &[String],
    ops: &[Op],
    recovered: Option<Duration>,
    report: &mut String,
    ok: &mut bool,
) -> Result<()> {
    match recovered {
        Some(d) => writeln!(report, "recovery: first write {d:?} after the final heal")?,
        None => {
            writeln!(
                report,
                "RECOVERY FAILED: no write succeeded within 30 s of the final heal"
            )?;
            *ok = false;
        }
    }
    let (converged, statuses) = wait_converged(c, Duration::from_secs(30));
    for s in &statuses {
        writeln!(report, "  {s}")?;
    }
    if converged {
        writeln!(
            report,
            "replicas converged: same applied slot and digest on every node"
        )?;
    } else {
        writeln!(
            report,
            "DIVERGENCE: replicas did not agree on applied/digest within 30 s"
        )?;
        *ok = false;
    }

    // Final values, read from every node; all must agree and be explained.
    for key in keys {
        let mut seen = Vec::new();
        for i in c.replica_nodes() {
            seen.push(final_read(i, key));
        }
        let first = seen[0].clone();
        if seen.iter().any(|v| *v != first) {
            writeln!(report, "FINAL READS DISAGREE on {key}: {seen:?}")?;
            *ok = false;
        }
        match first {
            Ok(v) => {
                let problems = history::check_final(ops, key, &v);
                writeln!(
                    report,
                    "final {key} = {v:?}{}",
                    if problems.is_empty() {
                        " (consistent)"
                    } else {
                        ""
                    }
                )?;
                for p in problems {
                    writeln!(report, "LOST WRITE? {p}")?;
                    *ok = false;
                }
            }
            Err(e) => {
                writeln!(report, "final read of {key} failed: {e}")?;
                *ok = false;
            }
        }
    }
    c.reap();
    for (id, status) in &c.unexpected_exits {
        writeln!(
            report,
            "UNEXPECTED EXIT: {id} exited on its own ({status}); see its log"
        )?;
        *ok = false;
    }
    Ok(())
}

/// SETs a probe key on random nodes until one succeeds; the time it took.
fn probe_write(c: &Cluster, limit: Duration, tag: &str) -> Option<Duration> {
    let t = Instant::now();
    let mut n = 0u64;
    let targets = c.replica_nodes();
    while t.elapsed() < limit && !signal::stopped() {
        n += 1;
        let i = targets[(n as usize) % targets.len()];
        if let Some(mut con) = cluster::connect(i, Duration::from_secs(1)) {
            let r: redis::RedisResult<redis::Value> = redis::cmd("SET")
                .arg("jepsen-probe")
                .arg(format!("{tag}-{n}"))
                .query(&mut con);
            if r.is_ok() {
                return Some(t.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Polls `SYNOD.STATUS` on every node until all report the same applied
/// slot and digest.
fn wait_converged(c: &Cluster, limit: Duration) -> (bool, Vec<String>) {
    let t = Instant::now();
    loop {
        let targets = c.replica_nodes();
        let all: Vec<Option<cluster::Status>> = targets
            .iter()
            .map(|&i| cluster::status(i, Duration::from_secs(1)))
            .collect();
        let shown = all
            .iter()
            .zip(&targets)
            .map(|(s, &i)| match s {
                Some(s) => format!(
                    "{}: applied {} digest {} leader {}",
                    s.node,
                    s.applied,
                    s.digest,
                    s.leader.as_deref().unwrap_or("-")
                ),
                None => format!("{}: no status", node_id(i)),
            })
            .collect();
        let agree = all.iter().all(|s| {
            matches!((s, &all[0]), (Some(a), Some(b)) if a.applied == b.applied && a.digest == b.digest)
        });
        if agree || t.elapsed() >= limit || signal::stopped() {
            return (agree, shown);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn final_read(i: usize, key: &str) -> Result<Option<String>, String> {
    let mut con = cluster::connect(i, Duration::from_secs(3)).ok_or("cannot connect")?;
    redis::cmd("GET")
        .arg(key)
        .query::<Option<String>>(&mut con)
        .map_err(|e| e.to_string())
}

/// Time from `from_ns` to the completion of the first acknowledged
/// mutation invoked at or after it.
fn first_write_after(ops: &[Op], from_ns: u64) -> Option<f64> {
    ops.iter()
        .filter(|o| o.ok_mutation() && o.invoke_ns >= from_ns)
        .filter_map(|o| o.end_ns())
        .min()
        .map(|end| (end - from_ns) as f64 / 1e9)
}

fn secs(v: Option<f64>) -> String {
    v.map_or("none".to_owned(), |s| format!("{s:.2}s"))
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    args: &Args,
    seed: u64,
    dir: &Path,
    ops: &[Op],
    windows: &[Window],
    final_heal_ns: u64,
    recovered: Option<Duration>,
    report: &str,
    ok: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "==== synod-jepsen summary ====");
    let _ = writeln!(
        s,
        "seed {seed}  nodes {}  layout {:?}  nemesis {}  time {}s  clients {}  keys {}",
        args.nodes, args.layout, args.nemesis, args.time, args.clients, args.keys
    );
    let _ = writeln!(s, "ops ({} total):", ops.len());
    for f in F::ALL {
        let of: Vec<&Op> = ops.iter().filter(|o| o.f == f).collect();
        let count = |t: Type| of.iter().filter(|o| o.ty() == t).count();
        let mut line = format!(
            "  {:<7} ok {:>6}  fail {:>5}  info {:>5}",
            f.name(),
            count(Type::Ok),
            count(Type::Fail),
            count(Type::Info)
        );
        if f == F::Cas {
            let swapped = of.iter().filter(|o| o.ok_mutation()).count();
            let _ = write!(
                line,
                "  (swapped {swapped}, not swapped {})",
                count(Type::Ok) - swapped
            );
        }
        let _ = writeln!(s, "{line}");
    }
    // Longest stretch without an acknowledged mutation.
    let mut acks: Vec<u64> = ops
        .iter()
        .filter(|o| o.ok_mutation())
        .filter_map(|o| o.end_ns())
        .collect();
    acks.sort_unstable();
    let max_gap = acks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "longest gap between acknowledged writes: {:.2}s",
        max_gap as f64 / 1e9
    );
    let _ = writeln!(s, "faults injected: {}", windows.len());
    for w in windows {
        let _ = writeln!(
            s,
            "  {:>6.1}s-{:>5.1}s {:<15} {:<48} first write after start {:>7}, after heal {:>7}",
            w.start_ns as f64 / 1e9,
            w.end_ns as f64 / 1e9,
            w.fault,
            w.detail,
            secs(first_write_after(ops, w.start_ns)),
            secs(first_write_after(ops, w.end_ns)),
        );
    }
    // The same per kind of fault: leader faults apart from the others,
    // since those are the ones that need an election.
    let mut kinds: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for w in windows {
        let kind = if w.detail.contains("(leader)") {
            format!("{} (leader)", w.fault)
        } else {
            w.fault.to_owned()
        };
        let pos = match kinds.iter().position(|(k, _, _)| *k == kind) {
            Some(p) => p,
            None => {
                kinds.push((kind, Vec::new(), Vec::new()));
                kinds.len() - 1
            }
        };
        if let Some(t) = first_write_after(ops, w.start_ns) {
            kinds[pos].1.push(t);
        }
        if let Some(t) = first_write_after(ops, w.end_ns) {
            kinds[pos].2.push(t);
        }
    }
    if !kinds.is_empty() {
        let _ = writeln!(s, "write stall per kind of fault (median / max, seconds):");
    }
    for (kind, mut after_start, mut after_heal) in kinds {
        let _ = writeln!(
            s,
            "  {kind:<22} n={:<3} after fault {}  after heal {}",
            after_start.len(),
            median_max(&mut after_start),
            median_max(&mut after_heal)
        );
    }
    let _ = writeln!(
        s,
        "final heal at {:.1}s; probe write succeeded after {}",
        final_heal_ns as f64 / 1e9,
        recovered.map_or("NEVER".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
    );
    let _ = write!(s, "{report}");
    let _ = writeln!(s, "history: {}", dir.join("history.jsonl").display());
    let _ = writeln!(
        s,
        "checker: synod-lincheck {}",
        dir.join("history.lincheck.jsonl").display()
    );
    let _ = writeln!(s, "faults:  {}", dir.join("faults.jsonl").display());
    let _ = writeln!(s, "logs:    {}", dir.join("logs").display());
    let _ = writeln!(s, "verdict: {}", if ok { "PASS" } else { "FAIL" });
    s
}

fn median_max(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    format!("{:.2} / {:.2}", v[v.len() / 2], v[v.len() - 1])
}

/// `base`, or `base-2`, `base-3`... if two runs start in the same second.
fn unique_dir(base: &Path) -> Result<PathBuf> {
    for n in 1..100 {
        let dir = if n == 1 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{n}", base.display()))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    bail!("cannot find a free run dir next to {}", base.display())
}

/// `YYYYmmdd-HHMMSS` in UTC, without a date crate.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
