//! The Kubernetes backend through the real binary: the fake Oz server assigns tasks, the
//! worker runs each as a Job on the Kubernetes API simulator, and reports the outcome the
//! simulator's scripted pod lifecycle dictates.

use std::time::Duration;

use serde_json::{Value, json};

use oz_agent_worker::backend::kubernetes::names;

use crate::support::harness::{TestDir, Worker, WorkerCommand};
use crate::support::kube_sim::{KubeSim, Step, ms};
use crate::support::oz_server::OzServer;
use crate::worker::ops::{get, ops_addr, sample};
use crate::worker::{T, assignment, cancellation, expect, frames_for};

/// [`super::worker`], reconnecting quickly.
fn worker(dir: &TestDir, oz: &OzServer, config: &std::path::Path) -> WorkerCommand {
    super::worker(dir, oz, config)
        .env("OZ_WORKER_BACKOFF_INITIAL", "100ms")
        .env("OZ_WORKER_BACKOFF_MAX", "500ms")
}

fn start(dir: &TestDir, oz: &OzServer, sim: &KubeSim, worker_id: &str) -> Worker {
    let cfg = super::config(dir, sim, worker_id, "");
    let mut w = worker(dir, oz, &cfg)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    w
}

fn assign(oz: &OzServer, id: &str, image: &str) {
    let mut a = assignment(
        id,
        Some(&format!("{id}-exec")),
        json!({"TOKEN": "kube-canary-93"}),
    );
    a["data"]["docker_image"] = json!(image);
    a["data"]["sidecar_image"] = json!("example.com/oz-sidecar:1");
    oz.push_json(&a).unwrap();
}

fn job_of<'a>(jobs: &'a [Value], task: &str) -> Option<&'a Value> {
    jobs.iter()
        .find(|j| j["metadata"]["labels"]["oz-task-id"] == task)
}

fn exit(code: i32, reason: Option<&str>) -> Step {
    Step::Exit {
        code,
        reason: reason.map(str::to_owned),
        sidecar_143: false,
    }
}

