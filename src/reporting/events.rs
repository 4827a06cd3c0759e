//! Setup-phase client events: what the Go worker posts to
//! `<server root>/api/v1/agent/runs/<run id>/client-events` so that Warp shows how long image
//! pulls, sidecar preparation, container start and setup commands took.
//!
//! Posting is best effort and off the task's path: events go through a small bounded queue to
//! one poster thread per task, which outlives the task if a post is slow (each post has its own
//! 5 s deadline, detached from the task's cancellation) and ends when the queue is drained.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Sender, TrySendError, bounded};

use super::TaskRedactor;
use super::gate::{TaskCredentials, path_escape};
use super::send::{Request, Transport};

/// Deadline of one post.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a refusing server's body a WARN shows (after redaction).
pub const MAX_LOGGED_BODY: usize = 512;
/// Events waiting for the poster; a task has at most a handful.
const QUEUE: usize = 32;

/// A setup phase the worker observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupPhase {
    /// Docker: the task image pull, only when a pull ran.
    ImagePull,
    /// Docker: every sidecar's image and volume; Kubernetes: the `copy-sidecar-*` init
    /// containers.
    SidecarPrep,
    /// Docker: create through a successful start; Kubernetes: end of init (or scheduling) to
    /// the task container's start.
    ContainerStart,
    /// Kubernetes: around the Job POST.
    JobCreate,
    /// Kubernetes: pod creation to `PodScheduled=True`.
    PodSchedule,
    /// The direct setup hook; the Kubernetes `setup` init container.
    SetupCommand,
}

impl SetupPhase {
    pub const ALL: [SetupPhase; 6] = [
        SetupPhase::ImagePull,
        SetupPhase::SidecarPrep,
        SetupPhase::ContainerStart,
        SetupPhase::JobCreate,
        SetupPhase::PodSchedule,
        SetupPhase::SetupCommand,
    ];

    /// The `event_name` on the wire.
    pub fn event_name(self) -> &'static str {
        match self {
            SetupPhase::ImagePull => "setup_worker_image_pull",
            SetupPhase::SidecarPrep => "setup_worker_sidecar_prep",
            SetupPhase::ContainerStart => "setup_worker_container_start",
            SetupPhase::JobCreate => "setup_worker_job_create",
            SetupPhase::PodSchedule => "setup_worker_pod_schedule",
            SetupPhase::SetupCommand => "setup_worker_setup_command",
        }
    }
}

/// One finished phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetupEvent {
    pub phase: SetupPhase,
    pub start: SystemTime,
    pub finish: SystemTime,
    pub is_error: bool,
}

impl SetupEvent {
    /// Whole milliseconds from start to finish, as a float (the Go worker's `latency_ms`).
    pub fn latency_ms(&self) -> f64 {
        let ms = self
            .finish
            .duration_since(self.start)
            .map_or(0, |d| d.as_millis());
        // Exact for any phase shorter than 285,000 years.
        ms as f64
    }
}

/// RFC 3339 UTC with milliseconds, as Warp's server parses it.
pub fn timestamp(t: SystemTime) -> String {
    crate::logging::utc_timestamp(t)
}

/// A random (version 4) UUID.
pub fn new_uuid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // No OS randomness: time and a counter still make the event unique enough for the
        // server's de-duplication, which is all the UUID is for.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b[..8].copy_from_slice(&super::proto::unix_nanos(SystemTime::now()).to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The JSON body of one client event.
pub fn body(event: &SetupEvent, uuid: &str) -> String {
    let finish = timestamp(event.finish);
    serde_json::json!({
        "event_uuid": uuid,
        "event_name": event.phase.event_name(),
        "timestamp": finish,
        "payload": {
            "start_ts": timestamp(event.start),
            "finish_ts": finish,
            "latency_ms": event.latency_ms(),
            "is_error": event.is_error,
        },
    })
    .to_string()
}

/// The request for one event (`root` without a trailing slash).
pub fn request(root: &str, run_id: &str, creds: &TaskCredentials, event: &SetupEvent) -> Request {
    let mut headers = vec![
        (
            "Authorization".to_owned(),
            format!("Bearer {}", creds.api_key),
        ),
        ("X-Warp-Cloud-Agent-ID".to_owned(), run_id.to_owned()),
    ];
    if let Some(w) = &creds.workload_token {
        headers.push(("X-Warp-Ambient-Workload-Token".to_owned(), w.clone()));
    }
    Request {
        url: format!(
            "{root}/api/v1/agent/runs/{}/client-events",
            path_escape(run_id)
        ),
        content_type: "application/json",
        headers,
        body: body(event, &new_uuid()).into_bytes(),
        timeout: POST_TIMEOUT,
        keep_body: MAX_LOGGED_BODY,
    }
}

