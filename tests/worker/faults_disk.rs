//! The workspace disk fills up: a task fails with `workspace_setup`, nothing of it is left on
//! the disk, the worker lives, and once there is room again the next task runs. The workspace
//! root is a tiny tmpfs the test mounts (the tests run as root, as CI does for Docker).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::support::harness::TestDir;
use crate::support::oz_server::OzServer;

/// A tmpfs with room for `inodes` inodes, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, inodes: usize) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size=256k,nr_inodes={inodes},mode=0755"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .expect("mount(8) runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (this test needs root, as the Docker tests do)",
            at.display()
        );
        Tmpfs(at.to_owned())
    }

    /// Creates files until the inodes run out; returns them.
    fn fill(&self) -> Vec<PathBuf> {
        let mut made = Vec::new();
        for i in 0.. {
            let p = self.0.join(format!("filler-{i}"));
            match std::fs::File::create(&p) {
                Ok(_) => made.push(p),
                Err(_) => break,
            }
        }
        made
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("filler-"))
            .collect();
        v.sort();
        v
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_workspace_disk_fails_the_task_cleanly_and_the_worker_lives() {
    let dir = TestDir::new("fault-disk");
    let root = dir.join("ws-tmpfs");
    let fs = Tmpfs::mount(&root, 16);
    let oz = OzServer::start();
    let config = dir.write(
        "config.yaml",
        &format!(
            "worker_id: e2e-worker\nbackend:\n  direct:\n    oz_path: {}\n    workspace_root: {}\n",
            crate::support::harness::stand_in_agent().display(),
            root.display()
        ),
    );
    let mut w = worker(&dir, &oz, &config).spawn();
    w.wait_for_log("Connected to Oz", T);

    // No inode left: the workspace directory cannot be created.
    let fillers = fs.fill();
    assert!(!fillers.is_empty());
    oz.push_json(&assignment("t-full", Some("e1"), json!({})))
        .unwrap();
    let f = expect(&oz, "task_failed", "t-full");
    assert_eq!(f["failure_reason"], "workspace_setup", "{f}");
    assert!(fs.entries().is_empty(), "left behind: {:?}", fs.entries());

    // One inode left: the directory is created, its env file is not; the directory goes again.
    std::fs::remove_file(fillers.last().unwrap()).unwrap();
    oz.push_json(&assignment("t-almost", Some("e1"), json!({})))
        .unwrap();
    let f = expect(&oz, "task_failed", "t-almost");
    assert_eq!(f["failure_reason"], "workspace_setup", "{f}");
    assert!(fs.entries().is_empty(), "left behind: {:?}", fs.entries());

    // Room again: the next task runs, and its workspace is removed after it.
    for p in &fillers[..fillers.len() - 1] {
        std::fs::remove_file(p).unwrap();
    }
    oz.push_json(&assignment("t-room", Some("e1"), json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-room");
    assert!(fs.entries().is_empty(), "left behind: {:?}", fs.entries());
    assert!(alive(w.pid()));
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(T).code(), Some(0), "{}", w.dump());
}
