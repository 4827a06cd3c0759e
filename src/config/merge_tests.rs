//! The Go worker's `main_test.go` merge checklist, precedence (flag > env > file > default) for
//! every flag that has an env var or a config key, and every merge error message.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::cli::{self, Invocation};
use crate::config::file::tests::temp_dir;

/// One resolution: command line, optional config file text, environment, mode.
struct Run<'a> {
    args: Vec<&'a str>,
    yaml: Option<&'a str>,
    env: Vec<(&'a str, &'a str)>,
    mode: Mode,
}

impl<'a> Run<'a> {
    fn new(args: &[&'a str]) -> Self {
        Run {
            args: args.to_vec(),
            yaml: None,
            env: vec![("WARP_API_KEY", "env-key")],
            mode: Mode::Daemon,
        }
    }
    fn yaml(mut self, y: &'a str) -> Self {
        self.yaml = Some(y);
        self
    }
    fn env(mut self, env: &[(&'a str, &'a str)]) -> Self {
        self.env = env.to_vec();
        self
    }
    fn mode(mut self, m: Mode) -> Self {
        self.mode = m;
        self
    }

    /// Parses the args through the real CLI parser, then resolves with cwd = a temp dir that
    /// holds `config.yaml` when YAML was given.
    fn resolve(&self) -> Result<Resolved, ConfigError> {
        let dir = temp_dir("merge");
        let mut args: Vec<OsString> = self.args.iter().map(OsString::from).collect();
        match self.mode {
            Mode::Daemon => {}
            Mode::Check => args.insert(0, "check".into()),
            Mode::RunOnce => {
                args.insert(0, "run-once".into());
                args.extend(["--task".into(), "-".into()]);
            }
        }
        if let Some(y) = self.yaml {
            std::fs::write(dir.join("config.yaml"), y).unwrap();
            args.extend(["--config-file".into(), "config.yaml".into()]);
        }
        let low = match cli::parse(args).unwrap() {
            Invocation::Run { args, mode, .. } => {
                assert_eq!(mode, self.mode);
                args
            }
            other => panic!("{other:?}"),
        };
        let env: HashMap<String, String> = self
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        let result = resolve_with_cwd(&low, self.mode, &lookup, &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    fn ok(&self) -> Resolved {
        self.resolve().unwrap_or_else(|e| panic!("{e}"))
    }

    fn settings(&self) -> Settings {
        self.ok().settings
    }

    fn err(&self) -> String {
        match self.resolve() {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains('\n'), "multi-line error: {text}");
                text
            }
        }
    }
}

fn w<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--worker-id", "w1"];
    v.extend_from_slice(args);
    v
}

fn docker(s: &Settings) -> &DockerSettings {
    match &s.backend {
        BackendSettings::Docker(d) => d,
        other => panic!("{other:?}"),
    }
}
fn direct(s: &Settings) -> &DirectSettings {
    match &s.backend {
        BackendSettings::Direct(d) => d,
        other => panic!("{other:?}"),
    }
}
fn command(s: &Settings) -> &CommandSettings {
    match &s.backend {
        BackendSettings::Command(c) => c,
        other => panic!("{other:?}"),
    }
}
fn kube(s: &Settings) -> &KubernetesSettings {
    match &s.backend {
        BackendSettings::Kubernetes(k) => k,
        other => panic!("{other:?}"),
    }
}

