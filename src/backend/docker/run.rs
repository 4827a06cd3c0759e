//! One task container: create, wait (registered before start), start, stream its output into
//! the log, classify the exit; on cancellation stop it (SIGTERM, grace, SIGKILL).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::{CancelToken, Completion, Failure, FailureReason};
use crate::docker::{
    Client, ContainerConfig, LogsOptions, StopOutcome, StreamKind, WaitCondition, Waiter,
};
use crate::process::{Line, LineBuffer, Redactor};
use crate::reporting::{LineSink, SetupPhase, TaskReport};

use super::tracker::{Container, Execution};
pub use crate::threads::thread_name;

/// How long the log stream may lag behind the container's exit before it is cut.
const LOG_DRAIN: Duration = Duration::from_secs(2);

/// A failure, or the cancellation it really is when the token fired.
pub fn failure(cancel: &CancelToken, reason: FailureReason, message: String) -> Failure {
    if cancel.is_cancelled() {
        Failure::cancelled()
    } else {
        Failure::new(reason, message)
    }
}

/// What [`run`] needs.
pub struct Run<'a> {
    /// Aborted by the task's cancellation.
    pub client: &'a Client,
    /// Never aborted: stop, inspect after exit, log stream base.
    pub plain: &'a Client,
    pub exec: &'a Execution,
    pub cancel: &'a CancelToken,
    pub task_id: &'a str,
    pub name: &'a str,
    pub grace: Duration,
    pub secrets: &'a [String],
    /// Setup events (container start) and the task's log export.
    pub report: &'a TaskReport,
}

/// Creates, starts and waits for the task container. The container is left for the caller to
/// remove (its id or name is recorded on the execution).
pub fn run(r: &Run<'_>, config: &ContainerConfig) -> Result<Completion, Failure> {
    let span = r.report.begin(SetupPhase::ContainerStart);
    let started = create_and_start(r, config);
    r.report
        .end(span, started.is_err(), r.cancel.is_cancelled());
    let (id, waiter) = started?;
    let logs = follow_logs(r, &id);
    let waited = waiter.wait();
    if waited.is_err() && r.cancel.is_cancelled() {
        stop(r, &id);
    }
    if let Some((handle, done)) = logs {
        // The stream ends with the container; cut it if the daemon lags.
        if done.recv_timeout(LOG_DRAIN).is_err() {
            r.exec.log_abort.abort();
        }
        let _ = handle.join();
    }
    let exit = waited.map_err(|e| {
        failure(
            r.cancel,
            FailureReason::ContainerWait,
            format!("error waiting for container: {e}"),
        )
    })?;
    if let Some(error) = exit.error {
        return Err(failure(
            r.cancel,
            FailureReason::ContainerWait,
            format!("error waiting for container: {error}"),
        ));
    }
    let code = i32::try_from(exit.status_code).unwrap_or(i32::MAX);
    classify(r.plain, &id, code, r.task_id, r.name, r.cancel)
}

/// The outcome of a task container that exited with `code` (OOM kills told apart by an
/// inspect). Shared by [`run`] and the adoption of a crashed run's container.
pub fn classify(
    plain: &Client,
    id: &str,
    code: i32,
    task_id: &str,
    name: &str,
    cancel: &CancelToken,
) -> Result<Completion, Failure> {
    let short: String = id.chars().take(12).collect();
    if code == 0 {
        log::info!("Task {task_id}: container {name} exited successfully");
        return Ok(Completion::Finished);
    }
    if cancel.is_cancelled() {
        return Err(Failure::cancelled());
    }
    let oom = match plain.inspect_container(id) {
        Ok(Some(inspect)) => inspect.state.oom_killed,
        Ok(None) => false,
        Err(e) => {
            log::warn!("Task {task_id}: cannot inspect container {short}: {e}");
            false
        }
    };
    let failure = if oom {
        Failure::new(
            FailureReason::ContainerOom,
            format!("container was killed for exceeding its memory limit (status {code})"),
        )
    } else {
        Failure::new(
            FailureReason::ContainerExit,
            format!("container exited with non-zero status: {code}"),
        )
    };
    Err(failure.with_exit_code(code))
}

/// Create, register the wait, start: the `setup_worker_container_start` phase.
fn create_and_start(r: &Run<'_>, config: &ContainerConfig) -> Result<(String, Waiter), Failure> {
    let id = create(r, config)?;
    let waiter = r
        .client
        .wait_container(&id, WaitCondition::NextExit)
        .map_err(|e| {
            failure(
                r.cancel,
                FailureReason::ContainerWait,
                format!("failed to wait for container: {e}"),
            )
        })?;
    r.client.start_container(&id).map_err(|e| {
        failure(
            r.cancel,
            FailureReason::ContainerStart,
            format!("failed to start container: {e}"),
        )
    })?;
    let short: String = id.chars().take(12).collect();
    log::info!("Task {}: started container {} ({short})", r.task_id, r.name);
    Ok((id, waiter))
}