#[test]
fn tasks_run_as_jobs_with_outcomes_cleanup_and_shared_watches() {
    let dir = TestDir::new("e2e-kube");
    let sim = KubeSim::start();
    sim.script("sim/exit-3", vec![Step::Running(ms(100)), exit(3, None)]);
    sim.script(
        "sim/oom",
        vec![Step::Running(ms(100)), exit(137, Some("OOMKilled"))],
    );
    sim.script(
        "sim/pull",
        vec![Step::Waiting("ImagePullBackOff".into(), Duration::MAX)],
    );
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &sim, "kube-e2e");
    {
        // The preflight ran and was deleted with Background propagation before we connected.
        let st = sim.state();
        let posts = st.requests("POST", "/apis/batch/v1/namespaces/agents/jobs");
        assert_eq!(posts.len(), 1, "one preflight Job");
        assert!(
            posts[0].body["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("oz-preflight-")
        );
        let deletes = st.requests("DELETE", "/jobs/oz-preflight-");
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].body["propagationPolicy"], "Background");
        assert!(st.requests("GET", "/version").len() == 1);
    }

    // Success: the Job completes and is deleted (Background), nothing left behind.
    assign(&oz, "t-ok", "sim/default");
    expect(&oz, "task_claimed", "t-ok");
    let done = expect(&oz, "task_completed", "t-ok");
    assert!(done.is_object());
    sim.wait_until(T, |s| {
        job_of(&s.jobs(), "t-ok").is_none() && s.pods().is_empty()
    });
    {
        let st = sim.state();
        let post = st.requests("POST", "/apis/batch/v1/namespaces/agents/jobs")[1]
            .body
            .clone();
        assert_eq!(post["metadata"]["name"], "oz-task-t-ok-exec-ok-exec");
        assert_eq!(post["spec"]["backoffLimit"], 0);
        assert_eq!(post["metadata"]["labels"]["oz-worker-id"], "kube-e2e");
        let del = st.requests("DELETE", "/jobs/oz-task-t-ok");
        assert_eq!(del.len(), 1);
        assert_eq!(del[0].body["propagationPolicy"], "Background");
    }

    // A non-zero exit: container_exit with the code; the stopped Job is kept for post-mortem.
    assign(&oz, "t-exit", "sim/exit-3");
    let f = expect(&oz, "task_failed", "t-exit");
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    assert_eq!(f["exit_code"], 3);
    // failure_details.kubernetes, schema 1 (upstream #139).
    let k = &f["failure_details"]["kubernetes"];
    assert_eq!(k["schema_version"], 1, "{f}");
    assert_eq!(k["container"]["normalized_exit_code"], 3, "{f}");
    assert!(job_of(&sim.state().jobs(), "t-exit").is_some());

    // OOMKilled: container_oom, 137.
    assign(&oz, "t-oom", "sim/oom");
    let f = expect(&oz, "task_failed", "t-oom");
    assert_eq!(f["failure_reason"], "container_oom", "{f}");
    assert_eq!(f["exit_code"], 137);

    // Image pull back-off: image_pull; the still-active Job is expired by a fenced patch.
    assign(&oz, "t-pull", "sim/pull");
    let f = expect(&oz, "task_failed", "t-pull");
    assert_eq!(f["failure_reason"], "image_pull", "{f}");
    sim.wait_until(T, |s| {
        s.requests("PATCH", "/jobs/oz-task-t-pull").iter().any(|p| {
            p.status == 200
                && p.body["spec"]["activeDeadlineSeconds"] == 1
                && p.body["metadata"]["uid"].is_string()
        })
    });

    // Twenty tasks at once share the worker's two watches.
    for i in 0..20 {
        assign(&oz, &format!("t-many-{i}"), "sim/default");
    }
    for i in 0..20 {
        expect(&oz, "task_completed", &format!("t-many-{i}"));
    }
    let max = sim.state().max_open_watches;
    assert!(max <= 2, "the worker opened {max} watches at once");

    // Metrics: API requests by verb and status class, open watches, reconnects; /readyz ok.
    let addr = ops_addr(&mut w);
    let (status, body) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    let creates = sample(
        &body,
        r#"oz_worker_kubernetes_api_requests_total{verb="create",code="2xx"}"#,
    );
    assert!(creates >= 25.0, "{creates} creates\n{body}");
    assert_eq!(
        sample(&body, "oz_worker_kubernetes_watches_open"),
        2.0,
        "{body}"
    );
    assert_eq!(
        sample(&body, "oz_worker_kubernetes_watch_reconnects_total"),
        0.0,
        "{body}"
    );
    assert_eq!(get(&addr, "/readyz").0, 200);

    let log = w.stderr();
    assert!(
        !log.contains("kube-canary-93"),
        "a task secret reached the log"
    );
    w.signal(libc::SIGTERM);
    w.wait(T);
}

