//! TLS for `tcp://` daemons: `ca.pem`, `cert.pem` and `key.pem` from `DOCKER_CERT_PATH` or a
//! context's TLS directory, turned into a rustls client config (ring provider).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

fn tls_error(path: &Path, what: &str, detail: impl std::fmt::Display) -> DockerError {
    DockerError::Config(format!(
        "cannot load Docker TLS {what} {}: {detail}",
        path.display()
    ))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client config: trust `ca.pem` if present (else the system roots), present
/// `cert.pem` + `key.pem` if present, and skip verification when `verify` is false.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, DockerError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| DockerError::Config(format!("TLS setup failed: {e}")))?;
    let builder = if files.verify {
        builder.with_root_certificates(roots(files)?)
    } else {
        let algorithms = provider.signature_verification_algorithms;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(algorithms)))
    };
    let config = match (files.file("cert.pem"), files.file("key.pem")) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(&cert, "client certificate")?;
            let key =
                PrivateKeyDer::from_pem_file(&key).map_err(|e| tls_error(&key, "client key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error(&cert, "client certificate", e))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), None) => {
            return Err(tls_error(
                &cert,
                "client certificate",
                "key.pem is missing beside it",
            ));
        }
        (None, Some(key)) => {
            return Err(tls_error(
                &key,
                "client key",
                "cert.pem is missing beside it",
            ));
        }
    };
    Ok(Arc::new(config))
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, DockerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, what, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, what, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, what, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn roots(files: &TlsFiles) -> Result<RootCertStore, DockerError> {
    let mut store = RootCertStore::empty();
    if let Some(ca) = files.file("ca.pem") {
        for cert in load_certs(&ca, "CA")? {
            store.add(cert).map_err(|e| tls_error(&ca, "CA", e))?;
        }
        return Ok(store);
    }
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = store.add_parsable_certificates(native.certs);
    if added == 0 {
        return Err(DockerError::Config(format!(
            "no ca.pem in {} and no system CA certificates found: add the daemon's CA as ca.pem",
            files.dir.display()
        )));
    }
    Ok(store)
}

/// Accepts any server certificate (the `DOCKER_TLS_VERIFY`-unset / `SkipTLSVerify` case) but
/// still checks handshake signatures, so the session is at least bound to the presented key.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
