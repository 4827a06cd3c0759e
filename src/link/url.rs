//! The Oz endpoint URL: a small, strict `ws://`/`wss://` parser, the `worker_id` query rewrite
//! and Go-compatible query encoding (`url.Values.Encode`: keys sorted, `QueryEscape`).
//!
//! Pure: no I/O. Errors never echo the URL, since a user may have pasted a secret into it.

use std::collections::BTreeMap;
use std::fmt;

pub(crate) use crate::http::host::{Host, UrlError, split_host_port, unescape};

/// A parsed `ws://`/`wss://` URL with `worker_id` already set in its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsUrl {
    pub secure: bool,
    pub host: Host,
    /// The effective port (80/443 when the URL names none).
    pub port: u16,
    /// The port as written, kept so the `Host` header matches what the user configured.
    pub explicit_port: Option<u16>,
    /// Escaped path, starting with `/`.
    pub path: String,
    /// Encoded query without the `?`; never empty (it holds `worker_id`).
    pub query: String,
}

impl WsUrl {
    /// Parses `input` and sets (overwrites) `worker_id` in its query.
    pub(crate) fn parse(input: &str, worker_id: &str) -> Result<WsUrl, UrlError> {
        let input = input.trim();
        if input.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(UrlError::ControlCharacter);
        }
        let (scheme, rest) = input.split_once("://").ok_or(UrlError::MissingScheme)?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(UrlError::UnsupportedScheme(printable_scheme(scheme))),
        };
        // The fragment never reaches the server (as with Go's request writer).
        let rest = rest.split('#').next().unwrap_or_default();
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        if authority.contains('@') {
            return Err(UrlError::Credentials);
        }
        let (host, explicit_port) = split_host_port(authority)?;
        let (raw_path, raw_query) = match tail.split_once('?') {
            Some((p, q)) => (p, q),
            None => (tail, ""),
        };
        let path = if raw_path.is_empty() {
            "/".to_owned()
        } else {
            escape_path(raw_path)?
        };
        let mut values = parse_query(raw_query);
        values.insert(b"worker_id".to_vec(), vec![worker_id.as_bytes().to_vec()]);
        Ok(WsUrl {
            secure,
            port: explicit_port.unwrap_or(if secure { 443 } else { 80 }),
            host,
            explicit_port,
            path,
            query: encode_query(&values),
        })
    }

    /// The value of the `Host` header: the host plus the port when the URL names one.
    pub(crate) fn host_header(&self) -> String {
        match self.explicit_port {
            Some(p) => self.host.with_port(p),
            None => self.host.authority_form(),
        }
    }

    /// Path and query, as they go into the request line.
    pub(crate) fn request_target(&self) -> String {
        format!("{}?{}", self.path, self.query)
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(
            f,
            "{scheme}://{}{}?{}",
            self.host_header(),
            self.path,
            self.query
        )
    }
}

/// Keeps an unknown scheme printable and short in an error message.
fn printable_scheme(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .take(16)
        .collect()
}

