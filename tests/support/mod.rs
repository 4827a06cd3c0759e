//! Test support: the fake Oz server, a CONNECT proxy, log capture and the harness that drives
//! the real binary.

#![allow(dead_code)]

pub mod harness;
pub mod log_capture;
pub mod oz_server;
pub mod proxy;
