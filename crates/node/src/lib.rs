//! Node assembly: reads the cluster config, starts the roles the config
//! assigns to one node id, and wires them to the transport. Also the
//! extension point for user code: [`NodeBuilder`] takes any
//! [`StateMachine`] and any number of extensions, closures that get a
//! [`NodeContext`] (the router, the local role actors) and may start their
//! own actors — a RESP front end, an observer of decided slots, an admin
//! API — without touching the role crates.

pub mod cli;
pub mod config;

pub use config::{ClusterConfig, ConfigError, NodeConfig};

use actix::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use synod_acceptor::actor::AcceptorActor;
use synod_acceptor::Acceptor;
use synod_learner::actor::LearnerActor;
use synod_learner::Learner;
use synod_proposer::actor::ProposerActor;
use synod_proposer::{Proposer, ProposerConfig};
use synod_replica::actor::{ReplicaActor, ReplicaHandle, SetStatusExtra};
use synod_replica::{Replica, ReplicaConfig};
use synod_storage::{AcceptorStorage, DataDirIdentity, FileStorage, SnapshotStore, LOG_NAME};
use synod_transport::{LocalRoles, Register, Router, TransportConfig};
use synod_types::{NodeId, Role, SplitMix64, StateMachine};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("acceptor storage: {0}")]
    Storage(#[from] synod_storage::StorageError),
    #[error("{0}")]
    Other(String),
}

/// What an extension gets to work with. Role fields are `None` when this
/// node does not run that role.
#[derive(Clone)]
pub struct NodeContext {
    pub id: NodeId,
    pub config: ClusterConfig,
    pub node: NodeConfig,
    pub router: Addr<Router>,
    pub proposer: Option<Addr<ProposerActor>>,
    pub acceptor: Option<Addr<AcceptorActor>>,
    pub learner: Option<Addr<LearnerActor>>,
    pub replica: Option<ReplicaHandle>,
    /// The data directory's lock, held while any clone of the context
    /// lives: keep one for as long as the node runs.
    _data_lock: Arc<std::fs::File>,
}

