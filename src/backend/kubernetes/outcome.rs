//! What a task's Job and pods say about its outcome (reference `kubernetes-backend.md` §5.3,
//! §5.4, §6; failure details per `upstream-newer.md` §1.3).
//!
//! [`classify`] is a pure function of what the runner last saw (the Job, the execution's pods,
//! their events, the time) plus [`FirstSeen`], the runner's memory of when a tolerated condition
//! first appeared. The runner calls it after every watch event and every safety poll; the first
//! [`Verdict`] other than `Running` is the task's outcome.
//!
//! Where this does better than the Go worker (each noted in the README's differences):
//! - `FailedMount` is tolerated for `volume_mount_timeout` (one transient event failed a task),
//!   and forgotten once the pod shows its volumes mounted (sandbox created, image pulling, a
//!   container started) even while it stays Pending;
//! - a Job that ran past `activeDeadlineSeconds` reports `active_deadline` (with the exit code)
//!   instead of the `container_exit` 143 its killed pod shows;
//! - a pod with a `DisruptionTarget` condition (preemption, API eviction, taint or node-shutdown
//!   termination) reports `evicted` instead of the SIGTERM exit it causes;
//! - a Job whose pods the controller cannot create (`FailedCreate`: admission, quota) fails with
//!   `job_create` after `unschedulable_timeout` instead of waiting for its deadline;
//! - a Job replaced under the same name (another UID) fails the task (`job_watch`), as newer
//!   upstream does.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::details::{
    Builder, ContainerKind, FailureDetails, Source, event_first, event_last, event_message,
    event_subject,
};
use super::message::{self, Kind, int, text};
use super::sidecars::COPY_FAILED_MARKER;
use super::time;
use crate::backend::{Failure, FailureReason};

/// Waiting reasons that do not resolve by themselves.
const IMMEDIATE_WAITING: [&str; 5] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
];

/// The task's settings that classification depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub namespace: &'a str,
    pub job_name: &'a str,
    /// The UID the Job POST returned; a Job with another UID under the same name is not ours.
    pub job_uid: Option<&'a str>,
    /// `None` never fails on `Unschedulable` (nor on `FailedCreate`).
    pub unschedulable_timeout: Option<Duration>,
    /// `None` never fails on `FailedMount`; zero fails on the first one (as the Go worker).
    pub volume_mount_timeout: Option<Duration>,
}

/// What the runner last saw.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The task Job, once seen.
    pub job: Option<&'a Value>,
    /// The execution's pods (selected by `oz-execution-hash`).
    pub pods: &'a [Value],
    /// Events about those pods and the Job (core `v1` or `events.k8s.io/v1`).
    pub events: &'a [Value],
    pub source: Source,
    pub now: SystemTime,
}

/// When the runner first saw a tolerated condition (unschedulable pod, mount failure, pod
/// creation failure), so that a condition without a usable server timestamp still times out.
///
/// Only the conditions met in the latest classification are kept: one that cleared (the pod
/// got scheduled, its volumes mounted) is forgotten, so a non-empty `FirstSeen` means that a
/// verdict may change with the clock alone and the runner must look again without news.
#[derive(Debug, Default, Clone)]
pub struct FirstSeen {
    seen: HashMap<String, SystemTime>,
    /// Keys met in the current classification.
    live: Vec<String>,
}

impl FirstSeen {
    fn since(&mut self, key: String, now: SystemTime) -> SystemTime {
        let at = *self.seen.entry(key.clone()).or_insert(now);
        self.live.push(key);
        at
    }

    /// Forgets the conditions the classification that just ended did not meet.
    fn settle(&mut self) {
        let live = std::mem::take(&mut self.live);
        self.seen.retain(|k, _| live.contains(k));
    }

    /// How many conditions are being timed (for tests and debugging).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A classified failure and what the runner needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeFailure {
    pub failure: Failure,
    pub details: FailureDetails,
    /// Nothing of the execution is running any more (the pod or Job is terminal). When false
    /// the Job must be expired (see `cleanup`), or its pod may run on.
    pub stopped: bool,
    /// The pod whose logs explain the failure, if any.
    pub pod: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing decided yet: keep watching.
    Running,
    /// The Job completed.
    Succeeded,
    Failed(Box<KubeFailure>),
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| text(c, "/type") == kind && text(c, "/status") == "True")
}

