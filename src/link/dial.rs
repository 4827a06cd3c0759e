//! One dial: the socket (resolve, TCP connect with `TCP_NODELAY`, optional HTTP CONNECT through
//! a proxy, TLS) from the shared HTTP client's [`crate::http::transport::connect`], then the
//! WebSocket handshake, run blocking with socket timeouts. The finished socket is switched to
//! non-blocking for the `poll(2)` loop.
//!
//! The socket gets `write_timeout`, and so does the WebSocket handshake. Every blocking call waits
//! at most [`SLICE`] before the shutdown deadline is checked again, so a shutdown requested in the
//! middle of a dial stops it within a slice instead of after the whole timeout.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tungstenite::WebSocket;
use tungstenite::protocol::Role;

use super::backoff::parse_retry_after;
use super::fmt_duration;
use super::transport::{Transport, ws_config};
use super::url::{Host, WsUrl};
use super::wake::StopAt;
use crate::http::codec::{self, RequestBody, ResponseHead};
use crate::http::proxy::Proxy;
use crate::http::transport::{self as http_transport, Address, Endpoint, SLICE};
use crate::http::{HttpError, Phase};
use crate::settings::Secret;

/// Why one dial failed. The text never holds a secret.
#[derive(Debug)]
pub(crate) enum DialError {
    Resolve {
        host: String,
        error: String,
    },
    Timeout {
        phase: &'static str,
        target: String,
    },
    Connect {
        target: String,
        error: io::Error,
    },
    Proxy {
        proxy: String,
        error: String,
    },
    ProxyStatus {
        proxy: String,
        status: u16,
    },
    Tls {
        host: String,
        error: String,
    },
    /// 401/403: the server refused the API key.
    Rejected {
        status: u16,
    },
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Handshake {
        error: String,
    },
    /// The shutdown deadline passed during the dial.
    Deadline,
}

impl DialError {
    /// The server's `Retry-After`, when it sent one with a 429 or 503.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            DialError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn is_auth(&self) -> bool {
        matches!(self, DialError::Rejected { .. })
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Resolve { host, error } => write!(f, "resolve {host}: {error}"),
            DialError::Timeout { phase, target } => write!(f, "{phase} {target}: timed out"),
            DialError::Connect { target, error } => write!(f, "connect {target}: {error}"),
            DialError::Proxy { proxy, error } => write!(f, "proxy {proxy}: {error}"),
            DialError::ProxyStatus { proxy, status } => {
                write!(f, "proxy {proxy} refused CONNECT: HTTP {status}")
            }
            DialError::Tls { host, error } => write!(f, "TLS handshake with {host}: {error}"),
            DialError::Rejected { status } => write!(f, "API key rejected (HTTP {status})"),
            DialError::Status {
                status,
                retry_after,
            } => {
                write!(f, "handshake failed: HTTP {status}")?;
                match retry_after {
                    Some(d) => write!(f, " (Retry-After {})", fmt_duration(*d)),
                    None => Ok(()),
                }
            }
            DialError::Handshake { error } => write!(f, "handshake failed: {error}"),
            DialError::Deadline => f.write_str("shutdown deadline reached"),
        }
    }
}

/// The time budget of one dial phase, also ended by a shutdown deadline.
pub(crate) struct Budget<'a> {
    end: Instant,
    stop: &'a StopAt,
    phase: &'static str,
    target: String,
}

impl Budget<'_> {
    /// `Err` once the shutdown deadline or the phase's end has passed.
    pub(crate) fn check(&self) -> Result<(), DialError> {
        let now = Instant::now();
        if self.stop.passed(now) {
            return Err(DialError::Deadline);
        }
        if now >= self.end {
            return Err(DialError::Timeout {
                phase: self.phase,
                target: self.target.clone(),
            });
        }
        Ok(())
    }

    /// The next blocking wait: at most one slice, never past the phase's end.
    pub(crate) fn slice(&self) -> Duration {
        self.end
            .saturating_duration_since(Instant::now())
            .min(SLICE)
            // A zero socket timeout means "block forever" to the OS.
            .max(Duration::from_millis(1))
    }

    /// Checks the budget, then bounds the socket's next read and write by one slice.
    pub(crate) fn arm(&self, tcp: &TcpStream) -> Result<(), DialError> {
        self.check()?;
        let slice = Some(self.slice());
        tcp.set_read_timeout(slice)
            .and_then(|()| tcp.set_write_timeout(slice))
            .map_err(|e| DialError::Handshake {
                error: format!("cannot set socket timeouts: {e}"),
            })
    }
}

