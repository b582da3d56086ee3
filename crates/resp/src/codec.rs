//! Request framing: a guard in front of `redis_protocol`'s RESP2 decoder.
//!
//! The decoder of `redis-protocol` is a recursive parser with no size limit
//! that re-parses the whole buffer on every read. Fed by a hostile or broken
//! client it would buffer without bound (`$9999999999\r\n`) or overflow the
//! stack on deeply nested arrays (`*1\r\n*1\r\n...`), which aborts the node.
//! [`RequestCodec`] therefore scans each frame's structure itself, with an
//! explicit stack, a size cap and a depth cap, and hands the inner decoder
//! only frames it has seen complete. It also turns inline commands (plain
//! text lines, as typed into telnet) into arrays of bulk strings, which the
//! inner decoder does not support.

use bytes::{Bytes, BytesMut};
use redis_protocol::codec::Resp2;
use redis_protocol::resp2::types::BytesFrame;
use tokio_util::codec::Decoder;

/// Redis' own limit on the element count of one request.
const MAX_ARRAY_LEN: i64 = 1024 * 1024;
/// Requests are flat arrays; a little nesting is still decoded so the client
/// gets a proper error reply instead of a closed connection.
const MAX_DEPTH: usize = 8;
/// Longest `*<n>` / `$<n>` / `:<n>` line; any valid number fits.
const MAX_NUMBER_LINE: usize = 32;
/// Redis' limit on an inline command line.
const MAX_INLINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Malformed(String),
    #[error("request larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

fn malformed(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(msg.into())
}

/// Decodes client requests: RESP2 frames of any type (so a wrong-typed
/// request can be answered with an error) and inline command lines.
#[derive(Debug)]
pub struct RequestCodec {
    inner: Resp2,
    max_frame: usize,
    /// The buffer must hold at least this many bytes before a new scan can
    /// get further; keeps a large bulk string from being rescanned on every
    /// read while it arrives.
    need: usize,
    /// How far the scan of the frame at the front of the buffer got. A
    /// frame that trickles in (a million small elements, a few bytes per
    /// read) is scanned once in total, not once per read: rescanning from
    /// its start would cost the square of its size, on the thread every
    /// role of the node shares.
    scan: ScanState,
    /// Bytes at the front already searched for an inline line's end.
    inline_searched: usize,
}

impl RequestCodec {
    pub fn new(max_frame: usize) -> Self {
        RequestCodec {
            inner: Resp2::default(),
            max_frame,
            need: 0,
            scan: ScanState::default(),
            inline_searched: 0,
        }
    }

    /// Forgets partial progress: the front of the buffer is a new frame.
    fn restart(&mut self) {
        self.need = 0;
        // Cleared, not replaced: the stack's buffer serves every request
        // of the connection without a fresh allocation.
        self.scan.pos = 0;
        self.scan.open.clear();
        self.scan.line_searched = 0;
        self.inline_searched = 0;
    }
}

impl Decoder for RequestCodec {
    type Item = BytesFrame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesFrame>, ProtocolError> {
        let result = self.decode_front(src);
        if !matches!(result, Ok(None)) {
            // A frame was taken off the front, or the connection is done.
            self.restart();
        }
        result
    }
}

impl RequestCodec {
    fn decode_front(&mut self, src: &mut BytesMut) -> Result<Option<BytesFrame>, ProtocolError> {
        loop {
            let Some(&first) = src.first() else {
                return Ok(None);
            };
            if src.len() < self.need {
                return Ok(None);
            }
            if !matches!(first, b'*' | b'$' | b'+' | b'-' | b':') {
                match decode_inline(src, &mut self.inline_searched)? {
                    Inline::Frame(frame) => return Ok(Some(frame)),
                    Inline::Blank => {
                        self.inline_searched = 0;
                        continue;
                    }
                    Inline::Incomplete => return Ok(None),
                }
            }
            return match scan(src, self.max_frame, &mut self.scan)? {
                Scan::Incomplete { need } => {
                    if need > self.max_frame {
                        return Err(ProtocolError::TooLarge {
                            max: self.max_frame,
                        });
                    }
                    self.need = need;
                    Ok(None)
                }
                Scan::Complete(len) => {
                    if len > self.max_frame {
                        return Err(ProtocolError::TooLarge {
                            max: self.max_frame,
                        });
                    }
                    let mut frame = src.split_to(len);
                    match self.inner.decode(&mut frame) {
                        Ok(Some(frame)) => Ok(Some(frame)),
                        Ok(None) => Err(malformed("incomplete frame")),
                        Err(e) => Err(malformed(e.to_string())),
                    }
                }
            };
        }
    }
}

