//! The Docker backend through the real binary: a task assigned by the fake Oz server runs in
//! a container built from images the test imports itself, end to end.

use serde_json::json;

use super::*;
use crate::support::docker_images::{
    Resources, docker, import_sidecar_image, import_task_image, unique,
};
use crate::support::harness::{TestDir, WorkerCommand};
use crate::support::oz_server::OzServer;
use oz_agent_worker::backend::docker::spec as names;
use oz_agent_worker::docker::{Client, ImageRef};

struct Images {
    task: String,
    sidecar: String,
}

/// Imports the task and sidecar images and registers the sidecar volume the worker will
/// create, so the test's resources remove all three.
fn images(client: &Client, res: &Resources) -> Images {
    let task = import_task_image(client, res);
    let sidecar = import_sidecar_image(client, res);
    let inspect = client.inspect_image(&sidecar).unwrap().unwrap();
    let familiar = ImageRef::parse(&sidecar).unwrap().familiar_name();
    res.volume(&names::volume_name(&familiar, inspect.digest()));
    Images { task, sidecar }
}

fn docker_config(dir: &TestDir, worker_id: &str) -> std::path::PathBuf {
    dir.write(
        "config.yaml",
        &format!(
            "worker_id: {worker_id}\nbackend:\n  docker:\n    image_pull_policy: IfNotPresent\n    environment:\n      - name: OPERATOR_SETTING\n        value: from-config\n"
        ),
    )
}

fn containers_of(client: &Client, worker_id: &str) -> usize {
    let label = format!("{}={worker_id}", names::LABEL_WORKER);
    client.list_containers(true, &[&label]).unwrap().len()
}

#[test]
fn tasks_run_in_containers_end_to_end() {
    let dir = TestDir::new("e2e-docker");
    let client = docker();
    let res = Resources::new(&client);
    let img = images(&client, &res);
    let worker_id = unique("e2e-docker");
    let oz = OzServer::start();
    let config = docker_config(&dir, &worker_id);
    let mut w = worker(&dir, &oz, &config).spawn();
    w.wait_for_log("Connected to Oz", T);
    let assign = |id: &str, exec: &str, env: serde_json::Value| {
        let mut a = assignment(id, Some(exec), env);
        a["data"]["docker_image"] = json!(img.task);
        a["data"]["sidecar_image"] = json!(img.sidecar);
        oz.push_json(&a).unwrap();
    };

    // Success: the agent runs from the sidecar volume with the task's env and args.
    assign(
        "t-dock",
        "e1",
        json!({"OZ_AGENT_SHOW": "OPERATOR_SETTING", "TOKEN": "docker-canary-5e"}),
    );
    expect(&oz, "task_claimed", "t-dock");
    assert_eq!(
        expect(&oz, "task_completed", "t-dock")["message"],
        "Task completed successfully"
    );
    let log = w.stderr();
    assert!(log.contains("[t-dock] ARGV /agent/entrypoint.sh"), "{log}");
    assert!(log.contains("[t-dock] ARGV --task-id"), "{log}");
    // Operator env reaches the container; the variable's name came in env_vars, and every
    // env_vars value is a secret as far as the log is concerned.
    assert!(
        log.contains("[t-dock] SHOW [REDACTED]=from-config"),
        "{log}"
    );

    // A non-zero exit is container_exit with the code.
    assign("t-exit", "e1", json!({"OZ_AGENT_EXIT": "3"}));
    let f = expect(&oz, "task_failed", "t-exit");
    assert_eq!(f["failure_reason"], "container_exit");
    assert_eq!(f["exit_code"], 3);

    // Cancellation stops and removes the container, then closes the execution.
    assign("t-stop", "e1", json!({"OZ_AGENT_SLEEP": "1"}));
    expect(&oz, "task_claimed", "t-stop");
    w.wait_for_log("[t-stop] sleeping", T);
    oz.push_json(&cancellation("t-stop", Some("e1"))).unwrap();
    assert_eq!(
        expect(&oz, "task_completed", "t-stop")["task_state"],
        "CANCELLED"
    );
    expect(&oz, "execution_closed", "t-stop");

    // A running task at shutdown is reported and its container removed before exit.
    assign("t-shut", "e1", json!({"OZ_AGENT_SLEEP": "1"}));
    w.wait_for_log("[t-shut] sleeping", T);
    w.signal(15);
    assert_eq!(
        expect(&oz, "task_failed", "t-shut")["failure_reason"],
        "graceful_shutdown"
    );
    assert_eq!(w.wait(T).code(), Some(0), "{}", w.dump());
    assert_eq!(
        containers_of(&client, &worker_id),
        0,
        "containers left behind"
    );
    assert_no_secrets(&w, &["docker-canary-5e"]);
}

#[test]
fn check_probes_the_docker_engine_without_touching_it() {
    let dir = TestDir::new("e2e-docker-check");
    let client = docker();
    let worker_id = unique("e2e-check");
    let config = docker_config(&dir, &worker_id);
    // --offline: this test is about the Docker engine, not the route to Oz.
    let out = WorkerCommand::new(&dir)
        .args(["check", "--offline", "--api-key", API_KEY, "--config-file"])
        .arg(config.display().to_string())
        .run();
    out.expect_code(0);
    assert!(
        out.stdout.contains("ok   Docker engine at "),
        "{}",
        out.dump()
    );
    assert_eq!(containers_of(&client, &worker_id), 0);
}
