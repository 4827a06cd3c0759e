//! `process::run`: output forwarding, stdin, limits, process groups.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use oz_agent_worker::backend::CancelSource;
use oz_agent_worker::process::{
    self, Ended, Env, Exit, Limits, Line, MAX_RECORD, ProcessSpec, Redactor, RunError, Stream,
};

use super::*;

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: None,
        env: [(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )]
        .into_iter()
        .collect(),
        stdin: None,
    }
}

/// Runs with the given limits on a helper thread (so a hang fails instead of blocking) and
/// collects the output lines.
fn run_collect(
    spec: ProcessSpec,
    cancel: Option<CancelToken>,
    deadline: Option<Instant>,
    grace: Duration,
    redactor: Redactor,
) -> (Result<Ended, RunError>, Vec<(Stream, String)>) {
    let rx = spawn(move || {
        let mut lines = Vec::new();
        let limits = Limits {
            cancel: cancel.as_ref(),
            deadline,
            grace,
            group: None,
        };
        let r = process::run(&spec, &limits, &redactor, &mut |s, l| {
            lines.push((s, l.to_owned()))
        });
        (r, lines)
    });
    rx.recv_timeout(PROMPTLY)
        .expect("process::run did not return")
}

fn run_plain(spec: ProcessSpec) -> (Result<Ended, RunError>, Vec<(Stream, String)>) {
    run_collect(spec, None, None, GRACE, Redactor::default())
}

fn text(lines: &[(Stream, String)], stream: Stream) -> Vec<String> {
    lines
        .iter()
        .filter(|(s, _)| *s == stream)
        .map(|(_, l)| l.clone())
        .collect()
}

#[test]
fn forwards_stdout_and_stderr_line_by_line() {
    let (r, lines) = run_plain(sh(
        "echo one; echo two >&2; printf 'crlf\\r\\n'; printf 'bad \\377\\n'; printf tail",
    ));
    assert_eq!(
        r.unwrap(),
        Ended::Exited(Exit {
            code: 0,
            signal: None
        })
    );
    assert_eq!(
        text(&lines, Stream::Stdout),
        ["one", "crlf", "bad \u{fffd}", "tail"]
    );
    assert_eq!(text(&lines, Stream::Stderr), ["two"]);
}

#[test]
fn long_lines_arrive_whole_and_split_into_capped_log_records() {
    let (r, lines) = run_plain(sh("head -c 40000 /dev/zero | tr '\\0' x; echo"));
    assert!(
        r.unwrap()
            == Ended::Exited(Exit {
                code: 0,
                signal: None
            })
    );
    // One whole line (the task-log export takes it so, redacted before any cut)...
    let out = text(&lines, Stream::Stdout);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 40000);
    // ...which the local log writes as records of at most 16 KiB.
    let mut records = Vec::new();
    Line::new(&out[0], true).records(&mut |r| records.push(r.len()));
    assert!(records.len() >= 3, "{} records", records.len());
    assert!(records.iter().all(|l| *l <= MAX_RECORD));
    assert_eq!(records.iter().sum::<usize>(), 40000);
}

#[test]
fn a_line_over_64_kib_is_never_whole() {
    let rx = spawn(move || {
        let mut seen = Vec::new();
        let limits = Limits {
            cancel: None,
            deadline: None,
            grace: GRACE,
            group: None,
        };
        let r = process::run(
            &sh("head -c 70000 /dev/zero | tr '\\0' x; echo; echo short"),
            &limits,
            &Redactor::default(),
            &mut |_, l| seen.push((l.len(), l.whole().is_some())),
        );
        (r, seen)
    });
    let (r, seen) = rx
        .recv_timeout(PROMPTLY)
        .expect("process::run did not return");
    assert!(r.is_ok());
    // The overlong line comes in pieces, none of them whole: export drops it whole.
    let (last, pieces) = seen.split_last().unwrap();
    assert_eq!(*last, (5, true));
    assert!(pieces.iter().all(|(_, whole)| !whole), "{pieces:?}");
    assert_eq!(pieces.iter().map(|(n, _)| n).sum::<usize>(), 70000);
}

