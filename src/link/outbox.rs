//! The link's queue of encoded outbound frames. It outlives connections: a frame leaves only
//! once it was written *and* a later `flush()` returned Ok. `written` counts the front frames
//! already handed to the current connection, so none is written twice on one connection; a new
//! connection starts again from the front (at-least-once for frames that were written but not
//! confirmed flushed). Frames of terminal messages carry a [`Delivered`] receipt, handed to the
//! ledger (the outcome journal) when they leave; before frames are written the ledger is asked
//! to make their records durable. Pure bookkeeping, no I/O of its own.

use std::collections::VecDeque;

use tungstenite::Utf8Bytes;

use std::sync::Arc;

use super::{Delivered, Ledger};

#[derive(Default)]
pub(crate) struct Outbox {
    queue: VecDeque<(Utf8Bytes, Option<Delivered>)>,
    written: usize,
    ledger: Option<Arc<dyn Ledger>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.queue.len())
            .field("written", &self.written)
            .finish()
    }
}

impl Outbox {
    pub(crate) fn with_ledger(ledger: Option<Arc<dyn Ledger>>) -> Outbox {
        Outbox {
            ledger,
            ..Outbox::default()
        }
    }

    /// Called before frames are written: the ledger makes their records durable.
    pub(crate) fn before_write(&self) {
        if let Some(l) = &self.ledger
            && self.next_unwritten().is_some()
        {
            l.before_write();
        }
    }

    #[cfg(test)]
    pub(crate) fn push(&mut self, frame: Utf8Bytes) {
        self.queue.push_back((frame, None));
    }

    /// Queues a frame whose delivery is reported to the hook.
    pub(crate) fn push_receipted(&mut self, frame: Utf8Bytes, receipt: Option<Delivered>) {
        self.queue.push_back((frame, receipt));
    }

    /// The first frame not yet written on this connection.
    pub(crate) fn next_unwritten(&self) -> Option<&Utf8Bytes> {
        self.queue.get(self.written).map(|(f, _)| f)
    }

    /// The frame returned by [`Outbox::next_unwritten`] is now in the connection's buffer.
    pub(crate) fn mark_written(&mut self) {
        self.written = (self.written + 1).min(self.queue.len());
    }

    /// A flush succeeded: every written frame is delivered to the socket and leaves.
    pub(crate) fn flushed(&mut self) -> usize {
        let n = self.written;
        for (_, receipt) in self.queue.drain(..n) {
            if let (Some(r), Some(ledger)) = (receipt, &self.ledger) {
                ledger.delivered(&r);
            }
        }
        self.written = 0;
        n
    }

    /// The connection is gone: frames written to it but not confirmed go out again next time.
    pub(crate) fn rewind(&mut self) {
        self.written = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn written(&self) -> usize {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_owned())
    }

    #[test]
    fn written_frames_leave_only_on_flush() {
        let mut o = Outbox::default();
        o.push(frame("a"));
        o.push(frame("b"));
        o.push(frame("c"));
        assert_eq!(o.next_unwritten().map(|f| f.as_str()), Some("a"));
        o.mark_written();
        o.mark_written();
        assert_eq!(o.next_unwritten().map(|f| f.as_str()), Some("c"));
        assert_eq!(o.len(), 3);
        assert_eq!(o.flushed(), 2);
        assert_eq!(o.len(), 1);
        assert_eq!(o.next_unwritten().map(|f| f.as_str()), Some("c"));
    }

    #[test]
    fn rewind_resends_unconfirmed_frames_in_order() {
        let mut o = Outbox::default();
        for s in ["a", "b", "c"] {
            o.push(frame(s));
        }
        o.mark_written();
        o.mark_written();
        o.rewind();
        assert_eq!(o.written(), 0);
        let mut order = Vec::new();
        while let Some(f) = o.next_unwritten() {
            order.push(f.as_str().to_owned());
            o.mark_written();
        }
        assert_eq!(order, ["a", "b", "c"]);
        o.push(frame("d"));
        assert_eq!(o.next_unwritten().map(|f| f.as_str()), Some("d"));
        assert_eq!(o.flushed(), 3);
        assert_eq!(o.next_unwritten().map(|f| f.as_str()), Some("d"));
    }

    #[test]
    fn receipts_reach_the_ledger_only_when_their_frame_is_flushed() {
        #[derive(Default)]
        struct Seen(std::sync::Mutex<Vec<String>>);
        impl Ledger for Seen {
            fn before_write(&self) {
                self.0.lock().unwrap().push("sync".into());
            }
            fn delivered(&self, d: &Delivered) {
                self.0.lock().unwrap().push(d.task_id.clone());
            }
        }
        let seen = Arc::new(Seen::default());
        let mut o = Outbox::with_ledger(Some(seen.clone()));
        let seen = || seen.0.lock().unwrap().clone();
        o.before_write();
        assert!(seen().is_empty(), "nothing to write, nothing to sync");
        let receipt = |t: &str| {
            Some(Delivered {
                task_id: t.into(),
                execution_id: None,
            })
        };
        o.push(frame("claim"));
        o.push_receipted(frame("done-a"), receipt("a"));
        o.push_receipted(frame("done-b"), receipt("b"));
        o.before_write();
        o.mark_written();
        o.mark_written();
        o.rewind();
        assert_eq!(seen(), ["sync"], "rewound frames are not delivered");
        o.mark_written();
        o.mark_written();
        assert_eq!(o.flushed(), 2);
        assert_eq!(seen(), ["sync", "a"]);
        o.mark_written();
        o.flushed();
        assert_eq!(seen(), ["sync", "a", "b"]);
    }

    #[test]
    fn mark_written_never_overruns() {
        let mut o = Outbox::default();
        o.mark_written();
        assert_eq!(o.written(), 0);
        assert_eq!(o.flushed(), 0);
        assert!(o.is_empty());
    }
}
