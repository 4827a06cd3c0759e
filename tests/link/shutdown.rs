//! Graceful shutdown: flush, close 1000, deadlines.

use std::time::{Duration, Instant};

use oz_agent_worker::link::{ProxyEnv, ShutdownReport};
use oz_agent_worker::settings::Timing;

use super::*;
use crate::support::oz_server::OzServer;

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
