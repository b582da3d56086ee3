//! Hand-made histories with a known verdict. Each violation test is a bug a
//! replicated store can really have; each accepted history is a legal
//! behaviour a too-strict checker would wrongly flag.

use std::time::Duration;
use synod_linearizability::generate::{linearizable_history, GenConfig};
use synod_linearizability::{
    check, check_report, check_with, CheckResult, Exhausted, History, HistoryBuilder, KeyVerdict,
    Limits, Op, OpResult, Violation,
};

const W: OpResult = OpResult::Write;

fn read(v: Option<&str>) -> OpResult {
    OpResult::read(v)
}

fn cas(swapped: bool) -> OpResult {
    OpResult::cas(swapped)
}

fn deleted(n: u64) -> OpResult {
    OpResult::Delete { deleted: Some(n) }
}

/// Invokes and completes `op` on `p` with nothing in between.
fn seq(b: &mut HistoryBuilder, p: u64, op: Op, r: OpResult) {
    b.invoke(p, op);
    b.ok(p, r);
}

fn build(b: &HistoryBuilder) -> History {
    b.build().expect("test history is well formed")
}

fn assert_linearizable(b: &HistoryBuilder) {
    let result = check(&build(b));
    assert_eq!(result, CheckResult::Linearizable, "{result}");
}

fn assert_violation(b: &HistoryBuilder) -> Violation {
    match check(&build(b)) {
        CheckResult::NotLinearizable(v) => *v,
        other => panic!("expected a violation, got {other}"),
    }
}

// ---- accepted ----

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(&HistoryBuilder::new());
}

#[test]
fn sequential_ops_are_linearizable() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::read("x"), read(None));
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 1, Op::read("x"), read(Some("1")));
    seq(&mut b, 0, Op::cas("x", Some("1"), "2"), cas(true));
    seq(&mut b, 2, Op::cas("x", Some("1"), "3"), cas(false));
    seq(&mut b, 1, Op::read("x"), read(Some("2")));
    seq(&mut b, 2, Op::delete("x"), deleted(1));
    seq(&mut b, 2, Op::delete("x"), deleted(0));
    seq(&mut b, 0, Op::read("x"), read(None));
    seq(&mut b, 1, Op::cas("x", None, "4"), cas(true));
    seq(&mut b, 1, Op::cas("x", None, "5"), cas(false));
    seq(&mut b, 0, Op::read("x"), read(Some("4")));
    assert_linearizable(&b);
}

/// A read overlapping a write may see the value before or after it.
#[test]
fn concurrent_read_may_see_old_or_new_value() {
    for seen in ["1", "2"] {
        let mut b = HistoryBuilder::new();
        seq(&mut b, 0, Op::write("x", "1"), W);
        b.invoke(0, Op::write("x", "2"));
        b.invoke(1, Op::read("x"));
        b.ok(1, read(Some(seen)));
        b.ok(0, W);
        assert_linearizable(&b);
    }
}

/// Overlapping writes may take effect in either order, and reads
/// overlapping both may see either, as long as they agree with one order.
#[test]
fn concurrent_writes_in_either_order() {
    for last in ["a", "b"] {
        let mut b = HistoryBuilder::new();
        b.invoke(0, Op::write("x", "a"));
        b.invoke(1, Op::write("x", "b"));
        b.invoke(2, Op::read("x"));
        b.ok(2, read(Some(if last == "a" { "b" } else { "a" })));
        b.ok(1, W);
        b.ok(0, W);
        seq(&mut b, 2, Op::read("x"), read(Some(last)));
        seq(&mut b, 2, Op::read("x"), read(Some(last)));
        assert_linearizable(&b);
    }
}

/// Three overlapping CASes that all succeed fix one order; the checker
/// must find it even though it is not the invocation order.
#[test]
fn cas_chain_is_linearizable() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "0"), W);
    b.invoke(0, Op::cas("x", Some("2"), "3"));
    b.invoke(1, Op::cas("x", Some("1"), "2"));
    b.invoke(2, Op::cas("x", Some("0"), "1"));
    b.ok(0, cas(true));
    b.ok(1, cas(true));
    b.ok(2, cas(true));
    seq(&mut b, 0, Op::cas("x", Some("0"), "9"), cas(false));
    seq(&mut b, 1, Op::read("x"), read(Some("3")));
    assert_linearizable(&b);
}

/// A timed-out write may take effect long after the client gave up: here
/// after a read that still saw the old value.
#[test]
fn indeterminate_write_observed_later() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    b.invoke(0, Op::write("x", "2"));
    b.info(0);
    seq(&mut b, 1, Op::read("x"), read(Some("1")));
    seq(&mut b, 1, Op::read("x"), read(Some("2")));
    seq(&mut b, 1, Op::read("x"), read(Some("2")));
    assert_linearizable(&b);
}

