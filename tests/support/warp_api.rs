//! A fake of the Warp HTTP endpoints a task reports to, on 127.0.0.1 (plain HTTP/1.1):
//! - `POST /api/v1/agent/runs/<run>/client-events`: setup events, recorded; answered with a
//!   chosen status, or held open without an answer (a dead endpoint);
//! - `POST /graphql/v2`: `issueTaskIdentityToken`, answered with a chosen token;
//! - `POST /v1/logs`: an OTLP/HTTP protobuf collector that decodes what it receives.
//!
//! Every request is recorded in arrival order with its headers and raw body.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::otlp_logs::{self, LogsRequest};

/// One request received.
#[derive(Debug, Clone)]
pub struct Post {
    pub seq: usize,
    pub at: Instant,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Post {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn logs(&self) -> LogsRequest {
        otlp_logs::decode(&self.body).unwrap_or_else(|e| panic!("undecodable OTLP body: {e}"))
    }

    pub fn is_event(&self) -> bool {
        self.path.ends_with("/client-events")
    }
}

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Never answer client-events (keep the connection open).
    pub hold_events: bool,
    pub events_status: u16,
    pub events_body: String,
    pub logs_status: u16,
    pub token: String,
    pub token_expires_at: String,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            hold_events: false,
            events_status: 200,
            events_body: "{}".into(),
            logs_status: 200,
            token: "issued-otel-token-0001".into(),
            token_expires_at: "2099-01-01T00:00:00Z".into(),
        }
    }
}

#[derive(Default)]
struct State {
    posts: Vec<Post>,
}

pub struct FakeWarp {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
}

impl FakeWarp {
    pub fn start() -> FakeWarp {
        FakeWarp::start_with(Behaviour::default())
    }

    pub fn start_with(behaviour: Behaviour) -> FakeWarp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let (st, bh, sp, hd) = (
            Arc::clone(&state),
            Arc::clone(&behaviour),
            Arc::clone(&stop),
            Arc::clone(&held),
        );
        thread::Builder::new()
            .name("fake-warp".into())
            .spawn(move || {
                // Blocking accept (a polling loop would add milliseconds to every request);
                // `Drop` wakes it with a connection of its own.
                while !sp.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok(_) if sp.load(Ordering::Relaxed) => break,
                        Ok((stream, _)) => {
                            let (st, bh, sp, hd) = (
                                Arc::clone(&st),
                                Arc::clone(&bh),
                                Arc::clone(&sp),
                                Arc::clone(&hd),
                            );
                            thread::Builder::new()
                                .name("fake-warp-conn".into())
                                .spawn(move || serve(stream, &st, &bh, &sp, &hd))
                                .unwrap();
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .unwrap();
        FakeWarp {
            addr,
            state,
            behaviour,
            stop,
            held,
        }
    }

    /// The server root URL (also the collector endpoint: it serves `/v1/logs`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    /// Requests held open without an answer right now (the client has not given up on them).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub fn posts(&self) -> Vec<Post> {
        self.state.0.lock().unwrap().posts.clone()
    }

    pub fn events(&self) -> Vec<Post> {
        self.posts().into_iter().filter(Post::is_event).collect()
    }

    pub fn log_posts(&self) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| p.path == "/v1/logs")
            .collect()
    }

    /// Every log record received so far, in order.
    pub fn records(&self) -> Vec<otlp_logs::LogRecord> {
        self.log_posts()
            .iter()
            .flat_map(|p| p.logs().records)
            .collect()
    }

    /// Waits until `pred` holds for the requests so far; panics with them after `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Post]) -> bool) -> Vec<Post> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        loop {
            if pred(&st.posts) {
                return st.posts.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                // Paths and bodies (event names and timings; no header, where the keys are).
                let seen: Vec<String> = st
                    .posts
                    .iter()
                    .map(|p| format!("{} {}", p.path, String::from_utf8_lossy(&p.body)))
                    .collect();
                panic!("condition not met within {timeout:?}; requests so far: {seen:#?}");
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

impl Drop for FakeWarp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(
    mut stream: TcpStream,
    state: &(Mutex<State>, Condvar),
    behaviour: &Mutex<Behaviour>,
    stop: &AtomicBool,
    held: &AtomicUsize,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::new();
    while let Some(req) = super::collector::read_request(&mut stream, &mut buf) {
        let super::collector::RawRequest {
            path,
            headers,
            body,
            ..
        } = req;
        let b = behaviour.lock().unwrap().clone();
        let is_event = path.ends_with("/client-events");
        {
            let (lock, cv) = state;
            let mut st = lock.lock().unwrap();
            let seq = st.posts.len();
            st.posts.push(Post {
                seq,
                at: Instant::now(),
                path: path.clone(),
                headers,
                body,
            });
            if is_event && b.hold_events {
                held.fetch_add(1, Ordering::SeqCst);
            }
            cv.notify_all();
        }
        if is_event && b.hold_events {
            // A dead endpoint: the request is read, never answered, the socket kept open
            // until the client gives up (EOF) or the fake stops.
            let _ = stream.set_nonblocking(true);
            let mut probe = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut probe) {
                    Ok(0) => break,
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                    _ => thread::sleep(Duration::from_millis(20)),
                }
            }
            held.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let (code, answer) = if is_event {
            (b.events_status, b.events_body)
        } else if path == "/graphql/v2" {
            (
                200,
                serde_json::json!({"data": {"issueTaskIdentityToken": {
                    "__typename": "IssueTaskIdentityTokenOutput",
                    "token": b.token,
                    "expiresAt": b.token_expires_at,
                }}})
                .to_string(),
            )
        } else if path == "/v1/logs" {
            (b.logs_status, String::new())
        } else {
            (404, "not found".into())
        };
        let response = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream
            .write_all(response.as_bytes())
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}
