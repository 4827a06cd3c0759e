//! Request routing: authentication, RBAC, faults, REST verbs per resource, watch streams.

use std::io::BufReader;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::lifecycle::{Run, Step};
use super::serve::{self, Conn, Request};
use super::store::{Kind, matches_selector};
use super::{Auth, Seen, Shared, State};

pub fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((tcp, _)) => {
                let shared = Arc::clone(&shared);
                let _ = tcp.set_nonblocking(false);
                let _ = std::thread::Builder::new()
                    .name("kube-sim-conn".into())
                    .spawn(move || {
                        let Ok((mut conn, cert)) = Conn::accept(tcp, shared.tls.as_ref()) else {
                            return;
                        };
                        let _ = conn
                            .tcp()
                            .set_read_timeout(Some(Duration::from_millis(200)));
                        serve_conn(&mut conn, cert.is_some(), &shared);
                    });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_conn(conn: &mut Conn, client_cert: bool, shared: &Arc<Shared>) {
    loop {
        // Wait for the next request on a kept-alive connection, checking for shutdown.
        let req = loop {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let mut r = BufReader::new(&mut *conn);
            match serve::read_request(&mut r) {
                Ok(Some(req)) => break req,
                Ok(None) => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(_) => return,
            }
        };
        // A BufReader per request: requests are not pipelined by any client we serve.
        match handle(conn, &req, client_cert, shared) {
            Outcome::KeepAlive => {}
            Outcome::Close => return,
        }
    }
}

enum Outcome {
    KeepAlive,
    Close,
}

pub fn status_body(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "details": details, "code": code})
}

fn respond(conn: &mut Conn, code: u16, body: &Value, extra: &[(String, String)]) -> Outcome {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    match serve::write_response(conn, code, "application/json", extra, &bytes) {
        Ok(()) => Outcome::KeepAlive,
        Err(_) => Outcome::Close,
    }
}

/// What a path names.
#[derive(Debug)]
struct Target {
    kind: Option<Kind>,
    namespace: String,
    name: Option<String>,
    sub: Option<String>,
    /// events.k8s.io/v1 representation of events.
    events_v1: bool,
    resource: &'static str,
}

fn parse_target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (rest, group_ok, events_v1) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (rest, true, false),
        ["apis", "batch", "v1", rest @ ..] => (rest, true, false),
        ["apis", "events.k8s.io", "v1", rest @ ..] => (rest, true, true),
        _ => return None,
    };
    if !group_ok {
        return None;
    }
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (res, name, sub) = match rest {
        [res] => (*res, None, None),
        [res, name] => (*res, Some(name.to_string()), None),
        [res, name, sub] => (*res, Some(name.to_string()), Some(sub.to_string())),
        [] => (
            "namespaces",
            if ns.is_empty() {
                None
            } else {
                Some(ns.clone())
            },
            None,
        ),
        _ => return None,
    };
    let (kind, resource) = match res {
        "jobs" => (Some(Kind::Job), "jobs"),
        "pods" => (Some(Kind::Pod), "pods"),
        "events" => (Some(Kind::Event), "events"),
        "namespaces" => (None, "namespaces"),
        _ => return None,
    };
    Some(Target {
        kind,
        namespace: ns,
        name,
        sub,
        events_v1,
        resource,
    })
}

fn verb(req: &Request, t: &Target) -> &'static str {
    let watch = matches!(req.param("watch"), Some("true" | "1"));
    match req.method.as_str() {
        "GET" if watch => "watch",
        "GET" if t.name.is_none() => "list",
        "GET" => "get",
        "POST" => "create",
        "DELETE" => "delete",
        "PATCH" => "patch",
        "PUT" => "update",
        _ => "unknown",
    }
}

fn authenticated(st: &State, req: &Request, client_cert: bool) -> bool {
    match &st.auth {
        Auth::Anyone => true,
        Auth::Tokens(tokens) => {
            client_cert
                || req
                    .header("authorization")
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .is_some_and(|t| {
                        tokens
                            .iter()
                            .any(|(tok, exp)| tok == t && exp.is_none_or(|e| Instant::now() < e))
                    })
        }
    }
}

