//! The proxy's answer to CONNECT (moved from the link's own head parser, which the shared codec
//! replaced): same inputs, same verdicts.

use super::super::parse_proxy_head;
use crate::http::codec::{CodecError, parse_response_head};

const OK: &[u8] = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: test\r\nX-Empty:\r\n\r\n";
const MAX: usize = 8 * 1024;

#[test]
fn complete_head_parses() {
    assert_eq!(parse_proxy_head(OK), Ok(Some(200)));
    let (len, h) = parse_response_head(OK, MAX).unwrap().unwrap();
    assert_eq!(len, OK.len());
    assert_eq!(h.header("proxy-agent"), Some("test"));
    assert_eq!(h.header("X-EMPTY"), Some(""));
    assert_eq!(h.header("missing"), None);
}

#[test]
fn every_prefix_needs_more() {
    for n in 0..OK.len() {
        assert_eq!(parse_proxy_head(&OK[..n]), Ok(None), "prefix {n}");
    }
}

#[test]
fn bytes_after_the_head_are_not_consumed() {
    let mut buf = OK.to_vec();
    buf.extend_from_slice(b"\x16\x03\x01tunnel bytes");
    let (len, _) = parse_response_head(&buf, MAX).unwrap().unwrap();
    assert_eq!(len, OK.len());
    assert_eq!(parse_proxy_head(&buf), Ok(Some(200)));
}

#[test]
fn bare_lf_and_status_without_reason() {
    let input = b"HTTP/1.0 407\nProxy-Authenticate: Basic\n\n";
    assert_eq!(parse_proxy_head(input), Ok(Some(407)));
    let (len, h) = parse_response_head(input, MAX).unwrap().unwrap();
    assert_eq!(h.header("proxy-authenticate"), Some("Basic"));
    assert_eq!(len, input.len());
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
            parse_proxy_head(bad),
            Err(CodecError::BadStatusLine),
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
        assert_eq!(parse_proxy_head(bad), Err(CodecError::BadHeader));
    }
}

#[test]
fn size_cap() {
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() < MAX {
        big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert_eq!(
        parse_proxy_head(&big),
        Err(CodecError::HeadTooLarge { max: MAX })
    );
    big.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_proxy_head(&big),
        Err(CodecError::HeadTooLarge { max: MAX })
    );
}
