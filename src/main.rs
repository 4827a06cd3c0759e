//! Process entry: arguments -> settings -> logging -> backend -> supervisor.
//!
//! Exit codes are decided here and only here:
//!
//! | code | meaning                                                                 |
//! |------|-------------------------------------------------------------------------|
//! | 0    | success: graceful shutdown, `check` passed, `run-once` task succeeded   |
//! | 1    | runtime failure: backend unavailable, link lost, a `check` failed       |
//! | 2    | usage or configuration error (the message names the flag or key)        |
//! | 130  | a second signal interrupted the graceful shutdown                        |
//!
//! `run-once` exits with the task's status instead (see `run_once::exit_status`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use log::{error, info, warn};

use oz_agent_worker::backend::{self, Backend};
use oz_agent_worker::cli::{self, Invocation, Mode};
use oz_agent_worker::config;
use oz_agent_worker::link::{Link, LinkConfig};
use oz_agent_worker::metrics::{Health, Metrics, WorkerInfo, exporters};
use oz_agent_worker::sd_notify::{Keeper, Notifier};
use oz_agent_worker::settings::Settings;
use oz_agent_worker::supervisor::{self, Exit, Supervisor, Telemetry};
use oz_agent_worker::task::TaskOptions;
use oz_agent_worker::{VERSION, check, logging, ops, otlp, redact, run_once, signals};

const USAGE_ERROR: u8 = 2;
const RUNTIME_ERROR: u8 = 1;
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("oz-agent-worker: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let (mode, args, task) = match invocation {
        Invocation::Help(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Invocation::Version(text) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Invocation::Completions(script) => {
            print!("{script}");
            return ExitCode::SUCCESS;
        }
        Invocation::Run { mode, args, task } => (mode, args, task),
    };
    let env = |key: &str| std::env::var(key).ok();
    let resolved = match config::resolve(&args, mode, &env) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oz-agent-worker: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let settings = resolved.settings;
    logging::init(settings.log_level, settings.log_format);
    if let Some(key) = &settings.api_key {
        // Registered before anything can log it, for the life of the process.
        redact::register([key.expose()]).keep();
    }
    for warning in &resolved.warnings {
        warn!("{warning}");
    }
    ExitCode::from(match mode {
        Mode::Daemon => daemon(&settings),
        Mode::RunOnce => local_run(&settings, task.as_deref().unwrap_or("-")),
        Mode::Check => {
            if check::run(&settings, &mut std::io::stdout()) {
                0
            } else {
                RUNTIME_ERROR
            }
        }
    })
}

fn task_options(settings: &Settings) -> TaskOptions {
    use oz_agent_worker::settings::BackendSettings;
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

/// The observability threads of a daemon run; stopped in reverse order at exit.
struct Observers {
    telemetry: Telemetry,
    ops: Option<ops::OpsHandle>,
    otlp: Option<otlp::OtlpHandle>,
    keeper: Option<Keeper>,
}

impl Observers {
    /// Starts `/metrics` (`--metrics-addr` or the Go worker's OTEL_* variables), OTLP push and
    /// the systemd notifier. A listener the operator asked for by flag must come up; one the
    /// OTEL variables asked for is best effort, as in the Go worker.
    fn start(settings: &Settings) -> Result<Observers, u8> {
        let env = |key: &str| std::env::var(key).ok();
        let metrics = Metrics::new(
            WorkerInfo {
                version: VERSION.to_owned(),
                backend: settings.backend_kind().as_str().to_owned(),
                worker_id: settings.worker_id.clone(),
            },
            settings.max_concurrent_tasks,
        );
        let health = Health::new(std::time::Duration::from_secs(30));
        let (notifier, notes) = Notifier::from_env(&env);
        let notifier = Arc::new(notifier);
        let plan = exporters::plan(settings.metrics_addr.as_deref(), &env);
        for note in notes.iter().chain(&plan.warnings) {
            warn!("{note}");
        }
        let ops = match &plan.listen {
            Some(addr) => match ops::spawn(addr, Arc::clone(&metrics), Arc::clone(&health)) {
                Ok(h) => {
                    info!(
                        "Serving /metrics, /healthz and /readyz on http://{}",
                        h.local_addr()
                    );
                    Some(h)
                }
                Err(e) if settings.metrics_addr.is_some() => {
                    error!("{e}");
                    return Err(RUNTIME_ERROR);
                }
                Err(e) => {
                    warn!("{e}; continuing without metrics");
                    None
                }
            },
            None => None,
        };
        let otlp = match plan.otlp {
            Some(cfg) => {
                let endpoint = cfg.endpoint.clone();
                match otlp::spawn(cfg, Arc::clone(&metrics)) {
                    Ok(h) => {
                        info!("Pushing metrics over OTLP/HTTP to {endpoint}");
                        Some(h)
                    }
                    Err(e) => {
                        warn!("Cannot start OTLP metrics push: {e}; continuing without it");
                        None
                    }
                }
            }
            None => None,
        };
        let keeper = match Keeper::spawn(
            Arc::clone(&notifier),
            Arc::clone(&metrics),
            Arc::clone(&health),
        ) {
            Ok(k) => k,
            Err(e) => {
                warn!("Cannot start the systemd notifier: {e}");
                None
            }
        };
        Ok(Observers {
            telemetry: Telemetry {
                metrics,
                health,
                notifier,
            },
            ops,
            otlp,
            keeper,
        })
    }

    fn stop(self) {
        if let Some(o) = self.otlp {
            o.shutdown();
        }
        if let Some(k) = self.keeper {
            k.stop();
        }
        if let Some(o) = self.ops {
            o.shutdown();
        }
    }
}

/// Re-probes the backend every half minute so `/readyz` notices an engine that went away (and
/// came back). Probing can block on I/O, so it has its own thread, never the supervisor's.
struct BackendProber {
    stop: Option<crossbeam_channel::Sender<()>>,
}

impl BackendProber {
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

    fn spawn(backend: Arc<dyn Backend>, health: Arc<Health>) -> BackendProber {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let _ = std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(Self::PERIOD)
                {
                    let failed: Vec<String> = backend
                        .probe()
                        .into_iter()
                        .filter(|l| !l.ok)
                        .map(|l| l.what)
                        .collect();
                    let ok = failed.is_empty();
                    if ok != health.backend_ok() {
                        if ok {
                            info!("The {} backend answers again", backend.kind());
                        } else {
                            warn!(
                                "The {} backend is not ready: {}",
                                backend.kind(),
                                failed.join("; ")
                            );
                        }
                    }
                    health.set_backend_ok(ok);
                }
            })
            .map_err(|e| warn!("Cannot start the backend probe thread: {e}"));
        BackendProber {
            stop: Some(stop_tx),
        }
    }
}

