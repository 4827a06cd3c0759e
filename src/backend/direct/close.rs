//! After the agent: the env file, the teardown hook, the workspace and the temporary git
//! config directory go, whatever the task's result (which none of this can change).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::workspace::{self, Workspace};
use super::{DirectBackend, env, run_hook};
use crate::backend::CancelToken;
use crate::process::{Ended, GroupHandle, Limits, Redactor};
use crate::reporting::TaskReport;
use crate::task::TaskSpec;

impl DirectBackend {
    /// Post-task cleanup: env file, teardown hook, workspace, temporary git config directory.
    /// Never changes the task's result.
    pub(super) fn close(
        &self,
        spec: &TaskSpec,
        cancel: &CancelToken,
        group: &GroupHandle,
        ws: Workspace,
        report: &TaskReport,
    ) {
        let id = spec.task_id.as_str();
        if let Err(e) = workspace::remove(&ws.env_file) {
            log::warn!("Task {id}: failed to remove {}: {e}", ws.env_file.display());
        }
        if let Some(teardown) = &self.teardown_command {
            self.teardown(teardown, spec, cancel, group, &ws, report);
        }
        if ws.per_task {
            if self.ctx.cleanup {
                match workspace::remove(&ws.dir) {
                    Ok(()) => {
                        self.lock_created().remove(&ws.dir);
                    }
                    Err(e) => log::warn!(
                        "Task {id}: failed to remove workspace {}: {e}",
                        ws.dir.display()
                    ),
                }
            } else {
                log::info!("Skipping cleanup for workspace {}", ws.dir.display());
            }
        }
        if let Some(g) = &ws.gitconfig_dir
            && let Err(e) = workspace::remove(g)
        {
            log::warn!("Task {id}: failed to remove {}: {e}", g.display());
        }
    }

    /// Runs the teardown hook. After a cancellation it still runs, with `kill_grace` to finish;
    /// otherwise a cancellation that arrives during it stops it.
    fn teardown(
        &self,
        teardown: &str,
        spec: &TaskSpec,
        cancel: &CancelToken,
        group: &GroupHandle,
        ws: &Workspace,
        report: &TaskReport,
    ) {
        let id = spec.task_id.as_str();
        if self.shut_down.load(Ordering::Acquire) {
            log::warn!("Task {id}: skipping the teardown command, the worker is shutting down");
            return;
        }
        let grace = self.ctx.timing.kill_grace;
        let limits = if cancel.is_cancelled() {
            Limits {
                cancel: None,
                deadline: Some(Instant::now() + grace),
                grace,
                group: Some(group),
            }
        } else {
            Limits {
                cancel: Some(cancel),
                deadline: None,
                grace,
                group: Some(group),
            }
        };
        log::info!("Running teardown command for task {id}");
        let env = env::teardown_env(&self.worker_env, &spec.task_ref(), &ws.dir, &ws.gitconfig);
        if report.logs_enabled() {
            report.redact_also(env.redaction_values());
        }
        let secrets = Redactor::new(&spec.secrets);
        match run_hook(
            teardown, env, &ws.dir, &limits, &secrets, id, "teardown", report,
        ) {
            Ok(Ended::Exited(e)) if e.success() => {}
            Ok(Ended::Exited(e)) => log::warn!("Task {id}: teardown command failed: {e}"),
            Ok(Ended::Cancelled(e) | Ended::TimedOut(e)) => {
                log::warn!("Task {id}: teardown command stopped before it finished ({e})")
            }
            Err(e) => log::warn!("Task {id}: teardown command failed: {e}"),
        }
    }
}
