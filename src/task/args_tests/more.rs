//! Exact argument vectors, continued: Bedrock, sharing, snapshot controls, environment,
//! supplemental arguments and repository head overrides.

use super::{ROLE, run, run_with, snap, v};
use crate::protocol::Task;

// --- bedrock -----------------------------------------------------------------------------------

#[test]
fn bedrock_role_is_forwarded() {
    let task = snap(&format!(
        r#"{{"model_id":"claude-sonnet-4","inference_providers":{{"aws":{{"role_arn":"{ROLE}"}}}}}}"#
    ));
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--model",
            "claude-sonnet-4",
            "--computer-use",
            "--bedrock-inference-role",
            ROLE,
            "--idle-on-complete"
        ])
    );
}

#[test]
fn bedrock_region_pairs_with_role_and_is_trimmed() {
    let task = snap(&format!(
        r#"{{"inference_providers":{{"aws":{{"role_arn":"{ROLE}","region":"  us-east-1  "}}}}}}"#
    ));
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--bedrock-inference-role",
            ROLE,
            "--bedrock-role-region",
            "us-east-1",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn bedrock_whitespace_region_is_omitted() {
    let task = snap(&format!(
        r#"{{"inference_providers":{{"aws":{{"role_arn":"{ROLE}","region":"   "}}}}}}"#
    ));
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--bedrock-inference-role",
            ROLE,
            "--idle-on-complete"
        ])
    );
}

