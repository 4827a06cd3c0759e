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
mod tests {
    use super::*;

    fn one(text: &str) -> (String, String) {
        let vars = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(vars.len(), 1, "{text:?} -> {vars:?}");
        vars.into_iter().next().unwrap()
    }

    fn value(text: &str) -> String {
        one(text).1
    }

    fn kind(text: &str) -> ErrorKind {
        parse(text).expect_err(text).kind
    }

    #[test]
    fn plain_and_spaced_assignments() {
        assert_eq!(one("FOO=bar"), ("FOO".into(), "bar".into()));
        assert_eq!(value("FOO =bar"), "bar");
        assert_eq!(value("FOO= bar"), "bar");
        assert_eq!(value(" KEY =value"), "value");
        assert_eq!(value("\tKEY=value"), "value");
        assert_eq!(value("FOO=bar \t "), "bar");
        assert_eq!(value("KEY=value value"), "value value");
        assert_eq!(value("FOO=foobar="), "foobar=");
        assert_eq!(value("OPTION_A=1:B"), "1:B");
        assert_eq!(one("FOO.BAR=foobar").0, "FOO.BAR");
        assert_eq!(one("lower_case=1").0, "lower_case");
    }

    #[test]
    fn yaml_style_separator() {
        assert_eq!(value("OPTION_A: 1"), "1");
        assert_eq!(value("OPTION_A: Foo=bar"), "Foo=bar");
        assert_eq!(value("KEY: value value\n"), "value value");
        assert_eq!(value("---\nKEY:value"), "value");
    }

    #[test]
    fn export_prefix() {
        assert_eq!(one("export OPTION_A=2"), ("OPTION_A".into(), "2".into()));
        assert_eq!(one("export\tOPTION_A=2").0, "OPTION_A");
        assert_eq!(one("  export OPTION_A=2").0, "OPTION_A");
        assert_eq!(one(" \t\t export    A=a\n").0, "A");
        assert_eq!(one("export exportFoo=2").0, "exportFoo");
        assert_eq!(one("exportFOO=2").0, "exportFOO");
        assert_eq!(one("export_FOO =2").0, "export_FOO");
        assert_eq!(one("export.FOO= 2").0, "export.FOO");
        assert_eq!(value("export OPTION_B='\\n'"), "\\n");
    }

    #[test]
    fn blank_lines_comments_and_crlf() {
        assert!(parse("").unwrap().is_empty());
        assert!(
            parse("\n\r\n\t\t \n# comment\n\t # indented\n")
                .unwrap()
                .is_empty()
        );
        let vars = parse("# head\r\nA=1\r\n\r\nB=\"two\"\r\nC='3'\r\n").unwrap();
        assert_eq!(
            vars,
            [
                ("A".to_owned(), "1".to_owned()),
                ("B".into(), "two".into()),
                ("C".into(), "3".into())
            ]
        );
        assert_eq!(value(" \t \t\n\t \t A=a\n"), "a");
    }

    #[test]
    fn inline_comments_only_on_unquoted_values() {
        assert_eq!(value("FOO=bar # this is foo"), "bar");
        assert_eq!(value("FOO=bar#baz"), "bar#baz");
        assert_eq!(value("FOO=a # b # c"), "a # b");
        assert_eq!(value("FOO=\"bar#baz\" # comment"), "bar#baz");
        assert_eq!(value("FOO='bar#baz' # comment"), "bar#baz");
        assert_eq!(value("FOO=\"bar#baz#bang\" # comment"), "bar#baz#bang");
        assert_eq!(value("FOO=\"ba#r\""), "ba#r");
        assert_eq!(value("FOO='ba#r'#c"), "ba#r");
    }

