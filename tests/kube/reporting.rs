//! Setup events and task-log export for the Kubernetes backend, end to end: the real binary,
//! the fake Oz server, the Kubernetes API simulator and a fake of Warp's REST endpoints (which
//! also collects OTLP logs).

use serde_json::json;

use crate::support::harness::{TestDir, Worker, WorkerCommand};
use crate::support::kube_sim::{KubeSim, Step, ms};
use crate::support::oz_server::OzServer;
use crate::support::warp_api::{Behaviour, FakeWarp, Post};
use crate::worker::{API_KEY, T, assignment, expect};

const TASK_KEY: &str = "kube-task-key-canary-4e1d";
const WORKLOAD: &str = "kube-workload-canary-80b2";

fn start(dir: &TestDir, oz: &OzServer, sim: &KubeSim, warp: &FakeWarp) -> Worker {
    let kc = sim.kubeconfig(&dir.path, None);
    let config = dir.write(
        "config.yaml",
        &format!(
            "worker_id: kube-rep\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n",
            kc.display()
        ),
    );
    let mut w = WorkerCommand::new(dir)
        .args(["--config-file", &config.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .args(["--api-key", API_KEY])
        .args(["--server-root-url", &warp.url()])
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "2s")
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    w
}

fn assign(oz: &OzServer, id: &str, image: &str, collector: Option<&str>) {
    let mut a = assignment(
        id,
        Some(&format!("{id}-exec")),
        json!({"WARP_API_KEY": TASK_KEY, "WARP_WORKLOAD_TOKEN": WORKLOAD}),
    );
    a["data"]["docker_image"] = json!(image);
    if let Some(endpoint) = collector {
        a["data"]["telemetry_collection"] = json!({
            "endpoint": endpoint,
            "tracing_enabled": false,
            "logging_enabled": true,
        });
    }
    oz.push_json(&a).unwrap();
}

/// Unschedulable, then scheduled, then running: every span lasts more than the API's whole
/// second, so none is dropped as empty.
fn slow_start(sim: &KubeSim, image: &str, code: i32) {
    sim.script(
        image,
        vec![
            Step::Unschedulable(ms(1200)),
            Step::Pending(ms(1200)),
            Step::Running(ms(100)),
            Step::exit(code),
        ],
    );
}

fn names(events: &[Post]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.json()["event_name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_kubernetes_task_posts_its_job_create_and_pod_phases_with_the_task_key() {
    let dir = TestDir::new("kube-rep-events");
    let sim = KubeSim::start();
    slow_start(&sim, "sim/slow", 0);
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut w = start(&dir, &oz, &sim, &warp);
    assign(&oz, "t-kev", "sim/slow", None);
    expect(&oz, "task_claimed", "t-kev");
    expect(&oz, "task_completed", "t-kev");
    let posts = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        warp.wait_for(T, |p| p.iter().filter(|p| p.is_event()).count() >= 3)
    }))
    .unwrap_or_else(|_| panic!("the worker's view:\n{}", w.dump()));
    let events: Vec<Post> = posts.into_iter().filter(Post::is_event).collect();
    // The Job POST first, then the pod phases in the order the pod proved them; the task has
    // no sidecar and the simulated pod no `setup` container, so those phases are not reported.
    assert_eq!(
        names(&events),
        [
            "setup_worker_job_create",
            "setup_worker_pod_schedule",
            "setup_worker_container_start"
        ],
        "{}",
        w.dump()
    );
    let mut previous_finish = String::new();
    for e in &events {
        assert_eq!(e.path, "/api/v1/agent/runs/t-kev/client-events");
        assert_eq!(
            e.header("authorization"),
            Some(format!("Bearer {TASK_KEY}").as_str())
        );
        assert_eq!(e.header("x-warp-cloud-agent-id"), Some("t-kev"));
        assert_eq!(e.header("x-warp-ambient-workload-token"), Some(WORKLOAD));
        let body = e.json();
        let p = &body["payload"];
        assert_eq!(p["is_error"], false, "{body}");
        let (start, finish) = (
            p["start_ts"].as_str().unwrap(),
            p["finish_ts"].as_str().unwrap(),
        );
        // RFC 3339 in UTC with a fixed width compares as text.
        assert!(start <= finish, "{body}");
        assert!(previous_finish.as_str() <= finish, "{body}");
        previous_finish = finish.to_owned();
        assert_eq!(body["timestamp"], p["finish_ts"]);
    }
    // The pod spans come from whole-second pod timestamps and each lasts over a second.
    for e in &events[1..] {
        let ms = e.json()["payload"]["latency_ms"].as_f64().unwrap();
        assert!(ms >= 1000.0, "{}", e.json());
    }
    assert!(
        !w.stderr().contains(TASK_KEY),
        "the task key reached the log"
    );
    w.signal(libc::SIGTERM);
    w.wait(T);
}

#[test]
fn a_dead_events_endpoint_does_not_hold_back_a_kubernetes_outcome() {
    let dir = TestDir::new("kube-rep-dead");
    let sim = KubeSim::start();
    let oz = OzServer::start();
    let warp = FakeWarp::start_with(Behaviour {
        hold_events: true,
        ..Behaviour::default()
    });
    let mut w = start(&dir, &oz, &sim, &warp);
    assign(&oz, "t-kdead", "sim/default", None);
    expect(&oz, "task_claimed", "t-kdead");
    // The Job create event reaches the endpoint, which never answers it...
    warp.wait_for(T, |p| p.iter().any(Post::is_event));
    // ...and the task still reports its outcome while that request is open.
    expect(&oz, "task_completed", "t-kdead");
    assert_eq!(
        warp.held(),
        1,
        "the terminal message waited for the events endpoint\n{}",
        w.dump()
    );
    w.wait_for_log("Failed to report setup event setup_worker_job_create", T);
    w.signal(libc::SIGTERM);
    w.wait(T);
}

#[test]
fn a_failed_pods_logs_are_exported_as_pod_container_records() {
    let dir = TestDir::new("kube-rep-logs");
    let sim = KubeSim::start();
    sim.script("sim/fail", vec![Step::Running(ms(100)), Step::exit(2)]);
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut w = start(&dir, &oz, &sim, &warp);
    assign(&oz, "t-klog", "sim/fail", Some(&warp.url()));
    expect(&oz, "task_claimed", "t-klog");
    let f = expect(&oz, "task_failed", "t-klog");
    assert_eq!(f["failure_reason"], "container_exit", "{f}");
    // The final flush ran before the outcome: the records are already here.
    let records = warp.records();
    let task: Vec<_> = records
        .iter()
        .filter(|r| r.attr_str("log.source") == Some("pod.task"))
        .collect();
    assert_eq!(task.len(), 1, "{records:?}");
    assert_eq!(task[0].body_str(), "simulated log of task");
    assert_eq!(task[0].attr_str("k8s.container.name"), Some("task"));
    let pod = task[0].attr_str("k8s.pod.name").unwrap();
    assert!(pod.starts_with("oz-task-t-klog-"), "{pod}");
    // The Job create event is mirrored into the logs too.
    assert!(
        records
            .iter()
            .any(|r| r.attr_str("event.name") == Some("setup_worker_job_create")),
        "{records:?}"
    );
    let req = warp.log_posts()[0].logs();
    assert_eq!(req.resource("worker.backend"), Some("kubernetes"));
    assert_eq!(req.resource("run_id"), Some("t-klog"));
    w.signal(libc::SIGTERM);
    w.wait(T);
}
