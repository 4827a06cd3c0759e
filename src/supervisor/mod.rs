//! The supervisor: the one owner of task state.
//!
//! It consumes events (server messages and link state from the link thread, task outcomes from
//! task threads, signals) and decides: claim or reject, cancel, report, shut down. It never
//! blocks on I/O: sending is a non-blocking enqueue on the link's outbox, and backend
//! cancellation runs on short-lived threads.
//!
//! The core promise it keeps: every assignment gets exactly one `task_claimed` or
//! `task_rejected` (duplicates of an active execution are ignored), and every claimed task that
//! is not dispatched gets exactly one `task_completed` or `task_failed`, also across reconnects
//! (the link keeps unsent messages) and on graceful shutdown.
//!
//! Shutdown order (who signals whom):
//!
//! | step | actor      | action                                                                   |
//! |------|------------|--------------------------------------------------------------------------|
//! | 1    | signal     | first SIGTERM/SIGINT reaches the supervisor as an event                  |
//! | 2    | supervisor | state Running -> Stopping; new assignments are rejected ("shutting down")|
//! | 3    | supervisor | fires every task's cancel token (not for task-preserving backends)       |
//! | 4    | task       | backend returns; the supervisor queues `task_failed graceful_shutdown`   |
//! | 5    | supervisor | at the deadline, queues the same message for tasks that did not return  |
//! | 6    | main       | `Link::shutdown`: flush the outbox, close 1000, join the link thread      |
//! | 7    | main       | `Backend::shutdown`, exit 0                                              |
//!
//! A second signal at any point makes `run` return [`Exit::Aborted`] at once.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use log::{error, info, warn};

use crate::backend::{
    Backend, CancelSource, CancelToken, Completion, Failure, FailureReason, TaskRef,
};
use crate::bounded::BoundedSet;
use crate::lifecycle::{self, TaskResult};
use crate::link::LinkEvent;
use crate::metrics::{FailurePhase, Health, Metrics, ReconnectReason, RejectReason};
use crate::protocol::{Inbound, Outbound, TaskAssignment, TaskCancellation, text};
use crate::sd_notify::Notifier;
use crate::task::{self, TaskOptions};
use crate::threads::thread_name;

/// How many finished executions are remembered (for duplicate suppression and closure replays).
const HISTORY: usize = 4096;
/// Task threads block in syscalls; they need little stack. Pages are only committed when used.
const TASK_STACK: usize = 512 * 1024;

/// Where outbound messages go: the link in the daemon, a channel in tests.
pub trait Outbox {
    /// Queues one message. Must not block.
    fn send(&self, msg: Outbound);
}

impl<F: Fn(Outbound)> Outbox for F {
    fn send(&self, msg: Outbound) {
        self(msg)
    }
}

/// Where the supervisor reports what it does: counters, liveness, systemd.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub notifier: Arc<Notifier>,
}

impl Telemetry {
    /// Telemetry that nobody reads (run-once, tests): real counters, no exporters, no systemd.
    pub fn detached(
        worker_id: &str,
        backend: crate::backend::BackendKind,
        max: usize,
    ) -> Telemetry {
        Telemetry {
            metrics: Metrics::new(
                crate::metrics::WorkerInfo {
                    version: crate::VERSION.to_owned(),
                    backend: backend.as_str().to_owned(),
                    worker_id: worker_id.to_owned(),
                },
                max,
            ),
            health: Health::new(Duration::from_secs(30)),
            notifier: Arc::new(Notifier::disabled()),
        }
    }
}

/// How often the supervisor wakes when nothing happens, to prove it is alive (`/healthz`,
/// the systemd watchdog). Well under `Health`'s staleness limit.
const BEAT: Duration = Duration::from_secs(5);

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub worker_id: String,
    /// 0 = unbounded.
    pub max_concurrent_tasks: usize,
    pub one_shot: bool,
    pub task: TaskOptions,
    /// How long shutdown waits for cancelled tasks to report.
    pub shutdown_timeout: Duration,
    /// On the first signal, how long running tasks may finish before they are cancelled
    /// (zero: cancel at once, as the Go worker does).
    pub drain_timeout: Duration,
}

