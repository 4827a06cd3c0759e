//! Shared watches: one Job watch and one Pod watch for the whole worker (per namespace),
//! selected by this worker's hash label, feeding a cache that task threads read. The Go worker
//! opens two watches per task; with 200 tasks that is 400 long-lived connections to the API
//! server, here it stays two.
//!
//! Each watch lists first (a consistent snapshot and its resourceVersion), then watches from
//! there with bookmarks, so a reconnect resumes without replaying history. `410 Gone`/`Expired`
//! (history compacted while we were away) means list again. Failures reopen with jittered
//! backoff. A task thread is woken when an object carrying its execution hash changes; it also
//! polls every 30 s on its own (the safety net), so a completion is never missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::Value;

use super::message::text;
use super::names::LABEL_EXECUTION_HASH;
use crate::http::Abort;
use crate::kube::{Client, query_escape};
use crate::link::backoff::{Backoff, Rng};

/// What one watch follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Jobs,
    Pods,
}

impl Resource {
    fn collection(self, ns: &str) -> String {
        match self {
            Resource::Jobs => format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            Resource::Pods => format!("/api/v1/namespaces/{ns}/pods"),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Resource::Jobs => "jobs",
            Resource::Pods => "pods",
        }
    }
}

#[derive(Default)]
struct Cache {
    jobs: HashMap<String, Value>,
    pods: HashMap<String, Value>,
}

impl Cache {
    fn map(&mut self, r: Resource) -> &mut HashMap<String, Value> {
        match r {
            Resource::Jobs => &mut self.jobs,
            Resource::Pods => &mut self.pods,
        }
    }
}

/// The shared watches and their cache.
pub struct Hub {
    client: Arc<Client>,
    namespace: String,
    selector: String,
    cache: Mutex<Cache>,
    subscribers: Mutex<HashMap<String, Sender<()>>>,
    stop: AtomicBool,
    closers: Mutex<Vec<Abort>>,
    /// Watch streams opened after the first one of each resource.
    pub reconnects: AtomicU64,
    /// Full relists after the first (410 Expired, errors).
    pub relists: AtomicU64,
    /// Server-side stream length (`timeoutSeconds`).
    timeout_seconds: u64,
}

