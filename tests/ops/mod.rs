//! The operations surface in-process: the ops HTTP listener on a real socket, and OTLP push
//! to a test collector that decodes what it receives.

mod listener;
mod otlp;

use std::sync::Arc;

use oz_agent_worker::metrics::{Metrics, WorkerInfo};

fn metrics(max: usize) -> Arc<Metrics> {
    Metrics::new(
        WorkerInfo {
            version: "0.0.0-test".into(),
            backend: "direct".into(),
            worker_id: "ops-test".into(),
        },
        max,
    )
}
