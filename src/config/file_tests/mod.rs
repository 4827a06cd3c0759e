//! The Go worker's `internal/config/config_test.go` checklist, plus the newer keys and every
//! decode/validation message.
//!
//! Go test → Rust test: TestLoadValidDockerConfig → `load_valid_docker_config`;
//! TestLoadKubernetesCodingCLISidecars → `kubernetes::load_kubernetes_coding_cli_sidecars`;
//! TestLoadMinimalConfig → `load_minimal_config`; TestLoadCleanupDefaultTrue →
//! `load_cleanup_true`; TestLoadInvalidYAML → `load_invalid_yaml`; TestLoadUnknownField →
//! `load_unknown_top_level_key`; TestLoadEmptyEnvName → `load_empty_env_name`;
//! TestLoadEnvNameWithWhitespace → `load_env_name_with_whitespace`; TestLoadEnvInheritFromHost →
//! `load_env_inherit_from_host`; TestResolveEnv / TestResolveEnvMissingHostVar →
//! `merge_tests::environment::{env_merge_docker, resolve_env_missing_host_var_is_empty}`;
//! TestLoadValidDirectConfig → `load_valid_direct_config`; TestLoadDirectConfigWithTargetDir →
//! `load_direct_config_with_target_dir`; TestLoadValidKubernetesConfig →
//! `kubernetes::load_valid_kubernetes_config`; TestLoadInvalidKubernetesPullPolicy →
//! `kubernetes::load_invalid_kubernetes_pull_policy`; TestLoadBothBackendsError →
//! `load_both_backends_error`; TestLoadFileNotFound → `load_file_not_found`;
//! TestLoadValidCommandConfig → `load_valid_command_config`;
//! TestLoadCommandConfigRequiresDispatchCommand → `load_command_config_requires_dispatch_command`;
//! TestLoadCommandAndDockerBackendsError → `load_command_and_docker_backends_error`;
//! TestLoadIdleOnComplete → `load_idle_on_complete`; TestLoadValidKubernetesPodTemplateConfig →
//! `kubernetes::load_valid_kubernetes_pod_template_with_secret_key_ref`;
//! TestLoadKubernetesDefaultImage / TestLoadKubernetesSidecarImage →
//! `kubernetes::load_kubernetes_{default,sidecar}_image`; TestLoadLegacyKubernetesFieldRejected
//! → `kubernetes::load_legacy_kubernetes_field_rejected`; TestLoadMaxConcurrentTasks →
//! `load_max_concurrent_tasks`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::ConfigError;
use crate::config::merge::load_file;

mod kubernetes;

