//! The WGL checker against a brute-force one on thousands of small random
//! histories (at most 7 operations, 2 keys, 3 processes).
//!
//! The brute force is the definition, written independently of the crate's
//! model and without per-key splitting or memoization: try every order of
//! the operations that respects real time, on one map holding every key,
//! with each indeterminate operation either placed somewhere after its
//! invocation or left out. Half the histories are linearizable by
//! construction, the rest are corrupted copies, so both verdicts are
//! exercised.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use synod_linearizability::generate::{linearizable_history, GenConfig};
use synod_linearizability::{
    check_with, CheckResult, Event, EventKind, History, Limits, Op, OpResult, Outcome, Violation,
};

struct BruteOp {
    op: Op,
    /// `None` for indeterminate operations.
    result: Option<OpResult>,
    /// Bitmask of operations that completed before this one was invoked.
    preds: u32,
}

type Map = BTreeMap<String, String>;

fn apply(op: &BruteOp, map: &Map) -> Option<Map> {
    let mut next = map.clone();
    match (&op.op, &op.result) {
        (Op::Read { key }, Some(OpResult::Read { value })) => {
            (map.get(key) == value.as_ref()).then_some(next)
        }
        (Op::Read { .. }, _) => Some(next),
        (Op::Write { key, value }, _) => {
            next.insert(key.clone(), value.clone());
            Some(next)
        }
        (Op::Cas { key, expected, new }, result) => {
            let matches = map.get(key) == expected.as_ref();
            let reported = match result {
                Some(OpResult::Cas { swapped }) => Some(*swapped),
                _ => None,
            };
            if reported.is_some_and(|s| s != matches) {
                return None;
            }
            if matches {
                next.insert(key.clone(), new.clone());
            }
            Some(next)
        }
        (Op::Delete { key }, result) => {
            let existed = next.remove(key).is_some();
            match result {
                Some(OpResult::Delete { deleted: Some(n) }) if (*n > 0) != existed => None,
                _ => Some(next),
            }
        }
    }
}

fn brute_linearizable(history: &History) -> bool {
    let kept: Vec<_> = history
        .operations()
        .iter()
        .filter(|o| o.outcome != Outcome::Fail)
        .collect();
    assert!(kept.len() <= 16, "brute force is for small histories");
    let ops: Vec<BruteOp> = kept
        .iter()
        .map(|o| {
            let mut preds = 0;
            for (j, p) in kept.iter().enumerate() {
                let completed_ok = matches!(p.outcome, Outcome::Ok(_));
                if completed_ok && p.completed_at.is_some_and(|c| c < o.invoked_at) {
                    preds |= 1 << j;
                }
            }
            BruteOp {
                op: o.op.clone(),
                result: match &o.outcome {
                    Outcome::Ok(r) => Some(r.clone()),
                    _ => None,
                },
                preds,
            }
        })
        .collect();
    let required: u32 = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.result.is_some())
        .map(|(i, _)| 1 << i)
        .sum();
    fn dfs(ops: &[BruteOp], required: u32, placed: u32, map: &Map) -> bool {
        if placed & required == required {
            return true;
        }
        ops.iter().enumerate().any(|(i, op)| {
            placed & (1 << i) == 0
                && op.preds & placed == op.preds
                && apply(op, map).is_some_and(|next| dfs(ops, required, placed | 1 << i, &next))
        })
    }
    dfs(&ops, required, 0, &Map::new())
}

/// The explanation of a violation must itself hold: its prefix is a legal
/// sequential run of the key that respects real time, ends in the value it
/// claims, and does not contain the operation it says is stuck.
fn assert_explanation_holds(v: &Violation, seed: u64) {
    let mut map = Map::new();
    for (i, o) in v.prefix.iter().enumerate() {
        assert_eq!(o.op.key(), v.key, "seed {seed}: prefix op of another key");
        let op = BruteOp {
            op: o.op.clone(),
            result: match &o.outcome {
                Outcome::Ok(r) => Some(r.clone()),
                _ => None,
            },
            preds: 0,
        };
        map = apply(&op, &map).unwrap_or_else(|| panic!("seed {seed}: prefix step {i} illegal"));
        for later in &v.prefix[i + 1..] {
            let must_precede = matches!(later.outcome, Outcome::Ok(_))
                && later.completed_at.is_some_and(|c| c < o.invoked_at);
            assert!(!must_precede, "seed {seed}: prefix breaks real time");
        }
    }
    assert_eq!(
        map.get(&v.key),
        v.value_after_prefix.as_ref(),
        "seed {seed}"
    );
    let must = v.must_complete.as_ref().expect("names the stuck op");
    assert!(v.prefix.iter().all(|o| o.id != must.id), "seed {seed}");
    assert!(v.candidates.iter().any(|o| o.id == must.id), "seed {seed}");
}

fn small_config(rng: &mut StdRng) -> GenConfig {
    GenConfig {
        processes: 3,
        ops: rng.gen_range(2..=7),
        keys: 2,
        values: Some(3),
        mix: [35, 30, 25, 10],
        fail_rate: 0.1,
        info_rate: 0.15,
    }
}

fn random_value(rng: &mut StdRng) -> Option<String> {
    match rng.gen_range(0..4) {
        0 => None,
        n => Some((n - 1).to_string()),
    }
}

fn random_result(rng: &mut StdRng, op: &Op) -> OpResult {
    match op {
        Op::Read { .. } => OpResult::Read {
            value: random_value(rng),
        },
        Op::Write { .. } => OpResult::Write,
        Op::Cas { .. } => OpResult::Cas { swapped: rng.gen() },
        Op::Delete { .. } => OpResult::Delete {
            deleted: Some(rng.gen_range(0..2)),
        },
    }
}