/// Why `run` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A signal asked for a graceful stop and every task was accounted for.
    Stopped,
    /// One-shot mode: the single task reached its outcome.
    OneShotDone,
    /// A second signal: stop now.
    Aborted,
    /// The link thread went away (a bug); tasks were cancelled and reported.
    LinkLost,
}

/// Internal events from the supervisor's own helper threads.
enum Internal {
    TaskDone {
        key: TaskRef,
        outcome: Result<Completion, Failure>,
        took: Duration,
    },
    CancelDone {
        key: TaskRef,
        result: Result<(), String>,
    },
}

struct Active {
    cancel: CancelToken,
    started: Instant,
    /// Keeps the task's secrets registered with the log redactor while it may log.
    _secrets: Option<crate::redact::Guard>,
    /// True once a terminal message was sent on the task's behalf (shutdown deadline), so a
    /// late outcome is logged but not reported twice.
    reported: bool,
    /// Left by a crashed predecessor (journal replay), not assigned to this run: it does not
    /// use up a one-shot worker's one task.
    recovered: bool,
    /// True once a legacy run-wide cancellation asked the backend to cancel this task, so a
    /// burst of cancellations costs one backend call.
    backend_cancel_sent: bool,
}

/// An execution-scoped cancellation waiting for the task to return and the backend to confirm.
#[derive(Debug, Default)]
struct Closing {
    task_returned: bool,
    backend: Option<Result<(), String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Draining (`--drain-timeout`): rejecting work, letting running tasks finish until `until`.
    Draining {
        until: Instant,
    },
    /// Shutting down: rejecting work, waiting for cancelled tasks until the deadline.
    Stopping {
        deadline: Instant,
    },
}

pub struct Supervisor {
    opts: Options,
    telemetry: Telemetry,
    backend: Arc<dyn Backend>,
    internal_tx: Sender<Internal>,
    internal_rx: Receiver<Internal>,
    tasks: HashMap<TaskRef, Active>,
    /// Handed-off executions, for routing later cancellations to the backend.
    dispatched: BoundedSet<TaskRef>,
    /// Recently finished executions (with an execution id).
    finished: BoundedSet<TaskRef>,
    /// Executions whose closure was confirmed (`execution_closed` sent).
    closed: BoundedSet<TaskRef>,
    closing: HashMap<TaskRef, Closing>,
    state: State,
    one_shot_used: bool,
    one_shot_done: bool,
    /// The outcome journal, when the state directory is usable.
    journal: Option<Arc<crate::journal::Journal>>,
}

impl Supervisor {
    pub fn new(opts: Options, backend: Arc<dyn Backend>, telemetry: Telemetry) -> Self {
        let (internal_tx, internal_rx) = crossbeam_channel::unbounded();
        Supervisor {
            opts,
            telemetry,
            backend,
            internal_tx,
            internal_rx,
            tasks: HashMap::new(),
            dispatched: BoundedSet::new(HISTORY),
            finished: BoundedSet::new(HISTORY),
            closed: BoundedSet::new(HISTORY),
            closing: HashMap::new(),
            state: State::Running,
            one_shot_used: false,
            one_shot_done: false,
            journal: None,
        }
    }

    /// Number of executions currently running on this worker.
    pub fn active(&self) -> usize {
        self.tasks.values().filter(|t| !t.reported).count()
    }

    /// Runs until shutdown. `signals` carries signal numbers.
    pub fn run(
        &mut self,
        outbox: &dyn Outbox,
        link: &Receiver<LinkEvent>,
        signals: &Receiver<i32>,
    ) -> Exit {
        let journal = self.journal.clone();
        let journaled;
        let outbox: &dyn Outbox = match &journal {
            Some(j) => {
                journaled = journaled::Journaled {
                    inner: outbox,
                    journal: j,
                    backend: self.backend.kind().as_str(),
                };
                &journaled
            }
            None => outbox,
        };
        self.reattach();
        let mut link_alive = true;
        loop {
            let wait = self.next_wakeup();
            let never = crossbeam_channel::never();
            let link_rx = if link_alive { link } else { &never };
            select! {
                recv(link_rx) -> ev => match ev {
                    Ok(ev) => self.on_link(outbox, ev),
                    Err(_) => {
                        error!("The Oz link thread stopped unexpectedly; shutting down");
                        link_alive = false;
                        self.begin_stop();
                    }
                },
                recv(self.internal_rx) -> ev => {
                    // The supervisor holds a sender itself, so this never disconnects.
                    if let Ok(ev) = ev {
                        self.on_internal(outbox, ev);
                    }
                },
                recv(signals) -> sig => if let Ok(sig) = sig
                    && self.on_signal(sig) {
                        return Exit::Aborted;
                    },
                default(wait) => {},
            }
            self.telemetry.health.beat();
            self.on_tick(outbox);
            if let Some(exit) = self.exit_now(link_alive) {
                return exit;
            }
        }
    }

