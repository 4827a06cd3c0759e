//! Pure pieces of the Docker backend: the task container's configuration (command, env, binds,
//! resources, labels, name), sidecar validation and the sidecar volume name. No I/O here.

use std::collections::{BTreeMap, BTreeSet};

use crate::docker::{ContainerConfig, HostConfig};
use crate::protocol::{InstanceShape, SidecarMount};
use crate::settings::EnvList;
use crate::task::{AGENT_MOUNT_PATH, TaskSpec};

/// Label holding the task (run) id, as upstream sets it.
pub const LABEL_TASK: &str = "oz-task-id";
/// Label holding the execution id (empty for legacy assignments), as upstream sets it.
pub const LABEL_EXECUTION: &str = "oz-execution-id";
/// Label holding the worker id: how a restarted worker finds what a crashed run left behind.
pub const LABEL_WORKER: &str = "dev.warp.oz.worker-id";
/// What a container is for: [`ROLE_TASK`], [`ROLE_EXPORT`] or [`ROLE_FILL`].
pub const LABEL_ROLE: &str = "dev.warp.oz.role";
/// On a fill container: the sidecar volume it populates. While such a container exists, the
/// volume may be incomplete.
pub const LABEL_VOLUME: &str = "dev.warp.oz.sidecar-volume";

pub const ROLE_TASK: &str = "task";
/// A never-started container of a sidecar image, exported as a tar.
pub const ROLE_EXPORT: &str = "sidecar-export";
/// A never-started container binding a sidecar volume at [`FILL_TARGET`], the target of the
/// upload.
pub const ROLE_FILL: &str = "sidecar-fill";
/// Where a fill container mounts the volume it populates.
pub const FILL_TARGET: &str = "/target";

/// The agent's entry point inside the task container (from the `/agent` sidecar volume).
pub const ENTRYPOINT: &str = "/agent/entrypoint.sh";
/// The task container's working directory.
pub const WORKDIR: &str = "/workspace";

const GIB: i64 = 1 << 30;
const NANO: i64 = 1_000_000_000;

/// CPU and memory limits for an instance shape, per positive axis: `NanoCpus = vcpus × 1e9`,
/// `Memory = memory_gb × 2^30` and `MemorySwap = Memory` (no swap on top). Absent, zero or
/// negative axes are unlimited; absurd values saturate instead of overflowing.
pub fn resources_for_shape(
    shape: Option<&InstanceShape>,
) -> (Option<i64>, Option<i64>, Option<i64>) {
    let Some(shape) = shape else {
        return (None, None, None);
    };
    let cpus = (shape.vcpus > 0).then(|| shape.vcpus.saturating_mul(NANO));
    let memory = (shape.memory_gb > 0).then(|| shape.memory_gb.saturating_mul(GIB));
    (cpus, memory, memory)
}

/// `[A-Za-z0-9_.-]` stays, anything else becomes `-`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The cache volume of a sidecar image: its familiar repository name sanitised, `-`, and the
/// first 12 hex digits of its digest (the whole digest, `:` → `-`, when it is not
/// `algo:<12+ hex>`). E.g. `warpdotdev-warp-agent-0123456789ab`.
pub fn volume_name(familiar: &str, digest: &str) -> String {
    let short = match digest.split_once(':') {
        Some((_, hex)) if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            hex[..12].to_string()
        }
        _ => digest.replace(':', "-"),
    };
    let mut name = sanitize(familiar);
    // Docker wants a volume name to start with a letter or digit.
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'v');
    }
    format!("{name}-{}", sanitize(&short))
}

/// A readable, unique container name: `oz-<task id, sanitised, ≤ 40 chars>-<suffix>`.
pub fn container_name(task_id: &str, suffix: &str) -> String {
    let id: String = sanitize(task_id).chars().take(40).collect();
    format!("oz-{id}-{suffix}")
}

