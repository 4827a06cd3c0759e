//! Turning a `task_assignment` into a [`TaskSpec`]: image, environment, oz CLI arguments and
//! sidecars, as the Go worker builds them, plus the command backend's dispatch payload.
//!
//! Pure functions only. What the Go worker logs while preparing a task comes back as [`Note`]s
//! from [`build_with_notes`], for the caller to log with its own task context.

mod args;
mod json;
mod payload;

use std::collections::BTreeMap;
use std::fmt;

use crate::protocol::{InstanceShape, SidecarMount, Task, TaskAssignment};
use crate::settings::BackendKind;
use crate::settings::{DEFAULT_TASK_IMAGE, EnvList};

pub use payload::{DISPATCH_PAYLOAD_VERSION, dispatch_payload};

/// What a backend needs to run one task; built once per assignment by [`build`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The assignment's `task_id` (the run id).
    pub task_id: String,
    pub execution_id: Option<String>,
    /// The task object (`Task::id` may differ from `task_id`).
    pub task: Task,
    /// Resolved image (server image > Kubernetes default image > `ubuntu:22.04`).
    pub image: String,
    /// Prepared environment (`TASK_ID`, prompts off, server root, then `env_vars`), in order;
    /// later duplicates win. Values may be secrets.
    pub env: EnvList,
    /// `agent run ...` arguments, without the binary.
    pub base_args: Vec<String>,
    pub sidecars: Vec<SidecarMount>,
    pub instance_shape: Option<InstanceShape>,
    /// Trimmed harness type, when the snapshot names one.
    pub harness: Option<String>,
    /// Every distinct non-empty `env_vars` value, for log redaction.
    pub secrets: Vec<String>,
}

/// Identifies one execution of a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    pub task_id: String,
    pub execution_id: Option<String>,
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.execution_id {
            Some(e) => write!(f, "{} (execution {e})", self.task_id),
            None => f.write_str(&self.task_id),
        }
    }
}

impl TaskSpec {
    /// The task's `(task_id, execution_id)`.
    pub fn task_ref(&self) -> TaskRef {
        TaskRef {
            task_id: self.task_id.clone(),
            execution_id: self.execution_id.clone(),
        }
    }
}

/// Worker-level inputs to task building.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOptions {
    pub backend: Option<BackendKind>,
    /// `--server-root-url` (always passed to the CLI, even when empty).
    pub server_root_url: String,
    /// Worker `idle_on_complete`, used when the task sets no idle timeout.
    pub idle_on_complete: Option<String>,
    pub session_sharing_server_url: Option<String>,
    /// Kubernetes `default_image` (Kubernetes backend only).
    pub default_image: Option<String>,
    /// Configured `/agent` sidecar image override (Docker and Kubernetes).
    pub sidecar_image: Option<String>,
    /// Kubernetes `coding_cli_sidecars`: harness -> image.
    pub coding_cli_sidecars: BTreeMap<String, String>,
}

/// Where a task's image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// The server resolved the task's environment to this image.
    Assignment,
    /// Kubernetes `default_image`.
    KubernetesDefault,
    /// Nothing named an image: [`DEFAULT_TASK_IMAGE`].
    Fallback,
}

/// Something worth a log line that came up while building a spec. Never holds a secret;
/// server-sent text in it is escaped so it cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: log::Level,
    pub message: String,
}

impl Note {
    fn info(message: String) -> Self {
        Note {
            level: log::Level::Info,
            message,
        }
    }
}

/// Where the agent sidecar is mounted in every backend.
pub const AGENT_MOUNT_PATH: &str = "/agent";

/// Builds the spec for one assignment. The assignment must carry a `task` object; the
/// supervisor answers those that do not before calling this.
pub fn build(assignment: &TaskAssignment, task: &Task, opts: &TaskOptions) -> TaskSpec {
    build_with_notes(assignment, task, opts).0
}

/// [`build`], plus what the Go worker would have logged on the way (image choice, sidecar
/// overrides).
pub fn build_with_notes(
    assignment: &TaskAssignment,
    task: &Task,
    opts: &TaskOptions,
) -> (TaskSpec, Vec<Note>) {
    let mut notes = Vec::new();
    let (image, source) = resolve_image(assignment, opts);
    // The direct backend runs on the host: the image means nothing there.
    let runs_images = opts.backend != Some(BackendKind::Direct);
    if let Some(note) = image_note(&image, source, task).filter(|_| runs_images) {
        notes.push(note);
    }
    let snapshot = task.agent_config_snapshot.as_ref();
    let spec = TaskSpec {
        task_id: assignment.task_id.clone(),
        execution_id: assignment.execution_id.clone(),
        task: task.clone(),
        image,
        env: task_env(assignment, task, opts),
        base_args: args::base_args(assignment, task, opts),
        sidecars: sidecars(assignment, task, opts, &mut notes),
        instance_shape: assignment.instance_shape,
        harness: snapshot.and_then(|s| s.harness_type()).map(str::to_owned),
        secrets: secrets(assignment),
    };
    (spec, notes)
}

