//! `synod-loadgen report`: reads the JSON lines of many runs and writes
//! `results.md` (a table per workload: systems × client counts, with ops/s
//! and p50/p99, then the ratios the benchmark is about) plus
//! `throughput.svg` and `latency.svg`. When a (system, workload, clients)
//! point was run more than once, the last line wins.

use crate::config::ReportArgs;
use crate::plot;
use crate::stats::RunRecord;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// Which labels play which part in the ratios section.
#[derive(Debug, Clone)]
pub struct Roles {
    pub synod: String,
    pub split: String,
    pub etcd: String,
    pub redis: String,
}

impl From<&ReportArgs> for Roles {
    fn from(a: &ReportArgs) -> Self {
        Roles {
            synod: a.synod_label.clone(),
            split: a.split_label.clone(),
            etcd: a.etcd_label.clone(),
            redis: a.redis_label.clone(),
        }
    }
}

/// Parses a results file; blank lines are skipped, anything else that is
/// not a run record is an error naming the line.
pub fn parse_jsonl(text: &str) -> Result<Vec<RunRecord>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: RunRecord = serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
        out.push(r);
    }
    if out.is_empty() {
        bail!("no run records");
    }
    Ok(out)
}

/// One run per point (system, workload, clients), in first-seen order.
/// A point measured several times (`bench.sh --repeat`) is represented by
/// its median run by throughput (the lower one of the two middle runs for
/// an even count), whole: its latencies are that run's, not mixed.
pub struct Results {
    runs: Vec<RunRecord>,
    /// Every run as recorded, for the list of runs with errors: a failure
    /// must show even when another repetition of its point is the median.
    all: Vec<RunRecord>,
}

impl Results {
    pub fn new(records: Vec<RunRecord>) -> Self {
        let all = records.clone();
        let mut groups: Vec<Vec<RunRecord>> = Vec::new();
        for r in records {
            match groups.iter_mut().find(|g| {
                let x = &g[0];
                x.label == r.label && x.workload == r.workload && x.clients == r.clients
            }) {
                Some(g) => g.push(r),
                None => groups.push(vec![r]),
            }
        }
        let runs = groups
            .into_iter()
            .filter_map(|mut g| {
                g.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
                let mid = (g.len() - 1) / 2;
                g.into_iter().nth(mid)
            })
            .collect();
        Results { runs, all }
    }

    /// Workloads present, in the order set, get, mixed, then others.
    pub fn workloads(&self) -> Vec<String> {
        let mut w: Vec<String> = Vec::new();
        for r in &self.runs {
            if !w.contains(&r.workload) {
                w.push(r.workload.clone());
            }
        }
        let rank = |s: &str| match s {
            "set" => 0,
            "get" => 1,
            "mixed" => 2,
            _ => 3,
        };
        w.sort_by_key(|s| rank(s));
        w
    }

    /// Labels with a run of `workload`, in first-seen order.
    pub fn labels(&self, workload: &str) -> Vec<String> {
        let mut l: Vec<String> = Vec::new();
        for r in self.runs.iter().filter(|r| r.workload == workload) {
            if !l.contains(&r.label) {
                l.push(r.label.clone());
            }
        }
        l
    }

