//! The flag table. Each entry is the single source for parsing, `--help` and the man page.
//!
//! `doc_short` is plain text for `--help` (one line); `doc_long` is roff for the man page.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{LowArgs, Special};
use crate::settings::BackendKind;
use crate::settings::LogFormat;
use crate::settings::{self, Secret, Timing};

/// Help and man page section a flag is listed under, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Connection,
    Config,
    Tasks,
    Backend,
    RunOnce,
    Other,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Connection,
        Category::Config,
        Category::Tasks,
        Category::Backend,
        Category::RunOnce,
        Category::Other,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Category::Connection => "Connection",
            Category::Config => "Configuration",
            Category::Tasks => "Tasks",
            Category::Backend => "Backend options",
            Category::RunOnce => "run-once",
            Category::Other => "Other",
        }
    }
}

/// How a flag consumes arguments.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A boolean switch; `--flag=value` is an error.
    Switch(fn(&mut LowArgs)),
    /// A boolean that may be turned off: `--flag` or `--flag=true|false` (Go's bool flags).
    Toggle(fn(&mut LowArgs, bool)),
    /// Takes one value (`--flag v`, `--flag=v`, `-f v`, `-fv`). `update` returns the reason a
    /// value is invalid; the parser prefixes the flag name.
    Value {
        name: &'static str,
        update: fn(&mut LowArgs, OsString) -> Result<(), String>,
    },
}

/// One command-line flag.
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    /// Environment variable consulted when the flag is absent.
    pub env: Option<&'static str>,
    /// Top-level config file key that the flag overrides.
    pub yaml: Option<&'static str>,
    /// Default shown in the docs (the code's default lives in `config`/`settings`).
    pub default: Option<&'static str>,
    pub repeatable: bool,
    pub category: Category,
    pub doc_short: &'static str,
    pub doc_long: &'static str,
}

impl Flag {
    pub fn value_name(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Switch(_) | Kind::Toggle(_) => None,
            Kind::Value { name, .. } => Some(name),
        }
    }
}

fn text(value: OsString) -> Result<String, String> {
    value
        .into_string()
        .map_err(|_| "value is not valid UTF-8".to_owned())
}

/// Empty counts as "not given", as in the Go worker.
fn non_empty(value: OsString) -> Result<Option<String>, String> {
    let s = text(value)?;
    Ok((!s.is_empty()).then_some(s))
}

fn path(value: OsString) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

fn one_of(value: &str, allowed: &[&str]) -> String {
    format!(
        "invalid value {value:?} (expected one of: {})",
        allowed.join(", ")
    )
}

pub const LOG_LEVELS: [(&str, log::LevelFilter); 4] = [
    ("debug", log::LevelFilter::Debug),
    ("info", log::LevelFilter::Info),
    ("warn", log::LevelFilter::Warn),
    ("error", log::LevelFilter::Error),
];

