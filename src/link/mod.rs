//! The Oz link: one thread named `oz-link` that owns the WebSocket to the Oz control plane.
//!
//! The supervisor spawns it with [`Link::spawn`], receives [`LinkEvent`]s on a crossbeam channel
//! and queues outbound messages with [`Link::send`] (never blocks). The thread dials
//! `ws://`/`wss://` itself (timeouts, `TCP_NODELAY`, HTTP CONNECT proxies, rustls with the system
//! roots plus an optional CA bundle), keeps the connection alive with pings, and redials with
//! full-jitter exponential backoff. See `machine.rs` for the state diagram.
//!
//! Delivery: outbound messages are sent in FIFO order. A message leaves the queue only after it
//! was written and a `flush()` succeeded, i.e. the kernel accepted it. If a connection breaks,
//! messages written to it but not yet confirmed flushed are written again on the next
//! connection: delivery is at-least-once for those, and in order. As with any TCP peer, bytes
//! the kernel accepted just before the connection broke can still be lost; the protocol has no
//! acknowledgements. [`Link::shutdown`] flushes everything queued (redialling if needed) before
//! sending close 1000, and reports what it could not deliver.

pub(crate) mod backoff;
mod conn;
mod dial;
mod machine;
mod outbox;
mod probe;

pub use probe::reach;
mod transport;
mod url;
mod wake;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

pub use crate::http::host::UrlError;
pub use crate::http::proxy::{ProxyEnv, ProxyError};

use crate::http::proxy;
use crate::http::tls::{Pem, TlsError, TlsOptions, Trust};

use crate::protocol::{Inbound, Outbound};
use crate::settings::{Secret, Timing};

/// The rustls configuration for `wss://`: the system roots plus the optional PEM bundle.
fn tls_config(ca_bundle: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, LinkError> {
    let trust = match ca_bundle {
        Some(path) => Trust::SystemAnd(Pem::File(path.to_owned())),
        None => Trust::System,
    };
    let options = TlsOptions {
        trust,
        ..TlsOptions::default()
    };
    crate::http::tls::client_config(&options).map_err(|e| match (e, ca_bundle) {
        (TlsError::Load { detail, .. }, Some(path)) => LinkError::CaBundle {
            path: path.to_owned(),
            reason: detail,
        },
        (TlsError::NoTrustAnchors, _) => LinkError::NoTrustAnchors,
        (e, _) => LinkError::Tls(e.to_string()),
    })
}

/// How long `shutdown` waits for the thread beyond the caller's deadline before giving up on it.
const JOIN_GRACE: Duration = Duration::from_secs(2);
/// The longest `X-Warp-Worker-Version` value sent.
const MAX_VERSION_LEN: usize = 128;

/// What the link needs; built by the supervisor from `Settings`.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `--web-socket-url`; the link sets `worker_id` in its query.
    pub url: String,
    pub worker_id: String,
    pub api_key: Secret,
    /// Extra PEM CA bundle trusted for `wss://`, besides the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// `ping_interval`, `pong_timeout`, `backoff_initial`, `backoff_max`, `write_timeout`.
    pub timing: Timing,
    /// Sent as `X-Warp-Worker-Version` and in the `User-Agent`.
    pub version: String,
}

/// What the link tells the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// The handshake completed; queued messages are being flushed.
    Connected,
    /// An established connection was lost (the link redials on its own). Counted as a
    /// reconnect.
    Disconnected { reason: String },
    /// The worker ended the connection itself (shutdown): not a loss, not a reconnect.
    Closed { reason: String },
    /// One failed dial attempt, and when the next one starts. The text holds no secret.
    DialFailed { error: String, retry_in: Duration },
    /// One decoded inbound message (including `BadAssignment` and `Unknown`).
    Message(Inbound),
}

/// A terminal message (`task_completed`/`task_failed`) the link wrote and flushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub task_id: String,
    pub execution_id: Option<String>,
}

impl Delivered {
    fn of(msg: &Outbound) -> Delivered {
        let execution_id = match msg {
            Outbound::Completed { execution_id, .. } | Outbound::Failed { execution_id, .. } => {
                execution_id.clone()
            }
            _ => None,
        };
        Delivered {
            task_id: msg.task_id().to_owned(),
            execution_id,
        }
    }
}

