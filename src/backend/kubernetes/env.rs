//! The environment of the task and `setup` containers (reference `kubernetes-backend.md` §3.3,
//! with the OZ_/WARP_ twins of `upstream-newer.md` §5.5).
//!
//! Order: the task's prepared env (`TASK_ID`, prompts off, server root, server `env_vars`), then
//! the operator's `-e` entries sorted by name, then the worker-owned variables, each also as its
//! `WARP_*` twin. A later entry replaces an earlier one of the same name in place.
//!
//! Differs from the Go worker on purpose: Kubernetes expands `$(NAME)` in env values and turns
//! `$$` into `$`, so a server-sent value such as `pa$(x)ss` would reach the agent altered. Every
//! value the worker did not get from the operator has its `$` doubled, which makes Kubernetes
//! deliver it literally. Operator `-e` values keep their `$` (an operator may mean
//! `$(POD_NAME)`), as upstream does for them.

use crate::settings::EnvList;

/// Where the task workspace is mounted in every container of the pod.
pub const WORKSPACE: &str = "/workspace";
/// The file `setup` may write `KEY=VALUE` lines to; the task wrapper sources it.
pub const ENVIRONMENT_FILE: &str = "/workspace/.oz-env";

/// Doubles `$` so that Kubernetes dependent-variable expansion leaves the value as it is.
fn literal(value: &str) -> String {
    value.replace('$', "$$")
}

fn set(env: &mut EnvList, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v = value,
        None => env.push((name.to_owned(), value)),
    }
}

/// Names Kubernetes cannot take as an env var: empty, or containing `=` (the Go worker drops
/// them the same way when it splits `KEY=VALUE`).
fn usable(name: &str) -> bool {
    !name.is_empty() && !name.contains('=')
}

/// The env list of the task and setup containers, in order, values ready for the manifest.
pub fn task_env(task_env: &EnvList, operator: &EnvList, run_id: &str) -> EnvList {
    let mut env = EnvList::new();
    for (k, v) in task_env.iter().filter(|(k, _)| usable(k)) {
        set(&mut env, k, literal(v));
    }
    // `-e` flags: later flags win, then sorted by name as upstream does.
    let mut ops = EnvList::new();
    for (k, v) in operator.iter().filter(|(k, _)| usable(k)) {
        set(&mut ops, k, v.clone());
    }
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in ops {
        set(&mut env, &k, v);
    }
    for (suffix, value) in [
        ("ENVIRONMENT_FILE", ENVIRONMENT_FILE),
        ("WORKSPACE_ROOT", WORKSPACE),
        ("WORKER_BACKEND", "kubernetes"),
        ("RUN_ID", run_id),
    ] {
        for prefix in ["OZ_", "WARP_"] {
            set(&mut env, &format!("{prefix}{suffix}"), literal(value));
        }
    }
    env
}

/// Kubernetes `EnvVar` objects.
pub fn to_json(env: &EnvList) -> Vec<serde_json::Value> {
    env.iter()
        .map(|(name, value)| serde_json::json!({ "name": name, "value": value }))
        .collect()
}

