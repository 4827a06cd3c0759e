//! The direct and command backends and the shared process runner, through the library API with
//! real processes. The agent is `tests/support/stand-in-agent`.

mod command;
mod direct;
mod process;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oz_agent_worker::backend::{BackendContext, CancelToken};
use oz_agent_worker::process::Env;
use oz_agent_worker::settings::Timing;
use oz_agent_worker::task::TaskSpec;

/// Generous upper bound for anything that should happen "promptly" on a loaded machine.
pub const PROMPTLY: Duration = Duration::from_secs(60);
/// SIGTERM-to-SIGKILL grace used by these tests.
pub const GRACE: Duration = Duration::from_secs(1);
/// The worker's own API key in the injected worker environment.
pub const WORKER_KEY: &str = "worker-key-must-not-leak";

/// A unique scratch directory, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("oz-backends-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Canonical, so paths compare equal to what `pwd` reports in a child.
        Scratch(dir.canonicalize().unwrap())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// Creates and returns a subdirectory.
    pub fn dir(&self, p: &str) -> PathBuf {
        let d = self.0.join(p);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn stand_in() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/stand-in-agent"
    ))
}

pub fn ctx(cleanup: bool) -> BackendContext {
    BackendContext {
        worker_id: "worker-test".into(),
        cleanup,
        server_root_url: "https://oz.test".into(),
        collect_task_logs: true,
        timing: Timing {
            kill_grace: GRACE,
            ..Timing::default()
        },
        recorder: Default::default(),
    }
}

/// A worker environment for the backends: this process's PATH plus test-controlled HOME and
/// TMPDIR, the worker's API key, and a variable only the worker has.
pub fn worker_env(home: &Path, tmp: &Path) -> Env {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    [
        (OsString::from("PATH"), path),
        ("HOME".into(), home.into()),
        ("TMPDIR".into(), tmp.into()),
        ("WARP_API_KEY".into(), WORKER_KEY.into()),
        ("WORKER_ONLY".into(), "worker-only-value".into()),
    ]
    .into_iter()
    .collect()
}

pub fn spec(task_id: &str, env: &[(&str, &str)]) -> TaskSpec {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TaskSpec {
        task_id: task_id.into(),
        execution_id: None,
        task: Default::default(),
        image: "ubuntu:22.04".into(),
        secrets: env
            .iter()
            .filter(|(k, _)| k.starts_with("SECRET"))
            .map(|(_, v)| v.clone())
            .collect(),
        env,
        telemetry: None,
        base_args: vec![
            "agent".into(),
            "run".into(),
            "--task-id".into(),
            task_id.into(),
        ],
        sidecars: vec![],
        instance_shape: None,
        harness: None,
    }
}

pub fn token() -> CancelToken {
    CancelToken::new().unwrap()
}

/// Runs `f` on its own thread; the receiver yields its result.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("test-task".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    rx
}

/// Polls `f` until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_for_file(path: &Path) -> String {
    assert!(
        wait_until(PROMPTLY, || path.exists()),
        "{} never appeared",
        path.display()
    );
    std::fs::read_to_string(path).unwrap()
}

/// True once `pid` no longer runs (gone, or a zombie nobody reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

pub fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// What the stand-in agent wrote to `STANDIN_RECORD`.
#[derive(Debug)]
pub struct Record {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl Record {
    pub fn read(path: &Path) -> Record {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("no record at {}: {e}", path.display()));
        let mut section = "";
        let mut rec = Record {
            argv: vec![],
            cwd: PathBuf::new(),
            env: BTreeMap::new(),
        };
        for line in text.lines() {
            match line {
                "## argv" | "## cwd" | "## env" => section = line,
                _ => match section {
                    "## argv" => rec.argv.push(line.to_owned()),
                    "## cwd" => rec.cwd = PathBuf::from(line),
                    _ => {
                        if let Some((k, v)) = line.split_once('=') {
                            rec.env.insert(k.to_owned(), v.to_owned());
                        }
                    }
                },
            }
        }
        rec
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }
}

/// Parses `env` output written by a hook.
pub fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no env dump at {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
