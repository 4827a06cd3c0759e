//! Sidecar images in a task pod (reference `kubernetes-backend.md` §3.1 and §3.4): the checks
//! made before any API call, and the two ways an image's files reach the task, copied by a root
//! init container into an `emptyDir` (default) or mounted as an image volume.

use serde_json::{Value, json};

use super::env::WORKSPACE;
use crate::protocol::SidecarMount;
use crate::settings::PullPolicy;

/// Where a copy init container sees its `emptyDir`.
const COPY_TARGET: &str = "/target";

/// Copies the sidecar image's root filesystem (minus the kernel, runtime and secret mounts and
/// the target itself) into `/target` as root, without keeping owners or modes. The exact text
/// is upstream's (its test pins it), so both workers produce the same pods.
pub const MATERIALIZE_SCRIPT: &str = "tar \\\n  --exclude=./target \\\n  --exclude=./proc \\\n  --exclude=./sys \\\n  --exclude=./dev \\\n  --exclude=./.dockerenv \\\n  --exclude=./var/run/secrets \\\n  --exclude=./run/secrets \\\n  -C / -cf - . | tar --no-same-owner --no-same-permissions -C /target -xf -";

/// The first sidecar problem, in upstream's words; the task fails with `sidecar_prep` before
/// anything is created.
pub fn validate(sidecars: &[SidecarMount], image_volumes: bool) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::with_capacity(sidecars.len());
    for s in sidecars {
        let image = s.image.trim();
        if image.is_empty() {
            return Err("additional sidecar has empty image".into());
        }
        let path = s.mount_path.as_str();
        if path.trim().is_empty() {
            return Err(format!("additional sidecar {image} has empty mount path"));
        }
        if path == WORKSPACE {
            return Err(format!(
                "additional sidecar {image} cannot mount at reserved path {WORKSPACE}"
            ));
        }
        if seen.contains(&path) {
            return Err(format!(
                "duplicate mount path {path} for additional sidecar {image}"
            ));
        }
        if image_volumes && s.read_write {
            return Err(format!(
                "additional sidecar {image} cannot request a read-write mount: kubernetes \
                 image volumes are read-only"
            ));
        }
        seen.push(path);
    }
    Ok(())
}

/// What the sidecars add to the pod.
#[derive(Debug, Default, PartialEq)]
pub struct Parts {
    pub volumes: Vec<Value>,
    /// Copy init containers (copy mode only), to run before `setup`.
    pub init_containers: Vec<Value>,
    /// Mounts for the setup and task containers, after the workspace mount.
    pub mounts: Vec<Value>,
}

