//! systemd's notification protocol, written by hand: one datagram per message to the unix
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
//!
//! - `READY=1` once the configuration is valid and the backend answers ([`Notifier::ready`]);
//! - `STATUS=...` with the connection state and active/max tasks (the [`Keeper`] thread);
//! - `WATCHDOG=1` every half `$WATCHDOG_USEC` while the supervisor loop beats (the
//!   [`Keeper`]; skipped when `$WATCHDOG_PID` names another process), so systemd restarts a
//!   wedged worker;
//! - `STOPPING=1` when shutdown begins ([`Notifier::stopping`]), and `EXTEND_TIMEOUT_USEC` to
//!   cover a long drain.
//!
//! Sending never blocks (the socket is non-blocking) and failures are only logged at debug
//! level: notifications are best-effort by design. Without `$NOTIFY_SOCKET` everything here
//! is a no-op.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use log::debug;

use crate::metrics::{Health, Metrics};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How often the keeper refreshes `STATUS=` when no watchdog asks for more.
pub const STATUS_PERIOD: Duration = Duration::from_secs(5);
/// How long [`Keeper::stop`] waits for its thread.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A handle on the notification socket; a no-op when systemd did not ask for notifications.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. Problems (an unsupported
    /// address, a malformed watchdog value) disable the affected part and are returned as
    /// warnings for the caller to log.
    pub fn from_env(env: Env<'_>) -> (Notifier, Vec<String>) {
        Notifier::from_env_for_pid(env, std::process::id())
    }

    /// [`Notifier::from_env`] as if this process had `pid` (for tests).
    pub fn from_env_for_pid(env: Env<'_>, pid: u32) -> (Notifier, Vec<String>) {
        let mut warnings = Vec::new();
        let Some(raw) = env("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
            return (Notifier::disabled(), warnings);
        };
        let target = match address(&raw).and_then(|addr| {
            let sock = UnixDatagram::unbound()?;
            sock.set_nonblocking(true)?;
            Ok((sock, addr))
        }) {
            Ok(t) => t,
            Err(e) => {
                warnings.push(format!(
                    "NOTIFY_SOCKET={raw:?}: {e}; systemd notifications are disabled"
                ));
                return (Notifier::disabled(), warnings);
            }
        };
        let watchdog = watchdog_interval(env, pid, &mut warnings);
        (
            Notifier {
                target: Some(target),
                watchdog,
            },
            warnings,
        )
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Half of `WATCHDOG_USEC`, when systemd expects watchdog pings from this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`KEY=VALUE` lines). `Ok` without sending when disabled.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some((sock, addr)) => sock.send_to_addr(state.as_bytes(), addr).map(|_| ()),
            None => Ok(()),
        }
    }

    fn best_effort(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            debug!("sd_notify {state:?} failed: {e}");
        }
    }

    /// `READY=1`: startup is complete.
    pub fn ready(&self) {
        self.best_effort("READY=1");
    }

    /// `STOPPING=1`: graceful shutdown began.
    pub fn stopping(&self) {
        self.best_effort("STOPPING=1");
    }

    /// `STATUS=<text>` (newlines become spaces: they separate assignments).
    pub fn status(&self, text: &str) {
        self.best_effort(&format!("STATUS={}", text.replace(['\n', '\r'], " ")));
    }

    /// `EXTEND_TIMEOUT_USEC=<by>`: asks systemd for more time to start or stop.
    pub fn extend_timeout(&self, by: Duration) {
        self.best_effort(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.best_effort("WATCHDOG=1");
    }
}

/// A path socket, or `@name` for the Linux abstract namespace.
fn address(raw: &str) -> io::Result<SocketAddr> {
    if let Some(name) = raw.strip_prefix('@') {
        return abstract_address(name);
    }
    if raw.starts_with('/') {
        return SocketAddr::from_pathname(raw);
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "only absolute paths and @abstract names are supported",
    ))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &str) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &str) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

fn watchdog_interval(env: Env<'_>, pid: u32, warnings: &mut Vec<String>) -> Option<Duration> {
    let usec = env("WATCHDOG_USEC").filter(|v| !v.is_empty())?;
    if let Some(target) = env("WATCHDOG_PID").filter(|v| !v.is_empty()) {
        match target.trim().parse::<u32>() {
            Ok(p) if p == pid => {}
            Ok(_) => return None,
            Err(_) => {
                warnings.push(format!(
                    "WATCHDOG_PID={target:?} is not a process id; the watchdog is disabled"
                ));
                return None;
            }
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(us) if us > 0 => Some(Duration::from_micros(us) / 2),
        _ => {
            warnings.push(format!(
                "WATCHDOG_USEC={usec:?} is not a positive number of microseconds; the watchdog \
                 is disabled"
            ));
            None
        }
    }
}

/// The `STATUS=` text for the current state.
pub fn status_text(
    connected: bool,
    active: i64,
    max: u64,
    draining: bool,
    stalled_for: Option<Duration>,
) -> String {
    let tasks = match max {
        0 => format!("{active} tasks active (no limit)"),
        max => format!("{active}/{max} tasks active"),
    };
    let state = if let Some(age) = stalled_for {
        format!("Supervisor loop stalled for {}s", age.as_secs())
    } else if draining {
        "Shutting down".to_owned()
    } else if connected {
        "Connected to Oz".to_owned()
    } else {
        "Connecting to Oz".to_owned()
    };
    format!("{state}; {tasks}")
}

/// What one keeper tick sends: `WATCHDOG=1` when a watchdog is expected and the supervisor
/// is alive, `STATUS=` when the text changed since `last`.
pub fn tick_messages(
    watchdog: bool,
    alive: bool,
    status: String,
    last: &mut String,
) -> Vec<String> {
    let mut out = Vec::new();
    if watchdog && alive {
        out.push("WATCHDOG=1".to_owned());
    }
    if status != *last {
        out.push(format!("STATUS={status}"));
        *last = status;
    }
    out
}

/// The thread (`sd-notify`) that sends `STATUS=` updates and watchdog pings.
#[derive(Debug)]
pub struct Keeper {
    stop: Option<Sender<()>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Starts the keeper; `None` when notifications are disabled.
    pub fn spawn(
        notifier: Arc<Notifier>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> io::Result<Option<Keeper>> {
        if !notifier.is_enabled() {
            return Ok(None);
        }
        let period = notifier
            .watchdog_interval()
            .map_or(STATUS_PERIOD, |w| w.min(STATUS_PERIOD));
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (done_tx, done_rx) = bounded::<()>(1);
        let thread = thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                let mut last = String::new();
                loop {
                    let alive = health.alive();
                    let status = status_text(
                        metrics.connected(),
                        metrics.tasks_active(),
                        metrics.max_concurrent(),
                        health.draining(),
                        (!alive).then(|| health.beat_age()),
                    );
                    let watchdog = notifier.watchdog_interval().is_some();
                    for msg in tick_messages(watchdog, alive, status, &mut last) {
                        notifier.best_effort(&msg);
                    }
                    match stop_rx.recv_timeout(period) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                let _ = done_tx.send(());
            })?;
        Ok(Some(Keeper {
            stop: Some(stop_tx),
            done: done_rx,
            thread: Some(thread),
        }))
    }

    /// Stops the thread (bounded wait).
    pub fn stop(mut self) {
        drop(self.stop.take());
        if self.done.recv_timeout(STOP_DEADLINE).is_ok()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

#[cfg(test)]
mod tests;
