//! The Docker CLI's config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//! the parts we read, namely `currentContext`, `auths`, `credsStore` and `credHelpers`.
//! Unknown keys are ignored; the environment is injected so tests never touch the process env.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::DockerError;
use crate::redact::scrub_serde_message;

/// Looks up an environment variable; injected so tests stay hermetic.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// An environment variable, with empty meaning unset (as the Docker CLI treats them).
pub(crate) fn var(env: EnvLookup<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// `$DOCKER_CONFIG`, else `$HOME/.docker`; `None` when neither is set.
pub(crate) fn config_dir(env: EnvLookup<'_>) -> Option<PathBuf> {
    var(env, "DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|home| Path::new(&home).join(".docker")))
}

/// One `auths` entry. Values are secrets: never format this type.
#[derive(Clone, Default, Deserialize)]
pub(crate) struct AuthEntry {
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

/// The parts of `config.json` we use.
#[derive(Clone, Default, Deserialize)]
pub(crate) struct CliConfig {
    #[serde(default, rename = "currentContext")]
    pub current_context: Option<String>,
    #[serde(default, deserialize_with = "auth_entries")]
    pub auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
    #[serde(default, rename = "credHelpers", deserialize_with = "null_as_default")]
    pub cred_helpers: BTreeMap<String, String>,
}

/// `null` values are common (`"auths": null` from some tools): treat them as absent.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// `auths`, entry by entry, so a malformed entry is reported by its registry key. The entry's
/// value is a credential: serde's message quotes it, so the message is scrubbed here and again
/// in [`CliConfig::parse`], which keeps serde's line and column.
fn auth_entries<'de, D>(d: D) -> Result<BTreeMap<String, AuthEntry>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let raw: BTreeMap<String, serde_json::Value> = null_as_default(d)?;
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let entry = Option::<AuthEntry>::deserialize(value).map_err(|e| {
            D::Error::custom(format!(
                "auths entry for {key}: {} (each entry is an object such as {{\"auth\": \"<base64 user:password>\"}})",
                scrub_serde_message(&e.to_string())
            ))
        })?;
        out.insert(key, entry.unwrap_or_default());
    }
    Ok(out)
}

impl CliConfig {
    /// Parses config JSON; `origin` names the file or variable in the error.
    pub(crate) fn parse(json: &str, origin: &str) -> Result<CliConfig, DockerError> {
        serde_json::from_str::<Option<CliConfig>>(json)
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                DockerError::Config(format!(
                    "cannot parse Docker CLI config {origin}: {}: fix or remove it, or set DOCKER_HOST",
                    scrub_serde_message(&e.to_string())
                ))
            })
    }

    /// Reads `config.json` from the config dir; `Ok(None)` when there is none.
    pub(crate) fn load(env: EnvLookup<'_>) -> Result<Option<(PathBuf, CliConfig)>, DockerError> {
        let Some(dir) = config_dir(env) else {
            return Ok(None);
        };
        let path = dir.join("config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let config = CliConfig::parse(&text, &path.display().to_string())?;
                Ok(Some((path, config)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DockerError::Config(format!(
                "cannot read Docker CLI config {}: {e}",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_dir_prefers_docker_config() {
        let env = |k: &str| match k {
            "DOCKER_CONFIG" => Some("/cfg".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(config_dir(&env), Some(PathBuf::from("/cfg")));
        let env = |k: &str| match k {
            "DOCKER_CONFIG" => Some(String::new()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(config_dir(&env), Some(PathBuf::from("/home/u/.docker")));
        assert_eq!(config_dir(&|_: &str| None), None);
    }

    #[test]
    fn parses_the_parts_we_use_and_ignores_the_rest() {
        let c = CliConfig::parse(
            r#"{"auths":{"r.io":{"auth":"dTpw"}},"credsStore":"desktop",
                "credHelpers":{"gcr.io":"gcloud"},"currentContext":"remote",
                "psFormat":"table","plugins":{}}"#,
            "test",
        )
        .unwrap();
        assert_eq!(c.current_context.as_deref(), Some("remote"));
        assert_eq!(c.auths["r.io"].auth.as_deref(), Some("dTpw"));
        assert_eq!(c.creds_store.as_deref(), Some("desktop"));
        assert_eq!(c.cred_helpers["gcr.io"], "gcloud");
        assert!(CliConfig::parse("null", "t").unwrap().auths.is_empty());
        let c = CliConfig::parse(r#"{"auths":null,"credHelpers":null}"#, "t").unwrap();
        assert!(c.auths.is_empty() && c.cred_helpers.is_empty());
        let err = CliConfig::parse("{", "/x/config.json").err().unwrap();
        assert!(err.to_string().contains("/x/config.json"), "{err}");
    }

    #[test]
    fn a_malformed_auths_entry_names_its_key_and_position_never_the_credential() {
        for json in [
            "{\"auths\": {\"ghcr.io\": \"dXNlcjpzM2NyM3Q=\"}}",
            "{\"auths\": {\"ghcr.io\": {\"auth\": 12, \"password\": \"dXNlcjpzM2NyM3Q=\"}}}",
            "{\"auths\": {\"ghcr.io\": {\"auth\": [\"dXNlcjpzM2NyM3Q=\"]}}}",
        ] {
            let err = CliConfig::parse(json, "/x/config.json")
                .err()
                .unwrap()
                .to_string();
            assert!(!err.contains("dXNlcjpzM2NyM3Q"), "{err}");
            assert!(err.contains("ghcr.io"), "{err}");
            assert!(err.contains("line 1 column"), "{err}");
        }
        let err = CliConfig::parse("{\"credsStore\": {\"s3cr3tvalue\": 1}}", "t")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("s3cr3tvalue"), "{err}");
    }
}
