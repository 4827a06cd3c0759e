//! The YAML config file: schema, strict decoding and validation.
//!
//! Decoding is strict (unknown keys are errors naming the key and its line) except inside the
//! opaque `pod_template` and `preflight_resources` subtrees. Validation then collects every
//! problem, each naming its YAML path, as the Go worker's validator does.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::quantity;
use super::yaml_json::kind_of;
use crate::duration::{self, DurationError};
use crate::settings::PullPolicy;

/// Top-level keys, in schema order (kept in sync with [`FileConfig`] by a test).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "worker_id",
    "cleanup",
    "max_concurrent_tasks",
    "idle_on_complete",
    "one_shot",
    "collect_task_logs",
    "ca_bundle",
    "log_format",
    "metrics_addr",
    "drain_timeout",
    "backend",
];

/// Kubernetes keys the Go worker removed; they must fail loudly, not be ignored.
pub const LEGACY_KUBERNETES_KEYS: &[(&str, &str)] = &[
    ("image_pull_secret", "pod_template.imagePullSecrets"),
    ("service_account", "pod_template.serviceAccountName"),
    ("node_selector", "pod_template.nodeSelector"),
    ("tolerations", "pod_template.tolerations"),
    ("resources", "the containers of pod_template"),
    (
        "termination_grace_period_seconds",
        "pod_template.terminationGracePeriodSeconds",
    ),
    (
        "environment",
        "the env of a pod_template container or -e flags",
    ),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub worker_id: Option<String>,
    /// Absent is not the same as false.
    pub cleanup: Option<bool>,
    pub max_concurrent_tasks: Option<i64>,
    pub idle_on_complete: Option<String>,
    pub one_shot: Option<bool>,
    /// Accepted for compatibility; per-task log export is not implemented.
    pub collect_task_logs: Option<bool>,
    pub ca_bundle: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// `HOST:PORT` of the ops listener.
    pub metrics_addr: Option<String>,
    /// Go duration, not negative.
    pub drain_timeout: Option<String>,
    pub backend: Option<BackendBlocks>,
}

