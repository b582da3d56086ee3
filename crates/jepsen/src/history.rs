//! The recorded history. Every event goes, in time order, to two JSON-lines
//! files in the run dir:
//!
//! * `history.jsonl`: flat events, one per line:
//!   `{"process","op_id","type":"invoke|ok|fail|info","f":"read|write|cas|delete",
//!     "key","value","expected","result","time_ns","error"}`
//! * `history.lincheck.jsonl`: the same events in the schema of
//!   `synod-linearizability` (`{"process","id","time_ns","type","op":{..}}` /
//!   `"result":{..}`), readable by `synod-lincheck` as it stands.
//!
//! `time_ns` is from a monotonic clock started with the run. Timestamps are
//! taken under the writer's lock, so the files are ordered by time.

use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Invoke => "invoke",
            Type::Ok => "ok",
            Type::Fail => "fail",
            Type::Info => "info",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum F {
    Read,
    Write,
    Cas,
    Delete,
}

impl F {
    pub const ALL: [F; 4] = [F::Read, F::Write, F::Cas, F::Delete];

    pub fn name(self) -> &'static str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Delete => "delete",
        }
    }
}

/// What an `ok` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Read(Option<String>),
    Written,
    Swapped(bool),
    Deleted(u64),
}

#[derive(Clone, Debug)]
pub struct Event {
    pub process: u64,
    pub op_id: u64,
    pub ty: Type,
    pub f: F,
    pub key: String,
    /// write: the value; cas: the new value; read ok: the value read.
    pub value: Option<String>,
    /// cas: the expected value.
    pub expected: Option<String>,
    pub result: Option<Outcome>,
    pub error: Option<String>,
    pub time_ns: u64,
}

impl Event {
    fn flat(&self) -> Value {
        let result = match &self.result {
            None => Value::Null,
            Some(Outcome::Read(v)) => json!(v),
            Some(Outcome::Written) => json!("OK"),
            Some(Outcome::Swapped(b)) => json!(b),
            Some(Outcome::Deleted(n)) => json!(n),
        };
        let mut v = json!({
            "process": self.process,
            "op_id": self.op_id,
            "type": self.ty.name(),
            "f": self.f.name(),
            "key": self.key,
            "value": self.value,
            "expected": self.expected,
            "result": result,
            "time_ns": self.time_ns,
        });
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }

    /// The `synod-linearizability` schema (see its `history.rs`).
    fn lincheck(&self) -> Value {
        let mut v = json!({
            "process": self.process,
            "id": self.op_id,
            "time_ns": self.time_ns,
            "type": self.ty.name(),
        });
        match self.ty {
            Type::Invoke => {
                v["op"] = match self.f {
                    F::Read => json!({"f": "read", "key": self.key}),
                    F::Write => json!({"f": "write", "key": self.key, "value": self.value}),
                    F::Cas => json!({"f": "cas", "key": self.key,
                        "expected": self.expected, "new": self.value}),
                    F::Delete => json!({"f": "delete", "key": self.key}),
                }
            }
            Type::Ok => {
                v["result"] = match &self.result {
                    Some(Outcome::Read(val)) => json!({"f": "read", "value": val}),
                    Some(Outcome::Swapped(b)) => json!({"f": "cas", "swapped": b}),
                    Some(Outcome::Deleted(n)) => json!({"f": "delete", "deleted": n}),
                    _ => json!({"f": "write"}),
                }
            }
            Type::Fail | Type::Info => {
                if let Some(e) = &self.error {
                    v["error"] = json!(e);
                }
            }
        }
        v
    }
}

struct Inner {
    flat: BufWriter<File>,
    lincheck: BufWriter<File>,
    events: Vec<Event>,
}

pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn create(start: Instant, flat: &Path, lincheck: &Path) -> anyhow::Result<Recorder> {
        Ok(Recorder {
            start,
            inner: Mutex::new(Inner {
                flat: BufWriter::new(File::create(flat)?),
                lincheck: BufWriter::new(File::create(lincheck)?),
                events: Vec::new(),
            }),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Stamps `ev` with the current time and writes it.
    pub fn record(&self, mut ev: Event) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ev.time_ns = self.now_ns();
        let _ = writeln!(inner.flat, "{}", ev.flat());
        let _ = writeln!(inner.lincheck, "{}", ev.lincheck());
        inner.events.push(ev);
    }

    /// Flushes the files and hands back the events.
    pub fn finish(&self) -> Vec<Event> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = inner.flat.flush();
        let _ = inner.lincheck.flush();
        std::mem::take(&mut inner.events)
    }
}

/// An invocation joined with its completion (if any).
#[derive(Clone, Debug)]
pub struct Op {
    pub f: F,
    pub key: String,
    pub value: Option<String>,
    pub invoke_ns: u64,
    /// None: never completed (counts as info).
    pub end: Option<(Type, u64, Option<Outcome>)>,
}

impl Op {
    pub fn ty(&self) -> Type {
        self.end.as_ref().map_or(Type::Info, |e| e.0)
    }

    /// An acknowledged op that changed (or may have changed) the register.
    pub fn ok_mutation(&self) -> bool {
        match (&self.f, &self.end) {
            (F::Write | F::Delete, Some((Type::Ok, _, _))) => true,
            (F::Cas, Some((Type::Ok, _, Some(Outcome::Swapped(s))))) => *s,
            _ => false,
        }
    }

    pub fn end_ns(&self) -> Option<u64> {
        self.end.as_ref().map(|e| e.1)
    }
}

pub fn ops(events: &[Event]) -> Vec<Op> {
    let mut by_id: std::collections::BTreeMap<u64, Op> = Default::default();
    for e in events {
        match e.ty {
            Type::Invoke => {
                by_id.insert(
                    e.op_id,
                    Op {
                        f: e.f,
                        key: e.key.clone(),
                        value: e.value.clone(),
                        invoke_ns: e.time_ns,
                        end: None,
                    },
                );
            }
            ty => {
                if let Some(op) = by_id.get_mut(&e.op_id) {
                    op.end = Some((ty, e.time_ns, e.result.clone()));
                }
            }
        }
    }
    by_id.into_values().collect()
}

