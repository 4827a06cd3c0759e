//! One task: create its Job, follow it through the shared watches (and a 30 s safety poll, at
//! the cadence `pace` decides), classify, clean up, and cancel by deleting the Job after
//! checking whose it is.

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::KubernetesBackend;
use super::cleanup::{self, Action, Ending};
use super::details::Source;
use super::job;
use super::message::{self, text};
use super::names::{self, Identity};
use super::outcome::{self, Context, FirstSeen, Observation, Verdict};
use super::pace::{Look, Pace};
use super::reporter::Reporter;
use super::watch::Resource;
use crate::backend::{BackendKind, Completion, Failure, FailureReason, TaskRef};
use crate::cancel::CancelToken;
use crate::kube::query_escape;
use crate::reporting::{SetupPhase, TaskReport};
use crate::task::TaskSpec;

/// How often a waiting task looks at its cancel token between watch notifications.
const CANCEL_CHECK: Duration = Duration::from_millis(200);

fn outcome_word(ending: Ending) -> &'static str {
    match ending {
        Ending::Succeeded => "succeeded",
        Ending::Failed { .. } => "failed",
        Ending::Cancelled => "cancelled",
        Ending::Shutdown => "preserved",
    }
}

fn job_failed(job: &Value) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| text(c, "/type") == "Failed" && text(c, "/status") == "True")
}

/// The UIDs whose events explain a pending task: its pods, or the Job while it has none
/// (`FailedCreate`).
fn event_subjects(job: Option<&Value>, pods: &[Value]) -> Vec<String> {
    let mut uids: Vec<&str> = pods.iter().map(|p| text(p, "/metadata/uid")).collect();
    if pods.is_empty()
        && let Some(j) = job
    {
        uids.push(text(j, "/metadata/uid"));
    }
    uids.into_iter()
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn jobs_path(ns: &str) -> String {
    format!("/apis/batch/v1/namespaces/{ns}/jobs")
}

fn job_path(ns: &str, name: &str) -> String {
    format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}")
}

fn pods_query(ns: &str, selector: &str) -> String {
    format!(
        "/api/v1/namespaces/{ns}/pods?labelSelector={}",
        query_escape(selector)
    )
}

/// Unsubscribes when the task ends, however it ends.
struct Subscription<'a> {
    backend: &'a KubernetesBackend,
    hash: String,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.backend.hub.unsubscribe(&self.hash);
    }
}

impl KubernetesBackend {
    pub(super) fn run_task(
        &self,
        spec: &TaskSpec,
        cancel: &CancelToken,
    ) -> Result<Completion, Failure> {
        // Flushes the task's logs (≤ 5 s) before the outcome is reported; events are posted
        // off the task's path.
        let report = crate::backend::task_report(&self.ctx, BackendKind::Kubernetes, spec);
        let result = self.run_reported(spec, cancel, &report);
        report.finish();
        result
    }

    fn run_reported(
        &self,
        spec: &TaskSpec,
        cancel: &CancelToken,
        report: &TaskReport,
    ) -> Result<Completion, Failure> {
        let k = &self.settings;
        let ns = k.namespace.as_str();
        let manifest = job::task_job(&self.ctx.worker_id, spec, k)?;
        // The operator's literal pod env values join the task's `env_vars` as secrets of its
        // exported output; `valueFrom` ones cannot be known.
        report.add_secrets(job::operator_env_values(k));
        let name = text(&manifest, "/metadata/name").to_owned();
        let exec_id = names::execution_id(&spec.task_id, spec.execution_id.as_deref()).to_owned();
        let hash = names::label_hash(&exec_id);
        let rx = self.hub.subscribe(&hash);
        let _sub = Subscription {
            backend: self,
            hash: hash.clone(),
        };
        let span = report.begin(SetupPhase::JobCreate);
        let created = self.client.request("POST", &jobs_path(ns), Some(&manifest));
        // A 409 is this execution's Job existing already (adopted below) or another's (an
        // error reported by `adopt`): either way the POST itself was answered.
        let post_failed = created
            .as_ref()
            .map_or(true, |r| !matches!(r.status, 200 | 201 | 409));
        report.end(span, post_failed, cancel.is_cancelled());
        let created = created.map_err(|e| {
            Failure::new(
                FailureReason::JobCreate,
                format!("failed to create Kubernetes Job: {e}"),
            )
        })?;
        let uid = match created.status {
            200 | 201 => text(&created.body, "/metadata/uid").to_owned(),
            409 => self.adopt(&name, spec)?,
            _ => {
                return Err(Failure::new(
                    FailureReason::JobCreate,
                    format!("failed to create Kubernetes Job: {}", created.message()),
                ));
            }
        };
        log::info!(job = name.as_str(), namespace = ns; "Created Kubernetes Job {name} for task {}", spec.task_ref());
        let mut reporter =
            Reporter::following(report, &self.client, ns, &spec.task_ref().to_string());
        let result = self.follow_reporting(&name, &uid, &hash, &rx, cancel, &mut reporter);
        // The streams end before the report's final flush: drained (≤ 2 s) after an ending,
        // aborted at once on cancellation or shutdown (the Job is deleted or preserved).
        reporter.close(cancel.is_cancelled() || self.hub.stopped());
        result
    }

