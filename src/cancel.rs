//! Cancellation tokens: how the supervisor tells a running task to stop.
//!
//! A token can be waited on three ways, so that every backend can fold it into the wait it is
//! already doing: [`CancelToken::is_cancelled`] (polling), [`CancelToken::wait_timeout`]
//! (sleeping), and [`CancelToken::as_fd`], a descriptor that becomes readable once the token
//! fires and stays readable, for `poll(2)` beside pipes and pidfds.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

/// Who asked for a cancellation. The first request wins: a user cancellation that arrives
/// before a shutdown stays a user cancellation (and is reported as `CANCELLED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelSource {
    /// The server sent `task_cancellation` (or `execution_closed` was requested).
    User,
    /// The worker is shutting down.
    Shutdown,
}

const NONE: u8 = 0;
const USER: u8 = 1;
const SHUTDOWN: u8 = 2;

struct Inner {
    source: AtomicU8,
    fd: EventFd,
    lock: Mutex<()>,
    cond: Condvar,
}

/// A cheap, clonable cancellation flag.
#[derive(Clone)]
pub struct CancelToken(Arc<Inner>);

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("source", &self.source())
            .finish()
    }
}

impl CancelToken {
    /// Creates an untriggered token. Fails only when the process is out of descriptors.
    pub fn new() -> std::io::Result<Self> {
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(std::io::Error::from)?;
        Ok(CancelToken(Arc::new(Inner {
            source: AtomicU8::new(NONE),
            fd,
            lock: Mutex::new(()),
            cond: Condvar::new(),
        })))
    }

    /// Fires the token. Returns true if this call fired it (false if it had already fired, in
    /// which case the earlier source is kept).
    pub fn cancel(&self, source: CancelSource) -> bool {
        let value = match source {
            CancelSource::User => USER,
            CancelSource::Shutdown => SHUTDOWN,
        };
        let fired = self
            .0
            .source
            .compare_exchange(NONE, value, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if fired {
            // The counter only ever goes up by one per token, so this cannot overflow; a
            // failed write would leave pollers to notice `is_cancelled` on their next wake.
            let _ = self.0.fd.write(1);
            let _guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.0.cond.notify_all();
        }
        fired
    }

    /// True once the token has fired.
    pub fn is_cancelled(&self) -> bool {
        self.0.source.load(Ordering::Acquire) != NONE
    }

    /// Who fired the token, if anyone has.
    pub fn source(&self) -> Option<CancelSource> {
        match self.0.source.load(Ordering::Acquire) {
            USER => Some(CancelSource::User),
            SHUTDOWN => Some(CancelSource::Shutdown),
            _ => None,
        }
    }

    /// Sleeps up to `timeout`; returns true as soon as the token fires (or if it had).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_cancelled() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.0.cond.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// A descriptor that is readable once the token has fired (level-triggered; never drained).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    #[test]
    fn first_source_wins() {
        let t = CancelToken::new().unwrap();
        assert!(!t.is_cancelled());
        assert_eq!(t.source(), None);
        assert!(t.cancel(CancelSource::User));
        assert!(!t.cancel(CancelSource::Shutdown));
        assert_eq!(t.source(), Some(CancelSource::User));
    }

    #[test]
    fn wait_wakes_on_cancel() {
        let t = CancelToken::new().unwrap();
        assert!(!t.wait_timeout(Duration::from_millis(10)));
        let t2 = t.clone();
        let h = std::thread::spawn(move || t2.wait_timeout(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        t.cancel(CancelSource::Shutdown);
        assert!(h.join().unwrap());
    }

    #[test]
    fn fd_becomes_readable_and_stays_readable() {
        let t = CancelToken::new().unwrap();
        let ready = |t: &CancelToken| {
            let mut fds = [PollFd::new(t.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
        };
        assert!(!ready(&t));
        t.cancel(CancelSource::User);
        assert!(ready(&t));
        assert!(ready(&t));
    }
}
