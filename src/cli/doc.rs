//! `--help` text and the roff man page, both rendered from the flag table.

use std::fmt::Write;

use super::flags::{Category, FLAGS, Flag, TIMING_ENV};
use super::{Mode, SUBCOMMANDS};
use crate::duration::format_duration;

const SUMMARY: &str = "Self-hosted worker for Oz cloud agents: keeps one WebSocket to Oz, runs each \
assigned task (Docker container, Kubernetes Job, host process or operator command) and reports \
its outcome.";

const EXIT_CODES: [(&str, &str); 5] = [
    (
        "0",
        "success (the daemon stopped on a signal, or a one-shot/run-once task succeeded)",
    ),
    (
        "1",
        "runtime failure (backend unavailable, lost link, check found problems)",
    ),
    (
        "2",
        "usage or configuration error (bad flag, config file or environment value)",
    ),
    ("130", "a second signal interrupted the graceful shutdown"),
    (
        "N",
        "run-once: the agent's exit status when the task failed with one (1 otherwise)",
    ),
];

const SIGNALS: &str = "SIGTERM or SIGINT starts a graceful shutdown: new assignments are \
rejected, running tasks of backends that do not preserve tasks (docker, direct) are cancelled and \
each is reported as failed with reason graceful_shutdown, pending messages are flushed and the \
connection is closed. Tasks of the command and kubernetes backends keep running. A second signal \
exits immediately.";

fn flag_spelling(flag: &Flag) -> String {
    let mut s = String::new();
    match flag.short {
        Some(c) => {
            let _ = write!(s, "-{c}, ");
        }
        None => s.push_str("    "),
    }
    let _ = write!(s, "--{}", flag.long);
    if let Some(v) = flag.value_name() {
        let _ = write!(s, " {v}");
    }
    if matches!(flag.kind, super::flags::Kind::Toggle(_)) {
        s.push_str("[=BOOL]");
    }
    s
}

fn flag_notes(flag: &Flag) -> String {
    let mut notes = Vec::new();
    if let Some(d) = flag.default {
        notes.push(format!("default: {d}"));
    }
    if let Some(e) = flag.env {
        notes.push(format!("env: {e}"));
    }
    if let Some(y) = flag.yaml {
        notes.push(format!("config: {y}"));
    }
    if flag.repeatable {
        notes.push("repeatable".to_owned());
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!(" [{}]", notes.join("; "))
    }
}

/// The `--help` text.
pub fn help_text() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n{SUMMARY}\n", super::version_text());
    out.push_str("USAGE:\n");
    let mut usages = vec![("[FLAGS]".to_owned(), "run the worker daemon")];
    for (name, mode, doc) in SUBCOMMANDS {
        let usage = match mode {
            Some(Mode::RunOnce) => format!("{name} --task FILE|- [FLAGS]"),
            Some(_) => format!("{name} [FLAGS]"),
            None if *name == "completions" => format!("{name} SHELL"),
            None => (*name).to_owned(),
        };
        usages.push((usage, doc));
    }
    let width = usages.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    for (usage, doc) in usages {
        let _ = writeln!(out, "    oz-agent-worker {usage:<width$}  {doc}");
    }
    let width = FLAGS
        .iter()
        .map(|f| flag_spelling(f).len())
        .max()
        .unwrap_or(0);
    for cat in Category::ALL {
        let flags: Vec<&Flag> = FLAGS.iter().filter(|f| f.category == cat).collect();
        if flags.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}:", cat.title().to_uppercase());
        for f in flags {
            let _ = writeln!(
                out,
                "    {:<width$}  {}{}",
                flag_spelling(f),
                f.doc_short,
                flag_notes(f)
            );
        }
    }
    out.push_str(
        "\nFlags accept --flag VALUE and --flag=VALUE (-e K=V and -eK=V for short ones);\n",
    );
    out.push_str("a repeated single-valued flag keeps its last value. Precedence: flag, then\n");
    out.push_str("environment, then config file, then default.\n");
    let _ = writeln!(
        out,
        "\nTIMING ENVIRONMENT (Go durations such as 500ms, 30s, 1m30s; units {}; positive):",
        crate::duration::UNITS
    );
    let width = TIMING_ENV.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for var in TIMING_ENV {
        let _ = writeln!(
            out,
            "    {:<width$}  {} [default: {}]",
            var.name,
            var.doc,
            format_duration(var.default_value())
        );
    }
    out.push_str("\nSIGNALS:\n");
    for line in wrap(SIGNALS, 88) {
        let _ = writeln!(out, "    {line}");
    }
    out.push_str("\nEXIT STATUS:\n");
    for (code, doc) in EXIT_CODES {
        let _ = writeln!(out, "    {code}  {doc}");
    }
    out.push_str(
        "\nSee oz-agent-worker(8) and oz-agent-worker.yaml(5) for the config file format.\n",
    );
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The date in the man pages' title lines: the last change to their content. mandoc rejects an
/// empty one; update it when the pages change materially.
pub const MAN_DATE: &str = "2026-12-02";

