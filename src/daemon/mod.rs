//! The daemon's wiring: from resolved [`Settings`] to running threads and back. [`run`] starts
//! signal handling, the observers (metrics, OTLP, systemd), the backend, the Oz link and the
//! supervisor, and shuts them down in order; [`run_once`] runs one local task. `main.rs` only
//! turns arguments into a mode and an [`Outcome`] into an exit status.
//!
//! This is the top layer: it may import any module, and no module imports it.

pub mod exporters;
mod observers;
mod prober;
mod recovery;

use std::sync::Arc;
use std::time::Instant;

use log::{error, info, warn};

use crate::backend::{self, Backend};
use crate::link::{Ledger, Link, LinkConfig, ProxyEnv};
use crate::settings::Settings;
use crate::supervisor::{self, Exit, Supervisor};
use crate::task::TaskOptions;
use crate::{VERSION, run_once as once, signals};

use observers::Observers;
use prober::BackendProber;

/// How a run ended; `main` maps it to the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Graceful shutdown.
    Success,
    /// Backend unavailable, link lost, a listener the operator asked for did not come up.
    RuntimeFailure,
    /// Configuration that only showed itself at startup (e.g. a CA bundle the link cannot load).
    ConfigError,
    /// A second signal interrupted the graceful shutdown.
    Interrupted,
    /// `run-once`: the task's own exit status.
    Task(u8),
}

fn task_options(settings: &Settings) -> TaskOptions {
    use crate::settings::BackendSettings;
    let mut opts = TaskOptions {
        backend: Some(settings.backend_kind()),
        server_root_url: settings.server_root_url.clone(),
        idle_on_complete: settings.idle_on_complete.clone(),
        session_sharing_server_url: settings.session_sharing_server_url.clone(),
        ..TaskOptions::default()
    };
    match &settings.backend {
        BackendSettings::Docker(d) => opts.sidecar_image = d.sidecar_image.clone(),
        BackendSettings::Kubernetes(k) => {
            opts.default_image = k.default_image.clone();
            opts.sidecar_image = k.sidecar_image.clone();
            opts.coding_cli_sidecars = k.coding_cli_sidecars.clone();
        }
        BackendSettings::Direct(_) | BackendSettings::Command(_) => {}
    }
    opts
}

fn supervisor_options(settings: &Settings) -> supervisor::Options {
    supervisor::Options {
        worker_id: settings.worker_id.clone(),
        max_concurrent_tasks: settings.max_concurrent_tasks,
        one_shot: settings.one_shot,
        task: task_options(settings),
        shutdown_timeout: settings.timing.shutdown_timeout,
        drain_timeout: settings.drain_timeout,
    }
}

fn build_backend(settings: &Settings) -> Option<Arc<dyn Backend>> {
    match backend::build(settings, backend::Purpose::Run) {
        Ok(b) => Some(b),
        Err(e) => {
            error!("Failed to create worker: {e}");
            None
        }
    }
}

/// Publishes the backend's own series with the worker's metrics.
fn export_backend_series(metrics: &crate::metrics::Metrics, backend: &Arc<dyn Backend>) {
    use crate::metrics::{Family, Kind, Point, PointValue};
    let backend = Arc::clone(backend);
    metrics.add_source(Box::new(move || {
        backend
            .series()
            .into_iter()
            .map(|s| Family {
                name: s.name,
                help: s.help,
                unit: "",
                kind: if s.counter {
                    Kind::Counter
                } else {
                    Kind::Gauge
                },
                points: s
                    .points
                    .into_iter()
                    .map(|(labels, v)| Point::new(labels, PointValue::Int(v)))
                    .collect(),
            })
            .collect()
    }));
}

