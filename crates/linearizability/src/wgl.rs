//! The Wing–Gong–Lowe search over one key's sub-history.
//!
//! The history is a doubly linked list of call and return entries in real
//! time. The search repeatedly takes the first entry: a call may be
//! linearized next if the model accepts it, and is then unlinked together
//! with its return; reaching a return means that operation had to be
//! linearized already, so the search backtracks. Lowe's memoization skips a
//! call when the pair (set of linearized operations, register value) was
//! seen before: the rest of the search from there is identical, and it
//! failed. This is the algorithm of Lowe's "Testing for linearizability"
//! and of Porcupine.
//!
//! Indeterminate operations get their return at +infinity, so the search
//! may place them anywhere after their invocation, including after every
//! other operation, which is the same as "never happened".

use crate::model::{KeyHistory, State, ABSENT, NEVER};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::Instant;

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// How far one search may go.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub max_states: Option<u64>,
    pub deadline: Option<Instant>,
}

/// Why a search stopped without a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    States,
    Time,
}

pub(crate) enum Outcome {
    Linearizable,
    /// `prefix` is the linearizable prefix the search carried furthest in
    /// real time (indices into the key's steps, in order), `state` the
    /// register after it,
    /// `candidates` the operations that could have come next (invoked before
    /// the earliest pending completion) and `must_complete` that earliest
    /// pending completion.
    Violation {
        prefix: Vec<usize>,
        state: State,
        candidates: Vec<usize>,
        must_complete: usize,
    },
    Unknown(Exhausted),
}

pub(crate) struct Search {
    pub outcome: Outcome,
    /// Distinct (linearized set, value) pairs visited.
    pub states: u64,
}

/// The memo key. Hashing folds the words first, so a cache probe costs one
/// pass over the bitset and one SipHash round.
#[derive(PartialEq, Eq)]
struct Seen {
    bits: Box<[u64]>,
    state: State,
}

impl Hash for Seen {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let mut x = u64::from(self.state);
        for &w in self.bits.iter() {
            x = (x.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        h.write_u64(x);
    }
}

struct List {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For a call entry its operation, for a return entry too.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// For a call entry, its return entry.
    partner: Vec<usize>,
    /// Real-time position of the entry.
    time: Vec<usize>,
}

impl List {
    fn new(kh: &KeyHistory) -> List {
        let n = kh.steps.len();
        // (time, is_return, op): calls and returns never share a real-time
        // position except the +infinity of indeterminate returns, which are
        // then ordered by op.
        let mut entries: Vec<(usize, bool, usize)> = Vec::with_capacity(2 * n);
        for op in 0..n {
            entries.push((kh.calls[op], false, op));
            entries.push((kh.returns[op], true, op));
        }
        entries.sort_unstable();
        let len = entries.len() + 1;
        let mut list = List {
            next: vec![NIL; len],
            prev: vec![NIL; len],
            op: vec![NIL; len],
            is_call: vec![false; len],
            partner: vec![NIL; len],
            time: vec![0; len],
        };
        let mut call_node = vec![NIL; n];
        for (i, &(time, is_return, op)) in entries.iter().enumerate() {
            let node = i + 1;
            list.time[node] = time;
            list.prev[node] = i;
            list.next[i] = node;
            list.op[node] = op;
            list.is_call[node] = !is_return;
            if is_return {
                list.partner[call_node[op]] = node;
            } else {
                call_node[op] = node;
            }
        }
        list
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Removes a call and its return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.partner[call]);
    }

    /// Undoes [`List::lift`]; the removed nodes kept their own links.
    fn unlift(&mut self, call: usize) {
        self.relink(self.partner[call]);
        self.relink(call);
    }

    /// Real-time position of the first return still in the list: how far
    /// in real time the linearized operations carry the history.
    fn reach(&self) -> usize {
        let mut node = self.next[HEAD];
        while node != NIL && self.is_call[node] {
            node = self.next[node];
        }
        if node == NIL {
            NIL
        } else {
            self.time[node]
        }
    }

