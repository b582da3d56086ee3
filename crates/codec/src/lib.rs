//! The one place Synod turns values into bytes and back.
//!
//! Every `bincode` call of the project lives in this file, so the wire and
//! disk format can be swapped in one place. Peer links use
//! [`PeerCodec`]: a 4-byte big-endian length, then a bincode [`Frame`].
//! Decoding is bounded twice: a frame longer than the configured maximum is
//! refused before it is buffered, and bincode may allocate at most a small
//! multiple of the input's own length (see [`decode`]), so a hostile length
//! prefix inside a ten-byte frame cannot make a node allocate megabytes. The
//! same bound, and no fixed cap, applies to data read from disk, so a
//! snapshot of any size that was written can be read back.

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use synod_types::{Envelope, NodeId};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Bumped whenever [`Frame`] or any message changes shape.
pub const PROTOCOL_VERSION: u32 = 7;

/// Default cap on one peer frame.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Cap on a connection's first frame, the [`Frame::Hello`]. Until the hello
/// has named a known node of our cluster, anyone may be on the other end,
/// so the first frame may not make us buffer more than this.
pub const MAX_HELLO_FRAME: usize = 4096;

/// Longest cluster id a config may name, so a hello always fits in
/// [`MAX_HELLO_FRAME`] (node ids are shorter still).
pub const MAX_CLUSTER_ID: usize = 256;

/// Longest `settings` text a hello may carry (see [`Frame::Hello`]).
pub const MAX_SETTINGS: usize = 1024;

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

/// Encodes any serde value in Synod's format.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a value that must fill `bytes` exactly.
///
/// bincode's limit counts what the value will occupy in memory: each
/// primitive its in-memory size (a `u64` sent as a one-byte varint counts
/// 8), each string or byte buffer its length, which it allocates whole from
/// the length prefix before reading. In a well-formed input every buffer is
/// present and every primitive takes at least a byte, so the count stays
/// within 8× the input (16× only for `u128`, which no message carries). The
/// limit is the smallest rung of a ladder (4 KiB, then ×4 up to 1 TiB) at
/// or above 8× the input: never short for a valid value, and a forged prefix
/// can make bincode allocate at most 32× the input, or 4 KiB.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let need = bytes.len().saturating_mul(8);
    macro_rules! ladder {
        ($($limit:expr),*) => {
            $(
                if need <= $limit {
                    return decode_limited::<T, { $limit }>(bytes);
                }
            )*
        };
    }
    ladder!(
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
        4 << 20,
        16 << 20,
        64 << 20,
        256 << 20,
        1 << 30,
        4 << 30,
        16 << 30,
        64 << 30,
        256 << 30,
        1 << 40
    );
    Err(CodecError::TooLarge {
        len: bytes.len(),
        max: (1 << 40) / 8,
    })
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config)
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
        /// The settings every node must share (membership, replicated
        /// limits, the state machine's semantics), as text so a refusal can
        /// say what differs. Nodes that disagree on them would diverge
        /// silently, so a link between them is refused instead.
        settings: String,
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

    /// A codec for reading a connection's hello: frames beyond
    /// [`MAX_HELLO_FRAME`] are refused until [`PeerCodec::set_max_frame`]
    /// raises the cap for an identified peer.
    pub fn for_hello() -> Self {
        PeerCodec::new(MAX_HELLO_FRAME)
    }

    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.framing.set_max_frame_length(max_frame);
        self.max_frame = max_frame;
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
                    chosen_below: slot / 3,
                    from_slot: slot / 4,
                    more_from: slot.checked_add(1),
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
            settings: String::new(),
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

    #[test]
    fn a_forged_length_prefix_cannot_claim_more_than_a_small_multiple_of_the_input() {
        // A `Hello` whose cluster id claims 60 MiB, in a ten-byte body: the
        // limit follows the body's length, so bincode refuses the claim
        // instead of allocating it.
        let mut body = vec![0u8]; // variant 0: Hello
        body.push(253); // varint tag: u32 follows
        body.extend_from_slice(&(60u32 << 20).to_le_bytes());
        body.extend_from_slice(b"abcd");
        match decode::<Frame>(&body) {
            Err(CodecError::Decode(e)) => assert!(e.contains("LimitExceeded"), "{e}"),
            other => panic!("expected a limit error, got {other:?}"),
        }
    }

    #[test]
    fn values_larger_than_a_peer_frame_still_round_trip() {
        // Snapshots on disk are not peer frames: a state past the frame
        // limit must read back as it was written.
        let big = String::from_utf8(vec![b'x'; DEFAULT_MAX_FRAME + 1024]).unwrap();
        let bytes = encode(&big).unwrap();
        assert!(bytes.len() > DEFAULT_MAX_FRAME);
        assert_eq!(decode::<String>(&bytes).unwrap(), big);
        // Every rung boundary decodes too.
        for len in [0, 4090, 4096, 5000, (1 << 20) - 10, 1 << 20] {
            let s = "y".repeat(len);
            assert_eq!(decode::<String>(&encode(&s).unwrap()).unwrap(), s);
        }
    }

    #[test]
    fn a_hello_codec_refuses_big_frames_until_raised() {
        let hello = Frame::Hello {
            cluster_id: "c".repeat(MAX_CLUSTER_ID),
            version: PROTOCOL_VERSION,
            node: NodeId::new("n1234567890123456789012"),
            settings: "s".repeat(MAX_SETTINGS),
        };
        let mut wire = BytesMut::new();
        PeerCodec::default().encode(&hello, &mut wire).unwrap();
        assert!(wire.len() <= MAX_HELLO_FRAME, "the longest hello fits");
        let mut codec = PeerCodec::for_hello();
        assert_eq!(codec.decode(&mut wire).unwrap(), Some(hello));

        // A length prefix past the hello cap is refused before any of the
        // frame is buffered...
        let mut big = BytesMut::new();
        big.extend_from_slice(&(1u32 << 20).to_be_bytes());
        big.extend_from_slice(&[0u8; 64]);
        assert!(matches!(
            PeerCodec::for_hello().decode(&mut big.clone()),
            Err(CodecError::TooLarge { .. })
        ));
        // ...and accepted (waiting for the rest) once the cap is raised.
        codec.set_max_frame(DEFAULT_MAX_FRAME);
        assert_eq!(codec.decode(&mut big).unwrap(), None);
    }
}
