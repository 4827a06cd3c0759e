//! Startup (errors, reaping a crashed run's containers) and `probe`.

use std::collections::BTreeMap;

use oz_agent_worker::backend::Backend;
use oz_agent_worker::backend::docker::{DockerBackend, spec as names};
use oz_agent_worker::docker::ContainerConfig;
use oz_agent_worker::settings::PullPolicy;

use super::*;

/// A stopped task container as a crashed run of `worker_id` leaves it.
fn crashed_task_container(f: &Fixture, worker_id: &str) -> String {
    let labels: BTreeMap<String, String> = [
        (names::LABEL_WORKER, worker_id),
        (names::LABEL_ROLE, names::ROLE_TASK),
        (names::LABEL_TASK, "crashed-task"),
        ("oz-test", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = ContainerConfig {
        image: f.task_image.clone(),
        cmd: Some(vec!["/never".into()]),
        labels,
        ..Default::default()
    };
    let created = f
        .client
        .create_container(Some(&unique("crashed")), &config)
        .unwrap();
    f.res.container(&created.id)
}

#[test]
fn a_crashed_runs_containers_are_removed_at_startup() {
    let f = Fixture::new();
    let mine = crashed_task_container(&f, &f.worker_id);
    let foreign_worker = unique("other-worker");
    let foreign = crashed_task_container(&f, &foreign_worker);
    let _b = f.backend();
    assert!(f.client.inspect_container(&mine).unwrap().is_none());
    assert!(!logged("(task crashed-task) left by an earlier run").is_empty());
    // Another worker's containers are not ours to remove.
    assert!(f.client.inspect_container(&foreign).unwrap().is_some());
    f.assert_clean();
}

#[test]
fn with_cleanup_off_a_crashed_runs_containers_are_kept() {
    let f = Fixture::new();
    let mine = crashed_task_container(&f, &f.worker_id);
    let _b = f.backend_with(f.settings(PullPolicy::Never), false, f.env());
    assert!(f.client.inspect_container(&mine).unwrap().is_some());
}

#[test]
fn an_unreachable_daemon_is_one_line_with_upstreams_prefix() {
    let f = Fixture::new();
    let dir = Scratch::new("nosock");
    let socket = dir.path().join("docker.sock");
    let mut env = f.env();
    env.insert("DOCKER_HOST".into(), format!("unix://{}", socket.display()));
    let e = DockerBackend::with_env(f.settings(PullPolicy::Always), f.ctx(true), env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "failed to reach Docker daemon: no Docker socket at {}: is the Docker daemon running? set DOCKER_HOST to its address",
            socket.display()
        )
    );
    let mut env = f.env();
    env.insert("DOCKER_HOST".into(), "tcp://127.0.0.1:1".into());
    let e = DockerBackend::with_env(f.settings(PullPolicy::Always), f.ctx(true), env)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "failed to reach Docker daemon: cannot connect to Docker at tcp://127.0.0.1:1"
        ),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn probe_reports_the_engine_and_each_bind_source() {
    let f = Fixture::new();
    let dir = Scratch::new("probe");
    let missing = dir.path().join("missing");
    let mut settings = f.settings(PullPolicy::IfNotPresent);
    settings.volumes = vec![
        format!("{}:/present", dir.path().display()),
        format!("{}:/missing:ro", missing.display()),
        format!("{}:/named", unique("named-volume")),
    ];
    let b = f.backend_with(settings, true, f.env());
    let lines = b.probe();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].ok, "{lines:?}");
    assert!(lines[0].what.contains("version"), "{lines:?}");
    assert!(lines[0].what.contains("platform linux/"), "{lines:?}");
    assert!(lines[1].ok && lines[1].what.contains("exists"), "{lines:?}");
    assert!(!lines[2].ok, "{lines:?}");
    assert!(lines[2].what.contains("does not exist"), "{lines:?}");
    assert!(
        lines[3].ok && lines[3].what.contains("Docker creates it"),
        "{lines:?}"
    );
}
