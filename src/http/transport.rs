//! Sockets: where the server is ([`Endpoint`]), how to reach it (unix socket, TCP, an HTTP
//! CONNECT proxy, TLS) and the connected byte stream ([`Stream`]).
//!
//! [`connect`] runs under one budget covering name resolution, TCP connect, the proxy tunnel
//! and the TLS handshake. Resolution and TCP connect run on a short-lived helper thread
//! (`getaddrinfo` has no timeout, and a connect cannot be interrupted); every other blocking
//! wait lasts at most [`SLICE`], after which the budget and the caller's cancel check are looked
//! at again, so an abort or shutdown stops a dial within a slice. An abandoned helper thread
//! finishes on its own and drops its socket.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::codec;
use super::error::{HttpError, Phase};
use super::proxy::{self, Proxy};
use super::tls;

/// The longest single blocking wait while connecting.
pub const SLICE: Duration = Duration::from_millis(100);
/// Each address gets an equal share of the connect budget, but at least this much.
const MIN_ATTEMPT: Duration = Duration::from_secs(2);
/// The largest proxy answer to CONNECT we accept.
const MAX_PROXY_HEAD: usize = 8 * 1024;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    /// `host` as written, IPv6 without brackets.
    Tcp {
        host: String,
        port: u16,
    },
}

/// A server address plus how to reach and secure it. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    pub address: Address,
    /// Present for TLS endpoints.
    pub tls: Option<Arc<ClientConfig>>,
    /// The name the server certificate must carry, when not the host (`tls-server-name`).
    pub server_name: Option<String>,
    /// Tunnel through this HTTP proxy (see [`super::proxy::select`] for `NO_PROXY`).
    pub proxy: Option<Proxy>,
    /// `Host` header override; default `host:port` (`localhost` on a unix socket).
    pub host_header: Option<String>,
    /// `User-Agent` of requests and of the proxy CONNECT; default `oz-agent-worker/<version>`.
    pub user_agent: Option<String>,
    /// How messages name the endpoint, when not `unix://…`, `http://…` or `https://…`.
    pub label: Option<String>,
}

impl Endpoint {
    /// A plain (no TLS, no proxy) endpoint at `address`.
    pub fn new(address: Address) -> Endpoint {
        Endpoint {
            address,
            tls: None,
            server_name: None,
            proxy: None,
            host_header: None,
            user_agent: None,
            label: None,
        }
    }

    /// A plain unix-socket endpoint.
    pub fn unix(path: impl Into<PathBuf>) -> Endpoint {
        Endpoint::new(Address::Unix(path.into()))
    }

    /// A plain TCP endpoint (`host` without brackets for IPv6).
    pub fn tcp(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint::new(Address::Tcp {
            host: host.into(),
            port,
        })
    }

    /// Speaks TLS with `config` (see [`super::tls::client_config`]).
    pub fn with_tls(mut self, config: Arc<ClientConfig>) -> Endpoint {
        self.tls = Some(config);
        self
    }

