//! The supervisor's hook into the outcome journal: claims and terminal messages are journalled
//! (and fsynced) on their way to the outbox, and a restarted worker's replay is turned into
//! messages and recovery tasks before any new work.

use super::*;
use crate::backend::Orphan;
use crate::journal::{self, Journal, Replay};

/// An [`Outbox`] that journals what it forwards: `task_claimed` before it is queued, and each
/// terminal message before it is queued. Everything else passes through.
pub(super) struct Journaled<'a> {
    pub inner: &'a dyn Outbox,
    pub journal: &'a Journal,
    pub backend: &'static str,
}

impl Outbox for Journaled<'_> {
    fn send(&self, msg: Outbound) {
        match &msg {
            Outbound::Claimed {
                task_id,
                execution_id,
                ..
            } => self
                .journal
                .claimed(&key_of(task_id, execution_id), self.backend),
            Outbound::Completed {
                task_id,
                execution_id,
                ..
            }
            | Outbound::Failed {
                task_id,
                execution_id,
                ..
            } => self
                .journal
                .ended(&key_of(task_id, execution_id), journal::terminal_of(&msg)),
            Outbound::Rejected { .. } | Outbound::ExecutionClosed { .. } => {}
        }
        self.inner.send(msg);
    }
}

fn key_of(task_id: &str, execution_id: &Option<String>) -> TaskRef {
    TaskRef {
        task_id: task_id.to_owned(),
        execution_id: execution_id.clone(),
    }
}

impl Supervisor {
    /// Journals claims and outcomes from now on.
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Acts on what a crashed (or stopped) predecessor left, before any new work: terminal
    /// messages never confirmed delivered are queued again, once; executions claimed and never
    /// ended are handed to the backend's `recover` on task threads, and their outcome is
    /// reported like any task's when `run` receives it.
    pub fn recover(&mut self, outbox: &dyn Outbox, replay: Replay) {
        if replay.skipped > 0 {
            warn!(
                "The outcome journal had {} damaged line(s) (a torn write after a crash?); \
                 they were skipped",
                replay.skipped
            );
        }
        for (key, terminal) in replay.undelivered {
            info!("Task {key}: sending the outcome a previous run could not deliver");
            outbox.send(journal::outbound_of(&key, &terminal));
            if key.execution_id.is_some() {
                self.finished.insert(key);
            }
        }
        for orphan in replay.unfinished {
            self.adopt(outbox, orphan);
        }
    }

    fn adopt(&mut self, outbox: &dyn Outbox, orphan: Orphan) {
        let key = orphan.task.clone();
        info!(
            "Task {key} was claimed by a previous run that did not finish it; resolving it \
             with the {} backend",
            self.backend.kind()
        );
        let current = self.backend.kind().as_str();
        if !orphan.backend.is_empty() && orphan.backend != current {
            let why = format!(
                "the worker restarted with the {current} backend while the task ran on the {} \
                 backend; its outcome is unknown",
                orphan.backend
            );
            warn!("Task {key}: {why}");
            self.send_journaled(outbox, lifecycle::failed_before_start(&key, &why));
            return;
        }
        let followed = self.follow_left_over(&key, move |backend, cancel| {
            backend.recover(&orphan, cancel)
        });
        if let Err(e) = followed {
            error!("Task {key}: {e}");
            let why = format!("the worker restarted and cannot resolve the task: {e}");
            self.send_journaled(outbox, lifecycle::failed_before_start(&key, &why));
        }
    }

    /// Sends through the journal when there is one (outside `run`, which wraps the outbox).
    fn send_journaled(&self, outbox: &dyn Outbox, msg: Outbound) {
        match &self.journal {
            Some(j) => Journaled {
                inner: outbox,
                journal: j,
                backend: self.backend.kind().as_str(),
            }
            .send(msg),
            None => outbox.send(msg),
        }
    }
}
