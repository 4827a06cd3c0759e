//! The Docker backend: each task runs in its own container on the local (or configured) Docker
//! engine, with the agent mounted from a sidecar volume at `/agent`.
//!
//! Per execution: prepare the task image under the pull policy (credentials from the Docker CLI
//! config; platform checked), prepare each sidecar image and its digest-keyed volume (see
//! [`sidecar`]), create the container (labels `oz-task-id`, `oz-execution-id` and the worker id;
//! a readable unique name), register a wait, start it, stream its output into the log, and
//! classify its exit. The container is removed before `execute` returns (unless
//! `--no-cleanup`).
//!
//! Cancellation: the task's token (or [`Backend::cancel`]) aborts the execution's blocked Docker
//! calls at once (see [`tracker`]); `execute` then stops the container (SIGTERM, `kill_grace`,
//! SIGKILL), removes it and returns. `shutdown` waits, bounded, for those removals.
//!
//! Differences from the Go worker, on purpose:
//! - containers are labelled and named, and removed before `execute` returns, also at shutdown
//!   (Go leaks containers of tasks still being torn down when the process exits);
//! - a restarted worker removes the containers a crashed run with the same worker id left;
//! - cancellation gives the agent `kill_grace` after SIGTERM (Go force-removes at once);
//! - output is streamed live, line by line, demultiplexed and scrubbed, not dumped at exit;
//! - sidecar volumes are filled without a shell or `tar` in the sidecar image, helper
//!   containers are never leaked, and a crash mid-fill is detected (see [`sidecar`]);
//! - every image (task and all sidecars) is pulled with the registry credentials the CLI
//!   config has for it, identity tokens included (Go: username/password, task and `/agent`
//!   images only).

mod adopt;
mod image;
mod run;
mod sidecar;
pub mod spec;
mod tracker;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::{
    Backend, BackendContext, BackendKind, CancelSource, CancelToken, Completion, Failure,
    FailureReason, Orphan, ProbeLine, TaskRef,
};
use crate::docker::{Client, Daemon, DockerError, ImageRef, Removal};
use crate::reporting::{SetupPhase, TaskReport};
use crate::settings::DockerSettings;
use crate::task::TaskSpec;

pub use image::ImageError;
pub use sidecar::VolumeError;
use sidecar::{Owner, Volumes};
use tracker::{Container, Tracker, task_matches};

/// Slack on top of `kill_grace` for a stop and a removal to be answered.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// Why the backend could not start. Each message is one line that says what to fix.
#[derive(Debug)]
pub enum DockerBackendError {
    /// Endpoint discovery (`DOCKER_HOST`, contexts, TLS material).
    Config(DockerError),
    /// The ping failed.
    Unreachable(DockerError),
    /// `/version` failed or the daemon is unusable (API too old, unsupported platform).
    Version(DockerError),
    Thread(std::io::Error),
}

impl fmt::Display for DockerBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerBackendError::Config(e) => write!(f, "Docker client configuration: {e}"),
            DockerBackendError::Unreachable(e) => write!(f, "failed to reach Docker daemon: {e}"),
            DockerBackendError::Version(
                e @ (DockerError::UnsupportedPlatform(_) | DockerError::ApiTooOld { .. }),
            ) => e.fmt(f),
            DockerBackendError::Version(e) => write!(f, "failed to get Docker version: {e}"),
            DockerBackendError::Thread(e) => {
                write!(f, "cannot start the Docker backend's watcher thread: {e}")
            }
        }
    }
}

impl std::error::Error for DockerBackendError {}

/// Runs tasks as Docker containers.
pub struct DockerBackend {
    /// Never aborted: cleanup, stops, probes.
    client: Client,
    daemon: Daemon,
    settings: DockerSettings,
    ctx: BackendContext,
    /// The environment credential lookups see (`DOCKER_CONFIG`, `HOME`, `PATH`, …).
    env: HashMap<String, String>,
    volumes: Volumes,
    tracker: Tracker,
    /// Task containers whose removal failed, retried by `cancel` and `shutdown`.
    leftovers: Arc<Mutex<Vec<(TaskRef, String)>>>,
    next: AtomicU64,
}

impl fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerBackend")
            .field("endpoint", &self.client.endpoint().to_string())
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