/// Takes `dir/LOCK` for this process, so a second process of the same node
/// (a double start, or another config naming the same directory) cannot
/// write the same acceptor log. The lock goes with the file handle.
fn lock_data_dir(dir: &std::path::Path) -> Result<Arc<std::fs::File>, NodeError> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NodeError::Other(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Arc::new(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::Other(format!(
            "{}: the data directory is in use by another running node",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(NodeError::Other(format!("{}: {e}", path.display())))
        }
    }
}

type Extension = Box<dyn FnOnce(&NodeContext) -> Result<(), NodeError>>;

pub struct NodeBuilder<S: StateMachine + Unpin> {
    config: ClusterConfig,
    id: String,
    state_machine: S,
    extensions: Vec<Extension>,
    seed: Option<u64>,
    create_if_missing: bool,
}

/// Sets up the data directory of node `id` for its first start: the
/// directory, its identity file and, for an acceptor, an empty log. Refuses
/// if the node was set up before. Returns the directory.
///
/// This is a separate step on purpose. An acceptor must never forget what
/// it promised or accepted, so a node started without its log cannot tell
/// "new" from "lost everything"; only the operator can, once, here.
pub fn init(cfg: &ClusterConfig, id: &str) -> Result<PathBuf, NodeError> {
    let node = cfg.node(id).map_err(NodeError::Config)?;
    let dir = cfg.data_dir(node);
    let identity = DataDirIdentity::new(&cfg.cluster_id, &node.id);
    identity.check(&dir)?;
    if DataDirIdentity::read(&dir)?.is_some() {
        // Set up before, whatever is left of it now.
        return Err(synod_storage::StorageError::Exists {
            path: DataDirIdentity::path(&dir),
        }
        .into());
    }
    if node.has(Role::Acceptor) {
        FileStorage::create(&dir)?;
    } else {
        synod_storage::create_dir_durably(&dir)?;
    }
    identity.write(&dir)?;
    Ok(dir)
}

impl<S: StateMachine + Unpin> NodeBuilder<S> {
    pub fn new(config: ClusterConfig, id: &str, state_machine: S) -> Self {
        NodeBuilder {
            config,
            id: id.to_string(),
            state_machine,
            extensions: Vec::new(),
            seed: None,
            create_if_missing: false,
        }
    }

    /// Runs [`init`] first if this node's data directory was never set up
    /// (embedders and tests that start from fresh directories). Off by
    /// default: a node whose acceptor log is missing refuses to start.
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// Runs `f` once every role of this node has started.
    pub fn with_extension(
        mut self,
        f: impl FnOnce(&NodeContext) -> Result<(), NodeError> + 'static,
    ) -> Self {
        self.extensions.push(Box::new(f));
        self
    }

    /// Fixes the proposer's random seed (tests); by default it comes from
    /// the clock, so nodes started together still draw different timeouts.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts this node's roles in the current actix system.
    pub fn start(self) -> Result<NodeContext, NodeError> {
        let cfg = self.config;
        let node = cfg.node(&self.id).map_err(NodeError::Config)?.clone();
        let me = NodeId::new(&node.id);
        let t = &cfg.timing;
        let tick = Duration::from_millis(t.tick_ms);

        // The data directory first: a node that may not run (another's
        // directory, a lost log, a second copy of itself) stops before it
        // takes its ports.
        raise_fd_limit(&me);
        let dir = cfg.data_dir(&node);
        let identity = DataDirIdentity::new(&cfg.cluster_id, &node.id);
        identity.check(&dir)?;
        let set_up = DataDirIdentity::read(&dir)?.is_some() || dir.join(LOG_NAME).exists();
        if self.create_if_missing && !set_up {
            init(&cfg, &self.id)?;
        }
        if !node.has(Role::Acceptor) {
            synod_storage::create_dir_durably(&dir)?;
        } else if !dir.join(LOG_NAME).exists() {
            return Err(synod_storage::StorageError::Missing {
                path: dir.join(LOG_NAME),
            }
            .into());
        }
        let data_lock = lock_data_dir(&dir)?;
        if DataDirIdentity::read(&dir)?.is_none() {
            // A directory from before identity files, or of a node with
            // nothing peers cannot give back (no `init` needed): claim it.
            identity.write(&dir)?;
        }
        let mut tc = TransportConfig::new(&cfg.cluster_id, me.clone());
        tc.settings = cfg.shared_settings(S::SEMANTICS);
        tc.listen = Some(node.peer_addr);
        tc.peers = cfg
            .nodes
            .iter()
            .filter(|n| n.id != node.id)
            .map(|n| (NodeId::new(&n.id), n.peer_addr))
            .collect();
        tc.max_frame = cfg.limits.max_frame_bytes;
        tc.queue_limit = cfg.limits.peer_queue;
        let topology = cfg.topology();

        // Everything on disk is read before the peer port is taken, so a
        // node that cannot start (a damaged log or snapshot) never appears
        // to its peers, and an embedder can retry in the same process.
        let acceptor_state = if node.has(Role::Acceptor) {
            let mut storage = FileStorage::open(&dir)?;
            let recovered = storage.load()?;
            tracing::info!(node = %me, dir = %dir.display(), promised = ?recovered.promised,
                accepted = recovered.accepted.len(), "acceptor recovered");
            let logic = Acceptor::new(me.clone(), topology.learners.clone(), recovered)
                .with_proposers(topology.proposers.clone())
                .with_pre_vote_lease(t.election_timeout_ticks);
            Some((logic, storage))
        } else {
            None
        };
        let replica_state = if node.has(Role::Replica) {
            let rc = ReplicaConfig {
                retry_ticks: t.replica_retry_ticks,
                catch_up_ticks: t.catch_up_ticks,
                snapshot_every: cfg.limits.snapshot_every,
                snapshot_bytes: cfg.limits.snapshot_bytes,
                chunk_bytes: cfg.limits.snapshot_chunk_bytes,
                read_index: cfg.reads == config::ReadMode::ReadIndex,
                max_sessions: cfg.limits.max_sessions,
                max_reply_bytes: cfg.limits.session_reply_bytes,
                read_id_base: SplitMix64::new(clock_seed(&me)).next_u64() << 32,
                ..ReplicaConfig::default()
            };
            let store = SnapshotStore::open(&cfg.data_dir(&node).join("replica"))?;
            let logic = match store.load()? {
                Some((slot, data)) => {
                    let logic =
                        Replica::restore(&me, &topology, rc, self.state_machine, data.into())
                            .map_err(|e| {
                                NodeError::Other(format!("{}: {e}", store.path().display()))
                            })?;
                    tracing::info!(node = %me, slot, "replica restored from snapshot");
                    logic
                }
                None => Replica::new(&me, &topology, rc, self.state_machine),
            };
            Some((logic, store))
        } else {
            None
        };

        let router = Router::start(tc).map_err(|source| NodeError::Bind {
            addr: node.peer_addr.to_string(),
            source,
        })?;

        let mut acceptor_stats = None;
        let acceptor = acceptor_state.map(|(logic, storage)| {
            let actor = AcceptorActor::new(me.clone(), logic, Box::new(storage), router.clone())
                .with_tick(tick);
            acceptor_stats = Some(actor.stats());
            actor.start()
        });
        let proposer = node.has(Role::Proposer).then(|| {
            let pc = ProposerConfig {
                heartbeat_ticks: t.heartbeat_ticks,
                election_timeout_ticks: t.election_timeout_ticks,
                retransmit_ticks: t.retransmit_ticks,
                window: cfg.limits.window,
                max_batch: cfg.limits.max_batch,
                max_batch_bytes: cfg.limits.max_batch_bytes,
                max_queue: cfg.limits.max_queue,
                thrifty: cfg.limits.thrifty,
                ..ProposerConfig::default()
            };
            let seed = self.seed.unwrap_or_else(|| clock_seed(&me));
            let logic = Proposer::new(me.clone(), &topology, pc, seed);
            ProposerActor::new(logic, router.clone(), tick).start()
        });
        let learner = node.has(Role::Learner).then(|| {
            // A random base per start keeps fetch-round ids of this run
            // apart from those of earlier runs (2^32 rounds each).
            let round_base = SplitMix64::new(clock_seed(&me)).next_u64() << 32;
            let logic = Learner::new(me.clone(), &topology, round_base);
            LearnerActor::new(logic, router.clone(), tick).start()
        });
        let replica_actor = replica_state.map(|(logic, store)| {
            ReplicaActor::new(me.clone(), logic, Some(store), router.clone(), tick).start()
        });
        let replica = replica_actor.as_ref().map(ReplicaActor::handle_of);
        if let (Some(r), Some(a)) = (&replica_actor, &acceptor_stats) {
            let stats = a.clone();
            r.do_send(SetStatusExtra(Box::new(move || {
                use std::sync::atomic::Ordering::Relaxed;
                vec![
                    ("acceptor_fsyncs".into(), stats.syncs.load(Relaxed)),
                    ("acceptor_records".into(), stats.records.load(Relaxed)),
                    ("acceptor_rewrites".into(), stats.rewrites.load(Relaxed)),
                    (
                        "acceptor_storage_bytes".into(),
                        stats.storage_bytes.load(Relaxed),
                    ),
                ]
            })));
        }

        router.do_send(Register(LocalRoles {
            proposer: proposer.clone().map(|a| a.recipient()),
            acceptor: acceptor.clone().map(|a| a.recipient()),
            learner: learner.clone().map(|a| a.recipient()),
            replica: replica_actor.map(|a| a.recipient()),
        }));
        let ctx = NodeContext {
            id: me,
            config: cfg,
            node,
            router,
            proposer,
            acceptor,
            learner,
            replica,
            _data_lock: data_lock,
        };
        for ext in self.extensions {
            ext(&ctx)?;
        }
        Ok(ctx)
    }
}

fn clock_seed(me: &NodeId) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    me.as_str()
        .bytes()
        .fold(nanos ^ std::process::id() as u64, |h, b| {
            h.rotate_left(7) ^ b as u64
        })
}