    /// A 409 on create: the Job exists. If it is this execution's (a redelivered assignment, a
    /// restart), follow it; otherwise fail.
    fn adopt(&self, name: &str, spec: &TaskSpec) -> Result<String, Failure> {
        let ns = &self.settings.namespace;
        let identity = Identity {
            worker_id: &self.ctx.worker_id,
            task_id: &spec.task_id,
            execution_id: names::execution_id(&spec.task_id, spec.execution_id.as_deref()),
        };
        let existing = self.client.get_ok(&job_path(ns, name)).map_err(|e| {
            Failure::new(
                FailureReason::JobCreate,
                format!("failed to create Kubernetes Job: {e}"),
            )
        })?;
        if names::labels_match(&existing["metadata"]["labels"], &identity) {
            log::info!(job = name; "Kubernetes Job {name} already exists for this execution; following it");
            Ok(text(&existing, "/metadata/uid").to_owned())
        } else {
            Err(Failure::new(
                FailureReason::JobCreate,
                format!(
                    "failed to create Kubernetes Job: jobs.batch {name:?} already exists and belongs to another execution"
                ),
            ))
        }
    }

    /// Follows a created Job to its outcome, then cleans up; reports nothing besides.
    pub(super) fn follow(
        &self,
        name: &str,
        uid: &str,
        hash: &str,
        rx: &crossbeam_channel::Receiver<()>,
        cancel: &CancelToken,
    ) -> Result<Completion, Failure> {
        let disabled = TaskReport::disabled();
        let mut reporter = Reporter::new(&disabled);
        self.follow_reporting(name, uid, hash, rx, cancel, &mut reporter)
    }

    /// [`KubernetesBackend::follow`], reporting setup phases and failed pods' logs.
    fn follow_reporting(
        &self,
        name: &str,
        uid: &str,
        hash: &str,
        rx: &crossbeam_channel::Receiver<()>,
        cancel: &CancelToken,
        reporter: &mut Reporter<'_>,
    ) -> Result<Completion, Failure> {
        let k = &self.settings;
        let ns = k.namespace.as_str();
        let ctx = Context {
            namespace: ns,
            job_name: name,
            job_uid: (!uid.is_empty()).then_some(uid),
            unschedulable_timeout: k.unschedulable_timeout,
            volume_mount_timeout: k.volume_mount_timeout,
        };
        let mut first = FirstSeen::default();
        let mut pace = Pace::new(Instant::now());
        let mut events: Vec<Value> = Vec::new();
        loop {
            let woke = rx.recv_timeout(CANCEL_CHECK).is_ok();
            if cancel.is_cancelled() {
                // User cancellation deletes the Job in `cancel`; shutdown preserves it.
                return Err(Failure::cancelled());
            }
            if self.hub.stopped() {
                // The worker shut down (`Backend::shutdown`) and gave this preserved task up:
                // no outcome is sent any more, but the task's logs are flushed (≤ 5 s) and its
                // follows closed before the daemon's final join. The Job keeps running.
                return Err(Failure::cancelled());
            }
            let look = pace.look(
                Instant::now(),
                woke,
                !first.is_empty(),
                self.hub.has_job(name),
            );
            let (job, pods, source) = match look {
                Look::Skip => continue,
                Look::Poll => match self.poll(name, hash) {
                    Ok((job, pods)) => (job, pods, Source::SafetyPoll),
                    Err(f) => return Err(f),
                },
                Look::Cache => {
                    let job = self.hub.job(name);
                    // A failed Job is judged by its pods (reference §5.4); the pod watch may
                    // lag the Job watch, so list them fresh rather than trust the cache.
                    let pods = if job.as_ref().is_some_and(job_failed) {
                        self.list_pods(name, hash)?
                    } else {
                        self.hub.pods(hash)
                    };
                    (job, pods, Source::JobWatch)
                }
            };
            if job.is_some() || !pods.is_empty() {
                // A pod of this execution proves its Job existed too, even when the Job watch's
                // own events were never looked at in between: once the Job is gone from the
                // cache, the next look fetches it rather than wait for the 30 s poll.
                pace.saw_job();
            }
            if job.is_none() && source == Source::SafetyPoll {
                // The GET said 404: the Job was deleted after we created it. A cancellation
                // deletes it only after firing the token, so a cancelled task is seen as such.
                if cancel.is_cancelled() {
                    return Err(Failure::cancelled());
                }
                if let Verdict::Failed(f) = outcome::job_vanished(&ctx, source, SystemTime::now()) {
                    log::warn!(job = name; "{}", f.failure.message);
                    let details = serde_json::to_string(&f.details).ok();
                    return Err(f.failure.with_details(details));
                }
            }
            reporter.observe(&pods, cancel.is_cancelled());
            let pending = pods.is_empty()
                || pods
                    .iter()
                    .any(|p| matches!(text(p, "/status/phase"), "Pending" | "Failed" | ""));
            let subjects = event_subjects(job.as_ref(), &pods);
            if pace.list_events(Instant::now(), pending, pods.is_empty(), &subjects, woke) {
                events = self.events(&subjects);
            }
            let obs = Observation {
                job: job.as_ref(),
                pods: &pods,
                events: &events,
                source,
                now: SystemTime::now(),
            };
            match outcome::classify(&ctx, &obs, &mut first) {
                Verdict::Running => {}
                Verdict::Succeeded => {
                    // A container that started and ended between two looks at the pods (or a
                    // pod cache lagging the Job watch) is still followed: its log is whole.
                    if reporter.misses(&pods)
                        && let Ok(fresh) = self.list_pods(name, hash)
                    {
                        reporter.observe(&fresh, cancel.is_cancelled());
                    }
                    log::info!(job = name; "Kubernetes Job {name} completed");
                    self.finish(Ending::Succeeded, name, uid, job.as_ref());
                    return Ok(Completion::Finished);
                }
                Verdict::Failed(f) => {
                    if let Some(pod) = &f.pod {
                        self.log_pod(pod, &pods, reporter);
                    }
                    self.finish(
                        Ending::Failed { stopped: f.stopped },
                        name,
                        uid,
                        job.as_ref(),
                    );
                    let details = serde_json::to_string(&f.details).ok();
                    return Err(f.failure.with_details(details));
                }
            }
        }
    }

