//! Recorded histories: the event types, their JSON-lines form, and the
//! validation that turns a stream of events into [`Operation`]s.
//!
//! The checker trusts nothing it has not validated here, so every rule the
//! search relies on (one open operation per process, results that match
//! their operation, unique operation ids) is enforced once, with the line
//! number of the offending event.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};

/// A client (Jepsen "process"). At most one operation per process is open.
pub type ProcessId = u64;
/// Names one operation; unique in a history. The invocation and the
/// completion of an operation carry the same id.
pub type OpId = u64;
/// Keys and values are strings. Binary values should be encoded by the
/// recorder (hex, base64), which keeps the history greppable.
pub type Key = String;
pub type Value = String;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// `GET key`.
    Read { key: Key },
    /// `SET key value`.
    Write { key: Key, value: Value },
    /// Compare-and-set: replaces the value with `new` iff the current value
    /// equals `expected`. `expected: None` means "only if the key is absent"
    /// (`SET key new NX`); a CAS never deletes.
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
    },
    /// `DEL key`.
    Delete { key: Key },
}

impl Op {
    pub fn read(key: impl Into<Key>) -> Op {
        Op::Read { key: key.into() }
    }

    pub fn write(key: impl Into<Key>, value: impl Into<Value>) -> Op {
        Op::Write {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn cas(key: impl Into<Key>, expected: Option<&str>, new: impl Into<Value>) -> Op {
        Op::Cas {
            key: key.into(),
            expected: expected.map(str::to_owned),
            new: new.into(),
        }
    }

    pub fn delete(key: impl Into<Key>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Read { key } | Op::Write { key, .. } | Op::Cas { key, .. } | Op::Delete { key } => {
                key
            }
        }
    }

    /// The `f` tag, used in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Cas { .. } => "cas",
            Op::Delete { .. } => "delete",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Read { key } => write!(f, "read({key})"),
            Op::Write { key, value } => write!(f, "write({key}, {value:?})"),
            Op::Cas { key, expected, new } => {
                write!(f, "cas({key}, {}, {new:?})", show(expected.as_deref()))
            }
            Op::Delete { key } => write!(f, "delete({key})"),
        }
    }
}

/// Renders a register value, `absent` for a missing key.
pub(crate) fn show(v: Option<&str>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "absent".to_owned(),
    }
}

/// What an `ok` completion returned. The `f` tag must match the operation's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpResult {
    /// `value: null` (or no `value`) means the key was absent.
    Read {
        #[serde(default)]
        value: Option<Value>,
    },
    Write,
    Cas {
        swapped: bool,
    },
    /// `deleted` is the reply of `DEL key` (0 or 1) when the recorder kept
    /// it; when it is present the checker holds the delete to it.
    Delete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deleted: Option<u64>,
    },
}

impl OpResult {
    pub fn read(value: Option<&str>) -> OpResult {
        OpResult::Read {
            value: value.map(str::to_owned),
        }
    }

    pub fn cas(swapped: bool) -> OpResult {
        OpResult::Cas { swapped }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OpResult::Read { .. } => "read",
            OpResult::Write => "write",
            OpResult::Cas { .. } => "cas",
            OpResult::Delete { .. } => "delete",
        }
    }
}

