//! The direct backend, with the stand-in agent as the oz CLI. Covers the Go worker's
//! `direct_test.go` checklist plus cancellation, isolation and cleanup.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oz_agent_worker::backend::direct::{DirectBackend, DirectError, Layout};
use oz_agent_worker::backend::{
    Backend, BackendKind, CancelSource, Completion, Failure, FailureReason, TaskRef,
};
use oz_agent_worker::settings::DirectSettings;
use oz_agent_worker::task::TaskSpec;

use super::*;

struct Fixture {
    scratch: Scratch,
    root: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    out: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let scratch = Scratch::new(name);
        Fixture {
            root: scratch.join("root"),
            home: scratch.dir("home"),
            tmp: scratch.dir("tmp"),
            out: scratch.dir("out"),
            scratch,
        }
    }

    fn settings(&self) -> DirectSettings {
        DirectSettings {
            workspace_root: Some(self.root.clone()),
            target_dir: None,
            oz_path: Some(stand_in()),
            setup_command: None,
            teardown_command: None,
            env: vec![],
        }
    }

    fn backend_with(&self, settings: DirectSettings, cleanup: bool) -> DirectBackend {
        DirectBackend::with_env(settings, ctx(cleanup), worker_env(&self.home, &self.tmp)).unwrap()
    }

    fn backend(&self) -> DirectBackend {
        self.backend_with(self.settings(), true)
    }

    fn out(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// A spec whose agent records what it saw to `out/record`.
    fn spec(&self, task_id: &str, env: &[(&str, &str)]) -> TaskSpec {
        let rec = self.out("record");
        let mut all = vec![
            ("TASK_ID", task_id),
            ("STANDIN_RECORD", rec.to_str().unwrap()),
        ];
        all.extend_from_slice(env);
        spec(task_id, &all)
    }

    fn record(&self) -> Record {
        Record::read(&self.out("record"))
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn failure(r: Result<Completion, Failure>) -> Failure {
    r.expect_err("the task should have failed")
}

#[test]
fn runs_the_agent_in_a_fresh_workspace_and_removes_it() {
    let f = Fixture::new("success");
    let b = f.backend();
    assert_eq!(b.kind(), BackendKind::Direct);
    assert!(!b.preserves_tasks_on_shutdown());
    let s = f.spec("task-ok", &[]);
    assert_eq!(b.execute(&s, &token()), Ok(Completion::Finished));
    let r = f.record();
    assert_eq!(r.argv, s.base_args);
    let ws = f.root.join("task-ok");
    assert_eq!(r.cwd, ws);
    assert_eq!(r.var("TASK_ID"), Some("task-ok"));
    assert_eq!(r.var("GIT_CONFIG_GLOBAL"), Some(p(&ws.join(".gitconfig"))));
    assert!(!ws.exists(), "workspace removed after the task");
    assert!(f.root.is_dir());
}

#[test]
fn a_nonzero_exit_is_agent_invocation_with_its_code() {
    let f = Fixture::new("exit3");
    let e = failure(
        f.backend()
            .execute(&f.spec("t", &[("STANDIN_EXIT", "3")]), &token()),
    );
    assert_eq!(e.reason, FailureReason::AgentInvocation);
    assert_eq!(e.exit_code, Some(3));
    assert_eq!(e.message, "oz agent exited with error: exit status 3");
}

#[test]
fn a_signal_death_is_128_plus_the_signal() {
    let f = Fixture::new("signal");
    let b = f.backend();
    let e = failure(b.execute(&f.spec("t", &[("STANDIN_KILL_SELF", "KILL")]), &token()));
    assert_eq!(
        (e.reason, e.exit_code),
        (FailureReason::AgentInvocation, Some(137))
    );
    assert_eq!(e.message, "oz agent exited with error: signal: SIGKILL");
    let e = failure(b.execute(&f.spec("t", &[("STANDIN_KILL_SELF", "TERM")]), &token()));
    assert_eq!(e.exit_code, Some(143));
}

#[test]
fn a_missing_agent_binary_is_agent_invocation_without_a_code() {
    let f = Fixture::new("missing");
    let mut settings = f.settings();
    settings.oz_path = Some(f.scratch.join("no-such-oz"));
    let e = failure(
        f.backend_with(settings, true)
            .execute(&f.spec("t", &[]), &token()),
    );
    assert_eq!(
        (e.reason, e.exit_code),
        (FailureReason::AgentInvocation, None)
    );
    assert!(
        e.message
            .starts_with("oz agent exited with error: failed to start "),
        "{}",
        e.message
    );
}

/// Starts a long-running agent with a grandchild, cancels it and checks nothing survives.
fn cancel_case(name: &str, ignore_term: bool, via_backend: bool) {
    let f = Fixture::new(name);
    let mut settings = f.settings();
    settings.teardown_command = Some(format!("echo \"$OZ_RUN_ID\" > {}", p(&f.out("teardown"))));
    let b = Arc::new(f.backend_with(settings, true));
    let gc = f.out("grandchild");
    let ignore = if ignore_term { "1" } else { "0" };
    let s = f.spec(
        "task-cancel",
        &[
            ("STANDIN_GRANDCHILD", p(&gc)),
            ("STANDIN_SLEEP", "300"),
            ("STANDIN_IGNORE_TERM", ignore),
        ],
    );
    let cancel = token();
    let (b2, c2) = (b.clone(), cancel.clone());
    let rx = spawn(move || b2.execute(&s, &c2));
    let pid: i32 = wait_for_file(&gc).trim().parse().unwrap();
    if via_backend {
        b.cancel(&TaskRef {
            task_id: "task-cancel".into(),
            execution_id: None,
        })
        .unwrap();
    } else {
        cancel.cancel(CancelSource::User);
    }
    let r = rx
        .recv_timeout(PROMPTLY)
        .expect("execute did not return after the cancellation");
    assert_eq!(r, Err(Failure::cancelled()));
    assert!(
        wait_until(GRACE + Duration::from_secs(10), || process_gone(pid)),
        "grandchild {pid} survived"
    );
    assert_eq!(
        std::fs::read_to_string(f.out("teardown")).unwrap().trim(),
        "task-cancel",
        "teardown runs after a cancellation"
    );
    assert!(!f.root.join("task-cancel").exists());
}

#[test]
fn cancellation_kills_the_whole_process_group() {
    cancel_case("cancel", false, false);
}

#[test]
fn cancellation_kills_an_agent_that_ignores_sigterm() {
    cancel_case("cancel-ignore", true, false);
}

#[test]
fn backend_cancel_reaches_the_running_execution() {
    cancel_case("cancel-backend", false, true);
}

#[test]
fn the_worker_api_key_reaches_neither_agent_nor_hooks() {
    let f = Fixture::new("key");
    let mut settings = f.settings();
    settings.setup_command = Some(format!("env > {}", p(&f.out("setup.env"))));
    settings.teardown_command = Some(format!("env > {}", p(&f.out("teardown.env"))));
    assert_eq!(
        f.backend_with(settings, true)
            .execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    let r = f.record();
    assert_eq!(r.var("WARP_API_KEY"), None);
    assert_eq!(
        r.var("WORKER_ONLY"),
        None,
        "the agent gets a minimal environment"
    );
    assert_eq!(r.var("HOME"), Some(p(&f.home)));
    assert_eq!(r.var("TMPDIR"), Some(p(&f.tmp)));
    assert!(r.var("PATH").is_some());
    for hook in ["setup.env", "teardown.env"] {
        let env = env_file(&f.out(hook));
        assert_eq!(env.get("WARP_API_KEY"), None, "{hook}");
        assert_eq!(
            env.get("WORKER_ONLY").map(String::as_str),
            Some("worker-only-value"),
            "{hook}"
        );
    }
    for file in ["record", "setup.env", "teardown.env"] {
        assert!(
            !std::fs::read_to_string(f.out(file))
                .unwrap()
                .contains(WORKER_KEY),
            "{file}"
        );
    }
}

#[test]
fn a_server_sent_api_key_reaches_agent_and_setup() {
    let f = Fixture::new("taskkey");
    let mut settings = f.settings();
    settings.setup_command = Some(format!("env > {}", p(&f.out("setup.env"))));
    let s = f.spec("t", &[("WARP_API_KEY", "task-scoped-key")]);
    assert_eq!(
        f.backend_with(settings, true).execute(&s, &token()),
        Ok(Completion::Finished)
    );
    assert_eq!(f.record().var("WARP_API_KEY"), Some("task-scoped-key"));
    assert_eq!(
        env_file(&f.out("setup.env"))
            .get("WARP_API_KEY")
            .map(String::as_str),
        Some("task-scoped-key")
    );
}

#[test]
fn operator_env_overrides_task_env_for_the_agent() {
    let f = Fixture::new("operator");
    let mut settings = f.settings();
    settings.env = vec![
        ("SHARED".into(), "operator".into()),
        ("OPERATOR_ONLY".into(), "1".into()),
    ];
    let s = f.spec("t", &[("SHARED", "server")]);
    assert_eq!(
        f.backend_with(settings, true).execute(&s, &token()),
        Ok(Completion::Finished)
    );
    let r = f.record();
    assert_eq!(r.var("SHARED"), Some("operator"));
    assert_eq!(r.var("OPERATOR_ONLY"), Some("1"));
}

#[test]
fn hooks_get_oz_and_warp_variables_in_the_workspace() {
    let f = Fixture::new("hookvars");
    let mut settings = f.settings();
    settings.setup_command = Some(format!(
        "env > {}; pwd > {}",
        p(&f.out("setup.env")),
        p(&f.out("setup.pwd"))
    ));
    settings.teardown_command = Some(format!("env > {}", p(&f.out("teardown.env"))));
    let mut s = f.spec(
        "t",
        &[("OZ_RUN_ID", "spoofed"), ("WARP_WORKER_BACKEND", "spoofed")],
    );
    s.execution_id = Some("exec-7".into());
    assert_eq!(
        f.backend_with(settings, true).execute(&s, &token()),
        Ok(Completion::Finished)
    );
    let ws = f.root.join("t--exec-7");
    assert_eq!(f.record().cwd, ws);
    let setup = env_file(&f.out("setup.env"));
    for prefix in ["OZ_", "WARP_"] {
        let get = |n: &str| {
            setup
                .get(&format!("{prefix}{n}"))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(get("RUN_ID"), "t");
        assert_eq!(get("EXECUTION_ID"), "exec-7");
        assert_eq!(get("WORKER_BACKEND"), "direct");
        assert_eq!(get("WORKSPACE_ROOT"), p(&ws));
        assert!(get("ENVIRONMENT_FILE").starts_with(&format!("{}/oz-env-", p(&ws))));
    }
    assert_eq!(
        std::fs::read_to_string(f.out("setup.pwd")).unwrap().trim(),
        p(&ws)
    );
    let teardown = env_file(&f.out("teardown.env"));
    assert_eq!(
        teardown.get("WARP_WORKSPACE_ROOT").map(String::as_str),
        Some(p(&ws))
    );
    assert_eq!(
        teardown.get("GIT_CONFIG_GLOBAL").map(String::as_str),
        Some(p(&ws.join(".gitconfig")))
    );
    assert_eq!(teardown.get("OZ_ENVIRONMENT_FILE"), None);
}

#[test]
fn setup_command_does_not_read_the_host_global_git_config() {
    let f = Fixture::new("git-host");
    let host_config = "[url \"https://evil.example/\"]\n\tinsteadOf = https://github.com/\n";
    std::fs::write(f.home.join(".gitconfig"), host_config).unwrap();
    let mut settings = f.settings();
    settings.setup_command = Some(
        "if git config --global --get-regexp '^url\\.' >/dev/null; then echo 'host git config visible' >&2; exit 3; fi; \
         git config --global url.https://mirror.example/.insteadOf https://github.com/"
            .into(),
    );
    assert_eq!(
        f.backend_with(settings, true)
            .execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    assert_eq!(
        std::fs::read_to_string(f.home.join(".gitconfig")).unwrap(),
        host_config
    );
}

#[test]
fn setup_command_receives_the_isolated_git_config() {
    let f = Fixture::new("git-setup");
    let mut settings = f.settings();
    settings.setup_command = Some(format!(
        "printf %s \"$GIT_CONFIG_GLOBAL\" > {}; git config --global user.name Oz-Setup",
        p(&f.out("gcg"))
    ));
    let b = f.backend_with(settings, false);
    assert_eq!(
        b.execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    let gitconfig = f.root.join("t/.gitconfig");
    assert_eq!(
        std::fs::read_to_string(f.out("gcg")).unwrap(),
        p(&gitconfig)
    );
    assert!(
        std::fs::read_to_string(&gitconfig)
            .unwrap()
            .contains("Oz-Setup")
    );
    assert!(!f.home.join(".gitconfig").exists());
}

#[test]
fn the_setup_env_file_cannot_override_git_config_global() {
    let f = Fixture::new("git-envfile");
    let mut settings = f.settings();
    settings.setup_command = Some(
        "printf 'GIT_CONFIG_GLOBAL=/tmp/evil-gitconfig\\nexport FROM_SETUP=\"hello world\"\\nHOME=/setup-home\\n' > \"$OZ_ENVIRONMENT_FILE\"".into(),
    );
    assert_eq!(
        f.backend_with(settings, true)
            .execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    let r = f.record();
    assert_eq!(
        r.var("GIT_CONFIG_GLOBAL"),
        Some(p(&f.root.join("t/.gitconfig")))
    );
    assert_eq!(r.var("FROM_SETUP"), Some("hello world"));
    assert_eq!(
        r.var("HOME"),
        Some("/setup-home"),
        "other env file entries do override"
    );
}

#[test]
fn a_malformed_env_file_is_ignored_as_a_whole() {
    let f = Fixture::new("envfile-bad");
    let mut settings = f.settings();
    settings.setup_command =
        Some("printf 'GOOD=1\\nBAD=\"unterminated\\n' > \"$OZ_ENVIRONMENT_FILE\"".into());
    assert_eq!(
        f.backend_with(settings, true)
            .execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    assert_eq!(f.record().var("GOOD"), None);
}

#[test]
fn git_config_seeded_by_setup_is_what_the_agent_sees() {
    let f = Fixture::new("git-smoke");
    let mut settings = f.settings();
    settings.setup_command = Some(
        "git config --global url.https://mirror.example/.insteadOf https://github.com/".into(),
    );
    let run = format!(
        "git config --global --get url.https://mirror.example/.insteadOf > {}",
        p(&f.out("seen"))
    );
    let s = f.spec("t", &[("STANDIN_RUN", &run)]);
    assert_eq!(
        f.backend_with(settings, true).execute(&s, &token()),
        Ok(Completion::Finished)
    );
    assert_eq!(
        std::fs::read_to_string(f.out("seen")).unwrap().trim(),
        "https://github.com/"
    );
    assert!(!f.home.join(".gitconfig").exists());
}

#[test]
fn the_agent_keeps_home_but_gets_a_per_task_global_git_config() {
    let f = Fixture::new("git-agent");
    let s = f.spec(
        "t",
        &[("STANDIN_RUN", "git config --global user.name Agent")],
    );
    assert_eq!(
        f.backend_with(f.settings(), false).execute(&s, &token()),
        Ok(Completion::Finished)
    );
    let r = f.record();
    assert_eq!(r.var("HOME"), Some(p(&f.home)));
    let gitconfig = f.root.join("t/.gitconfig");
    assert_eq!(r.var("GIT_CONFIG_GLOBAL"), Some(p(&gitconfig)));
    assert!(
        std::fs::read_to_string(&gitconfig)
            .unwrap()
            .contains("Agent")
    );
    assert!(!f.home.join(".gitconfig").exists());
    assert!(!f.home.join(".config/git/config").exists());
}

#[test]
fn unsafe_task_ids_are_rejected_and_create_nothing() {
    let f = Fixture::new("unsafe");
    let mut settings = f.settings();
    settings.setup_command = Some(format!("touch {}", p(&f.out("setup-ran"))));
    let b = f.backend_with(settings, true);
    for id in [
        "../escape",
        "a/../../escape",
        "/abs/path",
        "..",
        ".",
        "",
        "a\\b",
        "nul\0byte",
        "new\nline",
    ] {
        let e = failure(b.execute(&f.spec(id, &[]), &token()));
        assert_eq!(e.reason, FailureReason::WorkspaceSetup, "{id:?}");
        assert!(
            e.message.starts_with("invalid task ID for workspace path"),
            "{id:?}: {}",
            e.message
        );
    }
    let mut s = f.spec("fine", &[]);
    s.execution_id = Some("../x".into());
    assert_eq!(
        failure(b.execute(&s, &token())).reason,
        FailureReason::WorkspaceSetup
    );
    assert_eq!(std::fs::read_dir(&f.root).unwrap().count(), 0);
    assert!(!f.scratch.join("escape").exists());
    assert!(!f.out("record").exists() && !f.out("setup-ran").exists());
}

#[test]
fn a_failing_setup_command_stops_the_task_but_not_the_teardown() {
    let f = Fixture::new("setup-fail");
    let mut settings = f.settings();
    settings.setup_command = Some("exit 4".into());
    settings.teardown_command = Some(format!("touch {}", p(&f.out("teardown-ran"))));
    let e = failure(
        f.backend_with(settings, true)
            .execute(&f.spec("t", &[]), &token()),
    );
    assert_eq!((e.reason, e.exit_code), (FailureReason::SetupCommand, None));
    assert_eq!(e.message, "setup command failed: exit status 4");
    assert!(!f.out("record").exists(), "the agent never ran");
    assert!(f.out("teardown-ran").exists());
    assert!(!f.root.join("t").exists());
}

#[test]
fn cancelling_during_setup_reports_a_cancellation() {
    let f = Fixture::new("setup-cancel");
    let mut settings = f.settings();
    settings.setup_command = Some(format!("touch {}; sleep 300", p(&f.out("setup-started"))));
    let b = Arc::new(f.backend_with(settings, true));
    let cancel = token();
    let (b2, c2, s) = (b.clone(), cancel.clone(), f.spec("t", &[]));
    let rx = spawn(move || b2.execute(&s, &c2));
    wait_for_file(&f.out("setup-started"));
    cancel.cancel(CancelSource::Shutdown);
    assert_eq!(
        rx.recv_timeout(PROMPTLY).unwrap(),
        Err(Failure::cancelled())
    );
    assert!(!f.out("record").exists());
}

#[test]
fn an_already_cancelled_task_does_not_start() {
    let f = Fixture::new("precancel");
    let cancel = token();
    cancel.cancel(CancelSource::User);
    assert_eq!(
        f.backend().execute(&f.spec("t", &[]), &cancel),
        Err(Failure::cancelled())
    );
    assert!(!f.out("record").exists());
}

#[test]
fn no_cleanup_keeps_the_workspace_but_still_runs_teardown() {
    let f = Fixture::new("nocleanup");
    let mut settings = f.settings();
    settings.teardown_command = Some(format!("touch {}", p(&f.out("teardown-ran"))));
    let b = f.backend_with(settings, false);
    assert_eq!(
        b.execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    let ws = f.root.join("t");
    assert!(ws.is_dir());
    assert!(f.out("teardown-ran").exists());
    let leftovers: Vec<String> = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("oz-env-"))
        .collect();
    assert!(leftovers.is_empty(), "env file removed: {leftovers:?}");
    b.shutdown();
    assert!(ws.is_dir(), "shutdown keeps workspaces with --no-cleanup");
}

#[test]
fn shutdown_kills_what_is_still_running_and_removes_its_workspace() {
    let f = Fixture::new("shutdown-kill");
    // A grace far beyond the test's patience: only the shutdown's SIGKILL can end this task.
    let mut context = ctx(true);
    context.timing.kill_grace = Duration::from_secs(3600);
    let b = Arc::new(
        DirectBackend::with_env(f.settings(), context, worker_env(&f.home, &f.tmp)).unwrap(),
    );
    let gc = f.out("grandchild");
    let s = f.spec(
        "t",
        &[
            ("STANDIN_GRANDCHILD", p(&gc)),
            ("STANDIN_SLEEP", "300"),
            ("STANDIN_IGNORE_TERM", "1"),
        ],
    );
    let b2 = b.clone();
    let rx = spawn(move || b2.execute(&s, &token()));
    let pid: i32 = wait_for_file(&gc).trim().parse().unwrap();
    b.shutdown();
    assert_eq!(
        rx.recv_timeout(PROMPTLY)
            .expect("execute did not return after shutdown"),
        Err(Failure::cancelled())
    );
    assert!(
        wait_until(Duration::from_secs(10), || process_gone(pid)),
        "grandchild {pid} survived"
    );
    assert!(!f.root.join("t").exists());
}

#[test]
fn shutdown_leaves_entries_it_did_not_create() {
    let f = Fixture::new("shutdown");
    let b = f.backend();
    let foreign = f.root.join("someone-elses");
    std::fs::create_dir_all(&foreign).unwrap();
    assert_eq!(
        b.execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    b.shutdown();
    assert!(foreign.is_dir());
}

#[test]
fn each_execution_has_its_own_workspace() {
    let f = Fixture::new("executions");
    let b = Arc::new(f.backend());
    let rec2 = f.out("e2");
    let mut s2 = spec(
        "t",
        &[("STANDIN_RECORD", p(&rec2)), ("STANDIN_SLEEP", "300")],
    );
    s2.execution_id = Some("e2".into());
    let (b2, c2) = (b.clone(), token());
    let c2_seen = c2.clone();
    let rx = spawn(move || b2.execute(&s2, &c2));
    wait_for_file(&rec2);
    let ws2 = Record::read(&rec2).cwd;
    assert_eq!(ws2, f.root.join("t--e2"));

    let mut s1 = f.spec("t", &[]);
    s1.execution_id = Some("e1".into());
    assert_eq!(b.execute(&s1, &token()), Ok(Completion::Finished));
    assert_eq!(f.record().cwd, f.root.join("t--e1"));
    assert!(!f.root.join("t--e1").exists());
    assert!(
        ws2.is_dir(),
        "one execution's cleanup never removes another's workspace"
    );

    // An execution-scoped cancel reaches only that execution.
    b.cancel(&TaskRef {
        task_id: "t".into(),
        execution_id: Some("e-other".into()),
    })
    .unwrap();
    assert!(!c2_seen.is_cancelled());
    b.cancel(&TaskRef {
        task_id: "t".into(),
        execution_id: Some("e2".into()),
    })
    .unwrap();
    assert_eq!(
        rx.recv_timeout(PROMPTLY).unwrap(),
        Err(Failure::cancelled())
    );
    assert!(!ws2.exists());
}

#[test]
fn harness_config_lives_in_the_workspace() {
    let f = Fixture::new("harness");
    let b = f.backend();
    for (harness, var, dir) in [
        ("claude", "CLAUDE_CONFIG_DIR", ".claude"),
        ("codex", "CODEX_HOME", ".codex"),
    ] {
        let mut s = f.spec("t", &[]);
        s.harness = Some(harness.into());
        assert_eq!(b.execute(&s, &token()), Ok(Completion::Finished));
        assert_eq!(f.record().var(var), Some(p(&f.root.join("t").join(dir))));
    }
    let mut s = f.spec("t", &[]);
    s.harness = Some("gemini".into());
    assert_eq!(b.execute(&s, &token()), Ok(Completion::Finished));
    let r = f.record();
    assert_eq!(
        (r.var("CLAUDE_CONFIG_DIR"), r.var("CODEX_HOME")),
        (None, None)
    );
}

#[test]
fn target_dir_mode_runs_in_place_and_never_deletes_it() {
    let f = Fixture::new("target");
    let target = f.scratch.dir("checkout");
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    let mut settings = f.settings();
    settings.workspace_root = None;
    settings.target_dir = Some(target.clone());
    settings.teardown_command = Some(format!(
        "pwd > {}; printf %s \"$GIT_CONFIG_GLOBAL\" > {}",
        p(&f.out("td.pwd")),
        p(&f.out("td.gcg"))
    ));
    let b = f.backend_with(settings, true);
    assert_eq!(
        b.layout(),
        &Layout::TargetDir {
            dir: target.clone()
        }
    );
    assert_eq!(
        b.execute(&f.spec("t", &[]), &token()),
        Ok(Completion::Finished)
    );
    let r = f.record();
    assert_eq!(r.cwd, target);
    let gitconfig = PathBuf::from(r.var("GIT_CONFIG_GLOBAL").unwrap());
    assert!(
        gitconfig.starts_with(f.tmp.join(""))
            && gitconfig
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("oz-gitconfig-")
    );
    assert!(
        !gitconfig.parent().unwrap().exists(),
        "temporary git config directory removed"
    );
    assert_eq!(
        std::fs::read_to_string(f.out("td.pwd")).unwrap().trim(),
        p(&target)
    );
    assert_eq!(
        std::fs::read_to_string(f.out("td.gcg")).unwrap(),
        p(&gitconfig)
    );
    let names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["keep.txt"],
        "target directory kept, env file removed"
    );
    b.shutdown();
    assert!(target.join("keep.txt").exists());
    // Task ids are still checked.
    assert_eq!(
        failure(b.execute(&f.spec("../x", &[]), &token())).reason,
        FailureReason::WorkspaceSetup
    );
}

#[test]
fn construction_checks_oz_target_dir_and_workspace_root() {
    let f = Fixture::new("new");
    let mut settings = f.settings();
    settings.oz_path = None;
    let bin = f.scratch.dir("bin");
    let mut env = worker_env(&f.home, &f.tmp);
    env.set("PATH", &bin);
    let e = DirectBackend::with_env(settings.clone(), ctx(true), env.clone()).unwrap_err();
    assert!(matches!(e, DirectError::OzNotFound));
    assert!(e.to_string().starts_with("oz CLI not found in PATH"));
    std::os::unix::fs::symlink(stand_in(), bin.join("oz")).unwrap();
    let b = DirectBackend::with_env(settings.clone(), ctx(true), env).unwrap();
    assert_eq!(b.oz_path(), bin.join("oz"));

    settings.oz_path = Some(stand_in());
    settings.workspace_root = Some(f.scratch.join("deep/nested/root"));
    f.backend_with(settings.clone(), true);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(f.scratch.join("deep/nested/root"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);

    settings.target_dir = Some(f.scratch.join("missing"));
    let e = DirectBackend::with_env(settings.clone(), ctx(true), Env::new()).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let file = f.scratch.join("a-file");
    std::fs::write(&file, "x").unwrap();
    settings.target_dir = Some(file);
    let e = DirectBackend::with_env(settings, ctx(true), Env::new()).unwrap_err();
    assert!(
        matches!(e, DirectError::TargetDirNotDirectory { .. }),
        "{e}"
    );
}

#[test]
fn probe_reports_each_requirement_with_a_fix() {
    let f = Fixture::new("probe");
    let lines = f.backend().probe();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.ok), "{lines:?}");

    let mut settings = f.settings();
    settings.oz_path = Some(f.scratch.join("no-oz"));
    settings.setup_command = Some("true".into());
    let b = f.backend_with(settings, true);
    std::fs::remove_dir_all(&f.root).unwrap();
    std::fs::write(&f.root, "not a dir").unwrap();
    let lines = b.probe();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        !lines[0].ok && lines[0].what.contains("oz_path"),
        "{:?}",
        lines[0]
    );
    assert!(
        !lines[1].ok && lines[1].what.contains("workspace root"),
        "{:?}",
        lines[1]
    );
    assert!(
        lines[2].ok && lines[2].what.contains("/bin/sh"),
        "{:?}",
        lines[2]
    );
}
