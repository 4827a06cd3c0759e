//! After a crash: the process group a crashed worker's direct task left running.
//!
//! The agent cannot be followed (its pipes died with the old process), so its group is stopped
//! (SIGTERM, `kill_grace`, SIGKILL) if it is still that group (see `process::orphan`), the
//! per-task workspace goes as after any task, and the task is reported failed, saying why.

use super::*;

impl DirectBackend {
    pub(super) fn recover_orphan(&self, orphan: &Orphan) -> Result<Completion, Failure> {
        let what = match orphan.process {
            Some(mark) => self.stop_group(orphan, mark),
            None => "it had not started an agent yet",
        };
        if let (Layout::PerTask { root }, true) = (&self.layout, self.ctx.cleanup)
            && workspace::check_component(&orphan.task.task_id).is_ok()
            && orphan
                .task
                .execution_id
                .as_deref()
                .is_none_or(|e| workspace::check_component(e).is_ok())
        {
            let dir = root.join(workspace::workspace_name(&orphan.task));
            match workspace::remove(&dir) {
                Ok(()) => log::info!(
                    "Task {}: removed the previous run's workspace {}",
                    orphan.task,
                    dir.display()
                ),
                Err(e) => log::warn!(
                    "Task {}: failed to remove {}: {e}",
                    orphan.task,
                    dir.display()
                ),
            }
        }
        Err(Failure::new(
            FailureReason::Unknown,
            format!("the worker restarted while the task ran; {what}"),
        ))
    }

    fn stop_group(&self, orphan: &Orphan, mark: crate::backend::ProcessMark) -> &'static str {
        use process::orphan::{Stopped, stop_group};
        match stop_group(mark.pgid, mark.start, self.ctx.timing.kill_grace) {
            Stopped::AlreadyGone => {
                log::info!(
                    "Task {}: the processes of the previous run are gone",
                    orphan.task
                );
                "its processes were already gone"
            }
            stopped => {
                log::warn!(
                    "Task {}: stopped process group {} left by the previous run ({})",
                    orphan.task,
                    mark.pgid,
                    if stopped == Stopped::Killed {
                        "SIGKILL"
                    } else {
                        "SIGTERM"
                    }
                );
                "its agent was stopped"
            }
        }
    }
}
