//! The Go worker's `main_test.go` merge checklist, precedence (flag > env > file > default) for
//! every flag that has an env var or a config key, and every merge error message.
//!
//! Go test → Rust test (in `backends`): TestMergeConfigKubernetesFromFile →
//! `merge_config_kubernetes_from_file`; TestMergeConfigKubernetesCLIOverridesCleanupAndWorkerID
//! → `merge_config_kubernetes_cli_overrides_cleanup_and_worker_id`;
//! TestMergeConfigCommandFromFile → `merge_config_command_from_file`;
//! TestMergeConfigCommandInvalidDispatchTimeout → `command_defaults_and_errors`;
//! TestMergeConfigKubernetesAllowsZeroUnschedulableTimeout →
//! `merge_config_kubernetes_allows_zero_unschedulable_timeout`;
//! TestMergeConfigKubernetesCodingCLISidecars →
//! `merge_config_kubernetes_coding_cli_sidecars_are_copied`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use super::*;
use crate::cli::{self, Invocation};
use crate::config::file::tests::temp_dir;

mod backends;
mod environment;
mod errors;
mod ops;
mod urls_paths;

/// One resolution: command line, optional config file text, environment, mode.
pub(super) struct Run<'a> {
    args: Vec<&'a str>,
    yaml: Option<&'a str>,
    env: Vec<(&'a str, &'a str)>,
    mode: Mode,
}

impl<'a> Run<'a> {
    pub(super) fn new(args: &[&'a str]) -> Self {
        Run {
            args: args.to_vec(),
            yaml: None,
            env: vec![("WARP_API_KEY", "env-key")],
            mode: Mode::Daemon,
        }
    }
    pub(super) fn yaml(mut self, y: &'a str) -> Self {
        self.yaml = Some(y);
        self
    }
    pub(super) fn env(mut self, env: &[(&'a str, &'a str)]) -> Self {
        self.env = env.to_vec();
        self
    }
    pub(super) fn mode(mut self, m: Mode) -> Self {
        self.mode = m;
        self
    }

    /// Parses the args through the real CLI parser, then resolves with cwd = a temp dir that
    /// holds `config.yaml` when YAML was given.
    pub(super) fn resolve(&self) -> Result<Resolved, ConfigError> {
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

    pub(super) fn ok(&self) -> Resolved {
        self.resolve().unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn settings(&self) -> Settings {
        self.ok().settings
    }

    pub(super) fn err(&self) -> String {
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

pub(super) fn w<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--worker-id", "w1"];
    v.extend_from_slice(args);
    v
}

pub(super) fn docker(s: &Settings) -> &DockerSettings {
    match &s.backend {
        BackendSettings::Docker(d) => d,
        other => panic!("{other:?}"),
    }
}
pub(super) fn direct(s: &Settings) -> &DirectSettings {
    match &s.backend {
        BackendSettings::Direct(d) => d,
        other => panic!("{other:?}"),
    }
}
pub(super) fn command(s: &Settings) -> &CommandSettings {
    match &s.backend {
        BackendSettings::Command(c) => c,
        other => panic!("{other:?}"),
    }
}
pub(super) fn kube(s: &Settings) -> &KubernetesSettings {
    match &s.backend {
        BackendSettings::Kubernetes(k) => k,
        other => panic!("{other:?}"),
    }
}

pub(super) fn pairs(v: &[(&str, &str)]) -> EnvList {
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

    // --collect-task-logs: flag > env > file > true.
    covered.push("collect-task-logs");
    let collect = |args: &[&str], env: Option<&str>, yaml: &str| {
        let mut e = vec![("WARP_API_KEY", "k")];
        if let Some(v) = env {
            e.push(("OZ_COLLECT_TASK_LOGS", v));
        }
        let mut a = vec!["--worker-id", "w"];
        a.extend_from_slice(args);
        let run = Run::new(&a).env(&e);
        let run = if yaml.is_empty() { run } else { run.yaml(yaml) };
        run.settings().collect_task_logs
    };
    assert!(collect(&[], None, ""));
    assert!(!collect(&[], None, "collect_task_logs: false\n"));
    assert!(collect(&[], Some("true"), "collect_task_logs: false\n"));
    assert!(!collect(&[], Some("0"), "collect_task_logs: true\n"));
    assert!(collect(&["--collect-task-logs"], Some("false"), ""));
    assert!(!collect(&["--collect-task-logs=false"], Some("true"), ""));
    assert!(collect(
        &["--collect-task-logs=T"],
        None,
        "collect_task_logs: false\n"
    ));

    covered.push("ca-bundle");
    covered.push("backend");
    covered.push("max-concurrent-tasks");
    covered.push("idle-on-complete");
    covered.push("one-shot");
    covered.push("no-cleanup");
    // (in `ops`)
    covered.push("log-format");
    covered.push("metrics-addr");
    covered.push("drain-timeout");

    // --state-dir: flag > file > the systemd StateDirectory default.
    covered.push("state-dir");
    assert_eq!(
        Run::new(&w(&["--state-dir", "/flag/state"]))
            .yaml("state_dir: /file/state\n")
            .settings()
            .state_dir,
        PathBuf::from("/flag/state")
    );
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("state_dir: /file/state\n")
            .settings()
            .state_dir,
        PathBuf::from("/file/state")
    );
    assert_eq!(
        Run::new(&w(&[])).settings().state_dir,
        PathBuf::from("/var/lib/oz-agent-worker")
    );
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
