//! The command backend: hands each task to an operator command and forgets it.
//!
//! `execute` runs `/bin/sh -c <dispatch_command>` with the dispatch payload (JSON) on stdin and
//! returns [`Completion::Dispatched`] when it exits 0; the remote runtime reports the task's
//! outcome itself. `cancel` runs `/bin/sh -c <cancel_command>` (no stdin).
//!
//! Environment of both: the worker's environment without its `WARP_API_KEY`, then the operator
//! env, then the worker-owned variables (`OZ_RUN_ID`, `OZ_EXECUTION_ID`, `OZ_WORKER_BACKEND`,
//! and for dispatch `OZ_SERVER_ROOT_URL`, `OZ_DOCKER_IMAGE`), each also as `WARP_*`, written last
//! so operator entries cannot override them. Task env values (secrets) travel only in the
//! payload, never in the environment or argv. An operator who wants the worker key in the
//! dispatch environment adds it to the operator env explicitly.
//!
//! Task-log export (when on for the task): the dispatch command's output lines while it runs,
//! as `command.stdout` / `command.stderr` records (the Go worker names no sources for them),
//! after its whole environment (inherited host variables included, worker-owned ids excepted)
//! was registered with the task's redactor. No setup events: the command has no setup phase.
//! The cancel command's output is not exported (it runs after the task's report closed).
//!
//! Differences from the Go worker: the command runs in its own process group, and a timeout or
//! cancellation stops the whole group (SIGTERM, then SIGKILL after `kill_grace`) rather than only
//! `/bin/sh`; output goes to the log line by line with the task id; the worker key is withheld.

use std::fmt;
use std::time::{Duration, Instant};

use crate::backend::{
    Backend, BackendContext, BackendKind, CancelToken, Completion, Failure, FailureReason,
    ProbeLine, TaskRef,
};
use crate::process::env::API_KEY_VAR;
use crate::process::{self, Ended, Env, Limits, ProcessSpec, Redactor, Stream};
use crate::settings::{CommandSettings, EnvList};
use crate::task::TaskSpec;

const SHELL: &str = "/bin/sh";
/// How long the cancel command may run before it is stopped.
pub const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM-to-SIGKILL grace for the cancel command (never more than `kill_grace`).
const CANCEL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `dispatch_command` is empty.
    MissingDispatchCommand,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::MissingDispatchCommand => {
                f.write_str("the command backend requires a dispatch_command")
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// Dispatches tasks to an operator command.
pub struct CommandBackend {
    settings: CommandSettings,
    ctx: BackendContext,
    worker_env: Env,
}

impl fmt::Debug for CommandBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandBackend")
            .field("dispatch_timeout", &self.settings.dispatch_timeout)
            .finish_non_exhaustive()
    }
}

impl CommandBackend {
    /// Builds the backend with the worker process's own environment.
    pub fn new(
        settings: CommandSettings,
        ctx: BackendContext,
    ) -> Result<CommandBackend, CommandError> {
        CommandBackend::with_env(settings, ctx, Env::from_process())
    }

    /// Builds the backend with `worker_env` standing in for the worker's environment.
    pub fn with_env(
        settings: CommandSettings,
        ctx: BackendContext,
        worker_env: Env,
    ) -> Result<CommandBackend, CommandError> {
        if settings.dispatch_command.trim().is_empty() {
            return Err(CommandError::MissingDispatchCommand);
        }
        log::info!("Using command backend");
        Ok(CommandBackend {
            settings,
            ctx,
            worker_env,
        })
    }

    fn cancel_command(&self) -> Option<&str> {
        self.settings
            .cancel_command
            .as_deref()
            .filter(|c| !c.trim().is_empty())
    }
}

/// The environment of the dispatch command.
pub fn dispatch_env(
    worker: &Env,
    operator: &EnvList,
    spec: &TaskSpec,
    server_root_url: &str,
) -> Env {
    let mut env = base_env(worker, operator, &spec.task_ref());
    env.set_owned("SERVER_ROOT_URL", server_root_url);
    env.set_owned("DOCKER_IMAGE", &spec.image);
    env
}

/// The environment of the cancel command (and the start of the dispatch one).
pub fn cancel_env(worker: &Env, operator: &EnvList, task: &TaskRef) -> Env {
    base_env(worker, operator, task)
}

