//! What a task reports besides its outcome: setup-phase events to Warp's server and, when
//! both the operator and the assignment ask for it, the task's logs to an OTLP collector.
//!
//! A backend opens one [`TaskReport`] per execution ([`TaskReport::start`]), marks its setup
//! phases ([`TaskReport::begin`] / [`TaskReport::end`], or [`TaskReport::event`] with derived
//! timestamps), forwards output lines ([`TaskReport::line`]) and closes it before returning
//! ([`TaskReport::finish`]: the final log flush, ≤ 5 s). Nothing here can fail a task or
//! delay its claim or start: events are posted by a detached thread, log records go through
//! a bounded queue that drops (and counts) when full.
//!
//! For the Kubernetes backend the hook points are the same calls:
//!
//! ```text
//! let report = task_report(&ctx, BackendKind::Kubernetes, spec);   // the backend seam's helper
//! let span = report.begin(SetupPhase::JobCreate);           // around the Job POST
//! report.end(span, post_failed, cancel.is_cancelled());
//! report.event(SetupPhase::PodSchedule, pod_created, scheduled_at, false);  // from pod status
//! report.event(SetupPhase::SetupCommand, init_started, init_finished, init_failed);
//! let sink = report.lines();                                // on the log-follow thread
//! sink.line(&format!("pod.{container}"), &[("k8s.container.name", container),
//!                                          ("k8s.pod.name", pod)], line);
//! drop(sink); report.finish();
//! ```
//!
//! What leaves the machine: the event names and timings; the task's output lines, the
//! worker's own log lines about the task (`log.source=worker`, routed here by the logger while
//! the report is open) and setup events as log records, each passed through the task's
//! redactor ([`TaskRedactor`]: its `env_vars` values, the bootstrap token, issued export
//! tokens, and what the backend registers with [`TaskReport::redact_also`]; also URL-, JSON-
//! and line-wise shapes) and the process-wide one (the worker's API key, registry credentials)
//! first. A body over 16 KiB after redaction is sent as `[REDACTED]` ([`lines`]).

pub mod events;
pub mod export;
pub mod gate;
pub mod http;
pub mod lines;
pub mod proto;
pub mod redactor;
pub mod send;
pub mod token;

use std::sync::Arc;
use std::time::SystemTime;

pub use events::{SetupEvent, SetupPhase};
pub use export::flush_all;
pub use gate::Telemetry;
pub use lines::LineSink;
pub use redactor::TaskRedactor;

use events::EventPoster;
use export::{Drops, LogExporter};
use proto::{Envelope, Record, Severity, Value};
use send::Transport;

/// The logger scope of task records.
pub const SCOPE: &str = "oz-agent-worker.task";
/// Longest record body; a longer (already redacted) body is exported as `[REDACTED]`.
pub const MAX_BODY: usize = 16 * 1024;

/// Task-log records dropped so far in this process: (queue full, export failed).
pub fn dropped_records() -> (u64, u64) {
    crate::metrics::TASK_LOG_DROPS.get()
}

/// Worker-level facts.
#[derive(Debug, Clone, Copy)]
pub struct Reporting<'a> {
    pub worker_id: &'a str,
    pub backend: &'a str,
    pub server_root_url: &'a str,
    /// The operator switch `collect_task_logs`.
    pub collect_task_logs: bool,
}

/// Task-level facts.
#[derive(Debug, Clone, Copy)]
pub struct TaskFacts<'a> {
    pub run_id: &'a str,
    pub execution_id: Option<&'a str>,
    /// The task's environment (its `env_vars` last); `WARP_API_KEY` and
    /// `WARP_WORKLOAD_TOKEN` are read from it.
    pub env: &'a [(String, String)],
    /// Values to redact (the `env_vars` values and the bootstrap token).
    pub secrets: &'a [String],
    pub telemetry: Option<Telemetry<'a>>,
}

/// A phase being timed.
#[derive(Debug, Clone, Copy)]
#[must_use = "a phase is reported by TaskReport::end"]
pub struct Span {
    phase: SetupPhase,
    start: SystemTime,
}

/// One execution's reporting.
#[derive(Debug)]
pub struct TaskReport {
    run_id: String,
    events: Option<EventPoster>,
    logs: Option<LogExporter>,
    redactor: Arc<TaskRedactor>,
    writers: lines::Writers,
    /// The worker's own records of this task, while logs are exported.
    worker_log: Option<(Arc<lines::WorkerLog>, crate::logging::TaskRoute)>,
}

