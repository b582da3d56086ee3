//! The sequential specification: one register per key, and the split of a
//! history into per-key sub-histories.
//!
//! Values are interned per key into small integers so the search state is a
//! `u32` and a cache entry is a bitset plus that integer.

use crate::history::{History, Key, Op, OpResult, Outcome, Value};
use std::collections::{BTreeMap, HashMap};

/// A register value: 0 is "absent", `n > 0` is `values[n - 1]`.
pub(crate) type State = u32;
pub(crate) const ABSENT: State = 0;

/// The completion time of an indeterminate operation: +infinity.
pub(crate) const NEVER: usize = usize::MAX;

/// One operation as the model sees it: its argument and, when known, its
/// result. `None` results belong to indeterminate operations, which may
/// have returned anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Read(State),
    Write(State),
    Cas {
        expected: State,
        new: State,
        swapped: Option<bool>,
    },
    Delete {
        deleted: Option<bool>,
    },
}

impl Step {
    /// The register after this step from `s`, or `None` if the recorded
    /// result is impossible from `s`.
    pub(crate) fn apply(self, s: State) -> Option<State> {
        match self {
            Step::Read(v) => (s == v).then_some(s),
            Step::Write(v) => Some(v),
            Step::Cas {
                expected,
                new,
                swapped: Some(true),
            } => (s == expected).then_some(new),
            Step::Cas {
                expected,
                swapped: Some(false),
                ..
            } => (s != expected).then_some(s),
            // An indeterminate CAS that is linearized swaps iff it matches;
            // when it does not match it changes nothing, which is the same
            // as leaving it out.
            Step::Cas {
                expected,
                new,
                swapped: None,
            } => Some(if s == expected { new } else { s }),
            Step::Delete {
                deleted: Some(true),
            } => (s != ABSENT).then_some(ABSENT),
            Step::Delete {
                deleted: Some(false),
            } => (s == ABSENT).then_some(ABSENT),
            Step::Delete { deleted: None } => Some(ABSENT),
        }
    }
}

/// The operations of one key that the search has to place.
#[derive(Debug, Default)]
pub(crate) struct KeyHistory {
    pub key: Key,
    pub steps: Vec<Step>,
    /// Index of each step's operation in [`History::operations`].
    pub ops: Vec<usize>,
    /// Real-time position of each invocation.
    pub calls: Vec<usize>,
    /// Real-time position of each completion; [`NEVER`] for
    /// indeterminate operations, which may take effect at any later time.
    pub returns: Vec<usize>,
    /// Interned values; state `n` is `values[n - 1]`.
    pub values: Vec<Value>,
    /// Operations on this key in the history, including dropped ones.
    pub total: usize,
    pub failed: usize,
    pub indeterminate: usize,
}

impl KeyHistory {
    pub(crate) fn value(&self, s: State) -> Option<&str> {
        match s {
            ABSENT => None,
            n => self.values.get(n as usize - 1).map(String::as_str),
        }
    }
}

#[derive(Default)]
struct Interner {
    ids: HashMap<Value, State>,
    values: Vec<Value>,
}

impl Interner {
    fn id(&mut self, v: Option<&str>) -> State {
        let Some(v) = v else { return ABSENT };
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        self.values.push(v.to_owned());
        // Interned values per key are bounded by the ops on that key, far
        // below u32::MAX for any history that fits in memory.
        let id = self.values.len() as State;
        self.ids.insert(v.to_owned(), id);
        id
    }
}

/// Splits `history` by key. A KV history is linearizable iff every per-key
/// sub-history is (linearizability is compositional), so each key is
/// searched alone, which keeps the search exponential only in per-key
/// concurrency. Failed operations and indeterminate reads are dropped here:
/// neither can change any register.
pub(crate) fn partition(history: &History) -> BTreeMap<Key, KeyHistory> {
    let mut keys: BTreeMap<Key, (KeyHistory, Interner)> = BTreeMap::new();
    for (index, operation) in history.operations().iter().enumerate() {
        let (kh, interner) = keys.entry(operation.op.key().to_owned()).or_default();
        kh.total += 1;
        let result = match &operation.outcome {
            Outcome::Fail => {
                kh.failed += 1;
                continue;
            }
            Outcome::Info | Outcome::Pending => {
                kh.indeterminate += 1;
                None
            }
            Outcome::Ok(result) => Some(result),
        };
        let step = match (&operation.op, result) {
            (Op::Read { .. }, None) => continue,
            (Op::Read { .. }, Some(OpResult::Read { value })) => {
                Step::Read(interner.id(value.as_deref()))
            }
            (Op::Write { value, .. }, _) => Step::Write(interner.id(Some(value))),
            (Op::Cas { expected, new, .. }, r) => Step::Cas {
                expected: interner.id(expected.as_deref()),
                new: interner.id(Some(new)),
                swapped: match r {
                    Some(OpResult::Cas { swapped }) => Some(*swapped),
                    _ => None,
                },
            },
            (Op::Delete { .. }, r) => Step::Delete {
                deleted: match r {
                    Some(OpResult::Delete { deleted }) => deleted.map(|n| n > 0),
                    _ => None,
                },
            },
            // History validation pairs every result with its own kind of
            // operation; a read with a foreign result cannot get here.
            (Op::Read { .. }, Some(_)) => continue,
        };
        kh.steps.push(step);
        kh.ops.push(index);
        kh.calls.push(operation.invoked_at);
        kh.returns
            .push(match (&operation.outcome, operation.completed_at) {
                (Outcome::Ok(_), Some(at)) => at,
                _ => NEVER,
            });
    }
    keys.into_iter()
        .map(|(key, (mut kh, interner))| {
            kh.key = key.clone();
            kh.values = interner.values;
            (key, kh)
        })
        .collect()
}
