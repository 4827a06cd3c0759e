//! One dial: resolve, TCP connect (with a timeout, `TCP_NODELAY`), optional HTTP CONNECT through
//! a proxy, TLS (rustls with ring), then the WebSocket handshake run blocking with socket
//! timeouts. The finished socket is switched to non-blocking for the `poll(2)` loop.
//!
//! Each phase gets `write_timeout`, clipped to the shutdown deadline when one is set, so a dial
//! never outlives `Link::shutdown`'s deadline by more than scheduling noise.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::handshake::client::{Request, generate_key};
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, WebSocket};

use super::backoff::parse_retry_after;
use super::fmt_duration;
use super::http_head::{self, parse_response_head};
use super::proxy::{self, Proxy};
use super::url::{Host, WsUrl};

/// Largest frame or message accepted from the server; larger ones end the connection.
pub(crate) const MAX_INBOUND: usize = 16 << 20;
/// Largest outbound frame; a message that encodes larger is dropped (it could never be sent).
pub(crate) const MAX_OUTBOUND: usize = 16 << 20;
const BUFFER: usize = 8 << 10;

/// The WebSocket limits: small buffers (the traffic is a few small JSON frames), bounded
/// everything.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        // One maximal outbound frame (+ header) always fits into an empty buffer.
        .max_write_buffer_size(MAX_OUTBOUND + BUFFER + 64)
        .max_message_size(Some(MAX_INBOUND))
        .max_frame_size(Some(MAX_INBOUND))
}

/// The link's byte stream: plain TCP or TLS over TCP. It counts the bytes it reads, so
/// liveness can count a large frame that is still arriving as "something was read".
#[derive(Debug)]
pub(crate) struct Transport {
    stream: Stream,
    received: u64,
}

