//! Registry credentials for a pull, found the way the Docker CLI finds them, and the
//! `X-Registry-Auth` header that carries them. Secrets stay in [`Secret`]s and never reach a
//! log line or an error message.
//!
//! Sources, first hit wins:
//! 1. `DOCKER_AUTH_CONFIG`: inline JSON of the config-file shape;
//! 2. the CLI config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
//!
//! Within one source: the registry's `credHelpers` entry, else `credsStore`, runs
//! `docker-credential-<name> get`; if the helper has nothing for the registry, the `auths` entry
//! is used (`auth` = base64 `user:password`, or `username`/`password`, or `identitytoken`).

use std::fmt;
use std::time::Duration;

use super::base64;
use super::cli_config::{AuthEntry, CliConfig, EnvLookup, var};
use super::credhelper;
use super::error::DockerError;
use super::reference::{ImageRef, same_registry};
use crate::settings::Secret;

/// How long a credential helper may take.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry key, e.g. `https://index.docker.io/v1/` or `ghcr.io`.
    pub server_address: String,
    pub credential: Credential,
}

/// A username and password, or an identity (refresh) token.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Password { username: String, password: Secret },
    IdentityToken(Secret),
}

impl RegistryAuth {
    /// Every form of the secret that could end up in text: the password or token, and the
    /// header value that encodes it (for the log redactor).
    pub fn secret_values(&self) -> Vec<String> {
        let secret = match &self.credential {
            Credential::Password { password, .. } => password.expose().to_owned(),
            Credential::IdentityToken(token) => token.expose().to_owned(),
        };
        vec![secret, self.header_value()]
    }

    /// The `X-Registry-Auth` header value: base64url of the JSON the daemon expects.
    pub fn header_value(&self) -> String {
        let json = match &self.credential {
            Credential::Password { username, password } => serde_json::json!({
                "username": username,
                "password": password.expose(),
                "serveraddress": self.server_address,
            }),
            Credential::IdentityToken(token) => serde_json::json!({
                "identitytoken": token.expose(),
                "serveraddress": self.server_address,
            }),
        };
        base64::encode_url_safe(json.to_string().as_bytes())
    }

    /// The username, if any (safe to log).
    pub fn username(&self) -> Option<&str> {
        match &self.credential {
            Credential::Password { username, .. } => Some(username),
            Credential::IdentityToken(_) => None,
        }
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.credential {
            Credential::Password { .. } => "password",
            Credential::IdentityToken(_) => "identity token",
        };
        f.debug_struct("RegistryAuth")
            .field("server_address", &self.server_address)
            .field("username", &self.username())
            .field("credential", &kind)
            .finish()
    }
}

/// Finds credentials for `image`'s registry; `Ok(None)` means pull anonymously.
pub fn resolve(env: EnvLookup<'_>, image: &ImageRef) -> Result<Option<RegistryAuth>, DockerError> {
    resolve_with_timeout(env, image, HELPER_TIMEOUT)
}

pub(crate) fn resolve_with_timeout(
    env: EnvLookup<'_>,
    image: &ImageRef,
    helper_timeout: Duration,
) -> Result<Option<RegistryAuth>, DockerError> {
    let key = image.auth_key();
    let fail = |message: String| DockerError::Credentials {
        registry: key.to_string(),
        message,
    };
    let mut sources = Vec::new();
    if let Some(inline) = var(env, "DOCKER_AUTH_CONFIG") {
        sources.push((
            "DOCKER_AUTH_CONFIG".to_string(),
            CliConfig::parse(&inline, "DOCKER_AUTH_CONFIG")?,
        ));
    }
    if let Some((path, config)) = CliConfig::load(env)? {
        sources.push((path.display().to_string(), config));
    }
    for (origin, config) in &sources {
        if let Some((helper, why)) = helper_for(config, key) {
            let found = credhelper::get(env, helper, key, helper_timeout)
                .map_err(|e| fail(format!("{e} ({why} in {origin})")))?;
            if let Some(auth) = found {
                return Ok(Some(auth));
            }
        }
        if let Some(entry) = auths_entry(config, key)
            && let Some(auth) =
                from_entry(key, entry).map_err(|m| fail(format!("{m} in {origin}")))?
        {
            return Ok(Some(auth));
        }
    }
    Ok(None)
}

/// The helper for `key`: its `credHelpers` entry, else the `credsStore`.
fn helper_for<'a>(config: &'a CliConfig, key: &str) -> Option<(&'a str, &'static str)> {
    let specific = config
        .cred_helpers
        .get(key)
        .or_else(|| {
            config
                .cred_helpers
                .iter()
                .find(|(k, _)| same_registry(k, key))
                .map(|(_, v)| v)
        })
        .filter(|h| !h.is_empty());
    match specific {
        Some(helper) => Some((helper, "credHelpers")),
        None => config
            .creds_store
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| (h, "credsStore")),
    }
}

/// The `auths` entry for `key`: exact key first, then any key naming the same registry.
fn auths_entry<'a>(config: &'a CliConfig, key: &str) -> Option<&'a AuthEntry> {
    config.auths.get(key).or_else(|| {
        config
            .auths
            .iter()
            .find(|(k, _)| same_registry(k, key))
            .map(|(_, v)| v)
    })
}

/// Turns an `auths` entry into credentials; an empty entry (as Docker Desktop writes when the
/// secret lives in its store) is `None`. Error messages never include the values.
fn from_entry(key: &str, entry: &AuthEntry) -> Result<Option<RegistryAuth>, String> {
    let auth = |credential| {
        Ok(Some(RegistryAuth {
            server_address: key.to_string(),
            credential,
        }))
    };
    let present = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(token) = present(&entry.identitytoken) {
        return auth(Credential::IdentityToken(Secret::new(token)));
    }
    if let Some(encoded) = present(&entry.auth) {
        let decoded = base64::decode(&encoded)
            .map_err(|e| format!("the auth field of {key:?} is not valid base64 ({e})"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| format!("the auth field of {key:?} is not UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| format!("the auth field of {key:?} is not user:password"))?;
        if username.is_empty() {
            return Ok(None);
        }
        return auth(Credential::Password {
            username: username.to_string(),
            password: Secret::new(password),
        });
    }
    match (present(&entry.username), present(&entry.password)) {
        (Some(username), Some(password)) => auth(Credential::Password {
            username,
            password: Secret::new(password),
        }),
        _ => Ok(None),
    }
}

/// A credential helper's answer: `<token>` as the username means an identity token.
pub(crate) fn from_helper(key: &str, username: String, secret: String) -> Option<RegistryAuth> {
    if secret.is_empty() {
        return None;
    }
    let credential = if username == "<token>" {
        Credential::IdentityToken(Secret::new(secret))
    } else if username.is_empty() {
        return None;
    } else {
        Credential::Password {
            username,
            password: Secret::new(secret),
        }
    };
    Some(RegistryAuth {
        server_address: key.to_string(),
        credential,
    })
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
