use std::time::Duration;

use super::prometheus::{escape_label, float};
use super::*;

fn info() -> WorkerInfo {
    WorkerInfo {
        version: "1.2.3".into(),
        backend: "docker".into(),
        worker_id: "w-1".into(),
    }
}

fn lines_of(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Reads one sample's value from the exposition.
fn value(text: &str, series: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"));
    line[series.len() + 1..].to_owned()
}

/// Compares a rendering with its golden file: the first differing line for readability,
/// then the whole text, so line endings and the final newline count too.
fn assert_golden(text: &str, golden: &str) {
    if text != golden {
        for (i, (a, b)) in text.lines().zip(golden.lines()).enumerate() {
            assert_eq!(a, b, "first difference at line {}", i + 1);
        }
        assert_eq!(text.lines().count(), golden.lines().count());
        // Same lines, different text: line endings or the final newline differ.
        assert_eq!(
            text, golden,
            "the texts differ in line endings or the final newline"
        );
    }
}

#[test]
fn primed_registry_matches_golden() {
    let m = Metrics::new(info(), 4);
    assert_golden(&m.render_prometheus(), include_str!("golden_primed.prom"));
}

#[test]
#[should_panic(expected = "the final newline")]
fn the_golden_comparison_catches_a_missing_final_newline() {
    let golden = include_str!("golden_primed.prom");
    assert_golden(golden, golden.trim_end_matches('\n'));
}

#[test]
fn priming_covers_every_label_combination() {
    let text = Metrics::new(info(), 0).render_prometheus();
    assert_eq!(
        lines_of(&text, "oz_worker_task_failures_total{").len(),
        3 * FailureReason::ALL.len()
    );
    assert_eq!(FailureReason::ALL.len(), 29);
    for r in ["at_capacity", "shutting_down", "one_shot_complete"] {
        assert_eq!(
            value(
                &text,
                &format!("oz_worker_tasks_rejected_total{{reason=\"{r}\"}}")
            ),
            "0"
        );
    }
    for r in ["succeeded", "failed", "cancelled", "dispatched"] {
        assert_eq!(
            value(
                &text,
                &format!("oz_worker_tasks_completed_total{{result=\"{r}\"}}")
            ),
            "0"
        );
    }
    for r in ["dial_failed", "remote_close"] {
        assert_eq!(
            value(
                &text,
                &format!("oz_worker_websocket_reconnects_total{{reason=\"{r}\"}}")
            ),
            "0"
        );
    }
    assert_eq!(value(&text, "oz_worker_tasks_max_concurrent"), "0");
    // The histogram is deliberately not primed.
    assert!(!text.contains("oz_worker_task_duration_seconds"));
}

#[test]
fn updates_show_in_the_exposition() {
    let m = Metrics::new(info(), 2);
    m.set_connected(true);
    m.task_claimed();
    m.task_claimed();
    m.task_claimed();
    m.task_finished(TaskResult::Failed, Duration::from_secs(3));
    m.task_abandoned();
    m.task_rejected(RejectReason::ShuttingDown);
    m.task_failed(FailurePhase::Backend, FailureReason::ImagePull);
    m.task_failed(FailurePhase::Assignment, FailureReason::Unknown);
    m.reconnect(ReconnectReason::RemoteClose);
    m.reconnect(ReconnectReason::RemoteClose);
    let t = m.render_prometheus();
    assert_eq!(value(&t, "oz_worker_connected"), "1");
    assert_eq!(value(&t, "oz_worker_tasks_active"), "1");
    assert_eq!(value(&t, "oz_worker_tasks_claimed_total"), "3");
    assert_eq!(
        value(&t, "oz_worker_tasks_completed_total{result=\"failed\"}"),
        "1"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_tasks_rejected_total{reason=\"shutting_down\"}"
        ),
        "1"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_task_failures_total{phase=\"backend\",reason=\"image_pull\"}"
        ),
        "1"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_task_failures_total{phase=\"assignment\",reason=\"unknown\"}"
        ),
        "1"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_task_failures_total{phase=\"cleanup\",reason=\"image_pull\"}"
        ),
        "0"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_websocket_reconnects_total{reason=\"remote_close\"}"
        ),
        "2"
    );
    assert_eq!(m.tasks_active(), 1);
    assert_eq!(m.max_concurrent(), 2);
    assert!(m.connected());
}

#[test]
fn histogram_buckets_are_cumulative_with_sum_and_count() {
    let m = Metrics::new(info(), 0);
    for secs in [0.0, 0.5, 5.0, 7.0, 12_000.0] {
        m.task_claimed();
        m.task_finished(TaskResult::Succeeded, Duration::from_secs_f64(secs));
    }
    m.task_claimed();
    m.task_finished(TaskResult::Cancelled, Duration::from_millis(1500));
    let t = m.render_prometheus();
    let b = |le: &str| {
        value(
            &t,
            &format!("oz_worker_task_duration_seconds_bucket{{result=\"succeeded\",le=\"{le}\"}}"),
        )
    };
    // 0 is in the first bucket (bounds are inclusive), 5 in (0,5], 7 in (5,10].
    assert_eq!(b("0"), "1");
    assert_eq!(b("5"), "3");
    assert_eq!(b("10"), "4");
    assert_eq!(b("7500"), "4");
    assert_eq!(b("10000"), "4");
    assert_eq!(b("+Inf"), "5");
    assert_eq!(
        value(
            &t,
            "oz_worker_task_duration_seconds_count{result=\"succeeded\"}"
        ),
        "5"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_task_duration_seconds_sum{result=\"succeeded\"}"
        ),
        "12012.5"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_task_duration_seconds_sum{result=\"cancelled\"}"
        ),
        "1.5"
    );
    // Only results that were observed have series.
    assert!(!t.contains("duration_seconds_count{result=\"failed\"}"));
    assert_eq!(
        lines_of(
            &t,
            "oz_worker_task_duration_seconds_bucket{result=\"succeeded\""
        )
        .len(),
        16
    );
    // Bucket lines are monotonic.
    let counts: Vec<u64> = lines_of(
        &t,
        "oz_worker_task_duration_seconds_bucket{result=\"succeeded\"",
    )
    .iter()
    .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(
        t.matches("# TYPE oz_worker_task_duration_seconds histogram")
            .count(),
        1
    );
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape_label("l1\nl2"), "l1\\nl2");
    let m = Metrics::new(
        WorkerInfo {
            version: "v".into(),
            backend: "direct".into(),
            worker_id: "we\"ird\\id\n".into(),
        },
        1,
    );
    let t = m.render_prometheus();
    assert!(t.contains(
        "oz_worker_info{backend=\"direct\",version=\"v\",worker_id=\"we\\\"ird\\\\id\\n\"} 1\n"
    ));
    // Every line is a comment or `name{...} value`: nothing broke out of its line.
    for line in t.lines() {
        assert!(
            line.starts_with("# ")
                || line.starts_with("oz_worker_")
                || line.starts_with("target_info"),
            "{line}"
        );
    }
}