/// The process environment as UTF-8 pairs (others cannot name Docker settings anyway).
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

impl DockerBackend {
    /// Connects with the worker's own environment and removes what a crashed run left.
    pub fn new(
        settings: DockerSettings,
        ctx: BackendContext,
    ) -> Result<DockerBackend, DockerBackendError> {
        DockerBackend::with_env(settings, ctx, process_env())
    }

    /// [`DockerBackend::new`] with `env` standing in for the process environment: where the
    /// daemon is (`DOCKER_HOST`, …) and where credentials come from (`DOCKER_CONFIG`, `PATH`).
    pub fn with_env(
        settings: DockerSettings,
        ctx: BackendContext,
        env: HashMap<String, String>,
    ) -> Result<DockerBackend, DockerBackendError> {
        DockerBackend::with_env_sparing(settings, ctx, env, &[])
    }

    /// [`DockerBackend::with_env`] for a restarted worker: the task containers of `spare` (the
    /// journal's unfinished executions) are left for [`Backend::recover`] to adopt.
    pub fn with_env_sparing(
        settings: DockerSettings,
        ctx: BackendContext,
        env: HashMap<String, String>,
        spare: &[TaskRef],
    ) -> Result<DockerBackend, DockerBackendError> {
        let backend = DockerBackend::connect(settings, ctx, env)?;
        backend.reap_leftovers_sparing(spare);
        Ok(backend)
    }

    /// Connects and negotiates, with no side effects on the engine (for `check`).
    pub fn connect(
        settings: DockerSettings,
        ctx: BackendContext,
        env: HashMap<String, String>,
    ) -> Result<DockerBackend, DockerBackendError> {
        let lookup = |k: &str| env.get(k).cloned();
        let mut client = Client::from_env(&lookup).map_err(DockerBackendError::Config)?;
        client.ping().map_err(DockerBackendError::Unreachable)?;
        let daemon = client.negotiate().map_err(DockerBackendError::Version)?;
        log::info!(
            "Connected to Docker {} at {} (API {}, {})",
            daemon.version,
            client.endpoint(),
            daemon.api_version,
            daemon.platform
        );
        let tracker = Tracker::new().map_err(DockerBackendError::Thread)?;
        Ok(DockerBackend {
            client,
            daemon,
            settings,
            ctx,
            env,
            volumes: Volumes::default(),
            tracker,
            leftovers: Arc::new(Mutex::new(Vec::new())),
            next: AtomicU64::new(0),
        })
    }

    /// What negotiation learnt about the daemon.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Removes every container labelled with this worker's id (a crashed run's task and
    /// sidecar helper containers), and the volumes that a crashed fill left incomplete. With
    /// `--no-cleanup` they are only listed.
    pub fn reap_leftovers(&self) {
        self.reap_leftovers_sparing(&[]);
    }

    /// [`DockerBackend::reap_leftovers`], sparing the task containers of `spare` (the
    /// journal's unfinished executions, which [`Backend::recover`] adopts).
    pub fn reap_leftovers_sparing(&self, spare: &[TaskRef]) {
        let label = format!("{}={}", spec::LABEL_WORKER, self.ctx.worker_id);
        let found = match self.client.list_containers(true, &[&label]) {
            Ok(found) => found,
            Err(e) => {
                log::warn!("Cannot list containers left by an earlier run: {e}");
                return;
            }
        };
        let found: Vec<_> = found
            .into_iter()
            .filter(|c| !adopt::spared(c, spare))
            .collect();
        if found.is_empty() {
            return;
        }
        if !self.ctx.cleanup {
            log::info!(
                "Keeping {} container(s) left by an earlier run of worker {} (cleanup is off)",
                found.len(),
                self.ctx.worker_id
            );
            return;
        }
        for c in found {
            let name = c
                .names
                .first()
                .map_or(c.id.as_str(), |n| n.trim_start_matches('/'));
            let task = c.labels.get(spec::LABEL_TASK).map_or("?", String::as_str);
            match self.client.remove_container(&c.id, true, true) {
                Ok(_) => {
                    log::info!("Removed container {name} (task {task}) left by an earlier run")
                }
                Err(e) => log::warn!("Failed to remove leftover container {name}: {e}"),
            }
            if let Some(volume) = c.labels.get(spec::LABEL_VOLUME) {
                match self.client.remove_volume(volume, true) {
                    Ok(_) => log::info!("Removed incompletely filled sidecar volume {volume}"),
                    Err(e) => log::warn!("Failed to remove sidecar volume {volume}: {e}"),
                }
            }
        }
    }

