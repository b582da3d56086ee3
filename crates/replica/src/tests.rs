use super::*;
use synod_types::Ballot;

/// A state machine that records what it applied: enough to see order and
/// duplicates.
#[derive(Default)]
struct Log(Vec<u64>);

impl StateMachine for Log {
    type Command = u64;
    type Output = usize;
    fn apply(&mut self, c: u64) -> usize {
        self.0.push(c);
        self.0.len()
    }
    fn digest(&self) -> u64 {
        self.0.iter().sum()
    }
}

fn n(s: &str) -> NodeId {
    NodeId::new(s)
}
fn replica() -> Replica<Log> {
    Replica::new(
        vec![n("p1"), n("p2")],
        vec![n("l1")],
        ReplicaConfig::default(),
        Log::default(),
    )
}
fn op(x: u64) -> Bytes {
    synod_codec::encode(&x).unwrap().into()
}
fn cmd(client: u64, seq: u64, x: u64) -> Command {
    Command {
        client: ClientId(client),
        seq,
        op: op(x),
    }
}
fn decide(r: &mut Replica<Log>, slot: Slot, cmds: Vec<Command>) -> Output {
    r.handle(
        n("l1"),
        ReplicaMsg::Decide {
            slot,
            ballot: Ballot::new(1, n("p2")),
            value: Value::Batch(cmds),
        },
    )
}

#[test]
fn waits_for_gaps_and_applies_in_slot_order() {
    let mut r = replica();
    decide(&mut r, 2, vec![cmd(1, 3, 30)]);
    decide(&mut r, 1, vec![cmd(1, 2, 20)]);
    assert_eq!(
        r.state().0,
        Vec::<u64>::new(),
        "slot 0 missing: nothing applied"
    );
    assert_eq!(r.slot_out(), 0);
    r.handle(
        n("l1"),
        ReplicaMsg::Decide {
            slot: 0,
            ballot: Ballot::new(1, n("p2")),
            value: Value::Noop,
        },
    );
    assert_eq!(r.state().0, vec![20, 30]);
    assert_eq!(r.slot_out(), 3);
}

#[test]
fn duplicate_commands_apply_once_and_retries_get_the_same_answer() {
    let mut r = replica();
    let out = r.handle_request(ClientId(5), 1, op(7));
    assert_eq!(out.send.len(), 1);
    // The command is chosen twice (a retry and a view change).
    let out = decide(&mut r, 0, vec![cmd(5, 1, 7), cmd(6, 1, 8)]);
    assert_eq!(
        out.replies,
        vec![Reply {
            client: ClientId(5),
            seq: 1,
            output: Some(op_out(1))
        }]
    );
    decide(&mut r, 1, vec![cmd(5, 1, 7)]);
    assert_eq!(r.state().0, vec![7, 8], "second copy ignored");
    // A client retry after the fact is answered from the session table.
    let out = r.handle_request(ClientId(5), 1, op(7));
    assert!(out.send.is_empty());
    assert_eq!(
        out.replies,
        vec![Reply {
            client: ClientId(5),
            seq: 1,
            output: Some(op_out(1))
        }]
    );
}

fn op_out(x: usize) -> Bytes {
    synod_codec::encode(&x).unwrap().into()
}

#[test]
fn unapplied_requests_are_retried_through_other_proposers() {
    let mut r = replica();
    let first = r.handle_request(ClientId(1), 1, op(1));
    let mut targets = vec![first.send[0].0.clone()];
    for _ in 0..(3 * ReplicaConfig::default().retry_ticks) {
        for (to, m) in r.tick().send {
            if matches!(m, Message::Proposer(ProposerMsg::Propose { .. })) {
                targets.push(to);
            }
        }
    }
    assert!(
        targets.contains(&n("p1")) && targets.contains(&n("p2")),
        "{targets:?}"
    );
    decide(&mut r, 0, vec![cmd(1, 1, 1)]);
    assert_eq!(r.pending(), 0);
}

#[test]
fn gap_triggers_catch_up_from_first_missing_slot() {
    let mut r = replica();
    decide(&mut r, 0, vec![]);
    for _ in 0..50 {
        r.tick();
    }
    decide(&mut r, 5, vec![]);
    let asked: Vec<Message> = (0..3).flat_map(|_| r.tick().send).map(|(_, m)| m).collect();
    assert!(
        asked.contains(&Message::Learner(LearnerMsg::CatchUp { from_slot: 1 })),
        "{asked:?}"
    );
}

#[test]
fn catch_up_batches_apply_and_ask_for_more() {
    let mut r = replica();
    let b = Ballot::new(1, n("p1"));
    let out = r.handle(
        n("l9"),
        ReplicaMsg::Decisions {
            entries: vec![
                (0, b.clone(), Value::Batch(vec![cmd(1, 1, 4)])),
                (1, b, Value::Noop),
            ],
            more: true,
        },
    );
    assert_eq!(r.state().0, vec![4]);
    assert_eq!(
        out.send,
        vec![(
            n("l9"),
            Message::Learner(LearnerMsg::CatchUp { from_slot: 2 })
        )]
    );
}

#[test]
fn undecodable_command_is_skipped_with_empty_answer() {
    let mut r = replica();
    r.handle_request(ClientId(1), 1, Bytes::from_static(&[0xff, 0xff, 0xff]));
    let out = decide(
        &mut r,
        0,
        vec![Command {
            client: ClientId(1),
            seq: 1,
            op: Bytes::from_static(&[0xff, 0xff, 0xff]),
        }],
    );
    assert_eq!(out.replies[0].output, None);
    assert!(r.state().0.is_empty());
}

#[test]
fn a_later_request_supersedes_an_unapplied_earlier_one() {
    let mut r = replica();
    r.handle_request(ClientId(3), 1, op(1));
    r.handle_request(ClientId(3), 2, op(2));
    let out = decide(&mut r, 0, vec![cmd(3, 2, 2)]);
    assert_eq!(
        out.replies,
        vec![
            Reply {
                client: ClientId(3),
                seq: 1,
                output: None
            },
            Reply {
                client: ClientId(3),
                seq: 2,
                output: Some(op_out(1))
            },
        ]
    );
    assert_eq!(r.pending(), 0);
    decide(&mut r, 1, vec![cmd(3, 1, 1)]);
    assert_eq!(r.state().0, vec![2], "the superseded request never applies");
}
