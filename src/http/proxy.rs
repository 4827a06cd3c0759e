//! Proxy selection as Go's `http.ProxyFromEnvironment` does it, and the HTTP CONNECT request.
//!
//! `wss://` uses `HTTPS_PROXY`/`https_proxy`, `ws://` uses `HTTP_PROXY`/`http_proxy` (the
//! upper-case name wins when both are set and non-empty). `NO_PROXY`/`no_proxy` is a comma list
//! of `*`, host names or domain suffixes (`example.com` also matches the host itself,
//! `.example.com` and `*.example.com` only subdomains), IP literals and CIDR ranges, each with an
//! optional `:port`. `localhost` and loopback addresses are never proxied. Pure: no I/O, and
//! errors never echo a proxy URL (it may hold credentials).

use std::fmt;
use std::net::IpAddr;

use super::host::{Host, split_host_port, unescape};
use crate::base64::encode as base64;
use crate::settings::Secret;

/// The proxy-related environment, captured once. Tests build it by hand instead of mutating
/// the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Reads `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (upper case first, then lower case).
    pub fn from_env() -> ProxyEnv {
        fn any(names: [&str; 2]) -> Option<String> {
            names
                .iter()
                .filter_map(|n| std::env::var(n).ok())
                .find(|v| !v.is_empty())
        }
        ProxyEnv {
            http_proxy: any(["HTTP_PROXY", "http_proxy"]),
            https_proxy: any(["HTTPS_PROXY", "https_proxy"]),
            no_proxy: any(["NO_PROXY", "no_proxy"]),
        }
    }

    /// No proxy at all.
    pub fn none() -> ProxyEnv {
        ProxyEnv::default()
    }
}

/// A proxy to tunnel through.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: Host,
    pub port: u16,
    /// `Basic <base64(user:password)>`, when the proxy URL carries credentials.
    pub authorization: Option<Secret>,
}

impl Proxy {
    /// `host:port`, safe to log (no credentials).
    pub fn display(&self) -> String {
        self.host.with_port(self.port)
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Proxy({}{})",
            self.display(),
            if self.authorization.is_some() {
                ", with credentials"
            } else {
                ""
            }
        )
    }
}

/// A proxy variable that could not be used. Names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub var: &'static str,
    pub reason: String,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.reason)
    }
}

impl std::error::Error for ProxyError {}

/// Picks the proxy for a target, or `None` to dial directly.
pub fn select(
    env: &ProxyEnv,
    secure: bool,
    host: &Host,
    port: u16,
) -> Result<Option<Proxy>, ProxyError> {
    let (var, raw) = if secure {
        ("HTTPS_PROXY", env.https_proxy.as_deref())
    } else {
        ("HTTP_PROXY", env.http_proxy.as_deref())
    };
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    let no_proxy = NoProxy::parse(env.no_proxy.as_deref().unwrap_or(""));
    if !use_proxy(&no_proxy, host, port) {
        return Ok(None);
    }
    parse_proxy_url(raw)
        .map(Some)
        .map_err(|reason| ProxyError { var, reason })
}

/// Parses `[http://][user[:password]@]host[:port][/...]`. Only plain-HTTP proxies are supported.
fn parse_proxy_url(raw: &str) -> Result<Proxy, String> {
    let raw = raw.trim();
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("the proxy URL contains a control character".into());
    }
    // Like Go, a bare `host:port` means `http://host:port`.
    let (scheme, rest) = raw.split_once("://").unwrap_or(("http", raw));
    if !scheme.eq_ignore_ascii_case("http") {
        let shown: String = scheme
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        return Err(format!(
            "unsupported proxy scheme {shown:?} (only http:// proxies are supported)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport).map_err(|e| format!("proxy address: {e}"))?;
    let authorization = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let bad = || "bad percent-escape in the proxy credentials".to_owned();
            let mut cred = unescape(user, false).ok_or_else(bad)?;
            cred.push(b':');
            cred.extend(unescape(pass, false).ok_or_else(bad)?);
            Some(Secret::new(format!("Basic {}", base64(&cred))))
        }
    };
    Ok(Proxy {
        host,
        port: port.unwrap_or(80),
        authorization,
    })
}

/// The `CONNECT` request for `target` (`host:port`).
pub fn connect_request(proxy: &Proxy, target: &str, user_agent: &str) -> Vec<u8> {
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        req.push_str("Proxy-Authorization: ");
        req.push_str(auth.expose());
        req.push_str("\r\n");
    }
    req.push_str("User-Agent: ");
    req.push_str(user_agent);
    req.push_str("\r\n\r\n");
    req.into_bytes()
}

/// Parsed `NO_PROXY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    all: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Ip {
        ip: IpAddr,
        port: Option<u16>,
    },
    Cidr {
        net: IpAddr,
        prefix: u8,
    },
    /// `suffix` starts with `.`; `exact` also matches the name without the dot.
    Domain {
        suffix: String,
        exact: bool,
        port: Option<u16>,
    },
}

