//! Handshake, headers, TLS trust.

use std::time::Duration;

use oz_agent_worker::link::{LinkEvent, ProxyEnv};
use oz_agent_worker::protocol::{Inbound, TaskCancellation};
use serde_json::json;

use super::*;
use crate::support::log_capture;
use crate::support::oz_server::{OzServer, WS_PATH};

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
