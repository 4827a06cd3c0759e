//! Kubernetes backend benchmark: the real worker binary against the Kubernetes API simulator
//! and the fake Oz server (both from tests/support), beside the Go worker's design as the
//! baseline (two watch connections per task, reference §8). Run with
//! `cargo bench --bench kubernetes`. Nothing here passes or fails on timing.
//!
//! With BENCH_K8S_TASKS (default 200) tasks assigned at once, each Job's pod running for
//! BENCH_K8S_RUN_SECS (default 8) seconds:
//! 1. open watch connections at the simulator (max over the run), vs 2 per task for Go;
//! 2. API requests per task from the first assignment until the last completion (startup's
//!    version, preflight and first list/watch excluded);
//! 3. worker RSS with every Job running, vs the idle worker before the first assignment;
//! 4. assignment → Job POST latency (fake Oz frame written → simulator saw the POST), p50/p99.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    // Figures: counts far below 2^52, percentile indexes in [0, len).
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    dead_code,
    unused_imports
)]

#[path = "../tests/support/kube_sim/mod.rs"]
mod kube_sim;
#[path = "../tests/support/oz_server/mod.rs"]
mod oz_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use kube_sim::{KubeSim, Step};
use oz_server::OzServer;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let tasks = env_num("BENCH_K8S_TASKS", 200) as usize;
    let run = Duration::from_secs(env_num("BENCH_K8S_RUN_SECS", 8));
    let bin = std::env::var("OZ_BENCH_WORKER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_oz-agent-worker").to_owned());
    let dir = std::env::temp_dir().join(format!("oz-bench-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "Kubernetes backend benchmark: worker {bin}, {tasks} concurrent tasks, pods run {run:?}"
    );

    let sim = KubeSim::start();
    sim.script(
        "sim/bench",
        vec![
            Step::Pending(Duration::from_millis(200)),
            Step::Running(run),
            Step::exit(0),
        ],
    );
    let kc = sim.kubeconfig(&dir, None);
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!("worker_id: bench-k8s\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n", kc.display()),
    )
    .unwrap();
    let oz = OzServer::start();
    let mut child = Command::new(&bin)
        .args([
            "--config-file",
            cfg.to_str().unwrap(),
            "--web-socket-url",
            &oz.url(),
            "--api-key",
            "bench-key",
        ])
        .args(["--max-concurrent-tasks", "0", "--log-level", "warn"])
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    oz.wait_for_connections(1, Duration::from_secs(60));
    // Let the shared watches open.
    sim.wait_until(Duration::from_secs(30), |s| s.open_watches >= 2);
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = rss_kib(child.id());
    let before = sim.state().seen.len();

    let mut sent = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let id = format!("b{i:04}");
        let a = json!({"type": "task_assignment", "data": {
            "task_id": id, "execution_id": format!("{id}-x"), "docker_image": "sim/bench",
            "task": {"id": id, "title": "bench"}, "env_vars": {}}});
        oz.push_json(&a).unwrap();
        sent.push((id, Instant::now()));
    }
    sim.wait_until(Duration::from_secs(120), |s| {
        s.pods()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            >= tasks
    });
    let busy_rss = rss_kib(child.id());
    oz.wait_for("every task_completed", Duration::from_secs(300), |seen| {
        let n = seen
            .frames
            .iter()
            .filter(|f| f.kind() == "task_completed")
            .count();
        (n >= tasks).then_some(())
    });
    sim.wait_until(Duration::from_secs(60), |s| s.jobs().is_empty());

    let st = sim.state();
    let steady = &st.seen[before..];
    let requests = steady.len();
    let mut by_kind = std::collections::BTreeMap::new();
    for s in steady {
        let kind = if s.watch {
            "WATCH".to_owned()
        } else {
            s.method.clone()
        };
        *by_kind.entry(kind).or_insert(0usize) += 1;
    }
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| {
            steady
                .iter()
                .find(|s| {
                    s.method == "POST" && s.body["metadata"]["labels"]["oz-task-id"] == id.as_str()
                })
                .map(|s| s.at.saturating_duration_since(*at))
        })
        .collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!();
    println!(
        "open watch connections (max during the run): {}   baseline Go design: {} (2 per task)",
        st.max_open_watches,
        2 * tasks
    );
    println!(
        "API requests per task: {:.2}   ({requests} requests for {tasks} tasks: {by_kind:?})",
        requests as f64 / tasks as f64
    );
    println!(
        "worker RSS: {} KiB with {tasks} running Jobs   baseline idle worker: {idle_rss} KiB   ({:.1} KiB per task)",
        busy_rss,
        (busy_rss.saturating_sub(idle_rss)) as f64 / tasks as f64
    );
    println!(
        "assignment -> Job POST latency: p50 {:?}  p99 {:?}  max {:?}  ({} samples)",
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or_default(),
        lat.len()
    );
    drop(st);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