/// Escapes plain text for roff: backslashes, hyphens, and a leading '.' or '\''.
pub fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

const CONFIG_FILE_ROFF: &str = r"The file given by \fB\-\-config\-file\fR is YAML. Unknown keys are errors
(except inside \fBpod_template\fR and \fBpreflight_resources\fR), an empty file is an error, and
at most one backend block may be present; a backend key with no value counts as absent.
Durations use Go syntax (\fB90s\fR, \fB1m30s\fR, \fB1.5h\fR, \fB0\fR).
.PP
.nf
.RS 4
worker_id: my\-worker
cleanup: true                  # false keeps containers/workspaces
max_concurrent_tasks: 4        # 0 = unlimited
idle_on_complete: 10m          # passed verbatim to the agent
one_shot: false                # direct backend only
ca_bundle: /etc/oz/ca.pem
state_dir: /var/lib/oz\-agent\-worker  # outcome journal (crash recovery)
collect_task_logs: true        # allow per-task log export (default)
backend:
  docker:
    volumes: [\(dq/srv/cache:/cache:ro\(dq]
    environment: [{name: FOO, value: bar}, {name: HOME_PASSTHROUGH}]
    image_pull_policy: Always  # Always | IfNotPresent | Never
    sidecar_image: registry.example/agent:1
  # direct:
  #   workspace_root: /var/lib/oz/workspaces
  #   target_dir: /srv/repo
  #   oz_path: /usr/local/bin/oz
  #   setup_command: ./setup.sh
  #   teardown_command: ./teardown.sh
  #   environment: [...]
  # command:
  #   dispatch_command: /usr/local/bin/dispatch   # required
  #   cancel_command: /usr/local/bin/cancel
  #   dispatch_timeout: 60s
  #   environment: [...]
  # kubernetes:
  #   namespace: default
  #   kubeconfig: /etc/oz/kubeconfig
  #   default_image: ubuntu:22.04
  #   image_pull_policy: IfNotPresent
  #   use_image_volumes: false
  #   sidecar_copy_readiness: false
  #   preflight_image: busybox:1.36
  #   preflight_resources: {requests: {cpu: 10m}}
  #   sidecar_image: registry.example/agent:1
  #   coding_cli_sidecars: {claude: registry.example/claude:1}
  #   setup_command: ./setup.sh
  #   teardown_command: ./teardown.sh
  #   extra_labels: {team: infra}
  #   extra_annotations: {owner: ops}
  #   active_deadline_seconds: 28800
  #   ttl_seconds_after_finished: 86400
  #   workspace_size_limit: 8Gi
  #   unschedulable_timeout: 10m      # 0s disables
  #   volume_mount_timeout: 2m        # 0s disables
  #   pod_template: {serviceAccountName: oz\-tasks}
.RE
.fi
.PP
An \fBenvironment\fR entry without \fBvalue\fR copies the worker's own variable (or the empty
string). The kubernetes block has no \fBenvironment\fR: put env in \fBpod_template\fR. The
removed keys \fBimage_pull_secret\fR, \fBservice_account\fR, \fBnode_selector\fR,
\fBtolerations\fR, \fBresources\fR, \fBtermination_grace_period_seconds\fR and
\fBenvironment\fR are rejected there.
.PP
The kubernetes backend finds its cluster through \fBkubeconfig\fR, else the in\-cluster service
account, else \fB$KUBECONFIG\fR, else \fI~/.kube/config\fR. Its service account needs a Role in
the task namespace granting jobs: create, get, list, watch, delete, patch; pods: get, list,
watch; pods/log: get; events: list. It runs one Job per task and follows all of them through two
shared watches; it deletes successful Jobs, expires failed ones that still run, deletes
cancelled ones, leaves them running at shutdown and, at the next start, reports once the ones
whose outcome no worker reported. \fBcheck\fR verifies each verb with a
SelfSubjectAccessReview and creates nothing.";

/// The man page, in roff. `man/oz-agent-worker.8` must equal this (a test checks it).
pub fn man_page() -> String {
    let mut out = String::new();
    out.push_str(".\\\" Generated by `OZ_REGENERATE_MAN=1 cargo test man_page`; do not edit.\n");
    out.push_str(
        &format!(
        ".TH OZ\\-AGENT\\-WORKER 8 {MAN_DATE} \"oz\\-agent\\-worker {}\" \"System Administration\"\n",
        crate::VERSION
    ),
    );
    out.push_str(".SH NAME\noz\\-agent\\-worker \\- self\\-hosted worker for Oz cloud agents\n");
    out.push_str(".SH SYNOPSIS\n");
    out.push_str(".B oz\\-agent\\-worker\n[\\fIFLAGS\\fR]\n.br\n");
    out.push_str(".B oz\\-agent\\-worker run\\-once\n\\fB\\-\\-task\\fR \\fIFILE\\fR|\\fB\\-\\fR [\\fIFLAGS\\fR]\n.br\n");
    out.push_str(".B oz\\-agent\\-worker check\n[\\fIFLAGS\\fR]\n.br\n");
    out.push_str(".B oz\\-agent\\-worker completions\n\\fIbash\\fR|\\fIzsh\\fR|\\fIfish\\fR\n");
    let _ = writeln!(out, ".SH DESCRIPTION\n{}", roff(SUMMARY));
    out.push_str(".SH COMMANDS\n.TP\n(none)\nRun the worker daemon until signalled.\n");
    for (name, _, doc) in SUBCOMMANDS {
        let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(name), roff(doc));
    }
    out.push_str(".SH OPTIONS\n");
    out.push_str(
        "Flags accept \\fB\\-\\-flag\\fR \\fIVALUE\\fR and \\fB\\-\\-flag\\fR=\\fIVALUE\\fR \
(short flags: \\fB\\-e\\fR \\fIK=V\\fR and \\fB\\-e\\fR\\fIK=V\\fR). A repeated single\\-valued \
flag keeps its last value. Precedence: flag, then environment, then config file, then default.\n",
    );
    for cat in Category::ALL {
        let flags: Vec<&Flag> = FLAGS.iter().filter(|f| f.category == cat).collect();
        if flags.is_empty() {
            continue;
        }
        let _ = writeln!(out, ".SS {}", roff(cat.title()));
        for f in flags {
            out.push_str(".TP\n");
            if let Some(c) = f.short {
                let _ = write!(out, "\\fB\\-{c}\\fR, ");
            }
            let _ = write!(out, "\\fB\\-\\-{}\\fR", roff(f.long));
            if let Some(v) = f.value_name() {
                let _ = write!(out, " \\fI{}\\fR", roff(v));
            }
            if matches!(f.kind, super::flags::Kind::Toggle(_)) {
                out.push_str("[=\\fIBOOL\\fR]");
            }
            out.push('\n');
            out.push_str(f.doc_long);
            out.push('\n');
            let notes = flag_notes(f);
            if !notes.is_empty() {
                let _ = writeln!(out, ".br\n{}", roff(notes.trim()));
            }
        }
    }
    let _ = writeln!(out, ".SH CONFIGURATION FILE\n{CONFIG_FILE_ROFF}");
    // Timing variables from their table, then the rest (`environ_sections`).
    out.push_str(".SH ENVIRONMENT\n");
    for var in TIMING_ENV {
        let _ = writeln!(
            out,
            ".TP\n\\fB{}\\fR\n{} (Go duration, positive; default {}).",
            roff(var.name),
            roff(&capitalize(var.doc)),
            roff(&format_duration(var.default_value()))
        );
    }
    environ_sections(&mut out);
    let _ = writeln!(out, ".SH SIGNALS\n{}", roff(SIGNALS));
    out.push_str(".SH EXIT STATUS\n");
    for (code, doc) in EXIT_CODES {
        let _ = writeln!(out, ".TP\n\\fB{code}\\fR\n{}", roff(&capitalize(doc)));
    }
    out.push_str(".SH SEE ALSO\n\\fBoz\\-agent\\-worker.yaml\\fR(5), \\fBdocker\\fR(1), \\fBkubectl\\fR(1), \\fBsystemd.exec\\fR(5)\n");
    out
}

