//! Outbound order and delivery across reconnects; liveness.

use std::time::{Duration, Instant};

use oz_agent_worker::link::{LinkEvent, ProxyEnv};
use oz_agent_worker::protocol::Outbound;
use oz_agent_worker::settings::Timing;

use super::*;
use crate::support::oz_server::OzServer;

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
            failure_details: None,
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
