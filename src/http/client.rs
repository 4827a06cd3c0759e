//! The request/response driver: one request per connection, one function per phase (connect,
//! send request, send body, receive head, receive body), each with its deadline, and an optional
//! [`Abort`] that ends any phase from another thread.
//!
//! Connections are not reused: unix sockets are cheap, remote calls are rare (a Docker call per
//! task step, a Kubernetes call per poll, an OTLP push a minute), and a fresh connection per
//! request keeps the driver free of pool state and of "is this idle connection still alive".

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::abort::{Abort, Registration};
use super::codec::{self, BodyDecoder, RequestBody, ResponseHead};
use super::error::{HttpError, Phase};
pub use super::jsonlines::BodySource;
use super::jsonlines::JsonLines;
use super::transport::{self, Endpoint, Stream};

/// Per-phase time limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connect: resolution, proxy tunnel and TLS handshake included.
    pub connect: Duration,
    /// Sending the head and a small body; for a streamed body, the longest stall of one write.
    pub send: Duration,
    /// From the end of the request until the response head is complete.
    pub head: Duration,
    /// The longest stall between two reads of the body; `None` waits for as long as the server
    /// takes (container wait, log follow, a watch), bounded only by an [`Abort`].
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
pub enum Body<'a> {
    Empty,
    /// Sent with `Content-Length`.
    Bytes {
        content_type: &'static str,
        data: Vec<u8>,
    },
    /// Sent chunked, 64 KiB at a time, never buffered whole.
    Stream(&'a mut dyn Read, &'static str),
}

impl Body<'_> {
    /// A JSON body (`application/json`).
    pub fn json(data: Vec<u8>) -> Body<'static> {
        Body::Bytes {
            content_type: "application/json",
            data,
        }
    }
}

/// One request.
pub struct Request<'a> {
    pub method: &'static str,
    /// Origin-form path and query.
    pub target: String,
    /// Extra headers (e.g. `Authorization`, `Impersonate-User`). Values only ever go to the
    /// socket: no error or log line shows them.
    pub headers: Vec<(String, String)>,
    pub body: Body<'a>,
    pub timeouts: Timeouts,
    /// `Connection: Upgrade` + `Upgrade: <protocol>` (Docker's attach uses `tcp`).
    pub upgrade: Option<&'static str>,
}

impl<'a> Request<'a> {
    /// A bodiless request with default timeouts.
    pub fn new(method: &'static str, target: impl Into<String>) -> Request<'a> {
        Request {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Body::Empty,
            timeouts: Timeouts::default(),
            upgrade: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request<'a> {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: Body<'a>) -> Request<'a> {
        self.body = body;
        self
    }

    pub fn timeouts(mut self, timeouts: Timeouts) -> Request<'a> {
        self.timeouts = timeouts;
        self
    }

    /// `GET /api/v1/pods`: the method and path without the query, for messages.
    pub fn describe(method: &str, target: &str) -> String {
        let path = target.split('?').next().unwrap_or(target);
        format!("{method} {path}")
    }
}

const READ_CHUNK: usize = 16 * 1024;
const SEND_CHUNK: usize = 64 * 1024;
/// After a failed body upload, how long we wait for the server's explanation.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// An open connection with its read buffer.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    endpoint: String,
    request: String,
    abort: Option<Abort>,
    registration: Option<Registration>,
}

impl Conn {
    fn timeout(&self, phase: Phase, after: Duration) -> HttpError {
        HttpError::Timeout {
            phase,
            endpoint: self.endpoint.clone(),
            request: self.request.clone(),
            after,
        }
    }

