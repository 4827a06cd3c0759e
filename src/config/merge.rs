//! The merge: flags > environment > config file > defaults, as the Go worker's `mergeConfig`.
//!
//! Deliberate differences from Go (each is also in the README's "Differences"):
//! - a `--backend` that differs from the file's backend block produces a warning (Go: silent);
//! - negative `max_concurrent_tasks` in the file is an error (Go: unlimited);
//! - `dispatch_timeout` must be positive (Go: 0 times out at once);
//! - `-v` specs and the URLs are validated at startup (Go: at first use);
//! - `-v`/`--target-dir` given for a backend that ignores them produce a warning.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{
    self, CommandFile, DirectFile, DockerFile, EnvEntry, FileConfig, KubernetesFile,
};
use super::values::{check_url, check_volume, expand_path, overlay, parse_env_flag};
use super::{ConfigError, Resolved};
use crate::cli::{LowArgs, Mode, TIMING_ENV};
use crate::duration::{self, Sign};
use crate::settings::BackendKind;
use crate::settings::LogFormat;
use crate::settings::{
    self, BackendSettings, CommandSettings, DirectSettings, DockerSettings, EnvList,
    KubernetesSettings, PullPolicy, Secret, Settings, Timing,
};

/// Config files larger than this are refused (they are hand-written YAML).
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// API key files larger than this are refused.
const MAX_KEY_BYTES: u64 = 64 << 10;

