//! Starting a child as the leader of its own process group, and the rules for signalling and
//! reaping that group (process-wrap's, see STYLE.md §5):
//!
//! - the child gets a fresh process group (`process_group(0)`) and an empty signal mask;
//! - `killpg` is sent only while the leader is unreaped, because its pid is the group id and the
//!   kernel may give that number to an unrelated process once the leader is reaped;
//! - ESRCH from `killpg` means everyone is gone already, which is success;
//! - the leader's exit is observed without reaping it (`waitid(WNOWAIT)`), so the rest of the
//!   group can still be killed safely before the reap.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, sigprocmask};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use super::ProcessSpec;

/// Starts `spec` as a new process group leader with piped stdout/stderr.
pub(super) fn spawn(spec: &ProcessSpec) -> io::Result<Child> {
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter())
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    reset_signal_mask_in_child(&mut cmd);
    cmd.spawn()
}

/// Children inherit the parent's signal mask, and a worker thread may have signals blocked
/// (signal-handling libraries do this); an agent that cannot receive SIGTERM cannot stop cleanly.
#[allow(unsafe_code)]
fn reset_signal_mask_in_child(cmd: &mut std::process::Command) {
    // JUSTIFICATION: std resets the mask in the child today, but does not document it; this
    // makes it a guarantee of ours. `pre_exec` is the only hook into the child before exec.
    // SAFETY: the closure runs in the forked child between fork and exec, where only
    // async-signal-safe calls are allowed. It calls sigemptyset (SigSet::empty) and sigprocmask,
    // both async-signal-safe; it allocates nothing, takes no locks and touches no shared state.
    // The Errno-to-io::Error conversion is `from_raw_os_error`, which does not allocate.
    unsafe {
        cmd.pre_exec(|| {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(io::Error::from)
        });
    }
}

/// Opens a pidfd for our unreaped child; `None` when the kernel lacks `pidfd_open` (< 5.3).
#[allow(unsafe_code)]
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // JUSTIFICATION: std's pidfd support is unstable and nix 0.32 has no `pidfd_open`; the
    // alternative, a short poll tick, wakes every task thread many times a second.
    // SAFETY: pidfd_open(2) takes a pid and a flags word by value and reads no memory of ours.
    // The pid is our own unreaped child, so it cannot name another process.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    if raw < 0 {
        log::debug!(
            "pidfd_open unavailable ({}); polling for child exit",
            Errno::last()
        );
        return None;
    }
    let fd = RawFd::try_from(raw).ok()?;
    // SAFETY: the syscall succeeded, so `fd` is a new descriptor (close-on-exec) that nothing
    // else owns; the OwnedFd becomes its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Lets another thread kill a running process group, e.g. the backend's shutdown killing what
/// a timed-out task thread left running. It holds the group id only while the leader is
/// unreaped: the runner clears it, under the same lock, before reaping.
#[derive(Debug, Clone, Default)]
pub struct GroupHandle(Arc<Mutex<Option<Pid>>>);

impl GroupHandle {
    pub fn new() -> GroupHandle {
        GroupHandle::default()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Pid>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SIGKILLs the group if a process runs under this handle; returns whether one did.
    pub fn kill(&self) -> bool {
        let slot = self.slot();
        match *slot {
            Some(pgid) => {
                match killpg(pgid, Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => log::warn!("Failed to kill process group {pgid}: {e}"),
                }
                true
            }
            None => false,
        }
    }

    /// True while a process runs under this handle.
    pub fn is_running(&self) -> bool {
        self.slot().is_some()
    }
}

/// The group leader: our direct child, whose pid is the group id.
pub(super) struct Leader {
    child: Child,
    pid: Pid,
    /// Readable once the leader exits; `None` on old kernels (the caller then polls).
    pub(super) pidfd: Option<OwnedFd>,
    /// Reaped by us: the group id may belong to someone else now.
    reaped: bool,
    /// Reaped by someone else (ECHILD, e.g. SIGCHLD ignored process-wide): same consequence.
    lost: bool,
    handle: Option<GroupHandle>,
}

impl Leader {
    pub(super) fn new(child: Child, use_pidfd: bool, handle: Option<GroupHandle>) -> Leader {
        // An invariant, not input: Linux pids fit in i32 (pid_max is at most 2^22).
        #[allow(clippy::expect_used)]
        let pid = Pid::from_raw(
            i32::try_from(child.id()).expect("Linux pids fit in i32 (pid_max is at most 2^22)"),
        );
        if let Some(h) = &handle {
            *h.slot() = Some(pid);
        }
        Leader {
            pidfd: if use_pidfd { pidfd_open(pid) } else { None },
            child,
            pid,
            reaped: false,
            lost: false,
            handle,
        }
    }

    /// Withdraws the group id from the handle; must happen before the reap.
    fn release_handle(&mut self) {
        if let Some(h) = self.handle.take() {
            *h.slot() = None;
        }
    }

    /// Signals the whole group, unless the leader has been reaped.
    pub(super) fn signal_group(&self, sig: Signal) {
        if self.reaped || self.lost {
            return;
        }
        match killpg(self.pid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => log::warn!("Failed to send {sig} to process group {}: {e}", self.pid),
        }
    }

    /// True once the leader has exited. Does not reap it.
    pub(super) fn exited(&mut self) -> io::Result<bool> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        loop {
            return match waitid(Id::Pid(self.pid), flags) {
                Ok(WaitStatus::StillAlive) => Ok(false),
                Ok(_) => Ok(true),
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    self.lost = true;
                    self.release_handle();
                    Ok(true)
                }
                Err(e) => Err(e.into()),
            };
        }
    }

    pub(super) fn reap(&mut self) -> io::Result<ExitStatus> {
        self.release_handle();
        let status = self.child.wait();
        self.reaped = true;
        status
    }
}

impl Drop for Leader {
    /// On an early return (a failed wait), nothing is left running or unreaped.
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(Signal::SIGKILL);
            self.release_handle();
            if !self.lost {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            self.reaped = true;
        }
    }
}
