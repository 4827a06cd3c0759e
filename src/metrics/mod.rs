//! Worker metrics: the Go worker's instruments, names, labels and priming, on plain atomics.
//!
//! Every update is one or two relaxed atomic operations, so any thread (supervisor, link, task
//! threads) can record without locks or channels. Readers take a [`Snapshot`] and render it as
//! Prometheus text ([`Metrics::render_prometheus`], served by `ops`) or OTLP JSON (`otlp`).
//!
//! | metric                                   | type      | labels                         |
//! |------------------------------------------|-----------|--------------------------------|
//! | `oz_worker_connected`                    | gauge     | –                              |
//! | `oz_worker_tasks_active`                 | gauge (up-down counter) | –                |
//! | `oz_worker_tasks_max_concurrent`         | gauge     | – (0 = unlimited)              |
//! | `oz_worker_tasks_claimed_total`          | counter   | –                              |
//! | `oz_worker_tasks_rejected_total`         | counter   | `reason`                       |
//! | `oz_worker_tasks_completed_total`        | counter   | `result`                       |
//! | `oz_worker_task_duration_seconds`        | histogram | `result` (not primed)          |
//! | `oz_worker_task_failures_total`          | counter   | `phase`, `reason`              |
//! | `oz_worker_websocket_reconnects_total`   | counter   | `reason`                       |
//! | `oz_worker_task_log_records_dropped_total` | counter | `reason` (`queue_full`, `export_failed`) |
//! | `oz_worker_info`                         | gauge = 1 | `backend`, `version`, `worker_id` |
//!
//! Every labelled counter is primed: all its label combinations exist at 0 from the start, so
//! dashboards and alert rules (`rate(...) > 0`, ratios) work before the first task. The
//! duration histogram is not primed, as in the Go worker: a fake observation would distort
//! quantiles.

mod health;
mod prometheus;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use crate::protocol::FailureReason;

pub use health::{Health, NotReady};
pub use prometheus::CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE;

/// OpenTelemetry's default explicit histogram bounds (seconds), as the Go worker uses them.
pub const DURATION_BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// The instrumentation scope the Go worker reports under (`otel_scope_name` downstream).
pub const SCOPE_NAME: &str = "github.com/warpdotdev/oz-agent-worker";

macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)* }

        impl $name {
            /// Every value, in priming order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// `reason` of `oz_worker_tasks_rejected_total`.
    RejectReason {
        AtCapacity => "at_capacity",
        ShuttingDown => "shutting_down",
        OneShotComplete => "one_shot_complete",
    }
}

label_enum! {
    /// `result` of `oz_worker_tasks_completed_total` and the duration histogram.
    TaskResult {
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Dispatched => "dispatched",
    }
}

label_enum! {
    /// `phase` of `oz_worker_task_failures_total`: where the task failed.
    FailurePhase {
        Assignment => "assignment",
        Backend => "backend",
        Cleanup => "cleanup",
    }
}

label_enum! {
    /// `reason` of `oz_worker_websocket_reconnects_total`.
    ReconnectReason {
        DialFailed => "dial_failed",
        RemoteClose => "remote_close",
    }
}

/// Task-log records not exported, process-wide (`oz_worker_task_log_records_dropped_total`):
/// every task's exporter adds to it, from any thread.
#[derive(Debug)]
pub struct TaskLogDrops {
    queue_full: AtomicU64,
    export_failed: AtomicU64,
}

impl TaskLogDrops {
    /// Records dropped because a task's export queue was full.
    pub fn queue_full(&self, n: u64) {
        self.queue_full.fetch_add(n, Relaxed);
    }

    /// Records in batches the collector did not take.
    pub fn export_failed(&self, n: u64) {
        self.export_failed.fetch_add(n, Relaxed);
    }

    /// (queue full, export failed) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.queue_full.load(Relaxed),
            self.export_failed.load(Relaxed),
        )
    }
}

/// The process's task-log drop counters (the exporters are per task; the metric is not).
pub static TASK_LOG_DROPS: TaskLogDrops = TaskLogDrops {
    queue_full: AtomicU64::new(0),
    export_failed: AtomicU64::new(0),
};

/// The labels of `oz_worker_info` (and the resource of pushed metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub version: String,
    pub backend: String,
    pub worker_id: String,
}

const RESULTS: usize = 4;
const BUCKETS: usize = DURATION_BOUNDS.len() + 1;

#[derive(Debug)]
struct Histogram {
    /// Per-bucket (not cumulative) counts; the last bucket is `+Inf`.
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        // Bounds are inclusive upper limits, as in OTel and Prometheus.
        let i = DURATION_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn point(&self) -> Option<HistogramPoint> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        // The count is derived from the buckets read, so a concurrent update can never make
        // `_count` disagree with the `+Inf` bucket.
        let count = counts.iter().sum();
        (count > 0).then(|| HistogramPoint {
            bounds: &DURATION_BOUNDS,
            counts,
            sum: self.sum_nanos.load(Relaxed) as f64 / 1e9,
            count,
        })
    }
}

