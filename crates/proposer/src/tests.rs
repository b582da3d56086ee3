use super::*;
use synod_types::{ClientId, Topology};

fn n(s: &str) -> NodeId {
    NodeId::new(s)
}
fn b(r: u64, node: &str) -> Ballot {
    Ballot::new(r, n(node))
}
fn cmd(seq: u64) -> Command {
    Command {
        client: ClientId(1),
        seq,
        op: vec![seq as u8].into(),
    }
}
fn acceptors() -> Vec<NodeId> {
    vec![n("a1"), n("a2"), n("a3")]
}
fn cfg() -> ProposerConfig {
    ProposerConfig {
        window: 2,
        ..ProposerConfig::default()
    }
}
fn topology() -> Topology {
    Topology {
        proposers: vec![n("p1"), n("p2")],
        acceptors: acceptors(),
        learners: vec![n("l1")],
        replicas: vec![n("r1"), n("r2"), n("r3")],
    }
}
fn proposer() -> Proposer {
    Proposer::new(n("p1"), &topology(), cfg(), 7)
}

/// Ticks until the proposer asks for a pre-vote; returns that ballot.
fn run_to_pre_vote(p: &mut Proposer) -> Ballot {
    for _ in 0..1000 {
        let out = p.tick();
        if let Some((_, Message::Acceptor(AcceptorMsg::PreVote { ballot }))) = out.send.first() {
            assert_eq!(out.send.len(), 3, "pre-votes go to every acceptor");
            assert_eq!(p.phase(), &Phase::PreCandidate);
            return ballot.clone();
        }
        assert!(
            !out.send
                .iter()
                .any(|(_, m)| matches!(m, Message::Acceptor(AcceptorMsg::Prepare { .. }))),
            "phase 1 before a pre-vote"
        );
    }
    panic!("no pre-vote started");
}

/// Runs the pre-vote with grants from a majority; returns the ballot of
/// the Prepare that follows.
fn run_to_candidate(p: &mut Proposer) -> Ballot {
    let asked = run_to_pre_vote(p);
    let out = p.handle(
        n("a1"),
        ProposerMsg::PreVoteGranted {
            ballot: asked.clone(),
        },
    );
    assert!(out.send.is_empty(), "one grant is not a majority");
    let out = p.handle(
        n("a2"),
        ProposerMsg::PreVoteGranted {
            ballot: asked.clone(),
        },
    );
    if let Some((_, Message::Acceptor(AcceptorMsg::Prepare { ballot, .. }))) = out.send.first() {
        assert_eq!(out.send.len(), 3, "p1a goes to every acceptor");
        assert_eq!(*ballot, asked, "phase 1 runs with the ballot granted");
        return ballot.clone();
    }
    panic!("no Prepare after a majority of pre-votes: {out:?}");
}

fn elect(p: &mut Proposer, promises: Vec<Vec<PromiseEntry>>) -> Output {
    let ballot = run_to_candidate(p);
    let mut last = Output::default();
    for (i, accepted) in promises.into_iter().enumerate() {
        last = p.handle(acceptors()[i].clone(), whole_promise(&ballot, accepted));
    }
    last
}

/// Promise entries `(slot, x)`, each accepted in ballot 1 of p2 with a
/// batch of command `x`.
fn accepted_in_p2(entries: Vec<(Slot, u64)>) -> Vec<PromiseEntry> {
    entries
        .into_iter()
        .map(|(slot, x)| PromiseEntry {
            slot,
            ballot: b(1, "p2"),
            value: Value::Batch(vec![cmd(x)]),
        })
        .collect()
}

/// A promise in one page, for the whole log.
fn whole_promise(ballot: &Ballot, accepted: Vec<PromiseEntry>) -> ProposerMsg {
    ProposerMsg::Promise {
        ballot: ballot.clone(),
        accepted,
        compacted_below: 0,
        chosen_below: 0,
        from_slot: 0,
        more_from: None,
    }
}

