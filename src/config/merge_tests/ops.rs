//! `--log-format`/`log_format`, `--metrics-addr`/`metrics_addr`, `--drain-timeout`/
//! `drain_timeout`: spellings, precedence (flag > file > default) and errors.

use std::time::Duration;

use super::*;
use crate::logging::LogFormat;

fn cli_err(args: &[&str]) -> String {
    cli::parse(args.iter().map(OsString::from))
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn log_format() {
    assert_eq!(Run::new(&w(&[])).settings().log_format, LogFormat::Text);
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("log_format: json\n")
            .settings()
            .log_format,
        LogFormat::Json
    );
    assert_eq!(
        Run::new(&w(&["--log-format", "text"]))
            .yaml("log_format: json\n")
            .settings()
            .log_format,
        LogFormat::Text
    );
    assert_eq!(
        Run::new(&w(&["--log-format=json"])).settings().log_format,
        LogFormat::Json
    );
    assert_eq!(
        cli_err(&["--log-format", "xml"]),
        "--log-format: invalid value \"xml\" (expected one of: text, json)"
    );
    assert!(
        Run::new(&w(&[]))
            .yaml("log_format: JSON\n")
            .err()
            .ends_with("log_format must be text or json (got \"JSON\")")
    );
}

#[test]
fn metrics_addr() {
    assert_eq!(Run::new(&w(&[])).settings().metrics_addr, None);
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("metrics_addr: \"127.0.0.1:9100\"\n")
            .settings()
            .metrics_addr
            .as_deref(),
        Some("127.0.0.1:9100")
    );
    assert_eq!(
        Run::new(&w(&["--metrics-addr", ":9464"]))
            .yaml("metrics_addr: \"127.0.0.1:9100\"\n")
            .settings()
            .metrics_addr
            .as_deref(),
        Some(":9464")
    );
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("metrics_addr: \"\"\n")
            .settings()
            .metrics_addr,
        None
    );
    assert_eq!(
        cli_err(&["--metrics-addr", "9464"]),
        "--metrics-addr: \"9464\" is not HOST:PORT"
    );
    assert_eq!(
        cli_err(&["--metrics-addr=::1:9464"]),
        "--metrics-addr: \"::1:9464\": an IPv6 address must be in brackets, e.g. [::1]:9464"
    );
    assert!(
        Run::new(&w(&[]))
            .yaml("metrics_addr: \"localhost:http\"\n")
            .err()
            .ends_with("metrics_addr: \"localhost:http\" has an invalid port \"http\"")
    );
}

#[test]
fn drain_timeout() {
    assert_eq!(Run::new(&w(&[])).settings().drain_timeout, Duration::ZERO);
    assert_eq!(
        Run::new(&w(&[]))
            .yaml("drain_timeout: 90s\n")
            .settings()
            .drain_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        Run::new(&w(&["--drain-timeout", "1m30s"]))
            .yaml("drain_timeout: 5s\n")
            .settings()
            .drain_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        Run::new(&w(&["--drain-timeout=0"]))
            .yaml("drain_timeout: 5s\n")
            .settings()
            .drain_timeout,
        Duration::ZERO
    );
    assert_eq!(
        cli_err(&["--drain-timeout", "-1s"]),
        "--drain-timeout: \"-1s\" must not be negative"
    );
    assert!(cli_err(&["--drain-timeout", "1d"]).starts_with("--drain-timeout: unknown unit"));
    assert!(
        Run::new(&w(&[]))
            .yaml("drain_timeout: -5m\n")
            .err()
            .ends_with("invalid drain_timeout \"-5m\": must not be negative")
    );
    assert!(
        Run::new(&w(&[]))
            .yaml("drain_timeout: 10\n")
            .err()
            .contains("invalid drain_timeout \"10\": missing unit")
    );
}
