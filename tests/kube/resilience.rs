//! The Kubernetes backend under the failures a long-running worker meets: watches cut while
//! history is compacted, a rotated service-account token, an exec-plugin token that expires in
//! seconds, transient API errors; and `check`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::harness::{TestDir, WorkerCommand};
use crate::support::kube_sim::{Auth, KubeSim, Step, ms};
use crate::support::oz_server::OzServer;
use crate::worker::{API_KEY, T, assignment, expect};

use super::worker;

fn assign(oz: &OzServer, id: &str, image: &str) {
    let mut a = assignment(id, Some(&format!("{id}-x")), json!({}));
    a["data"]["docker_image"] = json!(image);
    oz.push_json(&a).unwrap();
}

fn slow(ms_running: u64) -> Vec<Step> {
    vec![Step::Running(ms(ms_running)), Step::exit(0)]
}

#[test]
fn a_completion_survives_cut_watches_compaction_and_transient_errors() {
    let dir = TestDir::new("e2e-kube-cut");
    let sim = KubeSim::start();
    sim.script("sim/slow", slow(1500));
    let oz = OzServer::start();
    let kc = sim.kubeconfig(&dir.path, None);
    let cfg = dir.write(
        "config.yaml",
        &format!("worker_id: kube-cut\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n", kc.display()),
    );
    let mut w = worker(&dir, &oz, &cfg).spawn();
    w.wait_for_log("Connected to Oz", T);
    assign(&oz, "t-cut", "sim/slow");
    sim.wait_until(T, |s| {
        s.pods().iter().any(|p| p["status"]["phase"] == "Running")
    });
    let lists_before = sim
        .state()
        .seen
        .iter()
        .filter(|s| !s.watch && s.method == "GET" && s.path.ends_with("/jobs"))
        .count();
    // History is compacted and every watch is cut at once: resuming from the old
    // resourceVersion gets 410 Expired, so the worker must list again.
    sim.compact();
    sim.cut_watches();
    // The next two Job DELETEs meet a 503 with Retry-After, then succeed.
    sim.fault(
        "DELETE /apis/batch/v1/namespaces/agents/jobs/oz-task-t-cut",
        2,
        Some(503),
        Some(1),
    );
    expect(&oz, "task_completed", "t-cut");
    sim.wait_until(T, |s| s.jobs().is_empty());
    let st = sim.state();
    let lists_after = st
        .seen
        .iter()
        .filter(|s| !s.watch && s.method == "GET" && s.path.ends_with("/jobs"))
        .count();
    assert!(lists_after > lists_before, "no relist after 410 Expired");
    let deletes: Vec<u16> = st
        .requests("DELETE", "/jobs/oz-task-t-cut")
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(deletes, vec![503, 503, 200]);
    drop(st);
    w.signal(libc::SIGTERM);
    w.wait(T);
}

