//! After a crash: the task containers a previous process of this worker id started.
//!
//! The journal names the executions a crashed run claimed and never reported. Startup
//! housekeeping spares their task containers ([`spared`]); [`DockerBackend::adopt`] then finds
//! each by its labels (worker, role, task and execution ids) and follows it: a running one to
//! its end (cancellation and shutdown reach it like any execution's), one that ended while no
//! worker ran is classified at once, one that never started is removed. Its output from
//! before the restart is not replayed into the log (`docker logs` still has it until removal).

use super::*;
use crate::docker::{ContainerSummary, WaitCondition};

/// True for a task container of one of the executions in `spare`.
pub(super) fn spared(c: &ContainerSummary, spare: &[TaskRef]) -> bool {
    c.labels.get(spec::LABEL_ROLE).map(String::as_str) == Some(spec::ROLE_TASK)
        && spare.iter().any(|t| labelled_for(c, t))
}

fn labelled_for(c: &ContainerSummary, task: &TaskRef) -> bool {
    let exec = c
        .labels
        .get(spec::LABEL_EXECUTION)
        .map_or("", String::as_str);
    c.labels.get(spec::LABEL_TASK) == Some(&task.task_id)
        && exec == task.execution_id.as_deref().unwrap_or("")
}

fn restarted(what: &str) -> Failure {
    Failure::new(
        FailureReason::Unknown,
        format!("the worker restarted while the task ran; {what}"),
    )
}

impl DockerBackend {
    pub(super) fn adopt(
        &self,
        orphan: &Orphan,
        cancel: &CancelToken,
    ) -> Result<Completion, Failure> {
        let task = &orphan.task;
        let worker = format!("{}={}", spec::LABEL_WORKER, self.ctx.worker_id);
        let role = format!("{}={}", spec::LABEL_ROLE, spec::ROLE_TASK);
        let task_label = format!("{}={}", spec::LABEL_TASK, task.task_id);
        let found = self
            .client
            .list_containers(true, &[&worker, &role, &task_label])
            .map_err(|e| restarted(&format!("its container cannot be looked up: {e}")))?;
        let Some(c) = found.into_iter().find(|c| labelled_for(c, task)) else {
            return Err(restarted(
                "no container of it was found (it had not been created, or was removed)",
            ));
        };
        let name = c
            .names
            .first()
            .map_or(c.id.as_str(), |n| n.trim_start_matches('/'))
            .to_owned();
        let exec = self.tracker.add(task.clone(), cancel.clone());
        exec.set_container(Container::Created {
            id: c.id.clone(),
            name: name.clone(),
        });
        let outcome = self.follow(task, &c, &name, &exec, cancel);
        self.finish(task, &exec);
        self.tracker.remove(&exec);
        outcome
    }

    fn follow(
        &self,
        task: &TaskRef,
        c: &ContainerSummary,
        name: &str,
        exec: &tracker::Execution,
        cancel: &CancelToken,
    ) -> Result<Completion, Failure> {
        if c.state == "created" {
            log::info!("Task {task}: container {name} of the previous run never started");
            return Err(restarted("its container had not started"));
        }
        if c.state == "running" {
            log::info!(
                "Task {task}: adopted container {name}, still running from the previous run"
            );
        } else {
            log::info!(
                "Task {task}: container {name} ended ({}) while no worker ran",
                c.state
            );
        }
        let client = self.client.with_abort(exec.abort.clone());
        let waited = client
            .wait_container(&c.id, WaitCondition::NotRunning)
            .and_then(|w| w.wait());
        let exit = match waited {
            Ok(exit) => exit,
            Err(_) if cancel.is_cancelled() => {
                run::stop_container(
                    &self.client,
                    &c.id,
                    self.ctx.timing.kill_grace,
                    &task.task_id,
                    name,
                );
                return Err(Failure::cancelled());
            }
            Err(e) => {
                return Err(Failure::new(
                    FailureReason::ContainerWait,
                    format!("error waiting for the adopted container: {e}"),
                ));
            }
        };
        let code = i32::try_from(exit.status_code).unwrap_or(i32::MAX);
        run::classify(&self.client, &c.id, code, &task.task_id, name, cancel)
    }
}
