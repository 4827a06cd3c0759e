//! The OpenTelemetry environment variables of the OTLP exporter.
//!
//! | variable | default | notes |
//! |---|---|---|
//! | `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | – | used as-is |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://localhost:4318` | `/v1/metrics` appended |
//! | `OTEL_EXPORTER_OTLP[_METRICS]_PROTOCOL` | `http/protobuf` | `http/*` sends JSON; `grpc` is refused |
//! | `OTEL_EXPORTER_OTLP[_METRICS]_HEADERS` | – | `k=v,k2=v2`, values percent-decoded; per-key merge, metrics wins |
//! | `OTEL_EXPORTER_OTLP[_METRICS]_TIMEOUT` | `10000` | milliseconds |
//! | `OTEL_EXPORTER_OTLP[_METRICS]_CERTIFICATE` | – | PEM CA file for `https` |
//! | `OTEL_METRIC_EXPORT_INTERVAL` | `60000` | milliseconds |
//! | `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME` | – | the worker's own attributes win |

use std::path::PathBuf;
use std::time::Duration;

use super::OtlpConfig;
use crate::metrics::WorkerInfo;
use crate::settings::Secret;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The metrics-specific variable if set (non-blank), else the general one.
fn pick(env: Env<'_>, general: &str) -> Option<(String, String)> {
    let specific = general.replacen("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_METRICS_", 1);
    [specific, general.to_owned()].into_iter().find_map(|name| {
        env(&name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v.trim().to_owned()))
    })
}

fn millis(name: &str, value: &str, warnings: &mut Vec<String>) -> Option<Duration> {
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
        _ => {
            warnings.push(format!(
                "{name}={value:?} is not a positive number of milliseconds; using the default"
            ));
            None
        }
    }
}

/// Reads the OTLP exporter settings. `Err` says why OTLP push cannot run (the caller logs it
/// as a warning and continues without it); `Ok` carries non-fatal remarks too.
pub fn config_from_env(env: Env<'_>) -> Result<(OtlpConfig, Vec<String>), String> {
    let mut warnings = Vec::new();

    if let Some((name, protocol)) = pick(env, "OTEL_EXPORTER_OTLP_PROTOCOL") {
        match protocol.as_str() {
            "http/json" => {}
            "http/protobuf" => warnings.push(format!(
                "{name}=http/protobuf: this worker pushes OTLP/HTTP with JSON encoding to the \
                 same endpoint (OpenTelemetry collectors accept both)"
            )),
            "grpc" => {
                return Err(format!(
                    "{name}=grpc is not supported; use http/json (port 4318) for OTLP push"
                ));
            }
            other => return Err(format!("{name}={other:?} is not a known OTLP protocol")),
        }
    }

    let endpoint = match env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").filter(|v| !v.trim().is_empty())
    {
        Some(e) => e.trim().to_owned(),
        None => {
            let base = env("OTEL_EXPORTER_OTLP_ENDPOINT")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
            format!("{}/v1/metrics", base.trim().trim_end_matches('/'))
        }
    };
    check_endpoint(&endpoint).map_err(|why| format!("OTLP endpoint {endpoint:?} {why}"))?;

    let interval = env("OTEL_METRIC_EXPORT_INTERVAL")
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| millis("OTEL_METRIC_EXPORT_INTERVAL", v.trim(), &mut warnings))
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = pick(env, "OTEL_EXPORTER_OTLP_TIMEOUT")
        .and_then(|(name, v)| millis(&name, &v, &mut warnings))
        .unwrap_or(DEFAULT_TIMEOUT);

    let mut headers: Vec<(String, Secret)> = Vec::new();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    ] {
        let Some(raw) = env(var) else { continue };
        for (name, value) in parse_headers(var, &raw, &mut warnings) {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            headers.push((name, Secret::new(value)));
        }
    }

    let ca_file = pick(env, "OTEL_EXPORTER_OTLP_CERTIFICATE").map(|(_, v)| PathBuf::from(v));
    for var in [
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    ] {
        if let Some((name, _)) = pick(env, var) {
            warnings.push(format!(
                "{name} is set but client certificates are not supported for OTLP push"
            ));
        }
    }
    if let Some((name, c)) = pick(env, "OTEL_EXPORTER_OTLP_COMPRESSION")
        && c != "none"
    {
        warnings.push(format!(
            "{name}={c:?} is not supported; metrics are pushed uncompressed"
        ));
    }

    Ok((
        OtlpConfig {
            endpoint,
            interval,
            timeout,
            headers,
            ca_file,
            resource_env: resource_from_env(env, &mut warnings),
        },
        warnings,
    ))
}

/// `http(s)://host[:port][/path]`, no userinfo (credentials belong in headers, and a URL is
/// logged).
fn check_endpoint(url: &str) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains('@') {
        return Err("must not contain credentials (use OTEL_EXPORTER_OTLP_HEADERS)");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    Ok(())
}

