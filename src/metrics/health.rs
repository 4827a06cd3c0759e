//! Liveness and readiness state shared by the supervisor, `/healthz`, `/readyz` and the
//! systemd watchdog.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Shared health flags. The supervisor calls [`Health::beat`] on every loop turn (at least
/// every `stale_after / 3`); readers decide liveness from the age of the last beat.
#[derive(Debug)]
pub struct Health {
    origin: Instant,
    /// Milliseconds since `origin` at the last beat.
    last_beat_ms: AtomicU64,
    stale_after: Duration,
    backend_ok: AtomicBool,
    draining: AtomicBool,
}

/// Why the worker is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// No beat from the supervisor loop for longer than `stale_after`.
    Stalled,
    NotConnected,
    BackendUnavailable,
    Draining,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotReady::Stalled => "the supervisor loop is stalled",
            NotReady::NotConnected => "not connected to Oz",
            NotReady::BackendUnavailable => "the backend is not available",
            NotReady::Draining => "shutting down",
        })
    }
}

impl Health {
    /// Starts alive (the creation counts as a beat), with the backend not yet confirmed.
    pub fn new(stale_after: Duration) -> Arc<Health> {
        Arc::new(Health {
            origin: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
            stale_after,
            backend_ok: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    /// The supervisor loop is turning.
    pub fn beat(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_beat_ms.store(ms, Relaxed);
    }

    /// Time since the last beat.
    pub fn beat_age(&self) -> Duration {
        let now = self.origin.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_beat_ms.load(Relaxed)))
    }

    /// The supervisor loop beat recently enough.
    pub fn alive(&self) -> bool {
        self.beat_age() <= self.stale_after
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// The backend answered its availability check (true) or stopped answering (false).
    pub fn set_backend_ok(&self, ok: bool) {
        self.backend_ok.store(ok, Relaxed);
    }

    pub fn backend_ok(&self) -> bool {
        self.backend_ok.load(Relaxed)
    }

    /// Graceful shutdown began: the worker takes no new tasks.
    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Every reason the worker is not ready to take tasks; empty when it is. `connected` is
    /// the state of the Oz link (kept in `Metrics`).
    pub fn not_ready(&self, connected: bool) -> Vec<NotReady> {
        let mut why = Vec::new();
        if !self.alive() {
            why.push(NotReady::Stalled);
        }
        if !connected {
            why.push(NotReady::NotConnected);
        }
        if !self.backend_ok() {
            why.push(NotReady::BackendUnavailable);
        }
        if self.draining() {
            why.push(NotReady::Draining);
        }
        why
    }
}
