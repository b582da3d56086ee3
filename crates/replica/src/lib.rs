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
//!   finds a gap, so a restarted or lagging replica catches up;
//! - every `snapshot_every` slots (or `snapshot_bytes` of applied commands)
//!   hands its shell a snapshot (state machine + session table + slot) to
//!   make durable, and once it is, tells the proposers (`SnapshotTaken`):
//!   the leader lets the whole cluster forget the log below what a majority
//!   of replicas have snapshotted;
//! - when a learner answers that the slots it needs were forgotten
//!   (`Compacted`), fetches a peer replica's latest durable snapshot in
//!   chunks (one chunk in flight, so normal traffic interleaves), installs
//!   it, and continues from the log after it.
//!
//! - serves reads without a log write (`read_index`, the default): a request
//!   the state machine calls read-only ([`StateMachine::is_read_only`])
//!   waits for the leader's read index (see the proposer's docs for why
//!   that is linearizable), then for every slot below it to be applied, and
//!   is answered from local state. Reads that arrive while one `ReadIndex`
//!   request is out wait and go together in the next one. With
//!   `read_index` off, reads go through the log like writes.
//!
//! Requests of one client must be issued one at a time (the RESP front end
//! does so), which is what makes "seq ≤ last applied ⇒ duplicate" sound.

#[cfg(feature = "actor")]
pub mod actor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use synod_types::{
    ClientId, Command, LearnerMsg, Message, NodeId, ProposerMsg, ReplicaMsg, Slot, StateMachine,
    Topology, Value,
};

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Resend an unapplied request (to the next proposer) after this many ticks.
    pub retry_ticks: u64,
    /// Ask a learner for missing decisions at least this often.
    pub catch_up_ticks: u64,
    /// Take a snapshot after this many applied slots...
    pub snapshot_every: u64,
    /// ...or this many bytes of applied commands, whichever comes first.
    pub snapshot_bytes: u64,
    /// Snapshot transfer chunk size.
    pub chunk_bytes: usize,
    /// Serve read-only commands through the leader's read index instead of
    /// the log.
    pub read_index: bool,
    /// Client sessions kept for duplicate detection; past this the least
    /// recently used is dropped. Part of the replicated state: it must be
    /// the same on every replica (the node's peer hello checks it).
    pub max_sessions: usize,
    /// Bytes of outputs the sessions keep for retries, in total; past this
    /// the least recently used outputs are let go (never the newest, whose
    /// client may be waiting for it). Replicated state, like `max_sessions`.
    pub max_reply_bytes: u64,
    /// Id of this replica's first read-index request. Ids only grow, and
    /// a leader's answer names the ids it answers, so every start of a
    /// replica needs a range of its own: a late answer to a request of an
    /// earlier run (sent before a crash) must never be taken for one of
    /// ours, whose read may have begun after writes that the old answer's
    /// index does not cover. The node draws a random multiple of 2^32.
    pub read_id_base: u64,
    /// Bytes of commands one retried `Propose` gathers
    /// ([`synod_types::MESSAGE_BUDGET`]).
    pub message_budget: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            retry_ticks: 20,
            catch_up_ticks: 20,
            snapshot_every: 10_000,
            snapshot_bytes: 64 << 20,
            chunk_bytes: 1 << 20,
            read_index: true,
            max_sessions: 100_000,
            max_reply_bytes: 256 << 20,
            read_id_base: 0,
            message_budget: synod_types::MESSAGE_BUDGET,
        }
    }
}

/// The answer to one client request.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub client: ClientId,
    pub seq: u64,
    pub output: Answer,
}

/// What a request's client is told, and what a session keeps for a retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The state machine's output, in codec encoding.
    Output(Bytes),
    /// The command was applied, but its output was since let go to keep
    /// the session tables within [`ReplicaConfig::max_reply_bytes`]. Only a
    /// retry of a request answered long ago can see this; applying the
    /// command again instead would break at-most-once.
    OutputDropped,
    /// No output: the command could not be decoded, or a later request of
    /// the same client was applied first (so this one never will be).
    NoAnswer,
}

impl From<Option<Bytes>> for Answer {
    fn from(output: Option<Bytes>) -> Self {
        output.map_or(Answer::NoAnswer, Answer::Output)
    }
}

/// A snapshot for the shell to make durable, then report back through
/// [`Replica::snapshot_durable`]. `data` is what [`Replica::restore`] takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The snapshot holds the effect of every slot below this one.
    pub slot: Slot,
    pub data: Bytes,
}

