//! Test images for tests that use the real Docker engine, which has no images and no registry.
//!
//! - [`tool_binary`]: a tiny static program (C, built once with `gcc -static`) that is the only
//!   binary of every test image: `print OUT ERR CODE`, `sleep` (exits 42 on SIGTERM), `cat`
//!   (stdin to stdout), `getenv NAME`, `cat-file PATH`.
//! - [`Tar`]: a minimal ustar writer; [`rootfs_tar`] is `/tool`, `/data/hello.txt`, `/target/`.
//! - [`import_tool_image`]: imports that rootfs as `oz-test/tool:<unique>` (`ENTRYPOINT ["/tool"]`,
//!   `LABEL oz-test=1`).
//! - [`FakeRegistry`]: a registry on 127.0.0.1 (which Docker treats as insecure, so plain HTTP)
//!   serving single-layer OCI images, optionally behind Basic auth, recording requests.
//! - [`Resources`]: removes the containers, volumes and images a test registered, on drop.
//!
//! Everything is named `oz-test-…` and labelled `oz-test=1`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oz_agent_worker::docker::{Client, Removal};

/// The source of the test tool.
pub const TOOL_C: &str = r#"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; write(1, "got TERM\n", 9); _exit(42); }

static int copy_fd(int in, int out) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0) return 0;
        if (n < 0) return 1;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, n - off);
            if (w <= 0) return 1;
            off += w;
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "print") == 0) {
        write(1, argv[2], strlen(argv[2])); write(1, "\n", 1);
        write(2, argv[3], strlen(argv[3])); write(2, "\n", 1);
        return atoi(argv[4]);
    }
    if (argc >= 2 && strcmp(argv[1], "sleep") == 0) {
        signal(SIGTERM, on_term);
        write(1, "sleeping\n", 9);
        for (;;) pause();
    }
    if (argc >= 2 && strcmp(argv[1], "cat") == 0) return copy_fd(0, 1);
    if (argc >= 3 && strcmp(argv[1], "getenv") == 0) {
        const char *v = getenv(argv[2]);
        if (!v) return 3;
        puts(v);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "cat-file") == 0) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) { perror(argv[2]); return 2; }
        return copy_fd(fd, 1);
    }
    fprintf(stderr, "usage: tool print OUT ERR CODE | sleep | cat | getenv NAME | cat-file PATH\n");
    return 64;
}
"#;

