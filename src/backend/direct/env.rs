//! The environments of the direct backend's processes. Pure: every input is passed in.
//!
//! | process  | starts from                      | then                                   | last (wins)                     |
//! |----------|----------------------------------|----------------------------------------|---------------------------------|
//! | agent    | worker `HOME`, `TMPDIR`, `PATH`  | task env, setup env file               | `GIT_CONFIG_GLOBAL`             |
//! | setup    | worker env minus `WARP_API_KEY`  | task env                               | `OZ_*`/`WARP_*` hook variables  |
//! | teardown | worker env minus `WARP_API_KEY`  | —                                      | `GIT_CONFIG_GLOBAL`, hook vars  |
//!
//! The task env is the prepared env (`TASK_ID`, prompts off, server root, the server's
//! `env_vars`), then the operator env, then the harness env, then `GIT_CONFIG_GLOBAL`. A
//! `WARP_API_KEY` reaches the agent or a hook only when the server or the operator put it there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::backend::TaskRef;
use crate::process::Env;
use crate::process::env::API_KEY_VAR;
use crate::settings::EnvList;

/// What the worker passes through from its own environment to the agent.
pub const AGENT_BASE_VARS: [&str; 3] = ["HOME", "TMPDIR", "PATH"];

pub const GIT_CONFIG_GLOBAL: &str = "GIT_CONFIG_GLOBAL";

/// Where a coding harness keeps its config, pointed into the workspace so tasks do not share it.
pub fn harness_env(harness: Option<&str>, workspace: &Path) -> Option<(&'static str, PathBuf)> {
    match harness.map(str::trim) {
        Some("claude") => Some(("CLAUDE_CONFIG_DIR", workspace.join(".claude"))),
        Some("codex") => Some(("CODEX_HOME", workspace.join(".codex"))),
        _ => None,
    }
}

/// The task env and the names that could not be set (invalid names from the server or config).
pub fn task_env(
    prepared: &EnvList,
    operator: &EnvList,
    harness: Option<&str>,
    workspace: &Path,
    gitconfig: &Path,
) -> (Env, Vec<OsString>) {
    let mut env = Env::new();
    let mut refused = env.set_all(prepared.iter().map(|(k, v)| (k, v)));
    refused.extend(env.set_all(operator.iter().map(|(k, v)| (k, v))));
    if let Some((name, dir)) = harness_env(harness, workspace) {
        env.set(name, dir);
    }
    env.set(GIT_CONFIG_GLOBAL, gitconfig);
    (env, refused)
}

/// The agent's env: a minimal slice of the worker's, the task env, the setup env file, and the
/// per-task git config forced last so setup cannot redirect it.
pub fn agent_env(worker: &Env, task: &Env, file: &[(String, String)], gitconfig: &Path) -> Env {
    let mut env = Env::new();
    for name in AGENT_BASE_VARS {
        if let Some(v) = worker.get(name) {
            env.set(name, v);
        }
    }
    env.set_all(task.iter());
    env.set_all(file.iter().map(|(k, v)| (k, v)));
    env.set(GIT_CONFIG_GLOBAL, gitconfig);
    env
}

/// The hooks start from the worker's env without its API key (the Go worker passes it on).
fn hook_base(worker: &Env) -> Env {
    let mut env = worker.clone();
    env.remove(API_KEY_VAR);
    env
}

fn set_hook_vars(env: &mut Env, task: &TaskRef, workspace: &Path) {
    env.set_owned("WORKSPACE_ROOT", workspace);
    env.set_owned("WORKER_BACKEND", "direct");
    env.set_owned("RUN_ID", &task.task_id);
    if let Some(exec) = &task.execution_id {
        env.set_owned("EXECUTION_ID", exec);
    }
}

pub fn setup_env(
    worker: &Env,
    task_env: &Env,
    task: &TaskRef,
    workspace: &Path,
    env_file: &Path,
) -> Env {
    let mut env = hook_base(worker);
    env.set_all(task_env.iter());
    set_hook_vars(&mut env, task, workspace);
    env.set_owned("ENVIRONMENT_FILE", env_file);
    env
}