fn accepts(out: &Output) -> BTreeMap<Slot, Value> {
    out.send
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Acceptor(AcceptorMsg::Accept { slot, value, .. }) => {
                Some((*slot, value.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn new_leader_reproposes_highest_ballot_values_and_fills_gaps() {
    let mut p = proposer();
    let v = |x| Value::Batch(vec![cmd(x)]);
    let out = elect(
        &mut p,
        vec![
            vec![PromiseEntry {
                slot: 0,
                ballot: b(1, "p2"),
                value: v(1),
            }],
            vec![
                PromiseEntry {
                    slot: 0,
                    ballot: b(2, "p2"),
                    value: v(2),
                },
                PromiseEntry {
                    slot: 3,
                    ballot: b(1, "p2"),
                    value: v(3),
                },
            ],
        ],
    );
    assert!(p.is_leader());
    let acc = accepts(&out);
    assert_eq!(acc.get(&0), Some(&v(2)), "highest ballot wins");
    assert_eq!(acc.get(&1), Some(&Value::Noop));
    assert_eq!(acc.get(&2), Some(&Value::Noop));
    assert_eq!(acc.get(&3), Some(&v(3)));
    assert_eq!(acc.len(), 4);
    // New commands go after everything phase 1 found.
    let out = p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(9)],
        },
    );
    assert!(out.send.is_empty(), "window of 2 is full of re-proposals");
    for slot in 0..4 {
        for a in ["a1", "a2"] {
            p.handle(
                n(a),
                ProposerMsg::Accepted {
                    ballot: p.ballot().clone(),
                    slot,
                },
            );
        }
    }
    assert_eq!(p.first_unchosen(), 4);
}

#[test]
fn a_long_phase_1_is_reproposed_a_window_at_a_time_before_new_commands() {
    // A proposer that lost its progress wins and finds 300 accepted slots:
    // they go out RECOVERY_WINDOW at a time, not all at once, and new
    // commands wait behind them.
    let mut p = proposer();
    let v = |x| Value::Batch(vec![cmd(x)]);
    let found: Vec<PromiseEntry> = (0..300)
        .map(|slot| PromiseEntry {
            slot,
            ballot: b(1, "p2"),
            value: v(slot),
        })
        .collect();
    let out = elect(&mut p, vec![found.clone(), found]);
    assert!(p.is_leader());
    let first = accepts(&out);
    assert_eq!(first.len(), RECOVERY_WINDOW);
    assert_eq!(
        first.keys().next_back(),
        Some(&(RECOVERY_WINDOW as Slot - 1))
    );
    let out = p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(999)],
        },
    );
    assert!(accepts(&out).is_empty(), "new commands wait for recovery");
    // A read index covers every slot phase 1 found, sent or not.
    let out = p.handle(n("r1"), ProposerMsg::ReadIndex { ids: vec![1] });
    let round = confirms(&out)[0].2;
    let ballot = p.ballot().clone();
    let answers: Vec<_> = ["a1", "a2"]
        .into_iter()
        .flat_map(|a| {
            let out = p.handle(
                n(a),
                ProposerMsg::Confirmed {
                    ballot: ballot.clone(),
                    round,
                },
            );
            read_answers(&out)
        })
        .collect();
    assert_eq!(answers, vec![(n("r1"), vec![1], 300)]);
    let mut sent: BTreeMap<Slot, Value> = first;
    let mut slot = 0;
    while slot < 301 && sent.contains_key(&slot) {
        for a in ["a1", "a2"] {
            let out = p.handle(
                n(a),
                ProposerMsg::Accepted {
                    ballot: ballot.clone(),
                    slot,
                },
            );
            for (s, v) in accepts(&out) {
                assert!(sent.insert(s, v).is_none(), "slot {s} sent twice");
            }
        }
        assert!(p.inflight() <= RECOVERY_WINDOW);
        slot += 1;
    }
    assert_eq!(slot, 301, "every slot went out, then the new command's");
    assert_eq!(sent.get(&299), Some(&v(299)));
    assert_eq!(sent.get(&300), Some(&Value::Batch(vec![cmd(999)])));
    assert_eq!(p.first_unchosen(), 301);
}

#[test]
fn a_deposed_leaders_heartbeat_that_finishes_the_window_refills_it() {
    // The window holds recovered slots 0..128 of 300. A deposed leader's
    // heartbeat says everything below 200 is chosen: that empties the
    // window, and the rest of the recovery must go out at once, not wait
    // for a client command that may never come (an idle cluster's reads
    // wait on the index, 300).
    let mut p = proposer();
    let v = |x| Value::Batch(vec![cmd(x)]);
    let found: Vec<PromiseEntry> = (0..300)
        .map(|slot| PromiseEntry {
            slot,
            ballot: b(1, "p2"),
            value: v(slot),
        })
        .collect();
    elect(&mut p, vec![found.clone(), found]);
    assert_eq!(p.inflight(), RECOVERY_WINDOW);
    let deposed = Ballot::new(p.ballot().round - 1, n("p2"));
    let out = p.handle(
        n("p2"),
        ProposerMsg::Heartbeat {
            ballot: deposed,
            first_unchosen: 200,
        },
    );
    assert!(p.is_leader());
    let sent = accepts(&out);
    assert_eq!(sent.keys().next(), Some(&200));
    assert_eq!(sent.len(), 100);
    assert_eq!(p.inflight(), 100);
}

#[test]
fn the_last_round_or_slot_number_from_a_broken_peer_does_not_overflow() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    p.handle(
        n("a1"),
        ProposerMsg::Preempted {
            ballot,
            promised: b(u64::MAX, "p2"),
        },
    );
    let next = run_to_candidate(&mut p);
    assert_eq!(next.round, u64::MAX, "no wrap back to round 0");

    // A promise naming the last slot: nothing may ever be proposed past it.
    let mut p = proposer();
    let last = PromiseEntry {
        slot: Slot::MAX,
        ballot: b(1, "p2"),
        value: Value::Batch(vec![cmd(1)]),
    };
    // Filling the gap below it is paced, and the gap is not stored.
    let out = elect(&mut p, vec![vec![last.clone()], vec![last]]);
    assert_eq!(accepts(&out).len(), RECOVERY_WINDOW);
    assert_eq!(p.inflight(), RECOVERY_WINDOW);
}

#[test]
fn a_paged_promise_counts_once_its_pages_cover_the_log() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    let v = |x| Value::Batch(vec![cmd(x)]);
    let page = |from_slot, more_from, entries: Vec<(Slot, u64)>| ProposerMsg::Promise {
        ballot: ballot.clone(),
        accepted: accepted_in_p2(entries),
        compacted_below: 0,
        chosen_below: 0,
        from_slot,
        more_from,
    };
    // a1's last page first, then a2's whole promise: a1 is not complete,
    // so there is no majority yet.
    p.handle(n("a1"), page(6, None, vec![(6, 60)]));
    p.handle(n("a2"), page(0, None, vec![]));
    assert!(!p.is_leader(), "a1 has not covered 0..6");
    // A middle page leaves a hole at 0..3: still not complete.
    p.handle(n("a1"), page(3, Some(6), vec![(4, 40)]));
    assert!(!p.is_leader());
    let out = p.handle(n("a1"), page(0, Some(3), vec![(1, 10)]));
    assert!(p.is_leader());
    // Every page's values are re-proposed; the holes get no-ops.
    let acc = accepts(&out);
    assert_eq!(acc.get(&1), Some(&v(10)));
    assert_eq!(acc.get(&4), Some(&v(40)));
    assert_eq!(acc.get(&6), Some(&v(60)));
    assert_eq!(acc.get(&0), Some(&Value::Noop));
    assert_eq!(acc.len(), 7);
}