/// The content of `/data/hello.txt` in test images.
pub const HELLO: &[u8] = b"hello from the image\n";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `oz-test-<kind>-<pid>-<n>`: unique across parallel tests and concurrent test runs.
pub fn unique(kind: &str) -> String {
    format!(
        "oz-test-{kind}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The static test tool, compiled once per test process.
pub fn tool_binary() -> &'static [u8] {
    static TOOL: OnceLock<Vec<u8>> = OnceLock::new();
    TOOL.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique("tool-build"));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("tool.c");
        let bin = dir.join("tool");
        std::fs::write(&src, TOOL_C).unwrap();
        let out = Command::new("gcc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("gcc is needed to build the static test tool for Docker tests");
        assert!(
            out.status.success(),
            "gcc -static failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&bin).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    })
}

/// A minimal ustar writer.
#[derive(Default)]
pub struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    fn header(&mut self, path: &str, mode: u32, size: usize, kind: u8) {
        assert!(path.len() < 100, "tar path too long: {path}");
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        let mut put = |at: usize, s: String| h[at..at + s.len()].copy_from_slice(s.as_bytes());
        put(100, format!("{mode:07o}\0"));
        put(108, "0000000\0".to_string());
        put(116, "0000000\0".to_string());
        put(124, format!("{size:011o}\0"));
        put(136, format!("{:011o}\0", 1_700_000_000u64));
        put(148, "        ".to_string());
        put(257, "ustar\0".to_string());
        put(263, "00".to_string());
        h[156] = kind;
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let sum = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(sum.as_bytes());
        self.buf.extend_from_slice(&h);
    }

    pub fn dir(mut self, path: &str) -> Tar {
        self.header(&format!("{}/", path.trim_end_matches('/')), 0o755, 0, b'5');
        self
    }

    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Tar {
        self.header(path, mode, data.len(), b'0');
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }
}

/// The root filesystem of test images.
pub fn rootfs_tar() -> Vec<u8> {
    Tar::new()
        .file("tool", 0o755, tool_binary())
        .dir("data")
        .file("data/hello.txt", 0o644, HELLO)
        .dir("target")
        .dir("tmp")
        .finish()
}

/// A client for the engine this machine runs (discovered from the real environment), negotiated.
/// Panics loudly when the engine is unreachable: these tests must not pass without Docker.
pub fn docker() -> Client {
    let mut client = Client::from_env(&|k| std::env::var(k).ok())
        .unwrap_or_else(|e| panic!("Docker endpoint discovery failed: {e}"));
    client.negotiate().unwrap_or_else(|e| {
        panic!("these tests need the Docker engine, and it is unreachable: {e}")
    });
    client
}

/// Things a test created, removed (forcefully) when dropped, even if the test panicked.
pub struct Resources {
    client: Client,
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
}

impl Resources {
    pub fn new(client: &Client) -> Resources {
        Resources {
            client: client.clone(),
            containers: Mutex::default(),
            volumes: Mutex::default(),
            images: Mutex::default(),
        }
    }

    pub fn container(&self, id: &str) -> String {
        self.containers.lock().unwrap().push(id.to_string());
        id.to_string()
    }

    pub fn volume(&self, name: &str) -> String {
        self.volumes.lock().unwrap().push(name.to_string());
        name.to_string()
    }

    pub fn image(&self, reference: &str) -> String {
        self.images.lock().unwrap().push(reference.to_string());
        reference.to_string()
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        let report =
            |what: &str, name: &str, r: Result<Removal, oz_agent_worker::docker::DockerError>| {
                if let Err(e) = r {
                    eprintln!("cleanup of {what} {name} failed: {e}");
                }
            };
        for id in self.containers.lock().unwrap().iter() {
            report(
                "container",
                id,
                self.client.remove_container(id, true, true),
            );
        }
        for name in self.volumes.lock().unwrap().iter() {
            report("volume", name, self.client.remove_volume(name, true));
        }
        for reference in self.images.lock().unwrap().iter() {
            report(
                "image",
                reference,
                self.client.remove_image(reference, true),
            );
        }
    }
}

/// Imports [`rootfs_tar`] as a fresh `oz-test/tool:<unique>` image; returns its reference.
pub fn import_tool_image(client: &Client, resources: &Resources) -> String {
    let tag = unique("tool");
    let reference = resources.image(&format!("oz-test/tool:{tag}"));
    let tar = rootfs_tar();
    client
        .import_image(
            &mut tar.as_slice(),
            "oz-test/tool",
            &tag,
            &["LABEL oz-test=1", r#"ENTRYPOINT ["/tool"]"#],
        )
        .unwrap_or_else(|e| panic!("importing the test image failed: {e}"));
    reference
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The daemon-side name of this machine's architecture.
pub fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A single-layer OCI image served by [`FakeRegistry`].
struct Served {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    manifest_digest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

fn serve_image(repo: &str, tag: &str, layer: Vec<u8>, arch: &str) -> Served {
    let layer_digest = sha256(&layer);
    // Only the tool image has an entry point; task and sidecar images run what they are given.
    let inner = if repo == "oz-test/tool" {
        serde_json::json!({"Entrypoint": ["/tool"], "Labels": {"oz-test": "1"}})
    } else {
        serde_json::json!({"Labels": {"oz-test": "1"}})
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "oz-test"}]
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "size": layer.len(), "digest": layer_digest}]
    })
    .to_string()
    .into_bytes();
    Served {
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest_digest: sha256(&manifest),
        manifest,
        blobs: vec![(config_digest, config), (layer_digest, layer)],
    }
}

