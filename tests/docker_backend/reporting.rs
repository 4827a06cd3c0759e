//! Setup events and task-log export from the Docker backend: the phases it reports, and the
//! container's output as log records, against a fake of Warp's endpoints.

use std::time::Duration;

use oz_agent_worker::backend::Backend;
use oz_agent_worker::protocol::TelemetryCollection;

use super::*;
use crate::support::warp_api::FakeWarp;

const SECRET: &str = "docker-secret-canary-4e9d";

fn reporting_backend(f: &Fixture, warp: &FakeWarp, policy: PullPolicy) -> DockerBackend {
    let ctx = BackendContext {
        server_root_url: warp.url(),
        ..f.ctx(true)
    };
    DockerBackend::with_env(f.settings(policy), ctx, f.env()).unwrap()
}

fn reporting_spec(f: &Fixture, warp: &FakeWarp, id: &str) -> TaskSpec {
    let mut spec = f.spec(
        id,
        &[
            ("WARP_API_KEY", "docker-task-key-0001"),
            ("WARP_WORKLOAD_TOKEN", "docker-workload-0001"),
            ("SECRET_X", SECRET),
            ("OZ_AGENT_SHOW", "SECRET_X"),
        ],
    );
    spec.secrets = vec![
        SECRET.into(),
        "docker-task-key-0001".into(),
        "docker-workload-0001".into(),
    ];
    spec.telemetry = Some(TelemetryCollection {
        endpoint: warp.url(),
        logging_enabled: true,
        ..TelemetryCollection::default()
    });
    spec
}

fn event_names(warp: &FakeWarp) -> Vec<String> {
    warp.events()
        .iter()
        .map(|p| p.json()["event_name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn phases_and_container_output_are_reported() {
    let f = Fixture::new();
    let warp = FakeWarp::start();
    let b = reporting_backend(&f, &warp, PullPolicy::IfNotPresent);
    let id = unique("rep");
    let spec = reporting_spec(&f, &warp, &id);
    assert_eq!(b.execute(&spec, &token()), Ok(Completion::Finished));

    // The image was present: no pull ran, so no pull event; sidecar prep, then the start.
    warp.wait_for(PROMPTLY, |p| p.iter().filter(|p| p.is_event()).count() >= 2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        event_names(&warp),
        ["setup_worker_sidecar_prep", "setup_worker_container_start"]
    );
    for e in warp.events() {
        assert_eq!(e.json()["payload"]["is_error"], false);
        assert_eq!(e.header("x-warp-cloud-agent-id"), Some(id.as_str()));
    }

    // Logs were flushed before execute returned.
    let records = warp.records();
    let shown = records
        .iter()
        .find(|r| r.body_str().starts_with("SHOW SECRET_X="))
        .expect("the agent's SHOW line");
    assert_eq!(shown.body_str(), "SHOW SECRET_X=[REDACTED]");
    assert_eq!(shown.attr_str("log.source"), Some("container.stdout"));
    assert_eq!(shown.attr_str("log.iostream"), Some("stdout"));
    let name = shown.attr_str("container.name").unwrap();
    assert!(name.contains(&id), "{name}");
    let err = records
        .iter()
        .find(|r| r.body_str() == "agent stderr line")
        .expect("the agent's stderr line");
    assert_eq!(err.attr_str("log.source"), Some("container.stderr"));
    assert_eq!(err.attr_str("log.iostream"), Some("stderr"));
    for p in warp.log_posts() {
        assert_eq!(p.logs().resource("worker.backend"), Some("docker"));
        assert!(!p.body.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }
    f.assert_clean();
}

#[test]
fn a_failed_sidecar_prep_is_reported_as_an_error_phase() {
    let f = Fixture::new();
    let warp = FakeWarp::start();
    let b = reporting_backend(&f, &warp, PullPolicy::IfNotPresent);
    let id = unique("repfail");
    let mut spec = reporting_spec(&f, &warp, &id);
    // A sidecar image that cannot be had: sidecar preparation fails, nothing is started.
    spec.sidecars[0].image = "oz-test/never-built:none".into();
    let e = b.execute(&spec, &token()).unwrap_err();
    assert_eq!(
        e.reason,
        oz_agent_worker::backend::FailureReason::SidecarPrep
    );
    warp.wait_for(PROMPTLY, |p| p.iter().any(|p| p.is_event()));
    std::thread::sleep(Duration::from_millis(100));
    let events = warp.events();
    assert_eq!(event_names(&warp), ["setup_worker_sidecar_prep"]);
    assert_eq!(events[0].json()["payload"]["is_error"], true);
    f.assert_clean();
}

#[test]
fn a_pull_is_reported_only_when_one_ran() {
    use crate::support::docker_images::{FakeRegistry, docker_arch, sidecar_layer, task_layer};
    let f = Fixture::new();
    let warp = FakeWarp::start();
    let registry = FakeRegistry::serve(
        docker_arch(),
        None,
        vec![
            ("oz-test/task", "1", task_layer()),
            ("oz-test/agent", "1", sidecar_layer()),
        ],
    );
    let id = unique("reppull");
    let mut spec = reporting_spec(&f, &warp, &id);
    spec.image = f.res.image(&registry.reference("oz-test/task", "1"));
    spec.sidecars[0].image = f.res.image(&registry.reference("oz-test/agent", "1"));
    let b = reporting_backend(&f, &warp, PullPolicy::Always);
    let result = b.execute(&spec, &token());
    f.register_volume(&spec.sidecars[0].image);
    assert_eq!(result, Ok(Completion::Finished));
    warp.wait_for(PROMPTLY, |p| p.iter().filter(|p| p.is_event()).count() >= 3);
    assert_eq!(
        event_names(&warp),
        [
            "setup_worker_image_pull",
            "setup_worker_sidecar_prep",
            "setup_worker_container_start"
        ]
    );

    // The same images, now local, under IfNotPresent: no pull, no pull event.
    let b = reporting_backend(&f, &warp, PullPolicy::IfNotPresent);
    let id2 = unique("reppull2");
    let mut again = reporting_spec(&f, &warp, &id2);
    again.image = spec.image.clone();
    again.sidecars = spec.sidecars.clone();
    assert_eq!(b.execute(&again, &token()), Ok(Completion::Finished));
    warp.wait_for(PROMPTLY, |p| p.iter().filter(|p| p.is_event()).count() >= 5);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        event_names(&warp)[3..],
        ["setup_worker_sidecar_prep", "setup_worker_container_start"]
    );
    f.assert_clean();
}
