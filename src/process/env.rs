//! Environments for child processes: an ordered `NAME=VALUE` list where a later `set` replaces
//! the value in place, plus the worker-owned `OZ_*`/`WARP_*` twins.
//!
//! Values may be secrets, so [`Env`]'s `Debug` shows names only.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// The variable holding the worker's own API key. The worker removes it from every environment
/// it builds for a subprocess from its own; a task only sees a `WARP_API_KEY` the server sent.
pub const API_KEY_VAR: &str = "WARP_API_KEY";

/// An ordered environment; setting an existing name replaces its value and keeps its position.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(OsString, OsString)>,
}

/// The worker's own supervision variables: a task process that inherited them could ping the
/// worker's systemd watchdog or send it READY/STOPPING messages.
const WORKER_PRIVATE: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Suffixes of the worker-owned variables ([`Env::set_owned`]).
pub const OWNED: [&str; 7] = [
    "RUN_ID",
    "EXECUTION_ID",
    "WORKER_BACKEND",
    "WORKSPACE_ROOT",
    "ENVIRONMENT_FILE",
    "SERVER_ROOT_URL",
    "DOCKER_IMAGE",
];

fn is_owned(name: &OsStr) -> bool {
    let name = name.as_bytes();
    let suffix = name
        .strip_prefix(b"OZ_")
        .or_else(|| name.strip_prefix(b"WARP_"));
    suffix.is_some_and(|s| OWNED.iter().any(|o| o.as_bytes() == s))
}

impl Env {
    pub fn new() -> Env {
        Env::default()
    }

    /// A snapshot of this process's environment. Non-UTF-8 entries are kept as they are.
    pub fn from_process() -> Env {
        std::env::vars_os()
            .filter(|(name, _)| !WORKER_PRIVATE.iter().any(|p| name == p))
            .collect()
    }

    /// Sets `name` to `value`. Returns false (and changes nothing) when the pair cannot be put
    /// in an environment: an empty name, a name with `=` or NUL, or a value with NUL.
    pub fn set(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> bool {
        let (name, value) = (name.as_ref(), value.as_ref());
        if !valid_name(name) || value.as_bytes().contains(&0) {
            return false;
        }
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
        true
    }

    /// Sets every pair in order (later pairs win); returns the names that were refused.
    pub fn set_all<I, K, V>(&mut self, pairs: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut refused = Vec::new();
        for (k, v) in pairs {
            if !self.set(k.as_ref(), v) {
                refused.push(k.as_ref().to_owned());
            }
        }
        refused
    }

    /// Sets a worker-owned variable under both spellings: `OZ_<suffix>` and `WARP_<suffix>`.
    pub fn set_owned(&mut self, suffix: &str, value: impl AsRef<OsStr>) {
        let value = value.as_ref();
        self.set(format!("OZ_{suffix}"), value);
        self.set(format!("WARP_{suffix}"), value);
    }

    pub fn remove(&mut self, name: impl AsRef<OsStr>) {
        let name = name.as_ref();
        self.vars.retain(|(k, _)| k != name);
    }

    pub fn get(&self, name: impl AsRef<OsStr>) -> Option<&OsStr> {
        let name = name.as_ref();
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// The values to register with a task's log redactor: every variable's value (inherited
    /// host variables included) except the worker-owned `OZ_*`/`WARP_*` twins ([`OWNED`]),
    /// whose values are the worker's own identifiers and paths: registering the run id would
    /// blank it out of every exported record. Non-UTF-8 values are taken lossily.
    pub fn redaction_values(&self) -> Vec<String> {
        self.vars
            .iter()
            .filter(|(k, _)| !is_owned(k))
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

impl<K: AsRef<OsStr>, V: AsRef<OsStr>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Env {
        let mut env = Env::new();
        env.set_all(iter);
        env
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values may be secrets.
        f.debug_set()
            .entries(self.vars.iter().map(|(k, _)| k))
            .finish()
    }
}

/// True when `name` can be an environment variable name (`execve` splits at the first `=`).
pub fn valid_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && !b.contains(&b'=') && !b.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(env: &Env) -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn later_values_replace_in_place() {
        let env: Env = [("A", "1"), ("B", "2"), ("A", "3")].into_iter().collect();
        assert_eq!(
            pairs(&env),
            [("A".into(), "3".into()), ("B".into(), "2".into())]
        );
    }

    #[test]
    fn refuses_names_and_values_execve_cannot_carry() {
        let mut env = Env::new();
        assert!(!env.set("", "x"));
        assert!(!env.set("A=B", "x"));
        assert!(!env.set("A\0B", "x"));
        assert!(!env.set("A", "x\0y"));
        assert!(env.set("A", ""));
        assert!(env.set("lower.dotted-name", "x=y"));
        assert_eq!(env.len(), 2);
        let refused = env.set_all([("OK", "1"), ("B=C", "2")]);
        assert_eq!(refused, [OsString::from("B=C")]);
    }

    #[test]
    fn owned_variables_get_both_spellings() {
        let mut env: Env = [("OZ_RUN_ID", "operator"), ("WARP_RUN_ID", "operator")]
            .into_iter()
            .collect();
        env.set_owned("RUN_ID", "run-1");
        env.set("HOST_SECRET", "host-value");
        env.set("OZ_CUSTOM", "custom-value");
        assert_eq!(
            env.redaction_values(),
            ["host-value", "custom-value"],
            "everything but the worker-owned twins"
        );
        assert_eq!(env.get("OZ_RUN_ID"), Some(OsStr::new("run-1")));
        assert_eq!(env.get("WARP_RUN_ID"), Some(OsStr::new("run-1")));
    }

    #[test]
    fn remove_and_get() {
        let mut env: Env = [("WARP_API_KEY", "k"), ("PATH", "/bin")]
            .into_iter()
            .collect();
        env.remove(API_KEY_VAR);
        assert_eq!(env.get(API_KEY_VAR), None);
        assert_eq!(env.get("PATH"), Some(OsStr::new("/bin")));
        assert!(!env.is_empty());
    }

    #[test]
    fn debug_shows_names_only() {
        let env: Env = [("TOKEN", "hunter2")].into_iter().collect();
        let shown = format!("{env:?}");
        assert!(shown.contains("TOKEN"));
        assert!(!shown.contains("hunter2"));
    }
}
