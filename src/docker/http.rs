//! The one driver that does I/O for the codec: one request per connection, one function per
//! phase (connect, send request, send body, receive head, receive body), each with its deadline.
//!
//! Connections are not reused: unix sockets are cheap, and a fresh connection per request keeps
//! the driver free of pool state and of the "is this idle connection still alive" question.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::codec::{self, BodyDecoder, RequestBody, ResponseHead};
use super::error::{DockerError, Phase};
use super::transport::{self, Abort, Endpoint, Registration, Stream};

/// Per-phase time limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connect, including the TLS handshake.
    pub connect: Duration,
    /// Sending the head and a small body; for a streamed body, the longest stall of one write.
    pub send: Duration,
    /// From the end of the request until the response head is complete.
    pub head: Duration,
    /// The longest stall between two reads of the body; `None` waits for as long as the daemon
    /// takes (container wait, log follow), bounded only by an [`Abort`].
    pub body_idle: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            send: Duration::from_secs(30),
            head: Duration::from_secs(60),
            body_idle: Some(Duration::from_secs(60)),
        }
    }
}

/// A request body.
pub(crate) enum Body<'a> {
    Empty,
    Json(Vec<u8>),
    /// Sent chunked, 64 KiB at a time, never buffered whole.
    Stream(&'a mut dyn Read, &'static str),
}

pub(crate) struct Request<'a> {
    pub method: &'static str,
    /// Origin-form path and query, API version prefix included.
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    pub timeouts: Timeouts,
    /// `Connection: Upgrade` + `Upgrade: tcp` (attach).
    pub upgrade: bool,
}

impl Request<'_> {
    /// `GET /v1.41/containers/x/json`: the method and path without the query, for messages.
    pub(crate) fn describe(method: &str, target: &str) -> String {
        let path = target.split('?').next().unwrap_or(target);
        format!("{method} {path}")
    }
}

const READ_CHUNK: usize = 16 * 1024;
const SEND_CHUNK: usize = 64 * 1024;
/// After a failed body upload, how long we wait for the daemon's explanation.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// An open connection with its read buffer.
pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    endpoint: String,
    pub(crate) request: String,
    abort: Option<Abort>,
    _registration: Option<Registration>,
}

impl Conn {
    fn timeout(&self, phase: Phase, after: Duration) -> DockerError {
        DockerError::Timeout {
            phase,
            endpoint: self.endpoint.clone(),
            request: self.request.clone(),
            after,
        }
    }

    /// Maps an I/O failure, preferring "aborted" when an abort caused it.
    fn io_error(&self, phase: Phase, e: io::Error, limit: Option<Duration>) -> DockerError {
        if self.aborted() {
            return DockerError::Aborted {
                request: self.request.clone(),
            };
        }
        match (e.kind(), limit) {
            (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some(after)) => {
                self.timeout(phase, after)
            }
            _ => DockerError::Io {
                phase,
                endpoint: self.endpoint.clone(),
                request: self.request.clone(),
                source: e,
            },
        }
    }

    fn aborted(&self) -> bool {
        self.abort.as_ref().is_some_and(Abort::is_aborted)
    }

    fn protocol(&self, source: codec::CodecError) -> DockerError {
        DockerError::Protocol {
            endpoint: self.endpoint.clone(),
            request: self.request.clone(),
            source,
        }
    }

    /// Writes all of `bytes` before `deadline` (`limit` is its length, for the message).
    fn write_all(
        &mut self,
        bytes: &[u8],
        phase: Phase,
        deadline: Instant,
        limit: Duration,
    ) -> Result<(), DockerError> {
        let mut sent = 0;
        while sent < bytes.len() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| self.timeout(phase, limit))?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|e| self.io_error(phase, e, None))?;
            match self.stream.write(&bytes[sent..]) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "connection closed");
                    return Err(self.io_error(phase, e, None));
                }
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(phase, e, Some(limit))),
            }
        }
        self.stream
            .flush()
            .map_err(|e| self.io_error(phase, e, Some(limit)))
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF. `read_timeout` `None` blocks.
    fn fill(&mut self, phase: Phase, read_timeout: Option<Duration>) -> Result<usize, DockerError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.stream
            .set_read_timeout(read_timeout)
            .map_err(|e| self.io_error(phase, e, None))?;
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        loop {
            match self.stream.read(&mut self.buf[start..]) {
                Ok(n) => {
                    self.buf.truncate(start + n);
                    if n == 0 && self.aborted() {
                        return Err(DockerError::Aborted {
                            request: self.request.clone(),
                        });
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(self.io_error(phase, e, read_timeout));
                }
            }
        }
    }

    /// Bytes received but not yet consumed.
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn into_parts(self) -> (Stream, Vec<u8>, Option<Registration>) {
        let leftover = self.buf[self.pos..].to_vec();
        (self.stream, leftover, self._registration)
    }
}

