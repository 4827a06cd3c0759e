//! The task Job manifest (reference `kubernetes-backend.md` §3.2–§3.7): one Job per execution,
//! one pod attempt, the workspace `emptyDir`, sidecars, the optional `setup` init container, the
//! `task` container, all merged into the operator's `pod_template`.
//!
//! Pure: the caller POSTs the returned value to `/apis/batch/v1/namespaces/<ns>/jobs`.

use serde_json::{Map, Value, json};

use super::env::{self, WORKSPACE};
use super::names::{self, Identity};
use super::{sidecars, template};
use crate::backend::{Failure, FailureReason};
use crate::settings::KubernetesSettings;
use crate::task::TaskSpec;

/// The task container's name; a template container with this name is customised in place.
pub const TASK_CONTAINER: &str = "task";
/// The setup init container's name.
pub const SETUP_CONTAINER: &str = "setup";

/// Sources the environment file `setup` may have written, then hands over to the agent's
/// entrypoint (which reports shutdown itself, so the wrapper must not).
pub const WRAPPER_SCRIPT: &str = "if [ -f \"$OZ_ENVIRONMENT_FILE\" ]; then\n  set -a\n  . \"$OZ_ENVIRONMENT_FILE\"\n  set +a\nfi\nexec /agent/entrypoint.sh \"$@\"";

/// `$0` of the wrapper: the task's arguments follow as its positional parameters.
const WRAPPER_ARG0: &str = "oz-task";

fn sh(script: &str) -> Value {
    json!(["/bin/sh", "-c", script])
}

fn workspace_mount() -> Value {
    json!({ "name": "workspace", "mountPath": WORKSPACE })
}

/// `emptyDir` of the workspace, with the configured size limit.
fn workspace_volume(size_limit: Option<&str>) -> Value {
    let mut empty_dir = Map::new();
    if let Some(limit) = size_limit {
        empty_dir.insert("sizeLimit".into(), json!(limit));
    }
    json!({ "name": "workspace", "emptyDir": empty_dir })
}

/// Builds the task Job for `spec`. Fails with `sidecar_prep` when a sidecar is unusable and with
/// `job_create` when the `pod_template` cannot host the worker's parts; nothing is created then.
pub fn task_job(
    worker_id: &str,
    spec: &TaskSpec,
    k: &KubernetesSettings,
) -> Result<Value, Failure> {
    sidecars::validate(&spec.sidecars, k.use_image_volumes)
        .map_err(|m| Failure::new(FailureReason::SidecarPrep, m))?;
    if let Some(t) = &k.pod_template {
        template::validate(t).map_err(|m| Failure::new(FailureReason::JobCreate, m))?;
    }
    let identity = Identity {
        worker_id,
        task_id: &spec.task_id,
        execution_id: names::execution_id(&spec.task_id, spec.execution_id.as_deref()),
    };
    let name = identity.job_name();
    let labels = identity.labels(&k.extra_labels);
    let pull = k.image_pull_policy;
    let env = env::task_env(&spec.env, &k.task_env, &spec.task_id);
    let parts = sidecars::parts(&spec.sidecars, sidecars::Mode::of(k), pull);
    let mut mounts = vec![workspace_mount()];
    mounts.extend(parts.mounts.iter().cloned());

    let mut pod = template::base(k.pod_template.as_ref());
    pod.insert("restartPolicy".into(), json!("Never"));

    // Copy containers, then setup, then the template's own (its native sidecars therefore
    // start once the sidecar files and setup are in place).
    let mut init = parts.init_containers;
    if let Some(setup) = &k.setup_command {
        init.push(json!({
            "name": SETUP_CONTAINER,
            "image": spec.image,
            "imagePullPolicy": pull.as_str(),
            "command": sh(setup),
            "workingDir": WORKSPACE,
            "env": env::to_json(&env),
            "volumeMounts": mounts,
        }));
    }
    init.extend(template::take_list(&mut pod, "initContainers"));
    if !init.is_empty() {
        pod.insert("initContainers".into(), Value::Array(init));
    }

    let mut volumes = template::take_list(&mut pod, "volumes");
    volumes.push(workspace_volume(k.workspace_size_limit.as_deref()));
    volumes.extend(parts.volumes);
    pod.insert("volumes".into(), Value::Array(volumes));

    let mut containers = template::take_list(&mut pod, "containers");
    let worker_task = TaskContainer {
        spec,
        k,
        env: &env,
        mounts: &mounts,
    };
    match containers
        .iter_mut()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(TASK_CONTAINER))
    {
        Some(Value::Object(found)) => worker_task.customise(found),
        _ => containers.push(worker_task.fresh()),
    }
    pod.insert("containers".into(), Value::Array(containers));

    let (mut job_meta, meta) =
        template::job_metadata(&name, &k.namespace, &labels, &k.extra_annotations);
    // The raw ids go on the Job only (re-attach reads them there); pods keep the operator's.
    job_meta["annotations"] = json!(identity.annotations(&k.extra_annotations));

    let mut job_spec = json!({
        "backoffLimit": 0,
        "template": { "metadata": meta, "spec": pod },
    });
    if let Some(deadline) = k.active_deadline_seconds {
        job_spec["activeDeadlineSeconds"] = json!(deadline);
    }
    // `None` when cleanup is off: a kept Job stays until the operator removes it.
    if let Some(ttl) = k.ttl_seconds_after_finished {
        job_spec["ttlSecondsAfterFinished"] = json!(ttl);
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": job_spec,
    }))
}