    /// The safety poll: GET the Job, LIST the execution's pods.
    fn poll(&self, name: &str, hash: &str) -> Result<(Option<Value>, Vec<Value>), Failure> {
        let ns = &self.settings.namespace;
        let r = self
            .client
            .request("GET", &job_path(ns, name), None)
            .map_err(|e| {
                Failure::new(
                    FailureReason::JobWatch,
                    format!("failed to get Job {name}: {e}"),
                )
            })?;
        let job = match r.status {
            200 => {
                self.hub.remember(Resource::Jobs, &r.body);
                Some(r.body)
            }
            404 => None,
            _ => {
                return Err(Failure::new(
                    FailureReason::JobWatch,
                    format!("failed to get Job {name}: {}", r.message()),
                ));
            }
        };
        Ok((job, self.list_pods(name, hash)?))
    }

    fn list_pods(&self, name: &str, hash: &str) -> Result<Vec<Value>, Failure> {
        let ns = &self.settings.namespace;
        let selector = format!("{}={hash}", names::LABEL_EXECUTION_HASH);
        let pods = self
            .client
            .get_ok(&pods_query(ns, &selector))
            .map_err(|e| {
                Failure::new(
                    FailureReason::PodWatch,
                    format!("failed to list task pods for Job {name}: {e}"),
                )
            })?;
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        for p in &pods {
            self.hub.remember(Resource::Pods, p);
        }
        Ok(pods)
    }

    /// Events about these objects (see [`event_subjects`]). Errors are logged, not fatal.
    fn events(&self, uids: &[String]) -> Vec<Value> {
        let ns = &self.settings.namespace;
        let mut out = Vec::new();
        for uid in uids {
            let target = format!(
                "/api/v1/namespaces/{ns}/events?fieldSelector={}",
                query_escape(&format!("involvedObject.uid={uid}"))
            );
            match self.client.get_ok(&target) {
                Ok(v) => out.extend(v["items"].as_array().cloned().unwrap_or_default()),
                Err(e) => log::warn!("kubernetes: listing events failed: {e}"),
            }
        }
        out
    }

