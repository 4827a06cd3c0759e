//! Kubernetes inputs: kubeconfig files, exec credential plugin output, and the watch events and
//! API objects the watch cache keeps and the outcome classifier reads. Properties: generated
//! valid input resolves to what was generated; input that must be refused is refused; mutated
//! input is an error or a value, never a panic.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oz_agent_worker::backend::kubernetes::details::Source;
use oz_agent_worker::backend::kubernetes::outcome::{
    self, Context, FirstSeen, Observation, Verdict,
};
use oz_agent_worker::backend::kubernetes::watch::{Hub, Resource};
use oz_agent_worker::kube::auth::parse_exec_output;
use oz_agent_worker::kube::kubeconfig::{self, Inputs};
use oz_agent_worker::kube::{Client, ClusterConfig};
use serde_json::{Value, json};

use super::{Rng, mutate, run, show};

/// A private temporary directory, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("oz-fuzz-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("the temp dir is writable");
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn resolve_file(path: &Path, dir: &Path) -> Result<ClusterConfig, String> {
    let env = |_: &str| None;
    kubeconfig::resolve(
        Some(path),
        &Inputs {
            env: &env,
            service_account_dir: dir.join("no-service-account"),
        },
    )
}

const NAME: &str = "abcxyz-0123";

fn kubeconfig_text(rng: &mut Rng, host: &str, port: u16, ns: &str, token: &str) -> String {
    let ctx = rng.text(NAME, 1, 8);
    let cluster = rng.text(NAME, 1, 8);
    let user = rng.text(NAME, 1, 8);
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: \"{ctx}\"\nclusters:\n- name: \"{cluster}\"\n  cluster:\n    server: https://{host}:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: \"{ctx}\"\n  context: {{cluster: \"{cluster}\", user: \"{user}\", namespace: \"{ns}\"}}\nusers:\n- name: \"{user}\"\n  user:\n    token: \"{token}\"\n"
    )
}

#[test]
fn kubeconfig_resolves_generated_files_and_survives_mutation() {
    let t = Tmp::new("kubeconfig");
    let path = t.0.join("config");
    let tokens: &[&[u8]] = &[
        b"current-context: ",
        b"clusters:",
        b"server: ",
        b"https://",
        b"certificate-authority-data: !!!",
        b"exec:",
        b"command: ",
        b"apiVersion: ",
        b"tokenFile: /nonexistent",
        b"- name: ",
        b"{",
        b"&a ",
        b"*a",
        b"\n  ",
        b"[::1]",
        b":99999",
    ];
    run("kubeconfig", |rng| {
        let host = format!("h{}", rng.text("abc.0123", 0, 12));
        let port = 1 + rng.below(65_534) as u16;
        let ns = rng.text(NAME, 1, 10);
        let token = rng.string("xyz0123", 12);
        let text = kubeconfig_text(rng, &host, port, &ns, &token);
        std::fs::write(&path, &text).expect("the temp file is writable");
        let c = resolve_file(&path, &t.0)
            .unwrap_or_else(|e| panic!("a valid kubeconfig was refused: {e}\n{text}"));
        assert_eq!(c.server.host, host, "{text}");
        assert_eq!(c.server.port, port, "{text}");
        assert_eq!(c.namespace.as_deref(), Some(ns.as_str()));
        assert!(c.insecure_skip_tls_verify);
        // The credential never shows in what `check` prints about the source.
        assert!(!c.source.contains(&token));

        // Without a current-context, or naming a context that is not there: refused.
        let none = text.replace("current-context:", "# current-context:");
        std::fs::write(&path, &none).expect("the temp file is writable");
        assert!(resolve_file(&path, &t.0).is_err(), "{none}");
        let missing = text.replace("current-context: \"", "current-context: \"missing-");
        std::fs::write(&path, &missing).expect("the temp file is writable");
        assert!(resolve_file(&path, &t.0).is_err(), "{missing}");

        let bad = mutate(rng, text.as_bytes(), tokens);
        std::fs::write(&path, &bad).expect("the temp file is writable");
        if let Err(e) = resolve_file(&path, &t.0) {
            assert!(!e.contains(&token), "an error quotes the token: {e}");
        }
    });
}

const V1: &str = "client.authentication.k8s.io/v1";

