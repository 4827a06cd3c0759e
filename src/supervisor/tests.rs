//! Supervisor behaviour under scripted events, with a scripted backend. The backend's
//! behaviour for a task is chosen by the task's title.

use std::sync::Mutex;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};
use serde_json::{Value, json};

use super::*;
use crate::backend::{BackendKind, ProbeLine};
use crate::protocol::decode;
use crate::task::TaskSpec;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Script {
    preserve: bool,
    cancel_fails: bool,
    cancels: Mutex<Vec<TaskRef>>,
}

struct ScriptedBackend(Arc<Script>);

impl Backend for ScriptedBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Direct
    }

    fn execute(&self, spec: &TaskSpec, cancel: &CancelToken) -> Result<Completion, Failure> {
        let title = spec.task.title.as_str();
        match title {
            "ok" => Ok(Completion::Finished),
            "dispatch" => Ok(Completion::Dispatched),
            "panic" => panic!("scripted panic"),
            "block" => {
                cancel.wait_timeout(WAIT);
                Err(Failure::cancelled())
            }
            "block-then-143" => {
                cancel.wait_timeout(WAIT);
                Err(Failure::new(FailureReason::AgentInvocation, "killed").with_exit_code(143))
            }
            "stuck" => {
                std::thread::sleep(Duration::from_secs(3));
                Ok(Completion::Finished)
            }
            other => match other.strip_prefix("fail:") {
                Some(code) => Err(Failure::new(FailureReason::AgentInvocation, "exit status")
                    .with_exit_code(code.parse().unwrap())),
                None => Err(Failure::new(
                    FailureReason::Unknown,
                    format!("no script {other}"),
                )),
            },
        }
    }

    fn cancel(&self, task: &TaskRef) -> Result<(), String> {
        self.0.cancels.lock().unwrap().push(task.clone());
        if self.0.cancel_fails {
            Err("scripted cancel failure".into())
        } else {
            Ok(())
        }
    }

    fn preserves_tasks_on_shutdown(&self) -> bool {
        self.0.preserve
    }

    fn probe(&self) -> Vec<ProbeLine> {
        Vec::new()
    }
}

struct Harness {
    link: Sender<LinkEvent>,
    signals: Sender<i32>,
    out: Receiver<Outbound>,
    script: Arc<Script>,
    thread: Option<JoinHandle<Exit>>,
}

fn options() -> Options {
    Options {
        worker_id: "w1".into(),
        max_concurrent_tasks: 0,
        one_shot: false,
        task: TaskOptions::default(),
        shutdown_timeout: Duration::from_secs(5),
        drain_timeout: Duration::ZERO,
    }
}

fn start(opts: Options, script: Script) -> Harness {
    let script = Arc::new(script);
    let (link_tx, link_rx) = unbounded();
    let (sig_tx, sig_rx) = unbounded();
    let (out_tx, out_rx) = unbounded();
    let backend: Arc<dyn Backend> = Arc::new(ScriptedBackend(Arc::clone(&script)));
    let thread = std::thread::spawn(move || {
        let telemetry = Telemetry::detached("w1", BackendKind::Direct, 0);
        let mut sup = Supervisor::new(opts, backend, telemetry);
        let outbox = move |m: Outbound| {
            let _ = out_tx.send(m);
        };
        sup.run(&outbox, &link_rx, &sig_rx)
    });
    Harness {
        link: link_tx,
        signals: sig_tx,
        out: out_rx,
        script,
        thread: Some(thread),
    }
}

impl Harness {
    fn send(&self, frame: Value) {
        let msg = decode(&frame.to_string()).unwrap();
        self.link.send(LinkEvent::Message(msg)).unwrap();
    }

    fn assign(&self, task_id: &str, execution_id: Option<&str>, title: &str) {
        let mut data = json!({"task_id": task_id, "task": {"id": task_id, "title": title}});
        if let Some(e) = execution_id {
            data["execution_id"] = json!(e);
        }
        self.send(json!({"type": "task_assignment", "data": data}));
    }

