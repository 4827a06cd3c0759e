//! Where the cluster is and who we are: kubeconfig files (explicit, `$KUBECONFIG` merged
//! first-wins, `~/.kube/config`) and the in-cluster service account, resolved to one
//! [`ClusterConfig`]. Pure apart from reading the files it is pointed at.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::base64;

/// The in-cluster service-account directory.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `https://host:port/base`: where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub https: bool,
    /// Host without brackets (an IPv6 literal stays bare here).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (servers behind a path-routing proxy), usually "".
    pub base: String,
}

impl ServerUrl {
    pub fn parse(s: &str) -> Result<ServerUrl, String> {
        let s = s.trim();
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if !s.contains("://") && !s.is_empty() {
            // client-go treats a bare host as https.
            (true, s)
        } else {
            return Err(format!(
                "server {s:?} is not an http:// or https:// URL; fix the cluster's `server` entry"
            ));
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("server {s:?} has an unclosed IPv6 bracket"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("server {s:?} has a bad port"))?,
                None => default_port,
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse()
                        .map_err(|_| format!("server {s:?} has a bad port"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("server {s:?} has no host"));
        }
        Ok(ServerUrl {
            https,
            host,
            port,
            base: base.to_owned(),
        })
    }

    /// `host:port` as it goes in a `Host` header (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.base)
    }
}

/// An exec credential plugin (`users[].user.exec`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecConfig {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<ExecEnv>,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub interactive_mode: Option<String>,
    #[serde(default)]
    pub provide_cluster_info: bool,
    #[serde(default)]
    pub install_hint: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct ExecEnv {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for ExecEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=<redacted>", self.name)
    }
}

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How requests authenticate (besides a client certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    None,
    Token(Secret),
    /// Re-read as it changes (projected service-account tokens rotate).
    TokenFile(PathBuf),
    Basic {
        username: String,
        password: Secret,
    },
    Exec(Box<ExecConfig>),
}

/// PEM bytes of a client certificate and key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCert(<redacted>)")
    }
}

/// Everything needed to talk to one API server as one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where this came from, for `check` and errors: "kubeconfig /p (context c)", "in-cluster".
    pub source: String,
    pub server: ServerUrl,
    /// Extra trusted CA certificates (PEM). `None` = the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_tls_verify: bool,
    pub tls_server_name: Option<String>,
    pub proxy_url: Option<String>,
    pub client_cert: Option<ClientCert>,
    pub auth: AuthConfig,
    /// `Impersonate-*` headers.
    pub impersonate: Vec<(String, String)>,
    /// The context's namespace (informational: the backend's namespace comes from its config).
    pub namespace: Option<String>,
}

// ---- kubeconfig file model -------------------------------------------------------------------

#[derive(Default, Deserialize)]
struct File {
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context")]
    value: Option<T>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<UserEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    #[serde(default)]
    server: String,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    tls_server_name: Option<String>,
    #[serde(default)]
    proxy_url: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct ContextEntry {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(default)]
    client_certificate: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "as")]
    as_user: Option<String>,
    #[serde(default, rename = "as-uid")]
    as_uid: Option<String>,
    #[serde(default, rename = "as-groups")]
    as_groups: Vec<String>,
    #[serde(default, rename = "as-user-extra")]
    as_user_extra: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    exec: Option<ExecConfig>,
    #[serde(default)]
    auth_provider: Option<serde_json::Value>,
}

/// One entry with the directory of the file it came from (relative paths resolve there).
struct Origin<T> {
    dir: PathBuf,
    value: T,
}

/// Several kubeconfig files merged: for each map entry the first file that defines it wins,
/// and `current-context` comes from the first file that sets it.
#[derive(Default)]
struct Merged {
    files: Vec<PathBuf>,
    current_context: Option<String>,
    clusters: BTreeMap<String, Origin<ClusterEntry>>,
    users: BTreeMap<String, Origin<UserEntry>>,
    contexts: BTreeMap<String, ContextEntry>,
}

