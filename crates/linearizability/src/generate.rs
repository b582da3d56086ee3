//! Synthetic histories that are linearizable by construction, for tests and
//! for measuring the checker.
//!
//! A set of simulated clients runs against one sequential map. Each
//! operation is applied to the map at a random moment between its
//! invocation and its completion, and the client reports what the map
//! answered at that moment, so the recorded history has a linearization by
//! construction: the order in which operations were applied. Failed
//! operations are never applied; indeterminate ones are applied before
//! their `info`, never, or at some random later time.

use crate::history::{Event, History, Key, Op, OpId, OpResult, ProcessId, Value};
use rand::Rng;
use std::collections::BTreeMap;

/// Shape of a generated history.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub processes: u64,
    /// Operations to invoke.
    pub ops: usize,
    /// Keys are `k0`, `k1`, ...
    pub keys: usize,
    /// Written values are drawn from `0..n` (collisions make reads
    /// ambiguous, good for small tests); `None` makes every written value
    /// fresh (realistic for a harness, kinder to the search).
    pub values: Option<u32>,
    /// Relative weights of read, write, cas, delete.
    pub mix: [u32; 4],
    /// Probability that an operation not yet applied ends as `fail`.
    pub fail_rate: f64,
    /// Probability that an operation ends as `info`.
    pub info_rate: f64,
}

impl Default for GenConfig {
    fn default() -> GenConfig {
        GenConfig {
            processes: 10,
            ops: 10_000,
            keys: 5,
            values: None,
            mix: [50, 30, 15, 5],
            fail_rate: 0.01,
            info_rate: 0.002,
        }
    }
}

struct Open {
    id: OpId,
    op: Op,
    /// Set once the op was applied to the map.
    result: Option<OpResult>,
}

struct Sim {
    map: BTreeMap<Key, Value>,
    fresh: u64,
}

impl Sim {
    fn apply(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Read { key } => OpResult::Read {
                value: self.map.get(key).cloned(),
            },
            Op::Write { key, value } => {
                self.map.insert(key.clone(), value.clone());
                OpResult::Write
            }
            Op::Cas { key, expected, new } => {
                let swapped = self.map.get(key) == expected.as_ref();
                if swapped {
                    self.map.insert(key.clone(), new.clone());
                }
                OpResult::Cas { swapped }
            }
            Op::Delete { key } => OpResult::Delete {
                deleted: Some(u64::from(self.map.remove(key).is_some())),
            },
        }
    }

    fn value(&mut self, rng: &mut impl Rng, cfg: &GenConfig) -> Value {
        match cfg.values {
            Some(n) => rng.gen_range(0..n.max(1)).to_string(),
            None => {
                self.fresh += 1;
                self.fresh.to_string()
            }
        }
    }

    fn random_op(&mut self, rng: &mut impl Rng, cfg: &GenConfig) -> Op {
        let key = format!("k{}", rng.gen_range(0..cfg.keys.max(1)));
        let total: u32 = cfg.mix.iter().sum::<u32>().max(1);
        let mut pick = rng.gen_range(0..total);
        let mut kind = 0;
        for (i, &w) in cfg.mix.iter().enumerate() {
            if pick < w {
                kind = i;
                break;
            }
            pick -= w;
        }
        match kind {
            0 => Op::Read { key },
            1 => {
                let value = self.value(rng, cfg);
                Op::Write { key, value }
            }
            2 => {
                // Expect the current value half the time so swaps happen.
                let expected = match rng.gen_range(0..4) {
                    0 | 1 => self.map.get(&key).cloned(),
                    2 => None,
                    _ => Some(self.value(rng, cfg)),
                };
                let new = self.value(rng, cfg);
                Op::Cas { key, expected, new }
            }
            _ => Op::Delete { key },
        }
    }
}

/// A random history with a linearization by construction.
pub fn linearizable_history(rng: &mut impl Rng, cfg: &GenConfig) -> History {
    let mut sim = Sim {
        map: BTreeMap::new(),
        fresh: 0,
    };
    let mut events = Vec::new();
    let mut open: Vec<Option<Open>> = (0..cfg.processes.max(1)).map(|_| None).collect();
    // Indeterminate ops that may still take effect later.
    let mut zombies: Vec<Op> = Vec::new();
    let mut invoked = 0usize;
    let mut next_id: OpId = 0;
    loop {
        if invoked == cfg.ops && open.iter().all(Option::is_none) {
            break;
        }
        if !zombies.is_empty() && rng.gen_bool(0.05) {
            let op = zombies.swap_remove(rng.gen_range(0..zombies.len()));
            sim.apply(&op);
            continue;
        }
        let p = rng.gen_range(0..open.len());
        let process = p as ProcessId;
        match open[p].take() {
            None if invoked < cfg.ops => {
                let op = sim.random_op(rng, cfg);
                events.push(Event::invoke(process, next_id, op.clone()));
                open[p] = Some(Open {
                    id: next_id,
                    op,
                    result: None,
                });
                next_id += 1;
                invoked += 1;
            }
            None => {}
            Some(mut o) => match o.result.take() {
                None => {
                    if rng.gen_bool(cfg.fail_rate) {
                        events.push(Event::fail(process, o.id));
                    } else if rng.gen_bool(cfg.info_rate) {
                        events.push(Event::info(process, o.id));
                        if rng.gen_bool(0.5) {
                            zombies.push(o.op);
                        }
                    } else if rng.gen_bool(0.5) {
                        o.result = Some(sim.apply(&o.op));
                        open[p] = Some(o);
                    } else {
                        open[p] = Some(o);
                    }
                }
                Some(result) => {
                    if rng.gen_bool(cfg.info_rate) {
                        events.push(Event::info(process, o.id));
                    } else if rng.gen_bool(0.5) {
                        events.push(Event::ok(process, o.id, result));
                    } else {
                        o.result = Some(result);
                        open[p] = Some(o);
                    }
                }
            },
        }
    }
    // The simulation keeps one open op per process and pairs every
    // completion with its invocation, so a refusal here is a generator bug.
    History::from_events(events).expect("generated history is well formed")
}
