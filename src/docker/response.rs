//! Docker's view of a response from the shared HTTP client ([`crate::http`]): the same head and
//! body, with Docker's error wording (`{"message": …}` bodies) and size limits.

use serde::de::DeserializeOwned;

use super::error::DockerError;
use crate::http::codec::ResponseHead;
use crate::http::{self, BodyReader};

/// Largest JSON document we accept from the daemon (container inspect is a few KiB).
const JSON_LIMIT: usize = 16 * 1024 * 1024;
/// Largest error body we read for its message.
const ERROR_LIMIT: usize = 64 * 1024;

/// A response whose head has arrived; the body is read on demand.
pub(crate) struct Response {
    pub head: ResponseHead,
    pub body: BodyReader,
}

impl From<http::Response> for Response {
    fn from(r: http::Response) -> Response {
        Response {
            head: r.head,
            body: r.body,
        }
    }
}

impl Response {
    pub(crate) fn status(&self) -> u16 {
        self.head.status
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.head.status)
    }

    pub(crate) fn request(&self) -> &str {
        self.body.request()
    }

    fn into_http(self) -> http::Response {
        http::Response {
            head: self.head,
            body: self.body,
        }
    }

    /// The whole body, at most `limit` bytes.
    pub(crate) fn bytes(self, limit: usize) -> Result<Vec<u8>, DockerError> {
        Ok(self.into_http().bytes(limit)?)
    }

    /// The body parsed as JSON.
    pub(crate) fn json<T: DeserializeOwned>(self) -> Result<T, DockerError> {
        Ok(self.into_http().json(JSON_LIMIT)?)
    }

    /// Turns a non-2xx answer into [`DockerError::Status`] with Docker's message.
    pub(crate) fn into_error(self) -> DockerError {
        let status = self.head.status;
        let request = self.request().to_string();
        let reason = self.head.reason.clone();
        let message = match self.bytes(ERROR_LIMIT) {
            Ok(body) => error_message(&body).unwrap_or(reason),
            Err(e) => format!("{reason} (body unreadable: {e})"),
        };
        DockerError::Status {
            request,
            status,
            message,
        }
    }
}

/// Docker's `{"message": "..."}`, else the body text (trimmed, shortened).
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return Some(parsed.message);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    Some(short.replace(['\r', '\n'], " "))
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
