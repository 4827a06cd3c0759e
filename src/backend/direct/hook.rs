//! Running the setup and teardown hooks.

use std::path::Path;

use crate::process::{self, Ended, Env, Limits, ProcessSpec, Redactor, RunError, Stream};
use crate::reporting::TaskReport;

use super::SHELL;

/// Runs a hook with `/bin/sh -c` in `dir`, forwarding its output to the log and the task's
/// log export.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_hook(
    command: &str,
    env: Env,
    dir: &Path,
    limits: &Limits<'_>,
    secrets: &Redactor,
    id: &str,
    which: &str,
    report: &TaskReport,
) -> Result<Ended, RunError> {
    let spec = ProcessSpec {
        program: SHELL.into(),
        args: vec!["-c".into(), command.into()],
        cwd: Some(dir.to_owned()),
        env,
        stdin: None,
    };
    process::run(&spec, limits, secrets, &mut |stream, line| {
        line.records(&mut |r| log::info!(target: "hook", "[{id} {which}] {r}"));
        if let Some(whole) = line.whole() {
            let source = match stream {
                Stream::Stdout => "hook.stdout",
                Stream::Stderr => "hook.stderr",
            };
            report.line(source, &[], whole);
        }
    })
}
