//! etcd's native client protocol: gRPC over HTTP/2 (`etcdserverpb.KV/Put`
//! and `/Range`), with the two protobuf messages encoded by hand.
//!
//! The JSON gateway (`http.rs`) costs etcd an HTTP/1.1 parse, JSON and
//! base64, and a second in-process gRPC hop per request, so a comparison
//! that only used it would flatter every system measured against etcd.
//! This is how etcd's own clients and its `benchmark` tool talk to it:
//! one HTTP/2 connection carries the requests of every client assigned to
//! it as concurrent streams, answered in any order.

use crate::conn::{OpError, OpResult};
use crate::protocol::{Outcome, Shape};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

/// First byte of an encoded request: which KV method it is for. The rest
/// is the length-prefixed gRPC message.
pub const PUT: u8 = 0;
pub const RANGE: u8 = 1;

fn path(method: u8) -> Option<&'static str> {
    match method {
        PUT => Some("/etcdserverpb.KV/Put"),
        RANGE => Some("/etcdserverpb.KV/Range"),
        _ => None,
    }
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field.
fn put_bytes_field(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_varint(u64::from(field << 3 | 2), out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Appends a protobuf message as one uncompressed gRPC message.
fn put_frame(msg: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
}

/// An encoded request: the method byte, then the framed message.
fn request(method: u8, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 6);
    out.push(method);
    put_frame(msg, &mut out);
    out
}

/// `PutRequest { key = 1, value = 2 }`.
pub fn encode_put(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(key.len() + value.len() + 8);
    put_bytes_field(1, key, &mut msg);
    put_bytes_field(2, value, &mut msg);
    request(PUT, &msg)
}

/// `RangeRequest { key = 1 }`: one key, and `serializable` (field 7) left
/// false, so etcd answers it linearizably (through a read-index round).
pub fn encode_range(key: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(key.len() + 4);
    put_bytes_field(1, key, &mut msg);
    request(RANGE, &msg)
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&b, rest)) = buf.split_first() else {
            return Err("truncated varint".into());
        };
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// Whether a top-level protobuf message holds field `want`; checks that
/// every field before it is well formed.
fn has_field(mut msg: &[u8], want: u64) -> Result<bool, String> {
    while !msg.is_empty() {
        let tag = get_varint(&mut msg)?;
        if tag >> 3 == want {
            return Ok(true);
        }
        let skip = match tag & 7 {
            0 => {
                get_varint(&mut msg)?;
                0
            }
            1 => 8,
            2 => usize::try_from(get_varint(&mut msg)?).map_err(|_| "field too long")?,
            5 => 4,
            w => return Err(format!("unsupported wire type {w}")),
        };
        if skip > msg.len() {
            return Err("field runs past the message".into());
        }
        msg = &msg[skip..];
    }
    Ok(false)
}