pub const DEFAULT_DISPATCH_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_PREFLIGHT_IMAGE: &str = "busybox:1.36";
pub const DEFAULT_UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_VOLUME_MOUNT_TIMEOUT: Duration = Duration::from_secs(2 * 60);
pub const DEFAULT_JOB_TTL_SECONDS: i32 = 24 * 60 * 60;
/// 8 h, the chart's default, also when the worker runs outside Helm: a Job that is never
/// bounded (the Go worker's code default) can keep a stuck pod forever.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 8 * 60 * 60;
pub const DEFAULT_WORKER_ID_LOCAL: &str = "local";

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// [`super::resolve`] with an explicit working directory (for relative path flags).
pub fn resolve_with_cwd(
    args: &LowArgs,
    mode: Mode,
    env: Env<'_>,
    cwd: &Path,
) -> Result<Resolved, ConfigError> {
    let mut warnings = Vec::new();
    let home = env("HOME");
    let expand =
        |flag: &'static str, p: &Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
            p.as_ref()
                .map(|p| {
                    expand_path(p, home.as_deref(), cwd).map_err(|reason| ConfigError::Path {
                        flag,
                        path: p.clone(),
                        reason,
                    })
                })
                .transpose()
        };

    let config_path = expand("--config-file", &args.config_file)?;
    let file = match &config_path {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    // Only used when a file was read: every file-derived error has a path.
    let file_path = config_path.clone().unwrap_or_default();

    let mut sources = super::Sources::default();
    let worker_id = match (non_empty(&args.worker_id), non_empty(&file.worker_id)) {
        (Some(id), _) => {
            sources.worker_id = Some("--worker-id".to_owned());
            id
        }
        (None, Some(id)) => {
            sources.worker_id = Some(format!("worker_id in {}", file_path.display()));
            id
        }
        (None, None) if mode == Mode::Daemon => return Err(ConfigError::WorkerIdRequired),
        (None, None) => DEFAULT_WORKER_ID_LOCAL.to_owned(),
    };
    if worker_id.starts_with("warp") {
        return Err(ConfigError::WorkerIdReserved(worker_id));
    }

    let api_key = match (&args.api_key, expand("--api-key-file", &args.api_key_file)?) {
        (Some(key), _) => {
            sources.api_key = Some("--api-key".to_owned());
            Some(key.clone())
        }
        (None, Some(path)) => {
            sources.api_key = Some(format!("--api-key-file {}", path.display()));
            Some(read_api_key(&path)?)
        }
        (None, None) => {
            let key = env("WARP_API_KEY")
                .filter(|k| !k.is_empty())
                .map(Secret::new);
            if key.is_some() {
                sources.api_key = Some("WARP_API_KEY".to_owned());
            }
            key
        }
    };
    if api_key.is_none() && mode == Mode::Daemon {
        return Err(ConfigError::ApiKeyRequired);
    }

    let mut cli_env = EnvList::new();
    for entry in &args.env {
        let (k, v) = parse_env_flag(entry, env).map_err(ConfigError::EnvFlag)?;
        overlay(&mut cli_env, k, v);
    }

    let blocks = file.backend.as_ref();
    let file_kind = blocks
        .and_then(|b| b.present().first().copied())
        .and_then(BackendKind::parse);
    let kind = args.backend.or(file_kind).unwrap_or(BackendKind::Docker);
    if let (Some(fk), Some(cli)) = (file_kind, args.backend)
        && fk != cli
    {
        warnings.push(format!(
            "--backend {cli} ignores the backend.{fk} block of config file {}; the {cli} \
                 backend uses its defaults",
            file_path.display()
        ));
    }
    // The file's block applies only to the backend it configures.
    let block = |k: BackendKind| blocks.filter(|_| file_kind == Some(k));

    let cleanup = !args.no_cleanup && file.cleanup.unwrap_or(true);
    let target_dir = expand("--target-dir", &args.target_dir)?;
    if kind != BackendKind::Docker && !args.volumes.is_empty() {
        warnings.push(format!(
            "-v/--volumes only applies to the docker backend; ignored by the {kind} backend"
        ));
    }
    if kind != BackendKind::Direct && target_dir.is_some() {
        warnings.push(format!(
            "--target-dir only applies to the direct backend; ignored by the {kind} backend"
        ));
    }

    let ctx = BlockCtx {
        env,
        cli_env,
        path: &file_path,
    };
    let backend = match kind {
        BackendKind::Docker => BackendSettings::Docker(docker(
            block(kind).and_then(|b| b.docker.as_ref()),
            &args.volumes,
            &ctx,
        )?),
        BackendKind::Direct => BackendSettings::Direct(direct(
            block(kind).and_then(|b| b.direct.as_ref()),
            target_dir,
            &ctx,
        )),
        BackendKind::Command => {
            BackendSettings::Command(command(block(kind).and_then(|b| b.command.as_ref()), &ctx)?)
        }
        BackendKind::Kubernetes => BackendSettings::Kubernetes(Box::new(kubernetes(
            block(kind).and_then(|b| b.kubernetes.as_ref()),
            cleanup,
            &ctx,
        )?)),
    };

    let one_shot = args.one_shot || file.one_shot == Some(true);
    let mut max_concurrent_tasks = if args.max_concurrent_tasks != 0 {
        args.max_concurrent_tasks
    } else {
        // Validation rejected negatives; an i64 beyond usize (32-bit hosts) means "very many".
        file.max_concurrent_tasks
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    if one_shot {
        if kind != BackendKind::Direct {
            return Err(ConfigError::OneShotUnsupported(kind));
        }
        max_concurrent_tasks = 1;
    }
    // Flag, then environment, then file, then on (as the Go worker).
    let env_collect = env("OZ_COLLECT_TASK_LOGS").filter(|v| !v.is_empty());
    let env_collect = env_collect.and_then(|v| {
        let parsed = crate::cli::parse_bool(v.trim());
        if parsed.is_none() {
            warnings.push(format!(
                "ignoring OZ_COLLECT_TASK_LOGS={:?}: expected true or false",
                v.escape_debug().to_string()
            ));
        }
        parsed
    });
    let collect_task_logs = args
        .collect_task_logs
        .or(env_collect)
        .or(file.collect_task_logs)
        .unwrap_or(true);

    let web_socket_url = url(
        "--web-socket-url",
        &args.web_socket_url,
        settings::DEFAULT_WEB_SOCKET_URL,
        &["ws", "wss"],
    )?;
    let server_root_url = url(
        "--server-root-url",
        &args.server_root_url,
        settings::DEFAULT_SERVER_ROOT_URL,
        &["http", "https"],
    )?;
    let ca_bundle = match expand("--ca-bundle", &args.ca_bundle)? {
        Some(p) => Some(p),
        None => expand("ca_bundle", &non_empty(&file.ca_bundle).map(PathBuf::from))?,
    };
    let state_dir = match expand("--state-dir", &args.state_dir)? {
        Some(p) => p,
        None => expand("state_dir", &non_empty(&file.state_dir).map(PathBuf::from))?
            .unwrap_or_else(|| PathBuf::from(settings::DEFAULT_STATE_DIR)),
    };

    let settings = Settings {
        worker_id,
        api_key,
        backend,
        cleanup,
        max_concurrent_tasks,
        one_shot,
        collect_task_logs,
        idle_on_complete: non_empty(&args.idle_on_complete).or(non_empty(&file.idle_on_complete)),
        web_socket_url,
        server_root_url,
        session_sharing_server_url: non_empty(&args.session_sharing_server_url),
        log_level: args.log_level.unwrap_or(log::LevelFilter::Info),
        log_format: args
            .log_format
            .or_else(|| file.log_format.as_deref().and_then(LogFormat::parse))
            .unwrap_or_default(),
        metrics_addr: args
            .metrics_addr
            .clone()
            .or_else(|| non_empty(&file.metrics_addr)),
        // Validation already rejected a malformed file value.
        drain_timeout: args
            .drain_timeout
            .or_else(|| file::drain_timeout(&file).ok().flatten())
            .unwrap_or_default(),
        ca_bundle,
        state_dir,
        timing: timing(env)?,
    };
    Ok(Resolved {
        settings,
        warnings,
        sources,
    })
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.is_empty()).cloned()
}

