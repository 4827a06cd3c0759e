//! Command line: flags, subcommands, `--help`, `--version` and the man page.
//!
//! Flags are data ([`flags::FLAGS`]): one table entry per flag drives lexopt parsing, the help
//! text, the shell completions and `man/oz-agent-worker.8`. Parsing fills [`LowArgs`] with raw values and does no I/O;
//! `config::resolve` merges them with the environment and the config file into `Settings`.
//!
//! Adding a flag is one table entry plus one `LowArgs` field.

mod completions;
mod doc;
mod environ;
mod flags;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

pub use completions::Shell;
pub use doc::{MAN_DATE, help_text, man_page, roff};
pub use flags::{Category, FLAGS, Flag, Kind, TIMING_ENV, TimingVar};

use crate::settings::BackendKind;
use crate::settings::Secret;

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No subcommand: connect to Oz and run tasks until signalled.
    Daemon,
    /// `run-once --task FILE|-`: execute one `task_assignment` JSON with no server.
    RunOnce,
    /// `check`: validate the configuration and probe the backend.
    Check,
}

/// The subcommands, in help order: (name, mode, one-line description).
pub const SUBCOMMANDS: &[(&str, Option<Mode>, &str)] = &[
    (
        "run-once",
        Some(Mode::RunOnce),
        "execute one task_assignment JSON (--task FILE, or - for stdin) without a server",
    ),
    (
        "check",
        Some(Mode::Check),
        "validate the configuration and probe the backend, then exit",
    ),
    (
        "completions",
        None,
        "print the completion script for SHELL (bash, zsh or fish)",
    ),
    ("help", None, "print this help"),
];

/// The result of parsing the command line.
// Built once per process and matched at once; boxing `LowArgs` would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Invocation {
    Run {
        mode: Mode,
        args: LowArgs,
        /// `run-once --task` value: a path, or `-` for stdin.
        task: Option<String>,
    },
    /// Rendered help text.
    Help(String),
    /// `oz-agent-worker <version>`.
    Version(String),
    /// `completions SHELL`: the script to print.
    Completions(String),
}

/// Raw flag values, before the environment and the config file are consulted.
///
/// `None`/empty means "not given" (an empty string counts as not given, as in the Go worker).
#[derive(Debug, Clone, Default)]
pub struct LowArgs {
    pub worker_id: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub backend: Option<BackendKind>,
    pub log_level: Option<log::LevelFilter>,
    pub log_format: Option<crate::settings::LogFormat>,
    /// Validated `HOST:PORT`.
    pub metrics_addr: Option<String>,
    pub drain_timeout: Option<std::time::Duration>,
    pub no_cleanup: bool,
    /// `-v` specs in order; validated in `config`.
    pub volumes: Vec<String>,
    /// `-e` entries in order (`KEY=VALUE` or bare `KEY`); parsed in `config`.
    pub env: Vec<String>,
    /// 0 means "not given" (the file value, if any, then applies).
    pub max_concurrent_tasks: usize,
    pub idle_on_complete: Option<String>,
    pub target_dir: Option<PathBuf>,
    pub web_socket_url: Option<String>,
    pub server_root_url: Option<String>,
    pub session_sharing_server_url: Option<String>,
    pub one_shot: bool,
    /// `--collect-task-logs[=BOOL]`; `None` when not given.
    pub collect_task_logs: Option<bool>,
    /// `check --offline`: an unreachable Oz endpoint is a warning, not a failure.
    pub offline: bool,
    /// `check --preflight`: also run the kubernetes backend's preflight Job.
    pub preflight: bool,
    pub ca_bundle: Option<PathBuf>,
    /// `--state-dir`: where the outcome journal lives.
    pub state_dir: Option<PathBuf>,
    pub task: Option<String>,
    /// Set by `--help`/`--version`; ends parsing at once.
    special: Option<Special>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    Help,
    Version,
}

/// A command-line mistake. `Display` is one line naming the flag, the value and what is
/// allowed; `main` exits 2 on it. Never carries the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    UnknownFlag(String),
    MissingValue {
        flag: String,
        value_name: &'static str,
    },
    UnexpectedValue(String),
    InvalidValue {
        flag: String,
        message: String,
    },
    UnknownSubcommand(String),
    UnexpectedArgument(String),
    Conflict(&'static str, &'static str),
    TaskRequired,
    TaskOutsideRunOnce,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            UsageError::MissingValue { flag, value_name } => {
                write!(f, "{flag} requires a value ({value_name})")
            }
            UsageError::UnexpectedValue(flag) => write!(f, "{flag} takes no value"),
            UsageError::InvalidValue { flag, message } => write!(f, "{flag}: {message}"),
            UsageError::UnknownSubcommand(name) => write!(
                f,
                "unknown subcommand {name:?} (expected one of: {})",
                SUBCOMMANDS
                    .iter()
                    .map(|(n, _, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            UsageError::UnexpectedArgument(arg) => {
                write!(f, "unexpected argument {arg:?} (see --help)")
            }
            UsageError::Conflict(a, b) => write!(f, "{a} and {b} cannot be used together"),
            UsageError::TaskRequired => {
                f.write_str("run-once requires --task FILE (or --task - to read stdin)")
            }
            UsageError::TaskOutsideRunOnce => {
                f.write_str("--task is only valid with the run-once subcommand")
            }
        }
    }
}

impl std::error::Error for UsageError {}

/// `oz-agent-worker <version>`.
pub fn version_text() -> String {
    format!("oz-agent-worker {}", crate::VERSION)
}

