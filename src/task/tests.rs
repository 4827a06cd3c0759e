//! Spec building as a whole: image precedence, environment, base arguments, sidecars and the
//! pass-through fields (upstream's `TestDefaultImageForTask` and `TestPrepareTaskParams*`).

use super::*;
use crate::protocol::{Owner, TaskAssignment};

fn task(id: &str) -> Task {
    Task {
        id: id.into(),
        ..Task::default()
    }
}

fn with_snapshot(id: &str, snapshot: &str) -> Task {
    serde_json::from_str(&format!(
        r#"{{"id":"{id}","agent_config_snapshot":{snapshot}}}"#
    ))
    .unwrap()
}

fn assignment(task_id: &str) -> TaskAssignment {
    TaskAssignment {
        task_id: task_id.into(),
        ..TaskAssignment::default()
    }
}

fn opts(backend: BackendKind) -> TaskOptions {
    TaskOptions {
        backend: Some(backend),
        server_root_url: "https://app.warp.dev".into(),
        ..TaskOptions::default()
    }
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn sidecar(image: &str, mount_path: &str, read_write: bool) -> SidecarMount {
    SidecarMount {
        image: image.into(),
        mount_path: mount_path.into(),
        read_write,
    }
}

// --- image precedence (TestDefaultImageForTask) ------------------------------------------------

fn k8s_with_default(image: &str) -> TaskOptions {
    TaskOptions {
        default_image: Some(image.into()),
        ..opts(BackendKind::Kubernetes)
    }
}

#[test]
fn server_image_wins_over_default_image() {
    let mut a = assignment("t");
    a.docker_image = "server-image:latest".into();
    let o = k8s_with_default("my-registry.io/default:v1");
    assert_eq!(
        resolve_image(&a, &o),
        ("server-image:latest".into(), ImageSource::Assignment)
    );
    let (spec, notes) = build_with_notes(&a, &task("t"), &o);
    assert_eq!(spec.image, "server-image:latest");
    assert_eq!(notes, []);
}

#[test]
fn kubernetes_default_image_used_when_server_sends_none() {
    let o = k8s_with_default("my-registry.io/default:v1");
    let (spec, notes) = build_with_notes(&assignment("t"), &task("t"), &o);
    assert_eq!(spec.image, "my-registry.io/default:v1");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].level, log::Level::Info);
    assert!(notes[0].message.contains("my-registry.io/default:v1"));
    assert_eq!(
        resolve_image(&assignment("t"), &o).1,
        ImageSource::KubernetesDefault
    );
}

#[test]
fn fallback_image_when_no_default_image_configured() {
    let (image, source) = resolve_image(&assignment("t"), &opts(BackendKind::Kubernetes));
    assert_eq!(
        (image.as_str(), source),
        ("ubuntu:22.04", ImageSource::Fallback)
    );
}

#[test]
fn fallback_image_without_any_kubernetes_config() {
    let (image, source) = resolve_image(&assignment("t"), &TaskOptions::default());
    assert_eq!(
        (image.as_str(), source),
        ("ubuntu:22.04", ImageSource::Fallback)
    );
}

#[test]
fn default_image_is_ignored_outside_kubernetes() {
    for backend in [
        BackendKind::Docker,
        BackendKind::Direct,
        BackendKind::Command,
    ] {
        let o = TaskOptions {
            default_image: Some("my-registry.io/default:v1".into()),
            ..opts(backend)
        };
        assert_eq!(resolve_image(&assignment("t"), &o).0, "ubuntu:22.04");
    }
}

#[test]
fn whitespace_only_images_count_as_absent() {
    let mut a = assignment("t");
    a.docker_image = "   ".into();
    let o = k8s_with_default("  ");
    assert_eq!(
        resolve_image(&a, &o),
        ("ubuntu:22.04".into(), ImageSource::Fallback)
    );
    a.docker_image = " img:1 ".into();
    assert_eq!(resolve_image(&a, &o).0, "img:1");
}

#[test]
fn fallback_with_environment_id_is_a_warning() {
    let t = with_snapshot("t", r#"{"environment_id":"env-123"}"#);
    let (spec, notes) = build_with_notes(&assignment("t"), &t, &opts(BackendKind::Docker));
    assert_eq!(spec.image, "ubuntu:22.04");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].level, log::Level::Warn);
    assert!(notes[0].message.contains("env-123"));
    assert!(notes[0].message.contains("ubuntu:22.04"));
}

#[test]
fn fallback_without_environment_id_is_informational() {
    let (_, notes) = build_with_notes(&assignment("t"), &task("t"), &opts(BackendKind::Docker));
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].level, log::Level::Info);
}

