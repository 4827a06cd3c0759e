//! Errors of the Kubernetes client. Each names the request and the server, quotes the API's
//! `Status` message, and never holds a credential.

use std::fmt;

use super::client::ApiResponse;

#[derive(Debug)]
pub enum KubeError {
    /// The cluster configuration cannot be used.
    Config(String),
    /// No credential could be obtained (token file unreadable, exec plugin failed).
    Auth(String),
    /// The request did not get an HTTP answer (the error names the endpoint and phase).
    Http(crate::http::HttpError),
    /// 401 even after fetching the credential again.
    Unauthorized {
        request: String,
        message: String,
        credential: String,
    },
    /// A status the caller did not expect, with the API's message.
    Api {
        request: String,
        status: u16,
        reason: String,
        message: String,
    },
}

impl KubeError {
    pub fn api(method: &str, target: &str, r: &ApiResponse) -> KubeError {
        KubeError::Api {
            request: super::client::describe(method, target),
            status: r.status,
            reason: r.body["reason"].as_str().unwrap_or("").to_owned(),
            message: r.message(),
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Api { status, .. } => Some(*status),
            KubeError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }
}

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeError::Config(m) | KubeError::Auth(m) => f.write_str(m),
            KubeError::Http(e) => write!(f, "Kubernetes API request failed: {e}"),
            KubeError::Unauthorized {
                request,
                message,
                credential,
            } => write!(
                f,
                "{request}: the API server rejected our credentials (401 {message}); check {credential}"
            ),
            KubeError::Api {
                request,
                status,
                message,
                ..
            } => {
                write!(f, "{request}: {status} {message}")
            }
        }
    }
}

impl std::error::Error for KubeError {}
