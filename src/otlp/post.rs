//! One HTTP/1.1 POST per push through the shared client ([`crate::http`]), each phase bounded by
//! the push timeout.
//!
//! OTLP/HTTP needs nothing more: no redirects, no keep-alive (a push a minute), no response
//! body (only the status matters, and the body is never logged).

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use super::PushError;
use crate::http::{self, Body, Endpoint, HttpError, Request, Timeouts};

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

/// The POST of `body` to `target`. Header values are secrets: they only ever go to the socket.
pub fn request(
    target: &Target,
    headers: &[(String, crate::settings::Secret)],
    body: &str,
    timeout: Duration,
) -> Request<'static> {
    let mut request = Request::new("POST", target.path.clone())
        .body(Body::json(body.as_bytes().to_vec()))
        .timeouts(Timeouts {
            connect: timeout,
            send: timeout,
            head: timeout,
            body_idle: Some(timeout),
        });
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
        request = request.header(name.as_str(), value);
    }
    request
}

/// Where a push goes: `target` over TLS when it says `https`.
pub fn endpoint(target: &Target, tls: Option<&Arc<ClientConfig>>) -> Endpoint {
    let mut endpoint = Endpoint::tcp(target.host.clone(), target.port);
    endpoint.host_header = Some(target.host_header());
    match tls {
        Some(config) if target.tls => endpoint.with_tls(Arc::clone(config)),
        _ => endpoint,
    }
}

/// Sends `request` and returns the response status (the body is not read).
pub fn send(endpoint: &Endpoint, request: Request<'_>) -> Result<u16, PushError> {
    let response = http::send(endpoint, None, request).map_err(|e| {
        PushError::Transport(match &e {
            HttpError::Timeout { phase, .. } => format!("{endpoint}: timed out while {phase}"),
            _ => e.to_string(),
        })
    })?;
    Ok(response.status())
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
        let req = request(&t, &headers, "{}", Duration::from_secs(1));
        let bytes = http::client::encode(&endpoint(&t, None), &req).unwrap();
        let r = String::from_utf8(bytes).unwrap();
        assert!(r.starts_with("POST /v1/metrics HTTP/1.1\r\nHost: c:4318\r\n"));
        assert!(r.contains("Content-Length: 2\r\n"));
        assert!(r.contains("X-Key: v1\r\n"));
        assert!(!r.contains("Injected"));
        assert!(r.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn push_gets_the_status_from_a_real_socket() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"{\"m\":1}") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                got.extend_from_slice(&buf[..n]);
            }
            c.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
            )
            .unwrap();
            String::from_utf8(got).unwrap()
        });
        let t = Target::parse(&format!("http://127.0.0.1:{port}/v1/metrics")).unwrap();
        let req = request(&t, &[], "{\"m\":1}", Duration::from_secs(10));
        assert_eq!(send(&endpoint(&t, None), req).unwrap(), 503);
        let seen = server.join().unwrap();
        assert!(seen.starts_with("POST /v1/metrics HTTP/1.1\r\n"), "{seen}");
    }

    /// The status once a response head is complete, 1xx skipped, as the driver reads it.
    fn status_of(head: &[u8]) -> Option<Result<u16, http::codec::CodecError>> {
        let mut rest = head;
        loop {
            match http::codec::parse_response_head(rest, http::codec::MAX_HEAD) {
                Ok(None) => return None,
                Ok(Some((used, h))) if (100..200).contains(&h.status) => rest = &rest[used..],
                Ok(Some((_, h))) => return Some(Ok(h.status)),
                Err(e) => return Some(Err(e)),
            }
        }
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
