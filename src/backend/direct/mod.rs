//! The direct backend: runs the oz CLI on this host, one fork/exec per task.
//!
//! Per execution: check the ids, prepare the workspace (`<root>/<task_id>`, or
//! `<root>/<task_id>--<execution_id>`, or the operator's target directory), run the setup hook,
//! read the env file it may have written, run `oz agent run ...` there, then clean up: remove the
//! env file, run the teardown hook, delete the workspace (unless `--no-cleanup` or target-dir
//! mode).
//!
//! Differences from the Go worker, on purpose:
//! - every process runs in its own process group; a cancellation sends SIGTERM to the group and
//!   SIGKILL after `kill_grace`, so no grandchild outlives its task;
//! - output is forwarded to the log line by line, prefixed with the task id, with the task's
//!   secrets scrubbed;
//! - the hooks get the worker's environment *without* its `WARP_API_KEY`;
//! - the teardown hook also runs after a cancellation (bounded by `kill_grace`) and with
//!   `--no-cleanup`; only the workspace deletion is skipped then;
//! - each execution gets its own workspace;
//! - shutdown SIGKILLs the process groups of tasks still running, then removes only workspaces
//!   this process created and has not removed yet, and only when cleanup is on (the Go worker
//!   wipes everything under the root, even with `--no-cleanup`).

mod close;
mod env;
mod hook;
mod host;
mod recover;
mod workspace;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend::{
    Backend, BackendContext, BackendKind, CancelSource, CancelToken, Completion, Failure,
    FailureReason, Orphan, ProbeLine, TaskRef,
};
use crate::process::{self, Ended, Env, GroupHandle, Limits, ProcessSpec, Redactor, Stream};
use crate::reporting::{SetupPhase, TaskReport};
use crate::settings::{DEFAULT_WORKSPACE_ROOT, DirectSettings};
use crate::task::TaskSpec;

pub use env::harness_env;
use hook::run_hook;
use workspace::Workspace;
pub use workspace::{Layout, check_component};

/// The shell that runs the setup and teardown hooks.
const SHELL: &str = "/bin/sh";

