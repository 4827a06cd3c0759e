use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::backend::kubernetes::fixtures::{self, WORKER, shape, sidecar};
use crate::settings::PullPolicy;

fn pod(job: &Value) -> &Value {
    &job["spec"]["template"]["spec"]
}

fn container<'a>(job: &'a Value, name: &str) -> &'a Value {
    pod(job)["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env_of(c: &Value) -> BTreeMap<String, Value> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn names_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().map(|c| c["name"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn default_job_shape() {
    let job = task_job(
        WORKER,
        &fixtures::spec("task-1", None),
        &fixtures::settings(),
    )
    .unwrap();
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    // No execution id: name and labels fall back to the task id.
    assert_eq!(job["metadata"]["name"], names::job_name("task-1", "task-1"));
    assert_eq!(job["metadata"]["namespace"], "agents");
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["oz-execution-id"], "task-1");
    assert_eq!(labels["oz-execution-hash"], names::label_hash("task-1"));
    assert_eq!(labels, &job["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(
        job["metadata"]["annotations"],
        json!({names::ANNOTATION_TASK_ID: "task-1", names::ANNOTATION_EXECUTION_ID: "task-1"})
    );
    assert!(
        job["spec"]["template"]["metadata"]
            .get("annotations")
            .is_none()
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 86_400);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 28_800);
    for absent in [
        "parallelism",
        "completions",
        "selector",
        "suspend",
        "podFailurePolicy",
    ] {
        assert!(job["spec"].get(absent).is_none(), "{absent}");
    }
    let pod = pod(&job);
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(names_of(&pod["initContainers"]), ["copy-sidecar-0"]);
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "workspace", "emptyDir": {}},
            {"name": "sidecar-0-data", "emptyDir": {}},
        ])
    );
    let task = container(&job, "task");
    assert_eq!(task["image"], "ghcr.io/acme/dev:1");
    assert_eq!(task["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        task["command"],
        json!(["/bin/sh", "-c", WRAPPER_SCRIPT, "oz-task"])
    );
    assert_eq!(task["args"][0], "agent");
    assert_eq!(task["workingDir"], "/workspace");
    assert_eq!(
        task["volumeMounts"],
        json!([
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "sidecar-0-data", "mountPath": "/agent", "readOnly": true},
        ])
    );
    let env = env_of(task);
    assert_eq!(env["OZ_RUN_ID"]["value"], "task-1");
    assert_eq!(env["WARP_WORKER_BACKEND"]["value"], "kubernetes");
    assert!(!env.contains_key("OZ_EXECUTION_ID"));
    assert!(task.get("lifecycle").is_none() && task.get("resources").is_none());
}

#[test]
fn wrapper_script_delegates_to_entrypoint() {
    assert!(WRAPPER_SCRIPT.contains(". \"$OZ_ENVIRONMENT_FILE\""));
    assert!(WRAPPER_SCRIPT.contains("set -a"));
    assert!(WRAPPER_SCRIPT.contains("exec /agent/entrypoint.sh \"$@\""));
    assert!(!WRAPPER_SCRIPT.contains("report-shutdown"));
}

#[test]
fn wrapper_script_runs_under_a_real_shell() {
    // The script is shell: run it with a stand-in entrypoint path to prove it parses, sources
    // the env file and forwards arguments.
    let dir = std::env::temp_dir().join(format!("oz-k8s-wrapper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    std::fs::write(&env_file, "FROM_SETUP=yes\n").unwrap();
    let script = WRAPPER_SCRIPT.replace("exec /agent/entrypoint.sh", "exec /bin/echo");
    let script = format!("{script} \"$FROM_SETUP\"");
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script, "oz-task", "agent", "run"])
        .env("OZ_ENVIRONMENT_FILE", &env_file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "agent run yes\n");
}

#[test]
fn image_volumes_with_setup() {
    let mut k = fixtures::settings();
    k.use_image_volumes = true;
    k.image_pull_policy = PullPolicy::Always;
    k.setup_command = Some("make deps".into());
    let job = task_job(WORKER, &fixtures::spec("task-1", Some("execution-1")), &k).unwrap();
    assert_eq!(
        job["metadata"]["name"],
        names::job_name("task-1", "execution-1")
    );
    assert_ne!(job["metadata"]["name"], names::job_name("task-1", "task-1"));
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["oz-task-id"], "task-1");
    assert_eq!(labels["oz-task-hash"], "7afaa346b4bf92bf");
    assert_eq!(labels["oz-execution-hash"], "63093cff69b83efb");
    let pod = pod(&job);
    assert_eq!(names_of(&pod["initContainers"]), ["setup"]);
    assert_eq!(
        pod["volumes"][1],
        json!({"name": "sidecar-0-image", "image": {"reference": "warp/agent:latest", "pullPolicy": "Always"}})
    );
    assert_eq!(pod["volumes"].as_array().unwrap().len(), 2);
    let setup = &pod["initContainers"][0];
    assert_eq!(setup["command"], json!(["/bin/sh", "-c", "make deps"]));
    assert_eq!(setup["image"], "ghcr.io/acme/dev:1");
    assert_eq!(setup["workingDir"], "/workspace");
    assert_eq!(setup["imagePullPolicy"], "Always");
    let agent = json!({"name": "sidecar-0-image", "mountPath": "/agent", "readOnly": true});
    assert_eq!(setup["volumeMounts"][1], agent);
    assert_eq!(container(&job, "task")["volumeMounts"][1], agent);
    assert_eq!(setup["env"], container(&job, "task")["env"]);
    assert!(setup.get("securityContext").is_none() && setup.get("resources").is_none());
}

