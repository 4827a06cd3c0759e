//! The simulator's Job controller and kubelet: a Job gets one Pod whose status follows a
//! script (chosen by the task container's image), and the Job's conditions follow its Pod.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::store::{Kind, Store, now_rfc3339};

/// One step of a pod's scripted life. Each step holds for its duration, then the next applies.
#[derive(Debug, Clone)]
pub enum Step {
    /// No pod is created: a Warning `FailedCreate` event on the Job (Pod Security etc.).
    FailedCreate(String),
    /// Scheduled, containers not started.
    Pending(Duration),
    /// `PodScheduled=False, reason Unschedulable`.
    Unschedulable(Duration),
    /// The task container waits with this reason (`ImagePullBackOff`, `ErrImagePull`, ...).
    Waiting(String, Duration),
    /// The kubelet cannot mount a volume: the pod stays Pending (its containers waiting in
    /// `ContainerCreating`) while a Warning `FailedMount` event repeats, its `count` and
    /// `lastTimestamp` bumped every second as the kubelet's event correlator does.
    FailedMount(Duration),
    /// The volumes are mounted (the sandbox exists: `PodReadyToStartContainers=True`) and the
    /// kubelet pulls the task image: containers waiting in `ContainerCreating`, a Normal
    /// `Pulling` event.
    Pulling(Duration),
    /// Running (`Duration::MAX` = until deleted).
    Running(Duration),
    /// The task container exits with this code (0 = success), with an optional reason
    /// (`OOMKilled`, `Error`) and whether a native sidecar ends with 143 beside it.
    Exit {
        code: i32,
        reason: Option<String>,
        sidecar_143: bool,
    },
    /// Evicted by the kubelet under node pressure: phase Failed, reason Evicted, a
    /// `DisruptionTarget` condition, the task container killed (137) and an `Evicted` event.
    Evicted,
    /// The task container is killed by this signal: `exitCode` 128+signal with the runtime's
    /// `signal` field set.
    Killed(i32),
}

impl Step {
    /// The task container exits with `code`, no reason given, no sidecar.
    pub fn exit(code: i32) -> Step {
        Step::Exit {
            code,
            reason: None,
            sidecar_143: false,
        }
    }

    fn duration(&self) -> Duration {
        match self {
            Step::Pending(d)
            | Step::Unschedulable(d)
            | Step::Waiting(_, d)
            | Step::FailedMount(d)
            | Step::Pulling(d)
            | Step::Running(d) => *d,
            _ => Duration::ZERO,
        }
    }
}

/// A Job being driven.
#[derive(Debug)]
pub struct Run {
    pub namespace: String,
    pub job: String,
    pub pod: Option<String>,
    pub steps: Vec<Step>,
    pub index: usize,
    pub since: Instant,
    pub started: Instant,
    pub done: bool,
    pub log: String,
}

fn container_names(job: &Value) -> (Vec<String>, Vec<(String, bool)>) {
    let spec = &job["spec"]["template"]["spec"];
    let names = |k: &str| -> Vec<Value> { spec[k].as_array().cloned().unwrap_or_default() };
    let containers = names("containers")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let inits = names("initContainers")
        .iter()
        .filter_map(|c| {
            let sidecar = c["restartPolicy"].as_str() == Some("Always");
            c["name"].as_str().map(|n| (n.to_owned(), sidecar))
        })
        .collect();
    (containers, inits)
}

fn event_name(regarding: &Value, store: &Store) -> String {
    format!(
        "{}.{:x}",
        regarding["metadata"]["name"].as_str().unwrap_or("x"),
        store.rv + 1
    )
}

fn involved(ns: &str, regarding: &Value, kind: &str) -> Value {
    json!({
        "kind": kind,
        "namespace": ns,
        "name": regarding["metadata"]["name"],
        "uid": regarding["metadata"]["uid"],
        "apiVersion": if kind == "Job" { "batch/v1" } else { "v1" },
        "resourceVersion": regarding["metadata"]["resourceVersion"],
    })
}

