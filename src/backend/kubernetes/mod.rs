//! The Kubernetes backend: one Job per task (reference `kubernetes-backend.md`).
//!
//! The pure parts live here: names and labels ([`names`]), the task Job ([`job`]) and its
//! pieces, the startup preflight Job, outcome classification and cleanup decisions.

pub mod env;
pub mod job;
pub mod names;
pub mod sidecars;
pub mod template;

#[cfg(test)]
mod fixtures;
