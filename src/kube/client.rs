//! The Kubernetes API client: JSON requests with a deadline each, retries for transient
//! failures, credential refresh on 401, `Status` bodies turned into readable errors, and watch
//! streams (newline-delimited JSON events over a chunked response).
//!
//! Statuses other than transient ones come back as data ([`ApiResponse`]); callers decide what
//! a 404 or a 409 means for them. No credential ever reaches an error or a log line.

use std::io::{self, BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::ClientConfig;
use serde_json::Value;

use super::auth::Credentials;
use super::error::KubeError;
use super::kubeconfig::{ClientCert, ClusterConfig};
use super::retry::{self, Retry};
use super::transport::{self, Body, Closer, Limits, Transport};

/// Deadline of one ordinary request (connect included); watches have none after their head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response whose status is not transient: 2xx, or 4xx returned as data.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The `Status.message` (or reason) of an error body.
    pub fn message(&self) -> String {
        status_message(&self.body, self.status)
    }
}

pub fn status_message(body: &Value, status: u16) -> String {
    body["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .or_else(|| body["reason"].as_str().filter(|m| !m.is_empty()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"))
}

/// Requests by verb and status class, for metrics.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// [verb][class]: verbs get,list,watch,create,delete,patch,other; classes 2xx,3xx,4xx,5xx,error.
    counts: [[AtomicU64; 5]; 7],
    pub watch_opens: AtomicU64,
    pub open_watches: AtomicU64,
    /// The last request reached the API server (any HTTP answer counts).
    pub reachable: AtomicBool,
}

pub const VERBS: [&str; 7] = ["get", "list", "watch", "create", "delete", "patch", "other"];
pub const CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];

impl ApiStats {
    fn record(&self, verb: usize, status: Option<u16>) {
        let class = match status {
            Some(s) if (200..300).contains(&s) => 0,
            Some(s) if (300..400).contains(&s) => 1,
            Some(s) if (400..500).contains(&s) => 2,
            Some(_) => 3,
            None => 4,
        };
        self.counts[verb][class].fetch_add(1, Ordering::Relaxed);
        self.reachable.store(status.is_some(), Ordering::Relaxed);
    }

    /// `(verb, class, count)` for every non-zero cell.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (v, row) in self.counts.iter().enumerate() {
            for (c, n) in row.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((VERBS[v], CLASSES[c], n));
                }
            }
        }
        out
    }

    /// Total requests so far.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .flat_map(|r| r.iter())
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

fn verb_index(method: &str, watch: bool, target: &str) -> usize {
    let path = target.split('?').next().unwrap_or(target);
    let collection =
        path.ends_with("/jobs") || path.ends_with("/pods") || path.ends_with("/events");
    match (method, watch) {
        (_, true) => 2,
        ("GET", _) if collection => 1,
        ("GET", _) => 0,
        ("POST", _) => 3,
        ("DELETE", _) => 4,
        ("PATCH", _) => 5,
        _ => 6,
    }
}

struct TlsState {
    config: Arc<ClientConfig>,
    exec_cert: Option<ClientCert>,
}

pub struct Client {
    cfg: ClusterConfig,
    creds: Credentials,
    transport: Transport,
    tls: Mutex<Option<TlsState>>,
    pub stats: Arc<ApiStats>,
    user_agent: String,
}

