//! Test support: fake Oz server, harness for the real binary.
pub mod docker_images;