    /// Logs the failing pod's containers' output (diagnostics, reference §5.5) and hands the
    /// lines of containers no live follow covered to the task-log export.
    fn log_pod(&self, pod_name: &str, pods: &[Value], reporter: &Reporter<'_>) {
        let ns = &self.settings.namespace;
        let Some(pod) = pods.iter().find(|p| text(p, "/metadata/name") == pod_name) else {
            return;
        };
        for c in message::log_containers(pod) {
            let target = format!(
                "/api/v1/namespaces/{ns}/pods/{pod_name}/log?container={}&limitBytes={}",
                query_escape(c),
                message::LOG_LIMIT_BYTES
            );
            if let Ok(r) = self.client.request("GET", &target, None)
                && r.is_success()
                && let Some(t) = r.body.as_str()
                && !t.trim().is_empty()
            {
                log::info!(pod = pod_name, container = c; "{}", message::log_section(pod_name, c, t));
                reporter.pod_log(text(pod, "/metadata/uid"), pod_name, c, t);
            }
        }
    }

    /// Delete, expire or keep the Job, as `cleanup::decide` says.
    fn finish(&self, ending: Ending, name: &str, uid: &str, job: Option<&Value>) {
        match cleanup::decide(ending, self.ctx.cleanup) {
            Action::Keep => {
                log::info!(job = name; "Keeping Kubernetes Job {name} (until its TTL)");
                self.mark_reported(name, uid, outcome_word(ending));
            }
            Action::Delete => self.delete_job(name, Some(uid)),
            Action::Expire => {
                // Expire first, then mark: the mark changes the resourceVersion that fences
                // the expiry, and a missing snapshot is read rather than skipping the expiry.
                self.expire(name, uid, job);
                self.mark_reported(name, uid, outcome_word(ending));
            }
        }
    }

    /// Stops a failed execution's still-active Job but keeps it (fenced merge-patch; a 409
    /// means the Job changed: read it again and retry, up to three times).
    fn expire(&self, name: &str, uid: &str, job: Option<&Value>) {
        let path = job_path(&self.settings.namespace, name);
        let mut current = job.cloned().or_else(|| self.client.get_ok(&path).ok());
        for _ in 0..3 {
            let Some(j) = current.take() else { return };
            if !uid.is_empty() && text(&j, "/metadata/uid") != uid {
                log::warn!(job = name; "Kubernetes Job {name} was replaced; refusing to expire another execution");
                return;
            }
            match self.client.merge_patch(&path, &cleanup::expire_patch(&j)) {
                Ok(r) if r.is_success() || r.status == 404 => {
                    log::info!(job = name; "Expired Kubernetes Job {name}: its pod stops, the Job stays until its TTL");
                    return;
                }
                Ok(r) if r.status == 409 => current = self.client.get_ok(&path).ok(),
                Ok(r) => {
                    log::warn!(job = name; "failed to stop Kubernetes Job {name}: {}", r.message());
                    return;
                }
                Err(e) => {
                    log::warn!(job = name; "failed to stop Kubernetes Job {name}: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn delete_job(&self, name: &str, uid: Option<&str>) {
        let ns = &self.settings.namespace;
        match self.client.request(
            "DELETE",
            &job_path(ns, name),
            Some(&cleanup::delete_options(uid)),
        ) {
            Ok(r) if r.is_success() || r.status == 404 => {
                log::info!(job = name; "Deleted Kubernetes Job {name}");
            }
            Ok(r) => {
                log::warn!(job = name; "failed to delete Kubernetes Job {name}: {}", r.message())
            }
            Err(e) => log::warn!(job = name; "failed to delete Kubernetes Job {name}: {e}"),
        }
    }

    /// Cancellation: delete the Job, after checking its labels say it is this execution's
    /// (the name keeps only 8 characters of the execution id).
    pub(super) fn cancel_task(&self, task: &TaskRef) -> Result<(), String> {
        let ns = &self.settings.namespace;
        let identity = Identity {
            worker_id: &self.ctx.worker_id,
            task_id: &task.task_id,
            execution_id: names::execution_id(&task.task_id, task.execution_id.as_deref()),
        };
        let name = identity.job_name();
        let r = self
            .client
            .request("GET", &job_path(ns, &name), None)
            .map_err(|e| format!("cannot look up Kubernetes Job {name}: {e}"))?;
        match r.status {
            404 => return Ok(()),
            200 => {}
            _ => {
                return Err(format!(
                    "cannot look up Kubernetes Job {name}: {}",
                    r.message()
                ));
            }
        }
        if !names::labels_match(&r.body["metadata"]["labels"], &identity) {
            return Err(format!(
                "Kubernetes Job {name} belongs to another execution; not deleting it"
            ));
        }
        log::info!(job = name.as_str(); "Deleting Kubernetes Job {name} for cancelled task {task}");
        self.delete_job(&name, Some(text(&r.body, "/metadata/uid")));
        Ok(())
    }
}
