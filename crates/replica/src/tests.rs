use super::*;
use synod_types::{Ballot, Topology};

/// A state machine that records what it applied: enough to see order and
/// duplicates. Command 0 is a read: it answers how many commands were
/// applied, without changing anything.
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
    fn snapshot(&self) -> Vec<u8> {
        synod_codec::encode(&self.0).unwrap()
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = synod_codec::decode(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
    fn query(&self, c: &u64) -> Option<usize> {
        (*c == 0).then_some(self.0.len())
    }
    fn is_read_only(&self, c: &u64) -> bool {
        *c == 0
    }
}

fn n(s: &str) -> NodeId {
    NodeId::new(s)
}
fn topology() -> Topology {
    Topology {
        proposers: vec![n("p1"), n("p2")],
        acceptors: vec![],
        learners: vec![n("l1")],
        replicas: vec![n("r1"), n("r2")],
    }
}
fn small_snapshots() -> ReplicaConfig {
    ReplicaConfig {
        snapshot_every: 4,
        chunk_bytes: 3,
        ..ReplicaConfig::default()
    }
}
fn replica() -> Replica<Log> {
    Replica::new(
        &n("r1"),
        &topology(),
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
            output: Answer::Output(op_out(1))
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
            output: Answer::Output(op_out(1))
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
    assert_eq!(out.replies[0].output, Answer::NoAnswer);
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
                output: Answer::NoAnswer
            },
            Reply {
                client: ClientId(3),
                seq: 2,
                output: Answer::Output(op_out(1))
            },
        ]
    );
    assert_eq!(r.pending(), 0);
    decide(&mut r, 1, vec![cmd(3, 1, 1)]);
    assert_eq!(r.state().0, vec![2], "the superseded request never applies");
}

#[test]
fn snapshots_are_taken_periodically_and_announced_once_durable() {
    let mut r = Replica::new(&n("r1"), &topology(), small_snapshots(), Log::default());
    let mut snaps = Vec::new();
    for slot in 0..9 {
        let out = decide(&mut r, slot, vec![cmd(1, slot + 1, slot)]);
        snaps.extend(out.snapshot);
    }
    // At slot 4; the next one waits until the first is durable.
    assert_eq!(snaps.iter().map(|s| s.slot).collect::<Vec<_>>(), vec![4]);
    let out = r.snapshot_durable(snaps[0].clone());
    assert_eq!(r.snapshot_slot(), 4);
    assert!(out.send.contains(&(
        n("p1"),
        Message::Proposer(ProposerMsg::SnapshotTaken { slot: 4 })
    )));
    let out = decide(&mut r, 9, vec![]);
    assert_eq!(out.snapshot.map(|s| s.slot), Some(10));
}

#[test]
fn restore_brings_back_state_and_sessions() {
    let mut r = Replica::new(&n("r1"), &topology(), small_snapshots(), Log::default());
    r.handle_request(ClientId(5), 1, op(7));
    let mut snap = None;
    for slot in 0..4 {
        let cmds = if slot == 0 {
            vec![cmd(5, 1, 7)]
        } else {
            vec![]
        };
        snap = snap.or(decide(&mut r, slot, cmds).snapshot);
    }
    let snap = snap.expect("snapshot at slot 4");
    let mut back = Replica::restore(
        &n("r1"),
        &topology(),
        small_snapshots(),
        Log::default(),
        snap.data,
    )
    .unwrap();
    assert_eq!((back.slot_out(), back.state().0.clone()), (4, vec![7]));
    // The session table came along: a late duplicate is not applied again,
    // and a client retry is answered from it.
    decide(&mut back, 4, vec![cmd(5, 1, 7)]);
    assert_eq!(back.state().0, vec![7]);
    let out = back.handle_request(ClientId(5), 1, op(7));
    assert_eq!(out.replies[0].output, Answer::Output(op_out(1)));
    assert!(Replica::restore(
        &n("r1"),
        &topology(),
        small_snapshots(),
        Log::default(),
        Bytes::from_static(b"junk")
    )
    .is_err());
}