/// A quick necessary condition (the full check is the linearizability
/// checker's): the final value of a key must come from a write/cas that was
/// invoked on it (or be absent after some delete, or if nothing was ever
/// written), and must not be a value overwritten by an acknowledged write
/// invoked after the writer was acknowledged. Returns the problems found.
pub fn check_final(ops: &[Op], key: &str, final_value: &Option<String>) -> Vec<String> {
    let on_key: Vec<&Op> = ops.iter().filter(|o| o.key == key).collect();
    let mut problems = Vec::new();
    match final_value {
        Some(v) => {
            let writer = on_key
                .iter()
                .find(|o| matches!(o.f, F::Write | F::Cas) && o.value.as_deref() == Some(v));
            match writer {
                None => problems.push(format!("{key}: final value {v:?} was never written")),
                Some(w) if w.ty() == Type::Fail => problems.push(format!(
                    "{key}: final value {v:?} comes from a write that failed"
                )),
                Some(w) => {
                    if let (Type::Ok, Some(acked)) = (w.ty(), w.end_ns()) {
                        if let Some(later) = on_key
                            .iter()
                            .find(|o| o.ok_mutation() && o.invoke_ns > acked)
                        {
                            problems.push(format!(
                                "{key}: final value {v:?} (acknowledged at {acked} ns) should have been replaced by the acknowledged {} of {:?} invoked at {} ns",
                                later.f.name(),
                                later.value,
                                later.invoke_ns
                            ));
                        }
                    }
                }
            }
        }
        None => {
            // Absent: every acknowledged write must be followed by a delete
            // that may have taken effect after it. A delete whose client
            // timed out (info) may take effect at any time after it was
            // invoked, long after the client gave up: the request may sit
            // in a deposed leader's queue until it forwards it on.
            for w in on_key
                .iter()
                .filter(|o| o.ok_mutation() && matches!(o.f, F::Write | F::Cas))
            {
                let deleted_later = on_key.iter().any(|d| {
                    d.f == F::Delete
                        && match d.ty() {
                            Type::Fail => false,
                            Type::Info => true,
                            _ => !matches!(d.end_ns(), Some(end) if end <= w.invoke_ns),
                        }
                });
                if !deleted_later {
                    problems.push(format!(
                        "{key}: absent at the end, but the acknowledged {} of {:?} (invoked at {} ns) was never followed by a delete",
                        w.f.name(),
                        w.value,
                        w.invoke_ns
                    ));
                    break;
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(f: F, value: Option<&str>, invoke: u64, end: Option<(Type, u64, Option<Outcome>)>) -> Op {
        Op {
            f,
            key: "k".into(),
            value: value.map(str::to_owned),
            invoke_ns: invoke,
            end,
        }
    }

    fn write_ok(v: &str, invoke: u64, end: u64) -> Op {
        op(
            F::Write,
            Some(v),
            invoke,
            Some((Type::Ok, end, Some(Outcome::Written))),
        )
    }

    #[test]
    fn final_value_from_the_last_acknowledged_write_is_consistent() {
        let ops = vec![write_ok("a", 0, 10), write_ok("b", 20, 30)];
        assert!(check_final(&ops, "k", &Some("b".into())).is_empty());
    }

    #[test]
    fn an_overwritten_value_surviving_is_a_lost_write() {
        let ops = vec![write_ok("a", 0, 10), write_ok("b", 20, 30)];
        assert_eq!(check_final(&ops, "k", &Some("a".into())).len(), 1);
    }

    #[test]
    fn concurrent_writes_may_end_in_either_order() {
        let ops = vec![write_ok("a", 0, 30), write_ok("b", 10, 20)];
        assert!(check_final(&ops, "k", &Some("a".into())).is_empty());
        assert!(check_final(&ops, "k", &Some("b".into())).is_empty());
    }

    #[test]
    fn unknown_or_failed_values_are_reported() {
        let failed = op(F::Write, Some("x"), 0, Some((Type::Fail, 5, None)));
        let ops = vec![write_ok("a", 0, 10), failed];
        assert_eq!(check_final(&ops, "k", &Some("zzz".into())).len(), 1);
        assert_eq!(check_final(&ops, "k", &Some("x".into())).len(), 1);
    }

    #[test]
    fn absent_needs_a_delete_after_the_acknowledged_writes() {
        let del = op(F::Delete, None, 40, Some((Type::Info, 50, None)));
        assert_eq!(check_final(&[write_ok("a", 0, 10)], "k", &None).len(), 1);
        assert!(check_final(&[write_ok("a", 0, 10), del.clone()], "k", &None).is_empty());
        assert!(check_final(&[], "k", &None).is_empty());
        // A timed-out delete may land after a write acknowledged later...
        assert!(check_final(&[del, write_ok("a", 60, 70)], "k", &None).is_empty());
        // ...an acknowledged one that finished before the write may not.
        let acked = op(F::Delete, None, 40, Some((Type::Ok, 50, None)));
        assert_eq!(
            check_final(&[acked, write_ok("a", 60, 70)], "k", &None).len(),
            1
        );
    }

    #[test]
    fn lincheck_lines_follow_the_checker_schema() {
        let ev = Event {
            process: 3,
            op_id: 7,
            ty: Type::Invoke,
            f: F::Cas,
            key: "k".into(),
            value: Some("new".into()),
            expected: Some("old".into()),
            result: None,
            error: None,
            time_ns: 9,
        };
        let v = ev.lincheck();
        assert_eq!(v["op"]["f"], "cas");
        assert_eq!(v["op"]["new"], "new");
        assert_eq!(v["op"]["expected"], "old");
        assert_eq!(v["id"], 7);
        let done = Event {
            ty: Type::Ok,
            result: Some(Outcome::Swapped(false)),
            ..ev
        };
        assert_eq!(
            done.lincheck()["result"],
            json!({"f": "cas", "swapped": false})
        );
        assert_eq!(done.flat()["result"], json!(false));
    }
}
