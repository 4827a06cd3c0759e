//! A real registry: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with htpasswd
//! auth. The test pushes its images into it through the Engine API, removes them locally, and
//! runs a task whose task and `/agent` images are pulled from it with credentials.
//!
//! Needs the `docker-registry` package (`apt-get install docker-registry`); `.ci/run` installs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use oz_agent_worker::backend::{Backend, Completion, FailureReason};
use oz_agent_worker::docker::{Credential, RegistryAuth, base64};
use oz_agent_worker::settings::{PullPolicy, Secret};

use crate::support::docker_images::{import_image, push_image, sidecar_layer, task_layer};

use super::*;

const USER: &str = "oz-user";
const PASSWORD: &str = "oz-registry-pass";
/// bcrypt of [`PASSWORD`] (cost 5), as `htpasswd -B` writes it.
const HTPASSWD: &str = "oz-user:$2b$05$VvGdi1.7FB5mtyWJz.n/bOXPmiuKLWOpQ4S1hJA7KU5PkbYiMzMSq\n";

fn registry_binary() -> PathBuf {
    let path = PathBuf::from("/usr/bin/docker-registry");
    assert!(
        path.exists(),
        "this test needs Debian's docker-registry package: apt-get install docker-registry"
    );
    path
}

/// The registry process, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: Scratch,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start() -> Registry {
        let dir = Scratch::new("registry");
        std::fs::write(dir.path().join("htpasswd"), HTPASSWD).unwrap();
        // A free port: bind 0, read it, release it for the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: oz-test\n    path: {root}/htpasswd\n",
            root = dir.path().display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let end = Instant::now() + PROMPTLY;
        while registry.status_of_v2() != Some(401) {
            assert!(
                Instant::now() < end,
                "docker-registry never came up on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// The status of an anonymous `GET /v2/` (401 once it is up with auth on).
    fn status_of_v2(&self) -> Option<u16> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    fn repo(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }
}

#[test]
fn images_pushed_to_a_real_registry_with_htpasswd_auth_are_pulled_with_credentials() {
    let f = Fixture::new();
    let registry = Registry::start();
    let auth = RegistryAuth {
        server_address: format!("127.0.0.1:{}", registry.port),
        credential: Credential::Password {
            username: USER.into(),
            password: Secret::new(PASSWORD),
        },
    }
    .header_value();
    // Build both images under the registry's name, push them, and drop the local copies.
    let mut pushed = Vec::new();
    for (name, layer) in [
        ("oz-test/task", task_layer()),
        ("oz-test/agent", sidecar_layer()),
    ] {
        let repo = registry.repo(name);
        let reference = import_image(&f.client, &f.res, &repo, &layer);
        let tag = reference.rsplit_once(':').unwrap().1.to_string();
        push_image(&f.client, &repo, &tag, &auth);
        f.client.remove_image(&reference, true).unwrap();
        pushed.push(reference);
    }

    let dir = Scratch::new("docker-config");
    let credentials = |password: &str| {
        let encoded = base64::encode(format!("{USER}:{password}").as_bytes());
        let config = serde_json::json!({
            "auths": { format!("127.0.0.1:{}", registry.port): { "auth": encoded } }
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let mut env = f.env();
        env.insert(
            "DOCKER_CONFIG".into(),
            dir.path().to_string_lossy().into_owned(),
        );
        env
    };
    let mut spec = f.spec(&unique("realreg"), &[]);
    spec.image = pushed[0].clone();
    spec.sidecars[0].image = pushed[1].clone();

    // A wrong password: the registry refuses, and it is image_pull.
    let b = f.backend_with(f.settings(PullPolicy::Always), true, credentials("wrong"));
    let e = failure(b.execute(&spec, &token()));
    assert_eq!(e.reason, FailureReason::ImagePull, "{e}");
    assert!(
        e.message
            .starts_with(&format!("failed to pull image {}: ", pushed[0])),
        "{e}"
    );

    let b = f.backend_with(f.settings(PullPolicy::Always), true, credentials(PASSWORD));
    let id = spec.task_id.clone();
    let result = b.execute(&spec, &token());
    if f.client.inspect_image(&pushed[1]).unwrap().is_some() {
        f.register_volume(&pushed[1]);
    }
    assert_eq!(result, Ok(Completion::Finished));
    assert!(agent_lines(&id).contains(&"ARGV /agent/entrypoint.sh".to_string()));
    f.assert_clean();

    // Again, with the credentials from a credential helper instead of the config file: drop
    // the pulled images so the helper's credentials are what the second pull runs on.
    for reference in &pushed {
        let _ = f.client.remove_image(reference, true);
    }
    let bin = Scratch::new("helper-bin");
    let helper = bin.path().join("docker-credential-ozreal");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '%s' '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = serde_json::json!({
        "credHelpers": { format!("127.0.0.1:{}", registry.port): "ozreal" }
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut env = f.env();
    env.insert(
        "DOCKER_CONFIG".into(),
        dir.path().to_string_lossy().into_owned(),
    );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        env.get("PATH").cloned().unwrap_or_default()
    );
    env.insert("PATH".into(), path);
    let b = f.backend_with(f.settings(PullPolicy::Always), true, env);
    let mut spec = f.spec(&unique("realhelper"), &[]);
    spec.image = pushed[0].clone();
    spec.sidecars[0].image = pushed[1].clone();
    assert_eq!(b.execute(&spec, &token()), Ok(Completion::Finished));
    assert!(
        f.client.inspect_image(&pushed[0]).unwrap().is_some(),
        "pulled again"
    );
    f.assert_clean();
}
