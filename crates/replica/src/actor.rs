//! Actix shell around [`Replica`]: peer messages and ticks in, effects out.
//! Client front ends (the RESP server, or a user's own) talk to it through
//! [`ReplicaHandle`].

use crate::{Answer, Output, Replica, Snapshot};
use actix::prelude::*;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;
use synod_storage::SnapshotStore;
use synod_transport::{Deliver, Outbound, Router};
use synod_types::{ClientId, NodeId, ReplicaMsg, Slot, StateMachine};
use tokio::sync::oneshot;

/// Exit code when snapshots cannot be written at all (EX_SOFTWARE, as for
/// an acceptor whose log fails).
pub const EXIT_SNAPSHOT_FAILURE: i32 = 70;

/// A client request: `op` is the state machine command in codec encoding.
/// The answer arrives on `reply` once the command is applied here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientRequest {
    pub client: ClientId,
    pub seq: u64,
    pub op: Bytes,
    pub reply: oneshot::Sender<ClientReply>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientReply {
    /// The state machine's output, in codec encoding.
    Output(Bytes),
    /// The request cannot be answered (e.g. its command did not decode).
    Failed(String),
}

/// The client's connection closed; stop retrying its requests.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientGone(pub ClientId);

/// What this replica has applied, for operators and tests.
#[derive(Message)]
#[rtype(result = "ReplicaStatus")]
pub struct GetStatus;

#[derive(Debug, Clone, MessageResponse)]
pub struct ReplicaStatus {
    pub node: NodeId,
    /// Slots below this are applied.
    pub applied: Slot,
    /// The latest durable snapshot covers slots below this.
    pub snapshot: Slot,
    /// [`StateMachine::digest`] of the current state.
    pub digest: u64,
    pub leader_hint: Option<NodeId>,
    /// Figures from other roles of this node (e.g. acceptor fsync counts).
    pub extra: Vec<(String, u64)>,
}

/// Reports extra figures alongside the replica status.
pub type StatusExtra = Box<dyn Fn() -> Vec<(String, u64)> + Send>;

/// Installs the source of [`ReplicaStatus::extra`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetStatusExtra(pub StatusExtra);

/// The addresses a client front end needs; independent of the state machine type.
#[derive(Clone)]
pub struct ReplicaHandle {
    pub request: Recipient<ClientRequest>,
    pub gone: Recipient<ClientGone>,
    pub status: Recipient<GetStatus>,
}

pub struct ReplicaActor<S: StateMachine> {
    me: NodeId,
    logic: Replica<S>,
    router: Addr<Router>,
    tick: Duration,
    waiting: HashMap<(ClientId, u64), oneshot::Sender<ClientReply>>,
    /// Requests that arrived since the last flush; see `FlushRequests`.
    arrived: Vec<(ClientId, u64, Bytes)>,
    /// Where snapshots go; `None` keeps them in memory only (tests).
    store: Option<SnapshotStore>,
    /// Whether snapshots are written at all (`store` is taken at start).
    persists: bool,
    writer: Option<mpsc::Sender<Snapshot>>,
    extra: Option<StatusExtra>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotSaved(Result<Snapshot, String>);

/// Sent to ourselves when the first request of a burst arrives. It queues
/// behind whatever is in the mailbox already, so every request that came
/// in meanwhile is handed to the logic together and goes to the leader in
/// one message: batching with no timer and no wait when idle.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushRequests;

impl<S: StateMachine + Unpin> ReplicaActor<S> {
    /// `logic` is a fresh replica or one restored from `store`'s snapshot.
    pub fn new(
        me: NodeId,
        logic: Replica<S>,
        store: Option<SnapshotStore>,
        router: Addr<Router>,
        tick: Duration,
    ) -> Self {
        ReplicaActor {
            me,
            logic,
            router,
            tick,
            waiting: HashMap::new(),
            arrived: Vec::new(),
            persists: store.is_some(),
            store,
            writer: None,
            extra: None,
        }
    }

    pub fn handle_of(addr: &Addr<Self>) -> ReplicaHandle {
        ReplicaHandle {
            request: addr.clone().recipient(),
            gone: addr.clone().recipient(),
            status: addr.clone().recipient(),
        }
    }