#[test]
fn promise_needs_a_majority_of_distinct_acceptors() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    for _ in 0..3 {
        p.handle(n("a1"), whole_promise(&ballot, vec![]));
    }
    p.handle(n("zz"), whole_promise(&ballot, vec![]));
    assert_eq!(p.phase(), &Phase::Candidate);
    p.handle(
        n("a2"),
        ProposerMsg::Promise {
            ballot,
            accepted: vec![],
            compacted_below: 0,
            chosen_below: 0,
            from_slot: 0,
            more_from: None,
        },
    );
    assert!(p.is_leader());
}

#[test]
fn leader_steps_down_on_higher_ballot_and_forwards_work() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let mine = p.ballot().clone();
    for s in 1..=3 {
        p.handle(
            n("r1"),
            ProposerMsg::Propose {
                commands: vec![cmd(s)],
            },
        );
    }
    assert_eq!((p.inflight(), p.queued()), (2, 1));
    let higher = b(mine.round + 3, "p2");
    let out = p.handle(
        n("a1"),
        ProposerMsg::Preempted {
            ballot: mine.clone(),
            promised: higher.clone(),
        },
    );
    assert_eq!(p.phase(), &Phase::Follower);
    assert_eq!(p.leader(), Some(&n("p2")));
    // Commands not yet chosen go to the new leader, in order.
    assert!(out.send.iter().any(|(to, m)| to == &n("p2")
        && matches!(m, Message::Proposer(ProposerMsg::Propose { commands }) if commands == &vec![cmd(1), cmd(2), cmd(3)])));
    assert_eq!((p.inflight(), p.queued()), (0, 0));
    // Next election goes above everything seen.
    let next = run_to_candidate(&mut p);
    assert!(next > higher);
}

#[test]
fn busy_leader_batches_commands_and_idle_one_does_not_wait() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    let out = p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(1)],
        },
    );
    assert_eq!(
        accepts(&out).get(&0),
        Some(&Value::Batch(vec![cmd(1)])),
        "idle: proposed at once"
    );
    p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(2)],
        },
    );
    for s in 3..6 {
        assert!(p
            .handle(
                n("r1"),
                ProposerMsg::Propose {
                    commands: vec![cmd(s)]
                }
            )
            .send
            .is_empty());
    }
    assert_eq!(p.queued(), 3);
    p.handle(
        n("a1"),
        ProposerMsg::Accepted {
            ballot: ballot.clone(),
            slot: 0,
        },
    );
    let out = p.handle(n("a3"), ProposerMsg::Accepted { ballot, slot: 0 });
    assert_eq!(
        accepts(&out).get(&2),
        Some(&Value::Batch(vec![cmd(3), cmd(4), cmd(5)]))
    );
}

#[test]
fn follower_forwards_to_leader_and_heartbeats_hold_off_elections() {
    let mut p = proposer();
    let leader_ballot = b(4, "p2");
    for _ in 0..500 {
        let out = p.tick();
        assert!(out.send.is_empty(), "no election while the leader is heard");
        p.handle(
            n("p2"),
            ProposerMsg::Heartbeat {
                ballot: leader_ballot.clone(),
                first_unchosen: 10,
            },
        );
    }
    assert_eq!(p.first_unchosen(), 10);
    let out = p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(1)],
        },
    );
    assert_eq!(
        out.send,
        vec![(
            n("p2"),
            Message::Proposer(ProposerMsg::Propose {
                commands: vec![cmd(1)]
            })
        )]
    );
    // Leader goes quiet: we run phase 1 above its ballot, from slot 10.
    let ballot = run_to_candidate(&mut p);
    assert!(ballot > leader_ballot);
}

#[test]
fn leader_retransmits_unacknowledged_accepts() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(1)],
        },
    );
    p.handle(n("a1"), ProposerMsg::Accepted { ballot, slot: 0 });
    let mut resent = Vec::new();
    for _ in 0..cfg().retransmit_ticks {
        for (to, m) in p.tick().send {
            if matches!(m, Message::Acceptor(AcceptorMsg::Accept { .. })) {
                resent.push(to);
            }
        }
    }
    resent.sort();
    assert_eq!(resent, vec![n("a2"), n("a3")]);
}

#[test]
fn timeouts_differ_between_seeds() {
    let first_election = |seed| {
        let topo = Topology {
            proposers: vec![n("p1")],
            acceptors: acceptors(),
            ..Topology::default()
        };
        let mut p = Proposer::new(n("p1"), &topo, ProposerConfig::default(), seed);
        (1..).find(|_| !p.tick().send.is_empty()).unwrap()
    };
    let ticks: BTreeSet<u64> = (0..8).map(first_election).collect();
    assert!(ticks.len() > 1, "randomized election timeouts");
    assert!(ticks.iter().all(|t| (30..60).contains(t)));
}