    pub fn clients(&self, workload: &str) -> Vec<usize> {
        self.runs
            .iter()
            .filter(|r| r.workload == workload)
            .map(|r| r.clients)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    pub fn get(&self, label: &str, workload: &str, clients: usize) -> Option<&RunRecord> {
        self.runs
            .iter()
            .find(|r| r.label == label && r.workload == workload && r.clients == clients)
    }

    /// (clients, run) of one system's curve, by increasing clients.
    pub fn series(&self, label: &str, workload: &str) -> Vec<&RunRecord> {
        let mut s: Vec<&RunRecord> = self
            .runs
            .iter()
            .filter(|r| r.label == label && r.workload == workload)
            .collect();
        s.sort_by_key(|r| r.clients);
        s
    }

    pub fn runs(&self) -> &[RunRecord] {
        &self.runs
    }

    pub fn all_runs(&self) -> &[RunRecord] {
        &self.all
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(v: f64) -> String {
    let n = v.round().max(0.0) as u64;
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    groups.join(",")
}

/// Microseconds as milliseconds with 2 decimals (3 below 0.1 ms).
pub fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v < 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

/// Seconds with at most one decimal and no trailing zero: 2, 0.5, 10.
pub fn short(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn clients_text(c: usize) -> String {
    if c == 1 {
        "1 client".to_string()
    } else {
        format!("{c} clients")
    }
}

fn workload_title(w: &str) -> String {
    match w {
        "set" => "Writes (`SET` / etcd put)".to_string(),
        "get" => "Reads (`GET` / etcd linearizable range), keys preloaded".to_string(),
        "mixed" => "Mixed reads and writes".to_string(),
        other => format!("Workload `{other}`"),
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".to_string()
    }
}

/// The whole `results.md`.
pub fn markdown(res: &Results, roles: &Roles) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Synod benchmark results\n");
    let _ = writeln!(
        s,
        "Closed-loop load from `synod-loadgen` (each client keeps one request in flight); \
         written by `scripts/bench.sh` through `synod-loadgen report`. \
         Cells: throughput in ops/s, then p50 / p99 latency in ms."
    );
    let runs = res.runs();
    let distinct = |f: &dyn Fn(&RunRecord) -> String| {
        runs.iter()
            .map(f)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        s,
        "\nConditions: values {} B, {} keys, {} s measured after {} s warmup per point, \
         connections = clients unless noted; {} runs.",
        distinct(&|r| r.value_size.to_string()),
        distinct(&|r| r.keys.to_string()),
        distinct(&|r| short(r.duration_s)),
        distinct(&|r| short(r.warmup_s)),
        runs.len()
    );
    for w in res.workloads() {
        let clients = res.clients(&w);
        let _ = writeln!(s, "\n## {}\n", workload_title(&w));
        let mut header = "| System |".to_string();
        let mut rule = "|---|".to_string();
        for c in &clients {
            let _ = write!(
                header,
                " {c} client{} ops/s | p50 / p99 ms |",
                if *c == 1 { "" } else { "s" }
            );
            rule.push_str("---:|---:|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for label in res.labels(&w) {
            let _ = write!(s, "| {label} |");
            for c in &clients {
                match res.get(&label, &w, *c) {
                    Some(r) => {
                        let mut ops = thousands(r.ops_per_sec);
                        if r.errors > 0 {
                            let _ = write!(ops, " ({} err)", r.errors);
                        }
                        if r.connections != r.clients {
                            let _ = write!(ops, " [{} conns]", r.connections);
                        }
                        let _ = write!(s, " {ops} | {} / {} |", ms(r.p50_us), ms(r.p99_us));
                    }
                    None => s.push_str(" – | – |"),
                }
            }
            s.push('\n');
        }
    }
    s.push_str(&ratios(res, roles));
    let failing: Vec<&RunRecord> = res
        .all_runs()
        .iter()
        .filter(|r| r.errors > 0 || r.ops == 0)
        .collect();
    if !failing.is_empty() {
        let _ = writeln!(s, "\n## Runs with errors\n");
        for r in failing {
            let kinds: Vec<String> = r
                .error_kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                s,
                "- {} {} @{}: {} ok, {} errors ({})",
                r.label,
                r.workload,
                clients_text(r.clients),
                r.ops,
                r.errors,
                kinds.join(", ")
            );
        }
    }
    s
}

fn ratios(res: &Results, roles: &Roles) -> String {
    let mut s = String::from("\n## Ratios\n\n| Comparison | Value | From |\n|---|---:|---|\n");
    let missing = |label: &str, w: &str, c: usize| {
        format!("n/a | no `{label}` {w} run at {}", clients_text(c))
    };
    let mut row = |name: &str, value: String| {
        let _ = writeln!(s, "| {name} | {value} |");
    };
    let pair = |a: &str, b: &str, w: &str, c: usize| -> Result<(&RunRecord, &RunRecord), String> {
        let x = res.get(a, w, c).ok_or_else(|| missing(a, w, c))?;
        let y = res.get(b, w, c).ok_or_else(|| missing(b, w, c))?;
        Ok((x, y))
    };
    let (synod, etcd, redis, split) = (&roles.synod, &roles.etcd, &roles.redis, &roles.split);

    // One ratio row: metric of `a` over metric of `b` for one workload and
    // client count, with both raw figures.
    let throughput = |r: &RunRecord| (r.ops_per_sec, thousands(r.ops_per_sec).to_string());
    let p99 = |r: &RunRecord| (r.p99_us as f64, ms(r.p99_us));
    let p50 = |r: &RunRecord| (r.p50_us as f64, ms(r.p50_us));
    type Metric<'m> = &'m dyn Fn(&RunRecord) -> (f64, String);
    let compared = [
        (
            "writes @64: throughput",
            "set",
            64,
            &throughput as Metric,
            "ops/s",
        ),
        ("writes @64: p99 latency", "set", 64, &p99 as Metric, "ms"),
        ("writes @1: p50 latency", "set", 1, &p50 as Metric, "ms"),
        (
            "reads @64: throughput",
            "get",
            64,
            &throughput as Metric,
            "ops/s",
        ),
    ];
    for (what, w, c, metric, unit) in compared {
        let value = match pair(synod, etcd, w, c) {
            Ok((a, b)) => {
                let ((x, xs), (y, ys)) = (metric(a), metric(b));
                format!("{} | {xs} vs {ys} {unit}", ratio(x, y))
            }
            Err(m) => m,
        };
        row(&format!("{synod} / {etcd}, {what}"), value);
    }
    row(
        &format!("{synod} SET @64 as a share of {redis}"),
        match pair(synod, redis, "set", 64) {
            Ok((a, b)) if b.ops_per_sec > 0.0 => format!(
                "{:.1} % | {} vs {} ops/s",
                100.0 * a.ops_per_sec / b.ops_per_sec,
                thousands(a.ops_per_sec),
                thousands(b.ops_per_sec)
            ),
            Ok(_) => format!("n/a | `{redis}` made no progress"),
            Err(m) => m,
        },
    );
    let value = match pair(split, synod, "set", 64) {
        Ok((a, b)) => {
            let ((x, xs), (y, ys)) = (throughput(a), throughput(b));
            format!("{} | {xs} vs {ys} ops/s", ratio(x, y))
        }
        Err(m) => m,
    };
    row(&format!("{split} / {synod}, writes @64: throughput"), value);
    s
}

pub fn write(args: &ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let records = parse_jsonl(&text).with_context(|| format!("{}", args.input.display()))?;
    let res = Results::new(records);
    let out: &Path = &args.out_dir;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut text = markdown(&res, &Roles::from(args));
    if let Some(notes) = &args.notes {
        let n = std::fs::read_to_string(notes)
            .with_context(|| format!("cannot read {}", notes.display()))?;
        text.push_str("\n## Setup\n\n");
        text.push_str(n.trim_end());
        text.push('\n');
    }
    let md = out.join("results.md");
    std::fs::write(&md, text).with_context(|| format!("cannot write {}", md.display()))?;
    for (name, svg) in [
        ("throughput.svg", plot::throughput_svg(&res)?),
        ("latency.svg", plot::latency_svg(&res)?),
    ] {
        let p = out.join(name);
        std::fs::write(&p, svg).with_context(|| format!("cannot write {}", p.display()))?;
    }
    println!(
        "wrote {}, throughput.svg, latency.svg ({} runs)",
        md.display(),
        res.runs().len()
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn line(
        label: &str,
        target: &str,
        w: &str,
        c: usize,
        ops_s: f64,
        p50: u64,
        p99: u64,
    ) -> String {
        format!(
            r#"{{"label":"{label}","target":"{target}","workload":"{w}","clients":{c},"connections":{c},"keys":10000,"value_size":256,"ops":{},"errors":0,"warmup_s":1.0,"duration_s":10.0,"ops_per_sec":{ops_s},"p50_us":{p50},"p95_us":{p99},"p99_us":{p99},"p999_us":{p99},"max_us":{p99}}}"#,
            (ops_s * 10.0) as u64
        )
    }

    /// A small hand-made results file: synod, etcd and redis at 1 and 64
    /// clients, split-roles writes at 64 only, and a point measured twice
    /// (9,999 and 8,000 ops/s: the lower middle, 8,000, stands for it).
    pub(crate) fn sample() -> String {
        [
            line("synod-local3", "resp", "set", 1, 500.0, 2000, 4000),
            line("synod-local3", "resp", "set", 64, 9999.0, 1, 1),
            line("synod-local3", "resp", "set", 64, 8000.0, 7000, 20000),
            line("synod-local3", "resp", "get", 1, 600.0, 1500, 3000),
            line("synod-local3", "resp", "get", 64, 9000.0, 6000, 15000),
            line("etcd", "etcd", "set", 1, 250.0, 4000, 8000),
            String::new(),
            line("etcd", "etcd", "set", 64, 4000.0, 14000, 50000),
            line("etcd", "etcd", "get", 1, 1000.0, 900, 2000),
            line("etcd", "etcd", "get", 64, 12000.0, 5000, 9000),
            line("redis", "resp", "set", 1, 20000.0, 45, 90),
            line("redis", "resp", "set", 64, 80000.0, 700, 1500),
            line("synod-split", "resp", "set", 64, 6000.0, 9000, 30000),
        ]
        .join("\n")
    }

    fn results() -> Results {
        Results::new(parse_jsonl(&sample()).unwrap())
    }

    fn roles() -> Roles {
        Roles {
            synod: "synod-local3".into(),
            split: "synod-split".into(),
            etcd: "etcd".into(),
            redis: "redis".into(),
        }
    }

    #[test]
    fn a_point_measured_several_times_is_its_median_run() {
        let text = [
            line("redis", "resp", "set", 64, 90.0, 1, 1),
            line("redis", "resp", "set", 64, 70.0, 2, 2),
            line("redis", "resp", "set", 64, 80.0, 3, 3),
            line("redis", "resp", "get", 64, 10.0, 4, 4),
            line("redis", "resp", "get", 64, 30.0, 5, 5),
        ]
        .join("\n");
        let r = Results::new(parse_jsonl(&text).unwrap());
        let set = r.get("redis", "set", 64).unwrap();
        assert_eq!(
            (set.ops_per_sec, set.p50_us),
            (80.0, 3),
            "the middle run, whole"
        );
        let get = r.get("redis", "get", 64).unwrap();
        assert_eq!(get.ops_per_sec, 10.0, "the lower middle of an even count");
        assert_eq!(r.runs().len(), 2);
    }

    #[test]
    fn repeated_points_collapse_and_order_is_kept() {
        let r = results();
        assert_eq!(r.runs().len(), 11, "12 lines, one point measured twice");
        assert_eq!(
            r.get("synod-local3", "set", 64).unwrap().ops_per_sec,
            8000.0
        );
        assert_eq!(r.workloads(), vec!["set", "get"]);
        assert_eq!(
            r.labels("set"),
            vec!["synod-local3", "etcd", "redis", "synod-split"]
        );
        assert_eq!(r.labels("get"), vec!["synod-local3", "etcd"]);
        assert_eq!(r.clients("set"), vec![1, 64]);
        let s: Vec<usize> = r.series("etcd", "get").iter().map(|x| x.clients).collect();
        assert_eq!(s, vec![1, 64]);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let text = format!(
            "{}\n{{\"label\": 3}}\n",
            line("a", "resp", "set", 1, 1.0, 1, 1)
        );
        let e = format!("{:#}", parse_jsonl(&text).unwrap_err());
        assert!(e.contains("line 2"), "{e}");
        assert!(format!("{:#}", parse_jsonl("\n\n").unwrap_err()).contains("no run records"));
        assert!(parse_jsonl("not json").is_err());
    }

    #[test]
    fn tables_have_one_row_per_system_and_two_cells_per_client_count() {
        let md = markdown(&results(), &roles());
        assert!(
            md.contains(
                "| System | 1 client ops/s | p50 / p99 ms | 64 clients ops/s | p50 / p99 ms |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| synod-local3 | 500 | 2.00 / 4.00 | 8,000 | 7.00 / 20.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| redis | 20,000 | 0.045 / 0.090 | 80,000 | 0.70 / 1.50 |"),
            "{md}"
        );
        // split-roles has no 1-client write run.
        assert!(
            md.contains("| synod-split | – | – | 6,000 | 9.00 / 30.00 |"),
            "{md}"
        );
        // The read table lists only systems that ran reads.
        let reads = md
            .split("## Reads")
            .nth(1)
            .unwrap()
            .split("## Ratios")
            .next()
            .unwrap();
        assert!(
            reads.contains("| etcd | 1,000 | 0.90 / 2.00 | 12,000 | 5.00 / 9.00 |"),
            "{reads}"
        );
        assert!(!reads.contains("redis"));
        assert!(md.contains("Conditions: values 256 B, 10000 keys, 10 s measured after 1 s warmup"));
        assert!(!md.contains("Runs with errors"));
    }

    #[test]
    fn ratios_are_computed_from_the_right_points() {
        let md = markdown(&results(), &roles());
        assert!(
            md.contains(
                "| synod-local3 / etcd, writes @64: throughput | 2.00× | 8,000 vs 4,000 ops/s |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| synod-local3 / etcd, writes @64: p99 latency | 0.40× | 20.00 vs 50.00 ms |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| synod-local3 / etcd, writes @1: p50 latency | 0.50× | 2.00 vs 4.00 ms |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| synod-local3 / etcd, reads @64: throughput | 0.75× | 9,000 vs 12,000 ops/s |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| synod-local3 SET @64 as a share of redis | 10.0 % | 8,000 vs 80,000 ops/s |"
            ),
            "{md}"
        );
        assert!(md.contains("| synod-split / synod-local3, writes @64: throughput | 0.75× | 6,000 vs 8,000 ops/s |"), "{md}");
    }

    #[test]
    fn missing_points_say_what_is_missing() {
        let only = Results::new(
            parse_jsonl(&line("synod-local3", "resp", "set", 1, 100.0, 1, 1)).unwrap(),
        );
        let md = markdown(&only, &roles());
        assert!(md.contains("| synod-local3 / etcd, writes @64: throughput | n/a | no `synod-local3` set run at 64 clients |"), "{md}");
        assert!(
            md.contains("writes @1: p50 latency | n/a | no `etcd` set run at 1 client |"),
            "{md}"
        );
    }

    #[test]
    fn runs_with_errors_are_listed() {
        let text = line("synod-local3", "resp", "set", 16, 10.0, 1, 1).replace(
            "\"errors\":0",
            "\"errors\":3,\"error_kinds\":{\"timeout\":3}",
        );
        let md = markdown(&Results::new(parse_jsonl(&text).unwrap()), &roles());
        assert!(md.contains("| synod-local3 | 10 (3 err) |"), "{md}");
        assert!(
            md.contains("- synod-local3 set @16 clients: 100 ok, 3 errors (timeout 3)"),
            "{md}"
        );
    }

    #[test]
    fn write_produces_the_three_files_with_notes() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("results.jsonl");
        let notes = dir.path().join("setup.md");
        std::fs::write(&input, sample()).unwrap();
        std::fs::write(&notes, "- machine: 2 cores\n").unwrap();
        let out = dir.path().join("out/bench");
        let args = ReportArgs {
            input: input.clone(),
            out_dir: out.clone(),
            synod_label: "synod-local3".into(),
            split_label: "synod-split".into(),
            etcd_label: "etcd".into(),
            redis_label: "redis".into(),
            notes: Some(notes),
        };
        write(&args).unwrap();
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.starts_with("# Synod benchmark results"));
        assert!(md.ends_with("## Setup\n\n- machine: 2 cores\n"), "{md}");
        for f in ["throughput.svg", "latency.svg"] {
            let svg = std::fs::read_to_string(out.join(f)).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{f}"
            );
        }
        // A missing input is an error naming the file, not a panic.
        let bad = ReportArgs {
            input: dir.path().join("nope.jsonl"),
            ..args
        };
        assert!(format!("{:#}", write(&bad).unwrap_err()).contains("nope.jsonl"));
    }

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(ms(45), "0.045");
        assert_eq!(ms(1234), "1.23");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(2.0003), "2");
        assert_eq!(short(10.0), "10");
    }
}
