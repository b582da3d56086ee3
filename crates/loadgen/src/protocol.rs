//! What a request looks like on the wire for each target kind and what its
//! answer means: RESP `SET`/`GET`, or etcd's `POST /v3/kv/put` and
//! `POST /v3/kv/range` (linearizable by default) with base64 keys and values.
//! etcd's gRPC requests are built in `grpc.rs`, which also reads their
//! answers (HTTP/2 delivers them per stream, not as a byte stream).

use crate::config::TargetKind;
use crate::{grpc, http, resp};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::fmt;

/// The byte stream from the server cannot be understood; the connection
/// is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of successful answer came back, so a client can tell that an
/// answer belongs to its request (a `SET` answered with data, or a `GET`
/// with a status, means answers got out of order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A RESP status reply such as `+OK`.
    Status,
    /// A RESP bulk string or array, nil included.
    Data,
    /// Anything else, and every etcd answer (puts and ranges look alike).
    Unknown,
}

impl Shape {
    /// Whether this answer can belong to a read (`true`) or a write request.
    pub fn fits(self, read: bool) -> bool {
        match self {
            Shape::Status => !read,
            Shape::Data => read,
            Shape::Unknown => true,
        }
    }
}

/// The server's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success; `hit` is false for a read that found no value.
    Ok { hit: bool, shape: Shape },
    /// An error reply (RESP `-ERR ...`, HTTP status other than 200).
    Failed(String),
}

/// A decoded answer and whether the server will close the connection after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub outcome: Outcome,
    pub consumed: usize,
    pub close: bool,
}

/// Builds one client's requests; the value is fixed per client.
#[derive(Debug, Clone)]
pub struct Encoder {
    kind: TargetKind,
    /// HTTP Host header (etcd only).
    host: String,
    value: Vec<u8>,
    value_b64: String,
}

impl Encoder {
    pub fn new(kind: TargetKind, host: &str, value: Vec<u8>) -> Self {
        let value_b64 = match kind {
            TargetKind::Etcd => B64.encode(&value),
            TargetKind::Resp | TargetKind::EtcdGrpc => String::new(),
        };
        Self {
            kind,
            host: host.to_string(),
            value,
            value_b64,
        }
    }

