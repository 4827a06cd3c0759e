//! Setup events and task-log export, end to end: the real binary (direct backend), the fake
//! Oz server, and a fake of Warp's REST endpoints that also collects OTLP logs.

use serde_json::{Value, json};

use super::*;
use crate::support::harness::{TestDir, Worker};
use crate::support::oz_server::OzServer;
use crate::support::warp_api::{Behaviour, FakeWarp};

const TASK_KEY: &str = "task-api-key-canary-51c2";
const WORKLOAD: &str = "workload-token-canary-9d0e";
const SECRET: &str = "env-secret-canary-77aa";
const BOOT: &str = "bootstrap-token-canary-3b1f";

fn start_reporting(dir: &TestDir, oz: &OzServer, warp: &FakeWarp, extra: &[&str]) -> Worker {
    let config = direct_config(dir, "    setup_command: echo setup-hook-ran\n");
    let mut w = worker(dir, oz, &config)
        .args(["--server-root-url", &warp.url()])
        .args(extra)
        .spawn();
    oz.wait_for_connections(1, T);
    w.wait_for_log("Connected to Oz", T);
    w
}

/// An assignment with task credentials, a canary secret and (optionally) log collection.
fn reporting_assignment(task_id: &str, run: &str, collector: Option<&str>) -> Value {
    let mut a = assignment(
        task_id,
        Some("exec-1"),
        json!({
            "WARP_API_KEY": TASK_KEY,
            "WARP_WORKLOAD_TOKEN": WORKLOAD,
            "SECRET_VALUE": SECRET,
            "STANDIN_RUN": run,
        }),
    );
    if let Some(endpoint) = collector {
        a["data"]["telemetry_collection"] = json!({
            "endpoint": endpoint,
            "tracing_enabled": false,
            "logging_enabled": true,
            "bootstrap_token": {"token": BOOT, "expires_at": "2099-01-01T00:00:00Z"},
        });
    }
    a
}

