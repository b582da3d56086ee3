//! Moves typed messages between roles.
//!
//! Every role actor sends [`Outbound`] to its node's [`Router`] and receives
//! [`Deliver`]`<RoleMsg>`; it cannot tell whether the other end lives in the
//! same process (the router hands the message to a local mailbox) or on
//! another machine (the router hands it to the [`PeerLink`](link) for that
//! node, which frames it over TCP). Which is which comes from the config only.
//!
//! Peer links are one-way: each node dials every peer it sends to and only
//! reads on the connections others dialed to it, so there is never a race
//! over who owns a connection. Both ends exchange a `Hello` first; a peer
//! from another cluster, another protocol version or an unknown node id is
//! dropped before any of its messages is delivered. Outbound queues are
//! bounded and a dead peer's messages are dropped, not buffered: Paxos
//! already tolerates message loss and retransmits what matters.

mod link;
mod listener;

pub use link::PeerLink;

use actix::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use synod_types::{
    AcceptorMsg, Envelope, LearnerMsg, Message as Msg, NodeId, ProposerMsg, ReplicaMsg,
};

/// A message handed to a local role actor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Deliver<M: 'static + Send> {
    pub from: NodeId,
    pub msg: M,
}

/// A role asks its router to send `msg` to node `to`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Outbound {
    pub to: NodeId,
    pub msg: Msg,
}

/// Messages that arrived from a peer connection.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Inbound(pub Envelope);

/// The role actors this node hosts. Messages for a role the node does not
/// host are dropped with a log line: they mean the config differs between
/// nodes.
#[derive(Default, Clone)]
pub struct LocalRoles {
    pub proposer: Option<Recipient<Deliver<ProposerMsg>>>,
    pub acceptor: Option<Recipient<Deliver<AcceptorMsg>>>,
    pub learner: Option<Recipient<Deliver<LearnerMsg>>>,
    pub replica: Option<Recipient<Deliver<ReplicaMsg>>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Register(pub LocalRoles);

/// Inbound peer connections allowed to be in their handshake at once.
pub const MAX_HANDSHAKING: usize = 64;

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub cluster_id: String,
    pub me: NodeId,
    /// What every node of the cluster must agree on, compared verbatim in
    /// the hello (at most [`synod_codec::MAX_SETTINGS`] bytes; the node
    /// binary builds it from the config).
    pub settings: String,
    /// Where this node listens for peers; `None` for a node no one sends to.
    pub listen: Option<SocketAddr>,
    /// Every other node's peer address.
    pub peers: HashMap<NodeId, SocketAddr>,
    pub max_frame: usize,
    /// Messages queued per peer link before new ones are dropped.
    pub queue_limit: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A dial that gets no answer within this is abandoned and retried
    /// (after the backoff) with a fresh SYN, so a link comes back soon
    /// after a partition heals instead of after the kernel's SYN backoff.
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A peer link whose sent data stays unacknowledged this long is torn
    /// down and redialed (`TCP_USER_TIMEOUT`). Without it a connection
    /// cut by a partition keeps its data in the kernel, retransmitted on a
    /// doubling timer: after a 5 s partition, the first message could wait
    /// seconds more after the heal, holding up elections and votes.
    pub user_timeout: Duration,
}

impl TransportConfig {
    pub fn new(cluster_id: &str, me: NodeId) -> Self {
        TransportConfig {
            cluster_id: cluster_id.to_string(),
            me,
            settings: String::new(),
            listen: None,
            peers: HashMap::new(),
            max_frame: synod_codec::DEFAULT_MAX_FRAME,
            queue_limit: 65_536,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            user_timeout: Duration::from_secs(1),
        }
    }
}

/// One per node: dispatches to local roles or peer links.
pub struct Router {
    me: NodeId,
    local: LocalRoles,
    links: HashMap<NodeId, Addr<PeerLink>>,
}

impl Router {
    /// Binds the peer listener (so a taken port fails here, synchronously)
    /// and starts the router and one link per peer in the current system.
    pub fn start(cfg: TransportConfig) -> std::io::Result<Addr<Router>> {
        let listener = match cfg.listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Some(tokio::net::TcpListener::from_std(l)?)
            }
            None => None,
        };
        let me = cfg.me.clone();
        Ok(Router::create(move |ctx| {
            let router = ctx.address();
            if let Some(l) = listener {
                listener::spawn(l, cfg.clone(), router.clone());
            }
            let links = cfg
                .peers
                .iter()
                .map(|(node, addr)| {
                    (
                        node.clone(),
                        PeerLink::new(&cfg, node.clone(), *addr).start(),
                    )
                })
                .collect();
            Router {
                me,
                local: LocalRoles::default(),
                links,
            }
        }))
    }

    fn dispatch(&self, from: NodeId, msg: Msg) {
        let role = msg.role();
        let delivered = match msg {
            Msg::Proposer(msg) => self
                .local
                .proposer
                .as_ref()
                .map(|r| r.do_send(Deliver { from, msg })),
            Msg::Acceptor(msg) => self
                .local
                .acceptor
                .as_ref()
                .map(|r| r.do_send(Deliver { from, msg })),
            Msg::Learner(msg) => self
                .local
                .learner
                .as_ref()
                .map(|r| r.do_send(Deliver { from, msg })),
            Msg::Replica(msg) => self
                .local
                .replica
                .as_ref()
                .map(|r| r.do_send(Deliver { from, msg })),
        };
        if delivered.is_none() {
            tracing::debug!(node = %self.me, %role, "dropping message for a role this node does not host");
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

impl Handler<Register> for Router {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        self.local = msg.0;
    }
}

impl Handler<Outbound> for Router {
    type Result = ();
    fn handle(&mut self, out: Outbound, _: &mut Context<Self>) {
        if out.to == self.me {
            self.dispatch(self.me.clone(), out.msg);
        } else if let Some(link) = self.links.get(&out.to) {
            link.do_send(link::Send(Envelope {
                from: self.me.clone(),
                msg: out.msg,
            }));
        } else {
            tracing::warn!(node = %self.me, to = %out.to, "no route to node");
        }
    }
}

impl Handler<Inbound> for Router {
    type Result = ();
    fn handle(&mut self, Inbound(env): Inbound, _: &mut Context<Self>) {
        self.dispatch(env.from, env.msg);
    }
}
