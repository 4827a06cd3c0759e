//! The journal's on-disk records: one line each, `CRC32-hex SP JSON LF`. Pure encoding and
//! decoding; no I/O.
//!
//! The checksum covers the JSON text, so a torn write (power loss mid-line) or a flipped bit
//! is recognised and the line skipped instead of trusted. Lines hold task and execution ids,
//! process group ids and terminal messages (already passed through the log redactor) — never
//! an `env_vars` value or a key.

use serde_json::{Map, Value, json};

/// A terminal message as the journal keeps it: enough to send it again after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// `task_completed` (true) or `task_failed` (false).
    pub completed: bool,
    pub message: String,
    pub task_state: Option<String>,
    pub failure_reason: Option<String>,
    pub exit_code: Option<i32>,
    /// `failure_details` as JSON text (Kubernetes), redacted like the message.
    pub failure_details: Option<String>,
}

/// One journal record. `task`/`exec` name the execution (`exec` absent for legacy runs).
///
/// The JSON is built and read through `serde_json::Value` by hand rather than with derived,
/// internally tagged enums: the derive's buffering deserializer cost ~100 KB of static binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The worker decided to claim the task; written before `task_claimed` is queued.
    Claimed {
        task: String,
        exec: Option<String>,
        /// The backend that runs it (`direct`, `docker`, …): recovery is the backend's.
        backend: String,
    },
    /// The direct backend started a process group for the task (the latest one counts).
    /// `start` is the leader's start time in clock ticks since boot (`/proc/PID/stat` field
    /// 22): with the pid it names the process uniquely, so a recycled pid is never killed.
    Process {
        task: String,
        exec: Option<String>,
        pgid: i32,
        start: u64,
    },
    /// The task ended; `terminal` is the message queued for the server (none when the task
    /// was handed off). Written before the message is queued.
    Ended {
        task: String,
        exec: Option<String>,
        terminal: Option<Terminal>,
    },
    /// The terminal message was written to the socket and flushed.
    Delivered { task: String, exec: Option<String> },
}

impl Record {
    /// The execution this record is about.
    pub fn key(&self) -> (&str, Option<&str>) {
        match self {
            Record::Claimed { task, exec, .. }
            | Record::Process { task, exec, .. }
            | Record::Ended { task, exec, .. }
            | Record::Delivered { task, exec } => (task, exec.as_deref()),
        }
    }

    /// One line, newline included.
    pub fn encode(&self) -> String {
        let (task, exec) = self.key();
        let mut obj = Map::new();
        let op = match self {
            Record::Claimed { backend, .. } => {
                obj.insert("backend".into(), json!(backend));
                "claimed"
            }
            Record::Process { pgid, start, .. } => {
                obj.insert("pgid".into(), json!(pgid));
                obj.insert("start".into(), json!(start));
                "process"
            }
            Record::Ended { terminal, .. } => {
                if let Some(t) = terminal {
                    obj.insert("terminal".into(), terminal_json(t));
                }
                "ended"
            }
            Record::Delivered { .. } => "delivered",
        };
        obj.insert("op".into(), json!(op));
        obj.insert("task".into(), json!(task));
        if let Some(e) = exec {
            obj.insert("exec".into(), json!(e));
        }
        let json = Value::Object(obj).to_string();
        format!("{:08x} {json}\n", crc32(json.as_bytes()))
    }

    /// Parses one line (without its newline). `None` when the checksum or the JSON is wrong.
    pub fn decode(line: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(line).ok()?;
        let (sum, json) = text.split_once(' ')?;
        // Exactly as written: eight lowercase hex digits.
        if sum.len() != 8 || !sum.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let sum = u32::from_str_radix(sum, 16).ok()?;
        if crc32(json.as_bytes()) != sum {
            return None;
        }
        let v: Value = serde_json::from_str(json).ok()?;
        let task = v.get("task")?.as_str()?.to_owned();
        let exec = match v.get("exec") {
            None => None,
            Some(e) => Some(e.as_str()?.to_owned()),
        };
        Some(match v.get("op")?.as_str()? {
            "claimed" => Record::Claimed {
                task,
                exec,
                backend: v.get("backend")?.as_str()?.to_owned(),
            },
            "process" => Record::Process {
                task,
                exec,
                pgid: i32::try_from(v.get("pgid")?.as_i64()?).ok()?,
                start: v.get("start")?.as_u64()?,
            },
            "ended" => Record::Ended {
                task,
                exec,
                terminal: match v.get("terminal") {
                    None => None,
                    Some(t) => Some(terminal_of_json(t)?),
                },
            },
            "delivered" => Record::Delivered { task, exec },
            _ => return None,
        })
    }
}