/// A fresh directory per call (pid + counter), removed by the test itself when it is done.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oz-config-tests-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `yaml` to a temp file and loads (decodes + validates) it.
pub(super) fn load(yaml: &str) -> Result<FileConfig, ConfigError> {
    let dir = temp_dir("load");
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let result = load_file(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

pub(super) fn load_err(yaml: &str) -> String {
    let e = load(yaml).unwrap_err().to_string();
    // Every message names the file; strip the temp path for readable assertions.
    let (_, rest) = e
        .split_once("config.yaml: ")
        .unwrap_or_else(|| panic!("{e}"));
    let kind = if e.starts_with("invalid config file") {
        "invalid: "
    } else {
        "read: "
    };
    format!("{kind}{rest}")
}

#[test]
fn load_valid_docker_config() {
    let cfg = load(
        "worker_id: my-worker\ncleanup: false\nbackend:\n  docker:\n    volumes:\n      - /data:/data:ro\n      - cache:/cache\n    environment:\n      - name: FOO\n        value: bar\n      - name: PASS\n",
    )
    .unwrap();
    assert_eq!(cfg.worker_id.as_deref(), Some("my-worker"));
    assert_eq!(cfg.cleanup, Some(false));
    let d = cfg.backend.unwrap().docker.unwrap();
    assert_eq!(
        d.volumes.unwrap(),
        vec!["/data:/data:ro".to_owned(), "cache:/cache".to_owned()]
    );
    let env = d.environment.unwrap();
    assert_eq!(env.len(), 2);
    assert_eq!(env[0].name.as_deref(), Some("FOO"));
    assert_eq!(env[0].value.as_deref(), Some("bar"));
    assert_eq!(env[1].name.as_deref(), Some("PASS"));
    assert_eq!(env[1].value, None);
}

#[test]
fn load_docker_newer_keys() {
    let cfg = load(
        "backend:\n  docker:\n    image_pull_policy: IfNotPresent\n    sidecar_image: reg.example/agent:2\n",
    )
    .unwrap();
    let d = cfg.backend.unwrap().docker.unwrap();
    assert_eq!(d.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(d.sidecar_image.as_deref(), Some("reg.example/agent:2"));
    assert_eq!(
        load_err("backend:\n  docker:\n    image_pull_policy: Sometimes\n"),
        "invalid: line 3: backend.docker.image_pull_policy must be one of Always, IfNotPresent, Never (got \"Sometimes\")"
    );
    assert_eq!(
        load_err("backend:\n  docker:\n    sidecar_image: \"a b\"\n"),
        "invalid: line 3: backend.docker.sidecar_image must not contain whitespace (got \"a b\")"
    );
}

#[test]
fn load_minimal_config() {
    let cfg = load("worker_id: w\n").unwrap();
    assert_eq!(cfg.worker_id.as_deref(), Some("w"));
    assert_eq!(cfg.cleanup, None);
    assert!(cfg.backend.is_none());
    assert_eq!(cfg.max_concurrent_tasks, None);
    assert_eq!(cfg.idle_on_complete, None);
    assert_eq!(cfg.one_shot, None);
}

#[test]
fn load_cleanup_true() {
    assert_eq!(load("cleanup: true\n").unwrap().cleanup, Some(true));
}

#[test]
fn load_invalid_yaml() {
    let e = load_err("worker_id: a\n  bad: indent\n");
    assert_eq!(
        e,
        "read: line 2: mapping values are not allowed in this context"
    );
    let e = load_err("worker_id: [unclosed\n");
    assert!(e.starts_with("read: line "), "{e}");
}

#[test]
fn load_unknown_top_level_key() {
    assert_eq!(
        load_err("worker_id: a\nfoo: 1\n"),
        "read: line 2: unknown key \"foo\" in the top level (allowed: worker_id, cleanup, \
         max_concurrent_tasks, idle_on_complete, one_shot, collect_task_logs, ca_bundle, log_format, \
         metrics_addr, drain_timeout, state_dir, backend)"
    );
}

#[test]
fn top_level_keys_match_the_schema() {
    // Every listed key is accepted...
    for key in TOP_LEVEL_KEYS {
        assert!(decode(&format!("{key}: null\n")).is_ok(), "{key}");
    }
    // ...and serde's own list of allowed keys is exactly TOP_LEVEL_KEYS.
    let e = decode("nope: 1\n").unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "unknown key \"nope\" in the top level (allowed: {})",
            TOP_LEVEL_KEYS.join(", ")
        )
    );
}

#[test]
fn load_unknown_nested_keys_name_the_block_and_line() {
    assert_eq!(
        load_err("worker_id: w\nbackend:\n  docker:\n    volumes: []\n    foo: 2\n"),
        "read: line 5: unknown key \"foo\" in backend.docker (allowed: volumes, environment, \
         image_pull_policy, sidecar_image)"
    );
    assert_eq!(
        load_err("backend:\n  podman: {}\n"),
        "read: line 2: unknown key \"podman\" in backend (allowed: docker, direct, command, kubernetes)"
    );
    assert_eq!(
        load_err("backend:\n  direct:\n    environment:\n      - name: A\n        val: 1\n"),
        "read: line 5: unknown key \"val\" in backend.direct.environment[0] (allowed: name, value)"
    );
    assert_eq!(
        load_err("backend:\n  command:\n    dispatch_command: x\n    timeout: 5s\n"),
        "read: line 4: unknown key \"timeout\" in backend.command (allowed: dispatch_command, \
         cancel_command, dispatch_timeout, environment)"
    );
}

#[test]
fn load_type_errors_name_the_key_and_line() {
    assert_eq!(
        load_err("cleanup: yes\n"),
        "read: line 1: cleanup: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        load_err("worker_id: w\nmax_concurrent_tasks: lots\n"),
        "read: line 2: max_concurrent_tasks: invalid type: string \"lots\", expected a whole number"
    );
    assert_eq!(
        load_err("backend:\n  docker: 5\n"),
        "read: line 2: backend.docker: invalid type: integer `5`, expected a mapping (e.g. \
         `backend: {docker: {}}` for its defaults)"
    );
    assert_eq!(
        load_err("backend:\n  kubernetes:\n    ttl_seconds_after_finished: 99999999999\n"),
        "read: line 3: backend.kubernetes.ttl_seconds_after_finished: invalid value: integer \
         `99999999999`, expected a whole number (out of range)"
    );
    assert_eq!(
        load_err("worker_id: [a]\n"),
        "read: line 1: worker_id: invalid type: sequence, expected a string"
    );
}

#[test]
fn scalars_are_accepted_for_string_keys() {
    // As with Go's yaml.v3: `worker_id: 123` is the string "123", a bare `0` a duration.
    let cfg = load("worker_id: 123\nidle_on_complete: 0\n").unwrap();
    assert_eq!(cfg.worker_id.as_deref(), Some("123"));
    assert_eq!(cfg.idle_on_complete.as_deref(), Some("0"));
}

#[test]
fn load_rejects_empty_and_non_mapping_files() {
    for empty in ["", "\n\n", "# only a comment\n", "---\n", "~\n", "null\n"] {
        assert_eq!(
            load_err(empty),
            "read: the file is empty (it must be a YAML mapping, e.g. `worker_id: my-worker`)",
            "{empty:?}"
        );
    }
    assert_eq!(
        load_err("- a\n- b\n"),
        "read: line 1: the top level must be a mapping of keys, not a sequence"
    );
    assert_eq!(
        load_err("just text\n"),
        "read: line 1: the top level must be a mapping of keys, not a string"
    );
    assert_eq!(
        load_err("worker_id: a\n---\nworker_id: b\n"),
        "read: the file contains more than one YAML document"
    );
    assert_eq!(
        load_err("backend:\n  docker:\n    volumes: []\n    volumes: []\n"),
        "read: line 3: duplicate key \"volumes\""
    );
    assert_eq!(
        load_err("worker_id: a\nworker_id: b\n"),
        "read: line 1: duplicate key \"worker_id\""
    );
}

#[test]
fn load_rejects_non_utf8() {
    let dir = temp_dir("utf8");
    let path = dir.join("config.yaml");
    std::fs::write(&path, b"worker_id: \xff\n").unwrap();
    let e = load_file(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.ends_with("config.yaml: the file is not valid UTF-8"),
        "{e}"
    );
}

#[test]
fn load_empty_env_name() {
    assert_eq!(
        load_err("backend:\n  docker:\n    environment:\n      - name: \"\"\n        value: x\n"),
        "invalid: line 4: backend.docker.environment[0].name is required"
    );
    assert_eq!(
        load_err("backend:\n  direct:\n    environment:\n      - name: A\n      - value: x\n"),
        "invalid: line 5: backend.direct.environment[1].name is required"
    );
}

#[test]
fn load_env_name_with_whitespace() {
    assert_eq!(
        load_err("backend:\n  docker:\n    environment:\n      - name: \"A B\"\n"),
        "invalid: line 4: backend.docker.environment[0].name must not contain whitespace (got \"A B\")"
    );
    assert_eq!(
        load_err(
            "backend:\n  command:\n    dispatch_command: d\n    environment:\n      - name: \"A\\tB\"\n"
        ),
        "invalid: line 5: backend.command.environment[0].name must not contain whitespace (got \"A\\tB\")"
    );
    assert_eq!(
        load_err("backend:\n  docker:\n    environment:\n      - name: A=B\n"),
        "invalid: line 4: backend.docker.environment[0].name must not contain '=' (got \"A=B\")"
    );
}

#[test]
fn load_env_inherit_from_host() {
    let cfg = load("backend:\n  direct:\n    environment:\n      - name: HOME\n").unwrap();
    let env = cfg.backend.unwrap().direct.unwrap().environment.unwrap();
    assert_eq!(env[0].name.as_deref(), Some("HOME"));
    assert_eq!(env[0].value, None);
    // An explicit empty value is a value, not inheritance.
    let cfg =
        load("backend:\n  direct:\n    environment:\n      - {name: X, value: \"\"}\n").unwrap();
    let env = cfg.backend.unwrap().direct.unwrap().environment.unwrap();
    assert_eq!(env[0].value.as_deref(), Some(""));
}

#[test]
fn load_valid_direct_config() {
    let cfg = load(
        "backend:\n  direct:\n    workspace_root: /srv/ws\n    oz_path: /usr/bin/oz\n    setup_command: ./setup.sh\n    teardown_command: ./teardown.sh\n    environment:\n      - {name: A, value: b}\n",
    )
    .unwrap();
    let b = cfg.backend.unwrap();
    assert!(b.docker.is_none());
    let d = b.direct.unwrap();
    assert_eq!(d.workspace_root.as_deref(), Some("/srv/ws"));
    assert_eq!(d.oz_path.as_deref(), Some("/usr/bin/oz"));
    assert_eq!(d.setup_command.as_deref(), Some("./setup.sh"));
    assert_eq!(d.teardown_command.as_deref(), Some("./teardown.sh"));
    assert_eq!(d.environment.unwrap().len(), 1);
    assert_eq!(d.target_dir, None);
}

#[test]
fn load_direct_config_with_target_dir() {
    let cfg = load("backend:\n  direct:\n    target_dir: /srv/repo\n").unwrap();
    let d = cfg.backend.unwrap().direct.unwrap();
    assert_eq!(d.target_dir.as_deref(), Some("/srv/repo"));
    assert_eq!(d.workspace_root, None);
}

#[test]
fn null_backend_block_is_not_configured() {
    let cfg = load("backend:\n  direct:\n").unwrap();
    assert!(cfg.backend.unwrap().present().is_empty());
    let cfg = load("backend:\n  direct: {}\n").unwrap();
    assert_eq!(cfg.backend.unwrap().present(), vec!["direct"]);
    // A null block next to a real one is not a second backend.
    let cfg = load("backend:\n  direct:\n  docker: {}\n").unwrap();
    assert_eq!(cfg.backend.unwrap().present(), vec!["docker"]);
}

#[test]
fn load_both_backends_error() {
    assert_eq!(
        load_err("backend:\n  docker: {}\n  direct: {}\n"),
        "invalid: line 1: at most one backend may be configured (found direct, docker)"
    );
}

#[test]
fn load_command_and_docker_backends_error() {
    assert_eq!(
        load_err("backend:\n  command: {dispatch_command: d}\n  docker: {}\n"),
        "invalid: line 1: at most one backend may be configured (found command, docker)"
    );
}

#[test]
fn validation_reports_every_problem() {
    assert_eq!(
        load_err(
            "max_concurrent_tasks: -1\nbackend:\n  command: {}\n  kubernetes:\n    default_image: \"a b\"\n"
        ),
        "invalid: line 1: max_concurrent_tasks must not be negative (got -1); the Go worker \
         treated negative values as unlimited: use 0 for unlimited; line 2: at most one backend \
         may be configured (found kubernetes, command); line 3: backend.command.dispatch_command \
         is required; line 5: backend.kubernetes.default_image must not contain whitespace (got \
         \"a b\")"
    );
}

#[test]
fn load_file_not_found() {
    let dir = temp_dir("missing");
    let path = dir.join("nope.yaml");
    let e = load_file(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("reading config file {}: ", path.display())),
        "{text}"
    );
    assert!(text.contains("No such file or directory"), "{text}");
    assert!(matches!(e, ConfigError::ReadFile { .. }));
}

