//! Every manifest the worker can generate, over a matrix of configurations, written to a
//! directory for `.ci/kubernetes-validate.sh` to check against the Kubernetes OpenAPI schemas
//! (`kubernetes-validate --strict`, Kubernetes 1.30 to the newest it knows).
//!
//! Files go to `$OZ_K8S_MANIFESTS` (without it, to a scratch directory removed afterwards), in
//! one directory per oldest Kubernetes minor whose schema knows every field used: `v1.30/` for
//! most, `v1.31/` for image volumes (`volumes[].image`, alpha in 1.31, beta in 1.33, GA in 1.35).
//! The test also checks the invariants every task Job must keep, so it is not only a writer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::fixtures::{self, WORKER, shape, sidecar};
use super::{job, names, preflight, rbac};
use crate::settings::{KubernetesSettings, PullPolicy};
use crate::task::TaskSpec;

/// `$OZ_K8S_MANIFESTS`, kept for the validator; else a scratch directory removed afterwards.
fn out_dir() -> (PathBuf, bool) {
    match std::env::var_os("OZ_K8S_MANIFESTS") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (
            std::env::temp_dir().join(format!("oz-k8s-manifests-{}", std::process::id())),
            false,
        ),
    }
}

/// A pod template exercising every kind of field an operator is likely to set.
fn rich_template() -> Value {
    json!({
        "serviceAccountName": "oz-tasks",
        "automountServiceAccountToken": false,
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"pool": "agents"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "agents", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
        "priorityClassName": "agents",
        "runtimeClassName": "gvisor",
        "securityContext": {"fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 60,
        "dnsPolicy": "ClusterFirst",
        "volumes": [
            {"name": "cache", "persistentVolumeClaim": {"claimName": "agent-cache"}},
            {"name": "ca", "configMap": {"name": "corp-ca"}},
        ],
        "initContainers": [{
            "name": "egress-proxy",
            "image": "envoyproxy/envoy:v1.31",
            "restartPolicy": "Always",
            "ports": [{"containerPort": 15001}],
            "readinessProbe": {"tcpSocket": {"port": 15001}, "periodSeconds": 2},
        }],
        "containers": [
            {"name": "log-shipper", "image": "fluent/fluent-bit:3.1",
             "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}},
            {
                "name": "task",
                "image": "replaced",
                "imagePullPolicy": "Always",
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "GH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "agent-env"}}],
                "volumeMounts": [
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": true},
                ],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "2Gi"}},
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            },
        ],
    })
}

struct Case {
    name: &'static str,
    dir: &'static str,
    settings: KubernetesSettings,
    spec: TaskSpec,
}

fn task_cases() -> Vec<Case> {
    let base = fixtures::settings;
    let spec = || {
        fixtures::spec(
            "019f5de4-bfd1-762e-92ed-199c971abcba",
            Some("019f5df0-aaaa-bbbb-cccc-abcdef012345"),
        )
    };
    let mut cases = Vec::new();
    let mut add = |name, dir, settings, spec| {
        cases.push(Case {
            name,
            dir,
            settings,
            spec,
        })
    };

    add("task-defaults", "v1.30", base(), spec());

    let mut s = spec();
    s.sidecars.clear();
    add("task-no-sidecars", "v1.30", base(), s);

    let mut k = base();
    k.setup_command = Some("set -e\napt-get update\necho READY=1 >> /workspace/.oz-env".into());
    k.teardown_command = Some("rm -rf /workspace/tmp".into());
    k.extra_labels = BTreeMap::from([
        ("team".into(), "infra".into()),
        ("app.kubernetes.io/part-of".into(), "oz".into()),
    ]);
    k.extra_annotations = BTreeMap::from([
        ("owner".into(), "ops@example.com".into()),
        (
            "cluster-autoscaler.kubernetes.io/safe-to-evict".into(),
            "false".into(),
        ),
    ]);
    k.workspace_size_limit = Some("8Gi".into());
    k.task_env = vec![("HTTPS_PROXY".into(), "http://proxy:3128".into())];
    let mut s = spec();
    s.instance_shape = shape(4, 16);
    add("task-copy-setup-teardown-labels-shape", "v1.30", k, s);

    let mut k = base();
    k.ttl_seconds_after_finished = None;
    k.active_deadline_seconds = None;
    k.image_pull_policy = PullPolicy::Never;
    add("task-no-cleanup-unbounded", "v1.30", k, spec());

    let mut s = spec();
    s.instance_shape = shape(2, 0);
    add("task-shape-cpu-only", "v1.30", base(), s);
    let mut s = spec();
    s.instance_shape = shape(0, 64);
    add("task-shape-memory-only", "v1.30", base(), s);

    let mut k = base();
    k.pod_template = Some(rich_template());
    k.setup_command = Some("make deps".into());
    let mut s = spec();
    s.instance_shape = shape(8, 32);
    add("task-pod-template-native-sidecar-shape", "v1.30", k, s);

    let mut k = base();
    k.pod_template = Some(json!({
        "containers": [{"name": "helper", "image": "busybox:1.36", "command": ["sleep", "infinity"]}],
        "tolerations": [{"operator": "Exists"}],
    }));
    add(
        "task-pod-template-without-task-container",
        "v1.30",
        k,
        spec(),
    );

    let mut s = spec();
    s.sidecars
        .push(sidecar("ghcr.io/acme/tools:2", "/mnt/tools", true));
    s.sidecars.push(sidecar(
        "ghcr.io/acme/claude-cli:1",
        "/mnt/claude-cli-sidecar",
        false,
    ));
    add("task-copy-several-sidecars", "v1.30", base(), s);

    let mut k = base();
    k.sidecar_copy_readiness = true;
    k.setup_command = Some("true".into());
    k.pod_template = Some(rich_template());
    let mut s = spec();
    s.sidecars
        .push(sidecar("ghcr.io/acme/tools:2", "/mnt/tools", true));
    add("task-copy-readiness-template", "v1.30", k, s);

    let hostile = fixtures::spec(&"Ünïcode_RUN.".repeat(12), Some(" EXEC/ID with spaces "));
    add("task-hostile-ids", "v1.30", base(), hostile);

    let mut k = base();
    k.use_image_volumes = true;
    add("task-image-volumes", "v1.31", k, spec());

    let mut k = base();
    k.use_image_volumes = true;
    k.image_pull_policy = PullPolicy::Always;
    k.setup_command = Some("true".into());
    k.pod_template = Some(rich_template());
    let mut s = spec();
    s.sidecars
        .push(sidecar("ghcr.io/acme/tools:2", "/mnt/tools", false));
    s.instance_shape = shape(4, 16);
    add("task-image-volumes-setup-template", "v1.31", k, s);
    cases
}