fn read_capped(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, ConfigError> {
    let read_err = |source| ConfigError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf).map_err(read_err)?;
    if buf.len() as u64 > cap {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("file is larger than {} KiB", cap >> 10),
        )));
    }
    Ok(buf)
}

/// Reads, decodes and validates the config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let bytes = read_capped(path, MAX_CONFIG_BYTES, "config file")?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Parse {
        path: path.to_path_buf(),
        line: None,
        message: "the file is not valid UTF-8".to_owned(),
    })?;
    let cfg = file::decode_all(&text).map_err(|errors| {
        // One line: the first error's line leads, the others carry their own.
        let mut errors = errors.into_iter();
        let first = errors.next().unwrap_or(file::DecodeError {
            line: None,
            message: "cannot be decoded".to_owned(),
            empty: false,
        });
        let mut message = first.message;
        for e in errors {
            message.push_str("; ");
            message.push_str(&with_line(e.line, &e.message));
        }
        ConfigError::Parse {
            path: path.to_path_buf(),
            line: first.line,
            message,
        }
    })?;
    let problems = file::validate(&cfg);
    if !problems.is_empty() {
        // Found after parsing: the line comes from the YAML path the problem names.
        let problems = problems
            .iter()
            .map(|p| {
                let line = super::locate::path_of_problem(p)
                    .and_then(|key| super::locate::line_of_or_parent(&text, key));
                with_line(line, p)
            })
            .collect();
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    Ok(cfg)
}

fn with_line(line: Option<usize>, message: &str) -> String {
    match line {
        Some(n) => format!("line {n}: {message}"),
        None => message.to_owned(),
    }
}

fn read_api_key(path: &Path) -> Result<Secret, ConfigError> {
    let bytes = read_capped(path, MAX_KEY_BYTES, "API key file")?;
    let bad = |reason| ConfigError::ApiKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = String::from_utf8(bytes).map_err(|_| bad("the file is not valid UTF-8"))?;
    let key = text.trim_end();
    if key.is_empty() {
        return Err(bad("the file is empty"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "the key contains whitespace or control characters (expected the key alone)",
        ));
    }
    Ok(Secret::new(key))
}

