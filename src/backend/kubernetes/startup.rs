//! Startup: reach the API server (`GET /version`), then prove with a preflight Job that task
//! Jobs can be created and admitted here (reference §4), always deleting it; and the `check`
//! probes (version, namespace, one SelfSubjectAccessReview per verb the backend needs).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::cleanup;
use super::message::text;
use super::names;
use super::preflight::{self, State};
use super::rbac;
use super::runner::jobs_path;
use crate::backend::ProbeLine;
use crate::kube::{ApiResponse, Client, query_escape};
use crate::settings::KubernetesSettings;

/// `GET /version`: the server's `gitVersion`.
pub fn version(client: &Client) -> Result<String, String> {
    let v = client
        .get_ok("/version")
        .map_err(|e| format!("failed to reach Kubernetes API server: {e}"))?;
    Ok(text(&v, "/gitVersion").to_owned())
}

/// An API refusal worded for an operator: 403 names the Role rule that grants the verb, 422
/// quotes the admission denial.
pub fn diagnose(r: &ApiResponse, verb: &str, resource: &str, ns: &str) -> String {
    match r.status {
        403 => format!(
            "{} (the API server says: {})",
            rbac::denied(verb, resource, ns),
            r.message()
        ),
        422 => format!(
            "the API server's admission control rejected the Job (Pod Security, ValidatingAdmissionPolicy or a policy webhook): {}",
            r.message()
        ),
        _ => format!("{} {}", r.status, r.message()),
    }
}

/// Deletes the preflight Job however the preflight ends.
struct DeleteOnDrop<'a> {
    client: &'a Client,
    path: String,
    uid: String,
}

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        let body = cleanup::delete_options(Some(&self.uid));
        match self.client.request("DELETE", &self.path, Some(&body)) {
            Ok(r) if r.is_success() || r.status == 404 => {}
            Ok(r) => log::warn!(
                "kubernetes: deleting the preflight Job failed: {}",
                r.message()
            ),
            Err(e) => log::warn!("kubernetes: deleting the preflight Job failed: {e}"),
        }
    }
}

/// Runs the preflight Job (bounded by [`preflight::WAIT`]) and returns its name. The error is
/// the operator's diagnosis, already wrapped with what to check.
pub fn run_preflight(
    client: &Client,
    worker_id: &str,
    k: &KubernetesSettings,
) -> Result<String, String> {
    let ns = k.namespace.as_str();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = names::preflight_job_name(worker_id, nanos);
    let manifest = preflight::preflight_job(&name, worker_id, k);
    let r = client
        .request("POST", &jobs_path(ns), Some(&manifest))
        .map_err(|e| preflight::wrap(k, &e.to_string()))?;
    if !r.is_success() {
        return Err(preflight::wrap(k, &diagnose(&r, "create", "jobs", ns)));
    }
    let uid = text(&r.body, "/metadata/uid").to_owned();
    let _delete = DeleteOnDrop {
        client,
        path: format!("{}/{name}", jobs_path(ns)),
        uid: uid.clone(),
    };
    let deadline = Instant::now() + preflight::WAIT;
    loop {
        let job = client
            .get_ok(&format!("{}/{name}", jobs_path(ns)))
            .map_err(|e| {
                preflight::wrap(k, &format!("failed to get startup preflight Job: {e}"))
            })?;
        let pods = client
            .get_ok(&format!(
                "/api/v1/namespaces/{ns}/pods?labelSelector={}",
                query_escape(&format!("{}={name}", names::LABEL_JOB_NAME))
            ))
            .map_err(|e| {
                preflight::wrap(k, &format!("failed to list startup preflight Pods: {e}"))
            })?;
        let pods: Vec<Value> = pods["items"].as_array().cloned().unwrap_or_default();
        let mut events = Vec::new();
        let uids =
            std::iter::once(uid.as_str()).chain(pods.iter().map(|p| text(p, "/metadata/uid")));
        for u in uids {
            let v = client
                .get_ok(&format!(
                    "/api/v1/namespaces/{ns}/events?fieldSelector={}",
                    query_escape(&format!("involvedObject.uid={u}"))
                ))
                .map_err(|e| {
                    preflight::wrap(k, &format!("failed to list startup preflight events: {e}"))
                })?;
            events.extend(v["items"].as_array().cloned().unwrap_or_default());
        }
        match preflight::verdict(&name, k, Some(&job), &pods, &events, SystemTime::now()) {
            State::Passed => {
                log::info!("Kubernetes startup preflight Job {name} passed");
                return Ok(name);
            }
            State::Failed(inner) => return Err(preflight::wrap(k, &inner)),
            State::Waiting => {}
        }
        if Instant::now() >= deadline {
            return Err(preflight::wrap(k, &preflight::timeout_message(&name, k)));
        }
        std::thread::sleep(preflight::POLL);
    }
}

/// `check`: version, namespace, and one access review per verb the backend needs.
pub fn check_lines(client: &Client, k: &KubernetesSettings) -> Vec<ProbeLine> {
    let ns = k.namespace.as_str();
    let mut lines = vec![ProbeLine::ok(format!(
        "Kubernetes configuration from {} (server {}, credentials: {})",
        client.config().source,
        client.config().server,
        client.credentials().describe()
    ))];
    match version(client) {
        Ok(v) => lines.push(ProbeLine::ok(format!(
            "Kubernetes API server reachable (version {v})"
        ))),
        Err(e) => {
            lines.push(ProbeLine::failed(e));
            return lines;
        }
    }
    match client.request("GET", &format!("/api/v1/namespaces/{ns}"), None) {
        Ok(r) if r.is_success() => lines.push(ProbeLine::ok(format!("namespace {ns:?} exists"))),
        // A namespaced Role usually cannot read namespaces: not a failure by itself.
        Ok(r) if r.status == 403 => lines.push(ProbeLine::ok(format!(
            "namespace {ns:?}: not readable with this service account (fine for a namespaced Role)"
        ))),
        Ok(r) => lines.push(ProbeLine::failed(format!(
            "namespace {ns:?}: {}",
            r.message()
        ))),
        Err(e) => lines.push(ProbeLine::failed(format!("namespace {ns:?}: {e}"))),
    }
    let mut denied = Vec::new();
    for review in rbac::access_reviews(ns) {
        let attrs = &review["spec"]["resourceAttributes"];
        let verb = text(attrs, "/verb").to_owned();
        let mut resource = text(attrs, "/resource").to_owned();
        let sub = text(attrs, "/subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        match client.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(&review),
        ) {
            Ok(r) if r.is_success() => denied.extend(rbac::review_denial(&r.body)),
            Ok(r) => denied.push(format!(
                "{verb} {resource}: access review failed: {}",
                r.message()
            )),
            Err(e) => denied.push(format!("{verb} {resource}: access review failed: {e}")),
        }
    }
    if denied.is_empty() {
        lines.push(ProbeLine::ok(format!(
            "RBAC: every verb the backend needs is allowed in namespace {ns:?}"
        )));
    } else {
        lines.push(ProbeLine::failed(format!(
            "RBAC: not allowed in namespace {ns:?}: {}",
            denied.join("; ")
        )));
    }
    lines
}
