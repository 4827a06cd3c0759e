//! Running one subprocess for a task: fork/exec into its own process group, forward its output
//! line by line, and stop it on cancellation or a deadline without leaving grandchildren behind.
//!
//! The whole wait happens on the calling (task) thread in one `poll(2)` loop over the stdout and
//! stderr pipes, the stdin pipe while a payload is being written, the cancel token's descriptor
//! and a pidfd for the child (with a short poll tick plus `waitid` when the kernel lacks
//! `pidfd_open`). No helper threads.
//!
//! Stopping: SIGTERM to the group, up to `grace`, then SIGKILL to the group. The group id is the
//! leader's pid, which the kernel may hand to an unrelated process once the leader is reaped, so
//! `killpg` is only ever sent while the leader is unreaped. The leader's exit is observed without
//! reaping it (`waitid(WNOWAIT)`), which keeps its pid pinned while we SIGKILL whatever is left of
//! a group we stopped, drain the pipes briefly, and only then reap.
//!
//! A process that leaves its group (`setsid`, `setpgid`) escapes this; only a cgroup could
//! follow it.

pub mod env;
mod group;
pub mod orphan;
mod output;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ChildStdin, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use group::Leader;

use crate::cancel::CancelToken;

pub use env::Env;
pub use group::GroupHandle;
pub use output::{Line, LineBuffer, MAX_PENDING, MAX_RECORD, REDACTED, Redactor, Stream, WITHHELD};

/// How long the pipes may stay silent after the leader exits before they are closed: a
/// grandchild holding them open cannot delay completion by more.
pub const DRAIN: Duration = Duration::from_millis(100);
/// The longest the pipes are read after the leader exits, however much keeps coming: a
/// grandchild that keeps writing cannot hold the task either.
pub const DRAIN_CAP: Duration = Duration::from_secs(1);

/// Poll tick when no pidfd is available: how often the leader is checked for exit.
const FALLBACK_TICK: Duration = Duration::from_millis(50);
/// Poll tick with a pidfd: only a safety net, the pidfd wakes the loop on exit.
const SAFETY_TICK: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 8 * 1024;

/// What to run. Its `Debug` shows no argument, variable value or stdin byte (they may carry
/// secrets).
#[derive(Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Working directory; `None` keeps the worker's.
    pub cwd: Option<PathBuf>,
    /// The child's complete environment (nothing else is inherited).
    pub env: Env,
    /// `None`: stdin is `/dev/null`. `Some(bytes)`: a pipe fed with the bytes, then closed.
    pub stdin: Option<Vec<u8>>,
}

impl fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("program", &self.program)
            .field("args", &format_args!("[{} arguments]", self.args.len()))
            .field("cwd", &self.cwd)
            .field("env", &self.env)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|b| format!("{} bytes", b.len())),
            )
            .finish()
    }
}

/// When to stop the process early.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    pub cancel: Option<&'a CancelToken>,
    pub deadline: Option<Instant>,
    /// SIGTERM-to-SIGKILL grace.
    pub grace: Duration,
    /// Lets another thread kill the group while it runs (see [`GroupHandle`]).
    pub group: Option<&'a GroupHandle>,
}

/// How a process ended: its normalised exit code, and the signal that killed it if one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status, or 128+signal for a signal death.
    pub code: i32,
    pub signal: Option<i32>,
}

impl Exit {
    pub fn success(self) -> bool {
        self.code == 0 && self.signal.is_none()
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            None => write!(f, "exit status {}", self.code),
            Some(sig) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "signal: {}", s.as_str()),
                Err(_) => write!(f, "signal: {sig}"),
            },
        }
    }
}

/// Maps a wait status to an [`Exit`]: exit N is N, death by signal S is 128+S. The one place
/// that does this mapping.
pub fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit { code, signal: None },
        (None, Some(sig)) => Exit {
            code: 128 + sig,
            signal: Some(sig),
        },
        // `wait` never reports stopped or continued children (no WUNTRACED/WCONTINUED).
        (None, None) => Exit {
            code: 255,
            signal: None,
        },
    }
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The process exited without being told to stop.
    Exited(Exit),
    /// The cancel token fired and the process group was stopped.
    Cancelled(Exit),
    /// The deadline passed and the process group was stopped.
    TimedOut(Exit),
}

#[derive(Debug)]
pub enum RunError {
    /// The process could not be started (missing program, bad cwd, exec failure).
    Spawn { program: PathBuf, source: io::Error },
    /// Waiting for a started process failed; it has been killed and reaped.
    Wait { program: PathBuf, source: io::Error },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { program, source } => {
                let hint = crate::threads::resource_hint(source);
                write!(f, "failed to start {}: {source}{hint}", program.display())
            }
            RunError::Wait { program, source } => {
                write!(f, "failed waiting for {}: {source}", program.display())
            }
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Spawn { source, .. } | RunError::Wait { source, .. } => Some(source),
        }
    }
}