    #[test]
    fn quoting() {
        assert_eq!(value("FOO=\"bar\""), "bar");
        assert_eq!(value("FOO='bar'"), "bar");
        assert_eq!(value(r#"FOO="escaped\"bar""#), "escaped\"bar");
        assert_eq!(value(r#"FOO="'d'""#), "'d'");
        assert_eq!(value(r#"FOO="bar\nbaz""#), "bar\nbaz");
        assert_eq!(value(r#"FOO="bar\n\ b\az""#), "bar\n baz");
        assert_eq!(value(r#"FOO="bar\\\n\ b\az""#), "bar\\\n baz");
        assert_eq!(value(r#"FOO="bar\\r\ b\az""#), "bar\\r baz");
        assert_eq!(value(r#"FOO="a\rb""#), "a\rb");
        assert_eq!(value(r#"FOO="ends with \"""#), "ends with \"");
        assert_eq!(value(r"FOO='no \n escapes'"), r"no \n escapes");
        assert_eq!(value("FOO=\"line 1\nline 2\""), "line 1\nline 2");
        assert_eq!(value("FOO='line 1\r\nline 2'"), "line 1\nline 2");
        assert_eq!(
            value("OPTION_K='line one\nthis is \\'quoted\\'\none more line'"),
            "line one\nthis is \\'quoted\\'\none more line"
        );
    }

    #[test]
    fn empty_values() {
        assert_eq!(value("A="), "");
        assert_eq!(value("A=   "), "");
        assert_eq!(value("A=\n"), "");
        assert_eq!(value("A=\"\""), "");
        assert_eq!(value("A=''"), "");
        assert_eq!(value("A= # only a comment"), "# only a comment");
        let vars = parse("A=\nB=2").unwrap();
        assert_eq!(vars[0], ("A".into(), "".into()));
        assert_eq!(vars[1], ("B".into(), "2".into()));
    }

    #[test]
    fn expansion_from_earlier_keys_only() {
        let get = |text: &str, key: &str| {
            parse(text)
                .unwrap()
                .into_iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap()
        };
        assert_eq!(get("FOO=test\nBAR=$FOO", "BAR"), "test");
        assert_eq!(get("FOO=test\nBAR=${FOO}bar", "BAR"), "testbar");
        assert_eq!(get("BAR=$FOO", "BAR"), "");
        assert_eq!(
            get("BAR=$PATH", "BAR"),
            "",
            "never the worker's own environment"
        );
        assert_eq!(get("FOO=test\nBAR=\"quote $FOO\"", "BAR"), "quote test");
        assert_eq!(get("FOO=x\nBAR='quote $FOO'", "BAR"), "quote $FOO");
        assert_eq!(get(r#"FOO="foo\$BAR""#, "FOO"), "foo$BAR");
        assert_eq!(get(r#"FOO="foo\${BAR}""#, "FOO"), "foo${BAR}");
        assert_eq!(
            get("FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"", "BAR"),
            "foo${FOO} test"
        );
        assert_eq!(
            get("BAR=$FOO\nFOO=late", "BAR"),
            "",
            "later keys do not count"
        );
        assert_eq!(get("lower=x\nBAR=$lower", "BAR"), "$lower");
        assert_eq!(get("BAR=${lower}", "BAR"), "${lower}");
        assert_eq!(get("BAR=cost $", "BAR"), "cost $");
        assert_eq!(get("A=1\nBAR=$(A)", "BAR"), "$(A)");
        assert_eq!(get("A=1\nA=$A$A", "A"), "11");
    }

    #[test]
    fn later_definitions_win_in_place() {
        let vars = parse("A=1\nB=2\nA=3").unwrap();
        assert_eq!(vars, [("A".into(), "3".into()), ("B".into(), "2".into())]);
    }

    #[test]
    fn utf8_names_and_values() {
        assert_eq!(one("GRÜSSE=grüße 🎉"), ("GRÜSSE".into(), "grüße 🎉".into()));
        assert_eq!(value("A=\"ünïcødé\\n\""), "ünïcødé\n");
        assert_eq!(value("A=x\u{A0}"), "x", "NBSP is trimmed like godotenv");
    }

    #[test]
    fn errors_carry_line_numbers() {
        assert_eq!(
            parse("A=1\n\nlol$wut").unwrap_err(),
            ParseError {
                line: 3,
                kind: ErrorKind::UnexpectedCharacterInName
            }
        );
        assert_eq!(parse("A=1\nB=\"open\nC=2\n").unwrap_err().line, 2);
        assert_eq!(kind("B='open"), ErrorKind::UnterminatedQuote);
        assert_eq!(kind("B=\"open\\\""), ErrorKind::UnterminatedQuote);
        assert_eq!(kind("JUSTANAME"), ErrorKind::MissingSeparator);
        assert_eq!(kind("JUSTANAME\nB=1"), ErrorKind::MissingSeparator);
        assert_eq!(kind("=value"), ErrorKind::EmptyName);
        assert_eq!(kind("=\"value\""), ErrorKind::EmptyName);
        assert_eq!(kind("FOO BAR=1"), ErrorKind::UnexpectedCharacterInName);
        assert_eq!(kind("A-B=1"), ErrorKind::UnexpectedCharacterInName);
        assert_eq!(kind("A=\"x\" B=y"), ErrorKind::TextAfterQuotedValue);
        assert_eq!(kind("A='it''"), ErrorKind::TextAfterQuotedValue);
        assert_eq!(
            parse("A=1\r\nB\r\n").unwrap_err().to_string(),
            "line 2: variable name without '=' or ':'"
        );
    }

    #[test]
    fn errors_never_echo_the_text() {
        let e = parse("TOKEN=\"s3cr3t-value").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let e = parse("s3cr3t-value-without-key").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn hostile_input_never_panics() {
        let samples: &[&str] = &[
            "\"",
            "'",
            "=",
            ":",
            "export",
            "export ",
            "export =",
            "$",
            "\\",
            "A=\\",
            "A=\"\\",
            "A=\"\\\"",
            "A=${",
            "A=${X",
            "A=$\u{e9}",
            "A=\"\\\u{e9}\"",
            "\u{85}A=1",
            "#",
            "A=#",
            "A= #",
            "---",
            "---x",
            "A=\r",
            "\r\r\r",
            "A='\u{1F600}",
            "🎉=1",
            "A.=1",
            "\0=1",
            "A=\0",
            "A=\"$\"",
            "A=\"\\$\"",
            "A=${}",
            "A=$()",
            "A=$(",
            "A=\\$",
        ];
        for s in samples {
            let _ = parse(s);
        }
        // Every prefix of a mixed file, cut on character boundaries.
        let file = "export A='x y'\nB=\"q\\\"\\n$A ${A}\" # c\r\nC: ünï # d\n# e\nD=$B\n";
        for (i, _) in file.char_indices() {
            let _ = parse(&file[..i]);
        }
        let vars = parse(file).unwrap();
        assert_eq!(vars[1].1, "q\"\nx y x y");
        assert_eq!(vars[3].1, "q\"\nx y x y");
    }

    #[test]
    fn load_reads_files_and_reports_problems() {
        let dir = std::env::temp_dir().join(format!("oz-dotenv-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.env");
        std::fs::write(&good, "A=1\nB='2'\n").unwrap();
        assert_eq!(load(&good).unwrap().len(), 2);
        let empty = dir.join("empty.env");
        std::fs::write(&empty, "").unwrap();
        assert!(load(&empty).unwrap().is_empty());
        let bad = dir.join("bad.env");
        std::fs::write(&bad, b"A=1\nB=\xff\n").unwrap();
        assert!(matches!(
            load(&bad),
            Err(LoadError::NotUtf8 { line: 2, .. })
        ));
        let big = dir.join("big.env");
        std::fs::write(
            &big,
            vec![b'#'; usize::try_from(MAX_FILE_BYTES).unwrap() + 1],
        )
        .unwrap();
        assert!(matches!(load(&big), Err(LoadError::TooLarge { .. })));
        let broken = dir.join("broken.env");
        std::fs::write(&broken, "A=\"x").unwrap();
        let e = load(&broken).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("broken.env: line 1: unterminated quoted value"),
            "{e}"
        );
        assert!(matches!(
            load(&dir.join("missing")),
            Err(LoadError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
