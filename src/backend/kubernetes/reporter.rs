//! What a Kubernetes task reports besides its outcome (`upstream-newer.md` §5.1 and §4): the
//! setup phases its pod's status proves, as [`SetupTracker`] derives them, and its containers'
//! output as `pod.<container>` log records: followed live once each container starts
//! ([`super::pod_logs`]), or, for a failed pod's containers no follow covered, from the log
//! fetched for the diagnostics. The Job POST is timed by the runner.

use std::sync::Arc;

use serde_json::Value;

use super::pod_logs::Follows;
use super::setup_phases::{self, SetupTracker};
use crate::kube::Client;
use crate::reporting::{SetupPhase, TaskReport};

fn setup_phase(phase: setup_phases::Phase) -> SetupPhase {
    match phase {
        setup_phases::Phase::PodSchedule => SetupPhase::PodSchedule,
        setup_phases::Phase::SidecarPrep => SetupPhase::SidecarPrep,
        setup_phases::Phase::SetupCommand => SetupPhase::SetupCommand,
        setup_phases::Phase::ContainerStart => SetupPhase::ContainerStart,
    }
}

/// What a followed task reports besides its outcome: setup phases as pod status proves them,
/// its containers' output. A re-attached Job reports nothing (its setup was reported, if at
/// all, by the worker that created it; collection is not resumed after a restart).
pub(super) struct Reporter<'a> {
    report: &'a TaskReport,
    tracker: SetupTracker,
    /// Live container follows, when the task's logs are exported.
    follows: Option<Follows>,
}

impl<'a> Reporter<'a> {
    pub(super) fn new(report: &'a TaskReport) -> Reporter<'a> {
        Reporter {
            report,
            tracker: SetupTracker::default(),
            follows: None,
        }
    }

    /// [`Reporter::new`], following the containers' output live when logs are exported.
    pub(super) fn following(
        report: &'a TaskReport,
        client: &Arc<Client>,
        namespace: &str,
        task: &str,
    ) -> Reporter<'a> {
        let mut r = Reporter::new(report);
        if report.logs_enabled() {
            r.follows = Some(Follows::new(Arc::clone(client), namespace, task));
        }
        r
    }

    /// True when `pods`, seen as the Job succeeded, may hide something this task reports: a
    /// started container with no follow yet, or (with setup events on) a pod not yet seen in a
    /// terminal phase, as when the pod cache lags the Job watch and the phases its final status
    /// proves were never observed. The caller then looks at fresh pods once more.
    pub(super) fn misses(&self, pods: &[Value]) -> bool {
        let lagging = || {
            pods.is_empty()
                || pods.iter().any(|p| {
                    !matches!(
                        super::message::text(p, "/status/phase"),
                        "Succeeded" | "Failed"
                    )
                })
        };
        if self.report.events_enabled() && lagging() {
            return true;
        }
        let Some(f) = &self.follows else {
            return false;
        };
        pods.is_empty()
            || pods.iter().any(|p| {
                super::message::log_containers(p).iter().any(|c| {
                    !f.covers(
                        super::message::text(p, "/metadata/uid"),
                        super::message::text(p, "/metadata/name"),
                        c,
                    )
                })
            })
    }

    /// Reports the phases `pods` newly prove, unless the task was cancelled meanwhile, and
    /// starts following the containers that started.
    pub(super) fn observe(&mut self, pods: &[Value], cancelled: bool) {
        if let Some(f) = &mut self.follows
            && !cancelled
        {
            for pod in pods {
                f.observe(pod, self.report);
            }
        }
        for pod in pods {
            for span in self.tracker.observe(pod) {
                if !cancelled {
                    self.report.event(
                        setup_phase(span.phase),
                        span.start,
                        span.finish,
                        span.is_error,
                    );
                }
            }
        }
    }