#[test]
fn exec_credential_output_parses_and_bad_output_is_refused_without_quoting_it() {
    let tokens: &[&[u8]] = &[
        b"\"status\"",
        b"\"token\"",
        b"\"clientCertificateData\"",
        b"\"clientKeyData\"",
        b"\"expirationTimestamp\":\"2026-13-45T99:99:99Z\"",
        b"\"kind\":\"Secret\"",
        b"null",
        b"\"\"",
        b"{",
        b"}",
        b"\"\\ud800\"",
    ];
    run("exec-credential", |rng| {
        let token = format!("tok-{}", rng.string("xyzXYZ0123", 16));
        let mut status = json!({"token": token});
        let with_expiry = rng.chance(2);
        if with_expiry {
            status["expirationTimestamp"] = json!(format!(
                "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                rng.below(100),
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60)
            ));
        }
        let out = json!({"apiVersion": V1, "kind": "ExecCredential", "status": status});
        let text = out.to_string();
        let c = parse_exec_output("plugin", V1, text.as_bytes())
            .unwrap_or_else(|e| panic!("valid ExecCredential refused: {e}: {text}"));
        assert_eq!(c.token.as_deref(), Some(token.as_str()));
        assert_eq!(c.expires.is_some(), with_expiry, "{text}");

        // What must be refused is refused, and the refusal never quotes the credential.
        let mut refusals = vec![
            json!({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": status}),
            json!({"apiVersion": V1, "kind": "Secret", "status": status}),
            json!({"apiVersion": V1, "kind": "ExecCredential"}),
            json!({"apiVersion": V1, "kind": "ExecCredential", "status": {}}),
            json!({"apiVersion": V1, "kind": "ExecCredential", "status": {"token": token, "clientCertificateData": "cert"}}),
            json!({"apiVersion": V1, "kind": "ExecCredential", "status": {"token": token, "expirationTimestamp": "soon"}}),
        ];
        let pick = rng.below(refusals.len());
        let refused = refusals.swap_remove(pick).to_string();
        match parse_exec_output("plugin", V1, refused.as_bytes()) {
            Ok(c) => panic!("accepted {refused}: {c:?}"),
            Err(e) => assert!(!e.contains(&token), "the error quotes the token: {e}"),
        }

        let bad = mutate(rng, text.as_bytes(), tokens);
        if let Err(e) = parse_exec_output("plugin", V1, &bad) {
            assert!(
                !e.contains(&token),
                "the error quotes the token: {e} ({})",
                show(&bad)
            );
        }
    });
}

const HASH: &str = "0123456789abcdef";

fn meta(rng: &mut Rng, name: &str) -> Value {
    json!({
        "name": name,
        "uid": if rng.chance(4) { "other-uid" } else { "uid-1" },
        "resourceVersion": rng.below(1000).to_string(),
        "labels": {"oz-execution-hash": HASH},
    })
}

fn stamp(rng: &mut Rng) -> Value {
    if rng.chance(5) {
        json!(rng.text("0123456789-:TZ", 0, 24))
    } else {
        json!(format!(
            "2026-12-02T17:{:02}:{:02}Z",
            rng.below(60),
            rng.below(60)
        ))
    }
}

fn condition(rng: &mut Rng, kinds: &[&str]) -> Value {
    json!({
        "type": rng.pick(kinds),
        "status": rng.pick(&["True", "False", "Unknown"]),
        "reason": rng.pick(&["DeadlineExceeded", "BackoffLimitExceeded", "Unschedulable", "PodFailurePolicy", "EvictionByEvictionAPI", ""]),
        "message": rng.text("abc deadline 0/3 nodes", 0, 30),
        "lastTransitionTime": stamp(rng),
    })
}

fn job(rng: &mut Rng) -> Value {
    let mut status = json!({});
    if rng.chance(2) {
        status["startTime"] = stamp(rng);
    }
    if rng.chance(2) {
        status["conditions"] = json!(
            (0..rng.below(3))
                .map(|_| condition(
                    rng,
                    &[
                        "Complete",
                        "Failed",
                        "FailureTarget",
                        "SuccessCriteriaMet",
                        "Suspended"
                    ]
                ))
                .collect::<Vec<_>>()
        );
    }
    for k in ["active", "succeeded", "failed"] {
        if rng.chance(3) {
            status[k] = json!(rng.below(3));
        }
    }
    json!({
        "kind": "Job",
        "metadata": meta(rng, "oz-task-1"),
        "spec": {"activeDeadlineSeconds": rng.below(5000), "backoffLimit": 0},
        "status": status,
    })
}

fn container_status(rng: &mut Rng, name: &str) -> Value {
    let state = match rng.below(4) {
        0 => {
            json!({"waiting": {"reason": rng.pick(&["ContainerCreating", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "PodInitializing"]), "message": "m"}})
        }
        1 => json!({"running": {"startedAt": stamp(rng)}}),
        2 => {
            json!({"terminated": {"exitCode": rng.below(256) as i64 - 2, "reason": rng.pick(&["Completed", "Error", "OOMKilled"]), "message": rng.text("ab copy-failed", 0, 12)}})
        }
        _ => json!({}),
    };
    json!({"name": name, "state": state, "ready": rng.chance(2), "restartCount": rng.below(3)})
}

fn pod(rng: &mut Rng, i: usize) -> Value {
    json!({
        "kind": "Pod",
        "metadata": meta(rng, &format!("oz-task-1-{i}")),
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": rng.pick(&["Pending", "Running", "Succeeded", "Failed", "Unknown", ""]),
            "reason": rng.pick(&["", "Evicted", "DeadlineExceeded"]),
            "conditions": (0..rng.below(3))
                .map(|_| condition(rng, &["PodScheduled", "DisruptionTarget", "Ready"]))
                .collect::<Vec<_>>(),
            "initContainerStatuses": (0..rng.below(2))
                .map(|k| container_status(rng, &format!("sidecar-{k}")))
                .collect::<Vec<_>>(),
            "containerStatuses": [container_status(rng, "task")],
        },
    })
}

