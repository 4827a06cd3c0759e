//! The Docker backend against the real engine on this machine, with images the tests build:
//! a `FROM scratch`-style sidecar image whose `/entrypoint.sh` is a static test agent (see
//! `support::docker_images::AGENT_C`), and a nearly empty task image.
//!
//! Every test uses its own worker id, so it sees only its own containers; its fixture removes
//! what it registered and every container labelled with its worker id on drop, and most tests
//! end by asserting that nothing labelled with their worker id is left.

mod cancel;
mod debian_registry;
mod images;
mod lifecycle;
mod registry;
mod reporting;
mod run;
mod sidecar;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oz_agent_worker::backend::docker::{DockerBackend, spec as names};
use oz_agent_worker::backend::{BackendContext, CancelToken, Completion, Failure};
use oz_agent_worker::docker::{Client, ContainerSummary, ImageRef};
use oz_agent_worker::protocol::SidecarMount;
use oz_agent_worker::settings::{DockerSettings, PullPolicy, Timing};
use oz_agent_worker::task::TaskSpec;

use crate::support::docker_images::{
    Resources, docker, import_sidecar_image, import_task_image, unique,
};
use crate::support::log_capture;

/// Upper bound for anything that should happen promptly on a loaded machine.
pub const PROMPTLY: Duration = Duration::from_secs(120);
/// SIGTERM-to-SIGKILL grace in these tests.
pub const GRACE: Duration = Duration::from_secs(1);

/// A unique scratch directory, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One test's Docker world: a client, its resources, a unique worker id, fresh images.
pub struct Fixture {
    pub client: Client,
    pub res: Resources,
    pub worker_id: String,
    pub task_image: String,
    pub sidecar_image: String,
    /// A `HOME` without a Docker config, so the machine's own credentials never leak in.
    pub home: Scratch,
}

impl Fixture {
    pub fn new() -> Fixture {
        log_capture::install();
        let client = docker();
        let res = Resources::new(&client);
        let task_image = import_task_image(&client, &res);
        let sidecar_image = import_sidecar_image(&client, &res);
        let f = Fixture {
            client,
            res,
            worker_id: unique("worker"),
            task_image,
            sidecar_image,
            home: Scratch::new("home"),
        };
        f.register_volume(&f.sidecar_image.clone());
        f
    }

    /// Registers the sidecar volume of `image` (present locally) for removal; returns its name.
    pub fn register_volume(&self, image: &str) -> String {
        let volume = self.volume_of(image);
        self.res.volume(&volume)
    }

    /// The cache volume name of a local sidecar image.
    pub fn volume_of(&self, image: &str) -> String {
        let inspect = self.client.inspect_image(image).unwrap().unwrap();
        let familiar = ImageRef::parse(image).unwrap().familiar_name();
        names::volume_name(&familiar, inspect.digest())
    }