/// Moves every message between two replicas until nothing is left.
fn pump(
    a: &mut Replica<Log>,
    b: &mut Replica<Log>,
    mut msgs: Vec<(NodeId, Message)>,
    from: NodeId,
) -> (usize, Vec<Snapshot>) {
    let (mut chunks, mut snaps) = (0, Vec::new());
    let mut sender = from;
    while !msgs.is_empty() {
        let mut next = Vec::new();
        for (to, m) in msgs {
            if let Message::Replica(rm) = m {
                if matches!(rm, ReplicaMsg::SnapshotChunk { .. }) {
                    chunks += 1;
                }
                let target = if to == n("r1") { &mut *a } else { &mut *b };
                let out = target.handle(sender.clone(), rm);
                snaps.extend(out.snapshot);
                next.extend(
                    out.send
                        .into_iter()
                        .filter(|(_, m)| matches!(m, Message::Replica(_))),
                );
            }
        }
        sender = if sender == n("r1") { n("r2") } else { n("r1") };
        msgs = next;
    }
    (chunks, snaps)
}

/// Replica `r2`, having applied slots 0..4 (client 9's ops 100..103) and
/// snapshotted them durably.
fn four_slots_snapshotted(cfg: &ReplicaConfig) -> Replica<Log> {
    let mut ahead = Replica::new(&n("r2"), &topology(), cfg.clone(), Log::default());
    for slot in 0..4 {
        if let Some(s) = decide(&mut ahead, slot, vec![cmd(9, slot + 1, 100 + slot)]).snapshot {
            ahead.snapshot_durable(s);
        }
    }
    ahead
}

#[test]
fn a_replica_behind_compaction_installs_a_peer_snapshot_in_chunks() {
    let cfg = small_snapshots();
    let mut ahead = four_slots_snapshotted(&cfg);
    let mut behind = Replica::new(&n("r1"), &topology(), cfg, Log::default());
    behind.handle_request(ClientId(9), 2, op(101));
    let out = behind.handle(n("l1"), ReplicaMsg::Compacted { below: 4 });
    assert_eq!(
        out.send,
        vec![(
            n("r2"),
            Message::Replica(ReplicaMsg::SnapshotRequest { slot: 0, offset: 0 })
        )]
    );
    let (chunks, snaps) = pump(&mut behind, &mut ahead, out.send, n("r1"));
    assert!(chunks > 3, "transfer in several chunks: {chunks}");
    assert_eq!(behind.slot_out(), 4);
    assert_eq!(behind.state().0, vec![100, 101, 102, 103]);
    assert_eq!(behind.state().digest(), ahead.state().digest());
    assert_eq!(
        snaps.iter().map(|s| s.slot).collect::<Vec<_>>(),
        vec![4],
        "installed snapshot is persisted too"
    );
    assert_eq!(
        behind.pending(),
        0,
        "request applied inside the snapshot is answered"
    );
    // Until the shell says the installed image is durable, it is not ours
    // to announce: the proposers would compact the log below it.
    assert_eq!(behind.snapshot_slot(), 0);
    behind.snapshot_failed();
    let announced = |out: &Output| {
        out.send
            .iter()
            .any(|(_, m)| matches!(m, Message::Proposer(ProposerMsg::SnapshotTaken { slot: 4 })))
    };
    assert!(!(0..300).any(|_| announced(&behind.tick())));
    let out = behind.snapshot_durable(snaps[0].clone());
    assert!(announced(&out));
    assert_eq!(behind.snapshot_slot(), 4);
}

