//! The matching engine: registered literals plus generic credential shapes.
//!
//! Literals are indexed by their first two bytes: a 65,536-bit set answers "could a pattern
//! start here?" with one load per byte of text, so a line that contains no secret costs one
//! pass and no allocation. At a candidate position the patterns sharing that prefix are tried
//! longest first. Every match becomes a span; overlapping and adjacent spans merge, so two
//! overlapping secrets leave no fragment of either.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::REDACTED;

/// A `Bearer` token shorter than this is taken for prose ("a bearer token is required").
const MIN_BEARER_TOKEN: usize = 8;

#[derive(Debug, Default)]
pub(super) struct Matcher {
    closed: bool,
    /// Bit `k` is set when some pattern starts with the two bytes `k` (big-endian).
    prefixes: Vec<u64>,
    /// Patterns by two-byte prefix, longest first.
    buckets: HashMap<u16, Vec<Box<[u8]>>>,
    count: usize,
}

fn prefix_key(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

impl Matcher {
    /// Patterns shorter than two bytes are ignored (the caller enforces a larger minimum).
    pub(super) fn new<'a>(patterns: impl Iterator<Item = &'a str>, closed: bool) -> Matcher {
        let mut seen = HashSet::new();
        let mut buckets: HashMap<u16, Vec<Box<[u8]>>> = HashMap::new();
        let mut prefixes = vec![0u64; 1 << 10];
        for p in patterns.filter(|p| p.len() >= 2) {
            if !seen.insert(p) {
                continue;
            }
            let key = prefix_key(p.as_bytes());
            prefixes[usize::from(key >> 6)] |= 1 << (key & 63);
            buckets
                .entry(key)
                .or_default()
                .push(p.as_bytes().to_vec().into_boxed_slice());
        }
        for list in buckets.values_mut() {
            list.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        }
        let count = seen.len();
        if count == 0 {
            prefixes = Vec::new();
        }
        Matcher {
            closed,
            prefixes,
            buckets,
            count,
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let b = text.as_bytes();
        let mut spans = Vec::new();
        // One pass: a table lookup per byte finds where a generic shape could start, a bit
        // test per byte where a registered literal could.
        for i in 0..b.len() {
            match TRIGGERS[usize::from(b[i])] {
                BEARER => bearer_at(b, i, &mut spans),
                AUTHORIZATION => authorization_at(b, i, &mut spans),
                URL => userinfo_at(b, i, &mut spans),
                _ => {}
            }
            if self.count > 0 && i + 1 < b.len() {
                self.literal_at(b, i, &mut spans);
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        replace_spans(text, spans)
    }

    fn literal_at(&self, b: &[u8], i: usize, spans: &mut Vec<(usize, usize)>) {
        let key = prefix_key(&b[i..]);
        if self.prefixes[usize::from(key >> 6)] & (1 << (key & 63)) == 0 {
            return;
        }
        let Some(list) = self.buckets.get(&key) else {
            return;
        };
        if let Some(p) = list.iter().find(|p| b[i..].starts_with(p)) {
            spans.push((i, i + p.len()));
        }
    }
}

const BEARER: u8 = 1;
const AUTHORIZATION: u8 = 2;
const URL: u8 = 3;

/// The first byte of each generic shape (`Bearer`, `Authorization`, `://`).
static TRIGGERS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'b' as usize] = BEARER;
    t[b'B' as usize] = BEARER;
    t[b'a' as usize] = AUTHORIZATION;
    t[b'A' as usize] = AUTHORIZATION;
    t[b':' as usize] = URL;
    t
};

/// Replaces the union of `spans` with one [`REDACTED`] per merged run.
fn replace_spans(text: &str, mut spans: Vec<(usize, usize)>) -> Cow<'_, str> {
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len() + 16);
    let mut pos = 0;
    let mut i = 0;
    while i < spans.len() {
        let (start, mut end) = spans[i];
        i += 1;
        while i < spans.len() && spans[i].0 <= end {
            end = end.max(spans[i].1);
            i += 1;
        }
        // Merged runs are disjoint and sorted, so `pos <= start`. Spans start and end next to
        // ASCII bytes or at whole UTF-8 patterns, hence on char boundaries; if that ever
        // failed, hide the whole text rather than panic or leak.
        let Some(gap) = text.get(pos..start) else {
            return Cow::Borrowed(REDACTED);
        };
        out.push_str(gap);
        out.push_str(REDACTED);
        pos = end;
    }
    match text.get(pos..) {
        Some(rest) => out.push_str(rest),
        None => return Cow::Borrowed(REDACTED),
    }
    Cow::Owned(out)
}

/// `needle` (lowercase ASCII) occurs at `i`, ignoring ASCII case, as the start of a word.
fn word_at(b: &[u8], i: usize, needle: &[u8]) -> bool {
    b.get(i..i + needle.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// `Bearer <token>`: the token.
fn bearer_at(b: &[u8], at: usize, spans: &mut Vec<(usize, usize)>) {
    if !word_at(b, at, b"bearer") {
        return;
    }
    let mut i = at + 6;
    let gap = i;
    while i < b.len() && matches!(b[i], b' ' | b'\t') {
        i += 1;
    }
    if i == gap {
        return;
    }
    let start = i;
    while i < b.len() && is_token_byte(b[i]) {
        i += 1;
    }
    if i - start >= MIN_BEARER_TOKEN {
        spans.push((start, i));
    }
}

/// `Authorization: <value>`, `authorization=<value>`, `"Authorization":"<value>"` (also
/// escaped inside JSON or `{:?}` text, and `Proxy-Authorization`): the value.
fn authorization_at(b: &[u8], at: usize, spans: &mut Vec<(usize, usize)>) {
    if !word_at(b, at, b"authorization") {
        return;
    }
    let quote_or_space = |c: u8| matches!(c, b'"' | b'\'' | b'\\' | b' ' | b'\t');
    let mut i = at + 13;
    while i < b.len() && quote_or_space(b[i]) {
        i += 1;
    }
    if i >= b.len() || !matches!(b[i], b':' | b'=') {
        return;
    }
    i += 1;
    while i < b.len() && quote_or_space(b[i]) {
        i += 1;
    }
    let start = i;
    while i < b.len()
        && !matches!(
            b[i],
            b'"' | b'\'' | b'\\' | b',' | b';' | b'}' | b']' | b'&' | b'\r' | b'\n'
        )
    {
        i += 1;
    }
    // Trailing blanks are not part of the credential.
    let mut end = i;
    while end > start && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    if end > start {
        spans.push((start, end));
    }
}

/// `scheme://user:password@host`: the userinfo.
fn userinfo_at(b: &[u8], at: usize, spans: &mut Vec<(usize, usize)>) {
    if b.get(at..at + 3) != Some(b"://") {
        return;
    }
    let start = at + 3;
    let mut i = start;
    while i < b.len()
        && !matches!(
            b[i],
            b'/' | b'?' | b'#' | b'@' | b'"' | b'\'' | b'<' | b'>' | b'\\'
        )
        && !b[i].is_ascii_whitespace()
    {
        i += 1;
    }
    if i < b.len() && b[i] == b'@' && i > start {
        spans.push((start, i));
    }
}