#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub send: Vec<(NodeId, Message)>,
    pub replies: Vec<Reply>,
    pub snapshot: Option<Snapshot>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Session {
    seq: u64,
    reply: Answer,
    /// When this session last applied a command, on the table's own clock:
    /// only the order matters, and a snapshot keeps the order.
    #[serde(skip)]
    used: u64,
}

/// Every client's last applied request and its answer, so a retry is
/// answered instead of applied twice.
///
/// A client id is drawn per connection, so without a bound the table would
/// grow with every connection ever made. Past `max` sessions the least
/// recently used one is dropped. Which one that is depends only on the
/// order of applied commands, so every replica drops the same session at
/// the same command and the tables stay identical (as the Raft thesis,
/// §6.3, requires of session expiry). The cost: a client whose session
/// was dropped and which then retries its last request gets it applied
/// again. That takes `max` other clients writing between the first try and
/// the retry, which a retry a few hundred milliseconds later does not see
/// at the default of 100,000.
///
/// Outputs are bounded too, in bytes: one read may return up to 64 MiB, and
/// without a total cap a few clients could make every replica hold
/// gigabytes. Past `max_bytes` the least recently used outputs are let go
/// (the session and its sequence number stay, so a retry is still not
/// applied twice; it is told the output is gone). The newest output is
/// never let go, so the table holds at most `max_bytes` plus one output.
/// Like the session bound, this depends only on the applied order.
#[derive(Default)]
struct Sessions {
    by_client: BTreeMap<ClientId, Session>,
    /// `(used, client)`, oldest first.
    by_use: BTreeSet<(u64, ClientId)>,
    /// The sessions that hold an output, the same way.
    with_output: BTreeSet<(u64, ClientId)>,
    output_bytes: u64,
    clock: u64,
    dropped: u64,
    outputs_dropped: u64,
}

impl Sessions {
    fn get(&self, client: &ClientId) -> Option<&Session> {
        self.by_client.get(client)
    }

    fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Records `client`'s latest applied request, then drops the least
    /// recently used sessions beyond `max` and outputs beyond `max_bytes`.
    fn record(&mut self, client: ClientId, seq: u64, reply: Answer, max: usize, max_bytes: u64) {
        self.clock += 1;
        let used = self.clock;
        if let Answer::Output(b) = &reply {
            self.output_bytes += b.len() as u64;
            self.with_output.insert((used, client));
        }
        if let Some(old) = self.by_client.insert(client, Session { seq, reply, used }) {
            self.by_use.remove(&(old.used, client));
            self.unindex_output(client, &old);
        }
        self.by_use.insert((used, client));
        while self.by_client.len() > max.max(1) {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = self.by_client.remove(&oldest) {
                self.unindex_output(oldest, &gone);
            }
            self.dropped += 1;
        }
        while self.output_bytes > max_bytes {
            // Oldest first; the newest (just recorded) is last, and stays.
            let Some(&(_, c)) = self.with_output.first().filter(|(_, c)| *c != client) else {
                break;
            };
            self.with_output.pop_first();
            if let Some(s) = self.by_client.get_mut(&c) {
                if let Answer::Output(b) = std::mem::replace(&mut s.reply, Answer::OutputDropped) {
                    self.output_bytes -= b.len() as u64;
                }
            }
            self.outputs_dropped += 1;
        }
    }

    fn unindex_output(&mut self, client: ClientId, s: &Session) {
        if let Answer::Output(b) = &s.reply {
            self.with_output.remove(&(s.used, client));
            self.output_bytes -= b.len() as u64;
        }
    }

    /// Oldest first: the order a restore needs to rebuild recency.
    fn image(&self) -> Vec<(ClientId, Session)> {
        self.by_use
            .iter()
            .filter_map(|(_, c)| self.by_client.get(c).map(|s| (*c, s.clone())))
            .collect()
    }

    /// Rebuilds the table by recording each session again, oldest first.
    /// That reaches the same table the live one had: both bounds only ever
    /// drop the oldest entries, and the image already fits within them.
    fn restore(image: Vec<(ClientId, Session)>, max: usize, max_bytes: u64) -> Sessions {
        let mut t = Sessions::default();
        for (client, s) in image {
            t.record(client, s.seq, s.reply, max, max_bytes);
        }
        t
    }
}

