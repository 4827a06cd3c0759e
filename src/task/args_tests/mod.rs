//! Exact argument vectors for [`augment`], one test per rule. Each starts from `agent run`
//! like upstream's `TestAugmentArgsForTask_*` tables; every assertion compares whole vectors.

use super::*;

mod more;

/// A task whose snapshot is the given JSON (decoded by the real wire decoder).
fn snap(snapshot: &str) -> Task {
    let text = format!(r#"{{"id":"task-1","agent_config_snapshot":{snapshot}}}"#);
    serde_json::from_str(&text).unwrap()
}

fn run_with(task: &Task, idle: Option<&str>, extra: &[&str]) -> Vec<String> {
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let mut args = v(&["agent", "run"]);
    augment(
        task,
        &mut args,
        AugmentOptions {
            idle_on_complete: idle,
            additional_oz_args: &extra,
        },
    );
    args
}

fn run(task: &Task) -> Vec<String> {
    run_with(task, None, &[])
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const ROLE: &str = "arn:aws:iam::123456789012:role/BedrockInference";

// --- idle timeout precedence -------------------------------------------------------------------

#[test]
fn task_idle_minutes_beat_worker_value() {
    assert_eq!(
        run_with(&snap(r#"{"idle_timeout_minutes":15}"#), Some("30m"), &[]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--idle-on-complete",
            "15m"
        ])
    );
}

#[test]
fn worker_idle_value_used_when_task_sets_none() {
    assert_eq!(
        run_with(&snap("{}"), Some("30m"), &[]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--idle-on-complete",
            "30m"
        ])
    );
}

#[test]
fn bare_idle_flag_when_neither_task_nor_worker_sets_one() {
    assert_eq!(
        run(&snap("{}")),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn zero_task_idle_minutes_are_unset_and_fall_back_to_worker_value() {
    assert_eq!(
        run_with(&snap(r#"{"idle_timeout_minutes":0}"#), Some("20m"), &[]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--idle-on-complete",
            "20m"
        ])
    );
}

#[test]
fn negative_task_idle_minutes_fall_back_to_worker_value() {
    assert_eq!(
        run_with(&snap(r#"{"idle_timeout_minutes":-1}"#), Some("20m"), &[]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--idle-on-complete",
            "20m"
        ])
    );
}

#[test]
fn negative_task_idle_minutes_without_worker_value_give_bare_flag() {
    assert_eq!(
        run(&snap(r#"{"idle_timeout_minutes":-5}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn worker_idle_value_is_passed_verbatim() {
    assert_eq!(
        run_with(&snap("{}"), Some("1h30m"), &[]),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--idle-on-complete",
            "1h30m"
        ])
    );
}

// --- no snapshot -------------------------------------------------------------------------------

#[test]
fn no_snapshot_means_no_computer_use_flag_at_all() {
    let task = Task {
        id: "task-1".into(),
        ..Task::default()
    };
    assert_eq!(run(&task), v(&["agent", "run", "--idle-on-complete"]));
    assert_eq!(
        run_with(&task, Some("10m"), &["--skip-initial-turn"]),
        v(&[
            "agent",
            "run",
            "--skip-initial-turn",
            "--idle-on-complete",
            "10m"
        ])
    );
}

// --- harness and model -------------------------------------------------------------------------

#[test]
fn harness_type_is_forwarded() {
    assert_eq!(
        run(&snap(r#"{"harness":{"type":"claude"}}"#)),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--harness",
            "claude",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn harness_without_type_is_skipped() {
    assert_eq!(
        run(&snap(r#"{"harness":{}}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn harness_type_is_trimmed_and_whitespace_only_is_skipped() {
    assert_eq!(
        run(&snap(r#"{"harness":{"type":"  codex "}}"#)),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--harness",
            "codex",
            "--idle-on-complete"
        ])
    );
    assert_eq!(
        run(&snap(r#"{"harness":{"type":"   "},"model_id":"m"}"#)),
        v(&[
            "agent",
            "run",
            "--model",
            "m",
            "--computer-use",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn explicit_oz_harness_is_emitted_and_still_gets_the_model() {
    assert_eq!(
        run(&snap(r#"{"harness":{"type":"oz"},"model_id":"auto"}"#)),
        v(&[
            "agent",
            "run",
            "--model",
            "auto",
            "--computer-use",
            "--harness",
            "oz",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn model_comes_before_computer_use() {
    assert_eq!(
        run(&snap(
            r#"{"model_id":"claude-sonnet-4","idle_timeout_minutes":12}"#
        )),
        v(&[
            "agent",
            "run",
            "--model",
            "claude-sonnet-4",
            "--computer-use",
            "--idle-on-complete",
            "12m"
        ])
    );
}

#[test]
fn model_is_trimmed_and_whitespace_only_is_skipped() {
    assert_eq!(
        run(&snap(r#"{"model_id":"  m1 "}"#)),
        v(&[
            "agent",
            "run",
            "--model",
            "m1",
            "--computer-use",
            "--idle-on-complete"
        ])
    );
    assert_eq!(
        run(&snap(r#"{"model_id":"   "}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn oz_model_is_not_forwarded_to_a_third_party_harness() {
    assert_eq!(
        run(&snap(
            r#"{"model_id":"claude-4-8-opus-high","harness":{"type":"claude"}}"#
        )),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--harness",
            "claude",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn profile_and_skill_are_trimmed_and_forwarded() {
    assert_eq!(
        run(&snap(
            r#"{"profile_id":" p-1 ","skill_spec":" owner/repo:skill "}"#
        )),
        v(&[
            "agent",
            "run",
            "--profile",
            "p-1",
            "--skill",
            "owner/repo:skill",
            "--computer-use",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn whitespace_only_profile_and_skill_are_skipped() {
    assert_eq!(
        run(&snap(r#"{"profile_id":"  ","skill_spec":"\t"}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn mcp_servers_become_one_compact_sorted_json_argument() {
    let task = snap(
        r#"{"mcp_servers":{"zeta":{ "url" : "https://z" },"alpha":{ "command":"npx", "args":["a <b>"] }}}"#,
    );
    assert_eq!(
        run(&task),
        v(&[
            "agent",
            "run",
            "--mcp",
            r#"{"alpha":{"command":"npx","args":["a \u003cb\u003e"]},"zeta":{"url":"https://z"}}"#,
            "--computer-use",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn empty_mcp_servers_add_nothing() {
    assert_eq!(
        run(&snap(r#"{"mcp_servers":{}}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

// --- computer use ------------------------------------------------------------------------------

#[test]
fn computer_use_on_by_default_when_unset() {
    assert_eq!(
        run(&snap("{}")),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn computer_use_explicitly_enabled() {
    assert_eq!(
        run(&snap(r#"{"computer_use_enabled":true}"#)),
        v(&["agent", "run", "--computer-use", "--idle-on-complete"])
    );
}

#[test]
fn computer_use_explicitly_disabled() {
    assert_eq!(
        run(&snap(r#"{"computer_use_enabled":false}"#)),
        v(&["agent", "run", "--no-computer-use", "--idle-on-complete"])
    );
}

#[test]
fn computer_use_on_by_default_for_a_third_party_harness() {
    assert_eq!(
        run(&snap(r#"{"harness":{"type":"codex"}}"#)),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--harness",
            "codex",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn computer_use_explicitly_enabled_for_a_third_party_harness() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_enabled":true,"harness":{"type":"codex"}}"#
        )),
        v(&[
            "agent",
            "run",
            "--computer-use",
            "--harness",
            "codex",
            "--idle-on-complete"
        ])
    );
}

#[test]
fn computer_use_explicitly_disabled_for_a_third_party_harness() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_enabled":false,"harness":{"type":"codex"}}"#
        )),
        v(&[
            "agent",
            "run",
            "--no-computer-use",
            "--harness",
            "codex",
            "--idle-on-complete"
        ])
    );
}

// --- computer use model ------------------------------------------------------------------------

const CU_MODEL: &str = "claude-4-5-haiku";

fn cu_expected(middle: &[&str]) -> Vec<String> {
    let mut out = v(&["agent", "run"]);
    out.extend(v(middle));
    out.push("--idle-on-complete".into());
    out
}

#[test]
fn computer_use_model_for_an_oz_run() {
    assert_eq!(
        run(&snap(r#"{"computer_use_model_id":"claude-4-5-haiku"}"#)),
        cu_expected(&["--computer-use", "--computer-use-model", CU_MODEL])
    );
}

#[test]
fn computer_use_model_when_explicitly_enabled() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_enabled":true,"computer_use_model_id":"claude-4-5-haiku"}"#
        )),
        cu_expected(&["--computer-use", "--computer-use-model", CU_MODEL])
    );
}

#[test]
fn computer_use_model_for_an_explicit_oz_harness() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_model_id":"claude-4-5-haiku","harness":{"type":"oz"}}"#
        )),
        cu_expected(&[
            "--computer-use",
            "--computer-use-model",
            CU_MODEL,
            "--harness",
            "oz"
        ])
    );
}

#[test]
fn computer_use_model_when_harness_block_has_no_type() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_model_id":"claude-4-5-haiku","harness":{}}"#
        )),
        cu_expected(&["--computer-use", "--computer-use-model", CU_MODEL])
    );
}

#[test]
fn computer_use_model_when_harness_type_is_empty() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_model_id":"claude-4-5-haiku","harness":{"type":""}}"#
        )),
        cu_expected(&["--computer-use", "--computer-use-model", CU_MODEL])
    );
}

#[test]
fn computer_use_model_alongside_the_oz_model() {
    assert_eq!(
        run(&snap(
            r#"{"model_id":"auto","computer_use_model_id":"claude-4-5-haiku"}"#
        )),
        cu_expected(&[
            "--model",
            "auto",
            "--computer-use",
            "--computer-use-model",
            CU_MODEL
        ])
    );
}

#[test]
fn computer_use_model_is_trimmed() {
    assert_eq!(
        run(&snap(r#"{"computer_use_model_id":"  claude-4-5-haiku  "}"#)),
        cu_expected(&["--computer-use", "--computer-use-model", CU_MODEL])
    );
}

#[test]
fn computer_use_model_omitted_when_whitespace() {
    assert_eq!(
        run(&snap(r#"{"computer_use_model_id":"   "}"#)),
        cu_expected(&["--computer-use"])
    );
}

#[test]
fn computer_use_model_omitted_when_computer_use_disabled() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_enabled":false,"computer_use_model_id":"claude-4-5-haiku"}"#
        )),
        cu_expected(&["--no-computer-use"])
    );
}

#[test]
fn computer_use_model_omitted_under_a_third_party_harness() {
    assert_eq!(
        run(&snap(
            r#"{"computer_use_model_id":"claude-4-5-haiku","harness":{"type":"codex"}}"#
        )),
        cu_expected(&["--computer-use", "--harness", "codex"])
    );
}