/// Headers sent on every dial, validated once (no control characters).
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    /// `Bearer <key>`: its `Debug` never shows it.
    pub authorization: Secret,
    pub version: Option<String>,
    pub user_agent: String,
}

/// Everything a dial needs; built once by `Link::spawn`.
#[derive(Debug)]
pub(crate) struct Dialer {
    pub url: WsUrl,
    pub proxy: Option<Proxy>,
    pub tls: Option<Arc<ClientConfig>>,
    pub headers: Headers,
    pub timeout: Duration,
    pub stop: Arc<StopAt>,
}

impl Dialer {
    fn budget(&self, phase: &'static str, target: String) -> Budget<'_> {
        Budget {
            end: Instant::now() + self.timeout,
            stop: &self.stop,
            phase,
            target,
        }
    }

    /// Dials once.
    pub(crate) fn dial(&self) -> Result<WebSocket<Transport>, DialError> {
        let transport = self.reach()?;
        let ws = self.ws_handshake(transport)?;
        ws.get_ref()
            .tcp()
            .set_nonblocking(true)
            .map_err(|e| DialError::Handshake {
                error: format!("cannot make the socket non-blocking: {e}"),
            })?;
        Ok(ws)
    }

    /// Resolves, connects (through the proxy, if any) and completes TLS for `wss://`: all of a
    /// dial but the WebSocket handshake. `check` uses it alone, as no API key is sent.
    pub(crate) fn reach(&self) -> Result<Transport, DialError> {
        let host = match &self.url.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        };
        let mut endpoint = Endpoint::new(Address::Tcp {
            host,
            port: self.url.port,
        })
        .with_proxy(self.proxy.clone());
        endpoint.user_agent = Some(self.headers.user_agent.clone());
        if self.url.secure
            && let Some(cfg) = &self.tls
        {
            endpoint = endpoint.with_tls(Arc::clone(cfg));
        }
        let stop = || self.stop.passed(Instant::now());
        let stream = http_transport::connect(&endpoint, self.timeout, &stop)
            .map_err(|e| self.connect_error(e))?;
        Transport::from_stream(stream).ok_or_else(|| DialError::Handshake {
            error: "the dialled stream is not TCP".into(),
        })
    }

    /// The link's words for a failed socket dial: which hop (proxy or server) and which phase.
    fn connect_error(&self, e: HttpError) -> DialError {
        let target = self.url.host.with_port(self.url.port);
        let (first_hop, proxy) = match &self.proxy {
            Some(p) => (p.display(), p.display()),
            None => (target.clone(), String::new()),
        };
        match e {
            HttpError::Aborted { .. } => DialError::Deadline,
            HttpError::ProxyStatus { proxy, status } => DialError::ProxyStatus { proxy, status },
            HttpError::Timeout { phase, .. } => DialError::Timeout {
                phase: match phase {
                    Phase::Proxy => "CONNECT through proxy",
                    Phase::Tls => "TLS handshake with",
                    _ => "connect to",
                },
                target: match phase {
                    Phase::Proxy => proxy,
                    Phase::Tls => self.url.host.to_string(),
                    _ => first_hop,
                },
            },
            HttpError::Connect {
                phase: Phase::Resolve,
                source,
                ..
            } => DialError::Resolve {
                host: match &self.proxy {
                    Some(p) => p.host.to_string(),
                    None => self.url.host.to_string(),
                },
                error: source.to_string(),
            },
            HttpError::Connect {
                phase: Phase::Proxy,
                source,
                ..
            } => DialError::Proxy {
                proxy,
                error: source.to_string(),
            },
            HttpError::Connect {
                phase: Phase::Tls,
                source,
                ..
            } => DialError::Tls {
                host: self.url.host.to_string(),
                error: source.to_string(),
            },
            HttpError::Connect { source, .. } => DialError::Connect {
                target: first_hop,
                error: source,
            },
            HttpError::Config(error) => DialError::Tls {
                host: self.url.host.to_string(),
                error,
            },
            other => DialError::Handshake {
                error: other.to_string(),
            },
        }
    }

