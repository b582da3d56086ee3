//! Just enough HTTP/1.1 for etcd's v3 JSON gateway over keep-alive
//! connections: POST requests with a JSON body, and an incremental response
//! parser (status line, headers, then a Content-Length or chunked body).
//! Responses to pipelined requests arrive in request order.

use crate::protocol::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server said `Connection: close`: nothing more will come on it.
    pub close: bool,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 << 20;

/// Appends a `POST path` request with a JSON body to `out`.
pub fn encode_post(host: &str, path: &str, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One complete response at the start of `buf` and the bytes it took;
/// `Ok(None)` if more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Response, usize)>, ProtocolError> {
    let Some(head_len) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(ProtocolError::new("HTTP response head too long"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| ProtocolError::new("HTTP response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ProtocolError::new(format!(
            "not an HTTP/1.x response: {status_line:?}"
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| ProtocolError::new(format!("bad HTTP status line {status_line:?}")))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    for l in lines {
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| ProtocolError::new(format!("bad HTTP header line {l:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| ProtocolError::new(format!("bad Content-Length {value:?}")))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(ProtocolError::new("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(ProtocolError::new(format!(
                    "unsupported Transfer-Encoding {value:?}"
                )));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close = value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("close"));
        }
    }
    if (100..200).contains(&status) {
        return Err(ProtocolError::new(format!(
            "interim HTTP response {status} not supported"
        )));
    }
    let body_start = head_len + 4;
    let (body, end) = if chunked {
        match dechunk(buf, body_start)? {
            Some(x) => x,
            None => return Ok(None),
        }
    } else if status == 204 || status == 304 {
        (Vec::new(), body_start)
    } else {
        let n = content_length.ok_or_else(|| {
            ProtocolError::new("HTTP response has neither Content-Length nor chunked body")
        })?;
        if n > MAX_BODY {
            return Err(ProtocolError::new(format!(
                "HTTP body of {n} bytes too large"
            )));
        }
        if buf.len() < body_start + n {
            return Ok(None);
        }
        (buf[body_start..body_start + n].to_vec(), body_start + n)
    };
    Ok(Some((
        Response {
            status,
            body,
            close,
        },
        end,
    )))
}

/// Decodes a chunked body starting at `at`: the body and the offset after
/// the trailer section.
fn dechunk(buf: &[u8], mut at: usize) -> Result<Option<(Vec<u8>, usize)>, ProtocolError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            return if buf.len() - at > 1024 {
                Err(ProtocolError::new("HTTP chunk size line too long"))
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&buf[at..at + eol])
            .map_err(|_| ProtocolError::new("HTTP chunk size is not UTF-8"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| ProtocolError::new(format!("bad HTTP chunk size {line:?}")))?;
        at += eol + 2;
        if size == 0 {
            // Trailers (usually none), each ending in CRLF, then an empty line.
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(ProtocolError::new("HTTP chunked body too large"));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(ProtocolError::new("HTTP chunk not followed by CRLF"));
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_post() {
        let mut out = Vec::new();
        encode_post("127.0.0.1:12379", "/v3/kv/put", b"{\"k\":1}", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:12379\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"k\":1}"
        );
    }

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 5\r\n\r\n{\"a\":1}";
        // Content-Length 5 takes `{"a":`; the rest belongs to the next response.
        let (r, n) = parse(raw).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{\"a\":");
        assert!(!r.close);
        assert_eq!(n, raw.len() - 2);
    }

    #[test]
    fn chunked_body_with_extension_and_trailer() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (r, n) = parse(raw).unwrap().unwrap();
        assert_eq!(r.body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&raw[n..], b"NEXT");
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let raw: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (r, n) = parse(raw).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.close, n),
            (500, &b"abc"[..], true, raw.len())
        );
    }

    #[test]
    fn pipelined_responses_parse_in_order() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnope";
        let (a, n) = parse(raw).unwrap().unwrap();
        let (b, m) = parse(&raw[n..]).unwrap().unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!((b.status, b.body.as_slice()), (404, &b"nop"[..]));
        assert_eq!(&raw[n + m..], b"e");
    }

    #[test]
    fn no_content_has_no_body() {
        let (r, n) = parse(b"HTTP/1.1 204 No Content\r\n\r\nX").unwrap().unwrap();
        assert_eq!((r.status, r.body.len(), n), (204, 0, 27));
    }

    #[test]
    fn rejects_malformed() {
        for raw in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBroken header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            assert!(parse(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
        assert!(parse(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }
}
