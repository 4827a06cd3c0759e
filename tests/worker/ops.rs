//! The operations surface through the real binary: /metrics, /healthz, /readyz, the Go
//! worker's OTEL environment, systemd notifications, JSON logs, redaction canaries, drain.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::support::harness::{TestDir, Worker};
use crate::support::oz_server::OzServer;

/// `GET path` on the ops listener: (status, body).
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The address the worker logged for its ops listener.
pub(crate) fn ops_addr(w: &mut Worker) -> String {
    w.wait_for_log("Serving /metrics", T);
    let log = w.stderr();
    assert_eq!(
        log.matches("Serving /metrics").count(),
        1,
        "logged once\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("Serving /metrics"))
        .unwrap();
    line.rsplit("http://").next().unwrap().trim().to_owned()
}

/// The value of one exposition line, e.g. `oz_worker_tasks_claimed_total`.
pub(crate) fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{body}"))
}

#[test]
fn metrics_health_and_readiness_reflect_the_worker() {
    let dir = TestDir::new("e2e-metrics");
    let oz = OzServer::start();
    let mut w = start(
        &dir,
        &oz,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--max-concurrent-tasks",
            "3",
        ],
    );
    let addr = ops_addr(&mut w);
    oz.push_json(&assignment("t-m1", None, json!({}))).unwrap();
    expect(&oz, "task_completed", "t-m1");
    oz.push_json(&assignment("t-m2", None, json!({"STANDIN_EXIT": "2"})))
        .unwrap();
    expect(&oz, "task_failed", "t-m2");

    let (status, body) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&body, "oz_worker_connected"), 1.0);
    assert_eq!(sample(&body, "oz_worker_tasks_max_concurrent"), 3.0);
    assert_eq!(sample(&body, "oz_worker_tasks_claimed_total"), 2.0);
    assert_eq!(sample(&body, "oz_worker_tasks_active"), 0.0);
    assert_eq!(
        sample(
            &body,
            r#"oz_worker_tasks_completed_total{result="succeeded"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&body, r#"oz_worker_tasks_completed_total{result="failed"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &body,
            r#"oz_worker_task_failures_total{phase="backend",reason="agent_invocation"}"#
        ),
        1.0
    );
    // Primed at zero before anything happened, as the Go worker does.
    assert_eq!(
        sample(
            &body,
            r#"oz_worker_tasks_rejected_total{reason="at_capacity"}"#
        ),
        0.0
    );
    assert_eq!(
        sample(
            &body,
            r#"oz_worker_tasks_rejected_total{reason="shutting_down"}"#
        ),
        0.0
    );
    assert!(
        body.contains(r#"worker_id="e2e-worker""#) && body.contains(r#"backend="direct""#),
        "{body}"
    );
    assert!(body.contains("oz_worker_task_duration_seconds_count{result=\"succeeded\"} 1"));

    assert_eq!(get(&addr, "/healthz").0, 200);
    assert_eq!(get(&addr, "/readyz").0, 200);
    assert_eq!(get(&addr, "/nope").0, 404);

    // Losing Oz makes the worker unready (but still alive).
    drop(oz);
    let deadline = Instant::now() + T;
    while get(&addr, "/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "readyz never turned 503");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&addr, "/healthz").0, 200);
    let (_, body) = get(&addr, "/metrics");
    assert_eq!(sample(&body, "oz_worker_connected"), 0.0);
    assert!(
        sample(
            &body,
            r#"oz_worker_websocket_reconnects_total{reason="remote_close"}"#
        ) >= 1.0
    );
}

#[test]
fn the_go_workers_otel_prometheus_environment_works_unchanged() {
    let dir = TestDir::new("e2e-otel-env");
    let oz = OzServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .env("OTEL_METRICS_EXPORTER", "prometheus")
        .env("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
        .env("OTEL_EXPORTER_PROMETHEUS_PORT", port.to_string())
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    let (status, body) = get(&format!("127.0.0.1:{port}"), "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&body, "oz_worker_connected"), 1.0);
}

#[test]
fn systemd_gets_ready_status_watchdog_and_stopping() {
    let dir = TestDir::new("e2e-sd-notify");
    let oz = OzServer::start();
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .spawn();
    let mut seen: Vec<String> = Vec::new();
    let recv_until = |seen: &mut Vec<String>, pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + T;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = pred(&msg);
                seen.push(msg);
                if hit {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "notifications so far: {seen:?}");
        }
    };
    recv_until(&mut seen, &|m| m.contains("READY=1"));
    recv_until(&mut seen, &|m| m.contains("WATCHDOG=1"));
    recv_until(&mut seen, &|m| m.starts_with("STATUS=Connected to Oz"));
    // The agent must not inherit the notify socket.
    let record = dir.join("agent-env.txt");
    oz.push_json(&assignment(
        "t-sd",
        None,
        json!({"STANDIN_RECORD": record.display().to_string()}),
    ))
    .unwrap();
    expect(&oz, "task_completed", "t-sd");
    let env = std::fs::read_to_string(&record).unwrap();
    assert!(
        !env.contains("NOTIFY_SOCKET") && !env.contains("WATCHDOG_"),
        "{env}"
    );
    w.signal(15);
    recv_until(&mut seen, &|m| m.contains("STOPPING=1"));
    assert_eq!(w.wait(T).code(), Some(0));
}

#[test]
fn json_logs_carry_the_task_id() {
    let dir = TestDir::new("e2e-json-logs");
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &["--log-format", "json"]);
    oz.push_json(&assignment("t-json", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-json");
    w.signal(15);
    assert_eq!(w.wait(T).code(), Some(0));
    let mut task_lines = 0;
    for line in w.stderr().lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["time"].is_string() && v["level"].is_string() && v["message"].is_string());
        if v["task_id"] == "t-json" {
            task_lines += 1;
        }
    }
    assert!(
        task_lines >= 3,
        "agent output and lifecycle lines carry task_id\n{}",
        w.stderr()
    );
}

