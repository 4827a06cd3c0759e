use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;
use crate::backend::kubernetes::fixtures::Rng;

/// 2026-12-02T15:45:25Z.
const NOW_SECS: u64 = 1_796_226_325;

fn at(secs_after: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS.saturating_add_signed(secs_after))
}

fn stamp(secs_after: i64) -> String {
    time::format(at(secs_after)).replace(".000", "")
}

fn ctx() -> Context<'static> {
    Context {
        namespace: "agents",
        job_name: "task-job",
        job_uid: Some("job-uid"),
        unschedulable_timeout: Some(Duration::from_secs(30)),
        volume_mount_timeout: Some(Duration::from_secs(120)),
    }
}

fn job(conditions: Value) -> Value {
    json!({
        "metadata": {"name": "task-job", "uid": "job-uid"},
        "spec": {"activeDeadlineSeconds": 28800},
        "status": {"startTime": stamp(-60), "conditions": conditions},
    })
}

fn pod(phase: &str, init: Value, containers: Value) -> Value {
    json!({
        "metadata": {
            "name": "task-pod", "uid": "pod-uid", "namespace": "agents",
            "creationTimestamp": stamp(-60),
            "labels": {"job-name": "task-job", "controller-uid": "job-uid"},
        },
        "spec": {"initContainers": [
            {"name": "copy-sidecar-0"},
            {"name": "proxy", "restartPolicy": "Always"},
        ]},
        "status": {"phase": phase, "initContainerStatuses": init, "containerStatuses": containers},
    })
}

fn exited(name: &str, code: i64) -> Value {
    json!({"name": name, "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"}}}})
}

fn waiting(name: &str, reason: &str) -> Value {
    json!({"name": name, "state": {"waiting": {"reason": reason, "message": "details"}}})
}

fn running(name: &str) -> Value {
    json!({"name": name, "state": {"running": {"startedAt": stamp(-30)}}})
}

struct Run {
    ctx: Context<'static>,
    job: Option<Value>,
    pods: Vec<Value>,
    events: Vec<Value>,
    source: Source,
    first: FirstSeen,
}

impl Run {
    fn new() -> Run {
        Run {
            ctx: ctx(),
            job: Some(job(json!([]))),
            pods: Vec::new(),
            events: Vec::new(),
            source: Source::PodWatch,
            first: FirstSeen::default(),
        }
    }
    fn pod(mut self, p: Value) -> Run {
        self.pods.push(p);
        self
    }
    fn at(&mut self, secs_after: i64) -> Verdict {
        let obs = Observation {
            job: self.job.as_ref(),
            pods: &self.pods,
            events: &self.events,
            source: self.source,
            now: at(secs_after),
        };
        classify(&self.ctx, &obs, &mut self.first)
    }
    fn now(&mut self) -> Verdict {
        self.at(0)
    }
}

fn failed(v: Verdict) -> KubeFailure {
    match v {
        Verdict::Failed(f) => *f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn job_conditions_decide_when_pods_do_not() {
    assert_eq!(
        Run::new().now(),
        Verdict::Running,
        "no conditions: keep waiting"
    );
    let mut r = Run::new();
    r.job = Some(job(json!([{"type": "Complete", "status": "True"}])));
    assert_eq!(r.now(), Verdict::Succeeded);
    r.job = Some(job(
        json!([{"type": "SuccessCriteriaMet", "status": "True"}]),
    ));
    assert_eq!(r.now(), Verdict::Running);
    r.job = Some(job(
        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                             "message": "Job has reached the specified backoff limit"}]),
    ));
    let f = failed(r.now());
    assert_eq!(f.failure.reason, FailureReason::JobFailed);
    assert_eq!(
        f.failure.message,
        "kubernetes Job task-job in namespace agents failed. Job reason: BackoffLimitExceeded. \
         Job message: Job has reached the specified backoff limit"
    );
    assert!(f.stopped);
    r.job = Some(job(
        json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]),
    ));
    assert_eq!(
        failed(r.now()).failure.reason,
        FailureReason::ActiveDeadline
    );
    r.job = None;
    assert_eq!(r.now(), Verdict::Running, "no Job seen yet");
}

