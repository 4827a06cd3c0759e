//! Crashes: `kill -9` of the real binary at points of a task's life, then a restart on the
//! same state directory. Every claimed task must get exactly one terminal message.

use std::path::Path;

use serde_json::json;

use oz_agent_worker::backend::TaskRef;
use oz_agent_worker::journal::{Journal, Terminal};

use super::*;
use crate::support::harness::TestDir;
use crate::support::oz_server::OzServer;

/// A direct-backend worker on the state directory `state`, connected to `oz`.
fn start_on(dir: &TestDir, oz: &OzServer, state: &Path) -> Worker {
    let config = direct_config(dir, "");
    let cmd = worker(dir, oz, &config).args(["--state-dir", &state.display().to_string()]);
    let mut w = cmd.spawn();
    w.wait_for_log("Connected to Oz", T);
    w
}

fn kill9(w: &mut Worker) {
    w.signal(libc::SIGKILL);
    w.wait(T);
}

fn terminals(oz: &OzServer, task: &str) -> Vec<(String, Value)> {
    frames_for(oz, task)
        .into_iter()
        .filter(|(k, _)| k == "task_completed" || k == "task_failed")
        .collect()
}

/// Waits a little for late duplicates, then asserts exactly one terminal message.
fn exactly_one_terminal(oz: &OzServer, task: &str) -> Value {
    let first = oz.wait_for_frame(T, |f| {
        f.task_id() == task && (f.kind() == "task_completed" || f.kind() == "task_failed")
    });
    // A duplicate would come right after a restart's replay; give it a moment to show.
    std::thread::sleep(Duration::from_millis(500));
    let all = terminals(oz, task);
    assert_eq!(all.len(), 1, "terminal messages for {task}: {all:?}");
    first.value
}

#[test]
fn a_direct_task_running_at_a_crash_is_stopped_and_reported_once() {
    let dir = TestDir::new("crash-direct-running");
    let state = dir.join("state-shared");
    let oz = OzServer::start();
    let mut w = start_on(&dir, &oz, &state);
    let grandchild_file = dir.join("grandchild.pid");
    oz.push_json(&assignment(
        "t-crash",
        Some("e1"),
        json!({"STANDIN_SLEEP": "300",
               "STANDIN_GRANDCHILD": grandchild_file.display().to_string(),
               "CRASH_SECRET": "crash-canary-secret-91"}),
    ))
    .unwrap();
    expect(&oz, "task_claimed", "t-crash");
    let grandchild: i32 = wait_for_file(&grandchild_file).trim().parse().unwrap();
    kill9(&mut w);
    assert!(dir.join("workspaces/t-crash--e1").exists());
    // The agent outlived its worker (nothing else would stop it).
    assert!(alive(grandchild), "the agent's group died with the worker");
    let journal = std::fs::read_to_string(state.join("journal")).unwrap();
    assert!(journal.contains("t-crash"), "{journal}");
    assert!(!journal.contains("crash-canary-secret-91"), "{journal}");
    assert!(!journal.contains(API_KEY), "{journal}");

    // The restarted worker has the same configuration (the same workspace root).
    let dir2 = TestDir::new("crash-direct-running-2");
    let mut w2 = worker(&dir2, &oz, &dir.join("config.yaml"))
        .args(["--state-dir", &state.display().to_string()])
        .spawn();
    w2.wait_for_log("Connected to Oz", T);
    let f = exactly_one_terminal(&oz, "t-crash");
    assert_eq!(f["type"], "task_failed", "{f}");
    assert_eq!(f["data"]["execution_id"], "e1");
    let msg = f["data"]["message"].as_str().unwrap();
    assert!(msg.contains("worker restarted"), "{msg}");
    assert!(msg.contains("agent was stopped"), "{msg}");
    assert!(
        gone_within(grandchild, T),
        "the crashed run's agent group was not stopped"
    );
}

#[test]
fn an_outcome_not_delivered_before_a_crash_is_sent_once_after_restart() {
    let dir = TestDir::new("crash-undelivered");
    let state = dir.join("state-shared");
    let oz = OzServer::start();
    let mut w = start_on(&dir, &oz, &state);
    oz.push_json(&assignment(
        "t-late",
        Some("e7"),
        json!({"STANDIN_SLEEP": "1"}),
    ))
    .unwrap();
    expect(&oz, "task_claimed", "t-late");
    // The server goes away before the task ends and refuses to come back while it runs.
    oz.reject_next(10_000, 503, None);
    oz.drop_connection();
    w.wait_for_log("Task t-late (execution e7) completed", T);
    kill9(&mut w);
    assert!(terminals(&oz, "t-late").is_empty());

    oz.clear_rejects();
    let dir2 = TestDir::new("crash-undelivered-2");
    let mut w2 = start_on(&dir2, &oz, &state);
    let f = exactly_one_terminal(&oz, "t-late");
    assert_eq!(f["type"], "task_completed", "{f}");
    assert_eq!(f["data"]["execution_id"], "e7");
    w2.wait_for_log("sending the outcome a previous run could not deliver", T);
    // Delivered now: a third run has nothing to replay.
    w2.signal(libc::SIGTERM);
    w2.wait(T);
    let dir3 = TestDir::new("crash-undelivered-3");
    let mut w3 = start_on(&dir3, &oz, &state);
    w3.wait_for_log("0 undelivered outcome(s), 0 unfinished task(s)", T);
    assert_eq!(terminals(&oz, "t-late").len(), 1);
}

