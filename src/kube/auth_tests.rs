use super::*;
use crate::kube::kubeconfig::{ExecEnv, Secret};

fn server() -> ServerUrl {
    ServerUrl::parse("https://127.0.0.1:6443").expect("url")
}

fn tmpdir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("oz-kube-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("mkdir");
    p
}

#[test]
fn rfc3339_parses_offsets_and_fractions() {
    let t = |s: &str| {
        parse_rfc3339(s)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(t("2026-12-02T16:00:00Z"), Some(1_796_227_200));
    assert_eq!(t("2026-12-02T16:00:00.123456Z"), Some(1_796_227_200));
    assert_eq!(t("2026-12-02T17:00:00+01:00"), Some(1_796_227_200));
    assert_eq!(t("2026-13-02T17:00:00Z"), None);
    assert_eq!(t("yesterday"), None);
}

#[test]
fn exec_output_is_checked_and_never_quoted() {
    let ok = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-1","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#;
    let c = parse_exec_output("p", V1, ok).expect("parses");
    assert_eq!(c.token.as_deref(), Some("tok-1"));
    assert!(c.expires.is_some());
    let err = parse_exec_output("p", V1BETA1, ok).expect_err("version mismatch");
    assert!(err.contains("v1beta1"), "{err}");
    let err = parse_exec_output("p", V1, b"{\"token\": \"SECRET-XYZ\" oops").expect_err("garbage");
    assert!(!err.contains("SECRET-XYZ"), "{err}");
    let none =
        br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}"#;
    assert!(parse_exec_output("p", V1, none).is_err());
}

#[test]
fn token_file_is_reread_when_it_changes_and_after_invalidation() {
    let dir = tmpdir("tokfile");
    // The kubelet's layout: token -> ..data/token, ..data -> a timestamped directory.
    std::fs::create_dir_all(dir.join("v1")).expect("mkdir");
    std::fs::write(dir.join("v1/token"), "first\n").expect("write");
    std::os::unix::fs::symlink("v1", dir.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/token", dir.join("token")).expect("symlink");
    let creds = Credentials::new(AuthConfig::TokenFile(dir.join("token")), server());
    assert_eq!(
        creds.present().expect("first").authorization.as_deref(),
        Some("Bearer first")
    );
    // Rotation: a new directory, then an atomic swap of ..data.
    std::fs::create_dir_all(dir.join("v2")).expect("mkdir");
    std::fs::write(dir.join("v2/token"), "second").expect("write");
    std::os::unix::fs::symlink("v2", dir.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    assert_eq!(
        creds.present().expect("second").authorization.as_deref(),
        Some("Bearer second")
    );
    assert!(creds.refreshable());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exec_plugin_runs_with_its_env_and_is_cached_until_invalidated() {
    let dir = tmpdir("exec");
    let count = dir.join("count");
    let script = dir.join("plugin.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho x >> {count}\nn=$(wc -l < {count})\ncase \"$KUBERNETES_EXEC_INFO\" in *ExecCredential*) ;; *) exit 3;; esac\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s-%s\"}}}}' \"$PREFIX\" \"$n\"\n",
            count = count.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let exec = ExecConfig {
        command: script.display().to_string(),
        args: vec![],
        env: vec![ExecEnv {
            name: "PREFIX".into(),
            value: "tok".into(),
        }],
        api_version: V1.into(),
        interactive_mode: Some("Never".into()),
        provide_cluster_info: true,
        install_hint: None,
    };
    let creds = Credentials::new(AuthConfig::Exec(Box::new(exec)), server());
    assert_eq!(
        creds.present().expect("run").authorization.as_deref(),
        Some("Bearer tok-1")
    );
    assert_eq!(
        creds.present().expect("cached").authorization.as_deref(),
        Some("Bearer tok-1")
    );
    creds.invalidate();
    assert_eq!(
        creds.present().expect("rerun").authorization.as_deref(),
        Some("Bearer tok-2")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failing_plugin_reports_its_stderr_and_hint() {
    let exec = ExecConfig {
        command: "/nonexistent/aws".into(),
        args: vec![],
        env: vec![],
        api_version: V1.into(),
        interactive_mode: None,
        provide_cluster_info: false,
        install_hint: Some("install the AWS CLI".into()),
    };
    let err = Credentials::new(AuthConfig::Exec(Box::new(exec)), server())
        .present()
        .expect_err("fails");
    assert!(
        err.contains("install the AWS CLI") && err.contains("/nonexistent/aws"),
        "{err}"
    );
}

#[test]
fn static_and_basic_credentials() {
    let c = Credentials::new(AuthConfig::Token(Secret("abc".into())), server());
    assert_eq!(
        c.present().expect("token").authorization.as_deref(),
        Some("Bearer abc")
    );
    let c = Credentials::new(
        AuthConfig::Basic {
            username: "u".into(),
            password: Secret("p".into()),
        },
        server(),
    );
    assert_eq!(
        c.present().expect("basic").authorization.as_deref(),
        Some("Basic dTpw")
    );
    assert!(!c.refreshable());
}
