//! The daemon's task lifecycle against the fake Oz server.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::support::harness::TestDir;
use crate::support::oz_server::OzServer;

#[test]
fn task_flows_end_to_end_and_the_handshake_identifies_the_worker() {
    let dir = TestDir::new("e2e-flow");
    let oz = OzServer::start();
    let w = start(&dir, &oz, &[]);
    let h = &oz.handshakes()[0];
    assert_eq!(h.query_param("worker_id").as_deref(), Some("e2e-worker"));
    assert_eq!(
        h.header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(
        h.header("x-warp-worker-capabilities"),
        Some("execution-scoped-cancellation-v1")
    );
    assert!(h.header("x-warp-worker-version").is_some());

    oz.push_json(&assignment(
        "t-flow",
        Some("e1"),
        json!({"GITHUB_ACCESS_TOKEN": "gh-canary-secret"}),
    ))
    .unwrap();
    let claimed = expect(&oz, "task_claimed", "t-flow");
    assert_eq!(
        claimed,
        json!({"task_id": "t-flow", "worker_id": "e2e-worker", "execution_id": "e1"})
    );
    let done = expect(&oz, "task_completed", "t-flow");
    assert_eq!(done["message"], "Task completed successfully");
    assert_eq!(done["execution_id"], "e1");
    // The agent's output is forwarded line by line, prefixed with the task id.
    assert!(
        w.stderr().contains("[t-flow] stand-in agent: "),
        "{}",
        w.dump()
    );
    assert_no_secrets(&w, &["gh-canary-secret"]);
    // The workspace is removed after the task (cleanup is on by default).
    assert!(!dir.join("workspaces/t-flow--e1").exists());
}

#[test]
fn task_flows_over_wss_with_a_ca_bundle() {
    let dir = TestDir::new("e2e-wss");
    let oz = OzServer::start_tls();
    let _w = start(&dir, &oz, &[]);
    oz.push_json(&assignment("t-wss", None, json!({}))).unwrap();
    expect(&oz, "task_claimed", "t-wss");
    expect(&oz, "task_completed", "t-wss");
}

#[test]
fn agent_failure_reports_reason_and_exit_code() {
    let dir = TestDir::new("e2e-fail");
    let oz = OzServer::start();
    let _w = start(&dir, &oz, &[]);
    oz.push_json(&assignment("t-fail", None, json!({"STANDIN_EXIT": "3"})))
        .unwrap();
    let f = expect(&oz, "task_failed", "t-fail");
    assert_eq!(f["failure_reason"], "agent_invocation");
    assert_eq!(f["exit_code"], 3);
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to execute task: oz agent exited with error"),
        "{f}"
    );
}

#[test]
fn assignment_without_a_task_object_is_claimed_and_failed() {
    let dir = TestDir::new("e2e-notask");
    let oz = OzServer::start();
    let _w = start(&dir, &oz, &[]);
    oz.push_json(&json!({"type": "task_assignment", "data": {"task_id": "t-none"}}))
        .unwrap();
    expect(&oz, "task_claimed", "t-none");
    let f = expect(&oz, "task_failed", "t-none");
    assert_eq!(f["failure_reason"], "unknown");
    assert_eq!(
        f["message"],
        "Failed to execute task: task assignment has no task object"
    );
}