#[test]
fn a_journal_left_by_a_crash_is_replayed_before_new_work() {
    // The journal as a crash leaves it at the points no test can hit by timing: a claim
    // journalled but never sent, a claim whose task had not started a process, an outcome
    // journalled but not flushed, and a torn last line.
    let dir = TestDir::new("crash-replay");
    let state = dir.join("state-shared");
    {
        let (j, _) = Journal::open(&state).unwrap();
        let key = |t: &str, e: &str| TaskRef {
            task_id: t.into(),
            execution_id: Some(e.into()),
        };
        j.claimed(&key("t-claimed", "e1"), "direct");
        j.claimed(&key("t-ended", "e2"), "direct");
        j.ended(
            &key("t-ended", "e2"),
            Some(Terminal {
                completed: false,
                message: "Failed to execute task: oz agent exited with error: exit code 4".into(),
                task_state: None,
                failure_reason: Some("agent_invocation".into()),
                exit_code: Some(4),
                failure_details: None,
            }),
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(state.join("journal"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"1234abcd {\"op\":\"claimed\",\"task\":\"t-to").unwrap();
    drop(f);

    let oz = OzServer::start();
    let mut w = start_on(&dir, &oz, &state);
    w.wait_for_log("damaged line", T);
    let ended = exactly_one_terminal(&oz, "t-ended");
    assert_eq!(ended["type"], "task_failed");
    assert_eq!(ended["data"]["exit_code"], 4);
    let claimed = exactly_one_terminal(&oz, "t-claimed");
    assert_eq!(claimed["type"], "task_failed");
    let msg = claimed["data"]["message"].as_str().unwrap();
    assert!(msg.contains("worker restarted"), "{msg}");
    // Replayed outcomes leave before any new work.
    oz.push_json(&assignment("t-new", None, json!({}))).unwrap();
    expect(&oz, "task_completed", "t-new");
    let order: Vec<String> = oz
        .frames()
        .into_iter()
        .map(|f| f.task_id().to_owned())
        .collect();
    let pos = |t: &str| order.iter().position(|x| x == t).unwrap();
    assert!(pos("t-ended") < pos("t-new") && pos("t-claimed") < pos("t-new"));
}

#[test]
fn kill_9_at_random_points_of_a_burst_loses_no_task() {
    // Tasks of a few hundred milliseconds arrive steadily; the worker is killed three times at
    // pseudo-random moments (fixed seed) and restarted. Every claimed task must end with a
    // terminal message. Exactly one is the goal; a kill between the flush of a message and
    // the journal's note of it can cause one duplicate (the protocol has no acknowledgement),
    // so duplicates are counted and printed, not failed on.
    let dir = TestDir::new("crash-random");
    let state = dir.join("state-shared");
    let oz = OzServer::start();
    let mut seed: u64 = 0x5eed_c4a5;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut sent = Vec::new();
    let mut runs = Vec::new();
    for round in 0..4 {
        let d = TestDir::new(&format!("crash-random-{round}"));
        let mut w = start_on(&d, &oz, &state);
        for i in 0..6 {
            let id = format!("t-r{round}-{i}");
            let sleep = format!("0.{}", next() % 5);
            oz.push_json(&assignment(&id, Some("e"), json!({"STANDIN_SLEEP": sleep})))
                .unwrap();
            sent.push(id);
            std::thread::sleep(Duration::from_millis(next() % 150));
        }
        if round < 3 {
            std::thread::sleep(Duration::from_millis(next() % 400));
            kill9(&mut w);
        }
        runs.push((d, w));
    }
    let mut duplicates = 0;
    let mut recovered = 0;
    for id in &sent {
        let claimed = frames_for(&oz, id).iter().any(|(k, _)| k == "task_claimed");
        if !claimed {
            continue;
        }
        oz.wait_for_frame(T, |f| {
            f.task_id() == id && (f.kind() == "task_completed" || f.kind() == "task_failed")
        });
        let all = terminals(&oz, id);
        duplicates += all.len() - 1;
        recovered += all
            .iter()
            .filter(|(_, d)| {
                d["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("worker restarted")
            })
            .count();
    }
    eprintln!(
        "crash-random: {} tasks, {recovered} resolved after a restart, {duplicates} duplicate \
         terminal message(s)",
        sent.len()
    );
}

#[test]
fn without_a_usable_state_directory_the_worker_runs_and_check_says_so() {
    let dir = TestDir::new("crash-no-state");
    // A regular file where the directory's parent should be: nothing can be created there.
    let blocker = dir.write("not-a-dir", "x");
    let state = blocker.join("state");
    let config = direct_config(&dir, "");
    let out = WorkerCommand::new(&dir)
        .args(["check", "--config-file", &config.display().to_string()])
        .args(["--state-dir", &state.display().to_string()])
        .args(["--offline", "--api-key", "crash-test-key"])
        .run();
    // Not a failed check: the worker runs without the journal.
    out.expect_code(0);
    assert!(
        out.stdout.contains("warn cannot use the state directory"),
        "{}",
        out.dump()
    );
    assert!(out.stdout.contains("--state-dir"), "{}", out.dump());
    let out = WorkerCommand::new(&dir)
        .args(["check", "--config-file", &config.display().to_string()])
        .args(["--offline", "--api-key", "crash-test-key"])
        .run();
    assert!(
        out.stdout.contains("ok   state directory"),
        "{}",
        out.dump()
    );

    let oz = OzServer::start();
    let mut w = start_on(&dir, &oz, &state);
    w.wait_for_log("cannot use the state directory", T);
    oz.push_json(&assignment("t-nostate", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-nostate");
}
