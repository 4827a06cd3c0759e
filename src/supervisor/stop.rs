//! Signals, drain and shutdown: the supervisor's way out.

use super::*;

impl Supervisor {
    /// Returns true when the process must stop at once.
    pub(super) fn on_signal(&mut self, sig: i32) -> bool {
        match self.state {
            State::Running => {
                info!(
                    "Received signal {sig}; shutting down gracefully (send it again to exit at once)"
                );
                self.announce_stop();
                let running = self.active();
                let drain = self.opts.drain_timeout;
                if drain.is_zero() || running == 0 || self.backend.preserves_tasks_on_shutdown() {
                    self.begin_stop();
                } else {
                    info!(
                        "Draining: rejecting new assignments and letting {running} running task(s) \
                         finish for up to {:.0}s before cancelling them",
                        drain.as_secs_f64()
                    );
                    self.state = State::Draining {
                        until: Instant::now() + drain,
                    };
                }
                false
            }
            State::Draining { .. } | State::Stopping { .. } => {
                warn!("Received signal {sig} again; exiting immediately");
                true
            }
        }
    }

    /// Tells readiness probes and systemd that the worker is going away.
    pub(super) fn announce_stop(&self) {
        let t = &self.telemetry;
        t.health.set_draining();
        t.notifier.stopping();
        t.notifier
            .extend_timeout(self.opts.drain_timeout + self.opts.shutdown_timeout + BEAT);
    }

    pub(super) fn begin_stop(&mut self) {
        if let State::Stopping { .. } = self.state {
            return;
        }
        if self.state == State::Running {
            self.announce_stop();
        }
        let deadline = Instant::now() + self.opts.shutdown_timeout;
        self.state = State::Stopping { deadline };
        if self.tasks.is_empty() {
            return;
        }
        if self.backend.preserves_tasks_on_shutdown() {
            info!(
                "Preserving {} active task(s): the {} backend keeps them running after the worker stops",
                self.tasks.len(),
                self.backend.kind()
            );
            return;
        }
        info!(
            "Cancelling {} active task(s) for shutdown",
            self.tasks.len()
        );
        for task in self.tasks.values() {
            task.cancel.cancel(CancelSource::Shutdown);
        }
    }

    pub(super) fn on_tick(&mut self, outbox: &dyn Outbox) {
        if let State::Draining { until } = self.state {
            if Instant::now() >= until {
                info!(
                    "Drain timeout reached with {} task(s) still running",
                    self.active()
                );
                self.begin_stop();
            }
            return;
        }
        let State::Stopping { deadline } = self.state else {
            return;
        };
        if Instant::now() < deadline {
            return;
        }
        let preserve = self.backend.preserves_tasks_on_shutdown();
        let metrics = &self.telemetry.metrics;
        for (key, task) in self.tasks.iter_mut().filter(|(_, t)| !t.reported) {
            task.reported = true;
            if preserve {
                warn!("Task {key} is still being handed off at shutdown; leaving it");
                metrics.task_abandoned();
                continue;
            }
            metrics.task_finished(TaskResult::Failed, task.started.elapsed());
            metrics.task_failed(FailurePhase::Backend, FailureReason::GracefulShutdown);
            warn!(
                "Task {key} did not stop within the shutdown timeout; reporting it as interrupted"
            );
            outbox.send(lifecycle::abandoned_at_shutdown(key));
        }
    }
}
