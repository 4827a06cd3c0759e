//! The seam every execution backend plugs into.
//!
//! A backend runs one [`TaskSpec`] to its end ([`Completion::Finished`]) or hands it off to
//! something that reports on its own ([`Completion::Dispatched`]), or fails with a [`Failure`]
//! that carries the upstream wire reason. `execute` blocks; the supervisor runs it on the task's
//! own thread and makes it return early through the task's [`CancelToken`].
//!
//! One backend never imports another.

pub mod command;
pub mod direct;
pub mod docker;
pub mod kubernetes;

use std::fmt;

pub use crate::cancel::{CancelSource, CancelToken};
pub use crate::protocol::FailureReason;
pub use crate::settings::BackendKind;
pub use crate::task::TaskRef;

use crate::task::TaskSpec;

/// How a task ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The task ran here and finished successfully.
    Finished,
    /// The task was handed to an external system that reports its outcome itself
    /// (the command backend). The worker sends no terminal message for it.
    Dispatched,
}

/// A classified task failure: the wire reason, the agent's exit code when one was observed
/// (normalised to 128+signal for signal deaths) and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: FailureReason,
    pub exit_code: Option<i32>,
    pub message: String,
    /// The `failure_details` object of `task_failed`, as JSON text (Kubernetes:
    /// `{"kubernetes": {...}}`, schema 1), when the backend has one.
    pub details: Option<String>,
}

impl Failure {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            exit_code: None,
            message: message.into(),
            details: None,
        }
    }

    /// Attaches the `failure_details` object (JSON text).
    pub fn with_details(mut self, details: Option<String>) -> Self {
        self.details = details;
        self
    }

    pub fn with_exit_code(mut self, code: i32) -> Self {
        self.exit_code = Some(code);
        self
    }

    /// The failure of a task whose cancellation token fired.
    pub fn cancelled() -> Self {
        Failure::new(FailureReason::TaskCancelled, "task cancelled")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason.as_str())?;
        if let Some(code) = self.exit_code {
            write!(f, ", exit code {code}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// One line of a `check` report: what was probed and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLine {
    pub ok: bool,
    pub what: String,
}

impl ProbeLine {
    pub fn ok(what: impl Into<String>) -> Self {
        ProbeLine {
            ok: true,
            what: what.into(),
        }
    }
    pub fn failed(what: impl Into<String>) -> Self {
        ProbeLine {
            ok: false,
            what: what.into(),
        }
    }
}

/// Worker-level facts every backend may need at construction.
#[derive(Debug, Clone)]
pub struct BackendContext {
    pub worker_id: String,
    /// Remove containers/workspaces after each task.
    pub cleanup: bool,
    /// `--server-root-url`.
    pub server_root_url: String,
    /// The operator's `collect_task_logs`.
    pub collect_task_logs: bool,
    pub timing: crate::settings::Timing,
    /// Where a backend notes what a restarted worker needs to clean up after a crash.
    pub recorder: Recorder,
}

/// A process group a task started: its id and its leader's start time (clock ticks since
/// boot, `/proc/PID/stat` field 22). Both together name the group uniquely: a recycled pid
/// has another start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMark {
    pub pgid: i32,
    pub start: u64,
}

/// An execution a crashed worker claimed and never reported on, found in the journal at
/// startup. `backend` is the one that ran it; `process` its last process group (direct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub task: TaskRef,
    pub backend: String,
    pub process: Option<ProcessMark>,
}

/// Receives what backends note for crash recovery (the outcome journal in the daemon).
pub trait RecoveryNotes: Send + Sync {
    /// A task started a process group.
    fn process_started(&self, task: &TaskRef, mark: ProcessMark);
}

/// An optional [`RecoveryNotes`] sink; `Recorder::default()` notes nothing.
#[derive(Clone, Default)]
pub struct Recorder(Option<std::sync::Arc<dyn RecoveryNotes>>);

impl Recorder {
    pub fn new(notes: std::sync::Arc<dyn RecoveryNotes>) -> Recorder {
        Recorder(Some(notes))
    }