/// A `null` block (`direct:` with nothing under it) deserializes to `None`: not configured.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendBlocks {
    pub docker: Option<DockerFile>,
    pub direct: Option<DirectFile>,
    pub command: Option<CommandFile>,
    pub kubernetes: Option<KubernetesFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvEntry {
    pub name: Option<String>,
    /// Absent: inherit the worker's own value (or "").
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerFile {
    pub volumes: Option<Vec<String>>,
    pub environment: Option<Vec<EnvEntry>>,
    pub image_pull_policy: Option<String>,
    pub sidecar_image: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectFile {
    pub workspace_root: Option<String>,
    pub target_dir: Option<String>,
    pub oz_path: Option<String>,
    pub setup_command: Option<String>,
    pub teardown_command: Option<String>,
    pub environment: Option<Vec<EnvEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandFile {
    pub dispatch_command: Option<String>,
    pub cancel_command: Option<String>,
    pub dispatch_timeout: Option<String>,
    pub environment: Option<Vec<EnvEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesFile {
    pub namespace: Option<String>,
    pub kubeconfig: Option<String>,
    pub default_image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub use_image_volumes: Option<bool>,
    pub sidecar_copy_readiness: Option<bool>,
    pub preflight_image: Option<String>,
    pub sidecar_image: Option<String>,
    pub coding_cli_sidecars: Option<BTreeMap<String, String>>,
    pub setup_command: Option<String>,
    pub teardown_command: Option<String>,
    pub extra_labels: Option<BTreeMap<String, String>>,
    pub extra_annotations: Option<BTreeMap<String, String>>,
    pub active_deadline_seconds: Option<i64>,
    pub ttl_seconds_after_finished: Option<i32>,
    pub workspace_size_limit: Option<String>,
    pub unschedulable_timeout: Option<String>,
    pub volume_mount_timeout: Option<String>,
    /// Opaque PodSpec subtree.
    pub pod_template: Option<serde_norway::Value>,
    /// Opaque ResourceRequirements subtree.
    pub preflight_resources: Option<serde_norway::Value>,
}

impl BackendBlocks {
    /// Configured blocks in the Go worker's selection order: direct, kubernetes, command, docker.
    pub fn present(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.direct.is_some() {
            v.push("direct");
        }
        if self.kubernetes.is_some() {
            v.push("kubernetes");
        }
        if self.command.is_some() {
            v.push("command");
        }
        if self.docker.is_some() {
            v.push("docker");
        }
        v
    }
}

/// A decoding failure: the 1-based line when known and a message naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub line: Option<usize>,
    pub message: String,
    /// True when the document holds no keys at all.
    pub empty: bool,
}

/// Decodes the text of a config file (strict), without validating it.
pub fn decode(text: &str) -> Result<FileConfig, DecodeError> {
    // A first, schema-free pass tells an empty document from a valid one and gives a clear
    // message for a non-mapping root; the typed pass below keeps line numbers.
    let root: serde_norway::Value = serde_norway::from_str(text).map_err(|e| yaml_error(&e))?;
    match root {
        serde_norway::Value::Null => {
            return Err(DecodeError {
                line: None,
                message:
                    "the file is empty (it must be a YAML mapping, e.g. `worker_id: my-worker`)"
                        .to_owned(),
                empty: true,
            });
        }
        serde_norway::Value::Mapping(_) => {}
        other => {
            return Err(DecodeError {
                line: Some(1),
                message: format!(
                    "the top level must be a mapping of keys, not {}",
                    kind_of(&other)
                ),
                empty: false,
            });
        }
    }
    serde_norway::from_str(text).map_err(|e| yaml_error(&e))
}

/// Rewrites a serde_norway error (`backend.docker: unknown field `x`, expected one of `a`, `b`
/// at line 3 column 5`) into `unknown key "x" in backend.docker (allowed: a, b)` plus its line.
fn yaml_error(err: &serde_norway::Error) -> DecodeError {
    let line = err.location().map(|l| l.line());
    let mut text = err.to_string();
    if let Some(loc) = err.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            text = stripped.to_owned();
        }
    }
    // serde_norway prefixes the YAML path unless the error is at the root.
    let (path, msg) = match text.split_once(": ") {
        Some((p, rest)) if !p.is_empty() && !p.contains([' ', '`']) => (Some(p.to_owned()), rest),
        _ => (None, text.as_str()),
    };
    let place = match &path {
        Some(p) => p.clone(),
        None => "the top level".to_owned(),
    };
    let message = if let Some(rest) = msg.strip_prefix("unknown field `") {
        let quoted: Vec<&str> = rest.split('`').step_by(2).collect();
        let key = quoted.first().copied().unwrap_or_default();
        let allowed: Vec<&str> = quoted.iter().skip(1).copied().collect();
        let mut m = format!(
            "unknown key {key:?} in {place} (allowed: {})",
            allowed.join(", ")
        );
        if path.as_deref() == Some("backend.kubernetes")
            && let Some((_, instead)) = LEGACY_KUBERNETES_KEYS.iter().find(|(k, _)| *k == key)
        {
            m.push_str(&format!(
                "; {key:?} was removed from the kubernetes backend: use {instead}"
            ));
        }
        m
    } else if let Some(rest) = msg.strip_prefix("duplicate field `") {
        let key = rest.split('`').next().unwrap_or_default();
        format!("duplicate key {key:?} in {place}")
    } else if let Some(rest) = msg.strip_prefix("duplicate entry with key ") {
        // The schema-free pass reports duplicates this way, without a path.
        format!("duplicate key {rest}")
    } else if msg.starts_with("deserializing from YAML containing more than one document") {
        "the file contains more than one YAML document".to_owned()
    } else {
        let msg = match msg.find("expected struct ") {
            Some(i) => format!("{}expected a mapping", &msg[..i]),
            None => msg.to_owned(),
        };
        match &path {
            Some(p) => format!("{p}: {msg}"),
            None => msg,
        }
    };
    DecodeError {
        line,
        message,
        empty: false,
    }
}

/// Checks every rule the schema cannot express; returns all problems (empty when valid).
pub fn validate(cfg: &FileConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(n) = cfg.max_concurrent_tasks
        && n < 0
    {
        problems.push(format!(
            "max_concurrent_tasks must not be negative (got {n}); the Go worker treated \
                 negative values as unlimited: use 0 for unlimited"
        ));
    }
    check_ops(&mut problems, cfg);
    let Some(b) = &cfg.backend else {
        return problems;
    };
    if b.present().len() > 1 {
        problems.push(format!(
            "at most one backend may be configured (found {})",
            b.present().join(", ")
        ));
    }
    if let Some(d) = &b.docker {
        check_env(&mut problems, "backend.docker", d.environment.as_deref());
        check_pull_policy(
            &mut problems,
            "backend.docker",
            d.image_pull_policy.as_deref(),
        );
        check_image(
            &mut problems,
            "backend.docker.sidecar_image",
            d.sidecar_image.as_deref(),
        );
    }
    if let Some(d) = &b.direct {
        check_env(&mut problems, "backend.direct", d.environment.as_deref());
    }
    if let Some(c) = &b.command {
        check_env(&mut problems, "backend.command", c.environment.as_deref());
        if c.dispatch_command
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
        {
            problems.push("backend.command.dispatch_command is required".to_owned());
        }
        if let Err(e) = dispatch_timeout(c) {
            problems.push(e);
        }
    }
    if let Some(k) = &b.kubernetes {
        check_kubernetes(&mut problems, k);
    }
    problems
}

fn check_kubernetes(problems: &mut Vec<String>, k: &KubernetesFile) {
    const P: &str = "backend.kubernetes";
    check_pull_policy(problems, P, k.image_pull_policy.as_deref());
    for (key, v) in [
        ("default_image", &k.default_image),
        ("preflight_image", &k.preflight_image),
        ("sidecar_image", &k.sidecar_image),
    ] {
        check_image(problems, &format!("{P}.{key}"), v.as_deref());
    }
    for (harness, image) in k.coding_cli_sidecars.iter().flatten() {
        let path = format!("{P}.coding_cli_sidecars.{harness}");
        if image.is_empty() {
            problems.push(format!("{path} must not be empty"));
        }
        check_image(problems, &path, Some(image));
    }
    if k.use_image_volumes == Some(true) && k.sidecar_copy_readiness == Some(true) {
        problems.push(format!(
            "{P}.sidecar_copy_readiness and {P}.use_image_volumes cannot both be true"
        ));
    }
    if let Some(n) = k.active_deadline_seconds
        && n < 0
    {
        problems.push(format!(
            "{P}.active_deadline_seconds must not be negative (got {n})"
        ));
    }
    if let Some(n) = k.ttl_seconds_after_finished
        && n < 0
    {
        problems.push(format!(
            "{P}.ttl_seconds_after_finished must not be negative (got {n})"
        ));
    }
    let checks = [
        workspace_size_limit(k).map(|_| ()),
        unschedulable_timeout(k).map(|_| ()),
        volume_mount_timeout(k).map(|_| ()),
        pod_template(k).map(|_| ()),
        preflight_resources(k).map(|_| ()),
    ];
    problems.extend(checks.into_iter().filter_map(Result::err));
}

fn check_env(problems: &mut Vec<String>, block: &str, env: Option<&[EnvEntry]>) {
    for (i, e) in env.unwrap_or_default().iter().enumerate() {
        match e.name.as_deref() {
            None | Some("") => problems.push(format!("{block}.environment[{i}].name is required")),
            Some(n) if n.contains(char::is_whitespace) => problems.push(format!(
                "{block}.environment[{i}].name must not contain whitespace (got {n:?})"
            )),
            Some(n) if n.contains('=') => problems.push(format!(
                "{block}.environment[{i}].name must not contain '=' (got {n:?})"
            )),
            Some(_) => {}
        }
    }
}

fn check_pull_policy(problems: &mut Vec<String>, block: &str, v: Option<&str>) {
    if let Some(v) = v.filter(|v| !v.is_empty())
        && PullPolicy::parse(v).is_none()
    {
        problems.push(format!(
            "{block}.image_pull_policy must be one of Always, IfNotPresent, Never (got {v:?})"
        ));
    }
}

fn check_image(problems: &mut Vec<String>, path: &str, v: Option<&str>) {
    if let Some(v) = v
        && v.contains(char::is_whitespace)
    {
        problems.push(format!("{path} must not contain whitespace (got {v:?})"));
    }
}

/// `Ok(None)` when absent or empty (the caller's default applies).
fn go_duration(key: &str, v: Option<&str>) -> Result<Option<i64>, String> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => duration::parse_go_duration(v)
            .map(Some)
            .map_err(|e: DurationError| format!("invalid {key} {v:?}: {e}")),
    }
}

