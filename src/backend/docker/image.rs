//! Making an image available under the pull policy, with registry credentials, and checking
//! that it is built for the daemon's platform.

use crate::docker::{Client, DockerError, EnvLookup, ImageInspect, ImageRef, Platform, auth};
use crate::settings::PullPolicy;

/// Why an image could not be made ready. `Display` is the user-facing message (upstream's
/// wording where upstream has one).
#[derive(Debug)]
pub enum ImageError {
    Invalid(String),
    NotLocal {
        image: String,
    },
    Inspect {
        image: String,
        source: DockerError,
    },
    Pull(DockerError),
    /// Pulled (or found) but gone when inspected.
    Vanished {
        image: String,
    },
    Platform {
        image: String,
        found: Platform,
        wanted: Platform,
    },
}

impl ImageError {
    /// Whether the error came from an [`crate::docker::Abort`] (the task was cancelled).
    pub fn is_aborted(&self) -> bool {
        match self {
            ImageError::Inspect { source, .. } | ImageError::Pull(source) => source.is_aborted(),
            _ => false,
        }
    }
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::Invalid(message) => f.write_str(message),
            ImageError::NotLocal { image } => {
                write!(
                    f,
                    "image {image} not found locally and pull policy is Never"
                )
            }
            ImageError::Inspect { image, source } => {
                write!(f, "failed to inspect local image {image}: {source}")
            }
            ImageError::Pull(e) => e.fmt(f),
            ImageError::Vanished { image } => {
                write!(f, "image {image} is not present after pulling it")
            }
            ImageError::Platform {
                image,
                found,
                wanted,
            } => write!(
                f,
                "image {image} is for platform {found}, but this worker requires {wanted}"
            ),
        }
    }
}

impl std::error::Error for ImageError {}

/// What [`prepare`] needs besides the image.
pub struct Prepare<'a> {
    pub policy: PullPolicy,
    pub platform: &'a Platform,
    /// Environment for credential lookup (`DOCKER_CONFIG`, `HOME`, `PATH`, `DOCKER_AUTH_CONFIG`).
    pub env: EnvLookup<'a>,
    /// Task id for log lines.
    pub task_id: &'a str,
}

/// Makes `image` available under the pull policy and returns its inspect data:
/// - `Always`: pull (for the daemon's platform, with credentials), then inspect;
/// - `IfNotPresent`: inspect; pull only when missing (any other inspect error is an error);
/// - `Never`: inspect only.
///
/// In every case the image's platform must be the daemon's.
pub fn prepare(
    client: &Client,
    image: &str,
    how: &Prepare<'_>,
) -> Result<ImageInspect, ImageError> {
    let reference = ImageRef::parse(image).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let inspect = || {
        client
            .inspect_image(image)
            .map_err(|source| ImageError::Inspect {
                image: image.to_string(),
                source,
            })
    };
    let found = match how.policy {
        PullPolicy::Always => None,
        PullPolicy::IfNotPresent | PullPolicy::Never => inspect()?,
    };
    let inspected = match (found, how.policy) {
        (Some(found), _) => {
            log::debug!("Task {}: using local image {image}", how.task_id);
            found
        }
        (None, PullPolicy::Never) => {
            return Err(ImageError::NotLocal {
                image: image.to_string(),
            });
        }
        (None, _) => {
            pull(client, image, &reference, how)?;
            inspect()?.ok_or_else(|| ImageError::Vanished {
                image: image.to_string(),
            })?
        }
    };
    let found = inspected.platform();
    if found.os != how.platform.os || found.arch != how.platform.arch {
        return Err(ImageError::Platform {
            image: image.to_string(),
            found,
            wanted: how.platform.clone(),
        });
    }
    Ok(inspected)
}

fn pull(
    client: &Client,
    image: &str,
    reference: &ImageRef,
    how: &Prepare<'_>,
) -> Result<(), ImageError> {
    // As upstream: a credential lookup problem is a warning, and the pull goes anonymous.
    let credentials = match auth::resolve(how.env, reference) {
        Ok(found) => found,
        Err(e) => {
            log::warn!(
                "Task {}: pulling {image} without credentials: {e}",
                how.task_id
            );
            None
        }
    };
    // Registered for the pull: no log line (a daemon error, a debug dump) can show them.
    let _secrets = credentials
        .as_ref()
        .map(|c| crate::redact::register(c.secret_values()));
    match credentials.as_ref().and_then(|c| c.username()) {
        Some(user) => log::info!(
            "Task {}: pulling image {image} as {user} for {}",
            how.task_id,
            how.platform
        ),
        None => log::info!(
            "Task {}: pulling image {image} for {}",
            how.task_id,
            how.platform
        ),
    }
    let mut last = String::new();
    client
        .pull_image(
            reference,
            Some(how.platform),
            credentials.as_ref(),
            &mut |p| {
                // One debug line per status change, not one per progress tick.
                if p.status != last {
                    log::debug!("Task {}: pull {image}: {}", how.task_id, p.status);
                    last.clone_from(&p.status);
                }
            },
        )
        .map_err(|e| match e {
            // Keep the client's "failed to pull image X: …" wording; name the image as given.
            DockerError::Pull { message, .. } => ImageError::Pull(DockerError::Pull {
                image: image.to_string(),
                message,
            }),
            other if other.is_aborted() => ImageError::Pull(other),
            other => ImageError::Pull(DockerError::Pull {
                image: image.to_string(),
                message: other.to_string(),
            }),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_upstreams() {
        let e = ImageError::NotLocal {
            image: "ubuntu:22.04".into(),
        };
        assert_eq!(
            e.to_string(),
            "image ubuntu:22.04 not found locally and pull policy is Never"
        );
        let e = ImageError::Platform {
            image: "x".into(),
            found: Platform {
                os: "linux".into(),
                arch: "arm64".into(),
            },
            wanted: Platform {
                os: "linux".into(),
                arch: "amd64".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "image x is for platform linux/arm64, but this worker requires linux/amd64"
        );
        let e = ImageError::Inspect {
            image: "x".into(),
            source: DockerError::aborted("GET /images/x/json"),
        };
        assert!(
            e.to_string()
                .starts_with("failed to inspect local image x: ")
        );
        assert!(e.is_aborted());
    }
}
