//! Credentials at request time: a static token, a token file re-read as it rotates, basic
//! auth, or an exec credential plugin whose answer is cached until it expires. A 401 from the
//! API server invalidates what we hold, so the next attempt re-reads or re-runs.
//!
//! Nothing here puts a credential into an error or a log line: plugin stdout (which holds the
//! token) is never quoted; every credential obtained is registered with the log redactor.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::kubeconfig::{AuthConfig, ClientCert, ExecConfig, ServerUrl};
use crate::base64;

/// A token file is re-read at least this often even when its metadata looks unchanged (the
/// kubelet's `..data` symlink swap changes the inode, which we also watch).
const TOKEN_FILE_MAX_AGE: Duration = Duration::from_secs(60);
/// An exec plugin that has not answered by then is killed.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Re-run an exec plugin this long before its credential expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

/// What a request carries.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The `Authorization` header value.
    pub authorization: Option<String>,
    /// A client certificate an exec plugin issued (it changes the TLS config).
    pub exec_client_cert: Option<ClientCert>,
}

#[derive(Default)]
struct Cached {
    token: Option<String>,
    cert: Option<ClientCert>,
    /// Token file: identity of the file read, and when.
    file_id: Option<(u64, u64, i128, u64)>,
    read_at: Option<Instant>,
    /// Exec: when the credential stops being valid (`None` = until a 401).
    expires: Option<SystemTime>,
    valid: bool,
    _redaction: Option<crate::redact::Guard>,
}

/// The credential source of one cluster connection.
pub struct Credentials {
    config: AuthConfig,
    server: ServerUrl,
    cached: Mutex<Cached>,
}

fn file_id(path: &Path) -> Option<(u64, u64, i128, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        m.len(),
    ))
}

impl Credentials {
    pub fn new(config: AuthConfig, server: ServerUrl) -> Credentials {
        Credentials {
            config,
            server,
            cached: Mutex::new(Cached::default()),
        }
    }

    /// Which kind of credential this is, for `check` ("token file /x", "exec plugin aws").
    pub fn describe(&self) -> String {
        match &self.config {
            AuthConfig::None => "no credentials (client certificate or anonymous)".into(),
            AuthConfig::Token(_) => "a bearer token".into(),
            AuthConfig::TokenFile(p) => format!("the token file {}", p.display()),
            AuthConfig::Basic { username, .. } => format!("basic auth as {username}"),
            AuthConfig::Exec(e) => format!("the exec credential plugin {}", e.command),
        }
    }

    /// Forgets what we hold (after a 401): the next request re-reads or re-runs.
    pub fn invalidate(&self) {
        self.cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .valid = false;
    }

    /// Whether a 401 may be cured by fetching the credential again.
    pub fn refreshable(&self) -> bool {
        matches!(self.config, AuthConfig::TokenFile(_) | AuthConfig::Exec(_))
    }

    /// The credential for the next request.
    pub fn present(&self) -> Result<Presented, String> {
        match &self.config {
            AuthConfig::None => Ok(Presented::default()),
            AuthConfig::Token(t) => Ok(Presented {
                authorization: Some(format!("Bearer {}", t.0)),
                exec_client_cert: None,
            }),
            AuthConfig::Basic { username, password } => Ok(Presented {
                authorization: Some(format!(
                    "Basic {}",
                    base64::encode(format!("{username}:{}", password.0).as_bytes())
                )),
                exec_client_cert: None,
            }),
            AuthConfig::TokenFile(path) => self.token_file(path),
            AuthConfig::Exec(e) => self.exec(e),
        }
    }

    fn token_file(&self, path: &Path) -> Result<Presented, String> {
        let mut c = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let id = file_id(path);
        let fresh = c.valid
            && c.token.is_some()
            && c.file_id == id
            && c.read_at.is_some_and(|t| t.elapsed() < TOKEN_FILE_MAX_AGE);
        if !fresh {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                return Err(format!("the token file {} is empty", path.display()));
            }
            if c.token.as_deref() != Some(token.as_str()) {
                log::debug!(path:% = path.display(); "kubernetes: token file changed; using the new token");
            }
            c._redaction = Some(crate::redact::register([token.as_str()]));
            c.token = Some(token);
            c.file_id = id;
            c.read_at = Some(Instant::now());
            c.valid = true;
        }
        Ok(Presented {
            authorization: c.token.as_ref().map(|t| format!("Bearer {t}")),
            exec_client_cert: None,
        })
    }

    fn exec(&self, e: &ExecConfig) -> Result<Presented, String> {
        let mut c = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = c.valid
            && c.expires
                .is_none_or(|t| SystemTime::now() + EXPIRY_MARGIN < t);
        if !fresh {
            let cred = run_exec(e, &self.server)?;
            let mut secrets: Vec<String> = Vec::new();
            secrets.extend(cred.token.clone());
            if let Some(k) = &cred.cert {
                secrets.push(String::from_utf8_lossy(&k.key_pem).into_owned());
            }
            c._redaction = Some(crate::redact::register(secrets));
            c.token = cred.token;
            c.cert = cred.cert;
            c.expires = cred.expires;
            c.valid = true;
            log::debug!(plugin = e.command.as_str(); "kubernetes: exec credential plugin returned a credential");
        }
        Ok(Presented {
            authorization: c.token.as_ref().map(|t| format!("Bearer {t}")),
            exec_client_cert: c.cert.clone(),
        })
    }
}