fn create(r: &Run<'_>, config: &ContainerConfig) -> Result<String, Failure> {
    r.exec.set_container(Container::Maybe(r.name.to_string()));
    match r.client.create_container(Some(r.name), config) {
        Ok(created) => {
            for warning in &created.warnings {
                log::warn!("Task {}: Docker: {warning}", r.task_id);
            }
            r.exec.set_container(Container::Created {
                id: created.id.clone(),
                name: r.name.to_string(),
            });
            Ok(created.id)
        }
        Err(e) => {
            // A definite refusal created nothing; anything else may have (kept as `Maybe`).
            if e.is_definitive() {
                r.exec.set_container(Container::None);
            }
            Err(failure(
                r.cancel,
                FailureReason::ContainerCreate,
                format!("failed to create container: {e}"),
            ))
        }
    }
}

/// SIGTERM, then SIGKILL after the grace period (whole seconds, rounded up: never less grace
/// than configured).
fn stop(r: &Run<'_>, id: &str) {
    stop_container(r.plain, id, r.grace, r.task_id, r.name);
}

/// Stops a task container: SIGTERM, SIGKILL after `grace`.
pub fn stop_container(plain: &Client, id: &str, grace: Duration, task_id: &str, name: &str) {
    let grace = Duration::from_secs(grace.as_secs() + u64::from(grace.subsec_nanos() > 0));
    log::info!("Task {task_id}: stopping container {name} (SIGKILL after {grace:?})");
    match plain.stop_container(id, grace) {
        Ok(StopOutcome::Stopped | StopOutcome::AlreadyStopped | StopOutcome::NotFound) => {}
        Err(e) => log::warn!("Task {task_id}: failed to stop container {name}: {e}"),
    }
}

/// Follows the container's output on a thread, one log line per output line (target `agent`,
/// `[<task id>] <line>`), secrets scrubbed, lines capped by [`LineBuffer`]. Returns the thread
/// and a channel that yields when it is done.
fn follow_logs(r: &Run<'_>, id: &str) -> Option<(JoinHandle<()>, mpsc::Receiver<()>)> {
    let client = r.plain.with_abort(r.exec.log_abort.clone());
    let id = id.to_string();
    let task_id = r.task_id.to_string();
    let redactor = Redactor::new(r.secrets);
    let sink = r.report.lines();
    let name = r.name.to_string();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(thread_name("lg-", r.task_id))
        .stack_size(128 * 1024)
        .spawn(move || {
            stream_logs(&client, &id, &task_id, &redactor, &sink, &name);
            drop(sink);
            let _ = tx.send(());
        });
    match spawned {
        Ok(handle) => Some((handle, rx)),
        Err(e) => {
            log::warn!("Task {}: cannot start a log thread: {e}", r.task_id);
            None
        }
    }
}

fn stream_logs(
    client: &Client,
    id: &str,
    task_id: &str,
    redactor: &Redactor,
    sink: &LineSink,
    name: &str,
) {
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let export = |stream: &'static str, line: &str| {
        let source = if stream == "stdout" {
            "container.stdout"
        } else {
            "container.stderr"
        };
        sink.line(
            source,
            &[("container.name", name), ("log.iostream", stream)],
            line,
        );
    };
    let mut emit_out = |line: Line<'_>| {
        line.records(&mut |r| log::info!(target: "agent", "[{task_id}] {r}"));
        if let Some(whole) = line.whole() {
            export("stdout", whole);
        }
    };
    let mut emit_err = |line: Line<'_>| {
        line.records(&mut |r| log::info!(target: "agent", "[{task_id}] {r}"));
        if let Some(whole) = line.whole() {
            export("stderr", whole);
        }
    };
    let mut stream = match client.container_logs(id, &options) {
        Ok(s) => s,
        Err(e) => {
            if !e.is_aborted() {
                log::warn!("Task {task_id}: cannot follow the container's output: {e}");
            }
            return;
        }
    };
    let (mut out, mut err) = (LineBuffer::default(), LineBuffer::default());
    loop {
        match stream.next_chunk() {
            Ok(Some(chunk)) => match chunk.stream {
                StreamKind::Stdout => out.push(&chunk.data, redactor, &mut emit_out),
                StreamKind::Stderr => err.push(&chunk.data, redactor, &mut emit_err),
                _ => {}
            },
            Ok(None) => break,
            Err(e) => {
                if !e.is_aborted() {
                    log::warn!("Task {task_id}: the container's output stream failed: {e}");
                }
                break;
            }
        }
    }
    out.finish(redactor, &mut emit_out);
    err.finish(redactor, &mut emit_err);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_fit_the_kernel_limit() {
        assert_eq!(thread_name("lg-", "task-1"), "lg-task-1");
        assert_eq!(thread_name("lg-", "a/b\u{e9}c").as_str(), "lg-abc");
        assert_eq!(thread_name("lg-", &"x".repeat(40)).len(), 15);
    }

    #[test]
    fn cancellation_wins_over_the_failure_it_caused() {
        let token = CancelToken::new().unwrap();
        let f = failure(&token, FailureReason::ContainerWait, "x".into());
        assert_eq!(f.reason, FailureReason::ContainerWait);
        token.cancel(crate::backend::CancelSource::User);
        let f = failure(&token, FailureReason::ContainerWait, "x".into());
        assert_eq!(f, Failure::cancelled());
    }
}