fn mentions_deadline(reason: &str, message: &str) -> bool {
    format!("{reason} {message}")
        .to_lowercase()
        .contains("deadline")
}

/// True when the Job ran out of `activeDeadlineSeconds`: by its own conditions, or by the clock
/// (the pod's SIGTERM often arrives before the Job's `Failed` condition).
fn deadline_reached(job: &Value, now: SystemTime) -> bool {
    let by_condition = ["Failed", "FailureTarget"].iter().any(|k| {
        condition(job, k)
            .is_some_and(|c| mentions_deadline(text(c, "/reason"), text(c, "/message")))
    });
    let limit = int(job, "/spec/activeDeadlineSeconds");
    let by_clock = limit > 0
        && time::parse(text(job, "/status/startTime")).is_some_and(|start| {
            time::elapsed(now, start) >= Duration::from_secs(limit.unsigned_abs())
        });
    by_condition || by_clock
}

/// Decides the task's outcome from what was observed.
pub fn classify(ctx: &Context<'_>, obs: &Observation<'_>, first: &mut FirstSeen) -> Verdict {
    first.live.clear();
    let verdict = Classifier {
        ctx,
        obs,
        first: &mut *first,
        deadline: false,
    }
    .run();
    first.settle();
    verdict
}

/// The verdict when the task's Job disappeared before finishing (a `DELETED` watch event or a
/// 404 on the safety poll) and the task was not cancelled: someone else deleted it.
pub fn job_vanished(ctx: &Context<'_>, source: Source, now: SystemTime) -> Verdict {
    let obs = Observation {
        job: None,
        pods: &[],
        events: &[],
        source,
        now,
    };
    let c = Classifier {
        ctx,
        obs: &obs,
        first: &mut FirstSeen::default(),
        deadline: false,
    };
    let message = format!(
        "kubernetes Job {} in namespace {} was deleted before it finished",
        ctx.job_name, ctx.namespace
    );
    c.fail(Found::new(FailureReason::JobWatch, message, None))
}

struct Classifier<'a, 'b> {
    ctx: &'a Context<'a>,
    obs: &'a Observation<'a>,
    first: &'b mut FirstSeen,
    deadline: bool,
}

/// A failure before details are attached.
struct Found<'v> {
    reason: FailureReason,
    message: String,
    exit_code: Option<i32>,
    pod: Option<&'v Value>,
    container: Option<(ContainerKind, &'v Value)>,
}

impl<'v> Found<'v> {
    fn new(reason: FailureReason, message: String, pod: Option<&'v Value>) -> Self {
        Found {
            reason,
            message,
            exit_code: None,
            pod,
            container: None,
        }
    }
}

impl Classifier<'_, '_> {
    fn run(&mut self) -> Verdict {
        let obs = self.obs;
        if let Some(job) = obs.job {
            let uid = text(job, "/metadata/uid");
            if let Some(expected) = self.ctx.job_uid
                && !uid.is_empty()
                && uid != expected
            {
                let how = match obs.source {
                    Source::SafetyPoll => "polling",
                    _ => "watching",
                };
                let message = format!("job {} was replaced while {how}", self.ctx.job_name);
                return self.fail(Found::new(FailureReason::JobWatch, message, None));
            }
            if condition(job, "Complete").is_some() {
                return Verdict::Succeeded;
            }
            self.deadline = deadline_reached(job, obs.now);
        }
        for pod in obs.pods {
            if !self.ours(pod) {
                continue;
            }
            if let Some(found) = self.inspect_pod(pod) {
                return self.fail(found);
            }
        }
        if let Some(job) = obs.job {
            if let Some(failed) = condition(job, "Failed") {
                let (reason, msg) = (text(failed, "/reason"), text(failed, "/message"));
                let kind = if self.deadline || mentions_deadline(reason, msg) {
                    FailureReason::ActiveDeadline
                } else {
                    FailureReason::JobFailed
                };
                let message =
                    message::job_failed(self.ctx.job_name, self.ctx.namespace, reason, msg);
                return self.fail(Found::new(kind, message, None));
            }
            if let Some(found) = self.pod_creation_failure(job) {
                return self.fail(found);
            }
        }
        Verdict::Running
    }