#[test]
fn indeterminate_write_never_observed() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    b.invoke(0, Op::write("x", "2"));
    b.info(0);
    seq(&mut b, 1, Op::read("x"), read(Some("1")));
    seq(&mut b, 1, Op::read("x"), read(Some("1")));
    assert_linearizable(&b);
}

/// An op still open when the history ends is indeterminate too.
#[test]
fn pending_op_may_or_may_not_take_effect() {
    for seen in ["1", "2"] {
        let mut b = HistoryBuilder::new();
        seq(&mut b, 0, Op::write("x", "1"), W);
        b.invoke(0, Op::cas("x", Some("1"), "2"));
        seq(&mut b, 1, Op::read("x"), read(Some(seen)));
        assert_linearizable(&b);
    }
}

#[test]
fn failed_write_is_ignored() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    b.invoke(0, Op::write("x", "2"));
    b.fail(0);
    seq(&mut b, 1, Op::read("x"), read(Some("1")));
    assert_linearizable(&b);
}

/// Keys are independent: interleaving two keys' histories changes nothing.
#[test]
fn keys_are_independent() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, Op::write("x", "1"));
    b.invoke(1, Op::write("y", "1"));
    b.ok(0, W);
    b.invoke(2, Op::read("y"));
    b.ok(2, read(None));
    b.ok(1, W);
    seq(&mut b, 2, Op::read("x"), read(Some("1")));
    seq(&mut b, 2, Op::read("y"), read(Some("1")));
    assert_linearizable(&b);
}

// ---- rejected ----

/// A read that starts after a write of a newer value completed returns the
/// older value, even though a third write is in flight.
#[test]
fn stale_read_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 0, Op::write("x", "2"), W);
    b.invoke(1, Op::write("x", "3"));
    b.invoke(2, Op::read("x"));
    b.ok(2, read(Some("1")));
    b.ok(1, W);
    let v = assert_violation(&b);
    assert_eq!(v.key, "x");
    // The explanation names the stale read as the op that cannot fit, after
    // both completed writes.
    let must = v.must_complete.clone().expect("names the stuck op");
    assert_eq!(must.op, Op::read("x"));
    assert!(v.prefix.iter().any(|o| o.op == Op::write("x", "2")));
    assert!(v.to_string().contains("must take effect"), "{v}");
}

/// An acknowledged write disappears: a later, non-overlapping read by
/// another client sees the value from before it, and nobody else wrote.
#[test]
fn lost_write_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 0, Op::write("x", "2"), W);
    seq(&mut b, 1, Op::read("x"), read(Some("1")));
    assert_violation(&b);

    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 1, Op::read("x"), read(None));
    let v = assert_violation(&b);
    assert_eq!(v.value_after_prefix.as_deref(), Some("1"));
}

/// A retried CAS applied twice: two sequential CASes from the same value
/// both report success.
#[test]
fn double_applied_cas_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 0, Op::cas("x", Some("1"), "2"), cas(true));
    seq(&mut b, 1, Op::cas("x", Some("1"), "2"), cas(true));
    assert_violation(&b);
}

/// INCR built from CAS: two clients read 5 and both CAS 5 -> 6 while
/// overlapping; both cannot succeed.
#[test]
fn concurrent_increments_both_succeeding_are_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "5"), W);
    b.invoke(0, Op::cas("x", Some("5"), "6"));
    b.invoke(1, Op::cas("x", Some("5"), "6"));
    b.ok(0, cas(true));
    b.ok(1, cas(true));
    assert_violation(&b);
}

/// A write applied twice (a retry replayed after another write): reads see
/// A, then B, then A again, with only one write of A, all while both
/// writes are in flight.
#[test]
fn write_applied_twice_is_rejected() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, Op::write("x", "A"));
    b.invoke(1, Op::write("x", "B"));
    seq(&mut b, 2, Op::read("x"), read(Some("A")));
    seq(&mut b, 2, Op::read("x"), read(Some("B")));
    seq(&mut b, 2, Op::read("x"), read(Some("A")));
    b.ok(0, W);
    b.ok(1, W);
    assert_violation(&b);

    // Control: the same reads with A written twice are fine.
    let mut b = HistoryBuilder::new();
    b.invoke(0, Op::write("x", "A"));
    b.invoke(1, Op::write("x", "B"));
    b.invoke(3, Op::write("x", "A"));
    seq(&mut b, 2, Op::read("x"), read(Some("A")));
    seq(&mut b, 2, Op::read("x"), read(Some("B")));
    seq(&mut b, 2, Op::read("x"), read(Some("A")));
    b.ok(0, W);
    b.ok(1, W);
    b.ok(3, W);
    assert_linearizable(&b);
}

