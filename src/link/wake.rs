//! The wake fd and the `poll(2)` wait of the link thread.
//!
//! Producers push onto the command channel and then write one byte to the wake socket; the
//! link thread polls the WebSocket and the wake socket together, so a queued message leaves at
//! once and an idle link sleeps until its next timer.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The write end, shared by every sender.
#[derive(Debug)]
pub(crate) struct Waker(UnixStream);

/// The read end, owned by the link thread.
#[derive(Debug)]
pub(crate) struct WakeRx(UnixStream);

pub(crate) fn pair() -> io::Result<(Waker, WakeRx)> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    Ok((Waker(tx), WakeRx(rx)))
}

impl Waker {
    /// Never blocks: a full buffer means a wake-up is already pending.
    pub(crate) fn wake(&self) {
        let _ = (&self.0).write(&[1]);
    }
}

impl WakeRx {
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.0).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }
}

impl AsFd for WakeRx {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The shutdown deadline, set by the handle and readable by the link thread at any moment
/// (including in the middle of a dial). Stored as nanoseconds after `base`, plus one; zero means
/// "not set". An earlier deadline always wins.
#[derive(Debug)]
pub(crate) struct StopAt {
    base: Instant,
    at: AtomicU64,
}

impl StopAt {
    pub(crate) fn new() -> StopAt {
        StopAt {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    pub(crate) fn set(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.base).as_nanos();
        let n = u64::try_from(nanos)
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let _ = self
            .at
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                (cur == 0 || n < cur).then_some(n)
            });
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        match self.at.load(Ordering::SeqCst) {
            0 => None,
            n => self.base.checked_add(Duration::from_nanos(n - 1)),
        }
    }

    /// True once the deadline is set and has passed.
    pub(crate) fn passed(&self, now: Instant) -> bool {
        self.get().is_some_and(|s| now >= s)
    }
}

/// What one wait observed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Readable, hung up or in error: a read will tell which.
    pub readable: bool,
    pub writable: bool,
    pub woken: bool,
}

/// Waits until the socket is ready (readable, or writable when `want_write`), the wake fd
/// fires, or `timeout` passes. EINTR (signal-hook is installed) counts as a spurious wake-up.
pub(crate) fn wait(
    sock: Option<(BorrowedFd<'_>, bool)>,
    wake: &WakeRx,
    timeout: Duration,
) -> io::Result<Ready> {
    // Round up so a sub-millisecond remainder does not become a busy zero timeout.
    let ms = timeout.as_micros().div_ceil(1000);
    let timeout =
        PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX)).unwrap_or(PollTimeout::MAX);
    let mut fds = Vec::with_capacity(2);
    fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
    if let Some((fd, want_write)) = sock {
        let mut flags = PollFlags::POLLIN;
        if want_write {
            flags |= PollFlags::POLLOUT;
        }
        fds.push(PollFd::new(fd, flags));
    }
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok(Ready::default()),
        Err(e) => return Err(io::Error::from(e)),
    }
    let flags = |i: usize| {
        fds.get(i)
            .and_then(PollFd::revents)
            .unwrap_or(PollFlags::empty())
    };
    let w = flags(0);
    let s = flags(1);
    Ok(Ready {
        woken: w.intersects(PollFlags::POLLIN),
        readable: s.intersects(
            PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL,
        ),
        writable: s.intersects(PollFlags::POLLOUT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_interrupts_wait_and_drains() {
        let (tx, rx) = pair().unwrap();
        let r = wait(None, &rx, Duration::from_millis(20)).unwrap();
        assert!(!r.woken);
        for _ in 0..1000 {
            tx.wake(); // more than the socket buffer holds: must not block
        }
        let r = wait(None, &rx, Duration::from_secs(30)).unwrap();
        assert!(r.woken);
        rx.drain();
        let r = wait(None, &rx, Duration::ZERO).unwrap();
        assert!(!r.woken, "drain empties the wake socket");
    }

    #[test]
    fn stop_at_keeps_the_earliest_deadline() {
        let s = StopAt::new();
        let now = Instant::now();
        assert_eq!(s.get(), None);
        assert!(!s.passed(now));
        s.set(now + Duration::from_secs(10));
        let first = s.get().unwrap();
        assert!(first >= now + Duration::from_secs(10) - Duration::from_micros(1));
        s.set(now + Duration::from_secs(20));
        assert_eq!(s.get(), Some(first), "a later deadline never extends it");
        s.set(now);
        assert!(s.passed(Instant::now()));
        // A deadline before the base clamps to the base (already passed).
        let t = StopAt::new();
        t.set(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
        assert!(t.passed(Instant::now()));
    }

    #[test]
    fn socket_readiness() {
        let (_tx, rx) = pair().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let r = wait(Some((b.as_fd(), true)), &rx, Duration::from_secs(30)).unwrap();
        assert!(r.writable && !r.readable);
        a.write_all(b"x").unwrap();
        let r = wait(Some((b.as_fd(), false)), &rx, Duration::from_secs(30)).unwrap();
        assert!(r.readable);
        drop(a);
        let mut b2 = &b;
        let mut buf = [0u8; 4];
        let _ = b2.read(&mut buf);
        let r = wait(Some((b.as_fd(), false)), &rx, Duration::from_secs(30)).unwrap();
        assert!(r.readable, "hang-up counts as readable");
    }
}
