//! Setup phases of a task pod, derived from its status (`upstream-newer.md` §5.1, the
//! Kubernetes side of the setup-phase client events): pod scheduling, sidecar preparation (the
//! `copy-sidecar-*` containers), the `setup` init container and the task container's start.
//! The Job POST is timed by the runner itself.
//!
//! Pure: [`SetupTracker::observe`] takes every pod snapshot the runner sees (watch or poll) and
//! returns each phase once, as soon as the status proves both ends. Zero or inverted ranges
//! (the API's timestamps have whole seconds) are dropped, as upstream does.

use std::time::SystemTime;

use serde_json::Value;

use super::job::{SETUP_CONTAINER, TASK_CONTAINER};
use super::message::{int, text};
use super::sidecars::COPY_FAILED_MARKER;
use super::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Pod creation to `PodScheduled=True` (`setup_worker_pod_schedule`).
    PodSchedule,
    /// First start to last finish of the copy containers (`setup_worker_sidecar_prep`).
    SidecarPrep,
    /// The `setup` init container (`setup_worker_setup_command`).
    SetupCommand,
    /// The end of init (or scheduling, or creation) to the task container's start
    /// (`setup_worker_container_start`).
    ContainerStart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseSpan {
    pub phase: Phase,
    pub start: SystemTime,
    pub finish: SystemTime,
    pub is_error: bool,
}

/// Remembers which phases were reported for one task.
#[derive(Debug, Default, Clone)]
pub struct SetupTracker {
    done: Vec<Phase>,
}

fn at(v: &Value, pointer: &str) -> Option<SystemTime> {
    time::parse(text(v, pointer))
}

/// When a container (status) started: running now, terminated, or in its last run.
fn started_at(st: &Value) -> Option<SystemTime> {
    at(st, "/state/running/startedAt")
        .or_else(|| at(st, "/state/terminated/startedAt"))
        .or_else(|| at(st, "/lastState/terminated/startedAt"))
}

fn statuses<'a>(pod: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl SetupTracker {
    /// The phases `pod` newly proves, each reported at most once per tracker.
    pub fn observe(&mut self, pod: &Value) -> Vec<PhaseSpan> {
        let mut out = Vec::new();
        let created = at(pod, "/metadata/creationTimestamp");
        let scheduled = statuses(pod, "/status/conditions")
            .find(|c| text(c, "/type") == "PodScheduled" && text(c, "/status") == "True")
            .and_then(|c| at(c, "/lastTransitionTime"));
        if let (Some(start), Some(finish)) = (created, scheduled) {
            self.emit(&mut out, Phase::PodSchedule, start, finish, false);
        }

        let native: Vec<&str> = statuses(pod, "/spec/initContainers")
            .filter(|c| text(c, "/restartPolicy") == "Always")
            .map(|c| text(c, "/name"))
            .collect();
        let inits: Vec<&Value> = statuses(pod, "/status/initContainerStatuses").collect();
        let task = statuses(pod, "/status/containerStatuses")
            .find(|st| text(st, "/name") == TASK_CONTAINER);
        let setup = inits.iter().find(|st| text(st, "/name") == SETUP_CONTAINER);

        if let Some(span) = sidecar_prep(&inits, &native, setup.copied(), task) {
            self.emit(&mut out, Phase::SidecarPrep, span.0, span.1, span.2);
        }
        if let Some(setup) = setup
            && let Some(term) = setup.pointer("/state/terminated")
            && let (Some(start), Some(finish)) = (at(term, "/startedAt"), at(term, "/finishedAt"))
        {
            let failed = int(term, "/exitCode") != 0;
            self.emit(&mut out, Phase::SetupCommand, start, finish, failed);
        }
        if let Some(begun) = task.and_then(started_at) {
            // The last run-to-completion init container's finish, else scheduling, else creation.
            let init_end = inits
                .iter()
                .filter(|st| !native.contains(&text(st, "/name")))
                .filter_map(|st| at(st, "/state/terminated/finishedAt"))
                .max();
            if let Some(start) = init_end.or(scheduled).or(created) {
                self.emit(&mut out, Phase::ContainerStart, start, begun, false);
            }
        }
        out
    }

    fn emit(
        &mut self,
        out: &mut Vec<PhaseSpan>,
        phase: Phase,
        start: SystemTime,
        finish: SystemTime,
        is_error: bool,
    ) {
        if self.done.contains(&phase) {
            return;
        }
        self.done.push(phase);
        if finish > start {
            out.push(PhaseSpan {
                phase,
                start,
                finish,
                is_error,
            });
        }
    }
}