fn check_ops(problems: &mut Vec<String>, cfg: &FileConfig) {
    if let Some(f) = cfg.log_format.as_deref()
        && crate::settings::LogFormat::parse(f).is_none()
    {
        problems.push(format!("log_format must be text or json (got {f:?})"));
    }
    if let Some(addr) = cfg.metrics_addr.as_deref().filter(|a| !a.is_empty())
        && let Err(why) = crate::settings::bind_address(addr)
    {
        problems.push(format!("metrics_addr: {why}"));
    }
    if let Err(why) = drain_timeout(cfg) {
        problems.push(why);
    }
}

/// `drain_timeout` from the file; `None` when absent.
pub fn drain_timeout(cfg: &FileConfig) -> Result<Option<std::time::Duration>, String> {
    const KEY: &str = "drain_timeout";
    match go_duration(KEY, cfg.drain_timeout.as_deref())? {
        None => Ok(None),
        Some(ns) => u64::try_from(ns)
            .map(|n| Some(std::time::Duration::from_nanos(n)))
            .map_err(|_| {
                format!(
                    "invalid {KEY} {:?}: must not be negative",
                    cfg.drain_timeout.as_deref().unwrap_or_default()
                )
            }),
    }
}

/// The command backend's dispatch timeout: positive; `None` = default.
pub fn dispatch_timeout(c: &CommandFile) -> Result<Option<std::time::Duration>, String> {
    const KEY: &str = "backend.command.dispatch_timeout";
    match go_duration(KEY, c.dispatch_timeout.as_deref())? {
        None => Ok(None),
        Some(ns) if ns > 0 => Ok(Some(std::time::Duration::from_nanos(ns.unsigned_abs()))),
        Some(_) => Err(format!(
            "invalid {KEY} {:?}: must be positive",
            c.dispatch_timeout.as_deref().unwrap_or_default()
        )),
    }
}