    /// Maps an I/O failure, preferring "aborted" when an abort caused it.
    fn io_error(&self, phase: Phase, e: io::Error, limit: Option<Duration>) -> HttpError {
        if self.aborted() {
            return HttpError::Aborted {
                request: self.request.clone(),
            };
        }
        match (e.kind(), limit) {
            (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some(after)) => {
                self.timeout(phase, after)
            }
            _ => HttpError::Io {
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

    fn protocol(&self, source: codec::CodecError) -> HttpError {
        HttpError::Protocol {
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
    ) -> Result<(), HttpError> {
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
    fn fill(&mut self, phase: Phase, read_timeout: Option<Duration>) -> Result<usize, HttpError> {
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
                        return Err(HttpError::Aborted {
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

    /// The raw stream, the bytes already read past the response head, and the abort
    /// registration (keep it alive while using the stream): for protocol switches (`101`).
    pub fn into_parts(self) -> (Stream, Vec<u8>, Option<Registration>) {
        let leftover = self.buf[self.pos..].to_vec();
        (self.stream, leftover, self.registration)
    }
}

/// Sends `request` to `endpoint` and returns once the response head has arrived, whatever its
/// status. With `abort`, the connect is cancelled and the socket shut down when it fires.
pub fn send(
    endpoint: &Endpoint,
    abort: Option<&Abort>,
    request: Request<'_>,
) -> Result<Response, HttpError> {
    let describe = Request::describe(request.method, &request.target);
    if abort.is_some_and(Abort::is_aborted) {
        return Err(HttpError::Aborted { request: describe });
    }
    let cancelled = || abort.is_some_and(Abort::is_aborted);
    let stream = transport::connect(endpoint, request.timeouts.connect, &cancelled).map_err(
        |e| match e {
            HttpError::Aborted { .. } => HttpError::Aborted {
                request: describe.clone(),
            },
            e => e,
        },
    )?;
    let registration = match abort {
        None => None,
        Some(abort) => {
            let handle = stream.handle().map_err(|e| HttpError::Connect {
                phase: Phase::Connect,
                endpoint: endpoint.to_string(),
                source: e,
            })?;
            Some(abort.register(handle).ok_or_else(|| HttpError::Aborted {
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
        registration,
    };
    let Request {
        method,
        target,
        headers,
        mut body,
        timeouts,
        upgrade,
    } = request;
    let head = encode_parts(endpoint, method, &target, &headers, &body, upgrade)
        .map_err(|e| conn.protocol(e))?;
    let deadline = Instant::now() + timeouts.send;
    conn.write_all(&head, Phase::SendRequest, deadline, timeouts.send)?;
    if let Body::Stream(source, _) = &mut body
        && let Err(e) = send_body(&mut conn, *source, timeouts.send)
    {
        // The server may have answered early (404, 400) and closed: prefer its answer.
        if matches!(e, HttpError::Io { .. }) {
            return receive_head(conn, method, EARLY_ANSWER_WAIT, timeouts).map_err(|_| e);
        }
        return Err(e);
    }
    receive_head(conn, method, timeouts.head, timeouts)
}

/// The bytes of `request`'s head and, unless streamed, its body, as [`send`] writes them.
pub fn encode(endpoint: &Endpoint, request: &Request<'_>) -> Result<Vec<u8>, codec::CodecError> {
    encode_parts(
        endpoint,
        request.method,
        &request.target,
        &request.headers,
        &request.body,
        request.upgrade,
    )
}

/// Phase 1's bytes: the request head and, unless streamed, the body.
fn encode_parts(
    endpoint: &Endpoint,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &Body<'_>,
    upgrade: Option<&str>,
) -> Result<Vec<u8>, codec::CodecError> {
    let user_agent = endpoint.user_agent();
    let mut all: Vec<(&str, &str)> = vec![("User-Agent", &user_agent)];
    match upgrade {
        Some(protocol) => {
            all.push(("Connection", "Upgrade"));
            all.push(("Upgrade", protocol));
        }
        None => all.push(("Connection", "close")),
    }
    let framing = match body {
        Body::Empty => RequestBody::None,
        Body::Bytes { content_type, data } => {
            all.push(("Content-Type", content_type));
            RequestBody::Length(data.len() as u64)
        }
        Body::Stream(_, content_type) => {
            all.push(("Content-Type", content_type));
            RequestBody::Chunked
        }
    };
    all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut out = Vec::with_capacity(512);
    codec::write_request_head(
        &mut out,
        method,
        target,
        &endpoint.host_header(),
        &all,
        framing,
    )?;
    if let Body::Bytes { data, .. } = body {
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// Phase 2 (streamed bodies only): chunks from `source`, each write bounded by `stall`.
fn send_body(conn: &mut Conn, source: &mut dyn Read, stall: Duration) -> Result<(), HttpError> {
    let mut data = vec![0u8; SEND_CHUNK];
    let mut framed = Vec::with_capacity(SEND_CHUNK + 16);
    loop {
        let n = match source.read(&mut data) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(HttpError::BodySource {
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
) -> Result<Response, HttpError> {
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
                        HttpError::Timeout { .. } => conn.timeout(Phase::ReceiveHead, limit),
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
pub struct Response {
    pub head: ResponseHead,
    pub body: BodyReader,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.head.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// `METHOD /path` of the request, for messages.
    pub fn request(&self) -> &str {
        &self.body.conn.request
    }

    /// The whole body, at most `limit` bytes.
    pub fn bytes(mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = self.body.read_body(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(HttpError::TooLarge {
                    request: self.body.conn.request.clone(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// The body (at most `limit` bytes) parsed as JSON.
    pub fn json<T: DeserializeOwned>(self, limit: usize) -> Result<T, HttpError> {
        let request = self.body.conn.request.clone();
        let bytes = self.bytes(limit)?;
        serde_json::from_slice(&bytes).map_err(|e| HttpError::Json {
            request,
            message: e.to_string(),
        })
    }

    /// The body as a stream of JSON lines (a Docker pull, Docker events, a Kubernetes watch),
    /// each at most `line_limit` bytes.
    pub fn json_lines(self, line_limit: usize) -> JsonLines<BodyReader> {
        let request = self.body.conn.request.clone();
        JsonLines::new(self.body, request, line_limit)
    }
}

/// A response body, de-chunked.
pub struct BodyReader {
    conn: Conn,
    decoder: BodyDecoder,
    idle: Option<Duration>,
}

impl BodyReader {
    /// Reads decoded body bytes; `Ok(0)` at the end of the body.
    pub fn read_body(&mut self, out: &mut [u8]) -> Result<usize, HttpError> {
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
    pub fn request(&self) -> &str {
        &self.conn.request
    }

    /// Changes the longest stall between two reads (`None`: wait until the peer or an abort).
    pub fn set_idle(&mut self, idle: Option<Duration>) {
        self.idle = idle;
    }

    pub fn into_conn(self) -> Conn {
        self.conn
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_body(buf).map_err(io::Error::other)
    }
}

impl BodySource for BodyReader {
    fn read_body(&mut self, out: &mut [u8]) -> Result<usize, HttpError> {
        BodyReader::read_body(self, out)
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
