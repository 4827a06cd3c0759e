//! Crashes with the Docker backend: `kill -9` of the real binary while task containers run,
//! then a restart on the same state directory. Running containers are adopted, containers
//! that ended while no worker ran are reported at startup, each task exactly once.

use serde_json::json;

use super::*;
use crate::support::docker_images::{
    Resources, docker, import_sidecar_image, import_task_image, unique,
};
use crate::support::harness::{TestDir, WorkerCommand};
use crate::support::oz_server::OzServer;
use oz_agent_worker::backend::docker::spec as names;
use oz_agent_worker::docker::{Client, ImageRef};

fn docker_worker(dir: &TestDir, oz: &OzServer, worker_id: &str, state: &Path) -> Worker {
    let config = dir.write(
        "config.yaml",
        &format!(
            "worker_id: {worker_id}\nbackend:\n  docker:\n    image_pull_policy: IfNotPresent\n"
        ),
    );
    let mut w = WorkerCommand::new(dir)
        .args(["--config-file", &config.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .args(["--api-key", API_KEY])
        .args(["--state-dir", &state.display().to_string()])
        .env("OZ_WORKER_BACKOFF_INITIAL", "100ms")
        .env("OZ_WORKER_BACKOFF_MAX", "500ms")
        .env("OZ_WORKER_KILL_GRACE", "2s")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    w
}

fn container_of(client: &Client, worker_id: &str, task: &str) -> Option<(String, String)> {
    let w = format!("{}={worker_id}", names::LABEL_WORKER);
    let t = format!("{}={task}", names::LABEL_TASK);
    client
        .list_containers(true, &[&w, &t])
        .unwrap()
        .into_iter()
        .next()
        .map(|c| (c.id, c.state))
}

fn terminal_count(oz: &OzServer, task: &str) -> usize {
    frames_for(oz, task)
        .iter()
        .filter(|(k, _)| k == "task_completed" || k == "task_failed")
        .count()
}

#[test]
fn containers_of_a_crashed_worker_are_adopted_or_reported_once() {
    let dir = TestDir::new("crash-docker");
    let state = dir.join("state-shared");
    let client = docker();
    let res = Resources::new(&client);
    let task_image = import_task_image(&client, &res);
    let sidecar = import_sidecar_image(&client, &res);
    let inspect = client.inspect_image(&sidecar).unwrap().unwrap();
    let familiar = ImageRef::parse(&sidecar).unwrap().familiar_name();
    res.volume(&names::volume_name(&familiar, inspect.digest()));
    let worker_id = unique("crash-docker");
    let oz = OzServer::start();
    let mut w = docker_worker(&dir, &oz, &worker_id, &state);
    for task in ["t-follow", "t-ended"] {
        let mut a = assignment(task, Some("e1"), json!({"OZ_AGENT_SLEEP": "1"}));
        a["data"]["docker_image"] = json!(task_image);
        a["data"]["sidecar_image"] = json!(sidecar);
        oz.push_json(&a).unwrap();
        w.wait_for_log(&format!("[{task}] sleeping"), T);
    }
    w.signal(libc::SIGKILL);
    w.wait(T);

    // While no worker runs, one container ends (SIGTERM: the agent exits 143).
    let (ended_id, _) = container_of(&client, &worker_id, "t-ended").expect("t-ended container");
    client
        .stop_container(&ended_id, Duration::from_secs(5))
        .unwrap();
    let (_, follow_state) =
        container_of(&client, &worker_id, "t-follow").expect("t-follow container");
    assert_eq!(follow_state, "running");
    assert_eq!(
        terminal_count(&oz, "t-follow") + terminal_count(&oz, "t-ended"),
        0
    );

    let dir2 = TestDir::new("crash-docker-2");
    let mut w2 = docker_worker(&dir2, &oz, &worker_id, &state);
    // The one that ended is reported at startup with its real exit status.
    let f = expect(&oz, "task_failed", "t-ended");
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    assert_eq!(f["exit_code"], 143, "{f}");
    assert_eq!(f["execution_id"], "e1");
    // The running one is adopted, not removed, and cancellation reaches it.
    w2.wait_for_log("adopted container", T);
    assert!(container_of(&client, &worker_id, "t-follow").is_some());
    assert_eq!(terminal_count(&oz, "t-follow"), 0);
    oz.push_json(&cancellation("t-follow", Some("e1"))).unwrap();
    assert_eq!(
        expect(&oz, "task_completed", "t-follow")["task_state"],
        "CANCELLED"
    );
    expect(&oz, "execution_closed", "t-follow");
    w2.signal(libc::SIGTERM);
    assert_eq!(w2.wait(T).code(), Some(0), "{}", w2.dump());
    assert_eq!(terminal_count(&oz, "t-follow"), 1);
    assert_eq!(terminal_count(&oz, "t-ended"), 1);
    assert!(container_of(&client, &worker_id, "t-follow").is_none());
    assert!(container_of(&client, &worker_id, "t-ended").is_none());
}
