//! The JSON-lines history format: what parses, what round-trips, and that
//! every refusal names the offending line.

use proptest::prelude::*;
use rand::SeedableRng;
use synod_linearizability::generate::{linearizable_history, GenConfig};
use synod_linearizability::{
    check, Error, Event, EventKind, History, Op, OpResult, Outcome, Problem,
};

fn parse(text: &str) -> Result<History, Error> {
    History::from_jsonl(text.as_bytes())
}

fn round_trip(history: &History) -> History {
    let mut out = Vec::new();
    history.to_jsonl(&mut out).expect("write to a Vec");
    History::from_jsonl(out.as_slice()).expect("own output parses")
}

/// The example in the crate docs, verbatim.
const DOC_EXAMPLE: &str = r#"{"type":"invoke","process":0,"id":0,"op":{"f":"write","key":"x","value":"1"}}
{"type":"invoke","process":1,"id":1,"op":{"f":"read","key":"x"}}
{"type":"ok","process":0,"id":0,"result":{"f":"write"}}
{"type":"ok","process":1,"id":1,"result":{"f":"read","value":"1"}}
{"type":"invoke","process":0,"id":2,"op":{"f":"cas","key":"x","expected":"1","new":"2"}}
{"type":"info","process":0,"id":2,"error":"timeout"}
{"type":"invoke","process":1,"id":3,"op":{"f":"cas","key":"y","expected":null,"new":"a"}}
{"type":"ok","process":1,"id":3,"result":{"f":"cas","swapped":true}}
{"type":"invoke","process":1,"id":4,"op":{"f":"delete","key":"y"}}
{"type":"fail","process":1,"id":4}
"#;

#[test]
fn doc_example_parses_and_is_linearizable() {
    let h = parse(DOC_EXAMPLE).expect("doc example parses");
    let ops = h.operations();
    assert_eq!(ops.len(), 5);
    assert_eq!(ops[0].op, Op::write("x", "1"));
    assert_eq!(ops[1].outcome, Outcome::Ok(OpResult::read(Some("1"))));
    assert_eq!(ops[2].op, Op::cas("x", Some("1"), "2"));
    assert_eq!(ops[2].outcome, Outcome::Info);
    assert_eq!(ops[3].op, Op::cas("y", None, "a"));
    assert_eq!(ops[4].outcome, Outcome::Fail);
    assert_eq!((ops[1].invoked_at, ops[1].completed_at), (1, Some(3)));
    assert_eq!(ops[4].line, 9);
    assert!(check(&h).is_linearizable());
    assert_eq!(round_trip(&h), h);
}

#[test]
fn extra_event_fields_are_ignored() {
    let text = r#"{"type":"invoke","process":0,"id":0,"node":"n1","op":{"f":"read","key":"x"}}
{"type":"ok","process":0,"id":0,"latency_us":12,"result":{"f":"read","value":null}}"#;
    let h = parse(text).expect("parses");
    assert_eq!(h.operations()[0].outcome, Outcome::Ok(OpResult::read(None)));
}

#[test]
fn generated_history_round_trips() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let cfg = GenConfig {
        ops: 300,
        info_rate: 0.05,
        ..GenConfig::default()
    };
    let h = linearizable_history(&mut rng, &cfg);
    assert!(h.operations().iter().any(|o| o.outcome == Outcome::Info));
    assert!(h.operations().iter().any(|o| o.outcome == Outcome::Fail));
    assert_eq!(round_trip(&h), h);
}

#[test]
fn pending_ops_round_trip_and_stay_pending() {
    let text = r#"{"type":"invoke","process":7,"id":70,"op":{"f":"write","key":"k","value":"v"}}"#;
    let h = parse(text).expect("parses");
    assert_eq!(h.operations()[0].outcome, Outcome::Pending);
    assert_eq!(round_trip(&h), h);
}

