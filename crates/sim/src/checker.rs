//! The invariants, kept incrementally so they can run after every step.
//!
//! The checker never trusts a role's own account of what happened. It
//! watches the *durable* side effects the simulator executes:
//!
//! - every acceptor vote that reached storage feeds a vote-counting oracle,
//!   so "chosen" (a majority of acceptors accepted the same value in the same
//!   ballot) is known independently of any learner or proposer;
//! - every value a learner announces (in its `decided` output, a `Decide` or
//!   a `Decisions` answer) must be the oracle's chosen value for that slot;
//! - every replica's applied history must be a prefix of one canonical
//!   history, apply nothing twice, and apply only operations clients issued;
//! - replicas at the same `slot_out` must have the same digest.

use crate::machine::Register;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use synod_storage::AcceptorState;
use synod_types::{Ballot, ClientId, Slot, StateMachine, Value};

/// An invariant that did not hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// Short name of the invariant, e.g. `agreement`.
    pub invariant: &'static str,
    pub detail: String,
    pub tick: u64,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at tick {}: {}",
            self.invariant, self.tick, self.detail
        )
    }
}

impl Violation {
    /// Safety violations: something wrong already happened. Everything else
    /// (`liveness`) is a failure to make progress once faults stopped.
    pub fn is_safety(&self) -> bool {
        !matches!(self.invariant, "liveness" | "message-storm")
    }
}

pub type Check = Result<(), Violation>;

pub fn violation(invariant: &'static str, tick: u64, detail: String) -> Violation {
    Violation {
        invariant,
        detail,
        tick,
    }
}

/// What a client issued, keyed by `(client, seq)`.
#[derive(Clone, Debug)]
pub struct Issued {
    pub op_bytes: bytes::Bytes,
    pub op_id: u64,
    pub tick: u64,
}

/// Votes for one slot: per ballot, each distinct value with its voters.
type SlotVotes = BTreeMap<Ballot, Vec<(Value, BTreeSet<usize>)>>;

#[derive(Default)]
pub struct Checker {
    quorum: usize,
    votes: BTreeMap<Slot, SlotVotes>,
    /// The oracle: slots a majority of acceptors accepted a value for, in one ballot.
    chosen: BTreeMap<Slot, Value>,
    /// Every issued request, and the op ids among them.
    pub issued: BTreeMap<(ClientId, u64), Issued>,
    issued_ids: BTreeSet<u64>,
    /// The longest applied history seen on any replica; all others are prefixes.
    canonical: Vec<u64>,
    canonical_set: BTreeSet<u64>,
    /// Per node: how much of its replica's history was already compared.
    checked: BTreeMap<usize, usize>,
    /// Digest first seen at each `slot_out`.
    digest_at: BTreeMap<Slot, (u64, usize)>,
}

impl Checker {
    pub fn new(acceptors: usize) -> Self {
        Checker {
            quorum: synod_types::majority(acceptors),
            ..Checker::default()
        }
    }

    pub fn chosen(&self) -> &BTreeMap<Slot, Value> {
        &self.chosen
    }

    pub fn canonical(&self) -> &[u64] {
        &self.canonical
    }

    pub fn issue(&mut self, client: ClientId, seq: u64, issued: Issued) {
        self.issued_ids.insert(issued.op_id);
        self.issued.insert((client, seq), issued);
    }

    /// Acceptor `acceptor` durably accepted `value` for `slot` in `ballot`.
    /// Votes are history: a later vote of the same acceptor does not take
    /// back an earlier one, which is exactly why "chosen" is permanent.
    pub fn vote(
        &mut self,
        now: u64,
        acceptor: usize,
        slot: Slot,
        ballot: &Ballot,
        value: &Value,
    ) -> Check {
        self.validate(now, slot, value)?;
        let by_value = self
            .votes
            .entry(slot)
            .or_default()
            .entry(ballot.clone())
            .or_default();
        let idx = match by_value.iter().position(|(v, _)| v == value) {
            Some(i) => i,
            None => {
                by_value.push((value.clone(), BTreeSet::new()));
                by_value.len() - 1
            }
        };
        let (_, voters) = &mut by_value[idx];
        voters.insert(acceptor);
        if voters.len() < self.quorum {
            return Ok(());
        }
        match self.chosen.get(&slot) {
            None => {
                self.chosen.insert(slot, value.clone());
                Ok(())
            }
            Some(v) if v == value => Ok(()),
            Some(v) => Err(violation(
                "agreement",
                now,
                format!(
                    "slot {slot}: a majority accepted {} in ballot {ballot:?}, but {} was already chosen",
                    crate::trace::value(value),
                    crate::trace::value(v)
                ),
            )),
        }
    }