/// Sends `request` to `endpoint` and returns once the response head has arrived.
pub(crate) fn send(
    endpoint: &Endpoint,
    abort: Option<&Abort>,
    request: Request<'_>,
) -> Result<Response, DockerError> {
    let describe = Request::describe(request.method, &request.target);
    if abort.is_some_and(Abort::is_aborted) {
        return Err(DockerError::Aborted { request: describe });
    }
    let stream = transport::connect(endpoint, request.timeouts.connect)?;
    let registration = match abort {
        None => None,
        Some(abort) => {
            let handle = stream.handle().map_err(|e| DockerError::Connect {
                endpoint: endpoint.to_string(),
                source: e,
            })?;
            Some(abort.register(handle).ok_or_else(|| DockerError::Aborted {
                request: describe.clone(),
            })?)
        }
    };
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        pos: 0,
        endpoint: endpoint.to_string(),
        request: describe,
        abort: abort.cloned(),
        _registration: registration,
    };
    let Request {
        method,
        target,
        headers,
        mut body,
        timeouts,
        upgrade,
    } = request;
    send_request(
        &mut conn, endpoint, method, &target, &headers, &body, upgrade, &timeouts,
    )?;
    if let Body::Stream(source, _) = &mut body
        && let Err(e) = send_body(&mut conn, *source, timeouts.send)
    {
        // The daemon may have answered early (404, 400) and closed: prefer its answer.
        if matches!(e, DockerError::Io { .. }) {
            return receive_head(conn, method, EARLY_ANSWER_WAIT, timeouts).map_err(|_| e);
        }
        return Err(e);
    }
    receive_head(conn, method, timeouts.head, timeouts)
}

/// Phase 1: the request head and, unless streamed, the body.
#[allow(clippy::too_many_arguments)]
fn send_request(
    conn: &mut Conn,
    endpoint: &Endpoint,
    method: &str,
    target: &str,
    headers: &[(&'static str, String)],
    body: &Body<'_>,
    upgrade: bool,
    timeouts: &Timeouts,
) -> Result<(), DockerError> {
    let user_agent = format!("oz-agent-worker/{}", crate::VERSION);
    let mut all: Vec<(&str, &str)> = vec![("User-Agent", &user_agent)];
    if upgrade {
        all.push(("Connection", "Upgrade"));
        all.push(("Upgrade", "tcp"));
    } else {
        all.push(("Connection", "close"));
    }
    let framing = match body {
        Body::Empty => RequestBody::None,
        Body::Json(bytes) => {
            all.push(("Content-Type", "application/json"));
            RequestBody::Length(bytes.len() as u64)
        }
        Body::Stream(_, content_type) => {
            all.push(("Content-Type", content_type));
            RequestBody::Chunked
        }
    };
    all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
    let mut out = Vec::with_capacity(512);
    codec::write_request_head(
        &mut out,
        method,
        target,
        &endpoint.host_header(),
        &all,
        framing,
    )
    .map_err(|e| conn.protocol(e))?;
    if let Body::Json(bytes) = body {
        out.extend_from_slice(bytes);
    }
    let deadline = Instant::now() + timeouts.send;
    conn.write_all(&out, Phase::SendRequest, deadline, timeouts.send)
}

/// Phase 2 (streamed bodies only): chunks from `source`, each write bounded by `stall`.
fn send_body(conn: &mut Conn, source: &mut dyn Read, stall: Duration) -> Result<(), DockerError> {
    let mut data = vec![0u8; SEND_CHUNK];
    let mut framed = Vec::with_capacity(SEND_CHUNK + 16);
    loop {
        let n = match source.read(&mut data) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DockerError::BodySource {
                    request: conn.request.clone(),
                    source: e,
                });
            }
        };
        framed.clear();
        if n == 0 {
            framed.extend_from_slice(codec::LAST_CHUNK);
        } else {
            codec::write_chunk(&mut framed, &data[..n]);
        }
        conn.write_all(&framed, Phase::SendBody, Instant::now() + stall, stall)?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Phase 3: the response head (informational heads skipped), within `limit`.
fn receive_head(
    mut conn: Conn,
    method: &str,
    limit: Duration,
    timeouts: Timeouts,
) -> Result<Response, DockerError> {
    let deadline = Instant::now() + limit;
    loop {
        match codec::parse_response_head(conn.pending(), codec::MAX_HEAD) {
            Err(e) => return Err(conn.protocol(e)),
            Ok(Some((used, head))) => {
                conn.pos += used;
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                let framing =
                    codec::response_framing(method, &head).map_err(|e| conn.protocol(e))?;
                return Ok(Response {
                    head,
                    body: BodyReader {
                        decoder: BodyDecoder::new(framing),
                        conn,
                        idle: timeouts.body_idle,
                    },
                });
            }
            Ok(None) => {
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| conn.timeout(Phase::ReceiveHead, limit))?;
                let n = conn
                    .fill(Phase::ReceiveHead, Some(left))
                    .map_err(|e| match e {
                        DockerError::Timeout { .. } => conn.timeout(Phase::ReceiveHead, limit),
                        e => e,
                    })?;
                if n == 0 {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the response head",
                    );
                    return Err(conn.io_error(Phase::ReceiveHead, e, None));
                }
            }
        }
    }
}