impl TaskReport {
    /// Reports nothing.
    pub fn disabled() -> TaskReport {
        TaskReport {
            run_id: String::new(),
            events: None,
            logs: None,
            redactor: Arc::new(TaskRedactor::default()),
            writers: lines::Writers::default(),
            worker_log: None,
        }
    }

    /// Opens the task's reporting over the worker's HTTP client.
    pub fn start(reporting: &Reporting<'_>, task: &TaskFacts<'_>) -> TaskReport {
        TaskReport::start_with(reporting, task, Arc::new(http::HttpTransport::new()))
    }

    /// [`TaskReport::start`] for a backend without setup phases (command): task logs only,
    /// and no warning about setup events it would never send.
    pub fn start_logs_only(reporting: &Reporting<'_>, task: &TaskFacts<'_>) -> TaskReport {
        TaskReport::open(reporting, task, Arc::new(http::HttpTransport::new()), false)
    }

    /// [`TaskReport::start`] over `transport`. Logs one WARN when setup events cannot be
    /// reported, and one when task logs were asked for but cannot be exported.
    pub fn start_with(
        reporting: &Reporting<'_>,
        task: &TaskFacts<'_>,
        transport: Arc<dyn Transport>,
    ) -> TaskReport {
        TaskReport::open(reporting, task, transport, true)
    }