    pub fn process_started(&self, task: &TaskRef, mark: ProcessMark) {
        if let Some(n) = &self.0 {
            n.process_started(task, mark);
        }
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Recorder(on)"
        } else {
            "Recorder(off)"
        })
    }
}

/// Opens one execution's reporting (setup events; task logs when the operator and the
/// assignment allow it). Every backend with setup phases or output calls this once per
/// execution and [`crate::reporting::TaskReport::finish`] before returning.
pub fn task_report(
    ctx: &BackendContext,
    kind: BackendKind,
    spec: &TaskSpec,
) -> crate::reporting::TaskReport {
    open_report(ctx, kind, spec, true)
}

/// [`task_report`] without setup events, for a backend that has no setup phase (command).
pub fn task_log_report(
    ctx: &BackendContext,
    kind: BackendKind,
    spec: &TaskSpec,
) -> crate::reporting::TaskReport {
    open_report(ctx, kind, spec, false)
}

fn open_report(
    ctx: &BackendContext,
    kind: BackendKind,
    spec: &TaskSpec,
    setup_events: bool,
) -> crate::reporting::TaskReport {
    let telemetry = spec
        .telemetry
        .as_ref()
        .map(|t| crate::reporting::Telemetry {
            endpoint: &t.endpoint,
            logging_enabled: t.logging_enabled,
        });
    let reporting = crate::reporting::Reporting {
        worker_id: &ctx.worker_id,
        backend: kind.as_str(),
        server_root_url: &ctx.server_root_url,
        collect_task_logs: ctx.collect_task_logs,
    };
    let facts = crate::reporting::TaskFacts {
        run_id: &spec.task_id,
        execution_id: spec.execution_id.as_deref(),
        env: &spec.env,
        secrets: &spec.secrets,
        telemetry,
    };
    if setup_events {
        crate::reporting::TaskReport::start(&reporting, &facts)
    } else {
        crate::reporting::TaskReport::start_logs_only(&reporting, &facts)
    }
}

/// One metric series a backend exports, in plain types: the daemon turns it into a metrics
/// family (the backend layer does not import the metrics layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: &'static str,
    pub help: &'static str,
    /// Monotonic counter (else a gauge).
    pub counter: bool,
    pub points: Vec<(Vec<(&'static str, String)>, i64)>,
}

/// An execution backend.
pub trait Backend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Runs one task. Blocks until the task finishes, is handed off, or fails. Must return
    /// promptly (with [`Failure::cancelled`] or whatever the task's own failure was) once
    /// `cancel` fires.
    fn execute(&self, spec: &TaskSpec, cancel: &CancelToken) -> Result<Completion, Failure>;

    /// Backend-side cancellation of one execution, running or dispatched: kill the process
    /// group, remove the container, delete the Job, run the cancel command. Idempotent; called
    /// on a short-lived thread, never on the supervisor's.
    fn cancel(&self, task: &TaskRef) -> Result<(), String> {
        let _ = task;
        Ok(())
    }

    /// True when tasks keep running across a worker shutdown (command, kubernetes): the
    /// supervisor then leaves them alone instead of cancelling them.
    fn preserves_tasks_on_shutdown(&self) -> bool {
        false
    }

    /// Probes what this backend needs (for `check` and readiness). Each line says what was
    /// checked; a failed line says what to fix.
    fn probe(&self) -> Vec<ProbeLine>;

    /// `check --preflight`: runs the startup preflight the daemon runs (which may create and
    /// delete cluster objects) and says how it went; `None` when this backend has none.
    fn preflight(&self) -> Option<ProbeLine> {
        None
    }

    /// Called once when the worker stops, after every task thread has returned or timed out.
    fn shutdown(&self) {}

    /// Resolves an execution a crashed worker left unfinished (found in the journal at
    /// startup) and returns its outcome, reported once like any task's. The default, for
    /// backends whose work cannot be followed after a crash, reports it failed.
    fn recover(&self, orphan: &Orphan, cancel: &CancelToken) -> Result<Completion, Failure> {
        let _ = (orphan, cancel);
        Err(Failure::new(
            FailureReason::Unknown,
            "the worker restarted while the task ran; its outcome is unknown",
        ))
    }

    /// Series this backend exports itself (the Kubernetes API requests and watches).
    fn series(&self) -> Vec<Series> {
        Vec::new()
    }

    /// Executions a previous worker process left running that this backend can follow to
    /// their end (Kubernetes re-attach). Taken once, at startup; the supervisor reports their
    /// outcomes like any other task's, without a new claim.
    fn reattach(&self) -> Vec<TaskRef> {
        Vec::new()
    }

    /// Follows an execution returned by [`Backend::reattach`] to its end.
    fn resume(&self, task: &TaskRef, cancel: &CancelToken) -> Result<Completion, Failure> {
        let _ = cancel;
        Err(Failure::new(
            FailureReason::Unknown,
            format!("the {} backend cannot resume execution {task}", self.kind()),
        ))
    }
}