/// The volumes, copy init containers and task mounts of `sidecars`.
pub fn parts(sidecars: &[SidecarMount], image_volumes: bool, pull: PullPolicy) -> Parts {
    let mut parts = Parts::default();
    for (i, s) in sidecars.iter().enumerate() {
        let image = s.image.trim();
        if image_volumes {
            let volume = format!("sidecar-{i}-image");
            parts.volumes.push(json!({
                "name": volume,
                "image": { "reference": image, "pullPolicy": pull.as_str() },
            }));
            parts.mounts.push(json!({
                "name": volume,
                "mountPath": s.mount_path,
                "readOnly": true,
            }));
        } else {
            let volume = format!("sidecar-{i}-data");
            parts
                .volumes
                .push(json!({ "name": volume, "emptyDir": {} }));
            parts.init_containers.push(json!({
                "name": format!("copy-sidecar-{i}"),
                "image": image,
                "imagePullPolicy": pull.as_str(),
                "command": ["/bin/sh", "-c", MATERIALIZE_SCRIPT],
                "securityContext": { "runAsUser": 0, "runAsGroup": 0 },
                "volumeMounts": [{ "name": volume, "mountPath": COPY_TARGET }],
            }));
            parts.mounts.push(json!({
                "name": volume,
                "mountPath": s.mount_path,
                "readOnly": !s.read_write,
            }));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(image: &str, path: &str, rw: bool) -> SidecarMount {
        SidecarMount {
            image: image.into(),
            mount_path: path.into(),
            read_write: rw,
        }
    }

    #[test]
    fn materialization_script_matches_expected_shell() {
        let expected = [
            "tar \\",
            "  --exclude=./target \\",
            "  --exclude=./proc \\",
            "  --exclude=./sys \\",
            "  --exclude=./dev \\",
            "  --exclude=./.dockerenv \\",
            "  --exclude=./var/run/secrets \\",
            "  --exclude=./run/secrets \\",
            "  -C / -cf - . | tar --no-same-owner --no-same-permissions -C /target -xf -",
        ]
        .join("\n");
        assert_eq!(MATERIALIZE_SCRIPT, expected);
    }

    #[test]
    fn validation_reports_the_first_problem() {
        let cases: &[(&[SidecarMount], bool, &str)] = &[
            (
                &[sidecar(" ", "/a", false)],
                false,
                "additional sidecar has empty image",
            ),
            (
                &[sidecar("img", "", false)],
                false,
                "additional sidecar img has empty mount path",
            ),
            (
                &[sidecar("img", "/workspace", false)],
                false,
                "additional sidecar img cannot mount at reserved path /workspace",
            ),
            (
                &[sidecar("a", "/m", false), sidecar("b", "/m", false)],
                false,
                "duplicate mount path /m for additional sidecar b",
            ),
            (
                &[sidecar("img", "/m", true)],
                true,
                "additional sidecar img cannot request a read-write mount: kubernetes image \
                 volumes are read-only",
            ),
        ];
        for (sidecars, image_volumes, want) in cases {
            assert_eq!(validate(sidecars, *image_volumes).unwrap_err(), *want);
        }
    }

    #[test]
    fn read_write_mounts_are_fine_in_copy_mode() {
        assert_eq!(validate(&[sidecar("img", "/m", true)], false), Ok(()));
        assert_eq!(validate(&[], true), Ok(()));
    }

    #[test]
    fn copy_mode_uses_root_init_containers_and_empty_dirs() {
        let p = parts(
            &[
                sidecar("agent:1", "/agent", false),
                sidecar("tool:2", "/mnt/t", true),
            ],
            false,
            PullPolicy::IfNotPresent,
        );
        assert_eq!(
            p.volumes,
            [
                json!({"name": "sidecar-0-data", "emptyDir": {}}),
                json!({"name": "sidecar-1-data", "emptyDir": {}}),
            ]
        );
        assert_eq!(p.init_containers.len(), 2);
        let init = &p.init_containers[0];
        assert_eq!(init["name"], "copy-sidecar-0");
        assert_eq!(init["image"], "agent:1");
        assert_eq!(init["securityContext"]["runAsUser"], 0);
        assert_eq!(init["securityContext"]["runAsGroup"], 0);
        assert_eq!(
            init["volumeMounts"],
            json!([{"name": "sidecar-0-data", "mountPath": "/target"}])
        );
        assert_eq!(init["command"][2], MATERIALIZE_SCRIPT);
        assert!(init.get("env").is_none() && init.get("resources").is_none());
        assert_eq!(p.mounts[0]["readOnly"], true);
        assert_eq!(p.mounts[1]["readOnly"], false, "read_write is honoured");
        assert_eq!(p.mounts[1]["mountPath"], "/mnt/t");
    }

    #[test]
    fn image_volume_mode_mounts_read_only_without_init_containers() {
        let p = parts(
            &[sidecar("agent:1", "/agent", false)],
            true,
            PullPolicy::Always,
        );
        assert!(p.init_containers.is_empty());
        assert_eq!(
            p.volumes,
            [
                json!({"name": "sidecar-0-image", "image": {"reference": "agent:1", "pullPolicy": "Always"}})
            ]
        );
        assert_eq!(
            p.mounts,
            [json!({"name": "sidecar-0-image", "mountPath": "/agent", "readOnly": true})]
        );
    }
}