#[test]
fn an_installed_snapshot_is_kept_under_the_slot_its_image_covers() {
    // A broken peer labels its chunks with slot 9 while the image inside
    // covers slot 4. Reporting slot 9 as durable would let the log below
    // 9 be compacted though slots 4..9 are applied nowhere here.
    let cfg = small_snapshots();
    let mut ahead = four_slots_snapshotted(&cfg);
    let mut behind = Replica::new(&n("r1"), &topology(), cfg, Log::default());
    let mut msgs = behind
        .handle(n("l1"), ReplicaMsg::Compacted { below: 10 })
        .send;
    let mut saved = Vec::new();
    for _ in 0..100 {
        let Some(ReplicaMsg::SnapshotRequest { offset, .. }) =
            msgs.iter().find_map(|(_, m)| match m {
                Message::Replica(r @ ReplicaMsg::SnapshotRequest { .. }) => Some(r.clone()),
                _ => None,
            })
        else {
            break;
        };
        let served = ahead.handle(n("r1"), ReplicaMsg::SnapshotRequest { slot: 4, offset });
        let chunk = served.send.into_iter().find_map(|(_, m)| match m {
            Message::Replica(ReplicaMsg::SnapshotChunk {
                offset,
                total,
                data,
                ..
            }) => Some(ReplicaMsg::SnapshotChunk {
                slot: 9,
                offset,
                total,
                data,
            }),
            _ => None,
        });
        let Some(chunk) = chunk else { break };
        let out = behind.handle(n("r2"), chunk);
        saved.extend(out.snapshot);
        msgs = out.send;
    }
    assert_eq!(behind.slot_out(), 4);
    assert_eq!(saved.iter().map(|s| s.slot).collect::<Vec<_>>(), vec![4]);
}

#[test]
fn a_lost_chunk_is_asked_for_again_and_a_duplicate_is_ignored() {
    let cfg = small_snapshots();
    let retry = cfg.retry_ticks;
    let mut ahead = four_slots_snapshotted(&cfg);
    let mut behind = Replica::new(&n("r1"), &topology(), cfg, Log::default());
    let serve = |ahead: &mut Replica<Log>, out: Vec<(NodeId, Message)>| -> Vec<ReplicaMsg> {
        out.into_iter()
            .filter_map(|(to, m)| match m {
                Message::Replica(rm @ ReplicaMsg::SnapshotRequest { .. }) if to == n("r2") => {
                    Some(rm)
                }
                _ => None,
            })
            .flat_map(|rm| ahead.handle(n("r1"), rm).send)
            .filter_map(|(_, m)| match m {
                Message::Replica(c @ ReplicaMsg::SnapshotChunk { .. }) => Some(c),
                _ => None,
            })
            .collect()
    };
    let out = behind.handle(n("l1"), ReplicaMsg::Compacted { below: 4 });
    let first = serve(&mut ahead, out.send);
    let out = behind.handle(n("r2"), first[0].clone());
    let second = serve(&mut ahead, out.send);
    // The second chunk is lost. The stalled download re-asks the same peer
    // at the same offset rather than starting over elsewhere.
    let mut resent = Vec::new();
    for _ in 0..=retry + 1 {
        resent.extend(serve(&mut ahead, behind.tick().send));
    }
    assert_eq!(resent, second, "the lost chunk, asked for again");
    let out = behind.handle(n("r2"), resent[0].clone());
    // A late copy of a chunk already taken changes nothing.
    let dup = behind.handle(n("r2"), first[0].clone());
    assert!(dup.send.is_empty(), "{:?}", dup.send);
    let (_, _) = pump(&mut behind, &mut ahead, out.send, n("r1"));
    assert_eq!(behind.slot_out(), 4);
    assert_eq!(behind.state().0, vec![100, 101, 102, 103]);
}