/// Extension that serves RESP2 clients on this node's `client_addr`, if it
/// runs a replica of the KV state machine.
/// Descriptors a node keeps for everything but its clients: a link each
/// way to every peer, peers still handshaking, the log and snapshot files,
/// listeners, and slack for the runtime.
fn reserved_fds(nodes: usize) -> u64 {
    2 * nodes as u64 + synod_transport::MAX_HANDSHAKING as u64 + 64
}

/// How many clients fit under the open-file limit `nofile`; `None` if none.
fn clients_within_fd_limit(wanted: usize, nofile: u64, nodes: usize) -> Option<usize> {
    let room = nofile.saturating_sub(reserved_fds(nodes));
    (room > 0).then(|| wanted.min(usize::try_from(room).unwrap_or(usize::MAX)))
}

/// Raises the soft open-file limit to the hard one: a node holds a
/// descriptor per client and per peer link, and the usual soft default
/// (1024) is far below `limits.max_clients`.
fn raise_fd_limit(me: &NodeId) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(node = %me, limit, "open-file limit"),
        Err(e) => tracing::warn!(node = %me, "cannot raise the open-file limit: {e}"),
    }
}

pub fn resp_front_end(ctx: &NodeContext) -> Result<(), NodeError> {
    let (Some(replica), Some(addr)) = (&ctx.replica, ctx.node.client_addr) else {
        return Ok(());
    };
    let wanted = ctx.config.limits.max_clients;
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft);
    let max_clients =
        clients_within_fd_limit(wanted, nofile, ctx.config.nodes.len()).ok_or_else(|| {
            NodeError::Other(format!(
                "the open-file limit ({nofile}) leaves no descriptors for clients; \
                 raise it (ulimit -n)"
            ))
        })?;
    if max_clients < wanted {
        // As Redis does: serve fewer clients rather than run out of
        // descriptors, which would also cut off peers and the log.
        tracing::warn!(node = %ctx.id, wanted, max_clients, nofile,
            "limits.max_clients lowered to fit the open-file limit (ulimit -n)");
    }
    let opts = synod_resp::RespOptions {
        request_timeout: Duration::from_millis(ctx.config.timing.client_timeout_ms),
        max_clients,
        ..Default::default()
    };
    synod_resp::start(addr, replica.clone(), opts)
        .map(|_| ())
        .map_err(|source| NodeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_capped_by_the_open_file_limit_minus_a_reserve() {
        let reserve = reserved_fds(3);
        assert_eq!(clients_within_fd_limit(10_000, 1 << 20, 3), Some(10_000));
        assert_eq!(
            clients_within_fd_limit(10_000, 1024, 3),
            Some(1024 - reserve as usize)
        );
        assert_eq!(clients_within_fd_limit(10_000, reserve, 3), None);
        assert_eq!(clients_within_fd_limit(5, u64::MAX, 3), Some(5));
    }
}
