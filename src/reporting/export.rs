//! The per-task log exporter: a bounded queue, one thread that batches and POSTs OTLP/HTTP
//! protobuf, and a bounded final flush.
//!
//! As the Go worker's batch processor: a batch leaves when it holds [`BATCH`] records or
//! [`INTERVAL`] after its first record; the queue holds [`QUEUE`] records and drops new ones
//! when full (counted); each export has [`EXPORT_TIMEOUT`] and is never retried; at task end
//! what is queued is flushed within [`FINAL_FLUSH`]. The collector's answer body is never
//! read into a log line.
//!
//! Worker shutdown flushes every live exporter at once ([`flush_all`]), including those of
//! tasks that keep running past the worker (command, Kubernetes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded, select};

use super::proto::{Envelope, Record, encode};
use super::send::{Request, SendError, Transport};

pub const BATCH: usize = 128;
pub const QUEUE: usize = 1024;
pub const INTERVAL: Duration = Duration::from_secs(5);
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// How long the exporter sleeps with nothing queued (any record or flush wakes it).
const IDLE: Duration = Duration::from_secs(3600);

/// Counters of one task's exporter (each count also goes to the process-wide metric).
#[derive(Debug, Default)]
pub struct Drops {
    /// Records refused because the queue was full.
    pub queue_full: AtomicU64,
    /// Records in batches the collector did not take (or that missed the final flush).
    pub export_failed: AtomicU64,
}

/// Supplies the bearer token of each export.
pub trait Bearer: Send {
    fn bearer(&mut self) -> Result<String, SendError>;
}

/// Where and how one task's batches go.
pub struct Target {
    pub url: String,
    pub envelope: Envelope,
    pub transport: Arc<dyn Transport>,
    pub bearer: Box<dyn Bearer>,
}

/// The task's side of the exporter.
pub struct LogExporter {
    sink: Option<RecordSink>,
    done: Receiver<()>,
    /// Its entry in [`LIVE`].
    live_id: u64,
}

/// A request to export what is queued now, by `deadline`; answered on `done`.
struct Flush {
    deadline: Instant,
    done: Sender<()>,
}

/// Every running exporter's flush channel, for [`flush_all`].
static LIVE: Mutex<Vec<(u64, Sender<Flush>)>> = Mutex::new(Vec::new());
static NEXT_LIVE: AtomicU64 = AtomicU64::new(0);

/// Asks every running exporter to export what it holds, all at once, and waits until they are
/// done or `budget` passed. Returns (flushed, not flushed in time).
pub fn flush_all(budget: Duration) -> (usize, usize) {
    let deadline = Instant::now() + budget;
    let live: Vec<Sender<Flush>> = LIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, tx)| tx.clone())
        .collect();
    let mut waiting = Vec::with_capacity(live.len());
    for tx in live {
        let (done, rx) = bounded(1);
        // A full or closed channel: that exporter is already flushing or finished.
        if tx.try_send(Flush { deadline, done }).is_ok() {
            waiting.push(rx);
        }
    }
    let total = waiting.len();
    let flushed = waiting
        .into_iter()
        .filter(|rx| rx.recv_deadline(deadline).is_ok())
        .count();
    (flushed, total - flushed)
}

/// Queues records for one exporter; cloned into the threads that forward output.
#[derive(Clone)]
pub struct RecordSink {
    tx: Sender<Record>,
    drops: Arc<Drops>,
    /// This task's queue-full drops, for its summary line.
    own_drops: Arc<AtomicU64>,
}

impl RecordSink {
    /// True when the queue is full: the caller may count a drop without building the record.
    pub fn is_full(&self) -> bool {
        self.tx.is_full()
    }

    /// Counts one record dropped because the queue was full.
    pub fn count_drop(&self) {
        self.drops.queue_full.fetch_add(1, Ordering::Relaxed);
        crate::metrics::TASK_LOG_DROPS.queue_full(1);
        self.own_drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues one record; never blocks. A full queue drops it (counted).
    pub fn push(&self, record: Record) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(record) {
            self.count_drop();
        }
    }
}

impl std::fmt::Debug for LogExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogExporter").finish_non_exhaustive()
    }
}

