//! A test HTTP CONNECT proxy on 127.0.0.1. It records every CONNECT target and its
//! `Proxy-Authorization`, sends every target to 127.0.0.1 on the requested port (so a test can use
//! a non-loopback name such as `oz.test`, which the worker must not resolve itself), and tunnels
//! bytes both ways.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `host:port` as requested.
    pub target: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    connects: Mutex<Vec<Connect>>,
    changed: Condvar,
    stop: AtomicBool,
    reject: Mutex<Option<u16>>,
    sockets: Mutex<Vec<TcpStream>>,
}

pub struct TestProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

impl TestProxy {
    pub fn start() -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test proxy");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner::default());
        let i = inner.clone();
        let accept = std::thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                for s in listener.incoming() {
                    if i.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(s) = s else { continue };
                    let ii = i.clone();
                    let _ = std::thread::Builder::new()
                        .name("test-proxy-conn".into())
                        .spawn(move || handle(s, ii));
                }
            })
            .expect("spawn proxy");
        TestProxy {
            addr,
            inner,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:pass@127.0.0.1:PORT` (user and pass must not need escaping).
    pub fn url_with_credentials(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.addr)
    }

    /// Answer every later CONNECT with `status` instead of tunnelling.
    pub fn reject_with(&self, status: u16) {
        *self.inner.reject.lock().unwrap() = Some(status);
    }

    pub fn connects(&self) -> Vec<Connect> {
        self.inner.connects.lock().unwrap().clone()
    }

    pub fn wait_for_connects(&self, n: usize, timeout: Duration) -> Vec<Connect> {
        let end = Instant::now() + timeout;
        let mut c = self.inner.connects.lock().unwrap();
        loop {
            if c.len() >= n {
                return c.clone();
            }
            let now = Instant::now();
            assert!(
                now < end,
                "test proxy: timed out waiting for {n} CONNECTs, saw {:?}",
                *c
            );
            c = self.inner.changed.wait_timeout(c, end - now).unwrap().0;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for s in self.inner.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn handle(mut client: TcpStream, inner: Arc<Inner>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let authorization = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_owned())
    });
    inner.connects.lock().unwrap().push(Connect {
        target: target.to_owned(),
        authorization,
    });
    inner.changed.notify_all();
    if let Some(status) = *inner.reject.lock().unwrap() {
        let _ = write!(
            client,
            "HTTP/1.1 {status} Rejected\r\nContent-Length: 0\r\n\r\n"
        );
        return;
    }
    // Every name resolves to 127.0.0.1 here.
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let upstream = port.and_then(|p| {
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], p)),
            Duration::from_secs(5),
        )
        .ok()
    });
    let Some(upstream) = upstream else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let _ = client.set_read_timeout(None);
    {
        let mut socks = inner.sockets.lock().unwrap();
        for s in [&client, &upstream] {
            if let Ok(c) = s.try_clone() {
                socks.push(c);
            }
        }
    }
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .name("test-proxy-pipe".into())
        .spawn(move || pipe(c2, u2));
    pipe(upstream, client);
    if let Ok(t) = up {
        let _ = t.join();
    }
}

/// Copies until EOF or error, then passes the EOF on.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || s.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).ok()
}
