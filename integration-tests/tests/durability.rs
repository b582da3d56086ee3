//! Durability end to end: snapshot catch-up past compacted logs, SIGKILL of
//! every node during writes, torn and corrupted acceptor logs. Real node
//! processes; figures are printed with `--nocapture`.
//!
//! Set `SYNOD_TEST_KEEP=1` to keep each test's temp dir (config, data, logs).

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use synod_integration_tests::{connect, read_acceptor_log, AcceptorLog, Cluster};

const BIN: &str = env!("CARGO_BIN_EXE_synod-test-node");
const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn dump_logs(c: &Cluster) {
    for id in c.nodes.keys() {
        eprintln!("--- {id} ---\n{}", c.log(id));
    }
}

fn start(settings: &[(&str, &str)]) -> Result<Cluster> {
    let c = Cluster::start_with("local-3.toml", BIN, settings, &[])?;
    if let Err(e) = c.wait_ready("n1") {
        dump_logs(&c);
        return Err(e);
    }
    Ok(c)
}

fn num(s: &BTreeMap<String, String>, key: &str) -> Result<u64> {
    s.get(key)
        .ok_or_else(|| anyhow!("status has no {key}: {s:?}"))?
        .parse()
        .with_context(|| format!("status {key}: {s:?}"))
}

/// `(applied, snapshot, digest)` of a replica.
fn progress(c: &Cluster, id: &str) -> Result<(u64, u64, String)> {
    let s = c.status(id)?;
    Ok((
        num(&s, "applied")?,
        num(&s, "snapshot")?,
        s["digest"].clone(),
    ))
}

/// Polls until every replica in `ids` reports the same applied slot and
/// digest; returns the common `(applied, digest)`.
fn converged(c: &Cluster, ids: &[&str], limit: Duration) -> Result<(u64, String)> {
    Cluster::eventually(limit, || {
        let all = ids
            .iter()
            .map(|id| progress(c, id).map(|p| (*id, p)))
            .collect::<Result<Vec<_>>>()?;
        let (_, (applied, _, digest)) = &all[0];
        if all.iter().all(|(_, (a, _, d))| a == applied && d == digest) {
            Ok((*applied, digest.clone()))
        } else {
            bail!("replicas differ: {all:?}")
        }
    })
}