/// What an exec plugin returned.
pub struct ExecCredential {
    pub token: Option<String>,
    pub cert: Option<ClientCert>,
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for ExecCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecCredential")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cert", &self.cert)
            .field("expires", &self.expires)
            .finish()
    }
}

#[derive(Deserialize)]
struct ExecOutput {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    status: Option<ExecStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecStatus {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    expiration_timestamp: Option<String>,
}

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// Parses a plugin's stdout. Errors never quote it (it holds the credential).
pub fn parse_exec_output(
    command: &str,
    expected: &str,
    stdout: &[u8],
) -> Result<ExecCredential, String> {
    let out: ExecOutput = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "exec credential plugin {command} printed something that is not an ExecCredential (JSON error at line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    if out.kind != "ExecCredential" {
        return Err(format!(
            "exec credential plugin {command} printed kind {:?}, expected ExecCredential",
            out.kind
        ));
    }
    if out.api_version != expected {
        return Err(format!(
            "exec credential plugin {command} answered with apiVersion {:?}, but the kubeconfig asks for {expected:?}",
            out.api_version
        ));
    }
    let status = out.status.ok_or_else(|| {
        format!("exec credential plugin {command} returned an ExecCredential without status")
    })?;
    let cert = match (status.client_certificate_data, status.client_key_data) {
        (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => Some(ClientCert {
            cert_pem: c.into_bytes(),
            key_pem: k.into_bytes(),
        }),
        (None, None) => None,
        _ => {
            return Err(format!(
                "exec credential plugin {command} returned a client certificate without its key (or the reverse)"
            ));
        }
    };
    let token = status.token.filter(|t| !t.is_empty());
    if token.is_none() && cert.is_none() {
        return Err(format!(
            "exec credential plugin {command} returned neither a token nor a client certificate"
        ));
    }
    let expires = match status.expiration_timestamp.filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_rfc3339(&s).ok_or_else(|| {
            format!(
                "exec credential plugin {command} returned an unreadable expirationTimestamp {s:?}"
            )
        })?),
        None => None,
    };
    Ok(ExecCredential {
        token,
        cert,
        expires,
    })
}

fn run_exec(e: &ExecConfig, server: &ServerUrl) -> Result<ExecCredential, String> {
    let api = if e.api_version.is_empty() {
        V1BETA1
    } else {
        e.api_version.as_str()
    };
    if api != V1 && api != V1BETA1 {
        return Err(format!(
            "exec credential plugin {}: apiVersion {api:?} is not supported; use {V1} or {V1BETA1}",
            e.command
        ));
    }
    if e.interactive_mode.as_deref() == Some("Always") {
        return Err(format!(
            "exec credential plugin {} requires interactiveMode Always, but the worker runs without a terminal; configure the plugin to work non-interactively",
            e.command
        ));
    }
    let mut spec = serde_json::json!({"interactive": false});
    if e.provide_cluster_info {
        spec["cluster"] = serde_json::json!({"server": server.to_string()});
    }
    let info = serde_json::json!({"apiVersion": api, "kind": "ExecCredential", "spec": spec});
    let mut cmd = Command::new(&e.command);
    cmd.args(&e.args)
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for env in &e.env {
        cmd.env(&env.name, &env.value);
    }
    let mut child = cmd.spawn().map_err(|err| {
        let hint = e
            .install_hint
            .as_deref()
            .map(|h| format!("; {}", h.trim()))
            .unwrap_or_default();
        format!(
            "cannot run exec credential plugin {}: {err}{hint}",
            e.command
        )
    })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(1 << 20).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 << 10).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + EXEC_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "exec credential plugin {} did not answer within {}s",
                    e.command,
                    EXEC_TIMEOUT.as_secs()
                ));
            }
            Err(err) => {
                return Err(format!(
                    "waiting for exec credential plugin {}: {err}",
                    e.command
                ));
            }
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        let text = text.trim();
        let shown: String = text.chars().take(500).collect();
        return Err(format!(
            "exec credential plugin {} failed ({status}){}",
            e.command,
            if shown.is_empty() {
                String::new()
            } else {
                format!(": {}", crate::redact::redact(&shown))
            }
        ));
    }
    parse_exec_output(&e.command, api, &stdout)
}

/// `2026-01-02T03:04:05Z`, with optional fractional seconds and a `±hh:mm` offset.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86400 + h * 3600 + mi * 60 + se - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The path a token file credential reads (for tests and `check`).
pub fn token_file_path(config: &AuthConfig) -> Option<PathBuf> {
    match config {
        AuthConfig::TokenFile(p) => Some(p.clone()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