#[test]
fn bedrock_whitespace_role_is_skipped_even_with_a_region() {
    assert_eq!(
        run(&snap(
            r#"{"inference_providers":{"aws":{"role_arn":"   ","region":"us-east-1"}}}"#
        )),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn bedrock_disabled_aws_block_is_skipped() {
    let task = snap(&format!(
        r#"{{"inference_providers":{{"aws":{{"disabled":true,"role_arn":"{ROLE}"}}}}}}"#
    ));
    assert_eq!(
        run(&task),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn bedrock_role_is_forwarded_for_a_third_party_harness() {
    let task = snap(&format!(
        r#"{{"harness":{{"type":"claude"}},"inference_providers":{{"aws":{{"role_arn":"{ROLE}"}}}}}}"#
    ));
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--bedrock-inference-role",
            ROLE,
            "--harness",
            "claude",
            "--idle-on-complete"
        ])
    );
}

// --- public session sharing --------------------------------------------------------------------

#[test]
fn public_viewer_access_shares_public_view() {
    assert_eq!(
        run(&snap(r#"{"session_sharing":{"public_access":"VIEWER"}}"#)),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--share",
            "public:view",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn public_editor_access_shares_public_edit() {
    assert_eq!(
        run(&snap(r#"{"session_sharing":{"public_access":"EDITOR"}}"#)),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--share",
            "public:edit",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn no_session_sharing_block_adds_nothing() {
    assert_eq!(
        run(&snap(r#"{"model_id":null}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn session_sharing_without_public_access_adds_nothing() {
    assert_eq!(
        run(&snap(r#"{"session_sharing":{}}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn unsupported_public_access_level_full_is_skipped() {
    assert_eq!(
        run(&snap(r#"{"session_sharing":{"public_access":"FULL"}}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn conversation_id_is_not_forwarded() {
    let task: Task = serde_json::from_str(
        r#"{"id":"t","agent_config_snapshot":{},"agent_conversation_id":"abc-123"}"#,
    )
    .unwrap();
    assert_eq!(
        run(&task),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn base_prompt_is_not_forwarded() {
    assert_eq!(
        run(&snap(r#"{"base_prompt":"be nice"}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

// --- snapshot controls -------------------------------------------------------------------------

#[test]
fn snapshot_controls_are_forwarded() {
    assert_eq!(
        run(&snap(
            r#"{"snapshot_disabled":true,"snapshot_upload_timeout_secs":90,"snapshot_script_timeout_secs":45}"#
        )),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--no-snapshot",
            "--snapshot-upload-timeout",
            "90s",
            "--snapshot-script-timeout",
            "45s",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn snapshot_controls_skip_false_and_non_positive_values() {
    assert_eq!(
        run(&snap(
            r#"{"snapshot_disabled":false,"snapshot_upload_timeout_secs":0,"snapshot_script_timeout_secs":-3}"#
        )),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

// --- environment and supplemental args ---------------------------------------------------------

#[test]
fn environment_is_trimmed_and_forwarded() {
    assert_eq!(
        run(&snap(r#"{"environment_id":" env-1 "}"#)),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--environment",
            "env-1",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn whitespace_only_environment_is_skipped() {
    assert_eq!(
        run(&snap(r#"{"environment_id":"  "}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn supplemental_oz_args_come_before_the_idle_flag() {
    assert_eq!(
        run_with(&snap("{}"), None, &["--skip-initial-turn"]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--skip-initial-turn",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn supplemental_oz_args_are_verbatim() {
    assert_eq!(
        run_with(&snap("{}"), Some("5m"), &["--x", " spaced ", ""]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--x",
            " spaced ",
            "",
            "--idle-on-complete",
            "5m"
        ])
    );
}

#[test]
fn no_supplemental_oz_args_when_none_sent() {
    assert_eq!(
        run_with(&snap("{}"), None, &[]),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

// --- repository head overrides -----------------------------------------------------------------

const OVERRIDE_A: &str = r#"{"code_forge":"GITHUB","repo_owner":"warpdotdev","repo_name":"warp","head":{"type":"BRANCH","value":"develop"}}"#;
const OVERRIDE_B: &str = r#"{"code_forge":"GITHUB","repo_owner":"warpdotdev","repo_name":"warp-server","head":{"type":"BRANCH","value":"develop"}}"#;

#[test]
fn no_repository_overrides_add_nothing() {
    assert_eq!(
        run(&snap(r#"{"repository_head_overrides":[]}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn one_repository_override_then_remove_origins() {
    let task = snap(&format!(
        r#"{{"repository_head_overrides":[{OVERRIDE_A}]}}"#
    ));
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--repository-head-override-json",
            OVERRIDE_A,
            "--remove-repository-origins",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn several_repository_overrides_share_one_trailing_remove_origins() {
    let task = snap(&format!(
        r#"{{"repository_head_overrides":[{OVERRIDE_A},{OVERRIDE_B}]}}"#
    ));
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--repository-head-override-json",
            OVERRIDE_A,
            "--repository-head-override-json",
            OVERRIDE_B,
            "--remove-repository-origins",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn repository_override_with_clone_from_is_compacted_in_go_field_order() {
    // Keys arrive in another order and spaced out; the argument uses Go's struct order.
    let task = snap(
        r#"{"repository_head_overrides":[{"preserve_origin":true,"clone_from":{"repo":"warp-for-benchmarks","owner":"warpdotdev","code_forge":"GITHUB"},"head":{"value":"0123456789abcdef0123456789abcdef01234567","type":"COMMIT_SHA"},"repo_name":"warp","repo_owner":"warpdotdev","code_forge":"GITHUB"}]}"#,
    );
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--repository-head-override-json",
            r#"{"code_forge":"GITHUB","repo_owner":"warpdotdev","repo_name":"warp","head":{"type":"COMMIT_SHA","value":"0123456789abcdef0123456789abcdef01234567"},"clone_from":{"code_forge":"GITHUB","owner":"warpdotdev","repo":"warp-for-benchmarks"},"preserve_origin":true}"#,
            "--remove-repository-origins",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn repository_overrides_sit_after_snapshot_flags_and_before_environment() {
    let task = snap(&format!(
        r#"{{"environment_id":"env-1","snapshot_disabled":true,"repository_head_overrides":[{OVERRIDE_A}]}}"#
    ));
    assert_eq!(
        run_with(&task, None, &["--skip-initial-turn"]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--no-snapshot",
            "--repository-head-override-json",
            OVERRIDE_A,
            "--remove-repository-origins",
            "--environment",
            "env-1",
            "--skip-initial-turn",
            "--idle-on-complete"
        ])
    );
}

// --- everything at once ------------------------------------------------------------------------

#[test]
fn every_flag_in_order() {
    let task = snap(&format!(
        r#"{{
            "environment_id": "env-9",
            "model_id": "auto",
            "profile_id": "prof",
            "skill_spec": "skill",
            "mcp_servers": {{"s": {{"k": 1}}}},
            "computer_use_model_id": "cu",
            "idle_timeout_minutes": 7,
            "harness": {{"type": "oz"}},
            "inference_providers": {{"aws": {{"role_arn": "{ROLE}", "region": "eu-west-1"}}}},
            "session_sharing": {{"public_access": "EDITOR"}},
            "snapshot_disabled": true,
            "snapshot_upload_timeout_secs": 1,
            "snapshot_script_timeout_secs": 2,
            "repository_head_overrides": [{OVERRIDE_B}]
        }}"#
    ));
    assert_eq!(
        run_with(&task, Some("30m"), &["--extra"]),
        v(&[
            "agent",
            "run",
            "--model",
            "auto",
            "--profile",
            "prof",
            "--skill",
            "skill",
            "--mcp",
            r#"{"s":{"k":1}}"#,
            "--computer-use",
            "--computer-use-model",
            "cu",
            "--bedrock-inference-role",
            ROLE,
            "--bedrock-role-region",
            "eu-west-1",
            "--harness",
            "oz",
            "--share",
            "public:edit",
            "--no-snapshot",
            "--snapshot-upload-timeout",
            "1s",
            "--snapshot-script-timeout",
            "2s",
            "--repository-head-override-json",
            OVERRIDE_B,
            "--remove-repository-origins",
            "--environment",
            "env-9",
            "--extra",
            "--idle-on-complete",
            "7m"
        ])
    );
}
