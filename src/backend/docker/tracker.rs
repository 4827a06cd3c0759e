//! Running executions: what `cancel` and `shutdown` reach, and the one thread that turns a
//! fired cancellation token into an aborted Docker call.
//!
//! Every execution's Docker calls go through a client holding its own [`Abort`]. The watcher
//! thread polls every running execution's token descriptor (plus a wake descriptor for
//! registrations) and aborts the execution's calls as soon as its token fires, so a blocked
//! wait, pull or upload returns at once, whoever fired the token. One thread serves all tasks.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::backend::{CancelToken, TaskRef};
use crate::docker::Abort;

/// What is known about an execution's task container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Container {
    #[default]
    None,
    /// A create was sent whose outcome is unknown: it may exist under this name.
    Maybe(String),
    Created {
        id: String,
        name: String,
    },
}

impl Container {
    /// What to remove: the id if known, else the name; `None` if nothing was created.
    pub fn handle(&self) -> Option<&str> {
        match self {
            Container::None => None,
            Container::Maybe(name) => Some(name),
            Container::Created { id, .. } => Some(id),
        }
    }
}

/// One running execution.
pub struct Execution {
    n: u64,
    pub task: TaskRef,
    pub cancel: CancelToken,
    /// Ends the execution's Docker calls (not its log stream).
    pub abort: Abort,
    /// Ends its log stream.
    pub log_abort: Abort,
    container: Mutex<Container>,
}

impl Execution {
    pub fn container(&self) -> Container {
        self.container
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_container(&self, c: Container) {
        *self
            .container
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = c;
    }

    /// Whether this execution is (one of) `task`: a run-wide ref matches every execution.
    pub fn matches(&self, task: &TaskRef) -> bool {
        task_matches(&self.task, task)
    }
}

/// Whether `candidate` is covered by `wanted` (a run-wide ref covers every execution).
pub fn task_matches(candidate: &TaskRef, wanted: &TaskRef) -> bool {
    candidate.task_id == wanted.task_id
        && (wanted.execution_id.is_none() || candidate.execution_id == wanted.execution_id)
}

struct Shared {
    running: Mutex<Vec<Arc<Execution>>>,
    changed: Condvar,
    wake: EventFd,
    stop: AtomicBool,
    next: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Execution>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        // A failed write only delays the watcher to its next periodic wake-up.
        let _ = self.wake.write(1);
    }
}

/// Deregisters executions from threads that outlive the `execute` call (background removal).
#[derive(Clone)]
pub struct TrackerHandle(Arc<Shared>);

impl TrackerHandle {
    pub fn remove(&self, exec: &Execution) {
        self.0.lock().retain(|e| e.n != exec.n);
        self.0.changed.notify_all();
        self.0.wake();
    }
}

