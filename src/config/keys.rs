//! The config-file key table: every key the parser in [`super::file`] accepts, with its type,
//! default and an example. It is the single source of `oz-agent-worker.yaml(5)`; a test keeps it
//! equal to serde's own field lists, so a key added to the schema without documentation fails.

/// One key of the YAML config file.
pub struct ConfigKey {
    /// Dotted path: `worker_id`, `backend.docker.volumes`.
    pub path: &'static str,
    /// Value type as shown to operators.
    pub kind: &'static str,
    /// What applies when the key is absent (prose, not parsed).
    pub default: &'static str,
    /// A valid YAML value for the key (flow style, one line).
    pub example: &'static str,
    /// One or two sentences of plain text.
    pub doc: &'static str,
}

/// The blocks that hold keys, in man-page order: the top level (`""`), then each backend.
pub const BLOCKS: [&str; 5] = [
    "",
    "backend.docker",
    "backend.direct",
    "backend.command",
    "backend.kubernetes",
];

impl ConfigKey {
    /// The block the key lives in (`""` for the top level).
    pub fn block(&self) -> &'static str {
        self.path.rsplit_once('.').map_or("", |(block, _)| block)
    }

    /// The key's own name within its block.
    pub fn name(&self) -> &'static str {
        self.path
            .rsplit_once('.')
            .map_or(self.path, |(_, name)| name)
    }
}

const ENV_KIND: &str = "list of {name, value}";
const ENV_DOC: &str = "Variables added to the environment of every task. An entry without value \
copies the worker's own variable (or the empty string); -e flags win over entries of the same name.";
const ENV_EXAMPLE: &str = "[{name: FOO, value: bar}, {name: HTTPS_PROXY}]";

macro_rules! key {
    ($path:literal, $kind:expr, $default:literal, $example:expr, $doc:expr) => {
        ConfigKey {
            path: $path,
            kind: $kind,
            default: $default,
            example: $example,
            doc: $doc,
        }
    };
}

