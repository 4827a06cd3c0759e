//! Worker benchmarks: figures with their method, each beside a baseline measured in the same
//! run. Run with `cargo bench --bench worker`. Nothing here passes or fails on timing.
//!
//! 1. Idle cost of a connected worker: RSS and CPU time over an idle period
//!    (baseline: a `sleep` process).
//! 2. Claim latency: time from writing a `task_assignment` frame to reading `task_claimed`,
//!    measured at the server (baseline: a bare tungstenite client that answers each frame with
//!    a canned claim, i.e. the transport's floor).
//! 3. Direct-backend overhead per task: `DirectBackend::execute` against a bare fork/exec+wait
//!    of the same agent with the same arguments.
//! 4. Memory per running task: RSS of the worker with 500 concurrent sleeping tasks.
//!
//! Tunables: BENCH_IDLE_SECS (default 30), BENCH_CLAIMS (500), BENCH_TASKS (500),
//! BENCH_EXECS (300), OZ_BENCH_WORKER_BIN (the worker binary to measure; default: this
//! build's, a glibc release build; CI's figures use the static musl release).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use oz_agent_worker::backend::direct::DirectBackend;
use oz_agent_worker::backend::{Backend, BackendContext, CancelToken};
use oz_agent_worker::protocol::{Task, TaskAssignment};
use oz_agent_worker::settings::{DirectSettings, Timing};
use oz_agent_worker::task::{self, TaskOptions};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("oz-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "oz-agent-worker benchmarks, worker binary {}, machine: {} cores",
        worker_bin(),
        cores()
    );
    println!();
    idle(&dir);
    claim_latency(&dir);
    direct_overhead(&dir);
    many_tasks(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ------------------------------------------------------------------------------------------------
// Helpers: a one-connection WebSocket server, the worker process, /proc readings.
// ------------------------------------------------------------------------------------------------

struct Server {
    listener: TcpListener,
}

impl Server {
    fn new() -> Server {
        Server {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }
    fn url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/api/v1/selfhosted/worker/ws",
            self.listener.local_addr().unwrap().port()
        )
    }
    fn accept(&self) -> WebSocket<TcpStream> {
        let (tcp, _) = self.listener.accept().unwrap();
        tcp.set_nodelay(true).unwrap();
        tungstenite::accept(tcp).unwrap()
    }
}

/// Reads frames until one of type `kind` arrives; returns when it did.
fn read_until(ws: &mut WebSocket<TcpStream>, kind: &str) -> (Value, Instant) {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => {
                let at = Instant::now();
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == kind {
                    return (v, at);
                }
            }
            _ => continue,
        }
    }
}