/// An event as the legacy (core `v1`) recorders write it: the kubelet and the Job
/// controller. `eventTime` is null; `count` and the two timestamps carry the series.
fn event(
    store: &mut Store,
    ns: &str,
    regarding: &Value,
    kind: &str,
    (severity, reason): (&str, &str),
    message: &str,
) {
    let name = event_name(regarding, store);
    let component = if kind == "Job" {
        "job-controller"
    } else {
        "kubelet"
    };
    let mut ev = json!({
        "metadata": {"name": name},
        "involvedObject": involved(ns, regarding, kind),
        "reason": reason,
        "message": message,
        "type": severity,
        "count": 1,
        "firstTimestamp": now_rfc3339(),
        "lastTimestamp": now_rfc3339(),
        "eventTime": null,
        "reportingComponent": component,
        "source": if kind == "Job" { json!({"component": component}) }
                  else { json!({"component": component, "host": "sim-node-1"}) },
    });
    if kind != "Job" {
        ev["reportingInstance"] = json!("sim-node-1");
    }
    store.create(Kind::Event, ns, ev);
}

/// A Warning event as the `events.k8s.io/v1` recorders write it (the scheduler): read through
/// the core API it has `eventTime` (microseconds) and no `firstTimestamp`, `lastTimestamp`
/// or `count`.
fn new_style_event(
    store: &mut Store,
    ns: &str,
    regarding: &Value,
    reason: &str,
    action: &str,
    message: &str,
) {
    let ev = json!({
        "metadata": {"name": event_name(regarding, store)},
        "involvedObject": involved(ns, regarding, "Pod"),
        "reason": reason,
        "message": message,
        "type": "Warning",
        "firstTimestamp": null,
        "lastTimestamp": null,
        "eventTime": now_rfc3339().replace('Z', ".000000Z"),
        "action": action,
        "reportingComponent": "default-scheduler",
        "reportingInstance": "default-scheduler-sim",
        "source": {},
    });
    store.create(Kind::Event, ns, ev);
}

/// `PodScheduled=True`, keeping the time it became so.
fn scheduled(pod: &Value) -> Value {
    let since = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "True")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .map_or_else(now_rfc3339, str::to_owned);
    json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": since})
}

