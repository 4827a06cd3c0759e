//! A streaming JSON-lines reader: Docker pull and import progress, Docker events, Kubernetes
//! watch streams. One line at a time, each capped, without buffering the whole body; a blocked
//! read ends when the request's [`super::Abort`] fires.

use serde::de::DeserializeOwned;

use super::error::HttpError;

const READ_CHUNK: usize = 16 * 1024;

/// Something [`JsonLines`] can pull body bytes from with the client's error type.
pub trait BodySource {
    fn read_body(&mut self, out: &mut [u8]) -> Result<usize, HttpError>;
}

/// Reads newline-separated JSON documents from a body. Blank lines are skipped; a last line
/// without a newline still counts.
pub struct JsonLines<S> {
    source: S,
    request: String,
    limit: usize,
    buf: Vec<u8>,
    /// Start of the unconsumed part of `buf`.
    start: usize,
    /// How far `buf[start..]` is known to hold no newline.
    scanned: usize,
    eof: bool,
}

impl<S: BodySource> JsonLines<S> {
    /// `request` names the request in errors; `limit` caps one line.
    pub fn new(source: S, request: String, limit: usize) -> JsonLines<S> {
        JsonLines {
            source,
            request,
            limit,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            eof: false,
        }
    }

    /// The next non-blank line (trimmed), or `None` at the end of the body.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, HttpError> {
        loop {
            let pending = &self.buf[self.start..];
            if let Some(i) = pending[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.start + self.scanned + i;
                let line_start = self.start;
                self.start = end + 1;
                self.scanned = 0;
                if self.buf[line_start..end].trim_ascii().is_empty() {
                    continue;
                }
                return Ok(Some(self.buf[line_start..end].trim_ascii()));
            }
            self.scanned = pending.len();
            if self.scanned > self.limit {
                return Err(HttpError::TooLarge {
                    request: self.request.clone(),
                    limit: self.limit,
                });
            }
            if self.eof {
                let line_start = self.start;
                self.start = self.buf.len();
                self.scanned = 0;
                let last = self.buf[line_start..].trim_ascii();
                return Ok(if last.is_empty() { None } else { Some(last) });
            }
            // Compact before reading more, so the buffer holds at most one line plus a chunk.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK, 0);
            let n = match self.source.read_body(&mut self.buf[len..]) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            };
            self.buf.truncate(len + n);
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// The next line parsed as `T`, or `None` at the end of the body.
    pub fn next_json<T: DeserializeOwned>(&mut self) -> Result<Option<T>, HttpError> {
        let request = self.request.clone();
        match self.next_line()? {
            None => Ok(None),
            Some(line) => serde_json::from_slice(line)
                .map(Some)
                .map_err(|e| HttpError::Json {
                    request,
                    message: e.to_string(),
                }),
        }
    }

    /// `METHOD /path` of the request, for messages.
    pub fn request(&self) -> &str {
        &self.request
    }

    /// The body source (e.g. to change its idle timeout).
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }
}

impl BodySource for &[u8] {
    fn read_body(&mut self, out: &mut [u8]) -> Result<usize, HttpError> {
        let n = out.len().min(self.len());
        out[..n].copy_from_slice(&self[..n]);
        *self = &self[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields its input a few bytes at a time, like a slow chunked stream.
    struct Dribble<'a>(&'a [u8], usize);

    impl BodySource for Dribble<'_> {
        fn read_body(&mut self, out: &mut [u8]) -> Result<usize, HttpError> {
            let n = out.len().min(self.0.len()).min(self.1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn lines(input: &[u8], step: usize) -> Vec<String> {
        let mut r = JsonLines::new(Dribble(input, step), "GET /w".into(), 1024);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(String::from_utf8(l.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn lines_across_any_split_blank_lines_skipped_last_line_counts() {
        let input = b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}";
        for step in 1..input.len() + 1 {
            assert_eq!(
                lines(input, step),
                vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"],
                "step {step}"
            );
        }
        assert!(lines(b"", 3).is_empty());
        assert!(lines(b"\n\n", 1).is_empty());
    }

    #[test]
    fn typed_lines_and_errors_name_the_request() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Ev {
            r#type: String,
        }
        let input: &[u8] = b"{\"type\":\"ADDED\"}\n{\"type\":\"DELETED\"}\nnot json\n";
        let mut r = JsonLines::new(input, "GET /api/v1/pods".into(), 1024);
        assert_eq!(r.next_json::<Ev>().unwrap().unwrap().r#type, "ADDED");
        assert_eq!(r.next_json::<Ev>().unwrap().unwrap().r#type, "DELETED");
        let e = r.next_json::<Ev>().unwrap_err();
        assert!(matches!(e, HttpError::Json { .. }), "{e}");
        assert!(e.to_string().contains("GET /api/v1/pods"), "{e}");
        assert!(r.next_json::<Ev>().unwrap().is_none());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let input = vec![b'x'; 5000];
        let mut r = JsonLines::new(Dribble(&input, 700), "GET /x".into(), 1000);
        let e = r.next_line().unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { limit: 1000, .. }), "{e}");
    }
}
