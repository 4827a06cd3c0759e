//! OTLP/HTTP push of the worker's metrics (JSON encoding), on its own thread.
//!
//! Enabled by `OTEL_METRICS_EXPORTER=otlp` (see `metrics::exporters`); configured by the
//! standard OpenTelemetry variables (see [`config_from_env`]). Every `interval` the thread
//! POSTs a cumulative snapshot to the endpoint; [`OtlpHandle::shutdown`] pushes one last time,
//! bounded by [`FLUSH_BUDGET`]. A failing collector never affects the worker: the first
//! failure is logged at WARN, repeats at DEBUG, the recovery at INFO; the collector's response
//! body is never logged.

mod encode;
mod env;

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
/// Responses are read (so the connection can be reused) up to this size, then dropped.
const MAX_RESPONSE_BYTES: u64 = 64 << 10;

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

struct Pusher {
    config: OtlpConfig,
    metrics: Arc<Metrics>,
    resource: Vec<(String, String)>,
    agent: ureq::Agent,
    failing: bool,
}

impl Pusher {
    fn new(config: OtlpConfig, metrics: Arc<Metrics>) -> Pusher {
        let resource = resource(metrics.info(), &config.resource_env);
        let agent = agent(&config);
        Pusher {
            config,
            metrics,
            resource,
            agent,
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
        let body = encode(&self.metrics.snapshot(), &self.resource);
        let mut request = self
            .agent
            .post(&self.config.endpoint)
            .header("Content-Type", "application/json");
        for (name, value) in &self.config.headers {
            request = request.header(name.as_str(), value.expose());
        }
        let mut response = request
            .send(body.as_str())
            .map_err(|e| PushError::Transport(e.to_string()))?;
        // Drain (bounded) so the connection can be reused; the content is not logged.
        let _ = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec();
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(PushError::Status(status))
        }
    }
}

/// A ureq agent: status codes as data, no redirects, one deadline per push, rustls with ring
/// and the system roots (plus `ca_file`) for `https` endpoints.
fn agent(config: &OtlpConfig) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    // ureq builds rustls configs from the process-default provider; ring is the only one
    // compiled in. Err means a default is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    if config.endpoint.to_ascii_lowercase().starts_with("https:") {
        let native = rustls_native_certs::load_native_certs();
        roots.extend(
            native
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
        );
        if let Some(path) = &config.ca_file {
            match std::fs::read(path) {
                Ok(pem) => roots.extend(ureq::tls::parse_pem(&pem).filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })),
                Err(e) => warn!("Cannot read OTLP CA certificates {}: {e}", path.display()),
            }
        }
        if roots.is_empty() {
            warn!(
                "No trusted CA certificates found for {}; pushes will fail",
                config.endpoint
            );
        }
    }
    // Always explicit roots: ureq's default root store is not compiled in.
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(config.timeout))
        .user_agent(format!("oz-agent-worker/{}", crate::VERSION))
        .tls_config(tls)
        .build()
        .new_agent()
}