    /// A random suffix for container names (falls back to a counter if the OS RNG fails).
    fn suffix(&self) -> String {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 4];
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            // Only uniqueness matters here: the counter's low 32 bits (with the pid) suffice.
            #[allow(clippy::cast_possible_truncation)]
            let low = n as u32;
            bytes = (low ^ std::process::id()).to_be_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |k: &str| self.env.get(k).cloned()
    }

    fn lock_leftovers(&self) -> std::sync::MutexGuard<'_, Vec<(TaskRef, String)>> {
        self.leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Retries the removal of failed-to-remove containers of tasks matching `wanted`.
    fn retry_leftovers(&self, wanted: Option<&TaskRef>) -> Result<(), String> {
        let pending: Vec<(TaskRef, String)> = {
            let mut all = self.lock_leftovers();
            let (take, keep) = all
                .drain(..)
                .partition(|(t, _)| wanted.is_none_or(|w| task_matches(t, w)));
            *all = keep;
            take
        };
        let mut first_error = None;
        for (task, id) in pending {
            if let Err(e) = self.client.remove_container(&id, true, true) {
                first_error.get_or_insert(format!("failed to remove container {id}: {e}"));
                self.lock_leftovers().push((task, id));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Prepares the sidecars and returns their binds.
    fn sidecar_binds(
        &self,
        client: &Client,
        spec: &TaskSpec,
        cancel: &CancelToken,
        suffix: &str,
    ) -> Result<Vec<String>, Failure> {
        let fail = |message: String| run::failure(cancel, FailureReason::SidecarPrep, message);
        spec::validate_sidecars(&spec.sidecars).map_err(fail)?;
        let lookup = self.lookup();
        let mut binds = Vec::with_capacity(spec.sidecars.len());
        for sidecar in &spec.sidecars {
            let image = sidecar.image.trim();
            let inspect = image::prepare(client, image, &self.prepare(&lookup, &spec.task_id))
                .map_err(|e| fail(format!("failed to prepare sidecar image {image}: {e}")))?;
            let familiar = ImageRef::parse(image)
                .map(|r| r.familiar_name())
                .unwrap_or_else(|_| image.to_string());
            let volume = spec::volume_name(&familiar, inspect.digest());
            let owner = Owner {
                task_id: &spec.task_id,
                execution_id: spec.execution_id.as_deref(),
                worker_id: &self.ctx.worker_id,
                suffix,
            };
            self.volumes
                .ensure(client, &self.client, &volume, image, &owner, cancel)
                .map_err(|e| fail(format!("failed to prepare sidecar {image}: {e}")))?;
            binds.push(spec::sidecar_bind(&volume, sidecar));
        }
        Ok(binds)
    }

    fn prepare<'a>(
        &'a self,
        lookup: &'a dyn Fn(&str) -> Option<String>,
        task_id: &'a str,
    ) -> image::Prepare<'a> {
        image::Prepare {
            policy: self.settings.image_pull_policy,
            platform: &self.daemon.platform,
            env: lookup,
            task_id,
            report: None,
        }
    }

    fn run_task(
        &self,
        spec: &TaskSpec,
        cancel: &CancelToken,
        exec: &tracker::Execution,
        name: &str,
        suffix: &str,
        report: &TaskReport,
    ) -> Result<Completion, Failure> {
        let client = self.client.with_abort(exec.abort.clone());
        let image = spec.image.trim();
        let lookup = self.lookup();
        let how = image::Prepare {
            report: Some((report, cancel)),
            ..self.prepare(&lookup, &spec.task_id)
        };
        image::prepare(&client, image, &how)
            .map_err(|e| run::failure(cancel, FailureReason::ImagePull, e.to_string()))?;
        let span = report.begin(SetupPhase::SidecarPrep);
        let binds = self.sidecar_binds(&client, spec, cancel, suffix);
        if !spec.sidecars.is_empty() {
            report.end(span, binds.is_err(), cancel.is_cancelled());
        }
        let binds = binds?;
        let labels = spec::labels(
            &spec.task_id,
            spec.execution_id.as_deref(),
            &self.ctx.worker_id,
            spec::ROLE_TASK,
        );
        let config = spec::task_container(
            spec,
            image,
            binds,
            &self.settings.volumes,
            &self.settings.env,
            labels,
        );
        let r = run::Run {
            client: &client,
            plain: &self.client,
            exec,
            cancel,
            task_id: &spec.task_id,
            name,
            grace: self.ctx.timing.kill_grace,
            secrets: &spec.secrets,
            report,
        };
        run::run(&r, &config)
    }

    /// Removes the execution's container (cleanup on) or says it is kept.
    fn finish(&self, task: &TaskRef, exec: &tracker::Execution) {
        let container = exec.container();
        let Some(handle) = container.handle() else {
            return;
        };
        let id = &task.task_id;
        if !self.ctx.cleanup {
            if let Container::Created { name, .. } = &container {
                log::info!("Task {id}: keeping container {name} (cleanup is off)");
            }
            return;
        }
        match self.client.remove_container(handle, true, true) {
            Ok(Removal::Removed) => log::debug!("Task {id}: removed container {handle}"),
            Ok(Removal::NotFound) => {}
            Err(e) => {
                log::warn!("Task {id}: failed to remove container {handle}: {e}");
                self.lock_leftovers()
                    .push((task.clone(), handle.to_string()));
            }
        }
    }

    fn probe_binds(&self, lines: &mut Vec<ProbeLine>) {
        for bind in &self.settings.volumes {
            let source = spec::bind_source(bind);
            if source.starts_with('/') {
                lines.push(if Path::new(source).exists() {
                    ProbeLine::ok(format!("volume {bind}: {source} exists"))
                } else {
                    ProbeLine::failed(format!(
                        "volume {bind}: {source} does not exist on this host: create it or fix the volume entry"
                    ))
                });
                continue;
            }
            lines.push(match self.client.inspect_volume(source) {
                Ok(Some(_)) => ProbeLine::ok(format!("volume {bind}: named volume {source} exists")),
                Ok(None) => ProbeLine::ok(format!(
                    "volume {bind}: named volume {source} does not exist yet (Docker creates it on first use)"
                )),
                Err(e) => ProbeLine::failed(format!("volume {bind}: cannot inspect {source}: {e}")),
            });
        }
    }
}

