//! [`Client`]: the endpoint, the negotiated API version, an optional [`Abort`], and the request
//! plumbing every endpoint module shares (paths, queries, status handling).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::cli_config::{EnvLookup, var};
use super::discovery::{self, DEFAULT_SOCKET};
use super::endpoint::Endpoint;
use super::error::DockerError;
use super::response::Response;
use crate::http::{self, Abort, Body, Request, Timeouts};

/// A Docker Engine API version, e.g. `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u16,
    pub minor: u16,
}

impl ApiVersion {
    pub const fn new(major: u16, minor: u16) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// Parses `1.41` (a leading `v` is accepted).
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let (major, minor) = s.split_once('.')?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return None;
        }
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The newest API version whose endpoints and fields this client was checked against. Newer
/// daemons are spoken to at this version (Docker keeps old versions working); older ones at
/// their own.
pub const MAX_API_VERSION: ApiVersion = ApiVersion::new(1, 47);
/// The oldest we accept: `platform` on pull needs 1.32 (Docker 17.09).
pub const MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 32);

/// A blocking Docker Engine API client. Cheap to clone; clones share nothing mutable.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Arc<Endpoint>,
    /// `None` until negotiated (requests then use unversioned paths).
    api_version: Option<ApiVersion>,
    /// Set from `DOCKER_API_VERSION`: negotiation keeps it.
    pinned: bool,
    abort: Option<Abort>,
    timeouts: Timeouts,
}

