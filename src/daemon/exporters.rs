//! Which metrics exporters run: `--metrics-addr` plus the Go worker's OpenTelemetry
//! environment.
//!
//! | input | effect |
//! |---|---|
//! | `--metrics-addr HOST:PORT` / `metrics_addr` | ops listener (`/metrics`, `/healthz`, `/readyz`) on that address |
//! | `OTEL_METRICS_EXPORTER=prometheus` | ops listener on `OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT` (`localhost:9464`) unless `--metrics-addr` is given |
//! | `OTEL_METRICS_EXPORTER=otlp` | OTLP/HTTP JSON push (see `otlp`) |
//! | `OTEL_METRICS_EXPORTER=none` | no OpenTelemetry exporter (`--metrics-addr` still serves) |
//! | unset or empty | no exporter unless `--metrics-addr` is given |
//! | anything else (`console`, typos) | warning, ignored |
//!
//! Unset differs from the Go worker on purpose: Go defaults to OTLP push to
//! `localhost:4318` and fails quietly every minute when no collector listens; this worker
//! sends nothing anyone did not ask for. The value is a comma-separated list (as the
//! OpenTelemetry specification allows), compared case-insensitively after trimming.

use crate::otlp::{self, OtlpConfig};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub const DEFAULT_PROMETHEUS_HOST: &str = "localhost";
pub const DEFAULT_PROMETHEUS_PORT: u16 = 9464;

/// What `main` should start.
#[derive(Debug, Clone, Default)]
pub struct ExportPlan {
    /// Address of the ops listener, if any.
    pub listen: Option<String>,
    pub otlp: Option<OtlpConfig>,
    /// Remarks for `main` to log at WARN.
    pub warnings: Vec<String>,
}

/// Decides the exporters from the `--metrics-addr` value and the environment.
pub fn plan(metrics_addr: Option<&str>, env: Env<'_>) -> ExportPlan {
    let mut plan = ExportPlan {
        listen: metrics_addr.map(str::to_owned),
        ..ExportPlan::default()
    };
    let raw = env("OTEL_METRICS_EXPORTER").unwrap_or_default();
    let names: Vec<String> = raw
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    if names.iter().any(|n| n == "none") {
        if names.len() > 1 {
            plan.warnings.push(format!(
                "OTEL_METRICS_EXPORTER={raw:?} contains \"none\": no OpenTelemetry exporter runs"
            ));
        }
        return plan;
    }
    for name in &names {
        match name.as_str() {
            "prometheus" => prometheus(&mut plan, metrics_addr, env),
            "otlp" => match otlp::config_from_env(env) {
                Ok((config, warnings)) => {
                    plan.otlp = Some(config);
                    plan.warnings.extend(warnings);
                }
                Err(why) => plan
                    .warnings
                    .push(format!("{why}; metrics are not pushed over OTLP")),
            },
            "console" => plan.warnings.push(
                "OTEL_METRICS_EXPORTER=console is not supported by this worker; use \
                 --metrics-addr or prometheus"
                    .to_owned(),
            ),
            other => plan.warnings.push(format!(
                "OTEL_METRICS_EXPORTER: unknown exporter {other:?} ignored (expected \
                 prometheus, otlp or none)"
            )),
        }
    }
    plan
}

