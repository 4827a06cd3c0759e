//! Sockets: where the daemon is ([`Endpoint`]), the byte stream to it (unix, TCP, TLS) and the
//! [`Abort`] handle that ends blocking calls from another thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::error::{DockerError, Phase};

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

/// A daemon address plus how to secure it, and where the choice came from.
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) address: Address,
    /// Present for TLS endpoints.
    pub(crate) tls: Option<Arc<ClientConfig>>,
    /// Human-readable origin, e.g. `DOCKER_HOST`, `context "remote"`, `default socket`.
    pub(crate) source: String,
}

impl Endpoint {
    /// A plain unix-socket endpoint.
    pub fn unix(path: impl Into<PathBuf>) -> Endpoint {
        Endpoint {
            address: Address::Unix(path.into()),
            tls: None,
            source: "explicit".to_string(),
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Where this endpoint came from (for the startup log line).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The value for the `Host` request header.
    pub(crate) fn host_header(&self) -> String {
        match &self.address {
            // Any name does; the daemon ignores it on a unix socket.
            Address::Unix(_) => "docker".to_string(),
            Address::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Address::Tcp { host, port } => format!("{host}:{port}"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp { .. } => write!(f, "tcp://{}", self.host_header()),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.to_string())
            .field("tls", &self.tls.is_some())
            .field("source", &self.source)
            .finish()
    }
}

/// A connected byte stream to the daemon.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.sock.set_write_timeout(t),
        }
    }

    /// A second handle on the socket that can shut it down from another thread.
    pub(crate) fn handle(&self) -> io::Result<SocketHandle> {
        Ok(match self {
            Stream::Unix(s) => SocketHandle::Unix(s.try_clone()?),
            Stream::Tcp(s) => SocketHandle::Tcp(s.try_clone()?),
            Stream::Tls(s) => SocketHandle::Tcp(s.sock.try_clone()?),
        })
    }