    fn execute(&mut self, out: Output) {
        if let Some(snap) = out.snapshot {
            match &self.writer {
                // Written off the actor's thread: a large snapshot must not
                // hold up applying commands.
                Some(w) => {
                    let _ = w.send(snap);
                }
                // Nowhere to write it (an in-memory replica): as durable
                // as it will get.
                None if !self.persists => {
                    let more = self.logic.snapshot_durable(snap);
                    self.execute(more);
                }
                // The writer is gone (the node is stopping): not durable.
                None => self.logic.snapshot_failed(),
            }
        }
        for (to, msg) in out.send {
            self.router.do_send(Outbound { to, msg });
        }
        for r in out.replies {
            if let Some(tx) = self.waiting.remove(&(r.client, r.seq)) {
                let reply = match r.output {
                    Answer::Output(b) => ClientReply::Output(b),
                    Answer::OutputDropped => ClientReply::Failed(
                        "the command was applied, but its reply is no longer kept \
                         (limits.session_reply_bytes)"
                            .into(),
                    ),
                    Answer::NoAnswer => ClientReply::Failed("command could not be applied".into()),
                };
                // The client may have hung up meanwhile; nothing to do then.
                let _ = tx.send(reply);
            }
        }
    }
}

impl<S: StateMachine + Unpin> Actor for ReplicaActor<S> {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(store) = self.store.take() {
            let (tx, rx) = mpsc::channel::<Snapshot>();
            let addr = ctx.address();
            let spawned = std::thread::Builder::new()
                .name(format!("{}-snapshots", self.me))
                .spawn(move || {
                    while let Ok(mut snap) = rx.recv() {
                        // Only the newest queued snapshot matters.
                        while let Ok(newer) = rx.try_recv() {
                            snap = newer;
                        }
                        let saved = store.save(snap.slot, &snap.data).map(|()| snap);
                        addr.do_send(SnapshotSaved(saved.map_err(|e| e.to_string())));
                    }
                });
            match spawned {
                Ok(_) => self.writer = Some(tx),
                Err(e) => {
                    // Without it no snapshot becomes durable, so the log is
                    // never compacted: stop rather than run on like that.
                    tracing::error!(node = %self.me, "no snapshot writer thread: {e}");
                    System::current().stop_with_code(EXIT_SNAPSHOT_FAILURE);
                }
            }
        }
        ctx.run_interval(self.tick, |act, _| {
            let out = act.logic.tick();
            act.execute(out);
        });
    }
}

impl<S: StateMachine + Unpin> Handler<SetStatusExtra> for ReplicaActor<S> {
    type Result = ();
    fn handle(&mut self, SetStatusExtra(f): SetStatusExtra, _: &mut Context<Self>) {
        self.extra = Some(f);
    }
}

impl<S: StateMachine + Unpin> Handler<SnapshotSaved> for ReplicaActor<S> {
    type Result = ();
    fn handle(&mut self, SnapshotSaved(r): SnapshotSaved, _: &mut Context<Self>) {
        match r {
            Ok(snap) => {
                tracing::debug!(node = %self.me, slot = snap.slot, bytes = snap.data.len(), "snapshot durable");
                let out = self.logic.snapshot_durable(snap);
                self.execute(out);
            }
            Err(e) => {
                // Not fatal: nothing was compacted on the strength of it.
                tracing::error!(node = %self.me, "cannot write snapshot: {e}");
                self.logic.snapshot_failed();
            }
        }
    }
}

impl<S: StateMachine + Unpin> Handler<Deliver<ReplicaMsg>> for ReplicaActor<S> {
    type Result = ();
    fn handle(&mut self, d: Deliver<ReplicaMsg>, _: &mut Context<Self>) {
        let started = std::time::Instant::now();
        let out = self.logic.handle(d.from, d.msg);
        if let Some(s) = &out.snapshot {
            // The encode happens inline (the write does not): this is how
            // long taking a snapshot held up applying commands.
            tracing::debug!(node = %self.me, slot = s.slot, bytes = s.data.len(),
                micros = started.elapsed().as_micros() as u64, "snapshot taken");
        }
        self.execute(out);
    }
}

impl<S: StateMachine + Unpin> Handler<ClientRequest> for ReplicaActor<S> {
    type Result = ();
    fn handle(&mut self, req: ClientRequest, ctx: &mut Context<Self>) {
        self.waiting.insert((req.client, req.seq), req.reply);
        if self.arrived.is_empty() {
            ctx.notify(FlushRequests);
        }
        self.arrived.push((req.client, req.seq, req.op));
    }
}

impl<S: StateMachine + Unpin> Handler<FlushRequests> for ReplicaActor<S> {
    type Result = ();
    fn handle(&mut self, _: FlushRequests, _: &mut Context<Self>) {
        let arrived = std::mem::take(&mut self.arrived);
        let out = self.logic.handle_requests(arrived);
        self.execute(out);
    }
}

impl<S: StateMachine + Unpin> Handler<ClientGone> for ReplicaActor<S> {
    type Result = ();
    fn handle(&mut self, ClientGone(client): ClientGone, _: &mut Context<Self>) {
        self.waiting.retain(|(c, _), _| *c != client);
        self.arrived.retain(|(c, _, _)| *c != client);
        self.logic.forget_client(client);
    }
}

impl<S: StateMachine + Unpin> Handler<GetStatus> for ReplicaActor<S> {
    type Result = ReplicaStatus;
    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> ReplicaStatus {
        ReplicaStatus {
            node: self.me.clone(),
            applied: self.logic.slot_out(),
            snapshot: self.logic.snapshot_slot(),
            digest: self.logic.state().digest(),
            leader_hint: self.logic.leader_hint().cloned(),
            extra: {
                let (held, dropped) = self.logic.sessions();
                let mut extra = vec![
                    ("sessions".to_string(), held as u64),
                    ("sessions_dropped".to_string(), dropped),
                ];
                extra.extend(self.extra.as_ref().map(|f| f()).unwrap_or_default());
                extra
            },
        }
    }
}