#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    fn plain(tcp: TcpStream) -> Transport {
        Transport {
            stream: Stream::Plain(tcp),
            received: 0,
        }
    }

    fn tls(tls: StreamOwned<ClientConnection, TcpStream>) -> Transport {
        Transport {
            stream: Stream::Tls(Box::new(tls)),
            received: 0,
        }
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Bytes read so far (after TLS decryption).
    pub(crate) fn received(&self) -> u64 {
        self.received
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(buf)?,
            Stream::Tls(s) => s.read(buf)?,
        };
        self.received += n as u64;
        Ok(n)
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

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
    /// The shutdown deadline passed before this dial could start.
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

/// Builds the rustls client configuration: the system roots plus the optional PEM bundle.
pub(crate) fn tls_config(ca_bundle: Option<&Path>) -> Result<Arc<ClientConfig>, super::LinkError> {
    use super::LinkError;
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        // Not fatal: the extra bundle may be all we need, and an empty store is caught below.
        if ca_bundle.is_some() {
            log::info!("Could not load some system CA certificates: {e}");
        } else {
            log::warn!("Could not load some system CA certificates: {e}");
        }
    }
    let (system, _) = roots.add_parsable_certificates(native.certs);
    log::debug!("Loaded {system} system CA certificates");
    if let Some(path) = ca_bundle {
        let bad = |reason: String| LinkError::CaBundle {
            path: path.to_owned(),
            reason,
        };
        let mut added = 0usize;
        let iter = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        for cert in iter {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no PEM certificates found".into()));
        }
        log::debug!("Loaded {added} CA certificates from {}", path.display());
    }
    if roots.is_empty() {
        return Err(LinkError::NoTrustAnchors);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
}

impl Dialer {
    /// Dials once. `stop` is the shutdown deadline, if one is set.
    pub(crate) fn dial(&self, stop: Option<Instant>) -> Result<WebSocket<Transport>, DialError> {
        let phase_end = || {
            let end = Instant::now() + self.timeout;
            stop.map_or(end, |s| end.min(s))
        };
        if stop.is_some_and(|s| Instant::now() >= s) {
            return Err(DialError::Deadline);
        }
        let target = self.url.host.with_port(self.url.port);
        let (host, port, shown) = match &self.proxy {
            Some(p) => (&p.host, p.port, p.display()),
            None => (&self.url.host, self.url.port, target.clone()),
        };
        let end = phase_end();
        let addrs = resolve(host, port, end)?;
        let tcp = connect(&addrs, end, &shown)?;
        // Small frames would otherwise wait on Nagle and delayed ACKs.
        tcp.set_nodelay(true).map_err(|error| DialError::Connect {
            target: shown.clone(),
            error,
        })?;
        if let Some(p) = &self.proxy {
            self.tunnel(&tcp, p, &target, phase_end())?;
        }
        let transport = match &self.tls {
            Some(cfg) if self.url.secure => tls_handshake(tcp, cfg, &self.url.host, phase_end())?,
            _ => Transport::plain(tcp),
        };
        let ws = self.ws_handshake(transport, phase_end())?;
        ws.get_ref()
            .tcp()
            .set_nonblocking(true)
            .map_err(|e| DialError::Handshake {
                error: format!("cannot make the socket non-blocking: {e}"),
            })?;
        Ok(ws)
    }

    /// HTTP CONNECT `target` through the proxy; the proxy resolves the target's name.
    fn tunnel(
        &self,
        mut tcp: &TcpStream,
        p: &Proxy,
        target: &str,
        end: Instant,
    ) -> Result<(), DialError> {
        let proxy = p.display();
        let io_err = |e: io::Error| {
            if is_timeout(&e) {
                DialError::Timeout {
                    phase: "CONNECT through proxy",
                    target: proxy.clone(),
                }
            } else {
                DialError::Proxy {
                    proxy: proxy.clone(),
                    error: e.to_string(),
                }
            }
        };
        let ua = self
            .headers
            .user_agent
            .to_str()
            .unwrap_or("oz-agent-worker");
        set_timeouts(tcp, end).map_err(io_err)?;
        tcp.write_all(&proxy::connect_request(p, target, ua))
            .map_err(io_err)?;
        // Byte by byte: nothing past the head may be consumed (it belongs to the tunnel).
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        let parsed = loop {
            set_timeouts(tcp, end).map_err(io_err)?;
            match tcp.read(&mut byte) {
                Ok(0) => {
                    return Err(DialError::Proxy {
                        proxy,
                        error: "closed the connection before answering CONNECT".into(),
                    });
                }
                Ok(_) => head.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            }
            match parse_response_head(&head) {
                Ok(None) => {}
                Ok(Some(h)) => break h,
                Err(e) => {
                    return Err(DialError::Proxy {
                        proxy,
                        error: format!("bad CONNECT response: {e}"),
                    });
                }
            }
        };
        if !(200..300).contains(&parsed.status) {
            return Err(DialError::ProxyStatus {
                proxy,
                status: parsed.status,
            });
        }
        debug_assert!(head.len() <= http_head::MAX_HEAD);
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

    fn ws_handshake(
        &self,
        transport: Transport,
        end: Instant,
    ) -> Result<WebSocket<Transport>, DialError> {
        let timeout = || DialError::Timeout {
            phase: "WebSocket handshake with",
            target: self.url.host_header(),
        };
        set_timeouts(transport.tcp(), end).map_err(|_| timeout())?;
        let mut attempt =
            tungstenite::client::client_with_config(self.request()?, transport, Some(ws_config()));
        loop {
            match attempt {
                Ok((ws, _response)) => return Ok(ws),
                // The socket timeout expired (EAGAIN) mid-handshake: retry until our deadline.
                Err(HandshakeError::Interrupted(mid)) => {
                    if Instant::now() >= end {
                        return Err(timeout());
                    }
                    set_timeouts(mid.get_ref().get_ref().tcp(), end).map_err(|_| timeout())?;
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(handshake_failure(e, timeout)),
            }
        }
    }
}

fn handshake_failure(e: tungstenite::Error, timeout: impl Fn() -> DialError) -> DialError {
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
        tungstenite::Error::Io(e) if is_timeout(&e) => timeout(),
        tungstenite::Error::Io(e) => DialError::Handshake {
            error: e.to_string(),
        },
        other => DialError::Handshake {
            error: other.to_string(),
        },
    }
}

fn tls_handshake(
    mut tcp: TcpStream,
    cfg: &Arc<ClientConfig>,
    host: &Host,
    end: Instant,
) -> Result<Transport, DialError> {
    let shown = host.to_string();
    let tls_err = |error: String| DialError::Tls {
        host: shown.clone(),
        error,
    };
    let name = match host {
        Host::Name(n) => ServerName::try_from(n.clone()).map_err(|e| tls_err(e.to_string()))?,
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
    };
    let mut conn = ClientConnection::new(cfg.clone(), name).map_err(|e| tls_err(e.to_string()))?;
    while conn.is_handshaking() {
        set_timeouts(&tcp, end).map_err(|e| tls_err(e.to_string()))?;
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(DialError::Timeout {
                    phase: "TLS handshake with",
                    target: shown,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(tls_err("the server closed the connection".into()));
            }
            Err(e) => return Err(tls_err(e.to_string())),
        }
        if conn.is_handshaking() && Instant::now() >= end {
            return Err(DialError::Timeout {
                phase: "TLS handshake with",
                target: shown,
            });
        }
    }
    Ok(Transport::tls(StreamOwned::new(conn, tcp)))
}

/// Resolves on a helper thread so the lookup is bounded by `end` (getaddrinfo has no timeout).
fn resolve(host: &Host, port: u16, end: Instant) -> Result<Vec<SocketAddr>, DialError> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(n) => n.clone(),
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    let lookup = name.clone();
    std::thread::Builder::new()
        .name("oz-resolve".into())
        .spawn(move || {
            let r = (lookup.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>);
            let _ = tx.send(r);
        })
        .map_err(|e| DialError::Resolve {
            host: name.clone(),
            error: format!("cannot start the resolver thread: {e}"),
        })?;
    match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(DialError::Resolve {
            host: name,
            error: "no addresses".into(),
        }),
        Ok(Err(e)) => Err(DialError::Resolve {
            host: name,
            error: e.to_string(),
        }),
        Err(_) => Err(DialError::Timeout {
            phase: "resolve",
            target: name,
        }),
    }
}

