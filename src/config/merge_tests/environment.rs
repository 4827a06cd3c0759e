//! `-e` parsing, env merge per backend, and the `OZ_WORKER_*` timing variables.

use std::time::Duration;

use super::*;

// ---- -e parsing and env merge -----------------------------------------------------------------

#[test]
fn env_flag_errors() {
    for (entry, want) in [
        ("", "invalid --env flag: empty value"),
        (
            "=x",
            "invalid --env flag: missing key before `=` (expected KEY=value or KEY)",
        ),
        (
            "A B=c",
            "invalid --env flag: key \"A B\" contains whitespace (expected KEY=value or KEY)",
        ),
    ] {
        assert_eq!(Run::new(&w(&["-e", entry])).err(), want);
    }
}

#[test]
fn env_merge_docker() {
    let s = Run::new(&w(&["-e", "B=cli", "-e", "HOST_ONLY", "-e", "C=3", "-e", "MISSING"]))
        .yaml(
            "backend:\n  docker:\n    environment:\n      - {name: A, value: \"1\"}\n      - {name: B, value: file}\n      - {name: INHERIT}\n      - {name: A, value: \"2\"}\n",
        )
        .env(&[("WARP_API_KEY", "k"), ("HOST_ONLY", "h"), ("INHERIT", "inherited")])
        .settings();
    assert_eq!(
        docker(&s).env,
        pairs(&[
            ("A", "2"),
            ("B", "cli"),
            ("INHERIT", "inherited"),
            ("HOST_ONLY", "h"),
            ("C", "3"),
            ("MISSING", "")
        ])
    );
}

#[test]
fn resolve_env_missing_host_var_is_empty() {
    let s = Run::new(&w(&[]))
        .yaml("backend:\n  direct:\n    environment:\n      - name: NOT_SET\n")
        .settings();
    assert_eq!(direct(&s).env, pairs(&[("NOT_SET", "")]));
}

#[test]
fn env_merge_direct_and_command() {
    let s = Run::new(&w(&["-e", "A=cli"]))
        .yaml(
            "backend:\n  direct:\n    environment: [{name: A, value: file}, {name: B, value: b}]\n",
        )
        .settings();
    assert_eq!(direct(&s).env, pairs(&[("A", "cli"), ("B", "b")]));
    let s = Run::new(&w(&["-e", "A=cli"]))
        .yaml("backend:\n  command:\n    dispatch_command: d\n    environment: [{name: A, value: file}]\n")
        .settings();
    assert_eq!(command(&s).env, pairs(&[("A", "cli")]));
}

// ---- timing environment ---------------------------------------------------------------------

#[test]
fn timing_env_vars() {
    let env = [
        ("WARP_API_KEY", "k"),
        ("OZ_WORKER_PING_INTERVAL", "100ms"),
        ("OZ_WORKER_PONG_TIMEOUT", "1.5s"),
        ("OZ_WORKER_BACKOFF_INITIAL", "10ms"),
        ("OZ_WORKER_BACKOFF_MAX", "1m30s"),
        ("OZ_WORKER_WRITE_TIMEOUT", "2s"),
        ("OZ_WORKER_SHUTDOWN_TIMEOUT", "3s"),
        ("OZ_WORKER_KILL_GRACE", "250ms"),
    ];
    let t = Run::new(&w(&[])).env(&env).settings().timing;
    assert_eq!(
        t,
        Timing {
            ping_interval: Duration::from_millis(100),
            pong_timeout: Duration::from_millis(1500),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(90),
            write_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(3),
            kill_grace: Duration::from_millis(250),
        }
    );
    // Empty means unset.
    let t = Run::new(&w(&[]))
        .env(&[("WARP_API_KEY", "k"), ("OZ_WORKER_PING_INTERVAL", "")])
        .settings()
        .timing;
    assert_eq!(t, Timing::default());
}

#[test]
fn timing_env_errors_name_the_variable() {
    for var in cli::TIMING_ENV {
        for (value, reason) in [
            ("fast", "invalid duration \"fast\""),
            ("0", "must be a positive duration"),
            ("0s", "must be a positive duration"),
            ("-1s", "must be a positive duration"),
            (
                "10",
                "missing unit in duration \"10\" (units: ns, us (or µs), ms, s, m, h; e.g. \"90s\")",
            ),
            ("99999999999h", "invalid duration \"99999999999h\""),
        ] {
            let e = Run::new(&w(&[]))
                .env(&[("WARP_API_KEY", "k"), (var.name, value)])
                .err();
            assert_eq!(
                e,
                format!("{}: invalid value {value:?}: {reason}", var.name)
            );
        }
    }
}
