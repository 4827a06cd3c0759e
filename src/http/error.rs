//! The one error type of the HTTP client: every variant names the phase it happened in and the
//! endpoint (never a URL with credentials, never a header value), so callers can wrap it without
//! losing what went wrong where.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::codec::CodecError;

/// The I/O phase of a request; timeouts and I/O errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Name resolution (part of the connect budget).
    Resolve,
    /// TCP or unix connect.
    Connect,
    /// The HTTP CONNECT exchange with a proxy.
    Proxy,
    /// The TLS handshake.
    Tls,
    SendRequest,
    SendBody,
    ReceiveHead,
    ReceiveBody,
}

impl Phase {
    /// Whether the phase belongs to opening the connection (no request byte sent yet).
    pub fn is_connect(self) -> bool {
        matches!(
            self,
            Phase::Resolve | Phase::Connect | Phase::Proxy | Phase::Tls
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Resolve => "resolving the host name",
            Phase::Connect => "connecting",
            Phase::Proxy => "tunnelling through the proxy",
            Phase::Tls => "in the TLS handshake",
            Phase::SendRequest => "sending the request",
            Phase::SendBody => "sending the request body",
            Phase::ReceiveHead => "waiting for the response head",
            Phase::ReceiveBody => "receiving the response body",
        })
    }
}

/// Everything that can go wrong on one request. A 4xx or 5xx answer is not an error: it
/// arrives as a [`super::Response`] with that status.
#[non_exhaustive]
pub enum HttpError {
    /// Unusable configuration: TLS material, a server name, a proxy variable. Says what to fix.
    Config(String),
    /// The unix socket file does not exist.
    NoSocket { path: PathBuf },
    /// The unix socket exists but we may not connect to it.
    PermissionDenied { path: PathBuf },
    /// Opening the connection failed (resolve, connect, proxy tunnel, TLS handshake).
    Connect {
        phase: Phase,
        endpoint: String,
        source: io::Error,
    },
    /// The proxy answered our CONNECT with a non-2xx status.
    ProxyStatus { proxy: String, status: u16 },
    Timeout {
        phase: Phase,
        endpoint: String,
        /// `METHOD /path` (no query), or `connect` before any request.
        request: String,
        after: Duration,
    },
    Io {
        phase: Phase,
        endpoint: String,
        request: String,
        source: io::Error,
    },
    /// Reading the caller's streamed request body failed.
    BodySource { request: String, source: io::Error },
    /// The peer's bytes were not valid HTTP/1.1 (or we refused to write an unsafe request).
    Protocol {
        endpoint: String,
        request: String,
        source: CodecError,
    },
    /// A response body (or one JSON line) over the caller's size cap.
    TooLarge { request: String, limit: usize },
    /// A body (or one JSON line) that did not parse as the expected JSON.
    Json { request: String, message: String },
    /// Ended through an [`super::Abort`] (or the caller's cancel check while connecting).
    Aborted { request: String },
}

impl HttpError {
    /// Whether this is an abort.
    pub fn is_aborted(&self) -> bool {
        matches!(self, HttpError::Aborted { .. })
    }

    /// Whether this is a timeout (of any phase).
    pub fn is_timeout(&self) -> bool {
        matches!(self, HttpError::Timeout { .. })
    }

    /// The phase, when the error happened during I/O.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            HttpError::Connect { phase, .. }
            | HttpError::Timeout { phase, .. }
            | HttpError::Io { phase, .. } => Some(*phase),
            HttpError::ProxyStatus { .. } => Some(Phase::Proxy),
            HttpError::NoSocket { .. } | HttpError::PermissionDenied { .. } => Some(Phase::Connect),
            HttpError::BodySource { .. } => Some(Phase::SendBody),
            _ => None,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Config(message) => f.write_str(message),
            HttpError::NoSocket { path } => write!(f, "no socket at {}", path.display()),
            HttpError::PermissionDenied { path } => {
                write!(f, "permission denied on socket {}", path.display())
            }
            HttpError::Connect {
                phase,
                endpoint,
                source,
            } => write!(f, "cannot connect to {endpoint} while {phase}: {source}"),
            HttpError::ProxyStatus { proxy, status } => {
                write!(f, "proxy {proxy} refused CONNECT: HTTP {status}")
            }
            HttpError::Timeout {
                phase,
                endpoint,
                request,
                after,
            } => write!(
                f,
                "request {request} to {endpoint} timed out after {after:?} while {phase}"
            ),
            HttpError::Io {
                phase,
                endpoint,
                request,
                source,
            } => write!(
                f,
                "request {request} to {endpoint} failed while {phase}: {source}"
            ),
            HttpError::BodySource { request, source } => {
                write!(f, "reading the request body for {request} failed: {source}")
            }
            HttpError::Protocol {
                endpoint,
                request,
                source,
            } => write!(
                f,
                "malformed HTTP response from {endpoint} to {request}: {source}"
            ),
            HttpError::TooLarge { request, limit } => write!(
                f,
                "response body for {request} is larger than {limit} bytes"
            ),
            HttpError::Json { request, message } => {
                write!(f, "unexpected response body for {request}: {message}")
            }
            HttpError::Aborted { request } => write!(f, "request {request} was aborted"),
        }
    }
}

/// The message itself: every field is in it, and a derived `Debug` cost about 1 KB of binary.
impl fmt::Debug for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Connect { source, .. }
            | HttpError::Io { source, .. }
            | HttpError::BodySource { source, .. } => Some(source),
            HttpError::Protocol { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_phase_and_endpoint() {
        let e = HttpError::Timeout {
            phase: Phase::ReceiveHead,
            endpoint: "https://10.0.0.1:6443".into(),
            request: "GET /api".into(),
            after: Duration::from_secs(5),
        };
        assert_eq!(
            e.to_string(),
            "request GET /api to https://10.0.0.1:6443 timed out after 5s while waiting for the response head"
        );
        assert!(e.is_timeout() && !e.is_aborted());
        assert_eq!(e.phase(), Some(Phase::ReceiveHead));
        let e = HttpError::Connect {
            phase: Phase::Tls,
            endpoint: "https://h:443".into(),
            source: io::Error::other("bad certificate"),
        };
        assert_eq!(
            e.to_string(),
            "cannot connect to https://h:443 while in the TLS handshake: bad certificate"
        );
        assert!(Phase::Tls.is_connect() && !Phase::SendBody.is_connect());
    }

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<HttpError>() <= 96);
    }
}
