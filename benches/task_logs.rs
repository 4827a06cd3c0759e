//! Task-log export cost: a chatty agent (10,000 output lines) run by the direct backend with
//! export off (baseline) and on (to a collector on 127.0.0.1 that keeps every batch), the two
//! interleaved in the same run. Run with `cargo bench --bench task_logs`. Nothing here passes or
//! fails on timing.
//!
//! Figures per task: wall time of `DirectBackend::execute` (which includes the final flush),
//! CPU time of this process (user + system, from getrusage: the worker's side; the agent is a
//! child process; the collector only stores the bodies, decoding happens after the runs),
//! records received by the collector and records dropped (queue full).
//!
//! Kubernetes: the real worker binary against the Kubernetes API simulator, one task at a time,
//! whose pod's `task` container writes BENCH_LOG_LINES lines, in a burst at its start (runs
//! 300 ms) or paced over 2 s (100 pieces, one every 20 ms); with export on, the worker follows
//! the container's log live (`pods/log?follow=true`) and exports every line. Figures per task: assignment -> `task_completed` wall time (the final flush comes
//! before it), the worker process's CPU time (utime + stime from /proc/<pid>/stat, all its
//! threads, in clock ticks), records received.
//!
//! Tunables: BENCH_LOG_TASKS (default 20; 0 skips the direct part), BENCH_LOG_K8S_TASKS (10; 0
//! skips the Kubernetes part), BENCH_LOG_LINES (10000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The test collector, shared with the integration tests.
#[allow(dead_code)]
#[path = "../tests/support/collector.rs"]
mod collector;
#[allow(unused_imports)]
#[path = "../tests/support/kube_sim/mod.rs"]
mod kube_sim;
#[path = "../tests/support/otlp_logs.rs"]
mod otlp_logs;
#[allow(unused_imports)]
#[path = "../tests/support/oz_server/mod.rs"]
mod oz_server;
#[path = "../tests/support/warp_api.rs"]
mod warp_api;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oz_agent_worker::backend::direct::DirectBackend;
use oz_agent_worker::backend::{Backend, BackendContext, CancelToken};
use oz_agent_worker::protocol::TelemetryCollection;
use oz_agent_worker::settings::{DirectSettings, Timing};
use oz_agent_worker::task::TaskSpec;