/// A stored (core) event as `events.k8s.io/v1` shows it, field for field as the API server's
/// conversion: a legacy recorder's event keeps a null `eventTime` and its series in the
/// `deprecated*` fields.
fn to_events_v1(ev: &Value) -> Value {
    let mut v = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": ev["metadata"],
           "regarding": ev["involvedObject"], "reason": ev["reason"], "note": ev["message"],
           "type": ev["type"], "eventTime": ev["eventTime"], "action": ev["action"],
           "reportingController": ev["reportingComponent"],
           "reportingInstance": ev["reportingInstance"],
           "deprecatedSource": ev["source"], "deprecatedCount": ev["count"],
           "deprecatedFirstTimestamp": ev["firstTimestamp"],
           "deprecatedLastTimestamp": ev["lastTimestamp"]});
    // Go's `omitempty`: absent strings and counts are left out; time structs stay as null.
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, x| !x.is_null() || k.contains("Timestamp") || k == "eventTime");
    }
    v
}

fn handle(conn: &mut Conn, req: &Request, client_cert: bool, shared: &Arc<Shared>) -> Outcome {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let target = parse_target(&req.path);
    let mut st = shared.lock();
    let record = |st: &mut State, status: u16| {
        st.seen.push(Seen {
            at: Instant::now(),
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            watch: matches!(req.param("watch"), Some("true" | "1")),
            authorization: req.header("authorization").map(str::to_owned),
            impersonate: req
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with("impersonate-"))
                .cloned()
                .collect(),
            client_cert,
            status,
            body: body.clone(),
        });
    };
    if !authenticated(&st, req, client_cert) {
        record(&mut st, 401);
        drop(st);
        return respond(
            conn,
            401,
            &status_body(401, "Unauthorized", "Unauthorized", json!({})),
            &[],
        );
    }
    let what = format!("{} {}", req.method, req.path);
    if let Some(i) = st
        .faults
        .iter()
        .position(|f| what.contains(&f.matching) && f.count > 0)
    {
        let f = st.faults[i].clone();
        st.faults[i].count -= 1;
        if st.faults[i].count == 0 {
            st.faults.remove(i);
        }
        record(&mut st, f.status.unwrap_or(0));
        drop(st);
        let Some(code) = f.status else {
            return Outcome::Close;
        };
        let extra: Vec<(String, String)> = f
            .retry_after
            .map(|s| ("Retry-After".to_owned(), s.to_string()))
            .into_iter()
            .collect();
        let reason = if code == 429 {
            "TooManyRequests"
        } else {
            "InternalError"
        };
        return respond(
            conn,
            code,
            &status_body(code, reason, "simulated fault", json!({})),
            &extra,
        );
    }
    // Discovery and other non-resource paths.
    if req.method == "GET" {
        let doc = match req.path.as_str() {
            "/version" => Some(
                json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-sim",
                "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}),
            ),
            "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
            "/apis" => Some(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                group("batch"), group("events.k8s.io"), group("authorization.k8s.io")]}),
            ),
            "/api/v1" => Some(resources(
                "v1",
                &[
                    ("pods", "Pod", true),
                    ("pods/log", "Pod", true),
                    ("events", "Event", true),
                    ("namespaces", "Namespace", false),
                ],
            )),
            "/apis/batch/v1" => Some(resources("batch/v1", &[("jobs", "Job", true)])),
            "/apis/events.k8s.io/v1" => {
                Some(resources("events.k8s.io/v1", &[("events", "Event", true)]))
            }
            "/apis/authorization.k8s.io/v1" => Some(resources(
                "authorization.k8s.io/v1",
                &[("selfsubjectaccessreviews", "SelfSubjectAccessReview", false)],
            )),
            _ => None,
        };
        if let Some(doc) = doc {
            record(&mut st, 200);
            drop(st);
            return respond(conn, 200, &doc, &[]);
        }
    }
    if req.method == "POST" && req.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    {
        let attrs = &body["spec"]["resourceAttributes"];
        let verb = attrs["verb"].as_str().unwrap_or("");
        let mut resource = attrs["resource"].as_str().unwrap_or("").to_owned();
        if let Some(sub) = attrs["subresource"].as_str().filter(|s| !s.is_empty()) {
            resource = format!("{resource}/{sub}");
        }
        let allowed = !st.forbidden.contains(&(verb.to_owned(), resource));
        let mut out = body.clone();
        out["status"] = json!({"allowed": allowed});
        record(&mut st, 201);
        drop(st);
        return respond(conn, 201, &out, &[]);
    }
    let Some(t) = target else {
        record(&mut st, 404);
        drop(st);
        return respond(
            conn,
            404,
            &status_body(
                404,
                "NotFound",
                "the server could not find the requested resource",
                json!({}),
            ),
            &[],
        );
    };
    let v = verb(req, &t);
    let res = match &t.sub {
        Some(s) => format!("{}/{s}", t.resource),
        None => t.resource.to_owned(),
    };
    if st.forbidden.contains(&(v.to_owned(), res.clone())) {
        record(&mut st, 403);
        let group = if t.resource == "jobs" { "batch" } else { "" };
        let msg = format!(
            "{}{} is forbidden: User \"system:serviceaccount:{}:oz-agent-worker\" cannot {v} resource \"{}\" in API group \"{group}\" in the namespace \"{}\"",
            t.resource,
            if group.is_empty() {
                String::new()
            } else {
                format!(".{group}")
            },
            t.namespace,
            res,
            t.namespace
        );
        drop(st);
        return respond(
            conn,
            403,
            &status_body(403, "Forbidden", &msg, json!({"kind": t.resource})),
            &[],
        );
    }
    let Some(kind) = t.kind else {
        // Namespaces: GET one.
        let exists = t.name.as_ref().is_some_and(|n| st.namespaces.contains(n));
        if exists {
            record(&mut st, 200);
            drop(st);
            let n = t.name.clone().unwrap_or_default();
            return respond(
                conn,
                200,
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}, "status": {"phase": "Active"}}),
                &[],
            );
        }
        record(&mut st, 404);
        drop(st);
        let n = t.name.clone().unwrap_or_default();
        return respond(
            conn,
            404,
            &status_body(
                404,
                "NotFound",
                &format!("namespaces \"{n}\" not found"),
                json!({"name": n, "kind": "namespaces"}),
            ),
            &[],
        );
    };
    let not_found = |name: &str| {
        status_body(
            404,
            "NotFound",
            &format!(
                "{}{} \"{name}\" not found",
                t.resource,
                if kind == Kind::Job { ".batch" } else { "" }
            ),
            json!({"name": name, "group": if kind == Kind::Job { "batch" } else { "" }, "kind": t.resource}),
        )
    };
    match (v, &t.name, t.sub.as_deref()) {
        ("watch", _, _) => {
            record(&mut st, 200);
            drop(st);
            watch(conn, req, &t, kind, shared);
            Outcome::Close
        }
        ("list", None, _) => {
            let mut items: Vec<Value> = st.store.list(kind, &t.namespace);
            if let Some(sel) = req.param("labelSelector") {
                items.retain(|o| matches_selector(o, sel, false));
            }
            if let Some(sel) = req.param("fieldSelector") {
                let sel = if t.events_v1 {
                    sel.replace("regarding.", "involvedObject.")
                } else {
                    sel.to_owned()
                };
                items.retain(|o| matches_selector(o, &sel, true));
            }
            if t.events_v1 {
                items = items.iter().map(to_events_v1).collect();
            }
            let api_version = if t.events_v1 {
                "events.k8s.io/v1"
            } else {
                kind.api_version()
            };
            let doc = json!({"kind": kind.list_kind(), "apiVersion": api_version,
                "metadata": {"resourceVersion": st.store.rv.to_string()}, "items": items});
            record(&mut st, 200);
            drop(st);
            respond(conn, 200, &doc, &[])
        }
        ("get", Some(name), Some("log")) => {
            let name = name.clone();
            if super::logs::serve(conn, req, &t.namespace, &name, st, record, shared) {
                Outcome::KeepAlive
            } else {
                Outcome::Close
            }
        }
        ("get", Some(name), None) => match st.store.get(kind, &t.namespace, name).cloned() {
            Some(o) => {
                record(&mut st, 200);
                drop(st);
                respond(conn, 200, &o, &[])
            }
            None => {
                record(&mut st, 404);
                let b = not_found(name);
                drop(st);
                respond(conn, 404, &b, &[])
            }
        },
        ("create", None, _) if kind == Kind::Job => {
            create_job(conn, req, &t, body.clone(), st, record, shared)
        }
        ("delete", Some(name), None) => {
            let policy = req
                .param("propagationPolicy")
                .map(str::to_owned)
                .or_else(|| body["propagationPolicy"].as_str().map(str::to_owned));
            let Some(existing) = st.store.get(kind, &t.namespace, name).cloned() else {
                record(&mut st, 404);
                let b = not_found(name);
                drop(st);
                return respond(conn, 404, &b, &[]);
            };
            if let Some(uid) = body["preconditions"]["uid"].as_str()
                && existing["metadata"]["uid"].as_str() != Some(uid)
            {
                record(&mut st, 409);
                drop(st);
                return respond(
                    conn,
                    409,
                    &status_body(
                        409,
                        "Conflict",
                        "Precondition failed: UID in precondition does not match",
                        json!({}),
                    ),
                    &[],
                );
            }
            st.store.delete(kind, &t.namespace, name);
            if kind == Kind::Job && matches!(policy.as_deref(), Some("Background" | "Foreground")) {
                let uid = existing["metadata"]["uid"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let pods: Vec<String> = st
                    .store
                    .list(Kind::Pod, &t.namespace)
                    .iter()
                    .filter(|p| p["metadata"]["labels"]["controller-uid"].as_str() == Some(&uid))
                    .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
                    .collect();
                for p in pods {
                    st.store.delete(Kind::Pod, &t.namespace, &p);
                }
            }
            record(&mut st, 200);
            shared.changed.notify_all();
            drop(st);
            respond(
                conn,
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": "batch", "kind": "jobs", "uid": existing["metadata"]["uid"]}}),
                &[],
            )
        }
        ("patch", Some(name), None) => {
            let Some(existing) = st.store.get(kind, &t.namespace, name).cloned() else {
                record(&mut st, 404);
                let b = not_found(name);
                drop(st);
                return respond(conn, 404, &b, &[]);
            };
            let fence_uid = body["metadata"]["uid"].as_str();
            let fence_rv = body["metadata"]["resourceVersion"].as_str();
            if fence_uid.is_some_and(|u| existing["metadata"]["uid"].as_str() != Some(u))
                || fence_rv
                    .is_some_and(|r| existing["metadata"]["resourceVersion"].as_str() != Some(r))
            {
                record(&mut st, 409);
                drop(st);
                let msg = format!(
                    "Operation cannot be fulfilled on jobs.batch \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                );
                return respond(
                    conn,
                    409,
                    &status_body(409, "Conflict", &msg, json!({"name": name})),
                    &[],
                );
            }
            let mut patch = body.clone();
            if let Some(m) = patch["metadata"].as_object_mut() {
                m.remove("uid");
                m.remove("resourceVersion");
            }
            let out = st
                .store
                .update(kind, &t.namespace, name, |o| merge_patch(o, &patch));
            record(&mut st, 200);
            shared.changed.notify_all();
            drop(st);
            respond(conn, 200, &out.unwrap_or(Value::Null), &[])
        }
        _ => {
            record(&mut st, 405);
            drop(st);
            respond(
                conn,
                405,
                &status_body(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    json!({}),
                ),
                &[],
            )
        }
    }
}

fn group(name: &str) -> Value {
    let gv = format!("{name}/v1");
    json!({"name": name, "versions": [{"groupVersion": gv, "version": "v1"}],
           "preferredVersion": {"groupVersion": gv, "version": "v1"}})
}

fn resources(gv: &str, list: &[(&str, &str, bool)]) -> Value {
    let rs: Vec<Value> = list
        .iter()
        .map(|(name, kind, namespaced)| {
            json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
               "verbs": ["create", "delete", "get", "list", "patch", "watch"]})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rs})
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in p {
        if v.is_null() {
            if let Some(o) = target.as_object_mut() {
                o.remove(k);
            }
        } else {
            merge_patch(&mut target[k.as_str()], v);
        }
    }
}