pub fn teardown_env(worker: &Env, task: &TaskRef, workspace: &Path, gitconfig: &Path) -> Env {
    let mut env = hook_base(worker);
    env.set(GIT_CONFIG_GLOBAL, gitconfig);
    set_hook_vars(&mut env, task, workspace);
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn s(v: Option<&OsStr>) -> Option<&str> {
        v.and_then(OsStr::to_str)
    }

    fn list(pairs: &[(&str, &str)]) -> EnvList {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn worker() -> Env {
        [
            ("HOME", "/home/w"),
            ("PATH", "/usr/bin"),
            ("TMPDIR", "/tmp/w"),
            ("WARP_API_KEY", "worker-key"),
            ("SSH_AUTH_SOCK", "/run/agent"),
        ]
        .into_iter()
        .collect()
    }

    fn task_ref(exec: Option<&str>) -> TaskRef {
        TaskRef {
            task_id: "run-1".into(),
            execution_id: exec.map(str::to_owned),
        }
    }

    #[test]
    fn harness_env_points_into_the_workspace() {
        let ws = Path::new("/ws/t");
        assert_eq!(
            harness_env(Some("claude"), ws),
            Some(("CLAUDE_CONFIG_DIR", PathBuf::from("/ws/t/.claude")))
        );
        assert_eq!(
            harness_env(Some(" codex "), ws),
            Some(("CODEX_HOME", PathBuf::from("/ws/t/.codex")))
        );
        assert_eq!(harness_env(Some("oz"), ws), None);
        assert_eq!(harness_env(Some("gemini"), ws), None);
        assert_eq!(harness_env(None, ws), None);
    }

    #[test]
    fn task_env_layers_in_order_and_forces_git_config() {
        let (env, refused) = task_env(
            &list(&[
                ("TASK_ID", "t"),
                ("A", "server"),
                ("GIT_CONFIG_GLOBAL", "/evil"),
                ("B=C", "x"),
            ]),
            &list(&[("A", "operator"), ("CLAUDE_CONFIG_DIR", "/operator")]),
            Some("claude"),
            Path::new("/ws"),
            Path::new("/ws/.gitconfig"),
        );
        assert_eq!(s(env.get("A")), Some("operator"));
        assert_eq!(s(env.get("TASK_ID")), Some("t"));
        assert_eq!(s(env.get("CLAUDE_CONFIG_DIR")), Some("/ws/.claude"));
        assert_eq!(s(env.get(GIT_CONFIG_GLOBAL)), Some("/ws/.gitconfig"));
        assert_eq!(refused, [OsString::from("B=C")]);
    }

    #[test]
    fn agent_env_is_minimal_and_never_carries_the_worker_key() {
        let (task, _) = task_env(
            &list(&[("HOME", "/task-home")]),
            &vec![],
            None,
            Path::new("/ws"),
            Path::new("/ws/.gitconfig"),
        );
        let file = vec![
            ("FROM_FILE".to_owned(), "1".to_owned()),
            (GIT_CONFIG_GLOBAL.to_owned(), "/evil".to_owned()),
        ];
        let env = agent_env(&worker(), &task, &file, Path::new("/ws/.gitconfig"));
        assert_eq!(
            s(env.get("HOME")),
            Some("/task-home"),
            "the task env may override HOME"
        );
        assert_eq!(s(env.get("PATH")), Some("/usr/bin"));
        assert_eq!(s(env.get("TMPDIR")), Some("/tmp/w"));
        assert_eq!(env.get("SSH_AUTH_SOCK"), None);
        assert_eq!(env.get(API_KEY_VAR), None);
        assert_eq!(s(env.get("FROM_FILE")), Some("1"));
        assert_eq!(s(env.get(GIT_CONFIG_GLOBAL)), Some("/ws/.gitconfig"));
    }

    #[test]
    fn server_sent_api_key_reaches_agent_and_setup() {
        let (task, _) = task_env(
            &list(&[(API_KEY_VAR, "task-key")]),
            &vec![],
            None,
            Path::new("/ws"),
            Path::new("/g"),
        );
        let agent = agent_env(&worker(), &task, &[], Path::new("/g"));
        assert_eq!(s(agent.get(API_KEY_VAR)), Some("task-key"));
        let setup = setup_env(
            &worker(),
            &task,
            &task_ref(None),
            Path::new("/ws"),
            Path::new("/ws/oz-env"),
        );
        assert_eq!(s(setup.get(API_KEY_VAR)), Some("task-key"));
    }

    #[test]
    fn hooks_get_worker_env_without_its_key_and_owned_vars_last() {
        let (task, _) = task_env(
            &list(&[("OZ_RUN_ID", "spoofed"), ("WARP_WORKER_BACKEND", "spoofed")]),
            &vec![],
            None,
            Path::new("/ws"),
            Path::new("/ws/.gitconfig"),
        );
        let env = setup_env(
            &worker(),
            &task,
            &task_ref(Some("exec-1")),
            Path::new("/ws"),
            Path::new("/ws/oz-env-1"),
        );
        assert_eq!(env.get(API_KEY_VAR), None);
        assert_eq!(s(env.get("SSH_AUTH_SOCK")), Some("/run/agent"));
        for prefix in ["OZ_", "WARP_"] {
            let get = |n: &str| s(env.get(format!("{prefix}{n}"))).map(str::to_owned);
            assert_eq!(get("RUN_ID").as_deref(), Some("run-1"));
            assert_eq!(get("EXECUTION_ID").as_deref(), Some("exec-1"));
            assert_eq!(get("WORKER_BACKEND").as_deref(), Some("direct"));
            assert_eq!(get("WORKSPACE_ROOT").as_deref(), Some("/ws"));
            assert_eq!(get("ENVIRONMENT_FILE").as_deref(), Some("/ws/oz-env-1"));
        }
        assert_eq!(s(env.get(GIT_CONFIG_GLOBAL)), Some("/ws/.gitconfig"));

        let env = teardown_env(
            &worker(),
            &task_ref(None),
            Path::new("/ws"),
            Path::new("/ws/.gitconfig"),
        );
        assert_eq!(env.get(API_KEY_VAR), None);
        assert_eq!(env.get("OZ_EXECUTION_ID"), None);
        assert_eq!(env.get("OZ_ENVIRONMENT_FILE"), None);
        assert_eq!(s(env.get("WARP_RUN_ID")), Some("run-1"));
        assert_eq!(s(env.get(GIT_CONFIG_GLOBAL)), Some("/ws/.gitconfig"));
    }
}
