//! Settings resolution: flags ([`LowArgs`]) + environment + YAML config file → [`Settings`].
//!
//! Precedence is flag > environment > file > default, following the Go worker's `mergeConfig`
//! (see `merge.rs` for the rules and where we deliberately differ). The environment is passed
//! in as a lookup function so tests never touch the process environment.

pub mod file;
mod merge;
pub mod quantity;
mod values;
mod yaml_json;

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::cli::{LowArgs, Mode};
use crate::settings::BackendKind;
use crate::settings::Settings;

pub use merge::resolve_with_cwd;

/// Validated settings plus non-fatal remarks for `main` to log at WARN.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Anything wrong with the flags, environment or config file. `Display` is one line with
/// context; `main` exits 2 on it. Never contains the API key.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file (or the API key file) could not be read.
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The config file is not valid YAML for the schema.
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// The config file parsed but breaks rules; every problem is listed.
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    WorkerIdRequired,
    WorkerIdReserved(String),
    ApiKeyRequired,
    /// The API key file's content is unusable; `reason` never quotes it.
    ApiKeyFile {
        path: PathBuf,
        reason: &'static str,
    },
    /// A malformed `-e` entry; the message follows `invalid --env flag: `.
    EnvFlag(String),
    Volume {
        origin: String,
        spec: String,
        reason: String,
    },
    Url {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// A path flag that cannot be resolved (e.g. `~` without HOME).
    Path {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    OneShotUnsupported(BackendKind),
    CommandNeedsDispatch,
    TimingEnv {
        var: &'static str,
        value: String,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ReadFile { what, path, source } => {
                write!(f, "reading {what} {}: {source}", path.display())
            }
            ConfigError::Parse {
                path,
                line,
                message,
            } => {
                write!(f, "reading config file {}: ", path.display())?;
                if let Some(line) = line {
                    write!(f, "line {line}: ")?;
                }
                f.write_str(message)
            }
            ConfigError::Invalid { path, problems } => write!(
                f,
                "invalid config file {}: {}",
                path.display(),
                problems.join("; ")
            ),
            ConfigError::WorkerIdRequired => {
                f.write_str("worker-id is required (via --worker-id flag or config file)")
            }
            ConfigError::WorkerIdReserved(id) => write!(
                f,
                "invalid worker-id {id:?}: values starting with 'warp' are reserved"
            ),
            ConfigError::ApiKeyRequired => {
                f.write_str("an API key is required: set --api-key, --api-key-file or WARP_API_KEY")
            }
            ConfigError::ApiKeyFile { path, reason } => {
                write!(f, "--api-key-file {}: {reason}", path.display())
            }
            ConfigError::EnvFlag(msg) => write!(f, "invalid --env flag: {msg}"),
            ConfigError::Volume {
                origin,
                spec,
                reason,
            } => write!(f, "invalid volume {spec:?} ({origin}): {reason}"),
            ConfigError::Url {
                flag,
                value,
                reason,
            } => write!(f, "{flag}: invalid URL {value:?}: {reason}"),
            ConfigError::Path { flag, path, reason } => {
                write!(f, "{flag} {}: {reason}", path.display())
            }
            ConfigError::OneShotUnsupported(kind) => {
                write!(
                    f,
                    "backend {:?} does not support one-shot mode",
                    kind.as_str()
                )
            }
            ConfigError::CommandNeedsDispatch => f.write_str(
                "command backend requires a dispatch command (backend.command.dispatch_command)",
            ),
            ConfigError::TimingEnv { var, value, reason } => {
                write!(f, "{var}: invalid value {value:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::ReadFile { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Merges flags, the environment (`env`) and the config file named by `--config-file` into
/// validated [`Settings`]. Reads the config file and the API key file; nothing else.
///
/// `env` supplies `WARP_API_KEY`, the `OZ_WORKER_*` timing variables, `HOME` (for `~/` in path
/// flags) and the worker's own values for bare `-e KEY` flags and `environment` entries
/// without `value`.
pub fn resolve(
    args: &LowArgs,
    mode: Mode,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    // Without a working directory (it was deleted), relative paths simply stay relative.
    let cwd = std::env::current_dir().unwrap_or_default();
    resolve_with_cwd(args, mode, env, &cwd)
}
