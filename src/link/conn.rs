//! One established connection, driven from `poll(2)` following tungstenite's 0.20+ contract:
//! `read()` returns one message and flushes queued auto-replies (pong, close echo); `write()`
//! only buffers; `flush()` may return `WouldBlock`, in which case we wait for `POLLOUT`. An
//! outbox frame leaves only after a `flush()` returned Ok.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Error as WsError, Message, WebSocket};

use super::fmt_duration;
use super::outbox::Outbox;
use super::transport::Transport;
use crate::settings::Timing;

/// Messages read per wake-up before the loop gives writes and timers a turn.
const READ_BUDGET: usize = 64;

/// Why a connection ended; the text goes into `LinkEvent::Disconnected` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost(pub String);

pub(crate) struct Conn {
    ws: WebSocket<Transport>,
    /// Last time any byte was read (data, ping, pong, or part of a frame still arriving).
    last_read: Instant,
    /// The transport's byte count at `last_read`.
    received: u64,
    next_ping: Instant,
    /// Since when a flush has been returning `WouldBlock`.
    stalled_since: Option<Instant>,
    /// A flush is pending: wait for `POLLOUT`.
    want_write: bool,
    /// The read budget ran out with data possibly still buffered above the socket.
    more_to_read: bool,
}

impl Conn {
    pub(crate) fn new(ws: WebSocket<Transport>, now: Instant, timing: &Timing) -> Conn {
        Conn {
            received: ws.get_ref().received(),
            ws,
            last_read: now,
            next_ping: now + timing.ping_interval,
            stalled_since: None,
            want_write: false,
            // The server may send right behind its 101 response, and those bytes were read
            // with it during the handshake: they sit in tungstenite's buffer, where poll(2)
            // cannot see them. Read once before the first wait.
            more_to_read: true,
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.ws.get_ref().as_fd()
    }

    pub(crate) fn want_write(&self) -> bool {
        self.want_write
    }

    /// When the loop must wake up at the latest (ping, liveness or stall deadline).
    pub(crate) fn next_deadline(&self, timing: &Timing) -> Instant {
        if self.more_to_read {
            return Instant::now();
        }
        let mut at = self.next_ping.min(self.last_read + timing.pong_timeout);
        if let Some(s) = self.stalled_since {
            at = at.min(s + timing.write_timeout);
        }
        at
    }

    /// Liveness and stall checks, then a ping when one is due.
    pub(crate) fn tick(&mut self, now: Instant, timing: &Timing) -> Result<(), Lost> {
        if now.duration_since(self.last_read) >= timing.pong_timeout {
            return Err(Lost(format!(
                "nothing received from the server for {} (ping timeout)",
                fmt_duration(timing.pong_timeout)
            )));
        }
        if let Some(since) = self.stalled_since
            && now.duration_since(since) >= timing.write_timeout
        {
            return Err(Lost(format!(
                "writes stalled for {}",
                fmt_duration(timing.write_timeout)
            )));
        }
        if now >= self.next_ping {
            self.next_ping = now + timing.ping_interval;
            match self.ws.write(Message::Ping(Bytes::new())) {
                Ok(()) | Err(WsError::WriteBufferFull(_)) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(lost_on_write(e)),
            }
            // Make sure the ping leaves even when the outbox is idle.
            self.want_write = true;
        }
        Ok(())
    }

    /// Reads until the socket would block (or the budget runs out), handing every data message
    /// to `deliver`. A close frame from the server ends the connection after the echo is flushed.
    pub(crate) fn read_available(
        &mut self,
        now: Instant,
        deliver: &mut dyn FnMut(Message),
    ) -> Result<(), Lost> {
        self.more_to_read = false;
        let result = self.read_some(deliver);
        let received = self.ws.get_ref().received();
        if received != self.received {
            self.received = received;
            self.last_read = now;
        }
        result
    }

    fn read_some(&mut self, deliver: &mut dyn FnMut(Message)) -> Result<(), Lost> {
        for _ in 0..READ_BUDGET {
            match self.ws.read() {
                Ok(Message::Close(frame)) => {
                    // `read` queued the echo; push it out best-effort before dropping the socket.
                    let _ = self.ws.flush();
                    return Err(Lost(describe_close(frame.as_ref())));
                }
                Ok(msg) => deliver(msg),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.lost_on_read(e)),
            }
        }
        self.more_to_read = true;
        Ok(())
    }

