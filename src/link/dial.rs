//! One dial: resolve and TCP connect (with a timeout, `TCP_NODELAY`), optional HTTP CONNECT
//! through a proxy, TLS, then the WebSocket handshake, run blocking with socket timeouts. The
//! finished socket is switched to non-blocking for the `poll(2)` loop.
//!
//! Each phase gets `write_timeout`. Every blocking call waits at most [`SLICE`] before the
//! phase's [`Budget`] is checked again, so a shutdown requested in the middle of a dial stops it
//! within a slice instead of after the whole timeout. Name resolution and TCP connect run on a
//! short-lived helper thread (getaddrinfo has no timeout, connect cannot be sliced); an
//! abandoned helper finishes on its own and drops its socket.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use rustls::ClientConfig;
use tungstenite::handshake::client::{Request, generate_key};
use tungstenite::http::HeaderValue;
use tungstenite::{HandshakeError, WebSocket};

use super::backoff::parse_retry_after;
use super::fmt_duration;
use super::http_head::parse_response_head;
use super::proxy::{self, Proxy};
use super::tls;
use super::transport::{Transport, ws_config};
use super::url::{Host, WsUrl};
use super::wake::StopAt;

/// The longest single blocking wait inside a dial.
const SLICE: Duration = Duration::from_millis(100);
/// Each address gets an equal share of the connect budget, but at least this much.
const MIN_ATTEMPT: Duration = Duration::from_secs(2);

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

/// Headers sent on every dial, validated once.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    /// `Bearer <key>`, marked sensitive.
    pub authorization: HeaderValue,
    pub version: Option<HeaderValue>,
    pub user_agent: HeaderValue,
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
        let target = self.url.host.with_port(self.url.port);
        let (host, port, shown) = match &self.proxy {
            Some(p) => (p.host.clone(), p.port, p.display()),
            None => (self.url.host.clone(), self.url.port, target.clone()),
        };
        let tcp = connect(host, port, &self.budget("connect to", shown.clone()))?;
        // Small frames would otherwise wait on Nagle and delayed ACKs.
        tcp.set_nodelay(true).map_err(|error| DialError::Connect {
            target: shown.clone(),
            error,
        })?;
        if let Some(p) = &self.proxy {
            self.tunnel(&tcp, p, &target)?;
        }
        let transport = match &self.tls {
            Some(cfg) if self.url.secure => {
                let budget = self.budget("TLS handshake with", self.url.host.to_string());
                tls::handshake(tcp, cfg, &self.url.host, &budget)?
            }
            _ => Transport::plain(tcp),
        };
        Ok(transport)
    }

    /// HTTP CONNECT `target` through the proxy; the proxy resolves the target's name.
    fn tunnel(&self, mut tcp: &TcpStream, p: &Proxy, target: &str) -> Result<(), DialError> {
        let proxy = p.display();
        let budget = self.budget("CONNECT through proxy", proxy.clone());
        let failed = |error: String| DialError::Proxy {
            proxy: proxy.clone(),
            error,
        };
        let ua = self
            .headers
            .user_agent
            .to_str()
            .unwrap_or("oz-agent-worker");
        // A few hundred bytes into a fresh socket: this write does not block in practice, and
        // a partial write after a timeout could not be resumed with write_all.
        budget.check()?;
        let _ = tcp.set_write_timeout(Some(self.timeout));
        tcp.write_all(&proxy::connect_request(p, target, ua))
            .map_err(|e| failed(e.to_string()))?;
        // Byte by byte: nothing past the head may be consumed (it belongs to the tunnel).
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        let parsed = loop {
            budget.arm(tcp)?;
            match tcp.read(&mut byte) {
                Ok(0) => {
                    return Err(failed(
                        "closed the connection before answering CONNECT".into(),
                    ));
                }
                Ok(_) => head.push(byte[0]),
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(e.to_string())),
            }
            match parse_response_head(&head) {
                Ok(None) => {}
                Ok(Some(h)) => break h,
                Err(e) => return Err(failed(format!("bad CONNECT response: {e}"))),
            }
        };
        if !(200..300).contains(&parsed.status) {
            return Err(DialError::ProxyStatus {
                proxy,
                status: parsed.status,
            });
        }
        Ok(())
    }

    fn request(&self) -> Result<Request, DialError> {
        let scheme = if self.url.secure { "wss" } else { "ws" };
        let uri = format!(
            "{scheme}://{}{}",
            self.url.host_header(),
            self.url.request_target()
        );
        let h = &self.headers;
        let mut b = Request::builder()
            .method("GET")
            .uri(uri)
            .header("Host", self.url.host_header())
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", generate_key())
            .header("Authorization", h.authorization.clone())
            .header(
                crate::protocol::CAPABILITIES_HEADER,
                crate::protocol::CAPABILITIES,
            )
            .header("User-Agent", h.user_agent.clone());
        if let Some(v) = &h.version {
            b = b.header(crate::protocol::VERSION_HEADER, v.clone());
        }
        // The http crate's error text never includes header values.
        b.body(()).map_err(|e| DialError::Handshake {
            error: format!("cannot build the request: {e}"),
        })
    }

    fn ws_handshake(&self, transport: Transport) -> Result<WebSocket<Transport>, DialError> {
        let budget = self.budget("WebSocket handshake with", self.url.host_header());
        budget.arm(transport.tcp())?;
        let mut attempt =
            tungstenite::client::client_with_config(self.request()?, transport, Some(ws_config()));
        loop {
            match attempt {
                Ok((ws, _response)) => return Ok(ws),
                // A slice ended mid-handshake (EAGAIN): resume while the budget lasts.
                Err(HandshakeError::Interrupted(mid)) => {
                    budget.arm(mid.get_ref().get_ref().tcp())?;
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(handshake_failure(e)),
            }
        }
    }
}

