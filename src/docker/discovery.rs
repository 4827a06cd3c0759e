//! Where is the daemon? The Docker CLI's answer, in its order:
//!
//! 1. `DOCKER_HOST` (with `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, `DOCKER_TLS` for `tcp://`);
//! 2. `DOCKER_CONTEXT`;
//! 3. `currentContext` of the CLI config (`$DOCKER_CONFIG/config.json`, else `~/.docker/…`);
//! 4. the default socket `/var/run/docker.sock`, and only when it does not exist, the rootless
//!    `$XDG_RUNTIME_DIR/docker.sock`, then Docker Desktop's `~/.docker/run/docker.sock`.
//!
//! A context is read from the CLI's context store: `contexts/meta/<sha256(name)>/meta.json`
//! (`Endpoints.docker.Host`, `SkipTLSVerify`) and `contexts/tls/<sha256(name)>/docker/*.pem`. The
//! context named `default` means "no context": step 4.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cli_config::{CliConfig, EnvLookup, config_dir, var};
use super::endpoint::{Address, Endpoint};
use super::error::DockerError;
use super::tls::{self, TlsFiles};

/// The daemon's conventional socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Finds the endpoint; `default_socket` is injected so tests need not depend on this machine.
pub(crate) fn discover(env: EnvLookup<'_>, default_socket: &Path) -> Result<Endpoint, DockerError> {
    if let Some(host) = var(env, "DOCKER_HOST") {
        return parse_host(&host, "DOCKER_HOST".to_string(), env_tls(env));
    }
    let context = match var(env, "DOCKER_CONTEXT") {
        Some(name) => Some((name, "DOCKER_CONTEXT".to_string())),
        None => match CliConfig::load(env)? {
            Some((path, config)) => config
                .current_context
                .filter(|name| !name.is_empty())
                .map(|name| (name, format!("currentContext in {}", path.display()))),
            None => None,
        },
    };
    match context {
        Some((name, via)) if name != "default" => {
            let dir = config_dir(env).ok_or_else(|| {
                DockerError::Config(format!(
                    "Docker context {name:?} ({via}) needs the CLI config directory, but neither DOCKER_CONFIG nor HOME is set"
                ))
            })?;
            context_endpoint(&dir, &name, &via)
        }
        _ => Ok(local_socket(env, default_socket)),
    }
}

fn local_socket(env: EnvLookup<'_>, default_socket: &Path) -> Endpoint {
    let endpoint = |path: PathBuf, source: &str| Endpoint::new(Address::Unix(path), None, source);
    if default_socket.exists() {
        return endpoint(default_socket.to_path_buf(), "default socket");
    }
    let rootless = var(env, "XDG_RUNTIME_DIR").map(|d| Path::new(&d).join("docker.sock"));
    if let Some(path) = rootless.filter(|p| p.exists()) {
        return endpoint(path, "rootless socket in XDG_RUNTIME_DIR");
    }
    let desktop = var(env, "HOME").map(|h| Path::new(&h).join(".docker/run/docker.sock"));
    if let Some(path) = desktop.filter(|p| p.exists()) {
        return endpoint(path, "Docker Desktop socket");
    }
    // Nothing exists: keep the conventional path so the connect error names it.
    endpoint(default_socket.to_path_buf(), "default socket")
}

/// How a `tcp://` endpoint is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsChoice {
    enabled: bool,
    files: TlsFiles,
}

/// The environment's TLS settings, as `docker` and the Go client read them: TLS when
/// `DOCKER_TLS_VERIFY`, `DOCKER_TLS` or `DOCKER_CERT_PATH` is set; verification only with
/// `DOCKER_TLS_VERIFY`; files from `DOCKER_CERT_PATH`, else the CLI config directory.
fn env_tls(env: EnvLookup<'_>) -> TlsChoice {
    let verify = var(env, "DOCKER_TLS_VERIFY").is_some();
    let cert_path = var(env, "DOCKER_CERT_PATH");
    let enabled = verify || cert_path.is_some() || var(env, "DOCKER_TLS").is_some();
    let dir = cert_path
        .map(PathBuf::from)
        .or_else(|| config_dir(env))
        .unwrap_or_default();
    TlsChoice {
        enabled,
        files: TlsFiles { dir, verify },
    }
}

