//! Live task-log export of a task pod's containers (`upstream-newer.md` §4, "What is streamed"):
//! once a container has started (running or terminated), one thread follows
//! `pods/<pod>/log?container=<c>&follow=true` and forwards each output line as a
//! `pod.<container>` record through the task's [`LineSink`].
//!
//! Bounds: at most [`MAX_FOLLOWS`] containers per task, each followed once (keyed by pod UID
//! and container name, so a watch re-delivery or a relist opens nothing new), never
//! reconnected after the stream ends. A line over [`MAX_LINE`] bytes is dropped whole (a cut
//! credential cannot leak); the last unterminated line is forwarded when the stream ends. At
//! task end [`Follows::close`] waits at most [`DRAIN`] for the streams to end on their own
//! (the container has exited, its last lines are in flight), then aborts the rest; on
//! cancellation or worker shutdown it aborts at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

use super::message::text;
use crate::http::Abort;
use crate::kube::{Client, query_escape};
use crate::reporting::{LineSink, TaskReport};

/// Containers followed per task at most (init containers included).
pub const MAX_FOLLOWS: usize = 64;
/// Longest output line forwarded; a longer one is dropped whole.
pub const MAX_LINE: usize = 64 * 1024;
/// How long a finished task waits for its streams to end on their own.
pub const DRAIN: Duration = Duration::from_secs(2);
/// How long aborted streams get to return before their threads are left to end alone.
const ABORTED: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 16 * 1024;

/// Splits a byte stream into lines at `\n` (a trailing `\r` is dropped), decoded lossily.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
    /// The current line outgrew [`MAX_LINE`]: skip to its end.
    dropping: bool,
}

impl Lines {
    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(&str)) {
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.dropping {
                self.dropping = false;
            } else if self.pending.len() + pos <= MAX_LINE {
                self.pending.extend_from_slice(&rest[..pos]);
                emit_line(&self.pending, emit);
            }
            self.pending.clear();
            rest = &rest[pos + 1..];
        }
        if self.dropping {
            return;
        }
        if self.pending.len() + rest.len() > MAX_LINE {
            self.pending.clear();
            self.dropping = true;
        } else {
            self.pending.extend_from_slice(rest);
        }
    }

    /// The stream ended: its last line, if unterminated and not being dropped.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.dropping && !self.pending.is_empty() {
            emit_line(&self.pending, emit);
        }
        self.pending.clear();
        self.dropping = false;
    }
}

fn emit_line(line: &[u8], emit: &mut dyn FnMut(&str)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    emit(&String::from_utf8_lossy(line));
}

/// The containers of `pod` that have started (running or terminated), init containers first.
pub fn started_containers(pod: &Value) -> Vec<&str> {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter(|s| {
            let state = &s["state"];
            state.get("running").is_some() || state.get("terminated").is_some()
        })
        .map(|s| text(s, "/name"))
        .filter(|n| !n.is_empty())
        .collect()
}

struct Follow {
    handle: JoinHandle<()>,
    abort: Abort,
}

/// One task's container follows.
pub(super) struct Follows {
    client: Arc<Client>,
    namespace: String,
    task: String,
    /// (pod UID, container) of every follow started, and whether its stream could not be
    /// opened (the container's output was then not forwarded).
    started: Vec<((String, String), Arc<AtomicBool>)>,
    keys: HashSet<(String, String)>,
    follows: Vec<Follow>,
    /// Each thread holds a clone; all gone = every follow ended.
    done_tx: Option<Sender<()>>,
    done_rx: Receiver<()>,
    refused: bool,
}

impl Follows {
    pub(super) fn new(client: Arc<Client>, namespace: &str, task: &str) -> Follows {
        let (done_tx, done_rx) = crossbeam_channel::bounded(0);
        Follows {
            client,
            namespace: namespace.to_owned(),
            task: task.to_owned(),
            started: Vec::new(),
            keys: HashSet::new(),
            follows: Vec::new(),
            done_tx: Some(done_tx),
            done_rx,
            refused: false,
        }
    }

