//! Inbound peer connections: handshake, then decode frames into the router.
//!
//! A peer dials a new connection whenever its old one failed on its side
//! (say, its `TCP_USER_TIMEOUT` fired during a partition). Our end of the
//! old one may never learn of it (the reset was lost with the partition),
//! so the newest connection from a peer closes the older ones: one live
//! inbound connection per peer, however many partitions came and went.

use crate::{Inbound, Router, TransportConfig};
use actix::Addr;
use futures::StreamExt;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use synod_codec::{Frame, PeerCodec, PROTOCOL_VERSION};
use synod_types::NodeId;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::{Encoder, FramedRead};

/// Per peer: how to close its current inbound connection.
type Current = Rc<RefCell<HashMap<NodeId, oneshot::Sender<()>>>>;

pub(crate) fn spawn(listener: TcpListener, cfg: TransportConfig, router: Addr<Router>) {
    actix::spawn(async move {
        let current = Current::default();
        // Connections that have not said who they are yet. Anyone can open
        // one, and each holds a descriptor until the handshake times out:
        // unbounded, a flood of them would use up the process's descriptors
        // and cut off clients, peers and the log alike.
        let handshaking = Rc::new(Cell::new(0usize));
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    if handshaking.get() >= crate::MAX_HANDSHAKING {
                        tracing::debug!(node = %cfg.me, %addr, "too many handshakes at once, closing");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let (cfg, router, current) = (cfg.clone(), router.clone(), current.clone());
                    let handshaking = handshaking.clone();
                    handshaking.set(handshaking.get() + 1);
                    actix::spawn(async move {
                        let pending = Pending(handshaking);
                        if let Err(e) = serve(stream, &cfg, router, current, pending).await {
                            tracing::debug!(node = %cfg.me, %addr, "peer connection closed: {e}");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(node = %cfg.me, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// Counts a connection as handshaking until dropped.
struct Pending(Rc<Cell<usize>>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

async fn serve(
    stream: TcpStream,
    cfg: &TransportConfig,
    router: Addr<Router>,
    current: Current,
    pending: Pending,
) -> Result<(), String> {
    let (rd, mut wr) = stream.into_split();
    let mut frames = FramedRead::new(rd, PeerCodec::for_hello());
    let first = tokio::time::timeout(cfg.handshake_timeout, frames.next())
        .await
        .map_err(|_| "no hello within the handshake timeout".to_string())?;
    let peer = match first {
        Some(Ok(Frame::Hello {
            cluster_id,
            version,
            node,
            settings,
        })) => {
            let refusal = if cluster_id != cfg.cluster_id {
                Some(format!(
                    "peer is in cluster {cluster_id:?}, not {:?}",
                    cfg.cluster_id
                ))
            } else if version != PROTOCOL_VERSION {
                Some(format!(
                    "peer speaks protocol {version}, we speak {PROTOCOL_VERSION}"
                ))
            } else if !cfg.peers.contains_key(&node) {
                Some(format!(
                    "peer claims to be {node}, which the config does not list"
                ))
            } else if settings != cfg.settings {
                Some(settings_differ(&node, &settings, &cfg.settings))
            } else {
                None
            };
            if let Some(why) = refusal {
                // A misconfigured cluster, not a passing fault: say so
                // where the operator looks. The peer redials with backoff,
                // so this repeats at most about once a second.
                tracing::warn!(node = %cfg.me, "refused a peer connection: {why}");
                return Err(why);
            }
            node
        }
        Some(Ok(_)) => return Err("first frame was not a hello".into()),
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("closed before hello".into()),
    };
    let mut buf = bytes::BytesMut::new();
    PeerCodec::new(cfg.max_frame)
        .encode(&hello(cfg), &mut buf)
        .map_err(|e| e.to_string())?;
    wr.write_all(&buf).await.map_err(|e| e.to_string())?;
    frames.decoder_mut().set_max_frame(cfg.max_frame);
    drop(pending);
    tracing::debug!(node = %cfg.me, %peer, "peer connected");
    let (close, mut replaced) = oneshot::channel();
    if let Some(older) = current.borrow_mut().insert(peer.clone(), close) {
        let _ = older.send(());
    }
    loop {
        let frame = tokio::select! {
            f = frames.next() => f,
            _ = &mut replaced => return Err("replaced by a newer connection".into()),
        };
        let Some(frame) = frame else { break };
        match frame {
            Ok(Frame::Msg(env)) if env.from == peer => router.do_send(Inbound(env)),
            Ok(Frame::Msg(env)) => {
                return Err(format!(
                    "{peer} sent a message claiming to be from {}",
                    env.from
                ))
            }
            Ok(Frame::Hello { .. }) => return Err("second hello".into()),
            Err(e) => {
                tracing::warn!(node = %cfg.me, %peer, "bad frame, closing connection: {e}");
                return Err(e.to_string());
            }
        }
    }
    Ok(())
}

pub(crate) fn hello(cfg: &TransportConfig) -> Frame {
    Frame::Hello {
        cluster_id: cfg.cluster_id.clone(),
        version: PROTOCOL_VERSION,
        node: cfg.me.clone(),
        settings: cfg.settings.clone(),
    }
}

/// Why a link to a peer with other cluster-wide settings is refused. Logged
/// on both ends, so the operator sees which config to fix.
pub(crate) fn settings_differ(peer: &NodeId, theirs: &str, ours: &str) -> String {
    format!(
        "{peer} runs with other cluster-wide settings (they must match on every node): \
         theirs {theirs:?}, ours {ours:?}"
    )
}