#[test]
fn retried_commands_already_held_are_not_proposed_twice() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    for s in 1..=3 {
        p.handle(
            n("r1"),
            ProposerMsg::Propose {
                commands: vec![cmd(s)],
            },
        );
    }
    // Replica retries: all three again, plus one new.
    p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(1), cmd(2), cmd(3), cmd(4)],
        },
    );
    assert_eq!((p.inflight(), p.queued()), (2, 2), "only 3 and 4 wait");
    let ballot = p.ballot().clone();
    for a in ["a1", "a2"] {
        p.handle(
            n(a),
            ProposerMsg::Accepted {
                ballot: ballot.clone(),
                slot: 0,
            },
        );
    }
    // Once chosen, a retry may be proposed again (the replica dedupes).
    p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(1)],
        },
    );
    assert_eq!(p.queued(), 1);
}

#[test]
fn heartbeats_tell_learners_the_commit_point() {
    let mut p = proposer();
    let out = elect(&mut p, vec![vec![], vec![]]);
    assert!(out.send.contains(&(
        n("l1"),
        Message::Learner(LearnerMsg::Progress { first_unchosen: 0 })
    )));
}

#[test]
fn leader_compacts_below_what_a_majority_of_replicas_snapshotted() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    for slot in 0..100 {
        p.handle(
            n("r1"),
            ProposerMsg::Propose {
                commands: vec![cmd(slot + 1)],
            },
        );
        for a in ["a1", "a2"] {
            p.handle(
                n(a),
                ProposerMsg::Accepted {
                    ballot: ballot.clone(),
                    slot,
                },
            );
        }
    }
    p.handle(n("r1"), ProposerMsg::SnapshotTaken { slot: 90 });
    assert_eq!(
        p.compact_below(),
        0,
        "one replica of three is not a majority"
    );
    p.handle(n("r3"), ProposerMsg::SnapshotTaken { slot: 40 });
    p.handle(n("x9"), ProposerMsg::SnapshotTaken { slot: 99 });
    assert_eq!(p.compact_below(), 40);
    let compacts: Vec<_> = (0..cfg().heartbeat_ticks)
        .flat_map(|_| p.tick().send)
        .filter(|(_, m)| {
            matches!(
                m,
                Message::Acceptor(AcceptorMsg::Compact { below: 40 })
                    | Message::Learner(LearnerMsg::Compact { below: 40 })
            )
        })
        .collect();
    assert_eq!(compacts.len(), 3 + 1, "every acceptor and learner is told");
}

#[test]
fn new_leader_starts_past_compacted_slots() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    let v = Value::Batch(vec![cmd(1)]);
    // a1 compacted below 10; a2 still holds an old slot 3 and slot 12.
    p.handle(
        n("a1"),
        ProposerMsg::Promise {
            ballot: ballot.clone(),
            accepted: vec![],
            compacted_below: 10,
            chosen_below: 0,
            from_slot: 0,
            more_from: None,
        },
    );
    let out = p.handle(
        n("a2"),
        ProposerMsg::Promise {
            ballot,
            accepted: vec![
                PromiseEntry {
                    slot: 3,
                    ballot: b(1, "p2"),
                    value: v.clone(),
                },
                PromiseEntry {
                    slot: 12,
                    ballot: b(1, "p2"),
                    value: v.clone(),
                },
            ],
            compacted_below: 0,
            chosen_below: 0,
            from_slot: 0,
            more_from: None,
        },
    );
    let acc = accepts(&out);
    assert_eq!(acc.keys().copied().collect::<Vec<_>>(), vec![10, 11, 12]);
    assert_eq!(acc[&12], v);
    assert_eq!(p.first_unchosen(), 10);
}

/// Found by the simulator (seed 40007761, rolling crashes, stress): a
/// deposed leader's `Compact` reached the acceptors after our phase 1, so
/// they silently dropped our re-proposals below the new mark and the whole
/// cluster stalled behind them. Their `Compacted` answer moves us on.
#[test]
fn a_compaction_mark_after_phase_1_moves_the_leader_past_it() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    let old = |slot| PromiseEntry {
        slot,
        ballot: b(1, "p2"),
        value: Value::Batch(vec![cmd(slot)]),
    };
    for a in ["a1", "a2"] {
        p.handle(
            n(a),
            ProposerMsg::Promise {
                ballot: ballot.clone(),
                accepted: (10..14).map(old).collect(),
                compacted_below: 10,
                chosen_below: 0,
                from_slot: 0,
                more_from: None,
            },
        );
    }
    assert_eq!(p.first_unchosen(), 10);
    assert_eq!(p.inflight(), 4, "re-proposes 10..14");
    p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(99)],
        },
    );
    assert_eq!(p.queued(), 1, "window full of re-proposals");
    // Only an acceptor speaks for a compaction mark.
    p.handle(n("x9"), ProposerMsg::Compacted { below: 13 });
    assert_eq!(p.first_unchosen(), 10);
    let out = p.handle(n("a1"), ProposerMsg::Compacted { below: 13 });
    assert_eq!(p.first_unchosen(), 13);
    // Slots 10..13 are no longer driven; the freed window (2) takes the
    // queued command, in a fresh slot past the re-proposals.
    assert_eq!(
        accepts(&out).into_iter().collect::<Vec<_>>(),
        vec![(14, Value::Batch(vec![cmd(99)]))]
    );
    assert_eq!(p.inflight(), 2);
    // An old mark is no news.
    assert!(p
        .handle(n("a2"), ProposerMsg::Compacted { below: 12 })
        .send
        .is_empty());
}

fn confirms(out: &Output) -> Vec<(NodeId, Ballot, u64)> {
    out.send
        .iter()
        .filter_map(|(to, m)| match m {
            Message::Acceptor(AcceptorMsg::Confirm { ballot, round }) => {
                Some((to.clone(), ballot.clone(), *round))
            }
            _ => None,
        })
        .collect()
}

