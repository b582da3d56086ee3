//! One task per client connection.
//!
//! The task reads requests ahead into a bounded queue and answers them
//! strictly in arrival order, since RESP has no request ids. At most one
//! request waits on the replica at a time: the replica's at-most-once rule
//! ("seq ≤ last applied ⇒ duplicate") holds only if a client sends request
//! n+1 after request n was answered. Reading ahead stops when the queue is
//! full, which pushes back on the client through TCP.
//!
//! A pipeline still costs one consensus round, not one per command: the
//! key-value commands queued back to back when the replica is next free go
//! to it together as one [`KvCommand::Pipeline`] request (one seq, one log
//! entry), and its outputs come back as that many replies in order.

use crate::codec::{ProtocolError, RequestCodec};
use crate::command::{self, error, output_frame, printable, Request, Session, StatusView};
use crate::RespOptions;
use bytes::Bytes;
use futures::future::{FutureExt, LocalBoxFuture, OptionFuture};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use redis_protocol::codec::Resp2;
use redis_protocol::error::RedisProtocolError;
use redis_protocol::resp2::types::BytesFrame;
use std::collections::VecDeque;
use std::net::SocketAddr;
use synod_kv::{KvCommand, KvOutput};
use synod_replica::actor::{ClientGone, ClientReply, ClientRequest, GetStatus, ReplicaHandle};
use synod_types::ClientId;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::debug;

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    replica: ReplicaHandle,
    opts: RespOptions,
) {
    // Below 2^63 so `CLIENT ID` can report it exactly as a RESP integer.
    let client = ClientId(rand::thread_rng().gen_range(1..=i64::MAX as u64));
    debug!(client = client.0, %peer, "RESP client connected");
    let gone = replica.gone.clone();
    let mut conn = Connection {
        session: Session::new(client, peer.to_string()),
        replica,
        opts,
    };
    match conn.serve(stream).await {
        Ok(()) => debug!(client = client.0, %peer, "RESP client disconnected"),
        Err(e) => debug!(client = client.0, %peer, error = %e, "RESP client connection failed"),
    }
    gone.do_send(ClientGone(client));
}

enum Incoming {
    /// A parsed request, and its size on the wire (for pipeline limits).
    Request(Request, usize),
    /// The bytes could not be framed: answer this error, then close, since
    /// the stream can no longer be split into requests.
    Fatal(String),
}

/// Requests read ahead, with the bytes they hold: a connection stops
/// reading at `max_pending` requests or `max_pending_bytes`, whichever
/// comes first, so 1,024 requests of 16 MiB cannot pile up in one.
#[derive(Default)]
struct ReadAhead {
    items: VecDeque<Incoming>,
    bytes: usize,
}

impl ReadAhead {
    fn push_back(&mut self, item: Incoming) {
        if let Incoming::Request(_, size) = &item {
            self.bytes += size;
        }
        self.items.push_back(item);
    }

    fn pop_front(&mut self) -> Option<Incoming> {
        let item = self.items.pop_front()?;
        if let Incoming::Request(_, size) = &item {
            self.bytes -= size;
        }
        Some(item)
    }

    fn front(&self) -> Option<&Incoming> {
        self.items.front()
    }

    fn has_room(&self, opts: &RespOptions) -> bool {
        self.items.len() < opts.max_pending.max(1) && self.bytes < opts.max_pending_bytes
    }
}

/// Replies that need the replica: one per request, in request order.
type Pending = LocalBoxFuture<'static, Replies>;

/// Kept apart from `Vec` so a lone request, by far the common case, costs
/// no allocation for its reply.
enum Replies {
    One(BytesFrame),
    Many(Vec<BytesFrame>),
    /// Replies to the front of a pipeline the replica cut short (their
    /// replies together would pass its reply cap), and the commands it left
    /// unapplied, to be sent again before anything else.
    Partial(Vec<BytesFrame>, Vec<KvCommand>),
}

impl Replies {
    /// `frame` as the answer to each of `n` requests.
    fn each(n: usize, frame: BytesFrame) -> Self {
        if n == 1 {
            Replies::One(frame)
        } else {
            Replies::Many(vec![frame; n])
        }
    }
}

enum Step {
    Reply(BytesFrame),
    Nothing,
    ReplyAndClose(BytesFrame),
    Wait(Pending),
}

struct Connection {
    session: Session,
    replica: ReplicaHandle,
    opts: RespOptions,
}