    fn cancel(&self, task_id: &str, execution_id: Option<&str>) {
        let mut data = json!({"task_id": task_id});
        if let Some(e) = execution_id {
            data["execution_id"] = json!(e);
        }
        self.send(json!({"type": "task_cancellation", "data": data}));
    }

    fn next(&self) -> Value {
        let m = self
            .out
            .recv_timeout(WAIT)
            .expect("expected an outbound message");
        serde_json::from_str(&m.encode()).unwrap()
    }

    fn next_of(&self, kind: &str) -> Value {
        let v = self.next();
        assert_eq!(v["type"], kind, "unexpected message {v}");
        v["data"].clone()
    }

    fn quiet(&self) {
        if let Ok(m) = self.out.recv_timeout(Duration::from_millis(200)) {
            panic!("unexpected message {}", m.encode());
        }
    }

    fn stop(mut self) -> (Exit, Vec<Value>) {
        // The supervisor may already have stopped on its own (and dropped the receiver).
        let _ = self.signals.send(15);
        let exit = self.thread.take().unwrap().join().unwrap();
        let rest = self
            .out
            .try_iter()
            .map(|m| serde_json::from_str(&m.encode()).unwrap())
            .collect();
        (exit, rest)
    }
}

#[test]
fn success_is_claimed_then_completed() {
    let h = start(options(), Script::default());
    h.assign("t1", None, "ok");
    let c = h.next_of("task_claimed");
    assert_eq!(c, json!({"task_id": "t1", "worker_id": "w1"}));
    let d = h.next_of("task_completed");
    assert_eq!(d["message"], "Task completed successfully");
    let (exit, rest) = h.stop();
    assert_eq!(exit, Exit::Stopped);
    assert!(rest.is_empty());
}

#[test]
fn failure_carries_reason_and_exit_code() {
    let h = start(options(), Script::default());
    h.assign("t1", Some("e1"), "fail:3");
    assert_eq!(h.next_of("task_claimed")["execution_id"], "e1");
    let f = h.next_of("task_failed");
    assert_eq!(f["failure_reason"], "agent_invocation");
    assert_eq!(f["exit_code"], 3);
    assert_eq!(f["execution_id"], "e1");
    assert_eq!(f["message"], "Failed to execute task: exit status");
}

#[test]
fn panic_in_task_thread_becomes_that_tasks_failure() {
    let h = start(options(), Script::default());
    h.assign("boom", None, "panic");
    h.next_of("task_claimed");
    let f = h.next_of("task_failed");
    assert_eq!(f["failure_reason"], "unknown");
    assert!(f["message"].as_str().unwrap().contains("scripted panic"));
    // The daemon lives on.
    h.assign("t2", None, "ok");
    h.next_of("task_claimed");
    h.next_of("task_completed");
}

#[test]
fn missing_task_object_is_claimed_and_failed() {
    let h = start(options(), Script::default());
    h.send(json!({"type": "task_assignment", "data": {"task_id": "t1"}}));
    h.next_of("task_claimed");
    let f = h.next_of("task_failed");
    assert_eq!(f["failure_reason"], "unknown");
    assert_eq!(
        f["message"],
        "Failed to execute task: task assignment has no task object"
    );
}

#[test]
fn malformed_assignment_with_task_id_is_answered() {
    let h = start(options(), Script::default());
    h.send(json!({"type": "task_assignment", "data": {"task_id": "t1", "env_vars": [1]}}));
    h.next_of("task_claimed");
    let f = h.next_of("task_failed");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to execute task: invalid task assignment:")
    );
    h.send(json!({"type": "task_assignment", "data": {"env_vars": [1]}}));
    h.send(json!({"type": "mystery", "data": {}}));
    h.quiet();
}

