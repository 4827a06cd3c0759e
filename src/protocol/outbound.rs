//! Messages from the worker to the server, and their encoding.

use serde::Serialize;

use super::kind;

/// A message to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Claimed {
        task_id: String,
        worker_id: String,
        execution_id: Option<String>,
    },
    Rejected {
        task_id: String,
        reason: String,
    },
    Completed {
        task_id: String,
        execution_id: Option<String>,
        message: String,
        /// `Some("CANCELLED")` for a finished user cancellation.
        task_state: Option<String>,
    },
    Failed {
        task_id: String,
        execution_id: Option<String>,
        message: String,
        failure_reason: Option<String>,
        /// Omitted on the wire when absent or zero.
        exit_code: Option<i32>,
        /// The `failure_details` object as JSON text (upstream #139), omitted when absent.
        failure_details: Option<String>,
    },
    ExecutionClosed {
        task_id: String,
        execution_id: String,
    },
}

impl Outbound {
    /// The wire `type` of this message.
    pub fn kind(&self) -> &'static str {
        match self {
            Outbound::Claimed { .. } => kind::TASK_CLAIMED,
            Outbound::Rejected { .. } => kind::TASK_REJECTED,
            Outbound::Completed { .. } => kind::TASK_COMPLETED,
            Outbound::Failed { .. } => kind::TASK_FAILED,
            Outbound::ExecutionClosed { .. } => kind::EXECUTION_CLOSED,
        }
    }

    /// The task this message is about.
    pub fn task_id(&self) -> &str {
        match self {
            Outbound::Claimed { task_id, .. }
            | Outbound::Rejected { task_id, .. }
            | Outbound::Completed { task_id, .. }
            | Outbound::Failed { task_id, .. }
            | Outbound::ExecutionClosed { task_id, .. } => task_id,
        }
    }

    /// True for `task_completed` and `task_failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Outbound::Completed { .. } | Outbound::Failed { .. })
    }

    /// Encodes the message as one text frame.
    pub fn encode(&self) -> String {
        #[derive(Serialize)]
        struct Env<'a, T: Serialize> {
            #[serde(rename = "type")]
            kind: &'a str,
            data: T,
        }
        #[derive(Serialize)]
        struct Claimed<'a> {
            task_id: &'a str,
            worker_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            execution_id: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Rejected<'a> {
            task_id: &'a str,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Completed<'a> {
            task_id: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            task_state: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            execution_id: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Failed<'a> {
            task_id: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            failure_reason: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            exit_code: Option<i32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            execution_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            failure_details: Option<Box<serde_json::value::RawValue>>,
        }
        #[derive(Serialize)]
        struct Closed<'a> {
            task_id: &'a str,
            execution_id: &'a str,
        }
        fn enc<T: Serialize>(kind: &str, data: T) -> String {
            // Serialising plain structs of strings and integers into a String cannot fail.
            serde_json::to_string(&Env { kind, data }).unwrap_or_default()
        }
        let kind = self.kind();
        match self {
            Outbound::Claimed {
                task_id,
                worker_id,
                execution_id,
            } => enc(
                kind,
                Claimed {
                    task_id,
                    worker_id,
                    execution_id: execution_id.as_deref(),
                },
            ),
            Outbound::Rejected { task_id, reason } => enc(kind, Rejected { task_id, reason }),
            Outbound::Completed {
                task_id,
                execution_id,
                message,
                task_state,
            } => enc(
                kind,
                Completed {
                    task_id,
                    message,
                    task_state: task_state.as_deref(),
                    execution_id: execution_id.as_deref(),
                },
            ),
            Outbound::Failed {
                task_id,
                execution_id,
                message,
                failure_reason,
                exit_code,
                failure_details,
            } => enc(
                kind,
                Failed {
                    task_id,
                    message,
                    failure_reason: failure_reason.as_deref(),
                    exit_code: exit_code.filter(|c| *c != 0),
                    execution_id: execution_id.as_deref(),
                    // Text that is not a JSON value is dropped rather than sent broken.
                    failure_details: failure_details
                        .as_ref()
                        .and_then(|d| serde_json::value::RawValue::from_string(d.clone()).ok()),
                },
            ),
            Outbound::ExecutionClosed {
                task_id,
                execution_id,
            } => enc(
                kind,
                Closed {
                    task_id,
                    execution_id,
                },
            ),
        }
    }
}
