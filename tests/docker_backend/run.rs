//! Running task containers: success, exits, OOM, signals, env, volumes, limits, labels, names.

use std::sync::Arc;

use oz_agent_worker::backend::docker::spec as names;
use oz_agent_worker::backend::{Backend, BackendKind, Completion, FailureReason};
use oz_agent_worker::protocol::InstanceShape;
use oz_agent_worker::settings::PullPolicy;

use super::*;

#[test]
fn a_task_runs_with_the_agent_from_its_sidecar_and_streams_its_output() {
    let f = Fixture::new();
    let b = f.backend();
    assert_eq!(b.kind(), BackendKind::Docker);
    assert!(!b.preserves_tasks_on_shutdown());
    let id = unique("ok");
    let spec = f.spec(
        &id,
        &[("TASK_VAR", "x"), ("OZ_AGENT_CAT", "/agent/sidecar-marker")],
    );
    assert_eq!(b.execute(&spec, &token()), Ok(Completion::Finished));

    let lines = agent_lines(&id);
    let argv: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ARGV "))
        .collect();
    assert_eq!(
        argv,
        [
            "/agent/entrypoint.sh",
            "agent",
            "run",
            "--task-id",
            id.as_str()
        ],
        "{lines:?}"
    );
    assert!(lines.contains(&"ENV TASK_VAR".to_string()), "{lines:?}");
    assert!(lines.contains(&"CWD /workspace".to_string()), "{lines:?}");
    assert!(
        lines.contains(&"agent stderr line".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"from the sidecar".to_string()), "{lines:?}");
    // The volume is the upstream-named digest cache, and it stays for the next task.
    let volume = f.volume_of(&f.sidecar_image);
    assert!(volume.starts_with("oz-test-agent-"), "{volume}");
    assert!(f.client.inspect_volume(&volume).unwrap().is_some());
    f.assert_clean();
}

#[test]
fn a_non_zero_exit_is_container_exit_with_its_code() {
    let f = Fixture::new();
    let b = f.backend();
    let spec = f.spec(&unique("exit"), &[("OZ_AGENT_EXIT", "3")]);
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::ContainerExit);
    assert_eq!(e.exit_code, Some(3));
    assert_eq!(e.message, "container exited with non-zero status: 3");
    f.assert_clean();
}

#[test]
fn exceeding_the_shapes_memory_is_container_oom() {
    let f = Fixture::new();
    let b = f.backend();
    let mut spec = f.spec(&unique("oom"), &[("OZ_AGENT_ALLOC_MB", "1400")]);
    spec.instance_shape = Some(InstanceShape {
        vcpus: 0,
        memory_gb: 1,
    });
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::ContainerOom, "{e}");
    assert_eq!(e.exit_code, Some(137));
    f.assert_clean();
}

#[test]
fn signal_deaths_keep_dockers_128_plus_signal_codes() {
    let f = Fixture::new();
    let b = Arc::new(f.backend());

    let e = failure(b.execute(
        &f.spec(&unique("segv"), &[("OZ_AGENT_SEGV", "1")]),
        &token(),
    ));
    assert_eq!(
        (e.reason, e.exit_code),
        (FailureReason::ContainerExit, Some(139))
    );

    // Killed from outside (as the OOM killer or an operator would): 137, not an OOM.
    let id = unique("kill");
    let rx = execute_async(&b, f.spec(&id, &[("OZ_AGENT_SLEEP", "1")]), &token());
    wait_for_line(&id, "sleeping");
    let c = f.running_container();
    f.client.kill_container(&c.id, "KILL").unwrap();
    let e = failure(rx.recv_timeout(PROMPTLY).unwrap());
    assert_eq!(
        (e.reason, e.exit_code),
        (FailureReason::ContainerExit, Some(137))
    );
    assert_eq!(e.message, "container exited with non-zero status: 137");

    // SIGTERM from outside: the agent's handler exits 143, the shutdown marker.
    let id = unique("term");
    let rx = execute_async(&b, f.spec(&id, &[("OZ_AGENT_SLEEP", "1")]), &token());
    wait_for_line(&id, "sleeping");
    let c = f.running_container();
    f.client.kill_container(&c.id, "TERM").unwrap();
    let e = failure(rx.recv_timeout(PROMPTLY).unwrap());
    assert_eq!(
        (e.reason, e.exit_code),
        (FailureReason::ContainerExit, Some(143))
    );
    assert!(agent_lines(&id).contains(&"got TERM".to_string()));
    f.assert_clean();
}

