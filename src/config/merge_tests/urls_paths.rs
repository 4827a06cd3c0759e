//! URLs, path expansion, the CA bundle, log level, warnings and file errors through `resolve`.

use std::path::{Path, PathBuf};

use super::*;

// ---- URLs, paths, CA bundle, log level, warnings ------------------------------------------------

#[test]
fn url_flags_are_validated() {
    let s = Run::new(&w(&[
        "--web-socket-url",
        "ws://127.0.0.1:9/ws",
        "--server-root-url",
        "http://127.0.0.1:8",
        "--session-sharing-server-url",
        "https://share.example",
    ]))
    .settings();
    assert_eq!(s.web_socket_url, "ws://127.0.0.1:9/ws");
    assert_eq!(s.server_root_url, "http://127.0.0.1:8");
    assert_eq!(
        s.session_sharing_server_url.as_deref(),
        Some("https://share.example")
    );
    assert_eq!(
        Run::new(&w(&["--web-socket-url", "https://oz/ws"])).err(),
        "--web-socket-url: invalid URL \"https://oz/ws\": scheme \"https\" is not allowed (expected ws or wss)"
    );
    assert_eq!(
        Run::new(&w(&["--server-root-url", "wss://oz"])).err(),
        "--server-root-url: invalid URL \"wss://oz\": scheme \"wss\" is not allowed (expected http or https)"
    );
    assert_eq!(
        Run::new(&w(&["--server-root-url", "app.warp.dev"])).err(),
        "--server-root-url: invalid URL \"app.warp.dev\": expected http:// or https://HOST..."
    );
}

#[test]
fn config_file_path_expansion() {
    // Run passes a relative --config-file; it resolves against the working directory.
    let s = Run::new(&[]).yaml("worker_id: rel\n").settings();
    assert_eq!(s.worker_id, "rel");

    let home = temp_dir("home");
    std::fs::write(home.join("oz.yaml"), "worker_id: from-home\n").unwrap();
    let low = match cli::parse(vec!["--config-file".into(), "~/oz.yaml".into()]).unwrap() {
        Invocation::Run { args, .. } => args,
        other => panic!("{other:?}"),
    };
    let home_str = home.to_str().unwrap().to_owned();
    let env = move |k: &str| match k {
        "HOME" => Some(home_str.clone()),
        "WARP_API_KEY" => Some("k".to_owned()),
        _ => None,
    };
    let s = resolve_with_cwd(&low, Mode::Daemon, &env, Path::new("/"))
        .unwrap()
        .settings;
    assert_eq!(s.worker_id, "from-home");
    let no_home = |k: &str| (k == "WARP_API_KEY").then(|| "k".to_owned());
    assert_eq!(
        resolve_with_cwd(&low, Mode::Daemon, &no_home, Path::new("/"))
            .unwrap_err()
            .to_string(),
        "--config-file ~/oz.yaml: cannot expand ~: HOME is not set"
    );
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn ca_bundle_precedence() {
    let s = Run::new(&w(&["--ca-bundle", "/cli.pem"]))
        .yaml("ca_bundle: /file.pem\n")
        .settings();
    assert_eq!(s.ca_bundle, Some(PathBuf::from("/cli.pem")));
    let s = Run::new(&w(&[])).yaml("ca_bundle: /file.pem\n").settings();
    assert_eq!(s.ca_bundle, Some(PathBuf::from("/file.pem")));
    let s = Run::new(&w(&["--ca-bundle", "ca.pem"])).settings();
    let p = s.ca_bundle.unwrap();
    assert!(p.is_absolute() && p.ends_with("ca.pem"), "{p:?}");
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("ca_bundle: \"\"\n")
            .settings()
            .ca_bundle,
        None
    );
}

#[test]
fn log_level_flag_and_default() {
    assert_eq!(
        Run::new(&w(&[])).settings().log_level,
        log::LevelFilter::Info
    );
    assert_eq!(
        Run::new(&w(&["--log-level", "debug"])).settings().log_level,
        log::LevelFilter::Debug
    );
}

#[test]
fn collect_task_logs_is_quiet_and_a_bad_env_value_warns() {
    let r = Run::new(&w(&[])).yaml("collect_task_logs: true\n").ok();
    assert!(r.warnings.is_empty());
    assert!(r.settings.collect_task_logs);
    let r = Run::new(&[])
        .env(&[("WARP_API_KEY", "k"), ("OZ_COLLECT_TASK_LOGS", "nope")])
        .mode(Mode::Check)
        .yaml("collect_task_logs: false\n")
        .ok();
    assert_eq!(
        r.warnings,
        vec!["ignoring OZ_COLLECT_TASK_LOGS=\"nope\": expected true or false"]
    );
    assert!(!r.settings.collect_task_logs);
}

#[test]
fn file_errors_surface_through_resolve() {
    let e = Run::new(&w(&[])).yaml("").err();
    assert!(e.starts_with("reading config file /"), "{e}");
    assert!(e.ends_with(
        "config.yaml: the file is empty (it must be a YAML mapping, e.g. `worker_id: my-worker`)"
    ));
    let e = Run::new(&w(&[])).yaml("worker_id: w\nbogus: 1\n").err();
    assert!(
        e.contains("config.yaml: line 2: unknown key \"bogus\" in the top level (allowed: "),
        "{e}"
    );
    let e = Run::new(&w(&[])).yaml("max_concurrent_tasks: -2\n").err();
    assert!(e.starts_with("invalid config file /"), "{e}");
    assert!(e.ends_with("config.yaml: line 1: max_concurrent_tasks must not be negative (got -2); the Go worker treated negative values as unlimited: use 0 for unlimited"));
    let e = Run::new(&["--config-file", "/nonexistent/oz.yaml"]).err();
    assert!(
        e.starts_with("reading config file /nonexistent/oz.yaml: "),
        "{e}"
    );
}
