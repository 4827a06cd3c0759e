//! The oz CLI arguments of a task (`agent run ...`, without the binary).
//!
//! Order matters and matches the Go worker: fixed base arguments, then the flags derived from
//! the agent config snapshot, then `--environment`, the server's supplemental arguments, and
//! the idle timeout last.

use crate::protocol::{AgentConfigSnapshot, Task, TaskAssignment};

use super::TaskOptions;
use super::json;

/// Worker-side inputs to [`augment`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AugmentOptions<'a> {
    /// Worker `idle_on_complete`, passed verbatim when the task sets no idle timeout.
    pub idle_on_complete: Option<&'a str>,
    /// The assignment's `additional_oz_args`, appended verbatim.
    pub additional_oz_args: &'a [String],
}

/// `agent run [--share team:edit] --task-id <id> --sandboxed --server-root-url <url>
/// <augmented> [--session-sharing-server-url <url>]`.
pub(crate) fn base_args(
    assignment: &TaskAssignment,
    task: &Task,
    opts: &TaskOptions,
) -> Vec<String> {
    let mut args = strings(&["agent", "run"]);
    if task.owner.as_ref().is_some_and(|o| o.kind == "TEAM") {
        args.extend(strings(&["--share", "team:edit"]));
    }
    args.extend(strings(&["--task-id", &task.id, "--sandboxed"]));
    // Always present, even when empty: the CLI's harness support reads it.
    args.extend(strings(&["--server-root-url", &opts.server_root_url]));
    augment(
        task,
        &mut args,
        AugmentOptions {
            idle_on_complete: non_empty(opts.idle_on_complete.as_deref()),
            additional_oz_args: &assignment.additional_oz_args,
        },
    );
    if let Some(url) = non_empty(opts.session_sharing_server_url.as_deref()) {
        args.extend(strings(&["--session-sharing-server-url", url]));
    }
    args
}

/// Appends the task-derived flags to `args` (Go's `AugmentArgsForTask`).
pub(crate) fn augment(task: &Task, args: &mut Vec<String>, opts: AugmentOptions<'_>) {
    let snapshot = task.agent_config_snapshot.as_ref();
    if let Some(s) = snapshot {
        snapshot_args(s, args);
        repository_override_args(s, args);
        if let Some(env) = trimmed(s.environment_id.as_deref()) {
            push_flag(args, "--environment", env);
        }
    }
    args.extend(opts.additional_oz_args.iter().cloned());
    args.push("--idle-on-complete".into());
    // A non-positive task value means "unset" (the server's zero value), as in the released
    // Go worker: it falls through to the worker setting. Without any value the bare flag leaves
    // the CLI's own default (45m).
    match (
        snapshot.and_then(|s| s.idle_timeout_minutes),
        opts.idle_on_complete,
    ) {
        (Some(m), _) if m > 0 => args.push(format!("{m}m")),
        (_, Some(worker)) => args.push(worker.to_owned()),
        _ => {}
    }
}

/// Flags that exist only when the task carries a snapshot, in the Go worker's order.
fn snapshot_args(s: &AgentConfigSnapshot, args: &mut Vec<String>) {
    let oz = s.is_oz_harness();
    // The top-level model targets the Oz harness; a third-party harness would reject it.
    if let Some(model) = trimmed(s.model_id.as_deref()).filter(|_| oz) {
        push_flag(args, "--model", model);
    }
    if let Some(profile) = trimmed(s.profile_id.as_deref()) {
        push_flag(args, "--profile", profile);
    }
    if let Some(skill) = trimmed(s.skill_spec.as_deref()) {
        push_flag(args, "--skill", skill);
    }
    if !s.mcp_servers.is_empty()
        && let Some(mcp) = json::mcp_json(&s.mcp_servers)
    {
        push_flag(args, "--mcp", &mcp);
    }
    // An explicit choice wins; unset means enabled for every harness (newer upstream; the
    // 3382ab6 worker disabled it for third-party harnesses).
    let computer_use = s.computer_use_enabled.unwrap_or(true);
    if computer_use {
        args.push("--computer-use".into());
        // Newer than some pinned CLIs, so only sent when a model is actually pinned.
        if let Some(model) = trimmed(s.computer_use_model_id.as_deref()).filter(|_| oz) {
            push_flag(args, "--computer-use-model", model);
        }
    } else {
        args.push("--no-computer-use".into());
    }
    let aws = s.inference_providers.as_ref().and_then(|p| p.aws.as_ref());
    if let Some(aws) = aws.filter(|aws| !aws.disabled)
        && let Some(role) = trimmed(Some(&aws.role_arn))
    {
        push_flag(args, "--bedrock-inference-role", role);
        if let Some(region) = trimmed(Some(&aws.region)) {
            push_flag(args, "--bedrock-role-region", region);
        }
    }
    if let Some(harness) = s.harness_type() {
        push_flag(args, "--harness", harness);
    }
    match s
        .session_sharing
        .as_ref()
        .and_then(|ss| ss.public_access.as_deref())
    {
        Some("VIEWER") => push_flag(args, "--share", "public:view"),
        Some("EDITOR") => push_flag(args, "--share", "public:edit"),
        // Other levels (FULL) are refused by the server before they get here.
        _ => {}
    }
    if s.snapshot_disabled == Some(true) {
        args.push("--no-snapshot".into());
    }
    if let Some(secs) = s.snapshot_upload_timeout_secs.filter(|v| *v > 0) {
        push_flag(args, "--snapshot-upload-timeout", &format!("{secs}s"));
    }
    if let Some(secs) = s.snapshot_script_timeout_secs.filter(|v| *v > 0) {
        push_flag(args, "--snapshot-script-timeout", &format!("{secs}s"));
    }
}

/// `--repository-head-override-json <json>` per override, then one `--remove-repository-origins`.
/// Upstream's position for these is unknown; they sit with the other snapshot-derived flags,
/// after the snapshot flags and before `--environment`.
fn repository_override_args(s: &AgentConfigSnapshot, args: &mut Vec<String>) {
    let mut any = false;
    for o in &s.repository_head_overrides {
        if let Some(j) = json::override_json(o) {
            push_flag(args, "--repository-head-override-json", &j);
            any = true;
        }
    }
    if any {
        args.push("--remove-repository-origins".into());
    }
}

fn push_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    args.push(flag.to_owned());
    args.push(value.to_owned());
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn trimmed(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

#[cfg(test)]
#[path = "args_tests/mod.rs"]
mod tests;
