//! One load run: optional preload, warmup, measured window, then one
//! merged `RunRecord`. Clients are closed-loop tasks (one request in
//! flight each) over `connections` shared connections; client `i` uses
//! connection `i % connections`, connection `j` goes to address
//! `j % addrs`. Every operation is bounded by the op timeout, so a run ends
//! at most one timeout (plus a little) after its window closes.

use crate::config::{key_name, RunConfig};
use crate::conn::{Conn, OpError};
use crate::protocol::{Encoder, Outcome};
use crate::rng::{value_bytes, SplitMix64};
use crate::stats::{quantiles, ClientStats, RunRecord};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{sleep, timeout, Instant};

/// Attempts per key during preload before the run is abandoned.
const PRELOAD_ATTEMPTS: u32 = 3;
/// Concurrent writers during preload (at least; `--clients` if larger).
const PRELOAD_WRITERS: usize = 64;
/// Upper bound of the whole preload.
const PRELOAD_LIMIT: Duration = Duration::from_secs(300);

/// A run's merged result plus the first message per error kind.
pub struct Outcomes {
    pub record: RunRecord,
    pub first_error: BTreeMap<String, String>,
}

fn client_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

fn backoff(e: &OpError) -> Duration {
    match e {
        OpError::Reply(_) => Duration::from_millis(10),
        OpError::Timeout => Duration::ZERO,
        _ => Duration::from_millis(100),
    }
}

fn connect_all(cfg: &RunConfig) -> Vec<(Conn, String)> {
    (0..cfg.connections)
        .map(|j| {
            let addr = cfg.target.addrs[j % cfg.target.addrs.len()].clone();
            (
                Conn::spawn(cfg.target.kind, addr.clone(), cfg.timeout),
                addr,
            )
        })
        .collect()
}

/// Writes every key once with `max(clients, 64)` writers.
async fn preload(cfg: &Arc<RunConfig>, conns: &[(Conn, String)]) -> Result<()> {
    let writers = cfg.clients.max(PRELOAD_WRITERS).min(cfg.keys as usize);
    let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (conn, addr) = conns[w % conns.len()].clone();
        let cfg = cfg.clone();
        let (failed, stop, done) = (failed.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let enc = Encoder::new(
                cfg.target.kind,
                &addr,
                value_bytes(client_seed(cfg.seed, w), cfg.value_size),
            );
            let mut k = w as u64;
            while k < cfg.keys && !stop.load(Ordering::Relaxed) {
                let req = enc.set(&key_name(k));
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let e = match conn.call(req.clone(), cfg.timeout).await {
                        Ok(Outcome::Ok { .. }) => break,
                        Ok(Outcome::Failed(m)) => OpError::Reply(m),
                        Err(e) => e,
                    };
                    if attempt >= PRELOAD_ATTEMPTS {
                        let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert_with(|| {
                            format!("{} failed {attempt} times: {e}", key_name(k))
                        });
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    sleep(backoff(&e)).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
                k += writers as u64;
            }
        }));
    }
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if timeout(PRELOAD_LIMIT, all).await.is_err() {
        stop.store(true, Ordering::Relaxed);
        bail!(
            "preload did not finish within {} s ({} of {} keys written)",
            PRELOAD_LIMIT.as_secs(),
            done.load(Ordering::Relaxed),
            cfg.keys
        );
    }
    let failed = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(msg) = failed {
        bail!(
            "preload failed after {} of {} keys: {msg}",
            done.load(Ordering::Relaxed),
            cfg.keys
        );
    }
    Ok(())
}

async fn client(
    i: usize,
    cfg: Arc<RunConfig>,
    conn: Conn,
    addr: String,
    measure_start: Instant,
    end: Instant,
) -> ClientStats {
    let mut rng = SplitMix64::new(client_seed(cfg.seed, i).rotate_left(17));
    let enc = Encoder::new(
        cfg.target.kind,
        &addr,
        value_bytes(client_seed(cfg.seed, i), cfg.value_size),
    );
    let mut stats = ClientStats::new();
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let key = key_name(rng.below(cfg.keys));
        let read = rng.unit() < cfg.read_ratio;
        let req = if read { enc.get(&key) } else { enc.set(&key) };
        let result = match conn.call(req, cfg.timeout).await {
            Ok(Outcome::Ok { shape, .. }) if !shape.fits(read) => Err(OpError::Protocol(format!(
                "a {} answered with {shape:?}: answers out of order?",
                if read { "read" } else { "write" }
            ))),
            other => other,
        };
        if start >= measure_start {
            stats.record(&result, start.elapsed(), read);
        }
        let pause = match &result {
            Ok(Outcome::Failed(m)) => backoff(&OpError::Reply(m.clone())),
            Err(e) => backoff(e),
            Ok(_) => Duration::ZERO,
        };
        if !pause.is_zero() {
            let until = (Instant::now() + pause).min(end);
            tokio::time::sleep_until(until).await;
        }
    }
    stats
}

