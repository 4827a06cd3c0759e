//! OTLP/HTTP JSON push to the test collector.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oz_agent_worker::backend::FailureReason;
use oz_agent_worker::metrics::{FailurePhase, TaskResult};
use oz_agent_worker::otlp::{self, OtlpConfig};
use oz_agent_worker::settings::Secret;
use serde_json::json;

use super::metrics;
use crate::support::collector::{Collector, Push};

fn config(endpoint: String, interval: Duration) -> OtlpConfig {
    OtlpConfig {
        endpoint,
        interval,
        timeout: Duration::from_secs(10),
        headers: vec![
            ("X-Scope-OrgID".into(), Secret::new("tenant-1")),
            ("Authorization".into(), Secret::new("Basic b3RscC10ZXN0")),
        ],
        ca_file: None,
        resource_env: vec![("deployment.environment".into(), "test".into())],
    }
}

fn int_value(push: &Push, metric: &str) -> String {
    let m = push
        .metric(metric)
        .unwrap_or_else(|| panic!("{metric} missing"));
    let data = if m["sum"].is_object() {
        &m["sum"]
    } else {
        &m["gauge"]
    };
    data["dataPoints"][0]["asInt"].as_str().unwrap().to_owned()
}

#[test]
fn pushes_decodable_metrics_periodically() {
    let collector = Collector::start();
    let m = metrics(2);
    m.set_connected(true);
    m.task_claimed();
    let handle = otlp::spawn(
        config(collector.endpoint(), Duration::from_millis(50)),
        Arc::clone(&m),
    )
    .unwrap();

    let push = collector.next();
    assert_eq!(push.method, "POST");
    assert_eq!(push.path, "/v1/metrics");
    assert_eq!(push.header("content-type"), Some("application/json"));
    assert_eq!(push.header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(push.header("authorization"), Some("Basic b3RscC10ZXN0"));
    assert!(
        push.header("user-agent")
            .unwrap()
            .starts_with("oz-agent-worker/")
    );

    let body = push.json();
    let attrs = body["resourceMetrics"][0]["resource"]["attributes"]
        .as_array()
        .unwrap();
    for (k, v) in [
        ("service.name", "oz-agent-worker"),
        ("worker.id", "ops-test"),
        ("worker.backend", "direct"),
        ("service.version", "0.0.0-test"),
        ("deployment.environment", "test"),
    ] {
        assert!(
            attrs.contains(&json!({"key": k, "value": {"stringValue": v}})),
            "{k} missing in {attrs:?}"
        );
    }
    assert_eq!(
        body["resourceMetrics"][0]["scopeMetrics"][0]["scope"]["name"],
        "github.com/warpdotdev/oz-agent-worker"
    );
    assert_eq!(int_value(&push, "oz_worker_connected"), "1");
    assert_eq!(int_value(&push, "oz_worker_tasks_claimed_total"), "1");
    assert_eq!(int_value(&push, "oz_worker_tasks_max_concurrent"), "2");
    assert!(push.metric("oz_worker_task_duration_seconds").is_none());
    let failures = push.metric("oz_worker_task_failures_total").unwrap();
    assert_eq!(failures["sum"]["dataPoints"].as_array().unwrap().len(), 87);

    // Later pushes carry later values (cumulative).
    m.task_finished(TaskResult::Failed, Duration::from_secs(12));
    m.task_failed(FailurePhase::Backend, FailureReason::ContainerOom);
    let deadline = Instant::now() + Duration::from_secs(30);
    let push = loop {
        let p = collector.next();
        if p.metric("oz_worker_task_duration_seconds").is_some() {
            break p;
        }
        assert!(Instant::now() < deadline, "the update never arrived");
    };
    let hist = push.metric("oz_worker_task_duration_seconds").unwrap();
    let dp = &hist["histogram"]["dataPoints"][0];
    assert_eq!(dp["attributes"][0]["value"]["stringValue"], "failed");
    assert_eq!(dp["count"], "1");
    assert_eq!(dp["sum"], 12.0);
    let oom = push.metric("oz_worker_task_failures_total").unwrap()["sum"]["dataPoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["attributes"][1]["value"]["stringValue"] == "container_oom"
                && p["attributes"][0]["value"]["stringValue"] == "backend"
        })
        .cloned()
        .unwrap();
    assert_eq!(oom["asInt"], "1");
    assert!(handle.shutdown());
}

#[test]
fn shutdown_flushes_exactly_once() {
    let collector = Collector::start();
    let m = metrics(0);
    m.task_claimed();
    let handle = otlp::spawn(config(collector.endpoint(), Duration::from_secs(3600)), m).unwrap();
    assert!(handle.shutdown(), "the final push finished in time");
    let push = collector.next();
    assert_eq!(int_value(&push, "oz_worker_tasks_claimed_total"), "1");
    assert!(collector.try_next(Duration::from_millis(200)).is_none());
}

#[test]
fn collector_errors_do_not_stop_pushing() {
    let collector = Collector::start();
    collector.set_status(503);
    let handle = otlp::spawn(
        config(collector.endpoint(), Duration::from_millis(30)),
        metrics(0),
    )
    .unwrap();
    collector.next();
    collector.next();
    collector.set_status(200);
    collector.next();
    assert!(handle.shutdown());
}

#[test]
fn unreachable_collector_shuts_down_promptly() {
    // Port 1 on loopback refuses connections at once.
    let handle = otlp::spawn(
        config(
            "http://127.0.0.1:1/v1/metrics".into(),
            Duration::from_millis(20),
        ),
        metrics(0),
    )
    .unwrap();
    assert!(handle.shutdown());
}

#[test]
fn pushes_over_https_trusting_the_configured_ca() {
    let (collector, ca_pem) = Collector::start_tls();
    let dir = std::env::temp_dir().join(format!("oz-otlp-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut cfg = config(collector.endpoint(), Duration::from_secs(3600));
    assert!(cfg.endpoint.starts_with("https://127.0.0.1:"));
    cfg.ca_file = Some(ca_file);
    let handle = otlp::spawn(cfg, metrics(0)).unwrap();
    assert!(handle.shutdown());
    let push = collector.next();
    assert_eq!(int_value(&push, "oz_worker_connected"), "0");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn https_without_the_ca_fails_without_pushing() {
    let (collector, _) = Collector::start_tls();
    let handle = otlp::spawn(
        config(collector.endpoint(), Duration::from_secs(3600)),
        metrics(0),
    )
    .unwrap();
    // The handshake fails (unknown issuer); the push is abandoned, nothing arrives.
    assert!(handle.shutdown());
    assert!(collector.try_next(Duration::from_millis(200)).is_none());
}