#[test]
fn output_written_before_exit_is_read_however_slow_the_reader() {
    // 20 lines of 8 KiB: the child blocks on the full pipe until near the end, so up to 64 KiB
    // is still in the pipe when it exits; a slow consumer (30 ms a line) then needs longer than
    // the 100 ms quiet window in all, but the bytes keep coming, so none may be lost.
    let rx = spawn(move || {
        let mut seen = Vec::new();
        let limits = Limits {
            cancel: None,
            deadline: None,
            grace: GRACE,
            group: None,
        };
        let r = process::run(
            &sh(
                "i=0; while [ $i -lt 20 ]; do head -c 8000 /dev/zero | tr '\\0' a; echo \" $i\"; i=$((i+1)); done",
            ),
            &limits,
            &Redactor::default(),
            &mut |_, l| {
                std::thread::sleep(std::time::Duration::from_millis(30));
                seen.push(
                    l.whole()
                        .unwrap_or("")
                        .rsplit(' ')
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                );
            },
        );
        (r, seen)
    });
    let (r, seen) = rx
        .recv_timeout(PROMPTLY)
        .expect("process::run did not return");
    assert!(r.is_ok());
    let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(seen, want);
}

#[test]
fn secrets_are_scrubbed_from_output() {
    let (r, lines) = run_collect(
        sh("echo token=hunter2; echo hunter2 >&2"),
        None,
        None,
        GRACE,
        Redactor::new(["hunter2"]),
    );
    assert!(r.is_ok());
    assert!(
        lines.iter().all(|(_, l)| !l.contains("hunter2")),
        "{lines:?}"
    );
    assert_eq!(text(&lines, Stream::Stdout), ["token=[REDACTED]"]);
}

#[test]
fn exit_codes_and_signal_deaths_are_normalised() {
    let (r, _) = run_plain(sh("exit 42"));
    assert_eq!(
        r.unwrap(),
        Ended::Exited(Exit {
            code: 42,
            signal: None
        })
    );
    let (r, _) = run_plain(sh("kill -s KILL $$"));
    assert_eq!(
        r.unwrap(),
        Ended::Exited(Exit {
            code: 137,
            signal: Some(9)
        })
    );
    let (r, _) = run_plain(sh("kill -s TERM $$"));
    assert_eq!(
        r.unwrap(),
        Ended::Exited(Exit {
            code: 143,
            signal: Some(15)
        })
    );
}

#[test]
fn the_environment_is_exactly_the_one_given() {
    let mut spec = sh("env");
    spec.env.set("ONLY_THIS", "1");
    let (_, lines) = run_plain(spec);
    let names: Vec<String> = text(&lines, Stream::Stdout)
        .iter()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
        .collect();
    assert!(names.contains(&"ONLY_THIS".to_owned()));
    for n in &names {
        // The shell itself may add PWD, SHLVL and `_`.
        assert!(
            ["PATH", "ONLY_THIS", "PWD", "SHLVL", "_", "OLDPWD"].contains(&n.as_str()),
            "unexpected {n}"
        );
    }
}

#[test]
fn working_directory_is_applied() {
    let dir = Scratch::new("cwd");
    let mut spec = sh("pwd");
    spec.cwd = Some(dir.path().to_owned());
    let (_, lines) = run_plain(spec);
    assert_eq!(
        PathBuf::from(&text(&lines, Stream::Stdout)[0]),
        dir.path().canonicalize().unwrap()
    );
}

#[test]
fn spawn_failures_are_reported_with_the_program() {
    let mut spec = sh("true");
    spec.cwd = Some("/nonexistent/oz-cwd".into());
    let (r, _) = run_plain(spec);
    assert!(matches!(r, Err(RunError::Spawn { .. })), "{r:?}");
    let spec = ProcessSpec {
        program: "/nonexistent/oz".into(),
        args: vec![],
        cwd: None,
        env: Env::new(),
        stdin: None,
    };
    let err = run_plain(spec).0.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to start /nonexistent/oz: "),
        "{err}"
    );
}

#[test]
fn stdin_payload_is_delivered_whole_then_closed() {
    let mut spec = sh("wc -c");
    spec.stdin = Some(vec![b'a'; 1024 * 1024 + 7]);
    let (r, lines) = run_plain(spec);
    assert!(
        r.unwrap()
            == Ended::Exited(Exit {
                code: 0,
                signal: None
            })
    );
    assert_eq!(text(&lines, Stream::Stdout)[0].trim(), "1048583");
}

#[test]
fn a_child_that_ignores_its_stdin_does_not_stall_the_wait() {
    let mut spec = sh("echo done");
    spec.stdin = Some(vec![b'a'; 4 * 1024 * 1024]);
    let (r, lines) = run_plain(spec);
    assert!(
        r.unwrap()
            == Ended::Exited(Exit {
                code: 0,
                signal: None
            })
    );
    assert_eq!(text(&lines, Stream::Stdout), ["done"]);
}

