//! Where a direct task runs: id checks, the per-execution workspace (or the operator's target
//! directory), the git config location and the setup env file.
//!
//! Layout. Without an execution id the workspace is `<root>/<task_id>`, as in the Go worker.
//! With one it is `<root>/<task_id>--<execution_id>`, so that two executions of one run never
//! share a directory and the cleanup of one never removes the other's. Both ids are checked to
//! be a single safe path component before anything is created.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::backend::TaskRef;

/// Where tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A fresh directory per execution under `root`.
    PerTask { root: PathBuf },
    /// Every task runs in this existing directory, which is never deleted.
    TargetDir { dir: PathBuf },
}

/// Why a workspace could not be prepared. Reported as `workspace_setup`.
#[derive(Debug)]
pub enum WorkspaceError {
    InvalidId {
        what: &'static str,
        why: &'static str,
    },
    Create {
        path: PathBuf,
        source: io::Error,
    },
    NotADirectory {
        path: PathBuf,
    },
    GitConfigDir {
        path: PathBuf,
        source: io::Error,
    },
    EnvFile {
        dir: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for WorkspaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkspaceError::InvalidId { what, why } => {
                write!(f, "invalid {what} for workspace path: {why}")
            }
            WorkspaceError::Create { path, source } => {
                write!(f, "failed to create workspace {}: {source}", path.display())
            }
            WorkspaceError::NotADirectory { path } => {
                write!(
                    f,
                    "workspace {} exists and is not a directory",
                    path.display()
                )
            }
            WorkspaceError::GitConfigDir { path, source } => write!(
                f,
                "failed to create git config directory {}: {source}",
                path.display()
            ),
            WorkspaceError::EnvFile { dir, source } => write!(
                f,
                "failed to create environment file in {}: {source}",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for WorkspaceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkspaceError::Create { source, .. }
            | WorkspaceError::GitConfigDir { source, .. }
            | WorkspaceError::EnvFile { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Checks that `id` can be used as one path component: not empty, not `.` or `..`, and free of
/// separators, NUL and control characters.
pub fn check_component(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("empty")
    } else if id == "." || id == ".." {
        Err("'.' and '..' are not allowed")
    } else if id.contains(['/', '\\']) {
        Err("contains a path separator")
    } else if id.chars().any(char::is_control) {
        Err("contains a control character")
    } else {
        Ok(())
    }
}

/// The directory name of one execution's workspace (ids already checked).
pub fn workspace_name(task: &TaskRef) -> String {
    match &task.execution_id {
        None => task.task_id.clone(),
        Some(exec) => format!("{}--{exec}", task.task_id),
    }
}

/// One execution's places on disk.
#[derive(Debug)]
pub struct Workspace {
    pub dir: PathBuf,
    /// `GIT_CONFIG_GLOBAL` (not created in advance).
    pub gitconfig: PathBuf,
    /// The setup hook's env file (`OZ_ENVIRONMENT_FILE`), created empty.
    pub env_file: PathBuf,
    /// True when `dir` is a per-task workspace (deletable); false for a target directory.
    pub per_task: bool,
    /// True when this call created `dir` (false when it already existed).
    pub created: bool,
    /// Target-dir mode: the temporary directory holding `gitconfig`, always removed afterwards.
    pub gitconfig_dir: Option<PathBuf>,
}

/// Prepares the workspace of `task`. `tmp` is where target-dir mode puts its git config. On an
/// error, whatever this call created has been removed again.
pub fn open(layout: &Layout, task: &TaskRef, tmp: &Path) -> Result<Workspace, WorkspaceError> {
    check_component(&task.task_id).map_err(|why| WorkspaceError::InvalidId {
        what: "task ID",
        why,
    })?;
    if let Some(exec) = &task.execution_id {
        check_component(exec).map_err(|why| WorkspaceError::InvalidId {
            what: "execution ID",
            why,
        })?;
    }
    let mut ws = match layout {
        Layout::PerTask { root } => {
            let dir = root.join(workspace_name(task));
            let created = create_private_dir(root, &dir)?;
            Workspace {
                gitconfig: dir.join(".gitconfig"),
                env_file: PathBuf::new(),
                dir,
                per_task: true,
                created,
                gitconfig_dir: None,
            }
        }
        Layout::TargetDir { dir } => {
            let gdir = tmp.join(format!("oz-gitconfig-{}", unique_suffix()));
            DirBuilder::new()
                .mode(0o700)
                .create(&gdir)
                .map_err(|source| WorkspaceError::GitConfigDir {
                    path: gdir.clone(),
                    source,
                })?;
            Workspace {
                dir: dir.clone(),
                gitconfig: gdir.join(".gitconfig"),
                env_file: PathBuf::new(),
                per_task: false,
                created: false,
                gitconfig_dir: Some(gdir),
            }
        }
    };
    match create_env_file(&ws.dir) {
        Ok(path) => {
            ws.env_file = path;
            Ok(ws)
        }
        Err(source) => {
            let dir = ws.dir.clone();
            undo(&ws);
            Err(WorkspaceError::EnvFile { dir, source })
        }
    }
}

/// Creates `dir` (mode 0700) under `root`, re-creating `root` if it vanished. An existing
/// directory is reused; anything else there (a file, a symlink) is an error.
fn create_private_dir(root: &Path, dir: &Path) -> Result<bool, WorkspaceError> {
    let create_err = |path: &Path, source| WorkspaceError::Create {
        path: path.to_owned(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| create_err(root, e))?;
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.is_dir() => Ok(false),
                Ok(_) => Err(WorkspaceError::NotADirectory {
                    path: dir.to_owned(),
                }),
                Err(e) => Err(create_err(dir, e)),
            }
        }
        Err(e) => Err(create_err(dir, e)),
    }
}

fn create_env_file(dir: &Path) -> io::Result<PathBuf> {
    let mut last = None;
    for _ in 0..8 {
        let path = dir.join(format!("oz-env-{}", unique_suffix()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Removes what `open` created, after a failure inside `open`.
fn undo(ws: &Workspace) {
    if let Some(g) = &ws.gitconfig_dir {
        let _ = std::fs::remove_dir_all(g);
    }
    if ws.per_task && ws.created {
        let _ = std::fs::remove_dir(&ws.dir);
    }
}

/// Removes a file or directory tree; a missing one is fine. Symlinks are removed, not followed.
pub fn remove(path: &Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A name suffix unique within this host for the life of the process.
fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{n}-{nanos:09}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "oz-ws-unit-{}-{name}-{}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn task(id: &str, exec: Option<&str>) -> TaskRef {
        TaskRef {
            task_id: id.into(),
            execution_id: exec.map(str::to_owned),
        }
    }

    #[test]
    fn components_are_checked() {
        for bad in [
            "",
            ".",
            "..",
            "../escape",
            "a/../../escape",
            "/abs/path",
            "a\\b",
            "a\0b",
            "a\nb",
            "x/",
        ] {
            assert!(check_component(bad).is_err(), "{bad:?}");
        }
        for good in [
            "task-1",
            "0192f1e4-aaaa-7bbb-8ccc-0123456789ab",
            "a..b",
            "...",
            ".hidden",
            "ünï",
        ] {
            assert!(check_component(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn each_execution_gets_its_own_name() {
        assert_eq!(workspace_name(&task("t", None)), "t");
        assert_eq!(workspace_name(&task("t", Some("e1"))), "t--e1");
        assert_ne!(
            workspace_name(&task("t", Some("e1"))),
            workspace_name(&task("t", Some("e2")))
        );
    }

    #[test]
    fn per_task_workspace_is_private_and_has_an_env_file() {
        let base = scratch("pertask");
        let root = base.join("root");
        let layout = Layout::PerTask { root: root.clone() };
        let ws = open(&layout, &task("t1", None), &base).unwrap();
        assert_eq!(ws.dir, root.join("t1"));
        assert_eq!(ws.gitconfig, root.join("t1/.gitconfig"));
        assert!(ws.created && ws.per_task);
        assert_eq!(
            std::fs::metadata(&ws.dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(ws.env_file.parent(), Some(ws.dir.as_path()));
        assert_eq!(
            std::fs::metadata(&ws.env_file)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert!(!ws.gitconfig.exists());
        let again = open(&layout, &task("t1", None), &base).unwrap();
        assert!(!again.created, "an existing workspace is reused");
        assert_ne!(again.env_file, ws.env_file);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn hostile_ids_create_nothing() {
        let base = scratch("hostile");
        let root = base.join("root");
        let layout = Layout::PerTask { root: root.clone() };
        for id in ["../escape", "a/../../escape", "/abs/path", "..", ".", ""] {
            let e = open(&layout, &task(id, None), &base).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("invalid task ID for workspace path"),
                "{e}"
            );
        }
        let e = open(&layout, &task("ok", Some("../x")), &base).unwrap_err();
        assert!(e.to_string().starts_with("invalid execution ID"), "{e}");
        assert!(!root.exists());
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_file_or_symlink_in_the_way_is_refused() {
        let base = scratch("inway");
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        std::os::unix::fs::symlink(&base, root.join("link")).unwrap();
        let layout = Layout::PerTask { root };
        for id in ["file", "link"] {
            let e = open(&layout, &task(id, None), &base).unwrap_err();
            assert!(matches!(e, WorkspaceError::NotADirectory { .. }), "{e}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn target_dir_mode_uses_a_temporary_git_config_dir() {
        let base = scratch("target");
        let target = base.join("checkout");
        std::fs::create_dir_all(&target).unwrap();
        let tmp = base.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let ws = open(
            &Layout::TargetDir {
                dir: target.clone(),
            },
            &task("t", None),
            &tmp,
        )
        .unwrap();
        assert_eq!(ws.dir, target);
        assert!(!ws.per_task);
        let gdir = ws.gitconfig_dir.clone().unwrap();
        assert!(gdir.starts_with(&tmp) && gdir.is_dir());
        assert_eq!(ws.gitconfig, gdir.join(".gitconfig"));
        assert_eq!(ws.env_file.parent(), Some(target.as_path()));
        remove(&gdir).unwrap();
        remove(&gdir).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