#[test]
fn at_capacity_rejects_and_frees_slot_after_completion() {
    let mut opts = options();
    opts.max_concurrent_tasks = 1;
    let h = start(opts, Script::default());
    h.assign("t1", None, "block");
    h.next_of("task_claimed");
    h.assign("t2", None, "ok");
    let r = h.next_of("task_rejected");
    assert_eq!(
        r,
        json!({"task_id": "t2", "reason": "worker at maximum concurrency"})
    );
    h.cancel("t1", None);
    assert_eq!(h.next_of("task_completed")["task_state"], "CANCELLED");
    h.assign("t3", None, "ok");
    h.next_of("task_claimed");
    h.next_of("task_completed");
}

#[test]
fn duplicate_assignment_of_active_execution_is_ignored() {
    let h = start(options(), Script::default());
    h.assign("t1", Some("e1"), "block");
    h.next_of("task_claimed");
    h.assign("t1", Some("e1"), "block");
    h.quiet();
    // A different execution of the same run is a different task.
    h.assign("t1", Some("e2"), "ok");
    assert_eq!(h.next_of("task_claimed")["execution_id"], "e2");
    assert_eq!(h.next_of("task_completed")["execution_id"], "e2");
    // A finished execution is not run again either.
    h.assign("t1", Some("e2"), "ok");
    h.quiet();
}

#[test]
fn user_cancellation_is_cancelled_completion_and_closure() {
    let h = start(options(), Script::default());
    h.assign("t1", Some("e1"), "block");
    h.next_of("task_claimed");
    h.cancel("t1", Some("e1"));
    let c = h.next_of("task_completed");
    assert_eq!(c["task_state"], "CANCELLED");
    assert_eq!(c["message"], "Task cancelled by user request.");
    assert_eq!(
        h.next_of("execution_closed"),
        json!({"task_id": "t1", "execution_id": "e1"})
    );
    assert_eq!(h.script.cancels.lock().unwrap().len(), 1);
    // A repeated cancel replays the closure without touching the backend.
    h.cancel("t1", Some("e1"));
    h.next_of("execution_closed");
    assert_eq!(h.script.cancels.lock().unwrap().len(), 1);
}

#[test]
fn failed_closure_is_not_confirmed_and_can_be_retried() {
    let h = start(
        options(),
        Script {
            cancel_fails: true,
            ..Script::default()
        },
    );
    h.assign("t1", Some("e1"), "block");
    h.next_of("task_claimed");
    h.cancel("t1", Some("e1"));
    assert_eq!(h.next_of("task_completed")["task_state"], "CANCELLED");
    h.quiet();
    h.cancel("t1", Some("e1"));
    h.quiet();
    assert_eq!(h.script.cancels.lock().unwrap().len(), 2);
}

#[test]
fn legacy_cancel_covers_every_execution_and_sends_no_closure() {
    let h = start(options(), Script::default());
    h.assign("t1", Some("e1"), "block");
    h.next_of("task_claimed");
    h.assign("t1", Some("e2"), "block");
    h.next_of("task_claimed");
    h.cancel("t1", None);
    for _ in 0..2 {
        assert_eq!(h.next_of("task_completed")["task_state"], "CANCELLED");
    }
    h.quiet();
}

#[test]
fn unknown_cancellation_sends_nothing() {
    let h = start(options(), Script::default());
    h.cancel("nope", None);
    h.cancel("nope", Some("e"));
    h.quiet();
}

#[test]
fn dispatched_task_sends_no_terminal_and_routes_cancel_to_backend() {
    let h = start(options(), Script::default());
    h.assign("t1", Some("e1"), "dispatch");
    h.next_of("task_claimed");
    h.quiet();
    h.cancel("t1", Some("e1"));
    assert_eq!(h.next_of("execution_closed")["execution_id"], "e1");
    assert_eq!(
        h.script.cancels.lock().unwrap()[0],
        TaskRef {
            task_id: "t1".into(),
            execution_id: Some("e1".into())
        }
    );
}