#[test]
fn no_stdin_means_dev_null() {
    let (r, lines) = run_plain(sh("cat; echo eof"));
    assert!(r.is_ok());
    assert_eq!(text(&lines, Stream::Stdout), ["eof"]);
}

#[test]
fn a_grandchild_holding_the_pipes_does_not_block_completion() {
    let dir = Scratch::new("holder");
    let pidfile = dir.join("pid");
    let (r, lines) = run_plain(sh(&format!(
        "sleep 300 & echo $! > {}; echo leader done",
        pidfile.display()
    )));
    assert_eq!(
        r.unwrap(),
        Ended::Exited(Exit {
            code: 0,
            signal: None
        })
    );
    assert_eq!(text(&lines, Stream::Stdout), ["leader done"]);
    // Without a cancellation the group is left alone: the background job is the script's business.
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_gone(pid));
    kill_pid(pid);
}

#[test]
fn a_deadline_stops_the_group_with_sigterm() {
    let (r, _) = run_collect(
        sh("sleep 300"),
        None,
        Some(Instant::now() + Duration::from_millis(100)),
        Duration::from_secs(30),
        Redactor::default(),
    );
    // `sh -c` with one command may exec it; either way SIGTERM ends it.
    assert_eq!(
        r.unwrap(),
        Ended::TimedOut(Exit {
            code: 143,
            signal: Some(15)
        })
    );
}

#[test]
fn cancellation_kills_every_process_of_the_group() {
    let dir = Scratch::new("group");
    let pidfile = dir.join("pid");
    let cancel = token();
    let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let c = cancel.clone();
    let rx = spawn(move || {
        process::run(
            &sh(&script),
            &Limits {
                cancel: Some(&c),
                deadline: None,
                grace: GRACE,
                group: None,
            },
            &Redactor::default(),
            &mut |_, _| {},
        )
    });
    let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    cancel.cancel(CancelSource::User);
    let r = rx
        .recv_timeout(PROMPTLY)
        .expect("run did not return after cancel");
    assert!(matches!(r, Ok(Ended::Cancelled(_))), "{r:?}");
    assert!(
        wait_until(GRACE + Duration::from_secs(10), || process_gone(pid)),
        "grandchild {pid} survived"
    );
}

#[test]
fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = Scratch::new("ignore");
    let pidfile = dir.join("pid");
    let cancel = token();
    let script = format!(
        "trap '' TERM; sleep 300 & echo $! > {}; wait; wait",
        pidfile.display()
    );
    let c = cancel.clone();
    let rx = spawn(move || {
        process::run(
            &sh(&script),
            &Limits {
                cancel: Some(&c),
                deadline: None,
                grace: GRACE,
                group: None,
            },
            &Redactor::default(),
            &mut |_, _| {},
        )
    });
    let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    cancel.cancel(CancelSource::Shutdown);
    let r = rx
        .recv_timeout(PROMPTLY)
        .expect("run did not return after cancel");
    assert_eq!(
        r.unwrap(),
        Ended::Cancelled(Exit {
            code: 137,
            signal: Some(9)
        })
    );
    assert!(
        wait_until(Duration::from_secs(10), || process_gone(pid)),
        "grandchild {pid} survived"
    );
}

#[test]
fn an_already_fired_token_stops_the_process_at_once() {
    let cancel = token();
    cancel.cancel(CancelSource::User);
    let (r, _) = run_collect(
        sh("sleep 300"),
        Some(cancel),
        None,
        GRACE,
        Redactor::default(),
    );
    assert!(matches!(r, Ok(Ended::Cancelled(_))), "{r:?}");
}

#[test]
fn signals_blocked_in_the_worker_thread_are_unblocked_in_the_child() {
    let rx = spawn(|| {
        // Block SIGTERM in this thread only, as a signal-handling library might.
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        let cancel = token();
        cancel.cancel(CancelSource::User);
        let limits = Limits {
            cancel: Some(&cancel),
            deadline: None,
            grace: Duration::from_secs(30),
            group: None,
        };
        process::run(
            &sh("sleep 300; exit 0"),
            &limits,
            &Redactor::default(),
            &mut |_, _| {},
        )
    });
    let r = rx.recv_timeout(PROMPTLY).unwrap();
    // 143, not 137 after the 30 s grace: the child could receive SIGTERM.
    assert_eq!(
        r.unwrap(),
        Ended::Cancelled(Exit {
            code: 143,
            signal: Some(15)
        })
    );
}
