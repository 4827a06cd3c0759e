//! A task's own redactor for its exported records.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

use crate::redact::Redactor;

/// A task's own redactor: its secrets in every shape, plus what is learnt while it runs (the
/// setup env file's values, hook and dispatch environments, issued export tokens).
///
/// Every value ever registered forms one registration, so the fail-closed limits of
/// [`crate::redact`] (more than 4096 patterns, more than 1 MiB of pattern bytes, one value over
/// 1 MiB) apply to the task's total: past them every record becomes `[REDACTED]`. Values
/// shorter than [`crate::redact::MIN_SECRET_LEN`] bytes are ignored, as everywhere.
#[derive(Debug, Default)]
pub struct TaskRedactor {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    values: Vec<String>,
    seen: HashSet<String>,
    redactor: Redactor,
}

impl TaskRedactor {
    pub fn new<I, S>(values: I) -> TaskRedactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let r = TaskRedactor::default();
        r.add_all(values);
        r
    }

    pub fn add(&self, value: &str) {
        self.add_all([value]);
    }

    /// Registers `values` (duplicates and empty values skipped) and rebuilds the matcher once.
    pub fn add_all<I, S>(&self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let now_closed = {
            let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
            let was_closed = inner.redactor.is_fail_closed();
            let mut added = false;
            for v in values {
                let v = v.as_ref();
                if !v.is_empty() && !inner.seen.contains(v) {
                    inner.seen.insert(v.to_owned());
                    inner.values.push(v.to_owned());
                    added = true;
                }
            }
            if !added {
                return;
            }
            let mut rebuilt = Redactor::new();
            let _ = rebuilt.add(&inner.values);
            let closed = rebuilt.is_fail_closed();
            inner.redactor = rebuilt;
            closed && !was_closed
        };
        // Logged after the lock is released: the record may be routed to this task's export,
        // which redacts with this very redactor.
        if now_closed {
            log::warn!(
                "The task's secrets exceed the redaction limits: every exported log record of \
                 this task is replaced by {}",
                crate::redact::REDACTED
            );
        }
    }

    /// True while the task's registrations exceed a limit.
    pub fn is_fail_closed(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .redactor
            .is_fail_closed()
    }

    /// The task's secrets, then the process-wide ones, replaced.
    pub fn redact(&self, text: &str) -> String {
        let own = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .redactor
            .redact(text)
            .into_owned();
        crate::redact::redact(&own).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{MAX_PATTERNS, REDACTED};

    #[test]
    fn covers_shapes_and_later_values() {
        let r = TaskRedactor::new(["s3cr3t-value"]);
        assert_eq!(r.redact("a s3cr3t-value b"), "a [REDACTED] b");
        assert_eq!(r.redact(r#"{"k":"s3cr3t-value"}"#), r#"{"k":"[REDACTED]"}"#);
        assert_eq!(r.redact("tok-123456"), "tok-123456");
        r.add("tok-123456");
        assert_eq!(r.redact("tok-123456"), "[REDACTED]");
        // Short values stay readable (documented minimum).
        r.add("abc");
        assert_eq!(r.redact("abc"), "abc");
    }

    #[test]
    fn limits_apply_to_the_task_total_across_additions() {
        let r = TaskRedactor::default();
        // Each batch alone is under the pattern limit; together they are over it.
        let batch = |from: usize| (from..from + MAX_PATTERNS / 2 + 1).map(|i| format!("val{i:06}"));
        r.add_all(batch(0));
        assert!(!r.is_fail_closed());
        assert_eq!(r.redact("hello"), "hello");
        r.add_all(batch(1_000_000));
        assert!(r.is_fail_closed());
        assert_eq!(r.redact("hello"), REDACTED);
    }

    #[test]
    fn one_value_over_a_mebibyte_closes_every_record() {
        let r = TaskRedactor::new(["fine-value"]);
        r.add(&"x".repeat((1 << 20) + 1));
        assert_eq!(r.redact("nothing secret here"), REDACTED);
    }

    #[test]
    fn pattern_bytes_over_a_mebibyte_close_every_record() {
        // 300 values of 4 KiB: each under the value limit, together over 1 MiB of patterns.
        let r = TaskRedactor::new((0..300).map(|i| format!("{i:04}{}", "y".repeat(4096))));
        assert!(r.is_fail_closed());
        assert_eq!(r.redact("text"), REDACTED);
    }
}
