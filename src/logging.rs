//! Log output: one line per record on stderr, redacted, as text or JSON.
//!
//! Text (default): `2026-11-25T11:36:16.123Z INFO  [task-id] message key=value`. The
//! `[task-id]` prefix appears when the record belongs to a task and the message does not
//! already name it (lifecycle lines say `Task <id> ...`, agent output is `[<id>] line`).
//!
//! JSON (`--log-format json`), one object per line for log pipelines:
//! `{"time":"...","level":"info","target":"...","message":"...","task_id":"...","fields":{...}}`
//! (`task_id` and `fields` only when present).
//!
//! Where the task id comes from, first match wins:
//! 1. a `task_id` key-value on the record: `info!(task_id = id; "Task {key} claimed")`;
//! 2. the task scope of the emitting thread: task threads (and the threads that pump an
//!    agent's output) hold `let _scope = logging::task_scope(&task_id);` for their lifetime.
//!
//! Task-log export: while a task's logs are exported, its reporter registers a
//! [`TaskLogSink`] under the task id ([`route_task`]); every record whose task id (found as
//! above) names it is also handed to that sink, except the forwarded output lines (targets
//! `agent`, `hook`, `dispatch`), which the backends export under their own sources. With no
//! sink registered this costs one atomic load per record.
//!
//! Other key-values become `fields`. Records from other crates are kept at DEBUG at most. Every message, field value and task id goes through
//! [`crate::redact`] before it is written, so registered secrets and bearer tokens never reach
//! the output at any level. The level comes from `--log-level`; `RUST_LOG` is not consulted,
//! so the flag means what it says. Times are UTC, RFC 3339 with milliseconds.

use std::cell::Cell;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::redact;

pub use crate::settings::LogFormat;

/// Installs the logger on stderr. Safe to call more than once (later calls are ignored).
pub fn init(level: LevelFilter, format: LogFormat) {
    install(Logger::new(level, format, Sink::Stderr));
}

/// Installs the logger writing to `writer` instead of stderr (tests, embedding). Returns
/// false when a logger was already installed.
pub fn init_with_writer(
    level: LevelFilter,
    format: LogFormat,
    writer: Box<dyn Write + Send>,
) -> bool {
    install(Logger::new(level, format, Sink::Writer(Mutex::new(writer))))
}

fn install(logger: Logger) -> bool {
    let level = logger.level;
    if log::set_boxed_logger(Box::new(logger)).is_err() {
        return false;
    }
    log::set_max_level(level);
    true
}

enum Sink {
    Stderr,
    Writer(Mutex<Box<dyn Write + Send>>),
}

/// The `log::Log` implementation behind [`init`].
pub struct Logger {
    level: LevelFilter,
    format: LogFormat,
    sink: Sink,
}

impl Logger {
    fn new(level: LevelFilter, format: LogFormat, sink: Sink) -> Logger {
        Logger {
            level,
            format,
            sink,
        }
    }

    /// A logger writing to `writer` (not installed; call [`Log::log`] on it directly).
    pub fn to_writer(
        level: LevelFilter,
        format: LogFormat,
        writer: Box<dyn Write + Send>,
    ) -> Logger {
        Logger::new(level, format, Sink::Writer(Mutex::new(writer)))
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // Third-party crates stop at DEBUG: tungstenite's TRACE output dumps raw frames, which
        // redaction is not the right tool for. (rustls is built without `logging` and says
        // nothing; its errors reach us as values.)
        metadata.level() <= self.level
            && (metadata.level() < Level::Trace || is_own_target(metadata.target()))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = CURRENT_TASK.with(|t| {
            format_line(
                self.format,
                record,
                SystemTime::now(),
                t.borrow().as_deref(),
            )
        });
        // One write per line, so lines from different threads never interleave.
        let _ = match &self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::Writer(w) => w
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(line.as_bytes()),
        };
        if ROUTED.load(Ordering::Relaxed) > 0 {
            route(record);
        }
    }

    fn flush(&self) {
        let _ = match &self.sink {
            Sink::Stderr => std::io::stderr().flush(),
            Sink::Writer(w) => w.lock().unwrap_or_else(PoisonError::into_inner).flush(),
        };
    }
}

fn is_own_target(target: &str) -> bool {
    target == "agent" || target == "oz_agent_worker" || target.starts_with("oz_agent_worker::")
}