#[test]
fn malformed_unknown_binary_and_oversized_frames_do_not_kill_the_worker() {
    let dir = TestDir::new("e2e-hostile");
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &[]);
    oz.push_text("{not json").unwrap();
    oz.push_text(r#"{"type":"brand_new_type","data":{}}"#)
        .unwrap();
    oz.push_text(r#"{"type":"task_assignment","data":{"env_vars":"s3cr3t-in-bad-frame"}}"#)
        .unwrap();
    oz.push_binary(vec![0, 1, 2, 3]).unwrap();
    w.wait_for_log("Unknown message type: brand_new_type", T);
    // A frame over the 16 MiB limit ends the connection; the worker dials again.
    let big = format!(
        r#"{{"type":"task_assignment","data":{{"task_id":"big","pad":"{}"}}}}"#,
        "x".repeat(17 << 20)
    );
    let _ = oz.push_text(&big);
    oz.wait_for_connections(2, T);
    oz.push_json(&assignment("t-after", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-after");
    assert!(frames_for(&oz, "big").is_empty());
    assert_no_secrets(&w, &["s3cr3t-in-bad-frame"]);
}

#[test]
fn duplicate_assignment_of_a_running_execution_runs_once() {
    let dir = TestDir::new("e2e-dup");
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &[]);
    let a = assignment("t-dup", Some("e1"), json!({"STANDIN_SLEEP": "1"}));
    oz.push_json(&a).unwrap();
    expect(&oz, "task_claimed", "t-dup");
    oz.push_json(&a).unwrap();
    w.wait_for_log("duplicate assignment ignored", T);
    expect(&oz, "task_completed", "t-dup");
    let kinds: Vec<String> = frames_for(&oz, "t-dup").into_iter().map(|f| f.0).collect();
    assert_eq!(kinds, ["task_claimed", "task_completed"]);
}

#[test]
fn at_capacity_assignments_are_rejected() {
    let dir = TestDir::new("e2e-capacity");
    let oz = OzServer::start();
    let _w = start(&dir, &oz, &["--max-concurrent-tasks", "1"]);
    oz.push_json(&assignment("t-busy", None, json!({"STANDIN_SLEEP": "300"})))
        .unwrap();
    expect(&oz, "task_claimed", "t-busy");
    oz.push_json(&assignment("t-extra", None, json!({})))
        .unwrap();
    assert_eq!(
        expect(&oz, "task_rejected", "t-extra"),
        json!({"task_id": "t-extra", "reason": "worker at maximum concurrency"})
    );
    oz.push_json(&cancellation("t-busy", None)).unwrap();
    assert_eq!(
        expect(&oz, "task_completed", "t-busy")["task_state"],
        "CANCELLED"
    );
    // The slot is free again.
    oz.push_json(&assignment("t-next", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-next");
}

#[test]
fn path_traversal_task_ids_fail_without_touching_anything_outside_the_root() {
    let dir = TestDir::new("e2e-traversal");
    let oz = OzServer::start();
    let _w = start(&dir, &oz, &[]);
    for (i, id) in ["../escape", "a/../../escape2", "/abs/path", ".."]
        .iter()
        .enumerate()
    {
        let exec = format!("e{i}");
        oz.push_json(&assignment(id, Some(&exec), json!({})))
            .unwrap();
        let f = expect(&oz, "task_failed", id);
        assert_eq!(f["failure_reason"], "workspace_setup", "{id}: {f}");
    }
    assert!(!dir.join("escape").exists());
    assert!(!dir.join("escape2").exists());
    assert!(!std::path::Path::new("/abs/path").exists());
}

#[test]
fn the_workers_own_api_key_never_reaches_the_agent() {
    let dir = TestDir::new("e2e-env");
    let oz = OzServer::start();
    let config = direct_config(&dir, "");
    // The key comes from the environment here, the way most operators pass it.
    let mut w = WorkerCommand::new(&dir)
        .args(["--config-file", &config.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .env("WARP_API_KEY", API_KEY)
        .env("OZ_WORKER_BACKOFF_INITIAL", "100ms")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    let record = dir.join("agent-env.txt");
    oz.push_json(&assignment(
        "t-env",
        None,
        json!({"STANDIN_RECORD": record.display().to_string(), "TASK_SECRET": "task-value"}),
    ))
    .unwrap();
    expect(&oz, "task_completed", "t-env");
    let env = std::fs::read_to_string(&record).unwrap();
    assert!(
        !env.contains(API_KEY),
        "worker key reached the agent:\n{env}"
    );
    assert!(env.contains("TASK_SECRET=task-value"), "{env}");
    assert!(env.contains("TASK_ID=t-env"), "{env}");
    assert_no_secrets(&w, &["task-value"]);
}

#[test]
fn cancellation_kills_the_whole_process_group_and_closes_the_execution() {
    let dir = TestDir::new("e2e-cancel");
    let oz = OzServer::start();
    let _w = start(&dir, &oz, &[]);
    let pidfile = dir.join("grandchild.pid");
    oz.push_json(&assignment(
        "t-cancel",
        Some("e1"),
        json!({"STANDIN_GRANDCHILD": pidfile.display().to_string(), "STANDIN_SLEEP": "300"}),
    ))
    .unwrap();
    expect(&oz, "task_claimed", "t-cancel");
    let grandchild: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    assert!(alive(grandchild));
    oz.push_json(&cancellation("t-cancel", Some("e1"))).unwrap();
    let done = expect(&oz, "task_completed", "t-cancel");
    assert_eq!(done["task_state"], "CANCELLED");
    assert_eq!(done["message"], "Task cancelled by user request.");
    assert_eq!(
        expect(&oz, "execution_closed", "t-cancel"),
        json!({"task_id": "t-cancel", "execution_id": "e1"})
    );
    // Grace is 2 s: the grandchild must be gone by grace + 1 s after the cancellation.
    assert!(
        gone_within(grandchild, Duration::from_secs(3)),
        "grandchild {grandchild} survived the cancellation"
    );
}

#[test]
fn the_command_backend_dispatches_and_routes_cancellation() {
    let dir = TestDir::new("e2e-command");
    let oz = OzServer::start();
    let payload = dir.join("payload.json");
    let cancelled = dir.join("cancelled.txt");
    let config = dir.write(
        "config.yaml",
        &format!(
            "worker_id: e2e-command\nbackend:\n  command:\n    dispatch_command: cat > {}\n    cancel_command: echo \"$OZ_RUN_ID $OZ_EXECUTION_ID\" > {}\n",
            payload.display(),
            cancelled.display()
        ),
    );
    let mut w = worker(&dir, &oz, &config).spawn();
    w.wait_for_log("Connected to Oz", T);
    oz.push_json(&assignment(
        "t-cmd",
        Some("e9"),
        json!({"SECRET_TOKEN": "cmd-secret"}),
    ))
    .unwrap();
    expect(&oz, "task_claimed", "t-cmd");
    w.wait_for_log("Task t-cmd (execution e9) dispatched", T);
    let sent: serde_json::Value = serde_json::from_str(&wait_for_file(&payload)).unwrap();
    assert_eq!(sent["version"], 1);
    assert_eq!(sent["run_id"], "t-cmd");
    assert_eq!(sent["execution_id"], "e9");
    assert_eq!(sent["worker_id"], "e2e-command");
    assert_eq!(sent["env"]["SECRET_TOKEN"], "cmd-secret");
    // A dispatched task gets no terminal message from the worker.
    oz.push_json(&cancellation("t-cmd", Some("e9"))).unwrap();
    expect(&oz, "execution_closed", "t-cmd");
    assert_eq!(wait_for_file(&cancelled).trim(), "t-cmd e9");
    let kinds: Vec<String> = frames_for(&oz, "t-cmd").into_iter().map(|f| f.0).collect();
    assert_eq!(kinds, ["task_claimed", "execution_closed"]);
    assert_no_secrets(&w, &["cmd-secret"]);
}
