//! Container lifecycle: create, start, wait, inspect, kill, stop, remove, list.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{Client, query, segment};
use super::error::DockerError;
use super::response::Response;
use crate::http::{Body, Timeouts};

fn is_false(b: &bool) -> bool {
    !*b
}

/// The body of `POST /containers/create`: the fields we set.
#[derive(Clone, Default, Serialize)]
pub struct ContainerConfig {
    #[serde(rename = "Image")]
    pub image: String,
    /// `None`: the image's `CMD`.
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `None`: the image's `ENTRYPOINT`.
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries. Values may be secrets: `Debug` shows only the keys.
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Tty", skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(rename = "OpenStdin", skip_serializing_if = "is_false")]
    pub open_stdin: bool,
    /// Close stdin after the first attach disconnects (so the process sees EOF).
    #[serde(rename = "StdinOnce", skip_serializing_if = "is_false")]
    pub stdin_once: bool,
    #[serde(rename = "AttachStdin", skip_serializing_if = "is_false")]
    pub attach_stdin: bool,
    #[serde(rename = "AttachStdout", skip_serializing_if = "is_false")]
    pub attach_stdout: bool,
    #[serde(rename = "AttachStderr", skip_serializing_if = "is_false")]
    pub attach_stderr: bool,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
}

impl fmt::Debug for ContainerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_keys: Vec<&str> = self
            .env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k))
            .collect();
        f.debug_struct("ContainerConfig")
            .field("image", &self.image)
            .field("cmd", &self.cmd)
            .field("entrypoint", &self.entrypoint)
            .field("env_keys", &env_keys)
            .field("working_dir", &self.working_dir)
            .field("user", &self.user)
            .field("labels", &self.labels)
            .field("tty", &self.tty)
            .field("open_stdin", &self.open_stdin)
            .field("host_config", &self.host_config)
            .finish_non_exhaustive()
    }
}

/// `HostConfig` of a container: the fields we set (and read back in [`ContainerInspect`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostConfig {
    /// `SRC:DST[:OPTS]`, a host path or a volume name as SRC.
    #[serde(
        rename = "Binds",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub binds: Vec<String>,
    /// CPU limit in 1e-9 CPUs.
    #[serde(rename = "NanoCpus", skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    #[serde(rename = "Memory", skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Memory plus swap; equal to `memory` means no swap.
    #[serde(rename = "MemorySwap", skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    #[serde(rename = "AutoRemove", skip_serializing_if = "is_false")]
    pub auto_remove: bool,
    #[serde(rename = "NetworkMode", skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
}

/// `POST /containers/create` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Created {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Warnings", default, deserialize_with = "null_as_empty")]
    pub warnings: Vec<String>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// 304: it was already running.
    AlreadyRunning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    Stopped,
    /// 304: it was not running.
    AlreadyStopped,
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    Killed,
    /// 409: it was not running.
    NotRunning,
    NotFound,
}

/// Outcome of removing a container, volume or image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotFound,
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Returns at once if the container is not running.
    NotRunning,
    /// The next exit, even if not started yet: register before `start` to never miss it.
    NextExit,
    /// Until removed (with auto-remove).
    Removed,
}

impl WaitCondition {
    fn as_str(self) -> &'static str {
        match self {
            WaitCondition::NotRunning => "not-running",
            WaitCondition::NextExit => "next-exit",
            WaitCondition::Removed => "removed",
        }
    }
}

/// How a waited-for container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitExit {
    /// As Docker reports it: a signal death is already `128 + signal`.
    pub status_code: i64,
    /// The daemon's error while waiting, if any.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct RawWait {
    #[serde(rename = "StatusCode")]
    status_code: i64,
    #[serde(rename = "Error", default)]
    error: Option<RawWaitError>,
}

#[derive(Deserialize)]
struct RawWaitError {
    #[serde(rename = "Message", default)]
    message: String,
}

/// A registered wait: the daemon answered the head, the exit status comes with the body.
pub struct Waiter {
    response: Response,
}

impl Waiter {
    /// Blocks until the condition is met (bounded only by an [`super::Abort`] on the client).
    pub fn wait(self) -> Result<WaitExit, DockerError> {
        let raw: RawWait = self.response.json()?;
        Ok(WaitExit {
            status_code: raw.status_code,
            error: raw.error.map(|e| e.message).filter(|m| !m.is_empty()),
        })
    }
}

/// `GET /containers/{id}/json`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawInspect")]
pub struct ContainerInspect {
    pub id: String,
    /// With Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    pub tty: bool,
    pub labels: BTreeMap<String, String>,
    pub host_config: HostConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// `created`, `running`, `exited`, …
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Running", default)]
    pub running: bool,
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(rename = "Error", default)]
    pub error: String,
}

