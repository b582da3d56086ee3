//! The public checker: per-key searches, their budget, and the verdict.

use crate::history::{show, History, Key, Operation, Value};
use crate::model::{partition, KeyHistory};
use crate::wgl::{search, Budget, Exhausted, Outcome};
use std::fmt;
use std::time::{Duration, Instant};

/// How much search the checker may spend before answering
/// [`CheckResult::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Distinct (linearized set, value) states one key may visit. Each is
    /// kept in the memo, so this also bounds memory: about
    /// `ops_on_key / 8 + 40` bytes per state.
    pub max_states: Option<u64>,
    /// Wall-clock budget for the whole history. The search is otherwise
    /// deterministic; the clock is read only to honour this.
    pub max_time: Option<Duration>,
}

impl Default for Limits {
    /// One million states per key, no time limit: fast histories are
    /// unaffected, a pathological one ends in `Unknown` within seconds.
    fn default() -> Limits {
        Limits {
            max_states: Some(1_000_000),
            max_time: None,
        }
    }
}

impl Limits {
    pub fn unlimited() -> Limits {
        Limits {
            max_states: None,
            max_time: None,
        }
    }
}

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Linearizable,
    /// The first key (in key order) whose sub-history is not linearizable.
    NotLinearizable(Box<Violation>),
    /// No key is known to be non-linearizable, but this one ran out of
    /// budget.
    Unknown {
        key: Key,
        reason: Exhausted,
    },
}

impl CheckResult {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }

    pub fn is_violation(&self) -> bool {
        matches!(self, CheckResult::NotLinearizable(_))
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable => write!(f, "linearizable"),
            CheckResult::NotLinearizable(v) => write!(f, "NOT linearizable: {v}"),
            CheckResult::Unknown { key, reason } => {
                let why = match reason {
                    Exhausted::States => "state budget",
                    Exhausted::Time => "time budget",
                };
                write!(f, "unknown: key {key:?} exhausted the {why}")
            }
        }
    }
}

/// Where a key's history stops being linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: Key,
    /// The linearizable prefix that the search carried furthest in real
    /// time, in linearization order (among equals, the one with the fewest
    /// indeterminate operations). No extension of it is linearizable.
    pub prefix: Vec<Operation>,
    /// The key's value after `prefix`.
    pub value_after_prefix: Option<Value>,
    /// The earliest completion after `prefix`: that operation had to take
    /// effect by then, but no order of the candidates allows it.
    pub must_complete: Option<Operation>,
    /// Operations invoked before that completion and not in `prefix`: the
    /// only ones that could come next.
    pub candidates: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {:?}: after a linearizable prefix of {} ops the value is {}",
            self.key,
            self.prefix.len(),
            show(self.value_after_prefix.as_deref())
        )?;
        if let Some(must) = &self.must_complete {
            write!(f, "; {must} (line {}) must take effect", must.line)?;
        }
        write!(f, " but no next op fits; candidates:")?;
        for c in &self.candidates {
            write!(f, " [{c}]")?;
        }
        Ok(())
    }
}

/// The verdict on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyVerdict {
    Linearizable,
    NotLinearizable,
    Unknown(Exhausted),
}

/// What the search did for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStats {
    pub key: Key,
    /// Operations on the key in the history.
    pub ops: usize,
    pub failed: usize,
    pub indeterminate: usize,
    /// Operations the search had to place (failed ops and indeterminate
    /// reads are dropped first).
    pub searched: usize,
    /// Distinct states the search visited.
    pub states: u64,
    pub elapsed: Duration,
    pub verdict: KeyVerdict,
}

/// The verdict with per-key statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub result: CheckResult,
    pub keys: Vec<KeyStats>,
}

/// Checks with [`Limits::default`].
pub fn check(history: &History) -> CheckResult {
    check_with(history, Limits::default())
}

pub fn check_with(history: &History, limits: Limits) -> CheckResult {
    check_report(history, limits).result
}

/// Checks every key (even after a violation, so the statistics are
/// complete) and reports the first violating key, else the first key that
/// ran out of budget.
pub fn check_report(history: &History, limits: Limits) -> Report {
    let deadline = limits.max_time.map(|t| Instant::now() + t);
    let budget = Budget {
        max_states: limits.max_states,
        deadline,
    };
    let mut violation: Option<Box<Violation>> = None;
    let mut unknown: Option<CheckResult> = None;
    let mut keys = Vec::new();
    for (key, kh) in partition(history) {
        let started = Instant::now();
        let found = search(&kh, budget);
        let verdict = match found.outcome {
            Outcome::Linearizable => KeyVerdict::Linearizable,
            Outcome::Unknown(reason) => {
                unknown.get_or_insert(CheckResult::Unknown {
                    key: key.clone(),
                    reason,
                });
                KeyVerdict::Unknown(reason)
            }
            Outcome::Violation {
                prefix,
                state,
                candidates,
                must_complete,
            } => {
                if violation.is_none() {
                    violation = Some(Box::new(explain(
                        history,
                        &kh,
                        &prefix,
                        state,
                        &candidates,
                        must_complete,
                    )));
                }
                KeyVerdict::NotLinearizable
            }
        };
        keys.push(KeyStats {
            key,
            ops: kh.total,
            failed: kh.failed,
            indeterminate: kh.indeterminate,
            searched: kh.steps.len(),
            states: found.states,
            elapsed: started.elapsed(),
            verdict,
        });
    }
    let result = match (violation, unknown) {
        (Some(v), _) => CheckResult::NotLinearizable(v),
        (None, Some(u)) => u,
        (None, None) => CheckResult::Linearizable,
    };
    Report { result, keys }
}

fn explain(
    history: &History,
    kh: &KeyHistory,
    prefix: &[usize],
    state: u32,
    candidates: &[usize],
    must_complete: usize,
) -> Violation {
    let operation = |step: usize| -> Option<Operation> {
        let index = *kh.ops.get(step)?;
        history.operations().get(index).cloned()
    };
    Violation {
        key: kh.key.clone(),
        prefix: prefix.iter().filter_map(|&s| operation(s)).collect(),
        value_after_prefix: kh.value(state).map(str::to_owned),
        must_complete: operation(must_complete),
        candidates: candidates.iter().filter_map(|&s| operation(s)).collect(),
    }
}
