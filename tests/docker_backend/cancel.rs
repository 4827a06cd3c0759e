//! Cancellation (token, `Backend::cancel`) and shutdown with running containers.

use std::sync::Arc;
use std::time::Instant;

use oz_agent_worker::backend::{Backend, CancelSource, Failure, TaskRef};

use super::*;

#[test]
fn a_cancelled_task_gets_sigterm_then_its_container_is_removed() {
    let f = Fixture::new();
    let b = Arc::new(f.backend());
    let id = unique("cancel");
    let cancel = token();
    let rx = execute_async(&b, f.spec(&id, &[("OZ_AGENT_SLEEP", "1")]), &cancel);
    wait_for_line(&id, "sleeping");
    let c = f.running_container();
    let started = Instant::now();
    cancel.cancel(CancelSource::User);
    assert_eq!(
        rx.recv_timeout(PROMPTLY).unwrap(),
        Err(Failure::cancelled())
    );
    eprintln!(
        "cancel to return (agent handles SIGTERM): {:?}",
        started.elapsed()
    );
    // SIGTERM reached the agent first, and the container was gone when execute returned.
    assert!(agent_lines(&id).contains(&"got TERM".to_string()));
    assert!(f.client.inspect_container(&c.id).unwrap().is_none());
    f.assert_clean();
}

#[test]
fn an_agent_ignoring_sigterm_is_killed_after_the_grace() {
    let f = Fixture::new();
    let b = Arc::new(f.backend());
    let id = unique("stubborn");
    let cancel = token();
    let env = [("OZ_AGENT_SLEEP", "1"), ("OZ_AGENT_TERM", "ignore")];
    let rx = execute_async(&b, f.spec(&id, &env), &cancel);
    wait_for_line(&id, "sleeping");
    let c = f.running_container();
    let started = Instant::now();
    cancel.cancel(CancelSource::User);
    assert_eq!(
        rx.recv_timeout(PROMPTLY).unwrap(),
        Err(Failure::cancelled())
    );
    let took = started.elapsed();
    eprintln!("cancel to return (agent ignores SIGTERM, grace {GRACE:?}): {took:?}");
    // The grace was given (SIGKILL only after it), and the container is gone.
    assert!(took >= GRACE, "{took:?}");
    assert!(!agent_lines(&id).contains(&"got TERM".to_string()));
    assert!(f.client.inspect_container(&c.id).unwrap().is_none());
    f.assert_clean();
}

#[test]
fn backend_cancel_returns_once_the_executions_container_is_gone() {
    let f = Fixture::new();
    let b = Arc::new(f.backend());
    let id = unique("closing");
    let cancel = token();
    let spec = f.spec(&id, &[("OZ_AGENT_SLEEP", "1"), ("OZ_AGENT_TERM", "ignore")]);
    let key = spec.task_ref();
    let rx = execute_async(&b, spec, &cancel);
    wait_for_line(&id, "sleeping");
    // Another execution of the same run is not touched.
    let other = TaskRef {
        task_id: id.clone(),
        execution_id: Some("another".into()),
    };
    assert_eq!(b.cancel(&other), Ok(()));
    assert!(!cancel.is_cancelled());
    assert_eq!(b.cancel(&key), Ok(()));
    assert!(cancel.is_cancelled());
    f.assert_clean();
    assert_eq!(
        rx.recv_timeout(PROMPTLY).unwrap(),
        Err(Failure::cancelled())
    );
    // Idempotent.
    assert_eq!(b.cancel(&key), Ok(()));
}

#[test]
fn shutdown_returns_only_after_the_running_tasks_containers_are_removed() {
    let f = Fixture::new();
    let b = Arc::new(f.backend());
    let mut running = Vec::new();
    for i in 0..3 {
        let id = unique(&format!("shut{i}"));
        let cancel = token();
        let env = [("OZ_AGENT_SLEEP", "1"), ("OZ_AGENT_TERM", "ignore")];
        let rx = execute_async(&b, f.spec(&id, &env), &cancel);
        running.push((id, cancel, rx));
    }
    for (id, _, _) in &running {
        wait_for_line(id, "sleeping");
    }
    assert_eq!(f.containers().len(), 3);
    // As the supervisor does: fire every token with the shutdown source, then (here without
    // waiting for the tasks at all) shut the backend down.
    for (_, cancel, _) in &running {
        cancel.cancel(CancelSource::Shutdown);
    }
    b.shutdown();
    f.assert_clean();
    for (_, _, rx) in running {
        assert_eq!(
            rx.recv_timeout(PROMPTLY).unwrap(),
            Err(Failure::cancelled())
        );
    }
}

#[test]
fn a_task_cancelled_before_it_starts_creates_nothing() {
    let f = Fixture::new();
    let b = f.backend();
    let cancel = token();
    cancel.cancel(CancelSource::User);
    let spec = f.spec(&unique("early"), &[]);
    assert_eq!(b.execute(&spec, &cancel), Err(Failure::cancelled()));
    f.assert_clean();
}

/// How long a cancelled stuck pull may take to return (the registry never answers).
const STUCK_PULL_BOUND: Duration = Duration::from_secs(20);

#[test]
fn cancelling_a_task_stuck_in_an_image_pull_returns_promptly() {
    use crate::support::docker_images::{FakeRegistry, docker_arch, task_layer};
    use oz_agent_worker::settings::PullPolicy;
    let f = Fixture::new();
    let registry = FakeRegistry::serve(
        docker_arch(),
        None,
        vec![("oz-test/stuck", "1", task_layer())],
    );
    registry.stall_blobs();
    let b = Arc::new(f.backend_with(f.settings(PullPolicy::Always), true, f.env()));
    let mut spec = f.spec(&unique("stuckpull"), &[]);
    spec.image = f.res.image(&registry.image_ref());
    let cancel = token();
    let rx = execute_async(&b, spec, &cancel);
    let end = Instant::now() + PROMPTLY;
    while !registry
        .requests()
        .iter()
        .any(|r| r.path.contains("/blobs/"))
    {
        assert!(Instant::now() < end, "the pull never reached the blobs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    cancel.cancel(CancelSource::User);
    // The registry stalls until it is dropped (after this wait), so only the cancellation can
    // end the pull: a bound far below PROMPTLY, yet loose enough for a loaded machine.
    assert_eq!(
        rx.recv_timeout(STUCK_PULL_BOUND)
            .expect("the cancelled pull did not return while the registry still stalled"),
        Err(Failure::cancelled())
    );
    eprintln!(
        "cancel during a stuck pull returned after {:?}",
        started.elapsed()
    );
    drop(registry);
    f.assert_clean();
}