/// The rest of ENVIRONMENT, then FILES and EXAMPLES, from the tables of `environ`.
fn environ_sections(out: &mut String) {
    use super::environ::{ENVIRONMENT, EXAMPLES, FILES};
    let entry = |out: &mut String, name: &str, doc: &str| {
        let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(name), roff(doc));
    };
    for (name, doc) in ENVIRONMENT {
        entry(out, name, doc);
    }
    out.push_str(".SH FILES\n");
    for (name, doc) in FILES {
        entry(out, name, doc);
    }
    out.push_str(".SH EXAMPLES\n");
    for (i, (what, command)) in EXAMPLES.iter().enumerate() {
        // A paragraph break between examples, not right after the heading (mandoc warns).
        if i > 0 {
            out.push_str(".PP\n");
        }
        let _ = writeln!(out, "{}\n.RS\n.nf\n{}\n.fi\n.RE", roff(what), roff(command));
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn no_paragraph_macro_follows_a_heading() {
        // mandoc -T lint -W warning (CI's packaging check) rejects ".PP" right after ".SH".
        let page = man_page();
        let lines: Vec<&str> = page.lines().collect();
        for pair in lines.windows(2) {
            assert!(
                !(pair[0].starts_with(".SH") && pair[1] == ".PP"),
                "paragraph macro after {}",
                pair[0]
            );
        }
    }

    #[test]
    fn man_page_matches_committed_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/oz-agent-worker.8");
        let generated = man_page();
        if std::env::var_os("OZ_REGENERATE_MAN").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with the flag table; regenerate it with \
             `OZ_REGENERATE_MAN=1 cargo test man_page` and commit the result",
            path.display()
        );
    }

    #[test]
    fn man_page_documents_every_flag_and_timing_var() {
        let page = man_page();
        for f in FLAGS {
            assert!(
                page.contains(&format!("\\fB\\-\\-{}\\fR", roff(f.long))),
                "--{} missing",
                f.long
            );
        }
        for v in TIMING_ENV {
            assert!(page.contains(&roff(v.name)), "{} missing", v.name);
        }
        for (name, _) in super::super::environ::ENVIRONMENT {
            assert!(page.contains(&roff(name)), "{name} missing");
        }
        for s in [
            ".SH EXIT STATUS",
            ".SH SIGNALS",
            ".SH CONFIGURATION FILE",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH EXAMPLES",
            "run\\-once",
        ] {
            assert!(page.contains(s), "{s} missing");
        }
    }

    #[test]
    fn man_page_lines_are_valid_roff_requests() {
        for line in man_page().lines() {
            // A line starting with ' or an unknown .request would be eaten by roff.
            assert!(!line.starts_with('\''), "{line}");
            if let Some(rest) = line.strip_prefix('.') {
                let req: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                assert!(
                    [
                        "\\\"", "TH", "SH", "SS", "TP", "PP", "B", "br", "nf", "fi", "RS", "RE"
                    ]
                    .contains(&req.as_str()),
                    "unexpected request {line:?}"
                );
            }
        }
    }

    #[test]
    fn help_lists_every_flag_subcommand_var_and_exit_code() {
        let help = help_text();
        for f in FLAGS {
            assert!(
                help.contains(&format!("--{}", f.long)),
                "--{} missing",
                f.long
            );
            if let Some(c) = f.short {
                assert!(help.contains(&format!("-{c}, --{}", f.long)));
            }
            assert!(help.contains(f.doc_short), "{} doc missing", f.long);
        }
        for (name, _, _) in SUBCOMMANDS {
            assert!(help.contains(name), "{name} missing");
        }
        for v in TIMING_ENV {
            assert!(help.contains(v.name), "{} missing", v.name);
        }
        assert!(help.contains("[env: WARP_API_KEY]"));
        assert!(
            help.contains("OZ_WORKER_PING_INTERVAL     WebSocket ping interval [default: 30s]")
        );
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("reported as failed with reason graceful_shutdown"));
        assert!(flat.contains("A second signal exits immediately."));
        assert!(help.contains("\n    2  usage or configuration error"));
        assert!(help.starts_with(&format!("oz-agent-worker {}", crate::VERSION)));
        let category_titles: Vec<usize> = Category::ALL
            .iter()
            .filter_map(|c| help.find(&format!("\n{}:\n", c.title().to_uppercase())))
            .collect();
        assert_eq!(category_titles.len(), Category::ALL.len());
        assert!(category_titles.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn roff_escaping() {
        assert_eq!(roff("a-b"), "a\\-b");
        assert_eq!(roff("a\\b"), "a\\eb");
        assert_eq!(roff(".x"), "\\&.x");
        assert_eq!(roff("'x"), "\\&'x");
    }

    #[test]
    fn wrap_respects_width() {
        let lines = wrap(SIGNALS, 40);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| l.len() <= 40));
        assert_eq!(
            lines.join(" "),
            SIGNALS.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
}