/// Version of [`Image`]'s encoding.
const IMAGE_FORMAT: u32 = 3;

/// What a snapshot holds: the replicated state is the state machine *and*
/// the session table (deduplication must survive a restore).
#[derive(Serialize, Deserialize)]
struct Image {
    /// [`IMAGE_FORMAT`]. Format 1 had no version and kept sessions in
    /// client id order, which loses their recency; format 2 kept an
    /// output or nothing, with no way to say an output was let go.
    format: u32,
    slot: Slot,
    /// Least recently used first.
    sessions: Vec<(ClientId, Session)>,
    state: Bytes,
}

/// Format 2 of [`Image`], still read so snapshots from before survive an
/// upgrade.
#[derive(Deserialize)]
struct ImageV2 {
    format: u32,
    slot: Slot,
    sessions: Vec<(ClientId, SessionV2)>,
    state: Bytes,
}

#[derive(Deserialize)]
struct SessionV2 {
    seq: u64,
    reply: Option<Bytes>,
}

impl Image {
    fn decode(data: &[u8]) -> Result<Image, String> {
        let current = synod_codec::decode::<Image>(data);
        if let Ok(image) = &current {
            if image.format == IMAGE_FORMAT {
                return current.map_err(|e| e.to_string());
            }
        }
        let unknown = |format: u32| {
            Err(format!(
                "snapshot image format {format} (this build reads 2 and {IMAGE_FORMAT})"
            ))
        };
        match (current, synod_codec::decode::<ImageV2>(data)) {
            (_, Ok(old)) if old.format == 2 => Ok(Image {
                format: IMAGE_FORMAT,
                slot: old.slot,
                sessions: old
                    .sessions
                    .into_iter()
                    .map(|(c, s)| {
                        let reply = s.reply.into();
                        (
                            c,
                            Session {
                                seq: s.seq,
                                reply,
                                used: 0,
                            },
                        )
                    })
                    .collect(),
                state: old.state,
            }),
            (Ok(image), _) => unknown(image.format),
            (_, Ok(old)) => unknown(old.format),
            (Err(e), Err(_)) => Err(format!("snapshot: {e}")),
        }
    }
}

/// A snapshot download in progress.
struct Download {
    peer: NodeId,
    slot: Slot,
    total: u64,
    buf: Vec<u8>,
    asked_at: u64,
    /// Requests re-sent since the last chunk arrived. A lost chunk is asked
    /// for again from the same peer and offset: starting over elsewhere
    /// would make a large snapshot on a lossy link never finish.
    resent: u32,
}

/// Times a stalled download re-asks its peer before trying another.
const DOWNLOAD_RESENDS: u32 = 3;

struct Pending {
    command: Command,
    sent_at: u64,
}

/// A read-only request on the read-index path.
struct PendingRead<C> {
    client: ClientId,
    seq: u64,
    command: C,
    /// The original bytes, should the state machine refuse to `query` it
    /// after all and the read have to go through the log.
    op: Bytes,
    /// The read index, once the leader answered.
    index: Option<Slot>,
}

/// Read-index state: reads waiting for an index, the one request out, and
/// reads that have their index and wait for the log to be applied past it.
struct Reads<C> {
    by_id: BTreeMap<u64, PendingRead<C>>,
    /// `(client, seq)` of every read in `by_id`, so a request can be checked
    /// for a duplicate without a scan over every connection's read.
    requests: BTreeSet<(ClientId, u64)>,
    next_id: u64,
    /// Reads not yet asked about.
    unasked: Vec<u64>,
    /// The ids of the `ReadIndex` request out, and when it was sent.
    asking: Option<(Vec<u64>, u64)>,
    /// `NotLeader` answers since the last index; bounds redirect loops
    /// while proposers disagree about who leads.
    redirects: usize,
    /// Reads with an index, by index.
    ready: BTreeMap<Slot, Vec<u64>>,
}

impl<C> Reads<C> {
    fn insert(&mut self, id: u64, read: PendingRead<C>) {
        self.requests.insert((read.client, read.seq));
        self.by_id.insert(id, read);
    }

    fn remove(&mut self, id: u64) -> Option<PendingRead<C>> {
        let read = self.by_id.remove(&id)?;
        self.requests.remove(&(read.client, read.seq));
        Some(read)
    }

    fn forget(&mut self, client: ClientId) {
        self.by_id.retain(|_, r| r.client != client);
        self.requests.retain(|(c, _)| *c != client);
    }
}