    /// Exports a failed pod's container's fetched output as `pod.<container>` records, unless
    /// a live follow already forwards it.
    pub(super) fn pod_log(&self, uid: &str, pod: &str, container: &str, output: &str) {
        if !self.report.logs_enabled()
            || self
                .follows
                .as_ref()
                .is_some_and(|f| f.covers(uid, pod, container))
        {
            return;
        }
        let source = format!("pod.{container}");
        let attributes = [("k8s.container.name", container), ("k8s.pod.name", pod)];
        for line in output.lines() {
            self.report.line(&source, &attributes, line);
        }
    }

    /// Ends the follows (see [`Follows::close`]); must run before the report's final flush.
    pub(super) fn close(&mut self, at_once: bool) {
        if let Some(f) = self.follows.take() {
            f.close(at_once);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    use serde_json::json;

    use super::*;
    use crate::reporting::send::{Reply, Request, SendError, Transport};
    use crate::reporting::{Reporting, TaskFacts};
    use std::time::Duration;

    /// Records every POST and answers 200.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Request>>);

    impl Transport for Recorder {
        fn post(&self, r: &Request) -> Result<Reply, SendError> {
            self.0.lock().unwrap().push(r.clone());
            Ok(Reply {
                status: 200,
                body: Vec::new(),
            })
        }
    }

    fn at(s: u64) -> String {
        super::super::time::format(UNIX_EPOCH + Duration::from_secs(1_796_226_000 + s))
    }

    fn pod(running: bool) -> Value {
        let mut p = json!({
            "metadata": {"name": "p", "creationTimestamp": at(0)},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True",
                                       "lastTransitionTime": at(2)}]},
        });
        if running {
            p["status"]["containerStatuses"] =
                json!([{"name": "task", "state": {"running": {"startedAt": at(5)}}}]);
        }
        p
    }

    /// A task report posting to `t`; events are on when `root` is a server root URL.
    fn report(root: &str, t: &Arc<Recorder>) -> TaskReport {
        let env = [("WARP_API_KEY".to_owned(), "key".to_owned())];
        TaskReport::start_with(
            &Reporting {
                worker_id: "w",
                backend: "kubernetes",
                server_root_url: root,
                collect_task_logs: false,
            },
            &TaskFacts {
                run_id: "run",
                execution_id: None,
                env: &env,
                secrets: &[],
                telemetry: None,
            },
            Arc::clone(t) as Arc<dyn Transport>,
        )
    }

    #[test]
    fn pod_phases_are_reported_once_and_not_when_cancelled() {
        let t = Arc::new(Recorder::default());
        let report = report("http://root", &t);
        let mut reporter = Reporter::new(&report);
        // Scheduling is proven while the task is being cancelled: not reported, ever.
        reporter.observe(&[pod(false)], true);
        // The container start is proven later; scheduling is not reported again.
        reporter.observe(&[pod(true)], false);
        reporter.observe(&[pod(true)], false);
        report.finish();
        // Posts leave in order from one thread: had scheduling been queued, it would be first.
        let mut seen = Vec::new();
        for _ in 0..2000 {
            seen = t.0.lock().unwrap().clone();
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen.len(), 1, "{seen:?}");
        let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body["event_name"], "setup_worker_container_start");
        assert_eq!(body["payload"]["latency_ms"], 3000.0);
        assert_eq!(body["payload"]["is_error"], false);
    }

    #[test]
    fn a_pod_cache_lagging_the_job_is_a_miss_only_when_events_are_posted() {
        let t = Arc::new(Recorder::default());
        let posting = report("http://root", &t);
        let silent = report("", &t);
        let mut done = pod(true);
        done["status"]["phase"] = json!("Succeeded");
        let mut running = pod(true);
        running["status"]["phase"] = json!("Running");
        let r = Reporter::new(&posting);
        assert!(r.misses(&[]));
        assert!(r.misses(&[running.clone()]));
        assert!(!r.misses(&[done.clone()]));
        let quiet = Reporter::new(&silent);
        assert!(!quiet.misses(&[running]));
        assert!(!quiet.misses(&[]));
        posting.finish();
        silent.finish();
    }
}
