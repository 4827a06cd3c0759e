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
/// Lines may end in CRLF or a bare LF (as Go's reader accepts).
pub(crate) fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let Some(len) = head_end(buf) else {
        return if buf.len() >= MAX_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| HeadError::BadHeaderLine)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status = parse_status_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or(HeadError::BadHeaderLine)?;
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(HeadError::BadHeaderLine);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Some(ResponseHead {
        status,
        headers,
        len,
    }))
}

/// Index just past the blank line ending the head, if present.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

fn parse_status_line(line: &str) -> Result<u16, HeadError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(HeadError::BadStatusLine);
    }
    match code.parse::<u16>() {
        Ok(c) if (100..=599).contains(&c) => Ok(c),
        _ => Err(HeadError::BadStatusLine),
    }
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
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