impl Connection {
    async fn serve(&mut self, stream: TcpStream) -> Result<(), RedisProtocolError> {
        let (rd, wr) = stream.into_split();
        let mut reader = FramedRead::new(rd, RequestCodec::new(self.opts.max_frame));
        let mut writer = FramedWrite::new(wr, Resp2::default());
        let mut queue = ReadAhead::default();
        let mut pending: Option<Pending> = None;
        let mut reading = true;
        loop {
            // Take every request already readable, so a pipeline's replies go
            // out in one write rather than one each.
            while reading && queue.has_room(&self.opts) {
                match reader.next().now_or_never() {
                    Some(item) => reading = enqueue(item, &mut queue),
                    None => break,
                }
            }
            while pending.is_none() {
                let Some(incoming) = queue.pop_front() else {
                    break;
                };
                let request = match incoming {
                    Incoming::Request(request, _) => request,
                    Incoming::Fatal(msg) => {
                        writer.send(error(msg)).await?;
                        return Ok(());
                    }
                };
                let step = match request {
                    Request::Kv(cmd) => {
                        let (cmd, n) = self.pipeline(cmd, &mut queue);
                        Step::Wait(self.submit(cmd, n))
                    }
                    other => self.dispatch(other),
                };
                match step {
                    Step::Reply(reply) => writer.feed(reply).await?,
                    Step::Nothing => {}
                    Step::ReplyAndClose(reply) => {
                        writer.send(reply).await?;
                        return Ok(());
                    }
                    Step::Wait(replies) => pending = Some(replies),
                }
            }
            SinkExt::<BytesFrame>::flush(&mut writer).await?;
            if pending.is_none() && !reading {
                return Ok(());
            }
            tokio::select! {
                Some(replies) = OptionFuture::from(pending.as_mut()) => {
                    pending = None;
                    match replies {
                        Replies::One(reply) => writer.feed(reply).await?,
                        Replies::Many(replies) => {
                            for reply in replies {
                                writer.feed(reply).await?;
                            }
                        }
                        Replies::Partial(replies, rest) => {
                            for reply in replies {
                                writer.feed(reply).await?;
                            }
                            // Nothing else is dispatched while a request
                            // is pending, so replies keep their order.
                            let n = rest.len();
                            let cmd = match <[KvCommand; 1]>::try_from(rest) {
                                Ok([one]) => one,
                                Err(rest) => KvCommand::Pipeline(rest),
                            };
                            pending = Some(self.submit(cmd, n));
                        }
                    }
                }
                item = reader.next(), if reading && queue.has_room(&self.opts) => {
                    reading = enqueue(item, &mut queue);
                }
                else => return Ok(()),
            }
        }
    }

    fn dispatch(&mut self, request: Request) -> Step {
        match request {
            Request::Reply(reply) => Step::Reply(reply),
            Request::Ignore => Step::Nothing,
            Request::Quit => Step::ReplyAndClose(command::ok()),
            Request::Session(cmd) => Step::Reply(self.session.answer(cmd)),
            Request::Kv(cmd) => Step::Wait(self.submit(cmd, 1)),
            Request::Status(view) => Step::Wait(self.status(view)),
        }
    }

    /// `first` and the key-value commands queued right behind it, up to
    /// the pipeline limits, as one command, and how many it holds. Anything
    /// else in the queue ends the run, so replies keep the order the
    /// requests came in.
    fn pipeline(&self, first: KvCommand, queue: &mut ReadAhead) -> (KvCommand, usize) {
        let mut commands = Vec::new();
        let mut bytes = 0;
        while commands.len() + 1 < self.opts.max_pipeline {
            match queue.front() {
                Some(Incoming::Request(Request::Kv(_), size))
                    if bytes + size <= self.opts.max_pipeline_bytes =>
                {
                    bytes += size;
                    if let Some(Incoming::Request(Request::Kv(cmd), _)) = queue.pop_front() {
                        commands.push(cmd);
                    }
                }
                _ => break,
            }
        }
        if commands.is_empty() {
            return (first, 1);
        }
        commands.insert(0, first);
        let n = commands.len();
        (KvCommand::Pipeline(commands), n)
    }