enum Inline {
    Frame(BytesFrame),
    /// An empty line, which Redis skips without a reply.
    Blank,
    Incomplete,
}

/// `searched`: bytes at the front known to hold no newline; updated when
/// the line is still incomplete.
fn decode_inline(src: &mut BytesMut, searched: &mut usize) -> Result<Inline, ProtocolError> {
    let from = (*searched).min(src.len());
    self::searched(src.len() - from);
    let Some(nl) = src[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
    else {
        if src.len() > MAX_INLINE {
            return Err(malformed("too big inline request"));
        }
        *searched = src.len();
        return Ok(Inline::Incomplete);
    };
    if nl > MAX_INLINE {
        return Err(malformed("too big inline request"));
    }
    let line: Bytes = src.split_to(nl + 1).freeze();
    let mut end = nl;
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    let args: Vec<BytesFrame> = split_inline(&line[..end])?
        .into_iter()
        .map(|a| BytesFrame::BulkString(Bytes::from(a)))
        .collect();
    Ok(if args.is_empty() {
        Inline::Blank
    } else {
        Inline::Frame(BytesFrame::Array(args))
    })
}

/// Splits an inline command line into arguments as Redis does
/// (`sdssplitargs`): blanks separate them; `"..."` holds blanks and the
/// escapes `\n \r \t \b \a \\ \"` and `\xHH`; `'...'` holds blanks and
/// `\'`. A closing quote must end the argument.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let unbalanced = || malformed("unbalanced quotes in request");
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0);
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && blank(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        match line[i] {
            quote @ (b'"' | b'\'') => {
                let double = quote == b'"';
                i += 1;
                loop {
                    match &line[i..] {
                        [] => return Err(unbalanced()),
                        [q, after @ ..] if *q == quote => {
                            if after.first().is_some_and(|b| !blank(*b)) {
                                return Err(unbalanced());
                            }
                            i += 1;
                            break;
                        }
                        [b'\\', b'x', h, l, ..]
                            if double && hex(*h).is_some() && hex(*l).is_some() =>
                        {
                            arg.push(hex(*h).unwrap_or(0) * 16 + hex(*l).unwrap_or(0));
                            i += 4;
                        }
                        [b'\\', c, ..] if double => {
                            arg.push(match c {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => *other,
                            });
                            i += 2;
                        }
                        [b'\\', b'\'', ..] => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        [c, ..] => {
                            arg.push(*c);
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                while i < line.len() && !blank(line[i]) {
                    arg.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

#[derive(Debug, PartialEq)]
enum Scan {
    /// The first frame of the buffer is this many bytes long.
    Complete(usize),
    /// More bytes are needed; nothing can change before the buffer holds
    /// `need` bytes.
    Incomplete { need: usize },
}

fn parse_int(line: &[u8]) -> Option<i64> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

#[cfg(test)]
thread_local! {
    /// Bytes searched for line ends on this thread, for tests that the
    /// work stays linear in the input.
    static SEARCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn searched(_bytes: usize) {
    #[cfg(test)]
    SEARCHED.with(|s| s.set(s.get() + _bytes));
}

/// Where a scan of the frame at the front of the buffer stopped: every
/// byte before `pos` belongs to elements already checked.
#[derive(Debug, Default)]
struct ScanState {
    /// Start of the next element.
    pos: usize,
    /// Elements still missing from each open array, innermost last.
    open: Vec<i64>,
    /// Bytes after the next element's type byte already searched for the
    /// CRLF that ends its line (a long `+...` line arriving slowly).
    line_searched: usize,
}

/// Walks the structure of the first frame of `buf` without recursion,
/// from where `st` says the last call stopped (the caller resets `st`
/// whenever the front of the buffer changes). It accepts exactly what the
/// inner decoder accepts (and a little less: bulk strings must end in
/// CRLF), so a `Complete` frame always decodes.
fn scan(buf: &[u8], max_frame: usize, st: &mut ScanState) -> Result<Scan, ProtocolError> {
    loop {
        let pos = st.pos;
        let Some(&kind) = buf.get(pos) else {
            return Ok(Scan::Incomplete { need: pos + 1 });
        };
        let is_number = matches!(kind, b'*' | b'$' | b':');
        let rest = &buf[pos + 1..];
        let from = st.line_searched.min(rest.len());
        searched(rest.len() - from);
        let Some(line_len) = rest[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| from + i)
        else {
            if is_number && rest.len() > MAX_NUMBER_LINE {
                return Err(malformed("invalid length"));
            }
            // A CR at the very end may yet be followed by its LF.
            st.line_searched = rest.len().saturating_sub(1);
            return Ok(Scan::Incomplete {
                need: buf.len() + 1,
            });
        };
        st.line_searched = 0;
        let line = &rest[..line_len];
        let mut pos = pos + 1 + line_len + 2;
        match kind {
            b'+' | b'-' => {}
            b':' => {
                parse_int(line).ok_or_else(|| malformed("invalid integer"))?;
            }
            b'$' => match parse_int(line) {
                Some(-1) => {}
                Some(len) if len >= 0 => {
                    let len = usize::try_from(len).map_err(|_| malformed("invalid bulk length"))?;
                    if len > max_frame {
                        return Err(ProtocolError::TooLarge { max: max_frame });
                    }
                    let end = pos + len + 2;
                    if buf.len() < end {
                        return Ok(Scan::Incomplete { need: end });
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(malformed("bulk string not terminated by CRLF"));
                    }
                    pos = end;
                }
                _ => return Err(malformed("invalid bulk length")),
            },
            b'*' => match parse_int(line) {
                Some(-1 | 0) => {}
                Some(n) if n > 0 && n <= MAX_ARRAY_LEN => {
                    if st.open.len() >= MAX_DEPTH {
                        return Err(malformed("arrays nested too deeply"));
                    }
                    st.open.push(n);
                    st.pos = pos;
                    continue;
                }
                _ => return Err(malformed("invalid multibulk length")),
            },
            other => {
                return Err(malformed(format!(
                    "expected '$', got '{}'",
                    [other].escape_ascii()
                )))
            }
        }
        // An element ended here; close every array it completes.
        st.pos = pos;
        loop {
            match st.open.last_mut() {
                None => return Ok(Scan::Complete(pos)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    st.open.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk(s: &str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn decode_all(
        codec: &mut RequestCodec,
        bytes: &[u8],
    ) -> Result<Vec<BytesFrame>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn decodes_pipelined_arrays() {
        let mut c = RequestCodec::new(1024);
        let frames = decode_all(
            &mut c,
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n",
        )
        .unwrap();
        assert_eq!(
            frames,
            vec![
                BytesFrame::Array(vec![bulk("GET"), bulk("a")]),
                BytesFrame::Array(vec![bulk("PING")]),
            ]
        );
    }

    #[test]
    fn decodes_non_array_frames_so_they_can_be_refused_politely() {
        let mut c = RequestCodec::new(1024);
        let frames = decode_all(&mut c, b"+hi\r\n:5\r\n$-1\r\n*0\r\n*1\r\n*0\r\n").unwrap();
        assert_eq!(
            frames,
            vec![
                BytesFrame::SimpleString(Bytes::from_static(b"hi")),
                BytesFrame::Integer(5),
                BytesFrame::Null,
                BytesFrame::Array(vec![]),
                BytesFrame::Array(vec![BytesFrame::Array(vec![])]),
            ]
        );
    }

    #[test]
    fn waits_for_frames_split_across_reads() {
        let whole = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
        for cut in 0..whole.len() {
            let mut c = RequestCodec::new(1024);
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(c.decode(&mut buf).unwrap(), None, "cut at {cut}");
            buf.extend_from_slice(&whole[cut..]);
            assert_eq!(
                c.decode(&mut buf).unwrap(),
                Some(BytesFrame::Array(vec![bulk("GET"), bulk("hello")]))
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn inline_commands_become_arrays() {
        let mut c = RequestCodec::new(1024);
        let frames = decode_all(&mut c, b"PING\r\n\r\n  set  a\tb \nECHO x\r\n").unwrap();
        assert_eq!(
            frames,
            vec![
                BytesFrame::Array(vec![bulk("PING")]),
                BytesFrame::Array(vec![bulk("set"), bulk("a"), bulk("b")]),
                BytesFrame::Array(vec![bulk("ECHO"), bulk("x")]),
            ]
        );
    }

    #[test]
    fn inline_quotes_and_escapes_follow_redis() {
        let mut c = RequestCodec::new(1024);
        let frames = decode_all(
            &mut c,
            b"SET \"a b\" 'it''s'\r\nSET k \"x\\x41\\n\\\"\" '\\'q'\r\nECHO \"\"\r\n",
        );
        // 'it''s' is one quoted argument followed directly by another
        // quote: unbalanced, as in Redis.
        assert!(matches!(frames, Err(ProtocolError::Malformed(_))));
        let mut c = RequestCodec::new(1024);
        let frames = decode_all(
            &mut c,
            b"SET \"a b\" 'it s'\r\nSET k \"x\\x41\\n\\\"\" '\\'q'\r\nECHO \"\"\r\n",
        )
        .unwrap();
        assert_eq!(
            frames,
            vec![
                BytesFrame::Array(vec![bulk("SET"), bulk("a b"), bulk("it s")]),
                BytesFrame::Array(vec![bulk("SET"), bulk("k"), bulk("xA\n\""), bulk("'q")]),
                BytesFrame::Array(vec![bulk("ECHO"), bulk("")]),
            ]
        );
        for bad in [&b"GET \"abc\r\n"[..], b"GET 'abc\r\n", b"GET \"a\"b\r\n"] {
            let mut c = RequestCodec::new(1024);
            assert!(
                matches!(decode_all(&mut c, bad), Err(ProtocolError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn oversized_bulk_is_refused_before_it_is_buffered() {
        let mut c = RequestCodec::new(100);
        let err = decode_all(&mut c, b"*1\r\n$101\r\n").unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { max: 100 }));
        let mut c = RequestCodec::new(100);
        let err = decode_all(&mut c, b"$99999999999999999999\r\n").unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)));
    }

    #[test]
    fn oversized_frame_of_many_small_parts_is_refused() {
        let mut c = RequestCodec::new(64);
        let mut bytes = b"*100\r\n".to_vec();
        for _ in 0..20 {
            bytes.extend_from_slice(b"$1\r\nx\r\n");
        }
        assert!(matches!(
            decode_all(&mut c, &bytes),
            Err(ProtocolError::TooLarge { max: 64 })
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut c = RequestCodec::new(1 << 20);
        let bytes = b"*1\r\n".repeat(100_000);
        assert!(matches!(
            decode_all(&mut c, &bytes),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"*x\r\n"[..],
            b"*-2\r\n",
            b"*1\r\n$2\r\nabcd\r\n",
            b"*1\r\n!x\r\n",
            b":1.5\r\n",
            b"$-5\r\n",
        ] {
            let mut c = RequestCodec::new(1024);
            assert!(
                decode_all(&mut c, bad).is_err(),
                "{:?}",
                bad.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn a_frame_that_trickles_in_is_scanned_once_not_once_per_read() {
        // A client sends a big array a few bytes at a time. Each read must
        // resume where the last one stopped; a scan from the frame's start
        // on every read would cost the square of its size.
        let n = 10_000;
        SEARCHED.with(|s| s.set(0));
        let mut c = RequestCodec::new(1 << 20);
        let mut buf = BytesMut::from(format!("*{n}\r\n").as_bytes());
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        for i in 0..n {
            let before = c.scan.pos;
            for piece in [&b"$1\r"[..], b"\n", b"x\r", b"\n"] {
                buf.extend_from_slice(piece);
                if i + 1 < n {
                    assert_eq!(c.decode(&mut buf).unwrap(), None);
                }
            }
            if i + 1 < n {
                assert_eq!(c.decode(&mut buf).unwrap(), None);
                // The element just completed is behind the resume point.
                assert_eq!(c.scan.pos, before + 7, "element {i}");
                assert_eq!(c.scan.pos, buf.len());
            }
        }
        let frame = c.decode(&mut buf).unwrap();
        assert_eq!(frame, Some(BytesFrame::Array(vec![bulk("x"); n])));
        assert!(buf.is_empty());
        assert_eq!(c.scan.pos, 0, "the next frame starts from scratch");
        let frame_len = 7 * n + 8;
        let work = SEARCHED.with(|s| s.get());
        assert!(
            work < 3 * frame_len,
            "searched {work} bytes for a {frame_len}-byte frame"
        );
        // A long simple-string line arriving byte by byte is searched once.
        let mut c = RequestCodec::new(1 << 20);
        let mut buf = BytesMut::from(&b"+"[..]);
        for _ in 0..1000 {
            buf.extend_from_slice(b"a");
            assert_eq!(c.decode(&mut buf).unwrap(), None);
            assert_eq!(c.scan.line_searched, buf.len() - 2);
        }
        buf.extend_from_slice(b"\r");
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\n");
        let frame = c.decode(&mut buf).unwrap();
        assert_eq!(
            frame,
            Some(BytesFrame::SimpleString(Bytes::from(vec![b'a'; 1000])))
        );
        // Likewise an inline command typed slowly.
        let mut c = RequestCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        for b in b"ECHO hello" {
            buf.extend_from_slice(&[*b]);
            assert_eq!(c.decode(&mut buf).unwrap(), None);
            assert_eq!(c.inline_searched, buf.len());
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(BytesFrame::Array(vec![bulk("ECHO"), bulk("hello")]))
        );
        assert_eq!(c.inline_searched, 0);
    }

    #[test]
    fn endless_inline_line_is_refused() {
        let mut c = RequestCodec::new(1 << 20);
        assert!(decode_all(&mut c, &vec![b'a'; MAX_INLINE + 1]).is_err());
    }

    proptest! {
        /// Whatever a client sends, decoding ends in frames, a wait or an
        /// error; never a panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(
            prop_oneof![Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b'1'), Just(b'-'), any::<u8>()],
            0..200,
        )) {
            let mut c = RequestCodec::new(64);
            let _ = decode_all(&mut c, &bytes);
        }

        /// However the bytes are cut into reads, the frames that come out
        /// are those of decoding them all at once: resuming a scan loses
        /// nothing and checks nothing twice in a way that matters.
        #[test]
        fn any_cut_into_reads_decodes_alike(
            frames in proptest::collection::vec(prop_oneof![
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..5)
                    .prop_map(|args| { let mut s = format!("*{}\r\n", args.len()).into_bytes();
                        for a in args { s.extend(format!("${}\r\n", a.len()).bytes()); s.extend(a); s.extend(b"\r\n"); } s }),
                Just(b"*2\r\n*1\r\n:7\r\n+ok\r\n".to_vec()),
                Just(b"PING \"a b\"\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"$-1\r\n".to_vec()),
            ], 1..6),
            cuts in proptest::collection::vec(1usize..9, 0..40),
        ) {
            let bytes: Vec<u8> = frames.concat();
            let whole = decode_all(&mut RequestCodec::new(1024), &bytes).unwrap();
            let mut c = RequestCodec::new(1024);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at: usize = 0;
            for cut in cuts.iter().copied().chain(std::iter::repeat(usize::MAX)) {
                let end = at.saturating_add(cut).min(bytes.len());
                buf.extend_from_slice(&bytes[at..end]);
                at = end;
                while let Some(f) = c.decode(&mut buf).unwrap() {
                    got.push(f);
                }
                if at == bytes.len() {
                    break;
                }
            }
            prop_assert_eq!(got, whole);
            prop_assert!(buf.is_empty());
        }

        /// The scanner and the inner decoder agree on where frames end.
        #[test]
        fn arrays_of_bulk_strings_round_trip(args in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..20), 1..6,
        )) {
            let frame = BytesFrame::Array(
                args.iter().map(|a| BytesFrame::BulkString(Bytes::copy_from_slice(a))).collect(),
            );
            let mut buf = BytesMut::new();
            tokio_util::codec::Encoder::encode(&mut Resp2::default(), frame.clone(), &mut buf).unwrap();
            buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            let mut c = RequestCodec::new(1024);
            prop_assert_eq!(c.decode(&mut buf).unwrap(), Some(frame));
            prop_assert_eq!(c.decode(&mut buf).unwrap(), Some(BytesFrame::Array(vec![bulk("PING")])));
        }
    }
}