fn preflight_cases() -> Vec<(&'static str, &'static str, KubernetesSettings)> {
    let mut template = fixtures::settings();
    template.pod_template = Some(rich_template());
    template.preflight_resources =
        Some(json!({"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}));
    template.extra_labels = BTreeMap::from([("team".into(), "infra".into())]);
    let mut iv = fixtures::settings();
    iv.use_image_volumes = true;
    let mut iv_template = template.clone();
    iv_template.use_image_volumes = true;
    let mut readiness = fixtures::settings();
    readiness.sidecar_copy_readiness = true;
    vec![
        ("preflight-copy", "v1.30", fixtures::settings()),
        ("preflight-copy-readiness", "v1.30", readiness),
        ("preflight-copy-template", "v1.30", template),
        ("preflight-image-volumes", "v1.31", iv),
        ("preflight-image-volumes-template", "v1.31", iv_template),
    ]
}

/// The invariants of reference §3 that every generated task Job keeps.
fn check_task_job(name: &str, job: &Value) {
    let job_name = job["metadata"]["name"].as_str().unwrap();
    assert!(
        job_name.len() <= 63 && job_name.starts_with("oz-task-"),
        "{name}: {job_name}"
    );
    assert_eq!(job["spec"]["backoffLimit"], 0, "{name}");
    let labels = &job["metadata"]["labels"];
    assert_eq!(
        labels, &job["spec"]["template"]["metadata"]["labels"],
        "{name}"
    );
    for key in [
        names::LABEL_WORKER_HASH,
        names::LABEL_TASK_HASH,
        names::LABEL_EXECUTION_HASH,
    ] {
        assert_eq!(
            labels[key].as_str().map(str::len),
            Some(16),
            "{name}: {key}"
        );
    }
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never", "{name}");
    let tasks: Vec<&Value> = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == job::TASK_CONTAINER)
        .collect();
    assert_eq!(tasks.len(), 1, "{name}: exactly one task container");
    assert_eq!(
        tasks[0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mountPath"] == "/workspace")
            .count(),
        1,
        "{name}"
    );
    let volume_names: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mut unique = volume_names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        volume_names.len(),
        "{name}: duplicate volume names"
    );
}

fn write(root: &std::path::Path, dir: &str, name: &str, value: &Value) {
    let dir = root.join(dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("a JSON value always serialises");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[test]
fn write_every_generated_manifest() {
    let (root, keep) = out_dir();
    let write = |dir: &str, name: &str, value: &Value| write(&root, dir, name, value);
    let mut written = 0;
    for case in task_cases() {
        let manifest = job::task_job(WORKER, &case.spec, &case.settings)
            .unwrap_or_else(|f| panic!("{}: {f}", case.name));
        check_task_job(case.name, &manifest);
        write(case.dir, case.name, &manifest);
        written += 1;
    }
    for (name, dir, settings) in preflight_cases() {
        let job_name = names::preflight_job_name(WORKER, 1_796_226_325_000_000_000);
        write(
            dir,
            name,
            &preflight::preflight_job(&job_name, WORKER, &settings),
        );
        written += 1;
    }
    write("v1.30", "role", &rbac::role("oz-agent-worker", "agents"));
    for (i, review) in rbac::access_reviews("agents").iter().enumerate() {
        write("v1.30", &format!("access-review-{i:02}"), review);
        written += 1;
    }
    written += 1;
    assert!(written >= 30, "the matrix shrank: {written} manifests");
    if !keep {
        std::fs::remove_dir_all(&root)
            .unwrap_or_else(|e| panic!("removing {}: {e}", root.display()));
    }
}
