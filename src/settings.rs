//! The worker's effective settings: flags, environment and config file merged and validated.
//!
//! `config.rs` builds a [`Settings`] (precedence flag > env > file > default); everything after
//! startup reads only this. Nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default Oz WebSocket endpoint.
pub const DEFAULT_WEB_SOCKET_URL: &str = "wss://oz.warp.dev/api/v1/selfhosted/worker/ws";
/// Default Warp server root URL.
pub const DEFAULT_SERVER_ROOT_URL: &str = "https://app.warp.dev";
/// Default image when neither the server nor the config names one.
pub const DEFAULT_TASK_IMAGE: &str = "ubuntu:22.04";
/// Default per-task workspace root of the direct backend.
pub const DEFAULT_WORKSPACE_ROOT: &str = "/var/lib/oz/workspaces";

/// A secret string. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value. Call sites are few and grep-able on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An ordered list of `KEY=VALUE` pairs; later entries win on a repeated key.
pub type EnvList = Vec<(String, String)>;

/// Everything the worker needs after startup.
#[derive(Debug, Clone)]
pub struct Settings {
    pub worker_id: String,
    /// `None` only for commands that never dial Oz (`run-once`, `check`).
    pub api_key: Option<Secret>,
    pub backend: BackendSettings,
    /// Remove containers and workspaces after each task (default true; `--no-cleanup` or
    /// `cleanup: false` turns it off).
    pub cleanup: bool,
    /// 0 means unbounded.
    pub max_concurrent_tasks: usize,
    /// Exit after the first accepted task reaches a terminal outcome (direct backend only).
    pub one_shot: bool,
    /// Passed verbatim to the oz CLI's `--idle-on-complete`.
    pub idle_on_complete: Option<String>,
    pub web_socket_url: String,
    pub server_root_url: String,
    pub session_sharing_server_url: Option<String>,
    pub log_level: log::LevelFilter,
    /// Text (default) or JSON lines (`--log-format`, `log_format`).
    pub log_format: LogFormat,
    /// `HOST:PORT` of the ops listener: `/metrics`, `/healthz`, `/readyz` (`--metrics-addr`,
    /// `metrics_addr`). The OpenTelemetry environment can enable it too (see
    /// `daemon::exporters`).
    pub metrics_addr: Option<String>,
    /// On SIGTERM/SIGINT, how long running tasks may finish before they are cancelled
    /// (`--drain-timeout`, `drain_timeout`; zero cancels at once, as the Go worker does).
    pub drain_timeout: Duration,
    /// Extra PEM CA bundle trusted for `wss://` besides the system roots.
    pub ca_bundle: Option<PathBuf>,
    pub timing: Timing,
}

impl Settings {
    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind()
    }
}

/// Per-backend settings; exactly one backend is active.
#[derive(Debug, Clone)]
pub enum BackendSettings {
    Docker(DockerSettings),
    Direct(DirectSettings),
    Command(CommandSettings),
    Kubernetes(Box<KubernetesSettings>),
}

impl BackendSettings {
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendSettings::Docker(_) => BackendKind::Docker,
            BackendSettings::Direct(_) => BackendKind::Direct,
            BackendSettings::Command(_) => BackendKind::Command,
            BackendSettings::Kubernetes(_) => BackendKind::Kubernetes,
        }
    }
}