impl Merged {
    fn add(&mut self, path: &Path, text: &str) -> Result<(), String> {
        let file: File = serde_norway::from_str(text).map_err(|e| {
            format!(
                "kubeconfig {} is not valid: {}",
                path.display(),
                without_quoted_values(&e.to_string())
            )
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.files.push(path.to_path_buf());
        if self.current_context.is_none() {
            self.current_context = file.current_context.filter(|c| !c.is_empty());
        }
        for c in file.clusters {
            if let Some(v) = c.value {
                self.clusters.entry(c.name).or_insert(Origin {
                    dir: dir.clone(),
                    value: v,
                });
            }
        }
        for u in file.users {
            self.users.entry(u.name).or_insert(Origin {
                dir: dir.clone(),
                value: u.user.unwrap_or_default(),
            });
        }
        for c in file.contexts {
            if let Some(v) = c.value {
                self.contexts.entry(c.name).or_insert(v);
            }
        }
        Ok(())
    }
}

/// The YAML parser's message with every quoted scalar blanked: it quotes the offending value
/// (`invalid type: string "..."`), which may be a token or a key (found by fuzzing).
fn without_quoted_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            out.push_str("...\"");
            while let Some(q) = chars.next() {
                match q {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
        }
    }
    out
}

/// What the resolution reads from the environment (injectable for tests).
pub struct Inputs<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The service-account directory (normally [`SERVICE_ACCOUNT_DIR`]).
    pub service_account_dir: PathBuf,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn resolve_path(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p.strip_prefix("./").unwrap_or(p));
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn data_or_file(
    data: Option<&str>,
    file: Option<&str>,
    dir: &Path,
    what: &str,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        return base64::decode(d.trim())
            .map(Some)
            .map_err(|_| format!("{what}-data is not valid base64"));
    }
    match file.filter(|f| !f.is_empty()) {
        Some(f) => read(&resolve_path(dir, f), what).map(Some),
        None => Ok(None),
    }
}

/// Resolves the cluster connection: explicit kubeconfig, else in-cluster, else `$KUBECONFIG`
/// (merged), else `~/.kube/config`.
pub fn resolve(explicit: Option<&Path>, inputs: &Inputs<'_>) -> Result<ClusterConfig, String> {
    if let Some(path) = explicit {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read kubeconfig {} (backend.kubernetes.kubeconfig): {e}",
                path.display()
            )
        })?;
        let mut m = Merged::default();
        m.add(path, &text)?;
        return from_merged(&m, &format!("kubeconfig {}", path.display()));
    }
    if let Some(c) = in_cluster(inputs)? {
        return Ok(c);
    }
    let mut m = Merged::default();
    let source = match (inputs.env)("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(list) => {
            for p in list.split(':').filter(|p| !p.is_empty()) {
                let path = PathBuf::from(p);
                // Missing files in the list are skipped, as kubectl does.
                if let Ok(text) = std::fs::read_to_string(&path) {
                    m.add(&path, &text)?;
                }
            }
            if m.files.is_empty() {
                return Err(format!(
                    "no Kubernetes configuration found: none of the files in $KUBECONFIG ({list}) exists, and this is not a pod (KUBERNETES_SERVICE_HOST is unset); set backend.kubernetes.kubeconfig"
                ));
            }
            format!("$KUBECONFIG ({list})")
        }
        None => {
            let home = (inputs.env)("HOME").unwrap_or_default();
            let path = Path::new(&home).join(".kube/config");
            let text = std::fs::read_to_string(&path).map_err(|_| {
                format!(
                    "no Kubernetes configuration found: not in a pod (KUBERNETES_SERVICE_HOST is unset), $KUBECONFIG is unset and {} does not exist; set backend.kubernetes.kubeconfig",
                    path.display()
                )
            })?;
            m.add(&path, &text)?;
            format!("kubeconfig {}", path.display())
        }
    };
    from_merged(&m, &source)
}

