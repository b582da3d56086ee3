//! End-to-end: real node processes, real TCP, a stock Redis client.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};
use synod_integration_tests::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_synod-test-node");

fn start(config: &str) -> Result<Cluster> {
    let c = Cluster::start(config, BIN)?;
    let first = c.replicas()[0].clone();
    if let Err(e) = c.wait_ready(&first) {
        for id in c.nodes.keys() {
            eprintln!("--- {id} ---\n{}", c.log(id));
        }
        return Err(e);
    }
    Ok(c)
}

#[test]
fn set_through_one_node_get_through_another() -> Result<()> {
    let c = start("local-3.toml")?;
    c.set("n1", "a", "1")?;
    assert_eq!(c.get("n2", "a")?.as_deref(), Some("1"));
    assert_eq!(c.get("n3", "a")?.as_deref(), Some("1"));
    let mut n3 = c.client("n3")?;
    let deleted: i64 = redis::cmd("DEL").arg("a").arg("missing").query(&mut n3)?;
    assert_eq!(deleted, 1);
    assert_eq!(c.get("n1", "a")?, None);
    Ok(())
}

/// A stock client's pipeline through a follower: every command answered in
/// order, every replica applies all of it, and it fills a handful of log
/// slots, not one per command.
#[test]
fn a_pipeline_is_answered_in_order_and_takes_few_slots() -> Result<()> {
    let c = start("local-3.toml")?;
    let slot = |id: &str| -> Result<u64> { Ok(c.status(id)?["applied"].parse()?) };
    let before = slot("n2")?;
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("p").arg("0");
    for _ in 0..100 {
        pipe.cmd("INCR").arg("p");
    }
    pipe.cmd("GET")
        .arg("p")
        .cmd("DEL")
        .arg("p")
        .cmd("GET")
        .arg("p");
    let (set, incrs, got, deleted, gone): (String, Vec<i64>, String, i64, Option<String>) = {
        let mut n2 = c.client("n2")?;
        let replies: Vec<redis::Value> = pipe.query(&mut n2)?;
        let mut it = replies.into_iter();
        let set = redis::from_redis_value(&it.next().unwrap_or(redis::Value::Nil))?;
        let incrs = it
            .by_ref()
            .take(100)
            .map(|v| redis::from_redis_value(&v))
            .collect::<Result<_, _>>()?;
        let rest: Vec<redis::Value> = it.collect();
        let [got, deleted, gone] = rest.as_slice() else {
            bail!("{} replies after the INCRs, not 3", rest.len());
        };
        (
            set,
            incrs,
            redis::from_redis_value(got)?,
            redis::from_redis_value(deleted)?,
            redis::from_redis_value(gone)?,
        )
    };
    assert_eq!(set, "OK");
    assert_eq!(incrs, (1..=100).collect::<Vec<i64>>());
    assert_eq!((got.as_str(), deleted, gone), ("100", 1, None));
    let used = slot("n2")? - before;
    assert!(used <= 10, "a pipeline of 104 commands took {used} slots");

    // Reads only: the whole pipeline takes the read-index path, no slot.
    c.set("n1", "r", "v")?;
    // n3 may apply that SET a moment after n1 acknowledged it.
    let before = Cluster::eventually(Duration::from_secs(10), || {
        let (n1, n3) = (slot("n1")?, slot("n3")?);
        if n1 == n3 {
            Ok(n3)
        } else {
            bail!("n3 at slot {n3}, n1 at {n1}")
        }
    })?;
    let mut reads = redis::pipe();
    for _ in 0..50 {
        reads.cmd("GET").arg("r").cmd("EXISTS").arg("r").arg("nope");
    }
    let mut n3 = c.client("n3")?;
    let answers: Vec<(String, i64)> = reads
        .query::<Vec<redis::Value>>(&mut n3)?
        .chunks(2)
        .map(|p| {
            Ok((
                redis::from_redis_value(&p[0])?,
                redis::from_redis_value(&p[1])?,
            ))
        })
        .collect::<Result<_>>()?;
    assert_eq!(answers, vec![("v".to_string(), 1); 50]);
    assert_eq!(
        slot("n3")?,
        before,
        "a pipeline of reads went through the log"
    );
    c.set("n2", "marker", "1")?;
    Cluster::eventually(Duration::from_secs(10), || {
        let digests: Vec<_> = c
            .replicas()
            .iter()
            .map(|id| {
                c.status(id)
                    .map(|s| (s["applied"].clone(), s["digest"].clone()))
            })
            .collect::<Result<_>>()?;
        if digests.windows(2).all(|w| w[0] == w[1]) {
            Ok(())
        } else {
            bail!("replicas differ: {digests:?}")
        }
    })
}

