//! Which failures are worth another attempt, and how long to wait before it.
//!
//! Transient: 429 and 500/502/503/504 statuses, connection refused/reset/aborted, timeouts and
//! early EOF. A `Retry-After` header is honoured (capped). Delays are full-jitter exponential,
//! so many workers hit by one API-server restart do not come back in lockstep.

use std::io;
use std::time::Duration;

use crate::link::backoff::{Backoff, Rng};

/// Attempts per request, the first included.
pub const ATTEMPTS: u32 = 6;
const INITIAL: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(8);
/// The longest `Retry-After` we wait for inside one request.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Whether a failed attempt without an answer may be repeated: a connect failure never reached
/// the server; a reset or timeout after sending may have been processed, so only idempotent
/// requests repeat then.
pub fn retryable_http(e: &crate::http::HttpError, idempotent: bool) -> bool {
    use crate::http::HttpError as H;
    match e {
        H::Connect { .. } => true,
        H::Timeout { phase, .. } => phase.is_connect() || idempotent,
        H::Io { source, .. } => retryable_io(source, idempotent),
        H::Protocol { .. } => idempotent,
        _ => false,
    }
}

/// Whether an I/O error means the request may not have been processed (safe to repeat for
/// any verb) and whether it is transient at all.
pub fn retryable_io(e: &io::Error, idempotent: bool) -> bool {
    use io::ErrorKind::*;
    match e.kind() {
        // The request never reached the server.
        ConnectionRefused | NotFound | AddrNotAvailable => true,
        // It may have been processed: only repeat what can be repeated.
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut
        | WouldBlock => idempotent,
        _ => false,
    }
}

/// The pacing of one request's retries.
pub struct Retry {
    backoff: Backoff,
    pub attempt: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            backoff: Backoff::new(INITIAL, MAX, Rng::from_entropy()),
            attempt: 1,
        }
    }
}

impl Retry {
    /// The delay before the next attempt, or `None` when attempts are used up.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.attempt >= ATTEMPTS {
            return None;
        }
        self.attempt += 1;
        let jittered = self.backoff.next_delay();
        Some(match retry_after {
            Some(ra) => ra.min(RETRY_AFTER_CAP).max(jittered),
            None => jittered,
        })
    }
}

pub use crate::link::backoff::parse_retry_after;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_errors() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable_status(s));
        }
        for s in [400, 401, 403, 404, 409, 410, 422] {
            assert!(!retryable_status(s));
        }
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(retryable_io(&reset, true));
        assert!(!retryable_io(&reset, false));
        assert!(retryable_io(
            &io::Error::from(io::ErrorKind::ConnectionRefused),
            false
        ));
        assert!(!retryable_io(
            &io::Error::from(io::ErrorKind::PermissionDenied),
            true
        ));
    }

    #[test]
    fn attempts_are_bounded_and_retry_after_is_honoured() {
        let mut r = Retry::default();
        let d = r
            .next(Some(Duration::from_secs(3)))
            .expect("second attempt");
        assert!(d >= Duration::from_secs(3));
        let d = r
            .next(Some(Duration::from_secs(3600)))
            .expect("third attempt");
        assert!(d <= MAX.max(RETRY_AFTER_CAP));
        let mut n = 3;
        while r.next(None).is_some() {
            n += 1;
        }
        assert_eq!(n, ATTEMPTS);
    }
}