#[test]
fn a_download_survives_newer_snapshots_on_the_serving_side() {
    let cfg = small_snapshots();
    let mut ahead = Replica::new(&n("r2"), &topology(), cfg.clone(), Log::default());
    let mut slot = 0;
    let mut advance = |ahead: &mut Replica<Log>, n_slots: u64| {
        for _ in 0..n_slots {
            if let Some(s) = decide(ahead, slot, vec![cmd(9, slot + 1, slot)]).snapshot {
                ahead.snapshot_durable(s);
            }
            slot += 1;
        }
    };
    advance(&mut ahead, 4);
    let mut behind = Replica::new(&n("r1"), &topology(), cfg, Log::default());
    let mut msgs = behind
        .handle(n("l1"), ReplicaMsg::Compacted { below: 4 })
        .send;
    // Between every chunk the serving replica takes a newer snapshot.
    for _ in 0..50 {
        let Some((_, Message::Replica(req))) = msgs.pop() else {
            break;
        };
        let reply = ahead.handle(n("r1"), req).send;
        advance(&mut ahead, 4);
        let Some((_, Message::Replica(chunk))) = reply.into_iter().next() else {
            break;
        };
        msgs = behind.handle(n("r2"), chunk).send;
        msgs.retain(|(to, _)| *to == n("r2"));
    }
    assert_eq!(
        behind.slot_out(),
        4,
        "the download of the slot-4 snapshot completed"
    );
}

fn read_index_asks(out: &Output) -> Vec<(NodeId, Vec<u64>)> {
    out.send
        .iter()
        .filter_map(|(to, m)| match m {
            Message::Proposer(ProposerMsg::ReadIndex { ids }) => Some((to.clone(), ids.clone())),
            _ => None,
        })
        .collect()
}

fn output(reply: &Reply) -> usize {
    match &reply.output {
        Answer::Output(b) => synod_codec::decode(b).unwrap(),
        other => panic!("no output: {other:?}"),
    }
}

/// A proposer's answer to a `ReadIndex` request.
fn read_index(r: &mut Replica<Log>, from: &str, ids: Vec<u64>, index: Slot) -> Output {
    r.handle(n(from), ReplicaMsg::ReadIndex { ids, index })
}

#[test]
fn reads_wait_for_the_index_then_for_the_log_up_to_it() {
    let mut r = replica();
    decide(&mut r, 0, vec![cmd(1, 1, 10)]);
    let out = r.handle_request(ClientId(2), 1, op(0));
    assert!(
        out.replies.is_empty(),
        "no answer before the leader's index"
    );
    let asks = read_index_asks(&out);
    assert_eq!(asks.len(), 1, "a read goes to a proposer, not into the log");
    assert!(!out
        .send
        .iter()
        .any(|(_, m)| matches!(m, Message::Proposer(ProposerMsg::Propose { .. }))));
    // A second read while the first request is out rides on the next one.
    let out = r.handle_request(ClientId(3), 1, op(0));
    assert!(read_index_asks(&out).is_empty());
    // Index 3: slots 1 and 2 must be applied first.
    let out = read_index(&mut r, "p1", asks[0].1.clone(), 3);
    assert!(out.replies.is_empty());
    let next = read_index_asks(&out);
    assert_eq!(next.len(), 1, "the waiting read is asked about now");
    decide(&mut r, 2, vec![cmd(1, 3, 30)]);
    assert!(r.pending() == 2);
    let out = decide(&mut r, 1, vec![cmd(1, 2, 20)]);
    assert_eq!(out.replies.len(), 1);
    assert_eq!(out.replies[0].client, ClientId(2));
    assert_eq!(output(&out.replies[0]), 3, "the read sees slots 0..3");
    // The second read's index is already applied: answered at once.
    let out = read_index(&mut r, "p1", next[0].1.clone(), 2);
    assert_eq!(out.replies.len(), 1);
    assert_eq!(out.replies[0].client, ClientId(3));
    assert_eq!(output(&out.replies[0]), 3);
    assert_eq!(r.pending(), 0);
    assert_eq!(r.state().0, vec![10, 20, 30], "reads are not applied");
}