// --- environment ---------------------------------------------------------------------------------

#[test]
fn env_is_task_id_prompts_off_server_root_then_env_vars() {
    let mut a = assignment("run-1");
    a.env_vars.insert("WARP_API_KEY".into(), "wk".into());
    a.env_vars.insert("GITHUB_ACCESS_TOKEN".into(), "gh".into());
    let spec = build(&a, &task("task-9"), &opts(BackendKind::Docker));
    let expected: EnvList = vec![
        ("TASK_ID".into(), "task-9".into()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GH_PROMPT_DISABLED".into(), "1".into()),
        ("WARP_SERVER_ROOT_URL".into(), "https://app.warp.dev".into()),
        ("GITHUB_ACCESS_TOKEN".into(), "gh".into()),
        ("WARP_API_KEY".into(), "wk".into()),
    ];
    assert_eq!(spec.env, expected);
}

#[test]
fn env_includes_server_root_url_for_harness_support() {
    let o = TaskOptions {
        server_root_url: "https://staging.example.com".into(),
        ..opts(BackendKind::Kubernetes)
    };
    let spec = build(&assignment("t"), &task("t"), &o);
    assert!(spec.env.contains(&(
        "WARP_SERVER_ROOT_URL".into(),
        "https://staging.example.com".into()
    )));
}

#[test]
fn env_omits_server_root_url_when_empty() {
    let o = TaskOptions {
        server_root_url: String::new(),
        ..opts(BackendKind::Direct)
    };
    let spec = build(&assignment("t"), &task("t"), &o);
    let expected: EnvList = vec![
        ("TASK_ID".into(), "t".into()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GH_PROMPT_DISABLED".into(), "1".into()),
    ];
    assert_eq!(spec.env, expected);
}

#[test]
fn env_vars_come_last_so_they_win_over_worker_entries() {
    let mut a = assignment("t");
    a.env_vars.insert("GIT_TERMINAL_PROMPT".into(), "1".into());
    let spec = build(&a, &task("t"), &opts(BackendKind::Docker));
    assert_eq!(
        spec.env.last(),
        Some(&("GIT_TERMINAL_PROMPT".into(), "1".into()))
    );
}

// --- base args ---------------------------------------------------------------------------------

#[test]
fn base_args_exact_for_a_plain_task() {
    let spec = build(
        &assignment("run-1"),
        &task("task-1"),
        &opts(BackendKind::Docker),
    );
    assert_eq!(
        spec.base_args,
        v(&[
            "agent",
            "run",
            "--task-id",
            "task-1",
            "--sandboxed",
            "--server-root-url",
            "https://app.warp.dev",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn team_owned_task_is_shared_with_the_team() {
    let mut t = task("task-1");
    t.owner = Some(Owner {
        kind: "TEAM".into(),
        id: 42,
    });
    let spec = build(&assignment("task-1"), &t, &opts(BackendKind::Kubernetes));
    assert_eq!(
        spec.base_args,
        v(&[
            "agent",
            "run",
            "--share",
            "team:edit",
            "--task-id",
            "task-1",
            "--sandboxed",
            "--server-root-url",
            "https://app.warp.dev",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn user_owned_and_unowned_tasks_are_not_team_shared() {
    let mut user = task("task-2");
    user.owner = Some(Owner {
        kind: "USER".into(),
        id: 99,
    });
    for t in [user, task("task-3")] {
        let spec = build(&assignment(&t.id), &t, &opts(BackendKind::Kubernetes));
        assert!(
            !spec.base_args.iter().any(|a| a == "team:edit"),
            "{:?}",
            spec.base_args
        );
        assert_eq!(spec.base_args[2], "--task-id");
    }
}

#[test]
fn server_root_url_flag_is_passed_even_when_empty() {
    let o = TaskOptions {
        server_root_url: String::new(),
        ..opts(BackendKind::Direct)
    };
    let spec = build(&assignment("t"), &task("t"), &o);
    assert_eq!(
        spec.base_args,
        v(&[
            "agent",
            "run",
            "--task-id",
            "t",
            "--sandboxed",
            "--server-root-url",
            "",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn session_sharing_server_url_goes_last() {
    let o = TaskOptions {
        session_sharing_server_url: Some("https://share.example".into()),
        idle_on_complete: Some("10m".into()),
        ..opts(BackendKind::Docker)
    };
    let spec = build(&assignment("t"), &task("t"), &o);
    assert_eq!(
        spec.base_args[spec.base_args.len() - 4..],
        v(&[
            "--idle-on-complete",
            "10m",
            "--session-sharing-server-url",
            "https://share.example"
        ])
    );
}

#[test]
fn empty_worker_settings_count_as_unset() {
    let o = TaskOptions {
        session_sharing_server_url: Some(String::new()),
        idle_on_complete: Some(String::new()),
        ..opts(BackendKind::Docker)
    };
    let spec = build(&assignment("t"), &task("t"), &o);
    assert_eq!(
        spec.base_args.last().map(String::as_str),
        Some("--idle-on-complete")
    );
    assert!(
        !spec
            .base_args
            .iter()
            .any(|a| a == "--session-sharing-server-url")
    );
}

#[test]
fn additional_oz_args_forwarded_only_when_sent() {
    let mut a = assignment("task-skip");
    a.additional_oz_args = v(&["--skip-initial-turn"]);
    let spec = build(&a, &task("task-skip"), &opts(BackendKind::Kubernetes));
    assert_eq!(
        spec.base_args[spec.base_args.len() - 2..],
        v(&["--skip-initial-turn", "--idle-on-complete"])
    );
    let spec = build(
        &assignment("task-no-skip"),
        &task("task-no-skip"),
        &opts(BackendKind::Kubernetes),
    );
    assert!(!spec.base_args.iter().any(|a| a == "--skip-initial-turn"));
}

#[test]
fn task_id_flag_and_env_use_the_task_object_id() {
    let spec = build(
        &assignment("run-id"),
        &task("task-object-id"),
        &opts(BackendKind::Docker),
    );
    assert_eq!(spec.task_id, "run-id");
    assert_eq!(spec.base_args[3], "task-object-id");
    assert_eq!(spec.env[0], ("TASK_ID".into(), "task-object-id".into()));
}

// --- agent sidecar (TestPrepareTaskParamsSidecarImageOverride) ---------------------------------

const SERVER_AGENT: &str = "docker.io/warpdotdev/warp-agent:latest";
const MY_AGENT: &str = "my-registry.io/warpdotdev/warp-agent:latest";

fn with_agent_override(backend: BackendKind, image: Option<&str>) -> TaskOptions {
    TaskOptions {
        sidecar_image: image.map(str::to_owned),
        ..opts(backend)
    }
}

fn agent_assignment() -> TaskAssignment {
    TaskAssignment {
        sidecar_image: SERVER_AGENT.into(),
        ..assignment("task-1")
    }
}

#[test]
fn configured_sidecar_image_replaces_the_server_one() {
    for backend in [BackendKind::Kubernetes, BackendKind::Docker] {
        let o = with_agent_override(backend, Some(MY_AGENT));
        let (spec, notes) = build_with_notes(&agent_assignment(), &task("task-1"), &o);
        assert_eq!(
            spec.sidecars,
            [sidecar(MY_AGENT, "/agent", false)],
            "{backend}"
        );
        assert!(
            notes.iter().any(|n| n.message.contains(MY_AGENT)),
            "{backend}"
        );
    }
}

#[test]
fn server_sidecar_image_used_when_none_configured() {
    for backend in [BackendKind::Kubernetes, BackendKind::Docker] {
        for configured in [None, Some(""), Some("  ")] {
            let o = with_agent_override(backend, configured);
            let spec = build(&agent_assignment(), &task("task-1"), &o);
            assert_eq!(spec.sidecars, [sidecar(SERVER_AGENT, "/agent", false)]);
        }
    }
}

#[test]
fn sidecar_image_override_does_not_apply_to_other_backends() {
    for backend in [BackendKind::Direct, BackendKind::Command] {
        let o = with_agent_override(backend, Some(MY_AGENT));
        let spec = build(&agent_assignment(), &task("task-1"), &o);
        assert_eq!(spec.sidecars, [sidecar(SERVER_AGENT, "/agent", false)]);
    }
}

#[test]
fn no_agent_sidecar_when_server_sends_none_even_if_configured() {
    let o = with_agent_override(BackendKind::Kubernetes, Some(MY_AGENT));
    let spec = build(&assignment("task-1"), &task("task-1"), &o);
    assert_eq!(spec.sidecars, []);
}

#[test]
fn additional_sidecars_follow_the_agent_in_order() {
    let mut a = agent_assignment();
    a.additional_sidecars = vec![
        sidecar("b:1", "/mnt/b", true),
        sidecar("a:1", "/mnt/a", false),
    ];
    let spec = build(&a, &task("task-1"), &opts(BackendKind::Docker));
    assert_eq!(
        spec.sidecars,
        [
            sidecar(SERVER_AGENT, "/agent", false),
            sidecar("b:1", "/mnt/b", true),
            sidecar("a:1", "/mnt/a", false)
        ]
    );
}

// --- coding CLI sidecars (TestPrepareTaskParamsCodingCLISidecarOverride) -----------------------

const MY_CLAUDE: &str = "registry.internal/my-claude:v1";

fn cli_opts(map: &[(&str, &str)]) -> TaskOptions {
    TaskOptions {
        coding_cli_sidecars: map
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..opts(BackendKind::Kubernetes)
    }
}

fn harness_task(harness: &str) -> Task {
    with_snapshot("task-1", &format!(r#"{{"harness":{{"type":{harness}}}}}"#))
}

#[test]
fn coding_cli_sidecar_replaces_only_the_image_of_the_server_one() {
    let mut a = agent_assignment();
    a.additional_sidecars = vec![sidecar(
        "docker.io/warpdotdev/claude-cli:latest",
        "/mnt/claude-cli-sidecar",
        true,
    )];
    let spec = build(
        &a,
        &harness_task(r#""claude""#),
        &cli_opts(&[("claude", MY_CLAUDE)]),
    );
    assert_eq!(
        spec.sidecars,
        [
            sidecar(SERVER_AGENT, "/agent", false),
            sidecar(MY_CLAUDE, "/mnt/claude-cli-sidecar", true)
        ]
    );
}

#[test]
fn coding_cli_sidecar_is_injected_when_the_server_sent_none() {
    let spec = build(
        &assignment("task-1"),
        &harness_task(r#""claude""#),
        &cli_opts(&[("claude", MY_CLAUDE)]),
    );
    assert_eq!(
        spec.sidecars,
        [sidecar(MY_CLAUDE, "/mnt/claude-cli-sidecar", false)]
    );
}

#[test]
fn coding_cli_sidecar_harness_type_is_trimmed() {
    let spec = build(
        &assignment("task-1"),
        &harness_task(r#""  claude  ""#),
        &cli_opts(&[("claude", MY_CLAUDE)]),
    );
    assert_eq!(
        spec.sidecars,
        [sidecar(MY_CLAUDE, "/mnt/claude-cli-sidecar", false)]
    );
}

#[test]
fn coding_cli_sidecar_not_added_for_an_unconfigured_harness() {
    let spec = build(
        &assignment("task-1"),
        &harness_task(r#""codex""#),
        &cli_opts(&[("claude", MY_CLAUDE)]),
    );
    assert_eq!(spec.sidecars, []);
}

#[test]
fn coding_cli_sidecar_with_empty_image_is_ignored() {
    let spec = build(
        &assignment("task-1"),
        &harness_task(r#""claude""#),
        &cli_opts(&[("claude", "")]),
    );
    assert_eq!(spec.sidecars, []);
}

#[test]
fn coding_cli_sidecar_needs_a_harness() {
    let o = cli_opts(&[("claude", MY_CLAUDE)]);
    for t in [
        task("task-1"),
        harness_task("null"),
        harness_task(r#""  ""#),
    ] {
        assert_eq!(build(&assignment("task-1"), &t, &o).sidecars, []);
    }
}

#[test]
fn coding_cli_sidecars_are_kubernetes_only() {
    let o = TaskOptions {
        backend: Some(BackendKind::Docker),
        ..cli_opts(&[("claude", MY_CLAUDE)])
    };
    let spec = build(&assignment("task-1"), &harness_task(r#""claude""#), &o);
    assert_eq!(spec.sidecars, []);
}

// --- pass-through fields -----------------------------------------------------------------------

#[test]
fn instance_shape_is_threaded_through() {
    let mut a = assignment("task-1");
    a.instance_shape = Some(InstanceShape {
        vcpus: 4,
        memory_gb: 16,
    });
    let spec = build(&a, &task("task-1"), &opts(BackendKind::Kubernetes));
    assert_eq!(
        spec.instance_shape,
        Some(InstanceShape {
            vcpus: 4,
            memory_gb: 16
        })
    );
    let spec = build(
        &assignment("task-2"),
        &task("task-2"),
        &opts(BackendKind::Kubernetes),
    );
    assert_eq!(spec.instance_shape, None);
}

#[test]
fn ids_and_task_are_carried_over() {
    let mut a = assignment("run-1");
    a.execution_id = Some("exec-1".into());
    let t = task("task-1");
    let spec = build(&a, &t, &opts(BackendKind::Docker));
    assert_eq!(spec.task_id, "run-1");
    assert_eq!(spec.execution_id.as_deref(), Some("exec-1"));
    assert_eq!(spec.task, t);
    assert_eq!(spec.task_ref().task_id, "run-1");
}

#[test]
fn harness_is_the_trimmed_type() {
    let o = opts(BackendKind::Direct);
    let a = assignment("t");
    assert_eq!(
        build(&a, &harness_task(r#"" claude ""#), &o)
            .harness
            .as_deref(),
        Some("claude")
    );
    assert_eq!(
        build(&a, &harness_task(r#""oz""#), &o).harness.as_deref(),
        Some("oz")
    );
    assert_eq!(build(&a, &harness_task(r#""  ""#), &o).harness, None);
    assert_eq!(build(&a, &task("t"), &o).harness, None);
}

#[test]
fn secrets_are_the_distinct_non_empty_env_var_values() {
    let mut a = assignment("t");
    a.env_vars.insert("A".into(), "tok".into());
    a.env_vars.insert("B".into(), "tok".into());
    a.env_vars.insert("C".into(), String::new());
    a.env_vars.insert("D".into(), "key".into());
    let spec = build(&a, &task("t"), &opts(BackendKind::Docker));
    assert_eq!(spec.secrets, v(&["key", "tok"]));
}

#[test]
fn the_bootstrap_token_is_a_secret_and_telemetry_is_carried() {
    let mut a = assignment("t");
    a.env_vars.insert("A".into(), "tok".into());
    let wire = r#"{"endpoint":"https://otel","logging_enabled":true,
        "bootstrap_token":{"token":"boot-123","expires_at":"2030-01-01T00:00:00Z"}}"#;
    a.telemetry_collection = Some(serde_json::from_str(wire).unwrap());
    let spec = build(&a, &task("t"), &opts(BackendKind::Docker));
    assert_eq!(spec.secrets, v(&["boot-123", "tok"]));
    let t = spec.telemetry.unwrap();
    assert!(t.logging_enabled && !t.tracing_enabled);
    assert_eq!(t.endpoint, "https://otel");
    assert!(!format!("{t:?}").contains("boot-123"));
}

#[test]
fn notes_never_contain_secrets() {
    let mut a = agent_assignment();
    a.env_vars
        .insert("WARP_API_KEY".into(), "super-secret-value".into());
    let t = with_snapshot(
        "t",
        r#"{"environment_id":"env-1","harness":{"type":"claude"}}"#,
    );
    let o = TaskOptions {
        sidecar_image: Some(MY_AGENT.into()),
        ..cli_opts(&[("claude", MY_CLAUDE)])
    };
    let (_, notes) = build_with_notes(&a, &t, &o);
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes
            .iter()
            .all(|n| !n.message.contains("super-secret-value"))
    );
}

#[test]
fn dispatch_payload_from_a_built_spec_round_trips_the_wire_task() {
    let mut a = agent_assignment();
    a.execution_id = Some("exec-1".into());
    a.env_vars.insert("WARP_API_KEY".into(), "k".into());
    let t = with_snapshot("task-1", r#"{"model_id":"m"}"#);
    let spec = build(&a, &t, &opts(BackendKind::Command));
    let v: serde_json::Value =
        serde_json::from_str(&dispatch_payload(&spec, "w-1", "https://app.warp.dev")).unwrap();
    assert_eq!(
        v["base_args"],
        serde_json::to_value(&spec.base_args).unwrap()
    );
    assert_eq!(v["env"]["TASK_ID"], "task-1");
    assert_eq!(v["env"]["WARP_API_KEY"], "k");
    assert_eq!(v["sidecars"][0]["image"], SERVER_AGENT);
    let back: Task = serde_json::from_value(v["task"].clone()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn notes_escape_server_text_so_it_cannot_forge_log_lines() {
    let t = with_snapshot("t", r#"{"environment_id":"env\nERROR forged"}"#);
    let (_, notes) = build_with_notes(&assignment("t"), &t, &opts(BackendKind::Docker));
    assert_eq!(notes.len(), 1);
    assert!(!notes[0].message.contains('\n'), "{:?}", notes[0].message);
    assert!(notes[0].message.contains(r"env\nERROR forged"));
}

#[test]
fn debug_of_assignment_and_spec_masks_secrets() {
    let mut a = assignment("run-1");
    a.env_vars
        .insert("WARP_API_KEY".into(), "wk-s3cr3t-value".into());
    let spec = build(&a, &task("task-9"), &opts(BackendKind::Docker));
    for text in [format!("{a:?}"), format!("{a:#?}"), format!("{spec:?}")] {
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("WARP_API_KEY") && text.contains("run-1"),
            "{text}"
        );
    }
    assert!(format!("{spec:?}").contains("[1 masked]"));
}
