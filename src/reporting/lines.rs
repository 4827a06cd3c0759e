//! Output lines and the worker's own task-scoped log records, as redacted log records.
//!
//! Bodies are redacted whole first and never cut afterwards: a text over 64 KiB, or a redacted
//! body over the 16 KiB budget ([`super::MAX_BODY`]), is exported as `[REDACTED]` (as the Go
//! worker's fail-closed rules), so no cut can split a secret before the redactor saw it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::TaskRedactor;
use super::export::RecordSink;
use super::proto::{Record, Severity, Value};

/// At most this many output writers ([`LineSink`]s) per task, as the Go worker.
pub const MAX_WRITERS: usize = 128;

/// The `log.source` of the worker's own task-scoped records (the Go worker names none; this
/// is the value its setup-event records already carry).
pub const WORKER_SOURCE: &str = "worker";

/// [`super::TaskReport::line`] for another thread.
pub struct LineSink {
    pub(super) records: Option<RecordSink>,
    pub(super) redactor: Arc<TaskRedactor>,
    /// The task's count of live writers, released on drop.
    pub(super) writers: Option<Arc<AtomicUsize>>,
}

impl LineSink {
    /// See [`super::TaskReport::line`].
    pub fn line(&self, source: &str, attributes: &[(&'static str, &str)], text: &str) {
        if let Some(records) = &self.records {
            push(
                &self.redactor,
                records,
                Severity::Info,
                source,
                attributes,
                text,
            );
        }
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        if let Some(w) = self.writers.take() {
            w.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Counts a task's writers; past [`MAX_WRITERS`] a new one exports nothing (one WARN).
#[derive(Debug, Default)]
pub(super) struct Writers {
    live: Arc<AtomicUsize>,
    warned: AtomicBool,
}

impl Writers {
    /// A slot for one more writer, or `None` when the task has [`MAX_WRITERS`] already.
    pub(super) fn acquire(&self, run_id: &str) -> Option<Arc<AtomicUsize>> {
        let taken = self.live.fetch_add(1, Ordering::AcqRel);
        if taken < MAX_WRITERS {
            return Some(Arc::clone(&self.live));
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "Task {run_id}: more than {MAX_WRITERS} output writers; the output of further \
                 ones is not exported"
            );
        }
        None
    }
}

/// Redacts, bounds and queues one record.
pub(super) fn push(
    redactor: &TaskRedactor,
    sink: &RecordSink,
    severity: Severity,
    source: &str,
    attributes: &[(&'static str, &str)],
    text: &str,
) {
    // Under overload the line is dropped before it costs a redaction.
    if sink.is_full() {
        sink.count_drop();
        return;
    }
    let mut attrs = Vec::with_capacity(attributes.len() + 1);
    attrs.push(("log.source", Value::Str(source.to_owned())));
    attrs.extend(
        attributes
            .iter()
            .map(|(k, v)| (*k, Value::Str(bounded(redactor.redact(v))))),
    );
    sink.push(Record {
        time: SystemTime::now(),
        severity,
        body: bounded(redactor.redact(text)),
        attributes: attrs,
    });
}

/// A redacted text within the body budget, or `[REDACTED]` whole.
fn bounded(redacted: String) -> String {
    if redacted.len() > super::MAX_BODY {
        crate::redact::REDACTED.to_owned()
    } else {
        redacted
    }
}

/// The worker's own records for one task, routed here by the logger
/// ([`crate::logging::route_task`]).
pub(super) struct WorkerLog {
    records: Mutex<Option<RecordSink>>,
    redactor: Arc<TaskRedactor>,
}

impl WorkerLog {
    pub(super) fn new(records: RecordSink, redactor: Arc<TaskRedactor>) -> WorkerLog {
        WorkerLog {
            records: Mutex::new(Some(records)),
            redactor,
        }
    }

    /// Lets go of the queue (before the final flush, which waits for every handle).
    pub(super) fn close(&self) {
        drop(
            self.records
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

impl std::fmt::Debug for WorkerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerLog")
    }
}

impl crate::logging::TaskLogSink for WorkerLog {
    fn record(&self, level: log::Level, message: &str) {
        let severity = match level {
            log::Level::Trace => Severity::Trace,
            log::Level::Debug => Severity::Debug,
            log::Level::Info => Severity::Info,
            log::Level::Warn => Severity::Warn,
            log::Level::Error => Severity::Error,
        };
        let guard = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(records) = guard.as_ref() {
            push(
                &self.redactor,
                records,
                severity,
                WORKER_SOURCE,
                &[],
                message,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_over_the_budget_are_replaced_whole() {
        assert_eq!(bounded("x".repeat(super::super::MAX_BODY)).len(), 16 * 1024);
        assert_eq!(
            bounded("x".repeat(super::super::MAX_BODY + 1)),
            crate::redact::REDACTED
        );
    }

    #[test]
    fn writers_are_capped_and_released() {
        let w = Writers::default();
        let slots: Vec<_> = (0..MAX_WRITERS).map(|_| w.acquire("t")).collect();
        assert!(slots.iter().all(Option::is_some));
        assert!(w.acquire("t").is_none());
        let freed = LineSink {
            records: None,
            redactor: Arc::new(TaskRedactor::default()),
            writers: slots.into_iter().next().flatten(),
        };
        drop(freed);
        assert!(w.acquire("t").is_some());
    }
}
