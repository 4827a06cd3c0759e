//! [`BackendProber`]: keeps `/readyz` honest about the backend between tasks.

use std::sync::Arc;

use log::{info, warn};

use crate::backend::Backend;
use crate::metrics::Health;

/// Re-probes the backend every half minute so `/readyz` notices an engine that went away (and
/// came back). Probing can block on I/O, so it has its own thread, never the supervisor's.
pub(crate) struct BackendProber {
    stop: Option<crossbeam_channel::Sender<()>>,
}

impl BackendProber {
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

    pub(crate) fn spawn(backend: Arc<dyn Backend>, health: Arc<Health>) -> BackendProber {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let _ = std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(Self::PERIOD)
                {
                    let failed: Vec<String> = backend
                        .probe()
                        .into_iter()
                        .filter(|l| !l.ok)
                        .map(|l| l.what)
                        .collect();
                    let ok = failed.is_empty();
                    if ok != health.backend_ok() {
                        if ok {
                            info!("The {} backend answers again", backend.kind());
                        } else {
                            warn!(
                                "The {} backend is not ready: {}",
                                backend.kind(),
                                failed.join("; ")
                            );
                        }
                    }
                    health.set_backend_ok(ok);
                }
            })
            .map_err(|e| warn!("Cannot start the backend probe thread: {e}"));
        BackendProber {
            stop: Some(stop_tx),
        }
    }
}

impl Drop for BackendProber {
    fn drop(&mut self) {
        // The thread ends at its next wake-up; a probe in progress is bounded by the
        // backend's own timeouts, so the process does not wait for it.
        drop(self.stop.take());
    }
}
