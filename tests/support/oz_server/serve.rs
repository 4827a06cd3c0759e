//! The fake server's threads: accept loop, TLS, the upgrade handshake, and one loop per
//! connection that records frames and obeys the test's controls.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rustls::{ServerConnection, StreamOwned};
use serde_json::Value;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use super::{ConnInfo, Ctl, Frame, Handshake, Inner, Live, TICK};

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

pub(super) fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
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