/// The outcome journal as the link sees it (a write-ahead rule and delivery receipts). Both are
/// called on the link thread and must be quick: the link waits for them.
pub trait Ledger: Send + Sync {
    /// Frames are about to be written to the socket: make durable what guards them (the
    /// journal's claim and outcome records). One call covers every frame queued so far, so
    /// under load one fsync serves many frames.
    fn before_write(&self);
    /// A terminal message was written and flushed.
    fn delivered(&self, d: &Delivered);
}

/// The outcome of [`Link::shutdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Queued messages that were not delivered (not confirmed flushed) before the deadline.
    pub undelivered: usize,
    /// The server answered our close frame 1000.
    pub closed_cleanly: bool,
    /// The thread ended and was joined (false: it overran the deadline and was left behind).
    pub stopped: bool,
}

/// Why the link could not be started.
#[derive(Debug)]
pub enum LinkError {
    Url(UrlError),
    Proxy(ProxyError),
    CaBundle {
        path: PathBuf,
        reason: String,
    },
    /// `wss://` with neither system roots nor a CA bundle.
    NoTrustAnchors,
    Tls(String),
    /// The API key cannot go into an HTTP header (empty or with control characters).
    ApiKey,
    Spawn(std::io::Error),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Url(e) => write!(f, "invalid WebSocket URL: {e}"),
            LinkError::Proxy(e) => write!(f, "proxy configuration: {e}"),
            LinkError::CaBundle { path, reason } => {
                write!(f, "cannot load CA bundle {}: {reason}", path.display())
            }
            LinkError::NoTrustAnchors => f.write_str(
                "no trusted CA certificates: the system store is empty and no CA bundle was given",
            ),
            LinkError::Tls(e) => write!(f, "TLS setup: {e}"),
            LinkError::ApiKey => f.write_str(
                "the API key is empty or contains characters not allowed in an HTTP header",
            ),
            LinkError::Spawn(e) => write!(f, "cannot start the oz-link thread: {e}"),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinkError::Url(e) => Some(e),
            LinkError::Proxy(e) => Some(e),
            LinkError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// A cloneable handle that queues outbound messages (e.g. for task threads).
#[derive(Clone)]
pub struct LinkSender {
    tx: Sender<Outbound>,
    waker: Arc<wake::Waker>,
}

impl LinkSender {
    /// Queues `msg` and wakes the link thread. Never blocks. After shutdown the message is
    /// dropped (and counted in the report if it raced the final drain).
    pub fn send(&self, msg: Outbound) {
        if self.tx.send(msg).is_ok() {
            self.waker.wake();
        }
    }
}

impl fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSender")
    }
}

