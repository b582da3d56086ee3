//! Client workers: each a thread with a blocking RESP connection to a
//! random replica, issuing random read / write / cas / delete ops on a small
//! key set. An op that times out or loses its connection after being sent
//! is `info` (indeterminate) and the worker continues as a fresh process
//! (Jepsen's rule: a process has at most one open op). Reads that fail are
//! `fail`: a read has no effect either way.

use crate::cluster;
use crate::history::{Event, Outcome, Recorder, Type, F};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Shared {
    pub recorder: Recorder,
    pub next_op: AtomicU64,
    pub stop: AtomicBool,
    /// Machines with a replica (clients connect there).
    pub nodes: Vec<usize>,
    pub workers: u64,
    pub keys: Vec<String>,
    pub op_timeout: Duration,
    pub seed: u64,
    /// Each worker pauses up to this long between ops, which keeps the
    /// history small enough to check (the search grows with concurrency).
    pub think: Duration,
    /// Ops issued in the whole run, at most: the checker holds the history
    /// in memory, and a long run at full speed (3 million ops in 300 s of
    /// the split layout) outgrew this machine's 24 GiB.
    pub max_ops: u64,
}

enum Reply {
    Ok(Outcome),
    /// The server answered with an error.
    Error(String),
    /// Timeout, reset, closed: we cannot know.
    Lost(String),
}

fn classify(r: redis::RedisResult<Outcome>) -> Reply {
    match r {
        Ok(o) => Reply::Ok(o),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
            Reply::Lost(e.to_string())
        }
        Err(e) => Reply::Error(e.to_string()),
    }
}

pub fn worker(idx: u64, sh: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(sh.seed ^ (idx + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut process = idx;
    let mut con: Option<redis::Connection> = None;
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    let mut counter = 0u64;
    while !sh.stop.load(Ordering::SeqCst) && !crate::signal::stopped() {
        let Some(c) = con.as_mut() else {
            let node = sh.nodes[rng.gen_range(0..sh.nodes.len())];
            con = cluster::connect(node, sh.op_timeout);
            if con.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        };
        if !sh.think.is_zero() {
            std::thread::sleep(sh.think.mul_f64(rng.gen_range(0.0..1.0)));
        }
        let key = sh.keys[rng.gen_range(0..sh.keys.len())].clone();
        let last = seen.get(&key).cloned().flatten();
        let roll = rng.gen_range(0..100);
        let f = match roll {
            0..=39 => F::Read,
            40..=64 => F::Write,
            65..=89 if last.is_some() => F::Cas,
            65..=89 => F::Write,
            _ => F::Delete,
        };
        counter += 1;
        let fresh = format!("p{process}-{counter}");
        let (value, expected) = match f {
            F::Write => (Some(fresh.clone()), None),
            F::Cas => (Some(fresh.clone()), last.clone()),
            _ => (None, None),
        };
        let op_id = sh.next_op.fetch_add(1, Ordering::SeqCst);
        if op_id >= sh.max_ops {
            // The budget is spent: this worker stops; the nemesis and the
            // final checks run on.
            break;
        }
        let base = Event {
            process,
            op_id,
            ty: Type::Invoke,
            f,
            key: key.clone(),
            value: value.clone(),
            expected: expected.clone(),
            result: None,
            error: None,
            time_ns: 0,
        };
        sh.recorder.record(base.clone());
        let reply = classify(match f {
            F::Read => redis::cmd("GET")
                .arg(&key)
                .query::<Option<String>>(c)
                .map(Outcome::Read),
            F::Write => redis::cmd("SET")
                .arg(&key)
                .arg(&fresh)
                .query::<redis::Value>(c)
                .map(|_| Outcome::Written),
            F::Cas => redis::cmd("CAS")
                .arg(&key)
                .arg(expected.as_deref().unwrap_or(""))
                .arg(&fresh)
                .query::<i64>(c)
                .map(|n| Outcome::Swapped(n == 1)),
            F::Delete => redis::cmd("DEL")
                .arg(&key)
                .query::<u64>(c)
                .map(Outcome::Deleted),
        });
        let mut done = base;
        match reply {
            Reply::Ok(out) => {
                match &out {
                    Outcome::Read(v) => {
                        done.value = v.clone();
                        seen.insert(key, v.clone());
                    }
                    Outcome::Written | Outcome::Swapped(true) => {
                        seen.insert(key, Some(fresh));
                    }
                    Outcome::Deleted(_) => {
                        seen.insert(key, None);
                    }
                    Outcome::Swapped(false) => {
                        seen.remove(&key);
                    }
                }
                done.ty = Type::Ok;
                done.result = Some(out);
                sh.recorder.record(done);
            }
            Reply::Error(e) | Reply::Lost(e) if f == F::Read => {
                done.ty = Type::Fail;
                done.value = None;
                done.error = Some(e);
                sh.recorder.record(done);
                con = None;
            }
            // Synod's errors (timeout, replica dropped the request, could
            // not apply) do not prove the command never reached the log, so
            // every failed mutation is indeterminate.
            Reply::Error(e) | Reply::Lost(e) => {
                done.ty = Type::Info;
                done.error = Some(e);
                sh.recorder.record(done);
                process += sh.workers;
                con = None;
            }
        }
    }
}