/// Startup errors of the direct backend.
#[derive(Debug)]
pub enum DirectError {
    /// No `oz_path` configured and no `oz` on the worker's `PATH`.
    OzNotFound,
    TargetDir {
        path: PathBuf,
        source: io::Error,
    },
    TargetDirNotDirectory {
        path: PathBuf,
    },
    WorkspaceRoot {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for DirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectError::OzNotFound => f.write_str(
                "oz CLI not found in PATH (install it or set oz_path for the direct backend)",
            ),
            DirectError::TargetDir { path, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(
                    f,
                    "target directory {} does not exist: {source}",
                    path.display()
                )
            }
            DirectError::TargetDir { path, source } => {
                write!(
                    f,
                    "cannot access target directory {}: {source}",
                    path.display()
                )
            }
            DirectError::TargetDirNotDirectory { path } => {
                write!(f, "target directory {} is not a directory", path.display())
            }
            DirectError::WorkspaceRoot { path, source } => {
                write!(
                    f,
                    "failed to create workspace root {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for DirectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DirectError::TargetDir { source, .. } | DirectError::WorkspaceRoot { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

/// Runs tasks as local processes.
pub struct DirectBackend {
    oz: PathBuf,
    layout: Layout,
    setup_command: Option<String>,
    teardown_command: Option<String>,
    operator_env: crate::settings::EnvList,
    ctx: BackendContext,
    worker_env: Env,
    /// Per-task workspaces this process created and has not removed yet.
    created: Mutex<BTreeSet<PathBuf>>,
    /// Running executions, so `cancel` can reach them.
    running: Mutex<Vec<Running>>,
    next_run: AtomicU64,
    /// Set by `shutdown`: no hook is started after it.
    shut_down: AtomicBool,
}

impl fmt::Debug for DirectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectBackend")
            .field("oz", &self.oz)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl DirectBackend {
    /// Builds the backend with the worker process's own environment.
    pub fn new(
        settings: DirectSettings,
        ctx: BackendContext,
    ) -> Result<DirectBackend, DirectError> {
        DirectBackend::with_env(settings, ctx, Env::from_process())
    }

    /// Builds the backend for `check`, which changes nothing: a missing workspace root is left
    /// missing (`check` reports it; the daemon creates it).
    pub fn for_check(
        settings: DirectSettings,
        ctx: BackendContext,
    ) -> Result<DirectBackend, DirectError> {
        DirectBackend::build(settings, ctx, Env::from_process(), false)
    }

    /// Builds the backend with `worker_env` standing in for the worker's environment: it is
    /// where `oz` is looked up and what the hooks inherit.
    pub fn with_env(
        settings: DirectSettings,
        ctx: BackendContext,
        worker_env: Env,
    ) -> Result<DirectBackend, DirectError> {
        DirectBackend::build(settings, ctx, worker_env, true)
    }

    fn build(
        settings: DirectSettings,
        ctx: BackendContext,
        worker_env: Env,
        create_root: bool,
    ) -> Result<DirectBackend, DirectError> {
        // The agent runs with the workspace as its cwd, so a relative `oz_path` is resolved
        // here against the worker's own directory (Go resolved it against the workspace and
        // failed); a bare name is looked up on PATH like Go's LookPath.
        let oz = match settings.oz_path {
            Some(p) if p.components().count() == 1 && p.is_relative() => {
                host::find_on_path(&p.to_string_lossy(), &worker_env)
                    .ok_or(DirectError::OzNotFound)?
            }
            Some(p) => std::path::absolute(&p).unwrap_or(p),
            None => host::find_on_path("oz", &worker_env).ok_or(DirectError::OzNotFound)?,
        };
        log::info!("Using oz CLI at: {}", oz.display());
        let layout = match settings.target_dir {
            Some(dir) => {
                let meta = std::fs::metadata(&dir).map_err(|source| DirectError::TargetDir {
                    path: dir.clone(),
                    source,
                })?;
                if !meta.is_dir() {
                    return Err(DirectError::TargetDirNotDirectory { path: dir });
                }
                Layout::TargetDir { dir }
            }
            None => {
                let root = settings
                    .workspace_root
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_WORKSPACE_ROOT));
                let root = std::path::absolute(&root).unwrap_or(root);
                if create_root {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&root)
                        .map_err(|source| DirectError::WorkspaceRoot {
                            path: root.clone(),
                            source,
                        })?;
                }
                Layout::PerTask { root }
            }
        };
        let non_empty = |c: Option<String>| c.filter(|c| !c.trim().is_empty());
        Ok(DirectBackend {
            oz,
            layout,
            setup_command: non_empty(settings.setup_command),
            teardown_command: non_empty(settings.teardown_command),
            operator_env: settings.env,
            ctx,
            worker_env,
            created: Mutex::new(BTreeSet::new()),
            running: Mutex::new(Vec::new()),
            next_run: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
        })
    }

    /// The oz CLI this backend runs.
    pub fn oz_path(&self) -> &Path {
        &self.oz
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn tmp_dir(&self) -> PathBuf {
        self.worker_env
            .get("TMPDIR")
            .filter(|t| !t.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
    }

    fn run_task(
        &self,
        spec: &TaskSpec,
        cancel: &CancelToken,
        group: &GroupHandle,
        ws: &Workspace,
        report: &TaskReport,
    ) -> Result<Completion, Failure> {
        let id = spec.task_id.as_str();
        let task = spec.task_ref();
        let (task_env, refused) = env::task_env(
            &spec.env,
            &self.operator_env,
            spec.harness.as_deref(),
            &ws.dir,
            &ws.gitconfig,
        );
        for name in refused {
            log::warn!("Task {id}: ignoring environment variable with an invalid name {name:?}");
        }
        let secrets = Redactor::new(&spec.secrets);

        if let Some(setup) = &self.setup_command {
            log::info!(
                "Running setup command for task {id} in {}",
                ws.dir.display()
            );
            let env = env::setup_env(&self.worker_env, &task_env, &task, &ws.dir, &ws.env_file);
            if report.logs_enabled() {
                report.redact_also(env.redaction_values());
            }
            let limits = Limits {
                cancel: Some(cancel),
                deadline: None,
                grace: self.ctx.timing.kill_grace,
                group: Some(group),
            };
            let span = report.begin(SetupPhase::SetupCommand);
            let result = run_hook(setup, env, &ws.dir, &limits, &secrets, id, "setup", report);
            let ok = matches!(&result, Ok(Ended::Exited(e)) if e.success());
            report.end(span, !ok, cancel.is_cancelled());
            match result {
                Ok(Ended::Exited(e)) if e.success() => {}
                _ if cancel.is_cancelled() => return Err(Failure::cancelled()),
                Ok(Ended::Exited(e) | Ended::Cancelled(e) | Ended::TimedOut(e)) => {
                    return Err(Failure::new(
                        FailureReason::SetupCommand,
                        format!("setup command failed: {e}"),
                    ));
                }
                Err(e) => {
                    return Err(Failure::new(
                        FailureReason::SetupCommand,
                        format!("setup command failed: {e}"),
                    ));
                }
            }
        }

        let file_env = match crate::dotenv::load(&ws.env_file) {
            Ok(vars) => vars,
            Err(e) => {
                log::warn!("Task {id}: ignoring the setup environment file: {e}");
                Vec::new()
            }
        };
        // Parsed values are secrets of the task from here on (before the agent prints any),
        // in the exported records and in the local log.
        report.redact_also(file_env.iter().map(|(_, v)| v));
        let secrets = if file_env.is_empty() {
            secrets
        } else {
            Redactor::new(
                spec.secrets
                    .iter()
                    .map(String::as_str)
                    .chain(file_env.iter().map(|(_, v)| v.as_str())),
            )
        };
        let agent_env = env::agent_env(&self.worker_env, &task_env, &file_env, &ws.gitconfig);
        if cancel.is_cancelled() {
            return Err(Failure::cancelled());
        }

        log::info!("Running oz agent in workspace {}", ws.dir.display());
        log::debug!(
            "Task {id}: {} {}",
            self.oz.display(),
            describe_args(&spec.base_args, &secrets)
        );
        let agent = ProcessSpec {
            program: self.oz.clone(),
            args: spec.base_args.iter().map(Into::into).collect(),
            cwd: Some(ws.dir.clone()),
            env: agent_env,
            stdin: None,
        };
        let limits = Limits {
            cancel: Some(cancel),
            deadline: None,
            grace: self.ctx.timing.kill_grace,
            group: Some(group),
        };
        let result = process::run(&agent, &limits, &secrets, &mut |stream, line| {
            line.records(&mut |r| log::info!(target: "agent", "[{id}] {r}"));
            if let Some(whole) = line.whole() {
                let source = match stream {
                    Stream::Stdout => "agent.stdout",
                    Stream::Stderr => "agent.stderr",
                };
                report.line(source, &[], whole);
            }
        });
        match result {
            Ok(Ended::Exited(e)) if e.success() => Ok(Completion::Finished),
            Ok(Ended::Cancelled(_)) => Err(Failure::cancelled()),
            _ if cancel.is_cancelled() => Err(Failure::cancelled()),
            Ok(Ended::Exited(e) | Ended::TimedOut(e)) => Err(Failure::new(
                FailureReason::AgentInvocation,
                format!("oz agent exited with error: {e}"),
            )
            .with_exit_code(e.code)),
            Err(e) => Err(Failure::new(
                FailureReason::AgentInvocation,
                format!("oz agent exited with error: {e}"),
            )),
        }
    }

    fn lock_created(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, task: TaskRef, cancel: &CancelToken) -> Registration<'_> {
        let n = self.next_run.fetch_add(1, Ordering::Relaxed);
        // Each process group the task starts is noted for a restarted worker (the journal),
        // which stops it if this process dies without reporting the task.
        let group = {
            let recorder = self.ctx.recorder.clone();
            let task = task.clone();
            GroupHandle::observed(std::sync::Arc::new(move |pgid| {
                if let Some(start) = process::orphan::start_time(pgid) {
                    recorder.process_started(&task, crate::backend::ProcessMark { pgid, start });
                }
            }))
        };
        self.lock_running().push(Running {
            n,
            task,
            cancel: cancel.clone(),
            group: group.clone(),
        });
        Registration {
            backend: self,
            n,
            group,
        }
    }
}

/// Keeps an execution reachable by `cancel` while it runs.
struct Registration<'a> {
    backend: &'a DirectBackend,
    n: u64,
    group: GroupHandle,
}

/// A running execution: how to cancel it, and its current process group.
struct Running {
    n: u64,
    task: TaskRef,
    cancel: CancelToken,
    group: GroupHandle,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.backend.lock_running().retain(|r| r.n != self.n);
    }
}

