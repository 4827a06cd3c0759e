//! Image reference normalisation, as the Docker CLI does it (`distribution/reference`):
//! `ubuntu` → `docker.io/library/ubuntu:latest`, registry detection, and the key under which
//! credentials for the image are stored.

use std::fmt;

/// Docker Hub's canonical domain.
pub const DOCKER_HUB: &str = "docker.io";
/// The credentials key of Docker Hub in the CLI config (a historical URL).
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), e.g. `docker.io`, `ghcr.io`, `localhost:5000`.
    pub registry: String,
    /// Path within the registry, e.g. `library/ubuntu`.
    pub repository: String,
    /// `None` when a digest is given without a tag.
    pub tag: Option<String>,
    /// `sha256:…` when pinned.
    pub digest: Option<String>,
}

/// Why a reference was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidReference {
    pub reference: String,
    pub reason: &'static str,
}

impl fmt::Display for InvalidReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid image reference {:?}: {}",
            self.reference, self.reason
        )
    }
}

impl std::error::Error for InvalidReference {}

fn is_registry(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

impl ImageRef {
    /// Parses and normalises `reference` (`[registry/]path[:tag][@digest]`). A reference with
    /// neither tag nor digest gets the tag `latest`.
    pub fn parse(reference: &str) -> Result<ImageRef, InvalidReference> {
        let bad = |reason| InvalidReference {
            reference: reference.to_string(),
            reason,
        };
        if reference.is_empty() {
            return Err(bad("empty"));
        }
        if reference.len() > 512 {
            return Err(bad("longer than 512 bytes"));
        }
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => {
                let (algo, hex) = digest
                    .split_once(':')
                    .ok_or(bad("digest has no algorithm"))?;
                if algo.is_empty()
                    || !algo
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    || hex.len() < 32
                    || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(bad("malformed digest"));
                }
                (name, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        // The tag follows the last ':' after the last '/', so a registry port is not a tag.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &name[last_slash + i + 1..];
                if tag.is_empty()
                    || tag.len() > 128
                    || tag.starts_with(['.', '-'])
                    || !tag
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                {
                    return Err(bad("malformed tag"));
                }
                (&name[..last_slash + i], Some(tag.to_string()))
            }
            None => (name, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if is_registry(first) => (first, rest),
            _ => (DOCKER_HUB, name),
        };
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(bad("malformed registry host"));
        }
        let registry = match registry {
            "index.docker.io" => DOCKER_HUB,
            other => other,
        };
        if path.is_empty() {
            return Err(bad("empty repository name"));
        }
        for component in path.split('/') {
            if component.is_empty() {
                return Err(bad("empty path component"));
            }
            if !component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            {
                return Err(bad("repository names must be lowercase [a-z0-9._-]"));
            }
            if !component.starts_with(|c: char| c.is_ascii_alphanumeric())
                || !component.ends_with(|c: char| c.is_ascii_alphanumeric())
            {
                return Err(bad("path components must start and end with [a-z0-9]"));
            }
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag,
        };
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The key of this image's registry in the CLI config's `auths` and `credHelpers`.
    pub fn auth_key(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_AUTH_KEY
        } else {
            &self.registry
        }
    }

    /// The fully qualified repository, e.g. `docker.io/library/ubuntu`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short name the CLI shows: `ubuntu`, `warpdotdev/warp-agent`, `ghcr.io/org/img`.
    pub fn familiar_name(&self) -> String {
        if self.registry != DOCKER_HUB {
            return self.name();
        }
        match self.repository.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => self.repository.clone(),
        }
    }

    /// What `POST /images/create` takes as `tag`: the digest when pinned, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// The fully qualified reference, e.g. `docker.io/library/ubuntu:22.04`; accepted by every
