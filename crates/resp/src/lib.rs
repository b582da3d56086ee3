//! The RESP2 (Redis protocol) front end of a Synod node.
//!
//! This crate owns everything between a Redis client's socket and the local
//! replica: accepting connections, framing requests ([`RequestCodec`]),
//! mapping Redis commands onto [`synod_kv::KvCommand`]s ([`command`]), and
//! one task per connection that sends those commands through the replicated
//! log via [`ReplicaHandle`] and writes the replies back in order. Commands
//! that need no shared state (`PING`, `CONFIG GET`, `CLIENT ...`, `HELLO`)
//! are answered locally, so `redis-cli`, `redis-benchmark` and ordinary
//! client libraries work unchanged.
//!
//! ```text
//!  client ──RESP──▶ RequestCodec ──frame──▶ command::parse_request
//!                                              │ local reply ─────────────┐
//!                                              │ KvCommand                │
//!                                              ▼                          ▼
//!                  ReplicaHandle.request ◀── ClientRequest{client,seq}   in-order
//!                  (through the log)     ──▶ ClientReply ──▶ KvOutput ──▶ replies
//! ```

mod codec;
pub mod command;
mod conn;

pub use codec::{ProtocolError, RequestCodec};

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use synod_replica::actor::ReplicaHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Per-connection limits and timeouts.
#[derive(Clone, Debug)]
pub struct RespOptions {
    /// How long a request may wait for the cluster before the client gets
    /// an error. The replica keeps retrying regardless, so a timed-out
    /// request may still be applied.
    pub request_timeout: Duration,
    /// Largest request accepted, in bytes; a larger one is a protocol error
    /// that closes the connection.
    pub max_frame: usize,
    /// Requests read ahead and queued per connection while one waits on the
    /// cluster; beyond that the connection stops reading.
    pub max_pending: usize,
    /// The same bound in bytes of queued requests.
    pub max_pending_bytes: usize,
    /// Connections served at once; one more is told
    /// `ERR max number of clients reached` and closed, as Redis does.
    pub max_clients: usize,
    /// Most key-value commands one pipelined request carries into the log;
    /// a longer pipeline goes in several.
    pub max_pipeline: usize,
    /// Most payload bytes one pipelined request carries: keeps a pipeline
    /// of large values from growing one log entry without bound.
    pub max_pipeline_bytes: usize,
}

impl Default for RespOptions {
    fn default() -> Self {
        RespOptions {
            request_timeout: Duration::from_secs(5),
            // Well under the 64 MiB cap of the log's codec, so a command
            // plus its batch overhead always encodes.
            max_frame: 16 * 1024 * 1024,
            max_pending: 1024,
            max_pending_bytes: 32 * 1024 * 1024,
            max_clients: 10_000,
            max_pipeline: 256,
            max_pipeline_bytes: 512 * 1024,
        }
    }
}

/// After a failed `accept` (e.g. out of file descriptors), wait this long
/// rather than spin on an error that will repeat.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds `addr` and serves RESP clients there, talking to `replica`.
///
/// Binding happens before this returns, so a bad address or a port in use
/// is reported to the caller; the accept loop then runs as a task of the
/// current actix System until it stops. Returns the bound address (useful
/// with port 0). Must be called from inside a running actix System.
pub fn start(
    addr: SocketAddr,
    replica: ReplicaHandle,
    opts: RespOptions,
) -> io::Result<SocketAddr> {
    if actix::System::try_current().is_none() {
        return Err(io::Error::other(
            "synod_resp::start must be called inside a running actix System",
        ));
    }
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let listener = TcpListener::from_std(std_listener)?;
    info!(addr = %local, "serving RESP clients");
    actix::spawn(accept_loop(listener, replica, opts));
    Ok(local)
}

/// [`start`] for async callers.
pub async fn serve(
    addr: SocketAddr,
    replica: ReplicaHandle,
    opts: RespOptions,
) -> io::Result<SocketAddr> {
    start(addr, replica, opts)
}

async fn accept_loop(listener: TcpListener, replica: ReplicaHandle, opts: RespOptions) {
    // Connection tasks run on this thread (actix), so a plain counter does.
    let active = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok((mut stream, peer)) => {
                if active.get() >= opts.max_clients {
                    debug!(%peer, "refusing a client: max_clients reached");
                    actix::spawn(async move {
                        let _ = stream
                            .write_all(b"-ERR max number of clients reached\r\n")
                            .await;
                    });
                    continue;
                }
                // Replies are small and latency-bound; Nagle would hold them.
                if let Err(e) = stream.set_nodelay(true) {
                    warn!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                active.set(active.get() + 1);
                let active = active.clone();
                let serve = conn::run(stream, peer, replica.clone(), opts.clone());
                actix::spawn(async move {
                    serve.await;
                    active.set(active.get() - 1);
                });
            }
            Err(e) => {
                warn!(error = %e, "accepting a RESP client failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
