//! The replica: applies the chosen log to a state machine and answers clients.
//!
//! [`Replica`] is generic over any deterministic [`StateMachine`]. It
//!
//! - turns a client request into a [`Command`] and sends it to the proposer it
//!   believes leads (learned from the ballot of the latest decision), retrying
//!   through the other proposers until the command is applied;
//! - buffers `Decide`s that arrive out of order and applies slots strictly in
//!   slot order, so every replica goes through the same sequence of states;
//! - keeps a session table (last request number and reply per client) as
//!   part of the replicated state: a `(client, seq)` that appears in the log
//!   twice, from a retry or a view change, is applied once, and a retried
//!   request is answered from the table;
//! - asks learners for the decisions it lacks, periodically and whenever it
//!   finds a gap, so a restarted or lagging replica catches up.
//!
//! Requests of one client must be issued one at a time (the RESP front end
//! does so), which is what makes "seq ≤ last applied ⇒ duplicate" sound.

#[cfg(feature = "actor")]
pub mod actor;

use bytes::Bytes;
use std::collections::BTreeMap;
use synod_types::{
    ClientId, Command, LearnerMsg, Message, NodeId, ProposerMsg, ReplicaMsg, Slot, StateMachine,
    Value,
};

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Resend an unapplied request (to the next proposer) after this many ticks.
    pub retry_ticks: u64,
    /// Ask a learner for missing decisions at least this often.
    pub catch_up_ticks: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            retry_ticks: 20,
            catch_up_ticks: 20,
        }
    }
}

/// The answer to one client request. `output` is the state machine's output
/// in codec encoding, or `None` if the command could not be decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub client: ClientId,
    pub seq: u64,
    pub output: Option<Bytes>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub send: Vec<(NodeId, Message)>,
    pub replies: Vec<Reply>,
}

struct Session {
    seq: u64,
    reply: Option<Bytes>,
}

struct Pending {
    command: Command,
    sent_at: u64,
}

pub struct Replica<S: StateMachine> {
    proposers: Vec<NodeId>,
    learners: Vec<NodeId>,
    cfg: ReplicaConfig,
    sm: S,
    now: u64,
    slot_out: Slot,
    decisions: BTreeMap<Slot, Value>,
    sessions: BTreeMap<ClientId, Session>,
    pending: BTreeMap<(ClientId, u64), Pending>,
    leader_hint: Option<NodeId>,
    next_proposer: usize,
    next_learner: usize,
    next_catch_up: u64,
    /// Since when decisions past a missing slot have been waiting.
    gap_since: Option<u64>,
}

impl<S: StateMachine> Replica<S> {
    pub fn new(proposers: Vec<NodeId>, learners: Vec<NodeId>, cfg: ReplicaConfig, sm: S) -> Self {
        Replica {
            proposers,
            learners,
            cfg,
            sm,
            now: 0,
            slot_out: 0,
            decisions: BTreeMap::new(),
            sessions: BTreeMap::new(),
            pending: BTreeMap::new(),
            leader_hint: None,
            next_proposer: 0,
            next_learner: 0,
            next_catch_up: 0,
            gap_since: None,
        }
    }

    pub fn state(&self) -> &S {
        &self.sm
    }
    /// The next slot to apply; everything below it is applied.
    pub fn slot_out(&self) -> Slot {
        self.slot_out
    }
    pub fn leader_hint(&self) -> Option<&NodeId> {
        self.leader_hint.as_ref()
    }
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A client request arrives. `op` is the state machine command in codec
    /// encoding.
    pub fn handle_request(&mut self, client: ClientId, seq: u64, op: Bytes) -> Output {
        let mut out = Output::default();
        if let Some(s) = self.sessions.get(&client) {
            if seq <= s.seq {
                // Already applied: a retry gets the remembered answer; an
                // older request than the last one has no answer left.
                let output = if seq == s.seq { s.reply.clone() } else { None };
                out.replies.push(Reply {
                    client,
                    seq,
                    output,
                });
                return out;
            }
        }
        if self.pending.contains_key(&(client, seq)) {
            return out;
        }
        let command = Command { client, seq, op };
        let to = self.target();
        out.send.push((
            to,
            Message::Proposer(ProposerMsg::Propose {
                commands: vec![command.clone()],
            }),
        ));
        self.pending.insert(
            (client, seq),
            Pending {
                command,
                sent_at: self.now,
            },
        );
        out
    }

    /// A client went away: stop retrying its requests. If one is still
    /// chosen later it is applied like any other, just not answered.
    pub fn forget_client(&mut self, client: ClientId) {
        self.pending.retain(|(c, _), _| *c != client);
    }