#[test]
fn shutdown_cancels_tasks_reports_graceful_shutdown_and_rejects_new_work() {
    let h = start(options(), Script::default());
    h.assign("t1", None, "block");
    h.next_of("task_claimed");
    h.assign("t2", None, "block-then-143");
    h.next_of("task_claimed");
    h.signals.send(15).unwrap();
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let f = h.next_of("task_failed");
        assert_eq!(f["message"], text::INTERRUPTED);
        reasons.push(f["failure_reason"].clone());
    }
    assert_eq!(reasons, vec!["graceful_shutdown", "graceful_shutdown"]);
    let (exit, rest) = h.stop();
    // The second signal arrives after the supervisor already stopped or aborts it.
    assert!(matches!(exit, Exit::Stopped | Exit::Aborted));
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn assignment_during_shutdown_is_rejected() {
    let mut opts = options();
    opts.shutdown_timeout = Duration::from_secs(30);
    let script = Script {
        preserve: true,
        ..Script::default()
    };
    let mut h = start(opts, script);
    h.assign("t1", None, "block");
    h.next_of("task_claimed");
    h.signals.send(15).unwrap();
    h.assign("t2", None, "ok");
    assert_eq!(
        h.next_of("task_rejected"),
        json!({"task_id": "t2", "reason": "worker is shutting down"})
    );
    // Preserving backends are not cancelled by shutdown.
    h.quiet();
    h.cancel("t1", None);
    assert_eq!(h.next_of("task_completed")["task_state"], "CANCELLED");
    assert_eq!(h.thread.take().unwrap().join().unwrap(), Exit::Stopped);
}

#[test]
fn stuck_task_is_reported_at_the_shutdown_deadline_exactly_once() {
    let mut opts = options();
    opts.shutdown_timeout = Duration::from_millis(200);
    let mut h = start(opts, Script::default());
    h.assign("t1", None, "stuck");
    h.next_of("task_claimed");
    h.signals.send(15).unwrap();
    let f = h.next_of("task_failed");
    assert_eq!(f["failure_reason"], "graceful_shutdown");
    let exit = h.thread.take().unwrap().join().unwrap();
    assert_eq!(exit, Exit::Stopped);
}

#[test]
fn second_signal_aborts() {
    let mut h = start(options(), Script::default());
    h.assign("t1", None, "stuck");
    h.next_of("task_claimed");
    h.signals.send(15).unwrap();
    h.signals.send(2).unwrap();
    assert_eq!(h.thread.take().unwrap().join().unwrap(), Exit::Aborted);
}

#[test]
fn one_shot_rejects_a_second_task_and_stops_after_the_first() {
    let mut opts = options();
    opts.one_shot = true;
    opts.max_concurrent_tasks = 1;
    let mut h = start(opts, Script::default());
    h.assign("t1", None, "block");
    h.next_of("task_claimed");
    h.assign("t2", None, "ok");
    assert_eq!(
        h.next_of("task_rejected")["reason"],
        "one-shot worker has already accepted a task"
    );
    h.cancel("t1", None);
    h.next_of("task_completed");
    assert_eq!(h.thread.take().unwrap().join().unwrap(), Exit::OneShotDone);
}

#[test]
fn link_loss_stops_the_supervisor() {
    let mut h = start(options(), Script::default());
    let (dead_tx, _) = unbounded();
    let link = std::mem::replace(&mut h.link, dead_tx);
    drop(link);
    assert_eq!(h.thread.take().unwrap().join().unwrap(), Exit::LinkLost);
}

#[test]
fn thread_names_fit_linux_limit() {
    assert_eq!(thread_name("t-", "abc"), "t-abc");
    assert_eq!(thread_name("t-", "0123456789abcdefghij").len(), 15);
    assert_eq!(thread_name("t-", "../../évil id"), "t-vilid");
}

#[test]
fn drain_lets_running_tasks_finish_and_rejects_new_work() {
    let mut opts = options();
    opts.drain_timeout = Duration::from_secs(30);
    let mut h = start(opts, Script::default());
    h.assign("t1", None, "stuck");
    h.next_of("task_claimed");
    h.signals.send(15).unwrap();
    h.assign("t2", None, "ok");
    assert_eq!(
        h.next_of("task_rejected")["reason"],
        "worker is shutting down"
    );
    // "stuck" returns on its own after 3 s: drained, it completes instead of being cancelled.
    assert_eq!(
        h.next_of("task_completed")["message"],
        "Task completed successfully"
    );
    assert_eq!(h.thread.take().unwrap().join().unwrap(), Exit::Stopped);
}