    fn lost_on_read(&mut self, e: WsError) -> Lost {
        match e {
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                log::error!(
                    "Refusing a frame from the server: {size} bytes is over the {max_size}-byte limit"
                );
                // Tell the server why (1009), best-effort: the connection is dropped anyway.
                let _ = self.ws.close(Some(CloseFrame {
                    code: CloseCode::Size,
                    reason: "frame too large".into(),
                }));
                Lost(format!("frame too large ({size} bytes, limit {max_size})"))
            }
            WsError::ConnectionClosed | WsError::AlreadyClosed => {
                Lost("the connection was closed".into())
            }
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                Lost("the server dropped the connection without a close frame".into())
            }
            WsError::Io(e) => Lost(format!("read failed: {e}")),
            other => Lost(format!("read failed: {other}")),
        }
    }

    /// Writes every unwritten outbox frame, then flushes. Frames leave the outbox only when the
    /// flush returned Ok. Returns how many frames left.
    pub(crate) fn pump(&mut self, outbox: &mut Outbox, now: Instant) -> Result<usize, Lost> {
        let mut sent = 0;
        outbox.before_write();
        loop {
            let mut wrote = false;
            while let Some(frame) = outbox.next_unwritten() {
                match self.ws.write(Message::Text(frame.clone())) {
                    Ok(()) => {
                        outbox.mark_written();
                        wrote = true;
                    }
                    // Buffered by tungstenite; the socket is full. The flush below will say so.
                    Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        outbox.mark_written();
                        wrote = true;
                        break;
                    }
                    // Not buffered: flush what is there first.
                    Err(WsError::WriteBufferFull(_)) => break,
                    Err(e) => return Err(lost_on_write(e)),
                }
            }
            match self.ws.flush() {
                Ok(()) => {
                    sent += outbox.flushed();
                    self.stalled_since = None;
                    self.want_write = false;
                    // No progress possible (nothing fitted into an empty buffer): stop rather
                    // than spin; the next wake-up retries.
                    if outbox.next_unwritten().is_none() || !wrote {
                        return Ok(sent);
                    }
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled_since.get_or_insert(now);
                    self.want_write = true;
                    return Ok(sent);
                }
                Err(e) => return Err(lost_on_write(e)),
            }
        }
    }

    /// Queues close 1000 and tries to flush it.
    pub(crate) fn start_close(&mut self) -> Result<(), Lost> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        match self.ws.close(Some(frame)) {
            Ok(()) => Ok(()),
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.want_write = true;
                Ok(())
            }
            Err(e) => Err(lost_on_write(e)),
        }
    }

    /// One step of the closing handshake after [`Conn::start_close`]: flush, then read until
    /// the server's close arrives. `Ok(true)` means the handshake is complete.
    pub(crate) fn close_step(&mut self, deliver: &mut dyn FnMut(Message)) -> Result<bool, Lost> {
        match self.ws.flush() {
            Ok(()) => self.want_write = false,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => self.want_write = true,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(true),
            Err(e) => return Err(lost_on_write(e)),
        }
        self.more_to_read = false;
        for _ in 0..READ_BUDGET {
            match self.ws.read() {
                Ok(Message::Close(_)) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return Ok(true);
                }
                Ok(msg) => deliver(msg),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.lost_on_read(e)),
            }
        }
        self.more_to_read = true;
        Ok(false)
    }

    pub(crate) fn has_buffered_input(&self) -> bool {
        self.more_to_read
    }
}

fn lost_on_write(e: WsError) -> Lost {
    match e {
        WsError::Io(e) => Lost(format!("write failed: {e}")),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            Lost("the connection was closed".into())
        }
        other => Lost(format!("write failed: {other}")),
    }
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        None => "the server closed the connection".into(),
        Some(f) if f.reason.is_empty() => {
            format!(
                "the server closed the connection (code {})",
                u16::from(f.code)
            )
        }
        Some(f) => {
            // Server-chosen text: keep it short and printable.
            let reason: String = f
                .reason
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect();
            format!(
                "the server closed the connection (code {}: {reason})",
                u16::from(f.code)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_descriptions() {
        assert_eq!(describe_close(None), "the server closed the connection");
        let f = CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        };
        assert_eq!(
            describe_close(Some(&f)),
            "the server closed the connection (code 1001)"
        );
        let f = CloseFrame {
            code: CloseCode::Policy,
            reason: "bye\n\u{7}now".into(),
        };
        assert_eq!(
            describe_close(Some(&f)),
            "the server closed the connection (code 1008: byenow)"
        );
    }
}