#[derive(Deserialize)]
struct RawInspect {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "State", default)]
    state: ContainerState,
    #[serde(rename = "Config", default)]
    config: Option<RawInspectConfig>,
    #[serde(rename = "HostConfig", default)]
    host_config: Option<HostConfig>,
}

#[derive(Deserialize)]
struct RawInspectConfig {
    #[serde(rename = "Tty", default)]
    tty: bool,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    labels: BTreeMap<String, String>,
}

impl From<RawInspect> for ContainerInspect {
    fn from(raw: RawInspect) -> Self {
        let (tty, labels) = raw
            .config
            .map_or((false, BTreeMap::new()), |c| (c.tty, c.labels));
        ContainerInspect {
            id: raw.id,
            name: raw.name,
            image: raw.image,
            state: raw.state,
            tty,
            labels,
            host_config: raw.host_config.unwrap_or_default(),
        }
    }
}

/// An entry of `GET /containers/json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerSummary {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default, deserialize_with = "null_as_empty")]
    pub names: Vec<String>,
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `exited`, …
    #[serde(rename = "State", default)]
    pub state: String,
}

/// Slack on top of a stop's grace period for the daemon to answer.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// JSON for a `filters` query parameter: `{"label": ["k=v", …]}`.
pub(crate) fn label_filters(labels: &[&str]) -> String {
    serde_json::json!({ "label": labels }).to_string()
}

impl Client {
    /// `POST /containers/create`. A taken name is a 409 [`DockerError::Status`].
    pub fn create_container(
        &self,
        name: Option<&str>,
        config: &ContainerConfig,
    ) -> Result<Created, DockerError> {
        let q = match name {
            Some(name) => query(&[("name", name)]),
            None => String::new(),
        };
        let body = serde_json::to_vec(config).map_err(|e| DockerError::Json {
            request: "POST /containers/create".to_string(),
            message: e.to_string(),
        })?;
        let target = self.path(&format!("/containers/create{q}"));
        let response = self.send(
            "POST",
            target,
            Vec::new(),
            Body::json(body),
            self.timeouts(),
        )?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        response.json()
    }

    /// `POST /containers/{id}/start`.
    pub fn start_container(&self, id: &str) -> Result<StartOutcome, DockerError> {
        let target = self.path(&format!("/containers/{}/start", segment(id)));
        match self.status_of("POST", target, &[204, 304], self.timeouts())? {
            304 => Ok(StartOutcome::AlreadyRunning),
            _ => Ok(StartOutcome::Started),
        }
    }

    /// `POST /containers/{id}/wait`: returns once the daemon has registered the wait; call
    /// [`Waiter::wait`] for the exit. With [`WaitCondition::NextExit`], register before starting.
    pub fn wait_container(
        &self,
        id: &str,
        condition: WaitCondition,
    ) -> Result<Waiter, DockerError> {
        let q = query(&[("condition", condition.as_str())]);
        let target = self.path(&format!("/containers/{}/wait{q}", segment(id)));
        let timeouts = Timeouts {
            body_idle: None,
            ..self.timeouts()
        };
        let response = self.send("POST", target, Vec::new(), Body::Empty, timeouts)?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        Ok(Waiter { response })
    }

    /// `GET /containers/{id}/json`; `None` if there is no such container.
    pub fn inspect_container(&self, id: &str) -> Result<Option<ContainerInspect>, DockerError> {
        self.get_json_opt(self.path(&format!("/containers/{}/json", segment(id))))
    }

    /// `POST /containers/{id}/kill` with `signal` (e.g. `SIGKILL`, `TERM`, `9`).
    pub fn kill_container(&self, id: &str, signal: &str) -> Result<KillOutcome, DockerError> {
        let q = query(&[("signal", signal)]);
        let target = self.path(&format!("/containers/{}/kill{q}", segment(id)));
        Ok(
            match self.status_of("POST", target, &[204, 404, 409], self.timeouts())? {
                404 => KillOutcome::NotFound,
                409 => KillOutcome::NotRunning,
                _ => KillOutcome::Killed,
            },
        )
    }