#[test]
fn cancel_deletes_the_job_and_shutdown_preserves_running_jobs() {
    let dir = TestDir::new("e2e-kube-cancel");
    let sim = KubeSim::start();
    sim.script("sim/forever", vec![Step::Running(Duration::MAX)]);
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &sim, "kube-cancel");

    assign(&oz, "t-cancel", "sim/forever");
    sim.wait_until(T, |s| {
        s.pods().iter().any(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["labels"]["oz-task-id"] == "t-cancel"
        })
    });
    oz.push_json(&cancellation("t-cancel", Some("t-cancel-exec")))
        .unwrap();
    sim.wait_until(T, |s| {
        job_of(&s.jobs(), "t-cancel").is_none() && s.pods().is_empty()
    });
    let done = expect(&oz, "task_completed", "t-cancel");
    assert_eq!(done["task_state"], "CANCELLED", "{done}");
    expect(&oz, "execution_closed", "t-cancel");
    {
        let st = sim.state();
        let gets = st.requests("GET", "/jobs/oz-task-t-cancel");
        assert!(
            !gets.is_empty(),
            "the labels were checked before the delete"
        );
        assert_eq!(st.requests("DELETE", "/jobs/oz-task-t-cancel").len(), 1);
    }

    // Shutdown: the running Job stays, and no terminal message is sent for it.
    assign(&oz, "t-keep", "sim/forever");
    expect(&oz, "task_claimed", "t-keep");
    sim.wait_until(T, |s| job_of(&s.jobs(), "t-keep").is_some());
    w.signal(libc::SIGTERM);
    let status = w.wait(T);
    assert!(status.success(), "{}", w.dump());
    assert!(
        w.stderr().contains("Preserving Kubernetes task Jobs"),
        "{}",
        w.dump()
    );
    let st = sim.state();
    assert!(
        job_of(&st.jobs(), "t-keep").is_some(),
        "shutdown deleted the Job"
    );
    assert!(st.requests("DELETE", "/jobs/oz-task-t-keep").is_empty());
    assert!(st.requests("PATCH", "/jobs/oz-task-t-keep").is_empty());
    let kinds: Vec<String> = frames_for(&oz, "t-keep")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, vec!["task_claimed"], "{kinds:?}");
    drop(st);
    let cancel_frames: Vec<String> = frames_for(&oz, "t-cancel")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        cancel_frames,
        vec!["task_claimed", "task_completed", "execution_closed"]
    );
}

#[test]
fn startup_fails_with_a_diagnosis_when_rbac_denies_jobs() {
    let dir = TestDir::new("e2e-kube-rbac");
    let sim = KubeSim::start();
    sim.with(|s| {
        s.forbidden.insert(("create".into(), "jobs".into()));
    });
    let oz = OzServer::start();
    let cfg = super::config(&dir, &sim, "kube-rbac", "");
    let out = worker(&dir, &oz, &cfg).run();
    assert_ne!(out.code(), Some(0), "{}", out.dump());
    assert!(
        out.stderr
            .contains("may not create jobs in namespace \"agents\""),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr.contains("resources: [\"jobs\"]"),
        "{}",
        out.dump()
    );
    assert!(
        oz.connections().is_empty(),
        "the worker connected to Oz despite a failed preflight"
    );
}

#[test]
fn startup_quotes_a_pod_security_failed_create_event() {
    let dir = TestDir::new("e2e-kube-psa");
    let sim = KubeSim::start();
    sim.script(
        "busybox:1.36",
        vec![Step::FailedCreate(
            "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true".into(),
        )],
    );
    let oz = OzServer::start();
    let cfg = super::config(&dir, &sim, "kube-psa", "");
    let out = worker(&dir, &oz, &cfg).run();
    assert_ne!(out.code(), Some(0), "{}", out.dump());
    assert!(
        out.stderr.contains("violates PodSecurity"),
        "{}",
        out.dump()
    );
    assert!(
        out.stderr.contains("startup preflight failed"),
        "{}",
        out.dump()
    );
    // Deleted however it ended.
    assert!(sim.state().jobs().is_empty());
}

