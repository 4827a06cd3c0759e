//! The one error type of the Docker client. Every message is one line that names the request or
//! file it concerns and, where we can tell, what to fix. Never a credential.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::frames::FrameError;
use crate::http::HttpError;
use crate::http::codec::CodecError;

pub use crate::http::Phase;

/// Everything that can go wrong talking to Docker. Non-2xx answers that an endpoint does not
/// model as data (see each method) arrive as [`DockerError::Status`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DockerError {
    /// Endpoint discovery, context store, CLI config or TLS material; the message says what to fix.
    Config(String),
    /// The unix socket file does not exist.
    NoSocket {
        path: PathBuf,
    },
    /// The unix socket exists but we may not connect to it.
    PermissionDenied {
        path: PathBuf,
    },
    /// Any other connect failure (refused, unreachable, DNS, TLS handshake).
    Connect {
        endpoint: String,
        source: io::Error,
    },
    Timeout {
        phase: Phase,
        endpoint: String,
        request: String,
        after: Duration,
    },
    Io {
        phase: Phase,
        endpoint: String,
        request: String,
        source: io::Error,
    },
    /// Reading the caller's request body (e.g. a tar stream) failed.
    BodySource {
        request: String,
        source: io::Error,
    },
    /// The daemon's bytes were not valid HTTP/1.1.
    Protocol {
        endpoint: String,
        request: String,
        source: CodecError,
    },
    /// A log or attach stream that is not in Docker's multiplexed format.
    Framing {
        request: String,
        source: FrameError,
    },
    /// A non-2xx answer with Docker's `{"message": …}`.
    Status {
        request: String,
        status: u16,
        message: String,
    },
    /// A 2xx answer whose JSON we could not use.
    Json {
        request: String,
        message: String,
    },
    /// A response body over our size cap.
    TooLarge {
        request: String,
        limit: usize,
    },
    UnsupportedPlatform(String),
    ApiTooOld {
        version: String,
        minimum: String,
    },
    /// The pull stream reported an error (or the pull request failed).
    Pull {
        image: String,
        message: String,
    },
    /// Cancelled through an [`super::Abort`].
    Aborted {
        request: String,
    },
    /// Looking up registry credentials failed; callers usually warn and pull anonymously.
    Credentials {
        registry: String,
        message: String,
    },
}

impl DockerError {
    /// The HTTP status of a [`DockerError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            DockerError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is an abort requested through [`super::Abort`].
    pub fn is_aborted(&self) -> bool {
        matches!(self, DockerError::Aborted { .. })
    }

    /// Whether the daemon gave a definitive answer (a status), as opposed to a transport failure
    /// after which the request's effect is unknown.
    pub fn is_definitive(&self) -> bool {
        matches!(self, DockerError::Status { status, .. } if *status < 500)
    }
}

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerError::Config(message) => f.write_str(message),
            DockerError::NoSocket { path } => write!(
                f,
                "no Docker socket at {}: is the Docker daemon running? set DOCKER_HOST to its address",
                path.display()
            ),
            DockerError::PermissionDenied { path } => write!(
                f,
                "permission denied on {}: add the worker's user to the docker group or set DOCKER_HOST",
                path.display()
            ),
            DockerError::Connect { endpoint, source } => match source.kind() {
                io::ErrorKind::ConnectionRefused => write!(
                    f,
                    "cannot connect to Docker at {endpoint}: connection refused: is the daemon running and listening there? check DOCKER_HOST"
                ),
                _ => write!(f, "cannot connect to Docker at {endpoint}: {source}"),
            },
            DockerError::Timeout {
                phase,
                endpoint,
                request,
                after,
            } => write!(
                f,
                "Docker request {request} to {endpoint} timed out after {after:?} while {phase}"
            ),
            DockerError::Io {
                phase,
                endpoint,
                request,
                source,
            } => write!(
                f,
                "Docker request {request} to {endpoint} failed while {phase}: {source}"
            ),
            DockerError::BodySource { request, source } => {
                write!(f, "reading the request body for {request} failed: {source}")
            }
            DockerError::Protocol {
                endpoint,
                request,
                source,
            } => write!(
                f,
                "malformed HTTP response from {endpoint} to {request}: {source}: is this a Docker daemon?"
            ),
            DockerError::Framing { request, source } => {
                write!(f, "bad stream from Docker for {request}: {source}")
            }
            DockerError::Status {
                request,
                status,
                message,
            } => write!(f, "Docker {request} returned {status}: {message}"),
            DockerError::Json { request, message } => {
                write!(
                    f,
                    "unexpected response body from Docker for {request}: {message}"
                )
            }
            DockerError::TooLarge { request, limit } => write!(
                f,
                "response body from Docker for {request} is larger than {limit} bytes"
            ),
            DockerError::UnsupportedPlatform(platform) => write!(
                f,
                "unsupported Docker platform {platform} (only linux/amd64 and linux/arm64 are supported)"
            ),
            DockerError::ApiTooOld { version, minimum } => write!(
                f,
                "Docker API version {version} is too old: this worker needs {minimum} or newer; upgrade Docker (or unset DOCKER_API_VERSION)"
            ),
            DockerError::Pull { image, message } => {
                write!(f, "failed to pull image {image}: {message}")
            }
            DockerError::Aborted { request } => write!(f, "Docker request {request} was aborted"),
            DockerError::Credentials { registry, message } => {
                write!(f, "registry credentials for {registry}: {message}")
            }
        }
    }
}

