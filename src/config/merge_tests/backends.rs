//! Per-backend merge rules: docker, direct, command and kubernetes (the Go worker's
//! `main_test.go` cases live here).

use std::path::PathBuf;
use std::time::Duration;

use super::*;

// ---- docker ---------------------------------------------------------------------------------------

#[test]
fn docker_volumes_file_then_cli_and_validated() {
    let s = Run::new(&w(&["-v", "/c:/c", "--volumes", "named:/d:ro"]))
        .yaml("backend:\n  docker:\n    volumes: [\"/a:/a\", \"/b:/b:rw,Z\"]\n")
        .settings();
    assert_eq!(
        docker(&s).volumes,
        vec!["/a:/a", "/b:/b:rw,Z", "/c:/c", "named:/d:ro"]
    );
    assert_eq!(
        Run::new(&w(&["-v", "/a:rel"])).err(),
        "invalid volume \"/a:rel\" (-v): the destination \"rel\" must be an absolute path in the container"
    );
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("backend:\n  docker:\n    volumes: [\"/a:/a\", \"/b:/b:bogus\"]\n")
            .err(),
        "invalid volume \"/b:/b:bogus\" (backend.docker.volumes[1]): unknown option \"bogus\" \
         (allowed: ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate)"
    );
}

#[test]
fn docker_pull_policy_and_sidecar_image() {
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  docker:\n    image_pull_policy: Never\n    sidecar_image: reg/agent:9\n")
        .settings();
    assert_eq!(docker(&s).image_pull_policy, PullPolicy::Never);
    assert_eq!(docker(&s).sidecar_image.as_deref(), Some("reg/agent:9"));
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  docker:\n    image_pull_policy: IfNotPresent\n")
        .settings();
    assert_eq!(docker(&s).image_pull_policy, PullPolicy::IfNotPresent);
}

#[test]
fn flags_for_other_backends_warn() {
    let r = Run::new(&w(&["--backend", "direct", "-v", "/a:/a"])).ok();
    assert_eq!(
        r.warnings,
        vec!["-v/--volumes only applies to the docker backend; ignored by the direct backend"]
    );
    let r = Run::new(&w(&["--target-dir", "/srv"])).ok();
    assert_eq!(
        r.warnings,
        vec!["--target-dir only applies to the direct backend; ignored by the docker backend"]
    );
}

// ---- direct -----------------------------------------------------------------------------------------

#[test]
fn direct_settings_and_target_dir_precedence() {
    let s = Run::new(&w(&[]))
        .yaml(
            "backend:\n  direct:\n    workspace_root: /srv/ws\n    oz_path: /opt/oz\n    setup_command: s\n    teardown_command: t\n",
        )
        .settings();
    let d = direct(&s);
    assert_eq!(d.workspace_root, Some(PathBuf::from("/srv/ws")));
    assert_eq!(d.target_dir, None);
    assert_eq!(d.oz_path, Some(PathBuf::from("/opt/oz")));
    assert_eq!(d.setup_command.as_deref(), Some("s"));
    assert_eq!(d.teardown_command.as_deref(), Some("t"));

    // Default workspace root only without a target dir.
    let s = Run::new(&w(&["--backend", "direct"])).settings();
    assert_eq!(
        direct(&s).workspace_root,
        Some(PathBuf::from(settings::DEFAULT_WORKSPACE_ROOT))
    );
    assert_eq!(direct(&s).oz_path, None);
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  direct:\n    target_dir: /srv/repo\n")
        .settings();
    assert_eq!(direct(&s).target_dir, Some(PathBuf::from("/srv/repo")));
    assert_eq!(direct(&s).workspace_root, None);

    // --target-dir beats the file; an explicit workspace_root is kept.
    let s = Run::new(&w(&["--target-dir", "/cli"]))
        .yaml("backend:\n  direct:\n    target_dir: /file\n    workspace_root: /ws\n")
        .settings();
    assert_eq!(direct(&s).target_dir, Some(PathBuf::from("/cli")));
    assert_eq!(direct(&s).workspace_root, Some(PathBuf::from("/ws")));

    // A relative --target-dir is made absolute against the working directory.
    let s = Run::new(&w(&["--backend", "direct", "--target-dir", "repo"])).settings();
    let t = direct(&s).target_dir.clone().unwrap();
    assert!(t.is_absolute() && t.ends_with("repo"), "{t:?}");
}