    pub fn set(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len() * 2 + 128);
        match self.kind {
            TargetKind::Resp => resp::encode(&[b"SET", key.as_bytes(), &self.value], &mut out),
            TargetKind::Etcd => {
                let body = format!(
                    "{{\"key\":\"{}\",\"value\":\"{}\"}}",
                    B64.encode(key),
                    self.value_b64
                );
                http::encode_post(&self.host, "/v3/kv/put", body.as_bytes(), &mut out);
            }
            TargetKind::EtcdGrpc => return grpc::encode_put(key.as_bytes(), &self.value),
        }
        out
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        match self.kind {
            TargetKind::Resp => resp::encode(&[b"GET", key.as_bytes()], &mut out),
            TargetKind::Etcd => {
                let body = format!("{{\"key\":\"{}\"}}", B64.encode(key));
                http::encode_post(&self.host, "/v3/kv/range", body.as_bytes(), &mut out);
            }
            TargetKind::EtcdGrpc => return grpc::encode_range(key.as_bytes()),
        }
        out
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    match s.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The next answer at the start of `buf`, if complete. Only for the
/// in-order byte-stream protocols; `grpc.rs` reads gRPC answers.
pub fn decode(kind: TargetKind, buf: &[u8]) -> Result<Option<Decoded>, ProtocolError> {
    match kind {
        TargetKind::EtcdGrpc => Err(ProtocolError::new(
            "gRPC answers are read per HTTP/2 stream, not from a byte stream",
        )),
        TargetKind::Resp => Ok(resp::parse(buf)?.map(|(reply, consumed)| Decoded {
            outcome: match reply {
                resp::Reply::Error(e) => Outcome::Failed(e),
                resp::Reply::Bulk(None) | resp::Reply::Array(None) => Outcome::Ok {
                    hit: false,
                    shape: Shape::Data,
                },
                resp::Reply::Bulk(Some(_)) | resp::Reply::Array(Some(_)) => Outcome::Ok {
                    hit: true,
                    shape: Shape::Data,
                },
                resp::Reply::Simple(_) => Outcome::Ok {
                    hit: true,
                    shape: Shape::Status,
                },
                resp::Reply::Integer(_) => Outcome::Ok {
                    hit: true,
                    shape: Shape::Unknown,
                },
            },
            consumed,
            close: false,
        })),
        TargetKind::Etcd => Ok(http::parse(buf)?.map(|(r, consumed)| Decoded {
            outcome: if r.status == 200 {
                // A range that found nothing has no "kvs" field; a put
                // answer has none either but is not a read.
                Outcome::Ok {
                    hit: r.body.windows(6).any(|w| w == b"\"kvs\":"),
                    shape: Shape::Unknown,
                }
            } else {
                Outcome::Failed(format!("HTTP {}: {}", r.status, excerpt(&r.body)))
            },
            consumed,
            close: r.close,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_requests() {
        let e = Encoder::new(TargetKind::Resp, "ignored", b"vv".to_vec());
        assert_eq!(e.set("k"), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n");
        assert_eq!(e.get("k"), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }

    #[test]
    fn etcd_requests_carry_base64_json() {
        let e = Encoder::new(TargetKind::Etcd, "127.0.0.1:12379", b"hello".to_vec());
        let set = String::from_utf8(e.set("key:1")).unwrap();
        let (head, body) = set.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:12379\r\n"));
        assert_eq!(body, r#"{"key":"a2V5OjE=","value":"aGVsbG8="}"#);
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let get = String::from_utf8(e.get("key:1")).unwrap();
        assert!(get.starts_with("POST /v3/kv/range HTTP/1.1\r\n"));
        assert!(get.ends_with("\r\n\r\n{\"key\":\"a2V5OjE=\"}"));
    }

    #[test]
    fn resp_outcomes() {
        let d = decode(TargetKind::Resp, b"$-1\r\n").unwrap().unwrap();
        assert_eq!(
            d.outcome,
            Outcome::Ok {
                hit: false,
                shape: Shape::Data
            }
        );
        let d = decode(TargetKind::Resp, b"$1\r\nx\r\n").unwrap().unwrap();
        assert_eq!(
            (d.outcome, d.consumed),
            (
                Outcome::Ok {
                    hit: true,
                    shape: Shape::Data
                },
                7
            )
        );
        let d = decode(TargetKind::Resp, b"+OK\r\n").unwrap().unwrap();
        assert_eq!(
            d.outcome,
            Outcome::Ok {
                hit: true,
                shape: Shape::Status
            }
        );
        assert!(Shape::Status.fits(false) && !Shape::Status.fits(true));
        assert!(Shape::Data.fits(true) && !Shape::Data.fits(false));
        assert!(Shape::Unknown.fits(true) && Shape::Unknown.fits(false));
        let d = decode(TargetKind::Resp, b"-ERR timeout\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(d.outcome, Outcome::Failed("ERR timeout".into()));
        assert_eq!(decode(TargetKind::Resp, b"$1\r\n").unwrap(), None);
    }

    #[test]
    fn etcd_outcomes() {
        let found =
            br#"{"header":{"revision":"7"},"kvs":[{"key":"YQ==","value":"Yg=="}],"count":"1"}"#;
        let mut raw =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", found.len()).into_bytes();
        raw.extend_from_slice(found);
        let d = decode(TargetKind::Etcd, &raw).unwrap().unwrap();
        assert_eq!(
            (d.outcome, d.consumed, d.close),
            (
                Outcome::Ok {
                    hit: true,
                    shape: Shape::Unknown
                },
                raw.len(),
                false
            )
        );

        let missing =
            b"HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n{\"header\":{\"revision\":\"7\"}}";
        let d = decode(TargetKind::Etcd, missing).unwrap().unwrap();
        assert_eq!(
            d.outcome,
            Outcome::Ok {
                hit: false,
                shape: Shape::Unknown
            }
        );

        let err = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 48\r\n\r\n{\"error\":\"etcdserver: leader changed\",\"code\":14}";
        let d = decode(TargetKind::Etcd, err).unwrap().unwrap();
        assert!(d.close);
        assert_eq!(
            d.outcome,
            Outcome::Failed(
                "HTTP 503: {\"error\":\"etcdserver: leader changed\",\"code\":14}".into()
            )
        );
    }
}
