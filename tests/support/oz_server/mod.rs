//! A fake Oz control plane: a real tungstenite WebSocket server on 127.0.0.1 (ws or wss) that
//! records what the worker does and lets a test script the server's side.
//!
//! ```ignore
//! let oz = OzServer::start();                       // or OzServer::start_tls()
//! // run the worker with --web-socket-url oz.url() (and --ca-bundle oz.ca_bundle() for wss)
//! oz.wait_for_connections(1, T);
//! oz.push_json(&json!({"type": "task_assignment", "data": {"task_id": "t1", ...}}));
//! let claimed = oz.wait_for_frame(T, |f| f.kind() == "task_claimed");
//! oz.drop_connection();                              // abrupt TCP drop
//! oz.reject_next(2, 429, Some(1));                   // next 2 handshakes get 429 + Retry-After: 1
//! ```
//!
//! Every `wait_for_*` panics after its timeout with a dump of everything seen.

#![allow(dead_code)]

mod pki;
mod serve;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rustls::ServerConfig;
use serde_json::Value;
use tungstenite::Message;

use pki::{TestPki, test_pki};
use serve::accept_loop;

pub use pki::{unique_dir, unrelated_ca_bundle};

/// The path the real server serves the worker socket on.
pub const WS_PATH: &str = "/api/v1/selfhosted/worker/ws";
/// How often a connection thread looks at its controls while idle.
const TICK: Duration = Duration::from_millis(10);

/// One HTTP upgrade request the server saw (accepted or rejected).
#[derive(Debug, Clone)]
pub struct Handshake {
    pub index: usize,
    pub at: Instant,
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The status we answered with when the handshake was rejected.
    pub rejected: Option<u16>,
}

impl Handshake {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A decoded query parameter (`+` and `%XX` unescaped).
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| unescape(v))
        })
    }
}

/// One data frame received from the worker.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Index of the connection it arrived on (0 = first accepted connection).
    pub conn: usize,
    pub at: Instant,
    pub text: String,
    /// The frame parsed as JSON (`Null` when it is not JSON, or binary).
    pub value: Value,
    pub binary: bool,
}

impl Frame {
    /// The envelope's `type`, or "" when absent.
    pub fn kind(&self) -> &str {
        self.value["type"].as_str().unwrap_or("")
    }
    pub fn task_id(&self) -> &str {
        self.value["data"]["task_id"].as_str().unwrap_or("")
    }
}

/// One accepted WebSocket connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub index: usize,
    pub handshake: usize,
    pub opened_at: Instant,
    pub closed_at: Option<Instant>,
    /// How it ended, e.g. "closed by client", "dropped by test", "read error: ...".
    pub end: Option<String>,
    /// The close frame the worker sent: `Some(None)` for a close without a code.
    pub client_close: Option<Option<u16>>,
}

/// Everything seen so far; wait predicates get a reference to it.
#[derive(Debug, Default)]
pub struct Seen {
    pub handshakes: Vec<Handshake>,
    pub frames: Vec<Frame>,
    pub connections: Vec<ConnInfo>,
    /// TLS handshakes that failed (e.g. the client did not trust us).
    pub tls_failures: Vec<String>,
}

impl Seen {
    fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "handshakes ({}):", self.handshakes.len());
        for h in &self.handshakes {
            let _ = writeln!(
                s,
                "  #{} {}?{} rejected={:?}",
                h.index, h.path, h.query, h.rejected
            );
        }
        let _ = writeln!(s, "connections ({}):", self.connections.len());
        for c in &self.connections {
            let _ = writeln!(
                s,
                "  #{} open_for={:?} end={:?} client_close={:?}",
                c.index,
                c.closed_at.map(|t| t - c.opened_at),
                c.end,
                c.client_close
            );
        }
        let _ = writeln!(s, "frames ({}):", self.frames.len());
        for f in &self.frames {
            let text: String = f.text.chars().take(200).collect();
            let _ = writeln!(s, "  conn {}: {text}", f.conn);
        }
        if !self.tls_failures.is_empty() {
            let _ = writeln!(s, "tls failures: {:?}", self.tls_failures);
        }
        s
    }
}

enum Ctl {
    Push(Message, Sender<Result<(), String>>),
    Close(u16, String),
}

struct Live {
    index: usize,
    ctl: Sender<Ctl>,
    tcp: TcpStream,
    silent: Arc<AtomicBool>,
}

struct Inner {
    seen: Mutex<Seen>,
    changed: Condvar,
    stop: AtomicBool,
    rejects: Mutex<VecDeque<(u16, Option<u64>)>>,
    live: Mutex<Vec<Live>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    tls: Option<Arc<ServerConfig>>,
    handshake_count: AtomicUsize,
}

impl Inner {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen());
        self.changed.notify_all();
    }
}

