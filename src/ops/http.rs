//! The few bytes of HTTP/1.x the ops endpoints need: parse a request head, route it, write
//! a response. Pure; the listener in `mod.rs` does the I/O.

use crate::metrics::{Health, Metrics, PROMETHEUS_CONTENT_TYPE};

/// Request heads larger than this are refused with 431.
pub const MAX_HEAD_BYTES: usize = 8 << 10;

/// The parts of a request line the router looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
}

/// Where the end of the head is: the index just past the blank line, if complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses the request line of a complete head. Header fields are not needed and not parsed.
pub fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| Response::text(400, "bad request\n"))?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::text(400, "bad request\n"));
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method.is_empty() || !method.chars().all(token) || !target.starts_with('/') {
        return Err(Response::text(400, "bad request\n"));
    }
    if !version.starts_with("HTTP/1.") {
        return Err(Response::text(505, "HTTP version not supported\n"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// A complete response; always `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Extra header lines (`Name: value`).
    pub extra: Vec<&'static str>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            extra: Vec::new(),
        }
    }

    /// The bytes on the wire; `head_only` for HEAD requests (same headers, no body).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: \
             no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for line in &self.extra {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        if !head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Answers one request.
pub fn route(req: &Request, metrics: &Metrics, health: &Health) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = Response::text(405, "method not allowed\n");
        r.extra.push("Allow: GET, HEAD");
        return r;
    }
    match req.path.as_str() {
        "/metrics" => Response {
            status: 200,
            content_type: PROMETHEUS_CONTENT_TYPE,
            body: metrics.render_prometheus(),
            extra: Vec::new(),
        },
        "/healthz" => {
            if health.alive() {
                Response::text(200, "ok\n")
            } else {
                Response::text(
                    503,
                    format!(
                        "unhealthy: the supervisor loop has not run for {}s\n",
                        health.beat_age().as_secs()
                    ),
                )
            }
        }
        "/readyz" => {
            let why = health.not_ready(metrics.connected());
            if why.is_empty() {
                Response::text(200, "ready\n")
            } else {
                let reasons: Vec<String> = why.iter().map(ToString::to_string).collect();
                Response::text(503, format!("not ready: {}\n", reasons.join("; ")))
            }
        }
        _ => Response::text(404, "not found\n"),
    }
}

pub use crate::settings::bind_address;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::WorkerInfo;

    fn req(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
        }
    }

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").unwrap(),
            req("GET", "/metrics")
        );
        assert_eq!(
            parse_head(b"HEAD /readyz HTTP/1.0\n\n").unwrap(),
            req("HEAD", "/readyz")
        );
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad).unwrap_err().status, 400, "{bad:?}");
        }
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status,
            505
        );
    }

    #[test]
    fn routes() {
        let m = Metrics::new(
            WorkerInfo {
                version: "v".into(),
                backend: "direct".into(),
                worker_id: "w".into(),
            },
            1,
        );
        let h = Health::new(Duration::from_secs(60));
        let r = route(&req("GET", "/metrics"), &m, &h);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(r.body.contains("oz_worker_connected 0"));
        assert_eq!(route(&req("GET", "/healthz"), &m, &h).status, 200);
        let r = route(&req("GET", "/readyz"), &m, &h);
        assert_eq!(r.status, 503);
        assert_eq!(
            r.body,
            "not ready: not connected to Oz; the backend is not available\n"
        );
        m.set_connected(true);
        h.set_backend_ok(true);
        assert_eq!(route(&req("HEAD", "/readyz"), &m, &h).status, 200);
        assert_eq!(route(&req("GET", "/"), &m, &h).status, 404);
        assert_eq!(route(&req("GET", "/metrics/"), &m, &h).status, 404);
        let r = route(&req("POST", "/metrics"), &m, &h);
        assert_eq!(r.status, 405);
        assert!(
            String::from_utf8(r.encode(false))
                .unwrap()
                .contains("\r\nAllow: GET, HEAD\r\n")
        );
    }

    #[test]
    fn encoding() {
        let r = Response::text(200, "ok\n");
        assert_eq!(
            String::from_utf8(r.encode(false)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\nok\n"
        );
        assert!(String::from_utf8(r.encode(true)).unwrap().ends_with(
            "Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn bind_addresses() {
        assert_eq!(bind_address("127.0.0.1:9464").unwrap(), "127.0.0.1:9464");
        assert_eq!(bind_address(":9464").unwrap(), "0.0.0.0:9464");
        assert_eq!(bind_address("[::1]:0").unwrap(), "[::1]:0");
        assert_eq!(bind_address("localhost:9100").unwrap(), "127.0.0.1:9100");
        assert_eq!(
            bind_address("metrics.internal:9100").unwrap(),
            "metrics.internal:9100"
        );
        for bad in [
            "9464",
            "host:",
            "host:http",
            "host:70000",
            "::1:9464",
            "a b:1",
        ] {
            assert!(bind_address(bad).is_err(), "{bad}");
        }
    }
}