    /// Checks the certificate against `name` instead of the host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Endpoint {
        self.server_name = Some(name.into());
        self
    }

    /// Tunnels through `proxy` (`None` connects directly).
    pub fn with_proxy(mut self, proxy: Option<Proxy>) -> Endpoint {
        self.proxy = proxy;
        self
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `host:port` with brackets around an IPv6 literal, or the socket path.
    pub fn authority(&self) -> String {
        match &self.address {
            Address::Unix(path) => path.display().to_string(),
            Address::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Address::Tcp { host, port } => format!("{host}:{port}"),
        }
    }

    /// The value for the `Host` request header.
    pub fn host_header(&self) -> String {
        match (&self.host_header, &self.address) {
            (Some(h), _) => h.clone(),
            // Any name does on a unix socket; the server ignores it.
            (None, Address::Unix(_)) => "localhost".to_string(),
            (None, Address::Tcp { .. }) => self.authority(),
        }
    }

    /// The `User-Agent` value.
    pub fn user_agent(&self) -> String {
        self.user_agent
            .clone()
            .unwrap_or_else(|| format!("oz-agent-worker/{}", crate::VERSION))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            _ if self.label.is_some() => f.write_str(self.label.as_deref().unwrap_or_default()),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            _ if self.tls.is_some() => write!(f, "https://{}", self.authority()),
            _ => write!(f, "http://{}", self.authority()),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.to_string())
            .field("tls", &self.tls.is_some())
            .field("server_name", &self.server_name)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// A connected byte stream.
#[derive(Debug)]
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.sock.set_write_timeout(t),
        }
    }

    /// The TCP socket underneath, if any (for `poll(2)` and non-blocking mode).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Unix(_) => None,
            Stream::Tcp(s) => Some(s),
            Stream::Tls(s) => Some(&s.sock),
        }
    }

    /// A second handle on the socket that can shut it down from another thread.
    pub fn handle(&self) -> io::Result<SocketHandle> {
        Ok(match self {
            Stream::Unix(s) => SocketHandle::Unix(s.try_clone()?),
            Stream::Tcp(s) => SocketHandle::Tcp(s.try_clone()?),
            Stream::Tls(s) => SocketHandle::Tcp(s.sock.try_clone()?),
        })
    }

    /// Half-closes our side (an attached container sees EOF on stdin).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Tls(s) => {
                s.conn.send_close_notify();
                s.conn.complete_io(&mut s.sock)?;
                s.sock.shutdown(Shutdown::Write)
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A clone of a connection's socket, used only to shut it down.
pub enum SocketHandle {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl SocketHandle {
    pub(crate) fn shutdown(&self) {
        // Errors mean the socket is already closed, which is the goal.
        let _ = match self {
            SocketHandle::Unix(s) => s.shutdown(Shutdown::Both),
            SocketHandle::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// The time budget of one [`connect`], also ended by the caller's cancel check.
struct Budget<'a> {
    end: Instant,
    timeout: Duration,
    cancelled: &'a dyn Fn() -> bool,
    endpoint: String,
}

impl Budget<'_> {
    fn check(&self, phase: Phase) -> Result<(), HttpError> {
        if (self.cancelled)() {
            return Err(HttpError::Aborted {
                request: "connect".to_string(),
            });
        }
        if Instant::now() >= self.end {
            return Err(HttpError::Timeout {
                phase,
                endpoint: self.endpoint.clone(),
                request: "connect".to_string(),
                after: self.timeout,
            });
        }
        Ok(())
    }

    /// The next blocking wait: at most one slice, never past the end, never zero (a zero socket
    /// timeout means "block forever").
    fn slice(&self) -> Duration {
        self.end
            .saturating_duration_since(Instant::now())
            .min(SLICE)
            .max(Duration::from_millis(1))
    }

    /// Checks the budget, then bounds the socket's next read and write by one slice.
    fn arm(&self, tcp: &TcpStream, phase: Phase) -> Result<(), HttpError> {
        self.check(phase)?;
        let slice = Some(self.slice());
        tcp.set_read_timeout(slice)
            .and_then(|()| tcp.set_write_timeout(slice))
            .map_err(|e| self.failed(phase, e))
    }

    fn failed(&self, phase: Phase, source: io::Error) -> HttpError {
        HttpError::Connect {
            phase,
            endpoint: self.endpoint.clone(),
            source,
        }
    }
}

/// Opens a stream to `endpoint` within `timeout` (resolution, proxy tunnel and TLS handshake
/// included). `cancelled` is polled at least every [`SLICE`]; when it returns true the dial ends
/// with [`HttpError::Aborted`]. The returned socket has no timeouts set.
pub fn connect(
    endpoint: &Endpoint,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Stream, HttpError> {
    let budget = Budget {
        end: Instant::now() + timeout,
        timeout,
        cancelled,
        endpoint: endpoint.to_string(),
    };
    budget.check(Phase::Connect)?;
    let (host, port) = match &endpoint.address {
        // A unix connect completes or fails at once, unless the accept backlog is full.
        Address::Unix(path) => {
            return UnixStream::connect(path)
                .map(Stream::Unix)
                .map_err(|e| unix_connect_error(&budget, path, e));
        }
        Address::Tcp { host, port } => (host.as_str(), *port),
    };
    let tcp = match &endpoint.proxy {
        None => tcp_connect(host.to_string(), port, &budget)?,
        Some(p) => {
            let (proxy_host, proxy_port) = match &p.host {
                super::host::Host::Ip(ip) => (ip.to_string(), p.port),
                super::host::Host::Name(n) => (n.clone(), p.port),
            };
            let tcp = tcp_connect(proxy_host, proxy_port, &budget)?;
            tunnel(
                &tcp,
                p,
                &endpoint.authority(),
                &endpoint.user_agent(),
                &budget,
            )?;
            tcp
        }
    };
    let stream = match &endpoint.tls {
        None => Stream::Tcp(tcp),
        Some(config) => {
            let name = endpoint.server_name.as_deref().unwrap_or(host);
            handshake(tcp, config, name, &budget)?
        }
    };
    if let Some(tcp) = stream.tcp() {
        tcp.set_read_timeout(None)
            .and_then(|()| tcp.set_write_timeout(None))
            .map_err(|e| budget.failed(Phase::Connect, e))?;
    }
    Ok(stream)
}

fn unix_connect_error(budget: &Budget, path: &Path, e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::NotFound => HttpError::NoSocket {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => HttpError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => budget.failed(Phase::Connect, e),
    }
}

/// Resolves and connects on a helper thread, waiting for it in slices.
fn tcp_connect(host: String, port: u16, budget: &Budget) -> Result<TcpStream, HttpError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let end = budget.end;
    let endpoint = budget.endpoint.clone();
    let timeout = budget.timeout;
    std::thread::Builder::new()
        .name("oz-connect".into())
        .spawn(move || {
            let r = resolve(&host, port, &endpoint)
                .and_then(|addrs| connect_any(&addrs, end, timeout, &endpoint));
            // Nobody listening any more (abort or timeout): the socket is dropped here.
            let _ = tx.send(r);
        })
        .map_err(|e| budget.failed(Phase::Connect, e))?;
    let tcp = loop {
        match rx.recv_timeout(budget.slice()) {
            Ok(r) => break r?,
            Err(RecvTimeoutError::Timeout) => budget.check(Phase::Connect)?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(budget.failed(
                    Phase::Connect,
                    io::Error::other("the connect helper thread ended without an answer"),
                ));
            }
        }
    };
    // Requests and frames are small and latency-bound; don't let Nagle hold them back.
    tcp.set_nodelay(true)
        .map_err(|e| budget.failed(Phase::Connect, e))?;
    Ok(tcp)
}

fn resolve(host: &str, port: u16, endpoint: &str) -> Result<Vec<SocketAddr>, HttpError> {
    let failed = |source| HttpError::Connect {
        phase: Phase::Resolve,
        endpoint: endpoint.to_string(),
        source,
    };
    let addrs: Vec<_> = (host, port).to_socket_addrs().map_err(failed)?.collect();
    if addrs.is_empty() {
        return Err(failed(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolved to no address"),
        )));
    }
    Ok(addrs)
}