fn handshake_failure(e: tungstenite::Error) -> DialError {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status().as_u16();
            match status {
                401 | 403 => DialError::Rejected { status },
                429 | 503 => DialError::Status {
                    status,
                    retry_after: resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after),
                },
                _ => DialError::Status {
                    status,
                    retry_after: None,
                },
            }
        }
        tungstenite::Error::Io(e) => DialError::Handshake {
            error: e.to_string(),
        },
        other => DialError::Handshake {
            error: other.to_string(),
        },
    }
}

/// Resolves and connects on a helper thread, waiting for it in slices.
fn connect(host: Host, port: u16, budget: &Budget) -> Result<TcpStream, DialError> {
    budget.check()?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let end = budget.end;
    let shown = budget.target.clone();
    std::thread::Builder::new()
        .name("oz-connect".into())
        .spawn(move || {
            let r = resolve(&host, port).and_then(|addrs| connect_any(&addrs, end, &shown));
            // Nobody listening any more (shutdown or timeout): the socket is dropped here.
            let _ = tx.send(r);
        })
        .map_err(|e| DialError::Connect {
            target: budget.target.clone(),
            error: e,
        })?;
    loop {
        match rx.recv_timeout(budget.slice()) {
            Ok(r) => return r,
            Err(RecvTimeoutError::Timeout) => budget.check()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(DialError::Connect {
                    target: budget.target.clone(),
                    error: io::Error::other("the connect helper thread ended without an answer"),
                });
            }
        }
    }
}

fn resolve(host: &Host, port: u16) -> Result<Vec<SocketAddr>, DialError> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(n) => n,
    };
    match (name.as_str(), port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                Err(DialError::Resolve {
                    host: name.clone(),
                    error: "no addresses".into(),
                })
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(DialError::Resolve {
            host: name.clone(),
            error: e.to_string(),
        }),
    }
}

/// Tries each address in turn. Like Go's dialer, each attempt gets an equal share of what is
/// left (but at least [`MIN_ATTEMPT`] when that much is left), so one black-holed address cannot
/// use up the whole budget.
fn connect_any(addrs: &[SocketAddr], end: Instant, shown: &str) -> Result<TcpStream, DialError> {
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let remaining = u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        let share = (left / remaining).max(MIN_ATTEMPT.min(left));
        match TcpStream::connect_timeout(addr, share) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(error) if !is_timeout(&error) => Err(DialError::Connect {
            target: shown.to_owned(),
            error,
        }),
        _ => Err(DialError::Timeout {
            phase: "connect to",
            target: shown.to_owned(),
        }),
    }
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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
        let resp = |status: u16, retry: Option<&str>| {
            let mut b = tungstenite::http::Response::builder().status(status);
            if let Some(r) = retry {
                b = b.header("Retry-After", r);
            }
            tungstenite::Error::Http(Box::new(b.body(None).unwrap()))
        };
        assert!(matches!(
            handshake_failure(resp(401, None)),
            DialError::Rejected { status: 401 }
        ));
        assert!(matches!(
            handshake_failure(resp(403, None)),
            DialError::Rejected { status: 403 }
        ));
        assert_eq!(
            handshake_failure(resp(503, Some("7"))).retry_after(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(handshake_failure(resp(500, Some("7"))).retry_after(), None);
        assert_eq!(
            handshake_failure(resp(429, Some("soon"))).retry_after(),
            None
        );
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

    #[test]
    fn connect_reports_refusal_and_unresolvable_names() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stop = StopAt::new();
        let b = Budget {
            end: Instant::now() + Duration::from_secs(30),
            stop: &stop,
            phase: "connect to",
            target: format!("127.0.0.1:{port}"),
        };
        let e = connect(Host::Ip([127, 0, 0, 1].into()), port, &b).unwrap_err();
        assert!(matches!(e, DialError::Connect { .. }), "{e}");
        let e = connect(Host::Name("no-such-host.invalid".into()), 1, &b).unwrap_err();
        assert!(
            matches!(e, DialError::Resolve { .. } | DialError::Timeout { .. }),
            "{e}"
        );
    }
}
