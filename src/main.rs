//! Process entry: arguments -> settings -> logging -> mode -> exit status. The runtime wiring
//! lives in the `daemon` module.
//!
//! Exit codes are decided here and only here:
//!
//! | code | meaning                                                                 |
//! |------|-------------------------------------------------------------------------|
//! | 0    | success: graceful shutdown, `check` passed, `run-once` task succeeded   |
//! | 1    | runtime failure: backend unavailable, link lost, a `check` failed       |
//! | 2    | usage or configuration error (the message names the flag or key)        |
//! | 130  | a second signal interrupted the graceful shutdown                        |
//!
//! `run-once` exits with the task's status instead (see `run_once::exit_status`).

use std::process::ExitCode;

use log::warn;

use oz_agent_worker::cli::{self, Invocation, Mode};
use oz_agent_worker::daemon::{self, Outcome};
use oz_agent_worker::{check, config, logging, redact};

const USAGE_ERROR: u8 = 2;
const RUNTIME_ERROR: u8 = 1;
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("oz-agent-worker: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let (mode, args, task) = match invocation {
        Invocation::Help(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Invocation::Version(text) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Invocation::Completions(script) => {
            print!("{script}");
            return ExitCode::SUCCESS;
        }
        Invocation::Run { mode, args, task } => (mode, args, task),
    };
    let env = |key: &str| std::env::var(key).ok();
    let resolved = match config::resolve(&args, mode, &env) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oz-agent-worker: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let check_facts = check::Facts {
        sources: resolved.sources.clone(),
        offline: args.offline,
        preflight: args.preflight,
        proxy_env: oz_agent_worker::link::ProxyEnv::from_env(),
    };
    let settings = resolved.settings;
    logging::init(settings.log_level, settings.log_format);
    if let Some(key) = &settings.api_key {
        // Registered before anything can log it, for the life of the process.
        redact::register([key.expose()]).keep();
    }
    for warning in &resolved.warnings {
        warn!("{warning}");
    }
    let outcome = match mode {
        Mode::Daemon => match check::missing_bind_sources(&settings) {
            // As `check` does, and before anything starts: a missing bind source would fail
            // every task at container creation.
            Some(error) => {
                log::error!("{error}");
                Outcome::ConfigError
            }
            None => daemon::run(&settings),
        },
        Mode::RunOnce => daemon::run_once(&settings, task.as_deref().unwrap_or("-")),
        Mode::Check if check::run(&settings, &check_facts, &mut std::io::stdout()) => {
            Outcome::Success
        }
        Mode::Check => Outcome::RuntimeFailure,
    };
    ExitCode::from(match outcome {
        Outcome::Success => 0,
        Outcome::RuntimeFailure => RUNTIME_ERROR,
        Outcome::ConfigError => USAGE_ERROR,
        Outcome::Interrupted => INTERRUPTED,
        Outcome::Task(status) => status,
    })
}
