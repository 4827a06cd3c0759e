//! The Kubernetes backend's remaining promises of issue 9 end to end: `/readyz` follows the API
//! server, the metrics of §6, watches that resume from their resourceVersion, the 30-second
//! safety poll when the watches go silent, `--no-cleanup`, the operator's Job customisation
//! (`extra_labels`, `extra_annotations`, `pod_template`) and `check` on a missing namespace.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::harness::{TestDir, Worker, WorkerCommand};
use crate::support::kube_sim::{KubeSim, Seen, Step, ms};
use crate::support::oz_server::OzServer;
use crate::worker::ops::{get, ops_addr, sample};
use crate::worker::{API_KEY, T, assignment, expect, frames_for};

fn assign(oz: &OzServer, id: &str, image: &str) {
    let mut a = assignment(id, Some(&format!("{id}-exec")), json!({}));
    a["data"]["docker_image"] = json!(image);
    oz.push_json(&a).unwrap();
}

fn stop(mut w: Worker) {
    w.signal(libc::SIGTERM);
    w.wait(T);
}

fn task_post(sim: &KubeSim, task: &str) -> Value {
    sim.state()
        .requests("POST", "/apis/batch/v1/namespaces/agents/jobs")
        .into_iter()
        .find(|p| p.body["metadata"]["labels"]["oz-task-id"] == task)
        .map(|p| p.body.clone())
        .unwrap_or_else(|| panic!("no Job POST for {task}"))
}

/// Polls `/metrics` until `pred` holds on the body; returns that body.
fn metrics_until(addr: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        if pred(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what} never held:\n{body}");
        std::thread::sleep(ms(100));
    }
}

/// Polls `/readyz` until it answers `status` (the backend is probed every 5 s); returns the body.
fn readyz_until(addr: &str, status: u16) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (got, body) = get(addr, "/readyz");
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} (last {got}: {body})"
        );
        std::thread::sleep(ms(200));
    }
}

fn is_list(s: &Seen, collection: &str) -> bool {
    s.method == "GET" && !s.watch && s.path.ends_with(collection)
}

#[test]
fn readyz_follows_the_api_server_and_watches_resume_from_their_resource_version() {
    let dir = TestDir::new("e2e-kube-readyz");
    let sim = KubeSim::start();
    let oz = OzServer::start();
    let cfg = super::config(&dir, &sim, "kube-readyz", "");
    let mut w = super::start_with(&dir, &oz, &cfg, &["--metrics-addr", "127.0.0.1:0"]);
    let addr = ops_addr(&mut w);
    readyz_until(&addr, 200);
    let body = metrics_until(&addr, "two open watches", |b| {
        sample(b, "oz_worker_kubernetes_watches_open") == 2.0
    });
    assert_eq!(
        sample(&body, "oz_worker_kubernetes_watch_reconnects_total"),
        0.0
    );

    // The server ends both watch streams (no compaction): each is reopened from the
    // resourceVersion it had reached, with bookmarks, and nothing is listed again.
    let (lists_before, watches_before) = {
        let st = sim.state();
        let lists = st
            .seen
            .iter()
            .filter(|s| is_list(s, "/jobs") || is_list(s, "/pods"))
            .count();
        (lists, st.seen.iter().filter(|s| s.watch).count())
    };
    sim.cut_watches();
    let body = metrics_until(&addr, "both watches reopened", |b| {
        sample(b, "oz_worker_kubernetes_watch_reconnects_total") >= 2.0
            && sample(b, "oz_worker_kubernetes_watches_open") == 2.0
    });
    assert!(
        sample(
            &body,
            r#"oz_worker_kubernetes_api_requests_total{verb="watch",code="2xx"}"#
        ) >= 4.0,
        "{body}"
    );
    {
        let st = sim.state();
        let reopened: Vec<&Seen> = st
            .seen
            .iter()
            .filter(|s| s.watch)
            .skip(watches_before)
            .collect();
        assert!(reopened.len() >= 2, "{reopened:?}");
        for s in &reopened {
            assert_eq!(s.param("allowWatchBookmarks"), Some("true"), "{s:?}");
            let rv = s.param("resourceVersion").unwrap_or_default();
            assert!(
                rv.parse::<u64>().is_ok_and(|v| v > 0),
                "a watch reopened without its resourceVersion: {s:?}"
            );
        }
        let lists_after = st
            .seen
            .iter()
            .filter(|s| is_list(s, "/jobs") || is_list(s, "/pods"))
            .count();
        assert_eq!(lists_after, lists_before, "a resumable watch was relisted");
    }
    // The resumed watches carry a task through.
    assign(&oz, "t-after-cut", "sim/default");
    expect(&oz, "task_completed", "t-after-cut");

    // The API server stops answering: /readyz says so while the Oz link stays up.
    sim.fault("GET /version", 1_000_000, None, None);
    let why = readyz_until(&addr, 503);
    assert!(why.contains("backend"), "{why}");
    assert!(!why.contains("not connected to Oz"), "{why}");
    let body = metrics_until(&addr, "failed requests counted", |b| {
        sample(
            b,
            r#"oz_worker_kubernetes_api_requests_total{verb="get",code="error"}"#,
        ) > 0.0
    });
    assert_eq!(sample(&body, "oz_worker_connected"), 1.0, "{body}");
    // It answers again: ready again.
    sim.with(|s| s.faults.clear());
    readyz_until(&addr, 200);
    assert!(w.stderr().contains("backend answers again"), "{}", w.dump());
    stop(w);
}