fn terminal_json(t: &Terminal) -> Value {
    let mut obj = Map::new();
    obj.insert("completed".into(), json!(t.completed));
    obj.insert("message".into(), json!(t.message));
    if let Some(s) = &t.task_state {
        obj.insert("task_state".into(), json!(s));
    }
    if let Some(r) = &t.failure_reason {
        obj.insert("failure_reason".into(), json!(r));
    }
    if let Some(c) = t.exit_code {
        obj.insert("exit_code".into(), json!(c));
    }
    if let Some(d) = &t.failure_details {
        obj.insert("failure_details".into(), json!(d));
    }
    Value::Object(obj)
}

fn terminal_of_json(v: &Value) -> Option<Terminal> {
    let opt_str = |k: &str| match v.get(k) {
        None => Some(None),
        Some(s) => s.as_str().map(|s| Some(s.to_owned())),
    };
    Some(Terminal {
        completed: v.get("completed")?.as_bool()?,
        message: v.get("message")?.as_str()?.to_owned(),
        task_state: opt_str("task_state")?,
        failure_reason: opt_str("failure_reason")?,
        exit_code: match v.get("exit_code") {
            None => None,
            Some(c) => Some(i32::try_from(c.as_i64()?).ok()?),
        },
        failure_details: opt_str("failure_details")?,
    })
}

/// CRC-32 (IEEE 802.3, the polynomial of zlib and Ethernet), bitwise: journal lines are short
/// and written a few times per task, so a table would buy nothing measurable.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The catalogue check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn every_kind_of_record_round_trips() {
        let all = [
            Record::Claimed {
                task: "t \"quoted\" \u{e9}".into(),
                exec: None,
                backend: "direct".into(),
            },
            Record::Process {
                task: "t".into(),
                exec: Some("e".into()),
                pgid: 4242,
                start: u64::MAX,
            },
            Record::Ended {
                task: "t".into(),
                exec: Some("e".into()),
                terminal: None,
            },
            Record::Ended {
                task: "t".into(),
                exec: None,
                terminal: Some(Terminal {
                    completed: true,
                    message: "Task completed successfully".into(),
                    task_state: Some("CANCELLED".into()),
                    failure_reason: None,
                    exit_code: None,
                    failure_details: None,
                }),
            },
            Record::Delivered {
                task: "t".into(),
                exec: Some("e".into()),
            },
        ];
        for r in all {
            let line = r.encode();
            assert_eq!(
                Record::decode(line.trim_end().as_bytes()),
                Some(r),
                "{line}"
            );
        }
        // Valid checksums over the wrong shapes are refused too.
        for json in [
            r#"{"op":"nope","task":"t"}"#,
            r#"{"op":"process","task":"t","pgid":1}"#,
            r#"{"op":"claimed","task":7,"backend":"d"}"#,
            "[]",
        ] {
            let line = format!("{:08x} {json}", crc32(json.as_bytes()));
            assert_eq!(Record::decode(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn records_round_trip_and_reject_damage() {
        let r = Record::Ended {
            task: "t1".into(),
            exec: Some("e1".into()),
            terminal: Some(Terminal {
                completed: false,
                message: "Task failed: boom".into(),
                task_state: None,
                failure_reason: Some("agent_invocation".into()),
                exit_code: Some(3),
                failure_details: None,
            }),
        };
        let line = r.encode();
        assert!(line.ends_with('\n'));
        let body = line.trim_end().as_bytes();
        assert_eq!(Record::decode(body), Some(r));
        // Any single flipped byte is caught (checksum or JSON).
        for i in 0..body.len() {
            let mut bad = body.to_vec();
            bad[i] ^= 0x20;
            assert_eq!(Record::decode(&bad), None, "flip at {i} accepted");
        }
        // Every truncation is caught.
        for n in 0..body.len() {
            assert_eq!(
                Record::decode(&body[..n]),
                None,
                "truncation at {n} accepted"
            );
        }
    }
}