#[test]
fn setup_events_carry_the_task_credentials_and_the_event_body() {
    let dir = TestDir::new("rep-events");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let w = start_reporting(&dir, &oz, &warp, &[]);
    oz.push_json(&reporting_assignment("t-ev,1", "true", None))
        .unwrap();
    expect(&oz, "task_claimed", "t-ev,1");
    expect(&oz, "task_completed", "t-ev,1");
    let posts = warp.wait_for(T, |p| p.iter().any(|p| p.is_event()));
    let events: Vec<_> = posts.iter().filter(|p| p.is_event()).collect();
    assert_eq!(events.len(), 1, "only the direct setup hook is a phase");
    let e = events[0];
    // The run id is path-escaped.
    assert_eq!(e.path, "/api/v1/agent/runs/t-ev%2C1/client-events");
    assert_eq!(
        e.header("authorization"),
        Some(format!("Bearer {TASK_KEY}").as_str())
    );
    assert_eq!(e.header("x-warp-cloud-agent-id"), Some("t-ev,1"));
    assert_eq!(e.header("x-warp-ambient-workload-token"), Some(WORKLOAD));
    assert_eq!(e.header("content-type"), Some("application/json"));
    let body = e.json();
    assert_eq!(body["event_name"], "setup_worker_setup_command");
    assert_eq!(body["payload"]["is_error"], false);
    assert_eq!(body["timestamp"], body["payload"]["finish_ts"]);
    assert!(body["payload"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let uuid = body["event_uuid"].as_str().unwrap();
    assert_eq!((uuid.len(), &uuid[14..15]), (36, "4"));
    // Task logs were not asked for: nothing else went out.
    assert!(warp.log_posts().is_empty());
    assert_no_secrets(&w, &[TASK_KEY, WORKLOAD, SECRET]);
}

#[test]
fn a_dead_events_endpoint_costs_the_task_nothing() {
    let dir = TestDir::new("rep-dead");
    let oz = OzServer::start();
    let warp = FakeWarp::start_with(Behaviour {
        hold_events: true,
        ..Behaviour::default()
    });
    let mut w = start_reporting(&dir, &oz, &warp, &[]);
    oz.push_json(&reporting_assignment("t-dead", "true", None))
        .unwrap();
    expect(&oz, "task_claimed", "t-dead");
    // The setup event's request reaches the endpoint, which never answers it...
    warp.wait_for(T, |p| p.iter().any(|p| p.is_event()));
    // ...and the task still runs to its end and reports while that request is open: the
    // event is not on the task's path.
    expect(&oz, "task_completed", "t-dead");
    assert_eq!(
        warp.held(),
        1,
        "the terminal message waited for the events endpoint\n{}",
        w.dump()
    );
    // The worker gives up on the post after its 5 s timeout and says so at WARN.
    w.wait_for_log("Failed to report setup event setup_worker_setup_command", T);
    // ...and closes its connection (the fake notices within a few polls).
    let deadline = std::time::Instant::now() + T;
    while warp.held() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never closed the request"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_refused_event_is_logged_with_a_short_redacted_body() {
    let dir = TestDir::new("rep-refused");
    let oz = OzServer::start();
    let warp = FakeWarp::start_with(Behaviour {
        events_status: 403,
        events_body: format!("denied for {TASK_KEY} {}", "x".repeat(2000)),
        ..Behaviour::default()
    });
    let mut w = start_reporting(&dir, &oz, &warp, &[]);
    oz.push_json(&reporting_assignment("t-refused", "true", None))
        .unwrap();
    expect(&oz, "task_completed", "t-refused");
    w.wait_for_log("the server answered HTTP 403", T);
    let line = w
        .stderr()
        .lines()
        .find(|l| l.contains("the server answered HTTP 403"))
        .unwrap()
        .to_owned();
    assert!(line.contains("denied for [REDACTED]"), "{line}");
    // At most 512 bytes of the body.
    assert!(!line.contains(&"x".repeat(512)), "{line}");
    assert!(line.contains(&"x".repeat(400)), "{line}");
    assert_no_secrets(&w, &[TASK_KEY, WORKLOAD, SECRET]);
}

#[test]
fn without_a_task_key_events_are_off_with_one_warning() {
    let dir = TestDir::new("rep-nokey");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let w = start_reporting(&dir, &oz, &warp, &[]);
    oz.push_json(&assignment("t-nokey", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-nokey");
    let warned = w
        .stderr()
        .matches("Task t-nokey: setup events will not be reported: the task has no WARP_API_KEY")
        .count();
    assert_eq!(warned, 1, "{}", w.dump());
    assert!(warp.posts().is_empty());
}

#[test]
fn task_logs_are_exported_redacted_batched_and_flushed_before_the_outcome() {
    let dir = TestDir::new("rep-logs");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let w = start_reporting(&dir, &oz, &warp, &[]);
    let run = format!(
        "echo \"leak:$SECRET_VALUE\"; echo 'boot:{BOOT}'; echo 'key:{API_KEY}'; \
         echo 'task:{TASK_KEY}'; seq 1 300; echo last-line >&2"
    );
    oz.push_json(&reporting_assignment("t-logs", &run, Some(&warp.url())))
        .unwrap();
    expect(&oz, "task_claimed", "t-logs");
    expect(&oz, "task_completed", "t-logs");
    // The final flush ran before the outcome was sent: every record is already here.
    let records = warp.records();
    let bodies: Vec<&str> = records.iter().map(|r| r.body_str()).collect();
    assert!(bodies.contains(&"last-line"), "{bodies:?}");

    // The export token came from the identity mutation, with the task's credentials.
    let posts = warp.posts();
    let graphql: Vec<_> = posts.iter().filter(|p| p.path == "/graphql/v2").collect();
    assert_eq!(graphql.len(), 1, "one token for the whole task");
    let g = graphql[0];
    assert_eq!(
        g.header("authorization"),
        Some(format!("Bearer {TASK_KEY}").as_str())
    );
    assert_eq!(g.header("x-warp-cloud-agent-id"), Some("t-logs"));
    assert_eq!(g.header("x-warp-ambient-workload-token"), Some(WORKLOAD));
    let q = g.json();
    assert_eq!(q["variables"]["input"]["audience"], "warp-cloud-agent-otel");
    assert_eq!(q["variables"]["input"]["requestedDurationSeconds"], 10800);

    let log_posts = warp.log_posts();
    for p in &log_posts {
        assert_eq!(
            p.header("authorization"),
            Some("Bearer issued-otel-token-0001")
        );
        assert_eq!(p.header("content-type"), Some("application/x-protobuf"));
        let req = p.logs();
        assert!(
            req.records.len() <= 128,
            "a batch holds at most 128 records"
        );
        assert_eq!(req.resource("service.name"), Some("oz-agent-worker"));
        assert_eq!(req.resource("worker.id"), Some("e2e-worker"));
        assert_eq!(req.resource("worker.backend"), Some("direct"));
        assert_eq!(req.resource("run_id"), Some("t-logs"));
        assert_eq!(req.resource("execution_id"), Some("exec-1"));
        assert_eq!(req.scopes[0].0, "oz-agent-worker.task");
    }
    // 300 numbered lines plus the agent's own: at least three batches, the first two full.
    assert!(log_posts.len() >= 3, "{} posts", log_posts.len());
    assert_eq!(log_posts[0].logs().records.len(), 128);

    // Output lines in order, with their source.
    let numbers: Vec<&str> = records
        .iter()
        .filter(|r| r.attr_str("log.source") == Some("agent.stdout"))
        .map(|r| r.body_str())
        .filter(|b| b.parse::<u32>().is_ok())
        .collect();
    let want: Vec<String> = (1..=300).map(|i| i.to_string()).collect();
    assert_eq!(numbers, want);
    let last = records
        .iter()
        .find(|r| r.body_str() == "last-line")
        .unwrap();
    assert_eq!(last.attr_str("log.source"), Some("agent.stderr"));
    assert!(last.time_unix_nano > 1_600_000_000_000_000_000);
    assert_eq!(last.severity_text, "info");
    assert_eq!(last.severity_number, 9);
    assert!(records.iter().any(
        |r| r.attr_str("log.source") == Some("hook.stdout") && r.body_str() == "setup-hook-ran"
    ));
    // The setup event is mirrored as a record.
    let event = records
        .iter()
        .find(|r| r.attr_str("event.name") == Some("setup_worker_setup_command"))
        .expect("the setup event as a log record");
    assert!(event.attr_str("start_ts").is_some());

    // Canaries: redacted in every record, never sent verbatim.
    for (line, want) in [
        ("leak:", "leak:[REDACTED]"),
        ("boot:", "boot:[REDACTED]"),
        ("key:", "key:[REDACTED]"),
        ("task:", "task:[REDACTED]"),
    ] {
        let got = bodies.iter().find(|b| b.starts_with(line)).unwrap();
        assert_eq!(*got, want);
    }
    for p in &log_posts {
        for canary in [SECRET, BOOT, API_KEY, TASK_KEY, WORKLOAD] {
            assert!(
                !p.body.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} left the machine"
            );
        }
    }
    assert_no_secrets(&w, &[TASK_KEY, WORKLOAD, SECRET, BOOT]);
}

#[test]
fn logging_never_changes_the_outcome() {
    let dir = TestDir::new("rep-outcome");
    let oz = OzServer::start();
    let warp = FakeWarp::start_with(Behaviour {
        logs_status: 500,
        ..Behaviour::default()
    });
    let mut w = start_reporting(&dir, &oz, &warp, &["--metrics-addr", "127.0.0.1:0"]);
    let addr = super::ops::ops_addr(&mut w);
    // A collector that refuses everything.
    oz.push_json(&reporting_assignment(
        "t-refuse",
        "seq 1 5",
        Some(&warp.url()),
    ))
    .unwrap();
    assert_eq!(
        expect(&oz, "task_completed", "t-refuse")["message"],
        "Task completed successfully"
    );
    w.wait_for_log(
        "Task t-refuse: task log export failed (the collector answered HTTP 500)",
        T,
    );
    // The refused records are counted.
    let (_, metrics) = super::ops::get(&addr, "/metrics");
    let failed = super::ops::sample(
        &metrics,
        r#"oz_worker_task_log_records_dropped_total{reason="export_failed"}"#,
    );
    assert!(failed >= 5.0, "{failed}");
    assert_eq!(
        super::ops::sample(
            &metrics,
            r#"oz_worker_task_log_records_dropped_total{reason="queue_full"}"#
        ),
        0.0
    );
    // A collector endpoint that fails the preconditions: one WARN, the task proceeds.
    let mut bad = reporting_assignment("t-badurl", "true", Some("https://u:p@collector"));
    bad["data"]["execution_id"] = json!("exec-2");
    oz.push_json(&bad).unwrap();
    expect(&oz, "task_completed", "t-badurl");
    assert_eq!(
        w.stderr()
            .matches("Task log reporting unavailable for task t-badurl: invalid task log collector endpoint")
            .count(),
        1
    );
    // No workload token: unavailable too.
    let mut no_wl = assignment("t-nowl", None, json!({"WARP_API_KEY": TASK_KEY}));
    no_wl["data"]["telemetry_collection"] =
        json!({"endpoint": warp.url(), "logging_enabled": true});
    oz.push_json(&no_wl).unwrap();
    expect(&oz, "task_completed", "t-nowl");
    w.wait_for_log(
        "Task log reporting unavailable for task t-nowl: task log reporting requires the task's API key and workload token",
        T,
    );
}

#[test]
fn collect_task_logs_false_keeps_logs_home_but_not_events() {
    let dir = TestDir::new("rep-off");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let _w = start_reporting(&dir, &oz, &warp, &["--collect-task-logs=false"]);
    oz.push_json(&reporting_assignment("t-off", "seq 1 5", Some(&warp.url())))
        .unwrap();
    expect(&oz, "task_completed", "t-off");
    // Logs would have been flushed before the outcome; the event may still be on its way.
    warp.wait_for(T, |p| p.iter().any(|p| p.is_event()));
    let paths: Vec<String> = warp.posts().into_iter().map(|p| p.path).collect();
    assert!(
        paths.iter().all(|p| p.ends_with("/client-events")),
        "{paths:?}"
    );
}
