//! `ops::spawn` on 127.0.0.1:0 answering real HTTP requests, including hostile ones.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oz_agent_worker::metrics::{Health, Metrics, RejectReason};
use oz_agent_worker::ops::{self, MAX_CONNECTIONS, OpsHandle};

use super::metrics;

const PATIENCE: Duration = Duration::from_secs(30);

struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

fn read_response(mut s: TcpStream) -> Response {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .expect("the server closes after answering");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head}"));
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn send(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    read_response(s)
}

fn get(addr: SocketAddr, path: &str) -> Response {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    )
}

fn start(health: Arc<Health>) -> (OpsHandle, Arc<Metrics>) {
    let m = metrics(4);
    let h = ops::spawn("127.0.0.1:0", Arc::clone(&m), health).unwrap();
    (h, m)
}

/// Polls `path` until it answers `status` (bounded), running `before` ahead of each try.
fn eventually(addr: SocketAddr, path: &str, status: u16, before: &dyn Fn()) -> Response {
    let deadline = Instant::now() + PATIENCE;
    loop {
        before();
        let r = get(addr, path);
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}; last: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let (h, m) = start(Health::new(Duration::from_secs(3600)));
    let addr = h.local_addr();
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        r.body.len()
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.body.contains("\noz_worker_connected 0\n"));
    assert!(r.body.contains("oz_worker_tasks_max_concurrent 4\n"));
    assert!(
        r.body
            .contains("oz_worker_tasks_rejected_total{reason=\"one_shot_complete\"} 0\n")
    );
    assert!(r.body.contains(
        "oz_worker_info{backend=\"direct\",version=\"0.0.0-test\",worker_id=\"ops-test\"} 1\n"
    ));

    m.set_connected(true);
    m.task_claimed();
    m.task_rejected(RejectReason::AtCapacity);
    let r = get(addr, "/metrics?x=1");
    assert!(r.body.contains("\noz_worker_connected 1\n"));
    assert!(r.body.contains("\noz_worker_tasks_active 1\n"));
    assert!(
        r.body
            .contains("oz_worker_tasks_rejected_total{reason=\"at_capacity\"} 1\n")
    );

    // HEAD: same headers, no body.
    let r = send(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );
    h.shutdown();
}

#[test]
fn healthz_follows_the_supervisor_beat() {
    let health = Health::new(Duration::from_millis(300));
    let (h, _) = start(Arc::clone(&health));
    let addr = h.local_addr();
    let beat = || health.beat();
    let r = eventually(addr, "/healthz", 200, &beat);
    assert_eq!(r.body, "ok\n");
    // No more beats: the loop is stalled.
    let r = eventually(addr, "/healthz", 503, &|| {});
    assert!(
        r.body
            .starts_with("unhealthy: the supervisor loop has not run for"),
        "{}",
        r.body
    );
    // Beats resume.
    eventually(addr, "/healthz", 200, &beat);
    h.shutdown();
}

#[test]
fn readyz_needs_connection_backend_and_no_drain() {
    let health = Health::new(Duration::from_secs(3600));
    let (h, m) = start(Arc::clone(&health));
    let addr = h.local_addr();
    let r = get(addr, "/readyz");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "not ready: not connected to Oz; the backend is not available\n"
    );
    health.set_backend_ok(true);
    assert_eq!(
        get(addr, "/readyz").body,
        "not ready: not connected to Oz\n"
    );
    m.set_connected(true);
    let r = get(addr, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    m.set_connected(false);
    assert_eq!(get(addr, "/readyz").status, 503);
    m.set_connected(true);
    health.set_draining();
    let r = get(addr, "/readyz");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "not ready: shutting down\n")
    );
    // Liveness is independent of readiness.
    assert_eq!(get(addr, "/healthz").status, 200);
    h.shutdown();
}

