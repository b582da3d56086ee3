//! Actix shell around [`Acceptor`], with group commit.
//!
//! The logic updates its in-memory state at once, but nothing it says may
//! leave before the records behind it are on disk. So every outgoing message
//! is tagged with the number of the last record batch appended before it,
//! and held until the writer thread reports that batch durable. The writer
//! drains every batch queued while it was syncing and covers them all with
//! one `fdatasync`: under load, many accepts share one sync.
//!
//! A storage error stops the node: continuing would mean either revealing
//! state that is not durable or going silent while claiming to be alive.

use crate::{Acceptor, Output};
use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use synod_storage::{AcceptorState, AcceptorStorage, Record};
use synod_transport::{Deliver, Outbound, Router};
use synod_types::{AcceptorMsg, Message as Msg, NodeId};

/// Process exit code when storage fails under a running acceptor.
pub const EXIT_STORAGE_FAILURE: i32 = 70;

/// Counters for operators and benchmarks (fsyncs per acknowledged write).
#[derive(Default, Debug)]
pub struct AcceptorStats {
    pub syncs: AtomicU64,
    pub records: AtomicU64,
    pub rewrites: AtomicU64,
    pub storage_bytes: AtomicU64,
}

enum Job {
    /// Records of batch number `n`.
    Append(u64, Vec<Record>),
    /// Replace storage with this state (which includes every earlier batch).
    Rewrite(u64, Box<AcceptorState>),
}

pub struct AcceptorActor {
    me: NodeId,
    logic: Acceptor,
    router: Addr<Router>,
    storage: Option<Box<dyn AcceptorStorage>>,
    stats: Arc<AcceptorStats>,
    writer: Option<mpsc::Sender<Job>>,
    /// Number of the last record batch handed to the writer.
    appended: u64,
    /// Every batch up to this number is durable.
    durable: u64,
    held: VecDeque<(u64, NodeId, Msg)>,
    /// Clock period of the logic (pre-vote leases); `None`: no clock.
    tick: Option<std::time::Duration>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Durable(u64);

#[derive(Message)]
#[rtype(result = "()")]
struct StorageFailed(String);

impl AcceptorActor {
    /// `storage` must already have been loaded into `logic`'s state.
    pub fn new(
        me: NodeId,
        logic: Acceptor,
        storage: Box<dyn AcceptorStorage>,
        router: Addr<Router>,
    ) -> Self {
        AcceptorActor {
            me,
            logic,
            router,
            storage: Some(storage),
            stats: Arc::default(),
            writer: None,
            appended: 0,
            durable: 0,
            held: VecDeque::new(),
            tick: None,
        }
    }

    /// Drives [`Acceptor::tick`] every `tick`.
    pub fn with_tick(mut self, tick: std::time::Duration) -> Self {
        self.tick = Some(tick);
        self
    }

    pub fn stats(&self) -> Arc<AcceptorStats> {
        self.stats.clone()
    }

    fn execute(&mut self, out: Output) {
        // A send error below means the writer died; it reported why.
        if !out.persist.is_empty() {
            self.appended += 1;
            if let Some(w) = &self.writer {
                let _ = w.send(Job::Append(self.appended, out.persist));
            }
        }
        if out.rewrite {
            self.appended += 1;
            if let Some(w) = &self.writer {
                let state = Box::new(self.logic.state().clone());
                let _ = w.send(Job::Rewrite(self.appended, state));
            }
        }
        for (to, msg) in out.send {
            if self.held.is_empty() && self.appended <= self.durable {
                self.router.do_send(Outbound { to, msg });
            } else {
                self.held.push_back((self.appended, to, msg));
            }
        }
    }
}

fn writer_loop(
    mut storage: Box<dyn AcceptorStorage>,
    rx: mpsc::Receiver<Job>,
    actor: Addr<AcceptorActor>,
    stats: Arc<AcceptorStats>,
) {
    let fail = |e: synod_storage::StorageError| actor.do_send(StorageFailed(e.to_string()));
    let mut next = rx.recv().ok();
    while let Some(job) = next.take() {
        match job {
            Job::Append(mut last, records) => {
                let mut count = records.len() as u64;
                let mut result = storage.append(&records);
                // Everything that queued up while we were busy rides on this
                // sync, up to a rewrite, which must see the appends first.
                while result.is_ok() {
                    match rx.try_recv() {
                        Ok(Job::Append(n, more)) => {
                            last = n;
                            count += more.len() as u64;
                            result = storage.append(&more);
                        }
                        Ok(rewrite) => {
                            next = Some(rewrite);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(e) = result.and_then(|()| storage.sync()) {
                    return fail(e);
                }
                stats.syncs.fetch_add(1, Ordering::Relaxed);
                stats.records.fetch_add(count, Ordering::Relaxed);
                stats.storage_bytes.store(storage.size(), Ordering::Relaxed);
                actor.do_send(Durable(last));
            }
            Job::Rewrite(n, state) => {
                if let Err(e) = storage.rewrite(&state) {
                    return fail(e);
                }
                stats.rewrites.fetch_add(1, Ordering::Relaxed);
                stats.storage_bytes.store(storage.size(), Ordering::Relaxed);
                actor.do_send(Durable(n));
            }
        }
        if next.is_none() {
            next = rx.recv().ok();
        }
    }
}

impl Actor for AcceptorActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.tick {
            ctx.run_interval(t, |act, _| act.logic.tick());
        }
        let (tx, rx) = mpsc::channel();
        if let Some(storage) = self.storage.take() {
            let addr = ctx.address();
            let stats = self.stats.clone();
            stats.storage_bytes.store(storage.size(), Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name(format!("{}-acceptor-wal", self.me))
                .spawn(move || writer_loop(storage, rx, addr, stats));
            if let Err(e) = spawned {
                ctx.notify(StorageFailed(format!("cannot start writer thread: {e}")));
            }
        }
        self.writer = Some(tx);
    }
}

impl Handler<Deliver<AcceptorMsg>> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, d: Deliver<AcceptorMsg>, _: &mut Context<Self>) {
        let out = self.logic.handle(d.from, d.msg);
        self.execute(out);
    }
}

impl Handler<Durable> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, Durable(n): Durable, _: &mut Context<Self>) {
        self.durable = n;
        while self.held.front().is_some_and(|(tag, _, _)| *tag <= n) {
            if let Some((_, to, msg)) = self.held.pop_front() {
                self.router.do_send(Outbound { to, msg });
            }
        }
    }
}

impl Handler<StorageFailed> for AcceptorActor {
    type Result = ();
    fn handle(&mut self, StorageFailed(e): StorageFailed, ctx: &mut Context<Self>) {
        tracing::error!(node = %self.me, "acceptor storage failed, stopping the node: {e}");
        self.held.clear();
        ctx.stop();
        System::current().stop_with_code(EXIT_STORAGE_FAILURE);
    }
}