use warp_api::FakeWarp;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process's threads so far (ended threads included).
#[allow(unsafe_code)]
fn cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` through the pointer, which points at a zeroed,
    // properly aligned value that lives across the call; RUSAGE_SELF is always valid.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn spec(id: &str, lines: u64, collector: Option<&str>) -> TaskSpec {
    let env: Vec<(String, String)> = [
        ("WARP_API_KEY", "bench-task-key-0001"),
        ("WARP_WORKLOAD_TOKEN", "bench-workload-0001"),
        ("SECRET_VALUE", "bench-secret-value-0001"),
        (
            "STANDIN_RUN",
            &format!("seq -f 'output line %g of the chatty agent, with some text' 1 {lines}"),
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    TaskSpec {
        task_id: id.into(),
        execution_id: None,
        task: Default::default(),
        image: String::new(),
        secrets: env.iter().map(|(_, v)| v.clone()).collect(),
        env,
        base_args: vec!["agent".into(), "run".into()],
        sidecars: vec![],
        instance_shape: None,
        harness: None,
        telemetry: collector.map(|c| TelemetryCollection {
            endpoint: c.to_owned(),
            logging_enabled: true,
            ..TelemetryCollection::default()
        }),
    }
}

struct Sample {
    wall: Duration,
    cpu: Duration,
}

fn main() {
    let tasks = env_num("BENCH_LOG_TASKS", 20);
    let lines = env_num("BENCH_LOG_LINES", 10_000);
    if tasks > 0 {
        direct(tasks, lines);
    }
    let k8s_tasks = env_num("BENCH_LOG_K8S_TASKS", 10);
    if k8s_tasks > 0 {
        kubernetes(k8s_tasks, lines);
    }
}

fn direct(tasks: u64, lines: u64) {
    let dir = std::env::temp_dir().join(format!("oz-bench-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let agent = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/stand-in-agent");
    let warp = FakeWarp::start();
    let backend = DirectBackend::new(
        DirectSettings {
            workspace_root: Some(dir.join("ws")),
            target_dir: None,
            oz_path: Some(agent),
            setup_command: None,
            teardown_command: None,
            env: Vec::new(),
        },
        BackendContext {
            worker_id: "bench".into(),
            cleanup: true,
            server_root_url: warp.url(),
            collect_task_logs: true,
            timing: Timing::default(),
            recorder: Default::default(),
        },
    )
    .unwrap();
    let run = |id: &str, collector: Option<&str>| -> Sample {
        let s = spec(id, lines, collector);
        let cancel = CancelToken::new().unwrap();
        let (c0, t0) = (cpu(), Instant::now());
        backend.execute(&s, &cancel).unwrap();
        Sample {
            wall: t0.elapsed(),
            cpu: cpu().saturating_sub(c0),
        }
    };
    // Warm up both paths (thread stacks, TLS roots are not involved: plain HTTP).
    run("warm-off", None);
    run("warm-on", Some(&warp.url()));
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let received_before = warp.records().len();
    let (dropped_before, failed_before) = oz_agent_worker::reporting::dropped_records();
    for i in 0..tasks {
        // Interleaved, so drift in machine load hits both alike.
        off.push(run(&format!("off-{i}"), None));
        on.push(run(&format!("on-{i}"), Some(&warp.url())));
    }
    let received = warp.records().len() - received_before;
    let (dropped, failed) = oz_agent_worker::reporting::dropped_records();
    let mean = |v: &[Sample], f: fn(&Sample) -> Duration| {
        v.iter().map(f).sum::<Duration>() / u32::try_from(v.len()).unwrap_or(u32::MAX)
    };
    let median = |v: &[Sample], f: fn(&Sample) -> Duration| {
        let mut d: Vec<Duration> = v.iter().map(f).collect();
        d.sort();
        d[d.len() / 2]
    };
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "Task-log export cost: {tasks} tasks x {lines} output lines each, direct backend, \
         export off and on interleaved, collector on 127.0.0.1"
    );
    println!("   method: wall time of DirectBackend::execute (final flush included) and this");
    println!("           process's CPU time (getrusage; the agent is a child process; the");
    println!("           collector in this process only stores bodies while measured)");
    for (name, v) in [("export off", &off), ("export on ", &on)] {
        println!(
            "   {name}: wall mean {} p50 {} | cpu mean {} p50 {}",
            ms(mean(v, |s| s.wall)),
            ms(median(v, |s| s.wall)),
            ms(mean(v, |s| s.cpu)),
            ms(median(v, |s| s.cpu)),
        );
    }
    println!(
        "   added per task: wall {} | cpu {} (mean, on minus off)",
        ms(mean(&on, |s| s.wall).saturating_sub(mean(&off, |s| s.wall))),
        ms(mean(&on, |s| s.cpu).saturating_sub(mean(&off, |s| s.cpu))),
    );
    let sent = tasks * (lines + 1);
    println!(
        "   records: {received} received of about {sent} output lines; {} dropped (queue full), \
         {} in refused batches",
        dropped - dropped_before,
        failed - failed_before
    );
    backend.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// utime + stime of process `pid` (all its threads), from /proc/<pid>/stat.
#[allow(unsafe_code)]
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

fn kubernetes(tasks: u64, lines: u64) {
    use kube_sim::{KubeSim, Out, Step};
    use oz_server::OzServer;
    use serde_json::json;
    use std::process::{Command, Stdio};

    let dir = std::env::temp_dir().join(format!("oz-bench-k8s-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = KubeSim::start();
    let line = |i: u64| format!("output line {i} of the chatty agent, with some text\n");
    // A burst: every line at the container's start (the export queue of 1,024 overflows).
    // Paced: 100 pieces of lines/100 lines, one every 20 ms (the exporter keeps up).
    let pieces = 100;
    let per = lines.div_ceil(pieces);
    let scenarios = [
        (
            "burst",
            "bench/burst",
            Duration::from_millis(300),
            vec![Out {
                after: Duration::ZERO,
                text: (1..=lines).map(line).collect(),
            }],
        ),
        (
            "paced",
            "bench/paced",
            Duration::from_millis(20 * pieces + 200),
            (0..pieces)
                .map(|p| Out {
                    after: Duration::from_millis(20 * p),
                    text: (p * per + 1..=((p + 1) * per).min(lines))
                        .map(line)
                        .collect(),
                })
                .collect(),
        ),
    ];
    for (_, image, running, out) in &scenarios {
        sim.script(
            image,
            vec![
                Step::Pending(Duration::from_millis(20)),
                Step::Running(*running),
                Step::exit(0),
            ],
        );
        sim.output(image, "task", out.clone());
    }
    let kc = sim.kubeconfig(&dir, None);
    let cfg = dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "worker_id: bench-k8s-logs\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n",
            kc.display()
        ),
    )
    .unwrap();
    let oz = OzServer::start();
    let warp = FakeWarp::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oz-agent-worker"))
        .args(["--config-file", cfg.to_str().unwrap()])
        .args(["--web-socket-url", &oz.url(), "--api-key", "bench-key"])
        .args(["--server-root-url", &warp.url(), "--log-level", "warn"])
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    oz.wait_for_connections(1, Duration::from_secs(60));
    sim.wait_until(Duration::from_secs(30), |s| s.open_watches >= 2);
    let pid = child.id();
    let mut n = 0;
    let mut run = |image: &str, export: bool| -> Sample {
        n += 1;
        let id = format!("k{n:04}");
        let mut data = json!({
            "task_id": id, "execution_id": format!("{id}-x"), "docker_image": image,
            "task": {"id": id, "title": "bench"},
            "env_vars": {"WARP_API_KEY": "bench-task-key-0001",
                         "WARP_WORKLOAD_TOKEN": "bench-workload-0001"}});
        if export {
            data["telemetry_collection"] = json!({"endpoint": warp.url(), "logging_enabled": true});
        }
        let (c0, t0) = (proc_cpu(pid), Instant::now());
        oz.push_json(&json!({"type": "task_assignment", "data": data}))
            .unwrap();
        oz.wait_for("task_completed", Duration::from_secs(120), |seen| {
            seen.frames
                .iter()
                .any(|f| f.kind() == "task_completed" && f.task_id() == id)
                .then_some(())
        });
        Sample {
            wall: t0.elapsed(),
            cpu: proc_cpu(pid).saturating_sub(c0),
        }
    };
    let mean = |v: &[Sample], f: fn(&Sample) -> Duration| {
        v.iter().map(f).sum::<Duration>() / u32::try_from(v.len()).unwrap_or(u32::MAX)
    };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!();
    println!(
        "Kubernetes pod-log following: {tasks} tasks x {lines} lines each per scenario, export \
         off and on interleaved, worker binary against the simulator"
    );
    println!("   method: assignment -> task_completed wall time (final flush included) and the");
    println!("           worker process's CPU time (/proc/<pid>/stat utime+stime, clock ticks)");
    for (name, image, running, _) in &scenarios {
        run(image, false);
        run(image, true);
        let received_before = warp.records().len();
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..tasks {
            off.push(run(image, false));
            on.push(run(image, true));
        }
        let received = warp
            .records()
            .iter()
            .skip(received_before)
            .filter(|r| r.attr_str("log.source") == Some("pod.task"))
            .count();
        println!("   {name} (pod runs {running:?}):");
        for (label, v) in [("export off", &off), ("export on ", &on)] {
            println!(
                "     {label}: wall mean {} | cpu mean {}",
                ms(mean(v, |s| s.wall)),
                ms(mean(v, |s| s.cpu)),
            );
        }
        println!(
            "     added per task: wall {} | cpu {} (mean, on minus off); {received} pod.task \
             records received of {} lines written",
            ms(mean(&on, |s| s.wall).saturating_sub(mean(&off, |s| s.wall))),
            ms(mean(&on, |s| s.cpu).saturating_sub(mean(&off, |s| s.cpu))),
            tasks * lines
        );
    }
    let follows = sim
        .state()
        .requests("GET", "/log")
        .iter()
        .filter(|s| s.param("follow") == Some("true"))
        .count();
    println!("   {follows} follows opened in all (one per exported task, warm-ups included)");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