/// The labels every container of one execution carries.
pub fn labels(
    task_id: &str,
    execution_id: Option<&str>,
    worker_id: &str,
    role: &str,
) -> BTreeMap<String, String> {
    [
        (LABEL_TASK, task_id),
        (LABEL_EXECUTION, execution_id.unwrap_or("")),
        (LABEL_WORKER, worker_id),
        (LABEL_ROLE, role),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Checks the sidecar list as upstream does: every entry needs an image and a mount path, and
/// no two share a mount path. The message is upstream's.
pub fn validate_sidecars(sidecars: &[SidecarMount]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for s in sidecars {
        let image = s.image.trim();
        if image.is_empty() {
            return Err("additional sidecar has empty image".to_string());
        }
        let path = s.mount_path.trim();
        if path.is_empty() {
            return Err(format!("additional sidecar {image} has empty mount path"));
        }
        if !seen.insert(path) {
            return Err(format!("duplicate mount path {path} for sidecar {image}"));
        }
    }
    Ok(())
}

/// Whether a sidecar is the agent's own `/agent` mount.
pub fn is_agent_sidecar(sidecar: &SidecarMount) -> bool {
    sidecar.mount_path.trim() == AGENT_MOUNT_PATH
}

/// `<volume>:<mount path>:ro`, or without `:ro` when the sidecar is writable.
pub fn sidecar_bind(volume: &str, sidecar: &SidecarMount) -> String {
    let path = sidecar.mount_path.trim();
    if sidecar.read_write {
        format!("{volume}:{path}")
    } else {
        format!("{volume}:{path}:ro")
    }
}

/// The task's environment (spec first, then the operator's: later entries win in Docker too).
pub fn container_env(spec_env: &EnvList, operator_env: &EnvList) -> Vec<String> {
    spec_env
        .iter()
        .chain(operator_env)
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// The source of a bind spec `SRC:DST[:OPTS]` (a host path or a volume name).
pub fn bind_source(spec: &str) -> &str {
    spec.split_once(':').map_or(spec, |(src, _)| src)
}

/// The task container: `/agent/entrypoint.sh` + base args as `Cmd` (the image's `ENTRYPOINT`
/// stays), env, `/workspace`, sidecar binds then the operator's, limits and labels.
pub fn task_container(
    spec: &TaskSpec,
    image: &str,
    sidecar_binds: Vec<String>,
    operator_volumes: &[String],
    operator_env: &EnvList,
    labels: BTreeMap<String, String>,
) -> ContainerConfig {
    let (nano_cpus, memory, memory_swap) = resources_for_shape(spec.instance_shape.as_ref());
    let mut binds = sidecar_binds;
    binds.extend(operator_volumes.iter().cloned());
    let mut cmd = Vec::with_capacity(spec.base_args.len() + 1);
    cmd.push(ENTRYPOINT.to_string());
    cmd.extend(spec.base_args.iter().cloned());
    ContainerConfig {
        image: image.to_string(),
        cmd: Some(cmd),
        env: container_env(&spec.env, operator_env),
        working_dir: Some(WORKDIR.to_string()),
        labels,
        host_config: HostConfig {
            binds,
            nano_cpus,
            memory,
            memory_swap,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A container that is created but never started (sidecar export and fill): it only needs a
/// command for `create` to accept images that have none.
pub fn helper_container(
    image: &str,
    binds: Vec<String>,
    labels: BTreeMap<String, String>,
) -> ContainerConfig {
    ContainerConfig {
        image: image.to_string(),
        cmd: Some(vec!["/oz-never-started".to_string()]),
        labels,
        host_config: HostConfig {
            binds,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(vcpus: i64, memory_gb: i64) -> InstanceShape {
        InstanceShape { vcpus, memory_gb }
    }

    /// Upstream's `TestDockerResourcesForShape`.
    #[test]
    fn resources_for_shape() {
        assert_eq!(super::resources_for_shape(None), (None, None, None));
        assert_eq!(
            super::resources_for_shape(Some(&shape(0, 0))),
            (None, None, None)
        );
        assert_eq!(
            super::resources_for_shape(Some(&shape(-1, -4))),
            (None, None, None)
        );
        assert_eq!(
            super::resources_for_shape(Some(&shape(4, 16))),
            (Some(4_000_000_000), Some(16 << 30), Some(16 << 30))
        );
        assert_eq!(
            super::resources_for_shape(Some(&shape(2, 0))),
            (Some(2_000_000_000), None, None)
        );
        assert_eq!(
            super::resources_for_shape(Some(&shape(0, 1))),
            (None, Some(1 << 30), Some(1 << 30))
        );
        assert_eq!(
            super::resources_for_shape(Some(&shape(i64::MAX, i64::MAX))),
            (Some(i64::MAX), Some(i64::MAX), Some(i64::MAX))
        );
    }

    #[test]
    fn volume_names_follow_upstream() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            volume_name("warpdotdev/warp-agent", digest),
            "warpdotdev-warp-agent-0123456789ab"
        );
        assert_eq!(
            volume_name("127.0.0.1:5000/oz-test/tool", digest),
            "127.0.0.1-5000-oz-test-tool-0123456789ab"
        );
        assert_eq!(volume_name("a", "sha256:short"), "a-sha256-short");
        assert_eq!(volume_name("_x", "weird"), "v_x-weird");
        assert_eq!(
            volume_name("a", "sha256:ZZZZZZZZZZZZZZ"),
            "a-sha256-ZZZZZZZZZZZZZZ"
        );
    }

    #[test]
    fn container_names_are_sanitised_and_bounded() {
        assert_eq!(container_name("task-1", "ab12"), "oz-task-1-ab12");
        assert_eq!(container_name("a/b c\n", "x"), "oz-a-b-c--x");
        let long = "t".repeat(100);
        assert_eq!(container_name(&long, "x").len(), "oz-".len() + 40 + 2);
    }

    #[test]
    fn sidecars_are_validated_like_upstream() {
        let s = |image: &str, path: &str| SidecarMount {
            image: image.into(),
            mount_path: path.into(),
            read_write: false,
        };
        assert_eq!(validate_sidecars(&[]), Ok(()));
        assert_eq!(validate_sidecars(&[s("a", "/agent"), s("b", "/x")]), Ok(()));
        assert_eq!(
            validate_sidecars(&[s(" ", "/x")]).unwrap_err(),
            "additional sidecar has empty image"
        );
        assert_eq!(
            validate_sidecars(&[s("img", "")]).unwrap_err(),
            "additional sidecar img has empty mount path"
        );
        assert_eq!(
            validate_sidecars(&[s("a", "/x"), s("b", "/x")]).unwrap_err(),
            "duplicate mount path /x for sidecar b"
        );
        let rw = SidecarMount {
            read_write: true,
            ..s("a", "/data")
        };
        assert_eq!(sidecar_bind("vol", &rw), "vol:/data");
        assert_eq!(sidecar_bind("vol", &s("a", "/agent")), "vol:/agent:ro");
        assert!(is_agent_sidecar(&s("a", "/agent")));
        assert!(!is_agent_sidecar(&rw));
    }

    #[test]
    fn task_container_follows_upstream_layout() {
        let spec = TaskSpec {
            task_id: "t1".into(),
            execution_id: Some("e1".into()),
            task: Default::default(),
            image: "img".into(),
            env: vec![("A".into(), "1".into()), ("B".into(), "2".into())],
            base_args: vec!["agent".into(), "run".into()],
            sidecars: vec![],
            instance_shape: Some(shape(2, 1)),
            harness: None,
            secrets: vec![],
            telemetry: None,
        };
        let labels = labels("t1", Some("e1"), "w", ROLE_TASK);
        let config = task_container(
            &spec,
            "img:1",
            vec!["vol:/agent:ro".into()],
            &["/host:/data".into()],
            &vec![("A".into(), "op".into())],
            labels,
        );
        assert_eq!(
            config.cmd.as_deref(),
            Some(
                &[
                    "/agent/entrypoint.sh".to_string(),
                    "agent".into(),
                    "run".into()
                ][..]
            )
        );
        assert!(config.entrypoint.is_none());
        assert_eq!(config.env, ["A=1", "B=2", "A=op"]);
        assert_eq!(config.working_dir.as_deref(), Some("/workspace"));
        assert_eq!(config.host_config.binds, ["vol:/agent:ro", "/host:/data"]);
        assert_eq!(config.host_config.nano_cpus, Some(2_000_000_000));
        assert_eq!(config.host_config.memory, Some(1 << 30));
        assert_eq!(config.host_config.memory_swap, Some(1 << 30));
        assert_eq!(config.labels[LABEL_TASK], "t1");
        assert_eq!(config.labels[LABEL_EXECUTION], "e1");
        assert_eq!(config.labels[LABEL_WORKER], "w");
        assert_eq!(config.labels[LABEL_ROLE], "task");
        assert!(!config.host_config.auto_remove);
    }

    #[test]
    fn bind_sources() {
        assert_eq!(bind_source("/a:/b:ro"), "/a");
        assert_eq!(bind_source("vol:/b"), "vol");
        assert_eq!(bind_source("/only"), "/only");
    }
}
