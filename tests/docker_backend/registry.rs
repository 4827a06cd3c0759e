//! Registry credentials for the task image and the `/agent` sidecar, from the CLI config file
//! and from a credential helper, with the fake registry (Basic auth) of `support`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use oz_agent_worker::backend::{Backend, Completion, FailureReason};
use oz_agent_worker::docker::base64;
use oz_agent_worker::settings::PullPolicy;

use crate::support::docker_images::{FakeRegistry, sidecar_layer, task_layer};

use super::*;

const USER: &str = "oz-user";
const PASSWORD: &str = "oz-registry-password";

/// A private registry serving the task image and the agent sidecar image.
fn private_registry() -> FakeRegistry {
    FakeRegistry::serve(
        crate::support::docker_images::docker_arch(),
        Some((USER, PASSWORD)),
        vec![
            ("oz-test/task", "1", task_layer()),
            ("oz-test/agent", "1", sidecar_layer()),
        ],
    )
}

/// A spec whose task and sidecar images both come from `registry`; registers them for removal.
fn registry_spec(f: &Fixture, registry: &FakeRegistry, id: &str) -> TaskSpec {
    let mut spec = f.spec(id, &[]);
    spec.image = f.res.image(&registry.reference("oz-test/task", "1"));
    spec.sidecars[0].image = f.res.image(&registry.reference("oz-test/agent", "1"));
    spec
}

/// `env` with `DOCKER_CONFIG` pointing at a directory holding `config`.
fn with_config(f: &Fixture, dir: &Scratch, config: serde_json::Value) -> HashMap<String, String> {
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut env = f.env();
    env.insert(
        "DOCKER_CONFIG".into(),
        dir.path().to_string_lossy().into_owned(),
    );
    env
}

/// Pulls with the given env; returns the outcome and registers the sidecar volume.
fn run(
    f: &Fixture,
    registry: &FakeRegistry,
    env: HashMap<String, String>,
    id: &str,
) -> Result<Completion, oz_agent_worker::backend::Failure> {
    let b = f.backend_with(f.settings(PullPolicy::Always), true, env);
    let spec = registry_spec(f, registry, id);
    let result = b.execute(&spec, &token());
    if f.client
        .inspect_image(&spec.sidecars[0].image)
        .unwrap()
        .is_some()
    {
        f.register_volume(&spec.sidecars[0].image);
    }
    result
}

fn assert_authenticated_pulls(registry: &FakeRegistry) {
    let expected = format!(
        "Basic {}",
        base64::encode(format!("{USER}:{PASSWORD}").as_bytes())
    );
    for repo in ["oz-test/task", "oz-test/agent"] {
        let manifest = format!("/v2/{repo}/manifests/1");
        let authed = registry
            .requests()
            .iter()
            .any(|r| r.path == manifest && r.authorization.as_deref() == Some(expected.as_str()));
        assert!(authed, "no authenticated manifest request for {repo}");
    }
}

#[test]
fn credentials_from_the_config_file_pull_the_task_and_agent_images() {
    let f = Fixture::new();
    let registry = private_registry();
    let dir = Scratch::new("docker-config");
    let auth = base64::encode(format!("{USER}:{PASSWORD}").as_bytes());
    let config = serde_json::json!({
        "auths": { format!("127.0.0.1:{}", registry.port): { "auth": auth } }
    });
    let env = with_config(&f, &dir, config);
    let id = unique("cfgauth");
    assert_eq!(run(&f, &registry, env, &id), Ok(Completion::Finished));
    assert_authenticated_pulls(&registry);
    assert!(agent_lines(&id).contains(&"ARGV /agent/entrypoint.sh".to_string()));
    assert!(
        logged(PASSWORD).is_empty(),
        "the password reached a log line"
    );
    f.assert_clean();
}

#[test]
fn credentials_from_a_credential_helper_pull_the_task_and_agent_images() {
    let f = Fixture::new();
    let registry = private_registry();
    let dir = Scratch::new("docker-config");
    let bin = Scratch::new("helper-bin");
    let helper = bin.path().join("docker-credential-oztest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '%s' '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = serde_json::json!({
        "credHelpers": { format!("127.0.0.1:{}", registry.port): "oztest" }
    });
    let mut env = with_config(&f, &dir, config);
    // The helper is found on the injected PATH only.
    let path = format!(
        "{}:{}",
        bin.path().display(),
        env.get("PATH").cloned().unwrap_or_default()
    );
    env.insert("PATH".into(), path);
    let id = unique("helperauth");
    assert_eq!(run(&f, &registry, env, &id), Ok(Completion::Finished));
    assert_authenticated_pulls(&registry);
    assert!(
        logged(PASSWORD).is_empty(),
        "the password reached a log line"
    );
    f.assert_clean();
}

#[test]
fn a_wrong_password_is_image_pull_with_a_clear_message() {
    let f = Fixture::new();
    let registry = private_registry();
    let dir = Scratch::new("docker-config");
    let auth = base64::encode(format!("{USER}:not-the-password").as_bytes());
    let config = serde_json::json!({
        "auths": { format!("127.0.0.1:{}", registry.port): { "auth": auth } }
    });
    let env = with_config(&f, &dir, config);
    let e = failure(run(&f, &registry, env, &unique("badauth")));
    assert_eq!(e.reason, FailureReason::ImagePull);
    let image = registry.reference("oz-test/task", "1");
    assert!(
        e.message
            .starts_with(&format!("failed to pull image {image}: ")),
        "{}",
        e.message
    );
    let lower = e.message.to_lowercase();
    assert!(
        lower.contains("unauthorized") || lower.contains("authentication required"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("not-the-password"));
    f.assert_clean();
}

#[test]
fn without_credentials_a_private_registry_refuses_the_pull() {
    let f = Fixture::new();
    let registry = private_registry();
    let e = failure(run(&f, &registry, f.env(), &unique("noauth")));
    assert_eq!(e.reason, FailureReason::ImagePull);
    f.assert_clean();
}