    /// Every command in a value that reached an acceptor was issued by a client.
    fn validate(&self, now: u64, slot: Slot, value: &Value) -> Check {
        for c in value.commands() {
            match self.issued.get(&(c.client, c.seq)) {
                Some(i) if i.op_bytes == c.op => {}
                Some(_) => {
                    return Err(violation(
                        "validity",
                        now,
                        format!(
                            "slot {slot}: command {:?}/{} carries an op its client never issued",
                            c.client, c.seq
                        ),
                    ))
                }
                None => {
                    return Err(violation(
                        "validity",
                        now,
                        format!(
                            "slot {slot}: command {:?}/{} was never issued by a client",
                            c.client, c.seq
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// A learner announced `value` for `slot` (decided, Decide or Decisions).
    pub fn announced(&self, now: u64, who: &str, slot: Slot, value: &Value) -> Check {
        match self.chosen.get(&slot) {
            Some(v) if v == value => Ok(()),
            Some(v) => Err(violation(
                "agreement",
                now,
                format!(
                    "learner {who} announced slot {slot} = {}, but the acceptors chose {}",
                    crate::trace::value(value),
                    crate::trace::value(v)
                ),
            )),
            None => Err(violation(
                "agreement",
                now,
                format!(
                    "learner {who} announced slot {slot} = {}, but no majority of acceptors accepted it in one ballot",
                    crate::trace::value(value)
                ),
            )),
        }
    }

    /// A restarted replica starts with an empty history.
    pub fn replica_restarted(&mut self, node: usize) {
        self.checked.insert(node, 0);
    }

    /// Compares a replica's applied history with the canonical one.
    pub fn replica(
        &mut self,
        now: u64,
        node: usize,
        name: &str,
        slot_out: Slot,
        sm: &Register,
    ) -> Check {
        let hist = sm.applied();
        let from = self.checked.get(&node).copied().unwrap_or(0);
        for (i, id) in hist.iter().enumerate().skip(from) {
            if let Some(c) = self.canonical.get(i) {
                if c != id {
                    return Err(violation(
                        "replica-prefix",
                        now,
                        format!("replica {name} applied op {id} as its operation #{i}, another replica applied op {c} there"),
                    ));
                }
            } else {
                if !self.issued_ids.contains(id) {
                    return Err(violation(
                        "validity",
                        now,
                        format!("replica {name} applied op {id} that no client issued"),
                    ));
                }
                if !self.canonical_set.insert(*id) {
                    return Err(violation(
                        "at-most-once",
                        now,
                        format!("replica {name} applied op {id} a second time (operation #{i})"),
                    ));
                }
                self.canonical.push(*id);
            }
        }
        self.checked.insert(node, hist.len());
        let digest = sm.digest();
        match self.digest_at.get(&slot_out) {
            Some((d, _)) if *d == digest => Ok(()),
            Some((d, ops)) => Err(violation(
                "replica-digest",
                now,
                format!(
                    "replica {name} at slot_out {slot_out} has digest {digest:#x} after {} ops; \
                     another replica had {d:#x} after {ops} ops at the same slot_out",
                    hist.len()
                ),
            )),
            None => {
                self.digest_at.insert(slot_out, (digest, hist.len()));
                Ok(())
            }
        }
    }
}

/// Everything a promise or vote reveals must already be durable.
pub fn revealed_promise(now: u64, name: &str, durable: &AcceptorState, ballot: &Ballot) -> Check {
    if durable.promised >= *ballot {
        Ok(())
    } else {
        Err(violation(
            "durability",
            now,
            format!(
                "acceptor {name} sent Promise({ballot:?}) but its disk only holds promise {:?}",
                durable.promised
            ),
        ))
    }
}

pub fn revealed_vote(
    now: u64,
    name: &str,
    durable: &AcceptorState,
    slot: Slot,
    ballot: &Ballot,
    value: Option<&Value>,
) -> Check {
    let ok = match durable.accepted.get(&slot) {
        Some((b, v)) => b == ballot && (value.is_none() || value == Some(v)),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(violation(
            "durability",
            now,
            format!(
                "acceptor {name} revealed a vote for slot {slot} in {ballot:?} that its disk does not hold (disk: {:?})",
                durable.accepted.get(&slot).map(|(b, v)| (b, crate::trace::value(v)))
            ),
        ))
    }
}