#[test]
fn the_safety_poll_reports_an_outcome_the_silent_watches_never_delivered() {
    let dir = TestDir::new("e2e-kube-safety-poll");
    let sim = KubeSim::start();
    sim.script(
        "sim/fails-unseen",
        vec![Step::Running(ms(1000)), Step::exit(6)],
    );
    let oz = OzServer::start();
    let cfg = super::config(&dir, &sim, "kube-poll", "");
    let w = super::start_with(&dir, &oz, &cfg, &[]);
    assign(&oz, "t-unseen", "sim/fails-unseen");
    sim.wait_until(T, |s| {
        s.pods().iter().any(|p| p["status"]["phase"] == "Running")
    });
    // From now on the watches stay open but deliver nothing (bookmarks still advance their
    // resourceVersion): only the task's own 30 s poll can see the pod fail.
    sim.with(|s| s.store.silent = true);
    let frame = oz.wait_for_frame(T + Duration::from_secs(40), |f| {
        f.kind() == "task_failed" && f.task_id() == "t-unseen"
    });
    let f = frame.value["data"].clone();
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    assert_eq!(f["exit_code"], 6, "{f}");
    assert_eq!(
        f["failure_details"]["kubernetes"]["observation_source"], "safety_poll",
        "{f}"
    );
    let st = sim.state();
    assert!(
        st.requests("GET", "/jobs/oz-task-t-unseen")
            .iter()
            .any(|r| !r.watch && r.status == 200),
        "the Job was polled"
    );
    drop(st);
    sim.with(|s| s.store.silent = false);
    stop(w);
}

#[test]
fn no_cleanup_keeps_a_succeeded_job_without_a_ttl_but_still_stops_an_active_failed_one() {
    let dir = TestDir::new("e2e-kube-no-cleanup");
    let sim = KubeSim::start();
    sim.script(
        "sim/pull",
        vec![Step::Waiting("ImagePullBackOff".into(), Duration::MAX)],
    );
    let oz = OzServer::start();
    let cfg = super::config(&dir, &sim, "kube-keep", "");
    let w = super::start_with(&dir, &oz, &cfg, &["--no-cleanup"]);
    assign(&oz, "t-keep-ok", "sim/default");
    expect(&oz, "task_completed", "t-keep-ok");
    sim.wait_until(T, |s| {
        s.jobs().iter().any(|j| {
            j["metadata"]["labels"]["oz-task-id"] == "t-keep-ok"
                && !j["metadata"]["annotations"]["oz.warp.dev/reported"].is_null()
        })
    });
    let post = task_post(&sim, "t-keep-ok");
    assert!(
        post["spec"]["ttlSecondsAfterFinished"].is_null(),
        "a kept Job must not expire by TTL: {post}"
    );
    {
        let st = sim.state();
        assert!(st.requests("DELETE", "/jobs/oz-task-t-keep-ok").is_empty());
        let job = st
            .jobs()
            .into_iter()
            .find(|j| j["metadata"]["labels"]["oz-task-id"] == "t-keep-ok")
            .expect("kept");
        assert_eq!(job["status"]["succeeded"], 1);
    }

    // A failure whose Job is still active is stopped even so (kept for inspection).
    assign(&oz, "t-keep-pull", "sim/pull");
    let f = expect(&oz, "task_failed", "t-keep-pull");
    assert_eq!(f["failure_reason"], "image_pull", "{f}");
    sim.wait_until(T, |s| {
        s.requests("PATCH", "/jobs/oz-task-t-keep-pull")
            .iter()
            .any(|p| p.status == 200 && p.body["spec"]["activeDeadlineSeconds"] == 1)
    });
    assert!(
        sim.state()
            .requests("DELETE", "/jobs/oz-task-t-keep-pull")
            .is_empty()
    );
    stop(w);
}

