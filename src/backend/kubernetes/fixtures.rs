//! Test inputs shared by the manifest tests and the manifest matrix (`matrix.rs`).

use std::collections::BTreeMap;

use crate::protocol::{InstanceShape, SidecarMount, Task};
use crate::settings::{KubernetesSettings, PullPolicy};
use crate::task::TaskSpec;

pub const WORKER: &str = "worker-123";

/// What the config layer produces for an empty `backend.kubernetes` block with cleanup on.
pub fn settings() -> KubernetesSettings {
    KubernetesSettings {
        namespace: "agents".into(),
        kubeconfig: None,
        default_image: None,
        image_pull_policy: PullPolicy::IfNotPresent,
        use_image_volumes: false,
        sidecar_copy_readiness: false,
        preflight_image: "busybox:1.36".into(),
        sidecar_image: None,
        coding_cli_sidecars: BTreeMap::new(),
        setup_command: None,
        teardown_command: None,
        extra_labels: BTreeMap::new(),
        extra_annotations: BTreeMap::new(),
        active_deadline_seconds: Some(28_800),
        ttl_seconds_after_finished: Some(86_400),
        workspace_size_limit: None,
        unschedulable_timeout: Some(std::time::Duration::from_secs(600)),
        volume_mount_timeout: Some(std::time::Duration::from_secs(120)),
        pod_template: None,
        preflight_resources: None,
        task_env: Vec::new(),
    }
}

pub fn sidecar(image: &str, mount_path: &str, read_write: bool) -> SidecarMount {
    SidecarMount {
        image: image.into(),
        mount_path: mount_path.into(),
        read_write,
    }
}

/// A task with the agent sidecar at `/agent`, as the server usually sends it.
pub fn spec(task_id: &str, execution_id: Option<&str>) -> TaskSpec {
    TaskSpec {
        task_id: task_id.into(),
        execution_id: execution_id.map(str::to_owned),
        task: Task {
            id: task_id.into(),
            ..Task::default()
        },
        image: "ghcr.io/acme/dev:1".into(),
        env: vec![
            ("TASK_ID".into(), task_id.into()),
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            ("GH_PROMPT_DISABLED".into(), "1".into()),
            ("WARP_SERVER_ROOT_URL".into(), "https://app.warp.dev".into()),
            ("WARP_API_KEY".into(), "task-secret".into()),
        ],
        base_args: vec![
            "agent".into(),
            "run".into(),
            "--task-id".into(),
            task_id.into(),
            "--sandboxed".into(),
        ],
        sidecars: vec![sidecar("warp/agent:latest", "/agent", false)],
        instance_shape: None,
        harness: None,
        secrets: vec!["task-secret".into()],
        telemetry: None,
    }
}

pub fn shape(vcpus: i64, memory_gb: i64) -> Option<InstanceShape> {
    Some(InstanceShape { vcpus, memory_gb })
}

/// A small deterministic generator for the randomised tests (xorshift64; no crate).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n, which is a usize")
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
