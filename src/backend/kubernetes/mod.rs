//! The Kubernetes backend: one Job per task (reference `kubernetes-backend.md`).
//!
//! Pure parts (no I/O, each module names the reference section it implements):
//! - [`names`]: Job names, labels, hash labels, the reported annotation (§3.2);
//! - [`job`]: the task Job manifest (§3.1–§3.7), from [`env`](mod@env) (§3.3), [`sidecars`] (§3.1,
//!   §3.4) and the `pod_template` merge in [`template`] (§3.5, §3.6);
//! - [`preflight`]: the startup preflight Job and its verdict (§4);
//! - [`outcome`]: Job, pods and events to a task outcome (§5.3, §5.4, §6), with [`message`]
//!   (§6.1, §6.2) and [`details`] (`failure_details.kubernetes`, schema 1);
//! - [`cleanup`]: delete, expire or keep a Job (§7); [`rbac`]: the Role rules it needs (§9);
//! - [`setup_phases`]: setup-phase spans from pod status (`upstream-newer.md` §5.1).

pub mod cleanup;
pub mod details;
pub mod env;
pub mod job;
pub mod message;
pub mod names;
pub mod outcome;
pub mod preflight;
pub mod rbac;
pub mod setup_phases;
pub mod sidecars;
pub mod template;
pub mod time;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod matrix;
