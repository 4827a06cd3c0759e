//! oz-agent-worker: a self-hosted worker for Oz cloud agents.
//!
//! The worker keeps one WebSocket to the Oz control plane ([`link`]), receives task assignments
//! ([`protocol`]), turns each into a [`task::TaskSpec`], runs it on its own thread through a
//! [`backend::Backend`], and reports exactly one outcome per task ([`supervisor`]).
//!
//! The crate is synchronous by design: threads, crossbeam channels and `poll(2)`; no async
//! runtime. See `DESIGN.md` in the team's shared folder and the README for the big picture.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod backend;
pub mod base64;
pub mod bounded;
pub mod check;
pub mod cli;
pub mod config;
pub mod docker;
pub mod dotenv;
pub mod http;
pub mod kube;
pub mod lifecycle;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod otlp;
pub mod process;
pub mod protocol;
pub mod redact;
pub mod run_once;
pub mod sd_notify;
pub mod settings;
pub mod signals;
pub mod supervisor;
pub mod task;
pub mod threads;

/// The version stamped into `--version`, `X-Warp-Worker-Version` and metrics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
