//! Codec tests: real shapes, nulls, hostile frames, every prefix, exact outbound JSON.

use super::*;
use serde_json::{Value, json};

fn assignment(v: Value) -> TaskAssignment {
    match decode(&json!({"type": "task_assignment", "data": v}).to_string()).unwrap() {
        Inbound::Assignment(a) => *a,
        other => panic!("expected assignment, got {other:?}"),
    }
}

#[test]
fn full_assignment_decodes() {
    let a = assignment(json!({
        "task_id": "run-1",
        "execution_id": "exec-1",
        "docker_image": "img:1",
        "sidecar_image": "agent:2",
        "env_vars": {"WARP_API_KEY": "secret"},
        "additional_sidecars": [{"image": "x", "mount_path": "/x", "read_write": true}],
        "additional_oz_args": ["--skip-initial-turn"],
        "instance_shape": {"vcpus": 4, "memory_gb": 16},
        "telemetry_collection": {"endpoint": "https://otel", "logging_enabled": true},
        "task": {
            "id": "task-1", "title": "T", "task_definition": {"prompt": "do"},
            "created_at": "2026-01-02T03:04:05Z",
            "owner": {"Type": "TEAM", "Id": 7},
            "agent_conversation_id": "conv",
            "agent_config_snapshot": {
                "environment_id": "env", "model_id": "m", "mcp_servers": {"a": {"x": 1}},
                "computer_use_enabled": false, "harness": {"type": "claude"},
                "inference_providers": {"aws": {"role_arn": "arn", "region": "us"}},
                "session_sharing": {"public_access": "VIEWER"},
                "idle_timeout_minutes": 15,
                "repository_head_overrides": [{"code_forge": "GITHUB", "repo_owner": "o",
                    "repo_name": "r", "head": {"type": "BRANCH", "value": "main"}}],
                "unknown_future_field": [1, 2]
            }
        }
    }));
    assert_eq!(a.task_id, "run-1");
    assert_eq!(a.execution_id.as_deref(), Some("exec-1"));
    assert_eq!(a.env_vars["WARP_API_KEY"], "secret");
    assert!(a.additional_sidecars[0].read_write);
    assert_eq!(
        a.instance_shape,
        Some(InstanceShape {
            vcpus: 4,
            memory_gb: 16
        })
    );
    let task = a.task.unwrap();
    assert_eq!(task.owner.as_ref().unwrap().kind, "TEAM");
    assert_eq!(task.owner.as_ref().unwrap().id, 7);
    assert_eq!(task.created_at, "2026-01-02T03:04:05Z");
    assert_eq!(task.updated_at, ZERO_TIME);
    let snap = task.agent_config_snapshot.unwrap();
    assert_eq!(snap.harness_type(), Some("claude"));
    assert!(!snap.is_oz_harness());
    assert_eq!(snap.mcp_servers["a"].get(), r#"{"x":1}"#);
    assert_eq!(snap.repository_head_overrides[0].head.value, "main");
}

#[test]
fn nulls_count_as_absent() {
    let a = assignment(json!({
        "task_id": "t", "execution_id": null, "task": null, "docker_image": null,
        "env_vars": null, "additional_sidecars": null, "additional_oz_args": null,
        "instance_shape": null
    }));
    assert_eq!(a.execution_id, None);
    assert_eq!(a.task, None);
    assert!(a.env_vars.is_empty());
    let a = assignment(json!({"task_id": "t", "execution_id": ""}));
    assert_eq!(
        a.execution_id, None,
        "empty execution id is the legacy form"
    );
}

#[test]
fn harness_kinds() {
    let snap = |h: Value| -> AgentConfigSnapshot {
        serde_json::from_value(json!({ "harness": h })).unwrap()
    };
    assert!(snap(Value::Null).is_oz_harness());
    assert!(snap(json!({})).is_oz_harness());
    assert!(snap(json!({"type": ""})).is_oz_harness());
    assert!(snap(json!({"type": " oz "})).is_oz_harness());
    assert!(!snap(json!({"type": "codex"})).is_oz_harness());
}

#[test]
fn bad_assignment_keeps_ids_when_it_can() {
    let frame = r#"{"type":"task_assignment","data":{"task_id":"t1","execution_id":"e","env_vars":"oops"}}"#;
    match decode(frame).unwrap() {
        Inbound::BadAssignment {
            task_id,
            execution_id,
            error,
        } => {
            assert_eq!(task_id.as_deref(), Some("t1"));
            assert_eq!(execution_id.as_deref(), Some("e"));
            assert!(error.contains("invalid type"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let frame = r#"{"type":"task_assignment","data":{"task_id":5}}"#;
    assert!(matches!(
        decode(frame).unwrap(),
        Inbound::BadAssignment { task_id: None, .. }
    ));
    let frame = r#"{"type":"task_assignment"}"#;
    assert!(matches!(
        decode(frame).unwrap(),
        Inbound::BadAssignment { task_id: None, .. }
    ));
    let frame = r#"{"type":"task_assignment","data":{"task":{"id":"x"}}}"#;
    assert!(matches!(
        decode(frame).unwrap(),
        Inbound::BadAssignment { task_id: None, .. }
    ));
}

#[test]
fn errors_never_echo_values() {
    let frame =
        r#"{"type":"task_assignment","data":{"task_id":"t1","env_vars":{"K":5},"x":"s3cr3t"}}"#;
    let Inbound::BadAssignment { error, .. } = decode(frame).unwrap() else {
        panic!("expected a bad assignment");
    };
    assert!(!error.contains("`5`") && error.contains("`…`"), "{error}");
    let frame = r#"{"type":"task_assignment","data":{"task_id":"t1","env_vars":"s3cr3t"}}"#;
    let Inbound::BadAssignment { error, .. } = decode(frame).unwrap() else {
        panic!("expected a bad assignment");
    };
    assert!(!error.contains("s3cr3t"), "{error}");
    assert!(error.contains("invalid type"), "{error}");
    assert_eq!(
        scrub_serde_message(r#"a "x\"y" b `7` c"#),
        "a \"…\" b `…` c"
    );
}

#[test]
fn missing_task_object_is_still_an_assignment() {
    let a = assignment(json!({"task_id": "t"}));
    assert!(a.task.is_none());
}

#[test]
fn cancellation_and_unknown() {
    let c = decode(r#"{"type":"task_cancellation","data":{"task_id":"t","execution_id":"e"}}"#)
        .unwrap();
    assert_eq!(
        c,
        Inbound::Cancellation(TaskCancellation {
            task_id: "t".into(),
            execution_id: Some("e".into())
        })
    );
    assert!(decode(r#"{"type":"task_cancellation","data":{}}"#).is_err());
    assert_eq!(
        decode(r#"{"type":"heartbeat","data":{}}"#).unwrap(),
        Inbound::Unknown("heartbeat".into())
    );
    assert_eq!(
        decode(r#"{"type":"brand_new"}"#).unwrap(),
        Inbound::Unknown("brand_new".into())
    );
}

#[test]
fn hostile_frames_are_errors_not_panics() {
    for frame in [
        "",
        "{",
        "[]",
        "null",
        "42",
        r#"{"data":{}}"#,
        r#"{"type":7}"#,
        r#"{"type":"task_cancellation","data":[1]}"#,
        "\u{0}\u{1}",
    ] {
        assert!(decode(frame).is_err(), "{frame:?} should not decode");
    }
    // Deep nesting must not overflow the stack (serde_json limits recursion).
    let deep = format!(
        r#"{{"type":"task_assignment","data":{{"task_id":"t","task":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(!matches!(decode(&deep), Ok(Inbound::Assignment(_))));
}

#[test]
fn every_prefix_of_a_frame_is_handled() {
    let frame = r#"{"type":"task_assignment","data":{"task_id":"t","task":{"id":"i"}}}"#;
    // Every strict prefix is an incomplete JSON document: an error, never a message (and no
    // panic); the whole frame is the assignment.
    for n in 0..frame.len() {
        match decode(&frame[..n]) {
            Err(DecodeError::Envelope(_)) => {}
            other => panic!("prefix {:?} decoded as {other:?}", &frame[..n]),
        }
    }
    assert!(matches!(decode(frame), Ok(Inbound::Assignment(_))));
}

fn encoded(m: Outbound) -> Value {
    serde_json::from_str(&m.encode()).unwrap()
}

#[test]
fn outbound_shapes() {
    assert_eq!(
        encoded(Outbound::Claimed {
            task_id: "t".into(),
            worker_id: "w".into(),
            execution_id: None
        }),
        json!({"type": "task_claimed", "data": {"task_id": "t", "worker_id": "w"}})
    );
    assert_eq!(
        encoded(Outbound::Claimed {
            task_id: "t".into(),
            worker_id: "w".into(),
            execution_id: Some("e".into())
        })["data"]["execution_id"],
        "e"
    );
    assert_eq!(
        encoded(Outbound::Rejected {
            task_id: "t".into(),
            reason: text::REJECT_AT_CAPACITY.into()
        }),
        json!({"type": "task_rejected", "data": {"task_id": "t", "reason": "worker at maximum concurrency"}})
    );
    assert_eq!(
        encoded(Outbound::Completed {
            task_id: "t".into(),
            execution_id: None,
            message: text::COMPLETED.into(),
            task_state: None
        }),
        json!({"type": "task_completed", "data": {"task_id": "t", "message": "Task completed successfully"}})
    );
    assert_eq!(
        encoded(Outbound::Completed {
            task_id: "t".into(),
            execution_id: Some("e".into()),
            message: text::CANCELLED.into(),
            task_state: Some(text::CANCELLED_STATE.into())
        }),
        json!({"type": "task_completed", "data": {"task_id": "t", "execution_id": "e",
            "message": "Task cancelled by user request.", "task_state": "CANCELLED"}})
    );
    assert_eq!(
        encoded(Outbound::Failed {
            task_id: "t".into(),
            execution_id: None,
            message: "m".into(),
            failure_reason: Some("agent_invocation".into()),
            exit_code: Some(143),
            failure_details: None
        }),
        json!({"type": "task_failed", "data": {"task_id": "t", "message": "m",
            "failure_reason": "agent_invocation", "exit_code": 143}})
    );
    assert_eq!(
        encoded(Outbound::Failed {
            task_id: "t".into(),
            execution_id: None,
            message: "m".into(),
            failure_reason: None,
            exit_code: Some(0),
            failure_details: None
        }),
        json!({"type": "task_failed", "data": {"task_id": "t", "message": "m"}}),
        "exit code 0 is omitted like Go's omitempty"
    );
    assert_eq!(
        encoded(Outbound::Failed {
            task_id: "t".into(),
            execution_id: None,
            message: "m".into(),
            failure_reason: Some("job_failed".into()),
            exit_code: None,
            failure_details: Some(r#"{"kubernetes":{"schema_version":1}}"#.into())
        }),
        json!({"type": "task_failed", "data": {"task_id": "t", "message": "m",
            "failure_reason": "job_failed",
            "failure_details": {"kubernetes": {"schema_version": 1}}}}),
        "failure_details is sent as the object it is"
    );
    assert_eq!(
        encoded(Outbound::Failed {
            task_id: "t".into(),
            execution_id: None,
            message: "m".into(),
            failure_reason: None,
            exit_code: None,
            failure_details: Some("not json".into())
        }),
        json!({"type": "task_failed", "data": {"task_id": "t", "message": "m"}}),
        "text that is not JSON is dropped, never sent broken"
    );
    assert_eq!(
        encoded(Outbound::ExecutionClosed {
            task_id: "t".into(),
            execution_id: "e".into()
        }),
        json!({"type": "execution_closed", "data": {"task_id": "t", "execution_id": "e"}})
    );
}

#[test]
fn task_reserialises_known_fields_only() {
    let t: Task = serde_json::from_value(json!({
        "id": "i", "title": "t", "task_definition": {"prompt": "p"}, "mystery": 1
    }))
    .unwrap();
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(
        v,
        json!({"id": "i", "title": "t", "task_definition": {"prompt": "p"},
            "created_at": ZERO_TIME, "updated_at": ZERO_TIME})
    );
}