impl Backend for DirectBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Direct
    }

    fn execute(&self, spec: &TaskSpec, cancel: &CancelToken) -> Result<Completion, Failure> {
        let registration = self.register(spec.task_ref(), cancel);
        let group = &registration.group;
        if cancel.is_cancelled() {
            return Err(Failure::cancelled());
        }
        // Flushed (final task-log export, ≤ 5 s) when dropped, on every path.
        let report = super::task_report(&self.ctx, BackendKind::Direct, spec);
        // The operator's env reaches the agent: redacted from exported records too.
        report.redact_also(self.operator_env.iter().map(|(_, v)| v));
        let ws = workspace::open(&self.layout, &spec.task_ref(), &self.tmp_dir())
            .map_err(|e| Failure::new(FailureReason::WorkspaceSetup, e.to_string()))?;
        // Tracked for shutdown only when it may be removed at all.
        if ws.created && self.ctx.cleanup {
            self.lock_created().insert(ws.dir.clone());
        }
        let result = self.run_task(spec, cancel, group, &ws, &report);
        self.close(spec, cancel, group, ws, &report);
        report.finish();
        result
    }

    /// Fires the token of every matching running execution (all of the run's executions when
    /// `task` has no execution id); `execute` then stops the process group and returns.
    fn cancel(&self, task: &TaskRef) -> Result<(), String> {
        for r in self.lock_running().iter() {
            let matches = r.task.task_id == task.task_id
                && (task.execution_id.is_none() || r.task.execution_id == task.execution_id);
            if matches {
                r.cancel.cancel(CancelSource::User);
            }
        }
        Ok(())
    }

    /// The agent of a crashed worker cannot be followed (its pipes died with that process):
    /// its process group is stopped, if it is still that group, and the task reported failed.
    fn recover(&self, orphan: &Orphan, _cancel: &CancelToken) -> Result<Completion, Failure> {
        self.recover_orphan(orphan)
    }

    fn probe(&self) -> Vec<ProbeLine> {
        let mut lines = vec![host::probe_executable(
            &self.oz,
            "oz CLI",
            "install the oz CLI or set oz_path for the direct backend",
        )];
        let (what, dir) = match &self.layout {
            Layout::PerTask { root } => ("workspace root", root),
            Layout::TargetDir { dir } => ("target directory", dir),
        };
        // A missing root is `check`'s to report (the daemon creates it); probe what exists.
        if dir.exists() || matches!(self.layout, Layout::TargetDir { .. }) {
            lines.push(host::probe_writable_dir(dir, what));
        }
        if self.setup_command.is_some() || self.teardown_command.is_some() {
            lines.push(host::probe_executable(
                Path::new(SHELL),
                "shell for the setup/teardown hooks",
                "install a POSIX shell at /bin/sh",
            ));
        }
        lines
    }

    /// Kills what is still running, then removes the workspaces this process created and has
    /// not removed yet (only when cleanup is on). Other entries under the root are left alone.
    fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        // Tasks still running now outlived the shutdown wait (an agent ignoring SIGTERM with a
        // long kill_grace): kill their groups rather than leave them behind the worker.
        for r in self.lock_running().iter() {
            r.cancel.cancel(CancelSource::Shutdown);
            if r.group.kill() {
                log::warn!("Killed the processes of task {} at shutdown", r.task);
            }
        }
        if !self.ctx.cleanup {
            return;
        }
        let leftover: Vec<PathBuf> = std::mem::take(&mut *self.lock_created())
            .into_iter()
            .collect();
        for dir in leftover {
            match workspace::remove(&dir) {
                Ok(()) => log::info!("Removed leftover workspace {}", dir.display()),
                Err(e) => log::warn!("Failed to remove workspace {}: {e}", dir.display()),
            }
        }
    }
}

/// The agent's argument list for a debug line: secrets scrubbed, MCP config withheld (it may
/// carry tokens the server did not list as secrets).
fn describe_args(args: &[String], secrets: &Redactor) -> String {
    let mut out = Vec::with_capacity(args.len());
    let mut withhold_next = false;
    for a in args {
        if withhold_next {
            out.push("[withheld]".to_owned());
        } else {
            out.push(secrets.redact(a).into_owned());
        }
        withhold_next = a == "--mcp";
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_described_without_secrets_or_mcp_config() {
        let args: Vec<String> = [
            "agent",
            "run",
            "--mcp",
            "{\"token\":\"x\"}",
            "--task-id",
            "s3cr3t",
        ]
        .map(str::to_owned)
        .into();
        let d = describe_args(&args, &Redactor::new(["s3cr3t"]));
        assert_eq!(d, "agent run --mcp [withheld] --task-id [REDACTED]");
    }

    #[test]
    fn error_messages_name_the_path() {
        let e = DirectError::TargetDir {
            path: "/x".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(
            e.to_string()
                .starts_with("target directory /x does not exist")
        );
        assert!(
            DirectError::OzNotFound
                .to_string()
                .starts_with("oz CLI not found in PATH")
        );
    }
}