    pub fn handle(&mut self, from: NodeId, msg: ReplicaMsg) -> Output {
        let mut out = Output::default();
        let mut ask_more = false;
        let before = self.slot_out;
        match msg {
            ReplicaMsg::Decide {
                slot,
                ballot,
                value,
            } => {
                self.leader_hint = Some(ballot.node);
                self.record(slot, value);
            }
            ReplicaMsg::Decisions { entries, more } => {
                for (slot, ballot, value) in entries {
                    self.leader_hint.get_or_insert(ballot.node);
                    self.record(slot, value);
                }
                ask_more = more;
            }
        }
        self.apply_ready(&mut out);
        // Asking again is only worth it if this batch moved us forward;
        // otherwise the learner has a hole where we do, and asking again at
        // once would loop (its own repair fills the hole).
        if ask_more && self.slot_out > before {
            self.catch_up_from(from, &mut out);
        }
        if self.decisions.is_empty() {
            self.gap_since = None;
        } else if self.gap_since.is_none() {
            self.gap_since = Some(self.now);
        }
        out
    }

    fn record(&mut self, slot: Slot, value: Value) {
        if slot >= self.slot_out {
            self.decisions.entry(slot).or_insert(value);
        }
    }

    pub fn tick(&mut self) -> Output {
        self.now += 1;
        let mut out = Output::default();
        let retry_after = self.cfg.retry_ticks;
        let now = self.now;
        let due: Vec<Command> = self
            .pending
            .values_mut()
            .filter(|p| now - p.sent_at >= retry_after)
            .map(|p| {
                p.sent_at = now;
                p.command.clone()
            })
            .collect();
        if !due.is_empty() {
            // The leader we believed in did not get them chosen in time: it
            // may be dead, so spread the retry to the next proposer.
            self.leader_hint = None;
            self.next_proposer += 1;
            let to = self.target();
            out.send.push((
                to,
                Message::Proposer(ProposerMsg::Propose { commands: due }),
            ));
        }
        // Decisions usually arrive a little out of order; a gap that
        // outlives a couple of ticks means one was lost.
        let gap_stuck = self.gap_since.is_some_and(|g| self.now - g >= 2);
        if gap_stuck || self.now >= self.next_catch_up {
            if gap_stuck {
                self.gap_since = Some(self.now);
            }
            self.catch_up(&mut out);
        }
        out
    }

    fn target(&self) -> NodeId {
        match &self.leader_hint {
            Some(l) => l.clone(),
            None => self.proposers[self.next_proposer % self.proposers.len()].clone(),
        }
    }

    /// Asks the next learner in turn, so a learner that restarted empty
    /// cannot keep us behind.
    fn catch_up(&mut self, out: &mut Output) {
        if self.learners.is_empty() {
            return;
        }
        let to = self.learners[self.next_learner % self.learners.len()].clone();
        self.next_learner += 1;
        self.catch_up_from(to, out);
    }

    fn catch_up_from(&mut self, to: NodeId, out: &mut Output) {
        self.next_catch_up = self.now + self.cfg.catch_up_ticks;
        out.send.push((
            to,
            Message::Learner(LearnerMsg::CatchUp {
                from_slot: self.slot_out,
            }),
        ));
    }

    fn apply_ready(&mut self, out: &mut Output) {
        while let Some(value) = self.decisions.remove(&self.slot_out) {
            for cmd in value.commands() {
                self.apply_command(cmd, out);
            }
            self.slot_out += 1;
        }
    }

    fn apply_command(&mut self, cmd: &Command, out: &mut Output) {
        let duplicate = self
            .sessions
            .get(&cmd.client)
            .is_some_and(|s| s.seq >= cmd.seq);
        if !duplicate {
            let reply = synod_codec::decode::<S::Command>(&cmd.op)
                .ok()
                .map(|c| self.sm.apply(c))
                .and_then(|o| synod_codec::encode(&o).ok())
                .map(Bytes::from);
            self.sessions.insert(
                cmd.client,
                Session {
                    seq: cmd.seq,
                    reply,
                },
            );
        }
        // Older requests of this client that are still pending can never
        // apply now (they would count as duplicates): give them up.
        let stale: Vec<_> = self
            .pending
            .range((cmd.client, 0)..(cmd.client, cmd.seq))
            .map(|(k, _)| *k)
            .collect();
        for (client, seq) in stale {
            self.pending.remove(&(client, seq));
            out.replies.push(Reply {
                client,
                seq,
                output: None,
            });
        }
        if self.pending.remove(&(cmd.client, cmd.seq)).is_some() {
            let output = self
                .sessions
                .get(&cmd.client)
                .filter(|s| s.seq == cmd.seq)
                .and_then(|s| s.reply.clone());
            out.replies.push(Reply {
                client: cmd.client,
                seq: cmd.seq,
                output,
            });
        }
    }
}

#[cfg(test)]
mod tests;
