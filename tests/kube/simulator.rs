//! The simulator's wire format, checked with the real `kubectl` (Debian's `kubernetes-client`):
//! if kubectl can create, get, watch and delete against it, the simulator speaks Kubernetes.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::harness::TestDir;
use crate::support::kube_sim::{KubeSim, Step, ms};

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl must be installed for this test (Debian: kubernetes-client; see .ci/kubernetes.sh)")
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const JOB: &str = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"kubectl-job","labels":{"app":"sim"}},
 "spec":{"backoffLimit":0,"template":{"metadata":{"labels":{"app":"sim"}},"spec":{"restartPolicy":"Never",
 "containers":[{"name":"task","image":"sim/slow","command":["true"]}]}}}}"#;

#[test]
fn kubectl_creates_gets_watches_and_deletes_against_the_simulator() {
    let dir = TestDir::new("kubectl-sim");
    let sim = KubeSim::start_tls();
    sim.with(|s| {
        s.auth = crate::support::kube_sim::Auth::Tokens(vec![("sim-token".into(), None)]);
    });
    sim.script(
        "sim/slow",
        vec![
            Step::Pending(ms(100)),
            Step::Running(ms(600)),
            Step::exit(0),
        ],
    );
    let kc = sim.kubeconfig(&dir.path, Some("sim-token"));
    let job = dir.write("job.json", JOB);

    let out = ok(&kubectl(&kc, &["version", "-o", "json"]));
    assert!(out.contains("v1.32.0-sim"), "{out}");

    let out = ok(&kubectl(
        &kc,
        &["create", "--validate=false", "-f", job.to_str().unwrap()],
    ));
    assert!(out.contains("job.batch/kubectl-job created"), "{out}");

    // A watch that ends when the Job completes: kubectl prints each event's object.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "get",
            "jobs",
            "-l",
            "app=sim",
            "--watch",
            "-o",
            "jsonpath={.metadata.name} {.status.succeeded}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sim.wait_until(Duration::from_secs(20), |s| {
        s.jobs().iter().any(|j| j["status"]["succeeded"] == 1)
    });
    std::thread::sleep(ms(300));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.trim() == "kubectl-job 1"),
        "watch output: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = ok(&kubectl(
        &kc,
        &[
            "get",
            "pods",
            "-l",
            "job-name=kubectl-job",
            "-o",
            "jsonpath={.items[0].status.phase}",
        ],
    ));
    assert_eq!(out.trim(), "Succeeded");
    let out = ok(&kubectl(&kc, &["get", "job", "kubectl-job", "-o", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["conditions"][1]["type"], "Complete");

    let out = ok(&kubectl(
        &kc,
        &["delete", "job", "kubectl-job", "--cascade=background"],
    ));
    assert!(out.contains("deleted"), "{out}");
    let st = sim.state();
    assert!(
        st.jobs().is_empty() && st.pods().is_empty(),
        "jobs: {:?} pods: {:?}",
        st.jobs(),
        st.pods()
    );
    let deletes = st.requests("DELETE", "/jobs/kubectl-job");
    assert_eq!(deletes.len(), 1);
    // kubectl sent our bearer token over TLS.
    assert!(
        st.seen
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer sim-token"))
    );
    drop(st);

    let out = kubectl(&kc, &["get", "job", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("jobs.batch \"nope\" not found"));
}

#[test]
fn kubectl_follows_a_containers_log_until_it_terminates() {
    use crate::support::kube_sim::Out;
    let dir = TestDir::new("kubectl-sim-logs");
    let sim = KubeSim::start();
    sim.script("sim/slow", vec![Step::Running(ms(1500)), Step::exit(0)]);
    let piece = |after: u64, text: &str| Out {
        after: ms(after),
        text: text.to_owned(),
    };
    sim.output(
        "sim/slow",
        "task",
        vec![piece(0, "one\n"), piece(400, "two\n"), piece(800, "three")],
    );
    let kc = sim.kubeconfig(&dir.path, None);
    let job = dir.write("job.json", JOB);
    ok(&kubectl(
        &kc,
        &["create", "--validate=false", "-f", job.to_str().unwrap()],
    ));
    sim.wait_until(Duration::from_secs(20), |s| {
        s.pods().iter().any(|p| p["status"]["phase"] == "Running")
    });
    let pod = sim.state().pods()[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without -f: what was written so far. With -f: everything, then kubectl exits by itself
    // when the container terminates and the stream ends.
    let so_far = ok(&kubectl(&kc, &["logs", &pod, "-c", "task"]));
    assert!(so_far.starts_with("one\n"), "{so_far:?}");
    let out = ok(&kubectl(&kc, &["logs", "-f", &pod, "-c", "task"]));
    assert_eq!(out, "one\ntwo\nthree");
    let st = sim.state();
    let follow = st
        .requests("GET", "/log")
        .into_iter()
        .find(|s| s.param("follow") == Some("true"))
        .map(|s| s.status);
    assert_eq!(follow, Some(200));
    assert_eq!(st.open_log_streams, 0);
}
