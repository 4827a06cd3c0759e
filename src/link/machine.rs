//! The `oz-link` thread: a state machine with one function per state.
//!
//! ```text
//!            +------- failed (backoff, Retry-After) -------+
//!            v                                             |
//!   Wait --due--> Dial --ok--> Connected --lost (backoff)--+--> Wait
//!                                  |
//!                                  | shutdown requested, outbox flushed
//!                                  v
//!                               Closing --close echoed / deadline--> Done
//!
//!   Dial, Wait, Connected --shutdown with nothing queued, or deadline passed--> Done
//! ```
//!
//! Commands (outbound messages, shutdown) arrive on a channel; every producer writes the wake
//! fd after sending, so each wait below is a `poll(2)` on the socket and the wake fd with a
//! timeout no later than the next timer. No sleeps, no busy loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tungstenite::Message;

use super::backoff::Backoff;
use super::conn::{Conn, Lost};
use super::dial::{DialError, Dialer};
use super::outbox::Outbox;
use super::transport::MAX_OUTBOUND;
use super::wake::{self, Ready, StopAt, WakeRx};
use super::{LinkEvent, ShutdownReport, fmt_duration};
use crate::protocol::{self, Inbound, Outbound};
use crate::settings::Timing;

enum State {
    Dial,
    Wait(Instant),
    Connected(Box<Conn>),
    Closing(Box<Conn>),
    Done,
}

/// What the thread is built from.
pub(crate) struct Parts {
    pub dialer: Dialer,
    pub timing: Timing,
    pub rx: Receiver<Outbound>,
    pub wake: WakeRx,
    /// Set by `Link::shutdown`; the dialer reads the same one.
    pub stop: Arc<StopAt>,
    pub events: Sender<LinkEvent>,
    pub pending: Arc<AtomicUsize>,
    pub backoff: Backoff,
    pub ledger: Option<std::sync::Arc<dyn super::Ledger>>,
}

pub(crate) struct Machine {
    dialer: Dialer,
    timing: Timing,
    rx: Receiver<Outbound>,
    wake: WakeRx,
    stop_at: Arc<StopAt>,
    events: Sender<LinkEvent>,
    /// Outbox length, published for a `shutdown` that gives up waiting on this thread.
    pending: Arc<AtomicUsize>,
    outbox: Outbox,
    backoff: Backoff,
    /// The shutdown deadline, once shutdown was requested.
    stop: Option<Instant>,
    closed_cleanly: bool,
}

impl Machine {
    pub(crate) fn new(p: Parts) -> Machine {
        Machine {
            dialer: p.dialer,
            timing: p.timing,
            rx: p.rx,
            wake: p.wake,
            stop_at: p.stop,
            events: p.events,
            pending: p.pending,
            outbox: Outbox::with_ledger(p.ledger),
            backoff: p.backoff,
            stop: None,
            closed_cleanly: false,
        }
    }

    pub(crate) fn run(mut self) -> ShutdownReport {
        let mut state = State::Dial;
        loop {
            state = match state {
                State::Dial => self.dial(),
                State::Wait(until) => self.wait(until),
                State::Connected(conn) => self.connected(conn),
                State::Closing(conn) => self.closing(conn),
                State::Done => break,
            };
        }
        self.finish()
    }

    // Dial --ok--> Connected | Dial --failed--> Wait | Dial --nothing left to do--> Done
    // A failed dial is logged here, once (the supervisor only counts it).
    fn dial(&mut self) -> State {
        self.drain_commands();
        if self.should_stop(Instant::now()) {
            return State::Done;
        }
        log::info!("Connecting to {}", self.dialer.url);
        match self.dialer.dial() {
            Ok(ws) => {
                log::info!("Connected to {}", self.dialer.url.host_header());
                self.backoff.reset();
                self.outbox.rewind();
                self.emit(LinkEvent::Connected);
                State::Connected(Box::new(Conn::new(ws, Instant::now(), &self.timing)))
            }
            Err(DialError::Deadline) => State::Done,
            Err(e) => {
                let mut delay = self.backoff.next_delay();
                if let Some(retry_after) = e.retry_after() {
                    delay = delay.max(retry_after);
                }
                if e.is_auth() {
                    log::error!(
                        "Failed to connect: {e}, retrying in {}",
                        fmt_duration(delay)
                    );
                } else {
                    log::warn!(
                        "Failed to connect: {e}, retrying in {}",
                        fmt_duration(delay)
                    );
                }
                self.emit(LinkEvent::DialFailed {
                    error: e.to_string(),
                    retry_in: delay,
                });
                State::Wait(Instant::now() + delay)
            }
        }
    }