#[test]
fn load_refuses_huge_files() {
    let dir = temp_dir("huge");
    let path = dir.join("config.yaml");
    let mut text = String::from("worker_id: w\n");
    text.push_str(&format!("# {}\n", "x".repeat(5 << 20)));
    std::fs::write(&path, text).unwrap();
    let e = load_file(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(e.ends_with("file is larger than 4096 KiB"), "{e}");
}

#[test]
fn load_valid_command_config() {
    let cfg = load(
        "backend:\n  command:\n    dispatch_command: /usr/local/bin/dispatch\n    cancel_command: /usr/local/bin/cancel\n    dispatch_timeout: 30s\n    environment:\n      - {name: URL, value: http://x}\n",
    )
    .unwrap();
    let c = cfg.backend.unwrap().command.unwrap();
    assert_eq!(
        c.dispatch_command.as_deref(),
        Some("/usr/local/bin/dispatch")
    );
    assert_eq!(c.cancel_command.as_deref(), Some("/usr/local/bin/cancel"));
    assert_eq!(c.dispatch_timeout.as_deref(), Some("30s"));
    assert_eq!(
        dispatch_timeout(&c),
        Ok(Some(std::time::Duration::from_secs(30)))
    );
    assert_eq!(c.environment.unwrap()[0].name.as_deref(), Some("URL"));
}

#[test]
fn load_command_config_requires_dispatch_command() {
    // A missing key is placed at its block; an empty one at itself.
    for (yaml, line) in [
        ("backend:\n  command: {}\n", 2),
        ("backend:\n  command:\n    cancel_command: c\n", 2),
        ("backend:\n  command:\n    dispatch_command: \"  \"\n", 3),
    ] {
        assert_eq!(
            load_err(yaml),
            format!("invalid: line {line}: backend.command.dispatch_command is required")
        );
    }
}

#[test]
fn command_dispatch_timeout_errors() {
    assert_eq!(
        load_err("backend:\n  command:\n    dispatch_command: d\n    dispatch_timeout: soon\n"),
        "invalid: line 4: invalid backend.command.dispatch_timeout \"soon\": invalid duration \"soon\""
    );
    assert_eq!(
        load_err("backend:\n  command:\n    dispatch_command: d\n    dispatch_timeout: 0s\n"),
        "invalid: line 4: invalid backend.command.dispatch_timeout \"0s\": must be positive"
    );
    assert_eq!(
        load_err("backend:\n  command:\n    dispatch_command: d\n    dispatch_timeout: 30\n"),
        "invalid: line 4: invalid backend.command.dispatch_timeout \"30\": missing unit in duration \"30\" \
         (units: ns, us (or µs), ms, s, m, h; e.g. \"90s\")"
    );
}

#[test]
fn load_idle_on_complete() {
    assert_eq!(
        load("idle_on_complete: 10m\n")
            .unwrap()
            .idle_on_complete
            .as_deref(),
        Some("10m")
    );
    assert_eq!(load("worker_id: w\n").unwrap().idle_on_complete, None);
}

#[test]
fn load_max_concurrent_tasks() {
    assert_eq!(
        load("max_concurrent_tasks: 5\n")
            .unwrap()
            .max_concurrent_tasks,
        Some(5)
    );
    assert_eq!(load("worker_id: w\n").unwrap().max_concurrent_tasks, None);
    assert_eq!(
        load("max_concurrent_tasks: 0\n")
            .unwrap()
            .max_concurrent_tasks,
        Some(0)
    );
}

#[test]
fn collect_task_logs_and_one_shot_and_ca_bundle_parse() {
    let cfg = load("collect_task_logs: false\none_shot: true\nca_bundle: /etc/ca.pem\n").unwrap();
    assert_eq!(cfg.collect_task_logs, Some(false));
    assert_eq!(cfg.one_shot, Some(true));
    assert_eq!(cfg.ca_bundle.as_deref(), Some("/etc/ca.pem"));
}

#[test]
fn hostile_yaml_does_not_panic() {
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let billion_laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let deep_pod = format!(
        "backend:\n  kubernetes:\n    pod_template: {}1{}\n",
        "{a: ".repeat(5_000),
        "}".repeat(5_000)
    );
    for text in [
        deep.as_str(),
        billion_laughs,
        deep_pod.as_str(),
        "\u{0}",
        "worker_id: *nope\n",
        "? : \n",
        "backend: {docker: {volumes: {a: b}}}\n",
        ": x\n",
        "worker_id: \"\\xff\"\n",
    ] {
        if let Ok(cfg) = decode(text) {
            let _ = validate(&cfg);
        }
    }
}

#[test]
fn decode_error_has_no_line_only_for_whole_document_errors() {
    let e = decode("").unwrap_err();
    assert!(e.empty);
    assert_eq!(e.line, None);
    let e = decode("foo: 1\n").unwrap_err();
    assert!(!e.empty);
    assert_eq!(e.line, Some(1));
}

#[test]
fn type_errors_never_name_rust_types() {
    for yaml in [
        "max_concurrent_tasks: lots\n",
        "max_concurrent_tasks: 1.5\n",
        "backend:\n  kubernetes:\n    ttl_seconds_after_finished: 99999999999\n",
        "backend:\n  kubernetes:\n    active_deadline_seconds: x\n",
        "backend:\n  docker: 5\n",
    ] {
        let e = load_err(yaml);
        for rust in [
            "i64",
            "i32",
            "u32",
            "u64",
            "f64",
            "struct",
            "floating point",
        ] {
            assert!(!e.contains(rust), "{rust} in {e}");
        }
    }
}

#[test]
fn common_shape_mistakes_come_with_an_example() {
    assert_eq!(
        load_err("backend: direct\n"),
        "read: line 1: backend: invalid type: string \"direct\", expected a mapping (write the \
         backend as a block: `backend: {direct: {}}`, or `direct:` indented under `backend:`)"
    );
    assert!(
        load_err("backend:\n  docker:\n    volumes: /a:/b\n")
            .ends_with("(a list, e.g. `volumes: [\"/host/path:/container/path:ro\"]`)")
    );
    assert!(
        load_err("backend:\n  direct:\n    environment:\n      A: b\n").ends_with(
            "(a list of name/value entries, e.g. `environment: [{name: KEY, value: v}]`)"
        )
    );
}

#[test]
fn every_decoding_error_of_a_file_is_reported_with_its_line() {
    let e = load_err(
        "worker_id: w\ncleanup: maybe\nmax_concurrent_tasks: lots\nbogus: 1\nbackend:\n  docker:\n    volumes: /a:/b\n",
    );
    assert!(e.starts_with("read: line 2: cleanup: "), "{e}");
    for part in [
        "; line 3: max_concurrent_tasks: invalid type: string \"lots\", expected a whole number",
        "; line 4: unknown key \"bogus\" in the top level",
        "; line 7: backend.docker.volumes: invalid type: string",
    ] {
        assert!(e.contains(part), "{part} missing from {e}");
    }
    // Capped: a file of many bad keys reports the first few and counts the rest.
    let many: String = (0..40).map(|i| format!("bad_{i}: 1\n")).collect();
    let e = load_err(&many);
    assert_eq!(e.matches("unknown key").count(), MAX_REPORTED_ERRORS, "{e}");
    assert!(e.ends_with("and 20 more error(s)"), "{e}");
}

#[test]
fn errors_found_after_parsing_carry_their_line() {
    assert_eq!(
        load_err("worker_id: w\nbackend:\n  direct: {}\n  docker: {}\n"),
        "invalid: line 2: at most one backend may be configured (found direct, docker)"
    );
    assert_eq!(
        load_err("worker_id: w\ndrain_timeout: 3d\n"),
        "invalid: line 2: invalid drain_timeout \"3d\": unknown unit \"d\" in duration \"3d\" \
         (units: ns, us (or µs), ms, s, m, h; e.g. \"90s\")"
    );
}