impl Run {
    /// Creates the pod (or the FailedCreate event). Called once right after the Job POST.
    pub fn start(&mut self, store: &mut Store) {
        let Some(job) = store.get(Kind::Job, &self.namespace, &self.job).cloned() else {
            self.done = true;
            return;
        };
        if let Some(Step::FailedCreate(msg)) = self.steps.first() {
            event(
                store,
                &self.namespace,
                &job,
                "Job",
                ("Warning", "FailedCreate"),
                msg,
            );
            self.done = true;
            return;
        }
        let suffix = format!("{:05x}", store.rv % 0xfffff);
        let pod_name = format!("{}-{}", self.job, &suffix[suffix.len() - 5..]);
        let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        labels["job-name"] = job["metadata"]["name"].clone();
        labels["batch.kubernetes.io/job-name"] = job["metadata"]["name"].clone();
        labels["controller-uid"] = job["metadata"]["uid"].clone();
        // As the API server creates it: no conditions yet. The first step then sets them (the
        // scheduler's `PodScheduled`); a pod that begins unschedulable never shows
        // `PodScheduled=True` before it, as a real one does not.
        let conditions = if matches!(self.steps.first(), Some(Step::Unschedulable(_))) {
            json!([])
        } else {
            json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}])
        };
        let pod = json!({
            "metadata": {
                "name": pod_name,
                "labels": labels,
                "annotations": job["spec"]["template"]["metadata"]["annotations"].clone(),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": self.job,
                    "uid": job["metadata"]["uid"], "controller": true}],
            },
            "spec": job["spec"]["template"]["spec"].clone(),
            "status": {"phase": "Pending", "conditions": conditions},
        });
        store.create(Kind::Pod, &self.namespace, pod);
        store.update(Kind::Job, &self.namespace, &self.job, |j| {
            j["status"]["active"] = json!(1);
            j["status"]["startTime"] = json!(now_rfc3339());
        });
        self.pod = Some(pod_name);
        self.since = Instant::now();
        self.apply(store);
    }

    /// Advances the script when the current step's time is up; enforces activeDeadlineSeconds.
    pub fn tick(&mut self, store: &mut Store) {
        if self.done {
            return;
        }
        let Some(job) = store.get(Kind::Job, &self.namespace, &self.job).cloned() else {
            self.done = true;
            return;
        };
        if let Some(deadline) = job["spec"]["activeDeadlineSeconds"].as_u64()
            && self.started.elapsed() >= Duration::from_secs(deadline)
        {
            self.finish_deadline(store);
            return;
        }
        let step = &self.steps[self.index.min(self.steps.len() - 1)];
        if matches!(step, Step::FailedMount(_)) {
            self.repeat_mount_event(store);
        }
        let step = &self.steps[self.index.min(self.steps.len() - 1)];
        if self.since.elapsed() >= step.duration() && self.index + 1 < self.steps.len() {
            self.index += 1;
            self.since = Instant::now();
            self.apply(store);
        }
    }

    /// The kubelet retries the mount and its event correlator folds each failure into the
    /// first event: `count` + 1 and a new `lastTimestamp` (once a second here).
    fn repeat_mount_event(&self, store: &mut Store) {
        let Some(uid) = self
            .pod
            .as_ref()
            .and_then(|p| store.get(Kind::Pod, &self.namespace, p))
            .map(|p| p["metadata"]["uid"].clone())
        else {
            return;
        };
        let wanted = 1 + self.since.elapsed().as_secs();
        let Some(name) = store
            .list(Kind::Event, &self.namespace)
            .into_iter()
            .find(|e| e["involvedObject"]["uid"] == uid && e["reason"] == "FailedMount")
            .filter(|e| e["count"].as_u64().unwrap_or(0) < wanted)
            .and_then(|e| e["metadata"]["name"].as_str().map(str::to_owned))
        else {
            return;
        };
        store.update(Kind::Event, &self.namespace, &name, |e| {
            e["count"] = json!(wanted);
            e["lastTimestamp"] = json!(now_rfc3339());
        });
    }

    fn set_pod(
        &self,
        store: &mut Store,
        f: impl FnOnce(&mut Value, &(Vec<String>, Vec<(String, bool)>)),
    ) {
        let Some(pod) = &self.pod else { return };
        let names = store
            .get(Kind::Job, &self.namespace, &self.job)
            .map(container_names)
            .unwrap_or_default();
        store.update(Kind::Pod, &self.namespace, pod, |p| f(p, &names));
    }

    fn statuses(names: &[String], task_state: Value, others: Value) -> Value {
        Value::Array(
            names
                .iter()
                .map(|n| {
                    let state = if n == "task" {
                        task_state.clone()
                    } else {
                        others.clone()
                    };
                    json!({"name": n, "state": state, "ready": false, "restartCount": 0,
                           "image": "sim", "imageID": ""})
                })
                .collect(),
        )
    }

    fn apply(&mut self, store: &mut Store) {
        let step = self.steps[self.index].clone();
        let ns = self.namespace.clone();
        match step {
            Step::FailedCreate(_) => {}
            // After an unschedulable spell the pod is scheduled now.
            Step::Pending(_) => self.set_pod(store, |p, _| {
                p["status"]["conditions"] = json!([scheduled(p)]);
            }),
            // The scheduler's condition (no node fits) and its FailedScheduling event, which
            // it records through events.k8s.io/v1.
            Step::Unschedulable(_) => {
                const WHY: &str = "0/3 nodes are available: 3 Insufficient cpu. preemption: \
                    0/3 nodes are available: 3 No preemption victims found for incoming pod.";
                self.set_pod(store, |p, _| {
                    p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                        "lastProbeTime": null, "lastTransitionTime": now_rfc3339(),
                        "reason": "Unschedulable", "message": WHY}]);
                });
                if let Some(pod) = self.pod.clone().and_then(|p| store.get(Kind::Pod, &ns, &p).cloned()) {
                    new_style_event(store, &ns, &pod, "FailedScheduling", "Scheduling", WHY);
                }
            }
            Step::Waiting(reason, _) => self.set_pod(store, |p, (c, _)| {
                let w = json!({"waiting": {"reason": reason, "message": format!("simulated {reason}")}});
                p["status"]["containerStatuses"] = Self::statuses(c, w.clone(), w);
            }),
            Step::FailedMount(_) => {
                self.set_pod(store, |p, (c, _)| {
                    p["status"]["conditions"] = json!([scheduled(p),
                        {"type": "PodReadyToStartContainers", "status": "False"},
                        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]);
                    let w = json!({"waiting": {"reason": "ContainerCreating"}});
                    p["status"]["containerStatuses"] = Self::statuses(c, w.clone(), w);
                });
                if let Some(pod) = self.pod.clone().and_then(|p| store.get(Kind::Pod, &ns, &p).cloned()) {
                    event(store, &ns, &pod, "Pod", ("Warning", "FailedMount"),
                        "MountVolume.SetUp failed for volume \"config\" : configmap \"task-config\" not found");
                }
            }
            Step::Pulling(_) => {
                self.set_pod(store, |p, (c, _)| {
                    p["status"]["conditions"] = json!([scheduled(p),
                        {"type": "PodReadyToStartContainers", "status": "True",
                         "lastTransitionTime": now_rfc3339()},
                        {"type": "Initialized", "status": "True"},
                        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]);
                    let w = json!({"waiting": {"reason": "ContainerCreating"}});
                    p["status"]["containerStatuses"] = Self::statuses(c, w.clone(), w);
                });
                if let Some(pod) = self.pod.clone().and_then(|p| store.get(Kind::Pod, &ns, &p).cloned()) {
                    event(store, &ns, &pod, "Pod", ("Normal", "Pulling"), "Pulling image \"sim\"");
                }
            }
            Step::Running(_) => self.set_pod(store, |p, (c, inits)| {
                p["status"]["phase"] = json!("Running");
                p["status"]["conditions"] = json!([scheduled(p), {"type": "Ready", "status": "True"}]);
                let running = json!({"running": {"startedAt": now_rfc3339()}});
                p["status"]["containerStatuses"] = Self::statuses(c, running.clone(), running.clone());
                p["status"]["initContainerStatuses"] = Value::Array(inits.iter().map(|(n, sidecar)| {
                    let st = if *sidecar { running.clone() } else {
                        json!({"terminated": {"exitCode": 0, "reason": "Completed"}}) };
                    json!({"name": n, "state": st, "ready": true, "restartCount": 0, "image": "sim", "imageID": ""})
                }).collect());
            }),
            Step::Exit { code, reason, sidecar_143 } => {
                self.set_pod(store, |p, (c, inits)| {
                    p["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
                    let reason = reason.clone().unwrap_or_else(|| if code == 0 { "Completed".into() } else { "Error".into() });
                    let t = json!({"terminated": {"exitCode": code, "reason": reason}});
                    let ok = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
                    p["status"]["containerStatuses"] = Self::statuses(c, t, ok.clone());
                    p["status"]["initContainerStatuses"] = Value::Array(inits.iter().map(|(n, sidecar)| {
                        let st = if *sidecar && sidecar_143 {
                            json!({"terminated": {"exitCode": 143, "reason": "Error"}})
                        } else { ok.clone() };
                        json!({"name": n, "state": st, "ready": false, "restartCount": 0, "image": "sim", "imageID": ""})
                    }).collect());
                });
                self.finish_job(store, code == 0, None);
            }
            Step::Evicted => {
                const WHY: &str = "The node was low on resource: memory. Threshold quantity: \
                    100Mi, available: 88Mi. Container task was using 1268Mi, request is 0, has \
                    larger consumption of memory.";
                self.set_pod(store, |p, (c, _)| {
                    p["status"]["phase"] = json!("Failed");
                    p["status"]["reason"] = json!("Evicted");
                    p["status"]["message"] = json!(WHY);
                    p["status"]["conditions"] = json!([scheduled(p),
                        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                         "message": WHY, "lastTransitionTime": now_rfc3339()},
                        {"type": "Ready", "status": "False", "reason": "PodFailed"}]);
                    let killed = json!({"terminated": {"exitCode": 137, "reason": "Error",
                        "startedAt": now_rfc3339(), "finishedAt": now_rfc3339()}});
                    p["status"]["containerStatuses"] = Self::statuses(c, killed.clone(), killed);
                });
                if let Some(pod) = self.pod.clone().and_then(|p| store.get(Kind::Pod, &ns, &p).cloned()) {
                    event(store, &ns, &pod, "Pod", ("Warning", "Evicted"), WHY);
                }
                self.finish_job(store, false, None);
            }
            Step::Killed(signal) => {
                self.set_pod(store, |p, (c, _)| {
                    p["status"]["phase"] = json!("Failed");
                    let t = json!({"terminated": {"exitCode": 128 + signal, "signal": signal,
                        "reason": "Error", "startedAt": now_rfc3339(), "finishedAt": now_rfc3339()}});
                    let ok = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
                    p["status"]["containerStatuses"] = Self::statuses(c, t, ok);
                });
                self.finish_job(store, false, None);
            }
        }
    }

    /// The Job controller's answer to `activeDeadlineSeconds`: it deletes the active pod (a
    /// `deletionTimestamp`; its containers end with SIGTERM, 143), records a
    /// `DeadlineExceeded` event and fails the Job with that reason.
    fn finish_deadline(&mut self, store: &mut Store) {
        self.set_pod(store, |p, (c, _)| {
            p["status"]["phase"] = json!("Failed");
            p["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
            let t = json!({"terminated": {"exitCode": 143, "reason": "Error"}});
            p["status"]["containerStatuses"] = Self::statuses(c, t.clone(), t);
        });
        if let Some(job) = store.get(Kind::Job, &self.namespace, &self.job).cloned() {
            let ns = self.namespace.clone();
            event(
                store,
                &ns,
                &job,
                "Job",
                ("Warning", "DeadlineExceeded"),
                "Job was active longer than specified deadline",
            );
        }
        self.finish_job(
            store,
            false,
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )),
        );
    }

    fn finish_job(&mut self, store: &mut Store, ok: bool, why: Option<(&str, &str)>) {
        self.done = true;
        store.update(Kind::Job, &self.namespace, &self.job, |j| {
            j["status"]["active"] = json!(0);
            let now = now_rfc3339();
            if ok {
                j["status"]["succeeded"] = json!(1);
                j["status"]["completionTime"] = json!(now);
                j["status"]["conditions"] = json!([
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "lastTransitionTime": now}]);
            } else {
                let (reason, message) =
                    why.unwrap_or(("BackoffLimitExceeded", "Job has reached the specified backoff limit"));
                j["status"]["failed"] = json!(1);
                j["status"]["conditions"] = json!([
                    {"type": "FailureTarget", "status": "True", "reason": reason, "message": message},
                    {"type": "Failed", "status": "True", "reason": reason, "message": message,
                     "lastTransitionTime": now}]);
            }
        });
    }
}
