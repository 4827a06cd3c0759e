//! OTLP/HTTP push of the worker's metrics (JSON encoding), on its own thread.
//!
//! Enabled by `OTEL_METRICS_EXPORTER=otlp` (see `daemon::exporters`); configured by the
//! standard OpenTelemetry variables (see [`config_from_env`]). Every `interval` the thread
//! POSTs a cumulative snapshot to the endpoint; [`OtlpHandle::shutdown`] pushes one last time,
//! bounded by [`FLUSH_BUDGET`]. A failing collector never affects the worker: the first
//! failure is logged at WARN, repeats at DEBUG, the recovery at INFO; the collector's response
//! body is never logged.

mod encode;
mod env;
mod post;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use log::{debug, info, warn};

use crate::metrics::Metrics;
use crate::settings::Secret;

pub use encode::encode;
pub use env::{config_from_env, resource};

/// How long [`OtlpHandle::shutdown`] waits for the final push.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(5);
/// Where and how to push.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The full URL of the metrics endpoint (`.../v1/metrics`).
    pub endpoint: String,
    pub interval: Duration,
    /// Per-push deadline (connect to last byte).
    pub timeout: Duration,
    /// Extra request headers; values are treated as secrets.
    pub headers: Vec<(String, Secret)>,
    /// Extra PEM CA certificates trusted for an `https` endpoint.
    pub ca_file: Option<PathBuf>,
    /// Resource attributes from `OTEL_RESOURCE_ATTRIBUTES`/`OTEL_SERVICE_NAME`; the worker's
    /// own (`service.name`, `worker.id`, ...) override them.
    pub resource_env: Vec<(String, String)>,
}

/// Stops the push thread; see [`OtlpHandle::shutdown`].
#[derive(Debug)]
pub struct OtlpHandle {
    stop: Option<Sender<()>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpHandle {
    /// Pushes one final snapshot and stops the thread, waiting at most [`FLUSH_BUDGET`].
    /// Returns false when the final push did not finish in time (the thread is left to end
    /// on its own request timeout).
    pub fn shutdown(mut self) -> bool {
        drop(self.stop.take());
        let finished = !matches!(
            self.done.recv_timeout(FLUSH_BUDGET),
            Err(RecvTimeoutError::Timeout)
        );
        if finished {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        } else {
            warn!("The final OTLP metrics push did not finish within {FLUSH_BUDGET:?}");
        }
        finished
    }
}

impl Drop for OtlpHandle {
    fn drop(&mut self) {
        // Without `shutdown`: stop the thread without waiting for it.
        drop(self.stop.take());
    }
}

/// Starts the push thread (`otlp`). Header values are registered with the redactor for the
/// life of the process.
pub fn spawn(config: OtlpConfig, metrics: Arc<Metrics>) -> io::Result<OtlpHandle> {
    crate::redact::register(config.headers.iter().map(|(_, v)| v.expose())).keep();
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (done_tx, done_rx) = bounded::<()>(1);
    info!(
        "Pushing metrics over OTLP/HTTP to {} every {:?}",
        config.endpoint, config.interval
    );
    let thread = thread::Builder::new().name("otlp".into()).spawn(move || {
        let mut pusher = Pusher::new(config, metrics);
        // A message or a closed channel both mean stop; only the timeout means "push now".
        while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(pusher.config.interval) {
            pusher.push_and_log();
        }
        pusher.push_and_log();
        let _ = done_tx.send(());
    })?;
    Ok(OtlpHandle {
        stop: Some(stop_tx),
        done: done_rx,
        thread: Some(thread),
    })
}

/// Why one push failed. Never carries the response body or a header value.
#[derive(Debug)]
pub enum PushError {
    Transport(String),
    Status(u16),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Transport(e) => f.write_str(e),
            PushError::Status(code) => write!(f, "the collector answered HTTP {code}"),
        }
    }
}

impl std::error::Error for PushError {}

/// The system roots plus the optional `ca_file`, as for the link.
fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, crate::http::tls::TlsError> {
    use crate::http::tls::{Pem, TlsOptions, Trust};
    let trust = match ca_file {
        Some(path) => Trust::SystemAnd(Pem::File(path.to_owned())),
        None => Trust::System,
    };
    crate::http::tls::client_config(&TlsOptions {
        trust,
        ..TlsOptions::default()
    })
}

struct Pusher {
    config: OtlpConfig,
    metrics: Arc<Metrics>,
    resource: Vec<(String, String)>,
    target: Result<post::Target, String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    failing: bool,
}

impl Pusher {
    fn new(config: OtlpConfig, metrics: Arc<Metrics>) -> Pusher {
        let resource = resource(metrics.info(), &config.resource_env);
        let target = post::Target::parse(&config.endpoint);
        let tls = match &target {
            Ok(t) if t.tls => match tls_config(config.ca_file.as_deref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(
                        "TLS setup for {} failed: {e}; pushes will fail",
                        config.endpoint
                    );
                    None
                }
            },
            _ => None,
        };
        Pusher {
            config,
            metrics,
            resource,
            target,
            tls,
            failing: false,
        }
    }

    fn push_and_log(&mut self) {
        match self.push() {
            Ok(()) if self.failing => {
                self.failing = false;
                info!("OTLP metrics push to {} recovered", self.config.endpoint);
            }
            Ok(()) => debug!("Pushed metrics to {}", self.config.endpoint),
            Err(e) if self.failing => {
                debug!("OTLP metrics push to {} failed: {e}", self.config.endpoint)
            }
            Err(e) => {
                self.failing = true;
                warn!(
                    "OTLP metrics push to {} failed: {e}; retrying every {:?} (repeats are \
                     logged at debug level)",
                    self.config.endpoint, self.config.interval
                );
            }
        }
    }

    fn push(&self) -> Result<(), PushError> {
        let target = self
            .target
            .as_ref()
            .map_err(|e| PushError::Transport(e.clone()))?;
        if target.tls && self.tls.is_none() {
            return Err(PushError::Transport("no TLS configuration".into()));
        }
        let body = encode(&self.metrics.snapshot(), &self.resource);
        let request = post::request(target, &self.config.headers, &body, self.config.timeout);
        let status = post::send(&post::endpoint(target, self.tls.as_ref()), request)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(PushError::Status(status))
        }
    }
}
