//! One HTTP/1.1 POST per push, over TCP or rustls, with one deadline for the whole exchange.
//!
//! OTLP/HTTP needs nothing more: no redirects, no keep-alive (a push a minute), no response
//! body (only the status matters, and the body is never logged). Hand-written because it costs
//! a few kilobytes where an HTTP client crate cost about 320 KB of the static binary.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::PushError;
use crate::http::codec;

/// A parsed `http://` or `https://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// Host as written (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(url, "http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err("credentials in the endpoint URL are not supported".into());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unterminated IPv6 address"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, parse_port(p, url)?),
                None if after.is_empty() => (h, default_port),
                None => return Err(format!("{url:?}: unexpected text after the IPv6 address")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, parse_port(p, url)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{url:?} has no valid host"));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{url:?}: the path must not contain spaces or controls"
            ));
        }
        Ok(Target {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

fn parse_port(p: &str, url: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{url:?} has an invalid port"))
}

/// The request head and body, ready to write. Header values are secrets: they only ever go
/// to the socket.
pub fn request(
    target: &Target,
    headers: &[(String, crate::settings::Secret)],
    body: &str,
) -> Vec<u8> {
    let mut out = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: oz-agent-worker/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        target.path,
        target.host_header(),
        crate::VERSION,
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        // Names and values were validated when the configuration was read; a CR or LF here
        // would split the request, so such a header is dropped rather than sent.
        let value = value.expose();
        if name
            .bytes()
            .chain(value.bytes())
            .any(|b| b == b'\r' || b == b'\n')
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Sends `request` and returns the response status.
pub fn send(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    request: &[u8],
    timeout: Duration,
) -> Result<u16, PushError> {
    let deadline = Instant::now() + timeout;
    let where_ = format!("{}:{}", target.host, target.port);
    let transport = |what: &str, e: io::Error| {
        PushError::Transport(format!("{what} {where_}: {}", describe(&e)))
    };
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| transport("resolving", e))?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or_else(|| transport("connecting to", last))?;
    let _ = tcp.set_nodelay(true);
    let status = match tls {
        Some(config) => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| PushError::Transport(format!("invalid TLS name: {e}")))?;
            let conn = ClientConnection::new(Arc::clone(config), name)
                .map_err(|e| PushError::Transport(format!("TLS setup: {e}")))?;
            exchange(
                StreamOwned::new(
                    conn,
                    tcp.try_clone()
                        .map_err(|e| transport("cloning socket for", e))?,
                ),
                &tcp,
                request,
                deadline,
            )
        }
        None => exchange(
            tcp.try_clone()
                .map_err(|e| transport("cloning socket for", e))?,
            &tcp,
            request,
            deadline,
        ),
    };
    status.map_err(|e| transport("talking to", e))
}

fn remaining(deadline: Instant) -> Result<Duration, PushError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PushError::Transport("timed out".into()))
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Largest response head read before giving up on finding the status line.
const MAX_HEAD: usize = 16 * 1024;

fn exchange<S: Read + Write>(
    mut stream: S,
    tcp: &TcpStream,
    request: &[u8],
    deadline: Instant,
) -> io::Result<u16> {
    let arm = |tcp: &TcpStream| -> io::Result<()> {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?;
        tcp.set_write_timeout(Some(left))?;
        tcp.set_read_timeout(Some(left))
    };
    arm(tcp)?;
    stream.write_all(request)?;
    stream.flush()?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        arm(tcp)?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(status) = status_of(&head) {
            return status;
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
    }
}

/// The status code once the response head is complete (`None` until then), parsed by the
/// shared codec. Interim 1xx responses are skipped.
fn status_of(head: &[u8]) -> Option<io::Result<u16>> {
    let mut rest = head;
    loop {
        match codec::parse_response_head(rest, MAX_HEAD) {
            Ok(None) => return None,
            Ok(Some((used, h))) if (100..200).contains(&h.status) => rest = &rest[used..],
            Ok(Some((_, h))) => return Some(Ok(h.status)),
            Err(e) => {
                return Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    e.to_string(),
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://localhost:4318/v1/metrics").unwrap();
        assert_eq!(
            t,
            Target {
                tls: false,
                host: "localhost".into(),
                port: 4318,
                path: "/v1/metrics".into()
            }
        );
        assert_eq!(t.host_header(), "localhost:4318");
        let t = Target::parse("HTTPS://[::1]/x?y=1").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 443, "/x?y=1")
        );
        assert_eq!(t.host_header(), "[::1]");
        assert_eq!(Target::parse("http://h?q").unwrap().path, "/?q");
        for bad in [
            "ftp://h",
            "http://",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://u:p@h",
            "http://[::1",
            "http://h/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_shape_and_header_injection() {
        let t = Target::parse("http://c:4318/v1/metrics").unwrap();
        let headers = vec![
            ("X-Key".to_owned(), crate::settings::Secret::new("v1")),
            (
                "X-Bad".to_owned(),
                crate::settings::Secret::new("a\r\nInjected: 1"),
            ),
        ];
        let r = String::from_utf8(request(&t, &headers, "{}")).unwrap();
        assert!(r.starts_with("POST /v1/metrics HTTP/1.1\r\nHost: c:4318\r\n"));
        assert!(r.contains("Content-Length: 2\r\n"));
        assert!(r.contains("X-Key: v1\r\n"));
        assert!(!r.contains("Injected"));
        assert!(r.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn status_lines() {
        let full = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        for n in 0..full.len() {
            match status_of(&full[..n]) {
                None => {}
                Some(Ok(code)) => assert_eq!(code, 204, "prefix {n}"),
                Some(Err(e)) => panic!("prefix {n}: {e}"),
            }
        }
        assert_eq!(status_of(full).unwrap().unwrap(), 204);
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\n\r\n").unwrap().unwrap(), 503);
        assert!(status_of(b"SSH-2.0-x\r\n").unwrap().is_err());
        assert!(status_of(b"HTTP/1.1 abc\r\n\r\n").unwrap().is_err());
    }
}