    /// `POST /containers/{id}/stop?t=grace`: SIGTERM (or the image's stop signal), SIGKILL
    /// after `grace`. Blocks until stopped.
    pub fn stop_container(&self, id: &str, grace: Duration) -> Result<StopOutcome, DockerError> {
        let t = grace.as_secs().to_string();
        let target = self.path(&format!(
            "/containers/{}/stop{}",
            segment(id),
            query(&[("t", &t)])
        ));
        let timeouts = Timeouts {
            head: grace + STOP_SLACK,
            ..self.timeouts()
        };
        Ok(
            match self.status_of("POST", target, &[204, 304, 404], timeouts)? {
                304 => StopOutcome::AlreadyStopped,
                404 => StopOutcome::NotFound,
                _ => StopOutcome::Stopped,
            },
        )
    }

    /// `DELETE /containers/{id}`; `force` kills a running container first, `volumes` removes
    /// its anonymous volumes. 409 (removal already in progress) is a [`DockerError::Status`].
    pub fn remove_container(
        &self,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<Removal, DockerError> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let q = query(&[("force", flag(force)), ("v", flag(volumes))]);
        let target = self.path(&format!("/containers/{}{q}", segment(id)));
        Ok(
            match self.status_of("DELETE", target, &[204, 404], self.timeouts())? {
                404 => Removal::NotFound,
                _ => Removal::Removed,
            },
        )
    }

    /// `GET /containers/json`, `all` including stopped ones, filtered by `labels` (`key` or
    /// `key=value`, all must match).
    pub fn list_containers(
        &self,
        all: bool,
        labels: &[&str],
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let filters = label_filters(labels);
        let mut pairs = vec![("all", if all { "1" } else { "0" })];
        if !labels.is_empty() {
            pairs.push(("filters", &filters));
        }
        let target = self.path(&format!("/containers/json{}", query(&pairs)));
        let response = self.call("GET", target)?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        response.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::docker::testutil::fixture_body;

    #[test]
    fn create_body_has_dockers_field_names_and_skips_unset() {
        let config = ContainerConfig {
            image: "img:1".into(),
            cmd: Some(vec!["a".into()]),
            env: vec!["K=secret".into()],
            labels: [("oz-test".to_string(), "1".to_string())].into(),
            host_config: HostConfig {
                binds: vec!["vol:/agent:ro".into()],
                nano_cpus: Some(2_000_000_000),
                memory: Some(1 << 30),
                memory_swap: Some(1 << 30),
                auto_remove: true,
                network_mode: None,
            },
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Image": "img:1", "Cmd": ["a"], "Env": ["K=secret"], "Labels": {"oz-test": "1"},
                "HostConfig": {"Binds": ["vol:/agent:ro"], "NanoCpus": 2_000_000_000i64,
                    "Memory": 1i64 << 30, "MemorySwap": 1i64 << 30, "AutoRemove": true}
            })
        );
        let debug = format!("{config:?}");
        assert!(
            debug.contains("\"K\"") && !debug.contains("secret"),
            "{debug}"
        );
    }

    #[test]
    fn recorded_answers_parse() {
        let created: Created = serde_json::from_slice(&fixture_body(include_bytes!(
            "../../tests/support/fixtures/docker/create.http"
        )))
        .unwrap();
        assert_eq!(created.id.len(), 64);
        assert!(created.warnings.is_empty());
        let c: Created = serde_json::from_str(r#"{"Id":"x","Warnings":null}"#).unwrap();
        assert!(c.warnings.is_empty());

        let inspect: ContainerInspect = serde_json::from_slice(&fixture_body(include_bytes!(
            "../../tests/support/fixtures/docker/container_inspect.http"
        )))
        .unwrap();
        assert_eq!(inspect.name, "/oz-test-fixture");
        assert_eq!(inspect.state.status, "exited");
        assert_eq!(inspect.state.exit_code, 3);
        assert!(!inspect.state.running && !inspect.state.oom_killed && !inspect.tty);
        assert_eq!(inspect.labels.get("oz-test").map(String::as_str), Some("1"));
        // Docker reports unset limits as 0.
        assert_eq!(inspect.host_config.memory, Some(0));
        assert_eq!(inspect.host_config.network_mode.as_deref(), Some("default"));
    }

    #[test]
    fn wait_bodies_parse() {
        let raw: RawWait = serde_json::from_str(r#"{"Error":null,"StatusCode":3}"#).unwrap();
        assert_eq!((raw.status_code, raw.error.is_none()), (3, true));
        let raw: RawWait =
            serde_json::from_str(r#"{"Error":{"Message":"boom"},"StatusCode":-1}"#).unwrap();
        assert_eq!(raw.error.unwrap().message, "boom");
    }

    #[test]
    fn label_filters_are_json() {
        assert_eq!(
            label_filters(&["oz-test=1", "k"]),
            r#"{"label":["oz-test=1","k"]}"#
        );
    }
}
