//! Runs a Docker credential helper: `docker-credential-<name> get`, the server URL on stdin,
//! `{"ServerURL", "Username", "Secret"}` on stdout. The helper is looked up on the `PATH` of the
//! injected environment and gets at most `timeout` before it is killed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use super::auth::{self, RegistryAuth};
use super::cli_config::{EnvLookup, var};

/// The variables a helper is given, when set in the worker's environment; everything else is
/// withheld (the API key, `NOTIFY_SOCKET`, `WATCHDOG_*`, task data). A helper needs `PATH` to
/// find its own tools, `HOME`/`DOCKER_CONFIG` to find its store, the proxy variables to reach
/// a cloud API, and the few that name a keyring or cloud profile (`pass`, `secretservice`,
/// `ecr-login`, `gcloud`).
pub(crate) const HELPER_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "DOCKER_CONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "GNUPGHOME",
    "PASSWORD_STORE_DIR",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "CLOUDSDK_CONFIG",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// More output than this from a helper is not credentials.
const OUTPUT_LIMIT: u64 = 64 * 1024;

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Asks helper `name` for `server`'s credentials; `Ok(None)` when it has none. Errors are
/// one-line strings that never contain the helper's output on success paths (the secret).
pub(crate) fn get(
    env: EnvLookup<'_>,
    name: &str,
    server: &str,
    timeout: Duration,
) -> Result<Option<RegistryAuth>, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("invalid credential helper name {name:?}"));
    }
    let program = format!("docker-credential-{name}");
    let path_var = var(env, "PATH");
    let exe = path_var
        .as_deref()
        .and_then(|p| find_in_path(p, &program))
        .ok_or_else(|| format!("credential helper {program} not found on PATH"))?;

    let mut command = Command::new(&exe);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear();
    for name in HELPER_ENV {
        if let Some(value) = var(env, name) {
            command.env(name, value);
        }
    }
    let mut child =
        spawn(&mut command).map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE; its exit status tells the story.
        let _ = stdin.write_all(server.as_bytes());
    }
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{program}: no stdout pipe"));
    };
    let (tx, rx) = mpsc::channel();
    // Tracked: a reader outlives this call when the helper times out (until its pipe
    // closes); shutdown joins it with a deadline.
    let reader = crate::threads::spawn_tracked(
        std::thread::Builder::new().name("cred-helper".to_string()),
        move || {
            let mut out = Vec::new();
            let result = stdout.take(OUTPUT_LIMIT).read_to_end(&mut out).map(|_| out);
            let _ = tx.send(result);
        },
    );
    if let Err(e) = reader {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("cannot start a thread for {program}: {e}"));
    }
    let output = match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("reading the output of {program} failed: {e}"));
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} get did not answer within {timeout:?}"));
        }
    };
    // Stdout is closed: the helper is exiting; waiting is bounded by its exit.
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {program} failed: {e}"))?;
    if !status.success() {
        let text = String::from_utf8_lossy(&output);
        let text = text.trim();
        // The docker-credential-helpers' wording for "nothing stored for this server".
        if text.contains("credentials not found") {
            return Ok(None);
        }
        // Its stdout is not shown: a helper that fails after printing may have printed the
        // secret JSON. Running it by hand (`echo <server> | docker-credential-<name> get`)
        // shows what went wrong.
        return Err(format!(
            "{program} get failed ({status}); its output is withheld as it may hold \
             credentials: run `echo {server} | {program} get` to see it"
        ));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output)
        .map_err(|_| format!("{program} get printed something that is not credentials JSON"))?;
    Ok(auth::from_helper(server, answer.username, answer.secret))
}

/// Spawns, retrying briefly on ETXTBSY: a helper installed a moment ago may still be open for
/// writing in a process that forked in between (it goes away at that process's exec).
fn spawn(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 * attempt));
            }
            result => return result,
        }
    }
}

/// The first executable file named `program` in the `PATH` list `path`.
fn find_in_path(path: &str, program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            Path::new(candidate)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
