//! Stopping the process group a crashed worker left behind, without ever signalling an
//! unrelated process.
//!
//! A restarted worker finds the group id and its leader's start time in the outcome journal.
//! The group id is the leader's pid, which the kernel may have given to another process since:
//! the group is signalled only when the leader (pid = group id) is alive with the recorded start
//! time, or when the leader is gone but processes of that group remain (a pid still used as a
//! group id is not handed out again, so those are the crashed run's; a new group with the same
//! id would need a new leader with that pid, which the start time rules out).
//!
//! Why not `PR_SET_PDEATHSIG` on the agent instead: it fires when the *thread* that forked the
//! child exits, not the process; it reaches only the leader, leaving the agent's own children
//! running in a group whose leader is gone; and it does nothing for the report, which still
//! needs the journal. A systemd unit's `KillMode=control-group` stops everything at a crash
//! anyway; the journal covers the workers run without it.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Exited but not yet reaped: holds its pid, runs nothing.
    pub zombie: bool,
    pub pgrp: i32,
    /// Clock ticks since boot (field 22).
    pub start: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... starttime(22).
    Some(Stat {
        zombie: *fields.first()? == "Z",
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of a live process, `None` when there is none with that pid.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Start time of a live process (for the journal's record of a new group).
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.start)
}

/// Whether the group `pgid` whose leader started at `start` still has processes.
pub fn group_alive(pgid: i32, start: u64) -> bool {
    match stat(pgid) {
        // The leader lives: it is ours only if it is the same process and still leads.
        Some(s) if !s.zombie => s.start == start && s.pgrp == pgid,
        // Someone else's process now has the pid: the group id was recycled.
        Some(s) if s.start != start => false,
        // The leader is gone (or a zombie): any live process left in the group is ours.
        _ => members(pgid) > 0,
    }
}

/// How many processes have `pgid` as their group.
fn members(pgid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == pgid && !s.zombie))
        .count()
}

/// What [`stop_group`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing of the group was left.
    AlreadyGone,
    /// It ended after SIGTERM.
    Terminated,
    /// It needed SIGKILL after `grace`.
    Killed,
}

/// SIGTERM to the crashed run's group, up to `grace`, then SIGKILL; only while
/// [`group_alive`] says it is still that group.
pub fn stop_group(pgid: i32, start: u64, grace: Duration) -> Stopped {
    if pgid <= 1 || !group_alive(pgid, start) {
        return Stopped::AlreadyGone;
    }
    let group = Pid::from_raw(pgid);
    if let Err(Errno::ESRCH) = killpg(group, Signal::SIGTERM) {
        return Stopped::AlreadyGone;
    }
    let until = Instant::now() + grace;
    while Instant::now() < until {
        // Our SIGTERM's victims are not our children: init reaps them, we only watch.
        if !group_alive(pgid, start) {
            return Stopped::Terminated;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive(pgid, start) {
        let _ = killpg(group, Signal::SIGKILL);
    }
    Stopped::Killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "4242 (a (weird) name) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                zombie: false,
                pgrp: 4240,
                start: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn our_own_process_has_a_start_time() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(start_time(me).is_some());
    }

    #[test]
    fn a_recycled_leader_is_never_signalled() {
        // A live process group (a sleeping shell) with the wrong recorded start time: not ours.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let start = start_time(pid).unwrap();
        assert!(!group_alive(pid, start + 1));
        assert_eq!(
            stop_group(pid, start + 1, Duration::from_millis(10)),
            Stopped::AlreadyGone
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process was signalled"
        );
        // With the right start time it is stopped.
        assert_eq!(
            stop_group(pid, start, Duration::from_secs(5)),
            Stopped::Terminated
        );
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15));
    }
}
