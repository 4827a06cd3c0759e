//! Server-side faults: rejected handshakes, oversized and malformed frames, close frames.

use std::time::Duration;

use oz_agent_worker::link::{LinkEvent, ProxyEnv};
use oz_agent_worker::protocol::Inbound;
use serde_json::json;

use super::*;
use crate::support::log_capture;
use crate::support::oz_server::OzServer;

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
