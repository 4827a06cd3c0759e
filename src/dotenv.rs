//! The env file a direct-backend setup hook may write (`$OZ_ENVIRONMENT_FILE`), read with the
//! dotenv rules of the Go worker (godotenv v1.5.1):
//!
//! - blank lines and lines starting with `#` are ignored; CRLF is read as LF;
//! - `KEY=value` or `KEY: value`, with an optional `export ` prefix and whitespace around both;
//!   names are letters, digits, `_` and `.`;
//! - unquoted values end at the line end, lose surrounding whitespace and a trailing ` # comment`
//!   (the last `#` preceded by whitespace);
//! - `'single quoted'` values are literal and may span lines;
//! - `"double quoted"` values may span lines; `\n` and `\r` become newline and carriage return,
//!   a backslash before any other character except `$` is dropped (`\"` → `"`, `\\` → `\`);
//! - in unquoted and double-quoted values, `$NAME` and `${NAME}` (`NAME` made of `A-Z`, `0-9`,
//!   `_`) expand to the value of a key defined earlier in the same file, or to nothing; `\$`
//!   keeps a literal `$`. Nothing is read from the worker's environment.
//!
//! Deliberate differences from godotenv, all on input godotenv accepts by accident: a line
//! without a separator, an empty name or a name with inner spaces is an error (godotenv invents
//! odd keys); text after a closing quote other than a comment is an error (godotenv starts a new
//! statement there); `$(` is left as written (godotenv's check for it never matches); an
//! escaped quote right before the closing quote is kept; only a line that is exactly `---` is
//! skipped as a YAML document marker (godotenv deletes `---` before every newline, even inside
//! values). Errors carry a line number and never the file's text, which may hold secrets.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Larger env files are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a file could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    UnexpectedCharacterInName,
    MissingSeparator,
    EmptyName,
    UnterminatedQuote,
    TextAfterQuotedValue,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::UnexpectedCharacterInName => "unexpected character in variable name",
            ErrorKind::MissingSeparator => "variable name without '=' or ':'",
            ErrorKind::EmptyName => "empty variable name",
            ErrorKind::UnterminatedQuote => "unterminated quoted value",
            ErrorKind::TextAfterQuotedValue => "unexpected text after quoted value",
        };
        write!(f, "line {}: {what}", self.line)
    }
}

impl std::error::Error for ParseError {}

/// Reading an env file failed.
#[derive(Debug)]
pub enum LoadError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    TooLarge {
        path: PathBuf,
    },
    NotUtf8 {
        path: PathBuf,
        line: usize,
    },
    Parse {
        path: PathBuf,
        error: ParseError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            LoadError::TooLarge { path } => {
                write!(
                    f,
                    "{} is larger than {MAX_FILE_BYTES} bytes",
                    path.display()
                )
            }
            LoadError::NotUtf8 { path, line } => {
                write!(f, "{}: line {line}: not valid UTF-8", path.display())
            }
            LoadError::Parse { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            LoadError::Parse { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Reads and parses an env file. An empty file yields no variables.
pub fn load(path: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| LoadError::NotUtf8 {
        path: path.to_owned(),
        line: line_of(e.as_bytes(), e.utf8_error().valid_up_to()),
    })?;
    parse(&text).map_err(|error| LoadError::Parse {
        path: path.to_owned(),
        error,
    })
}

/// Parses dotenv text into `(name, value)` pairs in first-definition order; a name defined
/// twice keeps its position and takes the later value.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let src = text.replace("\r\n", "\n");
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    while let Some(start) = statement_start(&src, pos) {
        let (key, after_key) = parse_key(&src, start)?;
        let (value, next) = parse_value(&src, after_key, &vars)?;
        match vars.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => vars.push((key, value)),
        }
        pos = next;
    }
    Ok(vars)
}

/// Whitespace that is not a line break (godotenv's `isSpace`).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}'
    )
}

