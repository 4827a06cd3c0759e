//! Sans-IO HTTP/1.1 client codec: bytes in, bytes out, no sockets.
//!
//! In scope: request heads, chunked request bodies, response heads (with a size cap), body framing
//! (`Content-Length`, chunked, close-delimited, none) and the `101` protocol switch that Docker's
//! attach endpoint uses to hijack the connection. Out of scope: sockets, TLS, deadlines (see
//! `docker/http.rs`, the Docker client's driver), keep-alive (one request per connection).
//!
//! Every function takes `&[u8]` and reports how much it consumed, so callers can feed any split of
//! the input; malformed input is an error, never a panic.

use std::fmt;

/// Largest response head we accept (status line plus headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// More headers than this is hostile: Docker sends about ten.
const MAX_HEADERS: usize = 128;
/// A chunk-size line (size plus extensions) or trailer line longer than this is hostile.
const MAX_LINE: usize = 4096;

/// A malformed request we refused to write, or a malformed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The response head did not end within `max` bytes.
    HeadTooLarge {
        max: usize,
    },
    BadStatusLine,
    BadHeader,
    TooManyHeaders,
    BadContentLength,
    BadChunkSize,
    LineTooLong,
    BadChunkEnd,
    /// The connection ended before the body did.
    Truncated,
    /// A CR, LF or NUL in a request target or header value (header injection).
    UnsafeRequest(&'static str),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::HeadTooLarge { max } => {
                write!(f, "response head is larger than {max} bytes")
            }
            CodecError::BadStatusLine => f.write_str("malformed HTTP status line"),
            CodecError::BadHeader => f.write_str("malformed HTTP header line"),
            CodecError::TooManyHeaders => {
                write!(f, "more than {MAX_HEADERS} response headers")
            }
            CodecError::BadContentLength => f.write_str("invalid Content-Length"),
            CodecError::BadChunkSize => f.write_str("invalid chunk size line"),
            CodecError::LineTooLong => {
                write!(f, "chunk or trailer line longer than {MAX_LINE} bytes")
            }
            CodecError::BadChunkEnd => f.write_str("chunk data not followed by CRLF"),
            CodecError::Truncated => f.write_str("connection closed before the body ended"),
            CodecError::UnsafeRequest(what) => {
                write!(f, "refusing to send a {what} containing CR, LF or NUL")
            }
        }
    }
}

impl std::error::Error for CodecError {}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

fn check_safe(value: &str, what: &'static str) -> Result<(), CodecError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(CodecError::UnsafeRequest(what));
    }
    Ok(())
}

/// Appends a request head to `out`. `target` is the origin-form path and query.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: RequestBody,
) -> Result<(), CodecError> {
    if !target.starts_with('/') || target.contains(' ') {
        return Err(CodecError::UnsafeRequest("request target"));
    }
    check_safe(target, "request target")?;
    check_safe(host, "Host header")?;
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(CodecError::UnsafeRequest("header name"));
        }
        check_safe(value, "header value")?;
    }
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    match body {
        RequestBody::None => {}
        RequestBody::Length(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        RequestBody::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    Ok(())
}

/// Appends one chunk of a chunked request body. An empty `data` writes nothing (the zero-length
/// chunk ends the body: use [`LAST_CHUNK`]).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The zero-length chunk that ends a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A parsed response status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// In arrival order; names as sent.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Finds the end of the head: the index just past the empty line. Accepts bare LF line ends.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                // The status line itself is never empty; an empty first line is caught later.
                if line_start > 0 {
                    return Some(i + 1);
                }
            }
            line_start = i + 1;
        }
    }
    None
}