#[test]
fn operator_volumes_and_env_reach_the_container() {
    let f = Fixture::new();
    let dir = Scratch::new("bind");
    std::fs::write(dir.path().join("file.txt"), "from the host\n").unwrap();
    let mut settings = f.settings(PullPolicy::IfNotPresent);
    settings.volumes = vec![format!("{}:/host:ro", dir.path().display())];
    settings.env = vec![
        ("OPERATOR_VAR".into(), "op".into()),
        ("SHARED".into(), "operator".into()),
    ];
    let b = f.backend_with(settings, true, f.env());
    let id = unique("env");
    let spec = f.spec(
        &id,
        &[
            ("SHARED", "spec"),
            ("OZ_AGENT_SHOW", "SHARED"),
            ("OZ_AGENT_CAT", "/host/file.txt"),
        ],
    );
    assert_eq!(b.execute(&spec, &token()), Ok(Completion::Finished));
    let lines = agent_lines(&id);
    // Operator env comes after the task's, so it wins, as upstream.
    assert!(
        lines.contains(&"SHOW SHARED=operator".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"ENV OPERATOR_VAR".to_string()), "{lines:?}");
    assert!(lines.contains(&"from the host".to_string()), "{lines:?}");
    f.assert_clean();
}

#[test]
fn limits_labels_and_name_are_on_the_container_and_no_cleanup_keeps_it() {
    let f = Fixture::new();
    let b = f.backend_with(f.settings(PullPolicy::Never), false, f.env());
    let id = unique("shape");
    let mut spec = f.spec(&id, &[]);
    spec.instance_shape = Some(InstanceShape {
        vcpus: 1,
        memory_gb: 2,
    });
    assert_eq!(b.execute(&spec, &token()), Ok(Completion::Finished));
    let kept = f.containers();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let c = f.res.container(&kept[0].id);
    let inspect = f.client.inspect_container(&c).unwrap().unwrap();
    assert_eq!(inspect.host_config.nano_cpus, Some(1_000_000_000));
    assert_eq!(inspect.host_config.memory, Some(2 << 30));
    assert_eq!(inspect.host_config.memory_swap, Some(2 << 30));
    assert_eq!(inspect.labels[names::LABEL_TASK], id);
    assert_eq!(inspect.labels[names::LABEL_EXECUTION], format!("{id}-exec"));
    assert_eq!(inspect.labels[names::LABEL_WORKER], f.worker_id);
    assert_eq!(inspect.labels[names::LABEL_ROLE], "task");
    assert!(
        inspect.name.starts_with(&format!("/oz-{id}-")),
        "{}",
        inspect.name
    );
    let volume = f.volume_of(&f.sidecar_image);
    // Docker reports the bind as given; Podman appends the options it applied.
    let binds = &inspect.host_config.binds;
    assert_eq!(binds.len(), 1, "{binds:?}");
    assert!(
        binds[0].starts_with(&format!("{volume}:/agent:ro")),
        "{binds:?}"
    );
    assert!(
        logged(&format!("Task {id}: keeping container oz-{id}-")).len() == 1,
        "the kept container is logged"
    );
}

#[test]
fn a_refused_create_is_container_create_and_a_failed_start_is_container_start() {
    use crate::support::docker_images::{Tar, import_image};
    let f = Fixture::new();
    let mut settings = f.settings(PullPolicy::IfNotPresent);
    settings.volumes = vec!["not a valid volume name:/x".into()];
    let b = f.backend_with(settings, true, f.env());
    let e = failure(b.execute(&f.spec(&unique("badbind"), &[]), &token()));
    assert_eq!(e.reason, FailureReason::ContainerCreate, "{e}");
    assert!(e.message.starts_with("failed to create container: "), "{e}");

    // A sidecar without /entrypoint.sh: the container cannot start.
    let empty = Tar::new().file("not-the-agent", 0o644, b"x").finish();
    let sidecar = import_image(&f.client, &f.res, "oz-test/empty-agent", &empty);
    f.register_volume(&sidecar);
    let b = f.backend();
    let mut spec = f.spec(&unique("nostart"), &[]);
    spec.sidecars[0].image = sidecar;
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::ContainerStart, "{e}");
    assert!(e.message.starts_with("failed to start container: "), "{e}");
    f.assert_clean();
}
