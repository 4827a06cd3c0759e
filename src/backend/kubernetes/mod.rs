//! The Kubernetes backend: one Job per task (reference `kubernetes-backend.md`).
//!
//! Pure parts (no I/O, each module names the reference section it implements):
//! - [`names`]: Job names, labels, hash labels, the reported annotation (§3.2);
//! - [`job`]: the task Job manifest (§3.1–§3.7), from [`env`](mod@env) (§3.3), [`sidecars`] (§3.1,
//!   §3.4) and the `pod_template` merge in [`template`] (§3.5, §3.6);
//! - [`preflight`]: the startup preflight Job and its verdict (§4);
//! - [`outcome`]: Job, pods and events to a task outcome (§5.3, §5.4, §6), with [`message`]
//!   (§6.1, §6.2) and [`details`] (`failure_details.kubernetes`, schema 1);
//! - [`cleanup`]: delete, expire or keep a Job (§7); [`rbac`]: the Role rules it needs (§9);
//! - [`setup_phases`]: setup-phase spans from pod status (`upstream-newer.md` §5.1);
//! - [`pace`]: when a task's runner looks again (notification, 30 s poll, a lost Job, timed
//!   conditions) and when it lists events.
//!
//! I/O parts (on the `kube` client):
//! - [`startup`]: `GET /version`, the preflight Job (always deleted), `check` probes;
//! - [`watch`]: one shared Job watch and one Pod watch for the whole worker, and their cache;
//! - [`runner`]: per task: create the Job, follow it, classify, clean up; cancel by delete;
//! - [`reattach`]: at startup, follow this worker's unreported Jobs again and report them once;
//! - [`reporter`]: a task's setup events and its containers' output, through
//!   `crate::reporting`; [`pod_logs`] follows each started container's log live.

pub mod cleanup;
pub mod details;
pub mod env;
pub mod job;
pub mod message;
pub mod names;
pub mod outcome;
pub mod pace;
pub mod pod_logs;
pub mod preflight;
pub mod rbac;
pub mod reattach;
pub mod reporter;
pub mod runner;
pub mod setup_phases;
pub mod sidecars;
pub mod startup;
pub mod template;
pub mod time;
pub mod watch;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod matrix;

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{
    Backend, BackendContext, BackendKind, Completion, Failure, ProbeLine, Purpose, TaskRef,
};
use crate::cancel::CancelToken;
use crate::kube::{Client, Inputs, SERVICE_ACCOUNT_DIR, kubeconfig};
use crate::settings::KubernetesSettings;
use crate::task::TaskSpec;

/// Test hook: where the in-cluster service-account files are (default [`SERVICE_ACCOUNT_DIR`]).
pub const SERVICE_ACCOUNT_DIR_ENV: &str = "OZ_WORKER_KUBERNETES_SERVICEACCOUNT_DIR";

/// The Kubernetes backend: one Job per task.
pub struct KubernetesBackend {
    settings: KubernetesSettings,
    ctx: BackendContext,
    client: Arc<Client>,
    hub: Arc<watch::Hub>,
    purpose: Purpose,
    /// Executions found at startup to follow again (taken once by the supervisor).
    reattach: std::sync::Mutex<Vec<TaskRef>>,
}

/// Resolves the cluster connection from the config and the process environment.
pub fn connect(settings: &KubernetesSettings) -> Result<Client, String> {
    let env = |k: &str| std::env::var(k).ok();
    let sa = std::env::var(SERVICE_ACCOUNT_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(SERVICE_ACCOUNT_DIR));
    let cfg = kubeconfig::resolve(
        settings.kubeconfig.as_deref(),
        &Inputs {
            env: &env,
            service_account_dir: sa,
        },
    )
    .map_err(|e| format!("failed to build Kubernetes client config: {e}"))?;
    Client::new(cfg).map_err(|e| format!("failed to create Kubernetes client: {e}"))
}

