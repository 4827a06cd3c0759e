//! Integration tests: they drive the real `oz-agent-worker` binary (and the library's threads)
//! against servers in `tests/support` on 127.0.0.1 and the real Docker engine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod backends;
mod docker_backend;
mod docker_client;
mod fuzz;
mod kube;
mod link;
mod ops;
mod worker;
