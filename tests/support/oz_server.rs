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

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

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

    fn start_with(pki: Option<&'static TestPki>) -> OzServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake Oz server");
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

impl Drop for OzServer {
    fn drop(&mut self) {
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
        if let Some(d) = &self.ca_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

// ---- server threads -----------------------------------------------------------------------

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    for stream in listener.incoming() {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(tcp) = stream else { continue };
        let conn_inner = inner.clone();
        let t = std::thread::Builder::new()
            .name("oz-fake-conn".into())
            .spawn(move || serve(tcp, conn_inner))
            .expect("spawn connection thread");
        inner.threads.lock().unwrap().push(t);
    }
}

fn serve(tcp: TcpStream, inner: Arc<Inner>) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(ctl_tcp) = tcp.try_clone() else { return };
    let stream = match &inner.tls {
        None => Stream::Plain(tcp),
        Some(cfg) => {
            let Ok(conn) = ServerConnection::new(cfg.clone()) else {
                return;
            };
            let mut tls = StreamOwned::new(conn, tcp);
            while tls.conn.is_handshaking() {
                if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                    inner.update(|s| s.tls_failures.push(e.to_string()));
                    return;
                }
            }
            Stream::Tls(Box::new(tls))
        }
    };
    let Some((ws, hs_index)) = handshake(stream, &inner) else {
        return;
    };
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
    let silent = Arc::new(AtomicBool::new(false));
    let _ = ctl_tcp.set_read_timeout(Some(TICK));
    let index = {
        let mut live = inner.live.lock().unwrap();
        let mut seen = inner.seen();
        let index = seen.connections.len();
        seen.connections.push(ConnInfo {
            index,
            handshake: hs_index,
            opened_at: Instant::now(),
            closed_at: None,
            end: None,
            client_close: None,
        });
        live.push(Live {
            index,
            ctl: ctl_tx,
            tcp: ctl_tcp,
            silent: silent.clone(),
        });
        index
    };
    inner.changed.notify_all();
    let end = run_connection(ws, index, &inner, &ctl_rx, &silent);
    inner.live.lock().unwrap().retain(|l| l.index != index);
    inner.update(|s| {
        let c = &mut s.connections[index];
        c.closed_at = Some(Instant::now());
        c.end.get_or_insert(end);
    });
}

// tungstenite's callback signature fixes the error type.
#[allow(clippy::result_large_err)]
fn handshake(stream: Stream, inner: &Inner) -> Option<(WebSocket<Stream>, usize)> {
    let hs_index = inner.handshake_count.fetch_add(1, Ordering::SeqCst);
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let reject = inner.rejects.lock().unwrap().pop_front();
        let uri = req.uri();
        let record = Handshake {
            index: hs_index,
            at: Instant::now(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            rejected: reject.map(|(status, _)| status),
        };
        inner.update(|s| s.handshakes.push(record));
        match reject {
            None => Ok(resp),
            Some((status, retry_after)) => {
                let mut b = tungstenite::http::Response::builder().status(status);
                if let Some(secs) = retry_after {
                    b = b.header("Retry-After", secs.to_string());
                }
                Err(b
                    .body(Some("rejected by the fake Oz server".into()))
                    .expect("response"))
            }
        }
    };
    let end = Instant::now() + Duration::from_secs(10);
    let mut attempt = tungstenite::accept_hdr(stream, callback);
    loop {
        match attempt {
            Ok(ws) => return Some((ws, hs_index)),
            Err(tungstenite::HandshakeError::Interrupted(mid)) if Instant::now() < end => {
                attempt = mid.handshake();
            }
            Err(_) => return None,
        }
    }
}

fn run_connection(
    mut ws: WebSocket<Stream>,
    index: usize,
    inner: &Inner,
    ctl: &Receiver<Ctl>,
    silent: &AtomicBool,
) -> String {
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return "server stopped".into();
        }
        while let Ok(cmd) = ctl.try_recv() {
            match cmd {
                Ctl::Push(msg, ack) => {
                    let r = ws.send(msg).map_err(|e| e.to_string());
                    let failed = r.is_err();
                    let _ = ack.send(r);
                    if failed {
                        return "push failed".into();
                    }
                }
                Ctl::Close(code, reason) => {
                    let _ = ws.close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }));
                }
            }
        }
        if silent.load(Ordering::SeqCst) {
            // Not reading means no pongs and no close echo; the TCP connection stays open.
            if let Ok(Ctl::Push(msg, ack)) = ctl.recv_timeout(TICK) {
                let _ = ack.send(ws.send(msg).map_err(|e| e.to_string()));
            }
            continue;
        }
        match ws.read() {
            Ok(Message::Text(t)) => record_frame(inner, index, t.as_str().to_owned(), false),
            Ok(Message::Binary(b)) => {
                record_frame(inner, index, format!("<{} binary bytes>", b.len()), true)
            }
            Ok(Message::Close(frame)) => inner.update(|s| {
                s.connections[index].client_close = Some(frame.map(|f| u16::from(f.code)));
            }),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(tungstenite::Error::ConnectionClosed) => return "closed".into(),
            Err(e) => return format!("read error: {e}"),
        }
    }
}

fn record_frame(inner: &Inner, conn: usize, text: String, binary: bool) {
    let value = if binary {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    inner.update(|s| {
        s.frames.push(Frame {
            conn,
            at: Instant::now(),
            text,
            value,
            binary,
        })
    });
}

// ---- certificates -------------------------------------------------------------------------

struct TestPki {
    ca_pem: String,
    server_config: Arc<ServerConfig>,
}

/// One CA and one leaf per test process (key generation is not free).
fn test_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "oz-agent-worker test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(vec![
            "localhost".to_string(),
            "oz.test".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("leaf params");
        leaf.distinguished_name.push(DnType::CommonName, "oz.test");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("leaf cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .expect("server config");
        TestPki {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
        }
    })
}

/// A PEM bundle with a CA that did not sign the fake server's certificate (for "untrusted"
/// tests that must not depend on the machine's system roots). Remove the file's directory when
/// done, or leave it to the temp dir.
pub fn unrelated_ca_bundle() -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "unrelated test CA");
    let cert = ca.self_signed(&key).expect("cert");
    let path = unique_dir("oz-unrelated-ca").join("ca.pem");
    std::fs::write(&path, cert.pem()).expect("write CA");
    path
}

/// A fresh directory under the system temp dir.
pub fn unique_dir(prefix: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
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
