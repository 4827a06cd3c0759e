//! Names, labels and hashes of the objects the Kubernetes backend creates (reference
//! `kubernetes-backend.md` §3.2 and §4).
//!
//! The Go worker's values are kept bit for bit: a Job created by either worker carries the same
//! name and labels, so a Rust worker can find (re-attach to) Jobs a Go worker created and the
//! operator's selectors keep working.

use std::collections::BTreeMap;

/// Longest object name the Job name must fit in (a DNS label: the Job controller puts it in
/// the pod's `job-name` label).
const MAX_NAME: usize = 63;
const JOB_PREFIX: &str = "oz-task-";
const EXEC_INFIX: &str = "-exec-";
/// How many trailing characters of the execution id the Job name keeps.
const EXEC_SUFFIX_LEN: usize = 8;

/// Label keys the worker sets on every task Job and its pod template.
pub const LABEL_WORKER_ID: &str = "oz-worker-id";
pub const LABEL_WORKER_HASH: &str = "oz-worker-hash";
pub const LABEL_TASK_ID: &str = "oz-task-id";
pub const LABEL_TASK_HASH: &str = "oz-task-hash";
pub const LABEL_EXECUTION_ID: &str = "oz-execution-id";
pub const LABEL_EXECUTION_HASH: &str = "oz-execution-hash";
/// The label the Job controller puts on the pods of a Job.
pub const LABEL_JOB_NAME: &str = "job-name";

/// The UID of the Job that owns a pod, from the Job controller's labels: the
/// `batch.kubernetes.io/` one (1.27+) or the legacy one; "" when neither is there.
pub fn pod_controller_uid(pod: &serde_json::Value) -> &str {
    let labels = pod.pointer("/metadata/labels");
    ["batch.kubernetes.io/controller-uid", "controller-uid"]
        .iter()
        .filter_map(|k| {
            labels
                .and_then(|l| l.get(*k))
                .and_then(serde_json::Value::as_str)
        })
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

/// The execution id a task's Kubernetes objects are keyed by: the assignment's
/// `execution_id` trimmed, or the run id when that is empty.
pub fn execution_id<'a>(task_id: &'a str, execution_id: Option<&'a str>) -> &'a str {
    match execution_id.map(str::trim) {
        Some(e) if !e.is_empty() => e,
        _ => task_id,
    }
}

/// Object-name sanitiser: lowercase, every character outside `a-z0-9` becomes `-`, leading and
/// trailing `-` trimmed. Runs of `-` are kept (as upstream does).
fn sanitize_name(s: &str) -> String {
    let mapped: String = s
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches('-').to_owned()
}

/// The task Job's name, `oz-task-<run>-exec-<last 8 of exec>`, always a valid name of at most
/// 63 characters. The whole run id fits when it is a UUID.
pub fn job_name(task_id: &str, execution_id: &str) -> String {
    let exec = sanitize_name(execution_id);
    let exec = if exec.len() > EXEC_SUFFIX_LEN {
        // The sanitised text is ASCII, so byte offsets are character offsets.
        exec[exec.len() - EXEC_SUFFIX_LEN..]
            .trim_matches('-')
            .to_owned()
    } else {
        exec
    };
    let exec = if exec.is_empty() { "exec".into() } else { exec };
    let budget = MAX_NAME - JOB_PREFIX.len() - EXEC_INFIX.len() - exec.len();
    let run = sanitize_name(task_id);
    let run = run[..run.len().min(budget)].trim_matches('-');
    let run = if run.is_empty() { "run" } else { run };
    format!("{JOB_PREFIX}{run}{EXEC_INFIX}{exec}")
}

/// The startup preflight Job's name: `oz-preflight-<H(worker id)>-<unix nanoseconds>`.
pub fn preflight_job_name(worker_id: &str, unix_nanos: u128) -> String {
    format!("oz-preflight-{}-{unix_nanos}", label_hash(worker_id))
}

/// `H(s)`: lowercase hex of the first 8 bytes of SHA-256(s), over the raw (unsanitised) value,
/// so that two ids that sanitise alike still get different hash labels.
pub fn label_hash(s: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Label-value sanitiser: lowercase, keep `a-z0-9-_.`, everything else becomes `-`, trimmed of
/// `-_.` at both ends, at most 63 characters, `unknown` when nothing is left.
pub fn label_value(s: &str) -> String {
    const TRIM: &[char] = &['-', '_', '.'];
    let mapped: String = s
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || TRIM.contains(&c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(TRIM);
    let cut = trimmed[..trimmed.len().min(MAX_NAME)].trim_end_matches(TRIM);
    if cut.is_empty() {
        "unknown".into()
    } else {
        cut.to_owned()
    }
}

/// Who a task Job belongs to; the source of its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub worker_id: &'a str,
    pub task_id: &'a str,
    /// Already resolved with [`execution_id`].
    pub execution_id: &'a str,
}

impl Identity<'_> {
    pub fn job_name(&self) -> String {
        job_name(self.task_id, self.execution_id)
    }

    /// The labels of the Job and of its pod template: `extra_labels` first, then the worker's
    /// six, which win over an operator label of the same key.
    pub fn labels(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels = extra.clone();
        for (key, value) in [
            (LABEL_WORKER_ID, label_value(self.worker_id)),
            (LABEL_WORKER_HASH, label_hash(self.worker_id)),
            (LABEL_TASK_ID, label_value(self.task_id)),
            (LABEL_TASK_HASH, label_hash(self.task_id)),
            (LABEL_EXECUTION_ID, label_value(self.execution_id)),
            (LABEL_EXECUTION_HASH, label_hash(self.execution_id)),
        ] {
            labels.insert(key.to_owned(), value);
        }
        labels
    }
}

/// Annotations on a task Job carrying the raw task and execution ids: the id labels are
/// sanitised (lower-cased, shortened), so re-attach reads the ids from here.
pub const ANNOTATION_TASK_ID: &str = "oz.warp.dev/task-id";
pub const ANNOTATION_EXECUTION_ID: &str = "oz.warp.dev/execution-id";

impl Identity<'_> {
    /// The Job's annotations: `extra_annotations` first, then the raw ids, which win over an
    /// operator annotation of the same key.
    pub fn annotations(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut annotations = extra.clone();
        annotations.insert(ANNOTATION_TASK_ID.to_owned(), self.task_id.to_owned());
        annotations.insert(
            ANNOTATION_EXECUTION_ID.to_owned(),
            self.execution_id.to_owned(),
        );
        annotations
    }
}

