//! Soak and scale: many tasks through the real binary against a WebSocket server in this
//! process that drops the connection every few hundred tasks, counting what was lost.
//! Run with `cargo bench --bench soak`. Nothing here passes or fails; it prints figures.
//!
//! 1. Direct soak: `SOAK_TASKS` (10,000) direct tasks (`/bin/true` as the agent), at most
//!    `SOAK_WINDOW` (8) in flight, the server dropping the TCP connection every `SOAK_DROP`
//!    (300) terminal messages and re-sending assignments that got no answer. Reported: tasks
//!    lost (goal 0), duplicate terminal messages, tasks/s, the worker's RSS, open fds and
//!    threads before and after, processes and workspaces left. Baseline in the same run: the
//!    same soak with the outcome journal off (an unusable `--state-dir`), i.e. its fsync cost.
//! 2. Docker soak (`SOAK_DOCKER_TASKS`, default 0 = skipped): the same loop through the Docker
//!    backend with the test images (built and removed here), at most 4 in flight, plus the
//!    containers left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

#[path = "../tests/support/docker_images.rs"]
mod docker_images;

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn worker_bin() -> String {
    std::env::var("OZ_BENCH_WORKER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_oz-agent-worker").to_owned())
}

fn main() {
    let dir = std::env::current_dir()
        .unwrap()
        .join("target")
        .join(format!("oz-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("oz-agent-worker soak, worker binary {}", worker_bin());
    println!(
        "(state directory on {}: a real disk, fsync included)\n",
        dir.display()
    );
    let tasks = env_num("SOAK_TASKS", 10_000) as usize;
    let window = env_num("SOAK_WINDOW", 8) as usize;
    let drop_every = env_num("SOAK_DROP", 300) as usize;
    let with = soak(
        &dir.join("journal-on"),
        Backend::Direct,
        tasks,
        window,
        drop_every,
        true,
    );
    let without = soak(
        &dir.join("journal-off"),
        Backend::Direct,
        tasks,
        window,
        drop_every,
        false,
    );
    report("direct, journal on", &with);
    report("direct, journal off (baseline)", &without);
    let docker_tasks = env_num("SOAK_DOCKER_TASKS", 0) as usize;
    if docker_tasks > 0 {
        let client = docker_images::docker();
        let res = docker_images::Resources::new(&client);
        let image = docker_images::import_task_image(&client, &res);
        let sidecar = docker_images::import_sidecar_image(&client, &res);
        let inspect = client.inspect_image(&sidecar).unwrap().unwrap();
        let familiar = oz_agent_worker::docker::ImageRef::parse(&sidecar)
            .unwrap()
            .familiar_name();
        res.volume(&oz_agent_worker::backend::docker::spec::volume_name(
            &familiar,
            inspect.digest(),
        ));
        let r = soak(
            &dir.join("docker"),
            Backend::Docker { image, sidecar },
            docker_tasks,
            4,
            drop_every.min(docker_tasks / 3).max(1),
            true,
        );
        report("docker, journal on", &r);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

enum Backend {
    Direct,
    Docker { image: String, sidecar: String },
}

#[derive(Debug, Default)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    threads: usize,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let count = |d: String| std::fs::read_dir(d).map_or(0, |r| r.count());
    Sample {
        rss_kib,
        fds: count(format!("/proc/{pid}/fd")),
        threads: count(format!("/proc/{pid}/task")),
    }
}

/// Processes whose parent is `pid` (agents the worker left running).
fn children(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(") ")?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .count()
}

#[derive(Debug, Default)]
struct Outcome {
    tasks: usize,
    secs: f64,
    lost: usize,
    duplicates: usize,
    failed: usize,
    disconnects: usize,
    before: Sample,
    after: Sample,
    children_after: usize,
    workspaces_after: usize,
    containers_after: usize,
    journal_bytes: u64,
}

fn report(name: &str, r: &Outcome) {
    println!("{name}:");
    println!(
        "  {} tasks in {:.1} s = {:.0} tasks/s, {} disconnects",
        r.tasks,
        r.secs,
        r.tasks as f64 / r.secs,
        r.disconnects
    );
    println!(
        "  lost {} (goal 0), duplicate terminal messages {}, failed {}",
        r.lost, r.duplicates, r.failed
    );
    println!(
        "  worker RSS {} -> {} KiB, fds {} -> {}, threads {} -> {}",
        r.before.rss_kib,
        r.after.rss_kib,
        r.before.fds,
        r.after.fds,
        r.before.threads,
        r.after.threads
    );
    println!(
        "  left behind: {} processes, {} workspaces, {} containers; journal {} bytes",
        r.children_after, r.workspaces_after, r.containers_after, r.journal_bytes
    );
}

fn assignment(id: &str, backend: &Backend) -> String {
    let mut data = json!({
        "task_id": id,
        "execution_id": "x1",
        "task": {"id": id, "title": "soak", "agent_config_snapshot": {}},
        "env_vars": {"SOAK_SECRET": "soak-secret-value"},
    });
    if let Backend::Docker { image, sidecar } = backend {
        data["docker_image"] = json!(image);
        data["sidecar_image"] = json!(sidecar);
    }
    json!({"type": "task_assignment", "data": data}).to_string()
}

fn spawn_worker(dir: &Path, url: &str, backend: &Backend, journal: bool) -> Child {
    let block = match backend {
        Backend::Direct => format!(
            "  direct:\n    oz_path: /bin/true\n    workspace_root: {}\n",
            dir.join("ws").display()
        ),
        Backend::Docker { .. } => "  docker:\n    image_pull_policy: IfNotPresent\n".to_owned(),
    };
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "worker_id: soak-{}\nmax_concurrent_tasks: 64\nbackend:\n{block}",
            std::process::id()
        ),
    )
    .unwrap();
    let state = if journal {
        dir.join("state")
    } else {
        // Under a regular file: the journal cannot be opened and the worker runs without it.
        std::fs::write(dir.join("no-state"), "").unwrap();
        dir.join("no-state/state")
    };
    Command::new(worker_bin())
        .args(["--config-file", config.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .args([
            "--web-socket-url",
            url,
            "--api-key",
            "soak-key",
            "--log-level",
            "error",
        ])
        .env("OZ_WORKER_BACKOFF_INITIAL", "50ms")
        .env("OZ_WORKER_BACKOFF_MAX", "200ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn accept(listener: &TcpListener) -> WebSocket<TcpStream> {
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut ws = tungstenite::accept(tcp).unwrap();
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    ws
}

fn soak(
    dir: &Path,
    backend: Backend,
    tasks: usize,
    window: usize,
    drop_every: usize,
    journal: bool,
) -> Outcome {
    std::fs::create_dir_all(dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/selfhosted/worker/ws",
        listener.local_addr().unwrap().port()
    );
    let mut child = spawn_worker(dir, &url, &backend, journal);
    let pid = child.id();
    let mut ws = accept(&listener);
    std::thread::sleep(Duration::from_millis(300));
    let before = sample(pid);

    let mut st = Soak {
        ids: (0..tasks).map(|i| format!("soak-{i}")).collect(),
        backend,
        unanswered: HashSet::new(),
        in_flight: HashSet::new(),
        terminals: HashMap::new(),
        failed: 0,
        since_drop: 0,
    };
    let mut next = 0;
    let mut disconnects = 0;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(env_num("SOAK_DEADLINE_SECS", 1800));
    while st.terminals.len() < tasks && Instant::now() < deadline {
        while st.in_flight.len() < window && next < tasks {
            if ws
                .send(Message::text(assignment(&st.ids[next], &st.backend)))
                .is_err()
            {
                break;
            }
            st.unanswered.insert(next);
            st.in_flight.insert(next);
            next += 1;
        }
        match ws.read() {
            Ok(Message::Text(t)) => st.on_frame(&mut ws, t.as_str()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                ws = reconnect(&listener, &mut disconnects);
                st.resend(&mut ws);
            }
        }
        if st.since_drop >= drop_every {
            st.since_drop = 0;
            // The server goes away the way a rolling restart does it: close 1001, read what
            // the worker still sends until its close arrives, then take the next connection.
            let _ = ws.close(None);
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                match ws.read() {
                    Ok(Message::Text(t)) => st.on_frame(&mut ws, t.as_str()),
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            let _ = ws.get_mut().shutdown(Shutdown::Both);
            ws = reconnect(&listener, &mut disconnects);
            st.resend(&mut ws);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Late duplicates show up within a moment.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Ok(Message::Text(t)) = ws.read() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            if let Some(i) = v["data"]["task_id"]
                .as_str()
                .and_then(|s| s.strip_prefix("soak-"))
                .and_then(|n| n.parse::<usize>().ok())
                && matches!(v["type"].as_str(), Some("task_completed" | "task_failed"))
            {
                *st.terminals.entry(i).or_default() += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = sample(pid);
    let children_after = children(pid);
    let workspaces_after = std::fs::read_dir(dir.join("ws")).map_or(0, |r| r.count());
    let journal_bytes = std::fs::metadata(dir.join("state/journal")).map_or(0, |m| m.len());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    // Keep answering the close handshake while the worker shuts down.
    let stop = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < stop {
        let _ = ws.read();
    }
    let _ = child.kill();
    let _ = child.wait();
    let containers_after = match st.backend {
        Backend::Docker { .. } => Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!(
                "label=dev.warp.oz.worker-id=soak-{}",
                std::process::id()
            ))
            .output()
            .map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().count()),
        Backend::Direct => 0,
    };
    Outcome {
        tasks,
        secs,
        lost: (0..tasks).filter(|i| !st.terminals.contains_key(i)).count(),
        duplicates: st.terminals.values().map(|n| n - 1).sum(),
        failed: st.failed,
        disconnects,
        before,
        after,
        children_after,
        workspaces_after,
        containers_after,
        journal_bytes,
    }
}

fn reconnect(listener: &TcpListener, disconnects: &mut usize) -> WebSocket<TcpStream> {
    *disconnects += 1;
    accept(listener)
}

/// The server's side of the soak: what was sent, answered and finished.
struct Soak {
    ids: Vec<String>,
    backend: Backend,
    /// Sent and not yet answered by a claim, a reject or a terminal message.
    unanswered: HashSet<usize>,
    in_flight: HashSet<usize>,
    terminals: HashMap<usize, usize>,
    failed: usize,
    since_drop: usize,
}

impl Soak {
    fn on_frame(&mut self, ws: &mut WebSocket<TcpStream>, text: &str) {
        let v: Value = serde_json::from_str(text).unwrap();
        let id = v["data"]["task_id"].as_str().unwrap_or("");
        let Some(i) = id
            .strip_prefix("soak-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return;
        };
        match v["type"].as_str().unwrap_or("") {
            "task_claimed" => {
                self.unanswered.remove(&i);
            }
            // At capacity or shutting down: offer it again.
            "task_rejected" if !self.terminals.contains_key(&i) => {
                let _ = ws.send(Message::text(assignment(&self.ids[i], &self.backend)));
            }
            kind @ ("task_completed" | "task_failed") => {
                if kind == "task_failed" {
                    self.failed += 1;
                }
                self.unanswered.remove(&i);
                self.in_flight.remove(&i);
                *self.terminals.entry(i).or_default() += 1;
                self.since_drop += 1;
            }
            _ => {}
        }
    }

    /// Assignments that got no answer may never have reached the worker: offer them again, as
    /// the server does for a worker that reconnects.
    fn resend(&self, ws: &mut WebSocket<TcpStream>) {
        let mut list: Vec<usize> = self.unanswered.iter().copied().collect();
        list.sort_unstable();
        for i in list {
            let _ = ws.send(Message::text(assignment(&self.ids[i], &self.backend)));
        }
    }
}
