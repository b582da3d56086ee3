//! RESP2 on the client side: encoding commands as arrays of bulk strings
//! and parsing replies incrementally out of a read buffer (several replies
//! may sit in it when requests are pipelined).

use crate::protocol::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the nil bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `None` is the nil array (`*-1`).
    Array(Option<Vec<Reply>>),
}

/// Longest status/error/integer line accepted.
const MAX_LINE: usize = 64 * 1024;
/// Largest bulk string accepted (Redis' own limit).
const MAX_BULK: i64 = 512 << 20;
const MAX_DEPTH: usize = 32;

/// Appends `*N\r\n$len\r\narg\r\n...` to `out`.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// One complete reply at the start of `buf` and the bytes it took;
/// `Ok(None)` if more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&rest[..end], at + end + 2))),
        None if rest.len() > MAX_LINE => Err(ProtocolError::new("RESP line too long")),
        None => Ok(None),
    }
}

fn int(bytes: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ProtocolError::new(format!(
                "bad RESP integer {:?}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::new("RESP reply nested too deeply"));
    }
    let Some(&tag) = buf.get(at) else {
        return Ok(None);
    };
    let Some((body, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(body).into_owned();
    match tag {
        b'+' => Ok(Some((Reply::Simple(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Integer(int(body)?), next))),
        b'$' => {
            let len = int(body)?;
            if len == -1 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            if !(0..=MAX_BULK).contains(&len) {
                return Err(ProtocolError::new(format!("bad RESP bulk length {len}")));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::new("RESP bulk string not followed by CRLF"));
            }
            Ok(Some((Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = int(body)?;
            if n == -1 {
                return Ok(Some((Reply::Array(None), next)));
            }
            if !(0..=1 << 20).contains(&n) {
                return Err(ProtocolError::new(format!("bad RESP array length {n}")));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((r, p)) => {
                        items.push(r);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        other => Err(ProtocolError::new(format!(
            "unexpected RESP type byte {:?}",
            other as char
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_set() {
        let mut out = Vec::new();
        encode(&[b"SET", b"key:1", b"abc"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$3\r\nabc\r\n");
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(
            parse(b"+OK\r\n").unwrap(),
            Some((Reply::Simple("OK".into()), 5))
        );
        assert_eq!(
            parse(b"-ERR timeout waiting\r\n").unwrap(),
            Some((Reply::Error("ERR timeout waiting".into()), 22))
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), Some((Reply::Integer(-42), 6)));
        assert_eq!(
            parse(b"$3\r\nabc\r\n").unwrap(),
            Some((Reply::Bulk(Some(b"abc".to_vec())), 9))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Reply::Bulk(None), 5)));
        assert_eq!(
            parse(b"$0\r\n\r\n").unwrap(),
            Some((Reply::Bulk(Some(vec![])), 6))
        );
        assert_eq!(
            parse(b"*2\r\n:1\r\n$1\r\nx\r\n").unwrap(),
            Some((
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Bulk(Some(b"x".to_vec()))
                ])),
                15
            ))
        );
        assert_eq!(parse(b"*-1\r\n").unwrap(), Some((Reply::Array(None), 5)));
    }

    #[test]
    fn bulk_may_contain_crlf() {
        let (r, n) = parse(b"$4\r\na\r\nb\r\n").unwrap().unwrap();
        assert_eq!(r, Reply::Bulk(Some(b"a\r\nb".to_vec())));
        assert_eq!(n, 10);
    }

    #[test]
    fn incomplete_input_needs_more_at_every_cut() {
        let full = b"*2\r\n$3\r\nfoo\r\n+OK\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(full).unwrap().is_some());
    }

    #[test]
    fn pipelined_replies_come_out_one_by_one() {
        let buf = b"+OK\r\n$2\r\nhi\r\n-ERR x\r\n";
        let (a, n1) = parse(buf).unwrap().unwrap();
        let (b, n2) = parse(&buf[n1..]).unwrap().unwrap();
        let (c, n3) = parse(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!(a, Reply::Simple("OK".into()));
        assert_eq!(b, Reply::Bulk(Some(b"hi".to_vec())));
        assert_eq!(c, Reply::Error("ERR x".into()));
        assert_eq!(n1 + n2 + n3, buf.len());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b":12a\r\n").is_err());
        assert!(parse(b"$-5\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(&vec![b'+'; MAX_LINE + 10]).is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
