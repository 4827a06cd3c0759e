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
    /// A Warning `FailedMount` event, pod Pending.
    FailedMount(Duration),
    /// Running (`Duration::MAX` = until deleted).
    Running(Duration),
    /// The task container exits with this code (0 = success), with an optional reason
    /// (`OOMKilled`, `Error`) and whether a native sidecar ends with 143 beside it.
    Exit {
        code: i32,
        reason: Option<String>,
        sidecar_143: bool,
    },
    /// Evicted by the kubelet.
    Evicted,
}

impl Step {
    fn duration(&self) -> Duration {
        match self {
            Step::Pending(d)
            | Step::Unschedulable(d)
            | Step::Waiting(_, d)
            | Step::FailedMount(d)
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

fn event(store: &mut Store, ns: &str, regarding: &Value, kind: &str, reason: &str, message: &str) {
    let name = format!(
        "{}.{:x}",
        regarding["metadata"]["name"].as_str().unwrap_or("x"),
        store.rv + 1
    );
    let ev = json!({
        "metadata": {"name": name},
        "involvedObject": {
            "kind": kind,
            "namespace": ns,
            "name": regarding["metadata"]["name"],
            "uid": regarding["metadata"]["uid"],
        },
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": 1,
        "firstTimestamp": now_rfc3339(),
        "lastTimestamp": now_rfc3339(),
        "source": {"component": "kube-sim"},
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
            event(store, &self.namespace, &job, "Job", "FailedCreate", msg);
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
        let pod = json!({
            "metadata": {
                "name": pod_name,
                "labels": labels,
                "annotations": job["spec"]["template"]["metadata"]["annotations"].clone(),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": self.job,
                    "uid": job["metadata"]["uid"], "controller": true}],
            },
            "spec": job["spec"]["template"]["spec"].clone(),
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}]},
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
        if self.since.elapsed() >= step.duration() && self.index + 1 < self.steps.len() {
            self.index += 1;
            self.since = Instant::now();
            self.apply(store);
        }
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
            Step::Unschedulable(_) => self.set_pod(store, |p, _| {
                p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu."}]);
            }),
            Step::Waiting(reason, _) => self.set_pod(store, |p, (c, _)| {
                let w = json!({"waiting": {"reason": reason, "message": format!("simulated {reason}")}});
                p["status"]["containerStatuses"] = Self::statuses(c, w.clone(), w);
            }),
            Step::FailedMount(_) => {
                if let Some(pod) = self.pod.clone().and_then(|p| store.get(Kind::Pod, &ns, &p).cloned()) {
                    event(store, &ns, &pod, "Pod", "FailedMount",
                        "MountVolume.SetUp failed for volume \"sidecar-0-image\": simulated");
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
                self.set_pod(store, |p, _| {
                    p["status"]["phase"] = json!("Failed");
                    p["status"]["reason"] = json!("Evicted");
                    p["status"]["message"] = json!("The node was low on resource: memory.");
                });
                self.finish_job(store, false, None);
            }
        }
    }

    fn finish_deadline(&mut self, store: &mut Store) {
        self.set_pod(store, |p, (c, _)| {
            p["status"]["phase"] = json!("Failed");
            let t = json!({"terminated": {"exitCode": 143, "reason": "Error"}});
            p["status"]["containerStatuses"] = Self::statuses(c, t.clone(), t);
        });
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