#[test]
fn unschedulable_respects_its_timeout() {
    let unschedulable = |age: i64| {
        let mut p = pod("Pending", json!([]), json!([]));
        p["metadata"]["creationTimestamp"] = json!(stamp(-age));
        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available"}]);
        p
    };
    let f = failed(Run::new().pod(unschedulable(31)).now());
    assert_eq!(f.failure.reason, FailureReason::Unschedulable);
    assert!(
        f.failure.message.contains("unschedulable"),
        "{}",
        f.failure.message
    );
    assert!(f.failure.message.contains("0/3 nodes are available"));
    assert!(!f.stopped, "a pending pod must be expired by cleanup");
    assert_eq!(Run::new().pod(unschedulable(10)).now(), Verdict::Running);
    let mut disabled = Run::new().pod(unschedulable(300));
    disabled.ctx.unschedulable_timeout = None;
    assert_eq!(disabled.now(), Verdict::Running);
    // Without a usable creation time the runner's own clock times it.
    let mut p = unschedulable(0);
    p["metadata"]["creationTimestamp"] = json!("garbage");
    let mut r = Run::new().pod(p);
    assert_eq!(r.at(0), Verdict::Running);
    assert_eq!(r.at(29), Verdict::Running);
    assert_eq!(
        failed(r.at(30)).failure.reason,
        FailureReason::Unschedulable
    );
}

#[test]
fn only_conditions_still_met_are_timed() {
    // The runner re-judges a task on the clock while `FirstSeen` is not empty: it must empty
    // once the condition clears, or every task that was once unschedulable would be re-judged
    // every second until it ends.
    let mut p = pod("Pending", json!([]), json!([]));
    p["metadata"]["creationTimestamp"] = json!(stamp(0));
    p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available"}]);
    let mut r = Run::new().pod(p);
    assert_eq!(r.now(), Verdict::Running);
    assert_eq!(r.first.len(), 1, "an unschedulable pod is being timed");
    r.pods = vec![pod("Running", json!([]), json!([running("task")]))];
    assert_eq!(r.at(1), Verdict::Running);
    assert!(r.first.is_empty(), "a scheduled pod is no longer timed");
    // A mount failure is timed while its pod is Pending, and forgotten once the pod runs.
    let mut r = Run::new().pod(pod("Pending", json!([]), json!([])));
    r.events.push(mount_event(0));
    assert_eq!(r.now(), Verdict::Running);
    assert_eq!(r.first.len(), 1);
    assert_eq!(r.at(1), Verdict::Running);
    assert_eq!(r.first.len(), 1, "still failing to mount: still timed");
    r.pods = vec![pod("Running", json!([]), json!([running("task")]))];
    assert_eq!(r.at(2), Verdict::Running);
    assert!(r.first.is_empty());
}

#[test]
fn container_exit_carries_diagnostics() {
    let p = pod(
        "Failed",
        json!([exited("copy-sidecar-0", 0)]),
        json!([exited("task", 143)]),
    );
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::ContainerExit);
    assert_eq!(f.failure.exit_code, Some(143));
    for needle in [
        "container task",
        "pod task-pod",
        "namespace agents",
        "job task-job",
        "exited with code 143",
        "SIGTERM",
        "Pod phase: Failed",
        "check pod events and node activity",
        "eviction, preemption, node drain, activeDeadlineSeconds, or manual deletion",
    ] {
        assert!(
            f.failure.message.contains(needle),
            "{needle:?}: {}",
            f.failure.message
        );
    }
    assert_eq!(f.pod.as_deref(), Some("task-pod"));
    assert!(f.stopped);
    let k = serde_json::to_value(&f.details).unwrap();
    assert_eq!(k["kubernetes"]["container"]["name"], "task");
    assert_eq!(k["kubernetes"]["container"]["kind"], "regular");
    assert_eq!(k["kubernetes"]["pod"]["phase"], "Failed");
    assert_eq!(k["kubernetes"]["job"]["uid"], "job-uid");
}