/// Writes `keys` (key = value) with `writers` connections in parallel,
/// spread over `via`; every write must be acknowledged (a failed one is
/// retried a few times with the same value, which is idempotent).
fn write_all(c: &Cluster, via: &[&str], keys: &[String], writers: usize) -> Result<()> {
    let ports: Vec<u16> = via
        .iter()
        .map(|id| c.client_port(id).ok_or_else(|| anyhow!("{id}: no port")))
        .collect::<Result<_>>()?;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let port = ports[w % ports.len()];
                s.spawn(move || -> Result<()> {
                    let mut conn = None;
                    for key in keys.iter().skip(w).step_by(writers) {
                        let mut tries = 0;
                        loop {
                            tries += 1;
                            let r = (|| -> Result<()> {
                                if conn.is_none() {
                                    conn = Some(connect(port, Duration::from_secs(8))?);
                                }
                                let conn = conn.as_mut().ok_or_else(|| anyhow!("no conn"))?;
                                let r: String = redis::cmd("SET").arg(key).arg(key).query(conn)?;
                                ensure!(r == "OK", "SET answered {r}");
                                Ok(())
                            })();
                            match r {
                                Ok(()) => break,
                                Err(e) if tries >= 5 => {
                                    return Err(e.context(format!("SET {key} via :{port}")))
                                }
                                Err(_) => {
                                    conn = None; // a late reply must not be read as the next one
                                    std::thread::sleep(Duration::from_millis(100));
                                }
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("writer panicked"))?)
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(())
}

/// A replica that was down while the log moved far past several compaction
/// points can only catch up through a peer's snapshot: its peers' acceptors
/// (and learners) forgot the slots it missed.
#[test]
fn lagging_replica_catches_up_through_a_snapshot() -> Result<()> {
    // Enough slots for the acceptors to rewrite their logs too: they do so
    // once 4096 records more than the live ones pile up. One command per
    // slot makes every write a slot of its own (batching would pack them
    // into fewer).
    const WRITES: usize = 5000;
    const EVERY: u64 = 100;
    let mut c = start(&[("limits.snapshot_every", "100"), ("limits.max_batch", "1")])?;
    let (n3_applied, _, _) = progress(&c, "n3")?;
    c.kill("n3")?;

    let keys: Vec<String> = (0..WRITES).map(|i| format!("k{i:05}")).collect();
    let t = Instant::now();
    write_all(&c, &["n1", "n2"], &keys, 4)?;
    let took = t.elapsed();
    eprintln!(
        "wrote {WRITES} keys through n1/n2 in {took:?} ({:.0} writes/s) while n3 was down",
        WRITES as f64 / took.as_secs_f64()
    );

    let (a1, s1, _) = progress(&c, "n1")?;
    let (a2, s2, _) = progress(&c, "n2")?;
    eprintln!(
        "n1 applied {a1} snapshot {s1}; n2 applied {a2} snapshot {s2}; n3 stopped at {n3_applied}"
    );
    ensure!(s1 > 0 && s2 > 0, "no snapshots: n1 {s1}, n2 {s2}");
    ensure!(
        a1 >= n3_applied + 10 * EVERY,
        "only {a1} slots applied for {WRITES} writes"
    );

    // Compaction reached the acceptors of n1 and n2, far above where n3
    // stopped, and their logs were rewritten without the slots n3 missed
    // (n3's own acceptor never saw them): no log can serve them any more.
    let logs = Cluster::eventually(Duration::from_secs(10), || {
        let logs = ["n1", "n2"]
            .iter()
            .map(|id| read_acceptor_log(&c.acceptor_log(id)))
            .collect::<Result<Vec<AcceptorLog>>>()?;
        for (id, l) in ["n1", "n2"].iter().zip(&logs) {
            ensure!(
                l.compacted_below() >= n3_applied + 5 * EVERY,
                "{id}: acceptor log compacted below {} only",
                l.compacted_below()
            );
            ensure!(
                l.lowest_accepted_slot().unwrap_or(u64::MAX) > n3_applied + EVERY,
                "{id}: acceptor log still holds slot {:?}",
                l.lowest_accepted_slot()
            );
        }
        Ok(logs)
    })?;
    for (id, l) in ["n1", "n2"].iter().zip(&logs) {
        let accept_bytes: u64 = l
            .records
            .iter()
            .filter(|r| r.tag == 1)
            .map(|r| 8 + u64::from(r.len))
            .sum();
        eprintln!(
            "{id}: acceptor.log {} bytes, {} records ({} accepts, ~{} bytes each), \
             compacted below {}, lowest accepted slot {:?}",
            l.intact_len,
            l.records.len(),
            l.accepts(),
            accept_bytes / l.accepts().max(1) as u64,
            l.compacted_below(),
            l.lowest_accepted_slot()
        );
        // An accept record of these writes takes ~45 bytes: the full
        // history would not fit in half of WRITES * 40.
        ensure!(
            l.intact_len < WRITES as u64 * 40 / 2,
            "{id}: acceptor.log holds {} bytes of records after {WRITES} writes: never rewritten?",
            l.intact_len
        );
    }

    c.start_node("n3")?;
    let t = Instant::now();
    let (applied, digest) = match converged(&c, &NODES, Duration::from_secs(30)) {
        Ok(v) => v,
        Err(e) => {
            dump_logs(&c);
            return Err(e);
        }
    };
    let catch_up = t.elapsed();
    eprintln!("n3 caught up to slot {applied} (digest {digest}) {catch_up:?} after restart");
    ensure!(
        applied >= a1.max(a2),
        "converged at {applied} < {}",
        a1.max(a2)
    );
    let (_, s3, _) = progress(&c, "n3")?;
    eprintln!("n3 snapshot slot after catch-up: {s3}");
    for key in [&keys[0], &keys[WRITES / 2], &keys[WRITES - 1]] {
        assert_eq!(
            c.get("n3", key)?.as_deref(),
            Some(key.as_str()),
            "GET {key} via n3"
        );
    }
    Ok(())
}

/// xorshift64*: deterministic from a printed seed (`SYNOD_TEST_SEED`
/// replays one).
struct Rng(u64);

impl Rng {
    fn from_clock() -> (Rng, u64) {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let seed = std::env::var("SYNOD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(clock)
            .max(1);
        (Rng(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Between `lo` and `hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }

    fn shuffled(&mut self) -> Vec<&'static str> {
        let mut v = NODES.to_vec();
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
        v
    }
}

/// One writer: unique keys through `ports[first]`, moving to the next node
/// after any error; returns every acknowledged `(key, value)`. Any error or
/// timeout leaves the write unacknowledged (it may or may not be applied),
/// and drops the connection so a late reply is never taken for the next.
fn writer(
    w: usize,
    ports: Vec<u16>,
    seed: u64,
    until: Instant,
    acked: Arc<AtomicUsize>,
) -> (Vec<(String, String)>, usize) {
    let mut out = Vec::new();
    let mut failed = 0;
    let mut conn: Option<redis::Connection> = None;
    let mut node = w;
    for i in 0..1_000_000usize {
        if Instant::now() >= until {
            break;
        }
        let key = format!("w{w}-{i:06}");
        let value = format!("{seed:x}-{w}-{i}");
        let r = (|| -> Result<()> {
            if conn.is_none() {
                conn = Some(connect(ports[node % ports.len()], Duration::from_secs(2))?);
            }
            let conn = conn.as_mut().ok_or_else(|| anyhow!("no connection"))?;
            let r: String = redis::cmd("SET").arg(&key).arg(&value).query(conn)?;
            ensure!(r == "OK", "SET answered {r}");
            Ok(())
        })();
        match r {
            Ok(()) => {
                out.push((key, value));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                failed += 1;
                conn = None;
                node += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    (out, failed)
}

/// SIGKILLs nodes at random moments during writes (once all three close
/// together), restarts them, and checks that no acknowledged write is lost
/// and the replicas converge.
#[test]
fn kill_all_nodes_during_writes_keeps_every_acknowledged_write() -> Result<()> {
    const WRITING: Duration = Duration::from_secs(4);
    let mut c = start(&[])?;
    let (mut rng, seed) = Rng::from_clock();
    eprintln!("seed {seed} (replay with SYNOD_TEST_SEED={seed})");
    let ports: Vec<u16> = NODES
        .iter()
        .map(|id| c.client_port(id).ok_or_else(|| anyhow!("{id}: no port")))
        .collect::<Result<_>>()?;
    let began = Instant::now();
    let until = began + WRITING;
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (ports, acked) = (ports.clone(), acked.clone());
            std::thread::spawn(move || writer(w, ports, seed, until, acked))
        })
        .collect();

    let mut kills = 0;
    let mut acked_before_all_killed = 0;
    let mut schedule = Vec::new();
    let at = |began: Instant| began.elapsed().as_millis();
    // Round 1: one node.
    std::thread::sleep(rng.ms(300, 900));
    let victim = NODES[rng.below(3) as usize];
    c.kill(victim)?;
    kills += 1;
    schedule.push(format!("{}ms kill {victim}", at(began)));
    std::thread::sleep(rng.ms(200, 600));
    c.start_node(victim)?;
    schedule.push(format!("{}ms start {victim}", at(began)));
    // Round 2: all three within a few tens of milliseconds.
    std::thread::sleep(rng.ms(300, 700));
    acked_before_all_killed = acked_before_all_killed.max(acked.load(Ordering::Relaxed));
    for id in rng.shuffled() {
        c.kill(id)?;
        kills += 1;
        schedule.push(format!("{}ms kill {id}", at(began)));
        std::thread::sleep(rng.ms(0, 30));
    }
    std::thread::sleep(rng.ms(100, 500));
    for id in rng.shuffled() {
        c.start_node(id)?;
        schedule.push(format!("{}ms start {id}", at(began)));
    }
    // Round 3: one node again, if there is time left.
    std::thread::sleep(rng.ms(300, 600));
    if began.elapsed() + Duration::from_millis(500) < WRITING {
        let victim = NODES[rng.below(3) as usize];
        c.kill(victim)?;
        kills += 1;
        schedule.push(format!("{}ms kill {victim}", at(began)));
        std::thread::sleep(rng.ms(100, 400));
        c.start_node(victim)?;
        schedule.push(format!("{}ms start {victim}", at(began)));
    }

    let mut all = Vec::new();
    let mut failed = 0;
    for h in writers {
        let (ok, bad) = h.join().map_err(|_| anyhow!("writer panicked"))?;
        all.extend(ok);
        failed += bad;
    }
    eprintln!("schedule: {}", schedule.join(", "));
    eprintln!(
        "{kills} kills; {} writes acknowledged ({acked_before_all_killed} before all nodes \
         were killed), {failed} failed or timed out, in {:?}",
        all.len(),
        began.elapsed()
    );
    ensure!(
        acked_before_all_killed > 0,
        "no write acknowledged before the whole-cluster kill"
    );

    let ready = match c.wait_ready("n1") {
        Ok(d) => d,
        Err(e) => {
            dump_logs(&c);
            return Err(e);
        }
    };
    eprintln!("cluster writable again {ready:?} after the writers stopped");
    let t = Instant::now();
    let mut lost = Vec::new();
    for (n, chunk) in all.chunks(200).enumerate() {
        let id = NODES[n % 3];
        let got: Vec<Option<String>> = Cluster::eventually(Duration::from_secs(10), || {
            let mut conn = c.client(id)?;
            let mut cmd = redis::cmd("MGET");
            for (k, _) in chunk {
                cmd.arg(k);
            }
            Ok(cmd.query(&mut conn)?)
        })?;
        for ((k, v), g) in chunk.iter().zip(got) {
            if g.as_deref() != Some(v.as_str()) {
                lost.push(format!("{k}: want {v}, got {g:?} via {id}"));
            }
        }
    }
    eprintln!(
        "read back {} acknowledged writes in {:?}",
        all.len(),
        t.elapsed()
    );
    if !lost.is_empty() {
        dump_logs(&c);
        bail!(
            "{} acknowledged writes lost (seed {seed}): {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        );
    }
    let t = Instant::now();
    let (applied, digest) = converged(&c, &NODES, Duration::from_secs(30))?;
    eprintln!(
        "replicas converged at slot {applied}, digest {digest}, {:?}",
        t.elapsed()
    );
    Ok(())
}

/// Writes `n` keys `{prefix}{i}` = `v{i}` through n1, each acknowledged.
fn write_keys(c: &Cluster, prefix: &str, n: usize) -> Result<()> {
    for i in 0..n {
        c.set(
            ["n1", "n2", "n3"][i % 3],
            &format!("{prefix}{i}"),
            &format!("v{i}"),
        )?;
    }
    Ok(())
}

fn check_keys(c: &Cluster, via: &str, prefix: &str, n: usize) -> Result<()> {
    for i in 0..n {
        let key = format!("{prefix}{i}");
        let got = Cluster::eventually(Duration::from_secs(10), || c.get(via, &key))?;
        ensure!(
            got.as_deref() == Some(format!("v{i}").as_str()),
            "{key} via {via}: {got:?}"
        );
    }
    Ok(())
}

/// A crash can tear the last record of acceptor.log: a node must cut it
/// off and start, and acknowledged writes (on a majority) survive. Only a
/// record that was never synced can be torn, and an acceptor answers only
/// after its sync, so the torn records here come after every synced one:
/// damaging a synced record would be an acceptor forgetting a vote, which
/// Paxos does not survive (with thrifty phase 2 a chosen value may be on
/// no more than a bare majority).
#[test]
fn torn_tail_is_discarded_and_acknowledged_writes_survive() -> Result<()> {
    let mut c = start(&[])?;
    write_keys(&c, "t", 30)?;
    for id in NODES {
        c.kill(id)?;
    }
    // n1: a record header claiming 100 bytes, and only 10 bytes after it.
    let p1 = c.acceptor_log("n1");
    let before1 = read_acceptor_log(&p1)?;
    ensure!(before1.is_clean(), "n1 log not clean");
    let mut garbage = 100u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xA5; 10]);
    {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p1)?
            .write_all(&garbage)?;
    }
    // n2: a record that stopped at a sector boundary: its header and the
    // payload up to the next 512-byte boundary reached the disk, the rest
    // of it (the next sector) did not and still reads as zeros. That is
    // what a torn write looks like when sectors are written whole; a last
    // record written whole but failing its checksum is not torn but
    // damaged, and the node would refuse to start (storage's tests).
    let p2 = c.acceptor_log("n2");
    let before2 = read_acceptor_log(&p2)?;
    let last = before2
        .records
        .last()
        .cloned()
        .ok_or_else(|| anyhow!("n2: empty log"))?;
    let end = last.offset + 8 + u64::from(last.len);
    let boundary = (end + 8) / 512 * 512 + 512;
    let claimed = u32::try_from(boundary - end - 8 + 64)?;
    ensure!(
        boundary + 64 <= before2.file_len,
        "n2: no room after the last record"
    );
    let mut torn = claimed.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0x5A; 4]); // a checksum that cannot match
    torn.resize(usize::try_from(boundary - end)?, 0xA5);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&p2)?;
        f.write_all_at(&torn, end)?;
    }
    eprintln!(
        "n1: {} bytes + {} garbage; n2: {} of a {}-byte record written at {end}",
        before1.file_len,
        garbage.len(),
        torn.len(),
        8 + claimed,
    );

    for id in NODES {
        c.start_node(id)?;
    }
    if let Err(e) = c.wait_ready("n1") {
        dump_logs(&c);
        return Err(e);
    }
    for id in ["n1", "n2"] {
        ensure!(c.is_running(id), "{id} exited:\n{}", c.last_log(id));
        let torn = c
            .last_log(id)
            .lines()
            .filter(|l| l.contains("torn"))
            .map(str::to_string)
            .collect::<Vec<_>>();
        eprintln!("{id} log: {torn:?}");
        ensure!(!torn.is_empty(), "{id} did not report the torn write");
    }
    for (n, id) in NODES.iter().enumerate() {
        check_keys(&c, id, "t", 30).with_context(|| format!("round {n}"))?;
    }
    // The garbage and the half record are gone: both logs are intact from
    // end to end again, and kept every record before the damage.
    for (id, p, kept) in [
        ("n1", &p1, before1.records.len()),
        ("n2", &p2, before2.records.len()),
    ] {
        let after = read_acceptor_log(p)?;
        ensure!(
            after.is_clean(),
            "{id}: log damaged after {}: {} bytes",
            after.intact_len,
            after.damaged
        );
        ensure!(
            after.records.len() >= kept,
            "{id}: {} records < {kept}",
            after.records.len()
        );
    }
    Ok(())
}

/// A bad record with more log after it is corruption of what the acceptor
/// promised: the node must refuse to start, naming the file and offset.
#[test]
fn corruption_inside_the_log_refuses_to_start_with_file_and_offset() -> Result<()> {
    let mut c = start(&[])?;
    write_keys(&c, "c", 30)?;
    for id in NODES {
        c.kill(id)?;
    }
    let path = c.acceptor_log("n1");
    let log = read_acceptor_log(&path)?;
    let first = log
        .records
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("n1: empty log"))?;
    ensure!(
        first.offset == AcceptorLog::HEADER && log.records.len() > 1,
        "unexpected log: {log:?}"
    );
    let at = (first.offset + 8 + 2.min(u64::from(first.len) - 1)) as usize;
    let mut bytes = std::fs::read(&path)?;
    let original = bytes[at];
    bytes[at] ^= 0xFF;
    std::fs::write(&path, &bytes)?;
    eprintln!(
        "flipped byte {at} of n1's acceptor.log ({} bytes, {} records)",
        bytes.len(),
        log.records.len()
    );

    c.start_node("n1")?;
    let t = Instant::now();
    let status = c.wait_exit("n1", Duration::from_secs(15))?;
    let stderr = c.last_log("n1");
    eprintln!(
        "n1 exited with {status} after {:?}: {}",
        t.elapsed(),
        stderr.trim()
    );
    ensure!(!status.success(), "n1 exited successfully: {stderr}");
    ensure!(
        stderr.contains("acceptor.log") && stderr.contains("offset 12"),
        "stderr does not name the file and offset: {stderr}"
    );
    // Its data is untouched by the refused start.
    ensure!(std::fs::read(&path)? == bytes, "n1 rewrote its corrupt log");

    bytes[at] = original;
    std::fs::write(&path, &bytes)?;
    for id in NODES {
        c.start_node(id)?;
    }
    if let Err(e) = c.wait_ready("n1") {
        dump_logs(&c);
        return Err(e);
    }
    check_keys(&c, "n1", "c", 30)?;
    Ok(())
}