/// Runs `spec` to its end and returns how it ended. Output lines (scrubbed by `redactor`) go to
/// `on_line` as they arrive. Returns once the leader has exited and been reaped; if the group was
/// stopped, whatever was left of it has been SIGKILLed.
pub fn run(
    spec: &ProcessSpec,
    limits: &Limits<'_>,
    redactor: &Redactor,
    on_line: &mut dyn FnMut(Stream, Line<'_>),
) -> Result<Ended, RunError> {
    run_with(spec, limits, redactor, on_line, true)
}

/// [`run`], optionally without a pidfd (the path taken on kernels before 5.3).
fn run_with(
    spec: &ProcessSpec,
    limits: &Limits<'_>,
    redactor: &Redactor,
    on_line: &mut dyn FnMut(Stream, Line<'_>),
    use_pidfd: bool,
) -> Result<Ended, RunError> {
    let mut child = group::spawn(spec).map_err(|source| RunError::Spawn {
        program: spec.program.clone(),
        source,
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdin = child.stdin.take();
    let mut leader = Leader::new(child, use_pidfd, limits.group.cloned());
    let mut out = Pipe::new(Stream::Stdout, stdout.map(OwnedFd::from));
    let mut err = Pipe::new(Stream::Stderr, stderr.map(OwnedFd::from));
    let mut feed = Feed::new(stdin, spec.stdin.as_deref().unwrap_or_default());
    let mut io = Io { redactor, on_line };
    let wait_err = |source| RunError::Wait {
        program: spec.program.clone(),
        source,
    };

    let phase =
        watch(&mut leader, limits, &mut out, &mut err, &mut feed, &mut io).map_err(wait_err)?;
    if phase.stopped() {
        // The leader is a zombie we have not reaped, so its pid (the group id) is still ours.
        leader.signal_group(Signal::SIGKILL);
    }
    drop(feed);
    drain(&mut out, &mut err, &mut io);
    let exit = exit_of(leader.reap().map_err(wait_err)?);
    Ok(match phase {
        Phase::Running => Ended::Exited(exit),
        Phase::Terminating { cause, .. } | Phase::Killed { cause } => match cause {
            Cause::Cancel => Ended::Cancelled(exit),
            Cause::Deadline => Ended::TimedOut(exit),
        },
    })
}

/// Where output lines go.
struct Io<'a> {
    redactor: &'a Redactor,
    on_line: &'a mut dyn FnMut(Stream, Line<'_>),
}

/// One output pipe and its unfinished line.
struct Pipe {
    stream: Stream,
    fd: Option<OwnedFd>,
    lines: LineBuffer,
}

impl Pipe {
    fn new(stream: Stream, fd: Option<OwnedFd>) -> Pipe {
        Pipe {
            stream,
            fd,
            lines: LineBuffer::default(),
        }
    }

    fn borrow(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// One read after poll reported the pipe ready, so it does not block. EOF closes the pipe.
    fn read_once(&mut self, io: &mut Io<'_>) {
        let Some(fd) = &self.fd else { return };
        let mut buf = [0u8; READ_CHUNK];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => self.close(io, true),
            Ok(n) => {
                let stream = self.stream;
                let on_line = &mut *io.on_line;
                self.lines
                    .push(&buf[..n], io.redactor, &mut |l| on_line(stream, l));
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => self.close(io, false),
        }
    }

    /// Closes our end (a writer left behind gets EPIPE) and emits the unfinished line: the
    /// stream's last if it ended, a cut piece (not [`Line::whole`]) if it was still open.
    fn close(&mut self, io: &mut Io<'_>, ended: bool) {
        self.fd = None;
        let stream = self.stream;
        let on_line = &mut *io.on_line;
        let emit = &mut |l: Line<'_>| on_line(stream, l);
        if ended {
            self.lines.finish(io.redactor, emit);
        } else {
            self.lines.cut(io.redactor, emit);
        }
    }
}

/// The stdin payload still to be written. Non-blocking, so a child that does not read its
/// stdin cannot stall the wait loop.
struct Feed<'a> {
    pipe: Option<ChildStdin>,
    data: &'a [u8],
}

impl<'a> Feed<'a> {
    fn new(pipe: Option<ChildStdin>, data: &'a [u8]) -> Feed<'a> {
        let pipe = pipe.filter(|_| !data.is_empty()).and_then(|p| {
            let flags = fcntl(&p, FcntlArg::F_GETFL).ok()?;
            let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
            match fcntl(&p, FcntlArg::F_SETFL(flags)) {
                Ok(_) => Some(p),
                Err(e) => {
                    log::warn!("Cannot make the child's stdin non-blocking ({e}); not writing it");
                    None
                }
            }
        });
        Feed { pipe, data }
    }

    fn borrow(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(|p| p.as_fd())
    }

    fn write_once(&mut self) {
        let Some(pipe) = &self.pipe else { return };
        match nix::unistd::write(pipe, self.data) {
            Ok(n) => {
                self.data = &self.data[n..];
                if self.data.is_empty() {
                    self.pipe = None; // EOF for the child
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            // EPIPE: the child closed its stdin; what it does without the rest is its call.
            Err(_) => self.pipe = None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Cancel,
    Deadline,
}

/// Where the wait stands. Running → (cancel or deadline: SIGTERM) Terminating → (grace over:
/// SIGKILL) Killed. The leader exiting ends the wait in any phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Terminating { cause: Cause, kill_at: Instant },
    Killed { cause: Cause },
}

impl Phase {
    fn stopped(self) -> bool {
        self != Phase::Running
    }
}

/// Waits until the leader exits (without reaping it), forwarding output, feeding stdin and
/// stopping the group on cancel or deadline. Returns the phase it ended in.
fn watch(
    leader: &mut Leader,
    limits: &Limits<'_>,
    out: &mut Pipe,
    err: &mut Pipe,
    feed: &mut Feed<'_>,
    io: &mut Io<'_>,
) -> io::Result<Phase> {
    let mut phase = Phase::Running;
    loop {
        let now = Instant::now();
        phase = advance(phase, leader, limits, now);
        if leader.exited()? {
            return Ok(phase);
        }
        let timeout = next_wake(phase, limits, leader.pidfd.is_some(), now);
        let [ready_out, ready_err, ready_in] = {
            let mut fds = Vec::with_capacity(5);
            let mut slots = [None; 3];
            for (slot, fd, flags) in [
                (0, out.borrow(), PollFlags::POLLIN),
                (1, err.borrow(), PollFlags::POLLIN),
                (2, feed.borrow(), PollFlags::POLLOUT),
            ] {
                if let Some(fd) = fd {
                    slots[slot] = Some(fds.len());
                    fds.push(PollFd::new(fd, flags));
                }
            }
            if let (Phase::Running, Some(cancel)) = (phase, limits.cancel) {
                fds.push(PollFd::new(cancel.as_fd(), PollFlags::POLLIN));
            }
            if let Some(pidfd) = &leader.pidfd {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            slots.map(|s| s.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty())))
        };
        if ready_out {
            out.read_once(io);
        }
        if ready_err {
            err.read_once(io);
        }
        if ready_in {
            feed.write_once();
        }
    }
}

/// Applies cancel, deadline and grace expiry to the phase, signalling the group as it moves on.
fn advance(phase: Phase, leader: &Leader, limits: &Limits<'_>, now: Instant) -> Phase {
    match phase {
        Phase::Running => {
            let cause = if limits.cancel.is_some_and(|c| c.is_cancelled()) {
                Cause::Cancel
            } else if limits.deadline.is_some_and(|d| now >= d) {
                Cause::Deadline
            } else {
                return Phase::Running;
            };
            leader.signal_group(Signal::SIGTERM);
            Phase::Terminating {
                cause,
                kill_at: now + limits.grace,
            }
        }
        Phase::Terminating { cause, kill_at } if now >= kill_at => {
            leader.signal_group(Signal::SIGKILL);
            Phase::Killed { cause }
        }
        other => other,
    }
}

fn next_wake(phase: Phase, limits: &Limits<'_>, pidfd: bool, now: Instant) -> PollTimeout {
    let tick = if pidfd { SAFETY_TICK } else { FALLBACK_TICK };
    let until = match phase {
        Phase::Running => limits.deadline,
        Phase::Terminating { kill_at, .. } => Some(kill_at),
        Phase::Killed { .. } => None,
    };
    let wait = until.map_or(tick, |t| t.saturating_duration_since(now).min(tick));
    poll_timeout(wait)
}

/// Rounds up, so a wait for a sub-millisecond remainder does not spin.
fn poll_timeout(d: Duration) -> PollTimeout {
    PollTimeout::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX)
}

/// Reads what is left in the pipes, then closes them. Reading goes on while bytes keep coming,
/// so what the leader wrote before it exited is never lost to a busy machine (a fixed window
/// was: a task thread scheduled late found it already over), and stops once the pipes have been
/// silent for [`DRAIN`], or after [`DRAIN_CAP`] in all.
fn drain(out: &mut Pipe, err: &mut Pipe, io: &mut Io<'_>) {
    let cap = Instant::now() + DRAIN_CAP;
    let mut quiet_until = Instant::now() + DRAIN;
    while out.fd.is_some() || err.fd.is_some() {
        let now = Instant::now();
        if now >= cap {
            break;
        }
        let [ready_out, ready_err] = {
            let mut fds = Vec::with_capacity(2);
            let mut slots = [None; 2];
            for (slot, fd) in [(0, out.borrow()), (1, err.borrow())] {
                if let Some(fd) = fd {
                    slots[slot] = Some(fds.len());
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
            }
            // Past the quiet deadline this is a non-blocking look: data already there is read.
            let wait = quiet_until.saturating_duration_since(now).min(cap - now);
            match poll(&mut fds, poll_timeout(wait)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
            slots.map(|s| s.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty())))
        };
        if !ready_out && !ready_err {
            if Instant::now() >= quiet_until {
                break;
            }
            continue;
        }
        if ready_out {
            out.read_once(io);
        }
        if ready_err {
            err.read_once(io);
        }
        quiet_until = Instant::now() + DRAIN;
    }
    // Still open here: cut (at EOF a pipe was closed as it ended).
    out.close(io, false);
    err.close(io, false);
}

#[cfg(test)]
mod tests;
