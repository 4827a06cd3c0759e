//! One dial: the socket (resolve, TCP connect with `TCP_NODELAY`, optional HTTP CONNECT through
//! a proxy, TLS) from the shared HTTP client's [`crate::http::transport::connect`], then the
//! WebSocket handshake, run blocking with socket timeouts. The finished socket is switched to
//! non-blocking for the `poll(2)` loop.
//!
//! The socket gets `write_timeout`, and so does the WebSocket handshake. Every blocking call waits
//! at most [`SLICE`] before the shutdown deadline is checked again, so a shutdown requested in the
//! middle of a dial stops it within a slice instead of after the whole timeout.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tungstenite::handshake::client::{Request, generate_key};
use tungstenite::http::HeaderValue;
use tungstenite::{HandshakeError, WebSocket};

use super::backoff::parse_retry_after;
use super::fmt_duration;
use super::transport::{Transport, ws_config};
use super::url::{Host, WsUrl};
use super::wake::StopAt;
use crate::http::proxy::Proxy;
use crate::http::transport::{self as http_transport, Address, Endpoint, SLICE};
use crate::http::{HttpError, Phase};

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
        let host = match &self.url.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        };
        let mut endpoint = Endpoint::new(Address::Tcp {
            host,
            port: self.url.port,
        })
        .with_proxy(self.proxy.clone());
        endpoint.user_agent = Some(
            self.headers
                .user_agent
                .to_str()
                .unwrap_or("oz-agent-worker")
                .to_owned(),
        );
        if self.url.secure
            && let Some(cfg) = &self.tls
        {
            endpoint = endpoint.with_tls(Arc::clone(cfg));
        }
        let stop = || self.stop.passed(Instant::now());
        let stream = http_transport::connect(&endpoint, self.timeout, &stop)
            .map_err(|e| self.connect_error(e))?;
        let transport = Transport::from_stream(stream).ok_or_else(|| DialError::Handshake {
            error: "the dialled stream is not TCP".into(),
        })?;
        let ws = self.ws_handshake(transport)?;
        ws.get_ref()
            .tcp()
            .set_nonblocking(true)
            .map_err(|e| DialError::Handshake {
                error: format!("cannot make the socket non-blocking: {e}"),
            })?;
        Ok(ws)
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
}
