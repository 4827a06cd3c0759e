//! OTLP/HTTP JSON encoding of a metrics [`Snapshot`] (`ExportMetricsServiceRequest`).
//!
//! Follows the protobuf JSON mapping OTLP specifies: camelCase field names, 64-bit integers
//! as decimal strings, enums as numbers (`aggregationTemporality` 2 = cumulative).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::metrics::{Kind, Point, PointValue, SCOPE_NAME, Snapshot};

const CUMULATIVE: u8 = 2;

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string()
}

fn attributes<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Array(
        pairs
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect(),
    )
}

fn data_point(point: &Point, start: &str, time: &str, with_start: bool) -> Value {
    let mut dp = json!({
        "attributes": attributes(point.labels.iter().map(|(k, v)| (*k, v.as_str()))),
        "timeUnixNano": time,
    });
    if with_start {
        dp["startTimeUnixNano"] = json!(start);
    }
    match &point.value {
        PointValue::Int(v) => dp["asInt"] = json!(v.to_string()),
        PointValue::Histogram(h) => {
            dp["count"] = json!(h.count.to_string());
            dp["sum"] = json!(h.sum);
            dp["bucketCounts"] = Value::Array(
                h.counts
                    .iter()
                    .map(|c| Value::String(c.to_string()))
                    .collect(),
            );
            dp["explicitBounds"] = json!(h.bounds);
        }
    }
    dp
}

/// The request body for `snapshot` with the given resource attributes.
pub fn encode(snapshot: &Snapshot, resource: &[(String, String)]) -> String {
    let start = nanos(snapshot.start);
    let time = nanos(snapshot.time);
    let metrics: Vec<Value> = snapshot
        .families
        .iter()
        .filter(|f| !f.points.is_empty())
        .map(|f| {
            let points = |with_start| -> Vec<Value> {
                f.points
                    .iter()
                    .map(|p| data_point(p, &start, &time, with_start))
                    .collect()
            };
            let mut m = json!({"name": f.name, "description": f.help});
            if !f.unit.is_empty() {
                m["unit"] = json!(f.unit);
            }
            match f.kind {
                Kind::Gauge => m["gauge"] = json!({"dataPoints": points(false)}),
                Kind::UpDownCounter | Kind::Counter => {
                    m["sum"] = json!({
                        "dataPoints": points(true),
                        "aggregationTemporality": CUMULATIVE,
                        "isMonotonic": f.kind == Kind::Counter,
                    })
                }
                Kind::Histogram => {
                    m["histogram"] = json!({
                        "dataPoints": points(true),
                        "aggregationTemporality": CUMULATIVE,
                    })
                }
            }
            m
        })
        .collect();
    json!({
        "resourceMetrics": [{
            "resource": {
                "attributes": attributes(resource.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            },
            "scopeMetrics": [{
                "scope": {"name": SCOPE_NAME, "version": crate::VERSION},
                "metrics": metrics,
            }],
        }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::FailureReason;
    use crate::metrics::{FailurePhase, Metrics, TaskResult, WorkerInfo};

    fn metric<'a>(body: &'a Value, name: &str) -> &'a Value {
        body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn request_shape() {
        let m = Metrics::new(
            WorkerInfo {
                version: "9.9".into(),
                backend: "direct".into(),
                worker_id: "w".into(),
            },
            3,
        );
        m.set_connected(true);
        m.task_claimed();
        m.task_finished(TaskResult::Succeeded, Duration::from_millis(7500));
        m.task_failed(FailurePhase::Cleanup, FailureReason::Cleanup);
        let resource = vec![("service.name".to_owned(), "oz-agent-worker".to_owned())];
        let body: Value = serde_json::from_str(&encode(&m.snapshot(), &resource)).unwrap();

        let rm = &body["resourceMetrics"][0];
        assert_eq!(
            rm["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "oz-agent-worker"}})
        );
        assert_eq!(rm["scopeMetrics"][0]["scope"]["name"], SCOPE_NAME);

        let connected = metric(&body, "oz_worker_connected");
        assert_eq!(connected["gauge"]["dataPoints"][0]["asInt"], "1");
        assert!(connected["gauge"]["dataPoints"][0]["startTimeUnixNano"].is_null());

        let active = metric(&body, "oz_worker_tasks_active");
        assert_eq!(active["sum"]["isMonotonic"], false);
        assert_eq!(active["sum"]["aggregationTemporality"], 2);
        assert_eq!(active["sum"]["dataPoints"][0]["asInt"], "0");

        let claimed = metric(&body, "oz_worker_tasks_claimed_total");
        assert_eq!(claimed["sum"]["isMonotonic"], true);
        let dp = &claimed["sum"]["dataPoints"][0];
        assert_eq!(dp["asInt"], "1");
        let start: u128 = dp["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let time: u128 = dp["timeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start > 1_600_000_000_000_000_000 && start <= time);

        let failures = metric(&body, "oz_worker_task_failures_total");
        let points = failures["sum"]["dataPoints"].as_array().unwrap();
        assert_eq!(points.len(), 87);
        let hit = points
            .iter()
            .find(|p| p["asInt"] == "1")
            .expect("the recorded failure");
        assert_eq!(
            hit["attributes"],
            json!([
                {"key": "phase", "value": {"stringValue": "cleanup"}},
                {"key": "reason", "value": {"stringValue": "cleanup"}},
            ])
        );

        let hist = metric(&body, "oz_worker_task_duration_seconds");
        assert_eq!(hist["unit"], "s");
        assert_eq!(hist["histogram"]["aggregationTemporality"], 2);
        let hp = &hist["histogram"]["dataPoints"][0];
        assert_eq!(hp["count"], "1");
        assert_eq!(hp["sum"], 7.5);
        assert_eq!(hp["explicitBounds"].as_array().unwrap().len(), 15);
        let buckets: Vec<&str> = hp["bucketCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(buckets.len(), 16);
        // 7.5 s falls in (5, 10]: the third bucket; counts are per bucket, not cumulative.
        assert_eq!(buckets[2], "1");
        assert_eq!(buckets.iter().filter(|c| **c == "0").count(), 15);

        let info = metric(&body, "oz_worker_info");
        assert_eq!(
            info["gauge"]["dataPoints"][0]["attributes"][1],
            json!({"key": "version", "value": {"stringValue": "9.9"}})
        );
    }

    #[test]
    fn unobserved_histogram_is_left_out() {
        let m = Metrics::new(
            WorkerInfo {
                version: String::new(),
                backend: "docker".into(),
                worker_id: "w".into(),
            },
            0,
        );
        let body: Value = serde_json::from_str(&encode(&m.snapshot(), &[])).unwrap();
        let names: Vec<&str> = body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 10);
        assert!(!names.contains(&"oz_worker_task_duration_seconds"));
    }
}
