//! The one error type of the Docker client. Every message is one line that names the request or
//! file it concerns and, where we can tell, what to fix. Never a credential.

use std::fmt;
use std::io;

use super::frames::FrameError;
use crate::http::HttpError;

pub use crate::http::Phase;

/// Everything that can go wrong talking to Docker. Non-2xx answers that an endpoint does not
/// model as data (see each method) arrive as [`DockerError::Status`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DockerError {
    /// Endpoint discovery, context store, CLI config or TLS material; the message says what to fix.
    Config(String),
    /// Talking to the daemon failed: connect (no socket, permission, refused, TLS), a phase
    /// timeout, an I/O error, a malformed response, an oversized body, an abort. Displayed in
    /// Docker's words (what to check, `DOCKER_HOST`).
    Http(HttpError),
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
        matches!(self, DockerError::Http(e) if e.is_aborted())
    }

    /// An abort of `request` (for code that ends a call itself, as an abort would).
    pub fn aborted(request: impl Into<String>) -> DockerError {
        DockerError::Http(HttpError::Aborted {
            request: request.into(),
        })
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
            DockerError::Http(e) => docker_words(e, f),
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
            DockerError::Credentials { registry, message } => {
                write!(f, "registry credentials for {registry}: {message}")
            }
        }
    }
}

impl From<HttpError> for DockerError {
    /// The shared client's error, kept whole. Its endpoint text is already Docker's (`unix://…`,
    /// `tcp://…`): [`super::Endpoint`] labels the HTTP endpoint that way.
    fn from(e: HttpError) -> DockerError {
        match e {
            HttpError::Config(message) => DockerError::Config(message),
            HttpError::Json { request, message } => DockerError::Json { request, message },
            e => DockerError::Http(e),
        }
    }
}

/// A transport failure in Docker's words: what to check, where. Request-level failures read as
/// the shared client words them, prefixed with "Docker".
fn docker_words(e: &HttpError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    use io::ErrorKind::ConnectionRefused;
    match e {
        HttpError::NoSocket { path } => write!(
            f,
            "no Docker socket at {}: is the Docker daemon running? set DOCKER_HOST to its address",
            path.display()
        ),
        HttpError::PermissionDenied { path } => write!(
            f,
            "permission denied on {}: add the worker's user to the docker group or set DOCKER_HOST",
            path.display()
        ),
        HttpError::Connect {
            phase,
            endpoint,
            source,
        } => {
            write!(f, "cannot connect to Docker at {endpoint}: ")?;
            match phase {
                Phase::Connect if source.kind() == ConnectionRefused => write!(
                    f,
                    "connection refused: is the daemon running and listening there? check DOCKER_HOST"
                ),
                Phase::Connect => write!(f, "{source}"),
                _ => write!(f, "{phase}: {source}"),
            }
        }
        HttpError::Protocol { .. } => write!(f, "{e}: is this a Docker daemon?"),
        HttpError::Timeout { .. }
        | HttpError::Io { .. }
        | HttpError::TooLarge { .. }
        | HttpError::Aborted { .. } => write!(f, "Docker {e}"),
        // The rest (a failing body source, a proxy refusal) already reads well.
        e => write!(f, "{e}"),
    }
}

impl std::error::Error for DockerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DockerError::Http(e) => e.source(),
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
        let e = DockerError::Http(HttpError::PermissionDenied {
            path: "/var/run/docker.sock".into(),
        });
        assert_eq!(
            e.to_string(),
            "permission denied on /var/run/docker.sock: add the worker's user to the docker group or set DOCKER_HOST"
        );
        let e = DockerError::Http(HttpError::NoSocket {
            path: "/var/run/docker.sock".into(),
        });
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
        let e = DockerError::Http(HttpError::Timeout {
            phase: Phase::ReceiveHead,
            endpoint: "unix:///run/d.sock".into(),
            request: "GET /_ping".into(),
            after: std::time::Duration::from_secs(5),
        });
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
        assert!(!DockerError::aborted("x").is_definitive());
        assert!(DockerError::aborted("x").is_aborted());
    }
}