fn url(
    flag: &'static str,
    given: &Option<String>,
    default: &str,
    schemes: &[&str],
) -> Result<String, ConfigError> {
    let value = non_empty(given).unwrap_or_else(|| default.to_owned());
    check_url(&value, schemes).map_err(|reason| ConfigError::Url {
        flag,
        value: value.clone(),
        reason,
    })?;
    Ok(value)
}

fn timing(env: Env<'_>) -> Result<Timing, ConfigError> {
    let mut t = Timing::default();
    for var in TIMING_ENV {
        let Some(value) = env(var.name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let err = |reason: String| ConfigError::TimingEnv {
            var: var.name,
            value: value.clone(),
            reason,
        };
        match duration::parse_signed(&value).map_err(|e| err(e.to_string()))? {
            Sign::Positive(d) => *(var.field)(&mut t) = d,
            Sign::NotPositive => return Err(err("must be a positive duration".to_owned())),
        }
    }
    Ok(t)
}

struct BlockCtx<'a> {
    env: Env<'a>,
    /// Parsed `-e` flags (later entries already overlaid).
    cli_env: EnvList,
    path: &'a Path,
}

impl BlockCtx<'_> {
    /// File `environment` first, then `-e` flags on top (flag wins, first-seen order kept).
    fn merged_env(&self, entries: Option<&Vec<EnvEntry>>) -> EnvList {
        let mut list = EnvList::new();
        for e in entries.into_iter().flatten() {
            let Some(name) = e.name.clone() else { continue };
            let value = match &e.value {
                Some(v) => v.clone(),
                None => (self.env)(&name).unwrap_or_default(),
            };
            overlay(&mut list, name, value);
        }
        for (k, v) in &self.cli_env {
            overlay(&mut list, k.clone(), v.clone());
        }
        list
    }

    /// A file value that validation already accepted failed to convert: report it the same way.
    fn invalid(&self, problem: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            problems: vec![problem],
        }
    }
}

fn docker(
    block: Option<&DockerFile>,
    cli_volumes: &[String],
    ctx: &BlockCtx<'_>,
) -> Result<DockerSettings, ConfigError> {
    let file_volumes = block.and_then(|b| b.volumes.as_deref()).unwrap_or_default();
    let labelled = file_volumes
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("backend.docker.volumes[{i}]"), v))
        .chain(cli_volumes.iter().map(|v| ("-v".to_owned(), v)));
    let mut volumes = Vec::new();
    for (origin, spec) in labelled {
        check_volume(spec).map_err(|reason| ConfigError::Volume {
            origin,
            spec: spec.clone(),
            reason,
        })?;
        volumes.push(spec.clone());
    }
    Ok(DockerSettings {
        volumes,
        env: ctx.merged_env(block.and_then(|b| b.environment.as_ref())),
        image_pull_policy: block
            .and_then(|b| b.image_pull_policy.as_deref())
            .and_then(PullPolicy::parse)
            .unwrap_or(PullPolicy::Always),
        sidecar_image: block.and_then(|b| non_empty(&b.sidecar_image)),
    })
}

fn direct(
    block: Option<&DirectFile>,
    cli_target: Option<PathBuf>,
    ctx: &BlockCtx<'_>,
) -> DirectSettings {
    let path_of = |v: Option<&Option<String>>| v.and_then(non_empty).map(PathBuf::from);
    let target_dir = cli_target.or_else(|| path_of(block.map(|b| &b.target_dir)));
    let configured_root = path_of(block.map(|b| &b.workspace_root));
    let workspace_root = match (&target_dir, configured_root) {
        (_, Some(root)) => Some(root),
        (None, None) => Some(PathBuf::from(settings::DEFAULT_WORKSPACE_ROOT)),
        (Some(_), None) => None,
    };
    DirectSettings {
        workspace_root,
        target_dir,
        oz_path: path_of(block.map(|b| &b.oz_path)),
        setup_command: block.and_then(|b| non_empty(&b.setup_command)),
        teardown_command: block.and_then(|b| non_empty(&b.teardown_command)),
        env: ctx.merged_env(block.and_then(|b| b.environment.as_ref())),
    }
}