impl LogExporter {
    /// Starts the exporter thread for task `run_id`. `None` when no thread could be started.
    pub fn spawn(run_id: &str, target: Target, drops: Arc<Drops>) -> std::io::Result<LogExporter> {
        let (tx, rx) = bounded::<Record>(QUEUE);
        let (done_tx, done) = bounded::<()>(1);
        let (flush_tx, flush_rx) = bounded::<Flush>(1);
        let thread_drops = Arc::clone(&drops);
        let run = run_id.to_owned();
        std::thread::Builder::new()
            .name(crate::threads::thread_name("tl-", run_id))
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut worker = Worker {
                    run,
                    target,
                    drops: thread_drops,
                    failing: false,
                };
                worker.run(&rx, &flush_rx);
                let _ = done_tx.send(());
            })?;
        let live_id = NEXT_LIVE.fetch_add(1, Ordering::Relaxed);
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((live_id, flush_tx));
        Ok(LogExporter {
            live_id,
            sink: Some(RecordSink {
                tx,
                drops,
                own_drops: Arc::new(AtomicU64::new(0)),
            }),
            done,
        })
    }

    /// Queues one record; never blocks. A full queue drops it (counted).
    pub fn push(&self, record: Record) {
        if let Some(sink) = &self.sink {
            sink.push(record);
        }
    }

    /// Another handle on the queue (for a thread that forwards output).
    pub fn sink(&self) -> Option<RecordSink> {
        self.sink.clone()
    }

    /// The exporter's own handle on the queue.
    pub fn own_sink(&self) -> Option<&RecordSink> {
        self.sink.as_ref()
    }

    /// Records this task dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.sink
            .as_ref()
            .map_or(0, |s| s.own_drops.load(Ordering::Relaxed))
    }

    /// Closes the queue and waits at most [`FINAL_FLUSH`] for what is queued to be exported
    /// (every [`RecordSink`] must be gone by then). True when the flush finished in time.
    pub fn finish(mut self) -> bool {
        forget_live(self.live_id);
        drop(self.sink.take());
        self.done
            .recv_timeout(FINAL_FLUSH + Duration::from_millis(100))
            .is_ok()
    }
}

impl Drop for LogExporter {
    fn drop(&mut self) {
        forget_live(self.live_id);
    }
}

fn forget_live(id: u64) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(live, _)| *live != id);
}

struct Worker {
    run: String,
    target: Target,
    drops: Arc<Drops>,
    failing: bool,
}

impl Worker {
    fn run(&mut self, rx: &Receiver<Record>, flushes: &Receiver<Flush>) {
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        let mut due: Option<Instant> = None;
        loop {
            let wait = due.map_or(IDLE, |at| at.saturating_duration_since(Instant::now()));
            let got = select! {
                recv(rx) -> r => r.map_err(|_| RecvTimeoutError::Disconnected),
                recv(flushes) -> f => {
                    if let Ok(f) = f {
                        self.flush_now(rx, &mut batch, f.deadline);
                        due = None;
                        let _ = f.done.send(());
                    }
                    continue;
                },
                default(wait) => Err(RecvTimeoutError::Timeout),
            };
            match got {
                Ok(record) => {
                    if batch.is_empty() {
                        due = Some(Instant::now() + INTERVAL);
                    }
                    batch.push(record);
                    if batch.len() >= BATCH {
                        self.export(&mut batch, EXPORT_TIMEOUT);
                        due = None;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export(&mut batch, EXPORT_TIMEOUT);
                    due = None;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // The task ended: what is left goes out within the final-flush budget.
        let deadline = Instant::now() + FINAL_FLUSH;
        if !batch.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.export(&mut batch, left.min(EXPORT_TIMEOUT));
        }
    }

    /// Exports the batch and what is queued now, in batches, by `deadline` (worker shutdown).
    fn flush_now(&mut self, rx: &Receiver<Record>, batch: &mut Vec<Record>, deadline: Instant) {
        loop {
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.export(batch, left.min(EXPORT_TIMEOUT));
        }
    }

    fn export(&mut self, batch: &mut Vec<Record>, timeout: Duration) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let result = if timeout.is_zero() {
            Err("the final flush ran out of time".to_owned())
        } else {
            self.post(batch, timeout)
        };
        batch.clear();
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                log::info!("Task {}: task log export recovered", self.run);
            }
            Ok(()) => {}
            Err(why) => {
                self.drops.export_failed.fetch_add(n, Ordering::Relaxed);
                crate::metrics::TASK_LOG_DROPS.export_failed(n);
                if self.failing {
                    log::debug!("Task {}: task log export failed: {why}", self.run);
                } else {
                    self.failing = true;
                    log::warn!(
                        "Task {}: task log export failed ({why}); {n} record(s) dropped \
                         (repeats are logged at debug level)",
                        self.run
                    );
                }
            }
        }
    }