/// The supervisor's handle on the link thread.
pub struct Link {
    sender: LinkSender,
    stop: Arc<wake::StopAt>,
    done: Receiver<ShutdownReport>,
    pending: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Link {
    /// Validates the URL, loads the CA bundle, reads the proxy environment and starts the thread.
    pub fn spawn(cfg: LinkConfig, events: Sender<LinkEvent>) -> Result<Link, LinkError> {
        Link::spawn_with_proxy(cfg, events, ProxyEnv::from_env())
    }

    /// As [`Link::spawn`], with the proxy settings given instead of read from the environment.
    pub fn spawn_with_proxy(
        cfg: LinkConfig,
        events: Sender<LinkEvent>,
        proxy_env: ProxyEnv,
    ) -> Result<Link, LinkError> {
        Link::spawn_with_ledger(cfg, events, proxy_env, None)
    }

    /// As [`Link::spawn_with_proxy`], keeping `ledger` (the outcome journal) informed.
    pub fn spawn_with_ledger(
        cfg: LinkConfig,
        events: Sender<LinkEvent>,
        proxy_env: ProxyEnv,
        ledger: Option<Arc<dyn Ledger>>,
    ) -> Result<Link, LinkError> {
        let url = url::WsUrl::parse(&cfg.url, &cfg.worker_id).map_err(LinkError::Url)?;
        let proxy =
            proxy::select(&proxy_env, url.secure, &url.host, url.port).map_err(LinkError::Proxy)?;
        if let Some(p) = &proxy {
            log::info!("Using proxy {} for {}", p.display(), url.host_header());
        }
        let tls = if url.secure {
            Some(tls_config(cfg.ca_bundle.as_deref())?)
        } else {
            None
        };
        let stop = Arc::new(wake::StopAt::new());
        let dialer = dial::Dialer {
            url,
            proxy,
            tls,
            headers: headers(&cfg.api_key, &cfg.version)?,
            timeout: cfg.timing.write_timeout,
            stop: stop.clone(),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let (waker, wake_rx) = wake::pair().map_err(LinkError::Spawn)?;
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let pending = Arc::new(AtomicUsize::new(0));
        let backoff = backoff::Backoff::new(
            cfg.timing.backoff_initial,
            cfg.timing.backoff_max,
            backoff::Rng::from_entropy(),
        );
        let machine = machine::Machine::new(machine::Parts {
            dialer,
            timing: cfg.timing,
            rx,
            wake: wake_rx,
            stop: stop.clone(),
            events,
            pending: pending.clone(),
            backoff,
            ledger,
        });
        let thread = std::thread::Builder::new()
            .name("oz-link".into())
            .spawn(move || {
                let report = machine.run();
                let _ = done_tx.send(report);
            })
            .map_err(LinkError::Spawn)?;
        Ok(Link {
            sender: LinkSender {
                tx,
                waker: Arc::new(waker),
            },
            stop,
            done,
            pending,
            thread: Some(thread),
        })
    }

    /// Queues `msg` and wakes the link thread. Never blocks.
    pub fn send(&self, msg: Outbound) {
        self.sender.send(msg);
    }

    /// A cloneable sender for other threads.
    pub fn sender(&self) -> LinkSender {
        self.sender.clone()
    }

    /// Flushes the outbox (dialling if disconnected) until `deadline`, then closes with 1000 and
    /// waits for the server's close until `deadline`, and joins the thread (bounded).
    pub fn shutdown(mut self, deadline: Instant) -> ShutdownReport {
        let wait = deadline.saturating_duration_since(Instant::now()) + JOIN_GRACE;
        self.finish(deadline, wait)
    }

    fn finish(&mut self, deadline: Instant, wait: Duration) -> ShutdownReport {
        let Some(thread) = self.thread.take() else {
            return ShutdownReport::default();
        };
        // Visible to the thread at once, even in the middle of a dial.
        self.stop.set(deadline);
        self.sender.waker.wake();
        match self.done.recv_timeout(wait) {
            Ok(report) => {
                let _ = thread.join();
                report
            }
            // The thread ended without a report: it panicked (a bug, already printed).
            Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                ShutdownReport {
                    undelivered: self.guess_pending(),
                    closed_cleanly: false,
                    stopped: true,
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                log::error!(
                    "The oz-link thread did not stop within {}; leaving it behind",
                    fmt_duration(wait)
                );
                ShutdownReport {
                    undelivered: self.guess_pending(),
                    closed_cleanly: false,
                    stopped: false,
                }
            }
        }
    }

    fn guess_pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed) + self.sender.tx.len()
    }
}

impl Drop for Link {
    /// Dropped without `shutdown`: stop at once, without flushing.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish(Instant::now(), Duration::from_secs(1));
        }
    }
}

/// The headers sent on every dial. A bad version is left out with a warning that does not
/// echo it (it could be anything a build injected).
fn headers(api_key: &Secret, version_text: &str) -> Result<dial::Headers, LinkError> {
    let key = api_key.expose();
    if key.is_empty() {
        return Err(LinkError::ApiKey);
    }
    let authorization = format!("Bearer {key}");
    if !is_header_value(&authorization) {
        return Err(LinkError::ApiKey);
    }
    let version = match check_version(version_text) {
        Ok(v) => Some(v),
        Err(why) => {
            log::warn!("Not sending the X-Warp-Worker-Version header: the version {why}");
            None
        }
    };
    let user_agent = match &version {
        Some(v) => format!("oz-agent-worker/{v}"),
        None => "oz-agent-worker".to_owned(),
    };
    Ok(dial::Headers {
        authorization: Secret::new(authorization),
        version,
        user_agent,
    })
}