#[test]
fn copy_mode_puts_copy_containers_before_setup_and_honours_read_write() {
    let mut k = fixtures::settings();
    k.setup_command = Some("true".into());
    let mut spec = fixtures::spec("task-1", None);
    spec.sidecars[0].read_write = true;
    let job = task_job(WORKER, &spec, &k).unwrap();
    let pod = pod(&job);
    assert_eq!(
        names_of(&pod["initContainers"]),
        ["copy-sidecar-0", "setup"]
    );
    assert_eq!(pod["initContainers"][0]["securityContext"]["runAsUser"], 0);
    assert_eq!(
        container(&job, "task")["volumeMounts"][1],
        json!({"name": "sidecar-0-data", "mountPath": "/agent", "readOnly": false})
    );
}

#[test]
fn ttl_is_omitted_when_cleanup_is_off_and_deadline_when_unbounded() {
    let mut k = fixtures::settings();
    k.ttl_seconds_after_finished = None;
    k.active_deadline_seconds = None;
    let job = task_job(WORKER, &fixtures::spec("t", None), &k).unwrap();
    assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());
    assert!(job["spec"].get("activeDeadlineSeconds").is_none());
}

#[test]
fn instance_shape_sets_requests_equal_to_limits() {
    let mut spec = fixtures::spec("t", None);
    spec.instance_shape = shape(4, 16);
    let job = task_job(WORKER, &spec, &fixtures::settings()).unwrap();
    let want = json!({"cpu": "4", "memory": "16Gi"});
    let task = container(&job, "task");
    assert_eq!(task["resources"]["requests"], want);
    assert_eq!(task["resources"]["limits"], want);
    // Only the task container is sized.
    assert!(pod(&job)["initContainers"][0].get("resources").is_none());
}

#[test]
fn sidecar_problems_fail_before_building() {
    let mut k = fixtures::settings();
    k.use_image_volumes = true;
    let mut spec = fixtures::spec("t", None);
    spec.sidecars.push(sidecar("tool:1", "/mnt/tool", true));
    let err = task_job(WORKER, &spec, &k).unwrap_err();
    assert_eq!(err.reason, FailureReason::SidecarPrep);
    assert!(err.message.contains("read-write mount"), "{}", err.message);
}

