//! Task threads: starting one per execution (new, recovered from the journal, re-attached),
//! and taking its outcome back. The decisions about what the outcome means are
//! [`crate::lifecycle`]'s; this keeps the bookkeeping around them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use super::{Active, Internal, Outbox, Supervisor, TASK_STACK};
use crate::backend::{Backend, CancelToken, Completion, Failure, FailureReason, TaskRef};
use crate::lifecycle::{self, TaskResult};
use crate::metrics::FailurePhase;
use crate::task::TaskSpec;
use crate::threads::thread_name;

impl Supervisor {
    pub(super) fn spawn_task(
        &self,
        key: TaskRef,
        spec: TaskSpec,
        cancel: CancelToken,
    ) -> std::io::Result<()> {
        self.spawn_job(key, cancel, move |backend, cancel| {
            backend.execute(&spec, cancel)
        })
    }

    /// Runs `job` on a task thread named after the task; its outcome comes back as `TaskDone`.
    pub(super) fn spawn_job<F>(
        &self,
        key: TaskRef,
        cancel: CancelToken,
        job: F,
    ) -> std::io::Result<()>
    where
        F: FnOnce(&dyn Backend, &CancelToken) -> Result<Completion, Failure> + Send + 'static,
    {
        let backend = Arc::clone(&self.backend);
        let tx = self.internal_tx.clone();
        let builder = std::thread::Builder::new()
            .name(thread_name("t-", &key.task_id))
            .stack_size(TASK_STACK);
        // Tracked: shutdown joins task threads with a deadline and names the stragglers.
        crate::threads::spawn_tracked(builder, move || {
            let _scope = crate::logging::task_scope(&key.task_id);
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| job(&*backend, &cancel)))
                .unwrap_or_else(|panic| {
                    Err(Failure::new(
                        FailureReason::Unknown,
                        format!(
                            "worker bug: the task thread panicked: {}",
                            panic_text(&panic)
                        ),
                    ))
                });
            // The supervisor outlives every task thread it waits for; if it is gone the
            // process is exiting and there is no one left to tell.
            let _ = tx.send(Internal::TaskDone {
                key,
                outcome,
                took: started.elapsed(),
            });
        })
    }

    /// Follows the executions a previous worker process left running (re-attach): they were
    /// claimed then, so no claim now; their outcome is reported once, like any task's.
    pub(super) fn reattach(&mut self) {
        for key in self.backend.reattach() {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let resumed = key.clone();
            match self.follow_left_over(&key, move |backend, cancel| {
                backend.resume(&resumed, cancel)
            }) {
                Ok(()) => {
                    self.telemetry.metrics.task_claimed();
                    info!(
                        "Task {key}: re-attached to the execution a previous worker process left running"
                    );
                }
                Err(e) => error!("Task {key}: cannot re-attach: {e}"),
            }
        }
    }

    /// Tracks and follows an execution a previous worker process left behind (journal
    /// recovery, Kubernetes re-attach) on a task thread: no claim now, and its outcome is
    /// reported once like any task's. It does not use up a one-shot worker's task.
    pub(super) fn follow_left_over<F>(&mut self, key: &TaskRef, job: F) -> Result<(), String>
    where
        F: FnOnce(&dyn Backend, &CancelToken) -> Result<Completion, Failure> + Send + 'static,
    {
        let cancel =
            CancelToken::new().map_err(|e| format!("cannot create a cancellation token: {e}"))?;
        self.tasks.insert(
            key.clone(),
            Active {
                cancel: cancel.clone(),
                started: Instant::now(),
                _secrets: None,
                reported: false,
                recovered: true,
                backend_cancel_sent: false,
            },
        );
        if let Err(e) = self.spawn_job(key.clone(), cancel, job) {
            self.tasks.remove(key);
            return Err(format!("cannot start a task thread: {e}"));
        }
        Ok(())
    }

    pub(super) fn on_internal(&mut self, outbox: &dyn Outbox, ev: Internal) {
        match ev {
            Internal::TaskDone { key, outcome, took } => {
                self.on_task_done(outbox, key, outcome, took)
            }
            Internal::CancelDone { key, result } => {
                if let Some(c) = self.closing.get_mut(&key) {
                    c.backend = Some(result);
                }
                self.try_close(outbox, &key);
            }
        }
    }

    fn on_task_done(
        &mut self,
        outbox: &dyn Outbox,
        key: TaskRef,
        outcome: Result<Completion, Failure>,
        took: Duration,
    ) {
        let Some(task) = self.tasks.remove(&key) else {
            error!("Task {key}: outcome for an unknown task ignored");
            return;
        };
        let verdict = lifecycle::verdict(&key, &outcome, task.cancel.source());
        let line = lifecycle::finished(&key, &verdict, took);
        if verdict.result == TaskResult::Failed {
            warn!("{line}");
        } else {
            info!("{line}");
        }
        if task.reported {
            warn!("Task {key} returned after it was already reported as interrupted");
        } else {
            let metrics = &self.telemetry.metrics;
            metrics.task_finished(verdict.result, took);
            if let Some(reason) = verdict.reason {
                metrics.task_failed(FailurePhase::Backend, reason);
            }
            if let Some(msg) = verdict.message {
                outbox.send(msg);
            }
        }
        if verdict.result == TaskResult::Dispatched
            && let Some(j) = &self.journal
        {
            // Handed off: the remote side owns the outcome; nothing to carry across a crash.
            j.ended(&key, None);
        }
        if key.execution_id.is_some() {
            if verdict.result == TaskResult::Dispatched {
                self.dispatched.insert(key.clone());
            } else {
                self.finished.insert(key.clone());
            }
        } else if verdict.result == TaskResult::Dispatched {
            self.dispatched.insert(key.clone());
        }
        if let Some(c) = self.closing.get_mut(&key) {
            c.task_returned = true;
            if verdict.result == TaskResult::Dispatched {
                // Cancelled while dispatching: the backend's cancel covers the hand-off too.
                self.dispatched.remove(&key);
            }
        }
        self.try_close(outbox, &key);
        if self.opts.one_shot && !task.recovered {
            self.one_shot_done = true;
            info!("One-shot task finished; stopping");
            self.begin_stop();
        }
    }
}

pub(super) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
