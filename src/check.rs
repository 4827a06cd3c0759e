//! `oz-agent-worker check`: validate the configuration and probe the backend, saying what was
//! checked. Exit status 0 when everything passed, 1 otherwise (config errors exit 2 earlier).

use std::io::Write;

use crate::backend::{self, ProbeLine};
use crate::settings::Settings;

/// Runs the checks, writing one line per check to `out`. Returns true when all passed.
pub fn run(settings: &Settings, out: &mut dyn Write) -> bool {
    let mut lines = vec![ProbeLine::ok(format!(
        "configuration: backend {}, worker id {:?}, max concurrent tasks {}{}",
        settings.backend_kind(),
        settings.worker_id,
        match settings.max_concurrent_tasks {
            0 => "unbounded".to_owned(),
            n => n.to_string(),
        },
        if settings.one_shot { ", one-shot" } else { "" }
    ))];
    match backend::build(settings, backend::Purpose::Check) {
        Ok(backend) => lines.extend(backend.probe()),
        Err(e) => lines.push(ProbeLine::failed(format!("backend: {e}"))),
    }
    let mut all_ok = true;
    for line in &lines {
        all_ok &= line.ok;
        let mark = if line.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "{mark} {}", line.what);
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