    /// Pods of another Job with our labels (a replaced Job) are not ours.
    fn ours(&self, pod: &Value) -> bool {
        let owner = super::names::pod_controller_uid(pod);
        match self.ctx.job_uid {
            Some(uid) if !owner.is_empty() => owner == uid,
            _ => true,
        }
    }

    fn events_of<'e>(&'e self, obj: &'e Value) -> impl Iterator<Item = &'e Value> + 'e {
        let uid = text(obj, "/metadata/uid");
        let name = text(obj, "/metadata/name");
        self.obs.events.iter().filter(move |e| {
            let subject = event_subject(e);
            if !uid.is_empty() && !subject.is_empty() {
                subject == uid
            } else {
                let named = match text(e, "/involvedObject/name") {
                    "" => text(e, "/regarding/name"),
                    n => n,
                };
                !name.is_empty() && named == name
            }
        })
    }

    /// How long a condition has lasted: the longer of the server's account (`since`, when it
    /// parses) and the runner's own.
    fn lasted(&mut self, key: String, since: Option<&str>) -> Duration {
        let now = self.obs.now;
        let local = time::elapsed(now, self.first.since(key, now));
        let server = since
            .and_then(time::parse)
            .map(|t| time::elapsed(now, t))
            .unwrap_or_default();
        local.max(server)
    }

    fn inspect_pod<'v>(&mut self, pod: &'v Value) -> Option<Found<'v>> {
        let ns = self.ctx.namespace;
        let status_reason = text(pod, "/status/reason");
        if status_reason.eq_ignore_ascii_case("evicted")
            || text(pod, "/status/message")
                .to_lowercase()
                .contains("evict")
        {
            let message = message::pod_failed(pod, ns, "", "");
            return Some(Found::new(FailureReason::Evicted, message, Some(pod)));
        }
        if !self.deadline
            && let Some(c) = condition(pod, "DisruptionTarget")
        {
            let message = message::pod_failed(pod, ns, text(c, "/reason"), text(c, "/message"));
            return Some(Found::new(FailureReason::Evicted, message, Some(pod)));
        }
        if let Some(found) = self.containers(pod) {
            return Some(found);
        }
        if let Some(c) = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| {
                text(c, "/type") == "PodScheduled"
                    && text(c, "/status") == "False"
                    && text(c, "/reason") == "Unschedulable"
            })
            && let Some(limit) = self.ctx.unschedulable_timeout
        {
            let key = format!("unschedulable/{}", text(pod, "/metadata/uid"));
            let created = Some(text(pod, "/metadata/creationTimestamp"));
            if self.lasted(key, created) >= limit {
                let message =
                    message::unschedulable(pod, ns, text(c, "/reason"), text(c, "/message"));
                return Some(Found::new(FailureReason::Unschedulable, message, Some(pod)));
            }
        }
        let phase = text(pod, "/status/phase");
        if matches!(phase, "Pending" | "Failed")
            && let Some(found) = self.mount_failure(pod)
        {
            return Some(found);
        }
        if phase == "Failed" {
            let kind = if self.deadline
                || mentions_deadline(status_reason, text(pod, "/status/message"))
            {
                FailureReason::ActiveDeadline
            } else {
                FailureReason::JobFailed
            };
            return Some(Found::new(
                kind,
                message::pod_failed(pod, ns, "", ""),
                Some(pod),
            ));
        }
        None
    }

    /// Init containers (native sidecars exempt from exit codes), then regular containers.
    fn containers<'v>(&self, pod: &'v Value) -> Option<Found<'v>> {
        let ns = self.ctx.namespace;
        let native: Vec<&str> = pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| text(c, "/restartPolicy") == "Always")
            .map(|c| text(c, "/name"))
            .collect();
        let lists = [
            ("/status/initContainerStatuses", Kind::InitContainer),
            ("/status/containerStatuses", Kind::Container),
        ];
        for (pointer, kind) in lists {
            for st in pod
                .pointer(pointer)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = text(st, "/name");
                let detail_kind = match kind {
                    Kind::Container => ContainerKind::Regular,
                    _ if native.contains(&name) => ContainerKind::Sidecar,
                    _ => ContainerKind::Init,
                };
                // A copy-readiness sidecar restarts after a failed copy: its last state says so.
                if kind == Kind::InitContainer
                    && ["/state/terminated", "/lastState/terminated"]
                        .iter()
                        .filter_map(|p| st.pointer(p))
                        .any(|t| text(t, "/message").contains(COPY_FAILED_MARKER))
                {
                    let message = format!(
                        "init container {name} in {} could not copy its sidecar image's files \
                         (the image needs /bin/sh, tar and mkfifo); see its log",
                        message::pod_context(pod, ns)
                    );
                    let mut found = Found::new(FailureReason::SidecarPrep, message, Some(pod));
                    found.container = Some((detail_kind, st));
                    return Some(found);
                }
                if let Some(term) = st.pointer("/state/terminated") {
                    let code = int(term, "/exitCode");
                    // The kubelet stops native sidecars with SIGTERM at wind-down: exit 143
                    // (or any code) from one is not the task's failure.
                    if code == 0 || detail_kind == ContainerKind::Sidecar {
                        continue;
                    }
                    let reason = match kind {
                        Kind::InitContainer => FailureReason::InitContainer,
                        _ if self.deadline => FailureReason::ActiveDeadline,
                        _ if text(term, "/reason") == "OOMKilled" => FailureReason::ContainerOom,
                        _ => FailureReason::ContainerExit,
                    };
                    let mut found = Found::new(
                        reason,
                        message::terminated(kind, name, pod, ns, term),
                        Some(pod),
                    );
                    found.exit_code =
                        Some(message::normalized_exit_code(code, int(term, "/signal")));
                    found.container = Some((detail_kind, st));
                    return Some(found);
                }
                let waiting = text(st, "/state/waiting/reason");
                if IMMEDIATE_WAITING.contains(&waiting) {
                    let reason = match (waiting, kind) {
                        ("ErrImagePull" | "ImagePullBackOff", _) => FailureReason::ImagePull,
                        ("InvalidImageName", _) => FailureReason::InvalidImage,
                        (_, Kind::InitContainer) => FailureReason::InitContainer,
                        (_, Kind::Container) => FailureReason::ContainerCreate,
                    };
                    let wait = st.pointer("/state/waiting").unwrap_or(&Value::Null);
                    let mut found = Found::new(
                        reason,
                        message::waiting(kind, name, pod, ns, wait),
                        Some(pod),
                    );
                    found.container = Some((detail_kind, st));
                    return Some(found);
                }
            }
        }
        None
    }

    /// `FailedMount` (or `MountVolume.SetUp failed`) events that lasted `volume_mount_timeout`,
    /// unless the pod has mounted its volumes since.
    fn mount_failure<'v>(&mut self, pod: &'v Value) -> Option<Found<'v>> {
        let limit = self.ctx.volume_mount_timeout?;
        let (reason, msg, since, latest) = {
            let mounts: Vec<&Value> = self
                .events_of(pod)
                .filter(|e| {
                    text(e, "/reason") == "FailedMount"
                        || event_message(e).contains("MountVolume.SetUp failed")
                })
                .collect();
            // The earliest of the series dates it; the latest says what is wrong now.
            let last = *mounts.last()?;
            let earliest = mounts
                .iter()
                .filter_map(|e| event_first(e).and_then(|t| time::parse(&t).map(|p| (p, t))))
                .min()
                .map(|(_, t)| t);
            let latest = mounts
                .iter()
                .filter_map(|e| event_last(e).and_then(|t| time::parse(&t)))
                .max();
            (
                text(last, "/reason").to_owned(),
                event_message(last).to_owned(),
                earliest,
                latest,
            )
        };
        if self.mounted_since(pod, latest) {
            return None;
        }
        let key = format!("mount/{}", text(pod, "/metadata/uid"));
        if self.lasted(key, since.as_deref()) < limit {
            return None;
        }
        let message = message::volume(pod, self.ctx.namespace, &reason, &msg);
        Some(Found::new(FailureReason::VolumeMount, message, Some(pod)))
    }

    /// Whether the pod shows that its volumes are mounted now, after mount failures that last
    /// happened at `failed_at`. The kubelet creates the pod's sandbox
    /// (`PodReadyToStartContainers=True`), pulls images and starts containers only once every
    /// volume is mounted: a mount that recovered is not failing still because its old events
    /// remain while the pod pulls a large image (with a timeout of minutes, a slow attach
    /// followed by a slow pull would otherwise fail a healthy task).
    fn mounted_since(&self, pod: &Value, failed_at: Option<SystemTime>) -> bool {
        if condition(pod, "PodReadyToStartContainers").is_some() {
            return true;
        }
        let started = ["/status/initContainerStatuses", "/status/containerStatuses"]
            .iter()
            .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
            .flatten()
            .any(|st| {
                st.pointer("/state/running").is_some() || st.pointer("/state/terminated").is_some()
            });
        if started {
            return true;
        }
        let Some(failed_at) = failed_at else {
            return false;
        };
        self.events_of(pod).any(|e| {
            matches!(
                text(e, "/reason"),
                "Pulling" | "Pulled" | "Created" | "Started"
            ) && event_last(e)
                .and_then(|t| time::parse(&t))
                .is_some_and(|t| t >= failed_at)
        })
    }

    /// A Job without pods whose controller reports `FailedCreate` (admission denied, quota).
    fn pod_creation_failure(&mut self, job: &Value) -> Option<Found<'static>> {
        if !self.obs.pods.is_empty() {
            return None;
        }
        let limit = self.ctx.unschedulable_timeout?;
        let (msg, since) = {
            let e = self
                .events_of(job)
                .filter(|e| text(e, "/type") == "Warning" && text(e, "/reason") == "FailedCreate")
                .last()?;
            let msg = match event_message(e).trim() {
                "" => "FailedCreate".to_owned(),
                m => m.to_owned(),
            };
            (msg, event_first(e))
        };
        let key = format!("create/{}", text(job, "/metadata/uid"));
        if self.lasted(key, since.as_deref()) < limit {
            return None;
        }
        let message = format!(
            "Kubernetes could not create a pod for Job {} (namespace {}): {msg}",
            self.ctx.job_name, self.ctx.namespace
        );
        Some(Found::new(FailureReason::JobCreate, message, None))
    }

    fn fail(&self, found: Found<'_>) -> Verdict {
        let obs = self.obs;
        let mut b = Builder::default();
        let job = obs.job.map(|j| b.job(j));
        let pod = found.pod.map(|p| b.pod(p));
        let container = found.container.map(|(kind, st)| b.container(kind, st));
        let mut related: Vec<&Value> = Vec::new();
        if let Some(p) = found.pod {
            related.extend(self.events_of(p));
        }
        if let Some(j) = obs.job {
            related.extend(self.events_of(j));
        }
        let events = b.events(related);
        let stopped = found
            .pod
            .is_some_and(|p| matches!(text(p, "/status/phase"), "Failed" | "Succeeded"))
            || obs.job.is_some_and(|j| {
                condition(j, "Failed").is_some() || condition(j, "Complete").is_some()
            });
        let mut failure = Failure::new(found.reason, found.message);
        failure.exit_code = found.exit_code;
        Verdict::Failed(Box::new(KubeFailure {
            failure,
            details: b.finish(obs.source, obs.now, job, pod, container, events),
            stopped,
            pod: found.pod.map(|p| text(p, "/metadata/name").to_owned()),
        }))
    }
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