fn connect(addrs: &[SocketAddr], end: Instant, shown: &str) -> Result<TcpStream, DialError> {
    let mut last = None;
    for addr in addrs {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
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
            phase: "connect",
            target: shown.to_owned(),
        }),
    }
}

/// Socket timeouts for the blocking phases: what is left until `end` (at least 1 ms, since a
/// zero timeout means "block forever" to the OS).
fn set_timeouts(tcp: &TcpStream, end: Instant) -> io::Result<()> {
    let left = end
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    tcp.set_read_timeout(Some(left))?;
    tcp.set_write_timeout(Some(left))
}

fn is_timeout(e: &io::Error) -> bool {
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
        let t = || DialError::Deadline;
        assert!(matches!(
            handshake_failure(resp(401, None), t),
            DialError::Rejected { status: 401 }
        ));
        assert!(matches!(
            handshake_failure(resp(403, None), t),
            DialError::Rejected { status: 403 }
        ));
        assert_eq!(
            handshake_failure(resp(503, Some("7")), t).retry_after(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            handshake_failure(resp(500, Some("7")), t).retry_after(),
            None
        );
        assert_eq!(
            handshake_failure(resp(429, Some("soon")), t).retry_after(),
            None
        );
    }

    #[test]
    fn config_is_valid_and_bounded() {
        let c = ws_config();
        assert!(c.max_write_buffer_size > c.write_buffer_size + MAX_OUTBOUND);
        assert_eq!(c.max_frame_size, Some(MAX_INBOUND));
        assert_eq!(c.read_buffer_size, BUFFER);
        // Constructing a context validates the config (it panics on an invalid one).
        let _ = tungstenite::protocol::WebSocketContext::new(
            tungstenite::protocol::Role::Client,
            Some(c),
        );
    }
}