/// Found by the simulator (seed 70013223, `--stress`): the index came from
/// a leader deposed before its last slot was chosen, no later leader ever
/// filled that slot, and with no writes the read waited forever.
#[test]
fn a_read_whose_index_the_log_never_reaches_asks_again() {
    let mut r = replica();
    decide(&mut r, 0, vec![cmd(1, 1, 10)]);
    let asks = read_index_asks(&r.handle_request(ClientId(2), 1, op(0)));
    let out = read_index(&mut r, "p1", asks[0].1.clone(), 2);
    assert!(out.replies.is_empty(), "slot 1 is not applied");
    // Nothing applies; after a few quiet ticks the read asks again.
    let again: Vec<_> = (0..QUIET_TICKS + 1)
        .flat_map(|_| read_index_asks(&r.tick()))
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].1, asks[0].1, "the same read");
    // The new leader's index is what the log holds: answered at once.
    let out = read_index(&mut r, "p2", again[0].1.clone(), 1);
    assert_eq!(out.replies.len(), 1);
    assert_eq!(output(&out.replies[0]), 1, "the read sees slot 0");
    assert_eq!(r.pending(), 0);
}

#[test]
fn a_refused_read_follows_the_hint_then_retries_on_the_tick() {
    let mut r = replica();
    let out = r.handle_request(ClientId(2), 1, op(0));
    let (to, ids) = read_index_asks(&out).remove(0);
    let other = if to == n("p1") { n("p2") } else { n("p1") };
    let out = r.handle(
        to.clone(),
        ReplicaMsg::NotLeader {
            ids: ids.clone(),
            leader: Some(other.clone()),
        },
    );
    assert_eq!(read_index_asks(&out), vec![(other.clone(), ids.clone())]);
    // The hinted proposer does not lead either and knows no one: wait for
    // the tick, then try the next proposer.
    let out = r.handle(
        other.clone(),
        ReplicaMsg::NotLeader {
            ids: ids.clone(),
            leader: None,
        },
    );
    assert!(read_index_asks(&out).is_empty());
    let mut asked = Vec::new();
    for _ in 0..ReplicaConfig::default().retry_ticks {
        asked.extend(read_index_asks(&r.tick()));
    }
    assert_eq!(asked.len(), 1, "one retry per retry period");
    assert_eq!(asked[0].1, ids);
}

#[test]
fn with_read_index_off_reads_go_through_the_log() {
    let mut r = Replica::new(
        &n("r1"),
        &topology(),
        ReplicaConfig {
            read_index: false,
            ..ReplicaConfig::default()
        },
        Log::default(),
    );
    let out = r.handle_request(ClientId(2), 1, op(0));
    assert!(read_index_asks(&out).is_empty());
    assert!(out
        .send
        .iter()
        .any(|(_, m)| matches!(m, Message::Proposer(ProposerMsg::Propose { .. }))));
}

#[test]
fn requests_handled_together_go_to_the_leader_in_one_propose() {
    let mut r = replica();
    let out = r.handle_requests([
        (ClientId(1), 1, op(10)),
        (ClientId(2), 1, op(20)),
        (ClientId(3), 1, op(0)),
        (ClientId(4), 1, op(40)),
    ]);
    let proposes: Vec<&Vec<Command>> = out
        .send
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Proposer(ProposerMsg::Propose { commands }) => Some(commands),
            _ => None,
        })
        .collect();
    assert_eq!(proposes.len(), 1);
    let seen: Vec<ClientId> = proposes[0].iter().map(|c| c.client).collect();
    assert_eq!(seen, vec![ClientId(1), ClientId(2), ClientId(4)]);
    assert_eq!(read_index_asks(&out).len(), 1, "the read goes its own way");
    assert_eq!(r.pending(), 4);
}

/// What a retry of `(client, seq)` is told.
fn retry(r: &mut Replica<Log>, client: u64, seq: u64) -> Answer {
    let out = r.handle_request(ClientId(client), seq, op(0));
    assert_eq!(out.replies.len(), 1);
    out.replies[0].output.clone()
}

