//! Re-attach: at startup, this worker's Jobs whose outcome no worker reported (a worker stopped
//! while they ran, or they finished while no worker ran) are followed again and reported once.
//! A reported Job that is kept (failed, or `--no-cleanup`) carries the reported annotation, so
//! a later start never reports it again; a successful Job is deleted, which says the same.
//!
//! The task and execution ids come back from the Job's raw-id annotations, checked against its
//! hash labels (which the worker's selector matched). A Job made before those annotations
//! existed falls back to its id labels: they are sanitised, so it is re-attached only when its
//! hash labels prove the sanitised value is the raw id (true for the UUIDs Oz uses); otherwise
//! it is left to its TTL with a warning.

use serde_json::Value;

use super::KubernetesBackend;
use super::message::text;
use super::names::{self, Identity};
use super::runner::jobs_path;
use crate::backend::{Completion, Failure, FailureReason, TaskRef};
use crate::cancel::CancelToken;
use crate::kube::{Client, query_escape};

/// The executions to follow again, from a LIST of this worker's Jobs.
pub fn find(client: &Client, namespace: &str, worker_id: &str) -> Result<Vec<TaskRef>, String> {
    let target = format!(
        "{}?labelSelector={}",
        jobs_path(namespace),
        query_escape(&names::worker_selector(worker_id))
    );
    let list = client.get_ok(&target).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for job in list["items"].as_array().into_iter().flatten() {
        if let Some(t) = candidate(job) {
            out.push(t);
        }
    }
    Ok(out)
}

