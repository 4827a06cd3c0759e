//! The link's byte stream (plain TCP or rustls over TCP) and the WebSocket limits.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};

use rustls::{ClientConnection, StreamOwned};
use tungstenite::protocol::WebSocketConfig;

/// Largest frame or message accepted from the server; larger ones end the connection.
pub(crate) const MAX_INBOUND: usize = 16 << 20;
/// Largest outbound frame; a message that encodes larger is dropped (it could never be sent).
pub(crate) const MAX_OUTBOUND: usize = 16 << 20;
const BUFFER: usize = 8 << 10;

/// The WebSocket limits: small buffers (the traffic is a few small JSON frames), bounded
/// everything.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        // One maximal outbound frame (+ header) always fits into an empty buffer.
        .max_write_buffer_size(MAX_OUTBOUND + BUFFER + 64)
        .max_message_size(Some(MAX_INBOUND))
        .max_frame_size(Some(MAX_INBOUND))
}

/// The link's byte stream: plain TCP or TLS over TCP. It counts the bytes it reads, so
/// liveness can count a large frame that is still arriving as "something was read".
#[derive(Debug)]
pub(crate) struct Transport {
    stream: Stream,
    received: u64,
}

#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    #[cfg(test)]
    pub(crate) fn plain(tcp: TcpStream) -> Transport {
        Transport {
            stream: Stream::Plain(tcp),
            received: 0,
        }
    }

    /// The link's view of a stream dialled by the HTTP client; `None` for a unix socket (the
    /// link only dials TCP).
    pub(crate) fn from_stream(stream: crate::http::Stream) -> Option<Transport> {
        let stream = match stream {
            crate::http::Stream::Tcp(s) => Stream::Plain(s),
            crate::http::Stream::Tls(s) => Stream::Tls(s),
            crate::http::Stream::Unix(_) => return None,
        };
        Some(Transport {
            stream,
            received: 0,
        })
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Bytes read so far (after TLS decryption).
    pub(crate) fn received(&self) -> u64 {
        self.received
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(buf)?,
            Stream::Tls(s) => s.read(buf)?,
        };
        self.received += n as u64;
        Ok(n)
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp().as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid_and_bounded() {
        let c = ws_config();
        assert!(c.max_write_buffer_size > c.write_buffer_size + MAX_OUTBOUND);
        assert_eq!(c.max_frame_size, Some(MAX_INBOUND));
        assert_eq!(c.max_message_size, Some(MAX_INBOUND));
        assert_eq!(c.read_buffer_size, BUFFER);
        // Constructing a context validates the config (it panics on an invalid one).
        let _ = tungstenite::protocol::WebSocketContext::new(
            tungstenite::protocol::Role::Client,
            Some(c),
        );
    }

    #[test]
    fn counts_received_bytes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let mut t = Transport::plain(b);
        a.write_all(b"hello").unwrap();
        let mut buf = [0u8; 16];
        let mut got = 0;
        while got < 5 {
            got += t.read(&mut buf).unwrap();
        }
        assert_eq!(t.received(), 5);
        t.write_all(b"x").unwrap();
        t.flush().unwrap();
        assert_eq!(t.received(), 5, "writes do not count");
    }
}
