//! The command backend, through real `/bin/sh` commands. Covers the Go worker's
//! `command_test.go` checklist plus group kills and cancellation.

use std::sync::Arc;

use oz_agent_worker::backend::command::{CommandBackend, CommandError};
use oz_agent_worker::backend::{
    Backend, BackendKind, CancelSource, Completion, Failure, FailureReason, TaskRef,
};
use oz_agent_worker::settings::CommandSettings;

use super::*;

struct Fixture {
    scratch: Scratch,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        Fixture {
            scratch: Scratch::new(name),
        }
    }

    fn out(&self, name: &str) -> String {
        self.scratch.join(name).to_str().unwrap().to_owned()
    }

    fn backend(
        &self,
        dispatch: &str,
        cancel: Option<&str>,
        timeout: Duration,
        env: &[(&str, &str)],
    ) -> CommandBackend {
        let settings = CommandSettings {
            dispatch_command: dispatch.into(),
            cancel_command: cancel.map(str::to_owned),
            dispatch_timeout: timeout,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let home = self.scratch.dir("home");
        CommandBackend::with_env(settings, ctx(true), worker_env(&home, self.scratch.path()))
            .unwrap()
    }

    fn simple(&self, dispatch: &str) -> CommandBackend {
        self.backend(dispatch, None, Duration::from_secs(60), &[])
    }
}

fn task_spec() -> oz_agent_worker::task::TaskSpec {
    let mut s = spec(
        "run-42",
        &[("TASK_ID", "run-42"), ("SECRET_TOKEN", "s3cr3t-task-value")],
    );
    s.image = "example.com/agent:1".into();
    s.sidecars = vec![oz_agent_worker::protocol::SidecarMount {
        image: "example.com/oz-sidecar:2".into(),
        mount_path: "/agent".into(),
        read_write: false,
    }];
    s
}

#[test]
fn dispatches_the_payload_on_stdin() {
    let f = Fixture::new("payload");
    let payload = f.out("payload.json");
    let b = f.simple(&format!("cat > {payload}"));
    assert_eq!(b.kind(), BackendKind::Command);
    assert_eq!(
        b.execute(&task_spec(), &token()),
        Ok(Completion::Dispatched)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&payload).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["run_id"], "run-42");
    assert_eq!(v["execution_id"], "");
    assert_eq!(v["worker_id"], "worker-test");
    assert_eq!(v["server_root_url"], "https://oz.test");
    assert_eq!(v["docker_image"], "example.com/agent:1");
    assert_eq!(
        v["base_args"],
        serde_json::json!(["agent", "run", "--task-id", "run-42"])
    );
    assert_eq!(v["env"]["SECRET_TOKEN"], "s3cr3t-task-value");
    assert_eq!(v["sidecars"][0]["mount_path"], "/agent");
    assert_eq!(v["sidecars"][0]["image"], "example.com/oz-sidecar:2");
}

#[test]
fn exit_zero_is_a_dispatch() {
    let f = Fixture::new("ok");
    assert_eq!(
        f.simple("exit 0").execute(&task_spec(), &token()),
        Ok(Completion::Dispatched)
    );
    assert!(f.simple("true").preserves_tasks_on_shutdown());
}

#[test]
fn a_nonzero_exit_is_a_dispatch_command_failure() {
    let f = Fixture::new("exit7");
    let e = f
        .simple("exit 7")
        .execute(&task_spec(), &token())
        .unwrap_err();
    assert_eq!(
        (e.reason, e.exit_code),
        (FailureReason::DispatchCommand, None)
    );
    assert_eq!(e.message, "dispatch command failed: exit status 7");
}

#[test]
fn a_timeout_is_classified_as_dispatch_timeout() {
    let f = Fixture::new("timeout");
    let b = f.backend("sleep 300", None, Duration::from_millis(50), &[]);
    let rx = spawn(move || b.execute(&task_spec(), &token()));
    let e = rx
        .recv_timeout(PROMPTLY)
        .expect("dispatch did not time out")
        .unwrap_err();
    assert_eq!(
        (e.reason, e.exit_code),
        (FailureReason::DispatchTimeout, None)
    );
    assert_eq!(e.message, "dispatch command timed out after 50ms");
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let f = Fixture::new("timeout-group");
    let pidfile = f.out("pid");
    // Long enough for the background job to start even on a loaded machine.
    let b = f.backend(
        &format!("trap '' TERM; sleep 300 & echo $! > {pidfile}; wait"),
        None,
        Duration::from_secs(5),
        &[],
    );
    let rx = spawn(move || b.execute(&task_spec(), &token()));
    let pid: i32 = wait_for_file(std::path::Path::new(&pidfile))
        .trim()
        .parse()
        .unwrap();
    let e = rx
        .recv_timeout(PROMPTLY)
        .expect("dispatch did not time out")
        .unwrap_err();
    assert_eq!(e.reason, FailureReason::DispatchTimeout);
    assert!(
        wait_until(GRACE + Duration::from_secs(10), || process_gone(pid)),
        "background job {pid} survived"
    );
}

#[test]
fn cancellation_during_dispatch_is_reported_as_cancelled() {
    let f = Fixture::new("cancel");
    let started = f.out("started");
    let b = Arc::new(f.simple(&format!("touch {started}; sleep 300")));
    let cancel = token();
    let (b2, c2) = (b.clone(), cancel.clone());
    let rx = spawn(move || b2.execute(&task_spec(), &c2));
    wait_for_file(std::path::Path::new(&started));
    cancel.cancel(CancelSource::User);
    assert_eq!(
        rx.recv_timeout(PROMPTLY).unwrap(),
        Err(Failure::cancelled())
    );
}