/// `(start, finish, is_error)` of the copy containers once they are all done, or as soon as
/// one failed. A copy-readiness sidecar keeps running: it is done once started (its startup
/// probe passed), and its copy ended when the next container began.
fn sidecar_prep(
    inits: &[&Value],
    native: &[&str],
    setup: Option<&Value>,
    task: Option<&Value>,
) -> Option<(SystemTime, SystemTime, bool)> {
    let copies: Vec<&Value> = inits
        .iter()
        .copied()
        .filter(|st| text(st, "/name").starts_with("copy-sidecar-"))
        .collect();
    let start = copies.iter().filter_map(|st| started_at(st)).min()?;
    for st in &copies {
        for p in ["/state/terminated", "/lastState/terminated"] {
            if let Some(t) = st.pointer(p) {
                let readiness_failed = text(t, "/message").contains(COPY_FAILED_MARKER);
                let copy_failed = !native.contains(&text(st, "/name")) && int(t, "/exitCode") != 0;
                if readiness_failed || copy_failed {
                    return Some((start, at(t, "/finishedAt")?, true));
                }
            }
        }
    }
    let mut finish: Option<SystemTime> = None;
    for st in &copies {
        let end = if native.contains(&text(st, "/name")) {
            if st.get("started").and_then(Value::as_bool) != Some(true) {
                return None;
            }
            setup.or(task).and_then(started_at)?
        } else {
            at(st, "/state/terminated/finishedAt")?
        };
        finish = finish.max(Some(end));
    }
    finish.map(|f| (start, f, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> String {
        time::format(UNIX_EPOCH + Duration::from_secs(1_796_226_000 + s)).replace(".000", "")
    }
    fn st(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_226_000 + s)
    }
    fn done(name: &str, start: u64, end: u64, code: i64) -> Value {
        json!({"name": name, "state": {"terminated": {"startedAt": t(start), "finishedAt": t(end), "exitCode": code}}})
    }

    fn pod(init: Value, containers: Value, native: bool) -> Value {
        let mut spec_init = json!([{"name": "copy-sidecar-0"}, {"name": "setup"}]);
        if native {
            spec_init[0]["restartPolicy"] = json!("Always");
        }
        json!({
            "metadata": {"creationTimestamp": t(0)},
            "spec": {"initContainers": spec_init},
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": t(2)}],
                "initContainerStatuses": init,
                "containerStatuses": containers,
            },
        })
    }

    #[test]
    fn copy_mode_phases_are_reported_once_each() {
        let mut tracker = SetupTracker::default();
        let p = pod(
            json!([{"name": "copy-sidecar-0", "state": {"running": {"startedAt": t(5)}}}]),
            json!([]),
            false,
        );
        let spans = tracker.observe(&p);
        assert_eq!(
            spans,
            [PhaseSpan {
                phase: Phase::PodSchedule,
                start: st(0),
                finish: st(2),
                is_error: false
            }]
        );
        let p = pod(
            json!([done("copy-sidecar-0", 5, 9, 0), done("setup", 10, 20, 0)]),
            json!([{"name": "task", "state": {"running": {"startedAt": t(23)}}}]),
            false,
        );
        let spans = tracker.observe(&p);
        assert_eq!(
            spans,
            [
                PhaseSpan {
                    phase: Phase::SidecarPrep,
                    start: st(5),
                    finish: st(9),
                    is_error: false
                },
                PhaseSpan {
                    phase: Phase::SetupCommand,
                    start: st(10),
                    finish: st(20),
                    is_error: false
                },
                PhaseSpan {
                    phase: Phase::ContainerStart,
                    start: st(20),
                    finish: st(23),
                    is_error: false
                },
            ]
        );
        assert!(tracker.observe(&p).is_empty(), "each phase once");
    }

    #[test]
    fn failures_fire_early_with_is_error() {
        let mut tracker = SetupTracker::default();
        let p = pod(json!([done("copy-sidecar-0", 5, 7, 1)]), json!([]), false);
        let spans = tracker.observe(&p);
        assert!(spans.contains(&PhaseSpan {
            phase: Phase::SidecarPrep,
            start: st(5),
            finish: st(7),
            is_error: true
        }));
        let p = pod(
            json!([done("copy-sidecar-0", 5, 7, 0), done("setup", 8, 12, 2)]),
            json!([]),
            false,
        );
        let spans = SetupTracker::default().observe(&p);
        assert!(spans.contains(&PhaseSpan {
            phase: Phase::SetupCommand,
            start: st(8),
            finish: st(12),
            is_error: true
        }));
    }

    #[test]
    fn readiness_sidecars_are_done_when_started() {
        let running = json!({"name": "copy-sidecar-0", "started": true, "state": {"running": {"startedAt": t(5)}}});
        let p = pod(
            json!([running, {"name": "setup", "state": {"running": {"startedAt": t(11)}}}]),
            json!([]),
            true,
        );
        let spans = SetupTracker::default().observe(&p);
        assert!(spans.contains(&PhaseSpan {
            phase: Phase::SidecarPrep,
            start: st(5),
            finish: st(11),
            is_error: false
        }));
        let not_yet = json!({"name": "copy-sidecar-0", "started": false, "state": {"running": {"startedAt": t(5)}}});
        let p = pod(json!([not_yet]), json!([]), true);
        assert!(
            SetupTracker::default()
                .observe(&p)
                .iter()
                .all(|s| s.phase != Phase::SidecarPrep)
        );
        let failed = json!({"name": "copy-sidecar-0", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"startedAt": t(5), "finishedAt": t(8), "exitCode": 1, "message": COPY_FAILED_MARKER}}});
        let p = pod(json!([failed]), json!([]), true);
        let spans = SetupTracker::default().observe(&p);
        assert!(spans.contains(&PhaseSpan {
            phase: Phase::SidecarPrep,
            start: st(5),
            finish: st(8),
            is_error: true
        }));
    }

    #[test]
    fn zero_ranges_are_dropped_and_no_init_starts_from_scheduling() {
        let mut p = pod(
            json!([]),
            json!([{"name": "task", "state": {"running": {"startedAt": t(0)}}}]),
            false,
        );
        p["status"]["conditions"][0]["lastTransitionTime"] = json!(t(0));
        let mut tracker = SetupTracker::default();
        assert!(tracker.observe(&p).is_empty(), "both ranges are zero");
        p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] = json!(t(4));
        assert!(tracker.observe(&p).is_empty(), "already decided");
        let spans = SetupTracker::default().observe(&p);
        assert_eq!(
            spans,
            [PhaseSpan {
                phase: Phase::ContainerStart,
                start: st(0),
                finish: st(4),
                is_error: false
            }]
        );
    }
}
