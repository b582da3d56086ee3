//! Linearizability checking for recorded client histories of a key-value
//! store: the Jepsen-style oracle that says whether what clients saw of
//! Synod could have come from one sequential map.
//!
//! This crate owns the history format (JSON lines), its validation, the
//! sequential model (one register per key), the checker, and a generator
//! of synthetic histories. It knows nothing of Synod's wire protocol: a
//! harness records [`Event`]s and hands them over.
//!
//! # Model
//!
//! Every key is an independent register holding a string or *absent*:
//!
//! | op | effect | result checked |
//! | --- | --- | --- |
//! | `read` | none | the value, or `null` if absent |
//! | `write` | value := `value` | none |
//! | `cas` | if value == `expected` then value := `new` | `swapped` |
//! | `delete` | value := absent | `deleted` (0 or 1), when recorded |
//!
//! `cas` with `expected: null` swaps only if the key is absent (`SET NX`).
//!
//! # Checker
//!
//! A KV history is linearizable iff each key's sub-history is
//! (linearizability is compositional), so keys are checked one by one with
//! the Wing–Gong–Lowe search memoized on (set of linearized operations,
//! register value), as in Lowe's "Testing for linearizability" and
//! Porcupine. `fail` operations are dropped; `info` and never-completed
//! operations may take effect at any time after their invocation, or never.
//! A [`Limits`] budget turns a search that would run too long into
//! [`CheckResult::Unknown`].
//!
//! # History format
//!
//! One JSON object per line; blank lines are skipped. Every event has a
//! `type`, the client `process` (u64), the operation `id` (u64, unique in
//! the history, repeated on the completion) and optionally `time_ns`:
//!
//! ```text
//! {"type":"invoke","process":0,"id":0,"op":{"f":"write","key":"x","value":"1"}}
//! {"type":"invoke","process":1,"id":1,"op":{"f":"read","key":"x"}}
//! {"type":"ok","process":0,"id":0,"result":{"f":"write"}}
//! {"type":"ok","process":1,"id":1,"result":{"f":"read","value":"1"}}
//! {"type":"invoke","process":0,"id":2,"op":{"f":"cas","key":"x","expected":"1","new":"2"}}
//! {"type":"info","process":0,"id":2,"error":"timeout"}
//! {"type":"invoke","process":1,"id":3,"op":{"f":"cas","key":"y","expected":null,"new":"a"}}
//! {"type":"ok","process":1,"id":3,"result":{"f":"cas","swapped":true}}
//! {"type":"invoke","process":1,"id":4,"op":{"f":"delete","key":"y"}}
//! {"type":"fail","process":1,"id":4}
//! ```
//!
//! - `type` is `invoke` (with `op`), `ok` (with `result`, whose `f` must
//!   match the op's), `fail` (did not happen) or `info` (indeterminate).
//!   `fail` and `info` take an optional `error` string.
//! - `op.f` is `read {key}`, `write {key, value}`,
//!   `cas {key, expected, new}` or `delete {key}`; `result.f` is
//!   `read {value}` (`null` = absent), `write`, `cas {swapped}` or
//!   `delete {deleted?}`.
//! - Real time is line order, unless every event carries `time_ns`: then
//!   events are ordered by it, ties kept in line order. A mix is an error.
//! - Other fields of an event are ignored, so a recorder may add its own
//!   (the node a client talked to, a latency); unknown fields inside `op`
//!   or `result` are errors, since a misspelt `value` must not read as
//!   absent.
//! - A process has at most one open operation; every completion must match
//!   the open invocation of its process. An operation still open at the end
//!   is indeterminate.
//!
//! Errors name the 1-based line of the offending event.
//!
//! # Use
//!
//! ```
//! use synod_linearizability::{check, HistoryBuilder, Op, OpResult};
//!
//! let mut h = HistoryBuilder::new();
//! h.invoke(0, Op::write("x", "1"));
//! h.ok(0, OpResult::Write);
//! h.invoke(1, Op::read("x"));
//! h.ok(1, OpResult::read(None)); // stale: the write had completed
//! let history = h.build().expect("well formed");
//! assert!(check(&history).is_violation());
//! ```
//!
//! The `synod-lincheck <history.jsonl>` binary prints the verdict and
//! per-key statistics and exits 0 (linearizable), 1 (not) or 2 (bad input
//! or unknown). The `checker_perf` example times the checker on a
//! generated 10-client, 10,000-operation history.

mod check;
pub mod generate;
mod history;
mod model;
mod wgl;

pub use check::{
    check, check_report, check_with, CheckResult, KeyStats, KeyVerdict, Limits, Report, Violation,
};
pub use history::{
    Error, Event, EventKind, History, HistoryBuilder, Key, Op, OpId, OpResult, Operation, Outcome,
    Problem, ProcessId, Value,
};
pub use wgl::Exhausted;