fn read_answers(out: &Output) -> Vec<(NodeId, Vec<u64>, Slot)> {
    out.send
        .iter()
        .filter_map(|(to, m)| match m {
            Message::Replica(ReplicaMsg::ReadIndex { ids, index }) => {
                Some((to.clone(), ids.clone(), *index))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn read_index_waits_for_a_majority_to_confirm_and_reports_next_slot() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    // Two slots in flight, not yet chosen: the index must cover them, as a
    // replica may already have applied and acknowledged one of them.
    p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(1)],
        },
    );
    p.handle(
        n("r1"),
        ProposerMsg::Propose {
            commands: vec![cmd(2)],
        },
    );
    assert_eq!(p.inflight(), 2);
    let out = p.handle(n("r1"), ProposerMsg::ReadIndex { ids: vec![7] });
    let sent = confirms(&out);
    assert_eq!(sent.len(), 3, "a confirm to every acceptor");
    let round = sent[0].2;
    assert!(sent.iter().all(|(_, b, r)| *b == ballot && *r == round));
    // Reads arriving while the round is out wait for the next one.
    let out = p.handle(n("r2"), ProposerMsg::ReadIndex { ids: vec![8, 9] });
    assert!(confirms(&out).is_empty());
    let confirmed = |p: &mut Proposer, a: &str, round| {
        p.handle(
            n(a),
            ProposerMsg::Confirmed {
                ballot: ballot.clone(),
                round,
            },
        )
    };
    // One acceptor is not a majority; a stale round does not count.
    assert!(read_answers(&confirmed(&mut p, "a1", round)).is_empty());
    assert!(read_answers(&confirmed(&mut p, "a2", round + 5)).is_empty());
    let out = confirmed(&mut p, "a2", round);
    assert_eq!(read_answers(&out), vec![(n("r1"), vec![7], 2)]);
    // The next round starts at once for the reads that waited.
    let next = confirms(&out);
    assert_eq!(next.len(), 3);
    let round2 = next[0].2;
    assert!(round2 > round);
    confirmed(&mut p, "a3", round2);
    let out = confirmed(&mut p, "a1", round2);
    assert_eq!(read_answers(&out), vec![(n("r2"), vec![8, 9], 2)]);
}

#[test]
fn read_index_is_refused_by_followers_and_by_a_leader_that_is_deposed() {
    let mut p = proposer();
    let out = p.handle(n("r1"), ProposerMsg::ReadIndex { ids: vec![1] });
    assert_eq!(
        out.send,
        vec![(
            n("r1"),
            Message::Replica(ReplicaMsg::NotLeader {
                ids: vec![1],
                leader: None
            })
        )]
    );
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    let out = p.handle(n("r1"), ProposerMsg::ReadIndex { ids: vec![2] });
    let round = confirms(&out)[0].2;
    p.handle(
        n("a1"),
        ProposerMsg::Confirmed {
            ballot: ballot.clone(),
            round,
        },
    );
    // a2 promised a higher ballot: we no longer lead, and the read must not
    // be answered with an index, even if a majority confirms afterwards.
    let out = p.handle(
        n("a2"),
        ProposerMsg::Preempted {
            ballot: ballot.clone(),
            promised: b(ballot.round + 1, "p2"),
        },
    );
    assert!(out.send.contains(&(
        n("r1"),
        Message::Replica(ReplicaMsg::NotLeader {
            ids: vec![2],
            leader: Some(n("p2"))
        })
    )));
    let out = p.handle(n("a3"), ProposerMsg::Confirmed { ballot, round });
    assert!(read_answers(&out).is_empty());
}

#[test]
fn unanswered_confirm_is_retransmitted_to_silent_acceptors_only() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    let out = p.handle(n("r1"), ProposerMsg::ReadIndex { ids: vec![1] });
    let round = confirms(&out)[0].2;
    p.handle(n("a1"), ProposerMsg::Confirmed { ballot, round });
    let mut resent = Vec::new();
    for _ in 0..cfg().retransmit_ticks {
        resent.extend(confirms(&p.tick()));
    }
    let to: BTreeSet<NodeId> = resent.into_iter().map(|(to, _, _)| to).collect();
    assert_eq!(to, [n("a2"), n("a3")].into_iter().collect());
}

/// Acceptors that never answer (dead or slow) must not make the leader's
/// memory grow: slots in phase 2 stop at the window, queued commands at
/// `max_queue` (replicas retry what is refused), and read-index requests at
/// `max_reads`.
#[test]
fn silent_acceptors_bound_the_leaders_memory() {
    let mut p = Proposer::new(
        n("p1"),
        &topology(),
        ProposerConfig {
            window: 3,
            max_batch: 2,
            max_queue: 50,
            max_reads: 10,
            ..ProposerConfig::default()
        },
        7,
    );
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    for seq in 0..1_000 {
        p.handle(
            n("r1"),
            ProposerMsg::Propose {
                commands: vec![cmd(seq)],
            },
        );
        if seq % 10 == 0 {
            p.tick();
            // The acceptors are alive (they answer heartbeats), they just
            // never accept anything.
            for a in ["a1", "a2"] {
                p.handle(
                    n(a),
                    ProposerMsg::HeartbeatAck {
                        ballot: ballot.clone(),
                    },
                );
            }
        }
    }
    assert!(p.is_leader());
    assert_eq!(p.inflight(), 3);
    assert_eq!(p.queued(), 50);
    let mut refused = 0;
    for id in 0..100 {
        let out = p.handle(n("r1"), ProposerMsg::ReadIndex { ids: vec![id] });
        refused += out
            .send
            .iter()
            .filter(|(_, m)| matches!(m, Message::Replica(ReplicaMsg::NotLeader { .. })))
            .count();
    }
    // One read rides the round in flight, ten wait, the rest are refused.
    assert_eq!(refused, 100 - 1 - 10);
}