/// The task image: the server's > Kubernetes `default_image` > [`DEFAULT_TASK_IMAGE`].
/// A whitespace-only value counts as absent.
pub fn resolve_image(assignment: &TaskAssignment, opts: &TaskOptions) -> (String, ImageSource) {
    let server = assignment.docker_image.trim();
    if !server.is_empty() {
        return (server.to_owned(), ImageSource::Assignment);
    }
    if opts.backend == Some(BackendKind::Kubernetes)
        && let Some(default) = opts.default_image.as_deref().map(str::trim)
        && !default.is_empty()
    {
        return (default.to_owned(), ImageSource::KubernetesDefault);
    }
    (DEFAULT_TASK_IMAGE.to_owned(), ImageSource::Fallback)
}

fn image_note(image: &str, source: ImageSource, task: &Task) -> Option<Note> {
    let environment = task
        .agent_config_snapshot
        .as_ref()
        .and_then(|s| s.environment_id.as_deref())
        .map(str::trim)
        .filter(|e| !e.is_empty());
    match (source, environment) {
        (ImageSource::Assignment, _) => None,
        (ImageSource::KubernetesDefault, _) => Some(Note::info(format!(
            "no image from the server; using the Kubernetes default_image {image}"
        ))),
        // The environment should have named an image: the task will likely lack its tools.
        (ImageSource::Fallback, Some(env)) => Some(Note {
            level: log::Level::Warn,
            message: format!(
                "environment {} came without an image; falling back to {image}, which \
                 likely lacks the environment's tools",
                env.escape_debug()
            ),
        }),
        (ImageSource::Fallback, None) => Some(Note::info(format!(
            "no image specified for the task; using {image}"
        ))),
    }
}

/// `TASK_ID`, prompts off, `WARP_SERVER_ROOT_URL` when known, then the server's `env_vars`
/// (which may override any of them: later entries win in every backend).
fn task_env(assignment: &TaskAssignment, task: &Task, opts: &TaskOptions) -> EnvList {
    let mut env: EnvList = vec![
        ("TASK_ID".into(), task.id.clone()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GH_PROMPT_DISABLED".into(), "1".into()),
    ];
    if !opts.server_root_url.is_empty() {
        env.push(("WARP_SERVER_ROOT_URL".into(), opts.server_root_url.clone()));
    }
    env.extend(
        assignment
            .env_vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env
}

/// The `/agent` sidecar (when the server sent one), the server's additional sidecars, then
/// the Kubernetes coding CLI sidecar for the task's harness.
fn sidecars(
    assignment: &TaskAssignment,
    task: &Task,
    opts: &TaskOptions,
    notes: &mut Vec<Note>,
) -> Vec<SidecarMount> {
    let mut out = Vec::with_capacity(assignment.additional_sidecars.len() + 2);
    let server_agent = assignment.sidecar_image.trim();
    if !server_agent.is_empty() {
        let configured = opts
            .sidecar_image
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .filter(|_| {
                matches!(
                    opts.backend,
                    Some(BackendKind::Docker | BackendKind::Kubernetes)
                )
            });
        let image = match configured {
            Some(configured) => {
                notes.push(Note::info(format!(
                    "using the configured sidecar_image {configured} instead of the server's \
                     {}",
                    server_agent.escape_debug()
                )));
                configured
            }
            None => server_agent,
        };
        out.push(SidecarMount {
            image: image.to_owned(),
            mount_path: AGENT_MOUNT_PATH.to_owned(),
            read_write: false,
        });
    }
    out.extend(assignment.additional_sidecars.iter().cloned());

    if opts.backend == Some(BackendKind::Kubernetes) && !opts.coding_cli_sidecars.is_empty() {
        let harness = task
            .agent_config_snapshot
            .as_ref()
            .and_then(|s| s.harness_type());
        if let Some(harness) = harness {
            let image = opts
                .coding_cli_sidecars
                .get(harness)
                .map(|i| i.trim())
                .filter(|i| !i.is_empty());
            if let Some(image) = image {
                let mount_path = format!("/mnt/{harness}-cli-sidecar");
                notes.push(Note::info(format!(
                    "using the coding_cli_sidecars image {image} for harness {} at {}",
                    harness.escape_debug(),
                    mount_path.escape_debug()
                )));
                let mut replaced = false;
                // Only the image changes; the server's mount options stay.
                for s in out.iter_mut().filter(|s| s.mount_path == mount_path) {
                    s.image = image.to_owned();
                    replaced = true;
                }
                if !replaced {
                    out.push(SidecarMount {
                        image: image.to_owned(),
                        mount_path,
                        read_write: false,
                    });
                }
            }
        }
    }
    out
}

/// Every distinct non-empty `env_vars` value. Empty values are dropped: redacting "" would
/// be meaningless.
fn secrets(assignment: &TaskAssignment) -> Vec<String> {
    let mut values: Vec<String> = assignment
        .env_vars
        .values()
        .filter(|v| !v.is_empty())
        .cloned()
        .collect();
    values.sort();
    values.dedup();
    values
}

#[cfg(test)]
mod tests;