    /// Starts a follow for every started container of `pod` not followed yet.
    pub(super) fn observe(&mut self, pod: &Value, report: &TaskReport) {
        let pod_name = text(pod, "/metadata/name");
        if pod_name.is_empty() {
            return;
        }
        let uid = match text(pod, "/metadata/uid") {
            "" => pod_name,
            uid => uid,
        };
        for container in started_containers(pod) {
            let key = (uid.to_owned(), container.to_owned());
            if self.keys.contains(&key) {
                continue;
            }
            if self.keys.len() >= MAX_FOLLOWS {
                if !self.refused {
                    self.refused = true;
                    log::warn!(
                        "Task {}: more than {MAX_FOLLOWS} containers; the output of the others is not exported",
                        self.task
                    );
                }
                return;
            }
            self.keys.insert(key.clone());
            let failed = Arc::new(AtomicBool::new(false));
            self.started.push((key, Arc::clone(&failed)));
            self.spawn(pod_name, container, report.lines(), failed);
        }
    }

    fn spawn(&mut self, pod: &str, container: &str, sink: LineSink, failed: Arc<AtomicBool>) {
        let Some(done) = self.done_tx.clone() else {
            return;
        };
        let target = format!(
            "/api/v1/namespaces/{}/pods/{pod}/log?container={}&follow=true&timestamps=false",
            self.namespace,
            query_escape(container)
        );
        let abort = Abort::new();
        let job = Job {
            client: Arc::clone(&self.client),
            target,
            abort: abort.clone(),
            source: format!("pod.{container}"),
            pod: pod.to_owned(),
            container: container.to_owned(),
            task: self.task.clone(),
            failed: Arc::clone(&failed),
        };
        let spawned = std::thread::Builder::new()
            .name(crate::threads::thread_name("pl-", &self.task))
            // As the watch threads: a TLS handshake or a credential refresh may run here.
            .stack_size(256 * 1024)
            .spawn(move || {
                let _done = done;
                job.run(&sink);
            });
        match spawned {
            Ok(handle) => self.follows.push(Follow { handle, abort }),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                log::warn!(
                    "Task {}: cannot start a thread to follow container {container}: {e}{}",
                    self.task,
                    crate::threads::resource_hint(&e)
                );
            }
        }
    }

    /// True when a follow of `container` in the pod with `uid` (or `pod_name` when the UID is
    /// unknown) forwards its output, so a failed pod's fetched log is not exported twice.
    pub(super) fn covers(&self, uid: &str, pod_name: &str, container: &str) -> bool {
        let key_pod = if uid.is_empty() { pod_name } else { uid };
        self.started.iter().any(|((p, c), failed)| {
            p == key_pod && c == container && !failed.load(Ordering::Relaxed)
        })
    }

    /// Ends every follow: waits at most [`DRAIN`] for the streams to end on their own unless
    /// `at_once` (cancellation, shutdown), then aborts the rest. Every [`LineSink`] is gone
    /// when this returns (unless a thread could not be stopped, which is logged).
    pub(super) fn close(mut self, at_once: bool) {
        self.done_tx = None;
        if self.follows.is_empty() {
            return;
        }
        let drained = !at_once && wait_all(&self.done_rx, Instant::now() + DRAIN);
        if !drained {
            for f in &self.follows {
                f.abort.abort();
            }
            if !wait_all(&self.done_rx, Instant::now() + ABORTED) {
                log::warn!(
                    "Task {}: a container log follow did not stop when aborted; leaving it",
                    self.task
                );
            }
        }
        for f in self.follows.drain(..) {
            if f.handle.is_finished() {
                let _ = f.handle.join();
            }
        }
    }
}

