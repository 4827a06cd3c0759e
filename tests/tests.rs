//! Integration tests: they drive the real `oz-agent-worker` binary against servers in
//! `tests/support` on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod ops;