impl NoProxy {
    pub(crate) fn parse(list: &str) -> NoProxy {
        let mut np = NoProxy::default();
        for entry in list.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                np.all = true;
                return np;
            }
            if let Some(rule) = parse_cidr(&entry) {
                np.rules.push(rule);
                continue;
            }
            let (host, port) = split_rule_port(&entry);
            let port = match port {
                None => None,
                // A rule with a port we cannot read can never match; drop it.
                Some(p) => match p.parse::<u16>() {
                    Ok(p) => Some(p),
                    Err(_) => continue,
                },
            };
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                np.rules.push(Rule::Ip { ip, port });
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            let (suffix, exact) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            if suffix.len() > 1 {
                np.rules.push(Rule::Domain {
                    suffix,
                    exact,
                    port,
                });
            }
        }
        np
    }

    /// True when `host:port` must be reached directly.
    pub(crate) fn matches(&self, host: &Host, port: u16) -> bool {
        if self.all {
            return true;
        }
        let name = match host {
            Host::Name(n) => n.trim_end_matches('.').to_owned(),
            Host::Ip(ip) => ip.to_string(),
        };
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        self.rules.iter().any(|rule| match (rule, host) {
            (Rule::Ip { ip, port: p }, Host::Ip(h)) => ip == h && port_ok(p),
            (Rule::Cidr { net, prefix }, Host::Ip(h)) => cidr_contains(*net, *prefix, *h),
            (
                Rule::Domain {
                    suffix,
                    exact,
                    port: p,
                },
                _,
            ) => (name.ends_with(suffix.as_str()) || (*exact && name == suffix[1..])) && port_ok(p),
            _ => false,
        })
    }
}

/// Go never proxies `localhost` or a loopback address, whatever the environment says.
pub(crate) fn use_proxy(no_proxy: &NoProxy, host: &Host, port: u16) -> bool {
    match host {
        Host::Name(n) if n == "localhost" => return false,
        Host::Ip(ip) if ip.is_loopback() => return false,
        _ => {}
    }
    !no_proxy.matches(host, port)
}

/// Splits an optional `:port` off a rule, leaving bare IPv6 literals alone.
fn split_rule_port(entry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some((h, p)) => (&entry[..h.len() + 2], Some(p)),
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (entry, None),
    }
}

fn parse_cidr(entry: &str) -> Option<Rule> {
    let (ip, prefix) = entry.split_once('/')?;
    let net: IpAddr = ip.parse().ok()?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Rule::Cidr { net, prefix })
}

