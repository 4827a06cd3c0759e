//! Network faults between the worker and Oz.

use serde_json::json;

use super::*;
use crate::support::harness::TestDir;
use crate::support::oz_server::OzServer;
use crate::support::proxy::TestProxy;

#[test]
fn terminal_message_survives_a_dropped_connection() {
    let dir = TestDir::new("e2e-drop");
    let oz = OzServer::start();
    let _w = start(&dir, &oz, &[]);
    oz.push_json(&assignment("t-drop", None, json!({"STANDIN_SLEEP": "2"})))
        .unwrap();
    let claimed = oz.wait_for_frame(T, |f| f.kind() == "task_claimed" && f.task_id() == "t-drop");
    oz.drop_connection();
    let done = oz.wait_for_frame(T, |f| {
        f.kind() == "task_completed" && f.task_id() == "t-drop"
    });
    assert!(
        done.conn > claimed.conn,
        "completion must arrive on the new connection"
    );
    assert_eq!(
        frames_for(&oz, "t-drop")
            .iter()
            .filter(|f| f.0 == "task_completed")
            .count(),
        1
    );
}

#[test]
fn a_silent_server_is_detected_and_the_worker_reconnects() {
    let dir = TestDir::new("e2e-silent");
    let oz = OzServer::start();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .env("OZ_WORKER_PING_INTERVAL", "200ms")
        .env("OZ_WORKER_PONG_TIMEOUT", "1s")
        .spawn();
    oz.wait_for_connections(1, T);
    w.wait_for_log("Connected to Oz", T);
    oz.go_silent();
    oz.wait_for_connections(2, T);
    w.wait_for_log("Connection closed, will attempt to reconnect", T);
    oz.push_json(&assignment("t-silent", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-silent");
}

#[test]
fn a_rejected_api_key_is_logged_and_retried() {
    let dir = TestDir::new("e2e-401");
    let oz = OzServer::start();
    oz.reject_next(2, 401, None);
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config).spawn();
    w.wait_for_log("API key rejected (HTTP 401)", T);
    oz.wait_for_connections(1, T);
    w.wait_for_log("Connected to Oz", T);
    assert!(oz.handshakes().len() >= 3);
    // Each failed dial is logged once, its delay in one format.
    let log = w.stderr();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Failed to connect"))
        .collect();
    assert_eq!(failures.len(), 2, "{log}");
    assert!(
        failures
            .iter()
            .all(|l| l.contains("API key rejected (HTTP 401), retrying in ")),
        "{log}"
    );
    assert_no_secrets(&w, &[]);
}

#[test]
fn the_worker_reaches_oz_through_an_http_connect_proxy() {
    let dir = TestDir::new("e2e-proxy");
    let oz = OzServer::start();
    let proxy = TestProxy::start();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .args(["--web-socket-url", &oz.url_for_host("oz.test")])
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "example.com")
        .spawn();
    oz.wait_for_connections(1, T);
    w.wait_for_log("Connected to Oz", T);
    let connects = proxy.wait_for_connects(1, T);
    assert_eq!(connects[0].target, format!("oz.test:{}", oz.port()));
    oz.push_json(&assignment("t-proxy", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-proxy");
}
