//! A flood of tasks with `max_concurrent_tasks: 0` (no limit) under a low `RLIMIT_NOFILE` or
//! `RLIMIT_NPROC`: the tasks that cannot get a descriptor, a thread or a process are failed
//! with a message naming the limit and counted in the metrics; the daemon lives on and a later
//! task runs. The limit is lowered on the running worker (`prlimit(2)`) once it is connected,
//! to just above what it holds then, so the test does not depend on how many descriptors or
//! threads the worker needs to start.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::support::harness::TestDir;
use crate::support::oz_server::OzServer;

const FLOOD: usize = 24;

/// Lowers a resource limit of a running process with util-linux's `prlimit(1)` (`nofile`,
/// `nproc`), soft and hard. `as_uid`: run it as the target's own user, which may lower its
/// limits without `CAP_SYS_RESOURCE` (containers often lack it).
fn set_limit(pid: i32, resource: &str, value: u64, as_uid: Option<u32>) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("prlimit");
    if let Some(uid) = as_uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd
        .arg(format!("--pid={pid}"))
        .arg(format!("--{resource}={value}:{value}"))
        .output()
        .expect("prlimit(1) from util-linux is needed");
    assert!(out.status.success(), "prlimit: {out:?}");
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

fn count_entries(path: String) -> u64 {
    std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .count() as u64
}

/// Floods the worker, waits for every task's one answer, and returns the terminal frames.
fn flood(oz: &OzServer, prefix: &str) -> BTreeMap<String, (String, Value)> {
    for i in 0..FLOOD {
        oz.push_json(&assignment(
            &format!("{prefix}-{i}"),
            Some("e1"),
            json!({"STANDIN_SLEEP": "2"}),
        ))
        .unwrap();
    }
    let mut out = BTreeMap::new();
    for i in 0..FLOOD {
        let id = format!("{prefix}-{i}");
        let f = oz.wait_for_frame(T, |f| {
            f.task_id() == id && (f.kind() == "task_completed" || f.kind() == "task_failed")
        });
        out.insert(id, (f.kind().to_owned(), f.value["data"].clone()));
    }
    // Exactly one claim and one terminal message per assignment.
    for id in out.keys() {
        let kinds: Vec<String> = frames_for(oz, id).into_iter().map(|f| f.0).collect();
        assert_eq!(kinds.len(), 2, "{id}: {kinds:?}");
        assert_eq!(kinds[0], "task_claimed", "{id}: {kinds:?}");
    }
    out
}

fn failures_total(addr: &str) -> f64 {
    let body = super::ops::get(addr, "/metrics").1;
    body.lines()
        .filter(|l| l.starts_with("oz_worker_task_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn check_flood(
    w: &mut crate::support::harness::Worker,
    oz: &OzServer,
    results: &BTreeMap<String, (String, Value)>,
    hint: &str,
) {
    let failed: Vec<&Value> = results
        .values()
        .filter(|(k, _)| k == "task_failed")
        .map(|(_, d)| d)
        .collect();
    assert!(
        !failed.is_empty(),
        "the limit was never reached: {results:?}"
    );
    assert!(
        failed
            .iter()
            .any(|d| d["message"].as_str().unwrap_or("").contains(hint)),
        "no failure names the limit ({hint}): {failed:?}"
    );
    // The daemon lives on: a later task runs to completion under the same limit.
    oz.push_json(&assignment("after", Some("e1"), json!({})))
        .unwrap();
    let done = expect(oz, "task_completed", "after");
    assert_eq!(done["message"], "Task completed successfully", "{done}");
    let addr = super::ops::ops_addr(w);
    let counted = failures_total(&addr);
    assert!(
        counted >= failed.len() as f64,
        "{counted} failures counted, {} reported",
        failed.len()
    );
    w.signal(libc::SIGTERM);
    assert!(w.wait(T).success(), "{}", w.dump());
}

#[test]
fn a_flood_under_a_low_descriptor_limit_fails_tasks_cleanly() {
    let dir = TestDir::new("e2e-nofile");
    let oz = OzServer::start();
    let mut w = start(&dir, &oz, &["--metrics-addr", "127.0.0.1:0"]);
    let pid = w.pid();
    let held = count_entries(format!("/proc/{pid}/fd"));
    set_limit(pid, "nofile", held + 12, None);
    let results = flood(&oz, "nofile");
    check_flood(&mut w, &oz, &results, "file descriptors");
}

#[test]
fn a_flood_under_a_low_process_limit_fails_tasks_cleanly() {
    // RLIMIT_NPROC counts every thread and process of the real user id and does not apply to
    // root: the worker runs as a user id of its own, so nothing else counts against it.
    assert!(
        running_as_root(),
        "this test must run as root: it runs the worker under a user id of its own"
    );
    let uid = 50_000 + std::process::id() % 10_000;
    let dir = TestDir::new("e2e-nproc");
    std::os::unix::fs::chown(&dir.path, Some(uid), Some(uid)).unwrap();
    std::os::unix::fs::chown(dir.join("home"), Some(uid), Some(uid)).ok();
    let oz = OzServer::start();
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .run_as_user(uid)
        .spawn();
    oz.wait_for_connections(1, T);
    w.wait_for_log("Connected to Oz", T);
    let pid = w.pid();
    let threads = count_entries(format!("/proc/{pid}/task"));
    // Room for a few tasks' threads and agent processes, not for the flood.
    set_limit(pid, "nproc", threads + 8, Some(uid));
    let results = flood(&oz, "nproc");
    check_flood(&mut w, &oz, &results, "thread/process limit");
}