#[test]
fn restartable_sidecar_exit_codes_are_ignored() {
    // A native sidecar stopped with SIGTERM at wind-down does not fail the task.
    let p = pod(
        "Running",
        json!([exited("copy-sidecar-0", 0), exited("proxy", 143)]),
        json!([running("task")]),
    );
    assert_eq!(Run::new().pod(p).now(), Verdict::Running);
    // A plain init container's exit does.
    let p = pod("Failed", json!([exited("copy-sidecar-0", 1)]), json!([]));
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::InitContainer);
    assert_eq!(f.failure.exit_code, Some(1));
    assert!(f.failure.message.contains("init container copy-sidecar-0"));
    // The sidecar's exit does not mask the task's.
    let p = pod(
        "Failed",
        json!([exited("proxy", 143)]),
        json!([exited("task", 2)]),
    );
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::ContainerExit);
    assert!(f.failure.message.contains("container task in pod task-pod"));
    assert!(f.failure.message.contains("exited with code 2"));
    assert_eq!(f.failure.exit_code, Some(2));
    // A sidecar that cannot pull its image still fails the task.
    let p = pod(
        "Pending",
        json!([
            exited("copy-sidecar-0", 0),
            waiting("proxy", "ImagePullBackOff")
        ]),
        json!([]),
    );
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::ImagePull);
    assert!(f.failure.message.contains("ImagePullBackOff"));
    let k = serde_json::to_value(&f.details).unwrap();
    assert_eq!(k["kubernetes"]["container"]["kind"], "sidecar");
    assert_eq!(
        k["kubernetes"]["container"]["waiting_reason"],
        "ImagePullBackOff"
    );
}

#[test]
fn succeeded_pod_with_sigterm_sidecar_waits_for_job_complete() {
    let p = pod(
        "Succeeded",
        json!([exited("copy-sidecar-0", 0), exited("proxy", 143)]),
        json!([exited("task", 0)]),
    );
    let mut r = Run::new().pod(p);
    assert_eq!(r.now(), Verdict::Running);
    r.job = Some(job(json!([{"type": "Complete", "status": "True"}])));
    assert_eq!(r.now(), Verdict::Succeeded);
}

#[test]
fn exit_codes_signals_and_oom() {
    let oom =
        json!({"name": "task", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}});
    let f = failed(Run::new().pod(pod("Failed", json!([]), json!([oom]))).now());
    assert_eq!(f.failure.reason, FailureReason::ContainerOom);
    assert_eq!(f.failure.exit_code, Some(137));
    assert!(f.failure.message.contains("(SIGKILL)"));
    let sig = json!({"name": "task", "state": {"terminated": {"exitCode": 1, "signal": 6}}});
    let f = failed(Run::new().pod(pod("Failed", json!([]), json!([sig]))).now());
    assert_eq!(f.failure.exit_code, Some(134), "128 + signal");
    assert!(f.failure.message.contains("exited with code 1 (SIGABRT)"));
    let f = failed(
        Run::new()
            .pod(pod("Failed", json!([]), json!([exited("task", 200)])))
            .now(),
    );
    assert!(f.failure.message.contains("(signal 72)"));
}

#[test]
fn waiting_reasons_map_to_wire_reasons() {
    for (kind, reason, want) in [
        ("c", "ErrImagePull", FailureReason::ImagePull),
        ("c", "ImagePullBackOff", FailureReason::ImagePull),
        ("c", "InvalidImageName", FailureReason::InvalidImage),
        (
            "c",
            "CreateContainerConfigError",
            FailureReason::ContainerCreate,
        ),
        ("c", "CreateContainerError", FailureReason::ContainerCreate),
        (
            "i",
            "CreateContainerConfigError",
            FailureReason::InitContainer,
        ),
        ("i", "InvalidImageName", FailureReason::InvalidImage),
    ] {
        let st = waiting(
            if kind == "c" {
                "task"
            } else {
                "copy-sidecar-0"
            },
            reason,
        );
        let p = if kind == "c" {
            pod("Pending", json!([]), json!([st]))
        } else {
            pod("Pending", json!([st]), json!([]))
        };
        let f = failed(Run::new().pod(p).now());
        assert_eq!(f.failure.reason, want, "{kind} {reason}");
        assert_eq!(f.failure.exit_code, None);
        assert!(
            f.failure
                .message
                .contains(&format!("is waiting: {reason}: details"))
        );
    }
    for benign in ["ContainerCreating", "PodInitializing"] {
        let p = pod("Pending", json!([]), json!([waiting("task", benign)]));
        assert_eq!(Run::new().pod(p).now(), Verdict::Running, "{benign}");
    }
}

