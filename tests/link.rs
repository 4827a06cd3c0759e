//! The Oz link through the library API, against the fake Oz server (and the test proxy).

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use oz_agent_worker::link::{Link, LinkConfig, LinkEvent, ProxyEnv, ShutdownReport};
use oz_agent_worker::protocol::{Inbound, Outbound, TaskCancellation};
use oz_agent_worker::settings::{Secret, Timing};
use serde_json::json;

use crate::support::log_capture;
use crate::support::oz_server::{OzServer, WS_PATH};
use crate::support::proxy::TestProxy;

/// Upper bound for anything that should happen "soon" (generous: loaded 2-core CI).
const T: Duration = Duration::from_secs(30);

/// Timing for tests that must not see pings or stalls, with quick redials.
fn quiet_timing() -> Timing {
    Timing {
        ping_interval: Duration::from_secs(20),
        pong_timeout: Duration::from_secs(60),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        write_timeout: Duration::from_secs(10),
        ..Timing::default()
    }
}

struct Harness {
    link: Option<Link>,
    events: Receiver<LinkEvent>,
    seen: Vec<(Instant, LinkEvent)>,
    key: String,
}

fn config(url: String, test: &str, timing: Timing) -> LinkConfig {
    LinkConfig {
        url,
        worker_id: format!("worker-{test}"),
        api_key: Secret::new(format!("sk-{test}-{}", std::process::id())),
        ca_bundle: None,
        timing,
        version: "9.8.7-test".into(),
    }
}

fn start(cfg: LinkConfig, proxy: ProxyEnv) -> Harness {
    log_capture::install();
    let key = cfg.api_key.expose().to_owned();
    let (tx, rx) = crossbeam_channel::unbounded();
    let link = Link::spawn_with_proxy(cfg, tx, proxy).expect("spawn link");
    Harness {
        link: Some(link),
        events: rx,
        seen: Vec::new(),
        key,
    }
}

impl Harness {
    fn link(&self) -> &Link {
        self.link.as_ref().expect("link running")
    }

