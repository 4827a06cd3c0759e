//! oz-agent-worker: a self-hosted worker for Oz cloud agents.
//!
//! The worker keeps one WebSocket to the Oz control plane ([`link`]), receives task assignments
//! ([`protocol`]), turns each into a [`task::TaskSpec`], runs it on its own thread through a
//! [`backend::Backend`], and reports exactly one outcome per task ([`supervisor`]).
//!
//! The crate is synchronous by design: threads, crossbeam channels and `poll(2)`; no async
//! runtime. The map of threads, layers and contracts is `ARCHITECTURE.md` at the top of the
//! repository; the README covers use and figures.
//!
//! Modules are listed below from the top layer down. A module may import the ones in lower
//! layers and, sparingly, its own layer; never a higher one (checked by
//! `module_cycles.py`: no import cycle between top-level modules).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// --- Wiring: what `main` runs ---------------------------------------------------------------
/// `check` mode: validate the configuration and probe the backend.
pub mod check;
/// Daemon and run-once wiring: starts observers, backend, link and supervisor; stops them.
pub mod daemon;
/// `run-once` mode: one task from a file, no server.
pub mod run_once;

// --- Supervisor ------------------------------------------------------------------------------
/// The outcome journal: claims, outcomes and deliveries on disk, replayed after a crash.
pub mod journal;
/// What a finished task means on the wire, and the lifecycle log lines.
pub mod lifecycle;
/// The one owner of task state: assignments in, one terminal message per task out.
pub mod supervisor;

// --- Link --------------------------------------------------------------------------------------
/// The `oz-link` thread: the WebSocket to Oz, pings, redials, ordered delivery.
pub mod link;

// --- Backends ----------------------------------------------------------------------------------
/// The `Backend` seam and the docker, direct and command backends behind it.
pub mod backend;

// --- Task reporting ----------------------------------------------------------------------------
/// Setup-phase events to Warp and per-task log export over OTLP/HTTP (protobuf).
pub mod reporting;

// --- Engine clients and processes --------------------------------------------------------------
/// A blocking Docker Engine API client (endpoint discovery, registry auth, streams).
pub mod docker;
/// The one HTTP/1.1 client: transport (unix, TCP, TLS, proxy), driver, JSON lines, errors.
pub mod http;
/// The Kubernetes API client: kubeconfig, credentials, JSON requests with retries, watches.
pub mod kube;
/// One subprocess per task step: process groups, output forwarding, cancellation.
pub mod process;

// --- Operations --------------------------------------------------------------------------------
/// Our own logger: one redacted line per record, text or JSON.
pub mod logging;
/// The worker's metrics on plain atomics, and the health flags behind `/readyz`.
pub mod metrics;
/// The ops listener: `/metrics`, `/healthz`, `/readyz`.
pub mod ops;
/// OTLP/HTTP JSON push of the metrics.
pub mod otlp;
/// Secret redaction for every log line and task output the worker forwards.
pub mod redact;
/// systemd `sd_notify`: READY, STATUS, WATCHDOG.
pub mod sd_notify;

// --- Configuration -----------------------------------------------------------------------------
/// Command line: flags, subcommands, `--help`, `--version`, the man page.
pub mod cli;
/// Flags + environment + YAML file → validated [`settings::Settings`].
pub mod config;

// --- Wire and task model ---------------------------------------------------------------------
/// Wire types and codec of every message exchanged with Oz.
pub mod protocol;
/// The effective settings, `Secret`, `BackendKind`.
pub mod settings;
/// A `task_assignment` turned into a [`task::TaskSpec`] (image, env, CLI args, sidecars).
pub mod task;

// --- Small utilities (no imports from the crate) ---------------------------------------------
/// Base64 (standard and URL-safe).
pub mod base64;
/// A set that forgets its oldest keys beyond a capacity.
pub mod bounded;
/// `CancelToken`: how the supervisor tells a task to stop (pollable, waitable, an fd).
pub mod cancel;
/// The dotenv rules of the Go worker, for the direct backend's env file.
pub mod dotenv;
/// Go's `time.ParseDuration` syntax, and its formatting.
pub mod duration;
/// SIGTERM/SIGINT as channel messages.
pub mod signals;
/// Thread names within Linux's 15 bytes.
pub mod threads;

/// The version stamped into `--version`, `X-Warp-Worker-Version` and metrics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
