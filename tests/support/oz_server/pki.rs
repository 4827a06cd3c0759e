//! Test certificates: one CA and one leaf per test process, plus unrelated CAs on demand.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub(super) struct TestPki {
    pub ca_pem: String,
    pub server_config: Arc<ServerConfig>,
}

/// One CA and one leaf per test process (key generation is not free).
pub(super) fn test_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "oz-agent-worker test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(vec![
            "localhost".to_string(),
            "oz.test".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("leaf params");
        leaf.distinguished_name.push(DnType::CommonName, "oz.test");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("leaf cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .expect("server config");
        TestPki {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(server_config),
        }
    })
}

/// A PEM bundle with a CA that did not sign the fake server's certificate (for "untrusted"
/// tests that must not depend on the machine's system roots). Remove the file's directory when
/// done, or leave it to the temp dir.
pub fn unrelated_ca_bundle() -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "unrelated test CA");
    let cert = ca.self_signed(&key).expect("cert");
    let path = unique_dir("oz-unrelated-ca").join("ca.pem");
    std::fs::write(&path, cert.pem()).expect("write CA");
    path
}

/// A fresh directory under the system temp dir.
pub fn unique_dir(prefix: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