impl From<HttpError> for DockerError {
    /// The shared client's error in Docker's words. The endpoint text is already Docker's
    /// (`unix://…`, `tcp://…`): [`super::Endpoint`] labels the HTTP endpoint that way.
    fn from(e: HttpError) -> DockerError {
        match e {
            HttpError::Config(message) => DockerError::Config(message),
            HttpError::NoSocket { path } => DockerError::NoSocket { path },
            HttpError::PermissionDenied { path } => DockerError::PermissionDenied { path },
            HttpError::Connect {
                phase,
                endpoint,
                source,
            } => DockerError::Connect {
                endpoint,
                source: match phase {
                    Phase::Connect => source,
                    // Keep the kind (refused, timed out) and say which step failed.
                    _ => io::Error::new(source.kind(), format!("{phase}: {source}")),
                },
            },
            HttpError::ProxyStatus { proxy, status } => DockerError::Config(format!(
                "proxy {proxy} refused CONNECT to the Docker daemon: HTTP {status}"
            )),
            HttpError::Timeout {
                phase,
                endpoint,
                request,
                after,
            } => DockerError::Timeout {
                phase,
                endpoint,
                request,
                after,
            },
            HttpError::Io {
                phase,
                endpoint,
                request,
                source,
            } => DockerError::Io {
                phase,
                endpoint,
                request,
                source,
            },
            HttpError::BodySource { request, source } => {
                DockerError::BodySource { request, source }
            }
            HttpError::Protocol {
                endpoint,
                request,
                source,
            } => DockerError::Protocol {
                endpoint,
                request,
                source,
            },
            HttpError::TooLarge { request, limit } => DockerError::TooLarge { request, limit },
            HttpError::Json { request, message } => DockerError::Json { request, message },
            HttpError::Aborted { request } => DockerError::Aborted { request },
        }
    }
}

impl std::error::Error for DockerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DockerError::Connect { source, .. }
            | DockerError::Io { source, .. }
            | DockerError::BodySource { source, .. } => Some(source),
            DockerError::Protocol { source, .. } => Some(source),
            DockerError::Framing { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<DockerError>() <= 96);
    }

    #[test]
    fn socket_errors_say_what_to_fix() {
        let e = DockerError::PermissionDenied {
            path: "/var/run/docker.sock".into(),
        };
        assert_eq!(
            e.to_string(),
            "permission denied on /var/run/docker.sock: add the worker's user to the docker group or set DOCKER_HOST"
        );
        let e = DockerError::NoSocket {
            path: "/var/run/docker.sock".into(),
        };
        assert_eq!(
            e.to_string(),
            "no Docker socket at /var/run/docker.sock: is the Docker daemon running? set DOCKER_HOST to its address"
        );
        let e = DockerError::UnsupportedPlatform("windows/amd64".into());
        assert_eq!(
            e.to_string(),
            "unsupported Docker platform windows/amd64 (only linux/amd64 and linux/arm64 are supported)"
        );
    }

    #[test]
    fn timeouts_name_the_phase_and_endpoint() {
        let e = DockerError::Timeout {
            phase: Phase::ReceiveHead,
            endpoint: "unix:///run/d.sock".into(),
            request: "GET /_ping".into(),
            after: Duration::from_secs(5),
        };
        assert_eq!(
            e.to_string(),
            "Docker request GET /_ping to unix:///run/d.sock timed out after 5s while waiting for the response head"
        );
    }

    #[test]
    fn status_classification() {
        let status = |s| DockerError::Status {
            request: "POST /containers/create".into(),
            status: s,
            message: "x".into(),
        };
        assert_eq!(status(409).status(), Some(409));
        assert!(status(409).is_definitive());
        assert!(!status(500).is_definitive());
        assert!(
            !DockerError::Aborted {
                request: "x".into()
            }
            .is_definitive()
        );
        assert!(
            DockerError::Aborted {
                request: "x".into()
            }
            .is_aborted()
        );
    }
}
