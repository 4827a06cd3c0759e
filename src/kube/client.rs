//! The Kubernetes API client: JSON requests with a deadline each, retries for transient
//! failures, credential refresh on 401, `Status` bodies turned into readable errors, and watch
//! streams (newline-delimited JSON events over a chunked response).
//!
//! Statuses other than transient ones come back as data ([`ApiResponse`]); callers decide what
//! a 404 or a 409 means for them. No credential ever reaches an error or a log line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::auth::Credentials;
use super::error::KubeError;
use super::kubeconfig::{ClientCert, ClusterConfig};
use super::retry::{self, Retry};
use crate::http::proxy::ProxyEnv;
use crate::http::{
    self, Abort, Body, BodyReader, Endpoint, HttpError, Identity, JsonLines, Pem, Request,
    Response, Timeouts, TlsOptions, Trust,
};

/// Deadline of one ordinary request (connect included); watches and log follows have none
/// after their head.
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
    /// Container log follows open now.
    pub open_follows: AtomicU64,
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

/// What a request's body is: a whole document, or a stream read until the server ends it
/// (no idle deadline: a quiet watch or a quiet container is not a dead connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Document,
    /// A watch (counted as verb `watch`).
    Watch,
    /// A `pods/log?follow=true` stream (counted as verb `get`, as the API server does).
    Follow,
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

/// Builds the endpoint: TLS from the cluster's CA (or the system roots), client certificate
/// (from the kubeconfig or an exec plugin), `tls-server-name`, and the proxy (`proxy-url`, else
/// `HTTPS_PROXY`/`HTTP_PROXY` unless `NO_PROXY` matches).
fn endpoint(
    cfg: &ClusterConfig,
    exec_cert: Option<&ClientCert>,
    env: &ProxyEnv,
) -> Result<Endpoint, KubeError> {
    let server = &cfg.server;
    let mut ep = Endpoint::tcp(server.host.clone(), server.port);
    if server.https {
        let identity = exec_cert.or(cfg.client_cert.as_ref()).map(|c| Identity {
            cert: Pem::Memory(c.cert_pem.clone()),
            key: Pem::Memory(c.key_pem.clone()),
        });
        let trust = match &cfg.ca_pem {
            Some(pem) => Trust::Only(Pem::Memory(pem.clone())),
            None => Trust::System,
        };
        let tls = http::tls::client_config(&TlsOptions {
            trust,
            identity,
            insecure: cfg.insecure_skip_tls_verify,
        })
        .map_err(|e| KubeError::Config(format!("{}: TLS setup failed: {e}", cfg.source)))?;
        ep = ep.with_tls(tls);
        if let Some(name) = &cfg.tls_server_name {
            ep = ep.with_server_name(name.clone());
        }
    }
    let host = http::host::split_host_port(&server.authority())
        .map(|(h, _)| h)
        .map_err(|_| {
            KubeError::Config(format!(
                "{}: the server host {:?} is not valid",
                cfg.source, server.host
            ))
        })?;
    let proxy_env = match &cfg.proxy_url {
        // The cluster's own proxy-url wins over the environment, and NO_PROXY does not apply.
        Some(url) => ProxyEnv {
            http_proxy: Some(url.clone()),
            https_proxy: Some(url.clone()),
            no_proxy: None,
        },
        None => env.clone(),
    };
    let proxy = http::proxy::select(&proxy_env, server.https, &host, server.port)
        .map_err(|e| KubeError::Config(format!("{}: proxy: {e}", cfg.source)))?;
    Ok(ep.with_proxy(proxy))
}

struct EndpointState {
    endpoint: Endpoint,
    exec_cert: Option<ClientCert>,
}

pub struct Client {
    cfg: ClusterConfig,
    creds: Credentials,
    proxy_env: ProxyEnv,
    endpoint: Mutex<EndpointState>,
    pub stats: Arc<ApiStats>,
}

/// Why one attempt failed: an answer with a status, or none.
enum Attempt {
    Answer(Response),
    NoAnswer(HttpError),
}

