//! Wire types and codec for every message exchanged with the Oz control plane.
//!
//! Every data frame is a WebSocket text frame holding one JSON object
//! `{"type": "<message type>", "data": {...}}`. This module is pure: it turns text into
//! [`Inbound`] values and [`Outbound`] values into text, and never touches a socket.
//!
//! Decoding is lenient where the Go worker is lenient (unknown fields are ignored, JSON `null`
//! counts as absent) and never panics on hostile input: a frame that cannot be understood becomes
//! an error value or an [`Inbound::BadAssignment`] that the supervisor can still answer.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// Message type strings, exactly as they travel on the wire.
pub mod kind {
    pub const TASK_ASSIGNMENT: &str = "task_assignment";
    pub const TASK_CANCELLATION: &str = "task_cancellation";
    pub const TASK_CLAIMED: &str = "task_claimed";
    pub const TASK_REJECTED: &str = "task_rejected";
    pub const TASK_COMPLETED: &str = "task_completed";
    pub const TASK_FAILED: &str = "task_failed";
    pub const EXECUTION_CLOSED: &str = "execution_closed";
    pub const HEARTBEAT: &str = "heartbeat";
}

/// Fixed message texts the server and its users see.
pub mod text {
    pub const COMPLETED: &str = "Task completed successfully";
    pub const CANCELLED: &str = "Task cancelled by user request.";
    pub const CANCELLED_STATE: &str = "CANCELLED";
    pub const REJECT_AT_CAPACITY: &str = "worker at maximum concurrency";
    pub const REJECT_SHUTTING_DOWN: &str = "worker is shutting down";
    pub const REJECT_ONE_SHOT: &str = "one-shot worker has already accepted a task";
    /// Sent for a task whose context was cancelled without a user request (shutdown, lost link).
    pub const INTERRUPTED: &str = "The task was interrupted due to an infrastructure issue (context canceled). This is typically transient \u{2014} please try again.";
    /// Sent for a task that ran past a deadline.
    pub const TIMED_OUT: &str = "The task exceeded its maximum allowed execution time and was terminated. Consider breaking the task into smaller steps or increasing the timeout.";
    /// Prefix of every other failure message.
    pub const FAILED_PREFIX: &str = "Failed to execute task: ";
}

/// Header naming the optional protocol features this worker speaks.
pub const CAPABILITIES_HEADER: &str = "X-Warp-Worker-Capabilities";
/// Capabilities announced on every dial.
pub const CAPABILITIES: &str = "execution-scoped-cancellation-v1";
/// Header carrying the worker's version.
pub const VERSION_HEADER: &str = "X-Warp-Worker-Version";

// ------------------------------------------------------------------------------------------------
// Inbound (server -> worker)
// ------------------------------------------------------------------------------------------------

/// A message from the server, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A task routed to this worker.
    Assignment(Box<TaskAssignment>),
    /// An assignment whose body could not be decoded. When the task id could be recovered the
    /// supervisor answers it (claimed + failed) instead of leaving the server waiting.
    BadAssignment {
        task_id: Option<String>,
        execution_id: Option<String>,
        error: String,
    },
    /// A request to stop a task (all executions of it when `execution_id` is absent).
    Cancellation(TaskCancellation),
    /// A message type this worker does not know; logged and ignored.
    Unknown(String),
}