#[test]
fn task_secrets_and_the_worker_key_stay_out_of_the_subprocess_env() {
    let f = Fixture::new("secrets");
    let dump = f.out("env");
    let b = f.backend(
        &format!("env > {dump}; echo \"$0 $*\" >> {dump}"),
        None,
        Duration::from_secs(60),
        &[("OPERATOR_VAR", "op-value")],
    );
    assert_eq!(
        b.execute(&task_spec(), &token()),
        Ok(Completion::Dispatched)
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(!text.contains("s3cr3t-task-value"), "task secret leaked");
    assert!(!text.contains(WORKER_KEY), "worker key leaked");
    let env = env_file(std::path::Path::new(&dump));
    assert_eq!(env.get("OZ_RUN_ID").map(String::as_str), Some("run-42"));
    assert_eq!(
        env.get("OPERATOR_VAR").map(String::as_str),
        Some("op-value")
    );
    assert_eq!(
        env.get("WORKER_ONLY").map(String::as_str),
        Some("worker-only-value")
    );
    assert_eq!(
        env.get("OZ_DOCKER_IMAGE").map(String::as_str),
        Some("example.com/agent:1")
    );
    assert_eq!(
        env.get("WARP_SERVER_ROOT_URL").map(String::as_str),
        Some("https://oz.test")
    );
    assert_eq!(env.get("SECRET_TOKEN"), None);
}

#[test]
fn well_known_vars_cannot_be_clobbered_by_operator_env() {
    let f = Fixture::new("clobber");
    let dump = f.out("env");
    let operator = [
        ("OZ_RUN_ID", "bogus"),
        ("OZ_EXECUTION_ID", "bogus"),
        ("OZ_WORKER_BACKEND", "bogus"),
        ("WARP_RUN_ID", "bogus"),
        ("OZ_DOCKER_IMAGE", "bogus"),
    ];
    let b = f.backend(
        &format!("env > {dump}"),
        None,
        Duration::from_secs(60),
        &operator,
    );
    let mut s = task_spec();
    s.execution_id = Some("exec-9".into());
    assert_eq!(b.execute(&s, &token()), Ok(Completion::Dispatched));
    let env = env_file(std::path::Path::new(&dump));
    for prefix in ["OZ_", "WARP_"] {
        let get = |n: &str| env.get(&format!("{prefix}{n}")).cloned();
        assert_eq!(get("RUN_ID").as_deref(), Some("run-42"));
        assert_eq!(get("EXECUTION_ID").as_deref(), Some("exec-9"));
        assert_eq!(get("WORKER_BACKEND").as_deref(), Some("command"));
        assert_eq!(get("DOCKER_IMAGE").as_deref(), Some("example.com/agent:1"));
    }
}

#[test]
fn construction_requires_a_dispatch_command() {
    for empty in ["", "   "] {
        let settings = CommandSettings {
            dispatch_command: empty.into(),
            cancel_command: None,
            dispatch_timeout: Duration::from_secs(60),
            env: vec![],
        };
        let e = CommandBackend::with_env(settings, ctx(true), Env::new()).unwrap_err();
        assert_eq!(e, CommandError::MissingDispatchCommand);
        assert!(e.to_string().contains("dispatch_command"));
    }
}

#[test]
fn cancel_runs_the_cancel_command_with_the_task_ids() {
    let f = Fixture::new("cancelcmd");
    let sentinel = f.out("sentinel");
    let cmd = format!(
        "cat > /dev/null; printf '%s %s %s %s' \"$OZ_RUN_ID\" \"$OZ_EXECUTION_ID\" \"$WARP_WORKER_BACKEND\" \"${{WARP_API_KEY:-none}}\" > {sentinel}"
    );
    let b = f.backend("true", Some(&cmd), Duration::from_secs(60), &[]);
    b.cancel(&TaskRef {
        task_id: "run-42".into(),
        execution_id: Some("exec-3".into()),
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&sentinel).unwrap(),
        "run-42 exec-3 command none"
    );
}

#[test]
fn cancel_without_a_cancel_command_is_a_noop() {
    let f = Fixture::new("nocancel");
    let b = f.backend("true", None, Duration::from_secs(60), &[]);
    assert_eq!(
        b.cancel(&TaskRef {
            task_id: "run-42".into(),
            execution_id: None
        }),
        Ok(())
    );
    let b = f.backend("true", Some("  "), Duration::from_secs(60), &[]);
    assert_eq!(
        b.cancel(&TaskRef {
            task_id: "run-42".into(),
            execution_id: None
        }),
        Ok(())
    );
}

#[test]
fn a_failing_cancel_command_is_reported() {
    let f = Fixture::new("cancelfail");
    let b = f.backend("true", Some("exit 5"), Duration::from_secs(60), &[]);
    let e = b
        .cancel(&TaskRef {
            task_id: "run-42".into(),
            execution_id: None,
        })
        .unwrap_err();
    assert_eq!(e, "cancel command failed: exit status 5");
}

#[test]
fn probe_reports_shell_and_commands() {
    let f = Fixture::new("probe");
    let lines = f
        .backend("true", None, Duration::from_secs(30), &[])
        .probe();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.ok), "{lines:?}");
    assert!(lines[1].what.contains("30s"));
    assert!(lines[2].what.contains("no cancel command"));
    let lines = f
        .backend("true", Some("true"), Duration::from_secs(30), &[])
        .probe();
    assert_eq!(lines[2].what, "cancel command is set");
}