/// endpoint that takes an image name.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The host part of a registry key as stored in CLI configs: `https://index.docker.io/v1/` →
/// `index.docker.io`, `registry.example.com:5000/v2` → `registry.example.com:5000`.
pub fn registry_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// Whether two registry keys name the same registry (Docker Hub has several spellings).
pub fn same_registry(a: &str, b: &str) -> bool {
    fn canonical(key: &str) -> String {
        let host = registry_host(key).to_ascii_lowercase();
        match host.as_str() {
            "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => host,
        }
    }
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(s).unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_the_docker_cli() {
        let s = |x: &str| x.to_string();
        assert_eq!(
            parts("ubuntu"),
            (s("docker.io"), s("library/ubuntu"), Some(s("latest")), None)
        );
        assert_eq!(
            parts("ubuntu:22.04"),
            (s("docker.io"), s("library/ubuntu"), Some(s("22.04")), None)
        );
        assert_eq!(
            parts("warpdotdev/warp-agent:1"),
            (
                s("docker.io"),
                s("warpdotdev/warp-agent"),
                Some(s("1")),
                None
            )
        );
        assert_eq!(
            parts("docker.io/library/ubuntu"),
            (s("docker.io"), s("library/ubuntu"), Some(s("latest")), None)
        );
        assert_eq!(
            parts("index.docker.io/ubuntu"),
            (s("docker.io"), s("library/ubuntu"), Some(s("latest")), None)
        );
        assert_eq!(
            parts("localhost/img"),
            (s("localhost"), s("img"), Some(s("latest")), None)
        );
        assert_eq!(
            parts("localhost:5000/a/b:v1"),
            (s("localhost:5000"), s("a/b"), Some(s("v1")), None)
        );
        assert_eq!(
            parts("ghcr.io/org/img"),
            (s("ghcr.io"), s("org/img"), Some(s("latest")), None)
        );
        // No dot, colon or localhost: a Docker Hub user, not a registry.
        assert_eq!(
            parts("myregistry/img"),
            (s("docker.io"), s("myregistry/img"), Some(s("latest")), None)
        );
        assert_eq!(
            parts(&format!("ubuntu@{DIGEST}")),
            (s("docker.io"), s("library/ubuntu"), None, Some(s(DIGEST)))
        );
        assert_eq!(
            parts(&format!("r.io:443/x:1@{DIGEST}")),
            (s("r.io:443"), s("x"), Some(s("1")), Some(s(DIGEST)))
        );
    }

    #[test]
    fn derived_names() {
        let r = ImageRef::parse("ubuntu:22.04").unwrap();
        assert_eq!(r.auth_key(), DOCKER_HUB_AUTH_KEY);
        assert_eq!(r.familiar_name(), "ubuntu");
        assert_eq!(r.name(), "docker.io/library/ubuntu");
        assert_eq!(r.to_string(), "docker.io/library/ubuntu:22.04");
        assert_eq!(r.tag_or_digest(), "22.04");

        let r = ImageRef::parse("warpdotdev/warp-agent").unwrap();
        assert_eq!(r.familiar_name(), "warpdotdev/warp-agent");

        assert!(ImageRef::parse("ghcr.io/org/img@").is_err());

        let r = ImageRef::parse(&format!("ghcr.io/org/img@{DIGEST}")).unwrap();
        assert_eq!(r.auth_key(), "ghcr.io");
        assert_eq!(r.familiar_name(), "ghcr.io/org/img");
        assert_eq!(r.tag_or_digest(), DIGEST);
        assert_eq!(r.to_string(), format!("ghcr.io/org/img@{DIGEST}"));
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "Ubuntu",
            "ubuntu:",
            "ubuntu:-x",
            "ubuntu:a b",
            "/ubuntu",
            "ubuntu/",
            "a//b",
            "_a",
            "a_",
            "ubuntu@sha256:zz",
            "ubuntu@sha256",
            "ubuntu@:0123456789abcdef0123456789abcdef",
            "reg istry.io/a",
            "ubuntu\n",
            "docker.io/",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert_eq!(err.reference, bad);
            assert!(err.to_string().contains("invalid image reference"));
        }
        assert!(ImageRef::parse(&"a".repeat(600)).is_err());
    }

    #[test]
    fn registry_keys_compare_by_host() {
        assert_eq!(
            registry_host("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(registry_host("http://r.io:5000/v2"), "r.io:5000");
        assert_eq!(registry_host("ghcr.io"), "ghcr.io");
        assert!(same_registry("https://index.docker.io/v1/", "docker.io"));
        assert!(same_registry("index.docker.io", "registry-1.docker.io"));
        assert!(same_registry("https://GHCR.io", "ghcr.io"));
        assert!(!same_registry("ghcr.io", "docker.io"));
        assert!(!same_registry("r.io:5000", "r.io"));
    }
}