fn in_cluster(inputs: &Inputs<'_>) -> Result<Option<ClusterConfig>, String> {
    let (Some(host), Some(port)) = (
        (inputs.env)("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty()),
        (inputs.env)("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty()),
    ) else {
        return Ok(None);
    };
    let token = inputs.service_account_dir.join("token");
    if std::fs::metadata(&token).is_err() {
        return Ok(None);
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("KUBERNETES_SERVICE_PORT {port:?} is not a port number"))?;
    let ca = std::fs::read(inputs.service_account_dir.join("ca.crt")).ok();
    Ok(Some(ClusterConfig {
        source: format!(
            "in-cluster service account ({})",
            inputs.service_account_dir.display()
        ),
        server: ServerUrl {
            https: true,
            host,
            port,
            base: String::new(),
        },
        ca_pem: ca,
        insecure_skip_tls_verify: false,
        tls_server_name: None,
        proxy_url: None,
        client_cert: None,
        auth: AuthConfig::TokenFile(token),
        impersonate: Vec::new(),
        namespace: None,
    }))
}

fn from_merged(m: &Merged, source: &str) -> Result<ClusterConfig, String> {
    let ctx_name = m.current_context.as_deref().ok_or_else(|| {
        format!("{source} sets no current-context; run `kubectl config use-context <name>`")
    })?;
    let ctx = m.contexts.get(ctx_name).ok_or_else(|| {
        format!("{source}: current-context {ctx_name:?} is not among its contexts")
    })?;
    let cluster = m.clusters.get(&ctx.cluster).ok_or_else(|| {
        format!(
            "{source}: context {ctx_name:?} names cluster {:?}, which is not defined",
            ctx.cluster
        )
    })?;
    let empty = Origin {
        dir: PathBuf::new(),
        value: UserEntry::default(),
    };
    let user = if ctx.user.is_empty() {
        &empty
    } else {
        m.users.get(&ctx.user).ok_or_else(|| {
            format!(
                "{source}: context {ctx_name:?} names user {:?}, which is not defined",
                ctx.user
            )
        })?
    };
    let c = &cluster.value;
    let server = ServerUrl::parse(&c.server)
        .map_err(|e| format!("{source}: cluster {:?}: {e}", ctx.cluster))?;
    let ca_pem = data_or_file(
        c.certificate_authority_data.as_deref(),
        c.certificate_authority.as_deref(),
        &cluster.dir,
        "certificate-authority",
    )?;
    let u = &user.value;
    if let Some(p) = &u.auth_provider {
        let name = p["name"].as_str().unwrap_or("unknown");
        let plugin = match name {
            "gcp" => "gke-gcloud-auth-plugin",
            "azure" => "kubelogin (https://azure.github.io/kubelogin)",
            "oidc" => "kubelogin (int128/kubelogin, `kubectl oidc-login get-token`)",
            _ => "the exec credential plugin your provider documents",
        };
        return Err(format!(
            "{source}: user {:?} uses the legacy auth-provider {name:?}, which this worker (like current kubectl) does not support; switch the user to an exec credential plugin: {plugin}",
            ctx.user
        ));
    }
    let cert = data_or_file(
        u.client_certificate_data.as_deref(),
        u.client_certificate.as_deref(),
        &user.dir,
        "client-certificate",
    )?;
    let key = data_or_file(
        u.client_key_data.as_deref(),
        u.client_key.as_deref(),
        &user.dir,
        "client-key",
    )?;
    let client_cert = match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Some(ClientCert { cert_pem, key_pem }),
        (None, None) => None,
        _ => {
            return Err(format!(
                "{source}: user {:?} has a client certificate without its key (or a key without its certificate); set both",
                ctx.user
            ));
        }
    };
    let auth = if let Some(t) = u.token.as_ref().filter(|t| !t.is_empty()) {
        AuthConfig::Token(Secret(t.clone()))
    } else if let Some(f) = u.token_file.as_ref().filter(|t| !t.is_empty()) {
        AuthConfig::TokenFile(resolve_path(&user.dir, f))
    } else if let Some(e) = &u.exec {
        let mut e = e.clone();
        // A relative command containing a slash is relative to the kubeconfig's directory.
        if e.command.contains('/') && !Path::new(&e.command).is_absolute() {
            e.command = resolve_path(&user.dir, &e.command).display().to_string();
        }
        AuthConfig::Exec(Box::new(e))
    } else if let Some(name) = u.username.as_ref().filter(|n| !n.is_empty()) {
        AuthConfig::Basic {
            username: name.clone(),
            password: Secret(u.password.clone().unwrap_or_default()),
        }
    } else {
        AuthConfig::None
    };
    let mut impersonate = Vec::new();
    if let Some(a) = u.as_user.as_ref().filter(|a| !a.is_empty()) {
        impersonate.push(("Impersonate-User".to_owned(), a.clone()));
    }
    if let Some(a) = u.as_uid.as_ref().filter(|a| !a.is_empty()) {
        impersonate.push(("Impersonate-Uid".to_owned(), a.clone()));
    }
    for g in &u.as_groups {
        impersonate.push(("Impersonate-Group".to_owned(), g.clone()));
    }
    for (k, vs) in &u.as_user_extra {
        for v in vs {
            impersonate.push((format!("Impersonate-Extra-{k}"), v.clone()));
        }
    }
    Ok(ClusterConfig {
        source: format!("{source} (context {ctx_name})"),
        server,
        ca_pem,
        insecure_skip_tls_verify: c.insecure_skip_tls_verify,
        tls_server_name: c.tls_server_name.clone().filter(|s| !s.is_empty()),
        proxy_url: c.proxy_url.clone().filter(|s| !s.is_empty()),
        client_cert,
        auth,
        impersonate,
        namespace: ctx.namespace.clone().filter(|n| !n.is_empty()),
    })
}

#[cfg(test)]
#[path = "kubeconfig_tests.rs"]
mod tests;
