//! The one place Synod turns values into bytes and back.
//!
//! Every `bincode` call of the project lives in this file, so the wire and
//! disk format can be swapped in one place. Peer links use
//! [`PeerCodec`]: a 4-byte big-endian length, then a bincode [`Frame`].
//! Decoding is bounded twice: a frame longer than the configured maximum is
//! refused before it is buffered, and bincode may not allocate more than the
//! frame's own length, so a hostile length prefix inside a frame cannot make
//! a node allocate gigabytes.

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use synod_types::{Envelope, NodeId};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Bumped whenever [`Frame`] or any message changes shape.
pub const PROTOCOL_VERSION: u32 = 3;

/// Default cap on one peer frame (and on one encoded value).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(String),
    #[error("decode: {0}")]
    Decode(String),
    #[error("decode: {0} trailing bytes after value")]
    Trailing(usize),
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DEFAULT_MAX_FRAME>()
}

/// Encodes any serde value in Synod's format.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a value that must fill `bytes` exactly.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// What travels on a peer connection.
#[derive(Clone, PartialEq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Frame {
    /// First frame in each direction. A link whose peer names another
    /// cluster, another protocol version or a node the config does not know
    /// is closed before any message is delivered.
    Hello {
        cluster_id: String,
        version: u32,
        node: NodeId,
    },
    Msg(Envelope),
}

/// Length-delimited bincode frames for peer links.
#[derive(Debug)]
pub struct PeerCodec {
    framing: LengthDelimitedCodec,
    max_frame: usize,
}

impl PeerCodec {
    pub fn new(max_frame: usize) -> Self {
        PeerCodec {
            framing: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame)
                .new_codec(),
            max_frame,
        }
    }
}

impl Default for PeerCodec {
    fn default() -> Self {
        PeerCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for PeerCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.framing.decode(src) {
            Ok(Some(body)) => decode(&body).map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(CodecError::TooLarge {
                len: usize::MAX,
                max: self.max_frame,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

impl Encoder<&Frame> for PeerCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let body = encode(frame)?;
        if body.len() > self.max_frame {
            return Err(CodecError::TooLarge {
                len: body.len(),
                max: self.max_frame,
            });
        }
        self.framing
            .encode(Bytes::from(body), dst)
            .map_err(CodecError::Io)
    }
}

impl Encoder<Frame> for PeerCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        <Self as Encoder<&Frame>>::encode(self, &frame, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use synod_types::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Noop),
            proptest::collection::vec(
                (
                    any::<u64>(),
                    any::<u64>(),
                    proptest::collection::vec(any::<u8>(), 0..40)
                ),
                0..4
            )
            .prop_map(|cmds| Value::Batch(
                cmds.into_iter()
                    .map(|(c, s, op)| Command {
                        client: ClientId(c),
                        seq: s,
                        op: op.into()
                    })
                    .collect()
            )),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        let ballot =
            (any::<u64>(), "[a-z][0-9]{0,3}").prop_map(|(r, n)| Ballot::new(r, NodeId::new(&n)));
        prop_oneof![
            (ballot.clone(), any::<u64>()).prop_map(|(ballot, from_slot)| Message::Acceptor(
                AcceptorMsg::Prepare { ballot, from_slot }
            )),
            (ballot.clone(), any::<u64>(), value()).prop_map(|(ballot, slot, value)| {
                Message::Acceptor(AcceptorMsg::Accept {
                    ballot,
                    slot,
                    value,
                })
            }),
            (ballot.clone(), any::<u64>(), value()).prop_map(|(ballot, slot, value)| {
                Message::Proposer(ProposerMsg::Promise {
                    ballot: ballot.clone(),
                    accepted: vec![PromiseEntry {
                        slot,
                        ballot,
                        value,
                    }],
                    compacted_below: slot / 2,
                })
            }),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(slot, offset, data)| {
                    Message::Replica(ReplicaMsg::SnapshotChunk {
                        slot,
                        offset,
                        total: offset + data.len() as u64,
                        data: data.into(),
                    })
                }),
            (ballot.clone(), any::<u64>(), value()).prop_map(|(ballot, slot, value)| {
                Message::Replica(ReplicaMsg::Decide {
                    slot,
                    ballot,
                    value,
                })
            }),
            any::<u64>().prop_map(|from_slot| Message::Learner(LearnerMsg::CatchUp { from_slot })),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(msg in message()) {
            let frame = Frame::Msg(Envelope { from: NodeId::new("n1"), msg });
            let mut codec = PeerCodec::default();
            let mut buf = BytesMut::new();
            codec.encode(&frame, &mut buf).unwrap();
            let back = codec.decode(&mut buf).unwrap();
            prop_assert_eq!(Some(frame), back);
            prop_assert!(buf.is_empty());
        }

        /// A peer's bytes can be anything; decoding must fail cleanly, never panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut codec = PeerCodec::new(1024);
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..4 {
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
            let _ = decode::<Envelope>(&bytes);
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut codec = PeerCodec::new(16);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1000u32.to_be_bytes());
        buf.extend_from_slice(&[0u8; 20]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::TooLarge { .. })
        ));
        let big = Frame::Hello {
            cluster_id: "x".repeat(64),
            version: 1,
            node: NodeId::new("n1"),
        };
        assert!(codec.encode(&big, &mut BytesMut::new()).is_err());
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&7u64).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u64>(&bytes),
            Err(CodecError::Trailing(1))
        ));
    }
}
