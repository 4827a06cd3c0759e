//! The man page's ENVIRONMENT, FILES and EXAMPLES sections as data: every variable the worker
//! reads (besides the timing variables of [`super::TIMING_ENV`], listed from their own table),
//! the files it reads or creates, and example command lines. Plain text; the man page
//! generator escapes it for roff.

/// `(variable, what the worker does with it)`. A `*` ends a family of names.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "WARP_API_KEY",
        "The API key, when neither --api-key nor --api-key-file is given (giving both flags is an error).",
    ),
    (
        "OZ_COLLECT_TASK_LOGS",
        "true or false: allow per-task log export when --collect-task-logs is not given; wins over collect_task_logs in the config file.",
    ),
    (
        "HOME",
        "Expands ~ in path flags; locates ~/.docker (Docker CLI config and contexts).",
    ),
    (
        "PATH",
        "Where the direct backend looks up the oz CLI (when oz_path is a bare name) and Docker credential helpers are found.",
    ),
    (
        "TMPDIR",
        "Temporary directory of direct-backend tasks (default /tmp).",
    ),
    (
        "DOCKER_HOST",
        "Docker engine endpoint (unix://, tcp://, ssh:// is not supported); wins over contexts.",
    ),
    (
        "DOCKER_CONTEXT",
        "Docker CLI context to use when DOCKER_HOST is unset (else currentContext of the CLI config).",
    ),
    (
        "DOCKER_CONFIG",
        "Directory of the Docker CLI config (default ~/.docker): contexts, auths, credsStore, credHelpers.",
    ),
    (
        "DOCKER_AUTH_CONFIG",
        "Registry credentials as config.json text; wins over the config file's auths.",
    ),
    (
        "DOCKER_CERT_PATH",
        "Directory with ca.pem, cert.pem and key.pem for a TLS Docker endpoint.",
    ),
    (
        "DOCKER_TLS_VERIFY, DOCKER_TLS",
        "Non-empty: use TLS for a tcp:// Docker endpoint; DOCKER_TLS_VERIFY also verifies the engine's certificate.",
    ),
    (
        "DOCKER_API_VERSION",
        "Docker Engine API version to speak instead of negotiating one.",
    ),
    (
        "HTTP_PROXY, HTTPS_PROXY, NO_PROXY",
        "Proxy for the connection to Oz (HTTP CONNECT); lower-case spellings are read too. Passed on to Docker credential helpers.",
    ),
    (
        "NOTIFY_SOCKET",
        "systemd notification socket: READY=1, STOPPING=1 and watchdog pings (Type=notify).",
    ),
    (
        "WATCHDOG_USEC, WATCHDOG_PID",
        "systemd watchdog interval and owner: pings are sent at half the interval while the supervisor loop is alive.",
    ),
    (
        "OTEL_METRICS_EXPORTER",
        "otlp pushes metrics with OTLP/HTTP, prometheus serves /metrics (as --metrics-addr), none disables both.",
    ),
    (
        "OTEL_EXPORTER_PROMETHEUS_HOST, OTEL_EXPORTER_PROMETHEUS_PORT",
        "Address of /metrics when OTEL_METRICS_EXPORTER=prometheus and --metrics-addr is not given.",
    ),
    (
        "OTEL_EXPORTER_OTLP_*, OTEL_EXPORTER_OTLP_METRICS_*",
        "OTLP endpoint, protocol, headers, timeout, compression, certificate, client certificate and key (the METRICS_ form wins).",
    ),
    (
        "OTEL_METRIC_EXPORT_INTERVAL",
        "Milliseconds between OTLP pushes.",
    ),
    (
        "OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES",
        "Resource attributes of pushed metrics.",
    ),
    (
        "KUBECONFIG",
        "Kubernetes client configuration of the kubernetes backend, when it lands (kubeconfig in the config file wins).",
    ),
];

/// `(path, what it is)`.
pub const FILES: &[(&str, &str)] = &[
    (
        "/var/lib/oz/workspaces",
        "Default workspace_root of the direct backend: one directory per task, created 0700 by the daemon at startup (never by check).",
    ),
    (
        "$DOCKER_CONFIG/config.json, ~/.docker/config.json",
        "Docker CLI config: currentContext, auths, credsStore, credHelpers (read only).",
    ),
    (
        "~/.docker/contexts/meta/",
        "Docker CLI contexts (read only).",
    ),
    (
        "--config-file FILE",
        "The YAML configuration (see CONFIGURATION FILE); at most 4 MiB.",
    ),
    (
        "--api-key-file FILE",
        "A file holding the API key alone, e.g. a systemd credential or a mounted secret.",
    ),
];

/// `(what it does, command line)`.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "Run tasks as host processes with the oz CLI:",
        "oz-agent-worker --worker-id my-host --api-key-file /etc/oz-agent-worker/api-key --backend direct",
    ),
    (
        "Run tasks in Docker containers, with metrics and a ten-minute drain on SIGTERM:",
        "oz-agent-worker --worker-id my-host --api-key-file /run/credentials/oz/api-key --metrics-addr 127.0.0.1:9464 --drain-timeout 10m",
    ),
    (
        "Check a configuration before starting the daemon (on a host without a route to Oz):",
        "oz-agent-worker check --config-file /etc/oz-agent-worker/config.yaml --offline",
    ),
    (
        "Run one task from a file, without Oz:",
        "oz-agent-worker run-once --config-file config.yaml --task task.json",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable the worker reads must be documented; this list names the ones the
    /// issue tracker asked for, the table may hold more.
    #[test]
    fn the_environment_table_covers_what_the_worker_reads() {
        let names: String = ENVIRONMENT
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        for var in [
            "WARP_API_KEY",
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            "DOCKER_CONFIG",
            "DOCKER_AUTH_CONFIG",
            "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY",
            "DOCKER_API_VERSION",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "OTEL_METRICS_EXPORTER",
            "OTEL_EXPORTER_OTLP_*",
            "OTEL_METRIC_EXPORT_INTERVAL",
            "OTEL_SERVICE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES",
            "KUBECONFIG",
            "HOME",
            "PATH",
        ] {
            assert!(names.contains(var), "{var} missing from ENVIRONMENT");
        }
        for flag in super::super::flags::FLAGS {
            if let Some(var) = flag.env {
                assert!(names.contains(var), "{var} (--{}) missing", flag.long);
            }
        }
    }
}
