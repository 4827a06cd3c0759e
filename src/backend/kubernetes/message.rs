//! Failure messages and exit-code normalisation (reference `kubernetes-backend.md` §6.1, §6.2).
//!
//! The text follows upstream's templates (segments joined with `. `) so that users of either
//! worker read the same diagnosis; tests look for upstream's guidance phrases.

use serde_json::Value;

/// A field of a JSON object as text ("" when absent).
pub fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A field of a JSON object as an integer (0 when absent).
pub fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The exit code reported to Oz: `128 + signal` when the runtime names a signal, else the raw
/// exit code.
pub fn normalized_exit_code(exit_code: i64, signal: i64) -> i32 {
    let code = if signal > 0 { 128 + signal } else { exit_code };
    i32::try_from(code).unwrap_or(i32::MAX)
}

/// The signal behind a termination: the runtime's `signal`, else `exit code − 128`.
pub fn signal_number(exit_code: i64, signal: i64) -> Option<i64> {
    if signal > 0 {
        Some(signal)
    } else if exit_code > 128 {
        Some(exit_code - 128)
    } else {
        None
    }
}

pub fn signal_name(n: i64) -> String {
    match n {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        3 => "SIGQUIT".into(),
        6 => "SIGABRT".into(),
        9 => "SIGKILL".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// Container kinds as messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    InitContainer,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::InitContainer => "init container",
        }
    }
    fn process(self) -> &'static str {
        match self {
            Kind::Container => "task process",
            Kind::InitContainer => "setup process",
        }
    }
}

/// `pod <name> (namespace <ns>[, job <job>])`.
pub fn pod_context(pod: &Value, namespace: &str) -> String {
    let ns = match text(pod, "/metadata/namespace") {
        "" => namespace,
        ns => ns,
    };
    let mut s = format!("pod {} (namespace {ns}", text(pod, "/metadata/name"));
    let labels = pod.pointer("/metadata/labels");
    let job = ["job-name", "batch.kubernetes.io/job-name"]
        .iter()
        .filter_map(|k| labels.and_then(|l| l.get(*k)).and_then(Value::as_str))
        .find(|v| !v.is_empty())
        .unwrap_or("");
    if !job.is_empty() {
        s.push_str(", job ");
        s.push_str(job);
    }
    s.push(')');
    s
}

/// `Pod phase`, `Pod reason`, `Pod message` segments; `reason`/`message` replace the pod's own
/// when non-empty.
fn pod_details(pod: &Value, reason: &str, message: &str, out: &mut Vec<String>) {
    let phase = text(pod, "/status/phase");
    let reason = if reason.is_empty() {
        text(pod, "/status/reason")
    } else {
        reason
    };
    let message = if message.is_empty() {
        text(pod, "/status/message")
    } else {
        message
    };
    for (label, value) in [("phase", phase), ("reason", reason), ("message", message)] {
        if !value.is_empty() {
            out.push(format!("Pod {label}: {}", value.trim()));
        }
    }
}

/// A container that exited non-zero.
pub fn terminated(kind: Kind, container: &str, pod: &Value, ns: &str, term: &Value) -> String {
    let code = int(term, "/exitCode");
    let signal = signal_number(code, int(term, "/signal")).map(signal_name);
    let mut head = format!(
        "{} {container} in {} exited with code {code}",
        kind.as_str(),
        pod_context(pod, ns)
    );
    if let Some(name) = &signal {
        head.push_str(&format!(" ({name})"));
    }
    let mut parts = vec![head];
    pod_details(
        pod,
        text(term, "/reason"),
        text(term, "/message"),
        &mut parts,
    );
    if signal.as_deref() == Some("SIGTERM") {
        parts.push(format!(
            "SIGTERM usually means Kubernetes or the container runtime asked the {} to stop; \
             check pod events and node activity for eviction, preemption, node drain, \
             activeDeadlineSeconds, or manual deletion",
            kind.process()
        ));
    }
    parts.join(". ")
}

/// A container stuck waiting for a reason that will not resolve by itself.
pub fn waiting(kind: Kind, container: &str, pod: &Value, ns: &str, wait: &Value) -> String {
    let reason = text(wait, "/reason");
    let message = text(wait, "/message");
    let mut head = format!(
        "{} {container} in {} is waiting: {reason}",
        kind.as_str(),
        pod_context(pod, ns)
    );
    if !message.is_empty() {
        head.push_str(": ");
        head.push_str(message.trim());
    }
    let mut parts = vec![head];
    pod_details(pod, reason, message, &mut parts);
    parts.join(". ")
}

pub fn unschedulable(pod: &Value, ns: &str, reason: &str, message: &str) -> String {
    format!(
        "{} is unschedulable. Pod reason: {reason}. Pod message: {}",
        pod_context(pod, ns),
        message.trim()
    )
}

pub fn volume(pod: &Value, ns: &str, reason: &str, message: &str) -> String {
    format!(
        "{} failed to mount a volume. Kubernetes event reason: {reason}. Kubernetes event \
         message: {}",
        pod_context(pod, ns),
        message.trim()
    )
}

/// A pod that failed, was evicted or hit its deadline.
pub fn pod_failed(pod: &Value, ns: &str, reason: &str, message: &str) -> String {
    let mut parts = vec![format!("{} failed", pod_context(pod, ns))];
    pod_details(pod, reason, message, &mut parts);
    parts.join(". ")
}