#[test]
fn drain_timeout_cancels_what_is_left() {
    let mut opts = options();
    opts.drain_timeout = Duration::from_millis(300);
    let mut h = start(opts, Script::default());
    h.assign("t1", None, "block");
    h.next_of("task_claimed");
    h.signals.send(15).unwrap();
    let f = h.next_of("task_failed");
    assert_eq!(f["failure_reason"], "graceful_shutdown");
    assert_eq!(h.thread.take().unwrap().join().unwrap(), Exit::Stopped);
}

#[test]
fn second_signal_during_drain_aborts() {
    let mut opts = options();
    opts.drain_timeout = Duration::from_secs(60);
    let mut h = start(opts, Script::default());
    h.assign("t1", None, "block");
    h.next_of("task_claimed");
    h.signals.send(15).unwrap();
    h.signals.send(15).unwrap();
    assert_eq!(h.thread.take().unwrap().join().unwrap(), Exit::Aborted);
}

#[test]
fn an_execution_failed_before_start_is_answered_once() {
    let h = start(options(), Script::default());
    // No task object.
    let no_task =
        json!({"type": "task_assignment", "data": {"task_id": "t1", "execution_id": "e1"}});
    h.send(no_task.clone());
    h.next_of("task_claimed");
    h.next_of("task_failed");
    h.send(no_task);
    h.quiet();
    // Malformed: the resend is recognised too.
    let bad = json!({"type": "task_assignment",
        "data": {"task_id": "t2", "execution_id": "e1", "env_vars": [1]}});
    h.send(bad.clone());
    h.next_of("task_claimed");
    h.next_of("task_failed");
    h.send(bad);
    h.quiet();
    // A new execution of the same run is a new assignment.
    h.assign("t1", Some("e2"), "ok");
    h.next_of("task_claimed");
    h.next_of("task_completed");
}

#[test]
fn a_burst_of_legacy_cancellations_costs_one_backend_cancel() {
    let h = start(options(), Script::default());
    h.assign("t1", Some("e1"), "block");
    h.next_of("task_claimed");
    for _ in 0..50 {
        h.cancel("t1", None);
    }
    assert_eq!(h.next_of("task_completed")["task_state"], "CANCELLED");
    h.quiet();
    let script = Arc::clone(&h.script);
    h.stop();
    // Cancellation threads are not joined by the supervisor: wait for the first to land.
    let deadline = Instant::now() + WAIT;
    while script.cancels.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(script.cancels.lock().unwrap().len(), 1);
}

#[test]
fn only_lost_connections_count_as_reconnects() {
    let telemetry = Telemetry::detached("w1", BackendKind::Direct, 0);
    let metrics = Arc::clone(&telemetry.metrics);
    let backend: Arc<dyn Backend> = Arc::new(ScriptedBackend(Arc::new(Script::default())));
    let mut sup = Supervisor::new(options(), backend, telemetry);
    let outbox = |_: Outbound| {};
    let reconnects = |m: &Metrics| {
        m.render_prometheus()
            .lines()
            .filter(|l| l.starts_with("oz_worker_websocket_reconnects_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    sup.on_link(&outbox, LinkEvent::Connected);
    assert!(metrics.connected());
    sup.on_link(
        &outbox,
        LinkEvent::Closed {
            reason: "closed by the worker".into(),
        },
    );
    assert!(!metrics.connected());
    assert_eq!(reconnects(&metrics), 0);
    sup.on_link(&outbox, LinkEvent::Connected);
    sup.on_link(
        &outbox,
        LinkEvent::Disconnected {
            reason: "read: connection reset".into(),
        },
    );
    sup.on_link(
        &outbox,
        LinkEvent::DialFailed {
            error: "connect: refused".into(),
            retry_in: Duration::from_secs(1),
        },
    );
    assert_eq!(reconnects(&metrics), 2);
}
