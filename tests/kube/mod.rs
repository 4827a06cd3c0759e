//! The Kubernetes API simulator checked with the real `kubectl`, the `kube` client against the
//! simulator, and the Kubernetes backend end to end through the binary.

mod backend;
mod live_logs;
mod operations;
mod outcomes;
mod real_cluster;
mod reporting;
mod resilience;
mod simulator;