/// `Always` (default for Docker), `IfNotPresent` (default for Kubernetes) or `Never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
    pub fn parse(s: &str) -> Option<PullPolicy> {
        [
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// Bind specs (`SRC:DST[:OPTS]`): file list, then `-v` flags.
    pub volumes: Vec<String>,
    /// Operator env: file `environment`, then `-e` flags (later wins).
    pub env: EnvList,
    pub image_pull_policy: PullPolicy,
    /// Replaces the server's `/agent` sidecar image when the server sends one.
    pub sidecar_image: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DirectSettings {
    /// Per-task workspaces live under this directory (default [`DEFAULT_WORKSPACE_ROOT`];
    /// `None` in target-dir mode unless configured explicitly).
    pub workspace_root: Option<PathBuf>,
    /// Run every task in this existing directory instead of a per-task workspace.
    pub target_dir: Option<PathBuf>,
    /// The oz CLI; `None` means look `oz` up on `PATH`.
    pub oz_path: Option<PathBuf>,
    pub setup_command: Option<String>,
    pub teardown_command: Option<String>,
    pub env: EnvList,
}

#[derive(Debug, Clone)]
pub struct CommandSettings {
    pub dispatch_command: String,
    pub cancel_command: Option<String>,
    pub dispatch_timeout: Duration,
    /// Env of the dispatch and cancel subprocesses only (never the task payload).
    pub env: EnvList,
}

#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    pub namespace: String,
    pub kubeconfig: Option<PathBuf>,
    pub default_image: Option<String>,
    pub image_pull_policy: PullPolicy,
    pub use_image_volumes: bool,
    pub sidecar_copy_readiness: bool,
    pub preflight_image: String,
    pub sidecar_image: Option<String>,
    /// Harness type -> CLI sidecar image.
    pub coding_cli_sidecars: BTreeMap<String, String>,
    pub setup_command: Option<String>,
    pub teardown_command: Option<String>,
    pub extra_labels: BTreeMap<String, String>,
    pub extra_annotations: BTreeMap<String, String>,
    pub active_deadline_seconds: Option<i64>,
    pub ttl_seconds_after_finished: Option<i32>,
    /// A validated Kubernetes quantity, e.g. `8Gi`.
    pub workspace_size_limit: Option<String>,
    /// `None` disables the unschedulable fail-fast (`0s` or negative).
    pub unschedulable_timeout: Option<Duration>,
    /// `None` disables failing on FailedMount events.
    pub volume_mount_timeout: Option<Duration>,
    /// Raw PodSpec (JSON form of the YAML), merged by key into generated pods.
    pub pod_template: Option<serde_json::Value>,
    /// Raw ResourceRequirements for the preflight Job.
    pub preflight_resources: Option<serde_json::Value>,
    /// `-e` flags only (file env for Kubernetes belongs in `pod_template`).
    pub task_env: EnvList,
}

/// Timing knobs. Defaults match the Go worker; the `OZ_WORKER_*` environment variables listed in
/// the README shorten them (mainly for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// WebSocket ping interval (`OZ_WORKER_PING_INTERVAL`, 30s).
    pub ping_interval: Duration,
    /// A connection with nothing read for this long is dead (`OZ_WORKER_PONG_TIMEOUT`, 60s).
    pub pong_timeout: Duration,
    /// First reconnect delay ceiling (`OZ_WORKER_BACKOFF_INITIAL`, 1s).
    pub backoff_initial: Duration,
    /// Reconnect delay cap (`OZ_WORKER_BACKOFF_MAX`, 60s).
    pub backoff_max: Duration,
    /// Handshake and per-write deadline (`OZ_WORKER_WRITE_TIMEOUT`, 10s).
    pub write_timeout: Duration,
    /// How long shutdown waits for cancelled tasks to report (`OZ_WORKER_SHUTDOWN_TIMEOUT`, 10s).
    pub shutdown_timeout: Duration,
    /// SIGTERM-to-SIGKILL grace when stopping a task's processes (`OZ_WORKER_KILL_GRACE`, 10s).
    pub kill_grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            kill_grace: Duration::from_secs(10),
        }
    }
}

/// Which backend runs tasks (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Docker,
    Direct,
    Kubernetes,
    Command,
}

impl BackendKind {
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Docker,
        BackendKind::Direct,
        BackendKind::Kubernetes,
        BackendKind::Command,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Direct => "direct",
            BackendKind::Kubernetes => "kubernetes",
            BackendKind::Command => "command",
        }
    }

    pub fn parse(s: &str) -> Option<BackendKind> {
        BackendKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<LogFormat> {
        LogFormat::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// Validates a `HOST:PORT` listen address and returns what to bind. An empty host (`:9464`)
/// means every IPv4 interface, as in Go; IPv6 literals need brackets (`[::1]:9464`);
/// `localhost` means `127.0.0.1`, as Go resolves it, so a scrape of `127.0.0.1` finds the
/// listener whatever order the resolver returns `::1` and `127.0.0.1` in.
pub fn bind_address(addr: &str) -> Result<String, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not HOST:PORT"))?;
    port.parse::<u16>()
        .map_err(|_| format!("{addr:?} has an invalid port {port:?}"))?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "{addr:?}: an IPv6 address must be in brackets, e.g. [::1]:{port}"
        ));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(format!("{addr:?} has an invalid host"));
    }
    Ok(if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else if host.eq_ignore_ascii_case("localhost") {
        format!("127.0.0.1:{port}")
    } else {
        addr.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn pull_policy_round_trips() {
        for p in [
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ] {
            assert_eq!(PullPolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(PullPolicy::parse("Sometimes"), None);
        assert_eq!(PullPolicy::parse("always"), None);
    }
}