#[test]
fn eviction_and_disruption() {
    let mut p = pod("Failed", json!([]), json!([exited("task", 143)]));
    p["status"]["reason"] = json!("Evicted");
    p["status"]["message"] = json!("The node was low on resource: memory.");
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::Evicted);
    assert_eq!(f.failure.exit_code, None);
    assert!(f.failure.message.contains("Pod reason: Evicted"));
    let mut p = pod("Running", json!([]), json!([exited("task", 143)]));
    p["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True",
        "reason": "PreemptionByScheduler", "message": "preempted by a higher priority pod"}]);
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::Evicted);
    assert!(
        f.failure.message.contains("PreemptionByScheduler"),
        "{}",
        f.failure.message
    );
}

fn mount_event(first_secs: i64) -> Value {
    json!({"type": "Warning", "reason": "FailedMount", "involvedObject": {"uid": "pod-uid", "kind": "Pod"},
           "message": "MountVolume.SetUp failed for volume \"cfg\": configmap \"cfg\" not found",
           "firstTimestamp": stamp(first_secs), "lastTimestamp": stamp(first_secs), "count": 1})
}

#[test]
fn failed_mount_is_tolerated_for_volume_mount_timeout() {
    let mut r = Run::new().pod(pod(
        "Pending",
        json!([]),
        json!([waiting("task", "ContainerCreating")]),
    ));
    r.events.push(mount_event(0));
    assert_eq!(r.at(0), Verdict::Running);
    assert_eq!(r.at(119), Verdict::Running);
    let f = failed(r.at(120));
    assert_eq!(f.failure.reason, FailureReason::VolumeMount);
    assert!(f.failure.message.contains("failed to mount a volume"));
    assert!(
        f.failure
            .message
            .contains("Kubernetes event reason: FailedMount")
    );
    let k = serde_json::to_value(&f.details).unwrap();
    assert_eq!(k["kubernetes"]["events"][0]["reason"], "FailedMount");
    // An event series that started long ago (a re-attached worker) counts from its start.
    let mut r = Run::new().pod(pod("Pending", json!([]), json!([])));
    r.events.push(mount_event(-500));
    assert_eq!(failed(r.now()).failure.reason, FailureReason::VolumeMount);
    // Zero fails on the first event (the Go worker's behaviour); None never fails.
    let mut r = Run::new().pod(pod("Pending", json!([]), json!([])));
    r.ctx.volume_mount_timeout = Some(Duration::ZERO);
    r.events.push(mount_event(0));
    assert_eq!(failed(r.now()).failure.reason, FailureReason::VolumeMount);
    r.ctx.volume_mount_timeout = None;
    assert_eq!(r.at(10_000), Verdict::Running);
    // Events about another pod do not count.
    let mut r = Run::new().pod(pod("Pending", json!([]), json!([])));
    let mut other = mount_event(-500);
    other["involvedObject"]["uid"] = json!("other-pod");
    r.events.push(other);
    assert_eq!(r.now(), Verdict::Running);
}

#[test]
fn a_mount_that_recovered_is_not_held_against_a_pod_still_pending() {
    // Mount failures long past the timeout, then signs the volumes are mounted now.
    let long_ago = |r: &mut Run| r.events.push(mount_event(-500));
    // The sandbox exists: the kubelet only creates it after every volume is mounted.
    let mut p = pod(
        "Pending",
        json!([]),
        json!([waiting("task", "ContainerCreating")]),
    );
    p["status"]["conditions"] = json!([{"type": "PodReadyToStartContainers", "status": "True"}]);
    let mut r = Run::new().pod(p);
    long_ago(&mut r);
    assert_eq!(r.now(), Verdict::Running);
    // An init container ran.
    let mut r = Run::new().pod(pod(
        "Pending",
        json!([exited("copy-sidecar-0", 0)]),
        json!([waiting("task", "ContainerCreating")]),
    ));
    long_ago(&mut r);
    assert_eq!(r.now(), Verdict::Running);
    // The kubelet pulls the image after the last failure.
    let pending = || {
        pod(
            "Pending",
            json!([]),
            json!([waiting("task", "ContainerCreating")]),
        )
    };
    let pulling = |secs: i64| {
        json!({"type": "Normal", "reason": "Pulling", "involvedObject": {"uid": "pod-uid"},
               "message": "Pulling image \"agent:1\"", "firstTimestamp": stamp(secs),
               "lastTimestamp": stamp(secs), "count": 1})
    };
    let mut r = Run::new().pod(pending());
    long_ago(&mut r);
    r.events.push(pulling(-400));
    assert_eq!(r.now(), Verdict::Running);
    // A pull before the mount kept failing says nothing about now (the condition is unset
    // and no container started): still a mount failure.
    let mut r = Run::new().pod(pending());
    r.events.push(pulling(-600));
    long_ago(&mut r);
    assert_eq!(failed(r.now()).failure.reason, FailureReason::VolumeMount);
    // PodReadyToStartContainers=False is no sign either.
    let mut p = pending();
    p["status"]["conditions"] = json!([{"type": "PodReadyToStartContainers", "status": "False"}]);
    let mut r = Run::new().pod(p);
    long_ago(&mut r);
    assert_eq!(failed(r.now()).failure.reason, FailureReason::VolumeMount);
}

