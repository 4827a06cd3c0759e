//! What happens to a task Job when the task ends (reference `kubernetes-backend.md` §7,
//! `upstream-newer.md` §6).
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
}
