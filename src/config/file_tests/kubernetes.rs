//! The kubernetes block: every key, the opaque subtrees and the removed legacy keys.

use super::*;

const FULL_KUBERNETES: &str = r#"worker_id: k8s-worker
backend:
  kubernetes:
    namespace: agents
    kubeconfig: /etc/oz/kubeconfig
    default_image: ubuntu:24.04
    image_pull_policy: Always
    use_image_volumes: true
    preflight_image: busybox:1.37
    sidecar_image: reg/agent:3
    setup_command: echo setup
    teardown_command: echo teardown
    extra_labels: {team: infra, tier: "1"}
    extra_annotations: {owner: ops}
    active_deadline_seconds: 28800
    ttl_seconds_after_finished: 3600
    workspace_size_limit: 8Gi
    unschedulable_timeout: 2m
    volume_mount_timeout: 30s
    preflight_resources:
      requests: {cpu: 10m, memory: 16Mi}
    pod_template:
      serviceAccountName: oz-tasks
      imagePullSecrets:
        - name: regcred
      nodeSelector:
        kubernetes.io/os: linux
      containers:
        - name: task
          env:
            - name: GITHUB_TOKEN
              valueFrom:
                secretKeyRef: {name: gh, key: token}
"#;

#[test]
fn load_kubernetes_coding_cli_sidecars() {
    let cfg = load(
        "worker_id: w\nbackend:\n  kubernetes:\n    coding_cli_sidecars:\n      claude: reg/claude:1\n      codex: reg/codex:2\n",
    )
    .unwrap();
    let m = cfg
        .backend
        .unwrap()
        .kubernetes
        .unwrap()
        .coding_cli_sidecars
        .unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m["claude"], "reg/claude:1");
    assert_eq!(m["codex"], "reg/codex:2");
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    coding_cli_sidecars:\n      claude: \"reg/c 1\"\n"),
        "invalid: line 4: backend.kubernetes.coding_cli_sidecars.claude must not contain whitespace (got \"reg/c 1\")"
    );
}

#[test]
fn load_valid_kubernetes_config() {
    let cfg = load(FULL_KUBERNETES).unwrap();
    let k = cfg.backend.unwrap().kubernetes.unwrap();
    assert_eq!(k.namespace.as_deref(), Some("agents"));
    assert_eq!(k.kubeconfig.as_deref(), Some("/etc/oz/kubeconfig"));
    assert_eq!(k.default_image.as_deref(), Some("ubuntu:24.04"));
    assert_eq!(k.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(k.use_image_volumes, Some(true));
    assert_eq!(k.preflight_image.as_deref(), Some("busybox:1.37"));
    assert_eq!(k.sidecar_image.as_deref(), Some("reg/agent:3"));
    assert_eq!(k.extra_labels.as_ref().unwrap()["tier"], "1");
    assert_eq!(k.active_deadline_seconds, Some(28800));
    assert_eq!(k.ttl_seconds_after_finished, Some(3600));
    assert_eq!(k.workspace_size_limit.as_deref(), Some("8Gi"));
    assert_eq!(k.unschedulable_timeout.as_deref(), Some("2m"));
    assert_eq!(k.volume_mount_timeout.as_deref(), Some("30s"));
    // The raw pod template is retained.
    let pt = pod_template(&k).unwrap().unwrap();
    assert_eq!(pt["serviceAccountName"], "oz-tasks");
    assert_eq!(pt["imagePullSecrets"][0]["name"], "regcred");
}

#[test]
fn load_valid_kubernetes_pod_template_with_secret_key_ref() {
    let cfg = load(FULL_KUBERNETES).unwrap();
    let k = cfg.backend.unwrap().kubernetes.unwrap();
    let pt = pod_template(&k).unwrap().unwrap();
    assert_eq!(
        pt["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "gh", "key": "token"})
    );
    // Unknown keys are fine inside the opaque subtrees.
    load("backend:\n  kubernetes:\n    pod_template: {madeUpField: 1}\n    preflight_resources: {whatever: {x: 1}}\n").unwrap();
}

#[test]
fn opaque_subtrees_must_be_mappings() {
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    pod_template: [a]\n"),
        "invalid: line 3: invalid backend.kubernetes.pod_template: must be a mapping, not a sequence"
    );
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    preflight_resources: 5\n"),
        "invalid: line 3: invalid backend.kubernetes.preflight_resources: must be a mapping, not a number"
    );
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    pod_template: {a: !custom x}\n"),
        "invalid: line 3: invalid backend.kubernetes.pod_template: backend.kubernetes.pod_template.a: \
         YAML tags (!custom) are not supported"
    );
    // A null subtree is absent.
    let cfg = load("backend:\n  kubernetes:\n    pod_template:\n").unwrap();
    assert_eq!(
        pod_template(&cfg.backend.unwrap().kubernetes.unwrap()),
        Ok(None)
    );
}