impl Client {
    /// A client for `endpoint`, not yet negotiated.
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint: Arc::new(endpoint),
            api_version: None,
            pinned: false,
            abort: None,
            timeouts: Timeouts::default(),
        }
    }

    /// Discovers the endpoint from the environment (see the module docs for the order) and
    /// honours `DOCKER_API_VERSION`. Reads files (CLI config, context store, TLS material) but
    /// does not contact the daemon: call [`Client::negotiate`] next.
    pub fn from_env(env: EnvLookup<'_>) -> Result<Client, DockerError> {
        Client::from_env_with_socket(env, Path::new(DEFAULT_SOCKET))
    }

    /// [`Client::from_env`] with another default socket path (tests; unusual layouts).
    pub fn from_env_with_socket(
        env: EnvLookup<'_>,
        default_socket: &Path,
    ) -> Result<Client, DockerError> {
        let mut client = Client::new(discovery::discover(env, default_socket)?);
        if let Some(raw) = var(env, "DOCKER_API_VERSION") {
            let version = ApiVersion::parse(&raw).ok_or_else(|| {
                DockerError::Config(format!(
                    "invalid DOCKER_API_VERSION {raw:?}: expected a version like 1.41"
                ))
            })?;
            client.api_version = Some(version);
            client.pinned = true;
        }
        Ok(client)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The API version in use; `None` before [`Client::negotiate`] (unless pinned).
    pub fn api_version(&self) -> Option<ApiVersion> {
        self.api_version
    }

    /// A clone whose every request can be ended by `abort` (see [`Abort`]).
    pub fn with_abort(&self, abort: Abort) -> Client {
        Client {
            abort: Some(abort),
            ..self.clone()
        }
    }

    /// A clone with other default timeouts (endpoints with special needs still override some).
    pub fn with_timeouts(&self, timeouts: Timeouts) -> Client {
        Client {
            timeouts,
            ..self.clone()
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub(crate) fn set_api_version(&mut self, daemon: ApiVersion, daemon_min: Option<ApiVersion>) {
        if self.pinned {
            return;
        }
        let mut version = daemon.min(MAX_API_VERSION);
        // A daemon that dropped our newest version: speak its oldest (our fields are stable).
        if let Some(min) = daemon_min.filter(|m| *m > version) {
            log::warn!(
                "Docker's oldest API version {min} is newer than ours ({MAX_API_VERSION}); using {min}"
            );
            version = min;
        }
        self.api_version = Some(version);
    }

    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// `/v1.41/containers/json` for `/containers/json`.
    pub(crate) fn path(&self, path: &str) -> String {
        match self.api_version {
            Some(v) => format!("/v{v}{path}"),
            None => path.to_string(),
        }
    }

    /// Sends a request and returns once the response head is in.
    pub(crate) fn send(
        &self,
        method: &'static str,
        target: String,
        headers: Vec<(&'static str, String)>,
        body: Body<'_>,
        timeouts: Timeouts,
    ) -> Result<Response, DockerError> {
        let request = Request {
            method,
            target,
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
            body,
            timeouts,
            upgrade: None,
        };
        Ok(http::send(&self.endpoint.http, self.abort.as_ref(), request)?.into())
    }

    pub(crate) fn send_upgrade(&self, target: String) -> Result<Response, DockerError> {
        let request = Request {
            method: "POST",
            target,
            headers: Vec::new(),
            body: Body::Empty,
            timeouts: self.timeouts,
            upgrade: Some("tcp"),
        };
        Ok(http::send(&self.endpoint.http, self.abort.as_ref(), request)?.into())
    }

    /// A bodiless request with the default timeouts.
    pub(crate) fn call(
        &self,
        method: &'static str,
        target: String,
    ) -> Result<Response, DockerError> {
        self.send(method, target, Vec::new(), Body::Empty, self.timeouts)
    }

    /// GET returning JSON; 404 is `None`.
    pub(crate) fn get_json_opt<T: DeserializeOwned>(
        &self,
        target: String,
    ) -> Result<Option<T>, DockerError> {
        let response = self.call("GET", target)?;
        match response.status() {
            404 => Ok(None),
            _ if response.is_success() => response.json().map(Some),
            _ => Err(response.into_error()),
        }
    }

    /// A request whose answer is only a status: returns it when listed in `answers`, else the
    /// daemon's error.
    pub(crate) fn status_of(
        &self,
        method: &'static str,
        target: String,
        answers: &[u16],
        timeouts: Timeouts,
    ) -> Result<u16, DockerError> {
        let response = self.send(method, target, Vec::new(), Body::Empty, timeouts)?;
        let status = response.status();
        if answers.contains(&status) {
            // Drain small bodies so the daemon isn't left writing to a closed socket mid-answer.
            let _ = response.bytes(64 * 1024);
            Ok(status)
        } else {
            Err(response.into_error())
        }
    }
}

/// Percent-encodes `s` for a query value or path segment, keeping RFC 3986 unreserved bytes
/// and the bytes in `keep`.
pub(crate) fn escape(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?a=1&b=2` from pairs, values escaped; empty when there are none.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&escape(v, b""));
    }
    out
}

/// A container id or name, or an image reference, as a path segment (`/` and `:` kept for
/// image names: the daemon routes `/images/{name:.*}/json`).
pub(crate) fn segment(s: &str) -> String {
    escape(s, b"/:@")
}

/// Default timeouts of `ping`: each phase 5 s.
pub(crate) const PING_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    send: Duration::from_secs(5),
    head: Duration::from_secs(5),
    body_idle: Some(Duration::from_secs(5)),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_parse_and_order() {
        assert_eq!(ApiVersion::parse("1.41"), Some(ApiVersion::new(1, 41)));
        assert_eq!(ApiVersion::parse("v1.24"), Some(ApiVersion::new(1, 24)));
        for bad in ["", "1", "1.", ".4", "1.x", "a.b", "1.41.2", "99999.1"] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
        assert!(ApiVersion::new(1, 9) < ApiVersion::new(1, 10));
        assert_eq!(ApiVersion::new(1, 41).to_string(), "1.41");
    }

    #[test]
    fn negotiation_takes_the_lower_version_within_the_daemons_range() {
        let mut c = Client::new(Endpoint::unix("/nonexistent"));
        c.set_api_version(ApiVersion::new(1, 41), Some(ApiVersion::new(1, 12)));
        assert_eq!(c.api_version(), Some(ApiVersion::new(1, 41)));
        c.set_api_version(ApiVersion::new(1, 52), Some(ApiVersion::new(1, 44)));
        assert_eq!(c.api_version(), Some(MAX_API_VERSION));
        c.set_api_version(ApiVersion::new(1, 60), Some(ApiVersion::new(1, 50)));
        assert_eq!(c.api_version(), Some(ApiVersion::new(1, 50)));
        assert_eq!(c.path("/_ping"), "/v1.50/_ping");
    }

    #[test]
    fn pinned_version_survives_negotiation() {
        let env = |k: &str| match k {
            "DOCKER_HOST" => Some("unix:///x.sock".to_string()),
            "DOCKER_API_VERSION" => Some("1.40".to_string()),
            _ => None,
        };
        let mut c = Client::from_env(&env).unwrap();
        c.set_api_version(ApiVersion::new(1, 41), None);
        assert_eq!(c.api_version(), Some(ApiVersion::new(1, 40)));
        let env = |k: &str| match k {
            "DOCKER_HOST" => Some("unix:///x.sock".to_string()),
            "DOCKER_API_VERSION" => Some("latest".to_string()),
            _ => None,
        };
        let err = Client::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("DOCKER_API_VERSION"), "{err}");
    }

    #[test]
    fn queries_and_segments_are_escaped() {
        assert_eq!(
            query(&[("fromImage", "docker.io/library/ubuntu"), ("tag", "22.04")]),
            "?fromImage=docker.io%2Flibrary%2Fubuntu&tag=22.04"
        );
        assert_eq!(
            query(&[("filters", r#"{"label":["a=b"]}"#)]),
            "?filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
        assert_eq!(query(&[]), "");
        assert_eq!(segment("ghcr.io/a/b:1"), "ghcr.io/a/b:1");
        assert_eq!(segment("x y?#%"), "x%20y%3F%23%25");
    }
}
