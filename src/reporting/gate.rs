//! Whether a task's setup events and logs may leave the machine, decided once per task.
//!
//! Pure: the inputs are the worker's switches and URLs and the assignment's fields; the
//! outputs say what to do and, when a feature cannot run, why (for one WARN per task). The
//! reasons never hold a secret or a URL with credentials.

/// Task env names the reporting reads (from the assignment's `env_vars`).
pub const API_KEY_ENV: &str = "WARP_API_KEY";
pub const WORKLOAD_TOKEN_ENV: &str = "WARP_WORKLOAD_TOKEN";

/// The assignment's `telemetry_collection`, as far as reporting needs it.
#[derive(Debug, Clone, Copy)]
pub struct Telemetry<'a> {
    pub endpoint: &'a str,
    pub logging_enabled: bool,
}

/// Credentials of one task, taken from its `env_vars`.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskCredentials {
    pub api_key: String,
    pub workload_token: Option<String>,
}

impl std::fmt::Debug for TaskCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskCredentials([REDACTED])")
    }
}

/// The last non-empty value of `name` in `env` (later entries win, as in every backend).
pub fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Setup events: on when the server root URL and the task's API key are known.
pub fn events(
    server_root_url: &str,
    env: &[(String, String)],
) -> Result<(String, TaskCredentials), &'static str> {
    let root = server_root_url.trim().trim_end_matches('/');
    if root.is_empty() {
        return Err("the worker has no server root URL");
    }
    let api_key = env_value(env, API_KEY_ENV).ok_or("the task has no WARP_API_KEY")?;
    Ok((
        root.to_owned(),
        TaskCredentials {
            api_key: api_key.to_owned(),
            workload_token: env_value(env, WORKLOAD_TOKEN_ENV).map(str::to_owned),
        },
    ))
}

/// What to do about task-log export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logs {
    /// Not asked for (operator switch off, or the assignment did not enable logging): silent.
    Off,
    /// Asked for but impossible: one WARN with this reason, and the task proceeds.
    Unavailable(&'static str),
    On(LogsPlan),
}

/// Where a task's logs go and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsPlan {
    /// `<endpoint>/v1/logs`.
    pub logs_url: String,
    /// `<server root>/graphql/v2`, where the export token is issued.
    pub token_url: String,
    pub credentials: TaskCredentials,
}

/// Task-log export: the operator's `collect_task_logs` and the assignment's
/// `logging_enabled`, then every precondition of the Go worker.
pub fn logs(
    collect_task_logs: bool,
    telemetry: Option<Telemetry<'_>>,
    server_root_url: &str,
    env: &[(String, String)],
) -> Logs {
    let Some(t) = telemetry.filter(|t| t.logging_enabled && collect_task_logs) else {
        return Logs::Off;
    };
    if check_url(t.endpoint).is_err() {
        return Logs::Unavailable("invalid task log collector endpoint");
    }
    if check_url(server_root_url).is_err() {
        return Logs::Unavailable("invalid task identity endpoint (the server root URL)");
    }
    let (Some(api_key), Some(workload)) = (
        env_value(env, API_KEY_ENV),
        env_value(env, WORKLOAD_TOKEN_ENV),
    ) else {
        return Logs::Unavailable(
            "task log reporting requires the task's API key and workload token",
        );
    };
    Logs::On(LogsPlan {
        logs_url: format!("{}/v1/logs", t.endpoint.trim_end_matches('/')),
        token_url: format!("{}/graphql/v2", server_root_url.trim_end_matches('/')),
        credentials: TaskCredentials {
            api_key: api_key.to_owned(),
            workload_token: Some(workload.to_owned()),
        },
    })
}

/// `http(s)://host[:port][/path]` with a host and without userinfo, query or fragment.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err("not an http:// or https:// URL");
    };
    if url.contains(['?', '#']) {
        return Err("a query or fragment is not allowed");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("spaces or control characters");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials in the URL are not allowed");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() {
        return Err("no host");
    }
    Ok(())
}

/// `s` escaped for one URL path segment, as Go's `url.PathEscape` (unreserved characters and
/// `$&+:=@` kept).
pub fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'$' | b'&' | b'+' | b':' | b'=' | b'@'
            )
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const ON: Option<Telemetry<'static>> = Some(Telemetry {
        endpoint: "https://otel.example:4318/",
        logging_enabled: true,
    });

    #[test]
    fn events_need_a_root_and_the_task_key() {
        let e = env(&[("WARP_API_KEY", "k1"), ("WARP_WORKLOAD_TOKEN", "w")]);
        let (root, creds) = events("https://app.warp.dev/", &e).unwrap();
        assert_eq!(root, "https://app.warp.dev");
        assert_eq!(creds.api_key, "k1");
        assert_eq!(creds.workload_token.as_deref(), Some("w"));
        assert!(events("", &e).is_err());
        assert!(events("https://x", &env(&[("WARP_API_KEY", "")])).is_err());
        let later_wins = env(&[("WARP_API_KEY", "a"), ("WARP_API_KEY", "b")]);
        assert_eq!(events("https://x", &later_wins).unwrap().1.api_key, "b");
        assert!(!format!("{creds:?}").contains("k1"));
    }

    #[test]
    fn logs_need_both_switches() {
        let e = env(&[("WARP_API_KEY", "k"), ("WARP_WORKLOAD_TOKEN", "w")]);
        assert_eq!(logs(false, ON, "https://app", &e), Logs::Off);
        assert_eq!(logs(true, None, "https://app", &e), Logs::Off);
        let disabled = Some(Telemetry {
            endpoint: "https://c",
            logging_enabled: false,
        });
        assert_eq!(logs(true, disabled, "https://app", &e), Logs::Off);
        let Logs::On(plan) = logs(true, ON, "https://app/", &e) else {
            panic!("expected on")
        };
        assert_eq!(plan.logs_url, "https://otel.example:4318/v1/logs");
        assert_eq!(plan.token_url, "https://app/graphql/v2");
    }

    #[test]
    fn every_precondition_makes_logs_unavailable() {
        let both = env(&[("WARP_API_KEY", "k"), ("WARP_WORKLOAD_TOKEN", "w")]);
        for endpoint in [
            "",
            "ftp://c",
            "https://",
            "https://u:p@c",
            "https://c/?q=1",
            "https://c/#f",
            "https://:4318",
        ] {
            let t = Some(Telemetry {
                endpoint,
                logging_enabled: true,
            });
            assert!(
                matches!(logs(true, t, "https://app", &both), Logs::Unavailable(_)),
                "{endpoint}"
            );
        }
        for root in ["", "ws://app", "https://u@app", "https://app?x"] {
            assert!(
                matches!(logs(true, ON, root, &both), Logs::Unavailable(_)),
                "{root}"
            );
        }
        for e in [
            env(&[("WARP_API_KEY", "k")]),
            env(&[("WARP_WORKLOAD_TOKEN", "w")]),
            env(&[("WARP_API_KEY", "k"), ("WARP_WORKLOAD_TOKEN", "")]),
        ] {
            assert!(matches!(
                logs(true, ON, "https://app", &e),
                Logs::Unavailable(_)
            ));
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:4318").is_ok());
        assert!(check_url("HTTPS://[::1]:1/x").is_ok());
        assert!(check_url("https://[]:1").is_err());
        assert_eq!(path_escape("run 1/ä"), "run%201%2F%C3%A4");
        assert_eq!(path_escape("a-b_c.d~$&+:=@"), "a-b_c.d~$&+:=@");
        assert_eq!(path_escape(";,?#%"), "%3B%2C%3F%23%25");
    }
}
