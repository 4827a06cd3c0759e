//! Hosts and ports as written in URLs and proxy variables: the strict `host[:port]` splitter
//! and percent-decoding shared by the link's URL, the proxy selection and the HTTP client.
//!
//! Pure: no I/O. Errors never echo the input, since a user may have pasted a secret into it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host as written in a URL: an IP literal or a (lower-cased, ASCII) name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// The host as it goes into `host:port` (IPv6 in brackets).
    pub fn authority_form(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        }
    }

    /// `host:port` with brackets around an IPv6 literal.
    pub fn with_port(&self, port: u16) -> String {
        format!("{}:{port}", self.authority_form())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority_form())
    }
}

/// Why a URL (endpoint or proxy) was refused. The text names the part, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    ControlCharacter,
    MissingScheme,
    UnsupportedScheme(String),
    Credentials,
    MissingHost,
    InvalidHost(&'static str),
    InvalidPort,
    InvalidEscape,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::ControlCharacter => f.write_str("the URL contains a control character"),
            UrlError::MissingScheme => {
                f.write_str("the URL has no scheme (expected ws:// or wss://)")
            }
            UrlError::UnsupportedScheme(s) => {
                write!(f, "unsupported URL scheme {s:?} (expected ws or wss)")
            }
            UrlError::Credentials => f.write_str("credentials in the URL are not supported"),
            UrlError::MissingHost => f.write_str("the URL has no host"),
            UrlError::InvalidHost(why) => write!(f, "invalid host in the URL: {why}"),
            UrlError::InvalidPort => f.write_str("invalid port in the URL"),
            UrlError::InvalidEscape => f.write_str("invalid percent-escape in the URL path"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Splits `host[:port]` or `[v6][:port]`. An empty port (`host:`) means the default.
pub fn split_host_port(authority: &str) -> Result<(Host, Option<u16>), UrlError> {
    if authority.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or(UrlError::InvalidHost("unterminated IPv6 literal"))?;
        if v6.contains('%') {
            return Err(UrlError::InvalidHost(
                "IPv6 zone identifiers are not supported",
            ));
        }
        let ip: Ipv6Addr = v6
            .parse()
            .map_err(|_| UrlError::InvalidHost("bad IPv6 literal"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::InvalidPort)?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (name, port) = match authority.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(UrlError::InvalidHost("an IPv6 address must be in brackets"));
        }
        (parse_host_name(name)?, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::InvalidPort);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::InvalidPort),
        Ok(n) => Ok(n),
    }
}

fn parse_host_name(name: &str) -> Result<Host, UrlError> {
    if name.is_empty() {
        return Err(UrlError::MissingHost);
    }
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if !name.is_ascii() {
        return Err(UrlError::InvalidHost(
            "non-ASCII host names must be written in punycode",
        ));
    }
    if name.len() > 253 {
        return Err(UrlError::InvalidHost("host name too long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(UrlError::InvalidHost("unexpected character in host name"));
    }
    if name.starts_with('.') || name.contains("..") {
        return Err(UrlError::InvalidHost("empty label in host name"));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

/// Percent-decoding; `plus_is_space` selects query (`+` = space) or userinfo rules.
pub fn unescape(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
