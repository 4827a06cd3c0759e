//! Placeholder until the link lands (the helper's branch replaces this file).

use std::time::Duration;

use crate::protocol::Inbound;

/// What the link thread reports to the supervisor.
#[derive(Debug)]
pub enum LinkEvent {
    Connected,
    Disconnected { reason: String },
    DialFailed { error: String, retry_in: Duration },
    Message(Inbound),
}
