//! The shapes a secret takes in a log line.

use std::fmt::Write;

/// Every shape of `value` worth matching: verbatim, URL-escaped (query form with `+` for
/// space, and `%20` form), JSON-string-escaped (serde_json's form and Go's HTML-safe form),
/// Rust `{:?}`-escaped, and the same for each line of a multi-line value. May contain
/// duplicates and short strings; the caller filters.
pub fn of(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    shapes(value, &mut out);
    if value.contains('\n') {
        for line in value.split('\n') {
            shapes(line.strip_suffix('\r').unwrap_or(line), &mut out);
        }
    }
    out
}

fn shapes(value: &str, out: &mut Vec<String>) {
    if value.is_empty() {
        return;
    }
    out.push(value.to_owned());
    out.push(url_escape(value, true));
    out.push(url_escape(value, false));
    out.push(json_escape(value, false));
    out.push(json_escape(value, true));
    out.push(debug_escape(value));
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as Go's `url.QueryEscape`
/// (`plus_for_space`) or `url.PathEscape`-like (`%20`).
fn url_escape(value: &str, plus_for_space: bool) -> String {
    let mut s = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                s.push(char::from(b))
            }
            b' ' if plus_for_space => s.push('+'),
            _ => {
                let _ = write!(s, "%{b:02X}");
            }
        }
    }
    s
}

/// The inside of a JSON string literal. `html_safe` also escapes `<`, `>`, `&`, U+2028 and
/// U+2029 as Go's `encoding/json` does.
fn json_escape(value: &str, html_safe: bool) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if html_safe => {
                let _ = write!(s, "\\u{:04x}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s
}

/// The inside of Rust's `{:?}` rendering of a string (log lines quote values that way).
fn debug_escape(value: &str) -> String {
    let quoted = format!("{value:?}");
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(url_escape("a b&c=d/é", true), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(url_escape("a b", false), "a%20b");
        assert_eq!(url_escape("Az09-_.~", true), "Az09-_.~");
    }

    #[test]
    fn json_forms_match_serde_json() {
        let v = "q\"b\\s\n\r\t\u{1}<&>\u{2028}é";
        let serde = serde_json::to_string(v).unwrap();
        assert_eq!(format!("\"{}\"", json_escape(v, false)), serde);
        assert_eq!(
            json_escape(v, true),
            "q\\\"b\\\\s\\n\\r\\t\\u0001\\u003c\\u0026\\u003e\\u2028é"
        );
    }

    #[test]
    fn debug_form_matches_format() {
        let v = "a\"b\\c\nd\u{1b}'";
        assert_eq!(format!("\"{}\"", debug_escape(v)), format!("{v:?}"));
    }

    #[test]
    fn lines_of_multi_line_values() {
        let all = of("first-line\r\nsecond-line\n");
        assert!(all.contains(&"first-line".to_owned()));
        assert!(all.contains(&"second-line".to_owned()));
        assert!(all.contains(&"first-line\\r\\nsecond-line\\n".to_owned()));
        assert!(of("").is_empty());
    }
}
