//! Every `ConfigError` message.

use super::*;

#[test]
fn every_error_variant_displays_one_line() {
    let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
    let errors = [
        ConfigError::ReadFile {
            what: "config file",
            path: "/p".into(),
            source: io(),
        },
        ConfigError::Parse {
            path: "/p".into(),
            line: Some(3),
            message: "m".into(),
        },
        ConfigError::Parse {
            path: "/p".into(),
            line: None,
            message: "m".into(),
        },
        ConfigError::Invalid {
            path: "/p".into(),
            problems: vec!["a".into(), "b".into()],
        },
        ConfigError::WorkerIdRequired,
        ConfigError::WorkerIdReserved("warp".into()),
        ConfigError::ApiKeyRequired,
        ConfigError::ApiKeyFile {
            path: "/k".into(),
            reason: "the file is empty",
        },
        ConfigError::EnvFlag("empty value".into()),
        ConfigError::Volume {
            origin: "-v".into(),
            spec: "x".into(),
            reason: "r".into(),
        },
        ConfigError::Url {
            flag: "--web-socket-url",
            value: "v".into(),
            reason: "r".into(),
        },
        ConfigError::Path {
            flag: "--config-file",
            path: "~/x".into(),
            reason: "r".into(),
        },
        ConfigError::OneShotUnsupported(BackendKind::Docker),
        ConfigError::CommandNeedsDispatch,
        ConfigError::TimingEnv {
            var: "OZ_WORKER_KILL_GRACE",
            value: "x".into(),
            reason: "r".into(),
        },
    ];
    let want = [
        "reading config file /p: gone",
        "reading config file /p: line 3: m",
        "reading config file /p: m",
        "invalid config file /p: a; b",
        "worker-id is required (via --worker-id flag or config file)",
        "invalid worker-id \"warp\": values starting with 'warp' are reserved",
        "an API key is required: set --api-key, --api-key-file or WARP_API_KEY",
        "--api-key-file /k: the file is empty",
        "invalid --env flag: empty value",
        "invalid volume \"x\" (-v): r",
        "--web-socket-url: invalid URL \"v\": r",
        "--config-file ~/x: r",
        "backend \"docker\" does not support one-shot mode",
        "command backend requires a dispatch command (backend.command.dispatch_command)",
        "OZ_WORKER_KILL_GRACE: invalid value \"x\": r",
    ];
    for (e, w) in errors.iter().zip(want) {
        assert_eq!(e.to_string(), w);
    }
    assert!(std::error::Error::source(&errors[0]).is_some());
    assert!(
        std::mem::size_of::<ConfigError>() <= 96,
        "keep ConfigError small"
    );
}