/// The execution a Job runs, when it still needs reporting and its ids are recoverable.
pub fn candidate(job: &Value) -> Option<TaskRef> {
    if names::reported(job).is_some() {
        return None;
    }
    let labels = &job["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(Value::as_str).unwrap_or("");
    let annotations = &job["metadata"]["annotations"];
    let annotated = |k: &str| annotations.get(k).and_then(Value::as_str);
    let (task, exec) = match (
        annotated(names::ANNOTATION_TASK_ID),
        annotated(names::ANNOTATION_EXECUTION_ID),
    ) {
        (Some(t), Some(e)) => (t, e),
        // A Job from before the annotations: the labels are all there is.
        _ => (get(names::LABEL_TASK_ID), get(names::LABEL_EXECUTION_ID)),
    };
    if task.is_empty()
        || names::label_hash(task) != get(names::LABEL_TASK_HASH)
        || names::label_hash(exec) != get(names::LABEL_EXECUTION_HASH)
    {
        log::warn!(
            "Kubernetes Job {} was not reported, but its task ids cannot be recovered from its annotations or labels; leaving it to its TTL",
            text(job, "/metadata/name")
        );
        return None;
    }
    Some(TaskRef {
        task_id: task.to_owned(),
        // The execution id falls back to the task id when the assignment had none.
        execution_id: (exec != task).then(|| exec.to_owned()),
    })
}

impl KubernetesBackend {
    /// Follows a re-attached execution to its end.
    pub(super) fn resume_task(
        &self,
        task: &TaskRef,
        cancel: &CancelToken,
    ) -> Result<Completion, Failure> {
        let exec_id = names::execution_id(&task.task_id, task.execution_id.as_deref()).to_owned();
        let identity = Identity {
            worker_id: &self.ctx.worker_id,
            task_id: &task.task_id,
            execution_id: &exec_id,
        };
        let name = identity.job_name();
        let hash = names::label_hash(&exec_id);
        let rx = self.hub.subscribe(&hash);
        let job = self
            .client
            .get_ok(&format!("{}/{name}", jobs_path(&self.settings.namespace)))
            .map_err(|e| {
                Failure::new(
                    FailureReason::JobWatch,
                    format!("failed to get Job {name}: {e}"),
                )
            })?;
        log::info!(job = name.as_str(); "Following Kubernetes Job {name} again after a worker restart");
        let uid = text(&job, "/metadata/uid").to_owned();
        let result = self.follow(&name, &uid, &hash, &rx, cancel);
        self.hub.unsubscribe(&hash);
        result
    }

    /// Marks a kept Job reported (a later start must not report it again).
    pub(super) fn mark_reported(&self, name: &str, uid: &str, outcome: &str) {
        let path = format!("{}/{name}", jobs_path(&self.settings.namespace));
        match self
            .client
            .merge_patch(&path, &names::reported_patch(uid, outcome))
        {
            Ok(r) if r.is_success() || r.status == 404 => {}
            Ok(r) => {
                log::warn!(job = name; "cannot mark Kubernetes Job {name} reported: {}", r.message())
            }
            Err(e) => log::warn!(job = name; "cannot mark Kubernetes Job {name} reported: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(task: &str, exec: &str, annotations: Value) -> Value {
        json!({"metadata": {"name": "j", "annotations": annotations, "labels": {
            names::LABEL_TASK_ID: names::label_value(task),
            names::LABEL_TASK_HASH: names::label_hash(task),
            names::LABEL_EXECUTION_ID: names::label_value(exec),
            names::LABEL_EXECUTION_HASH: names::label_hash(exec),
        }}})
    }

    #[test]
    fn unreported_jobs_with_recoverable_ids_are_candidates() {
        let id = "019f5de4-bfd1-762e-92ed-199c971abcba";
        let t = candidate(&job(id, "e-1", json!({}))).expect("candidate");
        assert_eq!(t.task_id, id);
        assert_eq!(t.execution_id.as_deref(), Some("e-1"));
        // No execution id: it fell back to the task id.
        let t = candidate(&job(id, id, json!({}))).expect("candidate");
        assert_eq!(t.execution_id, None);
        // Reported already.
        assert!(
            candidate(&job(
                id,
                "e-1",
                json!({names::ANNOTATION_REPORTED: "failed"})
            ))
            .is_none()
        );
        // Sanitisation changed the id and there are no id annotations (an older Job): not
        // recoverable.
        assert!(candidate(&job("Task_ONE", "e-1", json!({}))).is_none());
    }

    fn annotated(task: &str, exec: &str) -> Value {
        json!({names::ANNOTATION_TASK_ID: task, names::ANNOTATION_EXECUTION_ID: exec})
    }

    #[test]
    fn the_raw_ids_come_back_from_the_annotations_whatever_sanitising_did() {
        let long = format!("Task_ONE-{}", "x".repeat(80));
        for (task, exec) in [("Task_ONE", "Exec.1"), (long.as_str(), long.as_str())] {
            assert_ne!(names::label_value(task), task, "sanitising changes {task}");
            let t = candidate(&job(task, exec, annotated(task, exec))).expect("candidate");
            assert_eq!(t.task_id, task);
            let want = (exec != task).then(|| exec.to_owned());
            assert_eq!(t.execution_id, want);
        }
        // Annotations that disagree with the hash labels are not trusted.
        assert!(candidate(&job("Task_ONE", "e-1", annotated("Task_TWO", "e-1"))).is_none());
        assert!(candidate(&job("Task_ONE", "e-1", annotated("Task_ONE", "e-2"))).is_none());
        // Only one of the two annotations: the labels decide (here they can).
        let t = candidate(&job(
            "t-1",
            "e-1",
            json!({names::ANNOTATION_TASK_ID: "Other"}),
        ))
        .expect("candidate from labels");
        assert_eq!(t.task_id, "t-1");
    }

    #[test]
    fn a_generated_job_is_a_candidate_with_its_raw_ids() {
        let spec = super::super::fixtures::spec("Task_Upper-CASE", Some("EXEC_1"));
        let k = super::super::fixtures::settings();
        let job = super::super::job::task_job("w", &spec, &k).expect("manifest");
        let t = candidate(&job).expect("candidate");
        assert_eq!(t.task_id, "Task_Upper-CASE");
        assert_eq!(t.execution_id.as_deref(), Some("EXEC_1"));
    }
}
