//! The observability threads of a daemon run: the ops listener (`/metrics`, `/healthz`,
//! `/readyz`), the OTLP push and the systemd notifier, started together and stopped in reverse.

use std::sync::Arc;

use log::{error, info, warn};

use super::Outcome;
use super::exporters;
use crate::metrics::{Health, Metrics, WorkerInfo};
use crate::sd_notify::{Keeper, Notifier};
use crate::settings::Settings;
use crate::supervisor::Telemetry;
use crate::{VERSION, ops, otlp};

/// The observability threads of a daemon run; stopped in reverse order at exit.
pub(crate) struct Observers {
    pub(crate) telemetry: Telemetry,
    ops: Option<ops::OpsHandle>,
    otlp: Option<otlp::OtlpHandle>,
    keeper: Option<Keeper>,
}

impl Observers {
    /// Starts `/metrics` (`--metrics-addr` or the Go worker's OTEL_* variables), OTLP push and
    /// the systemd notifier. A listener the operator asked for by flag must come up; one the
    /// OTEL variables asked for is best effort, as in the Go worker.
    pub(crate) fn start(settings: &Settings) -> Result<Observers, Outcome> {
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
                    return Err(Outcome::RuntimeFailure);
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

    pub(crate) fn stop(self) {
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
