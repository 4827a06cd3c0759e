//! Cancellation requests and execution-scoped closure (`execution_closed`).

use super::threads::panic_text;
use super::*;

impl Supervisor {
    pub(super) fn on_cancellation(&mut self, outbox: &dyn Outbox, c: TaskCancellation) {
        match c.execution_id {
            Some(execution_id) => {
                let key = TaskRef {
                    task_id: c.task_id,
                    execution_id: Some(execution_id),
                };
                self.cancel_execution(outbox, key);
            }
            None => self.cancel_run(&c.task_id),
        }
    }

    /// Legacy run-wide cancellation: every execution of the run, no closure messages.
    pub(super) fn cancel_run(&mut self, task_id: &str) {
        let mut found = false;
        let mut to_cancel = Vec::new();
        for (key, task) in self.tasks.iter_mut().filter(|(k, _)| k.task_id == task_id) {
            found = true;
            task.cancel.cancel(CancelSource::User);
            // A repeat of a cancellation already on its way to the backend costs nothing.
            if !std::mem::replace(&mut task.backend_cancel_sent, true) {
                info!("{}", lifecycle::cancellation_requested(key));
                to_cancel.push(key.clone());
            }
        }
        for key in to_cancel {
            self.spawn_cancel(key, false);
        }
        for key in self.dispatched.drain_matching(|k| k.task_id == task_id) {
            found = true;
            info!("{}", lifecycle::cancellation_requested(&key));
            self.spawn_cancel(key, false);
        }
        if !found {
            warn!("Cancellation for unknown task {task_id}; nothing to do");
        }
    }

    /// Execution-scoped cancellation: cancel, confirm with the backend, then `execution_closed`.
    pub(super) fn cancel_execution(&mut self, outbox: &dyn Outbox, key: TaskRef) {
        if self.closed.contains(&key) {
            info!("Task {key} is already closed; replaying execution_closed");
            return send_closed(outbox, &key);
        }
        if self.closing.contains_key(&key) {
            info!("Task {key} is already being closed");
            return;
        }
        if let Some(task) = self.tasks.get(&key) {
            info!("{}", lifecycle::cancellation_requested(&key));
            task.cancel.cancel(CancelSource::User);
            self.closing.insert(key.clone(), Closing::default());
            self.spawn_cancel(key, true);
        } else if self.dispatched.remove(&key) || self.finished.contains(&key) {
            info!("{}", lifecycle::cancellation_requested(&key));
            self.closing.insert(
                key.clone(),
                Closing {
                    task_returned: true,
                    backend: None,
                },
            );
            self.spawn_cancel(key, true);
        } else {
            warn!("Cancellation for unknown execution {key}; nothing to do");
        }
    }

    pub(super) fn spawn_cancel(&self, key: TaskRef, report: bool) {
        let backend = Arc::clone(&self.backend);
        let tx = self.internal_tx.clone();
        let builder = std::thread::Builder::new()
            .name(thread_name("c-", &key.task_id))
            .stack_size(TASK_STACK);
        let spawned = crate::threads::spawn_tracked(builder, {
            let key = key.clone();
            move || {
                let result = catch_unwind(AssertUnwindSafe(|| backend.cancel(&key)))
                    .unwrap_or_else(|p| Err(format!("cancel panicked: {}", panic_text(&p))));
                if report {
                    let _ = tx.send(Internal::CancelDone { key, result });
                } else if let Err(e) = result {
                    warn!("Task {key}: backend cancellation failed: {e}");
                }
            }
        });
        if let Err(e) = spawned {
            error!("Task {key}: cannot start a cancellation thread: {e}");
            if report {
                let _ = self.internal_tx.send(Internal::CancelDone {
                    key,
                    result: Err(format!("cannot start a cancellation thread: {e}")),
                });
            }
        }
    }

    pub(super) fn try_close(&mut self, outbox: &dyn Outbox, key: &TaskRef) {
        let Some(c) = self.closing.get(key) else {
            return;
        };
        if !c.task_returned {
            return;
        }
        match &c.backend {
            None => {}
            Some(Ok(())) => {
                self.closing.remove(key);
                self.closed.insert(key.clone());
                info!("Task {key} closed");
                send_closed(outbox, key);
            }
            Some(Err(e)) => {
                // Keep nothing: the server may retry, and a retry runs the closure again.
                warn!("Task {key}: could not confirm closure: {e}");
                self.closing.remove(key);
                self.finished.insert(key.clone());
            }
        }
    }
}

pub(super) fn send_closed(outbox: &dyn Outbox, key: &TaskRef) {
    if let Some(execution_id) = &key.execution_id {
        outbox.send(Outbound::ExecutionClosed {
            task_id: key.task_id.clone(),
            execution_id: execution_id.clone(),
        });
    }
}