/// A response whose head has arrived; the body is read on demand.
pub(crate) struct Response {
    pub head: ResponseHead,
    pub body: BodyReader,
}

/// Largest JSON document we accept from the daemon (container inspect is a few KiB).
const JSON_LIMIT: usize = 16 * 1024 * 1024;
/// Largest error body we read for its message.
const ERROR_LIMIT: usize = 64 * 1024;

impl Response {
    pub(crate) fn status(&self) -> u16 {
        self.head.status
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.head.status)
    }

    pub(crate) fn request(&self) -> &str {
        &self.body.conn.request
    }

    /// The whole body, at most `limit` bytes.
    pub(crate) fn bytes(mut self, limit: usize) -> Result<Vec<u8>, DockerError> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = self.body.read_body(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(DockerError::TooLarge {
                    request: self.body.conn.request.clone(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// The body parsed as JSON.
    pub(crate) fn json<T: DeserializeOwned>(self) -> Result<T, DockerError> {
        let request = self.body.conn.request.clone();
        let bytes = self.bytes(JSON_LIMIT)?;
        serde_json::from_slice(&bytes).map_err(|e| DockerError::Json {
            request,
            message: e.to_string(),
        })
    }

    /// Turns a non-2xx answer into [`DockerError::Status`] with Docker's message.
    pub(crate) fn into_error(self) -> DockerError {
        let status = self.head.status;
        let request = self.body.conn.request.clone();
        let reason = self.head.reason.clone();
        let message = match self.bytes(ERROR_LIMIT) {
            Ok(body) => error_message(&body).unwrap_or(reason),
            Err(e) => format!("{reason} (body unreadable: {e})"),
        };
        DockerError::Status {
            request,
            status,
            message,
        }
    }
}

/// Docker's `{"message": "..."}`, else the body text (trimmed, shortened).
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return Some(parsed.message);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    Some(short.replace(['\r', '\n'], " "))
}

/// A response body, de-chunked.
pub(crate) struct BodyReader {
    conn: Conn,
    decoder: BodyDecoder,
    idle: Option<Duration>,
}

impl BodyReader {
    /// Reads decoded body bytes; `Ok(0)` at the end of the body.
    pub(crate) fn read_body(&mut self, out: &mut [u8]) -> Result<usize, DockerError> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let (used, made) = self
                .decoder
                .decode(self.conn.pending(), out)
                .map_err(|e| self.conn.protocol(e))?;
            self.conn.pos += used;
            if made > 0 {
                return Ok(made);
            }
            if self.decoder.is_done() {
                return Ok(0);
            }
            if self.conn.fill(Phase::ReceiveBody, self.idle)? == 0 {
                self.decoder.at_eof().map_err(|e| self.conn.protocol(e))?;
                return Ok(0);
            }
        }
    }

    /// `METHOD /path` of the request, for messages.
    pub(crate) fn request(&self) -> &str {
        &self.conn.request
    }

    pub(crate) fn into_conn(self) -> Conn {
        self.conn
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_body(buf).map_err(io::Error::other)
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
