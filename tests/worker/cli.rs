//! The binary's command line: the README quick start, help, version, `check`, usage and
//! config errors (exit status 2 with one line naming the problem).

use super::*;
use crate::support::harness::{TestDir, WorkerCommand, repo_root, stand_in_agent};
use crate::support::oz_server::OzServer;

#[test]
fn the_readme_quick_start_runs_a_task_end_to_end() {
    let dir = TestDir::new("e2e-quickstart");
    // Exactly the README's command, from a directory that looks like the repository root (its
    // `tests` is the repository's): the relative workspace root then lands in the test's own
    // directory, which is removed, rather than in the checkout.
    std::os::unix::fs::symlink(repo_root().join("tests"), dir.join("tests")).unwrap();
    let out = WorkerCommand::new(&dir)
        .args([
            "run-once",
            "--config-file",
            "tests/support/quickstart.yaml",
            "--task",
            "tests/support/tasks/hello.json",
        ])
        .cwd(&dir.path)
        .run();
    out.expect_code(0);
    assert!(dir.join("target/quickstart-workspaces").is_dir());
    let kinds: Vec<String> = out
        .json_lines()
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["task_claimed", "task_completed"], "{}", out.dump());
    assert!(out.stderr.contains("[quickstart-task-1] stand-in agent:"));
    // What the README says the quick start shows: the config file's environment value.
    assert!(
        out.stderr
            .contains("[quickstart-task-1]   QUICKSTART_GREETING=hello from the worker config"),
        "{}",
        out.dump()
    );
    assert!(!out.stderr.contains("task-scoped-key-never-printed"));
    assert!(!out.stdout.contains("task-scoped-key-never-printed"));
}

#[test]
fn run_once_reads_stdin_and_exits_with_the_agents_status() {
    let dir = TestDir::new("e2e-run-once-stdin");
    let config = direct_config(&dir, "");
    let task = assignment("t-stdin", None, serde_json::json!({"STANDIN_EXIT": "4"}));
    let out = WorkerCommand::new(&dir)
        .args(["run-once", "--task", "-", "--config-file"])
        .arg(config.display().to_string())
        .run_with_stdin(&task.to_string());
    out.expect_code(4);
    let last = out.json_lines().pop().unwrap();
    assert_eq!(last["type"], "task_failed");
    assert_eq!(last["data"]["exit_code"], 4);
}

#[test]
fn run_once_rejects_a_bad_task_file_with_status_2() {
    let dir = TestDir::new("e2e-run-once-bad");
    let config = direct_config(&dir, "");
    let bad = dir.write(
        "bad.json",
        "{\"type\": \"task_cancellation\", \"data\": {}}",
    );
    let out = WorkerCommand::new(&dir)
        .args(["run-once", "--config-file"])
        .arg(config.display().to_string())
        .args(["--task", &bad.display().to_string()])
        .run();
    out.expect_code(2);
    assert!(
        out.stderr.contains("is not a task_assignment"),
        "{}",
        out.dump()
    );
}

#[test]
fn help_and_version() {
    let dir = TestDir::new("e2e-help");
    let out = WorkerCommand::new(&dir).arg("--help").run();
    out.expect_code(0);
    for needle in [
        "--worker-id",
        "--api-key-file",
        "run-once",
        "check",
        "SIGTERM",
    ] {
        assert!(
            out.stdout.contains(needle),
            "help lacks {needle}\n{}",
            out.dump()
        );
    }
    let out = WorkerCommand::new(&dir).arg("--version").run();
    out.expect_code(0);
    assert!(out.stdout.starts_with("oz-agent-worker "), "{}", out.dump());
}