fn prometheus(plan: &mut ExportPlan, metrics_addr: Option<&str>, env: Env<'_>) {
    let host_var = env("OTEL_EXPORTER_PROMETHEUS_HOST").filter(|v| !v.trim().is_empty());
    let port_var = env("OTEL_EXPORTER_PROMETHEUS_PORT").filter(|v| !v.trim().is_empty());
    if let Some(addr) = metrics_addr {
        if host_var.is_some() || port_var.is_some() {
            plan.warnings.push(format!(
                "--metrics-addr {addr} takes precedence over OTEL_EXPORTER_PROMETHEUS_HOST/PORT"
            ));
        }
        return;
    }
    let host = host_var.map_or_else(
        || DEFAULT_PROMETHEUS_HOST.to_owned(),
        |h| h.trim().to_owned(),
    );
    let port = match port_var {
        None => DEFAULT_PROMETHEUS_PORT,
        Some(p) => match p.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                plan.warnings.push(format!(
                    "OTEL_EXPORTER_PROMETHEUS_PORT={p:?} is not a port number; the Prometheus \
                     endpoint is disabled"
                ));
                return;
            }
        },
    };
    // An IPv6 literal needs brackets before the port.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    plan.listen = Some(format!("{host}:{port}"));
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn plan_with(addr: Option<&str>, pairs: &[(&str, &str)]) -> ExportPlan {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        plan(addr, &move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn unset_means_nothing_unless_metrics_addr() {
        let p = plan_with(None, &[]);
        assert!(p.listen.is_none() && p.otlp.is_none() && p.warnings.is_empty());
        let p = plan_with(None, &[("OTEL_METRICS_EXPORTER", " ")]);
        assert!(p.listen.is_none() && p.otlp.is_none());
        let p = plan_with(Some("127.0.0.1:9100"), &[]);
        assert_eq!(p.listen.as_deref(), Some("127.0.0.1:9100"));
        assert!(p.otlp.is_none());
    }

    #[test]
    fn prometheus_from_the_go_worker_environment() {
        let p = plan_with(None, &[("OTEL_METRICS_EXPORTER", "prometheus")]);
        assert_eq!(p.listen.as_deref(), Some("localhost:9464"));
        let p = plan_with(
            None,
            &[
                ("OTEL_METRICS_EXPORTER", "Prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", "9100"),
            ],
        );
        assert_eq!(p.listen.as_deref(), Some("0.0.0.0:9100"));
        let p = plan_with(
            None,
            &[
                ("OTEL_METRICS_EXPORTER", "prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_HOST", "::"),
            ],
        );
        assert_eq!(p.listen.as_deref(), Some("[::]:9464"));
        let p = plan_with(
            None,
            &[
                ("OTEL_METRICS_EXPORTER", "prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", "99999"),
            ],
        );
        assert!(p.listen.is_none());
        assert!(p.warnings[0].contains("not a port number"));
    }

    #[test]
    fn metrics_addr_wins_over_prometheus_env() {
        let p = plan_with(
            Some("127.0.0.1:1"),
            &[
                ("OTEL_METRICS_EXPORTER", "prometheus"),
                ("OTEL_EXPORTER_PROMETHEUS_PORT", "9100"),
            ],
        );
        assert_eq!(p.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(p.warnings.len(), 1);
        let p = plan_with(
            Some("127.0.0.1:1"),
            &[("OTEL_METRICS_EXPORTER", "prometheus")],
        );
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn otlp_and_lists() {
        let p = plan_with(None, &[("OTEL_METRICS_EXPORTER", "otlp")]);
        assert_eq!(p.otlp.unwrap().endpoint, "http://localhost:4318/v1/metrics");
        assert!(p.listen.is_none());
        let p = plan_with(None, &[("OTEL_METRICS_EXPORTER", "otlp, prometheus")]);
        assert!(p.otlp.is_some() && p.listen.is_some());
        let p = plan_with(
            None,
            &[
                ("OTEL_METRICS_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        );
        assert!(p.otlp.is_none());
        assert!(p.warnings[0].contains("not pushed over OTLP"));
    }

    #[test]
    fn none_and_unknown_values() {
        let p = plan_with(Some("127.0.0.1:1"), &[("OTEL_METRICS_EXPORTER", "none")]);
        assert_eq!(p.listen.as_deref(), Some("127.0.0.1:1"));
        assert!(p.otlp.is_none() && p.warnings.is_empty());
        let p = plan_with(None, &[("OTEL_METRICS_EXPORTER", "otlp,none")]);
        assert!(p.otlp.is_none() && p.listen.is_none());
        assert_eq!(p.warnings.len(), 1);
        for v in ["console", "jaeger", "prometheus-ish"] {
            let p = plan_with(None, &[("OTEL_METRICS_EXPORTER", v)]);
            assert!(p.listen.is_none() && p.otlp.is_none());
            assert_eq!(p.warnings.len(), 1, "{v}");
        }
    }
}
