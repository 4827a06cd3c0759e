//! What a finished task means on the wire, and the wording of lifecycle log lines.
//!
//! Both are contracts: the server keys on the messages and reasons (upstream-worker.md §7),
//! and operators' log pipelines and our integration tests key on the log lines. Keep every
//! lifecycle wording here so it changes in one place. No line ever includes a secret.

use std::time::Duration;

use crate::backend::{CancelSource, Completion, Failure, FailureReason, TaskRef};
use crate::protocol::{Outbound, text};

/// How a finished execution is counted (the `result` label of the Go worker's metrics).
pub use crate::metrics::TaskResult;

/// The verdict on one finished execution: how to count it, what to send (nothing for a
/// dispatched task), and the failure reason when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub result: TaskResult,
    pub message: Option<Outbound>,
    pub reason: Option<FailureReason>,
}

/// Maps a backend's result to the terminal message, following upstream's decision tree:
/// a user cancellation is a `CANCELLED` completion whatever the backend returned as error;
/// a shutdown cancellation (or an agent killed by SIGTERM during shutdown) is
/// `graceful_shutdown`; everything else is reported as the backend classified it.
pub fn verdict(
    task: &TaskRef,
    outcome: &Result<Completion, Failure>,
    cancel: Option<CancelSource>,
) -> Verdict {
    let task_id = task.task_id.clone();
    let execution_id = task.execution_id.clone();
    match outcome {
        Ok(Completion::Finished) => Verdict {
            result: TaskResult::Succeeded,
            message: Some(Outbound::Completed {
                task_id,
                execution_id,
                message: text::COMPLETED.into(),
                task_state: None,
            }),
            reason: None,
        },
        Ok(Completion::Dispatched) => Verdict {
            result: TaskResult::Dispatched,
            message: None,
            reason: None,
        },
        Err(_) if cancel == Some(CancelSource::User) => Verdict {
            result: TaskResult::Cancelled,
            message: Some(Outbound::Completed {
                task_id,
                execution_id,
                message: text::CANCELLED.into(),
                task_state: Some(text::CANCELLED_STATE.into()),
            }),
            reason: None,
        },
        Err(failure) => {
            let shutdown_kill = cancel == Some(CancelSource::Shutdown)
                && (failure.reason == FailureReason::TaskCancelled
                    || failure.exit_code == Some(143));
            let reason = if shutdown_kill {
                FailureReason::GracefulShutdown
            } else {
                failure.reason
            };
            let message = match failure.reason {
                _ if shutdown_kill => text::INTERRUPTED.to_owned(),
                FailureReason::TaskCancelled => text::INTERRUPTED.to_owned(),
                FailureReason::TaskTimeout => text::TIMED_OUT.to_owned(),
                _ => format!("{}{}", text::FAILED_PREFIX, failure.message),
            };
            Verdict {
                result: TaskResult::Failed,
                message: Some(Outbound::Failed {
                    task_id,
                    execution_id,
                    message,
                    failure_reason: Some(reason.as_str().to_owned()),
                    exit_code: failure.exit_code,
                    failure_details: failure.details.clone(),
                }),
                reason: Some(reason),
            }
        }
    }
}

/// The terminal message for a claimed task that never reached a backend.
pub fn failed_before_start(task: &TaskRef, why: &str) -> Outbound {
    Outbound::Failed {
        task_id: task.task_id.clone(),
        execution_id: task.execution_id.clone(),
        message: format!("{}{why}", text::FAILED_PREFIX),
        failure_reason: Some(FailureReason::Unknown.as_str().to_owned()),
        exit_code: None,
        failure_details: None,
    }
}

/// The terminal message for a task that did not report before the shutdown deadline.
pub fn abandoned_at_shutdown(task: &TaskRef) -> Outbound {
    Outbound::Failed {
        task_id: task.task_id.clone(),
        execution_id: task.execution_id.clone(),
        message: text::INTERRUPTED.to_owned(),
        failure_reason: Some(FailureReason::GracefulShutdown.as_str().to_owned()),
        exit_code: None,
        failure_details: None,
    }
}

// ------------------------------------------------------------------------------------------------
// Log lines. Tests match on these prefixes; change them together.
// ------------------------------------------------------------------------------------------------

pub fn claimed(task: &TaskRef, title: &str) -> String {
    format!("Task {task} claimed: {title:?}")
}

pub fn rejected(task: &TaskRef, reason: &str) -> String {
    format!("Task {task} rejected: {reason}")
}

pub fn duplicate(task: &TaskRef) -> String {
    format!("Task {task} is already assigned to this worker; duplicate assignment ignored")
}