impl<C> Default for Reads<C> {
    fn default() -> Self {
        Reads {
            by_id: BTreeMap::new(),
            requests: BTreeSet::new(),
            next_id: 0,
            unasked: Vec::new(),
            asking: None,
            redirects: 0,
            ready: BTreeMap::new(),
        }
    }
}

pub struct Replica<S: StateMachine> {
    proposers: Vec<NodeId>,
    learners: Vec<NodeId>,
    /// Other replicas: where snapshots come from.
    peers: Vec<NodeId>,
    cfg: ReplicaConfig,
    sm: S,
    now: u64,
    slot_out: Slot,
    decisions: BTreeMap<Slot, Value>,
    sessions: Sessions,
    pending: BTreeMap<(ClientId, u64), Pending>,
    reads: Reads<S::Command>,
    leader_hint: Option<NodeId>,
    next_proposer: usize,
    next_learner: usize,
    next_catch_up: u64,
    /// Since when decisions past a missing slot have been waiting.
    gap_since: Option<u64>,
    /// Latest durable snapshot, served to peers that fell behind.
    snapshot: Option<Snapshot>,
    /// Older snapshots still being downloaded by peers (at most two), so a
    /// download is not restarted by every newer snapshot we take.
    serving: Vec<Snapshot>,
    /// A snapshot was handed to the shell and is not durable yet.
    taking: bool,
    slots_since_snapshot: u64,
    bytes_since_snapshot: u64,
    /// The learners forgot slots below this and we still need them.
    need_snapshot: Option<Slot>,
    download: Option<Download>,
    next_peer: usize,
    next_report: u64,
    /// `(slot_out, since)`: when the applied prefix last moved. Only our
    /// home learner sends us decisions; if it dies we hear nothing, and
    /// waiting clients make us ask the others early.
    progress: (Slot, u64),
}

/// Ticks without an applied slot, while clients wait, before a replica
/// asks another learner for decisions.
const QUIET_TICKS: u64 = 3;

impl<S: StateMachine> Replica<S> {
    pub fn new(me: &NodeId, topology: &Topology, cfg: ReplicaConfig, sm: S) -> Self {
        let read_id_base = cfg.read_id_base;
        Replica {
            proposers: topology.proposers.clone(),
            learners: topology.learners.clone(),
            peers: topology
                .replicas
                .iter()
                .filter(|r| *r != me)
                .cloned()
                .collect(),
            cfg,
            sm,
            now: 0,
            slot_out: 0,
            decisions: BTreeMap::new(),
            sessions: Sessions::default(),
            pending: BTreeMap::new(),
            reads: Reads {
                next_id: read_id_base,
                ..Reads::default()
            },
            leader_hint: None,
            next_proposer: 0,
            next_learner: 0,
            next_catch_up: 0,
            gap_since: None,
            snapshot: None,
            serving: Vec::new(),
            taking: false,
            slots_since_snapshot: 0,
            bytes_since_snapshot: 0,
            need_snapshot: None,
            download: None,
            next_peer: 0,
            next_report: 0,
            progress: (0, 0),
        }
    }

    /// A replica restarted from a durable snapshot (`Snapshot::data`).
    pub fn restore(
        me: &NodeId,
        topology: &Topology,
        cfg: ReplicaConfig,
        sm: S,
        data: Bytes,
    ) -> Result<Self, String> {
        let mut r = Replica::new(me, topology, cfg, sm);
        let slot = r.install(&data)?;
        // Read from our own disk: durable already.
        r.snapshot = Some(Snapshot { slot, data });
        Ok(r)
    }

    /// The latest durable snapshot's slot (0: none).
    pub fn snapshot_slot(&self) -> Slot {
        self.snapshot.as_ref().map_or(0, |s| s.slot)
    }

    /// The shell made `snap` durable.
    pub fn snapshot_durable(&mut self, snap: Snapshot) -> Output {
        self.taking = false;
        let mut out = Output::default();
        if snap.slot > self.snapshot_slot() {
            self.snapshot = Some(snap);
            self.report_snapshot(&mut out);
        }
        out
    }

    /// The shell could not write a snapshot; try again later.
    pub fn snapshot_failed(&mut self) {
        self.taking = false;
    }