/// The registry of running executions and its watcher thread.
pub struct Tracker {
    shared: Arc<Shared>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

/// The watcher re-checks its set at least this often even without a wake-up.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

impl Tracker {
    pub fn new() -> std::io::Result<Tracker> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(std::io::Error::from)?;
        let shared = Arc::new(Shared {
            running: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            wake,
            stop: AtomicBool::new(false),
            next: AtomicU64::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let watcher = std::thread::Builder::new()
            .name("oz-docker-watch".into())
            .stack_size(64 * 1024)
            .spawn(move || watch(&for_thread, poll_fds))?;
        Ok(Tracker {
            shared,
            watcher: Mutex::new(Some(watcher)),
        })
    }

    /// A handle that can deregister executions from another thread.
    pub fn handle(&self) -> TrackerHandle {
        TrackerHandle(Arc::clone(&self.shared))
    }

    /// Registers an execution; deregister it with [`Tracker::remove`].
    pub fn add(&self, task: TaskRef, cancel: CancelToken) -> Arc<Execution> {
        let exec = Arc::new(Execution {
            n: self.shared.next.fetch_add(1, Ordering::Relaxed),
            task,
            cancel,
            abort: Abort::new(),
            log_abort: Abort::new(),
            container: Mutex::new(Container::None),
        });
        self.shared.lock().push(Arc::clone(&exec));
        self.shared.wake();
        exec
    }

    pub fn remove(&self, exec: &Execution) {
        self.handle().remove(exec);
    }

    pub fn snapshot(&self) -> Vec<Arc<Execution>> {
        self.shared.lock().clone()
    }

    pub fn matching(&self, task: &TaskRef) -> Vec<Arc<Execution>> {
        self.shared
            .lock()
            .iter()
            .filter(|e| e.matches(task))
            .cloned()
            .collect()
    }

    /// Waits until none of `execs` is registered any more; false if `deadline` passed first.
    pub fn wait_gone(&self, execs: &[Arc<Execution>], deadline: Instant) -> bool {
        let mut running = self.shared.lock();
        loop {
            if !running.iter().any(|r| execs.iter().any(|e| e.n == r.n)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            running = self
                .shared
                .changed
                .wait_timeout(running, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops the watcher thread (idempotent).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        let handle = self
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `poll(2)` over a descriptor set; injected so a test can make it fail persistently.
type PollFn = fn(&mut [PollFd<'_>], PollTimeout) -> nix::Result<libc::c_int>;

fn poll_fds(fds: &mut [PollFd<'_>], timeout: PollTimeout) -> nix::Result<libc::c_int> {
    poll(fds, timeout)
}

/// How long the watcher waits after a failed `poll` before rebuilding the set and retrying.
const POLL_ERROR_BACKOFF: Duration = Duration::from_millis(100);

fn watch(shared: &Shared, poll: PollFn) {
    let mut failing = false;
    while !shared.stop.load(Ordering::SeqCst) {
        // An aborted execution needs no more watching (its token stays readable forever).
        let watched: Vec<Arc<Execution>> = shared
            .lock()
            .iter()
            .filter(|e| !e.abort.is_aborted())
            .cloned()
            .collect();
        let fired: Vec<usize> = {
            let mut fds = Vec::with_capacity(watched.len() + 1);
            fds.push(PollFd::new(shared.wake.as_fd(), PollFlags::POLLIN));
            fds.extend(
                watched
                    .iter()
                    .map(|e| PollFd::new(e.cancel.as_fd(), PollFlags::POLLIN)),
            );
            let timeout = PollTimeout::try_from(WATCH_PERIOD).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) => failing = false,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // A closed descriptor goes away with the next rebuild; a persistent error
                    // (ENOMEM, EINVAL over RLIMIT_NOFILE) must not spin: log once, pause.
                    if !failing {
                        log::warn!(
                            "Docker cancellation watcher: poll failed: {e}; retrying every \
                             {POLL_ERROR_BACKOFF:?}"
                        );
                        failing = true;
                    }
                    drop(fds);
                    std::thread::sleep(POLL_ERROR_BACKOFF);
                    continue;
                }
            }
            let ready = |fd: &PollFd<'_>| {
                fd.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
            };
            fds.iter()
                .enumerate()
                .skip(1)
                .filter(|(_, fd)| ready(fd))
                .map(|(i, _)| i - 1)
                .collect()
        };
        // Drain the wake counter; nothing to do if it was not written.
        let _ = shared.wake.read();
        for i in fired {
            if let Some(exec) = watched.get(i) {
                exec.abort.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CancelSource;

    fn task(id: &str, exec: Option<&str>) -> TaskRef {
        TaskRef {
            task_id: id.into(),
            execution_id: exec.map(Into::into),
        }
    }

    #[test]
    fn run_wide_refs_match_every_execution() {
        assert!(task_matches(&task("a", Some("1")), &task("a", None)));
        assert!(task_matches(&task("a", Some("1")), &task("a", Some("1"))));
        assert!(!task_matches(&task("a", Some("1")), &task("a", Some("2"))));
        assert!(!task_matches(&task("a", None), &task("a", Some("2"))));
        assert!(!task_matches(&task("b", None), &task("a", None)));
    }

    #[test]
    fn a_fired_token_aborts_the_executions_calls() {
        let tracker = Tracker::new().unwrap();
        let token = CancelToken::new().unwrap();
        let other = CancelToken::new().unwrap();
        let exec = tracker.add(task("a", None), token.clone());
        let bystander = tracker.add(task("b", None), other);
        token.cancel(CancelSource::User);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !exec.abort.is_aborted() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(exec.abort.is_aborted());
        assert!(!exec.log_abort.is_aborted());
        assert!(!bystander.abort.is_aborted());
        assert_eq!(tracker.matching(&task("a", None)).len(), 1);
        tracker.remove(&exec);
        assert!(tracker.wait_gone(&[exec], Instant::now()));
        assert!(!tracker.wait_gone(&[Arc::clone(&bystander)], Instant::now()));
        tracker.stop();
    }

    #[test]
    fn a_persistent_poll_error_does_not_spin() {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        fn failing(_: &mut [PollFd<'_>], _: PollTimeout) -> nix::Result<libc::c_int> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            Err(nix::errno::Errno::ENOMEM)
        }
        let shared = Arc::new(Shared {
            running: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            wake: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap(),
            stop: AtomicBool::new(false),
            next: AtomicU64::new(0),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || watch(&shared, failing))
        };
        // A spinning watcher calls poll millions of times in this while; one that pauses
        // 100 ms per failure, about ten.
        std::thread::sleep(Duration::from_secs(1));
        shared.stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        let n = CALLS.load(Ordering::SeqCst);
        assert!((1..=40).contains(&n), "{n} poll calls");
    }

    #[test]
    fn container_handles_prefer_the_id() {
        assert_eq!(Container::None.handle(), None);
        assert_eq!(Container::Maybe("n".into()).handle(), Some("n"));
        let c = Container::Created {
            id: "i".into(),
            name: "n".into(),
        };
        assert_eq!(c.handle(), Some("i"));
    }
}