fn pairs(v: &[(&str, &str)]) -> EnvList {
    v.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---- defaults ---------------------------------------------------------------------------------

#[test]
fn defaults_with_only_worker_id_and_key() {
    let r = Run::new(&w(&[])).ok();
    assert!(r.warnings.is_empty());
    let s = r.settings;
    assert_eq!(s.worker_id, "w1");
    assert_eq!(s.api_key.as_ref().unwrap().expose(), "env-key");
    assert_eq!(s.backend_kind(), BackendKind::Docker);
    let d = docker(&s);
    assert!(d.volumes.is_empty());
    assert!(d.env.is_empty());
    assert_eq!(d.image_pull_policy, PullPolicy::Always);
    assert_eq!(d.sidecar_image, None);
    assert!(s.cleanup);
    assert_eq!(s.max_concurrent_tasks, 0);
    assert!(!s.one_shot);
    assert_eq!(s.idle_on_complete, None);
    assert_eq!(s.web_socket_url, settings::DEFAULT_WEB_SOCKET_URL);
    assert_eq!(s.server_root_url, settings::DEFAULT_SERVER_ROOT_URL);
    assert_eq!(s.session_sharing_server_url, None);
    assert_eq!(s.log_level, log::LevelFilter::Info);
    assert_eq!(s.ca_bundle, None);
    assert_eq!(s.timing, Timing::default());
}

// ---- worker id ----------------------------------------------------------------------------------

#[test]
fn worker_id_flag_beats_file() {
    let s = Run::new(&["--worker-id", "cli"])
        .yaml("worker_id: file\n")
        .settings();
    assert_eq!(s.worker_id, "cli");
    let s = Run::new(&[]).yaml("worker_id: file\n").settings();
    assert_eq!(s.worker_id, "file");
    // An empty flag does not override the file.
    let s = Run::new(&["--worker-id="])
        .yaml("worker_id: file\n")
        .settings();
    assert_eq!(s.worker_id, "file");
}

#[test]
fn worker_id_required_for_the_daemon_only() {
    let want = "worker-id is required (via --worker-id flag or config file)";
    assert_eq!(Run::new(&[]).err(), want);
    assert_eq!(Run::new(&[]).yaml("worker_id: \"\"\n").err(), want);
    assert_eq!(
        Run::new(&[]).mode(Mode::Check).settings().worker_id,
        "local"
    );
    assert_eq!(
        Run::new(&[]).mode(Mode::RunOnce).settings().worker_id,
        "local"
    );
    assert_eq!(
        Run::new(&["--worker-id", "x"])
            .mode(Mode::RunOnce)
            .settings()
            .worker_id,
        "x"
    );
}

#[test]
fn worker_id_warp_prefix_is_reserved() {
    assert_eq!(
        Run::new(&["--worker-id", "warpx"]).err(),
        "invalid worker-id \"warpx\": values starting with 'warp' are reserved"
    );
    assert_eq!(
        Run::new(&[]).yaml("worker_id: warp\n").err(),
        "invalid worker-id \"warp\": values starting with 'warp' are reserved"
    );
    assert_eq!(
        Run::new(&["--worker-id", "warp-1"]).mode(Mode::Check).err(),
        "invalid worker-id \"warp-1\": values starting with 'warp' are reserved"
    );
    // Case-sensitive, as upstream.
    assert_eq!(
        Run::new(&["--worker-id", "Warp1"]).settings().worker_id,
        "Warp1"
    );
    assert_eq!(
        Run::new(&["--worker-id", "my-warp"]).settings().worker_id,
        "my-warp"
    );
}

// ---- API key ------------------------------------------------------------------------------------

#[test]
fn api_key_flag_beats_env() {
    let s = Run::new(&w(&["--api-key", "flag-key"])).settings();
    assert_eq!(s.api_key.unwrap().expose(), "flag-key");
    let s = Run::new(&w(&[])).settings();
    assert_eq!(s.api_key.unwrap().expose(), "env-key");
}

#[test]
fn api_key_required_for_the_daemon_only() {
    let want = "an API key is required: set --api-key, --api-key-file or WARP_API_KEY";
    assert_eq!(Run::new(&w(&[])).env(&[]).err(), want);
    assert_eq!(Run::new(&w(&[])).env(&[("WARP_API_KEY", "")]).err(), want);
    assert!(
        Run::new(&[])
            .env(&[])
            .mode(Mode::Check)
            .settings()
            .api_key
            .is_none()
    );
    assert!(
        Run::new(&[])
            .env(&[])
            .mode(Mode::RunOnce)
            .settings()
            .api_key
            .is_none()
    );
    // When given, it is still carried in run-once/check.
    let s = Run::new(&[]).mode(Mode::Check).settings();
    assert_eq!(s.api_key.unwrap().expose(), "env-key");
}

#[test]
fn api_key_file_is_read_trimmed_and_beats_env() {
    let dir = temp_dir("key");
    let path = dir.join("api-key");
    for (content, want) in [
        ("file-key\n", "file-key"),
        ("file-key", "file-key"),
        ("file-key \r\n\n\t", "file-key"),
    ] {
        std::fs::write(&path, content).unwrap();
        let p = path.to_str().unwrap();
        let s = Run::new(&w(&["--api-key-file", p])).settings();
        assert_eq!(s.api_key.unwrap().expose(), want, "{content:?}");
    }
    let p = path.to_str().unwrap();
    for (content, reason) in [
        ("", "the file is empty"),
        ("\n \n", "the file is empty"),
        (
            "two\nlines\n",
            "the key contains whitespace or control characters (expected the key alone)",
        ),
        (
            "sek ret\n",
            "the key contains whitespace or control characters (expected the key alone)",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let e = Run::new(&w(&["--api-key-file", p])).err();
        assert_eq!(e, format!("--api-key-file {p}: {reason}"));
    }
    std::fs::write(&path, b"\xff\xfe").unwrap();
    assert_eq!(
        Run::new(&w(&["--api-key-file", p])).err(),
        format!("--api-key-file {p}: the file is not valid UTF-8")
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let e = Run::new(&w(&["--api-key-file", p])).err();
    assert!(e.starts_with(&format!("reading API key file {p}: ")), "{e}");
}

#[test]
fn api_key_file_relative_to_cwd() {
    // `Run` uses a fresh temp dir as cwd, so a relative name that does not exist there fails
    // with the absolute path in the message.
    let e = Run::new(&w(&["--api-key-file", "key.txt"])).err();
    assert!(e.starts_with("reading API key file /"), "{e}");
    assert!(e.contains("/key.txt: "), "{e}");
}

#[test]
fn api_key_never_appears_in_errors() {
    let secret = "sekrit-api-key-value";
    let bad_runs = [
        Run::new(&["--api-key", secret]),
        Run::new(&["--api-key", secret, "--worker-id", "warpz"]),
        Run::new(&["--api-key", secret, "--worker-id", "w", "-e", "=x"]),
        Run::new(&["--api-key", secret, "--worker-id", "w"]).yaml("bogus: 1\n"),
        Run::new(&["--worker-id", "w"])
            .env(&[("WARP_API_KEY", secret), ("OZ_WORKER_KILL_GRACE", "x")]),
    ];
    for r in bad_runs {
        let e = r.err();
        assert!(!e.contains(secret), "{e}");
    }
    let s = Run::new(&w(&["--api-key", secret])).settings();
    assert!(!format!("{s:?}").contains(secret));
}

// ---- backend selection -----------------------------------------------------------------------

#[test]
fn backend_from_file_block() {
    let cases = [
        ("backend:\n  direct: {}\n", BackendKind::Direct),
        ("backend:\n  kubernetes: {}\n", BackendKind::Kubernetes),
        (
            "backend:\n  command: {dispatch_command: d}\n",
            BackendKind::Command,
        ),
        ("backend:\n  docker: {}\n", BackendKind::Docker),
        ("backend:\n  direct:\n", BackendKind::Docker),
        ("worker_id: w1\n", BackendKind::Docker),
    ];
    for (yaml, kind) in cases {
        let r = Run::new(&w(&[])).yaml(yaml).ok();
        assert_eq!(r.settings.backend_kind(), kind, "{yaml}");
        assert!(r.warnings.is_empty());
    }
}

#[test]
fn backend_flag_beats_file_block_with_a_warning() {
    let r = Run::new(&w(&["--backend", "docker"]))
        .yaml("backend:\n  direct:\n    workspace_root: /srv/ws\n")
        .ok();
    assert_eq!(r.settings.backend_kind(), BackendKind::Docker);
    assert_eq!(r.warnings.len(), 1);
    let warning = &r.warnings[0];
    assert!(
        warning.starts_with("--backend docker ignores the backend.direct block of config file /"),
        "{warning}"
    );
    assert!(warning.ends_with("config.yaml; the docker backend uses its defaults"));
    // The ignored block does not leak into the chosen backend's settings.
    let r = Run::new(&w(&["--backend", "direct"]))
        .yaml("backend:\n  docker:\n    environment: [{name: A, value: b}]\n")
        .ok();
    let d = direct(&r.settings);
    assert!(d.env.is_empty());
    assert_eq!(
        d.workspace_root,
        Some(PathBuf::from(settings::DEFAULT_WORKSPACE_ROOT))
    );
    // Same backend: no warning.
    let r = Run::new(&w(&["--backend", "direct"]))
        .yaml("backend:\n  direct: {}\n")
        .ok();
    assert!(r.warnings.is_empty());
}

// ---- cleanup, concurrency, idle, one-shot ----------------------------------------------------

#[test]
fn cleanup_precedence() {
    assert!(Run::new(&w(&[])).settings().cleanup);
    assert!(Run::new(&w(&[])).yaml("cleanup: true\n").settings().cleanup);
    assert!(
        !Run::new(&w(&[]))
            .yaml("cleanup: false\n")
            .settings()
            .cleanup
    );
    assert!(!Run::new(&w(&["--no-cleanup"])).settings().cleanup);
    assert!(
        !Run::new(&w(&["--no-cleanup"]))
            .yaml("cleanup: true\n")
            .settings()
            .cleanup
    );
}

#[test]
fn max_concurrent_tasks_precedence() {
    let m = |args: &[&'static str], yaml: &'static str| {
        Run::new(&w(args))
            .yaml(yaml)
            .settings()
            .max_concurrent_tasks
    };
    assert_eq!(m(&[], "max_concurrent_tasks: 5\n"), 5);
    assert_eq!(
        m(
            &["--max-concurrent-tasks", "3"],
            "max_concurrent_tasks: 5\n"
        ),
        3
    );
    // As upstream, an explicit 0 on the command line cannot override the file.
    assert_eq!(
        m(
            &["--max-concurrent-tasks", "0"],
            "max_concurrent_tasks: 5\n"
        ),
        5
    );
    assert_eq!(m(&["--max-concurrent-tasks", "2"], "worker_id: w\n"), 2);
    assert_eq!(m(&[], "worker_id: w\n"), 0);
}

#[test]
fn idle_on_complete_precedence() {
    let i = |args: &[&'static str], yaml: &'static str| {
        Run::new(&w(args)).yaml(yaml).settings().idle_on_complete
    };
    assert_eq!(i(&[], "idle_on_complete: 10m\n"), Some("10m".into()));
    assert_eq!(
        i(&["--idle-on-complete", "5m"], "idle_on_complete: 10m\n"),
        Some("5m".into())
    );
    assert_eq!(
        i(&["--idle-on-complete="], "idle_on_complete: 10m\n"),
        Some("10m".into())
    );
    assert_eq!(i(&[], "idle_on_complete: \"\"\n"), None);
}

#[test]
fn one_shot_forces_one_task_and_needs_direct() {
    let s = Run::new(&w(&[
        "--one-shot",
        "--backend",
        "direct",
        "--max-concurrent-tasks",
        "5",
    ]))
    .settings();
    assert!(s.one_shot);
    assert_eq!(s.max_concurrent_tasks, 1);
    let s = Run::new(&w(&[]))
        .yaml("one_shot: true\nmax_concurrent_tasks: 4\nbackend:\n  direct: {}\n")
        .settings();
    assert!(s.one_shot);
    assert_eq!(s.max_concurrent_tasks, 1);
    // CLI true wins over file false.
    let s = Run::new(&w(&["--one-shot"]))
        .yaml("one_shot: false\nbackend:\n  direct: {}\n")
        .settings();
    assert!(s.one_shot);
    for (args, yaml, name) in [
        (vec!["--one-shot"], "worker_id: w\n", "docker"),
        (
            vec!["--one-shot", "--backend", "kubernetes"],
            "worker_id: w\n",
            "kubernetes",
        ),
        (
            vec!["--one-shot"],
            "backend:\n  command: {dispatch_command: d}\n",
            "command",
        ),
    ] {
        let mut a = w(&[]);
        a.extend(args);
        assert_eq!(
            Run::new(&a).yaml(yaml).err(),
            format!("backend \"{name}\" does not support one-shot mode")
        );
    }
}

// ---- -e parsing and env merge -----------------------------------------------------------------

#[test]
fn env_flag_errors() {
    for (entry, want) in [
        ("", "invalid --env flag: empty value"),
        ("=x", "invalid --env flag: missing key in \"=x\""),
        (
            "A B=c",
            "invalid --env flag: key contains whitespace in \"A B=c\"",
        ),
    ] {
        assert_eq!(Run::new(&w(&["-e", entry])).err(), want);
    }
}

#[test]
fn env_merge_docker() {
    let s = Run::new(&w(&["-e", "B=cli", "-e", "HOST_ONLY", "-e", "C=3", "-e", "MISSING"]))
        .yaml(
            "backend:\n  docker:\n    environment:\n      - {name: A, value: \"1\"}\n      - {name: B, value: file}\n      - {name: INHERIT}\n      - {name: A, value: \"2\"}\n",
        )
        .env(&[("WARP_API_KEY", "k"), ("HOST_ONLY", "h"), ("INHERIT", "inherited")])
        .settings();
    assert_eq!(
        docker(&s).env,
        pairs(&[
            ("A", "2"),
            ("B", "cli"),
            ("INHERIT", "inherited"),
            ("HOST_ONLY", "h"),
            ("C", "3"),
            ("MISSING", "")
        ])
    );
}

#[test]
fn resolve_env_missing_host_var_is_empty() {
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  direct:\n    environment:\n      - name: NOT_SET\n")
        .settings();
    assert_eq!(direct(&s).env, pairs(&[("NOT_SET", "")]));
}

#[test]
fn env_merge_direct_and_command() {
    let s = Run::new(&w(&["-e", "A=cli"]))
        .yaml(
            "backend:\n  direct:\n    environment: [{name: A, value: file}, {name: B, value: b}]\n",
        )
        .settings();
    assert_eq!(direct(&s).env, pairs(&[("A", "cli"), ("B", "b")]));
    let s = Run::new(&w(&["-e", "A=cli"]))
        .yaml("backend:\n  command:\n    dispatch_command: d\n    environment: [{name: A, value: file}]\n")
        .settings();
    assert_eq!(command(&s).env, pairs(&[("A", "cli")]));
}

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
            "config.yaml: invalid backend.command.dispatch_timeout \"1x\": unknown unit \"x\" in \
             duration \"1x\" (valid units: ns, us, µs, ms, s, m, h)"
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
    assert_eq!(k.active_deadline_seconds, None);
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

// ---- URLs, paths, CA bundle, log level, warnings ------------------------------------------------

#[test]
fn url_flags_are_validated() {
    let s = Run::new(&w(&[
        "--web-socket-url",
        "ws://127.0.0.1:9/ws",
        "--server-root-url",
        "http://127.0.0.1:8",
        "--session-sharing-server-url",
        "https://share.example",
    ]))
    .settings();
    assert_eq!(s.web_socket_url, "ws://127.0.0.1:9/ws");
    assert_eq!(s.server_root_url, "http://127.0.0.1:8");
    assert_eq!(
        s.session_sharing_server_url.as_deref(),
        Some("https://share.example")
    );
    assert_eq!(
        Run::new(&w(&["--web-socket-url", "https://oz/ws"])).err(),
        "--web-socket-url: invalid URL \"https://oz/ws\": scheme \"https\" is not allowed (expected ws or wss)"
    );
    assert_eq!(
        Run::new(&w(&["--server-root-url", "wss://oz"])).err(),
        "--server-root-url: invalid URL \"wss://oz\": scheme \"wss\" is not allowed (expected http or https)"
    );
    assert_eq!(
        Run::new(&w(&["--server-root-url", "app.warp.dev"])).err(),
        "--server-root-url: invalid URL \"app.warp.dev\": expected http:// or https://HOST..."
    );
}

#[test]
fn config_file_path_expansion() {
    // Run passes a relative --config-file; it resolves against the working directory.
    let s = Run::new(&[]).yaml("worker_id: rel\n").settings();
    assert_eq!(s.worker_id, "rel");

    let home = temp_dir("home");
    std::fs::write(home.join("oz.yaml"), "worker_id: from-home\n").unwrap();
    let low = match cli::parse(vec!["--config-file".into(), "~/oz.yaml".into()]).unwrap() {
        Invocation::Run { args, .. } => args,
        other => panic!("{other:?}"),
    };
    let home_str = home.to_str().unwrap().to_owned();
    let env = move |k: &str| match k {
        "HOME" => Some(home_str.clone()),
        "WARP_API_KEY" => Some("k".to_owned()),
        _ => None,
    };
    let s = resolve_with_cwd(&low, Mode::Daemon, &env, Path::new("/"))
        .unwrap()
        .settings;
    assert_eq!(s.worker_id, "from-home");
    let no_home = |k: &str| (k == "WARP_API_KEY").then(|| "k".to_owned());
    assert_eq!(
        resolve_with_cwd(&low, Mode::Daemon, &no_home, Path::new("/"))
            .unwrap_err()
            .to_string(),
        "--config-file ~/oz.yaml: cannot expand ~: HOME is not set"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn ca_bundle_precedence() {
    let s = Run::new(&w(&["--ca-bundle", "/cli.pem"]))
        .yaml("ca_bundle: /file.pem\n")
        .settings();
    assert_eq!(s.ca_bundle, Some(PathBuf::from("/cli.pem")));
    let s = Run::new(&w(&[])).yaml("ca_bundle: /file.pem\n").settings();
    assert_eq!(s.ca_bundle, Some(PathBuf::from("/file.pem")));
    let s = Run::new(&w(&["--ca-bundle", "ca.pem"])).settings();
    let p = s.ca_bundle.unwrap();
    assert!(p.is_absolute() && p.ends_with("ca.pem"), "{p:?}");
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("ca_bundle: \"\"\n")
            .settings()
            .ca_bundle,
        None
    );
}

#[test]
fn log_level_flag_and_default() {
    assert_eq!(
        Run::new(&w(&[])).settings().log_level,
        log::LevelFilter::Info
    );
    assert_eq!(
        Run::new(&w(&["--log-level", "debug"])).settings().log_level,
        log::LevelFilter::Debug
    );
}

#[test]
fn collect_task_logs_warns_only_when_enabled() {
    let r = Run::new(&w(&[])).yaml("collect_task_logs: true\n").ok();
    assert_eq!(
        r.warnings,
        vec![
            "collect_task_logs is accepted but per-task log export is not supported by this worker"
        ]
    );
    assert!(
        Run::new(&w(&[]))
            .yaml("collect_task_logs: false\n")
            .ok()
            .warnings
            .is_empty()
    );
}

#[test]
fn file_errors_surface_through_resolve() {
    let e = Run::new(&w(&[])).yaml("").err();
    assert!(e.starts_with("reading config file /"), "{e}");
    assert!(e.ends_with(
        "config.yaml: the file is empty (it must be a YAML mapping, e.g. `worker_id: my-worker`)"
    ));
    let e = Run::new(&w(&[])).yaml("worker_id: w\nbogus: 1\n").err();
    assert!(
        e.contains("config.yaml: line 2: unknown key \"bogus\" in the top level (allowed: "),
        "{e}"
    );
    let e = Run::new(&w(&[])).yaml("max_concurrent_tasks: -2\n").err();
    assert!(e.starts_with("invalid config file /"), "{e}");
    assert!(e.ends_with("config.yaml: max_concurrent_tasks must not be negative (got -2); the Go worker treated negative values as unlimited: use 0 for unlimited"));
    let e = Run::new(&["--config-file", "/nonexistent/oz.yaml"]).err();
    assert!(
        e.starts_with("reading config file /nonexistent/oz.yaml: "),
        "{e}"
    );
}

// ---- timing environment ---------------------------------------------------------------------

#[test]
fn timing_env_vars() {
    let env = [
        ("WARP_API_KEY", "k"),
        ("OZ_WORKER_PING_INTERVAL", "100ms"),
        ("OZ_WORKER_PONG_TIMEOUT", "1.5s"),
        ("OZ_WORKER_BACKOFF_INITIAL", "10ms"),
        ("OZ_WORKER_BACKOFF_MAX", "1m30s"),
        ("OZ_WORKER_WRITE_TIMEOUT", "2s"),
        ("OZ_WORKER_SHUTDOWN_TIMEOUT", "3s"),
        ("OZ_WORKER_KILL_GRACE", "250ms"),
    ];
    let t = Run::new(&w(&[])).env(&env).settings().timing;
    assert_eq!(
        t,
        Timing {
            ping_interval: Duration::from_millis(100),
            pong_timeout: Duration::from_millis(1500),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(90),
            write_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(3),
            kill_grace: Duration::from_millis(250),
        }
    );
    // Empty means unset.
    let t = Run::new(&w(&[]))
        .env(&[("WARP_API_KEY", "k"), ("OZ_WORKER_PING_INTERVAL", "")])
        .settings()
        .timing;
    assert_eq!(t, Timing::default());
}

#[test]
fn timing_env_errors_name_the_variable() {
    for var in cli::TIMING_ENV {
        for (value, reason) in [
            ("fast", "invalid duration \"fast\""),
            ("0", "must be a positive duration"),
            ("0s", "must be a positive duration"),
            ("-1s", "must be a positive duration"),
            (
                "10",
                "missing unit in duration \"10\" (use one of ns, us, ms, s, m, h, e.g. \"90s\")",
            ),
            ("99999999999h", "invalid duration \"99999999999h\""),
        ] {
            let e = Run::new(&w(&[]))
                .env(&[("WARP_API_KEY", "k"), (var.name, value)])
                .err();
            assert_eq!(
                e,
                format!("{}: invalid value {value:?}: {reason}", var.name)
            );
        }
    }
}

// ---- precedence across every flag with an env var or config key -----------------------------

#[test]
fn precedence_flag_env_file_default_for_every_table_flag() {
    // Each flag that has an env var or YAML key is listed here; adding one to the table without
    // a case fails the coverage assertion below.
    let mut covered = Vec::new();

    // --api-key: flag > env > (no file key) > none.
    covered.push("api-key");
    assert_eq!(
        Run::new(&w(&["--api-key", "f"]))
            .settings()
            .api_key
            .unwrap()
            .expose(),
        "f"
    );
    assert_eq!(
        Run::new(&w(&[])).settings().api_key.unwrap().expose(),
        "env-key"
    );
    assert!(
        Run::new(&[])
            .env(&[])
            .mode(Mode::Check)
            .settings()
            .api_key
            .is_none()
    );

    covered.push("worker-id");
    assert_eq!(
        Run::new(&["--worker-id", "f"])
            .yaml("worker_id: y\n")
            .settings()
            .worker_id,
        "f"
    );
    assert_eq!(
        Run::new(&[]).yaml("worker_id: y\n").settings().worker_id,
        "y"
    );

    covered.push("ca-bundle");
    covered.push("backend");
    covered.push("max-concurrent-tasks");
    covered.push("idle-on-complete");
    covered.push("one-shot");
    covered.push("no-cleanup");
    // (covered in detail by the tests above)
    assert_eq!(
        Run::new(&w(&["--backend", "direct"]))
            .yaml("backend:\n  kubernetes: {}\n")
            .settings()
            .backend_kind(),
        BackendKind::Direct
    );

    for f in cli::FLAGS {
        if f.env.is_some() || f.yaml.is_some() {
            assert!(
                covered.contains(&f.long),
                "--{} lacks a precedence test",
                f.long
            );
        }
    }
}

#[test]
fn every_error_variant_displays_one_line() {
    let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
    let errors = [
        ConfigError::ReadFile {
            what: "config file",
            path: "/p".into(),
            source: io(),
        },
        ConfigError::Parse {
            path: "/p".into(),
            line: Some(3),
            message: "m".into(),
        },
        ConfigError::Parse {
            path: "/p".into(),
            line: None,
            message: "m".into(),
        },
        ConfigError::Invalid {
            path: "/p".into(),
            problems: vec!["a".into(), "b".into()],
        },
        ConfigError::WorkerIdRequired,
        ConfigError::WorkerIdReserved("warp".into()),
        ConfigError::ApiKeyRequired,
        ConfigError::ApiKeyFile {
            path: "/k".into(),
            reason: "the file is empty",
        },
        ConfigError::EnvFlag("empty value".into()),
        ConfigError::Volume {
            origin: "-v".into(),
            spec: "x".into(),
            reason: "r".into(),
        },
        ConfigError::Url {
            flag: "--web-socket-url",
            value: "v".into(),
            reason: "r".into(),
        },
        ConfigError::Path {
            flag: "--config-file",
            path: "~/x".into(),
            reason: "r".into(),
        },
        ConfigError::OneShotUnsupported(BackendKind::Docker),
        ConfigError::CommandNeedsDispatch,
        ConfigError::TimingEnv {
            var: "OZ_WORKER_KILL_GRACE",
            value: "x".into(),
            reason: "r".into(),
        },
    ];
    let want = [
        "reading config file /p: gone",
        "reading config file /p: line 3: m",
        "reading config file /p: m",
        "invalid config file /p: a; b",
        "worker-id is required (via --worker-id flag or config file)",
        "invalid worker-id \"warp\": values starting with 'warp' are reserved",
        "an API key is required: set --api-key, --api-key-file or WARP_API_KEY",
        "--api-key-file /k: the file is empty",
        "invalid --env flag: empty value",
        "invalid volume \"x\" (-v): r",
        "--web-socket-url: invalid URL \"v\": r",
        "--config-file ~/x: r",
        "backend \"docker\" does not support one-shot mode",
        "command backend requires a dispatch command (backend.command.dispatch_command)",
        "OZ_WORKER_KILL_GRACE: invalid value \"x\": r",
    ];
    for (e, w) in errors.iter().zip(want) {
        assert_eq!(e.to_string(), w);
    }
    assert!(std::error::Error::source(&errors[0]).is_some());
    assert!(
        std::mem::size_of::<ConfigError>() <= 96,
        "keep ConfigError small"
    );
}