#[test]
fn a_tasks_job_carries_the_operators_labels_annotations_and_pod_template() {
    let dir = TestDir::new("e2e-kube-job-shape");
    let sim = KubeSim::start();
    let oz = OzServer::start();
    let extra = "    extra_labels:\n      team: agents\n    extra_annotations:\n      example.com/owner: platform\n    pod_template:\n      nodeSelector:\n        pool: agents\n      tolerations:\n      - key: dedicated\n        operator: Equal\n        value: agents\n        effect: NoSchedule\n      priorityClassName: agent-low\n      containers:\n      - name: task\n        resources:\n          limits:\n            cpu: \"3\"\n        env:\n        - name: FROM_TEMPLATE\n          value: \"yes\"\n      - name: log-tail\n        image: example.com/log-tail:1\n";
    let cfg = super::config(&dir, &sim, "kube-shape", extra);
    let w = super::start_with(&dir, &oz, &cfg, &[]);
    assign(&oz, "t-shape", "sim/default");
    expect(&oz, "task_completed", "t-shape");
    let job = task_post(&sim, "t-shape");
    assert_eq!(job["metadata"]["labels"]["team"], "agents", "{job}");
    assert_eq!(job["metadata"]["labels"]["oz-worker-id"], "kube-shape");
    assert_eq!(
        job["metadata"]["annotations"]["example.com/owner"], "platform",
        "{job}"
    );
    let meta = &job["spec"]["template"]["metadata"];
    assert_eq!(meta["labels"]["team"], "agents", "{job}");
    assert_eq!(
        meta["annotations"]["example.com/owner"], "platform",
        "{job}"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["pool"], "agents", "{job}");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated", "{job}");
    assert_eq!(pod["priorityClassName"], "agent-low", "{job}");
    assert_eq!(pod["restartPolicy"], "Never");
    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, vec!["task", "log-tail"], "{job}");
    // The template's `task` container is the task's: the worker's image and command, the
    // template's resources and env kept beside the worker's.
    let task = &containers[0];
    assert_eq!(task["image"], "sim/default", "{job}");
    assert_eq!(task["resources"]["limits"]["cpu"], "3", "{job}");
    let env = task["env"].as_array().cloned().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e["name"] == "FROM_TEMPLATE" && e["value"] == "yes"),
        "{job}"
    );
    assert!(
        env.iter()
            .any(|e| e["name"] == "TASK_ID" && e["value"] == "t-shape"),
        "{job}"
    );
    let mounts = task["volumeMounts"].as_array().cloned().unwrap_or_default();
    assert!(mounts.iter().any(|m| m["name"] == "workspace"), "{job}");
    let kinds: Vec<String> = frames_for(&oz, "t-shape")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, vec!["task_claimed", "task_completed"], "{kinds:?}");
    stop(w);
}

#[test]
fn check_fails_on_a_missing_namespace_and_names_it() {
    let dir = TestDir::new("e2e-kube-check-ns");
    let sim = KubeSim::start();
    let kc = sim.kubeconfig(&dir.path, None);
    let cfg = dir.write(
        "config.yaml",
        &format!(
            "worker_id: kube-ns\nbackend:\n  kubernetes:\n    namespace: nowhere\n    kubeconfig: {}\n",
            kc.display()
        ),
    );
    let out = WorkerCommand::new(&dir)
        .args(["check", "--offline", "--api-key", API_KEY, "--config-file"])
        .arg(cfg.display().to_string())
        .run();
    out.expect_code(1);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("namespace \"nowhere\""))
        .unwrap_or_else(|| panic!("no namespace line: {}", out.dump()));
    assert!(line.contains("not found"), "{line}");
    assert!(!line.starts_with("ok"), "{line}");
    // The source line says where the configuration came from.
    assert!(
        out.stdout.contains(&format!(
            "Kubernetes configuration from kubeconfig {} (context sim)",
            kc.display()
        )),
        "{}",
        out.dump()
    );
    assert!(sim.state().requests("POST", "/jobs").is_empty());
}