impl Client {
    pub fn new(cfg: ClusterConfig) -> Result<Client, KubeError> {
        let proxy_env = ProxyEnv::from_env();
        let endpoint = endpoint(&cfg, None, &proxy_env)?;
        let creds = Credentials::new(cfg.auth.clone(), cfg.server.clone());
        Ok(Client {
            cfg,
            creds,
            proxy_env,
            endpoint: Mutex::new(EndpointState {
                endpoint,
                exec_cert: None,
            }),
            stats: Arc::new(ApiStats::default()),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The endpoint for this attempt, rebuilt when an exec plugin issued a new certificate.
    fn endpoint_for(&self, exec_cert: Option<&ClientCert>) -> Result<Endpoint, KubeError> {
        let mut g = self.endpoint.lock().unwrap_or_else(PoisonError::into_inner);
        if exec_cert.is_some() && g.exec_cert.as_ref() != exec_cert {
            g.endpoint = endpoint(&self.cfg, exec_cert, &self.proxy_env)?;
            g.exec_cert = exec_cert.cloned();
        }
        Ok(g.endpoint.clone())
    }

    /// One attempt: connect, send, read the head.
    fn attempt(
        &self,
        method: &'static str,
        target: &str,
        body: Option<&[u8]>,
        content_type: &'static str,
        abort: Option<&Abort>,
        shape: Shape,
    ) -> Result<Attempt, KubeError> {
        let presented = self.creds.present().map_err(KubeError::Auth)?;
        let endpoint = self.endpoint_for(presented.exec_client_cert.as_ref())?;
        let mut req = Request::new(method, format!("{}{target}", self.cfg.server.base))
            .header("Accept", "application/json")
            .timeouts(Timeouts {
                connect: CONNECT_TIMEOUT,
                send: REQUEST_TIMEOUT,
                head: REQUEST_TIMEOUT,
                body_idle: match shape {
                    Shape::Document => Some(REQUEST_TIMEOUT),
                    Shape::Watch | Shape::Follow => None,
                },
            });
        if let Some(a) = presented.authorization {
            req = req.header("Authorization", a);
        }
        for (k, v) in &self.cfg.impersonate {
            req = req.header(k.clone(), v.clone());
        }
        if let Some(b) = body {
            req = req.body(Body::Bytes {
                content_type,
                data: b.to_vec(),
            });
        }
        Ok(match http::send(&endpoint, abort, req) {
            Ok(r) => Attempt::Answer(r),
            Err(e) => Attempt::NoAnswer(e),
        })
    }

    /// Sends a request, retrying transient failures, refreshing credentials once on 401.
    fn exchange(
        &self,
        method: &'static str,
        target: &str,
        body: Option<&[u8]>,
        content_type: &'static str,
        abort: Option<&Abort>,
        shape: Shape,
    ) -> Result<Response, KubeError> {
        let verb = verb_index(method, shape == Shape::Watch, target);
        let idempotent = method != "POST";
        let mut retry = Retry::default();
        let mut refreshed = false;
        loop {
            let delay = match self.attempt(method, target, body, content_type, abort, shape)? {
                Attempt::Answer(resp) => {
                    let status = resp.status();
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
                Attempt::NoAnswer(e) => {
                    self.stats.record(verb, None);
                    if !retry::retryable_http(&e, idempotent) {
                        return Err(KubeError::Http(e));
                    }
                    match retry.next(None) {
                        Some(d) => {
                            log::debug!(request:% = describe(method, target); "kubernetes: {e}; retrying in {d:?}");
                            d
                        }
                        None => return Err(KubeError::Http(e)),
                    }
                }
            };
            if abort.is_some_and(Abort::is_aborted) {
                return Err(KubeError::Http(HttpError::Aborted {
                    request: describe(method, target),
                }));
            }
            std::thread::sleep(delay);
        }
    }

    /// A JSON request; any non-transient status comes back as data.
    pub fn request(
        &self,
        method: &'static str,
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
        method: &'static str,
        target: &str,
        body: Option<&Value>,
        content_type: &'static str,
    ) -> Result<ApiResponse, KubeError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let resp = self.exchange(
            method,
            target,
            bytes.as_deref(),
            content_type,
            None,
            Shape::Document,
        )?;
        let status = resp.status();
        let text = resp.bytes(64 << 20).map_err(KubeError::Http)?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&text).unwrap_or_else(|_| {
                // Not JSON (a proxy's HTML error page, pods/log text): keep it as a string.
                Value::String(
                    String::from_utf8_lossy(&text)
                        .chars()
                        .take(1 << 20)
                        .collect(),
                )
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

    /// Opens a watch (`target` already carries `watch=true` and its selectors). The returned
    /// stream has no idle deadline; [`WatchStream::abort_handle`] ends it from another thread.
    pub fn watch(&self, target: &str) -> Result<WatchStream, KubeError> {
        let abort = Abort::new();
        let resp = self.exchange(
            "GET",
            target,
            None,
            "application/json",
            Some(&abort),
            Shape::Watch,
        )?;
        let resp = self.stream_ok(target, resp)?;
        self.stats.watch_opens.fetch_add(1, Ordering::Relaxed);
        self.stats.open_watches.fetch_add(1, Ordering::Relaxed);
        Ok(WatchStream {
            lines: resp.json_lines(16 << 20),
            abort,
            stats: Arc::clone(&self.stats),
        })
    }
}

impl Client {
    /// Opens a container's log stream (`target` is a `pods/<pod>/log` path with
    /// `follow=true`): plain text read until the container ends, with no idle deadline.
    /// `abort` ends the connect, the wait for the head, or the stream, from another thread.
    pub fn follow_log(&self, target: &str, abort: &Abort) -> Result<LogStream, KubeError> {
        let resp = self.exchange(
            "GET",
            target,
            None,
            "application/json",
            Some(abort),
            Shape::Follow,
        )?;
        let resp = self.stream_ok(target, resp)?;
        self.stats.open_follows.fetch_add(1, Ordering::Relaxed);
        Ok(LogStream {
            body: resp.body,
            stats: Arc::clone(&self.stats),
        })
    }

    /// A stream's response, or the error its non-200 status means.
    fn stream_ok(&self, target: &str, resp: Response) -> Result<Response, KubeError> {
        if resp.status() == 200 {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.bytes(1 << 20).unwrap_or_default();
        let value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if status == 401 {
            return Err(KubeError::Unauthorized {
                request: describe("GET", target),
                message: status_message(&value, status),
                credential: self.creds.describe(),
            });
        }
        Err(KubeError::api(
            "GET",
            target,
            &ApiResponse {
                status,
                body: value,
            },
        ))
    }
}

/// An open `pods/log?follow=true` stream: the container's output bytes as they come.
pub struct LogStream {
    body: BodyReader,
    stats: Arc<ApiStats>,
}

impl LogStream {
    /// Reads output bytes; `Ok(0)` when the server ended the stream (the container ended).
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, HttpError> {
        self.body.read_body(out)
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        self.stats.open_follows.fetch_sub(1, Ordering::Relaxed);
    }
}

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
    lines: JsonLines<BodyReader>,
    abort: Abort,
    stats: Arc<ApiStats>,
}

impl WatchStream {
    /// A handle that ends this stream from another thread.
    pub fn abort_handle(&self) -> Abort {
        self.abort.clone()
    }

    /// The next event; `Ok(None)` when the server ended the stream.
    pub fn next_event(&mut self) -> Result<Option<WatchEvent>, HttpError> {
        let Some(v) = self.lines.next_json::<Value>()? else {
            return Ok(None);
        };
        let kind = v["type"].as_str().unwrap_or("").to_owned();
        let object = v.get("object").cloned().unwrap_or(Value::Null);
        Ok(Some(WatchEvent { kind, object }))
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.abort.abort();
        self.stats.open_watches.fetch_sub(1, Ordering::Relaxed);
    }
}
