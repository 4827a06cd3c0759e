//! `pods/<pod>/log`: what a container wrote, as the kubelet serves it through the API server.
//!
//! A container's output is scripted per task image and container (`KubeSim::output`): pieces
//! of text, each written some time after the container started. Without `follow` the answer
//! is what was written so far; with `follow=true` it is a chunked `text/plain` stream that
//! sends each piece when it is written and ends when the container terminates (all its output
//! written) or, after its pod was deleted, once the pod's termination grace period has passed
//! (simulated containers ignore SIGTERM). A container that has not started yet gets the API's
//! 400 "is waiting to start". Unscripted containers wrote `simulated log of <container>\n`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::status_body;
use super::serve::{self, Conn, Request};
use super::store::Kind;
use super::{Shared, State};

/// One piece of scripted output: `text` is written `after` the container started.
#[derive(Debug, Clone)]
pub struct Out {
    pub after: Duration,
    pub text: String,
}

/// What the simulated kubelet knows of one container's life.
#[derive(Debug, Clone)]
pub struct Life {
    /// The task image of its Job (the output script's key).
    pub image: String,
    pub started: Instant,
    pub terminated: Option<Instant>,
    /// The pod was deleted: the stream ends after the grace period.
    pub deleted: Option<(Instant, Duration)>,
}

fn task_image(pod: &Value) -> String {
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    containers
        .iter()
        .find(|c| c["name"] == "task")
        .or(containers.first())
        .and_then(|c| c["image"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Notes containers that started or terminated and pods that went away (called by the
/// controller after each tick, and before each log request).
pub fn observe(st: &mut State) {
    let now = Instant::now();
    let pods = st.store.list(Kind::Pod, "");
    let mut present = std::collections::BTreeSet::new();
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
        present.insert(name.clone());
        for key in ["initContainerStatuses", "containerStatuses"] {
            for s in pod["status"][key].as_array().into_iter().flatten() {
                let container = s["name"].as_str().unwrap_or("").to_owned();
                let running = s["state"].get("running").is_some();
                let terminated = s["state"].get("terminated").is_some();
                if !running && !terminated {
                    continue;
                }
                let life = st
                    .lives
                    .entry((name.clone(), container))
                    .or_insert_with(|| Life {
                        image: task_image(pod),
                        started: now,
                        terminated: None,
                        deleted: None,
                    });
                if terminated && life.terminated.is_none() {
                    life.terminated = Some(now);
                }
            }
        }
    }
    for ((pod, _), life) in st.lives.iter_mut() {
        if life.deleted.is_none() && life.terminated.is_none() && !present.contains(pod) {
            life.deleted = Some((now, st.termination_grace));
        }
    }
}

/// The pieces `container` of `pod` has written by now, and whether it wrote its last.
fn written(st: &State, pod: &str, container: &str, life: &Life) -> (Vec<String>, bool) {
    if let Some(text) = st.logs.get(pod) {
        return (vec![text.clone()], life.terminated.is_some());
    }
    let script = st.outputs.get(&(life.image.clone(), container.to_owned()));
    let Some(script) = script else {
        return (
            vec![format!("simulated log of {container}\n")],
            life.terminated.is_some(),
        );
    };
    if life.terminated.is_some() {
        return (script.iter().map(|o| o.text.clone()).collect(), true);
    }
    let elapsed = life.started.elapsed();
    let pieces: Vec<String> = script
        .iter()
        .filter(|o| o.after <= elapsed)
        .map(|o| o.text.clone())
        .collect();
    let ended = life
        .deleted
        .is_some_and(|(at, grace)| at.elapsed() >= grace);
    (pieces, ended)
}

/// Serves `GET .../pods/<pod>/log`.
pub fn serve(
    conn: &mut Conn,
    req: &Request,
    namespace: &str,
    pod: &str,
    mut st: std::sync::MutexGuard<'_, State>,
    record: impl Fn(&mut State, u16),
    shared: &Arc<Shared>,
) -> bool {
    let not_found = st.store.get(Kind::Pod, namespace, pod).is_none();
    let container = req.param("container").unwrap_or("task").to_owned();
    if not_found {
        record(&mut st, 404);
        drop(st);
        let msg = format!("pods \"{pod}\" not found");
        let body = status_body(404, "NotFound", &msg, json!({"name": pod, "kind": "pods"}));
        return respond_json(conn, 404, &body);
    }
    observe(&mut st);
    let Some(life) = st.lives.get(&(pod.to_owned(), container.clone())).cloned() else {
        record(&mut st, 400);
        drop(st);
        let msg = format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: PodInitializing"
        );
        let body = status_body(400, "BadRequest", &msg, json!({}));
        return respond_json(conn, 400, &body);
    };
    record(&mut st, 200);
    if !matches!(req.param("follow"), Some("true" | "1")) {
        let (pieces, _) = written(&st, pod, &container, &life);
        drop(st);
        let text = pieces.concat();
        return serve::write_response(conn, 200, "text/plain", &[], text.as_bytes()).is_ok();
    }
    st.open_log_streams += 1;
    st.max_open_log_streams = st.max_open_log_streams.max(st.open_log_streams);
    drop(st);
    let ok = follow(conn, pod, &container, shared);
    shared.lock().open_log_streams -= 1;
    shared.changed.notify_all();
    ok
}

fn respond_json(conn: &mut Conn, code: u16, body: &Value) -> bool {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    serve::write_response(conn, code, "application/json", &[], &bytes).is_ok()
}

/// The follow stream; false when the connection must close.
fn follow(conn: &mut Conn, pod: &str, container: &str, shared: &Arc<Shared>) -> bool {
    if serve::start_text_stream(conn).is_err() {
        return false;
    }
    let key = (pod.to_owned(), container.to_owned());
    let mut sent = 0;
    loop {
        let (pieces, ended) = {
            let st = shared.lock();
            let st = shared
                .changed
                .wait_timeout(st, Duration::from_millis(20))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            if shared.stop.load(Ordering::SeqCst) {
                return false;
            }
            match st.lives.get(&key) {
                Some(life) => written(&st, pod, container, life),
                None => (Vec::new(), true),
            }
        };
        if pieces.len() > sent {
            let data = pieces[sent..].concat();
            sent = pieces.len();
            if !data.is_empty() && serve::write_chunk(conn, data.as_bytes()).is_err() {
                return false;
            }
        }
        if ended {
            return serve::write_chunk(conn, b"").is_ok();
        }
        // A client that went away (or aborted) while the container is quiet.
        let mut probe = [0u8; 1];
        let _ = conn.tcp().set_nonblocking(true);
        let gone = matches!(conn.tcp().peek(&mut probe), Ok(0));
        let _ = conn.tcp().set_nonblocking(false);
        if gone {
            return false;
        }
    }
}
