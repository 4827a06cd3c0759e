//! The ops listener: `/metrics` (Prometheus text), `/healthz` (the supervisor loop is alive)
//! and `/readyz` (connected to Oz, backend available, not draining) over a tiny HTTP/1.1
//! server. No framework.
//!
//! One thread (`ops`) waits in `poll(2)` on the listening socket and a wake socket, so it
//! costs nothing while idle and stops at once. Each accepted connection is answered on its own
//! short-lived thread (`ops-conn`, at most [`MAX_CONNECTIONS`] at a time), so a slow client
//! cannot delay a kubelet probe. A connection carries one request: the whole head must arrive
//! within [`REQUEST_DEADLINE`] and fit in [`http::MAX_HEAD_BYTES`]; the response always closes
//! the connection. Nothing a client sends can panic the listener.

pub mod http;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use log::{debug, info, warn};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::metrics::{Health, Metrics};
use http::Response;

/// Concurrent connections being answered; more are refused with 503.
pub const MAX_CONNECTIONS: usize = 16;
/// A client has this long to send its request head, and as long to take the response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long [`OpsHandle::shutdown`] waits for the listener thread.
const STOP_DEADLINE: Duration = Duration::from_secs(2);
const CONN_STACK: usize = 256 << 10;
/// How long a connection lingers to drain unread input after the response.
const LINGER: Duration = Duration::from_millis(200);

/// The listener could not start.
#[derive(Debug)]
pub enum OpsError {
    Address(String),
    Bind { addr: String, source: io::Error },
    Setup(io::Error),
}

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpsError::Address(why) => write!(f, "invalid metrics address: {why}"),
            OpsError::Bind { addr, source } => {
                write!(f, "cannot listen on {addr} for /metrics: {source}")
            }
            OpsError::Setup(e) => write!(f, "cannot start the ops listener: {e}"),
        }
    }
}

impl std::error::Error for OpsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpsError::Bind { source, .. } | OpsError::Setup(source) => Some(source),
            OpsError::Address(_) => None,
        }
    }
}

/// A running listener. Dropping it stops the listener without waiting.
#[derive(Debug)]
pub struct OpsHandle {
    addr: SocketAddr,
    wake: UnixStream,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl OpsHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the listener thread (bounded). Connections being answered
    /// finish on their own within [`REQUEST_DEADLINE`].
    pub fn shutdown(mut self) {
        let _ = self.wake.write_all(b"x");
        match self.done.recv_timeout(STOP_DEADLINE) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                warn!("The ops listener thread did not stop within {STOP_DEADLINE:?}")
            }
            _ => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for OpsHandle {
    fn drop(&mut self) {
        let _ = self.wake.write_all(b"x");
    }
}

/// Binds `addr` (`HOST:PORT`, see [`http::bind_address`]) and serves the ops endpoints on a
/// thread named `ops`.
pub fn spawn(
    addr: &str,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> Result<OpsHandle, OpsError> {
    let bind = http::bind_address(addr).map_err(OpsError::Address)?;
    let listener = TcpListener::bind(&bind).map_err(|source| OpsError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    listener.set_nonblocking(true).map_err(OpsError::Setup)?;
    let local = listener.local_addr().map_err(OpsError::Setup)?;
    let (wake_tx, wake_rx) = UnixStream::pair().map_err(OpsError::Setup)?;
    wake_tx.set_nonblocking(true).map_err(OpsError::Setup)?;
    let (done_tx, done_rx) = bounded::<()>(1);
    let thread = thread::Builder::new()
        .name("ops".into())
        .spawn(move || {
            serve(&listener, &wake_rx, &metrics, &health);
            let _ = done_tx.send(());
        })
        .map_err(OpsError::Setup)?;
    info!("Serving /metrics, /healthz and /readyz on http://{local}");
    Ok(OpsHandle {
        addr: local,
        wake: wake_tx,
        done: done_rx,
        thread: Some(thread),
    })
}

/// First wait after a failed `accept` (EMFILE, ENFILE, ENOBUFS, ...); doubles per failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between accept attempts while they keep failing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The listener loop: until the wake socket becomes readable (or closes).
fn serve(listener: &TcpListener, wake: &UnixStream, metrics: &Arc<Metrics>, health: &Arc<Health>) {
    serve_with(listener, wake, &mut || listener.accept(), metrics, health);
}

/// [`serve`] with the accept call injected, so a test can make it fail like EMFILE does.
fn serve_with(
    listener: &TcpListener,
    wake: &UnixStream,
    accept: &mut dyn FnMut() -> io::Result<(TcpStream, SocketAddr)>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut backoff = Duration::ZERO;
    loop {
        if !backoff.is_zero() {
            // A connection that could not be accepted stays in the backlog and keeps the
            // listener readable: polling it now would spin. Wait on the wake socket alone.
            let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(backoff).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(n) if n > 0 => return,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    warn!("The ops listener stopped: poll failed: {e}");
                    return;
                }
            }
        }
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(60_000u16)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                warn!("The ops listener stopped: poll failed: {e}");
                return;
            }
        }
        if fds[1].any().unwrap_or(false) {
            return;
        }
        if !fds[0].any().unwrap_or(false) {
            continue;
        }
        loop {
            match accept() {
                Ok((stream, peer)) => {
                    backoff = Duration::ZERO;
                    dispatch(stream, peer, &active, metrics, health);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: back off, doubling, until an accept succeeds.
                    if backoff.is_zero() {
                        warn!(
                            "The ops listener cannot accept connections: {e}; retrying every \
                             {ACCEPT_BACKOFF_MIN:?} to {ACCEPT_BACKOFF_MAX:?}"
                        );
                    }
                    backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                    break;
                }
            }
        }
    }
}