#[test]
fn deadline_is_reported_as_such() {
    // The Job ran out of time: its killed pod shows SIGTERM before the Job says Failed.
    let mut r = Run::new().pod(pod("Running", json!([]), json!([exited("task", 143)])));
    let mut j = job(json!([]));
    j["spec"]["activeDeadlineSeconds"] = json!(30);
    r.job = Some(j);
    let f = failed(r.now());
    assert_eq!(f.failure.reason, FailureReason::ActiveDeadline);
    assert_eq!(f.failure.exit_code, Some(143));
    // The controller's FailureTarget condition says so too.
    let mut r = Run::new().pod(pod("Running", json!([]), json!([exited("task", 143)])));
    r.job = Some(job(
        json!([{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}]),
    ));
    assert_eq!(
        failed(r.now()).failure.reason,
        FailureReason::ActiveDeadline
    );
    // A failed pod whose reason mentions the deadline.
    let mut p = pod("Failed", json!([]), json!([]));
    p["status"]["reason"] = json!("DeadlineExceeded");
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::ActiveDeadline);
    // Without a deadline a failed pod is job_failed.
    let f = failed(Run::new().pod(pod("Failed", json!([]), json!([]))).now());
    assert_eq!(f.failure.reason, FailureReason::JobFailed);
    assert!(
        f.failure
            .message
            .starts_with("pod task-pod (namespace agents, job task-job) failed")
    );
}

#[test]
fn a_replaced_job_fails_the_task_and_its_pods_are_ignored() {
    let mut r = Run::new();
    let mut j = job(json!([{"type": "Complete", "status": "True"}]));
    j["metadata"]["uid"] = json!("someone-else");
    r.job = Some(j);
    r.source = Source::SafetyPoll;
    let f = failed(r.now());
    assert_eq!(f.failure.reason, FailureReason::JobWatch);
    assert_eq!(f.failure.message, "job task-job was replaced while polling");
    assert_eq!(
        serde_json::to_value(&f.details).unwrap()["kubernetes"]["observation_source"],
        "safety_poll"
    );
    let mut stranger = pod("Failed", json!([]), json!([exited("task", 1)]));
    stranger["metadata"]["labels"]["controller-uid"] = json!("someone-else");
    assert_eq!(Run::new().pod(stranger).now(), Verdict::Running);
}

#[test]
fn pods_the_controller_cannot_create_fail_after_the_timeout() {
    let mut r = Run::new();
    r.events
        .push(json!({"type": "Warning", "reason": "FailedCreate",
        "involvedObject": {"kind": "Job", "uid": "job-uid"},
        "message": "pods \"task-job-x\" is forbidden: violates PodSecurity \"restricted:latest\"",
        "firstTimestamp": stamp(0)}));
    assert_eq!(r.at(0), Verdict::Running);
    assert_eq!(r.first.len(), 1);
    let f = failed(r.at(30));
    assert_eq!(f.failure.reason, FailureReason::JobCreate);
    assert!(
        f.failure.message.contains("violates PodSecurity"),
        "{}",
        f.failure.message
    );
    assert!(
        f.failure
            .message
            .contains("Job task-job (namespace agents)")
    );
    let k = serde_json::to_value(&f.details).unwrap();
    assert_eq!(k["kubernetes"]["events"][0]["reason"], "FailedCreate");
    assert!(k["kubernetes"].get("pod").is_none());
    // Once a pod exists the event is history.
    let mut r = r.pod(pod("Running", json!([]), json!([running("task")])));
    assert_eq!(r.at(60), Verdict::Running);
}

