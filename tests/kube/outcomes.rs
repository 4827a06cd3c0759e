//! Every Kubernetes outcome of issue 9 §4 end to end: the simulator scripts a pod's life, the
//! worker binary follows its Job, and the fake Oz server receives the terminal message
//! (`failure_reason`, `exit_code`, `failure_details.kubernetes`); the simulator's request log
//! shows what the worker then did to the Job (deleted on success; kept when it failed, and
//! expired by a fenced merge-patch when it was still active).
//!
//! Timeouts are configured in seconds so that each test runs in a few seconds; none of the
//! assertions is about how long anything took.

use std::time::Duration;

use serde_json::{Value, json};

use oz_agent_worker::kube::Client;
use oz_agent_worker::kube::kubeconfig::{self, Inputs};

use crate::support::harness::{TestDir, Worker};
use crate::support::kube_sim::{KubeSim, State, Step, ms};
use crate::support::oz_server::OzServer;
use crate::worker::{T, assignment, expect, frames_for};

mod mounts;

/// Starts a worker whose `backend.kubernetes` block gets `extra` (indented four spaces).
fn start(dir: &TestDir, oz: &OzServer, sim: &KubeSim, worker_id: &str, extra: &str) -> Worker {
    let cfg = super::config(dir, sim, worker_id, extra);
    super::start_with(dir, oz, &cfg, &[])
}

fn assign(oz: &OzServer, id: &str, image: &str) {
    let mut a = assignment(id, Some(&format!("{id}-exec")), json!({}));
    a["data"]["docker_image"] = json!(image);
    a["data"]["sidecar_image"] = json!("example.com/oz-sidecar:1");
    oz.push_json(&a).unwrap();
}

fn stop(mut w: Worker) {
    w.signal(libc::SIGTERM);
    w.wait(T);
}

fn job_of(st: &State, task: &str) -> Option<Value> {
    st.jobs()
        .into_iter()
        .find(|j| j["metadata"]["labels"]["oz-task-id"] == task)
}

fn job_path(task: &str) -> String {
    format!("/jobs/oz-task-{task}")
}

/// The terminal `task_failed` for `task`, which must be the only terminal message it got.
fn failed(oz: &OzServer, task: &str) -> Value {
    let f = expect(oz, "task_failed", task);
    let kinds: Vec<String> = frames_for(oz, task).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec!["task_claimed", "task_failed"], "{kinds:?}");
    f
}

/// A kept, still-active Job: expired by a merge-patch setting `activeDeadlineSeconds: 1`, fenced
/// by the Job's UID and resourceVersion; never deleted.
fn assert_expired_not_deleted(sim: &KubeSim, task: &str) {
    sim.wait_until(T, |s| {
        s.requests("PATCH", &job_path(task)).iter().any(|p| {
            p.status == 200
                && p.body["spec"]["activeDeadlineSeconds"] == 1
                && p.body["metadata"]["uid"].is_string()
                && p.body["metadata"]["resourceVersion"].is_string()
        })
    });
    // Marked reported (so a restarted worker does not report it again) and kept.
    sim.wait_until(T, |s| {
        job_of(s, task)
            .is_some_and(|j| !j["metadata"]["annotations"]["oz.warp.dev/reported"].is_null())
    });
    assert!(sim.state().requests("DELETE", &job_path(task)).is_empty());
}

/// A kept Job that had stopped by itself: neither deleted nor expired.
fn assert_kept_untouched(sim: &KubeSim, task: &str) {
    sim.wait_until(T, |s| {
        job_of(s, task)
            .is_some_and(|j| !j["metadata"]["annotations"]["oz.warp.dev/reported"].is_null())
    });
    let st = sim.state();
    assert!(st.requests("DELETE", &job_path(task)).is_empty());
    for p in st.requests("PATCH", &job_path(task)) {
        assert!(
            p.body["spec"]["activeDeadlineSeconds"].is_null(),
            "a stopped Job was expired: {}",
            p.body
        );
    }
}

