//! Where the daemon is: an [`Endpoint`] is the shared HTTP client's endpoint plus where the
//! choice came from, named `unix://…` or `tcp://…` in messages as the Docker CLI does.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;

pub use crate::http::Address;

/// A daemon address plus how to secure it, and where the choice came from.
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) http: crate::http::Endpoint,
    /// Human-readable origin, e.g. `DOCKER_HOST`, `context "remote"`, `default socket`.
    pub(crate) source: String,
}

impl Endpoint {
    pub(crate) fn new(
        address: Address,
        tls: Option<Arc<ClientConfig>>,
        source: impl Into<String>,
    ) -> Endpoint {
        let mut http = crate::http::Endpoint::new(address);
        http.tls = tls;
        let mut endpoint = Endpoint {
            http,
            source: source.into(),
        };
        endpoint.http.host_header = Some(endpoint.host_header());
        endpoint.http.label = Some(endpoint.to_string());
        endpoint
    }

    /// A plain unix-socket endpoint.
    pub fn unix(path: impl Into<PathBuf>) -> Endpoint {
        Endpoint::new(Address::Unix(path.into()), None, "explicit")
    }

    pub fn address(&self) -> &Address {
        &self.http.address
    }

    pub fn is_tls(&self) -> bool {
        self.http.is_tls()
    }

    /// Where this endpoint came from (for the startup log line).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The value for the `Host` request header.
    pub(crate) fn host_header(&self) -> String {
        match self.address() {
            // Any name does; the daemon ignores it on a unix socket.
            Address::Unix(_) => "docker".to_string(),
            Address::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Address::Tcp { host, port } => format!("{host}:{port}"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address() {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp { .. } => write!(f, "tcp://{}", self.host_header()),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.to_string())
            .field("tls", &self.is_tls())
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::DockerError;
    use crate::docker::testutil::TempDir;
    use crate::http::{Abort, Stream};
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    /// Connects the way every Docker request does, with Docker's error wording.
    fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Stream, DockerError> {
        crate::http::transport::connect(&endpoint.http, timeout, &|| false)
            .map_err(DockerError::from)
    }

    #[test]
    fn missing_socket_is_no_socket() {
        let dir = TempDir::new("missing");
        let path = dir.path().join("docker.sock");
        let err = connect(&Endpoint::unix(&path), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(
            matches!(err, DockerError::Http(crate::http::HttpError::NoSocket { path: p }) if p == path)
        );
    }

    #[test]
    fn stale_socket_file_is_connection_refused() {
        let dir = TempDir::new("stale");
        let path = dir.path().join("docker.sock");
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
        let endpoint = Endpoint::new(
            Address::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            None,
            "DOCKER_HOST",
        );
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
        let dir = TempDir::new("abort");
        let path = dir.path().join("d.sock");
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
        assert_eq!(abort.registered(), 0);
    }

    #[test]
    fn endpoints_display_as_urls() {
        let e = Endpoint::unix("/var/run/docker.sock");
        assert_eq!(e.to_string(), "unix:///var/run/docker.sock");
        assert_eq!(e.host_header(), "docker");
        let e = Endpoint::new(
            Address::Tcp {
                host: "::1".into(),
                port: 2376,
            },
            None,
            "DOCKER_HOST",
        );
        assert_eq!(e.to_string(), "tcp://[::1]:2376");
        assert!(format!("{e:?}").contains("DOCKER_HOST"));
    }
}
