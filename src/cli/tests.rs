//! One test per flag: default, `--x v`, `--x=v`, short forms, repeats; plus subcommands and
//! errors. (Precedence against env and file is tested in `config`.)

use std::ffi::OsString;
use std::path::PathBuf;

use super::*;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Parses a daemon command line and returns its `LowArgs`.
fn low(args: &[&str]) -> LowArgs {
    match parse(os(args)) {
        Ok(Invocation::Run {
            mode: Mode::Daemon,
            args,
            task: None,
        }) => args,
        other => panic!("{args:?}: unexpected {other:?}"),
    }
}

fn err(args: &[&str]) -> String {
    match parse(os(args)) {
        Err(e) => e.to_string(),
        Ok(other) => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

#[test]
fn no_arguments_is_the_daemon_with_defaults() {
    let l = low(&[]);
    assert_eq!(l.worker_id, None);
    assert!(l.api_key.is_none());
    assert_eq!(l.api_key_file, None);
    assert_eq!(l.config_file, None);
    assert_eq!(l.backend, None);
    assert_eq!(l.log_level, None);
    assert!(!l.no_cleanup);
    assert!(l.volumes.is_empty());
    assert!(l.env.is_empty());
    assert_eq!(l.max_concurrent_tasks, 0);
    assert_eq!(l.idle_on_complete, None);
    assert_eq!(l.target_dir, None);
    assert_eq!(l.web_socket_url, None);
    assert_eq!(l.server_root_url, None);
    assert_eq!(l.session_sharing_server_url, None);
    assert!(!l.one_shot);
    assert_eq!(l.ca_bundle, None);
}

/// Checks `--flag v`, `--flag=v`, last-wins and empty-means-unset for a string flag.
fn check_string_flag(flag: &str, get: fn(&LowArgs) -> Option<String>) {
    assert_eq!(get(&low(&[])), None, "{flag} default");
    assert_eq!(get(&low(&[flag, "a"])), Some("a".into()), "{flag} v");
    assert_eq!(
        get(&low(&[&format!("{flag}=a=b")])),
        Some("a=b".into()),
        "{flag}=v"
    );
    assert_eq!(
        get(&low(&[flag, "a", flag, "b"])),
        Some("b".into()),
        "last wins"
    );
    assert_eq!(
        get(&low(&[flag, "a", &format!("{flag}=")])),
        None,
        "empty unsets"
    );
    // A value may start with '-'.
    assert_eq!(get(&low(&[flag, "-x"])), Some("-x".into()), "{flag} -x");
    assert_eq!(
        err(&[flag]),
        format!(
            "{flag} requires a value ({})",
            FLAGS
                .iter()
                .find(|f| format!("--{}", f.long) == flag)
                .and_then(|f| f.value_name())
                .unwrap()
        )
    );
}

fn check_path_flag(flag: &str, get: fn(&LowArgs) -> Option<PathBuf>) {
    assert_eq!(get(&low(&[])), None);
    assert_eq!(get(&low(&[flag, "/a"])), Some(PathBuf::from("/a")));
    assert_eq!(
        get(&low(&[&format!("{flag}=rel/b")])),
        Some(PathBuf::from("rel/b"))
    );
    assert_eq!(
        get(&low(&[flag, "/a", flag, "~/c"])),
        Some(PathBuf::from("~/c"))
    );
    assert_eq!(get(&low(&[flag, "/a", flag, ""])), None);
    assert!(err(&[flag]).starts_with(&format!("{flag} requires a value")));
}

#[test]
fn worker_id_flag() {
    check_string_flag("--worker-id", |l| l.worker_id.clone());
}

#[test]
fn api_key_flag() {
    check_string_flag("--api-key", |l| {
        l.api_key.as_ref().map(|k| k.expose().to_owned())
    });
    // The key never shows in Debug output.
    let l = low(&["--api-key", "sekrit-123"]);
    assert!(!format!("{l:?}").contains("sekrit-123"));
}

#[test]
fn api_key_file_flag() {
    check_path_flag("--api-key-file", |l| l.api_key_file.clone());
}

#[test]
fn api_key_and_api_key_file_conflict() {
    let want = "--api-key and --api-key-file cannot be used together";
    assert_eq!(err(&["--api-key", "k", "--api-key-file", "/f"]), want);
    assert_eq!(err(&["--api-key-file=/f", "--api-key=k"]), want);
    assert!(!err(&["--api-key", "sekrit-123", "--api-key-file", "/f"]).contains("sekrit"));
}

#[test]
fn config_file_flag() {
    check_path_flag("--config-file", |l| l.config_file.clone());
}

#[test]
fn target_dir_flag() {
    check_path_flag("--target-dir", |l| l.target_dir.clone());
}

#[test]
fn ca_bundle_flag() {
    check_path_flag("--ca-bundle", |l| l.ca_bundle.clone());
}

#[test]
fn url_flags() {
    check_string_flag("--web-socket-url", |l| l.web_socket_url.clone());
    check_string_flag("--server-root-url", |l| l.server_root_url.clone());
    check_string_flag("--session-sharing-server-url", |l| {
        l.session_sharing_server_url.clone()
    });
}

#[test]
fn idle_on_complete_flag() {
    check_string_flag("--idle-on-complete", |l| l.idle_on_complete.clone());
}

#[test]
fn backend_flag() {
    for kind in BackendKind::ALL {
        assert_eq!(low(&["--backend", kind.as_str()]).backend, Some(kind));
        assert_eq!(
            low(&[&format!("--backend={}", kind.as_str())]).backend,
            Some(kind)
        );
    }
    assert_eq!(
        low(&["--backend", "direct", "--backend", "command"]).backend,
        Some(BackendKind::Command)
    );
    // Empty means "not given" (kong's enum allowed "").
    assert_eq!(low(&["--backend", "direct", "--backend="]).backend, None);
    assert_eq!(
        err(&["--backend", "podman"]),
        "--backend: invalid value \"podman\" (expected one of: docker, direct, kubernetes, command)"
    );
    assert_eq!(
        err(&["--backend=Docker"]),
        "--backend: invalid value \"Docker\" (expected one of: docker, direct, kubernetes, command)"
    );
    assert_eq!(err(&["--backend"]), "--backend requires a value (BACKEND)");
}

#[test]
fn log_level_flag() {
    for (name, level) in [
        ("debug", log::LevelFilter::Debug),
        ("info", log::LevelFilter::Info),
        ("warn", log::LevelFilter::Warn),
        ("error", log::LevelFilter::Error),
    ] {
        assert_eq!(low(&["--log-level", name]).log_level, Some(level));
        assert_eq!(
            low(&[&format!("--log-level={name}")]).log_level,
            Some(level)
        );
    }
    assert_eq!(
        low(&["--log-level", "debug", "--log-level", "error"]).log_level,
        Some(log::LevelFilter::Error)
    );
    assert_eq!(
        err(&["--log-level", "trace"]),
        "--log-level: invalid value \"trace\" (expected one of: debug, info, warn, error)"
    );
    assert_eq!(
        err(&["--log-level", "INFO"]),
        "--log-level: invalid value \"INFO\" (expected one of: debug, info, warn, error)"
    );
}

#[test]
fn max_concurrent_tasks_flag() {
    assert_eq!(
        low(&["--max-concurrent-tasks", "5"]).max_concurrent_tasks,
        5
    );
    assert_eq!(low(&["--max-concurrent-tasks=7"]).max_concurrent_tasks, 7);
    assert_eq!(
        low(&["--max-concurrent-tasks", "0"]).max_concurrent_tasks,
        0
    );
    assert_eq!(
        low(&["--max-concurrent-tasks", "3", "--max-concurrent-tasks", "9"]).max_concurrent_tasks,
        9
    );
    for bad in ["-1", "abc", "1.5", "", " 3", "99999999999999999999999999"] {
        assert_eq!(
            err(&["--max-concurrent-tasks", bad]),
            format!(
                "--max-concurrent-tasks: invalid value {bad:?} (expected a non-negative integer; 0 means unlimited)"
            )
        );
    }
}

#[test]
fn switch_flags() {
    assert!(low(&["--no-cleanup"]).no_cleanup);
    assert!(low(&["--no-cleanup", "--no-cleanup"]).no_cleanup);
    assert!(low(&["--one-shot"]).one_shot);
    assert_eq!(err(&["--no-cleanup=true"]), "--no-cleanup takes no value");
    assert_eq!(err(&["--one-shot=false"]), "--one-shot takes no value");
    // A switch does not swallow the next argument.
    let l = low(&["--one-shot", "--worker-id", "w"]);
    assert!(l.one_shot);
    assert_eq!(l.worker_id.as_deref(), Some("w"));
}

#[test]
fn volumes_flag_spellings_and_repeats() {
    let l = low(&[
        "-v",
        "/a:/a",
        "-v/b:/b:ro",
        "-v=/c:/c",
        "--volumes",
        "/d:/d",
        "--volumes=/e:/e:ro,Z",
    ]);
    assert_eq!(
        l.volumes,
        vec!["/a:/a", "/b:/b:ro", "/c:/c", "/d:/d", "/e:/e:ro,Z"]
    );
    assert!(err(&["-v"]).starts_with("--volumes requires a value"));
}

#[test]
fn env_flag_spellings_and_repeats() {
    let l = low(&[
        "-e",
        "A=1",
        "-eB=2",
        "-e=C=3",
        "--env",
        "D=4",
        "--env=E=5",
        "-e",
        "BARE",
        "-e",
        "A=6",
    ]);
    assert_eq!(
        l.env,
        vec!["A=1", "B=2", "C=3", "D=4", "E=5", "BARE", "A=6"]
    );
}

#[test]
fn env_and_volume_values_are_not_split_on_commas() {
    let l = low(&["-e", "FOO=a,b", "-v", "/x,y:/z"]);
    assert_eq!(l.env, vec!["FOO=a,b"]);
    assert_eq!(l.volumes, vec!["/x,y:/z"]);
}

#[test]
fn env_entries_are_kept_raw_for_config() {
    // Syntax errors are reported by config::resolve ("invalid --env flag: ...").
    assert_eq!(low(&["-e", "=x"]).env, vec!["=x"]);
    assert_eq!(low(&["-e", ""]).env, vec![""]);
}

#[test]
fn help_and_version() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["--worker-id", "w", "-h"],
        &["check", "--help"],
    ] {
        match parse(os(args)) {
            Ok(Invocation::Help(text)) => assert_eq!(text, help_text()),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    for args in [&["--version"][..], &["-V"], &["check", "-V"]] {
        match parse(os(args)) {
            Ok(Invocation::Version(v)) => {
                assert_eq!(v, format!("oz-agent-worker {}", crate::VERSION))
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }
    assert_eq!(version_text(), "oz-agent-worker 0.1.0");
    // --help wins even before later bad flags are seen.
    assert!(matches!(
        parse(os(&["--help", "--bogus"])),
        Ok(Invocation::Help(_))
    ));
}

#[test]
fn subcommands() {
    match parse(os(&["check", "--worker-id", "w"])) {
        Ok(Invocation::Run {
            mode: Mode::Check,
            args,
            task: None,
        }) => assert_eq!(args.worker_id.as_deref(), Some("w")),
        other => panic!("{other:?}"),
    }
    for (args, want) in [
        (&["run-once", "--task", "t.json"][..], "t.json"),
        (&["run-once", "--task=-"], "-"),
        (&["--task", "/x.json", "run-once"], "/x.json"),
        (&["run-once", "--task", "a", "--task", "b"], "b"),
    ] {
        match parse(os(args)) {
            Ok(Invocation::Run {
                mode: Mode::RunOnce,
                task: Some(t),
                ..
            }) => assert_eq!(t, want),
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

#[test]
fn subcommand_errors() {
    assert_eq!(
        err(&["run-once"]),
        "run-once requires --task FILE (or --task - to read stdin)"
    );
    assert_eq!(
        err(&["--task", "t.json"]),
        "--task is only valid with the run-once subcommand"
    );
    assert_eq!(
        err(&["check", "--task", "t.json"]),
        "--task is only valid with the run-once subcommand"
    );
    assert_eq!(
        err(&["run-once", "--task", ""]),
        "--task: must be a file path or - for stdin"
    );
    assert_eq!(
        err(&["serve"]),
        "unknown subcommand \"serve\" (expected one of: run-once, check, completions, help)"
    );
    assert_eq!(
        err(&["check", "extra"]),
        "unexpected argument \"extra\" (see --help)"
    );
    assert_eq!(
        err(&["check", "run-once"]),
        "unexpected argument \"run-once\" (see --help)"
    );
}

#[test]
fn unknown_flags() {
    assert_eq!(err(&["--foo"]), "unknown flag --foo (see --help)");
    assert_eq!(err(&["-x"]), "unknown flag -x (see --help)");
    // The value of an unknown flag is never echoed (it may be a secret).
    assert_eq!(
        err(&["--apikey=sekrit"]),
        "unknown flag --apikey (see --help)"
    );
    // Go's kong flags are kebab-case only.
    assert_eq!(
        err(&["--worker_id", "w"]),
        "unknown flag --worker_id (see --help)"
    );
}

#[test]
fn flags_after_double_dash_are_positional() {
    assert_eq!(
        err(&["--", "--worker-id"]),
        "unknown subcommand \"--worker-id\" (expected one of: run-once, check, completions, help)"
    );
}

#[cfg(unix)]
#[test]
fn non_utf8_values() {
    use std::os::unix::ffi::OsStringExt;
    let bad = OsString::from_vec(vec![b'a', 0xff]);
    let e = parse(vec![OsString::from("--worker-id"), bad.clone()])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "--worker-id: value is not valid UTF-8");
    // Paths may be any bytes.
    match parse(vec![OsString::from("--config-file"), bad.clone()]) {
        Ok(Invocation::Run { args, .. }) => assert_eq!(args.config_file, Some(PathBuf::from(bad))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn flag_table_is_consistent() {
    let mut longs = std::collections::BTreeSet::new();
    let mut shorts = std::collections::BTreeSet::new();
    for f in FLAGS {
        assert!(longs.insert(f.long), "duplicate --{}", f.long);
        if let Some(c) = f.short {
            assert!(shorts.insert(c), "duplicate -{c}");
        }
        assert!(
            f.long.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "--{} is not kebab-case",
            f.long
        );
        assert!(
            !f.doc_short.is_empty() && !f.doc_long.is_empty(),
            "--{}",
            f.long
        );
        assert!(
            !f.doc_short.contains('\n'),
            "--{} short doc must be one line",
            f.long
        );
        if let Some(y) = f.yaml {
            assert!(
                crate::config::file::TOP_LEVEL_KEYS.contains(&y),
                "--{}: {y} is not a config key",
                f.long
            );
        }
        assert!(
            !(f.repeatable && f.value_name().is_none()),
            "--{}: a repeatable switch makes no sense",
            f.long
        );
    }
    // Only --api-key and --collect-task-logs read the environment, as in the Go worker.
    let with_env: Vec<_> = FLAGS.iter().filter_map(|f| f.env).collect();
    assert_eq!(with_env, vec!["WARP_API_KEY", "OZ_COLLECT_TASK_LOGS"]);
}

#[test]
fn usage_errors_are_one_line() {
    for args in [
        &["--foo"][..],
        &["--backend", "x"],
        &["run-once"],
        &["--max-concurrent-tasks", "x"],
        &["--api-key", "a", "--api-key-file", "b"],
    ] {
        assert!(!err(args).contains('\n'), "{args:?}");
    }
}

#[test]
fn collect_task_logs_takes_an_optional_bool() {
    assert_eq!(low(&[]).collect_task_logs, None);
    assert_eq!(low(&["--collect-task-logs"]).collect_task_logs, Some(true));
    for (v, want) in [("true", true), ("1", true), ("False", false), ("0", false)] {
        let arg = format!("--collect-task-logs={v}");
        assert_eq!(low(&[&arg]).collect_task_logs, Some(want), "{v}");
    }
    // Last wins; a separate word is not its value (Go's bool flags).
    assert_eq!(
        low(&["--collect-task-logs=false", "--collect-task-logs"]).collect_task_logs,
        Some(true)
    );
    assert_eq!(
        err(&["--collect-task-logs=maybe"]),
        "--collect-task-logs: invalid value \"maybe\" (expected true or false)"
    );
    assert_eq!(
        err(&["--collect-task-logs", "false"]),
        "unknown subcommand \"false\" (expected one of: run-once, check, completions, help)"
    );
}

#[test]
fn completions_prints_the_script_of_the_named_shell() {
    for shell in crate::cli::Shell::ALL {
        match parse(os(&["completions", shell.as_str()])) {
            Ok(Invocation::Completions(script)) => assert_eq!(script, shell.script()),
            other => panic!("{shell:?}: {other:?}"),
        }
    }
    assert_eq!(
        err(&["completions"]),
        "completions: expected a shell: bash, zsh, fish"
    );
    assert_eq!(
        err(&["completions", "tcsh"]),
        "completions: unknown shell \"tcsh\" (expected one of: bash, zsh, fish)"
    );
    assert_eq!(
        err(&["completions", "bash", "zsh"]),
        "unexpected argument \"zsh\" (see --help)"
    );
    assert_eq!(
        err(&["completions", "bash", "--worker-id"]),
        "unexpected argument \"--worker-id\" (see --help)"
    );
}