fn cidr_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    let (n, h, bits) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(h)) => (
            u128::from(u32::from(n)) << 96,
            u128::from(u32::from(h)) << 96,
            prefix,
        ),
        (IpAddr::V6(n), IpAddr::V6(h)) => (u128::from(n), u128::from(h), prefix),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(bits));
    n & mask == h & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Host {
        Host::Name(n.into())
    }
    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn no_proxy_domains() {
        let np = NoProxy::parse(" Example.COM , .internal,*.corp.test,, foo.bar:8443 ");
        assert!(np.matches(&name("example.com"), 443));
        assert!(np.matches(&name("a.example.com"), 443));
        assert!(np.matches(&name("example.com."), 443));
        assert!(!np.matches(&name("notexample.com"), 443));
        assert!(!np.matches(&name("example.com.evil"), 443));
        assert!(np.matches(&name("a.internal"), 80));
        assert!(
            !np.matches(&name("internal"), 80),
            "leading dot: subdomains only"
        );
        assert!(np.matches(&name("x.corp.test"), 80));
        assert!(
            !np.matches(&name("corp.test"), 80),
            "*. means subdomains only"
        );
        assert!(np.matches(&name("foo.bar"), 8443));
        assert!(!np.matches(&name("foo.bar"), 443), "port must match");
        assert!(!np.matches(&name("other"), 443));
    }

    #[test]
    fn no_proxy_ips_and_cidrs() {
        let np = NoProxy::parse(
            "10.0.0.0/8,192.168.1.5,::2,[::3],[::4]:99,172.16.0.1:8080,fd00::/8,1.2.3.4/33",
        );
        assert!(np.matches(&ip("10.1.2.3"), 1));
        assert!(!np.matches(&ip("11.0.0.1"), 1));
        assert!(np.matches(&ip("192.168.1.5"), 443));
        assert!(!np.matches(&ip("192.168.1.6"), 443));
        assert!(np.matches(&ip("::2"), 1));
        assert!(np.matches(&ip("::3"), 1));
        assert!(np.matches(&ip("::4"), 99));
        assert!(!np.matches(&ip("::4"), 98));
        assert!(np.matches(&ip("172.16.0.1"), 8080));
        assert!(!np.matches(&ip("172.16.0.1"), 80));
        assert!(np.matches(&ip("fd12::1"), 1));
        assert!(!np.matches(&ip("fe80::1"), 1));
        assert!(
            !np.matches(&ip("1.2.3.4"), 1),
            "an invalid prefix is not a rule"
        );
        // An IP rule does not match a host name that merely looks similar.
        assert!(!np.matches(&name("10.example"), 1));
        let all = NoProxy::parse("0.0.0.0/0");
        assert!(all.matches(&ip("8.8.8.8"), 1));
        assert!(!all.matches(&ip("::1"), 1), "a v4 range never matches v6");
    }

    #[test]
    fn no_proxy_star_and_junk() {
        assert!(NoProxy::parse("foo, *").matches(&name("anything"), 1));
        assert!(!NoProxy::parse("*.").matches(&name("anything"), 1));
        let junk = NoProxy::parse(":,:80,[],.,*,x");
        assert!(junk.matches(&name("y"), 1), "* anywhere matches everything");
        let junk = NoProxy::parse(":,:80,[],., x:notaport, [::1, 1.2.3.4/");
        assert!(!junk.matches(&name("y"), 1));
        assert!(!junk.matches(&name("x"), 1));
        assert_eq!(NoProxy::parse(""), NoProxy::default());
    }

    fn env(https: Option<&str>, http: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: https.map(Into::into),
            http_proxy: http.map(Into::into),
            no_proxy: no.map(Into::into),
        }
    }

    #[test]
    fn selection_by_scheme_and_bypass() {
        let e = env(Some("http://p1:3128"), Some("p2"), Some("skip.test"));
        let p = select(&e, true, &name("oz.test"), 443).unwrap().unwrap();
        assert_eq!(p.display(), "p1:3128");
        let p = select(&e, false, &name("oz.test"), 80).unwrap().unwrap();
        assert_eq!(p.display(), "p2:80");
        assert_eq!(select(&e, true, &name("skip.test"), 443).unwrap(), None);
        assert_eq!(select(&e, true, &name("localhost"), 443).unwrap(), None);
        assert_eq!(select(&e, true, &ip("127.0.0.1"), 443).unwrap(), None);
        assert_eq!(select(&e, true, &ip("127.9.9.9"), 443).unwrap(), None);
        assert_eq!(select(&e, true, &ip("::1"), 443).unwrap(), None);
        assert_eq!(
            select(&env(None, Some("p"), None), true, &name("a"), 1).unwrap(),
            None
        );
        assert_eq!(
            select(&env(Some(" "), None, None), true, &name("a"), 1).unwrap(),
            None
        );
        assert_eq!(
            select(&env(Some("p"), None, Some("*")), true, &name("a"), 1).unwrap(),
            None
        );
    }

    #[test]
    fn proxy_urls() {
        let p = parse_proxy_url("http://us%40er:p%3Ass@[::1]:8080/ignored").unwrap();
        assert_eq!(p.display(), "[::1]:8080");
        assert_eq!(
            p.authorization.as_ref().unwrap().expose(),
            format!("Basic {}", base64(b"us@er:p:ss"))
        );
        let p = parse_proxy_url("HTTP://user@proxy").unwrap();
        assert_eq!(p.display(), "proxy:80");
        assert_eq!(
            p.authorization.unwrap().expose(),
            format!("Basic {}", base64(b"user:"))
        );
        assert!(
            format!("{:?}", parse_proxy_url("http://u:secret@h:1").unwrap())
                .contains("with credentials")
        );
        for bad in [
            "https://h:1",
            "socks5://h:1",
            "http://",
            "http://u:p@",
            "http://h:99999",
            "http://u:%zz@h:1",
            "http://h\n:1",
        ] {
            let err = parse_proxy_url(bad).unwrap_err();
            assert!(!err.contains("h:1") && !err.contains("%zz"), "{err}");
        }
        let err = select(
            &env(Some("https://user:s3cret@h:1"), None, None),
            true,
            &name("a"),
            1,
        )
        .unwrap_err();
        assert_eq!(err.var, "HTTPS_PROXY");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn connect_request_shape() {
        let p = parse_proxy_url("http://a:b@p:1").unwrap();
        let req =
            String::from_utf8(connect_request(&p, "oz.test:443", "oz-agent-worker/1")).unwrap();
        assert_eq!(
            req,
            "CONNECT oz.test:443 HTTP/1.1\r\nHost: oz.test:443\r\nProxy-Authorization: Basic YTpi\r\nUser-Agent: oz-agent-worker/1\r\n\r\n"
        );
        let p = parse_proxy_url("p:1").unwrap();
        let req = String::from_utf8(connect_request(&p, "[::1]:1", "ua")).unwrap();
        assert!(!req.contains("Proxy-Authorization"));
        assert!(req.starts_with("CONNECT [::1]:1 HTTP/1.1\r\n"));
    }
}