impl Drop for BackendProber {
    fn drop(&mut self) {
        // The thread ends at its next wake-up; a probe in progress is bounded by the
        // backend's own timeouts, so the process does not wait for it.
        drop(self.stop.take());
    }
}

fn daemon(settings: &Settings) -> u8 {
    info!(
        "oz-agent-worker {VERSION} starting: worker id {:?}, backend {}",
        settings.worker_id,
        settings.backend_kind()
    );
    let signals = match signals::spawn() {
        Ok(s) => s,
        Err(e) => {
            error!("Cannot install signal handlers: {e}");
            return RUNTIME_ERROR;
        }
    };
    let observers = match Observers::start(settings) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Some(backend) = build_backend(settings) else {
        observers.stop();
        return RUNTIME_ERROR;
    };
    let Some(api_key) = settings.api_key.clone() else {
        // config::resolve requires a key in daemon mode; this is a bug if reached.
        error!("No API key configured");
        return USAGE_ERROR;
    };
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let link = match Link::spawn(
        LinkConfig {
            url: settings.web_socket_url.clone(),
            worker_id: settings.worker_id.clone(),
            api_key,
            ca_bundle: settings.ca_bundle.clone(),
            timing: settings.timing.clone(),
            version: VERSION.to_owned(),
        },
        events_tx,
    ) {
        Ok(l) => l,
        Err(e) => {
            error!("Cannot start the Oz link: {e}");
            observers.stop();
            return USAGE_ERROR;
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
    let outbox = |msg| link.send(msg);
    let exit = supervisor.run(&outbox, &events_rx, &signals);
    if exit == Exit::Aborted {
        return INTERRUPTED;
    }
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
    observers.stop();
    info!("Worker shutdown complete");
    match exit {
        Exit::LinkLost => RUNTIME_ERROR,
        _ => 0,
    }
}

fn local_run(settings: &Settings, source: &str) -> u8 {
    let assignment =
        match run_once::read_task(source).and_then(|t| run_once::parse_task(source, &t)) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("oz-agent-worker: {e}");
                return USAGE_ERROR;
            }
        };
    let signals = match signals::spawn() {
        Ok(s) => s,
        Err(e) => {
            error!("Cannot install signal handlers: {e}");
            return RUNTIME_ERROR;
        }
    };
    let Some(backend) = build_backend(settings) else {
        return RUNTIME_ERROR;
    };
    let status = run_once::run(
        assignment,
        supervisor_options(settings),
        Arc::clone(&backend),
        &signals,
        &mut std::io::stdout(),
    );
    backend.shutdown();
    info!("{}", run_once::summary(status));
    status
}