/// The fake Oz server. Dropping it stops every thread and closes every socket.
pub struct OzServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    ca_dir: Option<PathBuf>,
    accept: Option<JoinHandle<()>>,
}

impl OzServer {
    /// A plain `ws://` server.
    pub fn start() -> OzServer {
        OzServer::start_with(None)
    }

    /// A `wss://` server with a certificate for `localhost`, `oz.test` and `127.0.0.1`, signed by
    /// a test CA whose PEM is at [`OzServer::ca_bundle`].
    pub fn start_tls() -> OzServer {
        OzServer::start_with(Some(test_pki()))
    }

    /// A plain `ws://` server on a given port (a server that "comes back" where it was).
    pub fn start_on(port: u16) -> OzServer {
        OzServer::start_at(None, port)
    }

    fn start_with(pki: Option<&'static TestPki>) -> OzServer {
        OzServer::start_at(pki, 0)
    }

    fn start_at(pki: Option<&'static TestPki>, port: u16) -> OzServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake Oz server");
        let addr = listener.local_addr().expect("local addr");
        let ca_dir = pki.map(|p| {
            let dir = unique_dir("oz-server");
            std::fs::write(dir.join("ca.pem"), &p.ca_pem).expect("write CA bundle");
            dir
        });
        let inner = Arc::new(Inner {
            seen: Mutex::new(Seen::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            rejects: Mutex::new(VecDeque::new()),
            live: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            tls: pki.map(|p| p.server_config.clone()),
            handshake_count: AtomicUsize::new(0),
        });
        let accept_inner = inner.clone();
        let accept = std::thread::Builder::new()
            .name("oz-fake-accept".into())
            .spawn(move || accept_loop(listener, accept_inner))
            .expect("spawn accept thread");
        OzServer {
            inner,
            addr,
            ca_dir,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn is_tls(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// `ws://127.0.0.1:PORT/api/v1/selfhosted/worker/ws` (or `wss://`).
    pub fn url(&self) -> String {
        self.url_for_host("127.0.0.1")
    }

    /// The URL with another host name (e.g. `localhost`, or `oz.test` through the test proxy).
    pub fn url_for_host(&self, host: &str) -> String {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        format!("{scheme}://{host}:{}{WS_PATH}", self.port())
    }

    /// The PEM CA bundle to trust (`--ca-bundle`); `None` for a plain server.
    pub fn ca_bundle(&self) -> Option<PathBuf> {
        self.ca_dir.as_ref().map(|d| d.join("ca.pem"))
    }

    // ---- scripting ------------------------------------------------------------------------

    /// The next `n` handshakes are answered with `status` (plus `Retry-After` when given).
    pub fn reject_next(&self, n: usize, status: u16, retry_after_secs: Option<u64>) {
        let mut r = self.inner.rejects.lock().unwrap();
        for _ in 0..n {
            r.push_back((status, retry_after_secs));
        }
    }

    /// Forgets the handshake rejections not used yet: the server accepts again.
    pub fn clear_rejects(&self) {
        self.inner.rejects.lock().unwrap().clear();
    }

    /// Index of the newest connection that is still open.
    pub fn current_connection(&self) -> Option<usize> {
        self.live().last().map(|l| l.index)
    }

    /// Sends a text frame on the current connection (waiting up to 10 s for one to exist).
    pub fn push_text(&self, text: &str) -> Result<(), String> {
        self.push(Message::text(text))
    }

    pub fn push_json(&self, v: &Value) -> Result<(), String> {
        self.push_text(&v.to_string())
    }

    pub fn push_binary(&self, data: Vec<u8>) -> Result<(), String> {
        self.push(Message::binary(data))
    }

    /// Sends any message on the current connection and waits until it was written.
    pub fn push(&self, msg: Message) -> Result<(), String> {
        let ctl = self.with_current(Duration::from_secs(10), |l| l.ctl.clone())?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        ctl.send(Ctl::Push(msg, tx))
            .map_err(|_| "connection thread gone".to_string())?;
        rx.recv_timeout(Duration::from_secs(60))
            .map_err(|_| "push not acknowledged".to_string())?
    }

    /// Sends a close frame with `code` on the current connection and completes the close.
    pub fn close_connection(&self, code: u16, reason: &str) -> usize {
        let (index, ctl) = self
            .with_current(Duration::from_secs(10), |l| (l.index, l.ctl.clone()))
            .expect("a live connection to close");
        let _ = ctl.send(Ctl::Close(code, reason.to_owned()));
        index
    }

    /// Drops the current connection abruptly (TCP shutdown, no close frame). Returns its index.
    pub fn drop_connection(&self) -> usize {
        let (index, tcp) = self
            .with_current(Duration::from_secs(10), |l| {
                (l.index, l.tcp.try_clone().expect("clone tcp"))
            })
            .expect("a live connection to drop");
        self.inner.update(|s| {
            if let Some(c) = s.connections.get_mut(index) {
                c.end.get_or_insert_with(|| "dropped by test".into());
            }
        });
        let _ = tcp.shutdown(Shutdown::Both);
        index
    }

    /// The current connection stops reading (so no pongs) while its TCP stays open.
    pub fn go_silent(&self) -> usize {
        self.with_current(Duration::from_secs(10), |l| {
            l.silent.store(true, Ordering::SeqCst);
            l.index
        })
        .expect("a live connection to silence")
    }

    // ---- observing ------------------------------------------------------------------------

    pub fn handshakes(&self) -> Vec<Handshake> {
        self.inner.seen().handshakes.clone()
    }
    pub fn frames(&self) -> Vec<Frame> {
        self.inner.seen().frames.clone()
    }
    pub fn connections(&self) -> Vec<ConnInfo> {
        self.inner.seen().connections.clone()
    }

    /// Waits until `f` returns `Some`, re-evaluated on every change; panics with a dump on timeout.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Seen) -> Option<T>,
    ) -> T {
        let end = Instant::now() + timeout;
        let mut seen = self.inner.seen();
        loop {
            if let Some(v) = f(&seen) {
                return v;
            }
            let now = Instant::now();
            if now >= end {
                panic!(
                    "fake Oz server: timed out after {timeout:?} waiting for {what}\n{}",
                    seen.dump()
                );
            }
            seen = self
                .inner
                .changed
                .wait_timeout(seen, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The first frame (in arrival order) matching `pred`.
    pub fn wait_for_frame(&self, timeout: Duration, pred: impl Fn(&Frame) -> bool) -> Frame {
        self.wait_for("a matching frame", timeout, |s| {
            s.frames.iter().find(|f| pred(f)).cloned()
        })
    }

    /// The first `n` frames matching `pred`, in arrival order.
    pub fn wait_for_matching(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Frame) -> bool,
    ) -> Vec<Frame> {
        self.wait_for(&format!("{n} matching frames"), timeout, |s| {
            let m: Vec<Frame> = s
                .frames
                .iter()
                .filter(|f| pred(f))
                .take(n)
                .cloned()
                .collect();
            (m.len() >= n).then_some(m)
        })
    }

    /// The first `n` frames.
    pub fn wait_for_frames(&self, n: usize, timeout: Duration) -> Vec<Frame> {
        self.wait_for(&format!("{n} frames"), timeout, |s| {
            (s.frames.len() >= n).then(|| s.frames[..n].to_vec())
        })
    }

    /// At least `n` accepted connections so far.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> Vec<ConnInfo> {
        self.wait_for(&format!("{n} connections"), timeout, |s| {
            (s.connections.len() >= n).then(|| s.connections.clone())
        })
    }

    /// At least `n` handshakes (accepted or rejected) so far.
    pub fn wait_for_handshakes(&self, n: usize, timeout: Duration) -> Vec<Handshake> {
        self.wait_for(&format!("{n} handshakes"), timeout, |s| {
            (s.handshakes.len() >= n).then(|| s.handshakes.clone())
        })
    }

    /// Connection `index` has ended.
    pub fn wait_for_disconnect(&self, index: usize, timeout: Duration) -> ConnInfo {
        self.wait_for(&format!("connection {index} to end"), timeout, |s| {
            s.connections
                .get(index)
                .filter(|c| c.closed_at.is_some())
                .cloned()
        })
    }

    /// The close frame the worker sent on connection `index` (`None` inside: no code).
    pub fn wait_for_client_close(&self, index: usize, timeout: Duration) -> Option<u16> {
        self.wait_for(
            &format!("a close frame on connection {index}"),
            timeout,
            |s| s.connections.get(index).and_then(|c| c.client_close),
        )
    }

    fn live(&self) -> MutexGuard<'_, Vec<Live>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_current<T>(&self, timeout: Duration, f: impl Fn(&Live) -> T) -> Result<T, String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self.live().last() {
                return Ok(f(l));
            }
            if Instant::now() >= end {
                return Err(format!(
                    "no live connection after {timeout:?}\n{}",
                    self.inner.seen().dump()
                ));
            }
            let seen = self.inner.seen();
            let _ = self.inner.changed.wait_timeout(seen, TICK);
        }
    }
}

impl OzServer {
    /// The server dies: the listener closes and every connection is cut. What it saw stays
    /// readable (`frames()`, …).
    pub fn stop(&mut self) {
        if self.accept.is_none() {
            return;
        }
        self.inner.stop.store(true, Ordering::SeqCst);
        // Unblock accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for l in self.live().iter() {
            let _ = l.tcp.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = std::mem::take(&mut *self.inner.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for OzServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(d) = &self.ca_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