/// One request the registry received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

struct RegistryState {
    images: Vec<Served>,
    basic: Option<String>,
    requests: Mutex<Vec<Recorded>>,
    stop: AtomicBool,
    /// Blob requests hang until the registry is dropped instead of being answered.
    stall_blobs: AtomicBool,
}

/// A Docker registry (v2 API, plain HTTP) on 127.0.0.1 for pull tests.
pub struct FakeRegistry {
    pub port: u16,
    state: Arc<RegistryState>,
}

impl FakeRegistry {
    /// Serves the test rootfs (plus a unique file) as `oz-test/tool:1` for `arch`; with `basic`, requires those
    /// credentials (Basic auth, as `user:password`).
    pub fn start(arch: &str, basic: Option<(&str, &str)>) -> FakeRegistry {
        // A unique file makes the layer new to the daemon, so it is really downloaded.
        let layer = Tar::new()
            .file("tool", 0o755, tool_binary())
            .dir("data")
            .file("data/hello.txt", 0o644, HELLO)
            .file("data/layer-id", 0o644, unique("layer").as_bytes())
            .finish();
        FakeRegistry::serve(arch, basic, vec![("oz-test/tool", "1", layer)])
    }

    /// Serves each `(repo, tag, layer tar)` as a single-layer image for `arch` (the first one is
    /// what [`FakeRegistry::image_ref`] names); with `basic`, requires those credentials.
    pub fn serve(
        arch: &str,
        basic: Option<(&str, &str)>,
        served: Vec<(&str, &str, Vec<u8>)>,
    ) -> FakeRegistry {
        let images = served
            .into_iter()
            .map(|(repo, tag, layer)| serve_image(repo, tag, layer, arch))
            .collect();
        let basic = basic.map(|(u, p)| {
            let token = oz_agent_worker::docker::base64::encode(format!("{u}:{p}").as_bytes());
            format!("Basic {token}")
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(RegistryState {
            images,
            basic,
            requests: Mutex::default(),
            stop: AtomicBool::new(false),
            stall_blobs: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("fake-registry".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if accept_state.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = Arc::clone(&accept_state);
                    let _ = std::thread::Builder::new()
                        .name("fake-reg-conn".into())
                        .spawn(move || handle(conn, &state));
                }
            })
            .unwrap();
        FakeRegistry { port, state }
    }

    /// `127.0.0.1:<port>/<repo>:<tag>` of the first served image (`oz-test/tool:1` for
    /// [`FakeRegistry::start`]).
    pub fn image_ref(&self) -> String {
        let first = &self.state.images[0];
        format!("127.0.0.1:{}/{}:{}", self.port, first.repo, first.tag)
    }

    /// `127.0.0.1:<port>/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("127.0.0.1:{}/{repo}:{tag}", self.port)
    }

    pub fn manifest_digest(&self) -> String {
        self.state.images[0].manifest_digest.clone()
    }

    /// From now on, blob downloads hang (a stuck registry) until the registry is dropped.
    pub fn stall_blobs(&self) {
        self.state.stall_blobs.store(true, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(mut conn: TcpStream, state: &RegistryState) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        // Docker tries TLS first; hang up on anything that is not plain HTTP.
        if !head.is_ascii() || head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    state.requests.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        authorization: authorization.clone(),
    });
    if path.contains("/blobs/") && state.stall_blobs.load(Ordering::SeqCst) {
        // Stalled for as long as the registry lives: a test that waits for a cancelled pull
        // to return proves the cancellation, never the end of the stall.
        while !state.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let (status, content_type, body) = route(state, &path, authorization.as_deref());
    let mut response = format!(
        "HTTP/1.1 {status}\r\nDocker-Distribution-Api-Version: registry/2.0\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        response.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if status.starts_with("401") {
        response.push_str("WWW-Authenticate: Basic realm=\"oz-test\"\r\n");
    }
    if path.contains("/manifests/") && status.starts_with("200") {
        response.push_str(&format!("Docker-Content-Digest: {}\r\n", sha256(&body)));
    }
    response.push_str("\r\n");
    let mut out = response.into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(&body);
    }
    let _ = conn.write_all(&out);
}

fn route(
    state: &RegistryState,
    path: &str,
    authorization: Option<&str>,
) -> (&'static str, Option<&'static str>, Vec<u8>) {
    if let Some(expected) = &state.basic
        && authorization != Some(expected.as_str())
    {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        return ("401 Unauthorized", Some("application/json"), body.to_vec());
    }
    if path == "/v2/" {
        return ("200 OK", Some("application/json"), b"{}".to_vec());
    }
    for image in &state.images {
        let prefix = format!("/v2/{}/", image.repo);
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(reference) = rest.strip_prefix("manifests/")
            && (reference == image.tag || reference == image.manifest_digest)
        {
            return (
                "200 OK",
                Some("application/vnd.oci.image.manifest.v1+json"),
                image.manifest.clone(),
            );
        }
        if let Some(digest) = rest.strip_prefix("blobs/")
            && let Some((_, blob)) = image.blobs.iter().find(|(d, _)| d == digest)
        {
            return ("200 OK", Some("application/octet-stream"), blob.clone());
        }
    }
    let body =
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown to the oz-test registry"}]}"#;
    ("404 Not Found", Some("application/json"), body.to_vec())
}

/// The source of the test agent: `/entrypoint.sh` of test sidecar images, so the task
/// container runs it as `/agent/entrypoint.sh`. It prints `ARGV <arg>` for each argument,
/// `ENV <name>` for each variable name (never values), `CWD <dir>`, and one line on stderr, then
/// acts on its environment:
/// - `OZ_AGENT_SHOW=NAME`: prints `SHOW NAME=<value>`;
/// - `OZ_AGENT_CAT=PATH`: prints the file;
/// - `OZ_AGENT_ALLOC_MB=N`: allocates and touches N MiB, prints `allocated`;
/// - `OZ_AGENT_SEGV=1`: dies of SIGSEGV (a real fault kills even a namespace's init);
/// - `OZ_AGENT_SLEEP=1`: prints `sleeping` and waits; SIGTERM prints `got TERM` and exits 143,
///   or is ignored with `OZ_AGENT_TERM=ignore`;
/// - `OZ_AGENT_EXIT=N`: exit status (default 0).
pub const AGENT_C: &str = r#"
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void out(const char *a, const char *b) {
    write(1, a, strlen(a)); write(1, b, strlen(b)); write(1, "\n", 1);
}
static void on_term(int sig) { (void)sig; write(1, "got TERM\n", 9); _exit(143); }

int main(int argc, char **argv) {
    char cwd[4096];
    for (int i = 0; i < argc; i++) out("ARGV ", argv[i]);
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        write(1, "ENV ", 4); write(1, *e, n); write(1, "\n", 1);
    }
    if (getcwd(cwd, sizeof cwd)) out("CWD ", cwd);
    write(2, "agent stderr line\n", 18);
    const char *show = getenv("OZ_AGENT_SHOW");
    if (show) {
        const char *v = getenv(show);
        write(1, "SHOW ", 5); write(1, show, strlen(show)); write(1, "=", 1);
        out(v ? v : "", "");
    }
    const char *cat = getenv("OZ_AGENT_CAT");
    if (cat) {
        char buf[4096];
        int fd = open(cat, O_RDONLY);
        if (fd < 0) { out("cannot open ", cat); return 2; }
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) write(1, buf, n);
        close(fd);
    }
    const char *alloc = getenv("OZ_AGENT_ALLOC_MB");
    if (alloc) {
        long mb = atol(alloc);
        for (long i = 0; i < mb; i++) {
            char *p = malloc(1 << 20);
            if (!p) { out("malloc failed", ""); return 3; }
            for (long j = 0; j < (1 << 20); j += 4096) p[j] = 1;
        }
        out("allocated", "");
    }
    if (getenv("OZ_AGENT_SEGV")) { volatile int *p = 0; *p = 1; }
    if (getenv("OZ_AGENT_SLEEP")) {
        const char *term = getenv("OZ_AGENT_TERM");
        if (term && strcmp(term, "ignore") == 0) signal(SIGTERM, SIG_IGN);
        else signal(SIGTERM, on_term);
        out("sleeping", "");
        for (;;) pause();
    }
    const char *code = getenv("OZ_AGENT_EXIT");
    return code ? atoi(code) : 0;
}
"#;