#[test]
fn template_task_container_is_customised_in_place() {
    let mut k = fixtures::settings();
    k.task_env = vec![("FROM_CLI".into(), "1".into())];
    k.pod_template = Some(json!({
        "serviceAccountName": "agent-sa",
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"pool": "agents"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "agents", "effect": "NoSchedule"}],
        "restartPolicy": "OnFailure",
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "initContainers": [
            {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}
        ],
        "containers": [
            {"name": "logger", "image": "fluent-bit:3"},
            {
                "name": "task",
                "image": "ignored:1",
                "imagePullPolicy": "Always",
                "env": [
                    {"name": "FROM_TEMPLATE", "value": "t"},
                    {"name": "TASK_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                "securityContext": {"runAsNonRoot": true},
            }
        ]
    }));
    let mut spec = fixtures::spec("t", None);
    spec.instance_shape = shape(4, 16);
    let job = task_job(WORKER, &spec, &k).unwrap();
    let pod = pod(&job);
    assert_eq!(pod["serviceAccountName"], "agent-sa");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["nodeSelector"], json!({"pool": "agents"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["restartPolicy"], "Never", "forced");
    assert_eq!(
        names_of(&pod["containers"]),
        ["logger", "task"],
        "position kept"
    );
    // The worker's init containers run before the template's native sidecar.
    assert_eq!(
        names_of(&pod["initContainers"]),
        ["copy-sidecar-0", "proxy"]
    );
    assert_eq!(pod["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(
        names_of(&pod["volumes"]),
        ["cache", "workspace", "sidecar-0-data"]
    );
    let task = container(&job, "task");
    assert_eq!(task["image"], "ghcr.io/acme/dev:1");
    assert_eq!(
        task["imagePullPolicy"], "Always",
        "the template's policy wins"
    );
    assert_eq!(task["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        names_of(&task["volumeMounts"]),
        ["cache", "workspace", "sidecar-0-data"]
    );
    let env = env_of(task);
    assert_eq!(env["FROM_TEMPLATE"]["value"], "t");
    assert_eq!(env["FROM_CLI"]["value"], "1");
    assert_eq!(env["TASK_ID"], json!({"name": "TASK_ID", "value": "t"}));
    assert_eq!(
        task["env"][0]["name"], "FROM_TEMPLATE",
        "template order kept"
    );
    assert_eq!(
        task["resources"],
        json!({
            "requests": {"cpu": "4", "memory": "16Gi"},
            "limits": {"cpu": "4", "memory": "16Gi"},
        })
    );
}

#[test]
fn template_without_task_container_gets_one_appended() {
    let mut k = fixtures::settings();
    k.pod_template = Some(json!({"containers": [{"name": "sidecar", "image": "x:1"}]}));
    k.image_pull_policy = PullPolicy::Never;
    let job = task_job(WORKER, &fixtures::spec("t", None), &k).unwrap();
    assert_eq!(names_of(&pod(&job)["containers"]), ["sidecar", "task"]);
    assert_eq!(container(&job, "task")["imagePullPolicy"], "Never");
}

#[test]
fn template_with_reserved_names_is_refused() {
    let mut k = fixtures::settings();
    k.pod_template = Some(json!({"volumes": [{"name": "workspace", "emptyDir": {}}]}));
    let err = task_job(WORKER, &fixtures::spec("t", None), &k).unwrap_err();
    assert_eq!(err.reason, FailureReason::JobCreate);
}

#[test]
fn labels_annotations_teardown_and_workspace_limit() {
    let mut k = fixtures::settings();
    k.extra_labels = BTreeMap::from([("team".into(), "infra".into())]);
    k.extra_annotations = BTreeMap::from([("owner".into(), "ops@example.com".into())]);
    k.teardown_command = Some("rm -rf /workspace/tmp".into());
    k.workspace_size_limit = Some("8Gi".into());
    let job = task_job(WORKER, &fixtures::spec("t", None), &k).unwrap();
    for meta in [&job["metadata"], &job["spec"]["template"]["metadata"]] {
        assert_eq!(meta["labels"]["team"], "infra");
        assert_eq!(meta["labels"]["oz-worker-id"], "worker-123");
        assert_eq!(meta["annotations"]["owner"], "ops@example.com");
    }
    assert_eq!(
        job["spec"]["template"]["metadata"]["annotations"],
        json!({"owner": "ops@example.com"})
    );
    assert_eq!(
        job["metadata"]["annotations"][names::ANNOTATION_TASK_ID],
        "t"
    );
    assert_eq!(
        pod(&job)["volumes"][0],
        json!({"name": "workspace", "emptyDir": {"sizeLimit": "8Gi"}})
    );
    assert_eq!(
        container(&job, "task")["lifecycle"]["preStop"]["exec"]["command"],
        json!(["/bin/sh", "-c", "rm -rf /workspace/tmp"])
    );
}

#[test]
fn no_sidecars_means_no_init_containers() {
    let mut spec = fixtures::spec("t", None);
    spec.sidecars.clear();
    let job = task_job(WORKER, &spec, &fixtures::settings()).unwrap();
    assert!(pod(&job).get("initContainers").is_none());
    assert_eq!(names_of(&pod(&job)["volumes"]), ["workspace"]);
}

#[test]
fn copy_readiness_makes_copy_containers_native_sidecars_before_setup() {
    let mut k = fixtures::settings();
    k.sidecar_copy_readiness = true;
    k.setup_command = Some("true".into());
    let job = task_job(WORKER, &fixtures::spec("t", None), &k).unwrap();
    let pod = pod(&job);
    assert_eq!(
        names_of(&pod["initContainers"]),
        ["copy-sidecar-0", "setup"]
    );
    assert_eq!(pod["initContainers"][0]["restartPolicy"], "Always");
    assert!(pod["initContainers"][0].get("startupProbe").is_some());
    assert_eq!(
        names_of(&pod["volumes"]),
        ["workspace", "sidecar-0-data", "sidecar-0-state"]
    );
    // Setup and the task never see the copy state.
    for c in [&pod["initContainers"][1], container(&job, "task")] {
        assert_eq!(
            names_of(&c["volumeMounts"]),
            ["workspace", "sidecar-0-data"]
        );
    }
}

#[test]
fn operator_env_values_are_the_config_env_and_template_literals() {
    let mut k = fixtures::settings();
    k.task_env = vec![
        ("OP".into(), "operator-value".into()),
        ("E".into(), String::new()),
    ];
    k.pod_template = Some(json!({
        "initContainers": [{"name": "init", "env": [{"name": "A", "value": "init-literal"}]}],
        "containers": [
            {"name": "task", "env": [
                {"name": "B", "value": "task-literal"},
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "D", "value": ""},
            ]},
            {"name": "no-env"},
        ],
    }));
    assert_eq!(
        operator_env_values(&k),
        ["operator-value", "init-literal", "task-literal"]
    );
    k.task_env.clear();
    k.pod_template = None;
    assert!(operator_env_values(&k).is_empty());
}