/// Decrements the connection count when a handler ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn dispatch(
    stream: TcpStream,
    peer: SocketAddr,
    active: &Arc<AtomicUsize>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) {
    if active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
        let _slot = Slot(Arc::clone(active));
        // The send buffer of a fresh socket takes this small response without blocking.
        let _ = stream.set_nonblocking(true);
        let mut stream = stream;
        let _ = stream.write_all(&Response::text(503, "busy\n").encode(false));
        return;
    }
    let slot = Slot(Arc::clone(active));
    let (metrics, health) = (Arc::clone(metrics), Arc::clone(health));
    let spawned = thread::Builder::new()
        .name("ops-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
            let _slot = slot;
            if let Err(e) = answer(stream, &metrics, &health) {
                debug!("ops: connection from {peer}: {e}");
            }
        });
    if let Err(e) = spawned {
        debug!("ops: cannot start a connection thread: {e}");
    }
}

/// Reads one request head within the deadline, answers it, closes.
fn answer(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        if let Some(end) = http::head_end(&buf) {
            break match http::parse_head(&buf[..end]) {
                Ok(req) => {
                    let head_only = req.method == "HEAD";
                    (http::route(&req, metrics, health), head_only)
                }
                Err(bad) => (bad, false),
            };
        }
        if buf.len() > http::MAX_HEAD_BYTES {
            break (Response::text(431, "request head too large\n"), false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break (Response::text(408, "request timeout\n"), false);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break (Response::text(408, "request timeout\n"), false);
            }
            Err(e) => return Err(e),
        }
    };
    let (response, head_only) = response;
    stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
    stream.write_all(&response.encode(head_only))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Closing with unread input makes the kernel send RST, which can destroy the response
    // before the client reads it: drain briefly (bounded in time and bytes) first.
    stream.set_read_timeout(Some(LINGER))?;
    let mut drained = 0;
    while drained < http::MAX_HEAD_BYTES * 8 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::WorkerInfo;

    #[test]
    fn a_failing_accept_backs_off_instead_of_spinning() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        // A connection waiting in the backlog keeps the listener readable throughout.
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (wake_tx, wake_rx) = UnixStream::pair().unwrap();
        let metrics = Metrics::new(
            WorkerInfo {
                version: "t".into(),
                backend: "direct".into(),
                worker_id: "w".into(),
            },
            0,
        );
        let health = Health::new(Duration::from_secs(30));
        let attempts = Arc::new(AtomicUsize::new(0));
        let thread = {
            let attempts = Arc::clone(&attempts);
            thread::spawn(move || {
                let mut accept = || {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    Err(io::Error::from_raw_os_error(libc::EMFILE))
                };
                serve_with(&listener, &wake_rx, &mut accept, &metrics, &health);
            })
        };
        // Let it fail for a while: a spinning loop makes millions of attempts in this time,
        // the backoff (50 ms doubling to 1 s) about six.
        thread::sleep(Duration::from_millis(1500));
        (&wake_tx).write_all(b"x").unwrap();
        thread.join().unwrap();
        let n = attempts.load(Ordering::SeqCst);
        assert!((2..=40).contains(&n), "{n} accept attempts");
    }
}
