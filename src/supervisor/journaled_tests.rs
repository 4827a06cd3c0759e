//! The journal hook: what a run journals, and how a replay is acted on.

use crossbeam_channel::unbounded;

use super::*;
use crate::backend::{BackendKind, Orphan, ProbeLine};
use crate::journal::{Journal, Terminal};
use crate::task::TaskSpec;

/// Succeeds every task; resolves every orphan as "adopted and finished".
struct Quick;

impl Backend for Quick {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }
    fn execute(&self, _: &TaskSpec, _: &CancelToken) -> Result<Completion, Failure> {
        Ok(Completion::Finished)
    }
    fn recover(&self, orphan: &Orphan, _: &CancelToken) -> Result<Completion, Failure> {
        assert_eq!(orphan.backend, "docker");
        Ok(Completion::Finished)
    }
    fn probe(&self) -> Vec<ProbeLine> {
        Vec::new()
    }
}

fn key(t: &str) -> TaskRef {
    TaskRef {
        task_id: t.into(),
        execution_id: Some("e".into()),
    }
}

#[test]
fn replay_comes_first_and_an_orphan_does_not_use_up_a_one_shot_worker() {
    let dir = std::env::temp_dir().join(format!("oz-sup-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let (j, _) = Journal::open(&dir).unwrap();
        j.claimed(&key("orphan"), "docker");
        j.claimed(&key("undelivered"), "docker");
        j.ended(
            &key("undelivered"),
            Some(Terminal {
                completed: true,
                message: "Task completed successfully".into(),
                task_state: None,
                failure_reason: None,
                exit_code: None,
                failure_details: None,
            }),
        );
    }
    let (journal, replay) = Journal::open(&dir).unwrap();
    let journal = Arc::new(journal);
    let opts = Options {
        worker_id: "w1".into(),
        max_concurrent_tasks: 0,
        one_shot: true,
        task: TaskOptions::default(),
        shutdown_timeout: Duration::from_secs(5),
        drain_timeout: Duration::ZERO,
    };
    let telemetry = Telemetry::detached("w1", BackendKind::Docker, 0);
    let mut sup =
        Supervisor::new(opts, Arc::new(Quick), telemetry).with_journal(Arc::clone(&journal));
    let (out_tx, out_rx) = unbounded();
    let outbox = move |m: Outbound| {
        let _ = out_tx.send(m);
    };
    sup.recover(&outbox, replay);
    // The undelivered outcome is queued at once, before anything else.
    let first = out_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(first.task_id(), "undelivered");
    assert_eq!(first.kind(), "task_completed");
    let (link_tx, link_rx) = unbounded();
    let (_sig_tx, sig_rx) = unbounded::<i32>();
    let frame =
        r#"{"type":"task_assignment","data":{"task_id":"new","task":{"id":"new","title":"t"}}}"#;
    link_tx
        .send(LinkEvent::Message(crate::protocol::decode(frame).unwrap()))
        .unwrap();
    let exit = sup.run(&outbox, &link_rx, &sig_rx);
    assert_eq!(exit, Exit::OneShotDone);
    let rest: Vec<(String, &'static str)> = out_rx
        .try_iter()
        .map(|m| (m.task_id().to_owned(), m.kind()))
        .collect();
    // The orphan is reported once; the one-shot task is still claimed and run.
    assert!(
        rest.contains(&("orphan".into(), "task_completed")),
        "{rest:?}"
    );
    assert!(rest.contains(&("new".into(), "task_claimed")), "{rest:?}");
    assert!(rest.contains(&("new".into(), "task_completed")), "{rest:?}");
    assert_eq!(rest.len(), 3, "{rest:?}");
    // Journalled: nothing unfinished is left; three outcomes wait for their delivery.
    drop(sup);
    drop(journal);
    let (_, replay) = Journal::open(&dir).unwrap();
    assert!(replay.unfinished.is_empty(), "{replay:?}");
    assert_eq!(replay.undelivered.len(), 3, "{replay:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
