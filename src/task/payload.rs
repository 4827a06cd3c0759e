//! The command backend's dispatch payload (version 1): everything a remote runtime needs to
//! launch the agent, written to the dispatch command's stdin. Secrets travel only here, in
//! `env`, never in the dispatch command's own environment or argv.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::protocol::{SidecarMount, Task};

use super::TaskSpec;
use super::json::go_compact;

/// Schema version of the payload; bumped only when the contract changes.
pub const DISPATCH_PAYLOAD_VERSION: u32 = 1;

/// Every key is always present (operators' scripts index them blindly).
#[derive(Serialize)]
struct Payload<'a> {
    version: u32,
    run_id: &'a str,
    execution_id: &'a str,
    server_root_url: &'a str,
    worker_id: &'a str,
    docker_image: &'a str,
    base_args: &'a [String],
    env: BTreeMap<&'a str, &'a str>,
    /// `null` when there are none, as the Go worker writes it.
    sidecars: Option<&'a [SidecarMount]>,
    task: &'a Task,
}

/// The payload as compact JSON, shaped like the Go worker's (`env` keys sorted, later
/// duplicates winning; HTML characters escaped inside strings).
pub fn dispatch_payload(spec: &TaskSpec, worker_id: &str, server_root_url: &str) -> String {
    let env: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let payload = Payload {
        version: DISPATCH_PAYLOAD_VERSION,
        run_id: &spec.task_id,
        execution_id: spec.execution_id.as_deref().unwrap_or(""),
        server_root_url,
        worker_id,
        docker_image: &spec.image,
        base_args: &spec.base_args,
        env,
        sidecars: (!spec.sidecars.is_empty()).then_some(spec.sidecars.as_slice()),
        task: &spec.task,
    };
    // An invariant: serialising can only fail on non-string map keys or a failing Serialize
    // impl, and the payload holds only strings, string-keyed maps, numbers and raw JSON.
    #[allow(clippy::expect_used)]
    let text = serde_json::to_string(&payload)
        .expect("the payload holds only strings, string-keyed maps, numbers and raw JSON");
    go_compact(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AgentConfigSnapshot, Owner, TaskDefinition, ZERO_TIME};
    use serde_json::{Value, json};

    fn spec() -> TaskSpec {
        TaskSpec {
            task_id: "task-1".into(),
            execution_id: Some("exec-1".into()),
            task: Task {
                id: "task-1".into(),
                title: "do the thing".into(),
                ..Task::default()
            },
            image: "ubuntu:22.04".into(),
            env: vec![
                ("A".into(), "1".into()),
                ("B".into(), "2".into()),
                ("A".into(), "3".into()),
                ("URL".into(), "a=b".into()),
            ],
            base_args: vec![
                "agent".into(),
                "run".into(),
                "--task-id".into(),
                "task-1".into(),
            ],
            sidecars: vec![SidecarMount {
                image: "warpdotdev/warp-agent:latest".into(),
                mount_path: "/agent".into(),
                read_write: false,
            }],
            instance_shape: None,
            harness: None,
            secrets: Vec::new(),
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn payload_carries_every_field() {
        let v = parse(&dispatch_payload(
            &spec(),
            "my-worker",
            "https://app.warp.dev",
        ));
        assert_eq!(v["version"], 1);
        assert_eq!(v["run_id"], "task-1");
        assert_eq!(v["execution_id"], "exec-1");
        assert_eq!(v["server_root_url"], "https://app.warp.dev");
        assert_eq!(v["worker_id"], "my-worker");
        assert_eq!(v["docker_image"], "ubuntu:22.04");
        assert_eq!(
            v["base_args"],
            json!(["agent", "run", "--task-id", "task-1"])
        );
        assert_eq!(
            v["sidecars"],
            json!([{"image": "warpdotdev/warp-agent:latest", "mount_path": "/agent", "read_write": false}])
        );
        assert_eq!(v["task"]["id"], "task-1");
        assert_eq!(v["task"]["title"], "do the thing");
    }

    #[test]
    fn payload_env_later_duplicates_win_and_values_keep_equals_signs() {
        let v = parse(&dispatch_payload(&spec(), "w", ""));
        assert_eq!(v["env"], json!({"A": "3", "B": "2", "URL": "a=b"}));
    }

    #[test]
    fn payload_has_all_ten_snake_case_keys_even_when_empty() {
        let mut s = spec();
        s.execution_id = None;
        s.sidecars.clear();
        s.env = vec![("K".into(), "v".into())];
        let v = parse(&dispatch_payload(&s, "w", "https://app.warp.dev"));
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "base_args",
                "docker_image",
                "env",
                "execution_id",
                "run_id",
                "server_root_url",
                "sidecars",
                "task",
                "version",
                "worker_id"
            ]
        );
        assert_eq!(v["execution_id"], "");
        assert_eq!(v["sidecars"], Value::Null);
    }

    #[test]
    fn payload_exact_text_for_a_minimal_spec() {
        let s = TaskSpec {
            task_id: "r".into(),
            execution_id: None,
            task: Task {
                id: "t".into(),
                created_at: ZERO_TIME.into(),
                updated_at: ZERO_TIME.into(),
                ..Task::default()
            },
            image: "img".into(),
            env: vec![("Z".into(), "1".into()), ("A".into(), "2".into())],
            base_args: vec!["agent".into()],
            sidecars: Vec::new(),
            instance_shape: None,
            harness: None,
            secrets: Vec::new(),
        };
        assert_eq!(
            dispatch_payload(&s, "w", "u"),
            concat!(
                r#"{"version":1,"run_id":"r","execution_id":"","server_root_url":"u","#,
                r#""worker_id":"w","docker_image":"img","base_args":["agent"],"#,
                r#""env":{"A":"2","Z":"1"},"sidecars":null,"#,
                r#""task":{"id":"t","title":"","task_definition":{"prompt":""},"#,
                r#""created_at":"0001-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z"}}"#
            )
        );
    }

    #[test]
    fn payload_task_keeps_snapshot_owner_and_prompt_and_escapes_html() {
        let mut s = spec();
        s.task.task_definition = TaskDefinition {
            prompt: "fix <b> & ship".into(),
        };
        s.task.owner = Some(Owner {
            kind: "TEAM".into(),
            id: 42,
        });
        let raw = serde_json::value::RawValue::from_string("{ \"cmd\" : \"x\" }".into()).unwrap();
        let mut snap = AgentConfigSnapshot {
            model_id: Some("m".into()),
            ..AgentConfigSnapshot::default()
        };
        snap.mcp_servers
            .insert("srv".into(), crate::protocol::RawJson(raw));
        s.task.agent_config_snapshot = Some(snap);
        let text = dispatch_payload(&s, "w", "u");
        assert!(
            text.contains(r#""prompt":"fix \u003cb\u003e \u0026 ship""#),
            "{text}"
        );
        assert!(
            text.contains(r#""owner":{"Type":"TEAM","Id":42}"#),
            "{text}"
        );
        // Raw MCP JSON is compacted like Go compacts a json.RawMessage.
        assert!(
            text.contains(r#""mcp_servers":{"srv":{"cmd":"x"}}"#),
            "{text}"
        );
        let v = parse(&text);
        assert_eq!(v["task"]["task_definition"]["prompt"], "fix <b> & ship");
        assert_eq!(v["task"]["agent_config_snapshot"]["model_id"], "m");
    }

    #[test]
    fn payload_env_includes_task_secrets() {
        let mut s = spec();
        s.env
            .push(("GITHUB_ACCESS_TOKEN".into(), "ghp_secret".into()));
        let v = parse(&dispatch_payload(&s, "w", "u"));
        assert_eq!(v["env"]["GITHUB_ACCESS_TOKEN"], "ghp_secret");
    }
}
