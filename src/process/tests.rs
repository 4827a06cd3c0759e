use super::*;
use std::process::Command;

fn status_of(script: &str) -> ExitStatus {
    Command::new("/bin/sh")
        .args(["-c", script])
        .status()
        .expect("run /bin/sh")
}

#[test]
fn exit_codes_map_to_code_or_128_plus_signal() {
    assert_eq!(
        exit_of(status_of("exit 0")),
        Exit {
            code: 0,
            signal: None
        }
    );
    assert_eq!(exit_of(status_of("exit 7")).code, 7);
    let term = exit_of(status_of("kill -TERM $$"));
    assert_eq!(
        term,
        Exit {
            code: 143,
            signal: Some(15)
        }
    );
    assert_eq!(term.to_string(), "signal: SIGTERM");
    assert!(!term.success());
    assert_eq!(exit_of(status_of("kill -KILL $$")).code, 137);
    assert_eq!(exit_of(status_of("exit 3")).to_string(), "exit status 3");
    assert!(exit_of(status_of("true")).success());
}

#[test]
fn debug_output_hides_arguments_values_and_stdin() {
    let mut spec = sh("echo s3cr3t");
    spec.env.set("TOKEN", "s3cr3t");
    spec.stdin = Some(b"s3cr3t".to_vec());
    let shown = format!("{spec:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(
        shown.contains("TOKEN") && shown.contains("6 bytes"),
        "{shown}"
    );
}

#[test]
fn poll_timeouts_round_up() {
    assert_eq!(i32::from(poll_timeout(Duration::from_micros(1))), 1);
    assert_eq!(i32::from(poll_timeout(Duration::ZERO)), 0);
    assert_eq!(i32::from(poll_timeout(Duration::from_millis(1500))), 1500);
    assert_eq!(
        poll_timeout(Duration::from_secs(u64::MAX)),
        PollTimeout::MAX
    );
}

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: None,
        env: Env::new(),
        stdin: None,
    }
}

#[test]
fn without_a_pidfd_exits_and_cancellations_are_still_seen() {
    let limits = Limits {
        cancel: None,
        deadline: None,
        grace: Duration::from_secs(1),
        group: None,
    };
    let mut lines = Vec::new();
    let r = run_with(
        &sh("echo hi; exit 5"),
        &limits,
        &Redactor::default(),
        &mut |_, l| lines.push(l.to_owned()),
        false,
    );
    assert_eq!(
        r.unwrap(),
        Ended::Exited(Exit {
            code: 5,
            signal: None
        })
    );
    assert_eq!(lines, ["hi"]);

    let cancel = CancelToken::new().unwrap();
    let limits = Limits {
        cancel: Some(&cancel),
        ..limits
    };
    // Cancel once the shell ignores SIGTERM, so only SIGKILL can end it.
    let r = run_with(
        &sh("trap '' TERM; echo ready; sleep 300; exit 0"),
        &limits,
        &Redactor::default(),
        &mut |_, _| {
            cancel.cancel(crate::cancel::CancelSource::User);
        },
        false,
    );
    assert_eq!(
        r.unwrap(),
        Ended::Cancelled(Exit {
            code: 137,
            signal: Some(9)
        })
    );
}

#[test]
fn spawn_errors_name_the_program() {
    let spec = ProcessSpec {
        program: "/nonexistent/oz-test-binary".into(),
        args: vec![],
        cwd: None,
        env: Env::new(),
        stdin: None,
    };
    let limits = Limits {
        cancel: None,
        deadline: None,
        grace: Duration::from_secs(1),
        group: None,
    };
    let err = run(&spec, &limits, &Redactor::default(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, RunError::Spawn { .. }));
    assert!(
        err.to_string().contains("/nonexistent/oz-test-binary"),
        "{err}"
    );
}