/// A succeeded Job: deleted with Background propagation, its pod gone with it.
fn assert_deleted(sim: &KubeSim, task: &str) {
    sim.wait_until(T, |s| job_of(s, task).is_none());
    let st = sim.state();
    let deletes = st.requests("DELETE", &job_path(task));
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].body["propagationPolicy"], "Background");
    assert!(st.requests("PATCH", &job_path(task)).is_empty());
}

fn condition<'a>(conditions: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
}

fn event<'a>(k: &'a Value, reason: &str) -> Option<&'a Value> {
    k["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["reason"] == reason)
}

/// A real client reads the simulator's events through both APIs: `kubectl events` decodes the
/// core list into typed events (timestamps, counts) to print them; `kubectl get` finds
/// events.k8s.io by discovery.
fn kubectl_reads_events(dir: &TestDir, sim: &KubeSim, reason: &str) {
    let kc = sim.kubeconfig(&dir.path, None);
    let commands: [&[&str]; 2] = [
        &["events", "-n", "agents", "--types", "Warning"],
        &[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            "agents",
            "-o",
            "json",
        ],
    ];
    for args in commands {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("kubectl must be installed (Debian: kubernetes-client; see .ci/kubernetes.sh)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(reason),
            "kubectl {args:?}: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The worker's own Kubernetes client, pointed at the simulator (as an operator's kubectl).
fn client(dir: &TestDir, sim: &KubeSim) -> Client {
    let kc = sim.kubeconfig(&dir.path, None);
    let env = |_: &str| None;
    let cfg = kubeconfig::resolve(
        Some(&kc),
        &Inputs {
            env: &env,
            service_account_dir: dir.join("no-service-account"),
        },
    )
    .expect("the simulator's kubeconfig resolves");
    Client::new(cfg).expect("a client for the simulator")
}

#[test]
fn a_pod_unschedulable_past_its_timeout_fails_and_its_job_is_expired() {
    let dir = TestDir::new("e2e-kube-unschedulable");
    let sim = KubeSim::start();
    sim.script("sim/no-fit", vec![Step::Unschedulable(Duration::MAX)]);
    // Unschedulable for a moment (the autoscaler adds a node), then scheduled: tolerated.
    sim.script(
        "sim/fits-later",
        vec![
            Step::Unschedulable(ms(500)),
            Step::Pending(ms(50)),
            Step::Running(ms(200)),
            Step::exit(0),
        ],
    );
    let oz = OzServer::start();
    let w = start(
        &dir,
        &oz,
        &sim,
        "kube-unsched",
        "    unschedulable_timeout: 4s\n",
    );

    assign(&oz, "t-later", "sim/fits-later");
    assign(&oz, "t-nofit", "sim/no-fit");
    expect(&oz, "task_completed", "t-later");
    assert_deleted(&sim, "t-later");

    let f = failed(&oz, "t-nofit");
    assert_eq!(f["failure_reason"], "unschedulable", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("is unschedulable"), "{f}");
    assert!(msg.contains("3 Insufficient cpu"), "{f}");
    let k = &f["failure_details"]["kubernetes"];
    assert_eq!(k["schema_version"], 1, "{f}");
    assert_eq!(k["pod"]["phase"], "Pending", "{f}");
    let scheduled = condition(&k["pod"]["conditions"], "PodScheduled").expect("PodScheduled");
    assert_eq!(scheduled["status"], "False", "{f}");
    assert_eq!(scheduled["reason"], "Unschedulable", "{f}");
    // The scheduler's event, recorded through events.k8s.io: read through the core API it has
    // an eventTime and no firstTimestamp; its time still comes through.
    let ev = event(k, "FailedScheduling").expect("the FailedScheduling event");
    assert_eq!(ev["type"], "Warning", "{f}");
    assert!(ev["first_observed_at"].is_string(), "{f}");
    assert!(k.get("container").is_none(), "{f}");
    assert_expired_not_deleted(&sim, "t-nofit");
    kubectl_reads_events(&dir, &sim, "FailedScheduling");
    // The expired Job then fails by its deadline, as a real Job controller does.
    sim.wait_until(T, |s| {
        job_of(s, "t-nofit").is_some_and(|j| j["status"]["failed"] == 1)
    });
    stop(w);
}

#[test]
fn a_job_whose_pod_cannot_be_created_fails_with_job_create_after_the_timeout() {
    // Admission (here Pod Security) refuses the Job's pod: the Job controller records
    // FailedCreate on the Job and no pod ever appears.
    let dir = TestDir::new("e2e-kube-failed-create");
    let sim = KubeSim::start();
    sim.script(
        "sim/forbidden",
        vec![Step::FailedCreate(
            "pods \"x\" is forbidden: exceeded quota: agents-quota, requested: cpu=2, used: cpu=8, limited: cpu=8".into(),
        )],
    );
    let oz = OzServer::start();
    let w = start(
        &dir,
        &oz,
        &sim,
        "kube-failed-create",
        "    unschedulable_timeout: 2s\n",
    );
    assign(&oz, "t-quota", "sim/forbidden");
    let f = failed(&oz, "t-quota");
    assert_eq!(f["failure_reason"], "job_create", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("could not create a pod"), "{f}");
    assert!(msg.contains("exceeded quota: agents-quota"), "{f}");
    let k = &f["failure_details"]["kubernetes"];
    assert!(k.get("pod").is_none(), "{f}");
    assert!(k["job"]["uid"].is_string(), "{f}");
    assert!(event(k, "FailedCreate").is_some(), "{f}");
    // The Job is still active (its controller keeps trying): stopped, kept.
    assert_expired_not_deleted(&sim, "t-quota");
    stop(w);
}

#[test]
fn an_evicted_pod_fails_with_evicted_and_its_stopped_job_is_kept() {
    let dir = TestDir::new("e2e-kube-evicted");
    let sim = KubeSim::start();
    sim.script("sim/evicted", vec![Step::Running(ms(300)), Step::Evicted]);
    let oz = OzServer::start();
    let w = start(&dir, &oz, &sim, "kube-evict", "");
    assign(&oz, "t-evict", "sim/evicted");
    let f = failed(&oz, "t-evict");
    // Not container_exit 137: the kubelet killed the task container because it evicted the pod.
    assert_eq!(f["failure_reason"], "evicted", "{f}");
    assert!(f["exit_code"].is_null() || f["exit_code"] == 0, "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("Pod reason: Evicted"), "{f}");
    assert!(msg.contains("The node was low on resource: memory"), "{f}");
    let k = &f["failure_details"]["kubernetes"];
    assert_eq!(k["schema_version"], 1, "{f}");
    assert_eq!(k["pod"]["phase"], "Failed", "{f}");
    assert_eq!(k["pod"]["reason"], "Evicted", "{f}");
    let disruption = condition(&k["pod"]["conditions"], "DisruptionTarget")
        .expect("the DisruptionTarget condition");
    assert_eq!(disruption["reason"], "TerminationByKubelet", "{f}");
    assert_kept_untouched(&sim, "t-evict");
    stop(w);
}

#[test]
fn a_job_past_active_deadline_seconds_fails_with_active_deadline() {
    let dir = TestDir::new("e2e-kube-deadline");
    let sim = KubeSim::start();
    sim.script("sim/forever", vec![Step::Running(Duration::MAX)]);
    let oz = OzServer::start();
    let w = start(
        &dir,
        &oz,
        &sim,
        "kube-deadline",
        "    active_deadline_seconds: 2\n",
    );
    assign(&oz, "t-deadline", "sim/forever");
    let f = failed(&oz, "t-deadline");
    // The killed pod shows SIGTERM (143), but the cause is the Job's deadline.
    assert_eq!(f["failure_reason"], "active_deadline", "{f}");
    assert_eq!(f["exit_code"], 143, "{f}");
    let k = &f["failure_details"]["kubernetes"];
    assert_eq!(k["schema_version"], 1, "{f}");
    assert_eq!(k["container"]["name"], "task", "{f}");
    assert_eq!(k["container"]["raw_exit_code"], 143, "{f}");
    assert!(
        k["pod"]["deletion_timestamp"].is_string(),
        "the Job controller deleted the pod: {f}"
    );
    {
        let st = sim.state();
        let post = st
            .requests("POST", "/apis/batch/v1/namespaces/agents/jobs")
            .into_iter()
            .find(|p| p.body["metadata"]["labels"]["oz-task-id"] == "t-deadline")
            .map(|p| p.body.clone())
            .expect("the task Job's POST");
        assert_eq!(post["spec"]["activeDeadlineSeconds"], 2);
        // Kept for post-mortem until its TTL (24 h by default).
        assert_eq!(post["spec"]["ttlSecondsAfterFinished"], 86400);
    }
    assert_kept_untouched(&sim, "t-deadline");
    let job = job_of(&sim.state(), "t-deadline").expect("kept");
    assert_eq!(
        condition(&job["status"]["conditions"], "Failed").map(|c| c["reason"].clone()),
        Some(json!("DeadlineExceeded"))
    );
    stop(w);
}

#[test]
fn a_native_sidecar_ending_with_143_beside_a_successful_task_is_a_success() {
    let dir = TestDir::new("e2e-kube-sidecar-143");
    let sim = KubeSim::start();
    sim.script(
        "sim/with-sidecar",
        vec![
            Step::Running(ms(300)),
            Step::Exit {
                code: 0,
                reason: None,
                sidecar_143: true,
            },
        ],
    );
    // A control: the same pod, but the task fails. The sidecar's 143 must not mask it either.
    sim.script(
        "sim/with-sidecar-fails",
        vec![
            Step::Running(ms(300)),
            Step::Exit {
                code: 4,
                reason: None,
                sidecar_143: true,
            },
        ],
    );
    let oz = OzServer::start();
    let template = "    pod_template:\n      initContainers:\n      - name: log-shipper\n        image: example.com/log-shipper:2\n        restartPolicy: Always\n";
    let w = start(&dir, &oz, &sim, "kube-sidecar", template);
    assign(&oz, "t-sidecar", "sim/with-sidecar");
    expect(&oz, "task_completed", "t-sidecar");
    {
        // The operator's native sidecar reached the Job beside the worker's own init containers.
        let st = sim.state();
        let post = st
            .requests("POST", "/apis/batch/v1/namespaces/agents/jobs")
            .into_iter()
            .find(|p| p.body["metadata"]["labels"]["oz-task-id"] == "t-sidecar")
            .map(|p| p.body.clone())
            .expect("the task Job's POST");
        let inits = post["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let shipper = inits
            .iter()
            .find(|c| c["name"] == "log-shipper")
            .expect("the native sidecar");
        assert_eq!(shipper["restartPolicy"], "Always");
        assert!(
            inits.len() >= 2,
            "the worker's init containers are kept: {inits:?}"
        );
    }
    assert_deleted(&sim, "t-sidecar");
    let kinds: Vec<String> = frames_for(&oz, "t-sidecar")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, vec!["task_claimed", "task_completed"], "{kinds:?}");

    assign(&oz, "t-sidecar-fails", "sim/with-sidecar-fails");
    let f = failed(&oz, "t-sidecar-fails");
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    assert_eq!(f["exit_code"], 4, "{f}");
    assert_eq!(
        f["failure_details"]["kubernetes"]["container"]["kind"],
        "regular"
    );
    assert_eq!(
        f["failure_details"]["kubernetes"]["container"]["name"],
        "task"
    );
    assert_kept_untouched(&sim, "t-sidecar-fails");
    stop(w);
}

#[test]
fn a_task_killed_by_a_signal_reports_128_plus_the_signal() {
    let dir = TestDir::new("e2e-kube-signal");
    let sim = KubeSim::start();
    sim.script("sim/sigkill", vec![Step::Running(ms(200)), Step::Killed(9)]);
    sim.script(
        "sim/sigterm",
        vec![Step::Running(ms(200)), Step::Killed(15)],
    );
    let oz = OzServer::start();
    let w = start(&dir, &oz, &sim, "kube-signal", "");
    assign(&oz, "t-kill", "sim/sigkill");
    assign(&oz, "t-term", "sim/sigterm");

    let f = failed(&oz, "t-kill");
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    assert_eq!(f["exit_code"], 137, "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("exited with code 137 (SIGKILL)"), "{f}");
    let c = &f["failure_details"]["kubernetes"]["container"];
    assert_eq!(c["signal"], 9, "{f}");
    assert_eq!(c["raw_exit_code"], 137, "{f}");
    assert_eq!(c["normalized_exit_code"], 137, "{f}");
    assert_eq!(c["state"], "terminated", "{f}");
    assert_kept_untouched(&sim, "t-kill");

    let f = failed(&oz, "t-term");
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    assert_eq!(f["exit_code"], 143, "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("(SIGTERM)"), "{f}");
    // SIGTERM gets the guidance sentence of reference §6.2.
    assert!(msg.contains("check pod events and node activity"), "{f}");
    assert!(
        msg.contains("eviction, preemption, node drain, activeDeadlineSeconds, or manual deletion"),
        "{f}"
    );
    assert_eq!(
        f["failure_details"]["kubernetes"]["container"]["signal"],
        15
    );
    assert_kept_untouched(&sim, "t-term");
    stop(w);
}

#[test]
fn an_invalid_image_name_fails_with_invalid_image() {
    let dir = TestDir::new("e2e-kube-invalid-image");
    let sim = KubeSim::start();
    sim.script(
        "sim/Bad_Name",
        vec![Step::Waiting("InvalidImageName".into(), Duration::MAX)],
    );
    let oz = OzServer::start();
    let w = start(&dir, &oz, &sim, "kube-invalid", "");
    assign(&oz, "t-invalid", "sim/Bad_Name");
    let f = failed(&oz, "t-invalid");
    assert_eq!(f["failure_reason"], "invalid_image", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("is waiting: InvalidImageName"), "{f}");
    let c = &f["failure_details"]["kubernetes"]["container"];
    assert_eq!(c["state"], "waiting", "{f}");
    assert_eq!(c["waiting_reason"], "InvalidImageName", "{f}");
    assert_eq!(c["name"], "task", "{f}");
    // The pod never starts: its Job is still active and must be stopped.
    assert_expired_not_deleted(&sim, "t-invalid");
    stop(w);
}

#[test]
fn err_image_pull_and_image_pull_back_off_fail_with_image_pull() {
    let dir = TestDir::new("e2e-kube-image-pull");
    let sim = KubeSim::start();
    sim.script(
        "sim/err-pull",
        vec![
            Step::Pending(ms(100)),
            Step::Waiting("ErrImagePull".into(), Duration::MAX),
        ],
    );
    sim.script(
        "sim/back-off",
        vec![
            Step::Pending(ms(100)),
            Step::Waiting("ImagePullBackOff".into(), Duration::MAX),
        ],
    );
    let oz = OzServer::start();
    let w = start(&dir, &oz, &sim, "kube-pull", "");
    assign(&oz, "t-err-pull", "sim/err-pull");
    assign(&oz, "t-back-off", "sim/back-off");
    for (task, reason) in [
        ("t-err-pull", "ErrImagePull"),
        ("t-back-off", "ImagePullBackOff"),
    ] {
        let f = failed(&oz, task);
        assert_eq!(f["failure_reason"], "image_pull", "{f}");
        let msg = f["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("is waiting: {reason}")), "{f}");
        let k = &f["failure_details"]["kubernetes"];
        assert_eq!(k["schema_version"], 1, "{f}");
        assert_eq!(k["container"]["waiting_reason"], reason, "{f}");
        assert_eq!(k["container"]["kind"], "regular", "{f}");
        assert_eq!(k["pod"]["phase"], "Pending", "{f}");
        assert!(k["job"]["uid"].is_string(), "{f}");
        assert_expired_not_deleted(&sim, task);
    }
    stop(w);
}

#[test]
fn a_job_deleted_by_someone_else_fails_the_task_with_job_watch() {
    // An operator deletes the running task's Job by hand (kubectl delete job): the task must
    // end, not wait for a Job that will never finish.
    let dir = TestDir::new("e2e-kube-deleted");
    let sim = KubeSim::start();
    sim.script("sim/forever", vec![Step::Running(Duration::MAX)]);
    let oz = OzServer::start();
    let w = start(&dir, &oz, &sim, "kube-deleted", "");
    assign(&oz, "t-deleted", "sim/forever");
    sim.wait_until(T, |s| {
        s.pods().iter().any(|p| {
            p["status"]["phase"] == "Running"
                && p["metadata"]["labels"]["oz-task-id"] == "t-deleted"
        })
    });
    let name = job_of(&sim.state(), "t-deleted")
        .and_then(|j| j["metadata"]["name"].as_str().map(str::to_owned))
        .expect("the task's Job");
    let r = client(&dir, &sim)
        .request(
            "DELETE",
            &format!("/apis/batch/v1/namespaces/agents/jobs/{name}"),
            Some(&json!({"propagationPolicy": "Background"})),
        )
        .expect("delete the Job");
    assert_eq!(r.status, 200);
    let f = failed(&oz, "t-deleted");
    assert_eq!(f["failure_reason"], "job_watch", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("was deleted before it finished"), "{f}");
    assert_eq!(
        f["failure_details"]["kubernetes"]["schema_version"], 1,
        "{f}"
    );
    // Nothing is left to clean up, and nothing is recreated.
    let st = sim.state();
    assert!(job_of(&st, "t-deleted").is_none());
    assert!(st.requests("PATCH", "/jobs/oz-task-t-deleted").is_empty());
    assert_eq!(
        st.requests("POST", "/apis/batch/v1/namespaces/agents/jobs")
            .iter()
            .filter(|p| p.body["metadata"]["labels"]["oz-task-id"] == "t-deleted")
            .count(),
        1
    );
    drop(st);
    stop(w);
}

#[test]
fn a_task_container_that_cannot_be_created_fails_with_container_create() {
    // The pod references a Secret that does not exist (the kubelet's CreateContainerConfigError):
    // it never resolves by itself.
    let dir = TestDir::new("e2e-kube-create-config");
    let sim = KubeSim::start();
    sim.script(
        "sim/no-secret",
        vec![
            Step::Pending(ms(100)),
            Step::Waiting("CreateContainerConfigError".into(), Duration::MAX),
        ],
    );
    let oz = OzServer::start();
    let w = start(&dir, &oz, &sim, "kube-create-config", "");
    assign(&oz, "t-no-secret", "sim/no-secret");
    let f = failed(&oz, "t-no-secret");
    assert_eq!(f["failure_reason"], "container_create", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("is waiting: CreateContainerConfigError"),
        "{f}"
    );
    let c = &f["failure_details"]["kubernetes"]["container"];
    assert_eq!(c["waiting_reason"], "CreateContainerConfigError", "{f}");
    assert_eq!(c["kind"], "regular", "{f}");
    assert_expired_not_deleted(&sim, "t-no-secret");
    stop(w);
}