/// Outer `None`: absent (use the default). Inner `None`: `0s`/negative, i.e. disabled.
pub type Toggle = Option<Option<std::time::Duration>>;

fn toggle(key: &str, v: Option<&str>) -> Result<Toggle, String> {
    Ok(go_duration(key, v)?.map(|ns| {
        u64::try_from(ns)
            .ok()
            .filter(|n| *n > 0)
            .map(std::time::Duration::from_nanos)
    }))
}

pub fn unschedulable_timeout(k: &KubernetesFile) -> Result<Toggle, String> {
    toggle(
        "backend.kubernetes.unschedulable_timeout",
        k.unschedulable_timeout.as_deref(),
    )
}

pub fn volume_mount_timeout(k: &KubernetesFile) -> Result<Toggle, String> {
    toggle(
        "backend.kubernetes.volume_mount_timeout",
        k.volume_mount_timeout.as_deref(),
    )
}

pub fn workspace_size_limit(k: &KubernetesFile) -> Result<Option<String>, String> {
    const KEY: &str = "backend.kubernetes.workspace_size_limit";
    let Some(v) = k.workspace_size_limit.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match quantity::parse_quantity(v) {
        Ok(q) if q.negative && !q.zero => Err(format!("invalid {KEY} {v:?}: must not be negative")),
        Ok(_) => Ok(Some(v.to_owned())),
        Err(e) => Err(format!("invalid {KEY} {v:?}: {e}")),
    }
}

pub fn pod_template(k: &KubernetesFile) -> Result<Option<serde_json::Value>, String> {
    opaque("backend.kubernetes.pod_template", k.pod_template.as_ref())
}

pub fn preflight_resources(k: &KubernetesFile) -> Result<Option<serde_json::Value>, String> {
    opaque(
        "backend.kubernetes.preflight_resources",
        k.preflight_resources.as_ref(),
    )
}

fn opaque(key: &str, v: Option<&serde_norway::Value>) -> Result<Option<serde_json::Value>, String> {
    let Some(v) = v else { return Ok(None) };
    let mut v = v.clone();
    v.apply_merge().map_err(|e| format!("invalid {key}: {e}"))?;
    if !v.is_mapping() {
        return Err(format!(
            "invalid {key}: must be a mapping, not {}",
            kind_of(&v)
        ));
    }
    super::yaml_json::to_json(&v, key)
        .map(Some)
        .map_err(|e| format!("invalid {key}: {e}"))
}

#[cfg(test)]
#[path = "file_tests/mod.rs"]
pub(crate) mod tests;
