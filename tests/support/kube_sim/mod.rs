//! A Kubernetes API server simulator on 127.0.0.1 that speaks the real wire format: REST for
//! Jobs, Pods, pods/log, Events (core v1 and events.k8s.io/v1), `/version`, legacy discovery and
//! SelfSubjectAccessReview; chunked watch streams with resourceVersion, bookmarks,
//! timeoutSeconds and `410 Expired` after compaction; `Status` bodies for errors; plain HTTP or
//! TLS with client-certificate auth; bearer tokens that expire; scripted pod lifecycles.
//!
//! ```ignore
//! let sim = KubeSim::start();                       // or KubeSim::start_tls(..)
//! sim.script("sim/exit-3", vec![Step::Running(ms(100)), Step::Exit{code: 3, ..}]);
//! let kubeconfig = sim.kubeconfig(&dir);            // a kubeconfig file pointing at it
//! sim.wait_until(T, |s| s.jobs().is_empty());
//! sim.compact(); sim.cut_watches();
//! ```

#![allow(dead_code)]

mod api;
mod lifecycle;
mod logs;
mod serve;
mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use serde_json::Value;

pub use lifecycle::Step;
pub use logs::Out;
pub use store::Kind;

use lifecycle::Run;
use store::Store;

/// One request the simulator saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub watch: bool,
    /// The `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// Impersonation headers seen.
    pub impersonate: Vec<(String, String)>,
    pub client_cert: bool,
    pub status: u16,
    pub body: Value,
}

impl Seen {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A fault the next matching requests get instead of their answer.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Substring of `METHOD path` (e.g. "POST /apis/batch").
    pub matching: String,
    pub count: usize,
    /// `None` = reset the connection without answering.
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
}

/// How clients must authenticate.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    #[default]
    Anyone,
    /// Bearer tokens, each valid until its instant (or forever); a client certificate also passes.
    Tokens(Vec<(String, Option<Instant>)>),
}

/// The simulator's whole state (tests read it through [`KubeSim::state`]).
pub struct State {
    pub store: Store,
    pub seen: Vec<Seen>,
    pub scripts: BTreeMap<String, Vec<Step>>,
    pub default_script: Vec<Step>,
    pub runs: Vec<Run>,
    pub auth: Auth,
    /// (verb, resource) pairs the caller is not allowed, e.g. ("create", "jobs").
    pub forbidden: BTreeSet<(String, String)>,
    /// A validating-admission denial for Job creation.
    pub deny_jobs: Option<String>,
    pub faults: VecDeque<Fault>,
    pub open_watches: usize,
    pub max_open_watches: usize,
    /// Bumped by `cut_watches`: every open watch ends.
    pub watch_generation: u64,
    pub bookmark_every: Duration,
    pub namespaces: BTreeSet<String>,
    /// A pod's whole log (by pod name), overriding any output script.
    pub logs: BTreeMap<String, String>,
    /// Output scripts by (task image, container).
    pub outputs: BTreeMap<(String, String), Vec<Out>>,
    /// Containers that started, by (pod, container).
    pub lives: BTreeMap<(String, String), logs::Life>,
    /// How long a deleted pod's containers keep running (and their follows open).
    pub termination_grace: Duration,
    pub open_log_streams: usize,
    pub max_open_log_streams: usize,
}

