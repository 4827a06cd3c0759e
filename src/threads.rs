//! Thread names: every thread is named, and Linux keeps at most 15 bytes of a name. And what
//! to tell the operator when a thread, process or descriptor cannot be had.

/// `prefix` followed by the id's `[A-Za-z0-9-]` characters, at most 15 bytes in all, so a
/// task's threads are recognisable in `top -H` and `/proc/<pid>/task` whatever the id holds.
pub fn thread_name(prefix: &str, id: &str) -> String {
    let mut name = prefix.to_owned();
    name.extend(
        id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(15usize.saturating_sub(prefix.len())),
    );
    name
}

/// A hint for an error from creating a thread, a process or a descriptor when the cause is a
/// resource limit, else "". Appended to the task's failure message, so an operator sees what
/// to raise rather than a bare errno.
pub fn resource_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => {
            " (the worker is at its thread/process limit: raise RLIMIT_NPROC, systemd \
             LimitNPROC/TasksMax or the cgroup pids.max, or set max_concurrent_tasks)"
        }
        Some(libc::EMFILE | libc::ENFILE) => {
            " (the worker is out of file descriptors: raise RLIMIT_NOFILE or systemd \
             LimitNOFILE, or set max_concurrent_tasks)"
        }
        Some(libc::ENOMEM) => " (out of memory: set max_concurrent_tasks)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_get_a_hint_others_none() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert!(resource_hint(&e(libc::EAGAIN)).contains("LimitNPROC"));
        assert!(resource_hint(&e(libc::EMFILE)).contains("LimitNOFILE"));
        assert!(resource_hint(&e(libc::ENFILE)).contains("LimitNOFILE"));
        assert_eq!(resource_hint(&e(libc::ENOENT)), "");
    }
}
