//! `/_ping`, `/version` and startup negotiation.

use std::fmt;

use serde::Deserialize;

use super::client::{ApiVersion, Client, MIN_API_VERSION, PING_TIMEOUTS};
use super::error::DockerError;
use crate::http::Body;

/// `GET /version`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    pub min_api_version: Option<String>,
    #[serde(rename = "Os")]
    pub os: String,
    #[serde(rename = "Arch")]
    pub arch: String,
}

/// An OS/architecture pair as Docker names them, e.g. `linux/amd64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl Platform {
    /// Whether the worker supports running tasks on it.
    pub fn is_supported(&self) -> bool {
        self.os == "linux" && matches!(self.arch.as_str(), "amd64" | "arm64")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)
    }
}

/// What [`Client::negotiate`] learnt about the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Engine version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// The daemon's newest API version.
    pub daemon_api_version: ApiVersion,
    /// The version this client now speaks.
    pub api_version: ApiVersion,
    pub platform: Platform,
}

impl Client {
    /// `GET /_ping` (each phase bounded by 5 s). Returns the `Api-Version` header if sent.
    pub fn ping(&self) -> Result<Option<String>, DockerError> {
        let response = self.send(
            "GET",
            self.path("/_ping"),
            Vec::new(),
            Body::Empty,
            PING_TIMEOUTS,
        )?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        let api = response.head.header("api-version").map(str::to_string);
        response.bytes(1024)?;
        Ok(api)
    }

    /// `GET /version`.
    pub fn version(&self) -> Result<VersionInfo, DockerError> {
        let response = self.call("GET", self.path("/version"))?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        response.json()
    }

    /// Startup: ping, read the version, settle the API version (the lower of ours and the
    /// daemon's, unless `DOCKER_API_VERSION` pinned one) and check the daemon's platform.
    pub fn negotiate(&mut self) -> Result<Daemon, DockerError> {
        self.ping()?;
        let info = self.version()?;
        let bad_version = |v: &str| DockerError::Json {
            request: "GET /version".to_string(),
            message: format!("unparsable ApiVersion {v:?}"),
        };
        let daemon_api =
            ApiVersion::parse(&info.api_version).ok_or_else(|| bad_version(&info.api_version))?;
        let daemon_min = info.min_api_version.as_deref().and_then(ApiVersion::parse);
        self.set_api_version(daemon_api, daemon_min);
        let api_version = self.api_version().unwrap_or(daemon_api);
        if api_version < MIN_API_VERSION {
            return Err(DockerError::ApiTooOld {
                version: api_version.to_string(),
                minimum: MIN_API_VERSION.to_string(),
            });
        }
        let platform = Platform {
            os: info.os,
            arch: info.arch,
        };
        if !platform.is_supported() {
            return Err(DockerError::UnsupportedPlatform(platform.to_string()));
        }
        if self.is_pinned() {
            log::debug!("Docker API version pinned by DOCKER_API_VERSION to {api_version}");
        }
        Ok(Daemon {
            version: info.version,
            daemon_api_version: daemon_api,
            api_version,
            platform,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_version_parses() {
        let raw = include_bytes!("../../tests/support/fixtures/docker/version.http");
        let body = crate::docker::testutil::fixture_body(raw);
        let v: VersionInfo = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.api_version, "1.41");
        assert_eq!(v.min_api_version.as_deref(), Some("1.12"));
        assert_eq!((v.os.as_str(), v.arch.as_str()), ("linux", "amd64"));
    }

    #[test]
    fn only_linux_amd64_and_arm64_are_supported() {
        let p = |os: &str, arch: &str| Platform {
            os: os.into(),
            arch: arch.into(),
        };
        assert!(p("linux", "amd64").is_supported());
        assert!(p("linux", "arm64").is_supported());
        assert!(!p("linux", "arm").is_supported());
        assert!(!p("linux", "s390x").is_supported());
        assert!(!p("windows", "amd64").is_supported());
        assert_eq!(p("windows", "amd64").to_string(), "windows/amd64");
    }
}
