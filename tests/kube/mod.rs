//! The Kubernetes API simulator checked with the real `kubectl`, the `kube` client against the
//! simulator, and the Kubernetes backend end to end through the binary.

use std::path::{Path, PathBuf};

use crate::support::harness::{TestDir, Worker, WorkerCommand};
use crate::support::kube_sim::KubeSim;
use crate::support::oz_server::OzServer;
use crate::worker::{API_KEY, T};

mod backend;
mod live_logs;
mod operations;
mod outcomes;
mod real_cluster;
mod reporting;
mod resilience;
mod simulator;

/// The config file of a worker on the simulator's namespace `agents`; `extra` is appended to
/// the `backend.kubernetes` block (indent it four spaces).
fn config(dir: &TestDir, sim: &KubeSim, worker_id: &str, extra: &str) -> PathBuf {
    let kc = sim.kubeconfig(&dir.path, None);
    dir.write(
        "config.yaml",
        &format!(
            "worker_id: {worker_id}\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n{extra}",
            kc.display()
        ),
    )
}

/// The worker every end-to-end test starts from: its config, the fake Oz, the API key and a
/// 2 s shutdown deadline.
fn worker(dir: &TestDir, oz: &OzServer, config: &Path) -> WorkerCommand {
    WorkerCommand::new(dir)
        .args(["--config-file", &config.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .args(["--api-key", API_KEY])
        .env("OZ_WORKER_SHUTDOWN_TIMEOUT", "2s")
}

/// [`worker`] with `flags`, started and connected to Oz.
fn start_with(dir: &TestDir, oz: &OzServer, config: &Path, flags: &[&str]) -> Worker {
    let mut w = worker(dir, oz, config).args(flags.iter().copied()).spawn();
    w.wait_for_log("Connected to Oz", T);
    w
}