    /// The next event matching `pred` (earlier events are kept in `seen`).
    fn wait(&mut self, what: &str, pred: impl Fn(&LinkEvent) -> bool) -> (Instant, LinkEvent) {
        let end = Instant::now() + T;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) => {
                    let at = Instant::now();
                    self.seen.push((at, ev.clone()));
                    if pred(&ev) {
                        return (at, ev);
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; events so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    fn connected(&mut self) -> Instant {
        self.wait("Connected", |e| matches!(e, LinkEvent::Connected))
            .0
    }

    fn disconnected(&mut self) -> String {
        match self
            .wait("Disconnected", |e| {
                matches!(e, LinkEvent::Disconnected { .. })
            })
            .1
        {
            LinkEvent::Disconnected { reason } => reason,
            _ => unreachable!(),
        }
    }

    fn dial_failed(&mut self) -> (String, Duration) {
        match self
            .wait("DialFailed", |e| matches!(e, LinkEvent::DialFailed { .. }))
            .1
        {
            LinkEvent::DialFailed { error, retry_in } => (error, retry_in),
            _ => unreachable!(),
        }
    }

    fn shutdown(&mut self, within: Duration) -> ShutdownReport {
        self.link
            .take()
            .expect("link running")
            .shutdown(Instant::now() + within)
    }

    fn assert_key_never_logged(&self) {
        let leaks = log_capture::matching(&self.key);
        assert!(leaks.is_empty(), "the API key reached the log: {leaks:?}");
    }
}

fn rejected(task: usize) -> Outbound {
    Outbound::Rejected {
        task_id: format!("task-{task}"),
        reason: "worker at maximum concurrency".into(),
    }
}

/// Task numbers of the frames, in arrival order.
fn task_numbers(frames: &[crate::support::oz_server::Frame]) -> Vec<usize> {
    frames
        .iter()
        .map(|f| {
            f.task_id()
                .strip_prefix("task-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected frame {}", f.text))
        })
        .collect()
}

#[test]
fn ws_handshake_sets_worker_id_and_headers_and_never_logs_the_key() {
    let oz = OzServer::start();
    let url = format!("{}?b=2&worker_id=old&a=x+y", oz.url());
    let mut h = start(config(url, "headers", quiet_timing()), ProxyEnv::none());
    h.connected();
    let hs = &oz.wait_for_handshakes(1, T)[0];
    assert_eq!(hs.path, WS_PATH);
    assert_eq!(hs.query, "a=x+y&b=2&worker_id=worker-headers");
    assert_eq!(
        hs.query_param("worker_id").as_deref(),
        Some("worker-headers")
    );
    assert_eq!(
        hs.header("authorization"),
        Some(format!("Bearer {}", h.key).as_str())
    );
    assert_eq!(
        hs.header("x-warp-worker-capabilities"),
        Some("execution-scoped-cancellation-v1")
    );
    assert_eq!(hs.header("x-warp-worker-version"), Some("9.8.7-test"));
    assert_eq!(hs.header("user-agent"), Some("oz-agent-worker/9.8.7-test"));
    assert_eq!(
        hs.header("host"),
        Some(format!("127.0.0.1:{}", oz.port()).as_str())
    );

    let expected = format!(
        "Connecting to ws://127.0.0.1:{}{WS_PATH}?a=x+y&b=2&worker_id=worker-headers",
        oz.port()
    );
    let lines = log_capture::matching(&expected);
    assert!(
        lines.iter().any(|l| l.level == log::Level::Info),
        "missing INFO {expected:?}"
    );
    let report = h.shutdown(T);
    assert!(report.closed_cleanly, "{report:?}");
    h.assert_key_never_logged();
}

#[test]
fn invalid_version_header_is_left_out() {
    let oz = OzServer::start();
    let mut cfg = config(oz.url(), "version", quiet_timing());
    cfg.version = "1.0\u{1}".into();
    let mut h = start(cfg, ProxyEnv::none());
    h.connected();
    let hs = &oz.wait_for_handshakes(1, T)[0];
    assert_eq!(hs.header("x-warp-worker-version"), None);
    assert_eq!(hs.header("user-agent"), Some("oz-agent-worker"));
    assert!(hs.header("authorization").is_some());
    h.shutdown(T);
}

#[test]
fn wss_with_ca_bundle_delivers_and_closes_cleanly() {
    let oz = OzServer::start_tls();
    let mut cfg = config(oz.url(), "wss", quiet_timing());
    cfg.ca_bundle = oz.ca_bundle();
    let mut h = start(cfg, ProxyEnv::none());
    h.connected();
    h.link().send(rejected(1));
    let f = oz.wait_for_frame(T, |f| f.kind() == "task_rejected");
    assert_eq!(f.task_id(), "task-1");
    oz.push_json(&json!({"type": "task_cancellation", "data": {"task_id": "t9"}}))
        .unwrap();
    let (_, ev) = h.wait("cancellation", |e| matches!(e, LinkEvent::Message(_)));
    assert_eq!(
        ev,
        LinkEvent::Message(Inbound::Cancellation(TaskCancellation {
            task_id: "t9".into(),
            execution_id: None
        }))
    );
    let report = h.shutdown(T);
    assert_eq!(report.undelivered, 0);
    assert!(report.closed_cleanly && report.stopped, "{report:?}");
    assert_eq!(oz.wait_for_client_close(0, T), Some(1000));
    h.assert_key_never_logged();
}

#[test]
fn wss_without_the_ca_is_refused_and_retried() {
    let oz = OzServer::start_tls();
    let mut cfg = config(oz.url(), "untrusted", quiet_timing());
    cfg.ca_bundle = Some(crate::support::oz_server::unrelated_ca_bundle());
    let mut h = start(cfg, ProxyEnv::none());
    for _ in 0..2 {
        let (error, _) = h.dial_failed();
        assert!(
            error.starts_with("TLS handshake with 127.0.0.1:"),
            "{error}"
        );
        assert!(error.contains("invalid peer certificate"), "{error}");
    }
    assert!(
        oz.handshakes().is_empty(),
        "no HTTP request may follow a failed TLS handshake"
    );
    let report = h.shutdown(Duration::from_millis(200));
    assert!(report.stopped);
}

#[test]
fn messages_queued_before_connecting_arrive_in_order() {
    let oz = OzServer::start();
    oz.reject_next(1, 503, None);
    let mut h = start(config(oz.url(), "queued", quiet_timing()), ProxyEnv::none());
    let (error, _) = h.dial_failed();
    assert_eq!(error, "handshake failed: HTTP 503");
    for i in 0..20 {
        h.link().send(rejected(i));
    }
    h.connected();
    let frames = oz.wait_for_frames(20, T);
    assert_eq!(task_numbers(&frames), (0..20).collect::<Vec<_>>());
    assert!(frames.iter().all(|f| f.conn == 0));
    h.shutdown(T);
}

#[test]
fn dropped_connection_reconnects_and_later_messages_arrive_in_order() {
    let oz = OzServer::start();
    let mut h = start(config(oz.url(), "drop", quiet_timing()), ProxyEnv::none());
    h.connected();
    for i in 0..10 {
        h.link().send(rejected(i));
    }
    oz.wait_for_frames(10, T);
    let dropped = oz.drop_connection();
    for i in 10..30 {
        h.link().send(rejected(i));
    }
    let reason = h.disconnected();
    assert!(!reason.is_empty());
    h.connected();
    let frames = oz.wait_for_frame(T, |f| f.task_id() == "task-29");
    assert_eq!(frames.conn, dropped + 1);
    let all = oz.frames();
    assert_eq!(
        task_numbers(&all),
        (0..30).collect::<Vec<_>>(),
        "none lost, none doubled, in order"
    );
    assert!(all[10..].iter().all(|f| f.conn == dropped + 1));
    h.shutdown(T);
}

#[test]
fn stalled_writes_reconnect_and_unflushed_frames_are_written_again() {
    let oz = OzServer::start();
    let timing = Timing {
        write_timeout: Duration::from_secs(1),
        ..quiet_timing()
    };
    let mut h = start(config(oz.url(), "stall", timing), ProxyEnv::none());
    h.connected();
    oz.go_silent();
    // Far more than the socket buffers on both ends hold, so flush() must block.
    let big = "x".repeat(256 << 10);
    let n = 96;
    for i in 0..n {
        h.link().send(Outbound::Failed {
            task_id: format!("task-{i}"),
            execution_id: None,
            message: big.clone(),
            failure_reason: None,
            exit_code: None,
        });
    }
    let reason = h.disconnected();
    assert!(reason.contains("writes stalled"), "{reason}");
    h.connected();
    oz.wait_for_frame(T, |f| f.task_id() == format!("task-{}", n - 1));
    let frames = oz.frames();
    assert!(
        frames.iter().all(|f| f.conn == 1),
        "the silent connection read nothing"
    );
    let got = task_numbers(&frames);
    let first = got[0];
    assert_eq!(
        got,
        (first..n).collect::<Vec<_>>(),
        "a contiguous, ordered tail"
    );
    // Frames the kernel had accepted on the dead connection are gone (no acks in the protocol);
    // everything the link still held was written again.
    assert!(first < n - 1);
    h.shutdown(T);
}

#[test]
fn silent_server_is_detected_by_the_ping_timeout() {
    let oz = OzServer::start();
    let timing = Timing {
        ping_interval: Duration::from_millis(100),
        pong_timeout: Duration::from_millis(600),
        ..quiet_timing()
    };
    let mut h = start(config(oz.url(), "silent", timing), ProxyEnv::none());
    h.connected();
    oz.go_silent();
    let reason = h.disconnected();
    assert!(reason.contains("ping timeout"), "{reason}");
    h.connected();
    oz.wait_for_connections(2, T);
    h.shutdown(T);
}

#[test]
fn pings_keep_a_healthy_connection_alive() {
    let oz = OzServer::start();
    let timing = Timing {
        ping_interval: Duration::from_millis(50),
        pong_timeout: Duration::from_secs(3),
        ..quiet_timing()
    };
    let mut h = start(config(oz.url(), "alive", timing), ProxyEnv::none());
    h.connected();
    // The server never sends data: only pongs keep the connection alive past pong_timeout.
    let end = Instant::now() + Duration::from_secs(7);
    while Instant::now() < end {
        if let Ok(ev) = h.events.recv_timeout(Duration::from_millis(200)) {
            h.seen.push((Instant::now(), ev));
        }
    }
    h.link().send(rejected(1));
    oz.wait_for_frame(T, |f| f.task_id() == "task-1");
    assert!(
        h.seen
            .iter()
            .all(|(_, e)| !matches!(e, LinkEvent::Disconnected { .. })),
        "{:?}",
        h.seen
    );
    assert_eq!(oz.connections().len(), 1, "{:?}", oz.connections());
    h.shutdown(T);
}

#[test]
fn rejected_api_key_is_logged_and_retried() {
    let oz = OzServer::start();
    oz.reject_next(2, 401, None);
    let mut h = start(
        config(oz.url(), "unauthorized", quiet_timing()),
        ProxyEnv::none(),
    );
    for _ in 0..2 {
        let (error, _) = h.dial_failed();
        assert_eq!(error, "API key rejected (HTTP 401)");
    }
    h.connected();
    let lines = log_capture::matching("API key rejected (HTTP 401)");
    assert!(
        lines.iter().any(|l| l.level == log::Level::Error),
        "{lines:?}"
    );
    h.shutdown(T);
    h.assert_key_never_logged();
}

#[test]
fn retry_after_is_honoured() {
    let oz = OzServer::start();
    oz.reject_next(1, 429, Some(1));
    let mut h = start(
        config(oz.url(), "retry-after", quiet_timing()),
        ProxyEnv::none(),
    );
    let (error, retry_in) = h.dial_failed();
    assert_eq!(error, "handshake failed: HTTP 429 (Retry-After 1s)");
    assert!(retry_in >= Duration::from_secs(1), "{retry_in:?}");
    h.connected();
    let hs = oz.wait_for_handshakes(2, T);
    assert!(
        hs[1].at - hs[0].at >= Duration::from_secs(1),
        "redialled after {:?}",
        hs[1].at - hs[0].at
    );
    h.shutdown(T);
}

#[test]
fn oversized_frame_ends_the_connection_without_harm() {
    let oz = OzServer::start();
    let mut h = start(
        config(oz.url(), "oversized", quiet_timing()),
        ProxyEnv::none(),
    );
    h.connected();
    // The link refuses it from the frame header and hangs up; the push may fail midway.
    let _ = oz.push_text(&"y".repeat((16 << 20) + 1));
    let reason = h.disconnected();
    assert!(reason.contains("frame too large"), "{reason}");
    h.connected();
    oz.wait_for_connections(2, T);
    oz.push_json(&json!({"type": "task_cancellation", "data": {"task_id": "after"}}))
        .unwrap();
    h.wait(
        "a message on the new connection",
        |e| matches!(e, LinkEvent::Message(Inbound::Cancellation(c)) if c.task_id == "after"),
    );
    h.shutdown(T);
}

#[test]
fn malformed_unknown_and_binary_frames_do_not_kill_the_link() {
    let oz = OzServer::start();
    let mut h = start(
        config(oz.url(), "garbage", quiet_timing()),
        ProxyEnv::none(),
    );
    h.connected();
    oz.push_text("not json at all").unwrap();
    oz.push_text(r#"{"type": 7}"#).unwrap();
    oz.push_text(r#"{"type":"task_cancellation","data":{}}"#)
        .unwrap();
    oz.push_binary(vec![0, 1, 2, 3]).unwrap();
    oz.push_json(&json!({"type": "brand_new", "data": {"x": 1}}))
        .unwrap();
    oz.push_json(
        &json!({"type": "task_assignment", "data": {"task_id": "t-bad", "env_vars": "oops"}}),
    )
    .unwrap();
    oz.push_json(&json!({"type": "task_cancellation", "data": {"task_id": "last"}}))
        .unwrap();
    h.wait(
        "the last cancellation",
        |e| matches!(e, LinkEvent::Message(Inbound::Cancellation(c)) if c.task_id == "last"),
    );
    let messages: Vec<_> = h
        .seen
        .iter()
        .filter_map(|(_, e)| match e {
            LinkEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[0], Inbound::Unknown("brand_new".into()));
    assert!(
        matches!(&messages[1], Inbound::BadAssignment { task_id: Some(t), .. } if t == "t-bad"),
        "{:?}",
        messages[1]
    );
    assert!(
        h.seen
            .iter()
            .all(|(_, e)| !matches!(e, LinkEvent::Disconnected { .. })),
        "{:?}",
        h.seen
    );
    assert_eq!(oz.connections().len(), 1);
    assert!(
        !log_capture::matching("Dropping a message from the server: malformed message envelope")
            .is_empty()
    );
    assert!(!log_capture::matching("Ignoring a binary frame from the server (4 bytes)").is_empty());
    // The frame text itself never reaches the log.
    assert!(log_capture::matching("not json at all").is_empty());
    h.shutdown(T);
}

#[test]
fn server_close_frame_is_answered_and_the_link_reconnects() {
    let oz = OzServer::start();
    let mut h = start(
        config(oz.url(), "server-close", quiet_timing()),
        ProxyEnv::none(),
    );
    h.connected();
    oz.close_connection(4000, "go away");
    let reason = h.disconnected();
    assert!(reason.contains("code 4000: go away"), "{reason}");
    assert_eq!(
        oz.wait_for_client_close(0, T),
        Some(4000),
        "the close was echoed"
    );
    h.connected();
    oz.wait_for_connections(2, T);
    h.shutdown(T);
}

#[test]
fn ws_through_a_connect_proxy_with_credentials() {
    let oz = OzServer::start();
    let proxy = TestProxy::start();
    let env = ProxyEnv {
        http_proxy: Some(proxy.url_with_credentials("user", "pa55")),
        https_proxy: None,
        no_proxy: Some("example.com,.internal,10.0.0.0/8".into()),
    };
    let mut h = start(
        config(oz.url_for_host("oz.test"), "proxy-ws", quiet_timing()),
        env,
    );
    h.connected();
    let connects = proxy.wait_for_connects(1, T);
    assert_eq!(connects[0].target, format!("oz.test:{}", oz.port()));
    assert_eq!(
        connects[0].authorization.as_deref(),
        Some("Basic dXNlcjpwYTU1")
    );
    let hs = &oz.wait_for_handshakes(1, T)[0];
    assert_eq!(
        hs.header("host"),
        Some(format!("oz.test:{}", oz.port()).as_str())
    );
    h.link().send(rejected(1));
    oz.wait_for_frame(T, |f| f.task_id() == "task-1");
    h.shutdown(T);
    assert!(
        log_capture::matching("pa55").is_empty(),
        "proxy credentials reached the log"
    );
}

#[test]
fn wss_through_a_connect_proxy_verifies_the_target_name() {
    let oz = OzServer::start_tls();
    let proxy = TestProxy::start();
    let env = ProxyEnv {
        http_proxy: None,
        https_proxy: Some(proxy.url()),
        no_proxy: Some("example.com".into()),
    };
    let mut cfg = config(oz.url_for_host("oz.test"), "proxy-wss", quiet_timing());
    cfg.ca_bundle = oz.ca_bundle();
    let mut h = start(cfg, env);
    h.connected();
    let connects = proxy.wait_for_connects(1, T);
    assert_eq!(connects[0].target, format!("oz.test:{}", oz.port()));
    assert_eq!(connects[0].authorization, None);
    h.link().send(rejected(2));
    oz.wait_for_frame(T, |f| f.task_id() == "task-2");
    let report = h.shutdown(T);
    assert!(report.closed_cleanly);
}

#[test]
fn proxy_refusal_is_a_dial_error_naming_the_status() {
    let oz = OzServer::start();
    let proxy = TestProxy::start();
    proxy.reject_with(407);
    let env = ProxyEnv {
        http_proxy: Some(proxy.url_with_credentials("u", "s3cr3t")),
        ..ProxyEnv::none()
    };
    let mut h = start(
        config(oz.url_for_host("oz.test"), "proxy-407", quiet_timing()),
        env,
    );
    let (error, _) = h.dial_failed();
    let addr = proxy.url().trim_start_matches("http://").to_owned();
    assert_eq!(error, format!("proxy {addr} refused CONNECT: HTTP 407"));
    h.shutdown(Duration::from_millis(100));
    assert!(log_capture::matching("s3cr3t").is_empty());
}

#[test]
fn loopback_targets_never_use_the_proxy() {
    let oz = OzServer::start();
    let proxy = TestProxy::start();
    let env = ProxyEnv {
        http_proxy: Some(proxy.url()),
        ..ProxyEnv::none()
    };
    let mut h = start(config(oz.url(), "loopback", quiet_timing()), env);
    h.connected();
    h.shutdown(T);
    assert!(proxy.connects().is_empty(), "{:?}", proxy.connects());
}

#[test]
fn shutdown_flushes_the_queue_before_close_1000() {
    let oz = OzServer::start();
    let mut h = start(config(oz.url(), "flush", quiet_timing()), ProxyEnv::none());
    h.connected();
    for i in 0..50 {
        h.link().send(rejected(i));
    }
    let report = h.shutdown(T);
    assert_eq!(
        report,
        ShutdownReport {
            undelivered: 0,
            closed_cleanly: true,
            stopped: true
        }
    );
    let frames = oz.wait_for_frames(50, T);
    assert_eq!(task_numbers(&frames), (0..50).collect::<Vec<_>>());
    assert_eq!(oz.wait_for_client_close(0, T), Some(1000));
    let conn = oz.wait_for_disconnect(0, T);
    assert!(conn.closed_at.unwrap() >= frames[49].at);
}

#[test]
fn shutdown_while_disconnected_dials_to_flush() {
    let oz = OzServer::start();
    oz.reject_next(2, 503, None);
    let mut h = start(
        config(oz.url(), "flush-redial", quiet_timing()),
        ProxyEnv::none(),
    );
    h.dial_failed();
    h.link().send(rejected(1));
    h.link().send(rejected(2));
    let report = h.shutdown(T);
    assert_eq!(report.undelivered, 0, "{report:?}");
    assert!(report.closed_cleanly);
    let frames = oz.wait_for_frames(2, T);
    assert_eq!(task_numbers(&frames), [1, 2]);
}

#[test]
fn shutdown_while_unreachable_returns_by_the_deadline_and_counts_undelivered() {
    let oz = OzServer::start();
    oz.reject_next(10_000, 503, None);
    let mut h = start(
        config(oz.url(), "unreachable", quiet_timing()),
        ProxyEnv::none(),
    );
    h.dial_failed();
    for i in 0..3 {
        h.link().send(rejected(i));
    }
    let start = Instant::now();
    let report = h.shutdown(Duration::from_millis(500));
    // Upper bound only: the deadline plus generous scheduling slack.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(report.undelivered, 3, "{report:?}");
    assert!(report.stopped && !report.closed_cleanly);
    assert!(oz.frames().is_empty());
}

#[test]
fn dropping_the_link_without_shutdown_stops_it() {
    let oz = OzServer::start();
    let mut h = start(
        config(oz.url(), "drop-handle", quiet_timing()),
        ProxyEnv::none(),
    );
    h.connected();
    drop(h.link.take());
    // The thread ends and the socket closes; the server sees the connection end.
    let conn = oz.wait_for_disconnect(0, T);
    assert!(conn.closed_at.is_some());
}

#[test]
fn shutdown_interrupts_a_hanging_dial() {
    // A listener that never accepts: the kernel completes TCP handshakes, nobody answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    let slow = Timing {
        write_timeout: Duration::from_secs(120),
        ..quiet_timing()
    };
    let cases = [
        (
            "hang-ws",
            format!("ws://127.0.0.1:{port}/ws"),
            ProxyEnv::none(),
        ),
        (
            "hang-wss",
            format!("wss://127.0.0.1:{port}/ws"),
            ProxyEnv::none(),
        ),
        (
            "hang-proxy",
            "ws://oz.test/ws".to_string(),
            ProxyEnv {
                http_proxy: Some(format!("http://127.0.0.1:{port}")),
                ..ProxyEnv::none()
            },
        ),
    ];
    let ca = crate::support::oz_server::unrelated_ca_bundle();
    for (name, url, proxy) in cases {
        let mut cfg = config(url, name, slow.clone());
        cfg.ca_bundle = Some(ca.clone());
        let mut h = start(cfg, proxy);
        h.link().send(rejected(1));
        let report = h.shutdown(Duration::from_millis(300));
        assert!(
            report.stopped,
            "{name}: the thread outlived the deadline: {report:?}"
        );
        assert_eq!(report.undelivered, 1, "{name}");
        assert!(!report.closed_cleanly, "{name}");
    }
}
