//! Task-log export parity with the Go worker, end to end through the binary: the worker's own
//! task-scoped log lines as records, the command backend's dispatch output, secrets learnt
//! while a task runs (setup env file, hook and dispatch environments), a descendant holding the
//! output pipe, and the shutdown flush of a task that outlives the worker.

use serde_json::{Value, json};

use super::*;
use crate::support::harness::TestDir;
use crate::support::otlp_logs::LogRecord;
use crate::support::warp_api::FakeWarp;

const TASK_KEY: &str = "task-api-key-canary-a41d";
const WORKLOAD: &str = "workload-token-canary-e07b";
const HOST_CANARY: &str = "host-env-canary-0c4f2";
const FILE_CANARY: &str = "setup-file-canary-5e8d1";

/// An assignment with task credentials and log collection to `warp`.
fn logged_assignment(task_id: &str, warp: &FakeWarp, env: Value) -> Value {
    let mut vars = json!({"WARP_API_KEY": TASK_KEY, "WARP_WORKLOAD_TOKEN": WORKLOAD});
    for (k, v) in env.as_object().unwrap() {
        vars[k] = v.clone();
    }
    let mut a = assignment(task_id, None, vars);
    a["data"]["telemetry_collection"] = json!({"endpoint": warp.url(), "logging_enabled": true});
    a
}

fn by_source<'a>(records: &'a [LogRecord], source: &str) -> Vec<&'a LogRecord> {
    records
        .iter()
        .filter(|r| r.attr_str("log.source") == Some(source))
        .collect()
}

/// No log post carried `canary` verbatim.
fn assert_not_sent(warp: &FakeWarp, canaries: &[&str]) {
    for p in warp.log_posts() {
        for c in canaries {
            assert!(
                !p.body.windows(c.len()).any(|w| w == c.as_bytes()),
                "{c} left the machine"
            );
        }
    }
}

#[test]
fn worker_lines_of_a_task_become_records_and_learnt_secrets_are_redacted() {
    let dir = TestDir::new("par-direct");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    // The hook prints a host variable it inherited and writes a secret to the env file.
    let config = direct_config(
        &dir,
        &format!(
            "    setup_command: 'echo host:$HOST_CANARY; echo FILE_SECRET={FILE_CANARY} >> \"$OZ_ENVIRONMENT_FILE\"'\n    teardown_command: exit 3\n"
        ),
    );
    let mut w = worker(&dir, &oz, &config)
        .args(["--server-root-url", &warp.url(), "--log-level", "debug"])
        .env("HOST_CANARY", HOST_CANARY)
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    oz.push_json(&logged_assignment(
        "t-par",
        &warp,
        json!({"STANDIN_RUN": "echo \"file:$FILE_SECRET\""}),
    ))
    .unwrap();
    expect(&oz, "task_completed", "t-par");
    let records = warp.records();
    let worker_records = by_source(&records, "worker");
    let find = |needle: &str| {
        worker_records
            .iter()
            .find(|r| r.body_str().contains(needle))
            .unwrap_or_else(|| panic!("no worker record with {needle:?} in {worker_records:#?}"))
    };
    let info = find("Running oz agent in workspace");
    assert_eq!(
        (info.severity_number, info.severity_text.as_str()),
        (9, "info")
    );
    // The failing teardown hook is a WARN of the task thread.
    let warn = find("teardown command failed: exit status 3");
    assert_eq!(
        (warn.severity_number, warn.severity_text.as_str()),
        (13, "warn")
    );
    let debug = find("agent run");
    assert_eq!(
        (debug.severity_number, debug.severity_text.as_str()),
        (5, "debug")
    );
    // Forwarded output is exported under its own source only, not again as a worker record.
    assert!(
        worker_records
            .iter()
            .all(|r| !r.body_str().contains("stand-in agent:")),
        "agent output duplicated as worker records"
    );
    // The hook's inherited host variable and the env file's value are redacted.
    let hook: Vec<&str> = by_source(&records, "hook.stdout")
        .iter()
        .map(|r| r.body_str())
        .collect();
    assert!(hook.contains(&"host:[REDACTED]"), "{hook:?}");
    let agent: Vec<&str> = by_source(&records, "agent.stdout")
        .iter()
        .map(|r| r.body_str())
        .collect();
    assert!(agent.contains(&"file:[REDACTED]"), "{agent:?}");
    assert_not_sent(&warp, &[HOST_CANARY, FILE_CANARY, TASK_KEY, WORKLOAD]);
    // The env file's value is a secret of the local log too.
    assert_no_secrets(&w, &[FILE_CANARY, TASK_KEY, WORKLOAD]);
}