    fn next_wakeup(&self) -> Duration {
        match self.state {
            State::Running => BEAT,
            State::Draining { until: deadline } | State::Stopping { deadline } => deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), BEAT),
        }
    }

    fn exit_now(&self, link_alive: bool) -> Option<Exit> {
        if self.state == State::Running {
            return None;
        }
        if self.waiting_for_tasks() {
            return None;
        }
        Some(if !link_alive {
            Exit::LinkLost
        } else if self.one_shot_done {
            Exit::OneShotDone
        } else {
            Exit::Stopped
        })
    }

    /// True while a cancelled task has neither returned nor been reported on.
    /// For task-preserving backends these are in-flight hand-offs, worth waiting for too.
    fn waiting_for_tasks(&self) -> bool {
        self.tasks.values().any(|t| !t.reported)
    }

    // --------------------------------------------------------------------------------------------
    // Link events
    // --------------------------------------------------------------------------------------------

    fn on_link(&mut self, outbox: &dyn Outbox, ev: LinkEvent) {
        match ev {
            LinkEvent::Connected => {
                self.telemetry.metrics.set_connected(true);
                info!("{}", lifecycle::connected());
            }
            // The link thread logs connection changes (once each); the supervisor counts them.
            LinkEvent::Disconnected { .. } => {
                self.telemetry.metrics.set_connected(false);
                self.telemetry
                    .metrics
                    .reconnect(ReconnectReason::RemoteClose);
            }
            // The worker closed the connection itself: nothing was lost, nothing to redial.
            LinkEvent::Closed { .. } => self.telemetry.metrics.set_connected(false),
            LinkEvent::DialFailed { .. } => {
                self.telemetry
                    .metrics
                    .reconnect(ReconnectReason::DialFailed);
            }
            LinkEvent::Message(msg) => self.on_message(outbox, msg),
        }
    }

    /// Handles one decoded server message.
    pub fn on_message(&mut self, outbox: &dyn Outbox, msg: Inbound) {
        match msg {
            Inbound::Assignment(a) => self.on_assignment(outbox, *a),
            Inbound::BadAssignment {
                task_id: Some(task_id),
                execution_id,
                error,
            } => {
                let key = TaskRef {
                    task_id,
                    execution_id,
                };
                error!("Task {key}: malformed assignment: {error}");
                if self.is_duplicate(&key) {
                    warn!("{}", lifecycle::duplicate(&key));
                    return;
                }
                self.claim(outbox, &key);
                self.fail_before_start(outbox, &key, &format!("invalid task assignment: {error}"));
            }
            Inbound::BadAssignment {
                task_id: None,
                error,
                ..
            } => error!("Ignoring a task assignment without a usable task_id: {error}"),
            Inbound::Cancellation(c) => self.on_cancellation(outbox, c),
            Inbound::Unknown(kind) => warn!("Unknown message type: {kind}"),
        }
    }

    fn claim(&self, outbox: &dyn Outbox, key: &TaskRef) {
        self.telemetry.metrics.task_claimed();
        outbox.send(Outbound::Claimed {
            task_id: key.task_id.clone(),
            worker_id: self.opts.worker_id.clone(),
            execution_id: key.execution_id.clone(),
        });
    }

    fn reject(&self, outbox: &dyn Outbox, key: &TaskRef, reason: RejectReason) {
        let text = match reason {
            RejectReason::AtCapacity => text::REJECT_AT_CAPACITY,
            RejectReason::ShuttingDown => text::REJECT_SHUTTING_DOWN,
            RejectReason::OneShotComplete => text::REJECT_ONE_SHOT,
        };
        info!("{}", lifecycle::rejected(key, text));
        self.telemetry.metrics.task_rejected(reason);
        outbox.send(Outbound::Rejected {
            task_id: key.task_id.clone(),
            reason: text.to_owned(),
        });
    }

    /// Reports a claimed task that never reached the backend, and counts it like any other
    /// finished task (so every claim is matched by exactly one result). The execution is
    /// remembered like any finished one, so a resend is not claimed and failed a second time.
    fn fail_before_start(&mut self, outbox: &dyn Outbox, key: &TaskRef, why: &str) {
        let metrics = &self.telemetry.metrics;
        metrics.task_finished(TaskResult::Failed, Duration::ZERO);
        metrics.task_failed(FailurePhase::Assignment, FailureReason::Unknown);
        outbox.send(lifecycle::failed_before_start(key, why));
        if key.execution_id.is_some() {
            self.finished.insert(key.clone());
        }
    }

    /// True for an execution that is running or was seen to its end: a resend of the same
    /// `(task_id, execution_id)` gets no second answer. Without an execution id only a running
    /// task counts (the legacy protocol reuses task ids for new runs).
    fn is_duplicate(&self, key: &TaskRef) -> bool {
        let seen_execution = key.execution_id.is_some()
            && (self.finished.contains(key)
                || self.dispatched.contains(key)
                || self.closed.contains(key));
        self.tasks.contains_key(key) || seen_execution
    }

    fn on_assignment(&mut self, outbox: &dyn Outbox, a: TaskAssignment) {
        let key = TaskRef {
            task_id: a.task_id.clone(),
            execution_id: a.execution_id.clone(),
        };
        if self.is_duplicate(&key) {
            warn!("{}", lifecycle::duplicate(&key));
            return;
        }
        if self.state != State::Running {
            return self.reject(outbox, &key, RejectReason::ShuttingDown);
        }
        if self.opts.one_shot && self.one_shot_used {
            return self.reject(outbox, &key, RejectReason::OneShotComplete);
        }
        let max = self.opts.max_concurrent_tasks;
        if max > 0 && self.active() >= max {
            return self.reject(outbox, &key, RejectReason::AtCapacity);
        }
        let Some(task_obj) = a.task.as_ref() else {
            error!("Task {key}: assignment has no task object");
            self.claim(outbox, &key);
            self.fail_before_start(outbox, &key, "task assignment has no task object");
            return;
        };
        let (spec, notes) = task::build_with_notes(&a, task_obj, &self.opts.task);
        for note in notes {
            log::log!(note.level, "Task {key}: {}", note.message);
        }
        let cancel = match CancelToken::new() {
            Ok(c) => c,
            Err(e) => {
                error!("Task {key}: cannot create a cancellation token: {e}");
                self.claim(outbox, &key);
                let hint = crate::threads::resource_hint(&e);
                self.fail_before_start(
                    outbox,
                    &key,
                    &format!("worker cannot track the task: {e}{hint}"),
                );
                return;
            }
        };
        // Register before claiming, so a claim is never sent for a task the worker then drops.
        let secrets = (!spec.secrets.is_empty()).then(|| crate::redact::register(&spec.secrets));
        self.tasks.insert(
            key.clone(),
            Active {
                cancel: cancel.clone(),
                started: Instant::now(),
                _secrets: secrets,
                reported: false,
                recovered: false,
                backend_cancel_sent: false,
            },
        );
        self.claim(outbox, &key);
        info!("{}", lifecycle::claimed(&key, &spec.task.title));
        if let Err(e) = self.spawn_task(key.clone(), spec, cancel) {
            error!("Task {key}: cannot start a task thread: {e}");
            self.tasks.remove(&key);
            let hint = crate::threads::resource_hint(&e);
            self.fail_before_start(
                outbox,
                &key,
                &format!("worker cannot start the task: {e}{hint}"),
            );
            return;
        }
        if self.opts.one_shot {
            self.one_shot_used = true;
        }
    }
}

mod closure;
mod journaled;
mod stop;
mod threads;

#[cfg(test)]
mod journaled_tests;
#[cfg(test)]
mod tests;