fn write_agent(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn spawn_worker(dir: &Path, url: &str, agent: &Path, extra: &[&str]) -> Child {
    let config = dir.join(format!("config-{}.yaml", rand_suffix()));
    std::fs::write(
        &config,
        format!(
            "worker_id: bench\nbackend:\n  direct:\n    oz_path: {}\n    workspace_root: {}\n",
            agent.display(),
            dir.join("ws").display()
        ),
    )
    .unwrap();
    Command::new(worker_bin())
        .args(["--config-file", config.to_str().unwrap()])
        .args([
            "--web-socket-url",
            url,
            "--api-key",
            "bench-key",
            "--log-level",
            "warn",
        ])
        .args(extra)
        .env("OZ_WORKER_KILL_GRACE", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The worker under test: the build of this bench, or the binary named by
/// `OZ_BENCH_WORKER_BIN` (e.g. the static musl release, which is what ships).
fn worker_bin() -> String {
    std::env::var("OZ_BENCH_WORKER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_oz-agent-worker").to_owned())
}

fn rand_suffix() -> u128 {
    Instant::now().elapsed().as_nanos()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// utime + stime of a process, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(") ").unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on every Linux ABI this worker targets.
    ticks * 10.0
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// `p` is in [0, 1], so the index is a non-negative float below `len`: the cast is exact.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn assignment(id: &str) -> String {
    json!({"type": "task_assignment", "data": {
        "task_id": id, "task": {"id": id, "title": "bench"}
    }})
    .to_string()
}

// ------------------------------------------------------------------------------------------------
// 1. Idle
// ------------------------------------------------------------------------------------------------

fn idle(dir: &Path) {
    let secs = env_num("BENCH_IDLE_SECS", 30);
    let server = Server::new();
    let agent = write_agent(dir, "true-agent", "exit 0");
    let worker = spawn_worker(dir, &server.url(), &agent, &[]);
    let mut ws = server.accept();
    // Keep the server side reading (it answers the worker's pings) on its own thread.
    let reader = std::thread::spawn(move || while ws.read().is_ok() {});
    std::thread::sleep(Duration::from_secs(2));
    let pid = worker.id();
    let sleeper = Command::new("sleep").arg("3600").spawn().unwrap();
    let (cpu0, t0) = (cpu_ms(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, t1) = (cpu_ms(pid), Instant::now());
    let per_min = (cpu1 - cpu0) * 60.0 / (t1 - t0).as_secs_f64();
    println!("1. Idle connected worker ({secs} s idle, default 30 s pings)");
    println!("   method: VmRSS from /proc/<pid>/status; utime+stime from /proc/<pid>/stat");
    println!(
        "   worker: RSS {:>6} KiB, CPU {per_min:.1} ms per idle minute",
        rss_kib(pid)
    );
    println!(
        "   baseline `sleep 3600`: RSS {:>6} KiB",
        rss_kib(sleeper.id())
    );
    println!("   targets: RSS <= 4096 KiB, CPU <= 10 ms per idle minute");
    println!();
    let mut sleeper = sleeper;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    stop(worker);
    let _ = reader.join();
}

// ------------------------------------------------------------------------------------------------
// 2. Claim latency
// ------------------------------------------------------------------------------------------------

fn claim_latency(dir: &Path) {
    let n = usize::try_from(env_num("BENCH_CLAIMS", 500)).unwrap_or(usize::MAX);
    let agent = write_agent(dir, "true-agent", "exit 0");
    let server = Server::new();
    let worker = spawn_worker(dir, &server.url(), &agent, &[]);
    let mut ws = server.accept();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("claim-{i}");
        let t0 = Instant::now();
        ws.send(Message::text(assignment(&id))).unwrap();
        let (_, at) = read_until(&mut ws, "task_claimed");
        samples.push(at - t0);
        read_until(&mut ws, "task_completed");
    }
    stop(worker);
    samples.sort();

    // Baseline: the same exchange with a client that answers instantly.
    let server = Server::new();
    let url = server.url();
    let echo = std::thread::spawn(move || {
        let (mut ws, _) = tungstenite::connect(url).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_nodelay(true).unwrap();
        }
        let claimed =
            json!({"type": "task_claimed", "data": {"task_id": "x", "worker_id": "w"}}).to_string();
        while let Ok(m) = ws.read() {
            if m.is_text() && ws.send(Message::text(claimed.clone())).is_err() {
                break;
            }
        }
    });
    let mut ws = server.accept();
    let mut base = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        ws.send(Message::text(assignment(&format!("b-{i}"))))
            .unwrap();
        let (_, at) = read_until(&mut ws, "task_claimed");
        base.push(at - t0);
    }
    drop(ws);
    let _ = echo.join();
    base.sort();
    println!("2. Claim latency ({n} sequential assignments, each run to completion)");
    println!("   method: server-side clock from writing the frame to reading task_claimed");
    println!(
        "   worker:   p50 {}  p99 {}  max {}",
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.99)),
        us(*samples.last().unwrap())
    );
    println!(
        "   baseline (bare tungstenite echo client): p50 {}  p99 {}",
        us(percentile(&base, 0.5)),
        us(percentile(&base, 0.99))
    );
    println!("   target: p99 <= 1 ms");
    println!();
}

// ------------------------------------------------------------------------------------------------
// 3. Direct-backend overhead
// ------------------------------------------------------------------------------------------------