#[test]
fn pod_template_merge_keys_are_applied() {
    let cfg = load(
        "backend:\n  kubernetes:\n    pod_template:\n      base: &b {a: 1}\n      spec:\n        <<: *b\n        c: 2\n",
    )
    .unwrap();
    let pt = pod_template(&cfg.backend.unwrap().kubernetes.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(pt["spec"], serde_json::json!({"a": 1, "c": 2}));
}

#[test]
fn load_invalid_kubernetes_pull_policy() {
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    image_pull_policy: Sometimes\n"),
        "invalid: line 3: backend.kubernetes.image_pull_policy must be one of Always, IfNotPresent, Never (got \"Sometimes\")"
    );
    // Case matters, as in Kubernetes.
    assert!(load("backend:\n  kubernetes:\n    image_pull_policy: always\n").is_err());
    // Empty means "default".
    load("backend:\n  kubernetes:\n    image_pull_policy: \"\"\n").unwrap();
}

#[test]
fn load_kubernetes_default_image() {
    let k = |y: &str| load(y).unwrap().backend.unwrap().kubernetes.unwrap();
    assert_eq!(
        k("backend:\n  kubernetes:\n    default_image: ubuntu:22.04\n")
            .default_image
            .as_deref(),
        Some("ubuntu:22.04")
    );
    assert_eq!(k("backend:\n  kubernetes: {}\n").default_image, None);
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    default_image: \"ubuntu 22.04\"\n"),
        "invalid: line 3: backend.kubernetes.default_image must not contain whitespace (got \"ubuntu 22.04\")"
    );
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    preflight_image: \"busybox\\t1\"\n"),
        "invalid: line 3: backend.kubernetes.preflight_image must not contain whitespace (got \"busybox\\t1\")"
    );
}

#[test]
fn load_kubernetes_sidecar_image() {
    let k = |y: &str| load(y).unwrap().backend.unwrap().kubernetes.unwrap();
    assert_eq!(
        k("backend:\n  kubernetes:\n    sidecar_image: reg/agent:1\n")
            .sidecar_image
            .as_deref(),
        Some("reg/agent:1")
    );
    assert_eq!(k("backend:\n  kubernetes: {}\n").sidecar_image, None);
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    sidecar_image: \"reg/agent 1\"\n"),
        "invalid: line 3: backend.kubernetes.sidecar_image must not contain whitespace (got \"reg/agent 1\")"
    );
}

#[test]
fn load_legacy_kubernetes_field_rejected() {
    for (key, instead) in LEGACY_KUBERNETES_KEYS {
        let yaml =
            format!("worker_id: w\nbackend:\n  kubernetes:\n    namespace: x\n    {key}: y\n");
        let e = load_err(&yaml);
        assert!(
            e.starts_with(&format!(
                "read: line 5: unknown key \"{key}\" in backend.kubernetes (allowed: namespace, "
            )),
            "{e}"
        );
        assert!(
            e.ends_with(&format!(
                "; \"{key}\" was removed from the kubernetes backend: use {instead}"
            )),
            "{e}"
        );
    }
    assert_eq!(LEGACY_KUBERNETES_KEYS.len(), 7);
}

#[test]
fn kubernetes_value_checks() {
    let cases: &[(&str, &str)] = &[
        (
            "workspace_size_limit: 8GB",
            "invalid backend.kubernetes.workspace_size_limit \"8GB\": unknown unit \"GB\" (expected \
             one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E or an exponent like e3)",
        ),
        (
            "workspace_size_limit: -1Gi",
            "invalid backend.kubernetes.workspace_size_limit \"-1Gi\": must not be negative",
        ),
        (
            "unschedulable_timeout: 1d",
            "invalid backend.kubernetes.unschedulable_timeout \"1d\": unknown unit \"d\" in \
             duration \"1d\" (units: ns, us (or µs), ms, s, m, h; e.g. \"90s\")",
        ),
        (
            "volume_mount_timeout: fast",
            "invalid backend.kubernetes.volume_mount_timeout \"fast\": invalid duration \"fast\"",
        ),
        (
            "active_deadline_seconds: -5",
            "backend.kubernetes.active_deadline_seconds must not be negative (got -5)",
        ),
        (
            "ttl_seconds_after_finished: -1",
            "backend.kubernetes.ttl_seconds_after_finished must not be negative (got -1)",
        ),
        (
            "use_image_volumes: true\n    sidecar_copy_readiness: true",
            "backend.kubernetes.sidecar_copy_readiness and backend.kubernetes.use_image_volumes \
             cannot both be true",
        ),
    ];
    for (body, want) in cases {
        let yaml = format!("backend:\n  kubernetes:\n    {body}\n");
        // Each key is on line 3, except the pair: the message names its second key first.
        let line = if body.contains('\n') { 4 } else { 3 };
        assert_eq!(
            load_err(&yaml),
            format!("invalid: line {line}: {want}"),
            "{body}"
        );
    }
    for ok in [
        "workspace_size_limit: 500M",
        "workspace_size_limit: 1e3",
        "workspace_size_limit: 0.5",
        "workspace_size_limit: 100m",
        "unschedulable_timeout: 0",
        "unschedulable_timeout: -1s",
        "volume_mount_timeout: 0s",
        "sidecar_copy_readiness: true",
        "active_deadline_seconds: 0",
    ] {
        load(&format!("backend:\n  kubernetes:\n    {ok}\n")).unwrap();
    }
}
