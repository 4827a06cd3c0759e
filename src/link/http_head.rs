//! Just enough HTTP/1.1 for an HTTP CONNECT proxy: the response head parser (sans-IO, with a
//! size cap) and the base64 used by `Proxy-Authorization: Basic`.

use std::fmt;

/// The largest proxy response head we accept.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// Bytes of input the head used (status line through the blank line).
    pub len: usize,
}

impl ResponseHead {
    #[cfg(test)]
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a response head could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadError {
    TooLarge,
    BadStatusLine,
    BadHeaderLine,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "response head larger than {MAX_HEAD} bytes"),
            HeadError::BadStatusLine => f.write_str("malformed status line"),
            HeadError::BadHeaderLine => f.write_str("malformed header line"),
        }
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)` means "need more bytes".
/// Lines may end in CRLF or a bare LF (as Go's reader accepts). The parsing itself is the
/// shared codec's ([`crate::http::codec`]); this keeps the proxy's smaller cap and error kinds.
pub(crate) fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    use crate::http::codec::{self, CodecError};
    match codec::parse_response_head(buf, MAX_HEAD) {
        Ok(None) => Ok(None),
        // The codec keeps obs-text in values (RFC 9110 allows it); a proxy's answer to our
        // CONNECT has no business sending any, so it is refused here as before.
        Ok(Some((len, _))) if std::str::from_utf8(&buf[..len]).is_err() => {
            Err(HeadError::BadHeaderLine)
        }
        Ok(Some((len, head))) => Ok(Some(ResponseHead {
            status: head.status,
            headers: head
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            len,
        })),
        Err(CodecError::HeadTooLarge { .. }) => Err(HeadError::TooLarge),
        Err(CodecError::BadStatusLine) => Err(HeadError::BadStatusLine),
        Err(_) => Err(HeadError::BadHeaderLine),
    }
}

/// Standard base64 with padding (RFC 4648 §4), for `Proxy-Authorization: Basic`.
pub(crate) fn base64(input: &[u8]) -> String {
    crate::base64::encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] =
        b"HTTP/1.1 200 Connection established\r\nProxy-Agent: test\r\nX-Empty:\r\n\r\n";

    #[test]
    fn complete_head_parses() {
        let h = parse_response_head(OK).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.len, OK.len());
        assert_eq!(h.header("proxy-agent"), Some("test"));
        assert_eq!(h.header("X-EMPTY"), Some(""));
        assert_eq!(h.header("missing"), None);
    }

    #[test]
    fn every_prefix_needs_more() {
        for n in 0..OK.len() {
            assert_eq!(parse_response_head(&OK[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut buf = OK.to_vec();
        buf.extend_from_slice(b"\x16\x03\x01tunnel bytes");
        let h = parse_response_head(&buf).unwrap().unwrap();
        assert_eq!(h.len, OK.len());
    }

    #[test]
    fn bare_lf_and_status_without_reason() {
        let input = b"HTTP/1.0 407\nProxy-Authenticate: Basic\n\n";
        let h = parse_response_head(input).unwrap().unwrap();
        assert_eq!(h.status, 407);
        assert_eq!(h.header("proxy-authenticate"), Some("Basic"));
        assert_eq!(h.len, input.len());
    }

    #[test]
    fn hostile_heads_are_errors() {
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 x\r\n\r\n",
            b"HTTP/1.1 600 x\r\n\r\n",
            b"HTTP/1.1 +20 x\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"\r\n\r\n",
            b"\n\n",
        ] {
            assert_eq!(
                parse_response_head(bad),
                Err(HeadError::BadStatusLine),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad name: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: \xff\r\n\r\n",
        ] {
            assert_eq!(parse_response_head(bad), Err(HeadError::BadHeaderLine));
        }
    }

    #[test]
    fn size_cap() {
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() < MAX_HEAD {
            big.extend_from_slice(
                b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        assert_eq!(parse_response_head(&big), Err(HeadError::TooLarge));
        big.extend_from_slice(b"\r\n");
        assert_eq!(parse_response_head(&big), Err(HeadError::TooLarge));
    }

    #[test]
    fn base64_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("user:pa ss", "dXNlcjpwYSBzcw=="),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