fn direct_overhead(dir: &Path) {
    let n = usize::try_from(env_num("BENCH_EXECS", 300)).unwrap_or(usize::MAX);
    let agent = PathBuf::from("/bin/true");
    let ws = dir.join("direct-ws");
    let backend = DirectBackend::new(
        DirectSettings {
            workspace_root: Some(ws.clone()),
            target_dir: None,
            oz_path: Some(agent.clone()),
            setup_command: None,
            teardown_command: None,
            env: Vec::new(),
        },
        BackendContext {
            worker_id: "bench".into(),
            cleanup: true,
            server_root_url: "https://app.warp.dev".into(),
            timing: Timing::default(),
        },
    )
    .unwrap();
    let opts = TaskOptions {
        backend: Some(oz_agent_worker::backend::BackendKind::Direct),
        server_root_url: "https://app.warp.dev".into(),
        ..TaskOptions::default()
    };
    let mut through = Vec::with_capacity(n);
    let mut bare = Vec::with_capacity(n);
    for i in 0..n {
        let a = TaskAssignment {
            task_id: format!("overhead-{i}"),
            ..TaskAssignment::default()
        };
        let t = Task {
            id: a.task_id.clone(),
            ..Task::default()
        };
        let spec = task::build(&a, &t, &opts);
        // Interleave the two so drift in machine load hits both alike.
        let t0 = Instant::now();
        let status = Command::new(&agent)
            .args(&spec.base_args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .status()
            .unwrap();
        bare.push(t0.elapsed());
        assert!(status.success());
        let cancel = CancelToken::new().unwrap();
        let t0 = Instant::now();
        backend.execute(&spec, &cancel).unwrap();
        through.push(t0.elapsed());
    }
    let mean =
        |v: &[Duration]| v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap_or(u32::MAX);
    through.sort();
    bare.sort();
    let overhead = mean(&through).saturating_sub(mean(&bare));
    println!("3. Direct backend per-task overhead ({n} runs of /bin/true, interleaved)");
    println!("   method: wall time of DirectBackend::execute vs Command::status of the same");
    println!("           binary and arguments with piped output (workspace, env file, git config,");
    println!("           process group, output forwarding, cleanup are the difference)");
    println!(
        "   execute:       mean {}  p50 {}  p99 {}",
        us(mean(&through)),
        us(percentile(&through, 0.5)),
        us(percentile(&through, 0.99))
    );
    println!(
        "   bare spawn:    mean {}  p50 {}  p99 {}",
        us(mean(&bare)),
        us(percentile(&bare, 0.5)),
        us(percentile(&bare, 0.99))
    );
    println!("   overhead: {} per task (target <= 1.5 ms)", us(overhead));
    println!();
    backend.shutdown();
    let _ = std::fs::remove_dir_all(ws);
}

// ------------------------------------------------------------------------------------------------
// 4. Many concurrent tasks
// ------------------------------------------------------------------------------------------------

fn many_tasks(dir: &Path) {
    let n = usize::try_from(env_num("BENCH_TASKS", 500)).unwrap_or(usize::MAX);
    let agent = write_agent(dir, "sleep-agent", "exec sleep 120");
    let server = Server::new();
    let worker = spawn_worker(dir, &server.url(), &agent, &[]);
    let pid = worker.id();
    let mut ws = server.accept();
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(pid);
    let threads_before = threads(pid);
    for i in 0..n {
        ws.send(Message::text(assignment(&format!("many-{i}"))))
            .unwrap();
    }
    for _ in 0..n {
        read_until(&mut ws, "task_claimed");
    }
    // Give every task thread time to spawn its agent.
    let deadline = Instant::now() + Duration::from_secs(60);
    while threads(pid) < threads_before + n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid);
    let per_task = (after.saturating_sub(before)) as f64 / n as f64;
    println!("4. Memory with {n} concurrent sleeping tasks (agent: `exec sleep 120`)");
    println!("   method: worker VmRSS before the assignments and with all {n} running");
    println!(
        "   worker: {before} KiB idle -> {after} KiB with {n} tasks ({} threads): {per_task:.1} KiB per task",
        threads(pid)
    );
    println!("   target: <= 64 KiB per running task");
    println!();
    // Keep reading (as Oz would) so the worker's close handshake completes.
    let reader = std::thread::spawn(move || {
        let mut failed = 0;
        while let Ok(m) = ws.read() {
            if m.is_text() && m.to_text().unwrap_or("").contains("graceful_shutdown") {
                failed += 1;
            }
        }
        failed
    });
    let t0 = Instant::now();
    stop(worker);
    let took = t0.elapsed();
    let reported = reader.join().unwrap_or(0);
    println!(
        "   graceful shutdown with {n} running tasks: {:.2} s, {reported} task_failed(graceful_shutdown) received",
        took.as_secs_f64()
    );
    let _ = std::io::stdout().flush();
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}