impl Client {
    pub fn new(cfg: ClusterConfig) -> Result<Client, KubeError> {
        let transport = Transport::new(&cfg).map_err(KubeError::Config)?;
        let creds = Credentials::new(cfg.auth.clone(), cfg.server.clone());
        let tls = if cfg.server.https {
            Some(TlsState {
                config: transport::tls_config(&cfg, None).map_err(KubeError::Config)?,
                exec_cert: None,
            })
        } else {
            None
        };
        Ok(Client {
            cfg,
            creds,
            transport,
            tls: Mutex::new(tls),
            stats: Arc::new(ApiStats::default()),
            user_agent: format!("oz-agent-worker/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The TLS config for this attempt, rebuilt when an exec plugin issued a new certificate.
    fn tls_for(
        &self,
        exec_cert: Option<&ClientCert>,
    ) -> Result<Option<Arc<ClientConfig>>, KubeError> {
        let mut g = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = g.as_mut() else {
            return Ok(None);
        };
        if exec_cert.is_some() && state.exec_cert.as_ref() != exec_cert {
            state.config =
                transport::tls_config(&self.cfg, exec_cert).map_err(KubeError::Config)?;
            state.exec_cert = exec_cert.cloned();
        }
        Ok(Some(Arc::clone(&state.config)))
    }

    /// One attempt: connect, send, read the head.
    fn attempt(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
        content_type: &str,
        watch: bool,
    ) -> Result<transport::Response, KubeError> {
        let presented = self.creds.present().map_err(KubeError::Auth)?;
        let tls = self.tls_for(presented.exec_client_cert.as_ref())?;
        let mut headers: Vec<(&str, &str)> = vec![
            ("Accept", "application/json"),
            ("User-Agent", &self.user_agent),
        ];
        if body.is_some() {
            headers.push(("Content-Type", content_type));
        }
        if let Some(a) = &presented.authorization {
            headers.push(("Authorization", a));
        }
        for (k, v) in &self.cfg.impersonate {
            headers.push((k, v));
        }
        if !watch {
            headers.push(("Connection", "close"));
        }
        let limits = Limits {
            connect: CONNECT_TIMEOUT,
            response: REQUEST_TIMEOUT,
        };
        self.transport
            .send(tls.as_ref(), method, target, &headers, body, limits)
            .map_err(|e| KubeError::transport(method, target, &self.cfg.server.to_string(), e))
    }

    /// Sends a request, retrying transient failures, refreshing credentials once on 401.
    fn exchange(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
        content_type: &str,
        watch: bool,
    ) -> Result<transport::Response, KubeError> {
        let verb = verb_index(method, watch, target);
        let idempotent = method != "POST";
        let mut retry = Retry::default();
        let mut refreshed = false;
        loop {
            let result = self.attempt(method, target, body, content_type, watch);
            let delay = match result {
                Ok(resp) => {
                    let status = resp.head.status;
                    self.stats.record(verb, Some(status));
                    if status == 401 && self.creds.refreshable() && !refreshed {
                        refreshed = true;
                        self.creds.invalidate();
                        log::info!(request:% = describe(method, target); "kubernetes: 401 Unauthorized; fetching the credential again");
                        continue;
                    }
                    if !retry::retryable_status(status) {
                        return Ok(resp);
                    }
                    let ra = resp
                        .head
                        .header("retry-after")
                        .and_then(retry::parse_retry_after);
                    match retry.next(ra) {
                        Some(d) => {
                            log::debug!(request:% = describe(method, target), status = status; "kubernetes: transient status; retrying in {d:?}");
                            d
                        }
                        None => return Ok(resp),
                    }
                }
                Err(KubeError::Transport { ref source, .. })
                    if retry::retryable_io(source, idempotent) =>
                {
                    self.stats.record(verb, None);
                    match retry.next(None) {
                        Some(d) => {
                            log::debug!(request:% = describe(method, target); "kubernetes: {}; retrying in {d:?}", source);
                            d
                        }
                        None => return result,
                    }
                }
                Err(e) => {
                    if matches!(e, KubeError::Transport { .. }) {
                        self.stats.record(verb, None);
                    }
                    return Err(e);
                }
            };
            std::thread::sleep(delay);
        }
    }

    /// A JSON request; any non-transient status comes back as data.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, KubeError> {
        self.request_typed(method, target, body, "application/json")
    }

    /// A merge patch (`application/merge-patch+json`).
    pub fn merge_patch(&self, target: &str, patch: &Value) -> Result<ApiResponse, KubeError> {
        self.request_typed("PATCH", target, Some(patch), "application/merge-patch+json")
    }

    fn request_typed(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<ApiResponse, KubeError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let resp = self.exchange(method, target, bytes.as_deref(), content_type, false)?;
        let status = resp.head.status;
        let mut text = Vec::new();
        let mut body = resp.body;
        io::Read::read_to_end(&mut (&mut body).take_limit(64 << 20), &mut text)
            .map_err(|e| KubeError::transport(method, target, &self.cfg.server.to_string(), e))?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&text).unwrap_or_else(|_| {
                // Not JSON (a proxy's HTML error page, pods/log text): keep it as a string.
                Value::String(String::from_utf8_lossy(&text).chars().take(4096).collect())
            })
        };
        if status == 401 {
            return Err(KubeError::Unauthorized {
                request: describe(method, target),
                message: status_message(&value, status),
                credential: self.creds.describe(),
            });
        }
        Ok(ApiResponse {
            status,
            body: value,
        })
    }

    /// GET that must succeed: a non-2xx status becomes an error quoting the Status message.
    pub fn get_ok(&self, target: &str) -> Result<Value, KubeError> {
        let r = self.request("GET", target, None)?;
        if r.is_success() {
            Ok(r.body)
        } else {
            Err(KubeError::api("GET", target, &r))
        }
    }

    /// Opens a watch (`target` already carries `watch=true` and its selectors).
    pub fn watch(&self, target: &str) -> Result<WatchStream, KubeError> {
        let resp = self.exchange("GET", target, None, "application/json", true)?;
        if resp.head.status != 200 {
            let status = resp.head.status;
            let mut text = Vec::new();
            let mut body = resp.body;
            let _ = io::Read::read_to_end(&mut (&mut body).take_limit(1 << 20), &mut text);
            let value = serde_json::from_slice(&text).unwrap_or(Value::Null);
            return Err(KubeError::api(
                "GET",
                target,
                &ApiResponse {
                    status,
                    body: value,
                },
            ));
        }
        // Established: from here the stream has no deadline; it ends when the server closes
        // it, or when someone calls the closer.
        let _ = resp.body.set_idle_timeout(None);
        self.stats.watch_opens.fetch_add(1, Ordering::Relaxed);
        self.stats.open_watches.fetch_add(1, Ordering::Relaxed);
        Ok(WatchStream {
            reader: BufReader::new(resp.body),
            closer: resp.closer,
            stats: Arc::clone(&self.stats),
        })
    }
}

trait TakeLimit: io::Read + Sized {
    fn take_limit(self, n: u64) -> io::Take<Self> {
        io::Read::take(self, n)
    }
}
impl<R: io::Read> TakeLimit for R {}

pub fn describe(method: &str, target: &str) -> String {
    format!("{method} {}", target.split('?').next().unwrap_or(target))
}

/// One watch event.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: String,
    pub object: Value,
}

/// An open watch. Dropping it closes the connection.
pub struct WatchStream {
    reader: BufReader<Body>,
    closer: Closer,
    stats: Arc<ApiStats>,
}

impl WatchStream {
    /// A handle to end this stream from another thread.
    pub fn closer(&self) -> Closer {
        self.closer.clone()
    }

    /// The next event; `Ok(None)` when the server ended the stream.
    pub fn next_event(&mut self) -> io::Result<Option<WatchEvent>> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line.trim()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("watch event is not JSON: {e}"),
                )
            })?;
            let kind = v["type"].as_str().unwrap_or("").to_owned();
            let object = v.get("object").cloned().unwrap_or(Value::Null);
            return Ok(Some(WatchEvent { kind, object }));
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.closer.close();
        self.stats.open_watches.fetch_sub(1, Ordering::Relaxed);
    }
}