/// With `time_ns` on every event the timestamps, not the lines, give real
/// time: here line order would make the read stale, time order makes it
/// concurrent with the write.
#[test]
fn time_ns_orders_events() {
    let text = r#"{"type":"invoke","process":0,"id":0,"op":{"f":"write","key":"x","value":"1"},"time_ns":10}
{"type":"ok","process":0,"id":0,"result":{"f":"write"},"time_ns":30}
{"type":"invoke","process":1,"id":1,"op":{"f":"read","key":"x"},"time_ns":20}
{"type":"ok","process":1,"id":1,"result":{"f":"read","value":null},"time_ns":40}
"#;
    let h = parse(text).expect("parses");
    let times: Vec<_> = h.events().iter().map(|e| e.time_ns).collect();
    assert_eq!(times, [Some(10), Some(20), Some(30), Some(40)]);
    assert_eq!(h.lines(), [1, 3, 2, 4]);
    assert!(check(&h).is_linearizable());
    assert_eq!(round_trip(&h), h);

    // The same events without timestamps: line order, and a stale read.
    let untimed: Vec<Event> = h
        .events()
        .iter()
        .cloned()
        .map(|mut e| {
            e.time_ns = None;
            e
        })
        .collect();
    let mut by_line = untimed;
    by_line.swap(1, 2);
    let h = History::from_events(by_line).expect("well formed");
    assert!(check(&h).is_violation());
}