fn execution_hash(obj: &Value) -> &str {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(LABEL_EXECUTION_HASH))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Hub {
    /// Starts the two watch threads.
    pub fn start(client: Arc<Client>, namespace: &str, selector: &str) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            client,
            namespace: namespace.to_owned(),
            selector: selector.to_owned(),
            cache: Mutex::new(Cache::default()),
            subscribers: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            closers: Mutex::new(Vec::new()),
            reconnects: AtomicU64::new(0),
            relists: AtomicU64::new(0),
            timeout_seconds: 290 + u64::from(std::process::id() % 60),
        });
        for r in [Resource::Jobs, Resource::Pods] {
            let h = Arc::clone(&hub);
            let spawned = std::thread::Builder::new()
                .name(format!("kube-watch-{}", r.name()))
                .stack_size(256 * 1024)
                .spawn(move || h.run(r));
            if let Err(e) = spawned {
                log::error!(
                    "kubernetes: cannot start the {} watch thread: {e}; tasks rely on the 30 s poll",
                    r.name()
                );
            }
        }
        hub
    }

    /// A hub without watch threads (`check`): the cache stays empty.
    pub fn idle(client: Arc<Client>, namespace: &str) -> Arc<Hub> {
        Arc::new(Hub {
            client,
            namespace: namespace.to_owned(),
            selector: String::new(),
            cache: Mutex::new(Cache::default()),
            subscribers: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(true),
            closers: Mutex::new(Vec::new()),
            reconnects: AtomicU64::new(0),
            relists: AtomicU64::new(0),
            timeout_seconds: 0,
        })
    }

    /// Stops the watch threads (at worker shutdown).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self
            .closers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            c.abort();
        }
    }

    /// Wakes on changes of objects labelled with `exec_hash`.
    pub fn subscribe(&self, exec_hash: &str) -> Receiver<()> {
        let (tx, rx) = bounded(1);
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(exec_hash.to_owned(), tx);
        rx
    }

    pub fn unsubscribe(&self, exec_hash: &str) {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(exec_hash);
    }

    pub fn job(&self, name: &str) -> Option<Value> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .get(name)
            .cloned()
    }

    /// Whether the cache holds this Job (without copying it).
    pub fn has_job(&self, name: &str) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .contains_key(name)
    }

    /// Every cached Job (re-attach walks them).
    pub fn jobs(&self) -> Vec<Value> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .values()
            .cloned()
            .collect()
    }

    pub fn pods(&self, exec_hash: &str) -> Vec<Value> {
        let mut pods: Vec<Value> = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pods
            .values()
            .filter(|p| execution_hash(p) == exec_hash)
            .cloned()
            .collect();
        pods.sort_by(|a, b| text(a, "/metadata/name").cmp(text(b, "/metadata/name")));
        pods
    }

    /// Stores an object the task thread fetched itself (safety poll), so the cache never goes
    /// backwards relative to what a task saw.
    pub fn remember(&self, r: Resource, obj: &Value) {
        let name = text(obj, "/metadata/name").to_owned();
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let map = c.map(r);
        // resourceVersions are opaque in principle and etcd revisions in practice; an
        // unparsable one reads as 0, so the fetched object wins.
        let newer = map.get(&name).is_none_or(|old| rv_of(old) <= rv_of(obj));
        if newer {
            map.insert(name, obj.clone());
        }
    }

    fn notify(&self, exec_hash: &str) {
        let subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = subs.get(exec_hash) {
            let _ = tx.try_send(());
        }
    }

    fn notify_all(&self) {
        for tx in self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            let _ = tx.try_send(());
        }
    }

    /// True once [`Hub::stop`] ran (the worker is shutting down).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Lists, then watches from the list's resourceVersion, until stopped.
    fn run(self: Arc<Self>, r: Resource) {
        let mut backoff = Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Rng::from_entropy(),
        );
        let mut first_list = true;
        let mut first_watch = true;
        'relist: while !self.stopped() {
            if !first_list {
                self.relists.fetch_add(1, Ordering::Relaxed);
            }
            first_list = false;
            let mut rv = match self.list(r) {
                Ok(rv) => rv,
                Err(e) => {
                    let d = backoff.next_delay();
                    log::warn!(
                        "kubernetes: listing {} failed: {e}; retrying in {d:?}",
                        r.name()
                    );
                    self.sleep(d);
                    continue;
                }
            };
            while !self.stopped() {
                let target = format!(
                    "{}?watch=true&allowWatchBookmarks=true&labelSelector={}&resourceVersion={}&timeoutSeconds={}",
                    r.collection(&self.namespace),
                    query_escape(&self.selector),
                    query_escape(&rv),
                    self.timeout_seconds
                );
                if !first_watch {
                    self.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                first_watch = false;
                let mut stream = match self.client.watch(&target) {
                    Ok(s) => s,
                    Err(e) => {
                        let d = backoff.next_delay();
                        if e.status() == Some(410) {
                            continue 'relist;
                        }
                        log::warn!(
                            "kubernetes: opening the {} watch failed: {e}; relisting in {d:?}",
                            r.name()
                        );
                        self.sleep(d);
                        continue 'relist;
                    }
                };
                self.closers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(stream.abort_handle());
                if self.stopped() {
                    return;
                }
                loop {
                    match stream.next_event() {
                        Ok(Some(ev)) => {
                            backoff.reset();
                            match ev.kind.as_str() {
                                "BOOKMARK" => {
                                    let v = text(&ev.object, "/metadata/resourceVersion");
                                    if !v.is_empty() {
                                        rv = v.to_owned();
                                    }
                                }
                                "ERROR" => {
                                    let code = ev.object["code"].as_u64().unwrap_or(0);
                                    let msg = text(&ev.object, "/message").to_owned();
                                    if code == 410 {
                                        log::debug!(
                                            "kubernetes: {} watch expired ({msg}); relisting",
                                            r.name()
                                        );
                                    } else {
                                        log::warn!(
                                            "kubernetes: {} watch error {code}: {msg}; relisting",
                                            r.name()
                                        );
                                        self.sleep(backoff.next_delay());
                                    }
                                    self.drop_closers();
                                    continue 'relist;
                                }
                                kind => {
                                    let v = text(&ev.object, "/metadata/resourceVersion");
                                    if !v.is_empty() {
                                        rv = v.to_owned();
                                    }
                                    self.apply(r, kind, ev.object);
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            if !self.stopped() {
                                log::debug!("kubernetes: {} watch stream ended: {e}", r.name());
                                self.sleep(backoff.next_delay());
                            }
                            break;
                        }
                    }
                }
                self.drop_closers();
            }
        }
    }

    fn drop_closers(&self) {
        self.closers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn sleep(&self, d: Duration) {
        let end = std::time::Instant::now() + d;
        while !self.stopped() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
    }

    fn apply(&self, r: Resource, kind: &str, obj: Value) {
        let name = text(&obj, "/metadata/name").to_owned();
        let hash = execution_hash(&obj).to_owned();
        {
            let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let map = c.map(r);
            if kind == "DELETED" {
                map.remove(&name);
            } else {
                map.insert(name, obj);
            }
        }
        self.notify(&hash);
    }

    /// Replaces the cache of `r` with a fresh list; returns its resourceVersion.
    fn list(&self, r: Resource) -> Result<String, String> {
        let target = format!(
            "{}?labelSelector={}",
            r.collection(&self.namespace),
            query_escape(&self.selector)
        );
        let body = self.client.get_ok(&target).map_err(|e| e.to_string())?;
        let rv = text(&body, "/metadata/resourceVersion").to_owned();
        let items = body["items"].as_array().cloned().unwrap_or_default();
        {
            let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let map = c.map(r);
            map.clear();
            for i in items {
                map.insert(text(&i, "/metadata/name").to_owned(), i);
            }
        }
        self.notify_all();
        Ok(rv)
    }
}

fn rv_of(v: &Value) -> u64 {
    text(v, "/metadata/resourceVersion").parse().unwrap_or(0)
}
