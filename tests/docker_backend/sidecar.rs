//! Sidecar volumes: filled once per image digest, never mounted half-filled, crash-safe.

use std::collections::BTreeMap;
use std::sync::Arc;

use oz_agent_worker::backend::docker::spec as names;
use oz_agent_worker::backend::{Backend, Completion};
use oz_agent_worker::docker::{ContainerConfig, HostConfig};

use super::*;

/// Creates what a fill interrupted by a crash leaves: the (empty) volume and its fill
/// container, labelled with `worker_id`. Returns the container id (registered for removal).
fn interrupted_fill(f: &Fixture, volume: &str, worker_id: &str) -> String {
    let labels: BTreeMap<String, String> = [
        (names::LABEL_WORKER, worker_id),
        (names::LABEL_ROLE, names::ROLE_FILL),
        (names::LABEL_VOLUME, volume),
        ("oz-test", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = ContainerConfig {
        image: f.sidecar_image.clone(),
        cmd: Some(vec!["/never".into()]),
        labels,
        host_config: HostConfig {
            binds: vec![format!("{volume}:/target")],
            ..Default::default()
        },
        ..Default::default()
    };
    let created = f
        .client
        .create_container(Some(&unique("crashed-fill")), &config)
        .unwrap();
    assert!(f.client.inspect_volume(volume).unwrap().is_some());
    f.res.container(&created.id)
}

#[test]
fn concurrent_first_use_fills_one_volume_once_and_every_task_sees_it_whole() {
    let f = Fixture::new();
    let b = Arc::new(f.backend());
    let volume = f.volume_of(&f.sidecar_image);
    let tasks: Vec<(String, _)> = (0..4)
        .map(|i| {
            let id = unique(&format!("first{i}"));
            let spec = f.spec(&id, &[("OZ_AGENT_CAT", "/agent/sidecar-marker")]);
            let rx = execute_async(&b, spec, &token());
            (id, rx)
        })
        .collect();
    for (id, rx) in tasks {
        assert_eq!(rx.recv_timeout(PROMPTLY).unwrap(), Ok(Completion::Finished));
        assert!(
            agent_lines(&id).contains(&"from the sidecar".to_string()),
            "{:?}",
            agent_lines(&id)
        );
    }
    let fills = logged(&format!("filling sidecar volume {volume} "));
    assert_eq!(fills.len(), 1, "{fills:?}");
    assert!(f.client.inspect_volume(&volume).unwrap().is_some());
    f.assert_clean();
}

#[test]
fn a_fill_interrupted_by_a_crash_is_discarded_and_redone_at_first_use() {
    let f = Fixture::new();
    let b = f.backend();
    let volume = f.volume_of(&f.sidecar_image);
    // After the backend started (so startup reaping did not see it).
    interrupted_fill(&f, &volume, &f.worker_id);
    let id = unique("refill");
    let spec = f.spec(&id, &[("OZ_AGENT_CAT", "/agent/sidecar-marker")]);
    assert_eq!(b.execute(&spec, &token()), Ok(Completion::Finished));
    assert!(agent_lines(&id).contains(&"from the sidecar".to_string()));
    assert_eq!(
        logged(&format!("Sidecar volume {volume} was left incomplete")).len(),
        1
    );
    f.assert_clean();
}

#[test]
fn startup_removes_a_crashed_runs_fill_container_and_its_volume() {
    let f = Fixture::new();
    let volume = f.volume_of(&f.sidecar_image);
    let fill = interrupted_fill(&f, &volume, &f.worker_id);
    let _b = f.backend();
    assert!(f.client.inspect_container(&fill).unwrap().is_none());
    assert!(f.client.inspect_volume(&volume).unwrap().is_none());
    f.assert_clean();
}

#[test]
fn another_workers_fill_in_progress_is_waited_for() {
    let f = Fixture::new();
    let b = Arc::new(f.backend());
    let volume = f.volume_of(&f.sidecar_image);
    let foreign = unique("other-worker");
    let fill = interrupted_fill(&f, &volume, &foreign);
    let id = unique("waiter");
    let spec = f.spec(&id, &[("OZ_AGENT_CAT", "/agent/sidecar-marker")]);
    let rx = execute_async(&b, spec, &token());
    let waiting = format!("Task {id}: waiting for sidecar volume {volume}");
    let end = Instant::now() + PROMPTLY;
    while logged(&waiting).is_empty() {
        assert!(
            Instant::now() < end,
            "the task never waited for the other fill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The other worker completes its fill: copy the image in, then drop its marker.
    let export = f
        .client
        .create_container(
            Some(&unique("export")),
            &ContainerConfig {
                image: f.sidecar_image.clone(),
                cmd: Some(vec!["/never".into()]),
                ..Default::default()
            },
        )
        .unwrap();
    let export = f.res.container(&export.id);
    let mut tar = f.client.export_container(&export).unwrap();
    f.client.put_archive(&fill, "/target", &mut tar).unwrap();
    f.client.remove_container(&fill, true, false).unwrap();
    assert_eq!(rx.recv_timeout(PROMPTLY).unwrap(), Ok(Completion::Finished));
    assert!(agent_lines(&id).contains(&"from the sidecar".to_string()));
    // It used the other worker's volume rather than filling its own.
    assert!(logged(&format!("filling sidecar volume {volume} ")).is_empty());
    f.assert_clean();
}
