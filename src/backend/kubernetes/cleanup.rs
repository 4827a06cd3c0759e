//! What happens to a task Job when the task ends (reference `kubernetes-backend.md` §7,
//! `upstream-newer.md` §6), and the RBAC the backend needs, as data for `check`, the docs and
//! the Helm chart.
//!
//! | ending                              | Job                                                  |
//! |-------------------------------------|------------------------------------------------------|
//! | success                             | deleted (Background), unless `--no-cleanup`          |
//! | failure, execution stopped          | kept until its TTL (post-mortem)                     |
//! | failure, execution still active     | expired: merge-patch `activeDeadlineSeconds: 1`,     |
//! |                                     | `parallelism: 0`, fenced by UID and resourceVersion  |
//! | user cancellation                   | deleted (Background) after the label check           |
//! | worker shutdown                     | kept and still running (re-attach follows it)        |
//!
//! The Go worker of the reference snapshot left failed-but-active Jobs (image pull back-off,
//! unschedulable, mount failure) running until a deadline that its code did not set; newer
//! upstream expires them as here.

use serde_json::{Value, json};

use super::message::text;

/// How the task ended, as far as cleanup cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    /// `stopped`: the pod and Job are terminal (see [`execution_stopped`]).
    Failed {
        stopped: bool,
    },
    Cancelled,
    /// The worker is shutting down: Jobs are preserved (reference §7.2).
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `DELETE` with [`delete_options`].
    Delete,
    /// `PATCH` (`application/merge-patch+json`) with [`expire_patch`].
    Expire,
    Keep,
}

pub fn decide(ending: Ending, cleanup: bool) -> Action {
    match ending {
        Ending::Succeeded if cleanup => Action::Delete,
        Ending::Succeeded => Action::Keep,
        Ending::Failed { stopped: true } => Action::Keep,
        // Even with `--no-cleanup`: expiring keeps the Job for inspection, it only stops it.
        Ending::Failed { stopped: false } => Action::Expire,
        Ending::Cancelled => Action::Delete,
        Ending::Shutdown => Action::Keep,
    }
}

/// `DeleteOptions` for a task or preflight Job: Background propagation (a raw-API Job delete
/// otherwise orphans its pods) and, when known, a UID precondition so that a Job recreated under
/// the same name is never deleted by mistake.
pub fn delete_options(uid: Option<&str>) -> Value {
    let mut body = json!({
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
    });
    if let Some(uid) = uid.filter(|u| !u.is_empty()) {
        body["preconditions"] = json!({ "uid": uid });
    }
    body
}

/// Merge-patch that stops an active Job but keeps it: the controller terminates its pods
/// (`parallelism: 0`) and marks it failed (`DeadlineExceeded`), after which its TTL applies.
/// `metadata.uid` and `metadata.resourceVersion` fence it: the API server answers 409 when the
/// Job changed or was replaced, and the caller re-reads and retries (or gives up on a new UID).
pub fn expire_patch(job: &Value) -> Value {
    json!({
        "metadata": {
            "uid": text(job, "/metadata/uid"),
            "resourceVersion": text(job, "/metadata/resourceVersion"),
        },
        "spec": { "activeDeadlineSeconds": 1, "parallelism": 0, "suspend": false },
    })
}

/// True when nothing of the execution can run any more: the Job is terminal, or it allows one
/// pod attempt and every pod it owns is terminal with at least one failed.
pub fn execution_stopped(job: &Value, pods: &[Value]) -> bool {
    let terminal = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| matches!(text(c, "/type"), "Complete" | "Failed") && text(c, "/status") == "True");
    if terminal {
        return true;
    }
    let uid = text(job, "/metadata/uid");
    let one_attempt = job.pointer("/spec/backoffLimit").and_then(Value::as_i64) == Some(0)
        && job.pointer("/spec/podFailurePolicy").is_none();
    let owned: Vec<&Value> = pods
        .iter()
        .filter(|p| uid.is_empty() || super::names::pod_controller_uid(p) == uid)
        .collect();
    one_attempt
        && owned
            .iter()
            .all(|p| matches!(text(p, "/status/phase"), "Succeeded" | "Failed"))
        && owned.iter().any(|p| text(p, "/status/phase") == "Failed")
}

/// One rule of the namespaced Role the backend needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `""` is the core group.
    pub api_group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// What the backend does with it (for `check` diagnostics and docs).
    pub why: &'static str,
}

/// Everything the backend does in its namespace. `GET /version` and
/// `SelfSubjectAccessReview` are allowed to every authenticated user by the default cluster roles.
pub const ROLE_RULES: &[Rule] = &[
    Rule {
        api_group: "batch",
        resource: "jobs",
        verbs: &["create", "get", "list", "watch", "delete", "patch"],
        why: "create task and preflight Jobs, follow them, delete them on success or \
              cancellation, expire failed ones and mark reported ones",
    },
    Rule {
        api_group: "",
        resource: "pods",
        verbs: &["get", "list", "watch"],
        why: "follow the pods of task Jobs",
    },
    Rule {
        api_group: "",
        resource: "pods/log",
        verbs: &["get"],
        why: "log the output of failed tasks",
    },
    Rule {
        api_group: "",
        resource: "events",
        verbs: &["list"],
        why: "diagnose pending pods (mount and pod creation failures)",
    },
];