/// Tries to parse a response head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, and `Ok(Some((consumed, head)))` once it is;
/// the body starts at `buf[consumed..]`. Informational heads (`1xx` other than `101`) are returned
/// like any other: the caller skips them and parses again.
pub fn parse_response_head(
    buf: &[u8],
    max: usize,
) -> Result<Option<(usize, ResponseHead)>, CodecError> {
    let window = &buf[..buf.len().min(max)];
    let Some(end) = head_end(window) else {
        if buf.len() >= max {
            return Err(CodecError::HeadTooLarge { max });
        }
        // Reject garbage early instead of waiting for 64 KiB of it.
        let probe = &buf[..buf.len().min(7)];
        if !b"HTTP/1."[..probe.len()].eq(probe) {
            return Err(CodecError::BadStatusLine);
        }
        return Ok(None);
    };
    let mut lines = window[..end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or(CodecError::BadStatusLine)?;
    let (status, reason) = parse_status_line(status_line)?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(CodecError::TooManyHeaders);
        }
        headers.push(parse_header(line)?);
    }
    Ok(Some((
        end,
        ResponseHead {
            status,
            reason,
            headers,
        },
    )))
}

fn parse_status_line(line: &[u8]) -> Result<(u16, String), CodecError> {
    // "HTTP/1.1 200 OK": version, SP, three digits, then optional SP and reason.
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .ok_or(CodecError::BadStatusLine)?;
    let (minor, rest) = rest.split_first().ok_or(CodecError::BadStatusLine)?;
    if !minor.is_ascii_digit() || rest.first() != Some(&b' ') || rest.len() < 4 {
        return Err(CodecError::BadStatusLine);
    }
    let code = &rest[1..4];
    // RFC 9110 §15: status codes run from 100 to 599.
    if !code.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&code[0]) {
        return Err(CodecError::BadStatusLine);
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let reason = match &rest[4..] {
        [] => String::new(),
        [b' ', reason @ ..] => String::from_utf8_lossy(reason).into_owned(),
        _ => return Err(CodecError::BadStatusLine),
    };
    Ok((status, reason))
}

fn parse_header(line: &[u8]) -> Result<(String, String), CodecError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(CodecError::BadHeader)?;
    let name = &line[..colon];
    // An empty name or one with spaces (including obsolete line folding) is rejected.
    if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
        return Err(CodecError::BadHeader);
    }
    let value = line[colon + 1..].trim_ascii();
    if value.contains(&0) {
        return Err(CodecError::BadHeader);
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD request, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
    /// `101 Switching Protocols`: the connection is now a raw byte stream.
    Upgraded,
}

/// The body framing of a response to a request with `method` (RFC 9112 §6.3).
pub fn response_framing(method: &str, head: &ResponseHead) -> Result<Framing, CodecError> {
    if head.status == 101 {
        return Ok(Framing::Upgraded);
    }
    if method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    let mut codings = head
        .all("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .peekable();
    if codings.peek().is_some() {
        // Chunked must be the final coding; anything else runs until close.
        return Ok(match codings.last() {
            Some(c) if c.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            _ => Framing::UntilClose,
        });
    }
    let mut length = None;
    for value in head.all("content-length").flat_map(|v| v.split(',')) {
        let value = value.trim();
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodecError::BadContentLength);
        }
        let n: u64 = value.parse().map_err(|_| CodecError::BadContentLength)?;
        match length {
            Some(prev) if prev != n => return Err(CodecError::BadContentLength),
            _ => length = Some(n),
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Decodes a response body of a known [`Framing`] into plain bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Length(u64),
    UntilClose,
    /// Reading a chunk-size line.
    Size(SizeLine),
    Data(u64),
    /// Expecting the CRLF after chunk data; `cr` when the CR was seen.
    DataEnd {
        cr: bool,
    },
    /// Reading trailer lines; `len` is the current line's length so far.
    Trailer {
        len: usize,
    },
    Done,
}

impl BodyDecoder {
    /// A decoder for `framing`. `Upgraded` bodies are not decoded: the caller takes the stream.
    pub fn new(framing: Framing) -> BodyDecoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size(SizeLine::default()),
            Framing::UntilClose | Framing::Upgraded => State::UntilClose,
        };
        BodyDecoder { state }
    }

    /// The body has ended; further input belongs to nobody.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Call when the connection reached EOF: fine only if the body was complete or close-delimited.
    pub fn at_eof(&mut self) -> Result<(), CodecError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(CodecError::Truncated),
        }
    }

    /// Decodes from `input` into `out`; returns `(consumed, produced)`. Stops when `out` is full,
    /// `input` is exhausted, or the body is done.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), CodecError> {
        let (mut used, mut made) = (0, 0);
        loop {
            let rest = &input[used..];
            match &mut self.state {
                State::Done => break,
                State::Length(remaining) | State::Data(remaining) => {
                    let n = copy_len(*remaining, rest.len(), out.len() - made);
                    if n == 0 {
                        break;
                    }
                    out[made..made + n].copy_from_slice(&rest[..n]);
                    used += n;
                    made += n;
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = match self.state {
                            State::Length(_) => State::Done,
                            _ => State::DataEnd { cr: false },
                        };
                    }
                }
                State::UntilClose => {
                    let n = rest.len().min(out.len() - made);
                    if n == 0 {
                        break;
                    }
                    out[made..made + n].copy_from_slice(&rest[..n]);
                    used += n;
                    made += n;
                }
                state => {
                    let Some(&b) = rest.first() else { break };
                    used += 1;
                    *state = step_framing_byte(state, b)?;
                }
            }
        }
        Ok((used, made))
    }
}

