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

/// A frame that arrives in the same TCP segment as the 101 response is read by the handshake
/// into tungstenite's buffer, where poll(2) cannot see it. It must be delivered at once, not at
/// the next ping (found by the claim-latency benchmark: one claim took the whole ping interval).
#[test]
fn a_frame_sent_with_the_handshake_response_is_delivered_at_once() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/selfhosted/worker/ws",
        listener.local_addr().unwrap().port()
    );
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut key = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line
                .split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key"))
            {
                key = v.1.trim().to_owned();
            }
            if line == "\r\n" {
                break;
            }
        }
        let frame = br#"{"type":"task_cancellation","data":{"task_id":"in-the-101-segment"}}"#;
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            tungstenite::handshake::derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        // One unmasked text frame (server to client), in the same write as the response.
        out.push(0x81);
        out.push(u8::try_from(frame.len()).unwrap());
        out.extend_from_slice(frame);
        let mut stream = stream;
        stream.write_all(&out).unwrap();
        // Keep the connection open (and quiet) until the test is done: closing it would wake
        // the link and hide the bug.
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    let timing = Timing {
        ping_interval: Duration::from_secs(600),
        pong_timeout: Duration::from_secs(1200),
        ..quiet_timing()
    };
    let mut h = start(config(url, "tail-bytes", timing), ProxyEnv::none());
    // `wait` gives up after 30 s, long before the 600 s ping would have woken the link.
    h.wait("the frame sent with the 101", |e| {
        matches!(e, LinkEvent::Message(Inbound::Cancellation(c)) if c.task_id == "in-the-101-segment")
    });
    let _ = done_tx.send(());
    h.shutdown(Duration::from_secs(2));
    let _ = server.join();
}
