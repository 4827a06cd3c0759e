//! `failure_details.kubernetes`, schema version 1 (`upstream-newer.md` §1.3, merged upstream as
//! #139): a bounded, structured projection of the Job, pod, container and events behind a
//! failure, sent on `task_failed` beside the free-form message.
//!
//! Deliberately never included (as upstream): free-form messages, namespace, node, image names,
//! runtime ids and log text. Strings are cut at 256 bytes on a character boundary, at most 16
//! conditions and 10 events are kept, and `truncated` says when anything was cut.

use serde::Serialize;
use serde_json::Value;

use super::message::{int, normalized_exit_code, text};
use super::time;

pub const SCHEMA_VERSION: u32 = 1;
const MAX_STRING: usize = 256;
const MAX_CONDITIONS: usize = 16;
const MAX_EVENTS: usize = 10;

/// Which observation surfaced the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    PodWatch,
    JobWatch,
    SafetyPoll,
}

/// The `failure_details` object of `task_failed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureDetails {
    pub kubernetes: KubernetesDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubernetesDetails {
    pub schema_version: u32,
    pub observation_source: Source,
    pub observed_at: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerDetails>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventDetails>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetails {
    pub name: String,
    pub uid: String,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodDetails {
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    pub conditions: Vec<Condition>,
}

/// `regular`, `init` or `sidecar` (a native sidecar: an init container with
/// `restartPolicy: Always`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    Regular,
    Init,
    Sidecar,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerDetails {
    pub kind: ContainerKind,
    pub name: String,
    /// `terminated` or `waiting`.
    pub state: String,
    pub waiting_reason: String,
    pub termination_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventDetails {
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
    pub count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_observed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_observed_at: Option<String>,
}

/// Builds the details while tracking whether anything had to be cut.
#[derive(Debug, Default)]
pub struct Builder {
    truncated: bool,
}

impl Builder {
    /// Cuts to [`MAX_STRING`] bytes on a character boundary.
    fn s(&mut self, v: &str) -> String {
        if v.len() <= MAX_STRING {
            return v.to_owned();
        }
        self.truncated = true;
        let mut end = MAX_STRING;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v[..end].to_owned()
    }

    fn opt(&mut self, v: &Value, pointer: &str) -> Option<String> {
        match text(v, pointer) {
            "" => None,
            t => Some(self.s(t)),
        }
    }

    fn conditions(&mut self, obj: &Value, keep: impl Fn(&str) -> bool) -> Vec<Condition> {
        let all = obj.pointer("/status/conditions").and_then(Value::as_array);
        let mut out = Vec::new();
        for c in all.into_iter().flatten().filter(|c| keep(text(c, "/type"))) {
            if out.len() == MAX_CONDITIONS {
                self.truncated = true;
                break;
            }
            out.push(Condition {
                kind: self.s(text(c, "/type")),
                status: self.s(text(c, "/status")),
                reason: self.s(text(c, "/reason")),
                last_transition_time: self.opt(c, "/lastTransitionTime"),
            });
        }
        out
    }

    pub fn job(&mut self, job: &Value) -> JobDetails {
        JobDetails {
            name: self.s(text(job, "/metadata/name")),
            uid: self.s(text(job, "/metadata/uid")),
            conditions: self.conditions(job, |t| {
                matches!(t, "Complete" | "Failed" | "FailureTarget")
            }),
        }
    }

    pub fn pod(&mut self, pod: &Value) -> PodDetails {
        PodDetails {
            name: self.s(text(pod, "/metadata/name")),
            uid: self.s(text(pod, "/metadata/uid")),
            phase: self.s(text(pod, "/status/phase")),
            reason: self.s(text(pod, "/status/reason")),
            deletion_timestamp: self.opt(pod, "/metadata/deletionTimestamp"),
            conditions: self.conditions(pod, |_| true),
        }
    }

    /// `status` is a `ContainerStatus` (name, state).
    pub fn container(&mut self, kind: ContainerKind, status: &Value) -> ContainerDetails {
        let name = self.s(text(status, "/name"));
        if let Some(term) = status.pointer("/state/terminated") {
            let raw = int(term, "/exitCode");
            let signal = int(term, "/signal");
            return ContainerDetails {
                kind,
                name,
                state: "terminated".into(),
                waiting_reason: String::new(),
                termination_reason: self.s(text(term, "/reason")),
                raw_exit_code: Some(raw),
                normalized_exit_code: Some(normalized_exit_code(raw, signal)),
                signal: (signal > 0).then_some(signal),
                started_at: self.opt(term, "/startedAt"),
                finished_at: self.opt(term, "/finishedAt"),
            };
        }
        ContainerDetails {
            kind,
            name,
            state: "waiting".into(),
            waiting_reason: self.s(text(status, "/state/waiting/reason")),
            termination_reason: String::new(),
            raw_exit_code: None,
            normalized_exit_code: None,
            signal: None,
            started_at: None,
            finished_at: None,
        }
    }

    /// Warning events and `Killing`, newest first, at most 10.
    pub fn events<'a>(&mut self, events: impl IntoIterator<Item = &'a Value>) -> Vec<EventDetails> {
        let mut kept: Vec<&Value> = events
            .into_iter()
            .filter(|e| text(e, "/type") == "Warning" || text(e, "/reason") == "Killing")
            .collect();
        kept.sort_by_key(|e| std::cmp::Reverse(event_last(e).and_then(|t| time::parse(&t))));
        if kept.len() > MAX_EVENTS {
            self.truncated = true;
            kept.truncate(MAX_EVENTS);
        }
        kept.into_iter()
            .map(|e| EventDetails {
                kind: self.s(text(e, "/type")),
                reason: self.s(text(e, "/reason")),
                count: event_count(e),
                first_observed_at: event_first(e).map(|t| self.s(&t)),
                last_observed_at: event_last(e).map(|t| self.s(&t)),
            })
            .collect()
    }

    pub fn finish(
        self,
        source: Source,
        observed_at: std::time::SystemTime,
        job: Option<JobDetails>,
        pod: Option<PodDetails>,
        container: Option<ContainerDetails>,
        events: Vec<EventDetails>,
    ) -> FailureDetails {
        FailureDetails {
            kubernetes: KubernetesDetails {
                schema_version: SCHEMA_VERSION,
                observation_source: source,
                observed_at: time::format(observed_at),
                truncated: self.truncated,
                job,
                pod,
                container,
                events,
            },
        }
    }
}

/// The first non-empty text among `pointers`.
fn first_text(e: &Value, pointers: &[&str]) -> Option<String> {
    pointers
        .iter()
        .map(|p| text(e, p))
        .find(|t| !t.is_empty())
        .map(str::to_owned)
}

/// When an event (core `v1` or `events.k8s.io/v1`) was first seen.
pub fn event_first(e: &Value) -> Option<String> {
    first_text(
        e,
        &[
            "/firstTimestamp",
            "/deprecatedFirstTimestamp",
            "/eventTime",
            "/metadata/creationTimestamp",
        ],
    )
}

/// When an event was last seen.
pub fn event_last(e: &Value) -> Option<String> {
    first_text(
        e,
        &[
            "/series/lastObservedTime",
            "/lastTimestamp",
            "/deprecatedLastTimestamp",
            "/eventTime",
            "/firstTimestamp",
            "/metadata/creationTimestamp",
        ],
    )
}

fn event_count(e: &Value) -> i64 {
    ["/series/count", "/count", "/deprecatedCount"]
        .iter()
        .map(|p| int(e, p))
        .find(|n| *n > 0)
        .unwrap_or(1)
}

/// The uid of the object an event is about (core `involvedObject`, new API `regarding`).
pub fn event_subject(e: &Value) -> &str {
    match text(e, "/involvedObject/uid") {
        "" => text(e, "/regarding/uid"),
        uid => uid,
    }
}

/// An event's message (core `message`, new API `note`).
pub fn event_message(e: &Value) -> &str {
    match text(e, "/message") {
        "" => text(e, "/note"),
        m => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn serialises_schema_one_with_bounds() {
        let mut b = Builder::default();
        let job = json!({
            "metadata": {"name": "j", "uid": "u1"},
            "status": {"conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"},
                {"type": "Suspended", "status": "False"},
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                 "lastTransitionTime": "2026-12-02T15:00:00Z", "message": "never sent"},
            ]},
        });
        let long = "é".repeat(200);
        let pod = json!({
            "metadata": {"name": "p", "uid": "u2", "deletionTimestamp": "2026-12-02T15:00:01Z"},
            "status": {"phase": "Failed", "reason": long, "message": "secret-ish text"},
        });
        let status = json!({"name": "task", "state": {"terminated": {
            "exitCode": 143, "signal": 0, "reason": "Error", "message": "log tail",
            "startedAt": "2026-12-02T14:00:00Z", "finishedAt": "2026-12-02T15:00:00Z"}}});
        let jd = b.job(&job);
        let pd = b.pod(&pod);
        let cd = b.container(ContainerKind::Regular, &status);
        let details = b.finish(
            Source::PodWatch,
            UNIX_EPOCH + Duration::from_secs(1_796_226_325),
            Some(jd),
            Some(pd),
            Some(cd),
            Vec::new(),
        );
        let v = serde_json::to_value(&details).unwrap();
        let k = &v["kubernetes"];
        assert_eq!(k["schema_version"], 1);
        assert_eq!(k["observation_source"], "pod_watch");
        assert_eq!(k["observed_at"], "2026-12-02T15:45:25.000Z");
        assert_eq!(k["truncated"], true, "the pod reason was cut");
        assert_eq!(k["pod"]["reason"].as_str().unwrap().len(), 256);
        assert_eq!(k["job"]["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(k["job"]["conditions"][1]["type"], "Failed");
        assert_eq!(
            k["job"]["conditions"][1]["last_transition_time"],
            "2026-12-02T15:00:00Z"
        );
        assert!(
            k["job"]["conditions"][0]
                .get("last_transition_time")
                .is_none()
        );
        assert_eq!(k["pod"]["deletion_timestamp"], "2026-12-02T15:00:01Z");
        assert_eq!(k["container"]["kind"], "regular");
        assert_eq!(k["container"]["state"], "terminated");
        assert_eq!(k["container"]["raw_exit_code"], 143);
        assert_eq!(k["container"]["normalized_exit_code"], 143);
        assert!(k["container"].get("signal").is_none());
        assert!(k.get("events").is_none());
        let text = v.to_string();
        for never in ["never sent", "secret-ish text", "log tail"] {
            assert!(!text.contains(never), "free-form text leaked: {never}");
        }
    }

    #[test]
    fn waiting_container_and_condition_cap() {
        let mut b = Builder::default();
        let conditions: Vec<Value> = (0..20)
            .map(|i| json!({"type": format!("C{i}"), "status": "True"}))
            .collect();
        let pd = b.pod(&json!({"status": {"conditions": conditions}}));
        assert_eq!(pd.conditions.len(), 16);
        let cd = b.container(
            ContainerKind::Sidecar,
            &json!({"name": "proxy", "state": {"waiting": {"reason": "ImagePullBackOff"}}}),
        );
        assert_eq!(cd.state, "waiting");
        assert_eq!(cd.waiting_reason, "ImagePullBackOff");
        assert_eq!(cd.raw_exit_code, None);
        let d = b.finish(
            Source::SafetyPoll,
            UNIX_EPOCH,
            None,
            Some(pd),
            Some(cd),
            Vec::new(),
        );
        assert!(d.kubernetes.truncated);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["kubernetes"]["container"]["kind"], "sidecar");
        assert_eq!(v["kubernetes"]["observation_source"], "safety_poll");
    }

    #[test]
    fn events_keep_warnings_and_killing_newest_first() {
        let mut events: Vec<Value> = (0..12)
            .map(|i| {
                json!({"type": "Warning", "reason": format!("R{i}"), "count": i + 1,
                       "firstTimestamp": "2026-12-02T15:00:00Z",
                       "lastTimestamp": format!("2026-12-02T15:00:{i:02}Z")})
            })
            .collect();
        events.push(json!({"type": "Normal", "reason": "Pulled"}));
        events.push(json!({"type": "Normal", "reason": "Killing", "note": "x",
                           "eventTime": "2026-12-02T16:00:00.000000Z",
                           "series": {"count": 3, "lastObservedTime": "2026-12-02T16:30:00.000000Z"}}));
        let mut b = Builder::default();
        let kept = b.events(&events);
        assert_eq!(kept.len(), 10);
        assert!(b.truncated);
        assert_eq!(kept[0].reason, "Killing");
        assert_eq!(kept[0].count, 3);
        assert_eq!(
            kept[0].last_observed_at.as_deref(),
            Some("2026-12-02T16:30:00.000000Z")
        );
        assert_eq!(kept[1].reason, "R11");
        assert!(kept.iter().all(|e| e.reason != "Pulled"));
    }

    #[test]
    fn event_accessors_read_both_apis() {
        let core = json!({"involvedObject": {"uid": "a"}, "message": "m", "count": 2});
        let new = json!({"regarding": {"uid": "b"}, "note": "n", "deprecatedCount": 4});
        assert_eq!((event_subject(&core), event_message(&core)), ("a", "m"));
        assert_eq!((event_subject(&new), event_message(&new)), ("b", "n"));
        assert_eq!((event_count(&core), event_count(&new)), (2, 4));
        assert_eq!(event_count(&json!({})), 1);
    }
}
