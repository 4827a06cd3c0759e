//! The one thing reporting needs from HTTP: a POST with a deadline, redirects refused, and at
//! most a few bytes of the answer kept.
//!
//! A trait so the batching and posting logic is tested without sockets; the worker's own
//! implementation is [`super::http::HttpTransport`], on the shared client in `crate::http`.

use std::fmt;
use std::time::Duration;

/// One POST. Header values may be secrets: they go to the socket only.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// For the whole exchange, connect to last byte.
    pub timeout: Duration,
    /// How many bytes of the response body to keep (0: none).
    pub keep_body: usize,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("url", &self.url)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The answer: its status and the first `keep_body` bytes of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a POST got no answer. The text names the host and the step, never a header or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError(pub String);

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SendError {}

/// Something that can POST.
pub trait Transport: Send + Sync {
    /// Sends `request` and returns the answer; a 3xx is returned as it is, never followed.
    fn post(&self, request: &Request) -> Result<Reply, SendError>;
}
