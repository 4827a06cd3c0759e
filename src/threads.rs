//! Thread names: every thread is named, and Linux keeps at most 15 bytes of a name. The
//! registry of short-lived threads that shutdown joins with a deadline. And what to tell the
//! operator when a thread, process or descriptor cannot be had.

use std::sync::{LazyLock, Mutex, PoisonError};
use std::thread::{Builder, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// `prefix` followed by the id's `[A-Za-z0-9-]` characters, at most 15 bytes in all, so a
/// task's threads are recognisable in `top -H` and `/proc/<pid>/task` whatever the id holds.
pub fn thread_name(prefix: &str, id: &str) -> String {
    let mut name = prefix.to_owned();
    name.extend(
        id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(15usize.saturating_sub(prefix.len())),
    );
    name
}

/// A hint for an error from creating a thread, a process or a descriptor when the cause is a
/// resource limit, else "". Appended to the task's failure message, so an operator sees what
/// to raise rather than a bare errno.
pub fn resource_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => {
            " (the worker is at its thread/process limit: raise RLIMIT_NPROC, systemd \
             LimitNPROC/TasksMax or the cgroup pids.max, or set max_concurrent_tasks)"
        }
        Some(libc::EMFILE | libc::ENFILE) => {
            " (the worker is out of file descriptors: raise RLIMIT_NOFILE or systemd \
             LimitNOFILE, or set max_concurrent_tasks)"
        }
        Some(libc::ENOMEM) => " (out of memory: set max_concurrent_tasks)",
        _ => "",
    }
}

/// One thread started through a [`Registry`].
struct Tracked {
    name: String,
    handle: JoinHandle<()>,
    /// Disconnects when the thread's body returns (or unwinds): the thread owns the sender.
    done: Receiver<()>,
}

/// Threads started on behalf of tasks (task, cancellation, credential-helper reader,
/// container removal), so shutdown can join them with a deadline and name the stragglers
/// instead of leaving them to be killed unnoticed at exit.
#[derive(Default)]
pub struct Registry {
    threads: Mutex<Vec<Tracked>>,
}

impl Registry {
    /// Spawns `f` with `builder` (which must name the thread) and tracks it. Threads that
    /// have already ended are joined here, so the list stays as short as what is running.
    pub fn spawn<F>(&self, builder: Builder, f: F) -> std::io::Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        let (tx, done) = crossbeam_channel::bounded::<()>(0);
        let handle = builder.spawn(move || {
            let _done = tx;
            f();
        })?;
        let name = handle.thread().name().unwrap_or("unnamed").to_owned();
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        let (ended, running): (Vec<Tracked>, Vec<Tracked>) =
            threads.drain(..).partition(|t| t.handle.is_finished());
        *threads = running;
        threads.push(Tracked { name, handle, done });
        drop(threads);
        for t in ended {
            let _ = t.handle.join();
        }
        Ok(())
    }

    /// Joins every tracked thread that ends before `deadline`; returns the names of those
    /// that did not (they are left running: the process is about to exit).
    pub fn join_all(&self, deadline: Instant) -> Vec<String> {
        self.join_all_counted(deadline).1
    }

    /// [`Registry::join_all`], also returning how many threads were joined.
    pub fn join_all_counted(&self, deadline: Instant) -> (usize, Vec<String>) {
        let threads: Vec<Tracked> = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        let mut stragglers = Vec::new();
        let mut joined = 0;
        for t in threads {
            match t.done.recv_deadline(deadline) {
                Err(RecvTimeoutError::Timeout) => stragglers.push(t.name),
                // Nothing is ever sent: disconnection means the body has returned.
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = t.handle.join();
                    joined += 1;
                }
            }
        }
        (joined, stragglers)
    }

    /// Number of tracked threads not yet joined.
    pub fn len(&self) -> usize {
        self.threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The process's registry, joined by the daemon at shutdown.
pub static TRACKED: LazyLock<Registry> = LazyLock::new(Registry::default);

/// Spawns a thread tracked by [`TRACKED`].
pub fn spawn_tracked<F>(builder: Builder, f: F) -> std::io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    TRACKED.spawn(builder, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn join_all_joins_what_ends_and_names_the_stragglers() {
        let registry = Registry::default();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        registry
            .spawn(Builder::new().name("quick".into()), || {})
            .unwrap();
        registry
            .spawn(Builder::new().name("t-stuck".into()), move || {
                let _ = release_rx.recv();
            })
            .unwrap();
        let stragglers = registry.join_all(Instant::now() + Duration::from_millis(300));
        assert_eq!(stragglers, ["t-stuck"]);
        assert!(registry.is_empty());
        drop(release_tx);
    }

    #[test]
    fn ended_threads_are_pruned_on_spawn() {
        let registry = Registry::default();
        for _ in 0..20 {
            registry
                .spawn(Builder::new().name("short".into()), || {})
                .unwrap();
            // Wait for it to end, so the next spawn prunes it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while registry
                .threads
                .lock()
                .unwrap()
                .iter()
                .any(|t| !t.handle.is_finished())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(registry.len(), 1);
        assert!(registry.join_all(Instant::now()).is_empty());
    }

    #[test]
    fn resource_errors_get_a_hint_others_none() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert!(resource_hint(&e(libc::EAGAIN)).contains("LimitNPROC"));
        assert!(resource_hint(&e(libc::EMFILE)).contains("LimitNOFILE"));
        assert!(resource_hint(&e(libc::ENFILE)).contains("LimitNOFILE"));
        assert_eq!(resource_hint(&e(libc::ENOENT)), "");
    }
}