impl Drop for Follows {
    /// A task thread unwinding: end the streams without waiting.
    fn drop(&mut self) {
        for f in &self.follows {
            f.abort.abort();
        }
    }
}

/// True when every thread holding a clone of the sender has ended by `deadline`.
fn wait_all(rx: &Receiver<()>, deadline: Instant) -> bool {
    loop {
        match rx.recv_deadline(deadline) {
            Ok(()) => {}
            Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

/// One follow, run on its own thread.
struct Job {
    client: Arc<Client>,
    target: String,
    abort: Abort,
    source: String,
    pod: String,
    container: String,
    task: String,
    failed: Arc<AtomicBool>,
}

impl Job {
    fn run(&self, sink: &LineSink) {
        let mut stream = match self.client.follow_log(&self.target, &self.abort) {
            Ok(s) => s,
            Err(e) => {
                self.failed.store(true, Ordering::Relaxed);
                if !self.abort.is_aborted() {
                    log::warn!(
                        "Task {}: cannot follow the output of container {} of pod {}: {e}",
                        self.task,
                        self.container,
                        self.pod
                    );
                }
                return;
            }
        };
        let attributes = [
            ("k8s.container.name", self.container.as_str()),
            ("k8s.pod.name", self.pod.as_str()),
        ];
        let mut emit = |line: &str| sink.line(&self.source, &attributes, line);
        let mut lines = Lines::default();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    // The container ended: its last line is whole even without a newline.
                    lines.finish(&mut emit);
                    return;
                }
                Ok(n) => lines.push(&buf[..n], &mut emit),
                Err(e) => {
                    // A partial line cut by an abort or a broken connection is not forwarded:
                    // it may hold the first half of a secret.
                    if !self.abort.is_aborted() {
                        log::warn!(
                            "Task {}: the output stream of container {} of pod {} failed: {e}",
                            self.task,
                            self.container,
                            self.pod
                        );
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn split(chunks: &[&[u8]], finish: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = Lines::default();
        let mut emit = |l: &str| out.push(l.to_owned());
        for c in chunks {
            lines.push(c, &mut emit);
        }
        if finish {
            lines.finish(&mut emit);
        }
        out
    }

    #[test]
    fn lines_split_on_newlines_across_chunks_and_flush_the_last() {
        assert_eq!(
            split(&[b"a\nb", b"c\r\n\n", b"tail"], true),
            ["a", "bc", "", "tail"]
        );
        assert_eq!(split(&[b"a\nb"], false), ["a"]);
        assert_eq!(split(&[b"\xff\n"], true), ["\u{fffd}"]);
    }

    #[test]
    fn a_line_over_the_limit_is_dropped_whole_wherever_it_is_cut() {
        let long = vec![b'x'; MAX_LINE + 1];
        let exact = vec![b'y'; MAX_LINE];
        // In one chunk, in pieces, and as the unterminated last line.
        let mut one = long.clone();
        one.extend_from_slice(b"\nnext\n");
        assert_eq!(split(&[&one], true), ["next"]);
        let (a, b) = long.split_at(40_000);
        assert_eq!(split(&[a, b, b"\nnext"], true), ["next"]);
        assert_eq!(split(&[b"ok\n", &long], true), ["ok"]);
        // A line of exactly the limit passes.
        let mut at = exact.clone();
        at.push(b'\n');
        assert_eq!(split(&[&at], true)[0].len(), MAX_LINE);
    }

    #[test]
    fn started_containers_are_running_or_terminated_init_first() {
        let pod = json!({"status": {
            "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 0}}},
                {"name": "copy", "state": {"waiting": {"reason": "PodInitializing"}}},
            ],
            "containerStatuses": [
                {"name": "task", "state": {"running": {}}},
                {"name": "side", "state": {"waiting": {}}},
                {"state": {"running": {}}},
            ],
        }});
        assert_eq!(started_containers(&pod), ["setup", "task"]);
        assert!(started_containers(&json!({})).is_empty());
    }
}