#[test]
fn pre_vote_without_a_majority_changes_nothing_and_a_heartbeat_ends_it() {
    let mut p = proposer();
    let asked = run_to_pre_vote(&mut p);
    // One grant, a grant for another ballot and one from a stranger.
    for (from, ballot) in [
        ("a1", asked.clone()),
        ("a2", b(asked.round + 1, "p1")),
        ("zz", asked.clone()),
    ] {
        let out = p.handle(n(from), ProposerMsg::PreVoteGranted { ballot });
        assert!(out.send.is_empty());
    }
    assert_eq!(p.phase(), &Phase::PreCandidate);
    assert!(p.ballot() < &asked, "the ballot is raised only by phase 1");
    // The leader is alive after all: back to following it.
    p.handle(
        n("p2"),
        ProposerMsg::Heartbeat {
            ballot: b(1, "p2"),
            first_unchosen: 0,
        },
    );
    assert_eq!(p.phase(), &Phase::Follower);
    assert_eq!(p.leader(), Some(&n("p2")));
    // A late grant for the old pre-vote starts nothing.
    let out = p.handle(n("a2"), ProposerMsg::PreVoteGranted { ballot: asked });
    assert!(out.send.is_empty());
    // Refused with a higher promise: the next pre-vote goes above it.
    run_to_pre_vote(&mut p);
    p.handle(
        n("a1"),
        ProposerMsg::Preempted {
            ballot: b(2, "p1"),
            promised: b(9, "p3"),
        },
    );
    assert_eq!(p.phase(), &Phase::Follower);
    assert!(run_to_pre_vote(&mut p) > b(9, "p3"));
}

#[test]
fn leader_heartbeats_reach_the_acceptors() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    let out = (0..20).fold(Output::default(), |mut acc, _| {
        acc.send.extend(p.tick().send);
        acc
    });
    for a in acceptors() {
        assert!(
            out.send.contains(&(
                a.clone(),
                Message::Acceptor(AcceptorMsg::Heartbeat {
                    ballot: ballot.clone(),
                    first_unchosen: p.first_unchosen(),
                })
            )),
            "no heartbeat to {a}"
        );
    }
}

#[test]
fn a_leader_that_hears_no_majority_steps_down() {
    let mut p = proposer();
    elect(&mut p, vec![vec![], vec![]]);
    let ballot = p.ballot().clone();
    // Only a1 answers: one of three is not a majority.
    for t in 0..200 {
        p.tick();
        p.handle(
            n("a1"),
            ProposerMsg::HeartbeatAck {
                ballot: ballot.clone(),
            },
        );
        if !p.is_leader() {
            // Only after an election timeout (30 ticks) without a2.
            assert!((129..140).contains(&t), "stepped down after {t} ticks");
            assert_eq!(p.phase(), &Phase::Follower);
            assert_eq!(p.leader(), None);
            return;
        }
        if t < 100 {
            // a2 answers too for a while: a majority, so it stays.
            p.handle(
                n("a2"),
                ProposerMsg::HeartbeatAck {
                    ballot: ballot.clone(),
                },
            );
            assert!(p.is_leader(), "tick {t}");
        }
    }
    panic!("a leader hearing one acceptor of three kept leading");
}

/// Three nodes that each run a proposer, an acceptor and a learner (the
/// `local-3` layout); `n1` wins with `cfg`.
fn colocated_leader(cfg: ProposerConfig) -> Proposer {
    let nodes = vec![n("n1"), n("n2"), n("n3")];
    let topology = Topology {
        proposers: nodes.clone(),
        acceptors: nodes.clone(),
        learners: nodes.clone(),
        replicas: nodes,
    };
    let mut p = Proposer::new(n("n1"), &topology, cfg, 7);
    let mut asked = None;
    for _ in 0..1000 {
        let out = p.tick();
        if let Some((_, Message::Acceptor(AcceptorMsg::PreVote { ballot }))) = out.send.first() {
            asked = Some(ballot.clone());
            break;
        }
    }
    let ballot = asked.expect("no pre-vote");
    for a in ["n1", "n2"] {
        p.handle(
            n(a),
            ProposerMsg::PreVoteGranted {
                ballot: ballot.clone(),
            },
        );
    }
    for a in ["n1", "n2"] {
        p.handle(n(a), whole_promise(&ballot, vec![]));
    }
    assert_eq!(p.phase(), &Phase::Leader);
    p
}

/// `colocated_leader` with thrifty phase 2 and a 3-tick fallback.
fn thrifty_leader() -> Proposer {
    colocated_leader(ProposerConfig {
        thrifty: true,
        thrifty_fallback_ticks: 3,
        ..cfg()
    })
}

/// Who got an `Accept`, and who got the value as `Proposed`.
fn accept_and_proposed_targets(out: &Output) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let mut accept = BTreeSet::new();
    let mut proposed = BTreeSet::new();
    for (to, m) in &out.send {
        match m {
            Message::Acceptor(AcceptorMsg::Accept { .. }) => {
                accept.insert(to.clone());
            }
            Message::Learner(LearnerMsg::Proposed { .. }) => {
                proposed.insert(to.clone());
            }
            _ => {}
        }
    }
    (accept, proposed)
}

