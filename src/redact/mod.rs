//! Secret redaction for everything the worker logs.
//!
//! Secrets reach log lines in many shapes: verbatim, inside a URL query, inside JSON text or a
//! Rust `{:?}` rendering, or one line of a multi-line value. A [`Redactor`] registers each secret
//! in all those shapes and replaces every occurrence with `[REDACTED]`, longest match first;
//! overlapping matches collapse into one replacement so no fragment of either secret survives.
//! On top of the registered secrets it scrubs three shapes generically: `Bearer <token>`,
//! `Authorization: <value>` (also `authorization=` and JSON keys) and the userinfo of URLs
//! (`scheme://user:pass@host`).
//!
//! The process has one global redactor that the logger applies to every record
//! ([`redact`]). Secrets are registered with [`register`]; the returned [`Guard`] removes them
//! when dropped (a task's `env_vars` for the lifetime of the task), or [`Guard::keep`] keeps them
//! for the life of the process (the API key).
//!
//! Matching is literal: a secret whose bytes the log line does not contain verbatim (in one of
//! the registered shapes) is not found. Values shorter than [`MIN_SECRET_LEN`] bytes are not
//! registered: `1`, `on` or `yes` are configuration, not secrets, and redacting every `1`
//! would destroy the log. Limits fail closed, following the Go worker's task-log redactor: while
//! a registration exceeds [`MAX_PATTERNS`], [`MAX_PATTERN_BYTES`] or holds a value over
//! [`MAX_VALUE_BYTES`], every redacted text becomes [`REDACTED`]; a text over
//! [`MAX_TEXT_BYTES`] is replaced whole as well.
//!
//! Debug dumps of protocol frames go through [`mask_frame`] first, which masks `env_vars`
//! values and credential-like keys structurally, so a task's secrets are hidden even before
//! they are registered.

mod frame;
mod matcher;
mod variants;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, PoisonError, RwLock};

pub use frame::mask_frame;
use matcher::Matcher;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";
/// Shorter values are not registered (see the module docs).
pub const MIN_SECRET_LEN: usize = 4;
/// One registration with more patterns than this makes redaction fail closed.
pub const MAX_PATTERNS: usize = 4096;
/// One registration whose patterns exceed this many bytes makes redaction fail closed.
pub const MAX_PATTERN_BYTES: usize = 1 << 20;
/// A single secret value over this many bytes makes redaction fail closed.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Texts longer than this are replaced whole rather than scanned.
pub const MAX_TEXT_BYTES: usize = 64 << 10;

/// The patterns of one registration.
#[derive(Debug, Default)]
struct SecretSet {
    patterns: Vec<String>,
    /// This registration exceeded a limit: redaction fails closed while it is registered.
    over_limit: bool,
}

impl SecretSet {
    fn build<I, S>(values: I) -> SecretSet
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = SecretSet::default();
        let mut seen = HashSet::new();
        let mut bytes = 0usize;
        for value in values {
            let value = value.as_ref();
            if value.len() > MAX_VALUE_BYTES {
                set.over_limit = true;
                continue;
            }
            for pattern in variants::of(value) {
                if pattern.len() < MIN_SECRET_LEN || !seen.insert(pattern.clone()) {
                    continue;
                }
                bytes += pattern.len();
                set.patterns.push(pattern);
            }
        }
        if set.patterns.len() > MAX_PATTERNS || bytes > MAX_PATTERN_BYTES {
            set.over_limit = true;
        }
        set
    }
}

/// Registered secret sets and the matcher compiled from them.
///
/// Registration is rare (process start, task start and end) and rebuilds the matcher;
/// [`Redactor::redact`] is the hot path and only reads.
#[derive(Debug, Default)]
pub struct Redactor {
    sets: BTreeMap<u64, SecretSet>,
    next_id: u64,
    matcher: Matcher,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Registers `values` (in all their shapes) and returns the id that [`Redactor::remove`]
    /// takes. The second value is true when this registration exceeds a limit, which makes
    /// every redaction fail closed until it is removed.
    pub fn add<I, S>(&mut self, values: I) -> (u64, bool)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set = SecretSet::build(values);
        let over_limit = set.over_limit;
        let id = self.next_id;
        self.next_id += 1;
        self.sets.insert(id, set);
        self.rebuild();
        (id, over_limit)
    }

    /// Forgets a registration. Unknown ids are ignored.
    pub fn remove(&mut self, id: u64) {
        if self.sets.remove(&id).is_some() {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let closed = self.sets.values().any(|s| s.over_limit);
        let patterns = self
            .sets
            .values()
            .flat_map(|s| s.patterns.iter().map(String::as_str));
        self.matcher = Matcher::new(patterns, closed);
    }

    /// True while some registration exceeds a limit.
    pub fn is_fail_closed(&self) -> bool {
        self.matcher.is_closed()
    }

    /// Number of distinct patterns currently matched.
    pub fn pattern_count(&self) -> usize {
        self.matcher.len()
    }

    /// `text` with every registered secret and every generic credential shape replaced by
    /// [`REDACTED`]. Borrows when nothing matched (the common case).
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.matcher.is_closed() {
            return Cow::Borrowed(REDACTED);
        }
        if text.len() > MAX_TEXT_BYTES {
            return Cow::Owned(format!(
                "{REDACTED} (a log message of {} bytes exceeds the {MAX_TEXT_BYTES}-byte \
                 redaction limit)",
                text.len()
            ));
        }
        self.matcher.redact(text)
    }
}

static GLOBAL: LazyLock<RwLock<Redactor>> = LazyLock::new(|| RwLock::new(Redactor::new()));

/// Keeps a registration in the global redactor; dropping it removes the secrets.
#[must_use = "dropping the guard unregisters the secrets at once"]
#[derive(Debug)]
pub struct Guard {
    id: Option<u64>,
    over_limit: bool,
}

impl Guard {
    /// True when this registration exceeded a limit: until it is dropped, every log message
    /// is replaced by [`REDACTED`]. Worth one warning by the caller.
    pub fn is_over_limit(&self) -> bool {
        self.over_limit
    }

    /// Keeps the secrets registered for the life of the process (the API key).
    pub fn keep(mut self) {
        self.id = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            GLOBAL
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(id);
        }
    }
}

/// Registers secrets in the global redactor that the logger applies to every line.
pub fn register<I, S>(values: I) -> Guard
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let (id, over_limit) = GLOBAL
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .add(values);
    Guard {
        id: Some(id),
        over_limit,
    }
}

/// Redacts `text` with the global redactor (see [`Redactor::redact`]).
pub fn redact(text: &str) -> Cow<'_, str> {
    GLOBAL
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .redact(text)
}

/// serde quotes the offending value in its messages (`invalid type: string "s3cr3t"`), and the
/// value may be a secret (a malformed `env_vars` value, a Docker config `auths` entry): keep the
/// shape of the message and its line/column, drop every quoted or backticked text.
pub fn scrub_serde_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '`' => {
                out.push(c);
                out.push('…');
                let mut escaped = false;
                for inner in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if inner == '\\' {
                        escaped = true;
                    } else if inner == c {
                        break;
                    }
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}