#[test]
fn floats_in_prometheus_syntax() {
    assert_eq!(float(0.0), "0");
    assert_eq!(float(5.0), "5");
    assert_eq!(float(0.25), "0.25");
    assert_eq!(float(1e-9), "0.000000001");
    assert_eq!(float(f64::INFINITY), "+Inf");
    assert_eq!(float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(float(f64::NAN), "NaN");
}

#[test]
fn updates_from_many_threads_add_up() {
    let m = Metrics::new(info(), 0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    m.task_claimed();
                    m.task_finished(TaskResult::Succeeded, Duration::from_millis(1));
                }
            });
        }
    });
    let t = m.render_prometheus();
    assert_eq!(value(&t, "oz_worker_tasks_claimed_total"), "4000");
    assert_eq!(value(&t, "oz_worker_tasks_active"), "0");
    assert_eq!(
        value(
            &t,
            "oz_worker_task_duration_seconds_count{result=\"succeeded\"}"
        ),
        "4000"
    );
    assert_eq!(
        value(
            &t,
            "oz_worker_task_duration_seconds_sum{result=\"succeeded\"}"
        ),
        "4"
    );
}

#[test]
fn label_enums_are_stable() {
    let names = |all: &[&str]| all.join(",");
    assert_eq!(
        names(
            &RejectReason::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
        ),
        "at_capacity,shutting_down,one_shot_complete"
    );
    assert_eq!(
        names(
            &TaskResult::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
        ),
        "succeeded,failed,cancelled,dispatched"
    );
    assert_eq!(
        names(
            &FailurePhase::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
        ),
        "assignment,backend,cleanup"
    );
    assert_eq!(
        names(
            &ReconnectReason::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
        ),
        "dial_failed,remote_close"
    );
}

#[test]
fn health_liveness_and_readiness() {
    let h = Health::new(Duration::from_secs(60));
    assert!(h.alive());
    assert_eq!(
        h.not_ready(false),
        vec![NotReady::NotConnected, NotReady::BackendUnavailable]
    );
    h.set_backend_ok(true);
    assert!(h.not_ready(true).is_empty());
    h.set_draining();
    assert_eq!(h.not_ready(true), vec![NotReady::Draining]);

    let stale = Health::new(Duration::ZERO);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stale.alive() {
        assert!(std::time::Instant::now() < deadline, "never went stale");
        std::thread::yield_now();
    }
    assert_eq!(stale.not_ready(true)[0], NotReady::Stalled);
    assert_eq!(
        NotReady::Stalled.to_string(),
        "the supervisor loop is stalled"
    );
}
