//! Docker backend figures, printed with their method (never pass/fail):
//!
//! 1. End-to-end time of a no-op task through `DockerBackend::execute` (sidecar volume already
//!    filled, pull policy `IfNotPresent`, cleanup on) against `docker run --rm` of the same
//!    image, mount and command through the docker CLI. Runs alternate between the two so
//!    machine load affects both alike.
//! 2. The resident memory of this process while 50 tasks run at once through the backend
//!    (each container sleeping), minus its baseline before they started.
//!
//! Run: `cargo bench --bench docker` (needs the Docker engine, gcc and the docker CLI).
//! `OZ_BENCH_RUNS` sets the number of timed runs per side (default 20).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/docker_images.rs"]
mod docker_images;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oz_agent_worker::backend::docker::{DockerBackend, process_env, spec as names};
use oz_agent_worker::backend::{Backend, BackendContext, CancelSource, CancelToken, Completion};
use oz_agent_worker::docker::ImageRef;
use oz_agent_worker::protocol::SidecarMount;
use oz_agent_worker::settings::{DockerSettings, PullPolicy, Timing};
use oz_agent_worker::task::TaskSpec;

use docker_images::{Resources, docker, import_sidecar_image, import_task_image, unique};

const CONCURRENT: usize = 50;

fn main() {
    let runs: usize = std::env::var("OZ_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let client = docker();
    let res = Resources::new(&client);
    let task_image = import_task_image(&client, &res);
    let sidecar_image = import_sidecar_image(&client, &res);
    let inspect = client.inspect_image(&sidecar_image).unwrap().unwrap();
    let familiar = ImageRef::parse(&sidecar_image).unwrap().familiar_name();
    let volume = res.volume(&names::volume_name(&familiar, inspect.digest()));
    let worker_id = unique("bench-worker");
    let backend = Arc::new(
        DockerBackend::with_env(
            DockerSettings {
                volumes: vec![],
                env: vec![],
                image_pull_policy: PullPolicy::IfNotPresent,
                sidecar_image: None,
            },
            BackendContext {
                worker_id: worker_id.clone(),
                cleanup: true,
                server_root_url: String::new(),
                timing: Timing {
                    kill_grace: Duration::from_secs(1),
                    ..Timing::default()
                },
            },
            process_env(),
        )
        .unwrap(),
    );
    let spec = |id: &str, env: &[(&str, &str)]| TaskSpec {
        task_id: id.to_string(),
        execution_id: None,
        task: Default::default(),
        image: task_image.clone(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        base_args: vec!["agent".into(), "run".into()],
        sidecars: vec![SidecarMount {
            image: sidecar_image.clone(),
            mount_path: "/agent".into(),
            read_write: false,
        }],
        instance_shape: None,
        harness: None,
        secrets: vec![],
    };

    // Warm-up: fills the sidecar volume, and warms both paths once.
    let token = || CancelToken::new().unwrap();
    assert_eq!(
        backend.execute(&spec("bench-warm", &[]), &token()),
        Ok(Completion::Finished)
    );
    let cli = |name: &str| {
        let status = Command::new("docker")
            .args(["run", "--rm", "--name", name, "--label", "oz-test=1", "-v"])
            .arg(format!("{volume}:/agent:ro"))
            .args(["-w", "/workspace", &task_image])
            .args(["/agent/entrypoint.sh", "agent", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the docker CLI is needed for the comparison");
        assert!(status.success(), "docker run failed: {status}");
    };
    cli(&unique("bench-cli"));

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let r = backend.execute(&spec(&format!("bench-{i}"), &[]), &token());
        ours.push(t.elapsed());
        assert_eq!(r, Ok(Completion::Finished));
        let t = Instant::now();
        cli(&unique("bench-cli"));
        theirs.push(t.elapsed());
    }
    println!("== no-op task, end to end ({runs} runs each, alternating)");
    println!(
        "method: DockerBackend::execute of a task whose agent prints its argv/env and exits 0 \
         (image inspect ×2, volume inspect, fill-marker list, create, wait, start, log follow; \
         the container is removed beside the report), pull policy IfNotPresent, sidecar volume pre-filled; against \
         `docker run --rm -v <volume>:/agent:ro -w /workspace <image> /agent/entrypoint.sh agent run` \
         (docker CLI {}), output discarded",
        cli_version()
    );
    let (a, b) = (summary(&mut ours), summary(&mut theirs));
    println!("backend     : {a}");
    println!("docker CLI  : {b}");
    println!(
        "ratio (median backend / median CLI): {:.2}",
        median(&ours).as_secs_f64() / median(&theirs).as_secs_f64()
    );

    // Resident memory with 50 concurrent tasks.
    let baseline = rss_kib();
    let started = Instant::now();
    let mut running = Vec::new();
    for i in 0..CONCURRENT {
        let cancel = token();
        let b = Arc::clone(&backend);
        let s = spec(&format!("bench-rss-{i}"), &[("OZ_AGENT_SLEEP", "1")]);
        let c = cancel.clone();
        let handle = std::thread::Builder::new()
            .name(format!("t-bench-{i}"))
            .stack_size(512 * 1024)
            .spawn(move || b.execute(&s, &c))
            .unwrap();
        running.push((cancel, handle));
    }
    let label = format!("{}={}", names::LABEL_WORKER, worker_id);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let up = client
            .list_containers(false, &[&label])
            .unwrap()
            .iter()
            .filter(|c| c.state == "running")
            .count();
        if up == CONCURRENT {
            break;
        }
        assert!(Instant::now() < deadline, "only {up} containers started");
        std::thread::sleep(Duration::from_millis(200));
    }
    let up_after = started.elapsed();
    // Let the log streams settle on their first lines.
    std::thread::sleep(Duration::from_secs(1));
    let loaded = rss_kib();
    let threads = thread_count();
    for (cancel, _) in &running {
        cancel.cancel(CancelSource::Shutdown);
    }
    let stop_started = Instant::now();
    for (_, handle) in running {
        let _ = handle.join();
    }
    let stopped_after = stop_started.elapsed();
    backend.shutdown();
    println!();
    println!("== resident memory with {CONCURRENT} concurrent tasks");
    println!(
        "method: VmRSS of this process (/proc/self/status) before starting them (backend \
         connected, one task run) and once all {CONCURRENT} containers are running and have \
         printed (each execute blocked on its wait, with its log-follow thread); task threads \
         with 512 KiB stacks as the supervisor's; no logger installed"
    );
    println!("baseline    : {baseline} KiB");
    println!("with tasks  : {loaded} KiB ({threads} threads)");
    println!(
        "delta       : {} KiB ({:.1} KiB per task)",
        loaded.saturating_sub(baseline),
        loaded.saturating_sub(baseline) as f64 / CONCURRENT as f64
    );
    println!(
        "all {CONCURRENT} running after {up_after:.2?}; all cancelled, stopped and removed after {stopped_after:.2?}"
    );
    let left = client.list_containers(true, &[&label]).unwrap();
    assert!(left.is_empty(), "containers left behind: {}", left.len());
}

fn rss_kib() -> u64 {
    status_field("VmRSS:")
}

fn thread_count() -> u64 {
    status_field("Threads:")
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(u32::MAX);
    format!(
        "median {:.1?}, mean {:.1?}, p90 {:.1?}, min {:.1?}, max {:.1?}",
        samples[n / 2],
        mean,
        samples[(n * 9 / 10).min(n - 1)],
        samples[0],
        samples[n - 1]
    )
}

fn cli_version() -> String {
    Command::new("docker")
        .args(["version", "--format", "{{.Client.Version}}"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}