    /// Half-closes our side: the daemon sees EOF on stdin of an attached container.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
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
pub(crate) enum SocketHandle {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl SocketHandle {
    fn shutdown(&self) {
        // Errors mean the socket is already closed, which is the goal.
        let _ = match self {
            SocketHandle::Unix(s) => s.shutdown(Shutdown::Both),
            SocketHandle::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// Opens a stream to `endpoint` within `timeout` (TLS handshake included).
pub(crate) fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Stream, DockerError> {
    let deadline = Instant::now() + timeout;
    match &endpoint.address {
        // A unix connect completes or fails at once, unless the daemon's accept backlog is full.
        Address::Unix(path) => UnixStream::connect(path)
            .map(Stream::Unix)
            .map_err(|e| unix_connect_error(endpoint, path, e)),
        Address::Tcp { host, port } => {
            let tcp = connect_tcp(endpoint, host, *port, deadline, timeout)?;
            match &endpoint.tls {
                None => Ok(Stream::Tcp(tcp)),
                Some(config) => handshake(endpoint, host, config, tcp, deadline, timeout),
            }
        }
    }
}

fn unix_connect_error(endpoint: &Endpoint, path: &Path, e: io::Error) -> DockerError {
    match e.kind() {
        io::ErrorKind::NotFound => DockerError::NoSocket {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => DockerError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => DockerError::Connect {
            endpoint: endpoint.to_string(),
            source: e,
        },
    }
}

fn connect_tcp(
    endpoint: &Endpoint,
    host: &str,
    port: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, DockerError> {
    let failed = |source| DockerError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    let addrs = (host, port).to_socket_addrs().map_err(failed)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in addrs {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match TcpStream::connect_timeout(&addr, left) {
            Ok(tcp) => {
                // Requests are small and latency-bound; don't let Nagle hold them back.
                tcp.set_nodelay(true).map_err(failed)?;
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    if matches!(
        last.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return Err(DockerError::Timeout {
            phase: Phase::Connect,
            endpoint: endpoint.to_string(),
            request: "connect".to_string(),
            after: timeout,
        });
    }
    Err(failed(last))
}

fn handshake(
    endpoint: &Endpoint,
    host: &str,
    config: &Arc<ClientConfig>,
    mut tcp: TcpStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<Stream, DockerError> {
    let failed = |source| DockerError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        DockerError::Config(format!(
            "invalid TLS server name {host:?} in Docker endpoint {endpoint}: {e}"
        ))
    })?;
    let mut conn =
        ClientConnection::new(Arc::clone(config), name).map_err(|e| failed(io::Error::other(e)))?;
    while conn.is_handshaking() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(connect_timeout(endpoint, timeout));
        };
        tcp.set_read_timeout(Some(left)).map_err(failed)?;
        tcp.set_write_timeout(Some(left)).map_err(failed)?;
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(connect_timeout(endpoint, timeout));
            }
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

fn connect_timeout(endpoint: &Endpoint, after: Duration) -> DockerError {
    DockerError::Timeout {
        phase: Phase::Connect,
        endpoint: endpoint.to_string(),
        request: "TLS handshake".to_string(),
        after,
    }
}

/// Ends blocking Docker calls from another thread.
///
/// Give one to [`super::Client::with_abort`]; every request of that client registers its socket
/// here while it runs. [`Abort::abort`] shuts those sockets down, so a blocked wait, log follow,
/// pull or upload returns [`DockerError::Aborted`] at once, and later requests through that client
/// fail the same way without connecting. Aborting is permanent.
#[derive(Clone, Default)]
pub struct Abort(Arc<AbortState>);

#[derive(Default)]
struct AbortState {
    aborted: AtomicBool,
    next_id: AtomicU64,
    sockets: Mutex<Vec<(u64, SocketHandle)>>,
}

impl Abort {
    pub fn new() -> Abort {
        Abort::default()
    }

    /// Aborts every in-flight and future request made through clients holding this handle.
    pub fn abort(&self) {
        let sockets = self.sockets();
        // Set the flag under the lock so `register` cannot slip a socket in afterwards.
        self.0.aborted.store(true, Ordering::SeqCst);
        for (_, socket) in sockets.iter() {
            socket.shutdown();
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::SeqCst)
    }

    fn sockets(&self) -> std::sync::MutexGuard<'_, Vec<(u64, SocketHandle)>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        self.0
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection; `None` if already aborted (the caller must not proceed).
    pub(crate) fn register(&self, socket: SocketHandle) -> Option<Registration> {
        let mut sockets = self.sockets();
        if self.is_aborted() {
            return None;
        }
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        sockets.push((id, socket));
        Some(Registration {
            abort: self.clone(),
            id,
        })
    }
}

impl fmt::Debug for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Abort")
            .field("aborted", &self.is_aborted())
            .finish()
    }
}

/// Keeps a connection registered with an [`Abort`] until dropped.
pub(crate) struct Registration {
    abort: Abort,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.abort.sockets().retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oz-docker-transport-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn missing_socket_is_no_socket() {
        let path = temp_dir("missing").join("docker.sock");
        let err = connect(&Endpoint::unix(&path), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(matches!(err, DockerError::NoSocket { path: p } if p == path));
    }

    #[test]
    fn stale_socket_file_is_connection_refused() {
        let path = temp_dir("stale").join("docker.sock");
        drop(UnixListener::bind(&path).unwrap());
        let err = connect(&Endpoint::unix(&path), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(err.to_string().contains("connection refused"), "{err}");
    }

    #[test]
    fn refused_tcp_says_to_check_docker_host() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let endpoint = Endpoint {
            address: Address::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            tls: None,
            source: "DOCKER_HOST".into(),
        };
        let err = connect(&endpoint, Duration::from_secs(5)).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot connect to Docker at tcp://127.0.0.1:{port}: connection refused: is the daemon running and listening there? check DOCKER_HOST"
            )
        );
    }

    #[test]
    fn abort_shuts_down_a_blocked_read_and_refuses_new_registrations() {
        let path = temp_dir("abort").join("d.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut stream = connect(&Endpoint::unix(&path), Duration::from_secs(1)).unwrap();
        let (_peer, _) = listener.accept().unwrap();
        let abort = Abort::new();
        let reg = abort.register(stream.handle().unwrap()).unwrap();
        let aborter = abort.clone();
        let t = std::thread::Builder::new()
            .name("abort-test".into())
            .spawn(move || aborter.abort())
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        // The read returns (EOF) once the other thread shuts the socket down.
        let n = stream.read(&mut [0u8; 8]).unwrap_or(0);
        assert_eq!(n, 0);
        t.join().unwrap();
        assert!(abort.is_aborted());
        drop(reg);
        assert!(abort.register(stream.handle().unwrap()).is_none());
        assert!(abort.sockets().is_empty());
    }

    #[test]
    fn endpoints_display_as_urls() {
        let e = Endpoint::unix("/var/run/docker.sock");
        assert_eq!(e.to_string(), "unix:///var/run/docker.sock");
        assert_eq!(e.host_header(), "docker");
        let e = Endpoint {
            address: Address::Tcp {
                host: "::1".into(),
                port: 2376,
            },
            tls: None,
            source: "DOCKER_HOST".into(),
        };
        assert_eq!(e.to_string(), "tcp://[::1]:2376");
        assert!(format!("{e:?}").contains("DOCKER_HOST"));
    }
}
