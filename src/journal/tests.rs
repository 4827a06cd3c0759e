use std::io::Write;

use super::*;

fn key(t: &str, e: Option<&str>) -> TaskRef {
    TaskRef {
        task_id: t.into(),
        execution_id: e.map(Into::into),
    }
}

fn failed(msg: &str) -> Terminal {
    Terminal {
        completed: false,
        message: msg.into(),
        task_state: None,
        failure_reason: Some("agent_invocation".into()),
        exit_code: Some(2),
        failure_details: None,
    }
}

fn tmp() -> tempdir::Dir {
    tempdir::Dir::new("journal")
}

/// A private temporary directory removed on drop (no crate for this).
mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "oz-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn a_fresh_directory_replays_nothing_and_is_created_private() {
    let d = tmp();
    let dir = d.path().join("state");
    let (j, replay) = Journal::open(&dir).unwrap();
    assert_eq!(replay, Replay::default());
    assert_eq!(j.live(), 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn replay_sorts_executions_into_undelivered_and_unfinished() {
    let d = tmp();
    {
        let (j, _) = Journal::open(d.path()).unwrap();
        // Done: delivered.
        j.claimed(&key("a", Some("1")), "direct");
        j.ended(&key("a", Some("1")), Some(failed("x")));
        j.delivered(&key("a", Some("1")));
        // Done: handed off.
        j.claimed(&key("b", None), "command");
        j.ended(&key("b", None), None);
        // Ended, not delivered.
        j.claimed(&key("c", Some("3")), "docker");
        j.ended(&key("c", Some("3")), Some(failed("boom")));
        // Claimed, running, with a process group.
        j.claimed(&key("d", Some("4")), "direct");
        j.process(
            &key("d", Some("4")),
            ProcessMark {
                pgid: 4242,
                start: 99,
            },
        );
        assert_eq!(j.live(), 2);
    }
    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(replay.skipped, 0);
    assert_eq!(
        replay.undelivered,
        vec![(key("c", Some("3")), failed("boom"))]
    );
    assert_eq!(
        replay.unfinished,
        vec![Orphan {
            task: key("d", Some("4")),
            backend: "direct".into(),
            process: Some(ProcessMark {
                pgid: 4242,
                start: 99
            }),
        }]
    );
    // The replayed entries stay live until resolved.
    assert_eq!(j.live(), 2);
    j.delivered(&key("c", Some("3")));
    j.ended(&key("d", Some("4")), Some(failed("restarted")));
    drop(j);
    let (_, replay) = Journal::open(d.path()).unwrap();
    assert!(replay.unfinished.is_empty());
    assert_eq!(replay.undelivered.len(), 1);
}

#[test]
fn a_torn_or_corrupt_line_is_skipped_and_the_rest_kept() {
    let d = tmp();
    {
        let (j, _) = Journal::open(d.path()).unwrap();
        j.claimed(&key("a", Some("1")), "direct");
        j.claimed(&key("b", Some("2")), "direct");
    }
    let path = d.path().join("journal");
    let text = std::fs::read_to_string(&path).unwrap();
    // Corrupt the first line's JSON (checksum now wrong) and append a torn half line.
    let corrupted = text.replacen("\"a\"", "\"z\"", 1);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(corrupted.as_bytes()).unwrap();
    let torn = Record::Ended {
        task: "b".into(),
        exec: Some("2".into()),
        terminal: Some(failed("half")),
    }
    .encode();
    f.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
    drop(f);
    let (_, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(replay.skipped, 2);
    assert_eq!(replay.unfinished.len(), 1);
    assert_eq!(replay.unfinished[0].task, key("b", Some("2")));
    // Opening compacted the damage away.
    let (_, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(replay.skipped, 0);
    assert_eq!(replay.unfinished.len(), 1);
}

#[test]
fn size_stays_bounded_by_the_live_set() {
    let d = tmp();
    const LIMIT: u64 = 4096;
    let (j, _) = Journal::open_compacting_at(d.path(), LIMIT).unwrap();
    // One execution stays live throughout; hundreds come and go (many compactions).
    j.claimed(&key("long", Some("x")), "direct");
    let mut largest = 0;
    for i in 0..300 {
        let k = key(&format!("task-{i}"), Some("exec-with-a-longish-id"));
        j.claimed(&k, "direct");
        j.ended(&k, Some(failed("the agent exited with code 2")));
        j.delivered(&k);
        largest = largest.max(j.size());
    }
    assert!(largest <= LIMIT + 512, "journal grew to {largest}");
    drop(j);
    let (_, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(replay.unfinished.len(), 1);
    assert!(replay.undelivered.is_empty());
}

#[test]
fn terminal_messages_are_redacted_and_round_trip() {
    let canary = "journal-canary-4f1d9b";
    let _guard = crate::redact::register([canary]);
    let msg = Outbound::Failed {
        task_id: "t".into(),
        execution_id: Some("e".into()),
        message: format!("Task failed: agent printed {canary}"),
        failure_reason: Some("agent_invocation".into()),
        exit_code: Some(1),
        failure_details: Some(format!(
            r#"{{"kubernetes":{{"schema_version":1,"note":"{canary}"}}}}"#
        )),
    };
    let t = terminal_of(&msg).unwrap();
    assert!(!t.message.contains(canary), "{}", t.message);
    let details = t.failure_details.as_deref().unwrap();
    assert!(!details.contains(canary), "{details}");
    assert!(details.contains("schema_version"), "{details}");
    let back = outbound_of(&key("t", Some("e")), &t);
    assert_eq!(back.kind(), msg.kind());
    assert!(
        terminal_of(&Outbound::Rejected {
            task_id: "t".into(),
            reason: "r".into()
        })
        .is_none()
    );
}

#[test]
fn an_unwritable_directory_is_an_error_that_names_it_and_the_fix() {
    let d = tmp();
    std::fs::write(d.path(), b"a file, not a directory").unwrap_or_else(|_| {
        std::fs::create_dir_all(d.path().parent().unwrap()).unwrap();
        std::fs::write(d.path(), b"x").unwrap();
    });
    let e = Journal::open(&d.path().join("state")).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&d.path().display().to_string()), "{text}");
    assert!(text.contains("--state-dir"), "{text}");
    assert!(probe(&d.path().join("state")).is_err());
    let _ = std::fs::remove_file(d.path());
}