pub async fn run(cfg: RunConfig) -> Result<Outcomes> {
    let cfg = Arc::new(cfg);
    let conns = connect_all(&cfg);
    if cfg.preload {
        preload(&cfg, &conns).await?;
    }
    let t0 = Instant::now();
    let measure_start = t0 + cfg.warmup;
    let end = measure_start + cfg.duration;
    let tasks: Vec<_> = (0..cfg.clients)
        .map(|i| {
            let (conn, addr) = conns[i % conns.len()].clone();
            tokio::spawn(client(i, cfg.clone(), conn, addr, measure_start, end))
        })
        .collect();
    drop(conns);
    // Each op ends within its timeout; the slack covers scheduling.
    let hard_stop = end + cfg.timeout + Duration::from_secs(2);
    let mut total = ClientStats::new();
    let mut unfinished = 0;
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(hard_stop, t).await {
            Ok(Ok(s)) => total.merge(&s),
            Ok(Err(e)) => bail!("a client task failed: {e}"),
            Err(_) => {
                abort.abort();
                unfinished += 1;
            }
        }
    }
    if unfinished > 0 {
        total.error(&OpError::Io(format!(
            "{unfinished} clients still busy at the hard stop"
        )));
    }
    let elapsed = Instant::now()
        .saturating_duration_since(measure_start)
        .max(cfg.duration);
    let [p50, p95, p99, p999, max] = quantiles(&total.hist);
    let record = RunRecord {
        label: cfg.label.clone(),
        target: cfg.target.kind.name().to_string(),
        addrs: cfg.target.addrs.clone(),
        workload: cfg.workload.name().to_string(),
        read_ratio: cfg.read_ratio,
        clients: cfg.clients,
        connections: cfg.connections,
        keys: cfg.keys,
        value_size: cfg.value_size,
        ops: total.ops,
        errors: total.error_count(),
        error_kinds: total.errors.clone(),
        misses: total.misses,
        warmup_s: cfg.warmup.as_secs_f64(),
        duration_s: elapsed.as_secs_f64(),
        ops_per_sec: total.ops as f64 / elapsed.as_secs_f64(),
        p50_us: p50,
        p95_us: p95,
        p99_us: p99,
        p999_us: p999,
        max_us: max,
        mean_us: if total.hist.is_empty() {
            0.0
        } else {
            total.hist.mean()
        },
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    Ok(Outcomes {
        record,
        first_error: total.first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Target, TargetKind, Workload};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn cfg(addr: String, clients: usize, connections: usize, workload: Workload) -> RunConfig {
        RunConfig {
            target: Target {
                kind: TargetKind::Resp,
                addrs: vec![addr],
            },
            clients,
            connections,
            keys: 50,
            value_size: 16,
            workload,
            read_ratio: if workload == Workload::Get { 1.0 } else { 0.0 },
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
            preload: false,
            label: "fake".into(),
            json_out: None,
            seed: 1,
            threads: 1,
        }
    }

    /// A tiny in-memory RESP server: answers SET and GET in order, however
    /// many requests a read brings (so pipelining is exercised). Returns
    /// its address and the largest number of requests seen in one read.
    async fn fake_redis() -> (
        String,
        Arc<AtomicU64>,
        Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let max_batch = Arc::new(AtomicU64::new(0));
        let store: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
        let (mb, st) = (max_batch.clone(), store.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (mb, st) = (mb.clone(), st.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let mut out = Vec::new();
                        let mut batch = 0;
                        while let Some((crate::resp::Reply::Array(Some(args)), used)) =
                            crate::resp::parse(&buf).unwrap()
                        {
                            buf.drain(..used);
                            batch += 1;
                            let arg = |i: usize| match &args[i] {
                                crate::resp::Reply::Bulk(Some(b)) => b.clone(),
                                other => panic!("{other:?}"),
                            };
                            match arg(0).as_slice() {
                                b"SET" => {
                                    st.lock().unwrap().insert(arg(1), arg(2));
                                    out.extend_from_slice(b"+OK\r\n");
                                }
                                b"GET" => match st.lock().unwrap().get(&arg(1)) {
                                    Some(v) => {
                                        out.extend_from_slice(
                                            format!("${}\r\n", v.len()).as_bytes(),
                                        );
                                        out.extend_from_slice(v);
                                        out.extend_from_slice(b"\r\n");
                                    }
                                    None => out.extend_from_slice(b"$-1\r\n"),
                                },
                                _ => out.extend_from_slice(b"-ERR unknown\r\n"),
                            }
                        }
                        mb.fetch_max(batch, Ordering::Relaxed);
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, max_batch, store)
    }

    #[tokio::test]
    async fn shared_connections_pipeline_without_errors() {
        let (addr, max_batch, store) = fake_redis().await;
        let out = run(cfg(addr, 32, 2, Workload::Set)).await.unwrap();
        let r = out.record;
        assert!(r.ops > 100, "{r:?}");
        assert_eq!(r.errors, 0, "{:?}", out.first_error);
        assert!(r.p50_us > 0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
        assert!(
            r.duration_s >= 0.3 && r.duration_s < 1.0,
            "{}",
            r.duration_s
        );
        // 16 clients per connection: the server saw several requests per read.
        assert!(max_batch.load(Ordering::Relaxed) > 1);
        // Every value stored is one client's fixed 16 printable bytes.
        let s = store.lock().unwrap();
        assert!(!s.is_empty() && s.len() <= 50);
        assert!(s
            .values()
            .all(|v| v.len() == 16 && v.iter().all(u8::is_ascii_alphanumeric)));
    }

    #[tokio::test]
    async fn preload_makes_every_read_hit() {
        let (addr, _, store) = fake_redis().await;
        let mut c = cfg(addr, 4, 4, Workload::Get);
        c.preload = true;
        let out = run(c).await.unwrap();
        assert_eq!(store.lock().unwrap().len(), 50, "every key written once");
        assert!(out.record.ops > 0);
        assert_eq!(out.record.misses, 0);
        assert_eq!(out.record.errors, 0);
    }

    #[tokio::test]
    async fn reads_without_preload_count_misses() {
        let (addr, _, _) = fake_redis().await;
        let out = run(cfg(addr, 2, 1, Workload::Get)).await.unwrap();
        assert!(out.record.ops > 0);
        assert_eq!(out.record.misses, out.record.ops);
    }

    #[tokio::test]
    async fn a_silent_server_gives_timeouts_and_the_run_still_ends() {
        // Accepts and reads, never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 {
                            return;
                        }
                    }
                });
            }
        });
        let c = cfg(addr, 4, 2, Workload::Set);
        let limit = c.warmup + c.duration + c.timeout + Duration::from_secs(1);
        let started = Instant::now();
        let out = run(c).await.unwrap();
        assert!(started.elapsed() < limit, "{:?}", started.elapsed());
        assert_eq!(out.record.ops, 0);
        assert!(out.record.errors > 0);
        assert_eq!(
            out.record.error_kinds.keys().collect::<Vec<_>>(),
            vec!["timeout"]
        );
    }

    #[tokio::test]
    async fn refused_connections_are_counted_not_fatal() {
        // Bind then drop, so the port is (almost certainly) closed.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let out = run(cfg(addr, 3, 3, Workload::Set)).await.unwrap();
        assert_eq!(out.record.ops, 0);
        assert!(out.record.errors > 0);
        assert!(out.record.error_kinds.contains_key("connect"));
        // The 100 ms back-off keeps a refused port from being hammered.
        assert!(out.record.errors <= 3 * 5, "{}", out.record.errors);
        assert!(
            out.first_error["connect"].contains("refused"),
            "{:?}",
            out.first_error
        );
    }

    /// Answers every request with the same bytes.
    async fn canned(reply: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut b = [0u8; 4096];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&b[..n]);
                        let mut out = Vec::new();
                        while let Some((_, used)) = crate::resp::parse(&buf).unwrap() {
                            buf.drain(..used);
                            out.extend_from_slice(reply);
                        }
                        let _ = s.write_all(&out).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn error_replies_are_counted() {
        let addr = canned(b"-ERR no leader\r\n").await;
        let out = run(cfg(addr, 2, 1, Workload::Set)).await.unwrap();
        assert_eq!(out.record.ops, 0);
        assert!(out.record.error_kinds["reply"] > 0);
        assert_eq!(out.first_error["reply"], "error reply: ERR no leader");
    }

    #[tokio::test]
    async fn answers_of_the_wrong_kind_are_caught() {
        // A SET answered with a bulk string: the answers belong to other requests.
        let addr = canned(b"$1\r\nx\r\n").await;
        let out = run(cfg(addr, 4, 1, Workload::Set)).await.unwrap();
        assert_eq!(out.record.ops, 0);
        assert!(out.record.error_kinds["protocol"] > 0);
        assert!(
            out.first_error["protocol"].contains("out of order"),
            "{:?}",
            out.first_error
        );
        // ...while the same answer to a GET is a hit.
        let addr = canned(b"$1\r\nx\r\n").await;
        let out = run(cfg(addr, 4, 1, Workload::Get)).await.unwrap();
        assert!(out.record.ops > 0);
        assert_eq!((out.record.errors, out.record.misses), (0, 0));
    }
}
