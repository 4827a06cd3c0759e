//! TLS for `tcp://` daemons: which of `ca.pem`, `cert.pem` and `key.pem` are in
//! `DOCKER_CERT_PATH` or a context's TLS directory, handed to the shared client's
//! [`crate::http::tls`] for the rustls configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;

use crate::http::tls::{self, Identity, Pem, TlsError, TlsOptions, Trust};

use super::error::DockerError;

/// The TLS files of one endpoint. Each is optional; see [`client_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub dir: PathBuf,
    /// Verify the daemon's certificate (`DOCKER_TLS_VERIFY`, or a context without `SkipTLSVerify`).
    pub verify: bool,
}

impl TlsFiles {
    fn file(&self, name: &str) -> Option<PathBuf> {
        let path = self.dir.join(name);
        path.is_file().then_some(path)
    }

    /// Whether the directory holds any TLS material at all.
    pub(crate) fn any_present(&self) -> bool {
        ["ca.pem", "cert.pem", "key.pem"]
            .iter()
            .any(|f| self.file(f).is_some())
    }
}

/// Builds the client config: trust `ca.pem` if present (else the system roots), present
/// `cert.pem` + `key.pem` if present, and skip verification when `verify` is false.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, DockerError> {
    let identity = match (files.file("cert.pem"), files.file("key.pem")) {
        (Some(cert), Some(key)) => Some(Identity {
            cert: Pem::File(cert),
            key: Pem::File(key),
        }),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(tls_error(
                "client certificate",
                &cert,
                "key.pem is missing beside it",
            ));
        }
        (None, Some(key)) => {
            return Err(tls_error(
                "client key",
                &key,
                "cert.pem is missing beside it",
            ));
        }
    };
    let options = TlsOptions {
        trust: match files.file("ca.pem") {
            Some(ca) => Trust::Only(Pem::File(ca)),
            None => Trust::System,
        },
        identity,
        insecure: !files.verify,
    };
    tls::client_config(&options).map_err(|e| match e {
        TlsError::Load { item, from, detail } => {
            DockerError::Config(format!("cannot load Docker TLS {item} {from}: {detail}"))
        }
        TlsError::NoTrustAnchors => DockerError::Config(format!(
            "no ca.pem in {} and no system CA certificates found: add the daemon's CA as ca.pem",
            files.dir.display()
        )),
        TlsError::Setup(e) => DockerError::Config(format!("TLS setup failed: {e}")),
    })
}

fn tls_error(item: &str, path: &Path, detail: &str) -> DockerError {
    DockerError::Config(format!(
        "cannot load Docker TLS {item} {}: {detail}",
        path.display()
    ))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