fn invalid(text: &str) -> (usize, Problem) {
    match parse(text) {
        Err(Error::Invalid { line, problem }) => (line, problem),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn malformed_line(text: &str) -> usize {
    match parse(text) {
        Err(e @ Error::Malformed { .. }) => {
            assert!(e.to_string().starts_with(&format!("line {}:", e.line())));
            e.line()
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

const W0: &str = r#"{"type":"invoke","process":0,"id":0,"op":{"f":"write","key":"x","value":"1"}}"#;

#[test]
fn malformed_lines_are_named() {
    // Blank lines count toward line numbers.
    assert_eq!(malformed_line(&format!("{W0}\n\n{{not json\n")), 3);
    assert_eq!(
        malformed_line(r#"{"type":"invoke","process":0,"id":0,"op":{"f":"incr","key":"x"}}"#),
        1
    );
    assert_eq!(
        malformed_line(&format!("{W0}\n{{\"type\":\"ok\",\"process\":0,\"id\":0}}")),
        2
    );
    assert_eq!(malformed_line(r#"{"type":"bogus","process":0,"id":0}"#), 1);
    assert_eq!(
        malformed_line(r#"{"type":"invoke","process":-1,"id":0,"op":{"f":"read","key":"x"}}"#),
        1
    );
    // A misspelt field of an op is refused, not defaulted.
    assert_eq!(
        malformed_line(
            r#"{"type":"invoke","process":0,"id":0,"op":{"f":"write","key":"x","vaule":"1"}}"#
        ),
        1
    );
}

#[test]
fn completion_without_invocation_is_refused() {
    let (line, problem) = invalid(&format!(
        "{W0}\n{}",
        r#"{"type":"ok","process":1,"id":0,"result":{"f":"write"}}"#
    ));
    assert_eq!(line, 2);
    assert_eq!(problem, Problem::NoOpenInvocation { process: 1, id: 0 });

    let (line, problem) = invalid(&format!(
        "{W0}\n{}",
        r#"{"type":"fail","process":0,"id":5}"#
    ));
    assert_eq!(
        (line, problem),
        (2, Problem::NoOpenInvocation { process: 0, id: 5 })
    );

    // Completing twice: the second completion has nothing open.
    let ok = r#"{"type":"ok","process":0,"id":0,"result":{"f":"write"}}"#;
    let (line, _) = invalid(&format!("{W0}\n{ok}\n\n{ok}"));
    assert_eq!(line, 4);
}

#[test]
fn second_open_op_of_a_process_is_refused() {
    let second = r#"{"type":"invoke","process":0,"id":1,"op":{"f":"read","key":"x"}}"#;
    let (line, problem) = invalid(&format!("{W0}\n{second}"));
    assert_eq!(line, 2);
    assert_eq!(
        problem,
        Problem::ProcessBusy {
            process: 0,
            id: 1,
            open: 0
        }
    );
}

#[test]
fn reused_op_id_is_refused() {
    let again = r#"{"type":"invoke","process":1,"id":0,"op":{"f":"read","key":"x"}}"#;
    assert_eq!(
        invalid(&format!("{W0}\n{again}")),
        (2, Problem::DuplicateId { id: 0 })
    );
}

#[test]
fn result_of_another_kind_is_refused() {
    let ok = r#"{"type":"ok","process":0,"id":0,"result":{"f":"cas","swapped":true}}"#;
    let (line, problem) = invalid(&format!("{W0}\n{ok}"));
    assert_eq!(line, 2);
    assert_eq!(
        problem,
        Problem::ResultMismatch {
            id: 0,
            op: "write",
            result: "cas"
        }
    );
    let msg = parse(&format!("{W0}\n{ok}")).unwrap_err().to_string();
    assert!(msg.starts_with("line 2:"), "{msg}");
}

#[test]
fn impossible_delete_count_is_refused() {
    let del = r#"{"type":"invoke","process":0,"id":0,"op":{"f":"delete","key":"x"}}
{"type":"ok","process":0,"id":0,"result":{"f":"delete","deleted":2}}"#;
    assert_eq!(
        invalid(del),
        (2, Problem::BadDeleteCount { id: 0, deleted: 2 })
    );
}

#[test]
fn mixed_timestamps_are_refused() {
    let ok = r#"{"type":"ok","process":0,"id":0,"result":{"f":"write"},"time_ns":5}"#;
    assert_eq!(
        invalid(&format!("{W0}\n{ok}")),
        (2, Problem::MixedTimestamps)
    );
}

#[test]
fn empty_input_is_an_empty_history() {
    let h = parse("\n\n").expect("parses");
    assert!(h.is_empty());
    assert!(check(&h).is_linearizable());
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9\"\\\\\n ]{0,8}"]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        arb_value().prop_map(|key| Op::Read { key }),
        (arb_value(), arb_value()).prop_map(|(key, value)| Op::Write { key, value }),
        (arb_value(), proptest::option::of(arb_value()), arb_value())
            .prop_map(|(key, expected, new)| Op::Cas { key, expected, new }),
        arb_value().prop_map(|key| Op::Delete { key }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any keys and values, including quotes, newlines and non-ASCII,
    /// survive a write and a read of the JSON lines.
    #[test]
    fn arbitrary_strings_round_trip(
        ops in proptest::collection::vec((arb_op(), proptest::option::of(arb_value()), any::<bool>()), 0..8),
        timed in any::<bool>(),
    ) {
        let mut events = Vec::new();
        for (i, (op, read_value, swapped)) in ops.into_iter().enumerate() {
            let id = i as u64;
            let result = match &op {
                Op::Read { .. } => OpResult::Read { value: read_value },
                Op::Write { .. } => OpResult::Write,
                Op::Cas { .. } => OpResult::Cas { swapped },
                Op::Delete { .. } => OpResult::Delete { deleted: Some(u64::from(swapped)) },
            };
            events.push(Event::invoke(i as u64 % 3, id, op));
            events.push(Event {
                process: i as u64 % 3,
                id,
                time_ns: None,
                kind: if swapped { EventKind::Ok { result } } else { EventKind::Info { error: Some("timeout\n".into()) } },
            });
        }
        if timed {
            for (t, e) in events.iter_mut().enumerate() {
                e.time_ns = Some(t as u64 * 7);
            }
        }
        let h = History::from_events(events).expect("well formed");
        prop_assert_eq!(round_trip(&h), h);
    }

    /// Arbitrary text never panics the parser; a refusal names a line that
    /// exists.
    #[test]
    fn garbage_is_refused_with_a_line(text in "[ -~\n]{0,200}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.line() >= 1 && e.line() <= text.lines().count().max(1));
        }
    }
}
