//! The kubelet cannot mount a volume: `FailedMount` tolerated up to `volume_mount_timeout`,
//! failing past it, and forgotten once the volumes are mounted; the simulator's events read
//! through both events APIs, by the worker's own client and by `kubectl`.

use std::time::Duration;

use oz_agent_worker::kube::query_escape;

use super::{assert_deleted, assert_expired_not_deleted, assign, event, failed, start, stop};
use crate::support::harness::TestDir;
use crate::support::kube_sim::{Kind, KubeSim, Step, ms};
use crate::support::oz_server::OzServer;
use crate::worker::{expect, frames_for};

/// The FailedMount script both mount tests share: the kubelet fails to mount for a while.
fn mount_script(failing: Duration) -> Vec<Step> {
    vec![
        Step::FailedMount(failing),
        Step::Running(ms(200)),
        Step::exit(0),
    ]
}

#[test]
fn a_mount_failure_that_clears_within_volume_mount_timeout_is_tolerated() {
    let dir = TestDir::new("e2e-kube-mount-ok");
    let sim = KubeSim::start();
    sim.script("sim/mount-slow", mount_script(ms(3000)));
    let oz = OzServer::start();
    let w = start(
        &dir,
        &oz,
        &sim,
        "kube-mount-ok",
        "    volume_mount_timeout: 10s\n",
    );
    assign(&oz, "t-mount-ok", "sim/mount-slow");
    let done = expect(&oz, "task_completed", "t-mount-ok");
    assert!(done.is_object());
    let kinds: Vec<String> = frames_for(&oz, "t-mount-ok")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, vec!["task_claimed", "task_completed"], "{kinds:?}");
    // The worker saw the failing mount and tolerated it: it listed the pod's events, which it
    // does only while the pod is Pending, that is while its FailedMount event stood (the Go
    // worker failed the task on the first such event).
    {
        let st = sim.state();
        let uid = st
            .store
            .list(Kind::Event, "agents")
            .into_iter()
            .find(|e| e["reason"] == "FailedMount")
            .map(|e| {
                e["involvedObject"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .expect("the kubelet's FailedMount event");
        assert!(
            st.requests("GET", "/api/v1/namespaces/agents/events")
                .iter()
                .any(|r| r.param("fieldSelector") == Some(&format!("involvedObject.uid={uid}"))),
            "the worker never listed the pod's events"
        );
    }
    assert_deleted(&sim, "t-mount-ok");
    stop(w);
}

#[test]
fn a_mount_that_recovered_before_a_slow_image_pull_is_not_a_mount_failure() {
    // A slow volume attach, then a large image: the pod stays Pending past the mount timeout
    // with its old FailedMount events, but its volumes are mounted (the kubelet created the
    // sandbox and pulls the image).
    let dir = TestDir::new("e2e-kube-mount-then-pull");
    let sim = KubeSim::start();
    sim.script(
        "sim/attach-then-pull",
        vec![
            Step::FailedMount(ms(1000)),
            Step::Pulling(ms(5000)),
            Step::Running(ms(200)),
            Step::exit(0),
        ],
    );
    let oz = OzServer::start();
    let w = start(
        &dir,
        &oz,
        &sim,
        "kube-mount-pull",
        "    volume_mount_timeout: 3s\n",
    );
    assign(&oz, "t-mount-pull", "sim/attach-then-pull");
    expect(&oz, "task_completed", "t-mount-pull");
    let kinds: Vec<String> = frames_for(&oz, "t-mount-pull")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, vec!["task_claimed", "task_completed"], "{kinds:?}");
    assert_deleted(&sim, "t-mount-pull");
    stop(w);
}

#[test]
fn a_mount_failure_past_volume_mount_timeout_fails_with_volume_mount() {
    let dir = TestDir::new("e2e-kube-mount-fail");
    let sim = KubeSim::start();
    sim.script("sim/mount-never", mount_script(Duration::MAX));
    let oz = OzServer::start();
    let w = start(
        &dir,
        &oz,
        &sim,
        "kube-mount-fail",
        "    volume_mount_timeout: 2s\n",
    );
    assign(&oz, "t-mount", "sim/mount-never");
    let f = failed(&oz, "t-mount");
    assert_eq!(f["failure_reason"], "volume_mount", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("failed to mount a volume"), "{f}");
    assert!(msg.contains("Kubernetes event reason: FailedMount"), "{f}");
    assert!(msg.contains("configmap \"task-config\" not found"), "{f}");
    let k = &f["failure_details"]["kubernetes"];
    assert_eq!(k["schema_version"], 1, "{f}");
    assert_eq!(k["pod"]["phase"], "Pending", "{f}");
    let ev = event(k, "FailedMount").expect("the FailedMount event");
    assert_eq!(ev["type"], "Warning", "{f}");
    assert!(ev["count"].as_i64().unwrap_or(0) >= 1, "{f}");
    assert!(ev["first_observed_at"].is_string(), "{f}");
    assert_expired_not_deleted(&sim, "t-mount");

    // The same event through both events APIs, as the API server shows a kubelet's (core)
    // event: events.k8s.io/v1 names the pod in `regarding`, the text in `note`, a null
    // `eventTime` and the series in the `deprecated*` fields.
    let pod_uid = sim
        .state()
        .pods()
        .into_iter()
        .find(|p| p["metadata"]["labels"]["oz-task-id"] == "t-mount")
        .map(|p| p["metadata"]["uid"].clone())
        .expect("the pod");
    let uid = pod_uid.as_str().unwrap_or_default();
    let client = super::client(&dir, &sim);
    let core = client
        .get_ok(&format!(
            "/api/v1/namespaces/agents/events?fieldSelector={}",
            query_escape(&format!("involvedObject.uid={uid}"))
        ))
        .expect("core events");
    let core = core["items"]
        .as_array()
        .and_then(|i| i.iter().find(|e| e["reason"] == "FailedMount"))
        .cloned()
        .expect("a core FailedMount event");
    assert_eq!(core["involvedObject"]["kind"], "Pod");
    assert!(core["count"].as_i64().unwrap_or(0) >= 2, "repeats: {core}");
    assert!(core["eventTime"].is_null(), "{core}");
    let new = client
        .get_ok(&format!(
            "/apis/events.k8s.io/v1/namespaces/agents/events?fieldSelector={}",
            query_escape(&format!("regarding.uid={uid}"))
        ))
        .expect("events.k8s.io events");
    assert_eq!(new["apiVersion"], "events.k8s.io/v1");
    let new = new["items"]
        .as_array()
        .and_then(|i| i.iter().find(|e| e["reason"] == "FailedMount"))
        .cloned()
        .expect("an events.k8s.io FailedMount event");
    assert_eq!(new["regarding"]["uid"], pod_uid);
    assert_eq!(new["note"], core["message"]);
    assert_eq!(new["type"], "Warning");
    assert!(new["eventTime"].is_null(), "{new}");
    assert_eq!(new["deprecatedFirstTimestamp"], core["firstTimestamp"]);
    assert!(new["deprecatedCount"].as_i64().unwrap_or(0) >= 2, "{new}");
    assert_eq!(new["reportingController"], "kubelet");
    super::kubectl_reads_events(&dir, &sim, "FailedMount");
    stop(w);
}