#[test]
fn first_pod_failure_wins_and_running_pods_do_not_fail() {
    let healthy = pod(
        "Running",
        json!([exited("copy-sidecar-0", 0)]),
        json!([running("task")]),
    );
    assert_eq!(Run::new().pod(healthy.clone()).now(), Verdict::Running);
    let mut broken = pod("Failed", json!([]), json!([exited("task", 3)]));
    broken["metadata"]["name"] = json!("second");
    let f = failed(Run::new().pod(healthy).pod(broken).now());
    assert_eq!(f.pod.as_deref(), Some("second"));
    assert_eq!(f.failure.exit_code, Some(3));
}

#[test]
fn a_failed_readiness_copy_is_sidecar_prep() {
    let mut p = pod(
        "Pending",
        json!([{"name": "copy-sidecar-0",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "oz-sidecar-copy-failed\n"}}}]),
        json!([]),
    );
    p["spec"]["initContainers"][0]["restartPolicy"] = json!("Always");
    let f = failed(Run::new().pod(p).now());
    assert_eq!(f.failure.reason, FailureReason::SidecarPrep);
    assert!(
        f.failure.message.contains("init container copy-sidecar-0"),
        "{}",
        f.failure.message
    );
    let k = serde_json::to_value(&f.details).unwrap();
    assert_eq!(k["kubernetes"]["container"]["kind"], "sidecar");
}

#[test]
fn a_vanished_job_is_a_watch_failure() {
    let f = failed(job_vanished(&ctx(), Source::JobWatch, at(0)));
    assert_eq!(f.failure.reason, FailureReason::JobWatch);
    assert_eq!(
        f.failure.message,
        "kubernetes Job task-job in namespace agents was deleted before it finished"
    );
    assert!(!f.stopped, "nothing proves the pod stopped");
    let k = serde_json::to_value(&f.details).unwrap();
    assert_eq!(k["kubernetes"]["observation_source"], "job_watch");
}

/// Replaces random nodes of `v` with values of the wrong type.
fn mutate(v: &mut Value, rng: &mut Rng) {
    let wrong = [
        json!(null),
        json!(7),
        json!(-1),
        json!("x"),
        json!(""),
        json!([]),
        json!({}),
        json!(true),
        json!(1e300),
        json!("2026-99-99T99:99:99Z"),
    ];
    match v {
        Value::Object(map) => {
            for (_, child) in map.iter_mut() {
                if rng.next().is_multiple_of(5) {
                    *child = rng.pick(&wrong).clone();
                } else {
                    mutate(child, rng);
                }
            }
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                mutate(child, rng);
            }
        }
        _ => {}
    }
}

#[test]
fn malformed_api_objects_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seed_pod = pod(
        "Failed",
        json!([
            exited("copy-sidecar-0", 0),
            exited("proxy", 143),
            waiting("setup", "ErrImagePull")
        ]),
        json!([exited("task", 137), running("logger")]),
    );
    seed_pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "m"}, {"type": "DisruptionTarget", "status": "True"}]);
    let seed_job = job(json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]));
    let seed_event = mount_event(-10);
    for _ in 0..2000 {
        let (mut p, mut j, mut e) = (seed_pod.clone(), seed_job.clone(), seed_event.clone());
        mutate(&mut p, &mut rng);
        mutate(&mut j, &mut rng);
        mutate(&mut e, &mut rng);
        let mut r = Run::new().pod(p.clone());
        r.job = Some(j);
        r.events.push(e);
        let _ = r.now();
        let _ = crate::backend::kubernetes::setup_phases::SetupTracker::default().observe(&p);
        let _ = crate::backend::kubernetes::cleanup::execution_stopped(&seed_job, &[p]);
    }
    // Whole objects of the wrong shape too.
    for odd in [json!(null), json!([]), json!("pod"), json!(3)] {
        let mut r = Run::new().pod(odd.clone());
        r.job = Some(odd.clone());
        r.events.push(odd);
        assert_eq!(r.now(), Verdict::Running);
    }
}