/// Tries each address in turn. Like Go's dialer, each attempt gets an equal share of what is
/// left (but at least [`MIN_ATTEMPT`] when that much is left), so one black-holed address cannot
/// use up the whole budget.
fn connect_any(
    addrs: &[SocketAddr],
    end: Instant,
    timeout: Duration,
    endpoint: &str,
) -> Result<TcpStream, HttpError> {
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
        Some(source) if !is_timeout(&source) => Err(HttpError::Connect {
            phase: Phase::Connect,
            endpoint: endpoint.to_string(),
            source,
        }),
        _ => Err(HttpError::Timeout {
            phase: Phase::Connect,
            endpoint: endpoint.to_string(),
            request: "connect".to_string(),
            after: timeout,
        }),
    }
}

/// `WouldBlock` or `TimedOut`: how a socket timeout shows.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// HTTP CONNECT `target` through the proxy; the proxy resolves the target's name.
fn tunnel(
    mut tcp: &TcpStream,
    p: &Proxy,
    target: &str,
    user_agent: &str,
    budget: &Budget,
) -> Result<(), HttpError> {
    let failed = |error: String| HttpError::Connect {
        phase: Phase::Proxy,
        endpoint: budget.endpoint.clone(),
        source: io::Error::other(format!("proxy {}: {error}", p.display())),
    };
    // A few hundred bytes into a fresh socket: this write does not block in practice, and a
    // partial write after a timeout could not be resumed with write_all.
    budget.check(Phase::Proxy)?;
    let _ = tcp.set_write_timeout(Some(budget.end.saturating_duration_since(Instant::now())));
    tcp.write_all(&proxy::connect_request(p, target, user_agent))
        .map_err(|e| failed(e.to_string()))?;
    // Byte by byte: nothing past the head may be consumed (it belongs to the tunnel).
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    let parsed = loop {
        budget.arm(tcp, Phase::Proxy)?;
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
        match parse_proxy_head(&head) {
            Ok(None) => {}
            Ok(Some(status)) => break status,
            Err(e) => return Err(failed(format!("bad CONNECT response: {e}"))),
        }
    };
    if !(200..300).contains(&parsed) {
        return Err(HttpError::ProxyStatus {
            proxy: p.display(),
            status: parsed,
        });
    }
    Ok(())
}

/// The status of a proxy's answer to CONNECT, once its head is complete. The codec keeps
/// obs-text in header values (RFC 9110 allows it); a proxy's answer to CONNECT has no business
/// sending any, so non-UTF-8 is refused here.
pub(crate) fn parse_proxy_head(buf: &[u8]) -> Result<Option<u16>, codec::CodecError> {
    match codec::parse_response_head(buf, MAX_PROXY_HEAD)? {
        None => Ok(None),
        Some((len, _)) if std::str::from_utf8(&buf[..len]).is_err() => {
            Err(codec::CodecError::BadHeader)
        }
        Some((_, head)) => Ok(Some(head.status)),
    }
}

/// The TLS client handshake over an established (possibly tunnelled) TCP stream, in slices.
fn handshake(
    mut tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: &str,
    budget: &Budget,
) -> Result<Stream, HttpError> {
    let name = tls::server_name(name).map_err(HttpError::Config)?;
    let mut conn = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| budget.failed(Phase::Tls, io::Error::other(e)))?;
    while conn.is_handshaking() {
        budget.arm(&tcp, Phase::Tls)?;
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            // A slice ended (or a signal): the budget decides whether to go on.
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(budget.failed(
                    Phase::Tls,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ),
                ));
            }
            Err(e) => return Err(budget.failed(Phase::Tls, e)),
        }
    }
    Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