/// Why a frame could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is not a JSON object with a string `type`.
    Envelope(String),
    /// A known message type whose `data` is unusable and carries no task id to answer.
    Data { kind: &'static str, error: String },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Envelope(e) => write!(f, "malformed message envelope: {e}"),
            DecodeError::Data { kind, error } => write!(f, "malformed {kind} data: {error}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// Decodes one text frame.
pub fn decode(frame: &str) -> Result<Inbound, DecodeError> {
    let env: Envelope<'_> =
        serde_json::from_str(frame).map_err(|e| DecodeError::Envelope(scrub(&e.to_string())))?;
    let data = env.data.map(RawValue::get).unwrap_or("null");
    match env.kind.as_ref() {
        kind::TASK_ASSIGNMENT => Ok(decode_assignment(data)),
        kind::TASK_CANCELLATION => {
            let c: TaskCancellation = from_data(data).map_err(|error| DecodeError::Data {
                kind: kind::TASK_CANCELLATION,
                error,
            })?;
            if c.task_id.is_empty() {
                return Err(DecodeError::Data {
                    kind: kind::TASK_CANCELLATION,
                    error: "missing task_id".into(),
                });
            }
            Ok(Inbound::Cancellation(c))
        }
        other => Ok(Inbound::Unknown(other.to_owned())),
    }
}

fn decode_assignment(data: &str) -> Inbound {
    match from_data::<TaskAssignment>(data) {
        Ok(a) if a.task_id.is_empty() => Inbound::BadAssignment {
            task_id: None,
            execution_id: a.execution_id,
            error: "missing task_id".into(),
        },
        Ok(a) => Inbound::Assignment(Box::new(a)),
        Err(error) => {
            // Salvage the ids so the assignment can still be answered.
            #[derive(Deserialize)]
            struct Ids {
                #[serde(default)]
                task_id: Option<serde_json::Value>,
                #[serde(default)]
                execution_id: Option<serde_json::Value>,
            }
            let ids = serde_json::from_str::<Ids>(data).ok();
            let as_string = |v: Option<serde_json::Value>| match v {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            };
            let (task_id, execution_id) = match ids {
                Some(ids) => (as_string(ids.task_id), as_string(ids.execution_id)),
                None => (None, None),
            };
            Inbound::BadAssignment {
                task_id,
                execution_id,
                error,
            }
        }
    }
}

fn from_data<T: DeserializeOwned>(data: &str) -> Result<T, String> {
    if data.trim() == "null" {
        return Err("missing data object".into());
    }
    serde_json::from_str(data).map_err(|e| scrub(&e.to_string()))
}

/// serde quotes the offending value in its messages (`invalid type: string "s3cr3t"`), and a
/// malformed `env_vars` value is a secret: keep the shape of the message, drop the values.
fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '`' => {
                out.push(c);
                out.push('…');
                let mut escaped = false;
                for inner in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if inner == '\\' {
                        escaped = true;
                    } else if inner == c {
                        break;
                    }
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Deserializes JSON `null` as the type's default, the way Go's decoder leaves a zero value.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An empty string counts as absent, as in the Go worker (`omitempty` on both ends).
fn non_empty<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// `task_assignment` data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TaskAssignment {
    #[serde(default, deserialize_with = "nullable")]
    pub task_id: String,
    #[serde(default, deserialize_with = "non_empty")]
    pub execution_id: Option<String>,
    #[serde(default)]
    pub task: Option<Task>,
    #[serde(default, deserialize_with = "nullable")]
    pub docker_image: String,
    #[serde(default, deserialize_with = "nullable")]
    pub sidecar_image: String,
    /// Task secrets (`WARP_API_KEY`, tokens, ...). Values never reach a log line.
    #[serde(default, deserialize_with = "nullable")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub additional_sidecars: Vec<SidecarMount>,
    #[serde(default, deserialize_with = "nullable")]
    pub additional_oz_args: Vec<String>,
    #[serde(default)]
    pub instance_shape: Option<InstanceShape>,
}

/// An image mounted into the task, e.g. the agent at `/agent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarMount {
    #[serde(default, deserialize_with = "nullable")]
    pub image: String,
    #[serde(default, deserialize_with = "nullable")]
    pub mount_path: String,
    #[serde(default, deserialize_with = "nullable")]
    pub read_write: bool,
}

/// Requested resources; a non-positive axis means "unset".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceShape {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub vcpus: i64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub memory_gb: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The task object of an assignment. Only fields the worker uses or forwards are modelled;
/// unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Task {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub title: String,
    #[serde(default, deserialize_with = "nullable")]
    pub task_definition: TaskDefinition,
    /// RFC 3339 text, passed through as received (the zero time when absent).
    #[serde(default = "zero_time", deserialize_with = "time_text")]
    pub created_at: String,
    #[serde(default = "zero_time", deserialize_with = "time_text")]
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_config_snapshot: Option<AgentConfigSnapshot>,
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_conversation_id: Option<String>,
}

/// The Go zero `time.Time`, which the Go worker re-emits for an absent timestamp.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn zero_time() -> String {
    ZERO_TIME.to_owned()
}

fn time_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(zero_time))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TaskDefinition {
    #[serde(default, deserialize_with = "nullable")]
    pub prompt: String,
}

/// Task owner. The server spells these keys with capitals (`Type`, `Id`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Owner {
    #[serde(
        rename = "Type",
        alias = "type",
        default,
        deserialize_with = "nullable"
    )]
    pub kind: String,
    #[serde(rename = "Id", alias = "id", default, deserialize_with = "nullable")]
    pub id: i64,
}

/// The agent configuration snapshot attached to a task.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AgentConfigSnapshot {
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub environment_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_prompt: Option<String>,
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub model_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub profile_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub skill_spec: Option<String>,
    /// MCP server name -> its JSON configuration, kept verbatim.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub mcp_servers: BTreeMap<String, RawJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_use_enabled: Option<bool>,
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub computer_use_model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<Harness>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_auth_secrets: Option<HarnessAuthSecrets>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_providers: Option<InferenceProviders>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_sharing: Option<SessionSharing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_upload_timeout_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_script_timeout_secs: Option<i64>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub repository_head_overrides: Vec<RepositoryHeadOverride>,
}

impl AgentConfigSnapshot {
    /// The trimmed harness type, when one is named.
    pub fn harness_type(&self) -> Option<&str> {
        self.harness
            .as_ref()
            .and_then(|h| h.kind.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// The first-party Oz harness: no harness, no type, an empty type or `oz`.
    pub fn is_oz_harness(&self) -> bool {
        matches!(self.harness_type(), None | Some("oz"))
    }
}

/// A JSON value kept exactly as received (key order, numbers), compared by its text.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct RawJson(pub Box<RawValue>);

impl RawJson {
    /// The JSON text as received.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Harness {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct HarnessAuthSecrets {
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub claude_auth_secret_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct InferenceProviders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsInference>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct AwsInference {
    #[serde(default, deserialize_with = "nullable")]
    pub disabled: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub role_arn: String,
    #[serde(default, deserialize_with = "nullable")]
    pub region: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SessionSharing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access: Option<String>,
}

/// Pins a repository to a commit or branch for the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RepositoryHeadOverride {
    #[serde(default, deserialize_with = "nullable")]
    pub code_forge: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_owner: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub head: RepositoryHead,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_from: Option<CloneFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_origin: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RepositoryHead {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CloneFrom {
    #[serde(default, deserialize_with = "nullable")]
    pub code_forge: String,
    #[serde(default, deserialize_with = "nullable")]
    pub owner: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo: String,
}

/// `task_cancellation` data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TaskCancellation {
    #[serde(default, deserialize_with = "nullable")]
    pub task_id: String,
    /// Absent: cancel every execution of the run (legacy run-wide cancellation).
    #[serde(default, deserialize_with = "non_empty")]
    pub execution_id: Option<String>,
}

mod failure;
mod outbound;

pub use failure::FailureReason;
pub use outbound::Outbound;

#[cfg(test)]
mod tests;
