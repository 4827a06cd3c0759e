//! A small, blocking Docker Engine API client, written for this worker.
//!
//! # Scope
//! In scope: HTTP/1.1 over `unix://` and `tcp://` (plain or TLS with client certificates),
//! endpoint discovery as the Docker CLI does it (`DOCKER_HOST`, contexts, rootless sockets),
//! API version negotiation, registry credentials from the CLI config (helpers included), and the
//! endpoints the Docker backend needs: images (inspect, pull, import, remove), containers
//! (create, start, wait, inspect, logs, attach, kill, stop, remove, list, export, put archive)
//! and volumes (create, inspect, remove). Out of scope: everything else (networks, exec, build,
//! swarm), keep-alive (one request per connection: unix sockets are cheap and there is no pool
//! to get wrong), HTTP/2 and `ssh://` hosts.
//!
//! # Layers
//! ```text
//! Client methods (system, images, containers, streams, volumes)   JSON via serde, status as data
//!   └─ response.rs  Docker's reading of a response: `{"message": …}` errors, size limits
//!        └─ crate::http  the shared HTTP/1.1 client: connect → send request → [send body] →
//!                        receive head → receive body, each phase with its deadline; Abort;
//!                        sans-IO codec; Stream = unix | tcp | tls (rustls + ring)
//! endpoint.rs + discovery.rs + tls.rs + cli_config.rs   where the daemon is, how to secure it
//! auth.rs + credhelper.rs + reference.rs  registry credentials and X-Registry-Auth
//! frames.rs                               the 8-byte multiplexed stream demuxer (pure)
//! ```
//!
//! # Using it
//! ```no_run
//! use oz_agent_worker::docker::{Client, ContainerConfig, WaitCondition};
//! # fn main() -> Result<(), oz_agent_worker::docker::DockerError> {
//! let mut client = Client::from_env(&|k| std::env::var(k).ok())?; // discovery only
//! let daemon = client.negotiate()?; // ping, version, platform check
//! let config = ContainerConfig { image: "ubuntu:22.04".into(), ..Default::default() };
//! let created = client.create_container(None, &config)?;
//! let waiter = client.wait_container(&created.id, WaitCondition::NextExit)?; // registered
//! client.start_container(&created.id)?;
//! let exit = waiter.wait()?; // blocks until the container exits (or an Abort fires)
//! # let _ = (daemon, exit); Ok(()) }
//! ```
//!
//! # Errors and statuses
//! Transport failures are [`DockerError`]s; statuses that are answers are data: inspecting a
//! missing object gives `Ok(None)`, stopping a stopped container [`StopOutcome::AlreadyStopped`],
//! removing a missing one [`Removal::NotFound`]. Other non-2xx answers are
//! [`DockerError::Status`] with Docker's message; [`DockerError::status`] exposes the code and
//! [`DockerError::is_definitive`] tells a definite refusal from an unknown outcome.
//!
//! # Design notes
//! - The HTTP client is the crate's own ([`crate::http`], see ARCHITECTURE.md); its codec is
//!   ours, not `ureq-proto`: measured in a release build (opt-level s, fat
//!   LTO, next to tungstenite), ours adds ~14 KiB and no crate; `ureq-proto` 0.7 adds ~66 KiB
//!   and two crates (itself and a second `base64`). Docker needs little HTTP: no redirects, no
//!   100-continue, no pooling, plus the 101 hijack.
//! - One request per connection (`Connection: close`), so no pool, no stale-connection retries,
//!   and aborting a call is shutting down its socket.
//! - Timeouts are per phase ([`Timeouts`]); waits and log follows have no body deadline (they
//!   last as long as the container) and are bounded by an [`Abort`] instead. A unix connect has
//!   no timeout of its own: it completes or fails at once unless the daemon's backlog is full.
//! - Sidecar volumes need no `/bin/sh` or `tar` in the image: export a created container and
//!   stream it into [`Client::put_archive`] of a created (never started) container that binds
//!   the volume; the daemon mounts the volume for the copy.
//!
//! # Cancellation
//! Calls block. To end one from another thread (a task cancelled while waiting on its
//! container), run it on a client from [`Client::with_abort`] and call [`Abort::abort`]: the
//! socket is shut down and the call returns an error for which [`DockerError::is_aborted`] holds.

pub mod auth;
// Shared with the link's proxy auth and OTLP; re-exported so Docker code reads naturally.
pub use crate::base64;
mod cli_config;
mod client;
mod containers;
mod credhelper;
mod discovery;
mod endpoint;
mod error;
pub mod frames;
mod images;
pub mod reference;
mod response;
mod streams;
mod system;
mod tls;
mod volumes;

pub use crate::http::{Abort, Timeouts};
pub use auth::{Credential, RegistryAuth};
pub use cli_config::EnvLookup;
pub use client::{ApiVersion, Client, MAX_API_VERSION, MIN_API_VERSION};
pub use containers::{
    ContainerConfig, ContainerInspect, ContainerState, ContainerSummary, Created, HostConfig,
    KillOutcome, Removal, StartOutcome, StopOutcome, WaitCondition, WaitExit, Waiter,
};
pub use discovery::DEFAULT_SOCKET;
pub use endpoint::{Address, Endpoint};
pub use error::{DockerError, Phase};
pub use frames::{Demuxer, StreamKind};
pub use images::{ImageInspect, PullProgress};
pub use reference::ImageRef;
pub use streams::{AttachOptions, Attached, ExportStream, LogChunk, LogStream, LogsOptions};
pub use system::{Daemon, Platform, VersionInfo};
pub use volumes::Volume;

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A unique temporary directory, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "oz-docker-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        /// Writes `contents` to `rel` (parents created) and returns the full path.
        pub(crate) fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The decoded body of a recorded HTTP response.
    pub(crate) fn fixture_body(raw: &[u8]) -> Vec<u8> {
        use crate::http::codec::{BodyDecoder, MAX_HEAD, parse_response_head, response_framing};
        let (used, head) = parse_response_head(raw, MAX_HEAD).unwrap().unwrap();
        let mut decoder = BodyDecoder::new(response_framing("GET", &head).unwrap());
        let mut out = vec![0u8; raw.len()];
        let (_, made) = decoder.decode(&raw[used..], &mut out).unwrap();
        assert!(decoder.is_done());
        out.truncate(made);
        out
    }

    /// An injected environment from pairs.
    pub(crate) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }
}
