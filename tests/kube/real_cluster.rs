//! Opt-in run against a real cluster: `OZ_TEST_KUBECONFIG=/path/to/kubeconfig cargo test
//! real_cluster -- --ignored` (namespace from `OZ_TEST_NAMESPACE`, default `default`). It runs
//! `check` (version, namespace, one access review per verb) and the daemon's startup, whose
//! preflight Job must be admitted and deleted before the worker connects to the fake Oz server.
//! Ignored by default: no real API server can be had in CI.

use crate::support::harness::{TestDir, WorkerCommand};
use crate::support::oz_server::OzServer;
use crate::worker::{API_KEY, T};

#[test]
#[ignore = "needs a real cluster: set OZ_TEST_KUBECONFIG and run with --ignored"]
fn real_cluster_check_and_preflight() {
    let kubeconfig = std::env::var("OZ_TEST_KUBECONFIG")
        .expect("set OZ_TEST_KUBECONFIG to a kubeconfig for a test cluster");
    let ns = std::env::var("OZ_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let dir = TestDir::new("real-cluster");
    let cfg = dir.write(
        "config.yaml",
        &format!(
            "worker_id: oz-real-cluster-test\nbackend:\n  kubernetes:\n    namespace: {ns}\n    kubeconfig: {kubeconfig}\n"
        ),
    );
    let out = WorkerCommand::new(&dir)
        .args(["check", "--config-file"])
        .arg(cfg.display().to_string())
        .run();
    out.expect_code(0);
    assert!(
        out.stdout.contains("Kubernetes API server reachable"),
        "{}",
        out.dump()
    );

    let oz = OzServer::start();
    let mut w = WorkerCommand::new(&dir)
        .args(["--config-file", &cfg.display().to_string()])
        .args(["--web-socket-url", &oz.url()])
        .args(["--api-key", API_KEY])
        .spawn();
    w.wait_for_log("startup preflight Job", T);
    w.wait_for_log("Connected to Oz", T);
    w.signal(libc::SIGTERM);
    w.wait(T);
}