/// Ends an execution: container removal (or keeping), then deregistration.
struct Finish<'a> {
    backend: &'a DockerBackend,
    spec: &'a TaskSpec,
    exec: &'a Arc<tracker::Execution>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let b = self.backend;
        // A task that ran to its end is reported first and its container removed beside the
        // report: removal is ~30-90 ms of the daemon's time that the task's outcome need not
        // wait for. The execution stays registered until the container is gone, so `cancel`
        // (execution_closed) and `shutdown` still wait for it. Cancelled tasks, panics and
        // kept containers take the inline path.
        let background = b.ctx.cleanup
            && !self.exec.cancel.is_cancelled()
            && !std::thread::panicking()
            && matches!(self.exec.container(), Container::Created { .. });
        if background && self.remove_in_background() {
            return;
        }
        b.finish(&self.spec.task_ref(), self.exec);
        b.tracker.remove(self.exec);
    }
}

impl Finish<'_> {
    /// Hands the removal to a short-lived thread; false when no thread could be started.
    fn remove_in_background(&self) -> bool {
        let b = self.backend;
        let client = b.client.clone();
        let exec = Arc::clone(self.exec);
        let tracker = b.tracker.handle();
        let leftovers = Arc::clone(&b.leftovers);
        let task = self.spec.task_ref();
        std::thread::Builder::new()
            .name(run::thread_name("rm-", &self.spec.task_id))
            .stack_size(128 * 1024)
            .spawn(move || {
                if let Some(handle) = exec.container().handle() {
                    match client.remove_container(handle, true, true) {
                        Ok(Removal::Removed) => {
                            log::debug!("Task {task}: removed container {handle}")
                        }
                        Ok(Removal::NotFound) => {}
                        Err(e) => {
                            log::warn!("Task {task}: failed to remove container {handle}: {e}");
                            leftovers
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((task.clone(), handle.to_string()));
                        }
                    }
                }
                tracker.remove(&exec);
            })
            .is_ok()
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        self.tracker.stop();
    }
}