    // Wait --due--> Dial | Wait --nothing left to do or deadline--> Done
    fn wait(&mut self, until: Instant) -> State {
        loop {
            self.drain_commands();
            let now = Instant::now();
            if self.should_stop(now) {
                return State::Done;
            }
            if now >= until {
                return State::Dial;
            }
            let end = self.stop.map_or(until, |s| s.min(until));
            self.idle(None, end - now);
        }
    }

    // Connected --lost--> Wait | --shutdown, outbox flushed--> Closing | --deadline--> Done
    fn connected(&mut self, mut conn: Box<Conn>) -> State {
        loop {
            self.drain_commands();
            let now = Instant::now();
            if self.stop.is_some_and(|s| now >= s) {
                self.emit(LinkEvent::Closed {
                    reason: "shutdown deadline reached".into(),
                });
                return State::Done;
            }
            if let Err(lost) = conn.tick(now, &self.timing) {
                return self.lost(lost);
            }
            match conn.pump(&mut self.outbox, now) {
                Ok(0) => {}
                Ok(n) => {
                    log::debug!("Sent {n} message(s)");
                    self.publish_pending();
                }
                Err(lost) => return self.lost(lost),
            }
            if self.stop.is_some() && self.outbox.is_empty() {
                return match conn.start_close() {
                    Ok(()) => State::Closing(conn),
                    Err(Lost(reason)) => {
                        log::warn!("Could not send the close frame: {reason}");
                        self.emit(LinkEvent::Closed { reason });
                        State::Done
                    }
                };
            }
            let mut deadline = conn.next_deadline(&self.timing);
            if let Some(s) = self.stop {
                deadline = deadline.min(s);
            }
            let ready = self.idle(
                Some((&conn, conn.want_write())),
                deadline.saturating_duration_since(Instant::now()),
            );
            if ready.readable || conn.has_buffered_input() {
                let result = conn.read_available(Instant::now(), &mut |m| self.dispatch(m));
                if let Err(lost) = result {
                    return self.lost(lost);
                }
            }
        }
    }

    // Closing --close echoed, error or deadline--> Done
    fn closing(&mut self, mut conn: Box<Conn>) -> State {
        let stop = self.stop.unwrap_or_else(Instant::now);
        loop {
            self.drain_commands();
            match conn.close_step(&mut |m| self.dispatch(m)) {
                Ok(true) => {
                    self.closed_cleanly = true;
                    log::info!("Closed the connection to Oz");
                    self.emit(LinkEvent::Closed {
                        reason: "closed by the worker".into(),
                    });
                    return State::Done;
                }
                Ok(false) => {}
                Err(Lost(reason)) => {
                    log::warn!("Closing handshake failed: {reason}");
                    self.emit(LinkEvent::Closed { reason });
                    return State::Done;
                }
            }
            let now = Instant::now();
            if now >= stop {
                log::warn!(
                    "The server did not answer the close frame before the shutdown deadline"
                );
                self.emit(LinkEvent::Closed {
                    reason: "no close reply before the shutdown deadline".into(),
                });
                return State::Done;
            }
            let timeout = if conn.has_buffered_input() {
                Duration::ZERO
            } else {
                stop - now
            };
            self.idle(Some((&conn, conn.want_write())), timeout);
        }
    }

