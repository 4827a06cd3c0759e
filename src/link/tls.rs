//! TLS for `wss://`: the rustls client configuration (ring; system roots plus an optional PEM
//! bundle) and the client handshake, run in shutdown-aware time slices.

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::LinkError;
use super::dial::{Budget, DialError, is_timeout};
use super::transport::Transport;
use super::url::Host;

/// Builds the rustls client configuration: the system roots plus the optional PEM bundle.
pub(crate) fn tls_config(ca_bundle: Option<&Path>) -> Result<Arc<ClientConfig>, LinkError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        // Not fatal: the extra bundle may be all we need, and an empty store is caught below.
        if ca_bundle.is_some() {
            log::info!("Could not load some system CA certificates: {e}");
        } else {
            log::warn!("Could not load some system CA certificates: {e}");
        }
    }
    let (system, _) = roots.add_parsable_certificates(native.certs);
    log::debug!("Loaded {system} system CA certificates");
    if let Some(path) = ca_bundle {
        let bad = |reason: String| LinkError::CaBundle {
            path: path.to_owned(),
            reason,
        };
        let mut added = 0usize;
        let iter = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        for cert in iter {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no PEM certificates found".into()));
        }
        log::debug!("Loaded {added} CA certificates from {}", path.display());
    }
    if roots.is_empty() {
        return Err(LinkError::NoTrustAnchors);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS client handshake over an established (possibly tunnelled) TCP stream. The
/// certificate is checked against the URL's host, also through a proxy.
pub(crate) fn handshake(
    mut tcp: TcpStream,
    cfg: &Arc<ClientConfig>,
    host: &Host,
    budget: &Budget,
) -> Result<Transport, DialError> {
    let shown = host.to_string();
    let tls_err = |error: String| DialError::Tls {
        host: shown.clone(),
        error,
    };
    let name = match host {
        Host::Name(n) => ServerName::try_from(n.clone()).map_err(|e| tls_err(e.to_string()))?,
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
    };
    let mut conn = ClientConnection::new(cfg.clone(), name).map_err(|e| tls_err(e.to_string()))?;
    while conn.is_handshaking() {
        budget.arm(&tcp)?;
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            // A slice ended (or a signal): the budget decides whether to go on.
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(tls_err("the server closed the connection".into()));
            }
            Err(e) => return Err(tls_err(e.to_string())),
        }
    }
    Ok(Transport::tls(StreamOwned::new(conn, tcp)))
}