#[test]
fn check_reports_what_it_probed() {
    let dir = TestDir::new("e2e-check");
    let oz = OzServer::start_tls();
    let config = direct_config(&dir, "");
    let ca = oz.ca_bundle().unwrap();
    let out = WorkerCommand::new(&dir)
        .args(["check", "--api-key-file"])
        .arg(dir.write("key", API_KEY).display().to_string())
        .args(["--web-socket-url", &oz.url(), "--ca-bundle"])
        .arg(ca.display().to_string())
        .args(["--config-file", &config.display().to_string()])
        .run();
    out.expect_code(0);
    let stdout = &out.stdout;
    assert!(stdout.contains("All checks passed."), "{}", out.dump());
    assert!(stdout.contains("backend direct"), "{}", out.dump());
    assert!(
        stdout.contains("ok   worker id \"e2e-worker\" (from worker_id in "),
        "{}",
        out.dump()
    );
    assert!(
        stdout.contains("ok   API key: found (from --api-key-file "),
        "{}",
        out.dump()
    );
    assert!(
        stdout.contains("ok   Oz endpoint: TLS handshake with 127.0.0.1:"),
        "{}",
        out.dump()
    );
    // check changes nothing: the missing workspace root is reported and left missing.
    let ws = dir.join("workspaces");
    assert!(
        stdout.contains(&format!(
            "workspace root {}: missing; the daemon will create it 0700",
            ws.display()
        )),
        "{}",
        out.dump()
    );
    assert!(!ws.exists(), "check created {}", ws.display());
    assert!(!out.stdout.contains(API_KEY) && !out.stderr.contains(API_KEY));

    let broken = dir.write(
        "broken.yaml",
        &format!(
            "worker_id: w\nbackend:\n  direct:\n    oz_path: /nonexistent/oz\n    workspace_root: {}\n",
            ws.display()
        ),
    );
    let out = WorkerCommand::new(&dir)
        .args(["check", "--offline", "--api-key", API_KEY, "--config-file"])
        .arg(broken.display().to_string())
        .run();
    out.expect_code(1);
    assert!(out.stdout.contains("FAIL"), "{}", out.dump());
    assert!(!ws.exists(), "check created {}", ws.display());
}

#[test]
fn check_fails_on_what_the_daemon_would_refuse() {
    let dir = TestDir::new("e2e-check-refuse");
    let config = dir.write(
        "config.yaml",
        &format!(
            "backend:\n  direct:\n    oz_path: {}\n    workspace_root: {}\n",
            stand_in_agent().display(),
            dir.join("ws").display()
        ),
    );
    // No worker id, no API key, and an endpoint that refuses connections.
    let out = WorkerCommand::new(&dir)
        .args(["check", "--web-socket-url", "ws://127.0.0.1:1/ws"])
        .args(["--config-file", &config.display().to_string()])
        .run();
    out.expect_code(1);
    let stdout = &out.stdout;
    assert!(
        stdout.contains("FAIL worker id: not set; the daemon requires --worker-id"),
        "{}",
        out.dump()
    );
    assert!(
        stdout.contains("(check and run-once use \"local\")"),
        "{}",
        out.dump()
    );
    assert!(
        stdout.contains("FAIL API key: none found; tried --api-key, --api-key-file, WARP_API_KEY"),
        "{}",
        out.dump()
    );
    assert!(
        stdout.contains("FAIL Oz endpoint: connect 127.0.0.1:1"),
        "{}",
        out.dump()
    );

    // --offline: the endpoint is a warning; the rest still fails.
    let out = WorkerCommand::new(&dir)
        .args([
            "check",
            "--offline",
            "--worker-id",
            "w",
            "--api-key",
            API_KEY,
        ])
        .args(["--web-socket-url", "ws://127.0.0.1:1/ws"])
        .args(["--config-file", &config.display().to_string()])
        .run();
    out.expect_code(0);
    assert!(
        out.stdout.contains("warn Oz endpoint: connect 127.0.0.1:1"),
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("(--offline)"), "{}", out.dump());
    assert!(!out.stdout.contains(API_KEY), "{}", out.dump());
}

#[test]
fn check_needs_a_tls_handshake_not_just_a_connection() {
    let dir = TestDir::new("e2e-check-tls");
    // Accepts connections and never answers: TCP works, TLS cannot complete.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = direct_config(&dir, "");
    let out = WorkerCommand::new(&dir)
        .args(["check", "--api-key", API_KEY])
        .args(["--web-socket-url", &format!("wss://127.0.0.1:{port}/ws")])
        .args(["--config-file", &config.display().to_string()])
        .run();
    out.expect_code(1);
    assert!(
        out.stdout
            .contains("FAIL Oz endpoint: TLS handshake with 127.0.0.1: timed out"),
        "{}",
        out.dump()
    );
    // A name that does not resolve fails.
    let out = WorkerCommand::new(&dir)
        .args(["check", "--api-key", API_KEY])
        .args(["--web-socket-url", "wss://oz.invalid/ws"])
        .args(["--config-file", &config.display().to_string()])
        .run();
    out.expect_code(1);
    // "resolve oz.invalid: ..." (or a resolver timeout on a host whose DNS does not answer).
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("Oz endpoint"))
        .unwrap_or_default();
    assert!(
        line.starts_with("FAIL Oz endpoint: ") && line.contains("oz.invalid"),
        "{}",
        out.dump()
    );
    drop(silent);
}