fn event(rng: &mut Rng) -> Value {
    json!({
        "kind": "Event",
        "reason": rng.pick(&["FailedMount", "FailedScheduling", "FailedCreate", "BackOff", "Pulled"]),
        "message": rng.text("abc volume quota", 0, 20),
        "type": "Warning",
        "involvedObject": {"kind": rng.pick(&["Pod", "Job"]), "name": "oz-task-1-0"},
        "firstTimestamp": stamp(rng),
        "lastTimestamp": stamp(rng),
        "count": rng.below(5),
    })
}

/// A client that is never called: the idle hub needs one, `remember` and the reads do not.
fn idle_hub() -> std::sync::Arc<Hub> {
    let cfg = ClusterConfig {
        source: "fuzz".into(),
        server: kubeconfig::ServerUrl::parse("https://127.0.0.1:9").expect("a valid URL"),
        ca_pem: None,
        insecure_skip_tls_verify: true,
        tls_server_name: None,
        proxy_url: None,
        client_cert: None,
        auth: kubeconfig::AuthConfig::None,
        impersonate: Vec::new(),
        namespace: None,
    };
    let client = Client::new(cfg).expect("a client needs no connection to be made");
    Hub::idle(std::sync::Arc::new(client), "agents")
}

/// Decodes one watch-stream line as the stream does (type + object), tolerating anything.
fn decode_event(line: &[u8]) -> Option<(String, Value)> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let kind = v["type"].as_str().unwrap_or("").to_owned();
    Some((kind, v.get("object").cloned().unwrap_or(Value::Null)))
}

#[test]
fn watch_events_and_api_objects_never_panic_the_cache_or_the_classifier() {
    let tokens: &[&[u8]] = &[
        b"\"type\":\"DELETED\"",
        b"\"type\":\"ERROR\"",
        b"\"object\":null",
        b"\"metadata\":[]",
        b"\"status\":\"x\"",
        b"\"resourceVersion\":\"99999999999999999999999\"",
        b"\"exitCode\":-9223372036854775808",
        b"\"activeDeadlineSeconds\":1e308",
        b"null",
        b"[]",
        b"{}",
        b"\"\"",
    ];
    let hub = idle_hub();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_233_000);
    let ctx = Context {
        namespace: "agents",
        job_name: "oz-task-1",
        job_uid: Some("uid-1"),
        unschedulable_timeout: Some(Duration::from_secs(600)),
        volume_mount_timeout: Some(Duration::from_secs(120)),
    };
    run("kube-watch", |rng| {
        let j = job(rng);
        let pods: Vec<Value> = (0..rng.below(3)).map(|i| pod(rng, i)).collect();
        let events: Vec<Value> = (0..rng.below(3)).map(|_| event(rng)).collect();

        // A newer resourceVersion replaces what the cache holds; an older one never does.
        hub.remember(Resource::Jobs, &j);
        let cached = hub.job("oz-task-1").expect("a remembered Job is cached");
        let rv = |v: &Value| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .parse::<u64>()
                .unwrap_or(0)
        };
        assert!(rv(&cached) >= rv(&j));
        for p in &pods {
            hub.remember(Resource::Pods, p);
        }

        // Mutated watch lines: whatever decodes goes into the cache and the classifier.
        let line = json!({"type": rng.pick(&["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]), "object": if rng.chance(2) { j.clone() } else { pod(rng, 9) }}).to_string();
        let bad = mutate(rng, line.as_bytes(), tokens);
        let mut job_seen = Some(cached);
        let mut pods_seen = hub.pods(HASH);
        if let Some((_, object)) = decode_event(&bad) {
            let r = if object["kind"] == "Job" {
                Resource::Jobs
            } else {
                Resource::Pods
            };
            hub.remember(r, &object);
            match r {
                Resource::Jobs => job_seen = Some(object),
                Resource::Pods => pods_seen.push(object),
            }
        }
        let _ = hub.jobs();
        let source = *rng.pick(&[Source::PodWatch, Source::JobWatch, Source::SafetyPoll]);
        let mut first = FirstSeen::default();
        for step in 0..2u64 {
            let obs = Observation {
                job: job_seen.as_ref(),
                pods: &pods_seen,
                events: &events,
                source,
                now: now + Duration::from_secs(step * 700),
            };
            if let Verdict::Failed(f) = outcome::classify(&ctx, &obs, &mut first) {
                assert!(
                    !f.failure.message.is_empty(),
                    "a failure without a message: {f:?}"
                );
            }
        }
        let _ = outcome::job_vanished(&ctx, source, now);
    });
}