/// Queues a task's events for its poster thread.
#[derive(Debug)]
pub struct EventPoster {
    tx: Sender<SetupEvent>,
}

impl EventPoster {
    /// Starts the poster thread. `None` when no thread could be started (logged).
    pub fn spawn(
        root: String,
        run_id: String,
        creds: TaskCredentials,
        transport: Arc<dyn Transport>,
        redactor: Arc<TaskRedactor>,
    ) -> Option<EventPoster> {
        let (tx, rx) = bounded::<SetupEvent>(QUEUE);
        let name = crate::threads::thread_name("ev-", &run_id);
        let task = run_id.clone();
        let spawned = std::thread::Builder::new()
            .name(name)
            .stack_size(128 * 1024)
            .spawn(move || {
                for event in rx {
                    post(&*transport, &root, &run_id, &creds, &event, &redactor);
                }
            });
        match spawned {
            Ok(_) => Some(EventPoster { tx }),
            Err(e) => {
                log::warn!("Task {task}: setup events are off: cannot start a thread: {e}");
                None
            }
        }
    }

    /// Hands `event` to the poster; never blocks.
    pub fn send(&self, event: SetupEvent) {
        if let Err(TrySendError::Full(e)) = self.tx.try_send(event) {
            log::debug!(
                "Setup event {} not reported: the queue is full",
                e.phase.event_name()
            );
        }
    }
}

fn post(
    transport: &dyn Transport,
    root: &str,
    run_id: &str,
    creds: &TaskCredentials,
    event: &SetupEvent,
    redactor: &TaskRedactor,
) {
    let name = event.phase.event_name();
    match transport.post(&request(root, run_id, creds, event)) {
        Ok(reply) if (200..300).contains(&reply.status) => {
            log::debug!("Task {run_id}: reported setup event {name}");
        }
        Ok(reply) => {
            let cut = &reply.body[..reply.body.len().min(MAX_LOGGED_BODY)];
            let text = String::from_utf8_lossy(cut);
            let text = redactor.redact(&text);
            log::warn!(
                "Failed to report setup event {name} for task {run_id}: the server answered \
                 HTTP {}: {}",
                reply.status,
                text.escape_debug()
            );
        }
        Err(e) => log::warn!("Failed to report setup event {name} for task {run_id}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let ev = SetupEvent {
            phase: SetupPhase::ImagePull,
            start,
            finish: start + Duration::from_micros(2_500_900),
            is_error: true,
        };
        let v: serde_json::Value = serde_json::from_str(&body(&ev, "u-1")).unwrap();
        assert_eq!(v["event_uuid"], "u-1");
        assert_eq!(v["event_name"], "setup_worker_image_pull");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:22.500Z");
        assert_eq!(v["payload"]["start_ts"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["payload"]["finish_ts"], v["timestamp"]);
        assert_eq!(v["payload"]["latency_ms"], 2500.0);
        assert_eq!(v["payload"]["is_error"], true);
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn uuids_are_version_4() {
        let a = new_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, new_uuid());
    }

    #[test]
    fn request_headers_and_path() {
        let creds = TaskCredentials {
            api_key: "key".into(),
            workload_token: None,
        };
        let ev = SetupEvent {
            phase: SetupPhase::SetupCommand,
            start: SystemTime::now(),
            finish: SystemTime::now(),
            is_error: false,
        };
        let r = request("https://app", "run/1", &creds, &ev);
        assert_eq!(r.url, "https://app/api/v1/agent/runs/run%2F1/client-events");
        assert_eq!(
            r.headers,
            vec![
                ("Authorization".to_owned(), "Bearer key".to_owned()),
                ("X-Warp-Cloud-Agent-ID".to_owned(), "run/1".to_owned()),
            ]
        );
        let with = TaskCredentials {
            workload_token: Some("wt".into()),
            ..creds
        };
        let r = request("https://app", "r", &with, &ev);
        assert_eq!(r.headers[2].0, "X-Warp-Ambient-Workload-Token");
        assert_eq!(r.timeout, POST_TIMEOUT);
    }

    #[test]
    fn names_are_distinct() {
        let names: std::collections::BTreeSet<_> =
            SetupPhase::ALL.iter().map(|p| p.event_name()).collect();
        assert_eq!(names.len(), 6);
    }
}