/// `key=value` pairs separated by commas, values percent-decoded (W3C baggage syntax).
fn parse_headers(var: &str, raw: &str, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, value)) = entry.split_once('=') else {
            warnings.push(format!("{var}: ignoring an entry without '='"));
            continue;
        };
        let name = name.trim();
        let value = percent_decode(value.trim());
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            // The name is not a secret; the value may be, so it is never echoed.
            warnings.push(format!("{var}: ignoring invalid header name {name:?}"));
            continue;
        }
        if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
            warnings.push(format!("{var}: ignoring header {name} (invalid value)"));
            continue;
        }
        out.push((name.to_owned(), value));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn resource_from_env(env: Env<'_>, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let mut attrs: Vec<(String, String)> = Vec::new();
    if let Some(raw) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    attrs.push((k.trim().to_owned(), percent_decode(v.trim())))
                }
                _ => warnings.push(format!(
                    "OTEL_RESOURCE_ATTRIBUTES: ignoring malformed entry {entry:?}"
                )),
            }
        }
    }
    if let Some(name) = env("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()) {
        attrs.push(("service.name".to_owned(), name.trim().to_owned()));
    }
    attrs
}

/// The pushed resource: attributes from the environment, then the worker's own, which win
/// (`service.name` is always `oz-agent-worker`, as in the Go worker). Sorted by key.
pub fn resource(info: &WorkerInfo, from_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut map: std::collections::BTreeMap<String, String> = from_env.iter().cloned().collect();
    map.insert("service.name".into(), "oz-agent-worker".into());
    for (key, value) in [
        ("service.version", &info.version),
        ("worker.id", &info.worker_id),
        ("worker.backend", &info.backend),
    ] {
        if !value.is_empty() {
            map.insert(key.into(), value.clone());
        }
    }
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn config(pairs: &[(&str, &str)]) -> Result<(OtlpConfig, Vec<String>), String> {
        config_from_env(&env_of(pairs))
    }

    #[test]
    fn defaults() {
        let (c, w) = config(&[]).unwrap();
        assert_eq!(c.endpoint, "http://localhost:4318/v1/metrics");
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(c.headers.is_empty() && c.ca_file.is_none() && c.resource_env.is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn endpoints() {
        let e = |pairs: &[(&str, &str)]| config(pairs).map(|(c, _)| c.endpoint);
        assert_eq!(
            e(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318/")]).unwrap(),
            "https://otel.example:4318/v1/metrics"
        );
        assert_eq!(
            e(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gw/otlp")]).unwrap(),
            "http://gw/otlp/v1/metrics"
        );
        assert_eq!(
            e(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:9/custom"),
            ])
            .unwrap(),
            "http://c:9/custom"
        );
        for bad in [
            "localhost:4318",
            "ftp://x",
            "http://",
            "http://u:p@host:4318",
        ] {
            let err = e(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", bad)]).unwrap_err();
            assert!(err.starts_with("OTLP endpoint"), "{err}");
        }
        assert!(
            !e(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://u:p@h")])
                .unwrap_err()
                .contains("must start")
        );
    }

    #[test]
    fn protocols() {
        let p = |v| config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", v)]);
        assert!(p("http/json").unwrap().1.is_empty());
        assert!(p("http/protobuf").unwrap().1[0].contains("JSON encoding"));
        assert!(p("grpc").unwrap_err().contains("not supported"));
        assert!(p("carrier-pigeon").unwrap_err().contains("not a known"));
        // The metrics-specific variable wins.
        assert!(
            config(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn interval_and_timeout() {
        let (c, w) = config(&[
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1500"),
        ])
        .unwrap();
        assert_eq!(c.interval, Duration::from_millis(250));
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert!(w.is_empty());
        for bad in ["0", "-5", "1m", "soon"] {
            let (c, w) = config(&[("OTEL_METRIC_EXPORT_INTERVAL", bad)]).unwrap();
            assert_eq!(c.interval, DEFAULT_INTERVAL);
            assert_eq!(w.len(), 1, "{bad}");
        }
    }

    #[test]
    fn headers_merge_and_decode() {
        let (c, w) = config(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Basic%20dXNlcjpw, x-team = a ,bad, in valid=x",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "X-Team=b"),
        ])
        .unwrap();
        let h: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(
            h,
            vec![("Authorization", "Basic dXNlcjpw"), ("X-Team", "b")]
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().all(|m| !m.contains("dXNlcjpw")));
        // Debug output of the config never shows a header value.
        assert!(!format!("{c:?}").contains("dXNlcjpw"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc"), "a b,c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
    }

    #[test]
    fn certificate_compression_and_client_certs() {
        let (c, w) = config(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
        ])
        .unwrap();
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn resource_attributes() {
        let (c, w) = config(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=mine,k8s.pod.name=a%2Cb,junk",
            ),
            ("OTEL_SERVICE_NAME", "also-mine"),
        ])
        .unwrap();
        assert_eq!(w.len(), 1);
        let info = WorkerInfo {
            version: "1.0".into(),
            backend: "kubernetes".into(),
            worker_id: "w9".into(),
        };
        let r = resource(&info, &c.resource_env);
        let get = |k: &str| r.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("service.name"), Some("oz-agent-worker"));
        assert_eq!(get("deployment.environment"), Some("prod"));
        assert_eq!(get("k8s.pod.name"), Some("a,b"));
        assert_eq!(get("worker.id"), Some("w9"));
        assert_eq!(get("worker.backend"), Some("kubernetes"));
        assert_eq!(get("service.version"), Some("1.0"));
        let empty = WorkerInfo {
            version: String::new(),
            backend: String::new(),
            worker_id: String::new(),
        };
        assert_eq!(
            resource(&empty, &[]),
            vec![("service.name".to_owned(), "oz-agent-worker".to_owned())]
        );
    }
}