fn copy_len(remaining: u64, available: usize, room: usize) -> usize {
    let cap = available.min(room);
    usize::try_from(remaining).map_or(cap, |r| r.min(cap))
}

/// One byte of chunk framing (size line, data CRLF, trailers).
fn step_framing_byte(state: &State, b: u8) -> Result<State, CodecError> {
    Ok(match *state {
        State::Size(line) => step_size_line(line, b)?,
        State::DataEnd { cr } => match b {
            b'\r' if !cr => State::DataEnd { cr: true },
            b'\n' => State::Size(SizeLine::default()),
            _ => return Err(CodecError::BadChunkEnd),
        },
        State::Trailer { len } => match b {
            b'\n' if len == 0 => State::Done,
            b'\n' => State::Trailer { len: 0 },
            // A CR alone does not count towards the line: "\r\n" is an empty line.
            b'\r' if len == 0 => State::Trailer { len: 0 },
            _ if len >= MAX_LINE => return Err(CodecError::LineTooLong),
            _ => State::Trailer { len: len + 1 },
        },
        // Not framing states; `decode` never passes them here.
        State::Length(_) | State::Data(_) | State::UntilClose | State::Done => state.clone(),
    })
}

/// Progress through a chunk-size line: `1a;name=value\r\n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SizeLine {
    size: u64,
    digits: usize,
    /// Past the digits: only whitespace and extensions until the line ends.
    after: bool,
    /// A CR was seen: only LF may follow.
    cr: bool,
    len: usize,
}

fn step_size_line(mut line: SizeLine, b: u8) -> Result<State, CodecError> {
    if line.len >= MAX_LINE {
        return Err(CodecError::LineTooLong);
    }
    line.len += 1;
    if line.cr && b != b'\n' {
        return Err(CodecError::BadChunkSize);
    }
    match b {
        b'\n' if line.digits == 0 => return Err(CodecError::BadChunkSize),
        b'\n' if line.size == 0 => return Ok(State::Trailer { len: 0 }),
        b'\n' => return Ok(State::Data(line.size)),
        b'\r' => line.cr = true,
        _ if !line.after && b.is_ascii_hexdigit() => {
            // 15 hex digits keep us far from u64 overflow; nobody sends a 1 EiB chunk.
            if line.digits == 15 {
                return Err(CodecError::BadChunkSize);
            }
            line.size = line.size * 16 + u64::from(hex_value(b));
            line.digits += 1;
        }
        b';' | b' ' | b'\t' if line.digits > 0 => line.after = true,
        // Extension text after the digits is skipped; anything else before it is garbage.
        _ if line.after && b != 0 => {}
        _ => return Err(CodecError::BadChunkSize),
    }
    Ok(State::Size(line))
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
