//! Turning a child's output bytes into log lines: split at `\n`, drop a trailing `\r`, decode
//! lossily, scrub known secrets; [`Line::records`] caps what one local log record carries.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Longest piece of a line put in one log record; longer lines become several records.
pub const MAX_RECORD: usize = 16 * 1024;
/// Longest unfinished line held while waiting for its end. A line that grows past this is
/// flushed in pieces, or withheld when secrets are being scrubbed (see [`LineBuffer`]).
pub const MAX_PENDING: usize = 64 * 1024;
/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = crate::redact::REDACTED;
/// Logged instead of an overlong line that could not be scrubbed as a whole.
pub const WITHHELD: &str =
    "[output line longer than 64 KiB withheld: it could not be checked for secrets]";

/// One line of output as [`LineBuffer`] emits it: scrubbed text, and whether it is a whole
/// line. Reads as its text.
#[derive(Debug)]
pub struct Line<'a> {
    text: &'a str,
    whole: bool,
}

impl<'a> Line<'a> {
    pub fn new(text: &'a str, whole: bool) -> Line<'a> {
        Line { text, whole }
    }

    /// The complete line, or `None` for a piece of a line longer than [`MAX_PENDING`] (or the
    /// [`WITHHELD`] notice standing for it). Task-log export takes only whole lines: an
    /// overlong line is dropped whole, so a credential cut in two cannot leave the machine.
    pub fn whole(&self) -> Option<&'a str> {
        self.whole.then_some(self.text)
    }

    /// The text in local log records of at most [`MAX_RECORD`] bytes, cut on character
    /// boundaries.
    pub fn records(&self, emit: &mut dyn FnMut(&str)) {
        emit_text(self.text, emit);
    }
}

impl std::ops::Deref for Line<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.text
    }
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The task's secret values, scrubbed from its output lines.
///
/// This is the task's own scrubber, applied where its output enters the worker and decides
/// which over-long lines to withhold. It works whatever logger is installed (tests,
/// embedders) and needs no global registration. Matching is done by the merging matcher of
/// [`crate::redact`]: every shape of a value (verbatim, each line of a multi-line value, URL-
/// and JSON-escaped), longest first, and overlapping or adjacent matches collapse into one
/// [`REDACTED`], so two overlapping secrets (`abcdef`, `defghi`) leave no fragment of either.
///
/// Values shorter than [`crate::redact::MIN_SECRET_LEN`] (4) bytes are not treated as secret patterns: an
/// `env_vars` value such as `1`, `on` or `yes` is configuration, and replacing every `1` of
/// the output would make it unreadable while hiding nothing.
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Option<Arc<crate::redact::Redactor>>,
}

impl Redactor {
    pub fn new<I, S>(values: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut inner = crate::redact::Redactor::new();
        let _ = inner.add(values);
        if inner.pattern_count() == 0 && !inner.is_fail_closed() {
            return Redactor::default();
        }
        Redactor {
            inner: Some(Arc::new(inner)),
        }
    }

    /// True when there is no secret to scrub.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.inner {
            Some(inner) => inner.redact(text),
            None => Cow::Borrowed(text),
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.inner.as_ref().map_or(0, |r| r.pattern_count());
        write!(f, "Redactor({n} patterns)")
    }
}

/// Collects one stream's bytes and emits finished lines.
///
/// A line is scrubbed as a whole, so a secret is never split across two records. A line longer
/// than [`MAX_PENDING`] cannot be held whole: without secrets it is flushed in pieces; with
/// secrets the rest of it is withheld (one [`WITHHELD`] notice) rather than risk emitting a
/// secret cut in two. Either way its pieces are not [`Line::whole`].
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    withholding: bool,
    /// The current line already overflowed: what follows of it is a piece too.
    overlong: bool,
}

