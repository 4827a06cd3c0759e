//! TLS client configuration (rustls, ring provider) for every caller: trust anchors from the
//! system store and/or a PEM bundle, an optional client certificate, and `insecure`. PEM comes
//! from a file or from memory (Kubernetes puts CA and client key data inline in kubeconfig).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where PEM text comes from. `Debug` never shows in-memory contents (they may be a key).
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Memory(Vec<u8>),
}

impl Pem {
    /// The PEM text: the file's contents, or the bytes held. One parsing path for both keeps
    /// the binary small.
    fn bytes(&self, item: &'static str) -> Result<std::borrow::Cow<'_, [u8]>, TlsError> {
        match self {
            Pem::File(path) => std::fs::read(path)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| load_error(item, self, e)),
            Pem::Memory(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
        }
    }

    /// For messages: the path, or `(inline data)`.
    pub fn describe(&self) -> String {
        match self {
            Pem::File(p) => p.display().to_string(),
            Pem::Memory(_) => "(inline data)".to_string(),
        }
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(p) => write!(f, "Pem::File({})", p.display()),
            Pem::Memory(b) => write!(f, "Pem::Memory({} bytes)", b.len()),
        }
    }
}

/// Which certificates to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system store only.
    System,
    /// This bundle only (Docker's `ca.pem`, a kubeconfig's certificate authority).
    Only(Pem),
    /// The system store plus this bundle (the link's `--ca-bundle`).
    SystemAnd(Pem),
}

/// A client certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: Pem,
    pub key: Pem,
}

/// Everything [`client_config`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub trust: Trust,
    pub identity: Option<Identity>,
    /// Accept any server certificate (handshake signatures are still checked).
    pub insecure: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            trust: Trust::System,
            identity: None,
            insecure: false,
        }
    }
}

/// What [`client_config`] could not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// A PEM item was unreadable or unusable. `item` is `CA`, `client certificate` or
    /// `client key`; `from` is the path or `(inline data)`.
    Load {
        item: &'static str,
        from: String,
        detail: String,
    },
    /// No trust anchor at all (empty system store and no bundle).
    NoTrustAnchors,
    /// rustls refused the configuration.
    Setup(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Load { item, from, detail } => {
                write!(f, "cannot load TLS {item} {from}: {detail}")
            }
            TlsError::NoTrustAnchors => f.write_str(
                "no CA certificates: the system store is empty and no CA bundle was given",
            ),
            TlsError::Setup(e) => write!(f, "TLS setup failed: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a rustls client configuration from `options`.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = if options.insecure {
        let algorithms = provider.signature_verification_algorithms;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(algorithms)))
    } else {
        builder.with_root_certificates(roots(&options.trust)?)
    };
    let config = match &options.identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = load_certs(&id.cert, "client certificate")?;
            let key = load_key(&id.key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| load_error("client certificate", &id.cert, e))?
        }
    };
    Ok(Arc::new(config))
}

fn load_error(item: &'static str, pem: &Pem, detail: impl fmt::Display) -> TlsError {
    TlsError::Load {
        item,
        from: pem.describe(),
        detail: detail.to_string(),
    }
}

/// The certificates in `pem`; at least one.
pub fn load_certs(pem: &Pem, item: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = pem.bytes(item)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_error(item, pem, e))?;
    if certs.is_empty() {
        return Err(load_error(item, pem, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn load_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    // rustls-pki-types' errors name the PEM section, never the key material.
    let bytes = pem.bytes("client key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| load_error("client key", pem, e))
}

fn roots(trust: &Trust) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (system, bundle) = match trust {
        Trust::System => (true, None),
        Trust::Only(pem) => (false, Some(pem)),
        Trust::SystemAnd(pem) => (true, Some(pem)),
    };
    if system {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            // Not fatal: the bundle may be all we need, and an empty store is caught below.
            if bundle.is_some() {
                log::info!("Could not load some system CA certificates: {e}");
            } else {
                log::warn!("Could not load some system CA certificates: {e}");
            }
        }
        let (added, _) = store.add_parsable_certificates(native.certs);
        log::debug!("Loaded {added} system CA certificates");
    }
    if let Some(pem) = bundle {
        let certs = load_certs(pem, "CA")?;
        let n = certs.len();
        for cert in certs {
            store.add(cert).map_err(|e| load_error("CA", pem, e))?;
        }
        log::debug!("Loaded {n} CA certificates from {}", pem.describe());
    }
    if store.is_empty() {
        return Err(TlsError::NoTrustAnchors);
    }
    Ok(store)
}

/// The name the server certificate must carry: `name` (a DNS name or an IP literal).
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_string())
        .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))
}

/// Accepts any server certificate (Docker without `DOCKER_TLS_VERIFY`, a kubeconfig with
/// `insecure-skip-tls-verify`) but still checks handshake signatures, so the session is at least
/// bound to the presented key.
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
