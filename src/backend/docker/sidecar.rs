//! Sidecar volumes: a named volume per sidecar image digest, filled once with the image's
//! filesystem and shared by every task that mounts that sidecar.
//!
//! Filling needs nothing inside the sidecar image (no shell, no tar): a never-started *export*
//! container of the image is exported as a tar, and the tar is uploaded (`PUT …/archive`) into
//! a never-started *fill* container that binds the volume at `/target`; the daemon mounts the
//! volume for the upload.
//!
//! Completeness, in process and across crashes:
//! - one gate per volume name serialises "inspect, create, fill" among this worker's tasks, so
//!   none mounts a half-filled volume; a task waiting at the gate leaves when it is cancelled;
//! - the fill container is created *first*, and its bind creates the volume; it is removed only
//!   after the upload succeeded. So while a container labelled with [`LABEL_VOLUME`] exists, the
//!   volume may be incomplete: one of ours is stale (a crashed run) and is discarded with its
//!   volume; another worker's is waited for;
//! - a failed fill removes the volume; if that removal fails the name is marked dirty and the
//!   next task retries the removal before refilling, failing with `incomplete sidecar volume`
//!   while it cannot.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::CancelToken;
use crate::docker::{Client, DockerError, Removal};

use super::spec::{self, FILL_TARGET, LABEL_VOLUME, LABEL_WORKER, ROLE_EXPORT, ROLE_FILL};

/// How long a task waits for another worker's fill of the same volume.
const FOREIGN_FILL_WAIT: Duration = Duration::from_secs(300);
/// Poll period while waiting at the gate or for another worker's fill.
const POLL: Duration = Duration::from_millis(100);

/// Why a sidecar volume could not be made ready.
#[derive(Debug)]
pub enum VolumeError {
    Cancelled,
    Docker { what: String, source: DockerError },
    Incomplete { volume: String, source: DockerError },
    ForeignFill { volume: String, container: String },
}

impl VolumeError {
    pub fn is_aborted(&self) -> bool {
        match self {
            VolumeError::Cancelled => true,
            VolumeError::Docker { source, .. } => source.is_aborted(),
            _ => false,
        }
    }
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeError::Cancelled => f.write_str("cancelled while waiting for a sidecar volume"),
            VolumeError::Docker { what, source } => write!(f, "{what}: {source}"),
            VolumeError::Incomplete { volume, source } => write!(
                f,
                "incomplete sidecar volume {volume}: an earlier fill failed and removing the volume failed: {source}"
            ),
            VolumeError::ForeignFill { volume, container } => write!(
                f,
                "sidecar volume {volume} is still being filled by container {container} (another worker?); remove that container if it is stale"
            ),
        }
    }
}

impl std::error::Error for VolumeError {}

fn docker(what: impl Into<String>) -> impl FnOnce(DockerError) -> VolumeError {
    let what = what.into();
    move |source| VolumeError::Docker { what, source }
}

/// Per-volume gates and the dirty set.
#[derive(Default)]
pub struct Volumes {
    busy: Mutex<BTreeSet<String>>,
    freed: Condvar,
    dirty: Mutex<BTreeSet<String>>,
}

/// Holds one volume's gate until dropped.
struct Gate<'a> {
    volumes: &'a Volumes,
    name: String,
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.volumes.lock_busy().remove(&self.name);
        self.volumes.freed.notify_all();
    }
}

/// Who is filling, for labels and names.
pub struct Owner<'a> {
    pub task_id: &'a str,
    pub execution_id: Option<&'a str>,
    pub worker_id: &'a str,
    /// A random suffix for helper container names.
    pub suffix: &'a str,
}

