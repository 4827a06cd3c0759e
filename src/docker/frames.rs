//! Docker's multiplexed stream format (logs and attach of a container without a TTY): frames of
//! an 8-byte header `[stream, 0, 0, 0, len_be32]` followed by `len` payload bytes.
//!
//! The demuxer is pure: feed it any split of the input and it hands back payload slices tagged
//! with their stream. Payloads are passed through in pieces, so a huge frame needs no buffer.

use std::fmt;

/// Which stream a payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
    /// Daemon-side error text (stream 3, newer engines).
    System,
}

impl StreamKind {
    fn from_byte(b: u8) -> Option<StreamKind> {
        match b {
            0 => Some(StreamKind::Stdin),
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => Some(StreamKind::System),
            _ => None,
        }
    }
}

/// The input is not a multiplexed stream (often: the container has a TTY, so it is raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    pub stream_byte: u8,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid multiplexed stream header (stream byte {}): is the container's TTY enabled?",
            self.stream_byte
        )
    }
}

impl std::error::Error for FrameError {}

/// A payload piece and the stream it belongs to.
pub type Piece<'a> = (StreamKind, &'a [u8]);

/// Splits a multiplexed stream into payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demuxer {
    header: [u8; 8],
    have: usize,
    /// The current frame's stream and payload bytes still to come.
    frame: Option<(StreamKind, u32)>,
}

impl Demuxer {
    pub fn new() -> Demuxer {
        Demuxer::default()
    }

    /// Consumes from `input`; returns how much was consumed and, if any, a payload piece (a
    /// sub-slice of `input`). Call again with the rest until it consumes nothing.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Piece<'a>>), FrameError> {
        let mut used = 0;
        loop {
            match self.frame {
                Some((kind, remaining)) => {
                    let rest = &input[used..];
                    // `n` is at most `remaining`, a u32, so it converts back losslessly.
                    let take = u32::try_from(rest.len()).unwrap_or(u32::MAX).min(remaining);
                    if take == 0 {
                        return Ok((used, None));
                    }
                    let n = take as usize;
                    let left = remaining - take;
                    self.frame = (left > 0).then_some((kind, left));
                    return Ok((used + n, Some((kind, &rest[..n]))));
                }
                None => {
                    let Some(&b) = input.get(used) else {
                        return Ok((used, None));
                    };
                    self.header[self.have] = b;
                    self.have += 1;
                    used += 1;
                    if self.have == 8 {
                        self.have = 0;
                        let kind = StreamKind::from_byte(self.header[0]).ok_or(FrameError {
                            stream_byte: self.header[0],
                        })?;
                        let [_, _, _, _, a, b, c, d] = self.header;
                        let len = u32::from_be_bytes([a, b, c, d]);
                        self.frame = (len > 0).then_some((kind, len));
                    }
                }
            }
        }
    }

    /// Whether the stream may end here (not inside a header or payload).
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.frame.is_none()
    }
}

/// Demultiplexes a whole buffer into `(stream, payload)` pairs, merging consecutive pieces of one
/// stream. A trailing partial frame is an error.
pub fn demux_all(input: &[u8]) -> Result<Vec<(StreamKind, Vec<u8>)>, FrameError> {
    let mut demuxer = Demuxer::new();
    let mut out: Vec<(StreamKind, Vec<u8>)> = Vec::new();
    let mut rest = input;
    loop {
        let (used, piece) = demuxer.feed(rest)?;
        rest = &rest[used..];
        match piece {
            Some((kind, data)) => match out.last_mut() {
                Some((last, buf)) if *last == kind => buf.extend_from_slice(data),
                _ => out.push((kind, data.to_vec())),
            },
            None if used == 0 => break,
            None => {}
        }
    }
    if !demuxer.at_boundary() {
        return Err(FrameError { stream_byte: 255 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Feeds `input` in pieces cut at `cuts` and collects per-stream output.
    fn run(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Vec<u8>), FrameError> {
        let mut d = Demuxer::new();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut start = 0;
        for end in cuts.iter().copied().chain([input.len()]) {
            let mut piece = &input[start..end.max(start)];
            start = end.max(start);
            loop {
                let (used, data) = d.feed(piece)?;
                piece = &piece[used..];
                match data {
                    Some((StreamKind::Stdout, p)) => out.extend_from_slice(p),
                    Some((StreamKind::Stderr, p)) => err.extend_from_slice(p),
                    Some(_) => {}
                    None => break,
                }
            }
            assert!(piece.is_empty());
        }
        Ok((out, err))
    }

    #[test]
    fn recorded_docker_logs_demux() {
        let body = b"\x01\0\0\0\0\0\0\x09out-line\n\x02\0\0\0\0\0\0\x09err-line\n";
        assert_eq!(
            demux_all(body).unwrap(),
            vec![
                (StreamKind::Stdout, b"out-line\n".to_vec()),
                (StreamKind::Stderr, b"err-line\n".to_vec())
            ]
        );
    }

    #[test]
    fn every_split_gives_the_same_streams() {
        let mut input = frame(1, b"hello ");
        input.extend(frame(2, b"oops"));
        input.extend(frame(1, b""));
        input.extend(frame(1, b"world"));
        input.extend(frame(0, b"in"));
        input.extend(frame(3, b"sys"));
        let expected = (b"hello world".to_vec(), b"oops".to_vec());
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(run(&input, &[a, b]).unwrap(), expected, "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn large_frames_pass_through_in_pieces() {
        let payload = vec![7u8; 100_000];
        let input = frame(1, &payload);
        let cuts: Vec<usize> = (1..input.len()).step_by(4093).collect();
        assert_eq!(run(&input, &cuts).unwrap().0, payload);
    }

    #[test]
    fn raw_tty_output_is_rejected() {
        let err = run(b"plain text from a tty\n", &[]).unwrap_err();
        assert_eq!(err.stream_byte, b'p');
        assert!(err.to_string().contains("TTY"));
    }

    #[test]
    fn truncated_stream_is_detected() {
        let mut input = frame(1, b"abc");
        input.truncate(5);
        assert!(demux_all(&input).is_err());
        let mut input = frame(1, b"abc");
        input.pop();
        assert!(demux_all(&input).is_err());
        assert_eq!(demux_all(b"").unwrap(), vec![]);
    }
}