// ---- command -----------------------------------------------------------------------------------------

#[test]
fn merge_config_command_from_file() {
    let s = Run::new(&["--server-root-url", "https://staging.example", "-e", "X=1"])
        .yaml(
            "worker_id: cmd-worker\nbackend:\n  command:\n    dispatch_command: /bin/dispatch\n    cancel_command: /bin/cancel\n    dispatch_timeout: 30s\n",
        )
        .settings();
    assert_eq!(s.worker_id, "cmd-worker");
    assert_eq!(s.server_root_url, "https://staging.example");
    let c = command(&s);
    assert_eq!(c.dispatch_command, "/bin/dispatch");
    assert_eq!(c.cancel_command.as_deref(), Some("/bin/cancel"));
    assert_eq!(c.dispatch_timeout, Duration::from_secs(30));
    assert_eq!(c.env, pairs(&[("X", "1")]));
}

#[test]
fn command_defaults_and_errors() {
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  command: {dispatch_command: d}\n")
        .settings();
    assert_eq!(command(&s).dispatch_timeout, Duration::from_secs(60));
    assert_eq!(command(&s).cancel_command, None);
    assert_eq!(
        Run::new(&w(&["--backend", "command"])).err(),
        "command backend requires a dispatch command (backend.command.dispatch_command)"
    );
    let e = Run::new(&w(&[]))
        .yaml("backend:\n  command:\n    dispatch_command: d\n    dispatch_timeout: 1x\n")
        .err();
    assert!(e.starts_with("invalid config file /"), "{e}");
    assert!(
        e.ends_with(
            "config.yaml: line 4: invalid backend.command.dispatch_timeout \"1x\": unknown unit \"x\" in \
             duration \"1x\" (units: ns, us (or µs), ms, s, m, h; e.g. \"90s\")"
        ),
        "{e}"
    );
}

// ---- kubernetes -------------------------------------------------------------------------------------

const KUBE: &str = r#"worker_id: file-worker
cleanup: true
backend:
  kubernetes:
    namespace: agents
    kubeconfig: /etc/kube/config
    default_image: ubuntu:24.04
    image_pull_policy: Never
    use_image_volumes: true
    preflight_image: busybox:1.37
    sidecar_image: reg/agent:1
    coding_cli_sidecars: {claude: reg/claude:1}
    setup_command: echo setup
    teardown_command: echo teardown
    extra_labels: {team: infra}
    extra_annotations: {owner: ops}
    active_deadline_seconds: 3600
    ttl_seconds_after_finished: 600
    workspace_size_limit: 8Gi
    unschedulable_timeout: 2m
    volume_mount_timeout: 45s
    preflight_resources: {requests: {cpu: 20m}}
    pod_template:
      serviceAccountName: oz-tasks
      imagePullSecrets: [{name: regcred}]
"#;