/// Merges the worker's entries into a template container's `env`: a worker entry replaces the
/// template entry of the same name where it stands (its `valueFrom` too), new names are
/// appended. Template entries that are not objects are kept as they are.
pub fn merge_into(template: Vec<serde_json::Value>, worker: &EnvList) -> Vec<serde_json::Value> {
    let mut out = template;
    for (name, value) in worker {
        let entry = serde_json::json!({ "name": name, "value": value });
        match out
            .iter_mut()
            .find(|e| e.get("name").and_then(serde_json::Value::as_str) == Some(name))
        {
            Some(slot) => *slot = entry,
            None => out.push(entry),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(pairs: &[(&str, &str)]) -> EnvList {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn get<'a>(env: &'a EnvList, name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn order_is_task_then_sorted_operator_then_worker_owned() {
        let task = list(&[
            ("TASK_ID", "t"),
            ("GIT_TERMINAL_PROMPT", "0"),
            ("A", "server"),
        ]);
        let ops = list(&[("Z", "1"), ("B", "2"), ("A", "op")]);
        let env = task_env(&task, &ops, "run-1");
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "TASK_ID",
                "GIT_TERMINAL_PROMPT",
                "A",
                "B",
                "Z",
                "OZ_ENVIRONMENT_FILE",
                "WARP_ENVIRONMENT_FILE",
                "OZ_WORKSPACE_ROOT",
                "WARP_WORKSPACE_ROOT",
                "OZ_WORKER_BACKEND",
                "WARP_WORKER_BACKEND",
                "OZ_RUN_ID",
                "WARP_RUN_ID",
            ]
        );
        assert_eq!(
            get(&env, "A"),
            Some("op"),
            "operator overrides the server in place"
        );
        assert_eq!(get(&env, "OZ_RUN_ID"), Some("run-1"));
        assert_eq!(get(&env, "WARP_WORKER_BACKEND"), Some("kubernetes"));
        assert_eq!(get(&env, "OZ_ENVIRONMENT_FILE"), Some("/workspace/.oz-env"));
        assert_eq!(
            get(&env, "OZ_EXECUTION_ID"),
            None,
            "upstream sets no execution id"
        );
    }

    #[test]
    fn worker_owned_names_beat_operator_and_server_values() {
        let task = list(&[("OZ_RUN_ID", "server")]);
        let ops = list(&[("WARP_RUN_ID", "op"), ("OZ_CUSTOM", "kept")]);
        let env = task_env(&task, &ops, "run-1");
        assert_eq!(get(&env, "OZ_RUN_ID"), Some("run-1"));
        assert_eq!(get(&env, "WARP_RUN_ID"), Some("run-1"));
        assert_eq!(get(&env, "OZ_CUSTOM"), Some("kept"));
        assert_eq!(
            get(&env, "WARP_CUSTOM"),
            None,
            "operator OZ_ vars get no twin"
        );
    }

    #[test]
    fn later_operator_entries_win_and_bad_names_are_dropped() {
        let ops = list(&[("X", "1"), ("X", "2"), ("", "empty"), ("A=B", "eq")]);
        let env = task_env(&EnvList::new(), &ops, "r");
        assert_eq!(get(&env, "X"), Some("2"));
        assert!(env.iter().all(|(k, _)| !k.is_empty() && !k.contains('=')));
    }

    #[test]
    fn server_values_are_made_literal_operator_values_are_not() {
        let task = list(&[("SECRET", "pa$(HOME)ss$$")]);
        let ops = list(&[("POD", "$(POD_NAME)")]);
        let env = task_env(&task, &ops, "r$1");
        assert_eq!(get(&env, "SECRET"), Some("pa$$(HOME)ss$$$$"));
        assert_eq!(get(&env, "POD"), Some("$(POD_NAME)"));
        assert_eq!(get(&env, "OZ_RUN_ID"), Some("r$$1"));
    }

    #[test]
    fn merge_into_template_replaces_in_place_and_appends() {
        let template = vec![
            json!({"name": "FOO", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
            json!({"name": "BAR", "value": "template"}),
        ];
        let merged = merge_into(template, &list(&[("FOO", "worker"), ("BAZ", "new")]));
        assert_eq!(
            merged,
            [
                json!({"name": "FOO", "value": "worker"}),
                json!({"name": "BAR", "value": "template"}),
                json!({"name": "BAZ", "value": "new"}),
            ]
        );
        assert!(merge_into(Vec::new(), &EnvList::new()).is_empty());
        assert_eq!(merge_into(Vec::new(), &list(&[("A", "1")])).len(), 1);
        assert_eq!(
            merge_into(vec![json!({"name": "A", "value": "t"})], &EnvList::new()).len(),
            1
        );
    }

    #[test]
    fn to_json_makes_env_var_objects() {
        assert_eq!(
            to_json(&list(&[("A", "1")])),
            [json!({"name": "A", "value": "1"})]
        );
    }
}
