//! Streaming endpoints: container logs, attach (connection hijack), export, put archive.

use std::io::{self, Read, Write};

use super::client::{Client, query, segment};
use super::error::DockerError;
use super::frames::{Demuxer, StreamKind};
use crate::http::{Body, BodyReader, Registration, Stream, Timeouts};

/// What `logs` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsOptions {
    /// Keep streaming until the container stops.
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Prefix every line with an RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail: Option<u64>,
    /// The container has a TTY: the stream is raw (everything is reported as stdout).
    pub tty: bool,
}

/// A piece of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: StreamKind,
    pub data: Vec<u8>,
}

const RAW_BUFFER: usize = 16 * 1024;

/// A (possibly following) log stream, demultiplexed unless the container has a TTY.
pub struct LogStream {
    body: BodyReader,
    demuxer: Option<Demuxer>,
    raw: Vec<u8>,
    pos: usize,
    len: usize,
}

impl LogStream {
    /// The next piece of output; `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> Result<Option<LogChunk>, DockerError> {
        loop {
            if self.pos < self.len {
                let input = &self.raw[self.pos..self.len];
                let Some(demuxer) = &mut self.demuxer else {
                    let chunk = LogChunk {
                        stream: StreamKind::Stdout,
                        data: input.to_vec(),
                    };
                    self.pos = self.len;
                    return Ok(Some(chunk));
                };
                let (used, piece) = demuxer.feed(input).map_err(|e| DockerError::Framing {
                    request: self.body.request().to_string(),
                    source: e,
                })?;
                let chunk = piece.map(|(stream, data)| LogChunk {
                    stream,
                    data: data.to_vec(),
                });
                self.pos += used;
                if chunk.is_some() {
                    return Ok(chunk);
                }
                continue;
            }
            let n = self.body.read_body(&mut self.raw)?;
            self.pos = 0;
            self.len = n;
            if n == 0 {
                if self.demuxer.as_ref().is_some_and(|d| !d.at_boundary()) {
                    return Err(DockerError::Framing {
                        request: self.body.request().to_string(),
                        source: super::frames::FrameError { stream_byte: 255 },
                    });
                }
                return Ok(None);
            }
        }
    }

    /// Reads to the end, keeping at most `limit` bytes of stdout and of stderr each (the rest is
    /// read and dropped). Returns `(stdout, stderr, truncated)`.
    pub fn collect(mut self, limit: usize) -> Result<(Vec<u8>, Vec<u8>, bool), DockerError> {
        let (mut out, mut err, mut truncated) = (Vec::new(), Vec::new(), false);
        while let Some(chunk) = self.next_chunk()? {
            let target = match chunk.stream {
                StreamKind::Stderr => &mut err,
                StreamKind::Stdout => &mut out,
                _ => continue,
            };
            let room = limit.saturating_sub(target.len());
            truncated |= chunk.data.len() > room;
            target.extend_from_slice(&chunk.data[..chunk.data.len().min(room)]);
        }
        Ok((out, err, truncated))
    }
}

/// Which streams to attach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Replay the output produced so far first.
    pub logs: bool,
}

/// A hijacked attach connection: write to the container's stdin, read its (multiplexed, unless
/// TTY) output ([`super::frames::Demuxer`]). Reads block without a deadline; use an
/// [`super::Abort`] to end them. One handle does both directions: write everything, call
/// [`Attached::close_stdin`], then read; a container that writes more than the socket buffers
/// hold while you are still writing will stall both sides (use logs for large output).
pub struct Attached {
    stream: Stream,
    leftover: Vec<u8>,
    pos: usize,
    _registration: Option<Registration>,
}

impl Attached {
    /// Half-closes the connection: the container's stdin sees EOF; output keeps flowing.
    pub fn close_stdin(&mut self) -> io::Result<()> {
        self.stream.flush()?;
        self.stream.shutdown_write()
    }
}

impl Read for Attached {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.leftover.len() {
            let n = buf.len().min(self.leftover.len() - self.pos);
            buf[..n].copy_from_slice(&self.leftover[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

impl Write for Attached {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A container's filesystem as a tar stream.
pub struct ExportStream {
    body: BodyReader,
}

impl Read for ExportStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

impl Client {
    /// `GET /containers/{id}/logs`. With `follow`, the stream has no idle deadline: it ends when
    /// the container stops, or through an [`super::Abort`].
    pub fn container_logs(
        &self,
        id: &str,
        options: &LogsOptions,
    ) -> Result<LogStream, DockerError> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let tail = options
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let q = query(&[
            ("follow", flag(options.follow)),
            ("stdout", flag(options.stdout)),
            ("stderr", flag(options.stderr)),
            ("timestamps", flag(options.timestamps)),
            ("tail", &tail),
        ]);
        let target = self.path(&format!("/containers/{}/logs{q}", segment(id)));
        let mut timeouts = self.timeouts();
        if options.follow {
            timeouts.body_idle = None;
        }
        let response = self.send("GET", target, Vec::new(), Body::Empty, timeouts)?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        Ok(LogStream {
            body: response.body,
            demuxer: (!options.tty).then(Demuxer::new),
            raw: vec![0; RAW_BUFFER],
            pos: 0,
            len: 0,
        })
    }

    /// `POST /containers/{id}/attach` with `Upgrade: tcp`: the connection becomes the
    /// container's stdio. Attach before `start` to see all output.
    pub fn attach_container(
        &self,
        id: &str,
        options: AttachOptions,
    ) -> Result<Attached, DockerError> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let q = query(&[
            ("stream", "1"),
            ("stdin", flag(options.stdin)),
            ("stdout", flag(options.stdout)),
            ("stderr", flag(options.stderr)),
            ("logs", flag(options.logs)),
        ]);
        let target = self.path(&format!("/containers/{}/attach{q}", segment(id)));
        let response = self.send_upgrade(target)?;
        // 101 is the upgrade; old daemons answer 200 and hijack all the same.
        if response.status() != 101 && response.status() != 200 {
            return Err(response.into_error());
        }
        let request = response.request().to_string();
        let (stream, leftover, registration) = response.body.into_conn().into_parts();
        let stall = self.timeouts().send;
        let setup = stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_write_timeout(Some(stall)));
        setup.map_err(|e| {
            DockerError::Http(crate::http::HttpError::Io {
                phase: super::error::Phase::ReceiveBody,
                endpoint: self.endpoint().to_string(),
                request,
                source: e,
            })
        })?;
        Ok(Attached {
            stream,
            leftover,
            pos: 0,
            _registration: registration,
        })
    }

    /// `GET /containers/{id}/export`: the filesystem as a tar stream (without volumes), read
    /// as it arrives.
    pub fn export_container(&self, id: &str) -> Result<ExportStream, DockerError> {
        let target = self.path(&format!("/containers/{}/export", segment(id)));
        let response = self.call("GET", target)?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        Ok(ExportStream {
            body: response.body,
        })
    }

    /// `PUT /containers/{id}/archive?path=…`: extracts the tar read from `tar` into `path`
    /// (which must exist) of a created or running container, volumes included. The tar is
    /// streamed in chunks, never held whole in memory.
    pub fn put_archive(&self, id: &str, path: &str, tar: &mut dyn Read) -> Result<(), DockerError> {
        let target = self.path(&format!(
            "/containers/{}/archive{}",
            segment(id),
            query(&[("path", path)])
        ));
        let timeouts: Timeouts = self.timeouts();
        let response = self.send(
            "PUT",
            target,
            Vec::new(),
            Body::Stream(tar, "application/x-tar"),
            timeouts,
        )?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        response.bytes(64 * 1024).map(drop)
    }
}
