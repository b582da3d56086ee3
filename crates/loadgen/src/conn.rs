//! One TCP connection shared by one or more clients. Clients hand it
//! encoded requests over a channel; it writes them in arrival order and
//! matches answers to requests in the same order (RESP and HTTP/1.1 both
//! answer pipelined requests in order). It connects lazily, and a failed
//! connect, a broken or closed socket, garbage from the server, or an
//! answer overdue by the op timeout fails every outstanding request and
//! drops the socket; the next request reconnects. etcd's gRPC targets use
//! `grpc::GrpcConn` instead, behind the same handle.

use crate::config::TargetKind;
use crate::grpc::GrpcConn;
use crate::protocol::{decode, Outcome};
use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

/// Why an operation got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    Connect(String),
    Io(String),
    Timeout,
    Protocol(String),
    /// The server answered with an error (RESP error, HTTP status != 200).
    Reply(String),
}

impl OpError {
    /// Short name used as the key of the per-kind error counts.
    pub fn kind(&self) -> &'static str {
        match self {
            OpError::Connect(_) => "connect",
            OpError::Io(_) => "io",
            OpError::Timeout => "timeout",
            OpError::Protocol(_) => "protocol",
            OpError::Reply(_) => "reply",
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Connect(e) => write!(f, "connect: {e}"),
            OpError::Io(e) => write!(f, "io: {e}"),
            OpError::Timeout => f.write_str("timed out"),
            OpError::Protocol(e) => write!(f, "protocol: {e}"),
            OpError::Reply(e) => write!(f, "error reply: {e}"),
        }
    }
}

pub type OpResult = Result<Outcome, OpError>;

pub struct Request {
    pub bytes: Vec<u8>,
    pub reply: oneshot::Sender<OpResult>,
}

/// Handle to one connection.
#[derive(Clone)]
pub enum Conn {
    /// A task that owns an in-order (RESP or HTTP/1.1) socket.
    InOrder(mpsc::UnboundedSender<Request>),
    Grpc(GrpcConn),
}

impl Conn {
    /// Starts the connection (it connects on the first request). Its task
    /// ends when every clone of the returned handle is dropped.
    pub fn spawn(kind: TargetKind, addr: String, op_timeout: Duration) -> Conn {
        if kind == TargetKind::EtcdGrpc {
            return Conn::Grpc(GrpcConn::new(addr));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(kind, addr, op_timeout, rx));
        Conn::InOrder(tx)
    }

    /// Sends one request and waits at most `op_timeout` for its answer.
    pub async fn call(&self, bytes: Vec<u8>, op_timeout: Duration) -> OpResult {
        let tx = match self {
            Conn::InOrder(tx) => tx,
            Conn::Grpc(g) => return g.call(bytes, op_timeout).await,
        };
        let (reply, rx) = oneshot::channel();
        if tx.send(Request { bytes, reply }).is_err() {
            return Err(OpError::Io("connection task ended".into()));
        }
        match timeout(op_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(OpError::Io("connection task dropped the request".into())),
            Err(_) => Err(OpError::Timeout),
        }
    }
}

fn fail_all(pending: &mut VecDeque<(oneshot::Sender<OpResult>, Instant)>, e: &OpError) {
    for (tx, _) in pending.drain(..) {
        let _ = tx.send(Err(e.clone()));
    }
}

async fn run(
    kind: TargetKind,
    addr: String,
    op_timeout: Duration,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut pending = VecDeque::new();
    while let Some(first) = rx.recv().await {
        let stream = match timeout(op_timeout, TcpStream::connect(addr.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let e = OpError::Connect(format!("{addr}: {e}"));
                let _ = first.reply.send(Err(e.clone()));
                while let Ok(r) = rx.try_recv() {
                    let _ = r.reply.send(Err(e.clone()));
                }
                continue;
            }
            Err(_) => {
                let _ = first
                    .reply
                    .send(Err(OpError::Connect(format!("{addr}: timed out"))));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match serve(kind, stream, first, &mut rx, &mut pending, op_timeout).await {
            Ok(()) => return,
            Err(e) => fail_all(&mut pending, &e),
        }
    }
}

/// Runs one connected socket until it fails (`Err`) or every client is
/// gone (`Ok`).
async fn serve(
    kind: TargetKind,
    mut stream: TcpStream,
    first: Request,
    rx: &mut mpsc::UnboundedReceiver<Request>,
    pending: &mut VecDeque<(oneshot::Sender<OpResult>, Instant)>,
    op_timeout: Duration,
) -> Result<(), OpError> {
    let (mut rd, mut wr) = stream.split();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf = Vec::with_capacity(64 * 1024);
    let queue = |req: Request,
                 wbuf: &mut Vec<u8>,
                 pending: &mut VecDeque<(oneshot::Sender<OpResult>, Instant)>| {
        wbuf.extend_from_slice(&req.bytes);
        pending.push_back((req.reply, Instant::now() + op_timeout));
    };
    queue(first, &mut wbuf, pending);
    loop {
        // Everything queued so far goes out in one write.
        while let Ok(r) = rx.try_recv() {
            queue(r, &mut wbuf, pending);
        }
        if !wbuf.is_empty() {
            match timeout(op_timeout, wr.write_all(&wbuf)).await {
                Ok(Ok(())) => wbuf.clear(),
                Ok(Err(e)) => return Err(OpError::Io(format!("write: {e}"))),
                Err(_) => return Err(OpError::Timeout),
            }
        }
        let deadline = pending.front().map(|p| p.1);
        tokio::select! {
            biased;
            read = rd.read_buf(&mut rbuf) => {
                match read {
                    Ok(0) => return Err(OpError::Io("connection closed by the server".into())),
                    Ok(_) => {}
                    Err(e) => return Err(OpError::Io(format!("read: {e}"))),
                }
                while let Some(d) = decode(kind, &rbuf).map_err(|e| OpError::Protocol(e.0))? {
                    rbuf.advance(d.consumed);
                    let Some((tx, _)) = pending.pop_front() else {
                        return Err(OpError::Protocol("an answer without a request".into()));
                    };
                    let _ = tx.send(match d.outcome {
                        Outcome::Failed(e) => Err(OpError::Reply(e)),
                        ok => Ok(ok),
                    });
                    if d.close {
                        return Err(OpError::Io("server closed the connection".into()));
                    }
                }
            }
            req = rx.recv() => match req {
                Some(r) => queue(r, &mut wbuf, pending),
                None => return Ok(()),
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                return Err(OpError::Timeout);
            }
        }
    }
}