impl Volumes {
    fn lock_busy(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_dirty(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gate(&self, name: &str, cancel: &CancelToken) -> Result<Gate<'_>, VolumeError> {
        let mut busy = self.lock_busy();
        while busy.contains(name) {
            if cancel.is_cancelled() {
                return Err(VolumeError::Cancelled);
            }
            // Timed, so a cancellation is noticed without a wake-up from the token.
            busy = self
                .freed
                .wait_timeout(busy, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        busy.insert(name.to_string());
        Ok(Gate {
            volumes: self,
            name: name.to_string(),
        })
    }

    /// Makes volume `name` hold `image`'s filesystem, filling it if needed. `client` may be
    /// aborted by the task's cancellation; `plain` (never aborted) cleans up.
    pub fn ensure(
        &self,
        client: &Client,
        plain: &Client,
        name: &str,
        image: &str,
        owner: &Owner<'_>,
        cancel: &CancelToken,
    ) -> Result<(), VolumeError> {
        let _gate = self.gate(name, cancel)?;
        if self.lock_dirty().contains(name) {
            plain
                .remove_volume(name, true)
                .map_err(|source| VolumeError::Incomplete {
                    volume: name.to_string(),
                    source,
                })?;
            self.lock_dirty().remove(name);
        }
        let foreign_deadline = Instant::now() + FOREIGN_FILL_WAIT;
        let mut announced = false;
        loop {
            let volume = client
                .inspect_volume(name)
                .map_err(docker(format!("failed to inspect sidecar volume {name}")))?;
            if volume.is_none() {
                return self.fill(client, plain, name, image, owner);
            }
            let label = format!("{LABEL_VOLUME}={name}");
            let fills = client
                .list_containers(true, &[&label])
                .map_err(docker(format!(
                    "failed to look for fills of sidecar volume {name}"
                )))?;
            let Some(fill) = fills.first() else {
                return Ok(());
            };
            if fill.labels.get(LABEL_WORKER).map(String::as_str) == Some(owner.worker_id) {
                // Ours, and nobody of ours is filling (we hold the gate): a crashed run's.
                log::warn!(
                    "Sidecar volume {name} was left incomplete by an earlier run; refilling it"
                );
                for f in &fills {
                    remove_container(plain, &f.id);
                }
                plain
                    .remove_volume(name, true)
                    .map_err(|source| VolumeError::Incomplete {
                        volume: name.to_string(),
                        source,
                    })?;
                continue;
            }
            if !announced {
                log::info!(
                    "Task {}: waiting for sidecar volume {name}, being filled by container {} of worker {}",
                    owner.task_id,
                    fill.id.chars().take(12).collect::<String>(),
                    fill.labels.get(LABEL_WORKER).map_or("?", String::as_str)
                );
                announced = true;
            }
            if Instant::now() >= foreign_deadline {
                return Err(VolumeError::ForeignFill {
                    volume: name.to_string(),
                    container: fill.id.chars().take(12).collect(),
                });
            }
            if cancel.wait_timeout(POLL * 5) {
                return Err(VolumeError::Cancelled);
            }
        }
    }

    fn fill(
        &self,
        client: &Client,
        plain: &Client,
        name: &str,
        image: &str,
        owner: &Owner<'_>,
    ) -> Result<(), VolumeError> {
        log::info!(
            "Task {}: filling sidecar volume {name} from {image}",
            owner.task_id
        );
        let labels = |role| spec::labels(owner.task_id, owner.execution_id, owner.worker_id, role);
        let mut fill_labels = labels(ROLE_FILL);
        fill_labels.insert(LABEL_VOLUME.to_string(), name.to_string());
        let fill_config =
            spec::helper_container(image, vec![format!("{name}:{FILL_TARGET}")], fill_labels);
        let fill_name = spec::container_name(owner.task_id, &format!("fill-{}", owner.suffix));
        // The bind creates the volume: it never exists without its fill container.
        let fill = client.create_container(Some(&fill_name), &fill_config);
        let fill_id = match fill {
            Ok(created) => created.id,
            Err(e) => {
                // The create may have happened: clean up by name.
                if !e.is_definitive() {
                    remove_container(plain, &fill_name);
                }
                self.discard(plain, name);
                return Err(docker(format!(
                    "failed to create the fill container for sidecar volume {name}"
                ))(e));
            }
        };
        let export_name = spec::container_name(owner.task_id, &format!("export-{}", owner.suffix));
        let result = copy(client, image, &export_name, &fill_id, labels(ROLE_EXPORT));
        remove_container(plain, &export_name);
        match result {
            Ok(()) => {
                // Only now is the volume complete: removing the marker publishes it.
                remove_container(plain, &fill_id);
                Ok(())
            }
            Err(e) => {
                remove_container(plain, &fill_id);
                self.discard(plain, name);
                Err(e)
            }
        }
    }

    /// Removes a volume whose fill failed, or marks it dirty.
    fn discard(&self, plain: &Client, name: &str) {
        match plain.remove_volume(name, true) {
            Ok(_) => {}
            Err(e) => {
                log::warn!("Failed to remove incomplete sidecar volume {name}: {e}");
                self.lock_dirty().insert(name.to_string());
            }
        }
    }
}

/// Export container → tar stream → upload into the fill container's `/target`.
fn copy(
    client: &Client,
    image: &str,
    export_name: &str,
    fill_id: &str,
    labels: std::collections::BTreeMap<String, String>,
) -> Result<(), VolumeError> {
    let config = spec::helper_container(image, Vec::new(), labels);
    let export = client
        .create_container(Some(export_name), &config)
        .map_err(docker(format!(
            "failed to create the export container for sidecar image {image}"
        )))?;
    let mut tar = client
        .export_container(&export.id)
        .map_err(docker(format!("failed to export sidecar image {image}")))?;
    client
        .put_archive(fill_id, FILL_TARGET, &mut tar)
        .map_err(docker(format!(
            "failed to copy sidecar image {image} into its volume"
        )))
}

/// Force-removes a helper container; failures are logged (startup reaping catches leftovers).
fn remove_container(plain: &Client, id: &str) {
    match plain.remove_container(id, true, false) {
        Ok(Removal::Removed | Removal::NotFound) => {}
        Err(e) => log::warn!("Failed to remove sidecar helper container {id}: {e}"),
    }
}
