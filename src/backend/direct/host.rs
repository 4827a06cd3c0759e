//! What the direct backend needs from the host: finding the oz CLI and probing files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access};

use crate::backend::ProbeLine;
use crate::process::Env;

/// Looks `name` up in the `PATH` of `env` (empty entries, meaning the current directory, are
/// skipped).
pub fn find_on_path(name: &str, env: &Env) -> Option<PathBuf> {
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// One probe line for an executable: found, a file, and executable by this user.
pub fn probe_executable(path: &Path, what: &str, fix: &str) -> ProbeLine {
    match std::fs::metadata(path) {
        Ok(_) if is_executable_file(path) => match access(path, AccessFlags::X_OK) {
            Ok(()) => ProbeLine::ok(format!("{what} {} is executable", path.display())),
            Err(e) => ProbeLine::failed(format!(
                "{what} {} is not executable by this user ({e}): {fix}",
                path.display()
            )),
        },
        Ok(_) => ProbeLine::failed(format!(
            "{what} {} is not an executable file: {fix}",
            path.display()
        )),
        Err(e) => ProbeLine::failed(format!("{what} {} not found ({e}): {fix}", path.display())),
    }
}

/// One probe line for a directory the worker must write into.
pub fn probe_writable_dir(dir: &Path, what: &str) -> ProbeLine {
    match access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) if dir.is_dir() => ProbeLine::ok(format!("{what} {} is writable", dir.display())),
        Ok(()) => ProbeLine::failed(format!(
            "{what} {} is not a directory: remove what is there or choose another path",
            dir.display()
        )),
        Err(e) => ProbeLine::failed(format!(
            "{what} {} is not writable ({e}): create it and give the worker's user write access",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup_uses_the_given_env() {
        let env: Env = [("PATH", "::/nonexistent:/bin:/usr/bin")]
            .into_iter()
            .collect();
        let sh = find_on_path("sh", &env).unwrap();
        assert!(sh.ends_with("sh") && sh.is_absolute());
        assert_eq!(find_on_path("sh", &Env::new()), None);
        assert_eq!(find_on_path("definitely-not-a-command-oz", &env), None);
    }

    #[test]
    fn probes_say_what_to_fix() {
        assert!(probe_executable(Path::new("/bin/sh"), "shell", "fix").ok);
        let missing = probe_executable(Path::new("/nonexistent/oz"), "oz CLI", "set oz_path");
        assert!(
            !missing.ok && missing.what.ends_with("set oz_path"),
            "{missing:?}"
        );
        let dir = probe_executable(Path::new("/"), "oz CLI", "set oz_path");
        assert!(
            !dir.ok && dir.what.contains("not an executable file"),
            "{dir:?}"
        );
        assert!(probe_writable_dir(&std::env::temp_dir(), "workspace root").ok);
        let file = probe_writable_dir(Path::new("/bin/sh"), "workspace root");
        assert!(!file.ok, "{file:?}");
    }
}
