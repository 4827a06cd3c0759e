//! Live task-log export for the Kubernetes backend, end to end: each started container of the
//! task's pod is followed (`pods/log?follow=true`) and its lines leave as `pod.<container>`
//! records while the task runs; the follows end with the task and leak nothing.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::harness::{TestDir, Worker, WorkerCommand};
use crate::support::kube_sim::{KubeSim, Out, Step, ms};
use crate::support::oz_server::OzServer;
use crate::support::warp_api::FakeWarp;
use crate::worker::{API_KEY, T, assignment, cancellation, expect, frames_for};

const TASK_KEY: &str = "kube-live-key-canary-61c2";
const WORKLOAD: &str = "kube-live-workload-canary-0d7e";
/// A task `env_vars` value and a literal env value of the operator's pod template.
const TASK_SECRET: &str = "kube-live-envvar-canary-55a1";
const TEMPLATE_SECRET: &str = "kube-live-template-canary-3f9b";

fn start(dir: &TestDir, oz: &OzServer, sim: &KubeSim, warp: &FakeWarp) -> Worker {
    let kc = sim.kubeconfig(&dir.path, None);
    let config = dir.write(
        "config.yaml",
        &format!(
            "worker_id: kube-live\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n    \
             setup_command: echo setting up\n    pod_template:\n      containers:\n      - name: task\n        \
             env:\n        - name: TEMPLATE_SECRET\n          value: {TEMPLATE_SECRET}\n",
            kc.display()
        ),
    );
    let mut w = WorkerCommand::new(dir)
        .args(["--config-file", &config.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .args(["--api-key", API_KEY])
        .args(["--server-root-url", &warp.url()])
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "2s")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    w
}

fn assign(oz: &OzServer, id: &str, image: &str, warp: &FakeWarp) {
    let mut a = assignment(
        id,
        Some(&format!("{id}-exec")),
        json!({"WARP_API_KEY": TASK_KEY, "WARP_WORKLOAD_TOKEN": WORKLOAD, "TASK_SECRET": TASK_SECRET}),
    );
    a["data"]["docker_image"] = json!(image);
    a["data"]["telemetry_collection"] = json!({
        "endpoint": warp.url(),
        "tracing_enabled": false,
        "logging_enabled": true,
    });
    oz.push_json(&a).unwrap();
}

/// A pod that runs until the test releases it, then exits 0.
fn held(sim: &KubeSim, image: &str) {
    sim.script(
        image,
        vec![
            Step::Pending(ms(50)),
            Step::Running(Duration::MAX),
            Step::exit(0),
        ],
    );
}

fn out(after: u64, text: &str) -> Out {
    Out {
        after: ms(after),
        text: text.to_owned(),
    }
}

/// The `follow=true` log requests the simulator saw for `container`.
fn follows(sim: &KubeSim, container: &str) -> usize {
    sim.state()
        .requests("GET", "/log")
        .iter()
        .filter(|s| s.param("follow") == Some("true") && s.param("container") == Some(container))
        .count()
}

fn bodies(warp: &FakeWarp, source: &str) -> Vec<String> {
    warp.records()
        .iter()
        .filter(|r| r.attr_str("log.source") == Some(source))
        .map(|r| r.body_str().to_owned())
        .collect()
}

#[test]
fn a_running_tasks_output_is_exported_live_with_init_containers_and_secrets_redacted() {
    let dir = TestDir::new("kube-live-logs");
    let sim = KubeSim::start();
    held(&sim, "sim/chatty");
    // 200 lines at once: a full batch (128 records) leaves while the task still runs.
    let mut task_out: Vec<Out> = vec![out(
        0,
        &(0..200).map(|i| format!("line {i}\n")).collect::<String>(),
    )];
    task_out.push(out(
        100,
        &format!("env {TASK_SECRET} template {TEMPLATE_SECRET}\n"),
    ));
    // The last line has no newline: it is forwarded when the stream ends.
    task_out.push(out(150, "no newline at the end"));
    sim.output("sim/chatty", "task", task_out);
    sim.output("sim/chatty", "setup", vec![out(0, "setting up\n")]);
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut w = start(&dir, &oz, &sim, &warp);
    assign(&oz, "t-live", "sim/chatty", &warp);
    expect(&oz, "task_claimed", "t-live");

    // The task container runs until released: these records left before it could complete.
    warp.wait_for(T, |p| {
        p.iter()
            .filter(|p| p.path == "/v1/logs")
            .flat_map(|p| p.logs().records)
            .any(|r| r.attr_str("log.source") == Some("pod.task"))
    });
    assert!(
        !frames_for(&oz, "t-live")
            .iter()
            .any(|(kind, _)| kind == "task_completed"),
        "{}",
        w.dump()
    );
    sim.wait_until(T, |s| s.open_log_streams == 1);
    sim.release();
    expect(&oz, "task_completed", "t-live");

    // Every line once, in order, the unterminated last one included; the final flush ran
    // before the terminal message.
    let task = bodies(&warp, "pod.task");
    let mut want: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    want.push("env [REDACTED] template [REDACTED]".to_owned());
    want.push("no newline at the end".to_owned());
    assert_eq!(task, want, "{}", w.dump());
    assert_eq!(bodies(&warp, "pod.setup"), ["setting up"]);
    let records = warp.records();
    let rec = records
        .iter()
        .find(|r| r.attr_str("log.source") == Some("pod.setup"))
        .unwrap();
    assert_eq!(rec.attr_str("k8s.container.name"), Some("setup"));
    assert!(
        rec.attr_str("k8s.pod.name")
            .is_some_and(|p| p.starts_with("oz-task-t-live-")),
        "{rec:?}"
    );
    // One follow per container; the task succeeded, so nothing was fetched afterwards.
    assert_eq!(follows(&sim, "task"), 1);
    assert_eq!(follows(&sim, "setup"), 1);
    assert!(sim.state().requests("GET", "/log").len() == 2);
    for post in warp.log_posts() {
        let body = String::from_utf8_lossy(&post.body).into_owned();
        assert!(!body.contains(TASK_SECRET) && !body.contains(TEMPLATE_SECRET));
    }
    w.signal(libc::SIGTERM);
    w.wait(T);
    assert!(!w.stderr().contains(TEMPLATE_SECRET));
}

#[test]
fn a_watch_redelivery_does_not_open_a_second_follow() {
    let dir = TestDir::new("kube-live-redeliver");
    let sim = KubeSim::start();
    held(&sim, "sim/held");
    sim.output(
        "sim/held",
        "task",
        vec![out(0, "first\n"), out(200, "second\n")],
    );
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut w = start(&dir, &oz, &sim, &warp);
    assign(&oz, "t-redeliver", "sim/held", &warp);
    sim.wait_until(T, |s| s.open_log_streams == 1);
    // Both watches end and history is gone: the worker relists and pushes every pod again.
    let watches = |s: &crate::support::kube_sim::State| s.seen.iter().filter(|r| r.watch).count();
    let before = watches(&sim.state());
    sim.compact();
    sim.cut_watches();
    sim.wait_until(T, |s| watches(s) >= before + 2);
    sim.release();
    expect(&oz, "task_completed", "t-redeliver");
    assert_eq!(follows(&sim, "task"), 1, "{}", w.dump());
    assert_eq!(bodies(&warp, "pod.task"), ["first", "second"]);
    w.signal(libc::SIGTERM);
    w.wait(T);
}

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (bounded) until `pred` holds; false if it never did.
fn eventually(mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(ms(50));
    }
    pred()
}