fn base_env(worker: &Env, operator: &EnvList, task: &TaskRef) -> Env {
    let mut env = worker.clone();
    env.remove(API_KEY_VAR);
    for name in env.set_all(operator.iter().map(|(k, v)| (k, v))) {
        log::warn!("Ignoring operator environment variable with an invalid name {name:?}");
    }
    env.set_owned("RUN_ID", &task.task_id);
    env.set_owned("EXECUTION_ID", task.execution_id.as_deref().unwrap_or(""));
    env.set_owned("WORKER_BACKEND", "command");
    env
}

/// A duration as an operator would write it: `50ms`, `60s`, `1.5s`.
fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

fn shell(command: &str, env: Env, stdin: Option<Vec<u8>>) -> ProcessSpec {
    ProcessSpec {
        program: SHELL.into(),
        args: vec!["-c".into(), command.into()],
        cwd: None,
        env,
        stdin,
    }
}

impl Backend for CommandBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Command
    }

    fn execute(&self, spec: &TaskSpec, cancel: &CancelToken) -> Result<Completion, Failure> {
        if cancel.is_cancelled() {
            return Err(Failure::cancelled());
        }
        let id = spec.task_id.as_str();
        let payload =
            crate::task::dispatch_payload(spec, &self.ctx.worker_id, &self.ctx.server_root_url);
        let env = dispatch_env(
            &self.worker_env,
            &self.settings.env,
            spec,
            &self.ctx.server_root_url,
        );
        let timeout = self.settings.dispatch_timeout;
        let limits = Limits {
            cancel: Some(cancel),
            deadline: Some(Instant::now() + timeout),
            grace: self.ctx.timing.kill_grace,
            group: None,
        };
        // Flushed (≤ 5 s) when dropped, before this returns and so before the outcome is sent.
        let report = super::task_log_report(&self.ctx, BackendKind::Command, spec);
        if report.logs_enabled() {
            report.redact_also(env.redaction_values());
        }
        log::info!("Dispatching task {id}");
        let secrets = Redactor::new(&spec.secrets);
        let proc = shell(
            &self.settings.dispatch_command,
            env,
            Some(payload.into_bytes()),
        );
        let result = process::run(&proc, &limits, &secrets, &mut |stream, line| {
            line.records(&mut |r| log::info!(target: "dispatch", "[{id}] {r}"));
            if let Some(whole) = line.whole() {
                let source = match stream {
                    Stream::Stdout => "command.stdout",
                    Stream::Stderr => "command.stderr",
                };
                report.line(source, &[], whole);
            }
        });
        report.finish();
        match result {
            Ok(Ended::Exited(e)) if e.success() => Ok(Completion::Dispatched),
            Ok(Ended::Cancelled(_)) => Err(Failure::cancelled()),
            _ if cancel.is_cancelled() => Err(Failure::cancelled()),
            Ok(Ended::TimedOut(_)) => Err(Failure::new(
                FailureReason::DispatchTimeout,
                format!("dispatch command timed out after {}", human(timeout)),
            )),
            Ok(Ended::Exited(e)) => Err(Failure::new(
                FailureReason::DispatchCommand,
                format!("dispatch command failed: {e}"),
            )),
            Err(e) => Err(Failure::new(
                FailureReason::DispatchCommand,
                format!("dispatch command failed: {e}"),
            )),
        }
    }

    /// Runs the cancel command for `task`; without one there is nothing to do.
    fn cancel(&self, task: &TaskRef) -> Result<(), String> {
        let Some(command) = self.cancel_command() else {
            return Ok(());
        };
        let id = task.task_id.as_str();
        let env = cancel_env(&self.worker_env, &self.settings.env, task);
        let limits = Limits {
            cancel: None,
            deadline: Some(Instant::now() + CANCEL_TIMEOUT),
            grace: self.ctx.timing.kill_grace.min(CANCEL_GRACE),
            group: None,
        };
        log::info!("Running cancel command for task {task}");
        let result = process::run(
            &shell(command, env, None),
            &limits,
            &Redactor::default(),
            &mut |_, line| {
                line.records(&mut |r| log::info!(target: "dispatch", "[{id} cancel] {r}"));
            },
        );
        match result {
            Ok(Ended::Exited(e)) if e.success() => Ok(()),
            Ok(Ended::Exited(e)) => Err(format!("cancel command failed: {e}")),
            Ok(Ended::TimedOut(_) | Ended::Cancelled(_)) => Err(format!(
                "cancel command timed out after {}",
                human(CANCEL_TIMEOUT)
            )),
            Err(e) => Err(format!("cancel command failed: {e}")),
        }
    }

    fn preserves_tasks_on_shutdown(&self) -> bool {
        true
    }

    fn probe(&self) -> Vec<ProbeLine> {
        let shell_ok = std::fs::metadata(SHELL).is_ok_and(|m| m.is_file())
            && nix::unistd::access(SHELL, nix::unistd::AccessFlags::X_OK).is_ok();
        vec![
            if shell_ok {
                ProbeLine::ok(format!("{SHELL} is executable"))
            } else {
                ProbeLine::failed(format!(
                    "{SHELL} is missing or not executable: install a POSIX shell at {SHELL}"
                ))
            },
            ProbeLine::ok(format!(
                "dispatch command is set (timeout {})",
                human(self.settings.dispatch_timeout)
            )),
            ProbeLine::ok(match self.cancel_command() {
                Some(_) => "cancel command is set".to_owned(),
                None => "no cancel command: cancelling a dispatched task only stops its dispatch"
                    .to_owned(),
            }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn spec() -> TaskSpec {
        TaskSpec {
            task_id: "run-1".into(),
            execution_id: None,
            task: Default::default(),
            image: "img:1".into(),
            env: vec![("SECRET".into(), "s3cr3t".into())],
            base_args: vec!["agent".into(), "run".into()],
            sidecars: vec![],
            instance_shape: None,
            harness: None,
            secrets: vec!["s3cr3t".into()],
            telemetry: None,
        }
    }

    #[test]
    fn durations_read_like_config() {
        assert_eq!(human(Duration::from_secs(60)), "60s");
        assert_eq!(human(Duration::from_millis(50)), "50ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn owned_vars_win_and_the_worker_key_is_withheld() {
        let worker: Env = [
            ("PATH", "/bin"),
            (API_KEY_VAR, "worker-key"),
            ("OZ_RUN_ID", "w"),
        ]
        .into_iter()
        .collect();
        let operator = vec![
            ("OZ_RUN_ID".to_owned(), "op".to_owned()),
            ("WARP_EXECUTION_ID".to_owned(), "op".to_owned()),
            ("OZ_CUSTOM".to_owned(), "kept".to_owned()),
        ];
        let env = dispatch_env(&worker, &operator, &spec(), "https://srv");
        let get = |n: &str| env.get(n).and_then(OsStr::to_str);
        assert_eq!(get(API_KEY_VAR), None);
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("OZ_RUN_ID"), Some("run-1"));
        assert_eq!(get("WARP_RUN_ID"), Some("run-1"));
        assert_eq!(get("OZ_EXECUTION_ID"), Some(""));
        assert_eq!(get("WARP_EXECUTION_ID"), Some(""));
        assert_eq!(get("WARP_WORKER_BACKEND"), Some("command"));
        assert_eq!(get("OZ_SERVER_ROOT_URL"), Some("https://srv"));
        assert_eq!(get("WARP_DOCKER_IMAGE"), Some("img:1"));
        assert_eq!(get("OZ_CUSTOM"), Some("kept"));
        assert_eq!(get("WARP_CUSTOM"), None, "operator OZ_ vars get no twin");
        assert!(env.iter().all(|(_, v)| v != "s3cr3t"));

        let cancel = cancel_env(
            &worker,
            &operator,
            &TaskRef {
                task_id: "run-1".into(),
                execution_id: Some("e".into()),
            },
        );
        assert_eq!(
            cancel.get("OZ_EXECUTION_ID").and_then(OsStr::to_str),
            Some("e")
        );
        assert_eq!(cancel.get("OZ_DOCKER_IMAGE"), None);
        assert_eq!(cancel.get(API_KEY_VAR), None);
    }

    #[test]
    fn payload_has_every_key() {
        let v: serde_json::Value =
            serde_json::from_str(&crate::task::dispatch_payload(&spec(), "w1", "https://srv"))
                .unwrap();
        for key in [
            "version",
            "run_id",
            "execution_id",
            "server_root_url",
            "worker_id",
            "docker_image",
            "base_args",
            "env",
            "sidecars",
            "task",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["env"]["SECRET"], "s3cr3t");
        assert!(v["sidecars"].is_null());
    }
}