/// One random mutation of the kinds a buggy store or recorder produces.
fn corrupt(rng: &mut StdRng, events: &mut [Event]) {
    let ops: BTreeMap<u64, Op> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Invoke { op } => Some((e.id, op.clone())),
            _ => None,
        })
        .collect();
    let pick = |rng: &mut StdRng, events: &[Event], want: fn(&EventKind) -> bool| {
        let fits: Vec<usize> = (0..events.len())
            .filter(|&i| want(&events[i].kind))
            .collect();
        (!fits.is_empty()).then(|| fits[rng.gen_range(0..fits.len())])
    };
    match rng.gen_range(0..6) {
        // A different result.
        0 | 1 => {
            if let Some(i) = pick(rng, events, |k| matches!(k, EventKind::Ok { .. })) {
                events[i].kind = EventKind::Ok {
                    result: random_result(rng, &ops[&events[i].id]),
                };
            }
        }
        // Happened but reported failed, or the reverse.
        2 => {
            if let Some(i) = pick(rng, events, |k| !matches!(k, EventKind::Invoke { .. })) {
                events[i].kind = match &events[i].kind {
                    EventKind::Ok { .. } => EventKind::Fail { error: None },
                    _ => EventKind::Ok {
                        result: random_result(rng, &ops[&events[i].id]),
                    },
                };
            }
        }
        // A different argument.
        3 => {
            if let Some(i) = pick(rng, events, |k| matches!(k, EventKind::Invoke { .. })) {
                if let EventKind::Invoke { op } = &mut events[i].kind {
                    match op {
                        Op::Write { value, .. } | Op::Cas { new: value, .. } => {
                            *value = random_value(rng).unwrap_or_else(|| "9".into())
                        }
                        Op::Read { key } | Op::Delete { key } => {
                            *key = if key == "k0" { "k1" } else { "k0" }.into()
                        }
                    }
                }
            }
        }
        // Reordered in real time (may break well-formedness; then skipped).
        _ => {
            if events.len() > 1 {
                let i = rng.gen_range(0..events.len() - 1);
                events.swap(i, i + 1);
            }
        }
    }
}

#[test]
fn wgl_agrees_with_brute_force() {
    let mut agreed = [0usize; 2];
    let mut cases = 0;
    for seed in 0..10_000u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let cfg = small_config(&mut rng);
        let history = linearizable_history(&mut rng, &cfg);
        let corrupted = seed % 3 != 0;
        let history = if corrupted {
            let mut events = history.events().to_vec();
            for _ in 0..rng.gen_range(1..=3) {
                corrupt(&mut rng, &mut events);
            }
            match History::from_events(events) {
                Ok(h) => h,
                Err(_) => continue,
            }
        } else {
            history
        };
        let brute = brute_linearizable(&history);
        let wgl = check_with(&history, Limits::unlimited());
        let wgl_linearizable = match &wgl {
            CheckResult::Linearizable => true,
            CheckResult::NotLinearizable(v) => {
                assert_explanation_holds(v, seed);
                false
            }
            CheckResult::Unknown { .. } => panic!("seed {seed}: unlimited search gave up"),
        };
        let mut jsonl = Vec::new();
        history.to_jsonl(&mut jsonl).expect("write to a Vec");
        let jsonl = String::from_utf8_lossy(&jsonl);
        assert_eq!(
            brute, wgl_linearizable,
            "seed {seed}: brute force says {brute}, WGL says {wgl}\n{jsonl}"
        );
        if !corrupted {
            assert!(brute, "seed {seed}: generated history rejected\n{jsonl}");
        }
        agreed[usize::from(brute)] += 1;
        cases += 1;
    }
    // Both verdicts must be well represented, or the comparison says little.
    let [rejected, accepted] = agreed;
    println!("{cases} histories: {accepted} linearizable, {rejected} not");
    assert!(cases > 8000, "only {cases} histories checked");
    assert!(
        rejected > 1000,
        "only {rejected} non-linearizable histories"
    );
    assert!(accepted > 4000, "only {accepted} linearizable histories");
}

/// A handful of larger histories (up to 11 ops, more concurrency) where the
/// brute force is still affordable.
#[test]
fn wgl_agrees_with_brute_force_on_busier_histories() {
    let mut verdicts = [0usize; 2];
    for seed in 0..1000u64 {
        let mut rng = StdRng::seed_from_u64(1_000_000 + seed);
        let cfg = GenConfig {
            processes: 4,
            ops: 11,
            keys: 1,
            values: Some(2),
            mix: [40, 30, 20, 10],
            fail_rate: 0.05,
            info_rate: 0.1,
        };
        let mut events = linearizable_history(&mut rng, &cfg).events().to_vec();
        if seed % 2 == 1 {
            for _ in 0..rng.gen_range(1..=3) {
                corrupt(&mut rng, &mut events);
            }
        }
        let Ok(history) = History::from_events(events) else {
            continue;
        };
        let brute = brute_linearizable(&history);
        let wgl = check_with(&history, Limits::unlimited());
        assert_eq!(brute, wgl.is_linearizable(), "seed {seed}: {wgl}");
        verdicts[usize::from(brute)] += 1;
    }
    let [rejected, accepted] = verdicts;
    assert!(
        rejected > 60 && accepted > 400,
        "{rejected} rejected, {accepted} accepted"
    );
}