#[test]
fn the_daemon_refuses_a_missing_bind_source() {
    let dir = TestDir::new("e2e-bind-missing");
    let missing = dir.join("not-there");
    let out = WorkerCommand::new(&dir)
        .args([
            "--worker-id",
            "w",
            "--api-key",
            API_KEY,
            "--backend",
            "docker",
        ])
        .args(["--web-socket-url", "ws://127.0.0.1:1/ws"])
        .args(["-v", &format!("{}:/data", missing.display())])
        .run();
    out.expect_code(2);
    assert!(
        out.stderr.contains(&format!(
            "volume source(s) missing on this host: {}",
            missing.display()
        )),
        "{}",
        out.dump()
    );
}

/// Runs the daemon with `args` (and a config file holding `yaml` when given) and expects a
/// usage/config error naming `needle`.
fn config_error(name: &str, yaml: Option<&str>, args: &[&str], needle: &str) {
    let dir = TestDir::new(name);
    let mut cmd = WorkerCommand::new(&dir).args(args);
    if let Some(yaml) = yaml {
        let p = dir.write("config.yaml", yaml);
        cmd = cmd.args(["--config-file", &p.display().to_string()]);
    }
    let out = cmd.run();
    out.expect_code(2);
    assert!(
        out.stderr.contains(needle),
        "expected {needle:?}\n{}",
        out.dump()
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line\n{}", out.dump());
}

#[test]
fn usage_and_config_errors_exit_2_with_one_line() {
    config_error(
        "cfg-unknown-key",
        Some("worker_id: w\nbogus_key: 1\n"),
        &["--api-key", "k"],
        "line 2: unknown key \"bogus_key\"",
    );
    config_error(
        "cfg-legacy-key",
        Some("worker_id: w\nbackend:\n  kubernetes:\n    service_account: sa\n"),
        &["--api-key", "k"],
        "service_account",
    );
    config_error(
        "cfg-two-backends",
        Some("worker_id: w\nbackend:\n  direct: {}\n  docker: {}\n"),
        &["--api-key", "k"],
        "at most one backend may be configured",
    );
    config_error(
        "cfg-no-worker",
        None,
        &["--api-key", "k"],
        "worker-id is required",
    );
    config_error(
        "cfg-no-key",
        None,
        &["--worker-id", "w"],
        "an API key is required",
    );
    config_error(
        "cfg-warp-prefix",
        None,
        &["--worker-id", "warp-1", "--api-key", "k"],
        "reserved",
    );
    config_error(
        "cfg-backend",
        None,
        &["--worker-id", "w", "--api-key", "k", "--backend", "podman"],
        "--backend: invalid value \"podman\"",
    );
    config_error(
        "cfg-one-shot",
        None,
        &[
            "--worker-id",
            "w",
            "--api-key",
            "k",
            "--one-shot",
            "--backend",
            "docker",
        ],
        "does not support one-shot mode",
    );
    config_error(
        "cfg-unknown-flag",
        None,
        &["--frobnicate"],
        "unknown flag --frobnicate",
    );
    config_error(
        "cfg-duration",
        Some(
            "worker_id: w\nbackend:\n  command:\n    dispatch_command: x\n    dispatch_timeout: 5 minutes\n",
        ),
        &["--api-key", "k"],
        "dispatch_timeout",
    );
}

#[test]
fn a_missing_agent_binary_fails_startup_with_status_1() {
    let dir = TestDir::new("e2e-no-agent");
    let yaml = dir.write(
        "config.yaml",
        "worker_id: w\nbackend:\n  direct:\n    target_dir: /nonexistent/checkout\n",
    );
    let out = WorkerCommand::new(&dir)
        .args(["--api-key", API_KEY, "--config-file"])
        .arg(yaml.display().to_string())
        .run();
    out.expect_code(1);
    assert!(
        out.stderr.contains("Failed to create worker"),
        "{}",
        out.dump()
    );
}