    /// Calls before the first return, and that return's operation.
    fn frontier(&self) -> (Vec<usize>, usize) {
        let mut candidates = Vec::new();
        let mut node = self.next[HEAD];
        while node != NIL && self.is_call[node] {
            candidates.push(self.op[node]);
            node = self.next[node];
        }
        let must = if node == NIL { NIL } else { self.op[node] };
        (candidates, must)
    }
}

pub(crate) fn search(kh: &KeyHistory, budget: Budget) -> Search {
    let n = kh.steps.len();
    let mut list = List::new(kh);
    let mut bits = vec![0u64; n.div_ceil(64)].into_boxed_slice();
    let mut cache: HashSet<Seen> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = ABSENT;
    let mut states: u64 = 0;
    let mut iterations: u64 = 0;

    // The point reached furthest in real time, kept to explain a
    // violation. Among prefixes that reach equally far, fewer indeterminate
    // operations (they can always be appended, so they say little) and
    // then more operations are better.
    let mut indeterminate = 0usize;
    let score = |list: &List, indeterminate: usize, len: usize| {
        (list.reach(), std::cmp::Reverse(indeterminate), len)
    };
    let mut best_score = score(&list, 0, 0);
    let mut best_prefix: Vec<usize> = Vec::new();
    let mut best_state = ABSENT;
    let mut best_frontier = list.frontier();
    // The stack below this depth is unchanged since `best_prefix` was
    // taken, so a new snapshot copies only the rest: without this, a long
    // history would cost a quadratic number of copies.
    let mut unchanged = 0usize;

    let mut entry = list.next[HEAD];
    while list.next[HEAD] != NIL {
        iterations += 1;
        if iterations & 1023 == 0 {
            if let Some(deadline) = budget.deadline {
                if Instant::now() >= deadline {
                    return Search {
                        outcome: Outcome::Unknown(Exhausted::Time),
                        states,
                    };
                }
            }
        }
        if entry == NIL {
            // Unreachable: the list always ends with a return entry, where
            // the walk stops. Treated as a dead end rather than a panic.
            break;
        }
        if list.is_call[entry] {
            let op = list.op[entry];
            if let Some(next_state) = kh.steps[op].apply(state) {
                bits[op / 64] |= 1 << (op % 64);
                let seen = Seen {
                    bits: bits.clone(),
                    state: next_state,
                };
                if cache.insert(seen) {
                    states += 1;
                    if budget.max_states.is_some_and(|max| states > max) {
                        return Search {
                            outcome: Outcome::Unknown(Exhausted::States),
                            states,
                        };
                    }
                    stack.push((entry, state));
                    state = next_state;
                    list.lift(entry);
                    if kh.returns[op] == NEVER {
                        indeterminate += 1;
                    }
                    let reached = score(&list, indeterminate, stack.len());
                    if reached > best_score {
                        best_score = reached;
                        best_prefix.truncate(unchanged);
                        best_prefix
                            .extend(stack[unchanged..].iter().map(|&(node, _)| list.op[node]));
                        unchanged = stack.len();
                        best_state = state;
                        best_frontier = list.frontier();
                    }
                    entry = list.next[HEAD];
                    continue;
                }
                bits[op / 64] &= !(1 << (op % 64));
            }
            entry = list.next[entry];
        } else {
            // This return's operation should have been linearized by now:
            // undo the latest choice and try the call after it.
            let Some((call, previous)) = stack.pop() else {
                break;
            };
            unchanged = unchanged.min(stack.len());
            let op = list.op[call];
            bits[op / 64] &= !(1 << (op % 64));
            if kh.returns[op] == NEVER {
                indeterminate -= 1;
            }
            state = previous;
            list.unlift(call);
            entry = list.next[call];
        }
    }
    if list.next[HEAD] == NIL {
        return Search {
            outcome: Outcome::Linearizable,
            states,
        };
    }
    let (candidates, must_complete) = best_frontier;
    Search {
        outcome: Outcome::Violation {
            prefix: best_prefix,
            state: best_state,
            candidates,
            must_complete,
        },
        states,
    }
}