pub fn finished(task: &TaskRef, verdict: &Verdict, took: Duration) -> String {
    let secs = took.as_secs_f64();
    match (&verdict.result, &verdict.message) {
        (TaskResult::Succeeded, _) => format!("Task {task} completed in {secs:.1}s"),
        (TaskResult::Dispatched, _) => format!("Task {task} dispatched in {secs:.1}s"),
        (TaskResult::Cancelled, _) => format!("Task {task} cancelled by user request"),
        (
            TaskResult::Failed,
            Some(Outbound::Failed {
                message,
                failure_reason,
                exit_code,
                ..
            }),
        ) => {
            let reason = failure_reason.as_deref().unwrap_or("unknown");
            match exit_code {
                Some(code) if *code != 0 => {
                    format!("Task {task} failed ({reason}, exit code {code}): {message}")
                }
                _ => format!("Task {task} failed ({reason}): {message}"),
            }
        }
        (TaskResult::Failed, _) => format!("Task {task} failed"),
    }
}

pub fn cancellation_requested(task: &TaskRef) -> String {
    format!("Task {task} cancellation requested by the server")
}

pub fn connected() -> &'static str {
    "Connected to Oz"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TaskRef {
        TaskRef {
            task_id: "t".into(),
            execution_id: Some("e".into()),
        }
    }

    fn failed(reason: FailureReason, code: Option<i32>) -> Result<Completion, Failure> {
        let mut f = Failure::new(reason, "boom");
        f.exit_code = code;
        Err(f)
    }

    fn wire(v: &Verdict) -> serde_json::Value {
        serde_json::from_str(&v.message.as_ref().unwrap().encode()).unwrap()
    }

    #[test]
    fn success_is_completed() {
        let v = verdict(&key(), &Ok(Completion::Finished), None);
        assert_eq!(v.result, TaskResult::Succeeded);
        assert_eq!(wire(&v)["data"]["message"], "Task completed successfully");
        assert_eq!(wire(&v)["data"]["execution_id"], "e");
    }

    #[test]
    fn dispatched_sends_nothing() {
        let v = verdict(&key(), &Ok(Completion::Dispatched), None);
        assert_eq!(v.result, TaskResult::Dispatched);
        assert!(v.message.is_none());
    }

    #[test]
    fn user_cancel_is_cancelled_completion_whatever_the_error() {
        for outcome in [
            failed(FailureReason::TaskCancelled, None),
            failed(FailureReason::AgentInvocation, Some(143)),
        ] {
            let v = verdict(&key(), &outcome, Some(CancelSource::User));
            assert_eq!(v.result, TaskResult::Cancelled);
            let w = wire(&v);
            assert_eq!(w["type"], "task_completed");
            assert_eq!(w["data"]["task_state"], "CANCELLED");
            assert_eq!(w["data"]["message"], "Task cancelled by user request.");
        }
    }

    #[test]
    fn user_cancel_that_finished_anyway_is_success() {
        let v = verdict(&key(), &Ok(Completion::Finished), Some(CancelSource::User));
        assert_eq!(v.result, TaskResult::Succeeded);
    }

    #[test]
    fn shutdown_cancel_is_graceful_shutdown() {
        for outcome in [
            failed(FailureReason::TaskCancelled, None),
            failed(FailureReason::AgentInvocation, Some(143)),
        ] {
            let v = verdict(&key(), &outcome, Some(CancelSource::Shutdown));
            let w = wire(&v);
            assert_eq!(w["type"], "task_failed");
            assert_eq!(w["data"]["failure_reason"], "graceful_shutdown");
            assert_eq!(w["data"]["message"], text::INTERRUPTED);
        }
        // A genuine failure during shutdown keeps its reason.
        let v = verdict(
            &key(),
            &failed(FailureReason::ImagePull, None),
            Some(CancelSource::Shutdown),
        );
        assert_eq!(wire(&v)["data"]["failure_reason"], "image_pull");
    }

    #[test]
    fn sigterm_without_shutdown_keeps_agent_invocation() {
        let v = verdict(
            &key(),
            &failed(FailureReason::AgentInvocation, Some(143)),
            None,
        );
        let w = wire(&v);
        assert_eq!(w["data"]["failure_reason"], "agent_invocation");
        assert_eq!(w["data"]["exit_code"], 143);
        assert_eq!(w["data"]["message"], "Failed to execute task: boom");
    }

    #[test]
    fn messages_follow_upstream_texts() {
        let v = verdict(&key(), &failed(FailureReason::TaskTimeout, None), None);
        assert_eq!(wire(&v)["data"]["message"], text::TIMED_OUT);
        assert_eq!(wire(&v)["data"]["failure_reason"], "task_timeout");
        let v = verdict(&key(), &failed(FailureReason::TaskCancelled, None), None);
        assert_eq!(wire(&v)["data"]["message"], text::INTERRUPTED);
        let v = verdict(&key(), &failed(FailureReason::Unknown, Some(0)), None);
        assert!(wire(&v)["data"].get("exit_code").is_none());
    }

    #[test]
    fn log_lines() {
        let v = verdict(
            &key(),
            &failed(FailureReason::AgentInvocation, Some(3)),
            None,
        );
        assert_eq!(
            finished(&key(), &v, Duration::from_millis(1500)),
            "Task t (execution e) failed (agent_invocation, exit code 3): Failed to execute task: boom"
        );
        let v = verdict(&key(), &Ok(Completion::Finished), None);
        assert_eq!(
            finished(&key(), &v, Duration::from_millis(1500)),
            "Task t (execution e) completed in 1.5s"
        );
    }
}
