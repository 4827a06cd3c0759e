//! Drives the real `oz-agent-worker` binary: a unique directory per test, a scrubbed
//! environment, output captured to files (readable while the worker runs), and a dump of
//! everything on failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// The worker binary under test.
pub fn worker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_oz-agent-worker")
}

/// The repository root (for fixtures and the stand-in agent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-in `oz` CLI shipped in the repository.
pub fn stand_in_agent() -> PathBuf {
    repo_root().join("tests/support/stand-in-agent")
}

/// A fresh directory for one test, removed when the test passes.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let id = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir()
            .join("oz-agent-worker-tests")
            .join(format!("{name}-{}-{id}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// Writes a file (creating parents) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A command line for the worker with a scrubbed environment.
pub struct WorkerCommand {
    cmd: Command,
    dir: PathBuf,
    display: String,
}

impl WorkerCommand {
    pub fn new(dir: &TestDir) -> WorkerCommand {
        let mut cmd = Command::new(worker_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.join("home"))
            .current_dir(&dir.path);
        fs::create_dir_all(dir.join("home")).unwrap();
        WorkerCommand {
            cmd,
            dir: dir.path.clone(),
            display: worker_bin().to_owned(),
        }
        // Never the default /var/lib/oz-agent-worker: each test has its own outcome journal.
        .arg("--state-dir")
        .arg(dir.join("state").to_string_lossy())
    }

    /// As [`WorkerCommand::new`], sharing the state directory `state` (crash/restart tests).
    pub fn with_state(dir: &TestDir, state: &Path) -> WorkerCommand {
        let mut c = WorkerCommand::new(dir);
        // A later --state-dir wins over the default one `new` put first.
        c = c.arg("--state-dir").arg(state.to_string_lossy());
        c
    }

    pub fn arg(mut self, a: impl AsRef<str>) -> Self {
        self.display.push(' ');
        self.display.push_str(a.as_ref());
        self.cmd.arg(a.as_ref());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Self {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs the worker as `uid`/`gid` (the test must run as root).
    pub fn run_as_user(mut self, uid: u32) -> Self {
        use std::os::unix::process::CommandExt;
        self.cmd.uid(uid).gid(uid);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// Runs to completion with stdin from `input`.
    pub fn run_with_stdin(mut self, input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        Output {
            command: self.display,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs to completion.
    pub fn run(self) -> Output {
        self.run_with_stdin("")
    }

    /// Starts the worker in the background with output captured to files.
    pub fn spawn(mut self) -> Worker {
        let stdout = self.dir.join("worker.stdout");
        let stderr = self.dir.join("worker.stderr");
        let child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Worker {
            child,
            command: self.display,
            stdout,
            stderr,
            status: None,
        }
    }
}

/// A finished run.
pub struct Output {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the exit code, dumping everything otherwise.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "\n{}", self.dump());
        self
    }

    /// The stdout lines that are JSON objects.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A running worker.
pub struct Worker {
    child: Child,
    pub command: String,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl Worker {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with a dump after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
                if self.stderr().contains(needle) {
                    return;
                }
                panic!("worker exited before logging {needle:?}\n{}", self.dump());
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for log {needle:?}\n{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::try_from(sig).unwrap(),
        )
        .unwrap();
    }

    /// Waits for exit; panics with a dump after `timeout` (and kills the worker).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.status = Some(s);
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("worker did not exit within {timeout:?}\n{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dump(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.status,
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- worker dump\n{}", self.dump());
        }
    }
}