#[test]
fn rotated_service_account_token_keeps_an_in_cluster_worker_working() {
    let dir = TestDir::new("e2e-kube-incluster");
    let sim = KubeSim::start_tls();
    let expires = Instant::now() + Duration::from_secs(3);
    sim.with(|s| s.auth = Auth::Tokens(vec![("sa-token-1".into(), Some(expires))]));
    sim.script("sim/slow", slow(5000));
    // The kubelet's projected-token layout: token -> ..data/token, ..data -> timestamped dir.
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(sa.join("v1")).unwrap();
    std::fs::write(sa.join("v1/token"), "sa-token-1").unwrap();
    std::fs::write(sa.join("v1/ca.crt"), &sim.pki().unwrap().ca_pem).unwrap();
    std::os::unix::fs::symlink("v1", sa.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", sa.join("token")).unwrap();
    std::os::unix::fs::symlink("..data/ca.crt", sa.join("ca.crt")).unwrap();
    let cfg = dir.write(
        "config.yaml",
        "worker_id: kube-sa\nbackend:\n  kubernetes:\n    namespace: agents\n",
    );
    let oz = OzServer::start();
    let mut w = worker(&dir, &oz, &cfg)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", sim.addr().port().to_string())
        .env("OZ_WORKER_KUBERNETES_SERVICEACCOUNT_DIR", &sa)
        .spawn();
    w.wait_for_log("Connected to Oz", T);
    assert!(
        w.stderr().contains("in-cluster service account"),
        "{}",
        w.dump()
    );
    assign(&oz, "t-sa", "sim/slow");
    sim.wait_until(T, |s| {
        !s.jobs().iter().all(|j| {
            j["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("oz-preflight")
        })
    });
    // Rotation: the kubelet writes a new token and swaps ..data; the old one then expires.
    sim.with(|s| {
        if let Auth::Tokens(t) = &mut s.auth {
            t.push(("sa-token-2".into(), None));
        }
    });
    std::fs::create_dir_all(sa.join("v2")).unwrap();
    std::fs::write(sa.join("v2/token"), "sa-token-2").unwrap();
    std::fs::write(sa.join("v2/ca.crt"), &sim.pki().unwrap().ca_pem).unwrap();
    std::os::unix::fs::symlink("v2", sa.join("..data_tmp")).unwrap();
    std::fs::rename(sa.join("..data_tmp"), sa.join("..data")).unwrap();
    expect(&oz, "task_completed", "t-sa");
    sim.wait_until(T, |s| s.jobs().is_empty());
    let st = sim.state();
    assert!(
        st.seen
            .iter()
            .any(|s| s.authorization.as_deref() == Some("Bearer sa-token-2"))
    );
    let log = w.stderr();
    assert!(!log.contains("sa-token-"), "a token reached the log");
    drop(st);
    w.signal(libc::SIGTERM);
    w.wait(T);
}

#[test]
fn an_exec_plugin_token_that_expires_in_seconds_is_renewed() {
    let dir = TestDir::new("e2e-kube-exec");
    let sim = KubeSim::start_tls();
    let first_expires = Instant::now() + Duration::from_secs(3);
    sim.with(|s| {
        s.auth = Auth::Tokens(
            (1..50)
                .map(|n| (format!("exec-token-{n}"), (n == 1).then_some(first_expires)))
                .collect(),
        )
    });
    sim.script("sim/slow", slow(5000));
    let count = dir.join("plugin-runs");
    let plugin = dir.write(
        "plugin.sh",
        &format!(
            "#!/bin/sh\necho run >> {c}\nn=$(wc -l < {c} | tr -d ' ')\nexp=$(date -u -d @$(( $(date +%s) + 3 )) +%Y-%m-%dT%H:%M:%SZ)\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"exec-token-%s\",\"expirationTimestamp\":\"%s\"}}}}' \"$n\" \"$exp\"\n",
            c = count.display()
        ),
    );
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ca = dir.write("ca.pem", &sim.pki().unwrap().ca_pem);
    let kc = dir.write(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: s\n  cluster:\n    server: {}\n    certificate-authority: {}\n    tls-server-name: kubernetes.default.svc\ncontexts:\n- name: c\n  context: {{cluster: s, user: u}}\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
            sim.url(),
            ca.display(),
            plugin.display()
        ),
    );
    let cfg = dir.write(
        "config.yaml",
        &format!("worker_id: kube-exec\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n", kc.display()),
    );
    let oz = OzServer::start();
    let mut w = worker(&dir, &oz, &cfg).spawn();
    w.wait_for_log("Connected to Oz", T);
    assign(&oz, "t-exec", "sim/slow");
    expect(&oz, "task_completed", "t-exec");
    sim.wait_until(T, |s| s.jobs().is_empty());
    let runs = std::fs::read_to_string(&count).unwrap().lines().count();
    assert!(runs >= 2, "the plugin ran {runs} time(s)");
    assert!(
        !w.stderr().contains("exec-token-"),
        "a token reached the log"
    );
    w.signal(libc::SIGTERM);
    w.wait(T);
}

#[test]
fn check_reports_source_version_and_rbac() {
    let dir = TestDir::new("e2e-kube-check");
    let sim = KubeSim::start();
    sim.with(|s| {
        s.forbidden.insert(("patch".into(), "jobs".into()));
    });
    let kc = sim.kubeconfig(&dir.path, None);
    let cfg = dir.write(
        "config.yaml",
        &format!("worker_id: kube-check\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n", kc.display()),
    );
    let out = WorkerCommand::new(&dir)
        .args(["check", "--offline", "--api-key", API_KEY, "--config-file"])
        .arg(cfg.display().to_string())
        .run();
    out.expect_code(1);
    assert!(out.stdout.contains("(context sim)"), "{}", out.dump());
    assert!(out.stdout.contains("v1.32.0-sim"), "{}", out.dump());
    assert!(out.stdout.contains("may not patch jobs"), "{}", out.dump());
    // check creates nothing.
    assert!(sim.state().requests("POST", "/jobs").is_empty());
    sim.with(|s| s.forbidden.clear());
    let out = WorkerCommand::new(&dir)
        .args(["check", "--offline", "--api-key", API_KEY, "--config-file"])
        .arg(cfg.display().to_string())
        .run();
    out.expect_code(0);
}

#[test]
fn check_preflight_runs_and_deletes_the_preflight_job_and_plain_check_creates_none() {
    let dir = TestDir::new("e2e-kube-check-preflight");
    let sim = KubeSim::start();
    let kc = sim.kubeconfig(&dir.path, None);
    let cfg = dir.write(
        "config.yaml",
        &format!("worker_id: kube-pf\nbackend:\n  kubernetes:\n    namespace: agents\n    kubeconfig: {}\n", kc.display()),
    );
    let check = |extra: &[&str]| {
        WorkerCommand::new(&dir)
            .args(["check", "--offline", "--api-key", API_KEY, "--config-file"])
            .arg(cfg.display().to_string())
            .args(extra.iter().copied())
            .run()
    };
    let out = check(&[]);
    out.expect_code(0);
    assert!(!out.stdout.contains("preflight Job"), "{}", out.dump());
    assert!(sim.state().requests("POST", "/jobs").is_empty());

    let out = check(&["--preflight"]);
    out.expect_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("startup preflight Job"))
        .unwrap_or_else(|| panic!("no preflight line: {}", out.dump()));
    assert!(line.starts_with("ok"), "{line}");
    let st = sim.state();
    let posts = st.requests("POST", "/namespaces/agents/jobs");
    assert_eq!(posts.len(), 1, "one preflight Job created");
    let deletes = st.requests("DELETE", "/namespaces/agents/jobs/");
    assert_eq!(deletes.len(), 1, "and deleted");
    let name = deletes[0].path.rsplit('/').next().unwrap_or_default();
    assert!(line.contains(name), "the line names the Job {name}: {line}");
    assert!(st.jobs().is_empty(), "nothing left behind");
    drop(st);

    // A preflight that fails makes check fail, with the diagnosis.
    sim.with(|s| {
        s.forbidden.insert(("create".into(), "jobs".into()));
    });
    let out = check(&["--preflight"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("startup preflight failed"),
        "{}",
        out.dump()
    );
}