#[test]
fn merge_config_kubernetes_from_file() {
    let s = Run::new(&["-e", "A=cli", "-e", "B=2"])
        .yaml(KUBE)
        .settings();
    assert_eq!(s.worker_id, "file-worker");
    let k = kube(&s);
    assert_eq!(k.namespace, "agents");
    assert_eq!(k.kubeconfig, Some(PathBuf::from("/etc/kube/config")));
    assert_eq!(k.default_image.as_deref(), Some("ubuntu:24.04"));
    assert_eq!(k.image_pull_policy, PullPolicy::Never);
    assert!(k.use_image_volumes);
    assert!(!k.sidecar_copy_readiness);
    assert_eq!(k.preflight_image, "busybox:1.37");
    assert_eq!(k.sidecar_image.as_deref(), Some("reg/agent:1"));
    assert_eq!(k.coding_cli_sidecars["claude"], "reg/claude:1");
    assert_eq!(k.setup_command.as_deref(), Some("echo setup"));
    assert_eq!(k.teardown_command.as_deref(), Some("echo teardown"));
    assert_eq!(k.extra_labels["team"], "infra");
    assert_eq!(k.extra_annotations["owner"], "ops");
    assert_eq!(k.active_deadline_seconds, Some(3600));
    assert_eq!(k.ttl_seconds_after_finished, Some(600));
    assert_eq!(k.workspace_size_limit.as_deref(), Some("8Gi"));
    assert_eq!(k.unschedulable_timeout, Some(Duration::from_secs(120)));
    assert_eq!(k.volume_mount_timeout, Some(Duration::from_secs(45)));
    let pt = k.pod_template.as_ref().unwrap();
    assert_eq!(pt["serviceAccountName"], "oz-tasks");
    assert_eq!(pt["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(
        k.preflight_resources,
        Some(serde_json::json!({"requests": {"cpu": "20m"}}))
    );
    assert_eq!(k.task_env, pairs(&[("A", "cli"), ("B", "2")]));
}

#[test]
fn merge_config_kubernetes_cli_overrides_cleanup_and_worker_id() {
    let s = Run::new(&["--worker-id", "cli-worker", "--no-cleanup", "-e", "X=y"])
        .yaml(KUBE)
        .settings();
    assert_eq!(s.worker_id, "cli-worker");
    assert!(!s.cleanup);
    let k = kube(&s);
    // Without cleanup no TTL is set, so failed Jobs stay for inspection.
    assert_eq!(k.ttl_seconds_after_finished, None);
    assert_eq!(k.task_env, pairs(&[("X", "y")]));
}

#[test]
fn kubernetes_defaults() {
    let s = Run::new(&w(&["--backend", "kubernetes"])).settings();
    let k = kube(&s);
    assert_eq!(k.namespace, "default");
    assert_eq!(k.kubeconfig, None);
    assert_eq!(k.image_pull_policy, PullPolicy::IfNotPresent);
    assert_eq!(k.preflight_image, "busybox:1.36");
    assert_eq!(k.unschedulable_timeout, Some(Duration::from_secs(600)));
    assert_eq!(k.volume_mount_timeout, Some(Duration::from_secs(120)));
    assert_eq!(k.ttl_seconds_after_finished, Some(86_400));
    // The chart's 8 h, also outside Helm.
    assert_eq!(k.active_deadline_seconds, Some(28_800));
    assert_eq!(k.workspace_size_limit, None);
    assert_eq!(k.pod_template, None);
    assert_eq!(k.preflight_resources, None);
    assert!(k.coding_cli_sidecars.is_empty());
    assert!(k.task_env.is_empty());
    // The same from an empty block.
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  kubernetes: {}\n")
        .settings();
    assert_eq!(kube(&s).namespace, "default");
    assert_eq!(
        kube(&s).unschedulable_timeout,
        Some(Duration::from_secs(600))
    );
}

#[test]
fn zero_active_deadline_means_unbounded() {
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  kubernetes:\n    active_deadline_seconds: 0\n")
        .settings();
    assert_eq!(kube(&s).active_deadline_seconds, None);
}

#[test]
fn merge_config_kubernetes_allows_zero_unschedulable_timeout() {
    for zero in ["0s", "0", "-5s"] {
        let yaml = format!(
            "backend:\n  kubernetes:\n    unschedulable_timeout: {zero}\n    volume_mount_timeout: {zero}\n"
        );
        let s = Run::new(&w(&[])).yaml(&yaml).settings();
        // Disabled, not defaulted.
        assert_eq!(kube(&s).unschedulable_timeout, None, "{zero}");
        assert_eq!(kube(&s).volume_mount_timeout, None, "{zero}");
    }
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  kubernetes:\n    active_deadline_seconds: 0\n    ttl_seconds_after_finished: 0\n")
        .settings();
    assert_eq!(kube(&s).active_deadline_seconds, None);
    assert_eq!(kube(&s).ttl_seconds_after_finished, Some(0));
}

#[test]
fn merge_config_kubernetes_coding_cli_sidecars_are_copied() {
    let yaml = "backend:\n  kubernetes:\n    coding_cli_sidecars: {claude: reg/claude:1, codex: reg/codex:1}\n";
    let a = Run::new(&w(&[])).yaml(yaml).settings();
    let mut b = Run::new(&w(&[])).yaml(yaml).settings();
    // Settings own their maps: changing one resolution's map leaves another's alone.
    match &mut b.backend {
        BackendSettings::Kubernetes(k) => {
            k.coding_cli_sidecars
                .insert("claude".into(), "changed".into());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kube(&a).coding_cli_sidecars.len(), 2);
    assert_eq!(kube(&a).coding_cli_sidecars["claude"], "reg/claude:1");
    assert_eq!(kube(&b).coding_cli_sidecars["claude"], "changed");
}
