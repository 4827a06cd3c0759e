//! The startup preflight Job (reference `kubernetes-backend.md` §4): before taking tasks, prove
//! that this service account and namespace can create Jobs whose pods pass admission in the
//! chosen sidecar mode. Copy mode runs a root init container; copy-readiness mode a root
//! native sidecar, and must complete; image-volume mode mounts the preflight image as an image
//! volume and must complete.
//!
//! Pure: the manifest, the verdict on what the runner observed, and the error texts.
//!
//! Differences from the Go worker (README, "Differences"): the preflight Job carries the
//! operator's `extra_labels`/`extra_annotations` (an admission policy that requires a label
//! would otherwise refuse the preflight but admit the tasks, or the reverse), an
//! `oz-preflight` label (the worker's hash) so leftovers can be found, and a TTL and deadline
//! so that a worker killed between create and delete leaves nothing behind for long.

use std::time::Duration;

use serde_json::{Value, json};

use super::details::{Source, event_message};
use super::message::text;
use super::names::label_hash;
use super::outcome::{self, Context, FirstSeen, Observation, Verdict};
use super::sidecars::Mode;
use super::template;
use crate::settings::KubernetesSettings;

/// How long the runner waits for a verdict.
pub const WAIT: Duration = Duration::from_secs(15);
/// How often it looks.
pub const POLL: Duration = Duration::from_millis(500);
/// Label with the worker's hash on the preflight Job (not `oz-worker-hash`: re-attach lists
/// task Jobs by that one).
pub const LABEL_PREFLIGHT: &str = "oz-preflight";
/// A preflight Job left behind by a killed worker goes away after this long.
const LEFTOVER_SECONDS: i64 = 300;
const IMAGE_MOUNT: &str = "/preflight-image";

fn mode_image_volumes(k: &KubernetesSettings) -> bool {
    k.use_image_volumes
}

/// Image volumes and copy readiness are only proven by a pod that completes; plain copy mode
/// by one that was admitted.
fn needs_completion(k: &KubernetesSettings) -> bool {
    Mode::of(k) != Mode::Copy
}

/// A native sidecar that idles until the kubelet stops it, as a copy-readiness sidecar does.
const IDLE_SIDECAR: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

/// Requests 10m/16Mi, limits 100m/64Mi, unless `preflight_resources` replaces them.
fn resources(k: &KubernetesSettings) -> Value {
    k.preflight_resources.clone().unwrap_or_else(|| {
        json!({
            "requests": { "cpu": "10m", "memory": "16Mi" },
            "limits": { "cpu": "100m", "memory": "64Mi" },
        })
    })
}

/// A preflight container: the preflight image running `script`, with the preflight resources.
fn container(name: &str, script: &str, k: &KubernetesSettings) -> Value {
    json!({
        "name": name,
        "image": k.preflight_image,
        "imagePullPolicy": k.image_pull_policy.as_str(),
        "command": ["/bin/sh", "-c", script],
        "resources": resources(k),
    })
}

/// The preflight Job named `name` (see [`super::names::preflight_job_name`]).
pub fn preflight_job(name: &str, worker_id: &str, k: &KubernetesSettings) -> Value {
    let pull = k.image_pull_policy.as_str();
    let image = k.preflight_image.as_str();
    let mut pod = template::base(k.pod_template.as_ref());
    pod.insert("restartPolicy".into(), json!("Never"));
    pod.remove("initContainers");
    let mut volumes = template::take_list(&mut pod, "volumes");
    if mode_image_volumes(k) {
        volumes.push(json!({
            "name": "preflight-image",
            "image": { "reference": image, "pullPolicy": pull },
        }));
        let mut main = container("main", &format!("test -d {IMAGE_MOUNT}"), k);
        main["volumeMounts"] =
            json!([{ "name": "preflight-image", "mountPath": IMAGE_MOUNT, "readOnly": true }]);
        pod.insert("containers".into(), json!([main]));
    } else {
        let mut init = container("root-init-preflight", "true", k);
        init["securityContext"] = json!({ "runAsUser": 0, "runAsGroup": 0 });
        if Mode::of(k) == Mode::CopyReadiness {
            init["restartPolicy"] = json!("Always");
            init["command"] = json!(["/bin/sh", "-c", IDLE_SIDECAR]);
        }
        pod.insert("initContainers".into(), json!([init]));
        pod.insert("containers".into(), json!([container("main", "true", k)]));
    }
    if !volumes.is_empty() {
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    let mut labels = k.extra_labels.clone();
    labels.insert(LABEL_PREFLIGHT.into(), label_hash(worker_id));
    let (job_meta, meta) =
        template::job_metadata(name, &k.namespace, &labels, &k.extra_annotations);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": LEFTOVER_SECONDS,
            "ttlSecondsAfterFinished": LEFTOVER_SECONDS,
            "template": { "metadata": meta, "spec": pod },
        },
    })
}