/// Everything `n` ticks send.
fn ticks(p: &mut Proposer, n: usize) -> Output {
    let mut out = Output::default();
    for _ in 0..n {
        out.send.extend(p.tick().send);
    }
    out
}

fn set(names: &[&str]) -> BTreeSet<NodeId> {
    names.iter().map(|s| n(s)).collect()
}

#[test]
fn a_plain_leader_sends_every_slot_to_every_acceptor() {
    let mut p = colocated_leader(cfg());
    let out = p.handle(
        n("n2"),
        ProposerMsg::Propose {
            commands: vec![cmd(1)],
        },
    );
    let (accept, proposed) = accept_and_proposed_targets(&out);
    assert_eq!(accept, set(&["n1", "n2", "n3"]));
    assert!(
        proposed.is_empty(),
        "every learner gets the value with its acceptor's vote"
    );
}

#[test]
fn a_thrifty_leader_sends_a_slot_to_a_majority_and_widens_when_it_is_slow() {
    let mut p = thrifty_leader();
    let ballot = p.ballot().clone();
    let out = p.handle(
        n("n2"),
        ProposerMsg::Propose {
            commands: vec![cmd(1)],
        },
    );
    let (accept, proposed) = accept_and_proposed_targets(&out);
    assert_eq!(
        accept,
        set(&["n1", "n2"]),
        "own acceptor first, then topology order"
    );
    assert_eq!(
        proposed,
        set(&["n3"]),
        "the learner whose acceptor was skipped needs the value from the leader"
    );
    let slot = *accepts(&out).keys().next().expect("an Accept");

    // Only our own acceptor answers: after the fallback delay the slot goes
    // to the acceptors that have not voted, and nowhere else.
    p.handle(
        n("n1"),
        ProposerMsg::Accepted {
            ballot: ballot.clone(),
            slot,
        },
    );
    let widened = ticks(&mut p, 3);
    let (accept, _) = accept_and_proposed_targets(&widened);
    assert_eq!(accept, set(&["n2", "n3"]));

    // n3 answers, n2 stays silent: new slots skip n2 once it has not been
    // heard from for two heartbeat intervals.
    p.handle(
        n("n3"),
        ProposerMsg::Accepted {
            ballot: ballot.clone(),
            slot,
        },
    );
    for _ in 0..12 {
        p.tick();
        p.handle(
            n("n1"),
            ProposerMsg::HeartbeatAck {
                ballot: ballot.clone(),
            },
        );
        p.handle(
            n("n3"),
            ProposerMsg::HeartbeatAck {
                ballot: ballot.clone(),
            },
        );
    }
    let out = p.handle(
        n("n2"),
        ProposerMsg::Propose {
            commands: vec![cmd(2)],
        },
    );
    let (accept, proposed) = accept_and_proposed_targets(&out);
    assert_eq!(accept, set(&["n1", "n3"]));
    assert_eq!(proposed, set(&["n2"]));
}

#[test]
fn a_thrifty_leader_confirms_reads_with_a_majority_and_widens_when_it_is_slow() {
    let mut p = thrifty_leader();
    let ballot = p.ballot().clone();
    let confirms = |out: &Output| -> Vec<(NodeId, u64)> {
        out.send
            .iter()
            .filter_map(|(to, m)| match m {
                Message::Acceptor(AcceptorMsg::Confirm { round, .. }) => Some((to.clone(), *round)),
                _ => None,
            })
            .collect()
    };
    let out = p.handle(n("n2"), ProposerMsg::ReadIndex { ids: vec![4] });
    let sent = confirms(&out);
    let to: BTreeSet<NodeId> = sent.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(to, set(&["n1", "n2"]));
    let round = sent[0].1;

    p.handle(
        n("n1"),
        ProposerMsg::Confirmed {
            ballot: ballot.clone(),
            round,
        },
    );
    let widened = ticks(&mut p, 3);
    let to: BTreeSet<NodeId> = confirms(&widened).into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        to,
        set(&["n2", "n3"]),
        "the silent target and the one left out"
    );

    let out = p.handle(n("n3"), ProposerMsg::Confirmed { ballot, round });
    assert!(
        out.send.iter().any(|(to, m)| *to == n("n2")
            && matches!(m, Message::Replica(ReplicaMsg::ReadIndex { ids, .. }) if ids == &vec![4])),
        "a majority of confirmations answers the read: {out:?}"
    );
}