/// Runs the worker until a signal, a one-shot task's end or a lost link.
pub fn run(settings: &Settings) -> Outcome {
    info!(
        "oz-agent-worker {VERSION} starting: worker id {:?}, backend {}",
        settings.worker_id,
        settings.backend_kind()
    );
    let signals = match signals::spawn() {
        Ok(s) => s,
        Err(e) => {
            error!("Cannot install signal handlers: {e}");
            return Outcome::RuntimeFailure;
        }
    };
    let observers = match Observers::start(settings) {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    let (journal, replay) = recovery::open_journal(settings);
    let Some(backend) = recovery::build_backend(settings, journal.as_ref(), &replay.unfinished)
    else {
        observers.stop();
        return Outcome::RuntimeFailure;
    };
    export_backend_series(&observers.telemetry.metrics, &backend);
    let Some(api_key) = settings.api_key.clone() else {
        // config::resolve requires a key in daemon mode; this is a bug if reached.
        error!("No API key configured");
        return Outcome::ConfigError;
    };
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let ledger = journal
        .clone()
        .map(|j| Arc::new(recovery::JournalLedger(j)) as Arc<dyn Ledger>);
    let link = match Link::spawn_with_ledger(
        LinkConfig {
            url: settings.web_socket_url.clone(),
            worker_id: settings.worker_id.clone(),
            api_key,
            ca_bundle: settings.ca_bundle.clone(),
            timing: settings.timing.clone(),
            version: VERSION.to_owned(),
        },
        events_tx,
        ProxyEnv::from_env(),
        ledger,
    ) {
        Ok(l) => l,
        Err(e) => {
            error!("Cannot start the Oz link: {e}");
            observers.stop();
            return Outcome::ConfigError;
        }
    };
    let telemetry = observers.telemetry.clone();
    telemetry.health.set_backend_ok(true);
    let prober = BackendProber::spawn(Arc::clone(&backend), Arc::clone(&telemetry.health));
    telemetry.notifier.ready();
    let mut supervisor = Supervisor::new(
        supervisor_options(settings),
        Arc::clone(&backend),
        telemetry,
    );
    if let Some(j) = journal {
        supervisor = supervisor.with_journal(j);
    }
    let outbox = |msg| link.send(msg);
    supervisor.recover(&outbox, replay);
    let exit = supervisor.run(&outbox, &events_rx, &signals);
    if exit == Exit::Aborted {
        return Outcome::Interrupted;
    }
    flush_task_logs();
    let report = link.shutdown(Instant::now() + settings.timing.write_timeout);
    if report.undelivered > 0 {
        warn!(
            "{} message(s) to Oz could not be delivered before the shutdown deadline",
            report.undelivered
        );
    } else {
        info!(
            "All messages to Oz delivered{}",
            if report.closed_cleanly {
                "; connection closed"
            } else {
                ""
            }
        );
    }
    drop(prober);
    backend.shutdown();
    join_task_threads();
    observers.stop();
    info!("Worker shutdown complete");
    match exit {
        Exit::LinkLost => Outcome::RuntimeFailure,
        _ => Outcome::Success,
    }
}

/// Runs the task read from `source` (a file or `-`) once, locally, through the backend.
pub fn run_once(settings: &Settings, source: &str) -> Outcome {
    let assignment = match once::read_task(source).and_then(|t| once::parse_task(source, &t)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oz-agent-worker: {e}");
            return Outcome::ConfigError;
        }
    };
    let signals = match signals::spawn() {
        Ok(s) => s,
        Err(e) => {
            error!("Cannot install signal handlers: {e}");
            return Outcome::RuntimeFailure;
        }
    };
    let Some(backend) = build_backend(settings) else {
        return Outcome::RuntimeFailure;
    };
    let status = once::run(
        assignment,
        supervisor_options(settings),
        Arc::clone(&backend),
        &signals,
        &mut std::io::stdout(),
    );
    backend.shutdown();
    join_task_threads();
    info!("{}", once::summary(status));
    Outcome::Task(status)
}

/// How long shutdown gives the task-log exporters still running to export what they hold.
const TASK_LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Flushes every task-log exporter still running, all at once, within [`TASK_LOG_FLUSH`]:
/// tasks that outlive the worker (command, Kubernetes) and those not yet returned.
fn flush_task_logs() {
    let (flushed, late) = crate::reporting::flush_all(TASK_LOG_FLUSH);
    if flushed + late > 0 {
        log::debug!("Flushed the task logs of {flushed} running task(s) at shutdown");
    }
    if late > 0 {
        warn!(
            "The task logs of {late} running task(s) were not flushed within \
             {TASK_LOG_FLUSH:?} of shutdown"
        );
    }
}

/// How long shutdown waits for task, cancellation and credential-helper threads to end after
/// the tasks were reported and the backend shut down.
const THREAD_JOIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Joins the threads started on behalf of tasks; names those still running at the deadline.
fn join_task_threads() {
    let (joined, stragglers) =
        crate::threads::TRACKED.join_all_counted(Instant::now() + THREAD_JOIN_DEADLINE);
    log::debug!("Joined {joined} task thread(s) at shutdown");
    if !stragglers.is_empty() {
        warn!(
            "{} thread(s) still running {THREAD_JOIN_DEADLINE:?} into shutdown, left to end with \
             the process: {}",
            stragglers.len(),
            stragglers.join(", ")
        );
    }
}