/// Where the preflight stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting,
    Passed,
    /// The inner error, to be wrapped with [`wrap`].
    Failed(String),
}

/// Judges the preflight from the Job, its pods (by `job-name`) and the events about them.
/// Copy mode passes once a pod exists (admission is what it proves) unless that pod already
/// shows a failure; image-volume mode needs the pod to succeed.
pub fn verdict(
    name: &str,
    k: &KubernetesSettings,
    job: Option<&Value>,
    pods: &[Value],
    events: &[Value],
    now: std::time::SystemTime,
) -> State {
    if needs_completion(k) {
        let complete = job
            .and_then(|j| j.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| text(c, "/type") == "Complete" && text(c, "/status") == "True");
        if complete || pods.iter().any(|p| text(p, "/status/phase") == "Succeeded") {
            return State::Passed;
        }
    }
    let ctx = Context {
        namespace: &k.namespace,
        job_name: name,
        job_uid: None,
        unschedulable_timeout: None,
        // Within the preflight's few seconds any mount failure is the answer.
        volume_mount_timeout: Some(Duration::ZERO),
    };
    let obs = Observation {
        job: None,
        pods,
        events,
        source: Source::SafetyPoll,
        now,
    };
    if let Verdict::Failed(f) = outcome::classify(&ctx, &obs, &mut FirstSeen::default()) {
        return State::Failed(f.failure.message);
    }
    if !needs_completion(k) && !pods.is_empty() {
        return State::Passed;
    }
    let job_failed = job
        .and_then(|j| j.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| text(c, "/type") == "Failed" && text(c, "/status") == "True");
    if job_failed {
        return State::Failed(format!("startup preflight Job {name:?} failed"));
    }
    let job_uid = job.map(|j| text(j, "/metadata/uid")).unwrap_or("");
    if let Some(e) = events.iter().find(|e| {
        text(e, "/type") == "Warning"
            && text(e, "/reason") == "FailedCreate"
            && (job_uid.is_empty() || super::details::event_subject(e) == job_uid)
    }) {
        let msg = match event_message(e).trim() {
            "" => "FailedCreate",
            m => m,
        };
        return State::Failed(format!(
            "preflight Job {name:?} could not create a Pod: {msg}"
        ));
    }
    State::Waiting
}

/// The inner error when [`WAIT`] ran out.
pub fn timeout_message(name: &str, k: &KubernetesSettings) -> String {
    if needs_completion(k) {
        format!(
            "timed out waiting for startup preflight Job {name:?} to complete or surface a failure"
        )
    } else {
        format!(
            "timed out waiting for startup preflight Job {name:?} to create a Pod or surface a \
             controller failure"
        )
    }
}

/// The startup error for any preflight failure (the POST's included), naming what to check.
pub fn wrap(k: &KubernetesSettings, inner: &str) -> String {
    let ns = &k.namespace;
    let hint = if inner.contains("ErrImagePull") || inner.contains("ImagePullBackOff") {
        format!(
            "; the preflight image {:?} could not be pulled: set backend.kubernetes.preflight_image \
             to an image the cluster can pull",
            k.preflight_image
        )
    } else {
        String::new()
    };
    if mode_image_volumes(k) {
        format!(
            "kubernetes startup preflight failed: the kubernetes backend requires creating task \
             Jobs that mount sidecars via image volumes; verify service account/RBAC, Pod Security \
             or admission policy, and Kubernetes/runtime image-volume support for namespace \
             {ns:?}: {inner}{hint}"
        )
    } else {
        format!(
            "kubernetes startup preflight failed: the kubernetes backend requires creating task \
             Jobs with a root init container for sidecar materialization; verify service \
             account/RBAC and Pod Security or admission policy for namespace {ns:?}: {inner}{hint}"
        )
    }
}

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