pub static FLAGS: &[Flag] = &[
    Flag {
        long: "worker-id",
        short: None,
        kind: Kind::Value {
            name: "ID",
            update: |low, v| {
                low.worker_id = non_empty(v)?;
                Ok(())
            },
        },
        env: None,
        yaml: Some("worker_id"),
        default: None,
        repeatable: false,
        category: Category::Connection,
        doc_short: "Worker ID that Oz routes tasks to (required for the daemon).",
        doc_long: r"The ID this worker registers under; Oz routes tasks addressed to it here.
Required when running the daemon (from this flag or \fBworker_id\fR in the config file).
IDs starting with \fBwarp\fR are reserved. \fBrun\-once\fR and \fBcheck\fR default it to
\fBlocal\fR.",
    },
    Flag {
        long: "api-key",
        short: None,
        kind: Kind::Value {
            name: "KEY",
            update: |low, v| {
                low.api_key = non_empty(v)?.map(Secret::new);
                Ok(())
            },
        },
        env: Some("WARP_API_KEY"),
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Connection,
        doc_short: "Team API key used to authenticate to Oz.",
        doc_long: r"The team-scoped service-account API key sent as a bearer token. When absent,
\fBWARP_API_KEY\fR is read. Prefer \fB\-\-api\-key\-file\fR or the environment: command lines
are visible to other users of the host. Required by the daemon, unused by \fBrun\-once\fR.",
    },
    Flag {
        long: "api-key-file",
        short: None,
        kind: Kind::Value {
            name: "PATH",
            update: |low, v| {
                low.api_key_file = path(v);
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Connection,
        doc_short: "Read the API key from a file (trailing whitespace trimmed).",
        doc_long: r"Read the API key from \fIPATH\fR, trimming trailing newlines and whitespace. Meant for
systemd credentials (\fB$CREDENTIALS_DIRECTORY/api\-key\fR) and mounted Kubernetes secrets.
Cannot be combined with \fB\-\-api\-key\fR; takes precedence over \fBWARP_API_KEY\fR.",
    },
    Flag {
        long: "web-socket-url",
        short: None,
        kind: Kind::Value {
            name: "URL",
            update: |low, v| {
                low.web_socket_url = non_empty(v)?;
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: Some(settings::DEFAULT_WEB_SOCKET_URL),
        repeatable: false,
        category: Category::Connection,
        doc_short: "Oz WebSocket endpoint (ws:// or wss://).",
        doc_long: r"The Oz control-plane WebSocket endpoint. Must use the \fBws\fR or \fBwss\fR
scheme.",
    },
    Flag {
        long: "server-root-url",
        short: None,
        kind: Kind::Value {
            name: "URL",
            update: |low, v| {
                low.server_root_url = non_empty(v)?;
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: Some(settings::DEFAULT_SERVER_ROOT_URL),
        repeatable: false,
        category: Category::Connection,
        doc_short: "Warp server root URL passed to tasks (http:// or https://).",
        doc_long: r"The Warp server root URL handed to the agent of every task. Must use the
\fBhttp\fR or \fBhttps\fR scheme.",
    },
    Flag {
        long: "session-sharing-server-url",
        short: None,
        kind: Kind::Value {
            name: "URL",
            update: |low, v| {
                low.session_sharing_server_url = non_empty(v)?;
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Connection,
        doc_short: "Session-sharing server URL forwarded to the agent.",
        doc_long: r"Forwarded verbatim to the agent as \fB\-\-session\-sharing\-server\-url\fR.",
    },
    Flag {
        long: "ca-bundle",
        short: None,
        kind: Kind::Value {
            name: "PATH",
            update: |low, v| {
                low.ca_bundle = path(v);
                Ok(())
            },
        },
        env: None,
        yaml: Some("ca_bundle"),
        default: None,
        repeatable: false,
        category: Category::Connection,
        doc_short: "Extra PEM CA bundle trusted for wss:// besides the system roots.",
        doc_long: r"A PEM file of CA certificates trusted for the \fBwss://\fR connection in addition
to the system roots, for TLS-intercepting proxies and private deployments.",
    },
    Flag {
        long: "state-dir",
        short: None,
        kind: Kind::Value {
            name: "PATH",
            update: |low, v| {
                low.state_dir = path(v);
                Ok(())
            },
        },
        env: None,
        yaml: Some("state_dir"),
        default: Some("/var/lib/oz-agent-worker"),
        repeatable: false,
        category: Category::Config,
        doc_short: "Directory of the outcome journal that carries tasks across a crash.",
        doc_long: r"The worker keeps an append\-only, checksummed journal of its tasks here
(claimed, ended with the terminal message, delivered), so that after a crash
(\fBkill \-9\fR, OOM kill, power loss) every claimed task still gets exactly one
terminal message: undelivered messages are sent again, and tasks a crashed process left
running are adopted (Docker) or stopped and reported (direct). The journal holds no
secret. Without a writable directory the worker runs without it and warns.
systemd's \fBStateDirectory=oz\-agent\-worker\fR provides the default.",
    },
    Flag {
        long: "config-file",
        short: None,
        kind: Kind::Value {
            name: "PATH",
            update: |low, v| {
                low.config_file = path(v);
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Config,
        doc_short: "YAML config file (flags override its values).",
        doc_long: r"Read settings from this YAML file (see \fBCONFIGURATION FILE\fR). A leading
\fB~/\fR is expanded and a relative path is made absolute. Flags override file values.",
    },
    Flag {
        long: "backend",
        short: None,
        kind: Kind::Value {
            name: "BACKEND",
            update: |low, v| {
                let s = text(v)?;
                if s.is_empty() {
                    low.backend = None;
                    return Ok(());
                }
                low.backend = Some(BackendKind::parse(&s).ok_or_else(|| {
                    let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.as_str()).collect();
                    one_of(&s, &names)
                })?);
                Ok(())
            },
        },
        env: None,
        yaml: Some("backend"),
        default: Some("docker"),
        repeatable: false,
        category: Category::Config,
        doc_short: "Task backend: docker, direct, kubernetes or command.",
        doc_long: r"Where tasks run: \fBdocker\fR (a container per task), \fBdirect\fR (processes on
this host), \fBkubernetes\fR (a Job per task) or \fBcommand\fR (hand each task to an operator
command). Without this flag the backend block present in the config file decides, else
\fBdocker\fR. If the flag names a different backend than the file's block, the block is
ignored with a warning.",
    },
    Flag {
        long: "log-level",
        short: None,
        kind: Kind::Value {
            name: "LEVEL",
            update: |low, v| {
                let s = text(v)?;
                let names: Vec<&str> = LOG_LEVELS.iter().map(|(n, _)| *n).collect();
                low.log_level = Some(
                    LOG_LEVELS
                        .iter()
                        .find(|(n, _)| *n == s)
                        .map(|(_, l)| *l)
                        .ok_or_else(|| one_of(&s, &names))?,
                );
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: Some("info"),
        repeatable: false,
        category: Category::Config,
        doc_short: "Log level: debug, info, warn or error.",
        doc_long: r"Minimum level of log lines: \fBdebug\fR, \fBinfo\fR, \fBwarn\fR or \fBerror\fR.",
    },
    Flag {
        long: "log-format",
        short: None,
        kind: Kind::Value {
            name: "FORMAT",
            update: |low, v| {
                let s = text(v)?;
                low.log_format = Some(LogFormat::parse(&s).ok_or_else(|| {
                    let names: Vec<&str> = LogFormat::ALL.iter().map(|f| f.as_str()).collect();
                    one_of(&s, &names)
                })?);
                Ok(())
            },
        },
        env: None,
        yaml: Some("log_format"),
        default: Some("text"),
        repeatable: false,
        category: Category::Config,
        doc_short: "Log format: text, or json (one object per line).",
        doc_long: r"\fBtext\fR writes \fItime level message\fR lines; \fBjson\fR writes one JSON
object per line with \fBtime\fR, \fBlevel\fR, \fBtarget\fR, \fBmessage\fR and, when
known, \fBtask_id\fR and \fBfields\fR, for log pipelines. Secrets are redacted in both.",
    },
    Flag {
        long: "metrics-addr",
        short: None,
        kind: Kind::Value {
            name: "HOST:PORT",
            update: |low, v| {
                let s = text(v)?;
                if s.is_empty() {
                    low.metrics_addr = None;
                    return Ok(());
                }
                crate::settings::bind_address(&s)?;
                low.metrics_addr = Some(s);
                Ok(())
            },
        },
        env: None,
        yaml: Some("metrics_addr"),
        default: None,
        repeatable: false,
        category: Category::Config,
        doc_short: "Serve /metrics, /healthz and /readyz over HTTP on this address.",
        doc_long: r"Listen on \fIHOST\fR:\fIPORT\fR (\fB:\fR\fIPORT\fR for every interface) and
serve \fB/metrics\fR (Prometheus text format), \fB/healthz\fR (the worker's main loop is
alive) and \fB/readyz\fR (connected to Oz and the backend is available). Without it, the
Go worker's \fBOTEL_METRICS_EXPORTER=prometheus\fR with \fBOTEL_EXPORTER_PROMETHEUS_HOST\fR
and \fBOTEL_EXPORTER_PROMETHEUS_PORT\fR enables the same listener.",
    },
    Flag {
        long: "max-concurrent-tasks",
        short: None,
        kind: Kind::Value {
            name: "N",
            update: |low, v| {
                let s = text(v)?;
                low.max_concurrent_tasks = s.parse::<usize>().map_err(|_| {
                    format!(
                        "invalid value {s:?} (expected a non-negative integer; 0 means unlimited)"
                    )
                })?;
                Ok(())
            },
        },
        env: None,
        yaml: Some("max_concurrent_tasks"),
        default: Some("0 (unlimited)"),
        repeatable: false,
        category: Category::Tasks,
        doc_short: "Run at most N tasks at once; extra assignments are rejected.",
        doc_long: r"Run at most \fIN\fR tasks at the same time; assignments beyond that are rejected
so Oz can route them elsewhere. \fB0\fR means unlimited and, as in the Go worker, cannot
override a non-zero \fBmax_concurrent_tasks\fR from the config file.",
    },
    Flag {
        long: "idle-on-complete",
        short: None,
        kind: Kind::Value {
            name: "DURATION",
            update: |low, v| {
                low.idle_on_complete = non_empty(v)?;
                Ok(())
            },
        },
        env: None,
        yaml: Some("idle_on_complete"),
        default: None,
        repeatable: false,
        category: Category::Tasks,
        doc_short: "Passed verbatim to the agent's --idle-on-complete.",
        doc_long: r"How long the agent stays up after its task completes; passed verbatim to the
oz CLI's \fB\-\-idle\-on\-complete\fR (the task's own setting wins).",
    },
    Flag {
        long: "drain-timeout",
        short: None,
        kind: Kind::Value {
            name: "DURATION",
            update: |low, v| {
                let s = text(v)?;
                let ns = crate::duration::parse_go_duration(&s).map_err(|e| e.to_string())?;
                let ns = u64::try_from(ns).map_err(|_| format!("{s:?} must not be negative"))?;
                low.drain_timeout = Some(Duration::from_nanos(ns));
                Ok(())
            },
        },
        env: None,
        yaml: Some("drain_timeout"),
        default: Some("0s"),
        repeatable: false,
        category: Category::Tasks,
        doc_short: "On SIGTERM, let running tasks finish for this long before cancelling them.",
        doc_long: r"On \fBSIGTERM\fR or \fBSIGINT\fR, stop taking tasks and let running tasks finish
for up to \fIDURATION\fR (Go syntax, e.g. \fB90s\fR, \fB30m\fR) before cancelling them.
\fB0s\fR (the default) cancels them at once, as the Go worker does.",
    },
    Flag {
        long: "one-shot",
        short: None,
        kind: Kind::Switch(|low| low.one_shot = true),
        env: None,
        yaml: Some("one_shot"),
        default: None,
        repeatable: false,
        category: Category::Tasks,
        doc_short: "Exit after the first task finishes (direct backend only).",
        doc_long: r"Accept a single task, then exit once it has reached its outcome and the outcome
was sent. Forces \fB\-\-max\-concurrent\-tasks 1\fR. Only the \fBdirect\fR backend supports it.",
    },
    Flag {
        long: "collect-task-logs",
        short: None,
        kind: Kind::Toggle(|low, on| low.collect_task_logs = Some(on)),
        env: Some("OZ_COLLECT_TASK_LOGS"),
        yaml: Some("collect_task_logs"),
        default: Some("true"),
        repeatable: false,
        category: Category::Tasks,
        doc_short: "Export a task's logs to Warp's collector when its assignment asks for it.",
        doc_long: r"Allow per-task log export: when an assignment enables logging
(\fBtelemetry_collection.logging_enabled\fR), the task's output lines and setup events are
sent, with its secrets redacted, over OTLP/HTTP to the collector the assignment names.
\fB\-\-collect\-task\-logs=false\fR turns it off whatever the server asks.",
    },
    Flag {
        long: "no-cleanup",
        short: None,
        kind: Kind::Switch(|low| low.no_cleanup = true),
        env: None,
        yaml: Some("cleanup"),
        default: None,
        repeatable: false,
        category: Category::Tasks,
        doc_short: "Keep containers, workspaces and Jobs after tasks finish.",
        doc_long: r"Keep task containers, workspaces and Kubernetes Jobs after tasks finish, for
debugging. Wins over \fBcleanup: true\fR in the config file.",
    },
    Flag {
        long: "volumes",
        short: Some('v'),
        kind: Kind::Value {
            name: "SRC:DST[:OPTS]",
            update: |low, v| {
                low.volumes.push(text(v)?);
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: None,
        repeatable: true,
        category: Category::Backend,
        doc_short: "Docker backend: bind mount into every task container.",
        doc_long: r"Docker backend: bind \fISRC\fR (an absolute host path or a volume name) at the absolute path
\fIDST\fR in every task container. \fIOPTS\fR is a comma-separated list of \fBro\fR, \fBrw\fR,
\fBz\fR, \fBZ\fR, \fBnocopy\fR and a propagation mode (\fBshared\fR, \fBslave\fR,
\fBprivate\fR, \fBrshared\fR, \fBrslave\fR, \fBrprivate\fR). Repeatable; added after the config
file's \fBvolumes\fR. Unlike the Go worker, a value is never split on commas.",
    },
    Flag {
        long: "env",
        short: Some('e'),
        kind: Kind::Value {
            name: "KEY[=VALUE]",
            update: |low, v| {
                low.env.push(text(v)?);
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: None,
        repeatable: true,
        category: Category::Backend,
        doc_short: "Set a task env var; a bare KEY copies the worker's own value.",
        doc_long: r"Add \fIKEY\fR=\fIVALUE\fR to the environment of every task; a bare \fIKEY\fR copies
the worker's own value (or the empty string). Overrides the config file's \fBenvironment\fR on
the same key. For the command backend it reaches the dispatch and cancel commands; for
Kubernetes it is the only source of plain task env. Repeatable. Unlike the Go worker, a value
is never split on commas: \fB\-e FOO=a,b\fR sets \fBFOO\fR to \fBa,b\fR.",
    },
    Flag {
        long: "target-dir",
        short: None,
        kind: Kind::Value {
            name: "PATH",
            update: |low, v| {
                low.target_dir = path(v);
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Backend,
        doc_short: "Direct backend: run every task in this existing directory.",
        doc_long: r"Direct backend: run every task in this existing directory instead of a fresh
per-task workspace. Overrides \fBbackend.direct.target_dir\fR.",
    },
    Flag {
        long: "task",
        short: None,
        kind: Kind::Value {
            name: "FILE|-",
            update: |low, v| {
                let s = text(v)?;
                if s.is_empty() {
                    return Err("must be a file path or - for stdin".to_owned());
                }
                low.task = Some(s);
                Ok(())
            },
        },
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::RunOnce,
        doc_short: "run-once: the task_assignment JSON file, or - for stdin.",
        doc_long: r"With \fBrun\-once\fR: the \fBtask_assignment\fR JSON message to execute, read
from \fIFILE\fR or, with \fB\-\fR, from standard input.",
    },
    Flag {
        long: "offline",
        short: None,
        kind: Kind::Switch(|low| low.offline = true),
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Other,
        doc_short: "check: report an unreachable Oz endpoint as a warning (air-gapped staging).",
        doc_long: r"For \fBcheck\fR only: an Oz endpoint that does not resolve, accept a connection
or complete a TLS handshake is reported as a warning instead of a failure, for staging hosts
without a route to Oz. Ignored by the daemon and \fBrun\-once\fR.",
    },
    Flag {
        long: "preflight",
        short: None,
        kind: Kind::Switch(|low| low.preflight = true),
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Other,
        doc_short: "check: also run the kubernetes backend's startup preflight Job.",
        doc_long: r"For \fBcheck\fR only, with the \fBkubernetes\fR backend: also run the startup
preflight Job the daemon runs before taking tasks (a short Job that proves task Jobs are
admitted, scheduled and pulled here), report its outcome and delete it. Without it \fBcheck\fR
creates nothing in the cluster. Other backends report it as not applicable.",
    },
    Flag {
        long: "help",
        short: Some('h'),
        kind: Kind::Switch(|low| low.special = Some(Special::Help)),
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Other,
        doc_short: "Print help and exit.",
        doc_long: r"Print help and exit.",
    },
    Flag {
        long: "version",
        short: Some('V'),
        kind: Kind::Switch(|low| low.special = Some(Special::Version)),
        env: None,
        yaml: None,
        default: None,
        repeatable: false,
        category: Category::Other,
        doc_short: "Print the version and exit.",
        doc_long: r"Print \fBoz\-agent\-worker\fR and the version, then exit.",
    },
];

/// A timing knob read from the environment (Go duration syntax, positive).
pub struct TimingVar {
    pub name: &'static str,
    pub doc: &'static str,
    pub field: fn(&mut Timing) -> &mut Duration,
}

impl TimingVar {
    pub fn default_value(&self) -> Duration {
        *(self.field)(&mut Timing::default())
    }
}

pub static TIMING_ENV: &[TimingVar] = &[
    TimingVar {
        name: "OZ_WORKER_PING_INTERVAL",
        doc: "WebSocket ping interval",
        field: |t| &mut t.ping_interval,
    },
    TimingVar {
        name: "OZ_WORKER_PONG_TIMEOUT",
        doc: "a connection with nothing read for this long is dead",
        field: |t| &mut t.pong_timeout,
    },
    TimingVar {
        name: "OZ_WORKER_BACKOFF_INITIAL",
        doc: "first reconnect delay ceiling",
        field: |t| &mut t.backoff_initial,
    },
    TimingVar {
        name: "OZ_WORKER_BACKOFF_MAX",
        doc: "reconnect delay cap",
        field: |t| &mut t.backoff_max,
    },
    TimingVar {
        name: "OZ_WORKER_WRITE_TIMEOUT",
        doc: "handshake and per-write deadline",
        field: |t| &mut t.write_timeout,
    },
    TimingVar {
        name: "OZ_WORKER_SHUTDOWN_TIMEOUT",
        doc: "how long shutdown waits for cancelled tasks to report",
        field: |t| &mut t.shutdown_timeout,
    },
    TimingVar {
        name: "OZ_WORKER_KILL_GRACE",
        doc: "SIGTERM-to-SIGKILL grace when stopping a task's processes",
        field: |t| &mut t.kill_grace,
    },
];