#[test]
fn a_promise_whose_pages_were_lost_gets_a_new_ballot_not_a_timeout() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    let page = |from_slot, more_from| ProposerMsg::Promise {
        ballot: ballot.clone(),
        accepted: vec![],
        compacted_below: 0,
        chosen_below: 0,
        from_slot,
        more_from,
    };
    p.handle(n("a1"), page(0, None));
    // a2's first page arrives, the rest are lost.
    p.handle(n("a2"), page(0, Some(5)));
    assert!(!p.is_leader());

    // Pages still arriving hold off the election deadline: a page on the
    // last tick before the deadline buys another full timeout.
    let mut ticked = 0;
    let resent = loop {
        let out = p.tick();
        ticked += 1;
        let prepares: BTreeSet<NodeId> = out
            .send
            .iter()
            .filter(|(_, m)| matches!(m, Message::Acceptor(AcceptorMsg::Prepare { .. })))
            .map(|(to, _)| to.clone())
            .collect();
        if !prepares.is_empty() {
            break prepares;
        }
        assert!(
            ticked < 1000,
            "the stalled promise is never asked for again"
        );
    };
    assert_eq!(p.phase(), &Phase::Candidate, "still the same election");
    // a1 is complete: it is not asked again. a2 (stalled) and a3
    // (silent) are.
    assert_eq!(resent, set(&["a2", "a3"]));

    // a2 already promised this ballot, so it answers the re-sent Prepare
    // with Preempted at our own ballot: its pages are lost. a1 and a3 can
    // still make a majority, so the election goes on.
    let preempted = |p: &mut Proposer, from: &str| {
        p.handle(
            n(from),
            ProposerMsg::Preempted {
                ballot: ballot.clone(),
                promised: ballot.clone(),
            },
        )
    };
    assert!(preempted(&mut p, "a2").send.is_empty());
    assert_eq!(p.phase(), &Phase::Candidate);
    // a3's promise was lost whole: now no majority is left for this
    // ballot, and only a new ballot can get a full promise.
    let out = preempted(&mut p, "a3");
    assert!(
        out.send
            .iter()
            .any(|(_, m)| matches!(m, Message::Acceptor(AcceptorMsg::PreVote { .. }))),
        "no new pre-vote after lost pages: {out:?}"
    );
    assert_eq!(p.phase(), &Phase::PreCandidate);

    // A Preempted at our ballot that answers a duplicate of the first
    // Prepare, overtaking the promise itself, or one from a complete
    // acceptor, is no reason to start over.
    let mut q = proposer();
    let ballot = run_to_candidate(&mut q);
    for a in ["a2", "a3"] {
        let out = q.handle(
            n(a),
            ProposerMsg::Preempted {
                ballot: ballot.clone(),
                promised: ballot.clone(),
            },
        );
        assert!(out.send.is_empty(), "{out:?}");
    }
    q.handle(n("a1"), whole_promise(&ballot, vec![]));
    let out = q.handle(
        n("a1"),
        ProposerMsg::Preempted {
            ballot: ballot.clone(),
            promised: ballot.clone(),
        },
    );
    assert!(out.send.is_empty(), "{out:?}");
    assert_eq!(q.phase(), &Phase::Candidate);
}

#[test]
fn promise_pages_still_arriving_hold_off_the_election_deadline() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    let timeout = cfg().election_timeout_ticks;
    // A page every few ticks, for several election timeouts: the
    // candidate keeps waiting for the rest instead of starting over.
    for i in 0..(3 * timeout) {
        if i % 5 == 0 {
            p.handle(
                n("a1"),
                ProposerMsg::Promise {
                    ballot: ballot.clone(),
                    accepted: vec![],
                    compacted_below: 0,
                    chosen_below: 0,
                    from_slot: i,
                    more_from: Some(i + 5),
                },
            );
        }
        let out = p.tick();
        assert!(
            !out.send
                .iter()
                .any(|(_, m)| matches!(m, Message::Acceptor(AcceptorMsg::PreVote { .. }))),
            "a new election while pages were arriving (tick {i})"
        );
        assert_eq!(p.phase(), &Phase::Candidate);
    }
}

#[test]
fn a_learner_past_a_compacted_prefix_moves_the_proposer_past_it_too() {
    let mut p = proposer();
    let chosen = |p: &mut Proposer, from: &str, slot: Slot, learned_below: Slot| {
        p.handle(
            n(from),
            ProposerMsg::Chosen {
                slot,
                learned_below,
            },
        );
    };
    // A learner that caught up from a snapshot reports slots far above
    // anything this proposer saw chosen: the prefix moves it past them
    // all, instead of leaving a thousand held gaps.
    for slot in 1000..1010 {
        chosen(&mut p, "l1", slot, slot + 1);
    }
    assert_eq!(p.first_unchosen(), 1010);
    assert!(p.chosen_above.is_empty());

    // Only a learner's word counts, and only a proposer's heartbeat.
    chosen(&mut p, "r1", 5000, 5001);
    p.handle(
        n("a1"),
        ProposerMsg::Heartbeat {
            ballot: b(50, "a1"),
            first_unchosen: 6000,
        },
    );
    assert_eq!(p.first_unchosen(), 1010);
    assert!(p.chosen_above.is_empty());
    assert_eq!(p.leader(), None);

    // A slot chosen past a hole the learner has not filled is held.
    chosen(&mut p, "l1", 1020, 1010);
    assert_eq!(p.first_unchosen(), 1010);
    assert_eq!(p.chosen_above.len(), 1);
}

#[test]
fn a_candidate_skips_what_acceptors_heard_was_chosen() {
    let mut p = proposer();
    let ballot = run_to_candidate(&mut p);
    let v = |x| Value::Batch(vec![cmd(x)]);
    // Both acceptors heard from the old leader that slots below 100 are
    // chosen; their pages start there and hold slots 100 and 101.
    let page = |chosen_below, accepted: Vec<(Slot, u64)>| ProposerMsg::Promise {
        ballot: ballot.clone(),
        accepted: accepted_in_p2(accepted),
        compacted_below: 0,
        chosen_below,
        from_slot: chosen_below,
        more_from: None,
    };
    p.handle(n("a1"), page(100, vec![(100, 1)]));
    assert!(!p.is_leader());
    let out = p.handle(n("a2"), page(90, vec![(95, 7), (101, 2)]));
    assert!(p.is_leader(), "pages from the chosen mark on are complete");
    assert_eq!(p.first_unchosen(), 100);
    // Only the undecided part is re-proposed; slot 95 is chosen already
    // (whatever a2 holds there) and is left to the learners.
    let acc = accepts(&out);
    assert_eq!(acc.keys().copied().collect::<Vec<_>>(), vec![100, 101]);
    assert_eq!(acc.get(&100), Some(&v(1)));
    assert_eq!(acc.get(&101), Some(&v(2)));
}
