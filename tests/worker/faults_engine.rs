//! The Docker engine goes away while tasks run, and comes back. The engine itself is shared,
//! so the worker talks to it through a unix-socket proxy the test cuts and restores.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;

use super::*;
use crate::support::docker_images::{
    Resources, docker, import_sidecar_image, import_task_image, unique,
};
use crate::support::harness::{TestDir, WorkerCommand};
use crate::support::oz_server::OzServer;
use crate::support::unix_proxy::UnixProxy;
use oz_agent_worker::backend::docker::spec as names;
use oz_agent_worker::docker::{Client, ImageRef};

fn readyz(addr: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    s.set_read_timeout(Some(T)).unwrap();
    let _ = write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Waits until `/readyz` answers `status` (the probe runs every 5 s).
fn wait_ready(addr: &str, status: u16) {
    let deadline = std::time::Instant::now() + T;
    while readyz(addr) != status {
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never answered {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn containers_of(client: &Client, worker_id: &str) -> usize {
    let label = format!("{}={worker_id}", names::LABEL_WORKER);
    client.list_containers(true, &[&label]).unwrap().len()
}

#[test]
fn the_engine_going_away_fails_running_tasks_once_and_readiness_follows_it() {
    let dir = TestDir::new("fault-engine");
    let client = docker();
    let res = Resources::new(&client);
    let task_image = import_task_image(&client, &res);
    let sidecar = import_sidecar_image(&client, &res);
    let inspect = client.inspect_image(&sidecar).unwrap().unwrap();
    let familiar = ImageRef::parse(&sidecar).unwrap().familiar_name();
    res.volume(&names::volume_name(&familiar, inspect.digest()));
    let mut proxy = UnixProxy::start(
        &dir.join("engine.sock"),
        std::path::Path::new("/var/run/docker.sock"),
    );
    let worker_id = unique("fault-engine");
    let oz = OzServer::start();
    let config = dir.write(
        "config.yaml",
        &format!(
            "worker_id: {worker_id}\nbackend:\n  docker:\n    image_pull_policy: IfNotPresent\n"
        ),
    );
    let mut w = WorkerCommand::new(&dir)
        .args(["--config-file", &config.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .args(["--api-key", API_KEY])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("DOCKER_HOST", format!("unix://{}", proxy.path().display()))
        .env("OZ_WORKER_BACKOFF_INITIAL", "100ms")
        .env("OZ_WORKER_KILL_GRACE", "2s")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    w.wait_for_log("Serving /metrics", T);
    let addr = w
        .stderr()
        .lines()
        .find(|l| l.contains("Serving /metrics"))
        .unwrap()
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    wait_ready(&addr, 200);
    let assign = |id: &str, env: serde_json::Value| {
        let mut a = assignment(id, Some("e1"), env);
        a["data"]["docker_image"] = json!(task_image);
        a["data"]["sidecar_image"] = json!(sidecar);
        oz.push_json(&a).unwrap();
    };
    assign("t-during", json!({"OZ_AGENT_SLEEP": "1"}));
    w.wait_for_log("[t-during] sleeping", T);

    proxy.cut();
    // The running task loses its engine: one terminal message, and the worker lives.
    let f = expect(&oz, "task_failed", "t-during");
    assert_eq!(f["failure_reason"], "container_wait", "{f}");
    wait_ready(&addr, 503);
    // A task assigned meanwhile fails cleanly too.
    assign("t-meanwhile", json!({}));
    expect(&oz, "task_failed", "t-meanwhile");

    proxy.restore();
    wait_ready(&addr, 200);
    assign("t-after", json!({}));
    expect(&oz, "task_completed", "t-after");
    for t in ["t-during", "t-meanwhile", "t-after"] {
        let n = frames_for(&oz, t)
            .iter()
            .filter(|(k, _)| k == "task_completed" || k == "task_failed")
            .count();
        assert_eq!(n, 1, "{t}: {n} terminal messages");
    }
    // The container the cut left behind is removed by the retry at shutdown.
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(T).code(), Some(0), "{}", w.dump());
    assert_eq!(containers_of(&client, &worker_id), 0, "{}", w.dump());
}