fn unsupported(raw: &str, source: &str, why: &str) -> DockerError {
    DockerError::Config(format!(
        "unsupported Docker host {raw:?} (from {source}): {why}"
    ))
}

/// Parses `unix:///path`, `tcp://host[:port]`, `http://…` or `https://…`.
fn parse_host(raw: &str, source: String, tls: TlsChoice) -> Result<Endpoint, DockerError> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(unsupported(
            raw,
            &source,
            "expected unix:///path, tcp://host:port or https://host:port",
        ));
    };
    let (address, tls) = match scheme {
        "unix" => {
            if !rest.starts_with('/') {
                return Err(unsupported(
                    raw,
                    &source,
                    "the socket path must be absolute",
                ));
            }
            (Address::Unix(PathBuf::from(rest)), None)
        }
        "tcp" | "http" | "https" => {
            let tls = match scheme {
                "http" => None,
                "https" if !tls.enabled => Some(TlsFiles {
                    verify: true,
                    ..tls.files
                }),
                _ => tls.enabled.then_some(tls.files),
            };
            let default_port = if tls.is_some() { 2376 } else { 2375 };
            let (host, port) = parse_authority(rest, default_port)
                .map_err(|why| unsupported(raw, &source, why))?;
            let config = tls.as_ref().map(tls::client_config).transpose()?;
            (Address::Tcp { host, port }, config)
        }
        "ssh" => {
            return Err(unsupported(
                raw,
                &source,
                "ssh:// is not supported; forward the socket (ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST) and set DOCKER_HOST=unix:///tmp/docker.sock",
            ));
        }
        _ => {
            return Err(unsupported(
                raw,
                &source,
                "expected unix://, tcp://, http:// or https://",
            ));
        }
    };
    Ok(Endpoint::new(address, tls, source))
}

/// `host[:port][/]`, with IPv6 hosts in brackets.
fn parse_authority(rest: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err("a base path after the host is not supported");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed [ in IPv6 host")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("junk after IPv6 host")?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("empty host");
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok().filter(|&p| p != 0).ok_or("invalid port")?,
    };
    Ok((host.to_string(), port))
}

/// The hex SHA-256 of a context name: its directory name in the context store.
pub(crate) fn context_id(name: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
struct ContextMeta {
    #[serde(rename = "Endpoints", default)]
    endpoints: BTreeMap<String, ContextEndpoint>,
}

#[derive(Deserialize)]
struct ContextEndpoint {
    #[serde(rename = "Host", default)]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

/// Resolves context `name` from the store under `config_dir`; `via` says who chose it.
fn context_endpoint(config_dir: &Path, name: &str, via: &str) -> Result<Endpoint, DockerError> {
    let id = context_id(name);
    let meta_path = config_dir.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&meta_path).map_err(|e| {
        DockerError::Config(match e.kind() {
            io::ErrorKind::NotFound => format!(
                "Docker context {name:?} (from {via}) does not exist: no {}; run `docker context ls`, or choose another context",
                meta_path.display()
            ),
            _ => format!("cannot read Docker context {name:?} at {}: {e}", meta_path.display()),
        })
    })?;
    let meta: ContextMeta = serde_json::from_str(&text).map_err(|e| {
        DockerError::Config(format!(
            "cannot parse Docker context {name:?} at {}: {e}",
            meta_path.display()
        ))
    })?;
    let docker = meta.endpoints.get("docker");
    let Some((host, skip_verify)) = docker.and_then(|d| {
        d.host
            .clone()
            .filter(|h| !h.is_empty())
            .map(|h| (h, d.skip_tls_verify))
    }) else {
        return Err(DockerError::Config(format!(
            "Docker context {name:?} at {} has no docker endpoint host",
            meta_path.display()
        )));
    };
    let files = TlsFiles {
        dir: config_dir.join("contexts/tls").join(&id).join("docker"),
        verify: !skip_verify,
    };
    // As the CLI: TLS when the context has TLS material or explicitly skips verification.
    let tls = TlsChoice {
        enabled: skip_verify || files.any_present(),
        files,
    };
    parse_host(&host, format!("context {name:?} ({via})"), tls)
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