impl std::fmt::Display for OpResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpResult::Read { value } => write!(f, "{}", show(value.as_deref())),
            OpResult::Write => write!(f, "ok"),
            OpResult::Cas { swapped } => write!(f, "{swapped}"),
            OpResult::Delete { deleted: Some(n) } => write!(f, "{n}"),
            OpResult::Delete { deleted: None } => write!(f, "ok"),
        }
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub process: ProcessId,
    pub id: OpId,
    /// Monotonic time of the event. Either every event has one (then the
    /// history is ordered by it) or none has (then line order is real time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ns: Option<u64>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The `type` of an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The client sent the operation.
    Invoke { op: Op },
    /// The operation took effect and returned `result`.
    Ok { result: OpResult },
    /// The operation definitely did not take effect.
    Fail {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Indeterminate (timeout, connection lost): the operation may or may
    /// not have taken effect, at any time after its invocation.
    Info {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl Event {
    pub fn invoke(process: ProcessId, id: OpId, op: Op) -> Event {
        Event {
            process,
            id,
            time_ns: None,
            kind: EventKind::Invoke { op },
        }
    }

    pub fn ok(process: ProcessId, id: OpId, result: OpResult) -> Event {
        Event {
            process,
            id,
            time_ns: None,
            kind: EventKind::Ok { result },
        }
    }

    pub fn fail(process: ProcessId, id: OpId) -> Event {
        Event {
            process,
            id,
            time_ns: None,
            kind: EventKind::Fail { error: None },
        }
    }

    pub fn info(process: ProcessId, id: OpId) -> Event {
        Event {
            process,
            id,
            time_ns: None,
            kind: EventKind::Info { error: None },
        }
    }

    pub fn at(mut self, time_ns: u64) -> Event {
        self.time_ns = Some(time_ns);
        self
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(OpResult),
    /// Did not happen; the checker drops it.
    Fail,
    /// Completed with `info`: may have happened at any time after invocation.
    Info,
    /// Never completed before the history ended; treated like `Info`.
    Pending,
}

impl Outcome {
    /// Whether the operation may or may not have taken effect.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Outcome::Info | Outcome::Pending)
    }
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub id: OpId,
    pub process: ProcessId,
    pub op: Op,
    pub outcome: Outcome,
    /// Position of the invocation in [`History::events`] (real-time order).
    pub invoked_at: usize,
    /// Position of the completion; `None` while pending. For `info` it is
    /// where the client gave up, not when the operation took effect.
    pub completed_at: Option<usize>,
    /// Line of the invocation in the source (1-based).
    pub line: usize,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op {} (process {}) {}", self.id, self.process, self.op)?;
        match &self.outcome {
            Outcome::Ok(r) => write!(f, " -> {r}"),
            Outcome::Fail => write!(f, " -> fail"),
            Outcome::Info => write!(f, " -> info"),
            Outcome::Pending => write!(f, " -> pending"),
        }
    }
}

/// Why a history was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("line {line}: cannot read: {source}")]
    Io {
        line: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: malformed event: {source}")]
    Malformed {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: {problem}")]
    Invalid { line: usize, problem: Problem },
}

impl Error {
    /// The 1-based line (or event position) the error is about.
    pub fn line(&self) -> usize {
        match self {
            Error::Io { line, .. }
            | Error::Malformed { line, .. }
            | Error::Invalid { line, .. } => *line,
        }
    }
}

/// A rule of well-formed histories that an event broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("process {process} invokes op {id} while its op {open} is still open")]
    ProcessBusy {
        process: ProcessId,
        id: OpId,
        open: OpId,
    },
    #[error("op id {id} is invoked twice")]
    DuplicateId { id: OpId },
    #[error("completion of op {id} by process {process}, which has no such open op")]
    NoOpenInvocation { process: ProcessId, id: OpId },
    #[error("op {id} is a {op} but its result is a {result}")]
    ResultMismatch {
        id: OpId,
        op: &'static str,
        result: &'static str,
    },
    #[error("op {id}: DEL of one key returns 0 or 1, not {deleted}")]
    BadDeleteCount { id: OpId, deleted: u64 },
    #[error("time_ns is on some events but not on this one")]
    MixedTimestamps,
}

/// A validated history: events in real-time order and the operations they
/// form. Two histories are equal when their events are, whatever lines
/// they were read from.
#[derive(Clone, Debug, Default)]
pub struct History {
    events: Vec<Event>,
    /// Source line of each event (1-based), for messages.
    lines: Vec<usize>,
    operations: Vec<Operation>,
}

impl History {
    /// Reads JSON lines (see the crate docs). Blank lines are skipped.
    pub fn from_jsonl(reader: impl BufRead) -> Result<History, Error> {
        let mut numbered = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line_no = i + 1;
            let text = line.map_err(|source| Error::Io {
                line: line_no,
                source,
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let event: Event = serde_json::from_str(&text).map_err(|source| Error::Malformed {
                line: line_no,
                source,
            })?;
            numbered.push((line_no, event));
        }
        History::from_numbered(numbered)
    }

    /// Builds a history from events in real-time order (or all carrying
    /// `time_ns`). Error "lines" are 1-based positions in `events`.
    pub fn from_events(events: Vec<Event>) -> Result<History, Error> {
        History::from_numbered(
            events
                .into_iter()
                .enumerate()
                .map(|(i, e)| (i + 1, e))
                .collect(),
        )
    }

    fn from_numbered(mut numbered: Vec<(usize, Event)>) -> Result<History, Error> {
        let timed = numbered.first().is_some_and(|(_, e)| e.time_ns.is_some());
        if let Some((line, _)) = numbered.iter().find(|(_, e)| e.time_ns.is_some() != timed) {
            return Err(Error::Invalid {
                line: *line,
                problem: Problem::MixedTimestamps,
            });
        }
        if timed {
            // Stable: events with equal timestamps keep their line order.
            numbered.sort_by_key(|(_, e)| e.time_ns);
        }

        let mut operations: Vec<Operation> = Vec::new();
        // process -> index in `operations` of its open op.
        let mut open: BTreeMap<ProcessId, usize> = BTreeMap::new();
        let mut ids: HashSet<OpId> = HashSet::new();
        for (position, (line, event)) in numbered.iter().enumerate() {
            let line = *line;
            let invalid = |problem| Error::Invalid { line, problem };
            match &event.kind {
                EventKind::Invoke { op } => {
                    if let Some(&busy) = open.get(&event.process) {
                        return Err(invalid(Problem::ProcessBusy {
                            process: event.process,
                            id: event.id,
                            open: operations[busy].id,
                        }));
                    }
                    if !ids.insert(event.id) {
                        return Err(invalid(Problem::DuplicateId { id: event.id }));
                    }
                    open.insert(event.process, operations.len());
                    operations.push(Operation {
                        id: event.id,
                        process: event.process,
                        op: op.clone(),
                        outcome: Outcome::Pending,
                        invoked_at: position,
                        completed_at: None,
                        line,
                    });
                }
                completion => {
                    let index = match open.get(&event.process) {
                        Some(&i) if operations[i].id == event.id => i,
                        _ => {
                            return Err(invalid(Problem::NoOpenInvocation {
                                process: event.process,
                                id: event.id,
                            }))
                        }
                    };
                    let operation = &mut operations[index];
                    operation.outcome = match completion {
                        EventKind::Ok { result } => {
                            if result.name() != operation.op.name() {
                                return Err(invalid(Problem::ResultMismatch {
                                    id: event.id,
                                    op: operation.op.name(),
                                    result: result.name(),
                                }));
                            }
                            if let OpResult::Delete {
                                deleted: Some(deleted @ 2..),
                            } = result
                            {
                                return Err(invalid(Problem::BadDeleteCount {
                                    id: event.id,
                                    deleted: *deleted,
                                }));
                            }
                            Outcome::Ok(result.clone())
                        }
                        EventKind::Fail { .. } => Outcome::Fail,
                        _ => Outcome::Info,
                    };
                    operation.completed_at = Some(position);
                    open.remove(&event.process);
                }
            }
        }
        let (lines, events) = numbered.into_iter().unzip();
        Ok(History {
            events,
            lines,
            operations,
        })
    }

    /// Writes the history back as JSON lines, one event per line, in
    /// real-time order.
    pub fn to_jsonl(&self, mut writer: impl Write) -> std::io::Result<()> {
        for event in &self.events {
            serde_json::to_writer(&mut writer, event)?;
            writer.write_all(b"\n")?;
        }
        Ok(())
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Source line of each event, parallel to [`History::events`].
    pub fn lines(&self) -> &[usize] {
        &self.lines
    }

    /// Operations in invocation order.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl PartialEq for History {
    fn eq(&self, other: &History) -> bool {
        self.events == other.events
    }
}

impl Eq for History {}

/// Records a history in code: assigns op ids and keeps real-time order by
/// call order. Used by tests and generators; a harness may use it too.
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    events: Vec<Event>,
    next_id: OpId,
    open: BTreeMap<ProcessId, OpId>,
}

impl HistoryBuilder {
    pub fn new() -> HistoryBuilder {
        HistoryBuilder::default()
    }

    /// Invokes `op` on `process`; returns its id.
    pub fn invoke(&mut self, process: ProcessId, op: Op) -> OpId {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(process, id);
        self.events.push(Event::invoke(process, id, op));
        id
    }

    /// Completes the open op of `process` with `ok`.
    pub fn ok(&mut self, process: ProcessId, result: OpResult) -> &mut Self {
        let id = self.take(process);
        self.events.push(Event::ok(process, id, result));
        self
    }

    pub fn fail(&mut self, process: ProcessId) -> &mut Self {
        let id = self.take(process);
        self.events.push(Event::fail(process, id));
        self
    }

    pub fn info(&mut self, process: ProcessId) -> &mut Self {
        let id = self.take(process);
        self.events.push(Event::info(process, id));
        self
    }

    /// The open op of `process`, or an id no invocation has, which makes
    /// [`HistoryBuilder::build`] report the stray completion.
    fn take(&mut self, process: ProcessId) -> OpId {
        self.open.remove(&process).unwrap_or(OpId::MAX)
    }

    /// Validates the recorded events.
    pub fn build(&self) -> Result<History, Error> {
        History::from_events(self.events.clone())
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }
}
