//! The outcome journal's place in the daemon: opened before the backend (whose startup
//! housekeeping must spare what the journal says to adopt), handed to the backend (process
//! groups), the link (fsync before frames leave, delivery receipts) and the supervisor (claims,
//! outcomes, replay).

use std::sync::Arc;

use log::{error, info, warn};

use crate::backend::{self, Backend, Orphan, Recorder, RecoveryNotes};
use crate::journal::{Journal, Replay};
use crate::link::{Delivered, Ledger};
use crate::settings::Settings;
use crate::task::TaskRef;

/// Opens the outcome journal; without a usable state directory the worker runs on, as
/// before, with a warning.
pub(crate) fn open_journal(settings: &Settings) -> (Option<Arc<Journal>>, Replay) {
    match Journal::open(&settings.state_dir) {
        Ok((j, replay)) => {
            info!(
                "Outcome journal in {}: {} undelivered outcome(s), {} unfinished task(s) to resolve",
                settings.state_dir.display(),
                replay.undelivered.len(),
                replay.unfinished.len()
            );
            (Some(Arc::new(j)), replay)
        }
        Err(e) => {
            warn!("{e}");
            (None, Replay::default())
        }
    }
}

/// Builds the backend with the journal as its recorder, sparing the journal's orphans.
pub(crate) fn build_backend(
    settings: &Settings,
    journal: Option<&Arc<Journal>>,
    orphans: &[Orphan],
) -> Option<Arc<dyn Backend>> {
    let recorder = match journal {
        Some(j) => Recorder::new(Arc::clone(j) as Arc<dyn RecoveryNotes>),
        None => Recorder::default(),
    };
    match backend::build_recovering(settings, backend::Purpose::Run, recorder, orphans) {
        Ok(b) => Some(b),
        Err(e) => {
            error!("Failed to create worker: {e}");
            None
        }
    }
}

/// The journal as the link's ledger: fsync before frames leave, delivery receipts after.
pub(crate) struct JournalLedger(pub Arc<Journal>);

impl Ledger for JournalLedger {
    fn before_write(&self) {
        self.0.sync();
    }

    fn delivered(&self, d: &Delivered) {
        self.0.delivered(&TaskRef {
            task_id: d.task_id.clone(),
            execution_id: d.execution_id.clone(),
        });
    }
}