/// Escapes a path for the request line: RFC 3986 `pchar`s and `/` stay, valid `%XX` escapes stay,
/// everything else is percent-encoded. A `%` not followed by two hex digits is refused (as Go does).
fn escape_path(raw: &str) -> Result<String, UrlError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len() + 1);
    if !raw.starts_with('/') {
        out.push('/');
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(UrlError::InvalidEscape);
            }
            out.push_str(&raw[i..i + 3]);
            i += 3;
            continue;
        }
        if is_unreserved(b) || b"!$&'()*+,;=:@/".contains(&b) {
            out.push(char::from(b));
        } else {
            push_pct(&mut out, b);
        }
        i += 1;
    }
    Ok(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn push_pct(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// Query values in Go's `url.Values` shape: key -> values in their original order.
pub(crate) type Values = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

/// Parses a raw query the way Go's `url.ParseQuery` does, dropping what Go drops: empty pairs,
/// pairs containing `;` (refused since Go 1.17) and pairs with a bad escape.
pub(crate) fn parse_query(raw: &str) -> Values {
    let mut values = Values::new();
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (query_unescape(k), query_unescape(v)) else {
            continue;
        };
        values.entry(k).or_default().push(v);
    }
    values
}

/// Go's `url.Values.Encode`: keys in byte order, each value `QueryEscape`d, joined by `&`.
pub(crate) fn encode_query(values: &Values) -> String {
    let mut out = String::new();
    for (k, vs) in values {
        for v in vs {
            if !out.is_empty() {
                out.push('&');
            }
            query_escape_into(&mut out, k);
            out.push('=');
            query_escape_into(&mut out, v);
        }
    }
    out
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the rest is `%XX`.
pub(crate) fn query_escape_into(out: &mut String, s: &[u8]) {
    for &b in s {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            push_pct(out, b);
        }
    }
}

/// Go's `url.QueryUnescape`: `+` is a space; `None` on a bad escape.
pub(crate) fn query_unescape(s: &str) -> Option<Vec<u8>> {
    unescape(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<WsUrl, UrlError> {
        WsUrl::parse(s, "w1")
    }

    #[test]
    fn default_endpoint() {
        let u = parse(crate::settings::DEFAULT_WEB_SOCKET_URL).unwrap();
        assert!(u.secure);
        assert_eq!(u.host, Host::Name("oz.warp.dev".into()));
        assert_eq!(u.port, 443);
        assert_eq!(u.explicit_port, None);
        assert_eq!(u.path, "/api/v1/selfhosted/worker/ws");
        assert_eq!(u.query, "worker_id=w1");
        assert_eq!(
            u.to_string(),
            "wss://oz.warp.dev/api/v1/selfhosted/worker/ws?worker_id=w1"
        );
        assert_eq!(u.host_header(), "oz.warp.dev");
    }

    #[test]
    fn ports_hosts_and_paths() {
        let u = parse("ws://127.0.0.1:8080/x").unwrap();
        assert!(!u.secure);
        assert_eq!(u.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!((u.port, u.explicit_port), (8080, Some(8080)));
        assert_eq!(u.host_header(), "127.0.0.1:8080");

        let u = parse("WSS://[::1]:9/").unwrap();
        assert!(u.secure);
        assert_eq!(u.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(u.host_header(), "[::1]:9");
        assert_eq!(u.to_string(), "wss://[::1]:9/?worker_id=w1");

        let u = parse("ws://[2001:db8::1]").unwrap();
        assert_eq!((u.port, u.explicit_port), (80, None));
        assert_eq!(u.path, "/");

        let u = parse("ws://Oz.Example.COM:/p").unwrap();
        assert_eq!(u.host, Host::Name("oz.example.com".into()));
        assert_eq!((u.port, u.explicit_port), (80, None));

        let u = parse("ws://h?x=1").unwrap();
        assert_eq!(u.path, "/");
        assert_eq!(u.request_target(), "/?worker_id=w1&x=1");

        let u = parse("ws://h/a b/%2F/é#frag").unwrap();
        assert_eq!(u.path, "/a%20b/%2F/%C3%A9");
        assert_eq!(u.query, "worker_id=w1");
    }

    #[test]
    fn worker_id_is_set_and_query_re_encoded_like_go() {
        let u = WsUrl::parse(
            "ws://h/p?b=2&a=1&worker_id=old&worker_id=older&a=0",
            "new id/ü",
        )
        .unwrap();
        assert_eq!(u.query, "a=1&a=0&b=2&worker_id=new+id%2F%C3%BC");

        // Go drops pairs with ';' and bad escapes, and empty pairs; '+' decodes to a space.
        let u = parse("ws://h/?x=a;b&&y=%zz&z=1+2&k&%41=%42").unwrap();
        assert_eq!(u.query, "A=B&k=&worker_id=w1&z=1+2");

        // Reserved characters are escaped the way url.QueryEscape does.
        let u = WsUrl::parse("ws://h/?q=$%26%2B,/:;=?@~-_.", "w").unwrap();
        assert_eq!(u.query, "worker_id=w");
        let u = WsUrl::parse("ws://h/?q=$%26%2B,/:=?@~-_.", "w").unwrap();
        assert_eq!(u.query, "q=%24%26%2B%2C%2F%3A%3D%3F%40~-_.&worker_id=w");
    }

    #[test]
    fn query_escape_matches_go() {
        let mut s = String::new();
        query_escape_into(&mut s, b"a b+c&d=e/f?g#h%i~j*k'l(m)!");
        assert_eq!(s, "a+b%2Bc%26d%3De%2Ff%3Fg%23h%25i~j%2Ak%27l%28m%29%21");
        assert_eq!(query_unescape("a+b%2Bc").unwrap(), b"a b+c");
        assert_eq!(query_unescape("%"), None);
        assert_eq!(query_unescape("%4"), None);
        assert_eq!(query_unescape("%4g"), None);
        assert_eq!(unescape("a+b", false).unwrap(), b"a+b");
    }

    #[test]
    fn hostile_urls_are_errors() {
        use UrlError::*;
        let cases: &[(&str, UrlError)] = &[
            ("", MissingScheme),
            ("oz.warp.dev/ws", MissingScheme),
            ("http://h/", UnsupportedScheme("http".into())),
            ("https://h/", UnsupportedScheme("https".into())),
            ("ws:/h", MissingScheme),
            ("ws://", MissingHost),
            ("ws:///p", MissingHost),
            ("ws://:80/", MissingHost),
            ("ws://user:pw@h/", Credentials),
            ("ws://@h/", Credentials),
            ("ws://h:0/", InvalidPort),
            ("ws://h:65536/", InvalidPort),
            ("ws://h:123456/", InvalidPort),
            ("ws://h:8o/", InvalidPort),
            ("ws://h:-1/", InvalidPort),
            ("ws://h:+80/", InvalidPort),
            ("ws://[::1/", InvalidHost("unterminated IPv6 literal")),
            ("ws://[::1]x/", InvalidPort),
            ("ws://[zz::1]/", InvalidHost("bad IPv6 literal")),
            (
                "ws://[fe80::1%25eth0]/",
                InvalidHost("IPv6 zone identifiers are not supported"),
            ),
            (
                "ws://::1/",
                InvalidHost("an IPv6 address must be in brackets"),
            ),
            (
                "ws://h st/",
                InvalidHost("unexpected character in host name"),
            ),
            (
                "ws://h%41/",
                InvalidHost("unexpected character in host name"),
            ),
            (
                "ws://ü.example/",
                InvalidHost("non-ASCII host names must be written in punycode"),
            ),
            ("ws://a..b/", InvalidHost("empty label in host name")),
            ("ws://.a/", InvalidHost("empty label in host name")),
            ("ws://h/%", InvalidEscape),
            ("ws://h/%g0", InvalidEscape),
            ("ws://h/\na", ControlCharacter),
            ("ws://h\t/", ControlCharacter),
            ("ws://h/\u{7f}a", ControlCharacter),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Err(want), "{input:?}");
        }
        let long = format!("ws://{}/", "a".repeat(300));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn errors_never_echo_the_url() {
        for input in ["ws://user:s3cret@h/", "ftp://s3cret/", "ws://s3cret:x/"] {
            let e = parse(input).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let alphabet = [
            "ws://", "wss://", "[", "]", ":", "@", "/", "?", "#", "%", "&", "=", "a", "1", "é", " ",
        ];
        // Every 4-piece combination: cheap and covers odd orders of delimiters.
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        let _ = parse(&format!("{a}{b}{c}{d}"));
                        let _ = parse(&format!("ws://{a}{b}{c}{d}"));
                    }
                }
            }
        }
    }
}
