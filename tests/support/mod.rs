//! Test support: the fake Oz server, a CONNECT proxy, an OTLP collector, log capture, Docker
//! test images and the harness that drives the real binary.

#![allow(dead_code)]

pub mod collector;
pub mod docker_images;
pub mod harness;
pub mod kube_sim;
pub mod log_capture;
pub mod otlp_logs;
pub mod oz_server;
pub mod proxy;
pub mod unix_proxy;
pub mod warp_api;
