//! The Kubernetes backend: one Job per task (reference `kubernetes-backend.md`).
//!
//! The pure parts live here: names and labels ([`names`]), the task Job ([`job`]) and its
//! pieces, the startup preflight Job, outcome classification and cleanup decisions.

pub mod cleanup;
pub mod details;
pub mod env;
pub mod job;
pub mod message;
pub mod names;
pub mod outcome;
pub mod preflight;
pub mod sidecars;
pub mod template;
pub mod time;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod matrix;
