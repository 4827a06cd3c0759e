//! `oz-agent-worker check`: validate the configuration and probe what the daemon needs, saying
//! what was checked. Exit status 0 when everything passed, 1 otherwise (config errors exit 2
//! earlier).
//!
//! `check` tells the truth and changes nothing: it fails on what the daemon would refuse (no
//! worker id, no API key, an Oz endpoint it cannot reach), and it creates nothing (a missing
//! workspace root is reported, not made). It never prints the API key, only where it came from.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::backend::{self, ProbeLine};
use crate::config::{API_KEY_SOURCES, Sources};
use crate::link::ProxyEnv;
use crate::settings::{BackendSettings, Settings};

/// How long each phase of reaching the Oz endpoint (resolve and connect, proxy, TLS) may take.
pub const REACH_BUDGET: Duration = Duration::from_secs(4);

/// What `check` knows beyond the settings.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub sources: Sources,
    /// `--offline`: an unreachable endpoint is a warning.
    pub offline: bool,
    /// `--preflight`: also run the backend's startup preflight (it creates and deletes a Job).
    pub preflight: bool,
    pub proxy_env: ProxyEnv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Ok,
    Warn,
    Fail,
}

impl Mark {
    fn text(self) -> &'static str {
        match self {
            Mark::Ok => "ok  ",
            Mark::Warn => "warn",
            Mark::Fail => "FAIL",
        }
    }
}

/// Runs the checks, writing one line per check to `out`. Returns true when none failed.
pub fn run(settings: &Settings, facts: &Facts, out: &mut dyn Write) -> bool {
    let mut lines: Vec<(Mark, String)> = vec![(
        Mark::Ok,
        format!(
            "configuration: backend {}, max concurrent tasks {}{}",
            settings.backend_kind(),
            match settings.max_concurrent_tasks {
                0 => "unbounded".to_owned(),
                n => n.to_string(),
            },
            if settings.one_shot { ", one-shot" } else { "" }
        ),
    )];
    lines.push(match &facts.sources.worker_id {
        Some(source) => (
            Mark::Ok,
            format!("worker id {:?} (from {source})", settings.worker_id),
        ),
        None => (
            Mark::Fail,
            format!(
                "worker id: not set; the daemon requires --worker-id or worker_id in the config \
                 file (check and run-once use {:?})",
                settings.worker_id
            ),
        ),
    });
    lines.push(match &facts.sources.api_key {
        Some(source) => (Mark::Ok, format!("API key: found (from {source})")),
        None => (
            Mark::Fail,
            format!("API key: none found; tried {API_KEY_SOURCES}"),
        ),
    });
    let (mark, what) = reach_oz(settings, &facts.proxy_env);
    lines.push(match mark {
        Mark::Fail if facts.offline => (Mark::Warn, format!("{what} (--offline)")),
        _ => (mark, what),
    });
    if let Some(line) = workspace_root_line(settings) {
        lines.push(line);
    }
    match backend::build(settings, backend::Purpose::Check) {
        Ok(backend) => {
            lines.extend(backend.probe().into_iter().map(from_probe));
            if facts.preflight {
                lines.push(match backend.preflight() {
                    Some(line) => from_probe(line),
                    None => (
                        Mark::Warn,
                        "--preflight: this backend has no startup preflight".to_owned(),
                    ),
                });
            }
        }
        Err(e) => lines.push((Mark::Fail, format!("backend: {e}"))),
    }
    let mut all_ok = true;
    for (mark, what) in &lines {
        all_ok &= *mark != Mark::Fail;
        let _ = writeln!(out, "{} {what}", mark.text());
    }
    // Not a failure: the worker runs without the journal, only without crash recovery.
    let _ = match crate::journal::probe(&settings.state_dir) {
        Ok(()) => writeln!(
            out,
            "ok   state directory {}: writable (outcome journal)",
            settings.state_dir.display()
        ),
        Err(e) => writeln!(out, "warn {e}"),
    };
    let _ = writeln!(
        out,
        "{}",
        if all_ok {
            "All checks passed."
        } else {
            "Some checks failed."
        }
    );
    all_ok
}

fn from_probe(line: ProbeLine) -> (Mark, String) {
    (if line.ok { Mark::Ok } else { Mark::Fail }, line.what)
}

fn reach_oz(settings: &Settings, proxy_env: &ProxyEnv) -> (Mark, String) {
    let url = &settings.web_socket_url;
    match crate::link::reach(url, settings.ca_bundle.as_deref(), proxy_env, REACH_BUDGET) {
        Ok(what) => (Mark::Ok, format!("Oz endpoint: {what}")),
        Err(e) => (
            Mark::Fail,
            format!(
                "Oz endpoint: {e}: check DNS, firewall and proxy settings, or --web-socket-url"
            ),
        ),
    }
}

/// The direct backend's default per-task layout: say whether the root exists without making
/// it (the daemon creates it at startup).
fn workspace_root_line(settings: &Settings) -> Option<(Mark, String)> {
    let BackendSettings::Direct(d) = &settings.backend else {
        return None;
    };
    if d.target_dir.is_some() {
        return None;
    }
    let root = d
        .workspace_root
        .clone()
        .unwrap_or_else(|| crate::settings::DEFAULT_WORKSPACE_ROOT.into());
    if root.exists() {
        return None; // The backend's probe checks that it is a writable directory.
    }
    Some(match nearest_existing_ancestor(&root) {
        Some(parent) if writable(parent) => (
            Mark::Ok,
            format!(
                "workspace root {}: missing; the daemon will create it 0700",
                root.display()
            ),
        ),
        Some(parent) => (
            Mark::Fail,
            format!(
                "workspace root {}: missing, and {} is not writable for this user: create it \
                 and give the worker's user write access",
                root.display(),
                parent.display()
            ),
        ),
        None => (
            Mark::Fail,
            format!("workspace root {}: no existing parent", root.display()),
        ),
    })
}

fn nearest_existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().skip(1).find(|p| p.is_dir())
}

fn writable(dir: &Path) -> bool {
    use nix::unistd::{AccessFlags, access};
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
}

/// The `-v`/`volumes` host paths (absolute bind sources) that do not exist, as one error line,
/// or `None` when all exist. Named volumes are left to Docker, which creates them on first use.
/// The daemon refuses to start on this (exit 2), as `check` fails on it.
pub fn missing_bind_sources(settings: &Settings) -> Option<String> {
    let BackendSettings::Docker(d) = &settings.backend else {
        return None;
    };
    let missing: Vec<&str> = d
        .volumes
        .iter()
        .map(|v| v.split_once(':').map_or(v.as_str(), |(src, _)| src))
        .filter(|src| src.starts_with('/') && !Path::new(src).exists())
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "volume source(s) missing on this host: {}: create them or fix the -v/volumes entries",
        missing.join(", ")
    ))
}