fn create_job(
    conn: &mut Conn,
    req: &Request,
    t: &Target,
    mut body: Value,
    mut st: std::sync::MutexGuard<'_, State>,
    record: impl Fn(&mut State, u16),
    shared: &Arc<Shared>,
) -> Outcome {
    if let Some(msg) = st.deny_jobs.clone() {
        record(&mut st, 422);
        drop(st);
        let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
        return respond(
            conn,
            422,
            &status_body(
                422,
                "Invalid",
                &msg,
                json!({"name": name, "group": "batch", "kind": "Job"}),
            ),
            &[],
        );
    }
    if body["metadata"]["name"].as_str().unwrap_or("").is_empty() {
        let prefix = body["metadata"]["generateName"]
            .as_str()
            .unwrap_or("job-")
            .to_owned();
        body["metadata"]["name"] = json!(format!("{prefix}{:05x}", st.store.rv));
    }
    let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if body["spec"]["template"]["spec"]["containers"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        record(&mut st, 422);
        drop(st);
        let msg = format!(
            "Job.batch \"{name}\" is invalid: spec.template.spec.containers: Required value"
        );
        return respond(
            conn,
            422,
            &status_body(422, "Invalid", &msg, json!({"name": name})),
            &[],
        );
    }
    if req.param("dryRun").is_some() {
        record(&mut st, 201);
        drop(st);
        return respond(conn, 201, &body, &[]);
    }
    let Some(created) = st.store.create(Kind::Job, &t.namespace, body.clone()) else {
        record(&mut st, 409);
        drop(st);
        let msg = format!("jobs.batch \"{name}\" already exists");
        return respond(
            conn,
            409,
            &status_body(
                409,
                "AlreadyExists",
                &msg,
                json!({"name": name, "group": "batch", "kind": "jobs"}),
            ),
            &[],
        );
    };
    let containers = created["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let image = containers
        .iter()
        .find(|c| c["name"] == "task")
        .or(containers.first())
        .and_then(|c| c["image"].as_str())
        .unwrap_or("")
        .to_owned();
    let steps: Vec<Step> = st
        .scripts
        .get(&image)
        .cloned()
        .unwrap_or_else(|| st.default_script.clone());
    let now = Instant::now();
    let mut run = Run {
        namespace: t.namespace.clone(),
        job: name,
        pod: None,
        steps,
        index: 0,
        since: now,
        started: now,
        done: false,
        log: String::new(),
    };
    run.start(&mut st.store);
    st.runs.push(run);
    record(&mut st, 201);
    shared.changed.notify_all();
    drop(st);
    respond(conn, 201, &created, &[])
}

/// Streams watch events until the client goes, `timeoutSeconds` passes or the test cuts watches.
fn watch(conn: &mut Conn, req: &Request, t: &Target, kind: Kind, shared: &Arc<Shared>) {
    let label = req.param("labelSelector").unwrap_or("").to_owned();
    let field = req.param("fieldSelector").unwrap_or("").to_owned();
    let bookmarks = req.param("allowWatchBookmarks") == Some("true");
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let from_rv = req
        .param("resourceVersion")
        .filter(|s| !s.is_empty() && *s != "0")
        .and_then(|s| s.parse::<u64>().ok());
    let matches =
        |o: &Value| matches_selector(o, &label, false) && matches_selector(o, &field, true);
    if serve::start_stream(conn).is_err() {
        return;
    }
    let (mut cursor, generation, initial, bookmark_every) = {
        let mut st = shared.lock();
        st.open_watches += 1;
        st.max_open_watches = st.max_open_watches.max(st.open_watches);
        let generation = st.watch_generation;
        let mut initial = Vec::new();
        let cursor = match from_rv {
            Some(rv) if rv + 1 < st.store.compacted_below => {
                initial.push(json!({"type": "ERROR", "object": super::api::status_body(410, "Expired",
                    &format!("too old resource version: {rv} ({})", st.store.compacted_below - 1), json!({}))}));
                u64::MAX
            }
            Some(rv) => rv,
            None => {
                for o in st.store.list(kind, &t.namespace) {
                    if matches(&o) {
                        initial.push(json!({"type": "ADDED", "object": o}));
                    }
                }
                st.store.rv
            }
        };
        (cursor, generation, initial, st.bookmark_every)
    };
    let done = |shared: &Arc<Shared>| {
        shared.lock().open_watches -= 1;
        shared.changed.notify_all();
    };
    for ev in &initial {
        if write_event(conn, ev).is_err() {
            return done(shared);
        }
    }
    if cursor == u64::MAX {
        let _ = serve::write_chunk(conn, b"");
        return done(shared);
    }
    let mut last_bookmark = Instant::now();
    loop {
        let mut out = Vec::new();
        {
            let st = shared.lock();
            let st = if st.store.rv <= cursor {
                shared
                    .changed
                    .wait_timeout(st, Duration::from_millis(50))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0)
            } else {
                st
            };
            if shared.stop.load(Ordering::SeqCst) || st.watch_generation != generation {
                break;
            }
            for c in st.store.history.iter().filter(|c| c.rv > cursor) {
                if c.kind == kind
                    && (t.namespace.is_empty() || c.namespace == t.namespace)
                    && matches(&c.object)
                {
                    out.push(json!({"type": c.kind_of_change, "object": c.object}));
                }
            }
            cursor = st.store.rv;
            if bookmarks && last_bookmark.elapsed() >= bookmark_every {
                last_bookmark = Instant::now();
                out.push(json!({"type": "BOOKMARK", "object": {"kind": kind.kind(), "apiVersion": kind.api_version(),
                    "metadata": {"resourceVersion": cursor.to_string(),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}}));
            }
        }
        for ev in &out {
            if write_event(conn, ev).is_err() {
                return done(shared);
            }
        }
        if timeout.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        // Detect a client that went away while idle (a zero-length write is not enough).
        let mut probe = [0u8; 1];
        let _ = conn.tcp().set_nonblocking(true);
        let gone = matches!(conn.tcp().peek(&mut probe), Ok(0));
        let _ = conn.tcp().set_nonblocking(false);
        if gone {
            return done(shared);
        }
    }
    let _ = serve::write_chunk(conn, b"");
    done(shared);
}

fn write_event(conn: &mut Conn, ev: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(ev).unwrap_or_default();
    line.push(b'\n');
    serve::write_chunk(conn, &line)
}