/// Every key, grouped by block in [`BLOCKS`] order and in schema order within a block.
pub const CONFIG_KEYS: &[ConfigKey] = &[
    key!(
        "worker_id",
        "string",
        "none: required by the daemon (run-once and check use local)",
        "my-worker",
        "The ID this worker registers under; Oz routes tasks addressed to it here."
    ),
    key!(
        "cleanup",
        "boolean",
        "true",
        "false",
        "Remove task containers, workspaces and Kubernetes Jobs after tasks finish; false keeps \
         them for debugging (--no-cleanup wins)."
    ),
    key!(
        "max_concurrent_tasks",
        "integer, 0 or more",
        "0 (unlimited)",
        "4",
        "Run at most this many tasks at the same time; assignments beyond that are rejected."
    ),
    key!(
        "idle_on_complete",
        "string (Go duration)",
        "the agent's own default",
        "10m",
        "How long the agent stays up after its task completes; passed verbatim to the agent."
    ),
    key!(
        "one_shot",
        "boolean",
        "false",
        "true",
        "Accept a single task, then exit once its outcome is reported. Direct backend only."
    ),
    key!(
        "collect_task_logs",
        "boolean",
        "true",
        "false",
        "Allow per-task log export (OTLP) for tasks whose assignment asks for it; false keeps task \
         logs on this machine. Setup events are sent either way."
    ),
    key!(
        "ca_bundle",
        "path",
        "none (system roots only)",
        "/etc/oz/ca.pem",
        "A PEM file of CA certificates trusted for the wss:// connection in addition to the \
         system roots."
    ),
    key!(
        "log_format",
        "text | json",
        "text",
        "json",
        "text writes time, level and message; json writes one JSON object per line."
    ),
    key!(
        "metrics_addr",
        "HOST:PORT",
        "none (no listener)",
        "127.0.0.1:9464",
        "Serve /metrics, /healthz and /readyz over HTTP on this address."
    ),
    key!(
        "drain_timeout",
        "Go duration, not negative",
        "0s (cancel at once)",
        "90s",
        "On SIGTERM or SIGINT, let running tasks finish for this long before cancelling them."
    ),
    key!(
        "state_dir",
        "path",
        "/var/lib/oz-agent-worker",
        "/var/lib/oz-agent-worker",
        "Directory of the outcome journal, which carries claimed tasks and unsent outcomes across \
         a crash. Without a writable one the worker runs with a warning and no crash recovery."
    ),
    key!(
        "backend",
        "mapping with at most one of docker, direct, command, kubernetes",
        "none (docker with its defaults)",
        "{docker: {}}",
        "The backend block; its name selects the backend unless --backend names another one."
    ),
    // backend.docker
    key!(
        "backend.docker.volumes",
        "list of SRC:DST[:OPTS]",
        "[]",
        "[\"/srv/cache:/cache:ro\"]",
        "Bind mounts for every task container; SRC is an absolute host path or a volume name."
    ),
    key!(
        "backend.docker.environment",
        ENV_KIND,
        "[]",
        ENV_EXAMPLE,
        ENV_DOC
    ),
    key!(
        "backend.docker.image_pull_policy",
        "Always | IfNotPresent | Never",
        "Always",
        "IfNotPresent",
        "When to pull the task image before creating its container."
    ),
    key!(
        "backend.docker.sidecar_image",
        "image reference",
        "the image Oz names in the task",
        "registry.example/agent:1",
        "Overrides the image that provides the agent to task containers."
    ),
    // backend.direct
    key!(
        "backend.direct.workspace_root",
        "path",
        "/var/lib/oz/workspaces (unless target_dir is set)",
        "/var/lib/oz-agent-worker/workspaces",
        "Each task gets a fresh workspace directory under this root."
    ),
    key!(
        "backend.direct.target_dir",
        "path",
        "none",
        "/srv/repo",
        "Run every task in this existing directory instead of a fresh workspace (--target-dir wins)."
    ),
    key!(
        "backend.direct.oz_path",
        "path",
        "oz from PATH",
        "/usr/local/bin/oz",
        "The oz CLI that runs the agent."
    ),
    key!(
        "backend.direct.setup_command",
        "shell command",
        "none",
        "./setup.sh",
        "Run in the workspace before the agent starts; a failure fails the task."
    ),
    key!(
        "backend.direct.teardown_command",
        "shell command",
        "none",
        "./teardown.sh",
        "Run in the workspace after the agent exits, whatever the outcome."
    ),
    key!(
        "backend.direct.environment",
        ENV_KIND,
        "[]",
        ENV_EXAMPLE,
        ENV_DOC
    ),
    // backend.command
    key!(
        "backend.command.dispatch_command",
        "shell command (required)",
        "none (required)",
        "/usr/local/bin/dispatch",
        "Receives each task and starts it elsewhere; the command backend cannot run without it."
    ),
    key!(
        "backend.command.cancel_command",
        "shell command",
        "none",
        "/usr/local/bin/cancel",
        "Run to cancel a dispatched task."
    ),
    key!(
        "backend.command.dispatch_timeout",
        "Go duration",
        "60s",
        "2m",
        "How long dispatch_command may run before the task fails."
    ),
    key!(
        "backend.command.environment",
        ENV_KIND,
        "[]",
        ENV_EXAMPLE,
        ENV_DOC
    ),
    // backend.kubernetes
    key!(
        "backend.kubernetes.namespace",
        "string",
        "default",
        "oz-tasks",
        "Namespace of the task Jobs."
    ),
    key!(
        "backend.kubernetes.kubeconfig",
        "path",
        "in-cluster service account",
        "/etc/oz/kubeconfig",
        "A kubeconfig file to use instead of the pod's service account."
    ),
    key!(
        "backend.kubernetes.default_image",
        "image reference",
        "ubuntu:22.04",
        "ubuntu:24.04",
        "Task image when Oz names none."
    ),
    key!(
        "backend.kubernetes.image_pull_policy",
        "Always | IfNotPresent | Never",
        "IfNotPresent",
        "Always",
        "Pull policy of the task containers."
    ),
    key!(
        "backend.kubernetes.use_image_volumes",
        "boolean",
        "false",
        "true",
        "Mount the agent sidecar as an image volume (Kubernetes 1.33 or later) instead of copying it."
    ),
    key!(
        "backend.kubernetes.sidecar_copy_readiness",
        "boolean",
        "false",
        "false",
        "Wait for the sidecar copy to be complete before the task container starts; cannot be \
         true together with use_image_volumes."
    ),
    key!(
        "backend.kubernetes.preflight_image",
        "image reference",
        "busybox:1.36",
        "registry.example/busybox:1.36",
        "Image of the preflight Job that checks the cluster."
    ),
    key!(
        "backend.kubernetes.sidecar_image",
        "image reference",
        "the image Oz names in the task",
        "registry.example/agent:1",
        "Overrides the image that provides the agent."
    ),
    key!(
        "backend.kubernetes.coding_cli_sidecars",
        "map of harness to image reference",
        "{}",
        "{claude: registry.example/claude:1}",
        "Extra sidecar images per coding CLI harness."
    ),
    key!(
        "backend.kubernetes.setup_command",
        "shell command",
        "none",
        "./setup.sh",
        "Run in the task container before the agent starts."
    ),
    key!(
        "backend.kubernetes.teardown_command",
        "shell command",
        "none",
        "./teardown.sh",
        "Run in the task container after the agent exits."
    ),
    key!(
        "backend.kubernetes.extra_labels",
        "map of string to string",
        "{}",
        "{team: infra}",
        "Labels added to every task Job and pod."
    ),
    key!(
        "backend.kubernetes.extra_annotations",
        "map of string to string",
        "{}",
        "{owner: ops}",
        "Annotations added to every task Job and pod."
    ),
    key!(
        "backend.kubernetes.active_deadline_seconds",
        "integer",
        "0 (unbounded)",
        "28800",
        "Job activeDeadlineSeconds; 0 or less means no deadline."
    ),
    key!(
        "backend.kubernetes.ttl_seconds_after_finished",
        "integer",
        "86400 (when cleanup is on)",
        "3600",
        "Job ttlSecondsAfterFinished; ignored when cleanup is false."
    ),
    key!(
        "backend.kubernetes.workspace_size_limit",
        "Kubernetes quantity",
        "none (no limit)",
        "8Gi",
        "Size limit of the task's workspace emptyDir."
    ),
    key!(
        "backend.kubernetes.unschedulable_timeout",
        "Go duration",
        "10m",
        "5m",
        "Fail a task whose pod stays unschedulable this long; 0s disables."
    ),
    key!(
        "backend.kubernetes.volume_mount_timeout",
        "Go duration",
        "2m",
        "5m",
        "Fail a task whose volumes stay unmounted this long; 0s disables."
    ),
    key!(
        "backend.kubernetes.pod_template",
        "mapping (a PodSpec)",
        "{}",
        "{serviceAccountName: oz-tasks}",
        "Merged into every task pod: service account, image pull secrets, node selector, \
         tolerations, env and resources of the containers."
    ),
    key!(
        "backend.kubernetes.preflight_resources",
        "mapping (ResourceRequirements)",
        "requests cpu 10m, memory 16Mi; limits cpu 100m, memory 64Mi",
        "{requests: {cpu: 10m}}",
        "Resources of the preflight Job's container."
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::{TOP_LEVEL_KEYS, decode};

    /// Wraps `body` (a mapping at the level of `block`) into a whole document.
    fn document(block: &str, body: &str) -> String {
        let mut doc = body.to_owned();
        for part in block.split('.').filter(|p| !p.is_empty()).rev() {
            doc = format!("{{{part}: {doc}}}");
        }
        doc
    }

    /// serde's own list of allowed keys of `block`, from its unknown-key error.
    fn serde_fields(block: &str) -> Vec<String> {
        let err = decode(&document(block, "{zz_not_a_key: 1}")).unwrap_err();
        let (_, allowed) = err
            .message
            .split_once("(allowed: ")
            .unwrap_or_else(|| panic!("no allowed list in {:?}", err.message));
        allowed
            .trim_end_matches(')')
            .split(", ")
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn table_lists_exactly_the_keys_of_every_block_in_schema_order() {
        for block in BLOCKS {
            let table: Vec<&str> = CONFIG_KEYS
                .iter()
                .filter(|k| k.block() == block)
                .map(ConfigKey::name)
                .collect();
            assert_eq!(table, serde_fields(block), "block {block:?}");
        }
        assert_eq!(
            CONFIG_KEYS
                .iter()
                .filter(|k| k.block().is_empty())
                .map(ConfigKey::name)
                .collect::<Vec<_>>(),
            TOP_LEVEL_KEYS
        );
        // The backend names under `backend` are the blocks listed here.
        let backends: Vec<String> = BLOCKS[1..]
            .iter()
            .map(|b| b.trim_start_matches("backend.").to_owned())
            .collect();
        let mut serde_backends = serde_fields("backend");
        serde_backends.sort();
        let mut sorted = backends.clone();
        sorted.sort();
        assert_eq!(sorted, serde_backends);
        // Keys are grouped by block, in BLOCKS order.
        let order: Vec<usize> = CONFIG_KEYS
            .iter()
            .map(|k| BLOCKS.iter().position(|b| *b == k.block()).unwrap_or(99))
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    }

    #[test]
    fn every_example_decodes_with_its_key() {
        for key in CONFIG_KEYS {
            let doc = document(key.block(), &format!("{{{}: {}}}", key.name(), key.example));
            if let Err(e) = decode(&doc) {
                panic!(
                    "{}: example {:?} does not decode: {}",
                    key.path, key.example, e.message
                );
            }
            assert!(!key.doc.is_empty() && !key.kind.is_empty() && !key.default.is_empty());
        }
    }

    #[test]
    fn a_wrongly_typed_example_would_be_caught() {
        // The check above is not vacuous: a value of the wrong type fails to decode.
        assert!(decode(&document("backend.kubernetes", "{extra_labels: [a]}")).is_err());
        assert!(decode(&document("", "{cleanup: [1]}")).is_err());
    }
}