    fn report_snapshot(&mut self, out: &mut Output) {
        self.next_report = self.now + 10 * self.cfg.catch_up_ticks;
        let slot = self.snapshot_slot();
        if slot == 0 {
            return;
        }
        for p in &self.proposers {
            out.send.push((
                p.clone(),
                Message::Proposer(ProposerMsg::SnapshotTaken { slot }),
            ));
        }
    }

    fn encode_image(&self) -> Option<Bytes> {
        let image = Image {
            format: IMAGE_FORMAT,
            slot: self.slot_out,
            sessions: self.sessions.image(),
            state: self.sm.snapshot().into(),
        };
        synod_codec::encode(&image).ok().map(Bytes::from)
    }

    fn maybe_snapshot(&mut self, out: &mut Output) {
        let due = self.slots_since_snapshot >= self.cfg.snapshot_every
            || self.bytes_since_snapshot >= self.cfg.snapshot_bytes;
        if !due || self.taking {
            return;
        }
        if let Some(data) = self.encode_image() {
            self.taking = true;
            self.slots_since_snapshot = 0;
            self.bytes_since_snapshot = 0;
            out.snapshot = Some(Snapshot {
                slot: self.slot_out,
                data,
            });
        }
    }

    /// Replaces our state with a snapshot image, if it is ahead of us.
    /// `self.snapshot` is left to the caller: a downloaded image is not
    /// ours to report to the proposers (who compact the log below it)
    /// until it is durable here.
    fn install(&mut self, data: &[u8]) -> Result<Slot, String> {
        let image = Image::decode(data)?;
        if image.slot < self.slot_out {
            return Err(format!(
                "snapshot of slot {} is behind us ({})",
                image.slot, self.slot_out
            ));
        }
        self.sm.restore(&image.state)?;
        self.sessions = Sessions::restore(
            image.sessions,
            self.cfg.max_sessions,
            self.cfg.max_reply_bytes,
        );
        self.slot_out = image.slot;
        self.decisions = self.decisions.split_off(&image.slot);
        self.slots_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        Ok(image.slot)
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
    /// Client sessions held, and how many were dropped as least recently
    /// used since this replica started or restored a snapshot.
    pub fn sessions(&self) -> (usize, u64) {
        (self.sessions.len(), self.sessions.dropped)
    }
    /// Requests not answered yet, writes and reads.
    pub fn pending(&self) -> usize {
        self.pending.len() + self.reads.by_id.len()
    }

    /// A client request arrives. `op` is the state machine command in codec
    /// encoding.
    pub fn handle_request(&mut self, client: ClientId, seq: u64, op: Bytes) -> Output {
        let mut out = Output::default();
        self.request(client, seq, op, &mut out);
        out
    }

    /// Several client requests at once: the writes among them go to the
    /// leader in one `Propose`, the reads in one `ReadIndex`.
    pub fn handle_requests(
        &mut self,
        requests: impl IntoIterator<Item = (ClientId, u64, Bytes)>,
    ) -> Output {
        let mut out = Output::default();
        for (client, seq, op) in requests {
            self.request(client, seq, op, &mut out);
        }
        out
    }

    fn request(&mut self, client: ClientId, seq: u64, op: Bytes, out: &mut Output) {
        if let Some(s) = self.sessions.get(&client) {
            if seq <= s.seq {
                // Already applied: a retry gets the remembered answer; an
                // older request than the last one has no answer left.
                let output = if seq == s.seq {
                    s.reply.clone()
                } else {
                    Answer::NoAnswer
                };
                out.replies.push(Reply {
                    client,
                    seq,
                    output,
                });
                return;
            }
        }
        if self.pending.contains_key(&(client, seq)) || self.reads.requests.contains(&(client, seq))
        {
            return;
        }
        if self.cfg.read_index {
            if let Ok(command) = synod_codec::decode::<S::Command>(&op) {
                if self.sm.is_read_only(&command) {
                    let id = self.reads.next_id;
                    self.reads.next_id += 1;
                    self.reads.insert(
                        id,
                        PendingRead {
                            client,
                            seq,
                            command,
                            op,
                            index: None,
                        },
                    );
                    self.reads.unasked.push(id);
                    self.ask_read_index(out);
                    return;
                }
            }
        }
        self.propose(client, seq, op, out);
    }

    fn propose(&mut self, client: ClientId, seq: u64, op: Bytes, out: &mut Output) {
        let command = Command { client, seq, op };
        let to = self.target();
        let open = out.send.iter_mut().rev().find_map(|(dest, m)| match m {
            Message::Proposer(ProposerMsg::Propose { commands }) if *dest == to => Some(commands),
            _ => None,
        });
        match open {
            Some(commands) => commands.push(command.clone()),
            None => out.send.push((
                to,
                Message::Proposer(ProposerMsg::Propose {
                    commands: vec![command.clone()],
                }),
            )),
        }
        self.pending.insert(
            (client, seq),
            Pending {
                command,
                sent_at: self.now,
            },
        );
    }

    /// Sends one `ReadIndex` for every read not asked about yet, unless one
    /// is already out: reads pile up meanwhile and share the next round.
    fn ask_read_index(&mut self, out: &mut Output) {
        if self.reads.asking.is_some() || self.reads.unasked.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.reads.unasked);
        out.send.push((
            self.target(),
            Message::Proposer(ProposerMsg::ReadIndex { ids: ids.clone() }),
        ));
        self.reads.asking = Some((ids, self.now));
    }