    /// An established connection ended: back off from the initial ceiling (a server that
    /// accepts and then closes must not cause a tight loop) and redial.
    fn lost(&mut self, Lost(reason): Lost) -> State {
        self.outbox.rewind();
        self.backoff.reset();
        let delay = self.backoff.next_delay();
        // The one log line of a lost connection (the supervisor only counts it).
        log::warn!(
            "Connection closed, will attempt to reconnect in {}: {reason}",
            fmt_duration(delay)
        );
        self.emit(LinkEvent::Disconnected { reason });
        State::Wait(Instant::now() + delay)
    }

    fn finish(mut self) -> ShutdownReport {
        // Late sends (from cloned senders) that raced the close are counted, not lost silently.
        self.drain_commands();
        let undelivered = self.outbox.len();
        if undelivered > 0 {
            log::warn!("{undelivered} queued message(s) were not delivered before shutdown");
        }
        self.publish_pending();
        ShutdownReport {
            undelivered,
            closed_cleanly: self.closed_cleanly,
            stopped: true,
        }
    }

    /// Shutdown requested and either nothing is left to deliver or time is up.
    fn should_stop(&self, now: Instant) -> bool {
        self.stop
            .is_some_and(|s| self.outbox.is_empty() || now >= s)
    }

    /// Moves queued messages into the outbox and picks up a shutdown request.
    fn drain_commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(msg) => self.enqueue(&msg),
                Err(TryRecvError::Empty) => break,
                // Every handle is gone: nobody can ask for a graceful shutdown any more.
                Err(TryRecvError::Disconnected) => {
                    self.stop_at.set(Instant::now());
                    break;
                }
            }
        }
        self.stop = self.stop_at.get();
        self.publish_pending();
    }

    fn enqueue(&mut self, msg: &Outbound) {
        let text = msg.encode();
        if text.len() > MAX_OUTBOUND {
            log::error!(
                "Dropping {} for task {}: it encodes to {} bytes, over the {MAX_OUTBOUND}-byte frame limit",
                msg.kind(),
                msg.task_id(),
                text.len()
            );
            return;
        }
        log::debug!("Queued {} for task {}", msg.kind(), msg.task_id());
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("Frame to Oz: {}", crate::redact::mask_frame(&text));
        }
        let receipt = msg.is_terminal().then(|| super::Delivered::of(msg));
        self.outbox.push_receipted(text.into(), receipt);
    }

    fn dispatch(&mut self, msg: Message) {
        match msg {
            Message::Text(text) => {
                if log::log_enabled!(log::Level::Debug) {
                    // Structurally masked (env_vars values, credentials), then redacted again
                    // by the logger: frame dumps never show a secret.
                    log::debug!("Frame from Oz: {}", crate::redact::mask_frame(&text));
                }
                self.dispatch_text(&text);
            }
            Message::Binary(b) => {
                log::warn!(
                    "Ignoring a binary frame from the server ({} bytes)",
                    b.len()
                );
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }

    fn dispatch_text(&mut self, text: &str) {
        match protocol::decode(text) {
            Ok(inbound) => {
                if let Inbound::Unknown(kind) = &inbound {
                    log::debug!("Received a message of unknown type {kind:?}");
                }
                self.emit(LinkEvent::Message(inbound));
            }
            // The error names what was wrong, never the frame (it may carry secrets).
            Err(e) => log::error!("Dropping a message from the server: {e}"),
        }
    }

    fn emit(&self, ev: LinkEvent) {
        // A gone supervisor is not the link's problem to report.
        let _ = self.events.send(ev);
    }

    fn publish_pending(&self) {
        self.pending.store(self.outbox.len(), Ordering::Relaxed);
    }

    /// One bounded wait on the wake fd (and the socket when connected).
    fn idle(&self, conn: Option<(&Conn, bool)>, timeout: Duration) -> Ready {
        let sock = conn.map(|(c, w)| (c.fd(), w));
        match wake::wait(sock, &self.wake, timeout) {
            Ok(ready) => {
                if ready.woken {
                    self.wake.drain();
                }
                ready
            }
            Err(e) => {
                // poll(2) only fails on resource exhaustion; pause briefly instead of spinning.
                log::error!("poll failed in the link thread: {e}");
                std::thread::sleep(timeout.min(Duration::from_millis(100)));
                Ready::default()
            }
        }
    }
}
