//! End-to-end tests: the real `oz-agent-worker` binary against the fake Oz server, with the
//! direct backend running the stand-in agent (tests/support/stand-in-agent).

mod cli;
mod crash;
mod crash_docker;
mod daemon;
mod docker;
mod faults;
mod faults_disk;
mod faults_engine;
mod faults_server;
mod limits;
pub(crate) mod ops;
mod reporting;
mod reporting_parity;
mod shutdown;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::harness::{TestDir, Worker, WorkerCommand, stand_in_agent};
use crate::support::oz_server::OzServer;

/// Upper bound for anything that should happen "soon" on a loaded 2-core machine.
pub const T: Duration = Duration::from_secs(30);
/// The API key the tests give the worker; it must never appear in its output.
pub const API_KEY: &str = "oz-test-api-key-canary-7f3a";

/// Writes a direct-backend config into the test dir; `extra` is appended under `direct:`.
pub fn direct_config(dir: &TestDir, extra: &str) -> PathBuf {
    let agent = stand_in_agent();
    let ws = dir.join("workspaces");
    dir.write(
        "config.yaml",
        &format!(
            "worker_id: e2e-worker\nbackend:\n  direct:\n    oz_path: {}\n    workspace_root: {}\n{extra}",
            agent.display(),
            ws.display()
        ),
    )
}

/// A worker command with fast timings, pointed at `oz`.
pub fn worker(dir: &TestDir, oz: &OzServer, config: &Path) -> WorkerCommand {
    let mut cmd = WorkerCommand::new(dir)
        .args(["--config-file", &config.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .args(["--api-key", API_KEY])
        .env("OZ_WORKER_BACKOFF_INITIAL", "100ms")
        .env("OZ_WORKER_BACKOFF_MAX", "500ms")
        .env("OZ_WORKER_KILL_GRACE", "2s")
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "10s");
    if let Some(ca) = oz.ca_bundle() {
        cmd = cmd.args(["--ca-bundle", &ca.display().to_string()]);
    }
    cmd
}

/// Starts a direct-backend worker and waits until it is connected.
pub fn start(dir: &TestDir, oz: &OzServer, extra_args: &[&str]) -> Worker {
    let config = direct_config(dir, "");
    let mut w = worker(dir, oz, &config).args(extra_args).spawn();
    oz.wait_for_connections(1, T);
    w.wait_for_log("Connected to Oz", T);
    w
}

/// A `task_assignment` frame; `env` becomes `env_vars` (it drives the stand-in agent).
pub fn assignment(task_id: &str, execution_id: Option<&str>, env: Value) -> Value {
    let mut data = json!({
        "task_id": task_id,
        "task": {"id": task_id, "title": format!("e2e {task_id}"),
                 "agent_config_snapshot": {"idle_timeout_minutes": 1}},
        "env_vars": env,
    });
    if let Some(e) = execution_id {
        data["execution_id"] = json!(e);
    }
    json!({"type": "task_assignment", "data": data})
}

pub fn cancellation(task_id: &str, execution_id: Option<&str>) -> Value {
    let mut data = json!({"task_id": task_id});
    if let Some(e) = execution_id {
        data["execution_id"] = json!(e);
    }
    json!({"type": "task_cancellation", "data": data})
}

/// Waits for the next frame of `kind` about `task_id` and returns its `data`.
pub fn expect(oz: &OzServer, kind: &str, task_id: &str) -> Value {
    oz.wait_for_frame(T, |f| f.kind() == kind && f.task_id() == task_id)
        .value["data"]
        .clone()
}

/// Every frame about `task_id`, as (type, data).
pub fn frames_for(oz: &OzServer, task_id: &str) -> Vec<(String, Value)> {
    oz.frames()
        .into_iter()
        .filter(|f| f.task_id() == task_id)
        .map(|f| (f.kind().to_owned(), f.value["data"].clone()))
        .collect()
}

/// True while a process with this pid exists and is not a zombie (an orphan killed with its
/// group stays a zombie until init reaps it, which says nothing about the worker).
pub fn alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits up to `within` for a process to be gone; true if it is.
pub fn gone_within(pid: i32, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Waits for a file the stand-in agent writes (e.g. a grandchild pid) and returns its contents.
pub fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the worker never printed the API key or any of `secrets`.
pub fn assert_no_secrets(w: &Worker, secrets: &[&str]) {
    let out = format!("{}{}", w.stdout(), w.stderr());
    for s in std::iter::once(&API_KEY).chain(secrets) {
        assert!(
            !out.contains(s),
            "secret {s:?} leaked into output\n{}",
            w.dump()
        );
    }
}