    /// The environment the backend sees: this process's `DOCKER_*` and `PATH`, a private `HOME`.
    pub fn env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("DOCKER_") || k == "PATH")
            .collect();
        env.insert(
            "HOME".into(),
            self.home.path().to_string_lossy().into_owned(),
        );
        env
    }

    pub fn ctx(&self, cleanup: bool) -> BackendContext {
        BackendContext {
            worker_id: self.worker_id.clone(),
            cleanup,
            server_root_url: "https://oz.test".into(),
            collect_task_logs: true,
            timing: Timing {
                kill_grace: GRACE,
                ..Timing::default()
            },
            recorder: Default::default(),
        }
    }

    pub fn settings(&self, policy: PullPolicy) -> DockerSettings {
        DockerSettings {
            volumes: vec![],
            env: vec![],
            image_pull_policy: policy,
            sidecar_image: None,
        }
    }

    /// A backend with local images only (`IfNotPresent`), cleanup on.
    pub fn backend(&self) -> DockerBackend {
        self.backend_with(self.settings(PullPolicy::IfNotPresent), true, self.env())
    }

    pub fn backend_with(
        &self,
        settings: DockerSettings,
        cleanup: bool,
        env: HashMap<String, String>,
    ) -> DockerBackend {
        DockerBackend::with_env(settings, self.ctx(cleanup), env)
            .unwrap_or_else(|e| panic!("the Docker backend did not start: {e}"))
    }

    /// A spec running the test agent from the sidecar image, with `env`.
    pub fn spec(&self, task_id: &str, env: &[(&str, &str)]) -> TaskSpec {
        TaskSpec {
            task_id: task_id.into(),
            execution_id: Some(format!("{task_id}-exec")),
            task: Default::default(),
            image: self.task_image.clone(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            base_args: vec![
                "agent".into(),
                "run".into(),
                "--task-id".into(),
                task_id.into(),
            ],
            sidecars: vec![SidecarMount {
                image: self.sidecar_image.clone(),
                mount_path: "/agent".into(),
                read_write: false,
            }],
            instance_shape: None,
            harness: None,
            secrets: vec![],
            telemetry: None,
        }
    }

    /// Every container (any state) labelled with this fixture's worker id.
    pub fn containers(&self) -> Vec<ContainerSummary> {
        let label = format!("{}={}", names::LABEL_WORKER, self.worker_id);
        self.client.list_containers(true, &[&label]).unwrap()
    }

    /// Waits until a container of this worker runs, and returns it.
    pub fn running_container(&self) -> ContainerSummary {
        let end = Instant::now() + PROMPTLY;
        loop {
            let found = self
                .containers()
                .into_iter()
                .find(|c| c.state == "running" && c.labels[names::LABEL_ROLE] == "task");
            if let Some(c) = found {
                return c;
            }
            assert!(Instant::now() < end, "no task container started");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts that no container labelled with this worker id is left.
    /// Asserts that no container of this worker is left. A finished task's container is
    /// removed beside its report, so this waits (bounded) for removals still in flight.
    pub fn assert_clean(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = self.containers();
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "containers left behind: {left:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Whatever a failed test left; the resources (volumes, images) go after this.
        let label = format!("{}={}", names::LABEL_WORKER, self.worker_id);
        if let Ok(left) = self.client.list_containers(true, &[&label]) {
            for c in left {
                let _ = self.client.remove_container(&c.id, true, true);
            }
        }
    }
}

pub fn token() -> CancelToken {
    CancelToken::new().unwrap()
}

pub fn failure(r: Result<Completion, Failure>) -> Failure {
    r.expect_err("the task should have failed")
}

/// Runs `f` on a thread; the receiver yields its result.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("test-task".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    rx
}

/// Runs `spec` on a thread with `cancel`.
pub fn execute_async(
    backend: &Arc<DockerBackend>,
    spec: TaskSpec,
    cancel: &CancelToken,
) -> mpsc::Receiver<Result<Completion, Failure>> {
    use oz_agent_worker::backend::Backend;
    let backend = Arc::clone(backend);
    let cancel = cancel.clone();
    spawn(move || backend.execute(&spec, &cancel))
}

/// The agent's output lines for `task_id` (log target `agent`), without the prefix.
pub fn agent_lines(task_id: &str) -> Vec<String> {
    let prefix = format!("[{task_id}] ");
    log_capture::lines()
        .into_iter()
        .filter(|l| l.target == "agent")
        .filter_map(|l| l.message.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// Waits until the agent of `task_id` printed `line`.
pub fn wait_for_line(task_id: &str, line: &str) {
    let end = Instant::now() + PROMPTLY;
    while !agent_lines(task_id).iter().any(|l| l == line) {
        assert!(
            Instant::now() < end,
            "task {task_id} never printed {line:?}; got {:?}",
            agent_lines(task_id)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Log lines (any target) containing `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    log_capture::matching(needle)
        .into_iter()
        .map(|l| l.message)
        .collect()
}