#[test]
fn no_secret_reaches_the_log_at_debug_level() {
    let dir = TestDir::new("e2e-canary");
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &["--log-level", "debug"]);
    let canaries = [
        "canary-task-api-key-91f2",
        "canary-github-token-77ab",
        "canary multi word secret 3c",
    ];
    // The agent prints every secret it got, on stdout and stderr: the worker forwards its
    // output, so every line must come out redacted.
    oz.push_json(&assignment(
        "t-canary",
        Some("e1"),
        json!({
            "WARP_API_KEY": canaries[0],
            "GITHUB_ACCESS_TOKEN": canaries[1],
            "OTHER_SECRET": canaries[2],
            "STANDIN_RUN": "echo \"key=$WARP_API_KEY gh=$GITHUB_ACCESS_TOKEN\"; echo \"$OTHER_SECRET\" >&2; echo \"Authorization: Bearer $GITHUB_ACCESS_TOKEN\"",
        }),
    ))
    .unwrap();
    expect(&oz, "task_completed", "t-canary");
    w.wait_for_log("Frame from Oz", T);
    w.signal(15);
    assert_eq!(w.wait(T).code(), Some(0));
    assert_no_secrets(&w, &canaries);
    let log = w.stderr();
    assert!(
        log.contains("[REDACTED]"),
        "the agent's echo should show redactions\n{log}"
    );
    // Debug frame dumps show env_vars keys, never their values.
    assert!(
        log.lines()
            .any(|l| l.contains("Frame from Oz") && l.contains("GITHUB_ACCESS_TOKEN")),
        "{log}"
    );
}

#[test]
fn drain_lets_running_tasks_finish_during_a_rolling_restart() {
    let dir = TestDir::new("e2e-drain");
    let oz = OzServer::start();
    let mut w = start(
        &dir,
        &oz,
        &["--drain-timeout", "60s", "--metrics-addr", "127.0.0.1:0"],
    );
    let addr = ops_addr(&mut w);
    oz.push_json(&assignment("t-long", None, json!({"STANDIN_SLEEP": "2"})))
        .unwrap();
    expect(&oz, "task_claimed", "t-long");
    w.signal(15);
    w.wait_for_log("Draining", T);
    assert_eq!(
        get(&addr, "/readyz").0,
        503,
        "a draining worker is not ready"
    );
    oz.push_json(&assignment("t-new", None, json!({}))).unwrap();
    assert_eq!(
        expect(&oz, "task_rejected", "t-new")["reason"],
        "worker is shutting down"
    );
    // The running task is not cancelled: it finishes and reports success.
    assert_eq!(
        expect(&oz, "task_completed", "t-long")["message"],
        "Task completed successfully"
    );
    assert_eq!(w.wait(T).code(), Some(0), "{}", w.dump());
    assert_eq!(oz.wait_for_client_close(0, T), Some(1000));
}