    /// One export. The error is generic: a status or a transport step, never the body.
    fn post(&mut self, batch: &[Record], timeout: Duration) -> Result<(), String> {
        let token = self
            .target
            .bearer
            .bearer()
            .map_err(|e| format!("no export token: {e}"))?;
        let request = Request {
            url: self.target.url.clone(),
            content_type: "application/x-protobuf",
            headers: vec![("Authorization".to_owned(), format!("Bearer {token}"))],
            body: encode(&self.target.envelope, batch),
            timeout,
            keep_body: 0,
        };
        match self.target.transport.post(&request) {
            Ok(r) if (200..300).contains(&r.status) => Ok(()),
            Ok(r) => Err(format!("the collector answered HTTP {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::super::proto::Severity;
    use super::super::send::Reply;
    use super::*;

    /// Records every request; answers with `status`, or blocks until released.
    struct Fake {
        seen: Mutex<Vec<Request>>,
        status: u16,
        gate: Mutex<Option<Receiver<()>>>,
    }

    impl Transport for Fake {
        fn post(&self, request: &Request) -> Result<Reply, SendError> {
            self.seen.lock().unwrap().push(request.clone());
            if let Some(gate) = self.gate.lock().unwrap().as_ref() {
                let _ = gate.recv();
            }
            Ok(Reply {
                status: self.status,
                body: b"secret body".to_vec(),
            })
        }
    }

    struct Token;
    impl Bearer for Token {
        fn bearer(&mut self) -> Result<String, SendError> {
            Ok("tok".into())
        }
    }

    fn record(i: usize) -> Record {
        Record {
            time: SystemTime::now(),
            severity: Severity::Info,
            body: format!("line {i}"),
            attributes: vec![],
        }
    }

    fn exporter(fake: &Arc<Fake>) -> (LogExporter, Arc<Drops>) {
        let drops = Arc::new(Drops::default());
        let target = Target {
            url: "http://c/v1/logs".into(),
            envelope: Envelope {
                resource: vec![],
                scope_name: "s",
                scope_version: "v",
            },
            transport: Arc::clone(fake) as Arc<dyn Transport>,
            bearer: Box::new(Token),
        };
        (
            LogExporter::spawn("t", target, Arc::clone(&drops)).unwrap(),
            drops,
        )
    }

    fn fake(status: u16, gate: Option<Receiver<()>>) -> Arc<Fake> {
        Arc::new(Fake {
            seen: Mutex::new(vec![]),
            status,
            gate: Mutex::new(gate),
        })
    }

    #[test]
    fn full_batches_leave_at_128_and_the_rest_at_finish() {
        let f = fake(200, None);
        let (e, drops) = exporter(&f);
        for i in 0..300 {
            e.push(record(i));
        }
        assert!(e.finish());
        let seen = f.seen.lock().unwrap();
        let sizes: Vec<usize> = seen
            .iter()
            .map(|r| {
                let body = String::from_utf8_lossy(&r.body);
                body.matches("line ").count()
            })
            .collect();
        assert_eq!(sizes, vec![128, 128, 44]);
        assert_eq!(seen[0].content_type, "application/x-protobuf");
        assert_eq!(seen[0].headers[0].1, "Bearer tok");
        assert_eq!(drops.queue_full.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_blocked_collector_fills_the_queue_and_drops_are_counted() {
        let (release, gate) = bounded::<()>(0);
        let f = fake(200, Some(gate));
        let (e, drops) = exporter(&f);
        // The first 128 form a batch that blocks in the transport; then the queue fills.
        let total = BATCH + QUEUE + 500;
        for i in 0..total {
            e.push(record(i));
            // Let the worker take the first batch before the queue fills.
            if i == BATCH - 1 {
                while f.seen.lock().unwrap().is_empty() {
                    std::thread::yield_now();
                }
            }
        }
        assert_eq!(e.dropped(), 500);
        assert_eq!(drops.queue_full.load(Ordering::Relaxed), 500);
        drop(release);
        assert!(e.finish());
    }

    #[test]
    fn flush_all_exports_what_every_live_exporter_holds_at_once() {
        let (f1, f2) = (fake(200, None), fake(200, None));
        let (e1, _) = exporter(&f1);
        let (e2, _) = exporter(&f2);
        for i in 0..3 {
            e1.push(record(i));
            e2.push(record(i));
        }
        // Without the flush these would wait for the 5 s interval.
        // (Other tests' exporters may be live too, and one of them blocked.)
        let (flushed, _) = flush_all(Duration::from_secs(5));
        assert!(flushed >= 2, "{flushed}");
        for f in [&f1, &f2] {
            let seen = f.seen.lock().unwrap();
            assert_eq!(seen.len(), 1);
            assert_eq!(
                String::from_utf8_lossy(&seen[0].body)
                    .matches("line ")
                    .count(),
                3
            );
        }
        // The exporters keep running after it, and finish as usual.
        e1.push(record(9));
        assert!(e1.finish() && e2.finish());
        assert_eq!(f1.seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn refused_batches_count_as_failed() {
        let f = fake(503, None);
        let (e, drops) = exporter(&f);
        for i in 0..130 {
            e.push(record(i));
        }
        assert!(e.finish());
        assert_eq!(drops.export_failed.load(Ordering::Relaxed), 130);
    }
}