    fn handle_read_index(&mut self, ids: Vec<u64>, index: Slot, out: &mut Output) {
        self.reads.redirects = 0;
        let mut answered = false;
        for id in ids {
            // A late answer to a request we since retried may name reads
            // that already have an index: the first one stands.
            if let Some(read) = self.reads.by_id.get_mut(&id).filter(|r| r.index.is_none()) {
                read.index = Some(index);
                self.reads.ready.entry(index).or_default().push(id);
                answered = true;
            }
        }
        let by_id = &self.reads.by_id;
        let settled = |id: &u64| by_id.get(id).is_none_or(|r| r.index.is_some());
        if self
            .reads
            .asking
            .as_ref()
            .is_some_and(|(asked, _)| asked.iter().all(settled))
        {
            self.reads.asking = None;
        }
        self.reads.unasked.retain(|id| !settled(id));
        if answered {
            self.serve_reads(out);
        }
        self.ask_read_index(out);
    }

    fn handle_not_leader(
        &mut self,
        from: NodeId,
        ids: Vec<u64>,
        leader: Option<NodeId>,
        out: &mut Output,
    ) {
        let Some((asked, _)) = &self.reads.asking else {
            return;
        };
        // The proposer echoes a request's ids as sent.
        if !ids.first().is_some_and(|id| asked.contains(id)) {
            return; // about an older request
        }
        if let Some((asked, _)) = self.reads.asking.take() {
            self.reads.unasked.extend(asked);
        }
        self.reads.redirects += 1;
        let hint = leader.filter(|l| *l != from && self.proposers.contains(l));
        if let Some(l) = &hint {
            self.leader_hint = Some(l.clone());
        }
        // Follow a redirect at once, but only a few times in a row:
        // proposers that each believe another leads would bounce the
        // request forever. Otherwise park it as if sent now, and the tick
        // asks the next proposer once `retry_ticks` pass.
        if hint.is_some() && self.reads.redirects <= self.proposers.len() {
            self.ask_read_index(out);
        } else {
            self.reads.asking = Some((std::mem::take(&mut self.reads.unasked), self.now));
        }
    }

    /// Answers every read whose index the applied log has reached.
    fn serve_reads(&mut self, out: &mut Output) {
        if self.reads.ready.is_empty() {
            return;
        }
        // Saturating: only a broken peer's snapshot gets slot_out there.
        let later = self.reads.ready.split_off(&self.slot_out.saturating_add(1));
        let due = std::mem::replace(&mut self.reads.ready, later);
        for id in due.into_values().flatten() {
            let Some(read) = self.reads.remove(id) else {
                continue;
            };
            match self.sm.query(&read.command) {
                Some(output) => out.replies.push(Reply {
                    client: read.client,
                    seq: read.seq,
                    output: synod_codec::encode(&output).ok().map(Bytes::from).into(),
                }),
                None => self.propose(read.client, read.seq, read.op, out),
            }
        }
    }

