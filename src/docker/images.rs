//! Images: inspect, pull (with registry auth and a streamed progress), import, remove.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

use super::auth::RegistryAuth;
use super::client::{Client, query, segment};
use super::containers::Removal;
use super::error::DockerError;
use super::reference::ImageRef;
use super::response::Response;
use super::system::Platform;
use crate::http::{Body, JsonLines, Timeouts};

/// `GET /images/{name}/json`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageInspect {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "RepoDigests", default, deserialize_with = "null_as_empty")]
    pub repo_digests: Vec<String>,
    #[serde(rename = "Os", default)]
    pub os: String,
    #[serde(rename = "Architecture", default)]
    pub architecture: String,
}

fn null_as_empty<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<Vec<String>>::deserialize(d).map(Option::unwrap_or_default)
}

impl ImageInspect {
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            arch: self.architecture.clone(),
        }
    }

    /// The content digest: after the `@` of the first repo digest, else the image id (local
    /// images have no repo digest).
    pub fn digest(&self) -> &str {
        self.repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map_or(self.id.as_str(), |(_, digest)| digest)
    }
}

/// One line of a pull or import progress stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PullProgress {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub progress: Option<String>,
}

#[derive(Deserialize)]
struct ProgressLine {
    #[serde(flatten)]
    progress: PullProgress,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

/// A progress line longer than this is not progress.
const LINE_LIMIT: usize = 1024 * 1024;

/// Pulls wait on registries: a slow manifest fetch before the head, long layer downloads after.
const PULL_HEAD: Duration = Duration::from_secs(120);
const PULL_IDLE: Duration = Duration::from_secs(300);

/// Reads a JSON-lines progress stream; an `error` inside a 200 stream is a failure. Returns the
/// last status seen.
fn read_progress(
    response: Response,
    image: &str,
    on_line: &mut dyn FnMut(&PullProgress),
) -> Result<String, DockerError> {
    let request = response.request().to_string();
    let mut lines = JsonLines::new(response.body, request.clone(), LINE_LIMIT);
    let mut last = String::new();
    while let Some(line) = lines.next_line()? {
        if let Some(p) = progress_line(line, &request, image)? {
            on_line(&p);
            last = p.status;
        }
    }
    Ok(last)
}

/// One progress line: `None` if blank, an error if it reports one.
fn progress_line(
    line: &[u8],
    request: &str,
    image: &str,
) -> Result<Option<PullProgress>, DockerError> {
    let text = line.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    let parsed: ProgressLine = serde_json::from_slice(text).map_err(|e| DockerError::Json {
        request: request.to_string(),
        message: e.to_string(),
    })?;
    let error = parsed.error_detail.and_then(|d| d.message).or(parsed.error);
    match error.filter(|m| !m.is_empty()) {
        Some(message) => Err(DockerError::Pull {
            image: image.to_string(),
            message,
        }),
        None => Ok(Some(parsed.progress)),
    }
}

impl Client {
    /// `GET /images/{name}/json`; `None` if the image is not present.
    pub fn inspect_image(&self, name: &str) -> Result<Option<ImageInspect>, DockerError> {
        self.get_json_opt(self.path(&format!("/images/{}/json", segment(name))))
    }

    /// `POST /images/create?fromImage=…`: pulls `image` (for `platform` if given), reporting
    /// each progress line to `progress`. Any failure, including an error inside the 200
    /// stream, is a [`DockerError::Pull`] (or a transport error).
    pub fn pull_image(
        &self,
        image: &ImageRef,
        platform: Option<&Platform>,
        auth: Option<&RegistryAuth>,
        progress: &mut dyn FnMut(&PullProgress),
    ) -> Result<(), DockerError> {
        let name = image.name();
        let platform = platform.map(Platform::to_string);
        let mut pairs = vec![("fromImage", name.as_str()), ("tag", image.tag_or_digest())];
        if let Some(p) = &platform {
            pairs.push(("platform", p));
        }
        let target = self.path(&format!("/images/create{}", query(&pairs)));
        let headers = auth
            .map(|a| vec![("X-Registry-Auth", a.header_value())])
            .unwrap_or_default();
        let timeouts = Timeouts {
            head: PULL_HEAD,
            body_idle: Some(PULL_IDLE),
            ..self.timeouts()
        };
        let response = self.send("POST", target, headers, Body::Empty, timeouts)?;
        let shown = image.to_string();
        if !response.is_success() {
            return Err(match response.into_error() {
                DockerError::Status { message, .. } => DockerError::Pull {
                    image: shown,
                    message,
                },
                other => other,
            });
        }
        read_progress(response, &shown, progress).map(drop)
    }

    /// `POST /images/create?fromSrc=-`: imports a root filesystem tar (streamed from `tar`) as
    /// image `repo:tag`, applying Dockerfile `changes` (e.g. `ENTRYPOINT ["/tool"]`,
    /// `LABEL k=v`). Returns the new image id.
    pub fn import_image(
        &self,
        tar: &mut dyn Read,
        repo: &str,
        tag: &str,
        changes: &[&str],
    ) -> Result<String, DockerError> {
        let mut pairs = vec![("fromSrc", "-"), ("repo", repo), ("tag", tag)];
        pairs.extend(changes.iter().map(|c| ("changes", *c)));
        let target = self.path(&format!("/images/create{}", query(&pairs)));
        let response = self.send(
            "POST",
            target,
            Vec::new(),
            Body::Stream(tar, "application/x-tar"),
            self.timeouts(),
        )?;
        if !response.is_success() {
            return Err(response.into_error());
        }
        let shown = format!("{repo}:{tag}");
        read_progress(response, &shown, &mut |_| {})
    }

    /// `DELETE /images/{name}`. An image in use is a 409 [`DockerError::Status`].
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Removal, DockerError> {
        let q = query(&[("force", if force { "1" } else { "0" })]);
        let target = self.path(&format!("/images/{}{q}", segment(name)));
        Ok(
            match self.status_of("DELETE", target, &[200, 404], self.timeouts())? {
                404 => Removal::NotFound,
                _ => Removal::Removed,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_inspect_parses() {
        let raw = include_bytes!("../../tests/support/fixtures/docker/image_inspect.http");
        let body = crate::docker::testutil::fixture_body(raw);
        let image: ImageInspect = serde_json::from_slice(&body).unwrap();
        assert!(image.id.starts_with("sha256:"));
        assert!(image.repo_digests.is_empty());
        assert_eq!(image.digest(), image.id);
        assert_eq!(image.platform().to_string(), "linux/amd64");
    }

    #[test]
    fn progress_lines_surface_errors_inside_a_200_stream() {
        let line = |s: &str| progress_line(s.as_bytes(), "POST /images/create", "img");
        let p = line(r#"{"status":"Downloading","id":"abc","progress":"[=>  ]"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.status.as_str(), p.id.as_deref()),
            ("Downloading", Some("abc"))
        );
        assert_eq!(line("  \r").unwrap(), None);
        let err =
            line(r#"{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown: x"}"#)
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to pull image img: manifest unknown"
        );
        let err = line(r#"{"error":"denied"}"#).unwrap_err();
        assert!(err.to_string().ends_with("denied"));
        assert!(matches!(line("not json"), Err(DockerError::Json { .. })));
    }

    #[test]
    fn digest_prefers_the_repo_digest() {
        let image = ImageInspect {
            id: "sha256:aaa".into(),
            repo_digests: vec!["warpdotdev/warp-agent@sha256:0123".into()],
            os: "linux".into(),
            architecture: "arm64".into(),
        };
        assert_eq!(image.digest(), "sha256:0123");
    }
}