/// Kills the leader's process with SIGKILL while writes are acknowledged,
/// then checks failover time, that no acknowledged write is lost, and that
/// the restarted node catches up.
#[test]
fn leader_kill_failover_and_restart_catch_up() -> Result<()> {
    let mut c = start("local-3.toml")?;
    for i in 0..40 {
        c.set(
            ["n1", "n2", "n3"][i % 3],
            &format!("k{i}"),
            &format!("v{i}"),
        )?;
    }
    let leader = Cluster::eventually(Duration::from_secs(5), || {
        let s = c.status("n1")?;
        match s.get("leader").filter(|l| !l.is_empty()) {
            Some(l) => Ok(l.clone()),
            None => bail!("no leader hint yet"),
        }
    })?;
    c.kill(&leader)?;
    let killed_at = Instant::now();
    let survivor = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap_or("n1");
    Cluster::eventually(Duration::from_secs(10), || {
        c.set(survivor, "after", "failover")
    })?;
    let failover = killed_at.elapsed();
    eprintln!("failover: first acknowledged write {failover:?} after SIGKILL of leader {leader}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    for i in 0..40 {
        assert_eq!(
            c.get(survivor, &format!("k{i}"))?,
            Some(format!("v{i}")),
            "acknowledged write k{i} lost"
        );
    }
    // More writes while the old leader is down, then bring it back.
    for i in 40..60 {
        c.set(survivor, &format!("k{i}"), &format!("v{i}"))?;
    }
    c.start_node(&leader)?;
    let applied = |id: &str| -> Result<u64> {
        Ok(c.status(id)?
            .get("applied")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0))
    };
    let want = applied(survivor)?;
    Cluster::eventually(Duration::from_secs(20), || {
        let got = applied(&leader)?;
        if got >= want && c.get(&leader, "k59")?.as_deref() == Some("v59") {
            Ok(())
        } else {
            bail!("restarted node behind: applied {got} < {want}")
        }
    })?;
    assert_eq!(c.get(&leader, "k0")?.as_deref(), Some("v0"));
    Ok(())
}

/// Acceptors never forget: with every process killed at once and
/// restarted, all acknowledged writes are still there.
#[test]
fn whole_cluster_restart_keeps_acknowledged_writes() -> Result<()> {
    let mut c = start("local-3.toml")?;
    for i in 0..20 {
        c.set("n2", &format!("d{i}"), &format!("{i}"))?;
    }
    for id in ["n1", "n2", "n3"] {
        c.kill(id)?;
    }
    for id in ["n1", "n2", "n3"] {
        c.start_node(id)?;
    }
    c.wait_ready("n3")?;
    for i in 0..20 {
        assert_eq!(c.get("n1", &format!("d{i}"))?, Some(format!("{i}")));
    }
    Ok(())
}

#[test]
fn split_roles_cluster_serves_reads_and_writes() -> Result<()> {
    let mut c = start("split-roles.toml")?;
    c.set("r1", "x", "from-r1")?;
    assert_eq!(c.get("r2", "x")?.as_deref(), Some("from-r1"));
    // A proposer dies: the other one takes over.
    let leader = c.status("r1")?.get("leader").cloned().unwrap_or_default();
    if leader.starts_with('p') {
        c.kill(&leader)?;
        Cluster::eventually(Duration::from_secs(10), || c.set("r2", "y", "after"))?;
        assert_eq!(c.get("r1", "y")?.as_deref(), Some("after"));
    } else {
        bail!("leader hint {leader:?} is not a proposer node");
    }
    // r1 hears decisions from l1 only (its home learner). With l1 dead it
    // must notice the silence and poll l2, still answering its clients.
    c.kill("l1")?;
    let started = std::time::Instant::now();
    for i in 0..20 {
        c.set("r1", &format!("z{i}"), &format!("{i}"))?;
    }
    assert_eq!(c.get("r2", "z19")?.as_deref(), Some("19"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "20 writes through r1 without its learner took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn bad_configs_exit_with_code_2_and_one_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let good =
        std::fs::read_to_string(synod_integration_tests::repo_root().join("configs/local-3.toml"))?;
    let cases = [
        (
            "dup-addr.toml",
            good.replace("127.0.0.1:7102", "127.0.0.1:7101"),
            "used twice",
        ),
        (
            "two-acceptors.toml",
            good.replacen(
                "roles = [\"proposer\", \"acceptor\", \"learner\", \"replica\"]",
                "roles = [\"proposer\"]",
                1,
            ),
            "at least 3",
        ),
        (
            "garbage.toml",
            "cluster_id = [".to_string(),
            "invalid config",
        ),
    ];
    for (name, text, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        let out = std::process::Command::new(BIN)
            .args(["node", "--config"])
            .arg(&path)
            .args(["--id", "n1"])
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
    }
    let out = std::process::Command::new(BIN)
        .args(["node", "--config"])
        .arg(synod_integration_tests::repo_root().join("configs/local-3.toml"))
        .args(["--id", "n9"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown node id"));
    let out = std::process::Command::new(BIN)
        .args(["node", "--config", "/nonexistent.toml", "--id", "n1"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config"));
    Ok(())
}
