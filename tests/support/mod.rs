//! Test support: fake Oz server, harness for the real binary.

pub mod log_capture;
pub mod oz_server;
pub mod proxy;