thread_local! {
    static CURRENT_TASK: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Marks every record logged by this thread as belonging to a task until dropped (see the
/// module docs). Scopes nest; dropping restores the previous task.
#[must_use = "the scope ends when this value is dropped"]
pub struct TaskScope {
    previous: Option<Arc<str>>,
    // Must be dropped on the thread that created it.
    _not_send: PhantomData<Rc<()>>,
}

/// Starts a task scope on the current thread.
pub fn task_scope(task_id: &str) -> TaskScope {
    let previous = CURRENT_TASK.with(|t| t.replace(Some(Arc::from(task_id))));
    TaskScope {
        previous,
        _not_send: PhantomData,
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT_TASK.with(|t| *t.borrow_mut() = previous);
    }
}

/// Receives the worker's own records for one task (its task-log export). Called on the
/// thread that logged, so it must not block; anything it logs itself is not routed again.
pub trait TaskLogSink: Send + Sync {
    fn record(&self, level: Level, message: &str);
}

/// The registered sinks: (registration id, task id, sink). A handful at most (one per task
/// with log export on), so a scan is cheaper than a map.
type Routes = Vec<(u64, Arc<str>, Arc<dyn TaskLogSink>)>;

static ROUTES: RwLock<Routes> = RwLock::new(Vec::new());
/// `ROUTES.len()`, read without the lock on every record.
static ROUTED: AtomicUsize = AtomicUsize::new(0);
static NEXT_ROUTE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while this thread is inside a sink: a record the sink logs is not routed again.
    static ROUTING: Cell<bool> = const { Cell::new(false) };
}

/// Keeps a [`TaskLogSink`] registered; dropping it unregisters the sink.
#[must_use = "the sink is unregistered when this value is dropped"]
#[derive(Debug)]
pub struct TaskRoute {
    id: u64,
}

/// Sends the records of task `task_id` (see the module docs) to `sink` as well, until the
/// returned guard is dropped.
pub fn route_task(task_id: &str, sink: Arc<dyn TaskLogSink>) -> TaskRoute {
    let id = NEXT_ROUTE.fetch_add(1, Ordering::Relaxed);
    let mut routes = ROUTES.write().unwrap_or_else(PoisonError::into_inner);
    routes.push((id, Arc::from(task_id), sink));
    ROUTED.store(routes.len(), Ordering::Relaxed);
    TaskRoute { id }
}

impl Drop for TaskRoute {
    fn drop(&mut self) {
        let mut routes = ROUTES.write().unwrap_or_else(PoisonError::into_inner);
        routes.retain(|(id, _, _)| *id != self.id);
        ROUTED.store(routes.len(), Ordering::Relaxed);
    }
}

/// Output forwarded line by line: exported by the backends as `agent.stdout` and the like.
fn is_forwarded_output(target: &str) -> bool {
    matches!(target, "agent" | "hook" | "dispatch")
}

/// Hands `record` to the sink of its task, if one is registered.
fn route(record: &Record) {
    if is_forwarded_output(record.target()) || ROUTING.with(Cell::get) {
        return;
    }
    let mut fields = Fields::default();
    let _ = record.key_values().visit(&mut fields);
    let task: Option<Arc<str>> = match fields.task_id.take() {
        Some(id) => Some(Arc::from(id)),
        None => CURRENT_TASK.with(|t| t.borrow().clone()),
    };
    let Some(task) = task else { return };
    // The sink is called without the lock held: it may take locks of its own.
    let sink = ROUTES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(_, t, _)| **t == *task)
        .map(|(_, _, s)| Arc::clone(s));
    let Some(sink) = sink else { return };
    let mut message = record.args().to_string();
    append_fields(&mut message, &fields.others);
    ROUTING.with(|r| r.set(true));
    sink.record(record.level(), &message);
    ROUTING.with(|r| r.set(false));
}

fn append_fields(body: &mut String, fields: &BTreeMap<String, String>) {
    for (key, value) in fields {
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"') {
            let _ = write!(body, " {key}={value:?}");
        } else {
            let _ = write!(body, " {key}={value}");
        }
    }
}

/// Collects a record's key-values as strings.
#[derive(Default)]
struct Fields {
    task_id: Option<String>,
    others: BTreeMap<String, String>,
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        if key.as_str() == "task_id" {
            self.task_id = Some(value.to_string());
        } else {
            self.others
                .insert(key.as_str().to_owned(), value.to_string());
        }
        Ok(())
    }
}

fn level_text(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

fn level_json(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Formats one record as a complete, redacted line (with its newline). `thread_task` is the
/// task scope of the emitting thread.
pub fn format_line(
    format: LogFormat,
    record: &Record,
    now: SystemTime,
    thread_task: Option<&str>,
) -> String {
    let mut fields = Fields::default();
    let _ = record.key_values().visit(&mut fields);
    let task_id = fields
        .task_id
        .take()
        .or_else(|| thread_task.map(str::to_owned));
    let message = record.args().to_string();
    let time = utc_timestamp(now);
    match format {
        LogFormat::Text => {
            let mut body = String::with_capacity(message.len() + 32);
            if let Some(id) = task_id.as_deref().filter(|id| !message.contains(id)) {
                let _ = write!(body, "[{id}] ");
            }
            body.push_str(&message);
            append_fields(&mut body, &fields.others);
            format!(
                "{time} {} {}\n",
                level_text(record.level()),
                redact::redact(&body)
            )
        }
        LogFormat::Json => {
            let mut line = format!(
                "{{\"time\":\"{time}\",\"level\":\"{}\",\"target\":{},\"message\":{}",
                level_json(record.level()),
                json_string(record.target()),
                json_string(&redact::redact(&message)),
            );
            if let Some(id) = &task_id {
                let _ = write!(line, ",\"task_id\":{}", json_string(&redact::redact(id)));
            }
            if !fields.others.is_empty() {
                let redacted: BTreeMap<&str, String> = fields
                    .others
                    .iter()
                    .map(|(k, v)| (k.as_str(), redact::redact(v).into_owned()))
                    .collect();
                let map = serde_json::to_string(&redacted).unwrap_or_else(|_| "{}".to_owned());
                let _ = write!(line, ",\"fields\":{map}");
            }
            line.push_str("}\n");
            line
        }
    }
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), without a date crate.
pub fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests;