/// Annotation a re-attaching worker puts on a Job whose outcome it reported, so that a later
/// start never reports it again. Its value is the reported outcome (`succeeded`, `failed`,
/// `cancelled`).
pub const ANNOTATION_REPORTED: &str = "oz.warp.dev/reported";

/// Merge-patch body marking a Job reported; fenced by UID so a replaced Job is never marked.
pub fn reported_patch(uid: &str, outcome: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": { "uid": uid, "annotations": { ANNOTATION_REPORTED: outcome } }
    })
}

/// The outcome a previous worker reported for `job`, if any.
pub fn reported(job: &serde_json::Value) -> Option<&str> {
    job.pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_REPORTED))
        .and_then(serde_json::Value::as_str)
        .filter(|v| !v.is_empty())
}

/// `key=value` selector of every Job this worker created (re-attach lists by it).
pub fn worker_selector(worker_id: &str) -> String {
    format!("{LABEL_WORKER_HASH}={}", label_hash(worker_id))
}

/// `key=value` selector of the pods of one execution.
pub fn execution_selector(execution_id: &str) -> String {
    format!("{LABEL_EXECUTION_HASH}={}", label_hash(execution_id))
}

/// True when a Job's labels say it runs this worker's execution: the hash labels are compared,
/// because the sanitised id labels of two different ids can be equal. Guards deletion against
/// name collisions (the name keeps only 8 characters of the execution id).
pub fn labels_match(labels: &serde_json::Value, identity: &Identity<'_>) -> bool {
    let get = |k: &str| labels.get(k).and_then(serde_json::Value::as_str);
    get(LABEL_WORKER_HASH) == Some(label_hash(identity.worker_id).as_str())
        && get(LABEL_TASK_HASH) == Some(label_hash(identity.task_id).as_str())
        && get(LABEL_EXECUTION_HASH) == Some(label_hash(identity.execution_id).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "019f5de4-bfd1-762e-92ed-199c971abcba";
    const EXEC: &str = "019f5df0-aaaa-bbbb-cccc-abcdef012345";

    fn valid_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn job_name_embeds_full_run_id_and_exec_suffix() {
        let name = job_name(RUN, EXEC);
        assert_eq!(name, format!("oz-task-{RUN}-exec-ef012345"));
        assert!(valid_dns_label(&name), "{name}");
    }

    #[test]
    fn job_name_falls_back_for_empty_ids() {
        assert_eq!(job_name("", ""), "oz-task-run-exec-exec");
        assert_eq!(job_name("___", "..."), "oz-task-run-exec-exec");
    }

    #[test]
    fn job_name_sanitizes_ids() {
        assert_eq!(job_name("RUN_1", "exec.2"), "oz-task-run-1-exec-exec-2");
        // Runs of dashes are kept, as upstream does.
        assert_eq!(job_name("a__b", "x"), "oz-task-a--b-exec-x");
    }

    #[test]
    fn job_name_truncates_overlong_run_id() {
        let name = job_name(&"a".repeat(100), EXEC);
        assert_eq!(name.len(), 63);
        assert_eq!(name, format!("oz-task-{}-exec-ef012345", "a".repeat(41)));
    }

    #[test]
    fn exec_suffix_is_trimmed_after_cutting() {
        // The last 8 characters start with a dash: it is trimmed, leaving 7.
        assert_eq!(job_name("r", "abc-1234567"), "oz-task-r-exec-1234567");
        // A truncated run id that ends in a dash is trimmed too.
        let run = format!("{}-{}", "b".repeat(40), "c".repeat(20));
        let name = job_name(&run, EXEC);
        assert_eq!(name, format!("oz-task-{}-exec-ef012345", "b".repeat(40)));
    }

    #[test]
    fn job_names_are_valid_for_hostile_ids() {
        for (run, exec) in [
            ("ÄÖÜ", "ß"),
            ("İstanbul", "🙂🙂🙂🙂🙂🙂🙂🙂🙂"),
            (&"-".repeat(200), &"Z".repeat(200)),
            ("a b\tc\n", " "),
        ] {
            let name = job_name(run, exec);
            assert!(valid_dns_label(&name), "{run:?}/{exec:?} -> {name}");
        }
    }

    fn valid_label_value(s: &str) -> bool {
        let alnum = |c: char| c.is_ascii_alphanumeric();
        s.len() <= 63
            && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
            && s.chars().next().is_some_and(alnum)
            && s.chars().last().is_some_and(alnum)
    }

    #[test]
    fn names_and_label_values_are_valid_for_random_ids() {
        const POOL: &[char] = &[
            'a', 'Z', '0', '9', '-', '_', '.', ' ', '/', 'é', 'İ', 'ß', '🙂', '\n', '\0', ':',
        ];
        let mut rng = crate::backend::kubernetes::fixtures::Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..3000 {
            let mut id = || -> String {
                let len = rng.below(120);
                (0..len).map(|_| *rng.pick(POOL)).collect()
            };
            let (run, exec, worker) = (id(), id(), id());
            let name = job_name(&run, &exec);
            assert!(valid_dns_label(&name), "{run:?}/{exec:?} -> {name}");
            for raw in [&run, &exec, &worker] {
                let v = label_value(raw);
                assert!(valid_label_value(&v), "{raw:?} -> {v}");
            }
            assert_eq!(label_hash(&worker).len(), 16);
        }
    }

    #[test]
    fn hash_vectors_match_upstream() {
        assert_eq!(label_hash("task-1"), "7afaa346b4bf92bf");
        assert_eq!(label_hash("execution-1"), "63093cff69b83efb");
        assert_eq!(label_hash("worker-123"), "18093e768f0e7bed");
        assert_eq!(label_hash("Worker A"), "ae4d8c9fec4b7d2c");
    }

    #[test]
    fn label_values_are_sanitized() {
        assert_eq!(label_value("Worker A"), "worker-a");
        assert_eq!(label_value("._-x.y_z-._"), "x.y_z");
        assert_eq!(label_value(""), "unknown");
        assert_eq!(label_value("!!!"), "unknown");
        let long = format!("{}.{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(label_value(&long), "a".repeat(62));
        assert_eq!(label_value(&"x".repeat(70)), "x".repeat(63));
    }

    #[test]
    fn base_labels_include_stable_hashes_and_beat_extra_labels() {
        let id = Identity {
            worker_id: "Worker A",
            task_id: "task-1",
            execution_id: "execution-1",
        };
        let extra = BTreeMap::from([
            ("team".to_owned(), "infra".to_owned()),
            (LABEL_TASK_ID.to_owned(), "spoofed".to_owned()),
        ]);
        let labels = id.labels(&extra);
        assert_eq!(labels["team"], "infra");
        assert_eq!(labels[LABEL_WORKER_ID], "worker-a");
        assert_eq!(labels[LABEL_WORKER_HASH], "ae4d8c9fec4b7d2c");
        assert_eq!(labels[LABEL_TASK_ID], "task-1");
        assert_eq!(labels[LABEL_TASK_HASH], "7afaa346b4bf92bf");
        assert_eq!(labels[LABEL_EXECUTION_ID], "execution-1");
        assert_eq!(labels[LABEL_EXECUTION_HASH], "63093cff69b83efb");
        assert_eq!(labels.len(), 7);
    }

    #[test]
    fn execution_id_is_trimmed_and_falls_back_to_task_id() {
        assert_eq!(execution_id("task-1", Some(" execution-1 ")), "execution-1");
        assert_eq!(execution_id("task-1", Some("  ")), "task-1");
        assert_eq!(execution_id("task-1", None), "task-1");
    }

    #[test]
    fn preflight_name_and_selectors() {
        assert_eq!(
            preflight_job_name("worker-123", 1_700_000_000_123_456_789),
            "oz-preflight-18093e768f0e7bed-1700000000123456789"
        );
        assert_eq!(
            worker_selector("worker-123"),
            "oz-worker-hash=18093e768f0e7bed"
        );
        assert_eq!(
            execution_selector("execution-1"),
            "oz-execution-hash=63093cff69b83efb"
        );
    }

    #[test]
    fn controller_uid_from_either_label() {
        use serde_json::json;
        let new = json!({"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "a"}}});
        let old = json!({"metadata": {"labels": {"controller-uid": "b"}}});
        assert_eq!(pod_controller_uid(&new), "a");
        assert_eq!(pod_controller_uid(&old), "b");
        assert_eq!(pod_controller_uid(&json!({})), "");
    }

    #[test]
    fn reported_annotation_round_trips() {
        let patch = reported_patch("u1", "failed");
        assert_eq!(patch["metadata"]["uid"], "u1");
        assert_eq!(reported(&patch), Some("failed"));
        assert_eq!(reported(&serde_json::json!({"metadata": {}})), None);
        let empty = serde_json::json!({"metadata": {"annotations": {ANNOTATION_REPORTED: ""}}});
        assert_eq!(reported(&empty), None);
    }

    #[test]
    fn labels_match_compares_hashes() {
        let id = Identity {
            worker_id: "w",
            task_id: "task-1",
            execution_id: "execution-1",
        };
        let labels = serde_json::to_value(id.labels(&BTreeMap::new())).unwrap();
        assert!(labels_match(&labels, &id));
        // Same sanitised label, different raw id: not a match.
        let other = Identity {
            execution_id: "EXECUTION-1",
            ..id
        };
        assert!(!labels_match(&labels, &other));
        assert!(!labels_match(&serde_json::json!({}), &id));
    }
}
