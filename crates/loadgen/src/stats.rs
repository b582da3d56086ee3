//! Per-client counters and latency histograms, merged into one `RunRecord`
//! per run: the JSON line appended to `--json-out` and the one-line summary.

use crate::conn::{OpError, OpResult};
use crate::protocol::Outcome;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Highest latency the histogram tracks exactly (an hour, in µs); above
/// it values saturate.
const MAX_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h with 3 significant digits; the bounds are constants.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// What one client saw during the measured window.
pub struct ClientStats {
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub misses: u64,
    pub errors: BTreeMap<String, u64>,
    /// First message per error kind, for the summary.
    pub first_error: BTreeMap<String, String>,
}

impl ClientStats {
    pub fn new() -> Self {
        Self {
            hist: new_histogram(),
            ops: 0,
            misses: 0,
            errors: BTreeMap::new(),
            first_error: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, result: &OpResult, latency: Duration, read: bool) {
        match result {
            Ok(Outcome::Ok { hit, .. }) => {
                self.ops += 1;
                if read && !hit {
                    self.misses += 1;
                }
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.hist.saturating_record(us.clamp(1, MAX_US));
            }
            Ok(Outcome::Failed(msg)) => self.error(&OpError::Reply(msg.clone())),
            Err(e) => self.error(e),
        }
    }

    pub fn error(&mut self, e: &OpError) {
        *self.errors.entry(e.kind().to_string()).or_default() += 1;
        self.first_error
            .entry(e.kind().to_string())
            .or_insert_with(|| e.to_string());
    }

    pub fn merge(&mut self, other: &ClientStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.ops += other.ops;
        self.misses += other.misses;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.first_error {
            self.first_error
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl Default for ClientStats {
    fn default() -> Self {
        Self::new()
    }
}

/// One run, as one JSON line. Fields the report does not need default, so
/// hand-written or older lines still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub label: String,
    /// `resp` or `etcd`.
    pub target: String,
    #[serde(default)]
    pub addrs: Vec<String>,
    pub workload: String,
    #[serde(default)]
    pub read_ratio: f64,
    pub clients: usize,
    pub connections: usize,
    #[serde(default)]
    pub keys: u64,
    #[serde(default)]
    pub value_size: usize,
    /// Successful operations in the measured window.
    pub ops: u64,
    pub errors: u64,
    #[serde(default)]
    pub error_kinds: BTreeMap<String, u64>,
    /// Reads that found no value.
    #[serde(default)]
    pub misses: u64,
    #[serde(default)]
    pub warmup_s: f64,
    pub duration_s: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    #[serde(default)]
    pub mean_us: f64,
    /// Unix seconds at the end of the run.
    #[serde(default)]
    pub timestamp: u64,
}

pub fn quantiles(h: &Histogram<u64>) -> [u64; 5] {
    if h.is_empty() {
        return [0; 5];
    }
    [
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.95),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ]
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl RunRecord {
    /// The one-line human summary.
    pub fn summary(&self, first_error: &BTreeMap<String, String>) -> String {
        let mut s = format!(
            "{} {} {} clients={} conns={}: {:.0} ops/s ({} ops in {:.1} s), errors {}, latency ms p50 {} p95 {} p99 {} p99.9 {} max {}",
            self.label,
            self.target,
            self.workload,
            self.clients,
            self.connections,
            self.ops_per_sec,
            self.ops,
            self.duration_s,
            self.errors,
            ms(self.p50_us),
            ms(self.p95_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
        );
        if self.misses > 0 {
            s.push_str(&format!(", {} reads missed", self.misses));
        }
        if self.errors > 0 {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, v)| match first_error.get(k) {
                    Some(m) => format!("{k} {v} (first: {m})"),
                    None => format!("{k} {v}"),
                })
                .collect();
            s.push_str(&format!(" [{}]", kinds.join("; ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Shape;

    #[test]
    fn records_and_merges() {
        let mut a = ClientStats::new();
        for ms in 1..=100u64 {
            a.record(
                &Ok(Outcome::Ok {
                    hit: true,
                    shape: Shape::Data,
                }),
                Duration::from_millis(ms),
                true,
            );
        }
        a.record(
            &Ok(Outcome::Ok {
                hit: false,
                shape: Shape::Data,
            }),
            Duration::from_millis(1),
            true,
        );
        let mut b = ClientStats::new();
        b.record(&Err(OpError::Timeout), Duration::from_secs(5), false);
        b.record(
            &Ok(Outcome::Failed("ERR x".into())),
            Duration::from_millis(1),
            false,
        );
        b.record(&Err(OpError::Timeout), Duration::from_secs(5), false);
        a.merge(&b);
        assert_eq!(a.ops, 101);
        assert_eq!(a.misses, 1);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.errors.get("timeout"), Some(&2));
        assert_eq!(a.errors.get("reply"), Some(&1));
        assert_eq!(
            a.first_error.get("reply").map(String::as_str),
            Some("error reply: ERR x")
        );
        // Errors are not latency samples.
        assert_eq!(a.hist.len(), 101);
        let [p50, p95, p99, p999, max] = quantiles(&a.hist);
        // 3 significant digits: within 0.1 % of the exact values.
        let near =
            |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(p50, 50_000), "{p50}");
        assert!(near(p95, 95_000), "{p95}");
        assert!(near(p99, 99_000), "{p99}");
        assert!(near(p999, 100_000), "{p999}");
        assert!(near(max, 100_000), "{max}");
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        assert_eq!(quantiles(&new_histogram()), [0; 5]);
    }

    #[test]
    fn record_round_trips_and_tolerates_missing_optional_fields() {
        let line = r#"{"label":"x","target":"resp","workload":"set","clients":1,"connections":1,"ops":10,"errors":0,"duration_s":1.0,"ops_per_sec":10.0,"p50_us":100,"p95_us":200,"p99_us":300,"p999_us":400,"max_us":500}"#;
        let r: RunRecord = serde_json::from_str(line).unwrap();
        assert_eq!((r.ops, r.p99_us, r.keys), (10, 300, 0));
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let s = r.summary(&BTreeMap::new());
        assert!(s.starts_with("x resp set clients=1 conns=1: 10 ops/s (10 ops in 1.0 s), errors 0, latency ms p50 0.10 p95 0.20 p99 0.30"), "{s}");
    }
}
