//! Outbound link to one peer: connect, handshake, pump frames, reconnect
//! with exponential backoff when anything fails.

use crate::{listener::hello, TransportConfig};
use actix::prelude::*;
use bytes::BytesMut;
use futures::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use synod_codec::{Frame, PeerCodec, PROTOCOL_VERSION};
use synod_types::{Envelope, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedRead};

/// Writes coalesce up to this many bytes into one syscall.
const BURST_BYTES: usize = 256 * 1024;

pub struct PeerLink {
    cfg: TransportConfig,
    peer: NodeId,
    addr: SocketAddr,
    tx: Option<mpsc::Sender<Envelope>>,
    /// Bumped per connection so a stale "disconnected" cannot tear down a
    /// newer connection.
    generation: u64,
    connecting: bool,
    backoff: Duration,
    dropped: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Connected {
    generation: u64,
    tx: mpsc::Sender<Envelope>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Disconnected {
    generation: u64,
    reason: String,
}

impl PeerLink {
    pub(crate) fn new(cfg: &TransportConfig, peer: NodeId, addr: SocketAddr) -> Self {
        PeerLink {
            cfg: cfg.clone(),
            peer,
            addr,
            tx: None,
            generation: 0,
            connecting: false,
            backoff: cfg.reconnect_min,
            dropped: 0,
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting {
            return;
        }
        self.connecting = true;
        self.generation += 1;
        let generation = self.generation;
        let (cfg, peer, addr, me) = (
            self.cfg.clone(),
            self.peer.clone(),
            self.addr,
            ctx.address(),
        );
        actix::spawn(async move {
            match open(&cfg, &peer, addr).await {
                Ok(stream) => {
                    let (tx, rx) = mpsc::channel(cfg.queue_limit);
                    me.do_send(Connected { generation, tx });
                    let reason = pump(stream, rx, cfg.max_frame).await;
                    me.do_send(Disconnected { generation, reason });
                }
                Err(reason) => me.do_send(Disconnected { generation, reason }),
            }
        });
    }
}

/// Dials and handshakes; the peer must answer with a matching hello.
async fn open(cfg: &TransportConfig, peer: &NodeId, addr: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket2::SockRef::from(&stream)
        .set_tcp_user_timeout(Some(cfg.user_timeout))
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let mut codec = PeerCodec::new(cfg.max_frame);
    codec
        .encode(&hello(cfg), &mut buf)
        .map_err(|e| e.to_string())?;
    stream.write_all(&buf).await.map_err(|e| e.to_string())?;
    let mut frames = FramedRead::new(&mut stream, PeerCodec::for_hello());
    let answer = tokio::time::timeout(cfg.handshake_timeout, frames.next())
        .await
        .map_err(|_| "no hello back".to_string())?;
    match answer {
        Some(Ok(Frame::Hello {
            cluster_id,
            version,
            node,
            settings,
        })) if cluster_id == cfg.cluster_id
            && version == PROTOCOL_VERSION
            && node == *peer
            && settings == cfg.settings =>
        {
            // The peer sends nothing after its hello, so the read buffer
            // holds no frame we would lose by dropping `frames`.
            drop(frames);
            Ok(stream)
        }
        Some(Ok(other)) => Err(format!("unexpected handshake answer {other:?}")),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("peer closed during handshake".into()),
    }
}

/// Encodes queued envelopes and writes them in bursts until the connection
/// fails or the link drops its sender. Returns why it stopped.
async fn pump(stream: TcpStream, mut rx: mpsc::Receiver<Envelope>, max_frame: usize) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let mut codec = PeerCodec::new(max_frame);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            // The peer never writes after its hello: a readable socket means
            // it closed (or broke protocol). Either way the link is done.
            r = rd.read(&mut probe) => {
                return match r {
                    Ok(0) => "peer closed the connection".into(),
                    Ok(_) => "peer sent data on a one-way link".into(),
                    Err(e) => e.to_string(),
                };
            }
            env = rx.recv() => {
                let Some(env) = env else { return "link closed".into() };
                let mut next = Some(env);
                while let Some(env) = next.take() {
                    if let Err(e) = codec.encode(Frame::Msg(env), &mut buf) {
                        tracing::warn!("dropping message that cannot be framed: {e}");
                    }
                    if buf.len() < BURST_BYTES {
                        next = rx.try_recv().ok();
                    }
                }
                if let Err(e) = wr.write_all(&buf).await {
                    return e.to_string();
                }
                buf.clear();
            }
        }
    }
}

impl Actor for PeerLink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
    }
}

impl Handler<Connected> for PeerLink {
    type Result = ();
    fn handle(&mut self, msg: Connected, _: &mut Context<Self>) {
        if msg.generation == self.generation {
            tracing::debug!(node = %self.cfg.me, peer = %self.peer, "link up");
            self.connecting = false;
            self.backoff = self.cfg.reconnect_min;
            self.tx = Some(msg.tx);
        }
    }
}

impl Handler<Disconnected> for PeerLink {
    type Result = ();
    fn handle(&mut self, msg: Disconnected, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        tracing::debug!(node = %self.cfg.me, peer = %self.peer, reason = %msg.reason, "link down");
        self.tx = None;
        self.connecting = false;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
        ctx.run_later(delay, |link, ctx| link.connect(ctx));
    }
}

/// An envelope for the peer at the other end of this link.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Send(pub Envelope);

impl Handler<Send> for PeerLink {
    type Result = ();
    fn handle(&mut self, Send(env): Send, _: &mut Context<Self>) {
        let Some(tx) = &self.tx else {
            self.dropped += 1;
            return;
        };
        if let Err(e) = tx.try_send(env) {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::debug!(node = %self.cfg.me, peer = %self.peer, dropped = self.dropped, "peer queue: {e}");
            }
        }
    }
}