/// Upstream's rules: non-empty, at most 128 bytes, no control characters (`String` already
/// guarantees UTF-8).
fn check_version(v: &str) -> Result<String, &'static str> {
    if v.is_empty() {
        return Err("is empty");
    }
    if v.len() > MAX_VERSION_LEN {
        return Err("is longer than 128 bytes");
    }
    if v.chars().any(|c| c.is_control()) {
        return Err("contains control characters");
    }
    if !is_header_value(v) {
        return Err("is not a valid header value");
    }
    Ok(v.to_owned())
}

/// An HTTP field value as the `http` crate accepts one: tab, visible ASCII, space and
/// obs-text (bytes from 0x80), no other control character.
fn is_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Durations in log lines: `850ms`, `3s`, `1.5s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rules() {
        assert!(check_version("1.2.3").is_ok());
        assert!(check_version("1.2.3+build.7 (linux)").is_ok());
        assert!(check_version(&"x".repeat(128)).is_ok());
        assert_eq!(check_version(""), Err("is empty"));
        assert_eq!(
            check_version(&"x".repeat(129)),
            Err("is longer than 128 bytes")
        );
        assert_eq!(check_version("1\n2"), Err("contains control characters"));
        assert_eq!(check_version("1\u{7f}"), Err("contains control characters"));
        assert_eq!(check_version("1\u{85}"), Err("contains control characters"));
        // Non-ASCII UTF-8 is allowed (upstream's rules; HTTP calls it obs-text).
        assert!(check_version("vé").is_ok());
    }

    #[test]
    fn headers_hide_the_key_and_reject_bad_ones() {
        let h = headers(&Secret::new("k3y"), "1.0").unwrap();
        assert_eq!(h.authorization.expose(), "Bearer k3y");
        assert!(!format!("{h:?}").contains("k3y"));
        assert_eq!(h.user_agent, "oz-agent-worker/1.0");
        assert_eq!(h.version.as_deref(), Some("1.0"));
        let h = headers(&Secret::new("k"), "vé").unwrap();
        assert_eq!(h.user_agent, "oz-agent-worker/vé");
        let h = headers(&Secret::new("k"), "").unwrap();
        assert!(h.version.is_none());
        assert_eq!(h.user_agent, "oz-agent-worker");
        assert!(matches!(
            headers(&Secret::new(""), "1"),
            Err(LinkError::ApiKey)
        ));
        assert!(matches!(
            headers(&Secret::new("a\nb"), "1"),
            Err(LinkError::ApiKey)
        ));
        assert!(!LinkError::ApiKey.to_string().contains("a\nb"));
    }

    #[test]
    fn handles_cross_threads_and_errors_stay_small() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<Link>();
        send::<LinkSender>();
        sync::<LinkSender>();
        send::<LinkEvent>();
        assert!(std::mem::size_of::<LinkError>() <= 64);
        assert!(std::mem::size_of::<dial::DialError>() <= 64);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(fmt_duration(Duration::from_secs(3)), "3s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn spawn_refuses_bad_input_without_echoing_it() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let cfg = LinkConfig {
            url: "http://user:s3cret@h/".into(),
            worker_id: "w".into(),
            api_key: Secret::new("k"),
            ca_bundle: None,
            timing: Timing::default(),
            version: "1".into(),
        };
        let e = Link::spawn_with_proxy(cfg.clone(), tx.clone(), ProxyEnv::none()).unwrap_err();
        assert!(matches!(e, LinkError::Url(_)), "{e}");
        assert!(!e.to_string().contains("s3cret"));

        let e = Link::spawn_with_proxy(
            LinkConfig {
                url: "wss://h/".into(),
                ca_bundle: Some("/nonexistent/ca.pem".into()),
                ..cfg.clone()
            },
            tx.clone(),
            ProxyEnv::none(),
        )
        .unwrap_err();
        assert!(matches!(e, LinkError::CaBundle { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/ca.pem"));

        let proxy = ProxyEnv {
            http_proxy: Some("socks5://u:s3cret@p:1".into()),
            ..ProxyEnv::none()
        };
        let e = Link::spawn_with_proxy(
            LinkConfig {
                url: "ws://oz.test/".into(),
                ..cfg
            },
            tx,
            proxy,
        )
        .unwrap_err();
        assert!(matches!(e, LinkError::Proxy(_)), "{e}");
        assert!(!e.to_string().contains("s3cret"));
    }
}