    /// The upgrade request (RFC 6455 §4.1) with the worker's headers.
    fn request(&self, key: &str) -> Result<Vec<u8>, DialError> {
        let h = &self.headers;
        let mut headers = vec![
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key),
            ("Authorization", h.authorization.expose()),
            (
                crate::protocol::CAPABILITIES_HEADER,
                crate::protocol::CAPABILITIES,
            ),
            ("User-Agent", h.user_agent.as_str()),
        ];
        if let Some(v) = &h.version {
            headers.push((crate::protocol::VERSION_HEADER, v));
        }
        let mut out = Vec::new();
        // The codec's error names the part (never its value).
        codec::write_request_head(
            &mut out,
            "GET",
            &self.url.request_target(),
            &self.url.host_header(),
            &headers,
            RequestBody::None,
        )
        .map_err(|e| DialError::Handshake {
            error: format!("cannot build the request: {e}"),
        })?;
        Ok(out)
    }

    /// The WebSocket opening handshake, written here rather than by tungstenite's `handshake`
    /// feature: that feature's `http` crate cost ~60 KB of the static binary. Every blocking
    /// read and write waits at most one slice of the budget.
    fn ws_handshake(&self, mut transport: Transport) -> Result<WebSocket<Transport>, DialError> {
        let budget = self.budget("WebSocket handshake with", self.url.host_header());
        let key = websocket_key()?;
        let request = self.request(&key)?;
        let mut sent = 0;
        while sent < request.len() {
            budget.arm(transport.tcp())?;
            match transport.write(&request[sent..]) {
                Ok(0) => return Err(closed()),
                Ok(n) => sent += n,
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(io_failure(&e)),
            }
        }
        loop {
            budget.arm(transport.tcp())?;
            match transport.flush() {
                Ok(()) => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(io_failure(&e)),
            }
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (used, head) = loop {
            let parsed = codec::parse_response_head(&buf, codec::MAX_HEAD).map_err(|e| {
                DialError::Handshake {
                    error: e.to_string(),
                }
            })?;
            if let Some(done) = parsed {
                break done;
            }
            budget.arm(transport.tcp())?;
            match transport.read(&mut chunk) {
                Ok(0) => return Err(closed()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(io_failure(&e)),
            }
        };
        check_upgrade(&head, &key)?;
        // Frames the server sent right behind its response (same segment) stay with the socket.
        buf.drain(..used);
        Ok(WebSocket::from_partially_read(
            transport,
            buf,
            Role::Client,
            Some(ws_config()),
        ))
    }
}

/// A slice ended (socket timeout) or a signal interrupted the call: retry while the budget lasts.
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn io_failure(e: &io::Error) -> DialError {
    DialError::Handshake {
        error: e.to_string(),
    }
}

fn closed() -> DialError {
    DialError::Handshake {
        error: "the server closed the connection during the handshake".into(),
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
fn websocket_key() -> Result<String, DialError> {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(|_| {
        DialError::Handshake {
            error: "cannot generate the WebSocket key".into(),
        }
    })?;
    Ok(crate::base64::encode(&nonce))
}

/// The `Sec-WebSocket-Accept` value the server must answer `key` with (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID.as_bytes());
    crate::base64::encode(ctx.finish().as_ref())
}

/// Checks the server's answer to the upgrade request, as a client must (RFC 6455 §4.1): a
/// refusal by status, then the upgrade headers and the accept key.
fn check_upgrade(head: &ResponseHead, key: &str) -> Result<(), DialError> {
    if head.status != 101 {
        return Err(refused(head));
    }
    let has = |name: &str, token: &str| {
        head.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let problem = if !has("Upgrade", "websocket") {
        "no \"Upgrade: websocket\" in the server's reply"
    } else if !has("Connection", "upgrade") {
        "no \"Connection: upgrade\" in the server's reply"
    } else if head.header("Sec-WebSocket-Accept") != Some(accept_key(key).as_str()) {
        "the server's Sec-WebSocket-Accept does not match the key"
    } else if head.header("Sec-WebSocket-Protocol").is_some() {
        "the server chose a subprotocol, but none was requested"
    } else {
        return Ok(());
    };
    Err(DialError::Handshake {
        error: problem.into(),
    })
}

/// A response other than `101 Switching Protocols`.
fn refused(head: &ResponseHead) -> DialError {
    let status = head.status;
    match status {
        401 | 403 => DialError::Rejected { status },
        429 | 503 => DialError::Status {
            status,
            retry_after: head.header("retry-after").and_then(parse_retry_after),
        },
        _ => DialError::Status {
            status,
            retry_after: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_read_well_and_carry_retry_after() {
        assert_eq!(
            DialError::Rejected { status: 401 }.to_string(),
            "API key rejected (HTTP 401)"
        );
        let e = DialError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.to_string(), "handshake failed: HTTP 429 (Retry-After 3s)");
        assert_eq!(
            DialError::Status {
                status: 500,
                retry_after: None
            }
            .to_string(),
            "handshake failed: HTTP 500"
        );
        assert_eq!(
            DialError::ProxyStatus {
                proxy: "p:1".into(),
                status: 407
            }
            .to_string(),
            "proxy p:1 refused CONNECT: HTTP 407"
        );
        assert!(DialError::Rejected { status: 403 }.is_auth());
        assert!(!DialError::Deadline.is_auth());
    }

    #[test]
    fn handshake_statuses_are_classified() {
        let resp = |status: u16, retry: Option<&str>| ResponseHead {
            status,
            reason: String::new(),
            headers: retry
                .map(|r| vec![("Retry-After".to_owned(), r.to_owned())])
                .unwrap_or_default(),
        };
        assert!(matches!(
            check_upgrade(&resp(401, None), "k"),
            Err(DialError::Rejected { status: 401 })
        ));
        assert!(matches!(
            refused(&resp(403, None)),
            DialError::Rejected { status: 403 }
        ));
        assert_eq!(
            refused(&resp(503, Some("7"))).retry_after(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(refused(&resp(500, Some("7"))).retry_after(), None);
        assert_eq!(refused(&resp(429, Some("soon"))).retry_after(), None);
    }

    #[test]
    fn upgrade_answers_are_checked() {
        // RFC 6455 §1.3's example key and accept value.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert_eq!(accept_key(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let head = |headers: &[(&str, &str)]| ResponseHead {
            status: 101,
            reason: "Switching Protocols".into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let good = [
            ("upgrade", "WebSocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert!(check_upgrade(&head(&good), key).is_ok());
        let wrong_key = [good[0], good[1], ("Sec-WebSocket-Accept", "x")];
        let no_upgrade = [good[1], good[2]];
        let no_connection = [good[0], good[2]];
        let subprotocol = [
            good[0],
            good[1],
            good[2],
            ("Sec-WebSocket-Protocol", "chat"),
        ];
        for (bad, says) in [
            (&wrong_key[..], "Sec-WebSocket-Accept"),
            (&no_upgrade[..], "Upgrade: websocket"),
            (&no_connection[..], "Connection: upgrade"),
            (&subprotocol[..], "subprotocol"),
        ] {
            let e = check_upgrade(&head(bad), key).unwrap_err().to_string();
            assert!(
                e.starts_with("handshake failed: ") && e.contains(says),
                "{e}"
            );
        }
        let k1 = websocket_key().unwrap();
        assert_eq!(crate::base64::decode(&k1).unwrap().len(), 16);
        assert_ne!(k1, websocket_key().unwrap());
    }

    #[test]
    fn budget_ends_on_timeout_or_shutdown() {
        let stop = StopAt::new();
        let b = Budget {
            end: Instant::now() + Duration::from_secs(60),
            stop: &stop,
            phase: "connect to",
            target: "h:1".into(),
        };
        assert!(b.check().is_ok());
        assert!(b.slice() <= SLICE && b.slice() >= Duration::from_millis(1));
        stop.set(Instant::now());
        assert!(matches!(b.check(), Err(DialError::Deadline)));
        let stop = StopAt::new();
        let b = Budget {
            end: Instant::now(),
            stop: &stop,
            phase: "connect to",
            target: "h:1".into(),
        };
        let e = b.check().unwrap_err();
        assert_eq!(e.to_string(), "connect to h:1: timed out");
        assert_eq!(b.slice(), Duration::from_millis(1));
    }
}