fn line_of(src: &[u8], offset: usize) -> usize {
    1 + src[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn err(src: &str, offset: usize, kind: ErrorKind) -> ParseError {
    ParseError {
        line: line_of(src.as_bytes(), offset),
        kind,
    }
}

fn skip_while(src: &str, pos: usize, f: impl Fn(char) -> bool) -> usize {
    src[pos..]
        .char_indices()
        .find(|&(_, c)| !f(c))
        .map_or(src.len(), |(i, _)| pos + i)
}

fn line_end(src: &str, pos: usize) -> usize {
    src[pos..].find('\n').map_or(src.len(), |i| pos + i)
}

/// The start of the next statement after blank lines, comments and `---` markers.
fn statement_start(src: &str, mut pos: usize) -> Option<usize> {
    loop {
        pos = skip_while(src, pos, char::is_whitespace);
        if pos >= src.len() {
            return None;
        }
        let rest = &src[pos..];
        let yaml_marker =
            rest.starts_with("---") && matches!(rest.as_bytes().get(3), None | Some(b'\n'));
        if rest.starts_with('#') || yaml_marker {
            pos = line_end(src, pos);
        } else {
            return Some(pos);
        }
    }
}

/// Reads `[export ]NAME` up to and past its separator and the spaces after it.
fn parse_key(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut pos = skip_while(src, start, is_space);
    if let Some(rest) = src[pos..].strip_prefix("export")
        && rest.starts_with(is_space)
    {
        pos = skip_while(src, pos + "export".len(), is_space);
    }
    let name_start = pos;
    let name_end = skip_while(src, pos, |c| c.is_alphanumeric() || c == '_' || c == '.');
    let after_spaces = skip_while(src, name_end, is_space);
    match src[after_spaces..].chars().next() {
        Some('=' | ':') => {}
        None | Some('\n') => return Err(err(src, after_spaces, ErrorKind::MissingSeparator)),
        Some(_) => {
            return Err(err(src, after_spaces, ErrorKind::UnexpectedCharacterInName));
        }
    }
    if name_end == name_start {
        return Err(err(src, name_start, ErrorKind::EmptyName));
    }
    let value_start = skip_while(src, after_spaces + 1, is_space);
    Ok((src[name_start..name_end].to_owned(), value_start))
}

/// Reads one value; returns it and the offset where the next statement search starts.
fn parse_value(
    src: &str,
    pos: usize,
    vars: &[(String, String)],
) -> Result<(String, usize), ParseError> {
    let quote = match src[pos..].chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Ok(parse_unquoted(src, pos, vars)),
    };
    let bytes = src.as_bytes();
    let close = (pos + 1..bytes.len())
        .find(|&i| bytes[i] == quote as u8 && bytes[i - 1] != b'\\')
        .ok_or_else(|| err(src, pos, ErrorKind::UnterminatedQuote))?;
    let raw = &src[pos + 1..close];
    let value = if quote == '"' {
        expand(&unescape(raw), vars)
    } else {
        raw.to_owned()
    };
    let after = skip_while(src, close + 1, is_space);
    match src[after..].chars().next() {
        None | Some('\n' | '#') => Ok((value, after)),
        Some(_) => Err(err(src, after, ErrorKind::TextAfterQuotedValue)),
    }
}

fn parse_unquoted(src: &str, pos: usize, vars: &[(String, String)]) -> (String, usize) {
    let end = src[pos..].find(['\n', '\r']).map_or(src.len(), |i| pos + i);
    let line = &src[pos..end];
    // An inline comment starts at the last `#` that follows whitespace.
    let mut cut = line.len();
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    for w in chars.windows(2).rev() {
        if w[1].1 == '#' && is_space(w[0].1) {
            cut = w[1].0;
            break;
        }
    }
    let value = line[..cut].trim_matches(is_space);
    (expand(value, vars), end)
}

/// Double-quote escapes: `\n` and `\r` first, then a backslash before anything but `$` goes.
fn unescape(raw: &str) -> String {
    let mut first = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next)) if next != '\n' => {
                chars.next();
                match next {
                    'n' => first.push('\n'),
                    'r' => first.push('\r'),
                    other => {
                        first.push('\\');
                        first.push(other);
                    }
                }
            }
            _ => first.push(c),
        }
    }
    let mut out = String::with_capacity(first.len());
    let mut chars = first.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next)) if next != '$' => {
                chars.next();
                out.push(next);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Expands `$NAME` / `${NAME}` from earlier keys; `\$` stays a literal `$`; `$(` is left alone.
fn expand(value: &str, vars: &[(String, String)]) -> String {
    let b = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let escaped = b[i] == b'\\' && b.get(i + 1) == Some(&b'$');
        if !(escaped || b[i] == b'$') {
            i += 1;
            continue;
        }
        out.push_str(&value[copied..i]);
        let start = i;
        let mut j = if escaped { i + 2 } else { i + 1 };
        if !escaped && b.get(j) == Some(&b'(') {
            out.push_str("$(");
            i = j + 1;
            copied = i;
            continue;
        }
        if b.get(j) == Some(&b'{') {
            j += 1;
        }
        let name_start = j;
        while j < b.len() && (b[j].is_ascii_uppercase() || b[j].is_ascii_digit() || b[j] == b'_') {
            j += 1;
        }
        let name = &value[name_start..j];
        if b.get(j) == Some(&b'}') {
            j += 1;
        }
        if escaped {
            out.push_str(&value[start + 1..j]);
        } else if !name.is_empty() {
            let found = vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            out.push_str(found.unwrap_or(""));
        } else {
            out.push_str(&value[start..j]);
        }
        i = j;
        copied = j;
    }
    out.push_str(&value[copied..]);
    out
}

#[cfg(test)]
#[path = "dotenv_tests.rs"]
mod tests;