    /// Sends `cmd`, which stands for `n` requests (a pipeline if `n > 1`),
    /// to the replica as one request; the answer is one reply per request.
    fn submit(&mut self, cmd: KvCommand, n: usize) -> Pending {
        let fail = move |frame: BytesFrame| Replies::each(n, frame);
        let op = match synod_codec::encode(&cmd) {
            Ok(op) => Bytes::from(op),
            Err(e) => {
                let why = error(format!(
                    "ERR cannot encode the command: {}",
                    printable(e.to_string().as_bytes())
                ));
                return Box::pin(async move { fail(why) });
            }
        };
        // Kept to send again whatever part of a pipeline the replica
        // leaves unapplied.
        let mut commands = match cmd {
            KvCommand::Pipeline(commands) => commands,
            _ => Vec::new(),
        };
        let client = self.session.client;
        let seq = self.session.next_seq();
        let (reply, answer) = oneshot::channel();
        // A stopped replica drops the message and with it `reply`, which
        // the wait below reports; the mailbox needs no bound since each
        // connection has at most one request outstanding.
        self.replica.request.do_send(ClientRequest {
            client,
            seq,
            op,
            reply,
        });
        let timeout = self.opts.request_timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, answer).await {
                Err(_) => {
                    debug!(client = client.0, seq, "request timed out");
                    fail(error(command::TIMEOUT_ERROR))
                }
                Ok(Err(_)) => fail(error("ERR the replica dropped the request")),
                Ok(Ok(ClientReply::Output(out))) => match synod_codec::decode::<KvOutput>(&out) {
                    Ok(KvOutput::Pipeline(outs)) if n > 1 && outs.len() == n => {
                        Replies::Many(outs.into_iter().map(output_frame).collect())
                    }
                    // The replica applies at least the first command, so
                    // sending the rest again always makes progress.
                    Ok(KvOutput::Pipeline(outs))
                        if n > 1 && !outs.is_empty() && outs.len() < commands.len() =>
                    {
                        let rest = commands.split_off(outs.len());
                        Replies::Partial(outs.into_iter().map(output_frame).collect(), rest)
                    }
                    Ok(out) if n == 1 => Replies::One(output_frame(out)),
                    Ok(_) => fail(error(
                        "ERR internal: the reply does not match the pipeline sent",
                    )),
                    Err(e) => fail(error(format!(
                        "ERR undecodable reply: {}",
                        printable(e.to_string().as_bytes())
                    ))),
                },
                Ok(Ok(ClientReply::Failed(why))) => {
                    fail(error(format!("ERR {}", printable(why.as_bytes()))))
                }
            }
        })
    }

    fn status(&self, view: StatusView) -> Pending {
        let request = self.replica.status.send(GetStatus);
        let timeout = self.opts.request_timeout;
        Box::pin(async move {
            let status = tokio::time::timeout(timeout, request)
                .await
                .ok()
                .and_then(Result::ok);
            Replies::One(command::status_frame(view, status.as_ref()))
        })
    }
}

/// Queues what the reader produced; returns whether to keep reading.
fn enqueue(item: Option<Result<BytesFrame, ProtocolError>>, queue: &mut ReadAhead) -> bool {
    match item {
        Some(Ok(frame)) => {
            let size = held_size(&frame);
            queue.push_back(Incoming::Request(command::parse_request(frame), size));
            true
        }
        // The socket failed or closed mid-frame: nobody to answer.
        Some(Err(ProtocolError::Io(e))) => {
            debug!(error = %e, "RESP client read failed");
            false
        }
        Some(Err(e)) => {
            debug!(error = %e, "RESP protocol error, closing");
            let why = printable(e.to_string().as_bytes());
            queue.push_back(Incoming::Fatal(format!("ERR Protocol error: {why}")));
            false
        }
        None => false,
    }
}

/// Bytes a request holds while it waits: its payload plus a handle per
/// element. Bounds both the read-ahead's memory and what one pipeline puts
/// into a log entry. The handles matter: `MGET` of a million empty keys
/// carries ~4 MiB of payload but holds ~40 MiB of handles, and counting
/// only the payload would let one connection hold ten times its cap.
fn held_size(frame: &BytesFrame) -> usize {
    let payload = match frame {
        BytesFrame::Array(items) => items.iter().map(held_size).sum::<usize>(),
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => b.len(),
        BytesFrame::Error(e) => e.len(),
        BytesFrame::Integer(_) | BytesFrame::Null => 0,
    };
    payload + std::mem::size_of::<BytesFrame>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_request_of_many_small_elements_counts_what_it_holds() {
        let keys = 100_000;
        let mut items = vec![BytesFrame::BulkString(Bytes::from_static(b"MGET"))];
        items.extend((0..keys).map(|_| BytesFrame::BulkString(Bytes::new())));
        let size = held_size(&BytesFrame::Array(items));
        // Each key is an empty payload but a handle of its own.
        assert!(
            size >= keys * std::mem::size_of::<Bytes>(),
            "{size} bytes counted for {keys} keys"
        );
        // A large value still counts by its length.
        let set = BytesFrame::Array(vec![
            BytesFrame::BulkString(Bytes::from_static(b"SET")),
            BytesFrame::BulkString(Bytes::from_static(b"k")),
            BytesFrame::BulkString(Bytes::from(vec![0u8; 1 << 20])),
        ]);
        let size = held_size(&set);
        assert!((1 << 20..(1 << 20) + 1024).contains(&size), "{size}");
    }
}