fn command(
    block: Option<&CommandFile>,
    ctx: &BlockCtx<'_>,
) -> Result<CommandSettings, ConfigError> {
    let Some(c) = block else {
        return Err(ConfigError::CommandNeedsDispatch);
    };
    let Some(dispatch_command) = non_empty(&c.dispatch_command) else {
        return Err(ConfigError::CommandNeedsDispatch);
    };
    let dispatch_timeout = file::dispatch_timeout(c)
        .map_err(|e| ctx.invalid(e))?
        .unwrap_or(DEFAULT_DISPATCH_TIMEOUT);
    Ok(CommandSettings {
        dispatch_command,
        cancel_command: non_empty(&c.cancel_command),
        dispatch_timeout,
        env: ctx.merged_env(c.environment.as_ref()),
    })
}

fn kubernetes(
    block: Option<&KubernetesFile>,
    cleanup: bool,
    ctx: &BlockCtx<'_>,
) -> Result<KubernetesSettings, ConfigError> {
    let default = KubernetesFile::default();
    let k = block.unwrap_or(&default);
    let inv = |e: String| ctx.invalid(e);
    Ok(KubernetesSettings {
        namespace: non_empty(&k.namespace).unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        kubeconfig: non_empty(&k.kubeconfig).map(PathBuf::from),
        default_image: non_empty(&k.default_image),
        image_pull_policy: k
            .image_pull_policy
            .as_deref()
            .and_then(PullPolicy::parse)
            .unwrap_or(PullPolicy::IfNotPresent),
        use_image_volumes: k.use_image_volumes.unwrap_or(false),
        sidecar_copy_readiness: k.sidecar_copy_readiness.unwrap_or(false),
        preflight_image: non_empty(&k.preflight_image)
            .unwrap_or_else(|| DEFAULT_PREFLIGHT_IMAGE.to_owned()),
        sidecar_image: non_empty(&k.sidecar_image),
        // Owned copies: nothing aliases the parsed file.
        coding_cli_sidecars: k.coding_cli_sidecars.clone().unwrap_or_default(),
        setup_command: non_empty(&k.setup_command),
        teardown_command: non_empty(&k.teardown_command),
        extra_labels: k.extra_labels.clone().unwrap_or_default(),
        extra_annotations: k.extra_annotations.clone().unwrap_or_default(),
        // Absent means the chart's 8 h; 0 means unbounded, as the chart treats it.
        active_deadline_seconds: Some(
            k.active_deadline_seconds
                .unwrap_or(DEFAULT_ACTIVE_DEADLINE_SECONDS),
        )
        .filter(|n| *n > 0),
        ttl_seconds_after_finished: cleanup.then(|| {
            k.ttl_seconds_after_finished
                .unwrap_or(DEFAULT_JOB_TTL_SECONDS)
        }),
        workspace_size_limit: file::workspace_size_limit(k).map_err(inv)?,
        unschedulable_timeout: file::unschedulable_timeout(k)
            .map_err(inv)?
            .unwrap_or(Some(DEFAULT_UNSCHEDULABLE_TIMEOUT)),
        volume_mount_timeout: file::volume_mount_timeout(k)
            .map_err(inv)?
            .unwrap_or(Some(DEFAULT_VOLUME_MOUNT_TIMEOUT)),
        pod_template: file::pod_template(k).map_err(inv)?,
        preflight_resources: file::preflight_resources(k).map_err(inv)?,
        task_env: ctx.cli_env.clone(),
    })
}

#[cfg(test)]
#[path = "merge_tests/mod.rs"]
mod tests;