/// Why a backend could not be constructed.
#[derive(Debug)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// What a backend is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Running tasks: startup housekeeping (e.g. removing a crashed run's containers) happens.
    Run,
    /// `check`: connect and probe only, changing nothing.
    Check,
}

/// Constructs the configured backend.
pub fn build(
    settings: &crate::settings::Settings,
    purpose: Purpose,
) -> Result<std::sync::Arc<dyn Backend>, BuildError> {
    build_recovering(settings, purpose, Recorder::default(), &[])
}

/// [`build`] for a daemon with an outcome journal: `recorder` receives the backend's recovery
/// notes, and `orphans` (the journal's unfinished executions) are spared by startup
/// housekeeping so that [`Backend::recover`] can adopt them.
pub fn build_recovering(
    settings: &crate::settings::Settings,
    purpose: Purpose,
    recorder: Recorder,
    orphans: &[Orphan],
) -> Result<std::sync::Arc<dyn Backend>, BuildError> {
    use crate::settings::BackendSettings;
    use std::sync::Arc;
    fn boxed<B: Backend + 'static, E: fmt::Display>(
        r: Result<B, E>,
    ) -> Result<Arc<dyn Backend>, BuildError> {
        r.map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| BuildError(e.to_string()))
    }
    let ctx = BackendContext {
        worker_id: settings.worker_id.clone(),
        cleanup: settings.cleanup,
        server_root_url: settings.server_root_url.clone(),
        collect_task_logs: settings.collect_task_logs,
        timing: settings.timing.clone(),
        recorder,
    };
    match &settings.backend {
        BackendSettings::Direct(s) => match purpose {
            Purpose::Run => boxed(direct::DirectBackend::new(s.clone(), ctx)),
            Purpose::Check => boxed(direct::DirectBackend::for_check(s.clone(), ctx)),
        },
        BackendSettings::Command(s) => boxed(command::CommandBackend::new(s.clone(), ctx)),
        BackendSettings::Docker(s) => match purpose {
            Purpose::Run => {
                let spare: Vec<TaskRef> = orphans.iter().map(|o| o.task.clone()).collect();
                boxed(docker::DockerBackend::with_env_sparing(
                    s.clone(),
                    ctx,
                    docker::process_env(),
                    &spare,
                ))
            }
            Purpose::Check => boxed(docker::DockerBackend::connect(
                s.clone(),
                ctx,
                docker::process_env(),
            )),
        },
        BackendSettings::Kubernetes(s) => boxed(kubernetes::KubernetesBackend::new(
            (**s).clone(),
            ctx,
            purpose,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_unique_wire_strings() {
        let mut seen = std::collections::BTreeSet::new();
        for r in FailureReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {}", r.as_str());
        }
        assert_eq!(FailureReason::ALL.len(), 29);
    }

    #[test]
    fn backend_kind_round_trips() {
        for k in BackendKind::ALL {
            assert_eq!(BackendKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(BackendKind::parse("podman"), None);
    }
}