#[test]
fn a_restarted_worker_reports_a_preserved_job_once_over_three_starts() {
    let dir = TestDir::new("e2e-kube-reattach");
    let sim = KubeSim::start();
    sim.script(
        "sim/fails-later",
        vec![Step::Running(ms(4000)), exit(5, None)],
    );
    let oz = OzServer::start();
    let cfg = super::config(&dir, &sim, "kube-re", "");

    // First start: the task runs; the worker stops; the Job is preserved and keeps running.
    let mut w = worker(&dir, &oz, &cfg).spawn();
    w.wait_for_log("Connected to Oz", T);
    assign(&oz, "t-re", "sim/fails-later");
    expect(&oz, "task_claimed", "t-re");
    sim.wait_until(T, |s| job_of(&s.jobs(), "t-re").is_some());
    w.signal(libc::SIGTERM);
    w.wait(T);
    // It finishes while no worker runs.
    sim.wait_until(T, |s| {
        job_of(&s.jobs(), "t-re").is_some_and(|j| j["status"]["failed"] == 1)
    });

    // Second start, with the outcome journal gone (a rescheduled pod's fresh emptyDir): the
    // Job is found by the backend's own listing, followed and reported once, then marked
    // reported. (With the journal the same Job is followed through its crash recovery.)
    std::fs::remove_dir_all(dir.join("state")).unwrap();
    let mut w = worker(&dir, &oz, &cfg).spawn();
    let frame = oz.wait_for_frame(T, |f| f.kind() == "task_failed" && f.task_id() == "t-re");
    assert_eq!(frame.conn, 1, "reported on the new connection");
    let f = frame.value["data"].clone();
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    assert_eq!(f["exit_code"], 5);
    assert_eq!(f["execution_id"], "t-re-exec");
    sim.wait_until(T, |s| {
        job_of(&s.jobs(), "t-re")
            .is_some_and(|j| !j["metadata"]["annotations"]["oz.warp.dev/reported"].is_null())
    });
    w.signal(libc::SIGTERM);
    w.wait(T);
    // Followed again either way: through the outcome journal (which knew of the claim) or,
    // without one, through the backend's own re-attach listing.
    assert!(
        w.stderr().contains("again after a worker restart"),
        "{}",
        w.dump()
    );

    // Third start: nothing to report.
    let mut w = worker(&dir, &oz, &cfg).spawn();
    oz.wait_for_connections(3, T);
    w.wait_for_log("Connected to Oz", T);
    std::thread::sleep(ms(500));
    w.signal(libc::SIGTERM);
    w.wait(T);
    let kinds: Vec<String> = frames_for(&oz, "t-re")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, vec!["task_claimed", "task_failed"], "{kinds:?}");
}

#[test]
fn a_restarted_worker_reattaches_a_job_whose_ids_label_sanitising_changed() {
    let dir = TestDir::new("e2e-kube-reattach-raw");
    let sim = KubeSim::start();
    sim.script(
        "sim/fails-later",
        vec![Step::Running(ms(3000)), exit(7, None)],
    );
    let oz = OzServer::start();
    let cfg = super::config(&dir, &sim, "kube-raw", "");
    // Upper case and longer than a label value may be: the id labels cannot carry it.
    let task = format!("T-Raw_UPPER-{}", "x".repeat(70));
    let label = names::label_value(&task);
    assert_ne!(label, task);
    let of = |jobs: &[Value]| {
        jobs.iter()
            .find(|j| j["metadata"]["labels"]["oz-task-id"] == label.as_str())
            .cloned()
    };

    let mut w = worker(&dir, &oz, &cfg).spawn();
    w.wait_for_log("Connected to Oz", T);
    assign(&oz, &task, "sim/fails-later");
    expect(&oz, "task_claimed", &task);
    sim.wait_until(T, |s| of(&s.jobs()).is_some());
    w.signal(libc::SIGTERM);
    w.wait(T);
    sim.wait_until(T, |s| {
        of(&s.jobs()).is_some_and(|j| j["status"]["failed"] == 1)
    });
    // A new pod with an empty state directory (the chart's emptyDir): no outcome journal knows
    // the task, so only the Job's own annotations can name it.
    std::fs::remove_dir_all(dir.path.join("state")).expect("the state directory existed");

    let mut w = worker(&dir, &oz, &cfg).spawn();
    let frame = oz.wait_for_frame(T, |f| f.kind() == "task_failed" && f.task_id() == task);
    let f = frame.value["data"].clone();
    assert_eq!(f["exit_code"], 7, "{f}");
    assert_eq!(f["execution_id"], format!("{task}-exec"));
    sim.wait_until(T, |s| {
        of(&s.jobs())
            .is_some_and(|j| !j["metadata"]["annotations"]["oz.warp.dev/reported"].is_null())
    });
    w.signal(libc::SIGTERM);
    w.wait(T);
    assert!(w.stderr().contains("re-attached"), "{}", w.dump());
    let kinds: Vec<String> = frames_for(&oz, &task).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec!["task_claimed", "task_failed"], "{kinds:?}");
}