#[test]
fn wrong_paths_and_methods() {
    let (h, _) = start(Health::new(Duration::from_secs(3600)));
    let addr = h.local_addr();
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/metricsx").status, 404);
    assert_eq!(get(addr, "/../metrics").status, 404);
    let r = send(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(send(addr, b"DELETE /healthz HTTP/1.1\r\n\r\n").status, 405);
    h.shutdown();
}

#[test]
fn hostile_requests_get_answers_not_panics() {
    let (h, _) = start(Health::new(Duration::from_secs(3600)));
    let addr = h.local_addr();
    // Garbage, a non-HTTP/1 version, the HTTP/2 preface, absolute-form targets.
    assert_eq!(send(addr, b"\x00\x01\x02\xff\r\n\r\n").status, 400);
    assert_eq!(send(addr, b"GET /metrics HTTP/3\r\n\r\n").status, 505);
    assert_eq!(send(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").status, 400);
    assert_eq!(
        send(addr, b"GET http://x/metrics HTTP/1.1\r\n\r\n").status,
        400
    );
    // A head that never ends within the size cap.
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while huge.len() < 64 << 10 {
        huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let mut s = connect(addr);
    // The server may answer and close before it has read everything; a write error then is
    // expected, the answer is what counts.
    let _ = s.write_all(&huge);
    assert_eq!(read_response(s).status, 431);
    // A client that hangs up mid-head gets nothing and breaks nothing.
    let mut s = connect(addr);
    s.write_all(b"GET /metr").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // A client that connects and closes at once.
    drop(TcpStream::connect(addr).unwrap());
    // The listener still works.
    assert_eq!(get(addr, "/healthz").status, 200);
    h.shutdown();
}

#[test]
fn slow_clients_time_out_without_blocking_others() {
    let (h, _) = start(Health::new(Duration::from_secs(3600)));
    let addr = h.local_addr();
    let mut slow = connect(addr);
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
    // Another client is answered while the slow one holds its connection.
    assert_eq!(get(addr, "/healthz").status, 200);
    // The slow one gets 408 once the request deadline passes.
    let r = read_response(slow);
    assert_eq!(r.status, 408);
    h.shutdown();
}

#[test]
fn connection_flood_is_refused_then_recovers() {
    let (h, _) = start(Health::new(Duration::from_secs(3600)));
    let addr = h.local_addr();
    // Idle connections occupy every handler slot (each waits for its request head).
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS).map(|_| connect(addr)).collect();
    // Accepted in order, so the next one finds every slot taken.
    let extra = connect(addr);
    let r = read_response(extra);
    assert_eq!((r.status, r.body.as_str()), (503, "busy\n"));
    // Hanging up frees the slots.
    drop(idle);
    eventually(addr, "/healthz", 200, &|| {});
    h.shutdown();
}

#[test]
fn shutdown_closes_the_port() {
    let (h, _) = start(Health::new(Duration::from_secs(3600)));
    let addr = h.local_addr();
    assert_eq!(get(addr, "/healthz").status, 200);
    h.shutdown();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn bad_addresses_are_errors() {
    let m = metrics(0);
    let e = ops::spawn(
        "nonsense",
        Arc::clone(&m),
        Health::new(Duration::from_secs(1)),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid metrics address: \"nonsense\" is not HOST:PORT"
    );
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = ops::spawn(&addr, m, Health::new(Duration::from_secs(1))).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cannot listen on {addr} for /metrics:")),
        "{e}"
    );
}

/// The Go worker's chart environment (`OTEL_METRICS_EXPORTER=prometheus` plus host/port)
/// starts the same listener; `localhost` binds 127.0.0.1 as Go does.
#[test]
fn go_worker_prometheus_environment_starts_the_listener() {
    let env = |k: &str| match k {
        "OTEL_METRICS_EXPORTER" => Some("prometheus".to_owned()),
        "OTEL_EXPORTER_PROMETHEUS_PORT" => Some("0".to_owned()),
        _ => None,
    };
    let plan = oz_agent_worker::daemon::exporters::plan(None, &env);
    assert_eq!(plan.listen.as_deref(), Some("localhost:0"));
    assert!(plan.otlp.is_none() && plan.warnings.is_empty());
    let h = ops::spawn(
        plan.listen.as_deref().unwrap(),
        metrics(0),
        Health::new(Duration::from_secs(3600)),
    )
    .unwrap();
    let addr = h.local_addr();
    assert!(addr.ip().is_loopback() && addr.is_ipv4(), "{addr}");
    assert_eq!(get(addr, "/metrics").status, 200);
    h.shutdown();
}