#[test]
fn outputs_past_the_byte_bound_are_let_go_oldest_first_but_stay_applied_once() {
    // Each output here encodes to one byte: a bound of 2 keeps two.
    let cfg = ReplicaConfig {
        max_reply_bytes: 2,
        ..small_snapshots()
    };
    let mut r = Replica::new(&n("r1"), &topology(), cfg.clone(), Log::default());
    decide(&mut r, 0, vec![cmd(1, 1, 10), cmd(2, 1, 20), cmd(3, 1, 30)]);
    assert_eq!(retry(&mut r, 1, 1), Answer::OutputDropped);
    assert_eq!(retry(&mut r, 2, 1), Answer::Output(op_out(2)));
    assert_eq!(retry(&mut r, 3, 1), Answer::Output(op_out(3)));
    // The session outlives its output: a duplicate still does not apply.
    decide(&mut r, 1, vec![cmd(1, 1, 10)]);
    assert_eq!(r.state().0, vec![10, 20, 30]);
    assert_eq!(r.sessions.output_bytes, 2);

    // The newest output stays whatever the bound, so its waiting client
    // gets it; the table then holds the bound plus that one.
    let tight = ReplicaConfig {
        max_reply_bytes: 0,
        ..small_snapshots()
    };
    let mut t = Replica::new(&n("r1"), &topology(), tight, Log::default());
    t.handle_request(ClientId(7), 1, op(70));
    let out = decide(&mut t, 0, vec![cmd(6, 1, 60), cmd(7, 1, 70)]);
    assert_eq!(out.replies[0].output, Answer::Output(op_out(2)));
    assert_eq!(retry(&mut t, 6, 1), Answer::OutputDropped);
    assert_eq!(t.sessions.output_bytes, 1);
}

#[test]
fn a_restored_table_lets_go_of_the_same_outputs_as_the_live_one() {
    let cfg = ReplicaConfig {
        max_reply_bytes: 3,
        ..small_snapshots()
    };
    let mut live = Replica::new(&n("r1"), &topology(), cfg.clone(), Log::default());
    decide(&mut live, 0, vec![cmd(1, 1, 10), cmd(2, 1, 20)]);
    decide(&mut live, 1, vec![cmd(3, 1, 30), cmd(1, 2, 11)]);
    decide(&mut live, 2, vec![cmd(4, 1, 40)]);
    let snap = decide(&mut live, 3, vec![cmd(2, 2, 21), cmd(5, 1, 50)])
        .snapshot
        .expect("snapshot at slot 4");
    let mut back = Replica::restore(&n("r2"), &topology(), cfg, Log::default(), snap.data).unwrap();
    for (slot, cmds) in [
        (4, vec![cmd(6, 1, 60), cmd(3, 2, 31)]),
        (5, vec![cmd(1, 3, 12)]),
    ] {
        decide(&mut live, slot, cmds.clone());
        decide(&mut back, slot, cmds);
    }
    assert_eq!(live.encode_image(), back.encode_image());
    for client in 1..=6 {
        let seq = live.sessions.get(&ClientId(client)).map(|s| s.seq).unwrap();
        assert_eq!(retry(&mut live, client, seq), retry(&mut back, client, seq));
    }
    assert!(live.sessions.outputs_dropped > 0, "the bound was reached");
}

#[test]
fn a_format_2_snapshot_still_restores() {
    #[derive(Serialize)]
    struct V2 {
        format: u32,
        slot: Slot,
        sessions: Vec<(ClientId, (u64, Option<Bytes>))>,
        state: Bytes,
    }
    let old = V2 {
        format: 2,
        slot: 3,
        sessions: vec![
            (ClientId(2), (4, None)),
            (ClientId(1), (7, Some(op_out(9)))),
        ],
        state: synod_codec::encode(&vec![5u64, 6, 7]).unwrap().into(),
    };
    let data = Bytes::from(synod_codec::encode(&old).unwrap());
    let mut r = Replica::restore(
        &n("r1"),
        &topology(),
        ReplicaConfig::default(),
        Log::default(),
        data,
    )
    .unwrap();
    assert_eq!(r.slot_out(), 3);
    assert_eq!(r.state().0, vec![5, 6, 7]);
    assert_eq!(retry(&mut r, 1, 7), Answer::Output(op_out(9)));
    assert_eq!(retry(&mut r, 2, 4), Answer::NoAnswer);
    // Anything else is refused, not misread.
    let mut other = old;
    other.format = 9;
    let data = Bytes::from(synod_codec::encode(&other).unwrap());
    let err = Replica::restore(
        &n("r1"),
        &topology(),
        ReplicaConfig::default(),
        Log::default(),
        data,
    )
    .err()
    .unwrap();
    assert!(err.contains("format 9"), "{err}");
}