#[test]
fn read_of_never_written_value_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    // "2" is written, but to another key.
    seq(&mut b, 0, Op::write("y", "2"), W);
    seq(&mut b, 1, Op::read("x"), read(Some("2")));
    let v = assert_violation(&b);
    assert_eq!(v.key, "x");
}

#[test]
fn cas_true_with_different_current_value_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 1, Op::cas("x", Some("2"), "3"), cas(true));
    assert_violation(&b);

    // "Only if absent" on a present key.
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 1, Op::cas("x", None, "3"), cas(true));
    assert_violation(&b);
}

#[test]
fn cas_false_although_value_matched_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    seq(&mut b, 1, Op::cas("x", Some("1"), "3"), cas(false));
    assert_violation(&b);
}

#[test]
fn wrong_delete_count_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::delete("x"), deleted(1));
    assert_violation(&b);

    // Without a recorded count the delete is not held to one.
    let mut b = HistoryBuilder::new();
    seq(
        &mut b,
        0,
        Op::delete("x"),
        OpResult::Delete { deleted: None },
    );
    assert_linearizable(&b);
}

/// `fail` means "definitely did not happen": seeing its value is a bug.
#[test]
fn observed_failed_write_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 0, Op::write("x", "1"), W);
    b.invoke(0, Op::write("x", "2"));
    b.fail(0);
    seq(&mut b, 1, Op::read("x"), read(Some("2")));
    assert_violation(&b);
}

/// An indeterminate write cannot take effect before it was invoked.
#[test]
fn indeterminate_write_seen_before_its_invocation_is_rejected() {
    let mut b = HistoryBuilder::new();
    seq(&mut b, 1, Op::read("x"), read(Some("2")));
    b.invoke(0, Op::write("x", "2"));
    b.info(0);
    assert_violation(&b);
}

/// Two completed writes, then reads that disagree on their order.
#[test]
fn reads_disagreeing_on_write_order_are_rejected() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, Op::write("x", "a"));
    b.invoke(1, Op::write("x", "b"));
    b.ok(0, W);
    b.ok(1, W);
    seq(&mut b, 2, Op::read("x"), read(Some("b")));
    seq(&mut b, 2, Op::read("x"), read(Some("a")));
    assert_violation(&b);
}

// ---- budget and composition ----

#[test]
fn state_budget_yields_unknown() {
    let mut b = HistoryBuilder::new();
    for i in 0..50 {
        seq(&mut b, 0, Op::write("x", i.to_string()), W);
    }
    let h = build(&b);
    let limits = Limits {
        max_states: Some(10),
        max_time: None,
    };
    assert_eq!(
        check_with(&h, limits),
        CheckResult::Unknown {
            key: "x".into(),
            reason: Exhausted::States
        }
    );
    assert!(check_with(&h, Limits::unlimited()).is_linearizable());
}

#[test]
fn time_budget_yields_unknown() {
    let cfg = GenConfig {
        ops: 3000,
        keys: 1,
        ..GenConfig::default()
    };
    let h = linearizable_history(&mut rand_seed(7), &cfg);
    let limits = Limits {
        max_states: None,
        max_time: Some(Duration::ZERO),
    };
    assert!(matches!(
        check_with(&h, limits),
        CheckResult::Unknown {
            reason: Exhausted::Time,
            ..
        }
    ));
}

/// A violation on one key is reported even when another key ran out of
/// budget, and the report covers every key.
#[test]
fn violation_wins_over_unknown() {
    let mut b = HistoryBuilder::new();
    for i in 0..50 {
        seq(&mut b, 0, Op::write("a", i.to_string()), W);
    }
    seq(&mut b, 0, Op::write("b", "1"), W);
    seq(&mut b, 0, Op::read("b"), read(Some("0")));
    let limits = Limits {
        max_states: Some(10),
        max_time: None,
    };
    let report = check_report(&build(&b), limits);
    assert!(report.result.is_violation(), "{}", report.result);
    let verdicts: Vec<_> = report.keys.iter().map(|k| k.verdict).collect();
    assert_eq!(
        verdicts,
        [
            KeyVerdict::Unknown(Exhausted::States),
            KeyVerdict::NotLinearizable
        ]
    );
}

/// The generator's histories are linearizable by construction; a checker
/// that rejects them is too strict.
#[test]
fn generated_histories_are_linearizable() {
    for seed in 0..5 {
        let cfg = GenConfig {
            ops: 500,
            values: Some(3),
            info_rate: 0.05,
            fail_rate: 0.05,
            ..GenConfig::default()
        };
        let h = linearizable_history(&mut rand_seed(seed), &cfg);
        let result = check_with(&h, Limits::unlimited());
        assert!(result.is_linearizable(), "seed {seed}: {result}");
    }
}

fn rand_seed(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}