impl State {
    pub fn jobs(&self) -> Vec<Value> {
        self.store.list(Kind::Job, "")
    }
    pub fn pods(&self) -> Vec<Value> {
        self.store.list(Kind::Pod, "")
    }
    pub fn requests(&self, method: &str, path_contains: &str) -> Vec<&Seen> {
        self.seen
            .iter()
            .filter(|s| s.method == method && s.path.contains(path_contains))
            .collect()
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub changed: Condvar,
    pub stop: AtomicBool,
    pub tls: Option<Arc<ServerConfig>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Test PKI for a TLS simulator: CA, server certificate, and a client certificate.
pub struct SimPki {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

pub struct KubeSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    pki: Option<SimPki>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl KubeSim {
    /// A plain-HTTP simulator (as behind `kubectl proxy`).
    pub fn start() -> KubeSim {
        Self::start_with(None, None)
    }

    /// A TLS simulator that also accepts client certificates signed by its CA.
    pub fn start_tls() -> KubeSim {
        let (cfg, pki) = tls_config();
        Self::start_with(Some(cfg), Some(pki))
    }

    fn start_with(tls: Option<Arc<ServerConfig>>, pki: Option<SimPki>) -> KubeSim {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind simulator");
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                store: Store::default(),
                seen: Vec::new(),
                scripts: BTreeMap::new(),
                default_script: vec![Step::Pending(ms(50)), Step::Running(ms(200)), Step::exit(0)],
                runs: Vec::new(),
                auth: Auth::Anyone,
                forbidden: BTreeSet::new(),
                deny_jobs: None,
                faults: VecDeque::new(),
                open_watches: 0,
                max_open_watches: 0,
                watch_generation: 0,
                bookmark_every: ms(500),
                namespaces: ["default".to_owned(), "agents".to_owned()].into(),
                logs: BTreeMap::new(),
                outputs: BTreeMap::new(),
                lives: BTreeMap::new(),
                termination_grace: Duration::from_secs(30),
                open_log_streams: 0,
                max_open_log_streams: 0,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            tls,
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("kube-sim-accept".into())
                .spawn(move || api::accept_loop(listener, shared))
                .expect("spawn")
        };
        let controller = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("kube-sim-controller".into())
                .spawn(move || {
                    while !shared.stop.load(Ordering::SeqCst) {
                        {
                            let mut st = shared.lock();
                            let State { runs, store, .. } = &mut *st;
                            let before = store.rv;
                            for r in runs.iter_mut() {
                                r.tick(store);
                            }
                            runs.retain(|r| !r.done);
                            logs::observe(&mut st);
                            if st.store.rv != before {
                                shared.changed.notify_all();
                            }
                        }
                        std::thread::sleep(ms(10));
                    }
                })
                .expect("spawn")
        };
        KubeSim {
            shared,
            addr,
            pki,
            threads: vec![accept, controller],
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pki(&self) -> Option<&SimPki> {
        self.pki.as_ref()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Runs `f` on the state and wakes watches (for changes made by the test).
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.shared.lock());
        self.shared.changed.notify_all();
        r
    }

    /// The pod script for Jobs whose task container has this image.
    pub fn script(&self, image: &str, steps: Vec<Step>) {
        self.with(|s| s.scripts.insert(image.to_owned(), steps));
    }

    /// What `container` of the pods of Jobs with task image `image` writes, piece by piece
    /// (see [`Out`]).
    pub fn output(&self, image: &str, container: &str, pieces: Vec<Out>) {
        self.with(|s| {
            s.outputs
                .insert((image.to_owned(), container.to_owned()), pieces)
        });
    }

    /// Ends the current step of every scripted pod that holds forever (`Running(MAX)`), so
    /// a test decides when a container exits.
    pub fn release(&self) {
        self.with(|s| {
            for r in &mut s.runs {
                if let Some(step @ Step::Running(_)) = r.steps.get_mut(r.index) {
                    *step = Step::Running(Duration::ZERO);
                }
            }
        });
    }

    pub fn fault(
        &self,
        matching: &str,
        count: usize,
        status: Option<u16>,
        retry_after: Option<u64>,
    ) {
        self.with(|s| {
            s.faults.push_back(Fault {
                matching: matching.to_owned(),
                count,
                status,
                retry_after,
            })
        });
    }

    /// Ends every open watch stream (the server side closes them).
    pub fn cut_watches(&self) {
        self.with(|s| s.watch_generation += 1);
    }

    /// Drops the event history: resuming a watch from an older resourceVersion gets 410.
    pub fn compact(&self) {
        self.with(|s| s.store.compact());
    }

    /// Waits until `pred` holds; panics with the request log after `timeout`.
    pub fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&State) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if pred(&st) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                let log: Vec<String> = st
                    .seen
                    .iter()
                    .map(|s| format!("{} {} {:?} -> {}", s.method, s.path, s.query, s.status))
                    .collect();
                panic!(
                    "simulator condition not met within {timeout:?}\nrequests:\n{}\njobs: {:#?}",
                    log.join("\n"),
                    st.jobs()
                );
            }
            let left = (deadline - now).min(ms(50));
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Writes a kubeconfig for this simulator (token auth when given) and returns its path.
    pub fn kubeconfig(&self, dir: &Path, token: Option<&str>) -> PathBuf {
        let mut user = String::new();
        if let Some(t) = token {
            user.push_str(&format!("    token: {t}\n"));
        }
        if user.is_empty() {
            user.push_str("    {}\n");
        }
        let ca = match &self.pki {
            Some(p) => {
                let path = dir.join("sim-ca.pem");
                std::fs::write(&path, &p.ca_pem).expect("write CA");
                format!("    certificate-authority: {}\n", path.display())
            }
            None => String::new(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\n{ca}users:\n- name: sim\n  user:\n{user}contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\n",
            self.url()
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn tls_config() -> (Arc<ServerConfig>, SimPki) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kube-sim CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "kubernetes.default.svc".to_owned(),
        "127.0.0.1".to_owned(),
    ])
    .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).expect("leaf");
    let client_key = KeyPair::generate().expect("client key");
    let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client
        .distinguished_name
        .push(DnType::CommonName, "oz-worker");
    let client_cert = client
        .signed_by(&client_key, &ca_cert, &ca_key)
        .expect("client cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_cert.der().to_vec()))
        .expect("add CA");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .allow_unauthenticated()
    .build()
    .expect("client verifier");
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(leaf_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server config");
    (
        Arc::new(cfg),
        SimPki {
            ca_pem: ca_cert.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        },
    )
}