/// The worker's side of the `task` container.
struct TaskContainer<'a> {
    spec: &'a TaskSpec,
    k: &'a KubernetesSettings,
    env: &'a crate::settings::EnvList,
    mounts: &'a [Value],
}

impl TaskContainer<'_> {
    fn command() -> Value {
        json!(["/bin/sh", "-c", WRAPPER_SCRIPT, WRAPPER_ARG0])
    }

    fn pre_stop(&self) -> Option<Value> {
        self.k
            .teardown_command
            .as_deref()
            .map(|t| json!({ "preStop": { "exec": { "command": sh(t) } } }))
    }

    /// The container when the template has none named `task`.
    fn fresh(&self) -> Value {
        let mut c = json!({
            "name": TASK_CONTAINER,
            "image": self.spec.image,
            "imagePullPolicy": self.k.image_pull_policy.as_str(),
            "command": Self::command(),
            "args": self.spec.base_args,
            "workingDir": WORKSPACE,
            "env": env::to_json(self.env),
            "volumeMounts": self.mounts,
        });
        if let Some(lifecycle) = self.pre_stop() {
            c["lifecycle"] = lifecycle;
        }
        if let Some(amounts) = template::shape_resources(self.spec.instance_shape.as_ref()) {
            c["resources"] = template::merge_resources(None, &amounts);
        }
        c
    }

    /// Customises the template's `task` container where it stands: the worker owns image,
    /// command, args and working directory; the template's pull policy wins when it set one;
    /// mounts and env are merged; everything else the template says is kept.
    fn customise(&self, c: &mut Map<String, Value>) {
        c.insert("image".into(), json!(self.spec.image));
        c.insert("command".into(), Self::command());
        c.insert("args".into(), json!(self.spec.base_args));
        c.insert("workingDir".into(), json!(WORKSPACE));
        let policy_set = c
            .get("imagePullPolicy")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.is_empty());
        if !policy_set {
            c.insert(
                "imagePullPolicy".into(),
                json!(self.k.image_pull_policy.as_str()),
            );
        }
        let mut mounts = template::take_list(c, "volumeMounts");
        mounts.extend(self.mounts.iter().cloned());
        c.insert("volumeMounts".into(), Value::Array(mounts));
        let template_env = template::take_list(c, "env");
        c.insert(
            "env".into(),
            Value::Array(env::merge_into(template_env, self.env)),
        );
        if let Some(lifecycle) = self.pre_stop() {
            c.insert("lifecycle".into(), lifecycle);
        }
        if let Some(amounts) = template::shape_resources(self.spec.instance_shape.as_ref()) {
            let merged = template::merge_resources(c.remove("resources"), &amounts);
            c.insert("resources".into(), merged);
        }
    }
}

/// The operator's literal env values of the task pod, for the task's redactor
/// (`upstream-newer.md` §4): the config's `task_env` (`-e`) and every `env[].value` of the
/// `pod_template`'s init containers and containers. The task's `env_vars` are registered
/// already; the worker's own variables (run id, workspace paths) are not secrets, and
/// redacting them would also blank the pod name out of every record. `valueFrom` entries
/// name a Secret or ConfigMap the worker never reads, so they cannot be scrubbed.
pub fn operator_env_values(k: &KubernetesSettings) -> Vec<&str> {
    let template = k
        .pod_template
        .as_ref()
        .into_iter()
        .flat_map(|t| ["initContainers", "containers"].map(|f| &t[f]))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|c| c["env"].as_array())
        .flatten()
        .filter_map(|e| e["value"].as_str());
    k.task_env
        .iter()
        .map(|(_, v)| v.as_str())
        .chain(template)
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