impl Backend for DockerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn execute(&self, spec: &TaskSpec, cancel: &CancelToken) -> Result<Completion, Failure> {
        let exec = self.tracker.add(spec.task_ref(), cancel.clone());
        // Removes the container and deregisters on every path, a panic included.
        let _finish = Finish {
            backend: self,
            spec,
            exec: &exec,
        };
        let suffix = self.suffix();
        let name = spec::container_name(&spec.task_id, &suffix);
        if cancel.is_cancelled() {
            return Err(Failure::cancelled());
        }
        // Flushes the task's logs (≤ 5 s) before the outcome is reported; the container is
        // removed after that (`_finish` drops last).
        let report = super::task_report(&self.ctx, BackendKind::Docker, spec);
        // The operator's container env is redacted from exported records like the task's own.
        report.redact_also(self.settings.env.iter().map(|(_, v)| v));
        self.run_task(spec, cancel, &exec, &name, &suffix, &report)
    }

    /// Fires the token of every matching execution and waits (bounded) until each has stopped
    /// and removed its container; then retries removals that failed earlier. `Ok` means no
    /// container of the task is left (or cleanup is off).
    fn cancel(&self, task: &TaskRef) -> Result<(), String> {
        let matching = self.tracker.matching(task);
        for exec in &matching {
            exec.cancel.cancel(CancelSource::User);
            exec.abort.abort();
        }
        let deadline = Instant::now() + self.ctx.timing.kill_grace + STOP_SLACK;
        if !self.tracker.wait_gone(&matching, deadline) {
            return Err(format!(
                "the container of task {task} is still being stopped"
            ));
        }
        self.retry_leftovers(Some(task))
    }

    /// A task container of this worker id that a crashed run started is followed to its end
    /// (or, if it ended while no worker ran, classified at once) and reported once.
    fn recover(&self, orphan: &Orphan, cancel: &CancelToken) -> Result<Completion, Failure> {
        self.adopt(orphan, cancel)
    }

    fn probe(&self) -> Vec<ProbeLine> {
        let endpoint = self.client.endpoint().to_string();
        let mut lines = Vec::new();
        let mut client = self.client.clone();
        match client
            .ping()
            .map_err(DockerBackendError::Unreachable)
            .and_then(|_| client.negotiate().map_err(DockerBackendError::Version))
        {
            Ok(d) => lines.push(ProbeLine::ok(format!(
                "Docker engine at {endpoint}: version {}, API {}, platform {}",
                d.version, d.api_version, d.platform
            ))),
            Err(e) => {
                lines.push(ProbeLine::failed(format!(
                    "Docker engine at {endpoint}: {e}"
                )));
                return lines;
            }
        }
        self.probe_binds(&mut lines);
        lines
    }

    /// Waits (bounded by `kill_grace` plus slack) for the executions still running to stop and
    /// remove their containers, force-removes what is left, and retries failed removals.
    fn shutdown(&self) {
        let running = self.tracker.snapshot();
        for exec in &running {
            exec.cancel.cancel(CancelSource::Shutdown);
            exec.abort.abort();
        }
        let deadline = Instant::now() + self.ctx.timing.kill_grace + STOP_SLACK;
        if !self.tracker.wait_gone(&running, deadline) && self.ctx.cleanup {
            for exec in self.tracker.snapshot() {
                if let Some(handle) = exec.container().handle() {
                    match self.client.remove_container(handle, true, true) {
                        Ok(_) => log::warn!(
                            "Force-removed container {handle} of task {} at shutdown",
                            exec.task
                        ),
                        Err(e) => log::warn!(
                            "Failed to remove container {handle} of task {} at shutdown: {e}",
                            exec.task
                        ),
                    }
                }
            }
        }
        if self.ctx.cleanup
            && let Err(e) = self.retry_leftovers(None)
        {
            log::warn!("At shutdown: {e}");
        }
        self.tracker.stop();
    }
}