/// Parses the command line (`args` exclude argv\[0\]).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Invocation, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut low = LowArgs::default();
    let mut subcommand: Option<Option<Mode>> = None;
    loop {
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(lexopt_error(e)),
        };
        let (flag, spelled) = match arg {
            lexopt::Arg::Long(name) => (FLAGS.iter().find(|f| f.long == name), format!("--{name}")),
            lexopt::Arg::Short(c) => (FLAGS.iter().find(|f| f.short == Some(c)), format!("-{c}")),
            lexopt::Arg::Value(value) => {
                let text = value.to_string_lossy().into_owned();
                if subcommand.is_some() {
                    return Err(UsageError::UnexpectedArgument(text));
                }
                match SUBCOMMANDS.iter().find(|(name, _, _)| *name == text) {
                    Some((_, mode, _)) => subcommand = Some(*mode),
                    None => return Err(UsageError::UnknownSubcommand(text)),
                }
                match text.as_str() {
                    // `help` short-circuits like --help.
                    "help" => return Ok(Invocation::Help(help_text())),
                    "completions" => return completions_invocation(&mut parser),
                    _ => {}
                }
                continue;
            }
        };
        let Some(flag) = flag else {
            return Err(UsageError::UnknownFlag(spelled));
        };
        let flag_name = format!("--{}", flag.long);
        match flag.kind {
            Kind::Switch(update) => {
                if parser.optional_value().is_some() {
                    return Err(UsageError::UnexpectedValue(flag_name));
                }
                update(&mut low);
            }
            Kind::Toggle(update) => {
                let on = match parser.optional_value() {
                    None => true,
                    Some(v) => parse_bool(&v.to_string_lossy()).ok_or_else(|| {
                        UsageError::InvalidValue {
                            flag: flag_name.clone(),
                            message: format!(
                                "invalid value {:?} (expected true or false)",
                                v.to_string_lossy()
                            ),
                        }
                    })?,
                };
                update(&mut low, on);
            }
            Kind::Value { name, update } => {
                let value = parser.value().map_err(|_| UsageError::MissingValue {
                    flag: flag_name.clone(),
                    value_name: name,
                })?;
                update(&mut low, value).map_err(|message| UsageError::InvalidValue {
                    flag: flag_name,
                    message,
                })?;
            }
        }
        match low.special {
            Some(Special::Help) => return Ok(Invocation::Help(help_text())),
            Some(Special::Version) => return Ok(Invocation::Version(version_text())),
            None => {}
        }
    }
    if low.api_key.is_some() && low.api_key_file.is_some() {
        return Err(UsageError::Conflict("--api-key", "--api-key-file"));
    }
    let mode = subcommand.flatten().unwrap_or(Mode::Daemon);
    let task = low.task.take();
    match (mode, &task) {
        (Mode::RunOnce, None) => return Err(UsageError::TaskRequired),
        (Mode::Daemon | Mode::Check, Some(_)) => return Err(UsageError::TaskOutsideRunOnce),
        _ => {}
    }
    Ok(Invocation::Run {
        mode,
        args: low,
        task,
    })
}

/// Go's `strconv.ParseBool`, which its flags and environment switches use.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `completions SHELL`: exactly one argument, a known shell.
fn completions_invocation(parser: &mut lexopt::Parser) -> Result<Invocation, UsageError> {
    let shells: Vec<&str> = Shell::ALL.iter().map(|s| s.as_str()).collect();
    let missing = || UsageError::InvalidValue {
        flag: "completions".to_owned(),
        message: format!("expected a shell: {}", shells.join(", ")),
    };
    let shell = match parser.next() {
        Ok(Some(lexopt::Arg::Value(v))) => v.to_string_lossy().into_owned(),
        Ok(_) => return Err(missing()),
        Err(e) => return Err(lexopt_error(e)),
    };
    let Some(shell) = Shell::parse(&shell) else {
        return Err(UsageError::InvalidValue {
            flag: "completions".to_owned(),
            message: format!(
                "unknown shell {shell:?} (expected one of: {})",
                shells.join(", ")
            ),
        });
    };
    match parser.next() {
        Ok(None) => Ok(Invocation::Completions(shell.script())),
        Ok(Some(lexopt::Arg::Value(v))) => Err(UsageError::UnexpectedArgument(
            v.to_string_lossy().into_owned(),
        )),
        Ok(Some(lexopt::Arg::Long(f))) => Err(UsageError::UnexpectedArgument(format!("--{f}"))),
        Ok(Some(lexopt::Arg::Short(c))) => Err(UsageError::UnexpectedArgument(format!("-{c}"))),
        Err(e) => Err(lexopt_error(e)),
    }
}

/// Maps the few lexopt errors `parse` does not pre-empt. None of them carries a flag value.
fn lexopt_error(e: lexopt::Error) -> UsageError {
    match e {
        lexopt::Error::UnexpectedValue { option, .. } => UsageError::UnexpectedValue(option),
        lexopt::Error::UnexpectedOption(option) => UsageError::UnknownFlag(option),
        lexopt::Error::UnexpectedArgument(value) => {
            UsageError::UnexpectedArgument(value.to_string_lossy().into_owned())
        }
        lexopt::Error::MissingValue { option } => UsageError::MissingValue {
            flag: option.unwrap_or_default(),
            value_name: "VALUE",
        },
        other => UsageError::InvalidValue {
            flag: "command line".to_owned(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