#[test]
fn sessions_beyond_the_bound_drop_the_least_recently_used() {
    let cfg = ReplicaConfig {
        max_sessions: 2,
        ..small_snapshots()
    };
    let mut r = Replica::new(&n("r1"), &topology(), cfg.clone(), Log::default());
    // Clients 1, 2, then 1 again (now the most recent), then 3: 2 goes.
    decide(&mut r, 0, vec![cmd(1, 1, 10), cmd(2, 1, 20)]);
    decide(&mut r, 1, vec![cmd(1, 2, 11), cmd(3, 1, 30)]);
    assert_eq!(r.sessions(), (2, 1));
    // Client 1's retry is still answered from its session...
    let out = r.handle_request(ClientId(1), 2, op(11));
    assert_eq!(out.replies[0].output, Answer::Output(op_out(3)));
    // ...client 2's is gone, so its late duplicate applies again: the
    // documented price of a bounded table. (Client 1 goes to make room.)
    decide(&mut r, 2, vec![cmd(2, 1, 20)]);
    assert_eq!(r.state().0, vec![10, 20, 11, 30, 20]);
    assert_eq!(r.sessions(), (2, 2));

    // Snapshot at slot 4 holding clients 4 then 2, most recent last (the
    // reverse of their id order).
    let snap = decide(&mut r, 3, vec![cmd(4, 1, 40), cmd(2, 2, 22)])
        .snapshot
        .expect("snapshot at slot 4");
    let mut back = Replica::restore(&n("r2"), &topology(), cfg, Log::default(), snap.data).unwrap();
    // A new client pushes out the least recent, 4, on both replicas, so
    // both apply 4's late duplicate again: a restored replica keeps the
    // recency order and drops what the others drop.
    for (slot, cmds) in [(4, vec![cmd(5, 1, 50)]), (5, vec![cmd(4, 1, 40)])] {
        decide(&mut r, slot, cmds.clone());
        decide(&mut back, slot, cmds);
    }
    let want = vec![10, 20, 11, 30, 20, 40, 22, 50, 40];
    assert_eq!(r.state().0, want);
    assert_eq!(back.state().0, want);
}

#[test]
fn a_late_read_index_answer_meant_for_an_earlier_run_is_ignored() {
    // Before a crash the replica asked about a read and the leader
    // answered index 1; the answer arrives after the restart, when a new
    // read waits that began after slot 1 was written (its index is 2).
    let run = |base: u64| {
        Replica::new(
            &n("r1"),
            &topology(),
            ReplicaConfig {
                read_id_base: base,
                ..ReplicaConfig::default()
            },
            Log::default(),
        )
    };
    let mut before = run(0);
    let old_ids = read_index_asks(&before.handle_request(ClientId(2), 1, op(0)))[0]
        .1
        .clone();
    let mut after = run(1 << 32);
    decide(&mut after, 0, vec![cmd(1, 1, 10)]);
    let new_ids = read_index_asks(&after.handle_request(ClientId(3), 1, op(0)))[0]
        .1
        .clone();
    let stale = read_index(&mut after, "p1", old_ids, 1);
    assert!(stale.replies.is_empty(), "served with a stale index");
    let out = read_index(&mut after, "p1", new_ids, 2);
    assert!(out.replies.is_empty(), "slot 1 is not applied yet");
    let out = decide(&mut after, 1, vec![cmd(1, 2, 20)]);
    assert_eq!(out.replies.len(), 1);
    assert_eq!(output(&out.replies[0]), 2, "the read sees slots 0 and 1");
}