#[test]
fn a_descendant_holding_the_output_pipe_does_not_hold_the_task() {
    let dir = TestDir::new("par-pipe");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .args(["--server-root-url", &warp.url()])
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    let pidfile = dir.join("grandchild.pid");
    // The grandchild sleeps 300 s with the agent's stdout as its own.
    oz.push_json(&logged_assignment(
        "t-pipe",
        &warp,
        json!({"STANDIN_GRANDCHILD": pidfile.display().to_string(), "STANDIN_RUN": "echo before-exit"}),
    ))
    .unwrap();
    let done = expect(&oz, "task_completed", "t-pipe");
    let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    let holding = alive(pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(holding, "the grandchild was gone before the task completed");
    // A drain cut short by the held pipe is not an error, and what came before it is there.
    assert_eq!(done["message"], "Task completed successfully");
    let records = warp.records();
    assert!(
        by_source(&records, "agent.stdout")
            .iter()
            .any(|r| r.body_str() == "before-exit")
    );
}

#[test]
fn a_user_cancellation_flushes_the_logs_before_the_outcome() {
    let dir = TestDir::new("par-cancel");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .args(["--server-root-url", &warp.url()])
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    oz.push_json(&logged_assignment(
        "t-cancel",
        &warp,
        json!({"STANDIN_RUN": "echo before-cancel", "STANDIN_SLEEP": "300"}),
    ))
    .unwrap();
    w.wait_for_log("[t-cancel] stand-in agent: ready", T);
    // The line waits in the exporter's 5 s batch; the cancellation flushes it.
    oz.push_json(&cancellation("t-cancel", None)).unwrap();
    let done = expect(&oz, "task_completed", "t-cancel");
    assert_eq!(done["task_state"], "CANCELLED", "{done}");
    let records = warp.records();
    assert!(
        by_source(&records, "agent.stdout")
            .iter()
            .any(|r| r.body_str() == "before-cancel"),
        "not flushed before the outcome: {records:#?}"
    );
}

/// A command-backend worker whose dispatch command is `dispatch`.
fn command_worker(
    dir: &TestDir,
    oz: &OzServer,
    warp: &FakeWarp,
    dispatch: &str,
) -> crate::support::harness::Worker {
    let config = dir.write(
        "config.yaml",
        &format!(
            "worker_id: e2e-command\nbackend:\n  command:\n    dispatch_command: '{dispatch}'\n    dispatch_timeout: 60s\n"
        ),
    );
    let mut w = worker(dir, oz, &config)
        .args(["--server-root-url", &warp.url(), "--log-level", "debug"])
        .env("HOST_CANARY", HOST_CANARY)
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    w
}

#[test]
fn dispatch_output_is_exported_redacted_with_its_last_line() {
    let dir = TestDir::new("par-cmd");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut w = command_worker(
        &dir,
        &oz,
        &warp,
        "echo dispatching; echo host:$HOST_CANARY; echo to-stderr >&2; printf no-newline",
    );
    oz.push_json(&logged_assignment("t-cmdlog", &warp, json!({})))
        .unwrap();
    expect(&oz, "task_claimed", "t-cmdlog");
    w.wait_for_log("dispatched", T);
    // Flushed before the hand-off: everything is there when the worker says so.
    let records = warp.records();
    let out: Vec<&str> = by_source(&records, "command.stdout")
        .iter()
        .map(|r| r.body_str())
        .collect();
    assert_eq!(out, ["dispatching", "host:[REDACTED]", "no-newline"]);
    let err: Vec<&str> = by_source(&records, "command.stderr")
        .iter()
        .map(|r| r.body_str())
        .collect();
    assert_eq!(err, ["to-stderr"]);
    // The task thread's own lines too; and no setup events for a backend without phases.
    assert!(
        by_source(&records, "worker")
            .iter()
            .any(|r| r.body_str().contains("Dispatching task t-cmdlog"))
    );
    assert!(warp.events().is_empty());
    assert!(!w.stderr().contains("setup events will not be reported"));
    assert_not_sent(&warp, &[HOST_CANARY, TASK_KEY, WORKLOAD]);
}

#[test]
fn shutdown_flushes_the_logs_of_a_task_that_outlives_the_worker() {
    let dir = TestDir::new("par-shut");
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let pidfile = dir.join("dispatch.pid");
    let mut w = command_worker(
        &dir,
        &oz,
        &warp,
        &format!(
            "echo still-dispatching; echo $$ > {}; exec sleep 300",
            pidfile.display()
        ),
    );
    oz.push_json(&logged_assignment("t-keep", &warp, json!({})))
        .unwrap();
    let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    w.wait_for_log("[t-keep] still-dispatching", T);
    // The record waits in the exporter's batch (5 s interval); shutdown flushes it.
    w.signal(15);
    w.wait(T);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let err = w.stderr();
    assert!(
        err.contains("Flushed the task logs of 1 running task(s) at shutdown"),
        "{}",
        w.dump()
    );
    let records = warp.records();
    assert!(
        by_source(&records, "command.stdout")
            .iter()
            .any(|r| r.body_str() == "still-dispatching"),
        "{records:#?}"
    );
}
