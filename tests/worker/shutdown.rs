//! Signals, graceful shutdown and one-shot mode.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::support::harness::TestDir;
use crate::support::oz_server::OzServer;

#[test]
fn sigterm_cancels_running_tasks_reports_them_and_closes_cleanly() {
    let dir = TestDir::new("e2e-sigterm");
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &[]);
    let mut grandchildren = Vec::new();
    for id in ["t-a", "t-b"] {
        let pidfile = dir.join(format!("{id}.pid"));
        oz.push_json(&assignment(
            id,
            None,
            json!({"STANDIN_GRANDCHILD": pidfile.display().to_string(), "STANDIN_SLEEP": "300"}),
        ))
        .unwrap();
        expect(&oz, "task_claimed", id);
        grandchildren.push(wait_for_file(&pidfile).trim().parse::<i32>().unwrap());
    }
    w.signal(libc_sigterm());
    for id in ["t-a", "t-b"] {
        let f = expect(&oz, "task_failed", id);
        assert_eq!(f["failure_reason"], "graceful_shutdown", "{f}");
        assert_eq!(
            f["message"],
            "The task was interrupted due to an infrastructure issue (context canceled). This is typically transient \u{2014} please try again."
        );
    }
    let status = w.wait(T);
    assert_eq!(status.code(), Some(0), "{}", w.dump());
    assert_eq!(oz.wait_for_client_close(0, T), Some(1000));
    for pid in grandchildren {
        assert!(
            gone_within(pid, Duration::from_secs(1)),
            "process {pid} survived the shutdown"
        );
    }
    // Exactly one terminal message per task.
    for id in ["t-a", "t-b"] {
        let kinds: Vec<String> = frames_for(&oz, id).into_iter().map(|f| f.0).collect();
        assert_eq!(kinds, ["task_claimed", "task_failed"], "{id}");
    }
    assert!(w.stderr().contains("Worker shutdown complete"));
}

#[test]
fn assignments_during_shutdown_are_rejected() {
    let dir = TestDir::new("e2e-drain-reject");
    let oz = OzServer::start();
    let config = direct_config(&dir, "");
    // The agent ignores SIGTERM, so shutdown waits out the kill grace.
    let mut w = worker(&dir, &oz, &config)
        .env("OZ_WORKER_KILL_GRACE", "3s")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    oz.push_json(&assignment(
        "t-stubborn",
        None,
        json!({"STANDIN_IGNORE_TERM": "1", "STANDIN_SLEEP": "300"}),
    ))
    .unwrap();
    expect(&oz, "task_claimed", "t-stubborn");
    // The agent's readiness line: it ignores SIGTERM from here on.
    w.wait_for_log("[t-stubborn] stand-in agent: ready", T);
    w.signal(libc_sigterm());
    w.wait_for_log("shutting down gracefully", T);
    oz.push_json(&assignment("t-late", None, json!({})))
        .unwrap();
    assert_eq!(
        expect(&oz, "task_rejected", "t-late"),
        json!({"task_id": "t-late", "reason": "worker is shutting down"})
    );
    assert_eq!(
        expect(&oz, "task_failed", "t-stubborn")["failure_reason"],
        "graceful_shutdown"
    );
    assert_eq!(w.wait(T).code(), Some(0), "{}", w.dump());
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = TestDir::new("e2e-second-signal");
    let oz = OzServer::start();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .env("OZ_WORKER_KILL_GRACE", "60s")
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "60s")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    oz.push_json(&assignment(
        "t-hold",
        None,
        json!({"STANDIN_IGNORE_TERM": "1", "STANDIN_SLEEP": "300"}),
    ))
    .unwrap();
    expect(&oz, "task_claimed", "t-hold");
    w.wait_for_log("[t-hold] stand-in agent: ready", T);
    w.signal(libc_sigterm());
    w.wait_for_log("shutting down gracefully", T);
    w.signal(2);
    // The task ignores SIGTERM and the grace and shutdown timeouts are a minute: only the
    // second signal can end the worker now, with its own exit code and without the
    // graceful path's closing line.
    let status = w.wait(T);
    assert_eq!(status.code(), Some(130), "{}", w.dump());
    assert!(
        !w.stderr().contains("Worker shutdown complete"),
        "{}",
        w.dump()
    );
}

#[test]
fn one_shot_runs_one_task_rejects_others_and_exits() {
    let dir = TestDir::new("e2e-one-shot");
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &["--one-shot"]);
    oz.push_json(&assignment("t-one", None, json!({"STANDIN_SLEEP": "1"})))
        .unwrap();
    expect(&oz, "task_claimed", "t-one");
    oz.push_json(&assignment("t-two", None, json!({}))).unwrap();
    assert_eq!(
        expect(&oz, "task_rejected", "t-two")["reason"],
        "one-shot worker has already accepted a task"
    );
    expect(&oz, "task_completed", "t-one");
    assert_eq!(w.wait(T).code(), Some(0), "{}", w.dump());
    assert_eq!(oz.wait_for_client_close(0, T), Some(1000));
}

fn libc_sigterm() -> i32 {
    15
}

#[test]
fn task_threads_are_joined_at_shutdown() {
    let dir = TestDir::new("e2e-join");
    let oz = OzServer::start();
    let config = direct_config(&dir, "");
    // The agent ignores SIGTERM and the kill grace outlasts the shutdown timeout: the task is
    // reported at the deadline while its thread still waits for the agent, and the backend's
    // shutdown kills the agent. The thread then ends and is joined before the worker exits.
    let mut w = worker(&dir, &oz, &config)
        .args(["--log-level", "debug"])
        .env("OZ_WORKER_KILL_GRACE", "120s")
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "1s")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    oz.push_json(&assignment(
        "t-join",
        None,
        json!({"STANDIN_IGNORE_TERM": "1", "STANDIN_SLEEP": "300"}),
    ))
    .unwrap();
    expect(&oz, "task_claimed", "t-join");
    w.wait_for_log("[t-join] stand-in agent: ready", T);
    w.signal(libc_sigterm());
    assert_eq!(w.wait(T).code(), Some(0), "{}", w.dump());
    let log = w.stderr();
    assert!(log.contains("Joined 1 task thread(s) at shutdown"), "{log}");
    assert!(!log.contains("still running"), "{log}");
}
