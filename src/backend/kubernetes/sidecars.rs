//! Sidecar images in a task pod (reference `kubernetes-backend.md` §3.1 and §3.4): the checks
//! made before any API call, and the ways an image's files reach the task: copied by a root
//! init container into an `emptyDir` (default), copied by a root native sidecar that proves its
//! copy before setup starts (`sidecar_copy_readiness`, `upstream-newer.md` §6), or mounted as
//! an image volume.

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

/// How a copy-readiness sidecar marks a failed copy in its termination message; the outcome
/// classifier turns it into `sidecar_prep`.
pub const COPY_FAILED_MARKER: &str = "oz-sidecar-copy-failed";

/// Where a copy-readiness sidecar keeps its private state (never visible to setup or the task).
const COPY_STATE: &str = "/oz-copy-state";

/// The copy-readiness script: copy once (clearing `/target` first), through a FIFO so that
/// both `tar` exit statuses are checked (a pipeline only reports the last), mark `complete` for
/// the startup probe, or `failed` (also on every later restart, so a half-copied tree is never
/// taken for a good one); then idle until the kubelet stops it at wind-down, exiting 0 on TERM.
/// A restart after a completed copy leaves the task's changes alone.
pub const READINESS_SCRIPT: &str = r#"state=/oz-copy-state
fail() { touch "$state/failed"; echo oz-sidecar-copy-failed > /dev/termination-log; exit 1; }
[ -f "$state/failed" ] && fail
if [ ! -f "$state/complete" ]; then
  rm -rf /target/* /target/.[!.]* /target/..?* || fail
  fifo="$state/copy.fifo"
  rm -f "$fifo" && mkfifo "$fifo" || fail
  tar --no-same-owner --no-same-permissions -C /target -xf - < "$fifo" &
  reader=$!
  tar     --exclude=./target     --exclude=./proc     --exclude=./sys     --exclude=./dev     --exclude=./.dockerenv     --exclude=./var/run/secrets     --exclude=./run/secrets     --exclude=./oz-copy-state     -C / -cf - . > "$fifo"
  wrote=$?
  wait "$reader"
  read=$?
  rm -f "$fifo"
  [ "$wrote" -eq 0 ] && [ "$read" -eq 0 ] || fail
  touch "$state/complete"
fi
trap 'exit 0' TERM
while :; do sleep 3600 & wait $!; done"#;

/// How sidecar files reach the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A root init container copies the image into an `emptyDir`.
    Copy,
    /// A root native sidecar copies it and a startup probe holds setup until the copy is proven.
    CopyReadiness,
    /// Kubernetes image volumes, read-only.
    ImageVolumes,
}

impl Mode {
    pub fn of(k: &crate::settings::KubernetesSettings) -> Mode {
        match (k.use_image_volumes, k.sidecar_copy_readiness) {
            (true, _) => Mode::ImageVolumes,
            (false, true) => Mode::CopyReadiness,
            (false, false) => Mode::Copy,
        }
    }
}

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
pub fn parts(sidecars: &[SidecarMount], mode: Mode, pull: PullPolicy) -> Parts {
    let mut parts = Parts::default();
    for (i, s) in sidecars.iter().enumerate() {
        let image = s.image.trim();
        if mode == Mode::ImageVolumes {
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
            let mut init = json!({
                "name": format!("copy-sidecar-{i}"),
                "image": image,
                "imagePullPolicy": pull.as_str(),
                "command": ["/bin/sh", "-c", MATERIALIZE_SCRIPT],
                "securityContext": { "runAsUser": 0, "runAsGroup": 0 },
                "volumeMounts": [{ "name": volume, "mountPath": COPY_TARGET }],
            });
            if mode == Mode::CopyReadiness {
                let state = format!("sidecar-{i}-state");
                parts.volumes.push(json!({ "name": state, "emptyDir": {} }));
                init["command"] = json!(["/bin/sh", "-c", READINESS_SCRIPT]);
                init["restartPolicy"] = json!("Always");
                init["volumeMounts"] = json!([
                    { "name": volume, "mountPath": COPY_TARGET },
                    { "name": state, "mountPath": COPY_STATE },
                ]);
                init["startupProbe"] = json!({
                    "exec": { "command": ["test", "-f", format!("{COPY_STATE}/complete")] },
                    "periodSeconds": 1,
                    "timeoutSeconds": 1,
                    "failureThreshold": 600,
                });
            }
            parts.init_containers.push(init);
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
            Mode::Copy,
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
            Mode::ImageVolumes,
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

    #[test]
    fn copy_readiness_uses_root_native_sidecars_with_private_state() {
        let p = parts(
            &[sidecar("agent:1", "/agent", false)],
            Mode::CopyReadiness,
            PullPolicy::IfNotPresent,
        );
        assert_eq!(
            p.volumes,
            [
                json!({"name": "sidecar-0-data", "emptyDir": {}}),
                json!({"name": "sidecar-0-state", "emptyDir": {}}),
            ]
        );
        let init = &p.init_containers[0];
        assert_eq!(init["restartPolicy"], "Always");
        assert_eq!(init["securityContext"]["runAsUser"], 0);
        assert_eq!(init["command"][2], READINESS_SCRIPT);
        assert_eq!(
            init["startupProbe"]["exec"]["command"],
            json!(["test", "-f", "/oz-copy-state/complete"])
        );
        assert_eq!(init["startupProbe"]["failureThreshold"], 600);
        assert_eq!(init["volumeMounts"][1]["mountPath"], "/oz-copy-state");
        // The task sees the data, never the state.
        assert_eq!(p.mounts.len(), 1);
        assert_eq!(p.mounts[0]["name"], "sidecar-0-data");
    }

    /// Runs the readiness script under a real shell with its paths moved into a scratch
    /// directory and `/` replaced by a small fake image root.
    fn run_readiness(dir: &std::path::Path) -> std::process::Output {
        let script = READINESS_SCRIPT
            .replace("/oz-copy-state", &dir.join("state").display().to_string())
            .replace(
                "/dev/termination-log",
                &dir.join("termination-log").display().to_string(),
            )
            .replace(
                "-C /target",
                &format!("-C {}", dir.join("target").display()),
            )
            .replace("/target/", &format!("{}/", dir.join("target").display()))
            .replace("-C / ", &format!("-C {} ", dir.join("root").display()))
            // Do not idle forever in a test.
            .replace("while :; do sleep 3600 & wait $!; done", "echo idle");
        std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .expect("/bin/sh runs")
    }

    #[test]
    fn readiness_script_copies_once_and_keeps_task_changes() {
        let dir = std::env::temp_dir().join(format!("oz-k8s-readiness-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["state", "target", "root/bin", "root/proc"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("root/bin/agent"), "v1").unwrap();
        std::fs::write(dir.join("root/proc/skip"), "x").unwrap();
        std::fs::write(dir.join("target/stale"), "old").unwrap();
        std::fs::write(dir.join("target/.hidden"), "old").unwrap();
        let out = run_readiness(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("target/bin/agent")).unwrap(),
            "v1"
        );
        assert!(
            !dir.join("target/proc/skip").exists(),
            "excluded path copied"
        );
        assert!(!dir.join("target/stale").exists(), "target not cleared");
        assert!(
            !dir.join("target/.hidden").exists(),
            "dot files not cleared"
        );
        assert!(dir.join("state/complete").exists());
        // A restart after completion leaves what the task changed.
        std::fs::write(dir.join("target/bin/agent"), "changed by task").unwrap();
        assert!(run_readiness(&dir).status.success());
        assert_eq!(
            std::fs::read_to_string(dir.join("target/bin/agent")).unwrap(),
            "changed by task"
        );
        // A failed copy stays failed on restart and says so in the termination message.
        std::fs::remove_file(dir.join("state/complete")).unwrap();
        std::fs::remove_dir_all(dir.join("root")).unwrap();
        let out = run_readiness(&dir);
        assert!(!out.status.success());
        assert!(dir.join("state/failed").exists());
        let log = std::fs::read_to_string(dir.join("termination-log")).unwrap();
        assert_eq!(log.trim(), COPY_FAILED_MARKER);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        assert!(!run_readiness(&dir).status.success(), "failed is sticky");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