impl KubernetesBackend {
    /// Connects, checks the API server, runs the preflight (when running tasks) and starts the
    /// shared watches.
    pub fn new(
        settings: KubernetesSettings,
        ctx: BackendContext,
        purpose: Purpose,
    ) -> Result<KubernetesBackend, String> {
        let client = Arc::new(connect(&settings)?);
        log::info!(
            "Kubernetes: {} (server {}, namespace {:?})",
            client.config().source,
            client.config().server,
            settings.namespace
        );
        if purpose == Purpose::Run {
            let v = startup::version(&client)?;
            log::info!("Kubernetes API server version {v}");
            startup::run_preflight(&client, &ctx.worker_id, &settings)?;
        }
        let reattach = if purpose == Purpose::Run {
            let found = reattach::find(&client, &settings.namespace, &ctx.worker_id)
                .map_err(|e| format!("failed to list this worker's Kubernetes Jobs: {e}"))?;
            if !found.is_empty() {
                log::info!(
                    "Found {} unreported Kubernetes Job(s) of this worker; following them again",
                    found.len()
                );
            }
            found
        } else {
            Vec::new()
        };
        let hub = if purpose == Purpose::Run {
            watch::Hub::start(
                Arc::clone(&client),
                &settings.namespace,
                &names::worker_selector(&ctx.worker_id),
            )
        } else {
            watch::Hub::idle(Arc::clone(&client), &settings.namespace)
        };
        Ok(KubernetesBackend {
            settings,
            ctx,
            client,
            hub,
            purpose,
            reattach: std::sync::Mutex::new(reattach),
        })
    }

    /// API request counters (for metrics and benchmarks).
    pub fn stats(&self) -> Arc<crate::kube::ApiStats> {
        Arc::clone(&self.client.stats)
    }
}

impl Backend for KubernetesBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kubernetes
    }

    fn execute(&self, spec: &TaskSpec, cancel: &CancelToken) -> Result<Completion, Failure> {
        self.run_task(spec, cancel)
    }

    fn cancel(&self, task: &TaskRef) -> Result<(), String> {
        self.cancel_task(task)
    }

    fn preserves_tasks_on_shutdown(&self) -> bool {
        true
    }

    fn probe(&self) -> Vec<ProbeLine> {
        match self.purpose {
            Purpose::Check => startup::check_lines(&self.client, &self.settings),
            // Readiness: is the API server answering?
            Purpose::Run => vec![match startup::version(&self.client) {
                Ok(v) => ProbeLine::ok(format!("Kubernetes API server reachable (version {v})")),
                Err(e) => ProbeLine::failed(e),
            }],
        }
    }

    fn preflight(&self) -> Option<ProbeLine> {
        Some(
            match startup::run_preflight(&self.client, &self.ctx.worker_id, &self.settings) {
                Ok(name) => ProbeLine::ok(format!(
                    "startup preflight Job {name} passed (created and deleted in namespace {:?})",
                    self.settings.namespace
                )),
                Err(e) => ProbeLine::failed(e),
            },
        )
    }

    fn series(&self) -> Vec<crate::backend::Series> {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.client.stats;
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        vec![
            crate::backend::Series {
                name: "oz_worker_kubernetes_api_requests_total",
                help: "Kubernetes API requests by verb and status class (error: no answer).",
                counter: true,
                points: stats
                    .snapshot()
                    .into_iter()
                    .map(|(verb, class, n)| {
                        (
                            vec![("verb", verb.to_owned()), ("code", class.to_owned())],
                            int(n),
                        )
                    })
                    .collect(),
            },
            crate::backend::Series {
                name: "oz_worker_kubernetes_watch_reconnects_total",
                help: "Kubernetes watch streams reopened after the first (both watches).",
                counter: true,
                points: vec![(vec![], int(self.hub.reconnects.load(Relaxed)))],
            },
            crate::backend::Series {
                name: "oz_worker_kubernetes_watches_open",
                help: "Kubernetes watch streams open now (at most one Job and one Pod watch).",
                counter: false,
                points: vec![(vec![], int(stats.open_watches.load(Relaxed)))],
            },
        ]
    }

    fn reattach(&self) -> Vec<TaskRef> {
        std::mem::take(
            &mut *self
                .reattach
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn resume(&self, task: &TaskRef, cancel: &CancelToken) -> Result<Completion, Failure> {
        self.resume_task(task, cancel)
    }

    /// A task the outcome journal says a crashed worker claimed and never reported: its Job
    /// may still run, so it is followed like a re-attached one (and [`Backend::reattach`]
    /// skips it, the supervisor already tracking it), never reported blind.
    fn recover(
        &self,
        orphan: &crate::backend::Orphan,
        cancel: &CancelToken,
    ) -> Result<Completion, Failure> {
        self.resume_task(&orphan.task, cancel)
    }

    fn shutdown(&self) {
        log::info!("Preserving Kubernetes task Jobs during worker shutdown");
        self.hub.stop();
    }
}