    /// A client went away: stop retrying its requests. If one is still
    /// chosen later it is applied like any other, just not answered.
    pub fn forget_client(&mut self, client: ClientId) {
        self.pending.retain(|(c, _), _| *c != client);
        self.reads.forget(client);
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
            ReplicaMsg::Compacted { below } => {
                if self.slot_out < below {
                    self.need_snapshot = Some(below);
                    if self.download.is_none() {
                        self.start_download(&mut out);
                    }
                }
            }
            ReplicaMsg::SnapshotRequest { slot, offset } => {
                self.serve_snapshot(from.clone(), slot, offset, &mut out)
            }
            ReplicaMsg::SnapshotChunk {
                slot,
                offset,
                total,
                data,
            } => self.handle_chunk(from.clone(), slot, offset, total, data, &mut out),
            ReplicaMsg::ReadIndex { ids, index } => self.handle_read_index(ids, index, &mut out),
            ReplicaMsg::NotLeader { ids, leader } => {
                self.handle_not_leader(from.clone(), ids, leader, &mut out)
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

    fn start_download(&mut self, out: &mut Output) {
        if self.peers.is_empty() {
            return;
        }
        let peer = self.peers[self.next_peer % self.peers.len()].clone();
        self.next_peer += 1;
        self.download = Some(Download {
            peer: peer.clone(),
            slot: 0,
            total: 0,
            buf: Vec::new(),
            asked_at: self.now,
            resent: 0,
        });
        out.send.push((
            peer,
            Message::Replica(ReplicaMsg::SnapshotRequest { slot: 0, offset: 0 }),
        ));
    }

    fn serve_snapshot(&mut self, to: NodeId, slot: Slot, offset: u64, out: &mut Output) {
        let snap = if offset == 0 {
            let latest = self.snapshot.clone();
            if let Some(l) = &latest {
                if !self.serving.iter().any(|s| s.slot == l.slot) {
                    if self.serving.len() >= 2 {
                        self.serving.remove(0);
                    }
                    self.serving.push(l.clone());
                }
            }
            latest
        } else {
            self.serving.iter().find(|s| s.slot == slot).cloned()
        };
        let (slot, total, data) = match snap {
            Some(s) => {
                let start = (offset as usize).min(s.data.len());
                let end = (start + self.cfg.chunk_bytes).min(s.data.len());
                (s.slot, s.data.len() as u64, s.data.slice(start..end))
            }
            None => (0, 0, Bytes::new()),
        };
        out.send.push((
            to,
            Message::Replica(ReplicaMsg::SnapshotChunk {
                slot,
                offset,
                total,
                data,
            }),
        ));
    }

    fn handle_chunk(
        &mut self,
        from: NodeId,
        slot: Slot,
        offset: u64,
        total: u64,
        data: Bytes,
        out: &mut Output,
    ) {
        let Some(d) = self.download.as_mut().filter(|d| d.peer == from) else {
            return;
        };
        if total == 0 || slot <= self.slot_out {
            // This peer has nothing newer than us: the next tick tries another.
            self.download = None;
            return;
        }
        if offset == 0 && d.buf.is_empty() {
            d.slot = slot;
            d.total = total;
        }
        if slot == d.slot && total == d.total && offset != d.buf.len() as u64 {
            // A duplicate, or the answer to a request we re-sent after
            // its first answer came late: we have this chunk already.
            return;
        }
        if slot != d.slot || total != d.total || offset + data.len() as u64 > total {
            // The peer no longer serves the snapshot we were reading (or
            // sent nonsense): start over.
            self.download = None;
            return;
        }
        d.buf.extend_from_slice(&data);
        d.asked_at = self.now;
        d.resent = 0;
        if (d.buf.len() as u64) < total {
            let offset = d.buf.len() as u64;
            out.send.push((
                from,
                Message::Replica(ReplicaMsg::SnapshotRequest { slot, offset }),
            ));
            return;
        }
        let Some(done) = self.download.take() else {
            return;
        };
        let data = Bytes::from(done.buf);
        // The image says which slot it covers; the chunks' header is only
        // the peer's word for it, and the slot we report as durable (which
        // lets the log below it be compacted) must be the image's own.
        let Ok(slot) = self.install(&data) else {
            return;
        };
        self.need_snapshot = None;
        // Requests applied inside the snapshot are answered from the
        // session table it brought.
        let covered: Vec<(ClientId, u64)> = self
            .pending
            .keys()
            .filter(|(c, q)| self.sessions.get(c).is_some_and(|s| s.seq >= *q))
            .copied()
            .collect();
        for (client, seq) in covered {
            self.pending.remove(&(client, seq));
            let output = self
                .sessions
                .get(&client)
                .filter(|s| s.seq == seq)
                .map_or(Answer::NoAnswer, |s| s.reply.clone());
            out.replies.push(Reply {
                client,
                seq,
                output,
            });
        }
        // Persist it as our own, then continue from the log after it.
        self.taking = true;
        out.snapshot = Some(Snapshot { slot, data });
        self.apply_ready(out);
        self.catch_up(out);
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
        let reads_due = self
            .reads
            .asking
            .as_ref()
            .is_some_and(|(_, at)| now - at >= retry_after);
        if !due.is_empty() || reads_due {
            // The leader we believed in did not answer in time: it may be
            // dead, so spread the retry to the next proposer. Once per
            // tick: writes and reads both due must not skip a proposer.
            self.leader_hint = None;
            self.next_proposer += 1;
        }
        for commands in synod_types::chunk_commands(due, self.cfg.message_budget) {
            out.send.push((
                self.target(),
                Message::Proposer(ProposerMsg::Propose { commands }),
            ));
        }
        if reads_due {
            if let Some((asked, _)) = self.reads.asking.take() {
                self.reads.unasked.extend(asked);
            }
            self.reads
                .unasked
                .retain(|id| self.reads.by_id.contains_key(id));
            self.reads.redirects = 0;
            self.ask_read_index(&mut out);
        }
        if let Some(d) = self.download.as_mut() {
            if self.now - d.asked_at > retry_after {
                if d.resent < DOWNLOAD_RESENDS {
                    d.resent += 1;
                    d.asked_at = self.now;
                    out.send.push((
                        d.peer.clone(),
                        Message::Replica(ReplicaMsg::SnapshotRequest {
                            slot: d.slot,
                            offset: d.buf.len() as u64,
                        }),
                    ));
                } else {
                    self.download = None;
                }
            }
        }
        if self.download.is_none()
            && self.need_snapshot.is_some_and(|b| self.slot_out < b)
            && self.now.is_multiple_of(retry_after)
        {
            self.start_download(&mut out);
        }
        if self.now >= self.next_report {
            self.report_snapshot(&mut out);
        }
        // Decisions usually arrive a little out of order; a gap that
        // outlives a couple of ticks means one was lost.
        let gap_stuck = self.gap_since.is_some_and(|g| self.now - g >= 2);
        if self.progress.0 != self.slot_out {
            self.progress = (self.slot_out, self.now);
        }
        let waiting = !self.pending.is_empty() || !self.reads.ready.is_empty();
        let quiet = waiting && self.now - self.progress.1 >= QUIET_TICKS;
        if quiet {
            self.progress.1 = self.now;
        }
        if gap_stuck || quiet || self.now >= self.next_catch_up {
            if gap_stuck {
                self.gap_since = Some(self.now);
            }
            self.catch_up(&mut out);
        }
        if quiet {
            self.reask_stalled_reads(&mut out);
        }
        out
    }

    /// Reads whose index the log has not reached while nothing applied for
    /// a while ask again. An index is the `next_slot` of the leader that
    /// gave it, and a leader deposed before its last slots were chosen
    /// leaves them unchosen for good if its successor's phase 1 found no
    /// trace of them; with no writes to fill them, such a read would wait
    /// forever (the simulator's seed 70013223, `--stress`). A fresh index
    /// is as good as the first: it comes from a leader confirmed after the
    /// read began, so it covers every write acknowledged before the read.
    fn reask_stalled_reads(&mut self, out: &mut Output) {
        let stalled = std::mem::take(&mut self.reads.ready);
        for id in stalled.into_values().flatten() {
            if let Some(read) = self.reads.by_id.get_mut(&id) {
                read.index = None;
                self.reads.unasked.push(id);
            }
        }
        self.ask_read_index(out);
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
        // The bound only matters for a broken peer's slot numbers.
        while self.slot_out < Slot::MAX {
            let Some(value) = self.decisions.remove(&self.slot_out) else {
                break;
            };
            for cmd in value.commands() {
                self.bytes_since_snapshot += cmd.op.len() as u64;
                self.apply_command(cmd, out);
            }
            self.slot_out += 1;
            self.slots_since_snapshot += 1;
        }
        self.serve_reads(out);
        self.maybe_snapshot(out);
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
                .map(Bytes::from)
                .into();
            self.sessions.record(
                cmd.client,
                cmd.seq,
                reply,
                self.cfg.max_sessions,
                self.cfg.max_reply_bytes,
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
                output: Answer::NoAnswer,
            });
        }
        if self.pending.remove(&(cmd.client, cmd.seq)).is_some() {
            let output = self
                .sessions
                .get(&cmd.client)
                .filter(|s| s.seq == cmd.seq)
                .map_or(Answer::NoAnswer, |s| s.reply.clone());
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