impl LineBuffer {
    pub fn push(&mut self, data: &[u8], redactor: &Redactor, emit: &mut dyn FnMut(Line<'_>)) {
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.withholding {
                self.withholding = false;
            } else {
                self.pending.extend_from_slice(&rest[..pos]);
                // A line can cross the limit in the very read that ends it: it is scrubbed as a
                // whole (it is all here) but is no more `whole` than any other overlong line.
                let whole = !self.overlong && self.pending.len() <= MAX_PENDING;
                emit_line(&self.pending, whole, redactor, emit);
            }
            self.overlong = false;
            self.pending.clear();
            rest = &rest[pos + 1..];
        }
        if self.withholding {
            return;
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_PENDING {
            if redactor.is_empty() {
                emit(Line::new(&String::from_utf8_lossy(&self.pending), false));
            } else {
                emit(Line::new(WITHHELD, false));
                self.withholding = true;
            }
            self.overlong = true;
            self.pending.clear();
        }
    }

    /// Emits the unfinished last line, if any.
    pub fn finish(&mut self, redactor: &Redactor, emit: &mut dyn FnMut(Line<'_>)) {
        self.end(true, redactor, emit);
    }

    /// Emits the unfinished line of a stream cut before its end (its writer may still have been
    /// writing it): scrubbed, but not [`Line::whole`], so a secret cut in two never leaves the
    /// machine in a task-log record.
    pub fn cut(&mut self, redactor: &Redactor, emit: &mut dyn FnMut(Line<'_>)) {
        self.end(false, redactor, emit);
    }

    fn end(&mut self, ended: bool, redactor: &Redactor, emit: &mut dyn FnMut(Line<'_>)) {
        if !self.withholding && !self.pending.is_empty() {
            emit_line(&self.pending, ended && !self.overlong, redactor, emit);
        }
        self.pending.clear();
        self.withholding = false;
        self.overlong = false;
    }
}

fn emit_line(line: &[u8], whole: bool, redactor: &Redactor, emit: &mut dyn FnMut(Line<'_>)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    emit(Line::new(&redactor.redact(&text), whole));
}

/// Emits `text` in records of at most [`MAX_RECORD`] bytes, cut on character boundaries.
fn emit_text(text: &str, emit: &mut dyn FnMut(&str)) {
    let mut rest = text;
    loop {
        if rest.len() <= MAX_RECORD {
            emit(rest);
            return;
        }
        let mut cut = MAX_RECORD;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        emit(&rest[..cut]);
        rest = &rest[cut..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local log records of the output.
    fn lines(chunks: &[&[u8]], redactor: &Redactor) -> Vec<String> {
        tagged(chunks, redactor)
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    }

    /// Local log records, each with whether its line was whole.
    fn tagged(chunks: &[&[u8]], redactor: &Redactor) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut emit = |l: Line<'_>| {
            let whole = l.whole().is_some();
            l.records(&mut |r| out.push((r.to_owned(), whole)));
        };
        let mut buf = LineBuffer::default();
        for c in chunks {
            buf.push(c, redactor, &mut emit);
        }
        buf.finish(redactor, &mut emit);
        out
    }

    #[test]
    fn overlong_lines_are_never_whole_up_to_their_end() {
        let big = vec![b'x'; MAX_PENDING + 10];
        let out = tagged(&[&big, b"tail\nnext\nlast"], &Redactor::default());
        let (pieces, rest) = out.split_at(out.len() - 2);
        assert!(pieces.iter().all(|(_, whole)| !whole), "{}", pieces.len());
        assert_eq!(rest, [("next".to_owned(), true), ("last".to_owned(), true)]);
        let with = tagged(&[&big, b"tail\nnext\n"], &Redactor::new(["s3cr3t"]));
        assert_eq!(
            with,
            [(WITHHELD.to_owned(), false), ("next".to_owned(), true)]
        );
    }

    #[test]
    fn a_line_crossing_the_limit_in_the_read_that_ends_it_is_not_whole() {
        // Under the limit after the first read, over it once the second ends the line.
        let first = vec![b'x'; MAX_PENDING - 100];
        let mut second = vec![b'y'; 200];
        second.extend_from_slice(b"\nnext\n");
        let out = tagged(&[&first, &second], &Redactor::default());
        let (last, pieces) = out.split_last().expect("records");
        assert_eq!(last, &("next".to_owned(), true));
        assert!(pieces.iter().all(|(_, whole)| !whole));
        let len: usize = pieces.iter().map(|(t, _)| t.len()).sum();
        assert_eq!(len, MAX_PENDING + 100);
        // With secrets it is scrubbed whole (here: over the redactor's limit, replaced).
        let mut with_secret = vec![b'x'; MAX_PENDING - 3];
        with_secret.extend_from_slice(b"s3c");
        let out = tagged(&[&with_secret, b"r3t tail\n"], &Redactor::new(["s3cr3t"]));
        assert!(out.iter().all(|(_, whole)| !whole));
        let text: String = out.iter().map(|(t, _)| t.as_str()).collect();
        assert!(
            !text.contains("s3cr3t") && !text.contains("r3t tail"),
            "{}",
            text.len()
        );
    }

    #[test]
    fn a_cut_stream_s_unfinished_line_is_not_whole() {
        let mut out = Vec::new();
        let mut buf = LineBuffer::default();
        let none = Redactor::default();
        let mut emit = |l: Line<'_>| out.push((l.whole().is_some(), l.whole().is_none()));
        buf.push(b"done\nhalf a li", &none, &mut emit);
        buf.cut(&none, &mut emit);
        buf.push(b"ended\nlast", &none, &mut emit);
        buf.finish(&none, &mut emit);
        assert_eq!(
            out,
            [(true, false), (false, true), (true, false), (true, false)]
        );
    }

    #[test]
    fn splits_lines_across_chunks_and_strips_cr() {
        let none = Redactor::default();
        assert_eq!(
            lines(&[b"a\r\nb", b"c\n", b"\n", b"tail"], &none),
            ["a", "bc", "", "tail"]
        );
        assert_eq!(lines(&[b"x\n"], &none), ["x"]);
        assert!(lines(&[b""], &none).is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let out = lines(&[b"ok \xff\xfe end\n"], &Redactor::default());
        assert_eq!(out, ["ok \u{fffd}\u{fffd} end"]);
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries() {
        let line = "é".repeat(MAX_RECORD); // 2 bytes each
        let out = lines(&[line.as_bytes(), b"\n"], &Redactor::default());
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|l| l.len() <= MAX_RECORD));
        assert_eq!(out.concat(), line);
    }

    #[test]
    fn overlong_unfinished_line_is_flushed_without_secrets() {
        let big = vec![b'x'; MAX_PENDING + 10];
        let out = lines(&[&big, b"yz\n"], &Redactor::default());
        let joined: String = out.concat();
        assert_eq!(joined.len(), MAX_PENDING + 12);
        assert!(out.iter().all(|l| l.len() <= MAX_RECORD));
    }

    #[test]
    fn overlong_unfinished_line_is_withheld_with_secrets() {
        let r = Redactor::new(["s3cr3t"]);
        let mut big = vec![b'x'; MAX_PENDING - 3];
        big.extend_from_slice(b"s3c");
        let out = lines(&[&big, b"r3t", b"more\nnext s3cr3t\n"], &r);
        assert_eq!(out, [WITHHELD, "next [REDACTED]"]);
    }

    #[test]
    fn secrets_are_scrubbed_longest_first() {
        let r = Redactor::new(["abcd", "abcdef", "", "line1\nline2"]);
        assert_eq!(r.redact("xabcdefy abcd"), "x[REDACTED]y [REDACTED]");
        assert_eq!(r.redact("line2 only"), "[REDACTED] only");
        assert!(matches!(r.redact("clean"), Cow::Borrowed("clean")));
        assert!(!format!("{r:?}").contains("abc"));
        assert!(Redactor::new([""]).is_empty());
    }

    #[test]
    fn overlapping_secrets_leave_no_fragment() {
        let r = Redactor::new(["abcdef", "defghi"]);
        assert_eq!(r.redact("x abcdefghi y"), "x [REDACTED] y");
        assert_eq!(r.redact("defghiabcdef"), "[REDACTED]");
    }

    #[test]
    fn values_below_the_minimum_length_are_not_patterns() {
        let r = Redactor::new(["1", "on", "yes"]);
        assert!(r.is_empty());
        assert_eq!(r.redact("1 on yes 11"), "1 on yes 11");
        let r = Redactor::new(["1", "s3cr3t"]);
        assert_eq!(r.redact("1 s3cr3t 1"), "1 [REDACTED] 1");
        assert_eq!(crate::redact::MIN_SECRET_LEN, 4);
    }

    #[test]
    fn secret_split_across_reads_is_still_scrubbed() {
        let r = Redactor::new(["hunter2"]);
        assert_eq!(lines(&[b"pw=hun", b"ter2\n"], &r), ["pw=[REDACTED]"]);
    }
}