/// A Job with a `Failed` condition and no pod to blame.
pub fn job_failed(job: &str, ns: &str, reason: &str, message: &str) -> String {
    let mut s = format!("kubernetes Job {job} in namespace {ns} failed");
    if !reason.is_empty() {
        s.push_str(&format!(". Job reason: {reason}"));
    }
    if !message.is_empty() {
        s.push_str(&format!(". Job message: {}", message.trim()));
    }
    s
}

/// Most of one container's log the worker reads for diagnostics (`limitBytes`).
pub const LOG_LIMIT_BYTES: u64 = 1 << 20;

/// The containers whose logs explain a failed pod (reference §5.5): every spec init container,
/// then every container, in spec order.
pub fn log_containers(pod: &Value) -> Vec<&str> {
    ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .map(|c| text(c, "/name"))
        .filter(|n| !n.is_empty())
        .collect()
}

/// One section of the logged diagnostics: `[<pod>/<container>]` and the output.
pub fn log_section(pod: &str, container: &str, output: &str) -> String {
    format!("[{pod}/{container}]\n{output}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "task-pod", "namespace": "agents", "labels": {"job-name": "task-job"}},
            "status": {"phase": "Failed"},
        })
    }

    #[test]
    fn log_containers_in_spec_order() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "copy-sidecar-0"}, {"name": "setup"}],
            "containers": [{"name": "task"}, {"name": "logger"}, {}],
        }});
        assert_eq!(
            log_containers(&pod),
            ["copy-sidecar-0", "setup", "task", "logger"]
        );
        assert!(log_containers(&json!({})).is_empty());
        assert_eq!(log_section("p", "task", "out"), "[p/task]\nout");
    }

    #[test]
    fn exit_codes_and_signals() {
        assert_eq!(normalized_exit_code(143, 0), 143);
        assert_eq!(normalized_exit_code(0, 9), 137);
        assert_eq!(normalized_exit_code(2, 0), 2);
        assert_eq!(
            signal_number(143, 0).map(signal_name).as_deref(),
            Some("SIGTERM")
        );
        assert_eq!(
            signal_number(1, 9).map(signal_name).as_deref(),
            Some("SIGKILL")
        );
        assert_eq!(
            signal_number(200, 0).map(signal_name).as_deref(),
            Some("signal 72")
        );
        assert_eq!(signal_number(128, 0), None);
        assert_eq!(signal_number(1, 0), None);
        for (n, name) in [(1, "SIGHUP"), (2, "SIGINT"), (3, "SIGQUIT"), (6, "SIGABRT")] {
            assert_eq!(signal_name(n), name);
        }
    }

    #[test]
    fn terminated_message_carries_context_and_guidance() {
        let msg = terminated(
            Kind::Container,
            "task",
            &pod(),
            "default",
            &json!({"exitCode": 143, "reason": "Error"}),
        );
        for needle in [
            "container task",
            "pod task-pod",
            "namespace agents",
            "job task-job",
            "exited with code 143",
            "SIGTERM",
            "Pod phase: Failed",
            "Pod reason: Error",
            "check pod events and node activity",
            "eviction, preemption, node drain, activeDeadlineSeconds, or manual deletion",
            "task process",
        ] {
            assert!(msg.contains(needle), "{needle:?} not in {msg}");
        }
        let init = terminated(
            Kind::InitContainer,
            "setup",
            &pod(),
            "default",
            &json!({"exitCode": 1}),
        );
        assert_eq!(
            init,
            "init container setup in pod task-pod (namespace agents, job task-job) exited with \
             code 1. Pod phase: Failed"
        );
    }

    #[test]
    fn other_templates() {
        let bare = json!({"metadata": {"name": "p"}});
        assert_eq!(pod_context(&bare, "ns"), "pod p (namespace ns)");
        let new_label =
            json!({"metadata": {"name": "p", "labels": {"batch.kubernetes.io/job-name": "j"}}});
        assert_eq!(pod_context(&new_label, "ns"), "pod p (namespace ns, job j)");
        assert_eq!(
            waiting(
                Kind::InitContainer,
                "copy-sidecar-0",
                &bare,
                "ns",
                &json!({"reason": "ImagePullBackOff", "message": "Back-off pulling image"})
            ),
            "init container copy-sidecar-0 in pod p (namespace ns) is waiting: ImagePullBackOff: \
             Back-off pulling image. Pod reason: ImagePullBackOff. Pod message: Back-off pulling image"
        );
        assert_eq!(
            unschedulable(&bare, "ns", "Unschedulable", "0/3 nodes are available"),
            "pod p (namespace ns) is unschedulable. Pod reason: Unschedulable. Pod message: 0/3 \
             nodes are available"
        );
        assert!(volume(&bare, "ns", "FailedMount", "x").contains("failed to mount a volume"));
        assert_eq!(
            pod_failed(&pod(), "ns", "Evicted", ""),
            "pod task-pod (namespace agents, job task-job) failed. Pod phase: Failed. Pod \
             reason: Evicted"
        );
        assert_eq!(
            job_failed(
                "j",
                "ns",
                "DeadlineExceeded",
                "Job was active longer than specified"
            ),
            "kubernetes Job j in namespace ns failed. Job reason: DeadlineExceeded. Job message: \
             Job was active longer than specified"
        );
        assert_eq!(
            job_failed("j", "ns", "", ""),
            "kubernetes Job j in namespace ns failed"
        );
    }
}
