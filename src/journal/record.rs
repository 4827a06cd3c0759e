//! The journal's on-disk records: one line each, `CRC32-hex SP JSON LF`. Pure encoding and
//! decoding; no I/O.
//!
//! The checksum covers the JSON text, so a torn write (power loss mid-line) or a flipped bit
//! is recognised and the line skipped instead of trusted. Lines hold task and execution ids,
//! process group ids and terminal messages (already passed through the log redactor) — never
//! an `env_vars` value or a key.

use serde::{Deserialize, Serialize};

/// A terminal message as the journal keeps it: enough to send it again after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminal {
    /// `task_completed` (true) or `task_failed` (false).
    pub completed: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// One journal record. `task`/`exec` name the execution (`exec` absent for legacy runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The worker decided to claim the task; written before `task_claimed` is queued.
    Claimed {
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
        /// The backend that runs it (`direct`, `docker`, …): recovery is the backend's.
        backend: String,
    },
    /// The direct backend started a process group for the task (the latest one counts).
    /// `start` is the leader's start time in clock ticks since boot (`/proc/PID/stat` field
    /// 22): with the pid it names the process uniquely, so a recycled pid is never killed.
    Process {
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
        pgid: i32,
        start: u64,
    },
    /// The task ended; `terminal` is the message queued for the server (none when the task
    /// was handed off). Written before the message is queued.
    Ended {
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        terminal: Option<Terminal>,
    },
    /// The terminal message was written to the socket and flushed.
    Delivered {
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
    },
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
        // Serialising a plain enum of strings and integers cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
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
        serde_json::from_str(json).ok()
    }
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
