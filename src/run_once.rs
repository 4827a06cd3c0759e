//! `oz-agent-worker run-once --task FILE|-`: run one `task_assignment` with no server.
//!
//! It feeds the assignment to the real supervisor in one-shot mode, so a local run follows
//! exactly the daemon's claim/execute/report path. The messages that would go to Oz are printed
//! to stdout, one JSON object per line; the lifecycle log goes to stderr as usual.

use std::cell::RefCell;
use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use serde_json::Value;

use crate::backend::Backend;
use crate::link::LinkEvent;
use crate::protocol::{self, Inbound, Outbound, kind};
use crate::supervisor::{Exit, Options, Supervisor, Telemetry};

/// Why the task could not be run at all.
#[derive(Debug)]
pub enum RunOnceError {
    Read {
        source: String,
        error: std::io::Error,
    },
    Json {
        source: String,
        error: String,
    },
    NotAnAssignment {
        source: String,
        kind: String,
    },
    Invalid {
        source: String,
        error: String,
    },
}

impl fmt::Display for RunOnceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunOnceError::Read { source, error } => write!(f, "reading task {source}: {error}"),
            RunOnceError::Json { source, error } => {
                write!(f, "reading task {source}: not valid JSON: {error}")
            }
            RunOnceError::NotAnAssignment { source, kind } => write!(
                f,
                "reading task {source}: message type {kind:?} is not a task_assignment"
            ),
            RunOnceError::Invalid { source, error } => {
                write!(f, "reading task {source}: invalid task assignment: {error}")
            }
        }
    }
}

impl std::error::Error for RunOnceError {}

/// Reads the task from a path, or stdin for `-`.
pub fn read_task(source: &str) -> Result<String, RunOnceError> {
    let mut text = String::new();
    let result = if source == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(source).and_then(|mut f| f.read_to_string(&mut text))
    };
    result.map_err(|error| RunOnceError::Read {
        source: display_source(source),
        error,
    })?;
    Ok(text)
}

fn display_source(source: &str) -> String {
    if source == "-" {
        "from stdin".to_owned()
    } else {
        source.to_owned()
    }
}

/// Decodes either a whole frame (`{"type":"task_assignment","data":{...}}`) or a bare `data`
/// object.
pub fn parse_task(source: &str, text: &str) -> Result<Inbound, RunOnceError> {
    let source = display_source(source);
    let value: Value = serde_json::from_str(text).map_err(|e| RunOnceError::Json {
        source: source.clone(),
        error: e.to_string(),
    })?;
    let frame = match value.get("type") {
        Some(Value::String(k)) if k == kind::TASK_ASSIGNMENT => value,
        Some(other) => {
            return Err(RunOnceError::NotAnAssignment {
                source,
                kind: other.to_string().trim_matches('"').to_owned(),
            });
        }
        None => serde_json::json!({"type": kind::TASK_ASSIGNMENT, "data": value}),
    };
    match protocol::decode(&frame.to_string()) {
        Ok(msg @ Inbound::Assignment(_)) => Ok(msg),
        Ok(Inbound::BadAssignment { error, .. }) => Err(RunOnceError::Invalid { source, error }),
        Ok(_) => Err(RunOnceError::Invalid {
            source,
            error: "not a task assignment".into(),
        }),
        Err(e) => Err(RunOnceError::Invalid {
            source,
            error: e.to_string(),
        }),
    }
}

/// The process exit status for a task's final message: 0 for success or hand-off, the agent's
/// exit code when it failed with one (1-255), otherwise 1.
pub fn exit_status(terminal: Option<&Outbound>) -> u8 {
    match terminal {
        None => 0,
        Some(Outbound::Completed { task_state, .. }) if task_state.is_none() => 0,
        Some(Outbound::Failed {
            exit_code: Some(code),
            ..
        }) => u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1),
        Some(_) => 1,
    }
}

/// Runs one assignment through the supervisor; returns the exit status.
pub fn run(
    assignment: Inbound,
    opts: Options,
    backend: Arc<dyn Backend>,
    signals: &Receiver<i32>,
    out: &mut dyn Write,
) -> u8 {
    let mut opts = opts;
    opts.one_shot = true;
    opts.max_concurrent_tasks = 1;
    let (link_tx, link_rx) = crossbeam_channel::unbounded();
    // Holding the sender keeps the fake link "alive" for the supervisor.
    let _ = link_tx.send(LinkEvent::Message(assignment));
    let terminal: RefCell<Option<Outbound>> = RefCell::new(None);
    let out = RefCell::new(out);
    let outbox = |msg: Outbound| {
        let mut out = out.borrow_mut();
        let _ = writeln!(out, "{}", msg.encode());
        let _ = out.flush();
        if msg.is_terminal() {
            *terminal.borrow_mut() = Some(msg);
        }
    };
    let telemetry = Telemetry::detached(&opts.worker_id, backend.kind(), 1);
    let mut supervisor = Supervisor::new(opts, backend, telemetry);
    let exit = supervisor.run(&outbox, &link_rx, signals);
    drop(link_tx);
    let terminal = terminal.into_inner();
    match exit {
        Exit::Aborted => 130,
        _ => exit_status(terminal.as_ref()),
    }
}

/// Text for the final stderr line of a run.
pub fn summary(status: u8) -> String {
    match status {
        0 => "run-once: task finished successfully".to_owned(),
        n => format!("run-once: task did not succeed (exit status {n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_and_bare_data() {
        let bare = r#"{"task_id":"t","task":{"id":"t","title":"x"}}"#;
        assert!(matches!(
            parse_task("f", bare).unwrap(),
            Inbound::Assignment(_)
        ));
        let frame = format!(r#"{{"type":"task_assignment","data":{bare}}}"#);
        assert!(matches!(
            parse_task("f", &frame).unwrap(),
            Inbound::Assignment(_)
        ));
    }

    #[test]
    fn input_errors_name_the_source() {
        let e = parse_task("task.json", "{").unwrap_err().to_string();
        assert!(
            e.starts_with("reading task task.json: not valid JSON"),
            "{e}"
        );
        let e = parse_task("-", r#"{"type":"task_cancellation","data":{}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"reading task from stdin: message type "task_cancellation" is not a task_assignment"#
        );
        let e = parse_task("f", r#"{"task_id": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid task assignment"), "{e}");
    }

    #[test]
    fn exit_statuses() {
        let failed = |code| Outbound::Failed {
            task_id: "t".into(),
            execution_id: None,
            message: "m".into(),
            failure_reason: None,
            exit_code: code,
            failure_details: None,
        };
        assert_eq!(exit_status(None), 0);
        assert_eq!(exit_status(Some(&failed(Some(3)))), 3);
        assert_eq!(exit_status(Some(&failed(Some(0)))), 1);
        assert_eq!(exit_status(Some(&failed(Some(300)))), 1);
        assert_eq!(exit_status(Some(&failed(None))), 1);
        let cancelled = Outbound::Completed {
            task_id: "t".into(),
            execution_id: None,
            message: "m".into(),
            task_state: Some("CANCELLED".into()),
        };
        assert_eq!(exit_status(Some(&cancelled)), 1);
    }
}