/// The rule granting `verb` on `resource`, for a 403 diagnosis.
pub fn rule_for(resource: &str, verb: &str) -> Option<&'static Rule> {
    ROLE_RULES
        .iter()
        .find(|r| r.resource == resource && r.verbs.contains(&verb))
}

/// `apiGroups: [..], resources: [..], verbs: [..]` as a Role would say it, for messages.
pub fn describe(rule: &Rule) -> String {
    format!(
        "apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [{}]",
        rule.api_group,
        rule.resource,
        rule.verbs
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The Role manifest (the chart renders the same rules).
pub fn role(name: &str, namespace: &str) -> Value {
    let rules: Vec<Value> = ROLE_RULES
        .iter()
        .map(|r| json!({ "apiGroups": [r.api_group], "resources": [r.resource], "verbs": r.verbs }))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": name, "namespace": namespace },
        "rules": rules,
    })
}

/// One `SelfSubjectAccessReview` body per verb and resource the backend needs, for `check`.
pub fn access_reviews(namespace: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for r in ROLE_RULES {
        let (resource, subresource) = match r.resource.split_once('/') {
            Some((res, sub)) => (res, sub),
            None => (r.resource, ""),
        };
        for verb in r.verbs {
            let mut attrs = json!({
                "namespace": namespace,
                "verb": verb,
                "group": r.api_group,
                "resource": resource,
            });
            if !subresource.is_empty() {
                attrs["subresource"] = json!(subresource);
            }
            out.push(json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": { "resourceAttributes": attrs },
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(decide(Ending::Succeeded, true), Action::Delete);
        assert_eq!(decide(Ending::Succeeded, false), Action::Keep);
        assert_eq!(decide(Ending::Failed { stopped: true }, true), Action::Keep);
        assert_eq!(
            decide(Ending::Failed { stopped: false }, true),
            Action::Expire
        );
        assert_eq!(
            decide(Ending::Failed { stopped: false }, false),
            Action::Expire
        );
        assert_eq!(decide(Ending::Cancelled, false), Action::Delete);
        assert_eq!(decide(Ending::Shutdown, true), Action::Keep);
    }

    #[test]
    fn delete_options_propagate_in_the_background_with_a_uid_fence() {
        assert_eq!(
            delete_options(None),
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})
        );
        assert_eq!(
            delete_options(Some("u1"))["preconditions"],
            json!({"uid": "u1"})
        );
        assert!(delete_options(Some("")).get("preconditions").is_none());
    }

    #[test]
    fn expire_patch_is_fenced() {
        let job = json!({"metadata": {"name": "j", "uid": "u1", "resourceVersion": "42"}});
        assert_eq!(
            expire_patch(&job),
            json!({
                "metadata": {"uid": "u1", "resourceVersion": "42"},
                "spec": {"activeDeadlineSeconds": 1, "parallelism": 0, "suspend": false},
            })
        );
    }

    #[test]
    fn stopped_needs_terminal_pods_and_one_attempt() {
        let job = json!({"metadata": {"uid": "u1"}, "spec": {"backoffLimit": 0}});
        let pod = |phase: &str, owner: &str| json!({"metadata": {"labels": {"controller-uid": owner}}, "status": {"phase": phase}});
        assert!(execution_stopped(&job, &[pod("Failed", "u1")]));
        assert!(!execution_stopped(&job, &[pod("Pending", "u1")]));
        assert!(!execution_stopped(&job, &[]), "no failed pod: not proven");
        assert!(!execution_stopped(&job, &[pod("Succeeded", "u1")]));
        assert!(
            execution_stopped(&job, &[pod("Failed", "u1"), pod("Running", "other")]),
            "another Job's pods do not count"
        );
        let retrying = json!({"metadata": {"uid": "u1"}, "spec": {"backoffLimit": 2}});
        assert!(!execution_stopped(&retrying, &[pod("Failed", "u1")]));
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert!(execution_stopped(&failed, &[]));
    }

    #[test]
    fn role_rules_cover_the_backend_and_explain_a_403() {
        let role = role("oz-agent-worker", "agents");
        assert_eq!(role["kind"], "Role");
        assert_eq!(role["rules"][0]["apiGroups"], json!(["batch"]));
        assert!(
            role["rules"][0]["verbs"]
                .as_array()
                .unwrap()
                .contains(&json!("patch"))
        );
        let rule = rule_for("jobs", "create").unwrap();
        assert_eq!(
            describe(rule),
            "apiGroups: [\"batch\"], resources: [\"jobs\"], verbs: [\"create\", \"get\", \
             \"list\", \"watch\", \"delete\", \"patch\"]"
        );
        assert!(
            rule_for("pods", "create").is_none(),
            "the Job controller creates pods"
        );
        assert_eq!(rule_for("pods/log", "get").unwrap().api_group, "");
    }

    #[test]
    fn access_reviews_name_every_verb() {
        let reviews = access_reviews("agents");
        let total: usize = ROLE_RULES.iter().map(|r| r.verbs.len()).sum();
        assert_eq!(reviews.len(), total);
        let log = reviews
            .iter()
            .find(|r| r["spec"]["resourceAttributes"]["subresource"] == "log")
            .unwrap();
        assert_eq!(log["spec"]["resourceAttributes"]["resource"], "pods");
        assert_eq!(log["spec"]["resourceAttributes"]["verb"], "get");
        assert_eq!(log["spec"]["resourceAttributes"]["namespace"], "agents");
    }
}