fn compile_static(name: &str, source: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(unique(&format!("{name}-build")));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc is needed to build static test programs for Docker tests");
    assert!(
        out.status.success(),
        "gcc -static {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&bin).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// The static test agent, compiled once per test process.
pub fn agent_binary() -> &'static [u8] {
    static AGENT: OnceLock<Vec<u8>> = OnceLock::new();
    AGENT.get_or_init(|| compile_static("agent", AGENT_C))
}

/// Imports `tar` as a fresh `<repo>:<unique tag>` image labelled `oz-test=1` (registered for
/// removal); returns its reference.
pub fn import_image(client: &Client, resources: &Resources, repo: &str, tar: &[u8]) -> String {
    let tag = unique("img");
    let reference = resources.image(&format!("{repo}:{tag}"));
    // The tag travels inside `repo`: Podman's compat API ignores the `tag` parameter.
    client
        .import_image(&mut &tar[..], &reference, "", &["LABEL oz-test=1"])
        .unwrap_or_else(|e| panic!("importing test image {reference} failed: {e}"));
    reference
}

/// A `FROM scratch`-style sidecar image: `/entrypoint.sh` is the static test agent.
pub fn import_sidecar_image(client: &Client, resources: &Resources) -> String {
    import_image(client, resources, "oz-test/agent", &sidecar_layer())
}

/// A nearly empty task image (the agent comes from the sidecar volume).
pub fn import_task_image(client: &Client, resources: &Resources) -> String {
    import_image(client, resources, "oz-test/task", &task_layer())
}

/// The sidecar image's root filesystem (see [`import_sidecar_image`]), with a unique file so a
/// registry-served copy is new to the daemon.
pub fn sidecar_layer() -> Vec<u8> {
    Tar::new()
        .file("entrypoint.sh", 0o755, agent_binary())
        .file("sidecar-marker", 0o644, b"from the sidecar\n")
        .file("layer-id", 0o644, unique("layer").as_bytes())
        .finish()
}

/// The task image's root filesystem (see [`import_task_image`]), with a unique file.
pub fn task_layer() -> Vec<u8> {
    Tar::new()
        .dir("workspace")
        .dir("data")
        .file("data/hello.txt", 0o644, HELLO)
        .file("data/layer-id", 0o644, unique("layer").as_bytes())
        .finish()
}

/// `POST /images/{repo}/push?tag=…` (the Engine API push endpoint, which the client does not
/// model) over the engine's unix socket, with `auth` as `X-Registry-Auth`. Panics with the
/// daemon's message if the push fails, including an error inside the 200 progress stream.
pub fn push_image(client: &Client, repo: &str, tag: &str, auth: &str) {
    use oz_agent_worker::docker::Address;
    use std::os::unix::net::UnixStream;
    let Address::Unix(path) = client.endpoint().address() else {
        panic!("push_image needs a unix-socket Docker endpoint");
    };
    let mut conn = UnixStream::connect(path).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let request = format!(
        "POST /images/{repo}/push?tag={tag} HTTP/1.1\r\nHost: docker\r\nX-Registry-Auth: {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "push of {repo}:{tag} failed: {text}"
    );
    assert!(
        !text.contains("\"error"),
        "push of {repo}:{tag} failed: {text}"
    );
}