/// The worker's metrics. Create one per process with [`Metrics::new`] and share the `Arc`.
#[derive(Debug)]
pub struct Metrics {
    info: WorkerInfo,
    start: SystemTime,
    connected: AtomicBool,
    active: AtomicI64,
    max_concurrent: AtomicU64,
    claimed: AtomicU64,
    rejected: Vec<AtomicU64>,
    completed: [AtomicU64; RESULTS],
    durations: [Histogram; RESULTS],
    /// Phase-major: `phase * FailureReason::ALL.len() + reason`.
    failures: Vec<AtomicU64>,
    reconnects: Vec<AtomicU64>,
    /// Series other layers contribute (the Kubernetes backend's API requests and watches).
    sources: Sources,
}

/// A function that returns families at snapshot time.
pub type Source = Box<dyn Fn() -> Vec<Family> + Send + Sync>;

#[derive(Default)]
struct Sources(std::sync::Mutex<Vec<Source>>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

fn counters(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn failure_index(phase: FailurePhase, reason: FailureReason) -> usize {
    let r = FailureReason::ALL
        .iter()
        .position(|x| *x == reason)
        .unwrap_or(0);
    phase.index() * FailureReason::ALL.len() + r
}

impl Metrics {
    /// Creates the registry with every series primed at 0 and `max_concurrent` recorded
    /// (0 = unlimited).
    pub fn new(info: WorkerInfo, max_concurrent: usize) -> Arc<Metrics> {
        Arc::new(Metrics {
            info,
            start: SystemTime::now(),
            connected: AtomicBool::new(false),
            active: AtomicI64::new(0),
            max_concurrent: AtomicU64::new(u64::try_from(max_concurrent).unwrap_or(u64::MAX)),
            claimed: AtomicU64::new(0),
            rejected: counters(RejectReason::ALL.len()),
            completed: std::array::from_fn(|_| AtomicU64::new(0)),
            durations: std::array::from_fn(|_| Histogram::new()),
            failures: counters(FailurePhase::ALL.len() * FailureReason::ALL.len()),
            reconnects: counters(ReconnectReason::ALL.len()),
            sources: Sources::default(),
        })
    }

    /// Adds families computed at each snapshot (a backend's own series).
    pub fn add_source(&self, source: Source) {
        self.sources
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(source);
    }

    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// The WebSocket to Oz is up (true) or down (false).
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    /// A task was claimed: counts the claim and one more active task.
    pub fn task_claimed(&self) {
        self.claimed.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    /// A claimed task's execution returned: one fewer active task, one completion with
    /// `result`, and its duration (from execution start) in the histogram.
    pub fn task_finished(&self, result: TaskResult, took: Duration) {
        self.active.fetch_sub(1, Relaxed);
        self.completed[result.index()].fetch_add(1, Relaxed);
        self.durations[result.index()].observe(took);
    }

    /// A claimed task ended without an execution (it failed before reaching a backend):
    /// one fewer active task, no completion, no duration.
    pub fn task_abandoned(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    pub fn task_rejected(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Relaxed);
    }

    /// One failed task, by where it failed and the wire failure reason.
    pub fn task_failed(&self, phase: FailurePhase, reason: FailureReason) {
        self.failures[failure_index(phase, reason)].fetch_add(1, Relaxed);
    }

    /// One reconnect attempt.
    pub fn reconnect(&self, reason: ReconnectReason) {
        self.reconnects[reason.index()].fetch_add(1, Relaxed);
    }

    pub fn tasks_active(&self) -> i64 {
        self.active.load(Relaxed)
    }

    pub fn max_concurrent(&self) -> u64 {
        self.max_concurrent.load(Relaxed)
    }

    /// A consistent-enough copy of every series (each value is read once).
    pub fn snapshot(&self) -> Snapshot {
        let int = |v: i64| PointValue::Int(v);
        let count = |a: &AtomicU64| int(i64::try_from(a.load(Relaxed)).unwrap_or(i64::MAX));
        let plain = |value| vec![Point::new(vec![], value)];
        let labelled = |key: &'static str, names: &[&'static str], values: &[AtomicU64]| {
            names
                .iter()
                .zip(values)
                .map(|(name, v)| Point::new(vec![(key, (*name).to_owned())], count(v)))
                .collect()
        };
        let results: Vec<&str> = TaskResult::ALL.iter().map(|r| r.as_str()).collect();
        let mut failures = Vec::with_capacity(self.failures.len());
        for phase in FailurePhase::ALL {
            for reason in FailureReason::ALL {
                failures.push(Point::new(
                    vec![
                        ("phase", phase.as_str().to_owned()),
                        ("reason", reason.as_str().to_owned()),
                    ],
                    count(&self.failures[failure_index(*phase, *reason)]),
                ));
            }
        }
        let durations = TaskResult::ALL
            .iter()
            .filter_map(|r| {
                self.durations[r.index()].point().map(|h| {
                    Point::new(
                        vec![("result", r.as_str().to_owned())],
                        PointValue::Histogram(h),
                    )
                })
            })
            .collect();
        let (queue_full, export_failed) = TASK_LOG_DROPS.get();
        let drops = |v: u64| int(i64::try_from(v).unwrap_or(i64::MAX));
        let info = &self.info;
        let fam = |name, help, kind, points| Family {
            name,
            help,
            unit: "",
            kind,
            points,
        };
        let families = vec![
            fam(
                "oz_worker_connected",
                "1 while the worker holds a WebSocket connection to Oz, else 0.",
                Kind::Gauge,
                plain(int(i64::from(self.connected()))),
            ),
            fam(
                "oz_worker_tasks_active",
                "Tasks claimed by this worker whose execution has not returned yet.",
                Kind::UpDownCounter,
                plain(int(self.tasks_active())),
            ),
            fam(
                "oz_worker_tasks_max_concurrent",
                "Configured limit on concurrent tasks; 0 means unlimited.",
                Kind::Gauge,
                plain(int(i64::try_from(self.max_concurrent()).unwrap_or(i64::MAX))),
            ),
            fam(
                "oz_worker_tasks_claimed_total",
                "Tasks claimed since the worker started.",
                Kind::Counter,
                plain(count(&self.claimed)),
            ),
            fam(
                "oz_worker_tasks_rejected_total",
                "Task assignments rejected since the worker started, by reason.",
                Kind::Counter,
                labelled(
                    "reason",
                    &RejectReason::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>(),
                    &self.rejected,
                ),
            ),
            fam(
                "oz_worker_tasks_completed_total",
                "Task executions finished since the worker started, by result.",
                Kind::Counter,
                labelled("result", &results, &self.completed),
            ),
            Family {
                name: "oz_worker_task_duration_seconds",
                help: "Wall-clock time of task executions on this worker, by result.",
                unit: "s",
                kind: Kind::Histogram,
                points: durations,
            },
            fam(
                "oz_worker_task_failures_total",
                "Failed tasks by phase and failure reason.",
                Kind::Counter,
                failures,
            ),
            fam(
                "oz_worker_websocket_reconnects_total",
                "Reconnect attempts to Oz since the worker started, by reason.",
                Kind::Counter,
                labelled(
                    "reason",
                    &ReconnectReason::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>(),
                    &self.reconnects,
                ),
            ),
            fam(
                "oz_worker_task_log_records_dropped_total",
                "Task log records not exported, by reason: the task's export queue was full, \
                 or the collector did not take the batch.",
                Kind::Counter,
                vec![
                    Point::new(vec![("reason", "queue_full".to_owned())], drops(queue_full)),
                    Point::new(
                        vec![("reason", "export_failed".to_owned())],
                        drops(export_failed),
                    ),
                ],
            ),
            fam(
                "oz_worker_info",
                "Always 1; the labels describe the worker build and configuration.",
                Kind::Gauge,
                vec![Point::new(
                    vec![
                        ("backend", info.backend.clone()),
                        ("version", info.version.clone()),
                        ("worker_id", info.worker_id.clone()),
                    ],
                    int(1),
                )],
            ),
        ];
        let mut families = families;
        for source in self
            .sources
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            families.extend(source());
        }
        Snapshot {
            start: self.start,
            time: SystemTime::now(),
            families,
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every series.
    pub fn render_prometheus(&self) -> String {
        prometheus::render(&self.snapshot(), &self.info)
    }
}

/// Values of every series at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the registry was created (the start of every cumulative series).
    pub start: SystemTime,
    pub time: SystemTime,
    pub families: Vec<Family>,
}

/// One metric: its name, type, and one point per label combination.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// UCUM unit (`s`) or empty.
    pub unit: &'static str,
    pub kind: Kind,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Non-monotonic sum; a gauge in Prometheus.
    UpDownCounter,
    /// Monotonic cumulative sum.
    Counter,
    Histogram,
}

#[derive(Debug, Clone)]
pub struct Point {
    /// Label names are static; values are escaped by each encoder.
    pub labels: Vec<(&'static str, String)>,
    pub value: PointValue,
}

impl Point {
    pub fn new(labels: Vec<(&'static str, String)>, value: PointValue) -> Point {
        Point { labels, value }
    }
}

#[derive(Debug, Clone)]
pub enum PointValue {
    Int(i64),
    Histogram(HistogramPoint),
}

#[derive(Debug, Clone)]
pub struct HistogramPoint {
    pub bounds: &'static [f64],
    /// Per-bucket counts, `bounds.len() + 1` of them (the last is `+Inf`).
    pub counts: Vec<u64>,
    /// Seconds.
    pub sum: f64,
    pub count: u64,
}

#[cfg(test)]
mod tests;