    fn open(
        reporting: &Reporting<'_>,
        task: &TaskFacts<'_>,
        transport: Arc<dyn Transport>,
        setup_events: bool,
    ) -> TaskReport {
        let run_id = task.run_id;
        let redactor = Arc::new(TaskRedactor::new(task.secrets));
        let events = match gate::events(reporting.server_root_url, task.env) {
            _ if !setup_events => None,
            Ok((root, creds)) => EventPoster::spawn(
                root,
                run_id.to_owned(),
                creds,
                Arc::clone(&transport),
                Arc::clone(&redactor),
            ),
            Err(why) => {
                log::warn!("Task {run_id}: setup events will not be reported: {why}");
                None
            }
        };
        let logs = match gate::logs(
            reporting.collect_task_logs,
            task.telemetry,
            reporting.server_root_url,
            task.env,
        ) {
            gate::Logs::Off => None,
            gate::Logs::Unavailable(why) => {
                log::warn!("Task log reporting unavailable for task {run_id}: {why}");
                None
            }
            gate::Logs::On(plan) => {
                let bearer = token::IdentityTokens::new(
                    plan.token_url,
                    run_id.to_owned(),
                    plan.credentials,
                    Arc::clone(&transport),
                    Arc::clone(&redactor),
                );
                let target = export::Target {
                    url: plan.logs_url,
                    envelope: envelope(reporting, task),
                    transport,
                    bearer: Box::new(bearer),
                };
                match LogExporter::spawn(run_id, target, Arc::new(Drops::default())) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        log::warn!(
                            "Task log reporting unavailable for task {run_id}: cannot start a \
                             thread: {e}"
                        );
                        None
                    }
                }
            }
        };
        // From here on the worker's own records of this task are exported too.
        let worker_log = logs.as_ref().and_then(LogExporter::sink).map(|records| {
            let sink = Arc::new(lines::WorkerLog::new(records, Arc::clone(&redactor)));
            let route = crate::logging::route_task(
                run_id,
                Arc::clone(&sink) as Arc<dyn crate::logging::TaskLogSink>,
            );
            (sink, route)
        });
        TaskReport {
            run_id: run_id.to_owned(),
            events,
            logs,
            redactor,
            writers: lines::Writers::default(),
            worker_log,
        }
    }

    /// Adds values to the task's redactor (secrets learnt after the start, such as a
    /// Kubernetes pod's literal env values). Empty and short values are ignored by the redactor.
    pub fn add_secrets<I, S>(&self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.redactor.add_all(values);
    }

    /// True when log lines are exported (callers may skip building them otherwise).
    pub fn logs_enabled(&self) -> bool {
        self.logs.is_some()
    }

    /// True when setup events are posted for this task.
    pub fn events_enabled(&self) -> bool {
        self.events.is_some()
    }

    /// Registers values learnt while the task runs (the direct setup env file's values, the
    /// environment of a hook or dispatch subprocess) with the task's redactor. Call it before
    /// any output that may carry them is exported.
    pub fn redact_also<I, S>(&self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if self.logs.is_some() {
            self.redactor.add_all(values);
        }
    }

    /// Starts timing `phase`.
    pub fn begin(&self, phase: SetupPhase) -> Span {
        Span {
            phase,
            start: SystemTime::now(),
        }
    }

    /// Reports a timed phase, unless the task was cancelled meanwhile (a cancelled phase is
    /// neither a success nor a failure).
    pub fn end(&self, span: Span, is_error: bool, cancelled: bool) {
        if !cancelled {
            self.event(span.phase, span.start, SystemTime::now(), is_error);
        }
    }

    /// Reports a phase with known timestamps (Kubernetes derives them from pod status). A
    /// zero or inverted range is skipped.
    pub fn event(&self, phase: SetupPhase, start: SystemTime, finish: SystemTime, is_error: bool) {
        if finish < start || start == SystemTime::UNIX_EPOCH {
            return;
        }
        let event = SetupEvent {
            phase,
            start,
            finish,
            is_error,
        };
        if let Some(logs) = &self.logs {
            logs.push(Record {
                time: finish,
                severity: Severity::Info,
                body: phase.event_name().to_owned(),
                attributes: vec![
                    ("log.source", Value::Str(lines::WORKER_SOURCE.into())),
                    ("event.name", Value::Str(phase.event_name().into())),
                    ("start_ts", Value::Str(events::timestamp(start))),
                    ("finish_ts", Value::Str(events::timestamp(finish))),
                    ("latency_ms", Value::Double(event.latency_ms())),
                    ("is_error", Value::Bool(is_error)),
                ],
            });
        }
        if let Some(poster) = &self.events {
            poster.send(event);
        }
    }

    /// Exports one output line from `source` (`agent.stdout`, `container.stderr`, ...) with
    /// extra attributes. Redacted and bounded here; a no-op when logs are not exported.
    pub fn line(&self, source: &str, attributes: &[(&'static str, &str)], text: &str) {
        if let Some(sink) = self.logs.as_ref().and_then(LogExporter::own_sink) {
            lines::push(
                &self.redactor,
                sink,
                Severity::Info,
                source,
                attributes,
                text,
            );
        }
    }

    /// A handle for a thread that forwards output (Docker's log follower). It must be dropped
    /// before [`TaskReport::finish`] for the final flush to complete. A task has at most
    /// [`lines::MAX_WRITERS`] at once; past that the handle exports nothing.
    pub fn lines(&self) -> LineSink {
        let slot = self
            .logs
            .as_ref()
            .and_then(|_| self.writers.acquire(&self.run_id));
        LineSink {
            records: slot
                .as_ref()
                .and_then(|_| self.logs.as_ref().and_then(LogExporter::sink)),
            redactor: Arc::clone(&self.redactor),
            writers: slot,
        }
    }

    /// Flushes the task's logs (≤ 5 s) and lets the event poster finish on its own. Dropping
    /// the report does the same.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for TaskReport {
    fn drop(&mut self) {
        // The worker's records stop here: the final flush waits for every queue handle.
        if let Some((sink, route)) = self.worker_log.take() {
            drop(route);
            sink.close();
        }
        if let Some(logs) = self.logs.take() {
            let dropped = logs.dropped();
            if dropped > 0 {
                log::warn!(
                    "Task {}: {dropped} log record(s) were dropped: the export queue was full",
                    self.run_id
                );
            }
            if !logs.finish() {
                log::warn!(
                    "Task {}: the final task log flush did not finish within {:?}",
                    self.run_id,
                    export::FINAL_FLUSH
                );
            }
        }
    }
}

fn envelope(reporting: &Reporting<'_>, task: &TaskFacts<'_>) -> Envelope {
    Envelope {
        resource: vec![
            ("service.name", "oz-agent-worker".to_owned()),
            ("worker.id", reporting.worker_id.to_owned()),
            ("worker.backend", reporting.backend.to_owned()),
            ("run_id", task.run_id.to_owned()),
            ("execution_id", task.execution_id.unwrap_or("").to_owned()),
        ],
        scope_name: SCOPE,
        scope_version: crate::VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;
    use std::time::Duration;

    use super::send::{Reply, Request, SendError};

    /// Records every request and answers 200 (the identity mutation with a token).
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Request>>);

    impl Transport for Recorder {
        fn post(&self, r: &Request) -> Result<Reply, SendError> {
            self.0.lock().unwrap().push(r.clone());
            let body = if r.url.ends_with("/graphql/v2") {
                br#"{"data":{"issueTaskIdentityToken":{"__typename":"IssueTaskIdentityTokenOutput","token":"issued-1","expiresAt":"2099-01-01T00:00:00Z"}}}"#.to_vec()
            } else {
                Vec::new()
            };
            Ok(Reply { status: 200, body })
        }
    }

    impl Recorder {
        fn urls(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.url.clone())
                .collect()
        }

        /// Waits (bounded) for `n` requests: events are posted by another thread.
        fn wait(&self, n: usize) -> Vec<Request> {
            for _ in 0..2000 {
                if self.0.lock().unwrap().len() >= n {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            self.0.lock().unwrap().clone()
        }
    }

    fn env() -> Vec<(String, String)> {
        vec![
            ("WARP_API_KEY".into(), "key-1234".into()),
            ("WARP_WORKLOAD_TOKEN".into(), "wl-1234".into()),
        ]
    }

    fn open(t: &Arc<Recorder>, logs: bool, env: &[(String, String)]) -> TaskReport {
        TaskReport::start_with(
            &Reporting {
                worker_id: "w",
                backend: "direct",
                server_root_url: "http://root",
                collect_task_logs: true,
            },
            &TaskFacts {
                run_id: "run",
                execution_id: None,
                env,
                secrets: &["key-1234".to_owned()],
                telemetry: Some(Telemetry {
                    endpoint: "http://collector",
                    logging_enabled: logs,
                }),
            },
            Arc::clone(t) as Arc<dyn Transport>,
        )
    }

    #[test]
    fn cancelled_and_empty_phases_are_not_reported() {
        let t = Arc::new(Recorder::default());
        let r = open(&t, false, &env());
        let s = r.begin(SetupPhase::SetupCommand);
        r.end(s, true, true);
        let now = SystemTime::now();
        r.event(
            SetupPhase::PodSchedule,
            now,
            now - Duration::from_secs(1),
            false,
        );
        r.event(SetupPhase::PodSchedule, SystemTime::UNIX_EPOCH, now, false);
        r.event(
            SetupPhase::JobCreate,
            now - Duration::from_millis(1500),
            now,
            false,
        );
        let seen = t.wait(1);
        r.finish();
        assert_eq!(seen.len(), 1);
        let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body["event_name"], "setup_worker_job_create");
        assert_eq!(body["payload"]["latency_ms"], 1500.0);
        assert_eq!(
            seen[0].url,
            "http://root/api/v1/agent/runs/run/client-events"
        );
    }

    #[test]
    fn without_a_task_key_nothing_is_posted() {
        let t = Arc::new(Recorder::default());
        let r = open(&t, true, &[]);
        let s = r.begin(SetupPhase::ImagePull);
        r.end(s, false, false);
        r.line("agent.stdout", &[], "hello");
        assert!(!r.logs_enabled());
        r.finish();
        assert!(t.urls().is_empty());
    }

    #[test]
    fn lines_and_events_become_redacted_records_flushed_at_finish() {
        let t = Arc::new(Recorder::default());
        let r = open(&t, true, &env());
        assert!(r.logs_enabled());
        let s = r.begin(SetupPhase::SetupCommand);
        r.end(s, false, false);
        r.line("agent.stdout", &[], "the key is key-1234");
        let sink = r.lines();
        std::thread::spawn(move || {
            sink.line(
                "container.stderr",
                &[("log.iostream", "stderr")],
                &"é".repeat(20_000),
            );
        })
        .join()
        .unwrap();
        r.finish();
        let reqs = t.wait(3);
        let logs: Vec<&Request> = reqs
            .iter()
            .filter(|r| r.url == "http://collector/v1/logs")
            .collect();
        assert_eq!(logs.len(), 1, "one batch at finish");
        assert_eq!(logs[0].headers[0].1, "Bearer issued-1");
        let body = String::from_utf8_lossy(&logs[0].body);
        assert!(body.contains("the key is [REDACTED]"));
        assert!(!body.contains("key-1234"));
        assert!(body.contains("setup_worker_setup_command"));
        // The 40,000-byte line is over the 16 KiB body budget: replaced whole, never cut.
        assert_eq!(body.matches('é').count(), 0);
        assert!(body.contains("[REDACTED]"));
    }

    #[test]
    fn disabled_report_accepts_everything() {
        let r = TaskReport::disabled();
        let s = r.begin(SetupPhase::ImagePull);
        r.end(s, false, false);
        r.line("agent.stdout", &[], "x");
        assert!(!r.logs_enabled());
        r.finish();
    }
}