/// The one gRPC message of a unary answer, without its 5-byte prefix.
fn unframe(body: &[u8]) -> Result<&[u8], String> {
    if body.len() < 5 {
        return Err(format!(
            "answer body of {} bytes has no message",
            body.len()
        ));
    }
    if body[0] != 0 {
        return Err("compressed answer (none was asked for)".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(format!(
            "message prefix says {len} bytes, body holds {}",
            body.len() - 5
        ));
    }
    Ok(&body[5..])
}

/// What a complete answer means: `grpc-status` 0 is success (a range hit
/// when `RangeResponse.kvs`, field 2, is present); anything else is the
/// server's error with its `grpc-message`.
pub fn outcome(
    method: u8,
    status: Option<&[u8]>,
    message: Option<&[u8]>,
    body: &[u8],
) -> Result<Outcome, String> {
    match status {
        Some(b"0") => {}
        Some(s) => {
            return Ok(Outcome::Failed(format!(
                "grpc-status {}: {}",
                String::from_utf8_lossy(s),
                String::from_utf8_lossy(message.unwrap_or_default())
            )))
        }
        None => return Err("answer without grpc-status".into()),
    }
    let msg = unframe(body)?;
    let hit = method == PUT || has_field(msg, 2)?;
    Ok(Outcome::Ok {
        hit,
        shape: Shape::Unknown,
    })
}

/// Largest answer body accepted: a value of the load generator's largest
/// size plus room for the message around it.
const MAX_ANSWER: usize = crate::config::MAX_VALUE_SIZE + 64 * 1024;

/// A live connection: its dial number and the handle that opens streams.
type Dialled = (u64, SendRequest<Bytes>);

/// One HTTP/2 connection, dialled on first use and again after it fails.
#[derive(Clone)]
pub struct GrpcConn {
    addr: Arc<str>,
    /// The live connection and its dial number, so a call that failed on
    /// an older connection does not drop a newer one.
    sender: Arc<Mutex<Option<Dialled>>>,
    dials: Arc<std::sync::atomic::AtomicU64>,
    max_answer: usize,
}

impl GrpcConn {
    pub fn new(addr: String) -> Self {
        Self {
            addr: addr.into(),
            sender: Arc::default(),
            dials: Arc::default(),
            max_answer: MAX_ANSWER,
        }
    }

    async fn sender(&self, op_timeout: Duration) -> Result<Dialled, OpError> {
        let mut slot = self.sender.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let connect = async {
            let tcp = TcpStream::connect(&*self.addr)
                .await
                .map_err(|e| OpError::Connect(format!("{}: {e}", self.addr)))?;
            let _ = tcp.set_nodelay(true);
            h2::client::handshake(tcp)
                .await
                .map_err(|e| OpError::Connect(format!("{}: HTTP/2 handshake: {e}", self.addr)))
        };
        let (send, connection) = timeout(op_timeout, connect)
            .await
            .map_err(|_| OpError::Connect(format!("{}: timed out", self.addr)))??;
        tokio::spawn(async move {
            // Ends when the socket fails or every sender is dropped; the
            // failed requests report the error themselves.
            let _ = connection.await;
        });
        let dial = self
            .dials
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *slot = Some((dial, send.clone()));
        Ok((dial, send))
    }

    /// Forgets connection number `dial` if it is still the live one, so
    /// the next request dials again.
    async fn drop_sender(&self, dial: u64) {
        let mut slot = self.sender.lock().await;
        if slot.as_ref().is_some_and(|(d, _)| *d == dial) {
            slot.take();
        }
    }

    /// Sends one request (`encode_put` / `encode_range` bytes) and waits at
    /// most `op_timeout` for its answer.
    pub async fn call(&self, req: Vec<u8>, op_timeout: Duration) -> OpResult {
        let Some((&method, msg)) = req.split_first() else {
            return Err(OpError::Protocol("empty request".into()));
        };
        let path = path(method).ok_or_else(|| OpError::Protocol("unknown method".into()))?;
        let (dial, send) = self.sender(op_timeout).await?;
        let result = timeout(op_timeout, self.exchange(send, path, method, msg)).await;
        // Like an in-order connection, one that failed or let an answer go
        // overdue is dropped (its other streams fail with it) and the next
        // call dials again; a malformed answer only fails its own call.
        match result {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => {
                if !matches!(e, OpError::Protocol(_)) {
                    self.drop_sender(dial).await;
                }
                Err(e)
            }
            Err(_) => {
                self.drop_sender(dial).await;
                Err(OpError::Timeout)
            }
        }
    }

    async fn exchange(
        &self,
        send: SendRequest<Bytes>,
        path: &str,
        method: u8,
        msg: &[u8],
    ) -> Result<Outcome, OpError> {
        let io = |e: h2::Error| OpError::Io(format!("HTTP/2: {e}"));
        let mut send = send.ready().await.map_err(io)?;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| OpError::Protocol(format!("request: {e}")))?;
        let (response, mut stream) = send.send_request(request, false).map_err(io)?;
        stream
            .send_data(Bytes::copy_from_slice(msg), true)
            .map_err(io)?;
        let response = response.await.map_err(io)?;
        if response.status() != http::StatusCode::OK {
            return Ok(Outcome::Failed(format!("HTTP {}", response.status())));
        }
        // A "trailers-only" answer puts grpc-status in the headers.
        let head_status = response.headers().get("grpc-status").cloned();
        let head_message = response.headers().get("grpc-message").cloned();
        let mut recv = response.into_body();
        let mut body = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(io)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            if body.len() + chunk.len() > self.max_answer {
                return Err(OpError::Protocol(format!(
                    "answer body over {} bytes",
                    self.max_answer
                )));
            }
            body.put(chunk);
        }
        let trailers = recv.trailers().await.map_err(io)?;
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status").cloned())
            .or(head_status);
        let message = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message").cloned())
            .or(head_message);
        outcome(
            method,
            status.as_ref().map(|v| v.as_bytes()),
            message.as_ref().map(|v| v.as_bytes()),
            body.chunk(),
        )
        .map_err(OpError::Protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_range_messages() {
        let put = encode_put(b"k1", b"vv");
        // method, uncompressed, length 8, then field 1 "k1" and field 2 "vv".
        assert_eq!(
            put,
            [PUT, 0, 0, 0, 0, 8, 0x0a, 2, b'k', b'1', 0x12, 2, b'v', b'v']
        );
        let range = encode_range(b"key");
        assert_eq!(range, [RANGE, 0, 0, 0, 0, 5, 0x0a, 3, b'k', b'e', b'y']);
        // A 300-byte value needs a two-byte length varint.
        let big = encode_put(b"k", &[7u8; 300]);
        assert_eq!(&big[6 + 3..6 + 6], &[0x12, 0xac, 0x02]);
        assert_eq!(big.len(), 6 + 3 + 3 + 300);
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        put_frame(msg, &mut f);
        f
    }

    #[test]
    fn range_hit_is_the_presence_of_kvs() {
        // header = 1 (a nested message), then kvs = 2, count = 4.
        let found = framed(&[0x0a, 2, 0x18, 7, 0x12, 2, 0x0a, 0, 0x20, 1]);
        let missing = framed(&[0x0a, 2, 0x18, 7]);
        let ok = |hit| Outcome::Ok {
            hit,
            shape: Shape::Unknown,
        };
        assert_eq!(outcome(RANGE, Some(b"0"), None, &found), Ok(ok(true)));
        assert_eq!(outcome(RANGE, Some(b"0"), None, &missing), Ok(ok(false)));
        assert_eq!(outcome(PUT, Some(b"0"), None, &missing), Ok(ok(true)));
    }

    /// A stand-in etcd: answers `Put` with an empty message, `Range` for
    /// key "k" with one `kvs` entry (another key: none), key "bad" with a
    /// trailers-only error, as grpc-go does, and key "huge" with a message
    /// past the size cap.
    /// Aborting it closes every connection it accepted: they live in its
    /// `JoinSet`.
    async fn fake_etcd(listener: tokio::net::TcpListener) {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            conns.spawn(async move {
                let mut streams = tokio::task::JoinSet::new();
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    streams.spawn(async move {
                        let path = req.uri().path().to_string();
                        let mut body = req.into_body();
                        let mut msg = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            msg.extend_from_slice(&chunk);
                        }
                        let key = &msg[7..7 + msg[6] as usize];
                        let ok =
                            http::Response::builder().header("content-type", "application/grpc");
                        if key == b"bad" {
                            let head = ok
                                .header("grpc-status", "9")
                                .header("grpc-message", "no")
                                .body(())
                                .unwrap();
                            let _ = respond.send_response(head, true);
                            return;
                        }
                        let huge = vec![0; 64 * 1024];
                        let reply: &[u8] = match (path.as_str(), key) {
                            ("/etcdserverpb.KV/Range", b"k") => &[0x12, 2, 0x0a, 0],
                            (_, b"huge") => &huge,
                            _ => &[],
                        };
                        let framed = framed(reply);
                        let Ok(mut send) = respond.send_response(ok.body(()).unwrap(), false)
                        else {
                            return;
                        };
                        let _ = send.send_data(framed.into(), false);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let _ = send.send_trailers(trailers);
                    });
                }
            });
        }
    }

    #[tokio::test]
    async fn calls_over_one_connection_and_redials_after_it_breaks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(fake_etcd(listener));
        let conn = GrpcConn {
            max_answer: 32 * 1024,
            ..GrpcConn::new(addr.clone())
        };
        let t = Duration::from_secs(5);
        let ok = |hit| {
            Ok(Outcome::Ok {
                hit,
                shape: Shape::Unknown,
            })
        };
        assert_eq!(conn.call(encode_put(b"k", b"v"), t).await, ok(true));
        assert_eq!(conn.call(encode_range(b"k"), t).await, ok(true));
        assert_eq!(conn.call(encode_range(b"x"), t).await, ok(false));
        assert_eq!(
            conn.call(encode_range(b"bad"), t).await,
            Ok(Outcome::Failed("grpc-status 9: no".into()))
        );
        // An answer past the size cap fails its call, not the connection.
        let huge = conn.call(encode_range(b"huge"), t).await;
        assert!(
            matches!(&huge, Err(OpError::Protocol(m)) if m.contains("over")),
            "{huge:?}"
        );
        assert_eq!(conn.call(encode_range(b"k"), t).await, ok(true));
        // Concurrent calls share the connection as separate streams.
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let c = conn.clone();
                tokio::spawn(async move { c.call(encode_range(b"k"), t).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), ok(true));
        }
        // The server goes away: calls fail with an error, not a hang...
        server.abort();
        let _ = server.await;
        let failed = conn.call(encode_range(b"k"), t).await;
        assert!(failed.is_err(), "{failed:?}");
        // ...and once it is back on the same port, the next call redials.
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        tokio::spawn(fake_etcd(listener));
        let mut last = conn.call(encode_range(b"k"), t).await;
        for _ in 0..3 {
            if last.is_ok() {
                break;
            }
            last = conn.call(encode_range(b"k"), t).await;
        }
        assert_eq!(last, ok(true));
    }

    #[test]
    fn errors_and_garbage() {
        assert_eq!(
            outcome(PUT, Some(b"14"), Some(b"etcdserver: leader changed"), b""),
            Ok(Outcome::Failed(
                "grpc-status 14: etcdserver: leader changed".into()
            ))
        );
        assert!(outcome(PUT, None, None, b"").is_err());
        assert!(outcome(RANGE, Some(b"0"), None, &[0, 0, 0, 0, 9, 1]).is_err());
        assert!(outcome(RANGE, Some(b"0"), None, &[1, 0, 0, 0, 0]).is_err());
        // A field whose length runs past the message, and an endless varint.
        assert!(outcome(RANGE, Some(b"0"), None, &framed(&[0x0a, 9, 1])).is_err());
        let mut endless = vec![0x08];
        endless.extend([0xff; 11]);
        assert!(outcome(RANGE, Some(b"0"), None, &framed(&endless)).is_err());
    }
}