#[test]
fn a_cancelled_tasks_follows_end_and_leave_no_thread_or_connection() {
    let dir = TestDir::new("kube-live-cancel");
    let sim = KubeSim::start();
    sim.script("sim/forever", vec![Step::Running(Duration::MAX)]);
    sim.output("sim/forever", "task", vec![out(0, "working\n")]);
    // The deleted pod's container ignores SIGTERM for longer than the test waits, so the
    // server keeps the stream open: only the worker closing it ends it.
    sim.with(|s| s.termination_grace = Duration::from_secs(600));
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut w = start(&dir, &oz, &sim, &warp);
    let baseline = threads(w.pid());
    assign(&oz, "t-lcancel", "sim/forever", &warp);
    sim.wait_until(T, |s| s.open_log_streams == 1);
    assert!(threads(w.pid()) > baseline);
    oz.push_json(&cancellation("t-lcancel", Some("t-lcancel-exec")))
        .unwrap();
    let done = expect(&oz, "task_completed", "t-lcancel");
    assert_eq!(done["task_state"], "CANCELLED", "{done}");
    sim.wait_until(T, |s| s.open_log_streams == 0);
    assert!(
        eventually(|| threads(w.pid()) <= baseline),
        "threads: {} > baseline {baseline}\n{}",
        threads(w.pid()),
        w.dump()
    );
    // What was written before the cancellation was exported.
    assert_eq!(bodies(&warp, "pod.task"), ["working"]);
    w.signal(libc::SIGTERM);
    w.wait(T);
}

#[test]
fn worker_shutdown_aborts_follows_and_flushes_while_the_job_is_preserved() {
    let dir = TestDir::new("kube-live-shutdown");
    let sim = KubeSim::start();
    sim.script("sim/forever", vec![Step::Running(Duration::MAX)]);
    sim.output("sim/forever", "task", vec![out(0, "before shutdown\n")]);
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut w = start(&dir, &oz, &sim, &warp);
    assign(&oz, "t-lshut", "sim/forever", &warp);
    sim.wait_until(T, |s| s.open_log_streams == 1);
    w.signal(libc::SIGTERM);
    let status = w.wait(T);
    assert!(status.success(), "{}", w.dump());
    assert_eq!(
        bodies(&warp, "pod.task"),
        ["before shutdown"],
        "{}",
        w.dump()
    );
    assert_eq!(sim.state().jobs().len(), 1, "the Job is preserved");
    // The task thread closed its follow and flushed its report, then ended: shutdown had no
    // straggler to leave behind (it would otherwise follow the preserved Job on and on).
    assert!(!w.stderr().contains("still running"), "{}", w.dump());
    // The simulator learns of the closed connection on its own serving thread, a moment later.
    sim.wait_until(T, |s| s.open_log_streams == 0);
}
