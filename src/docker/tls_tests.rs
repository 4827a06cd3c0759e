//! TLS material loading, end to end: a rustls server on 127.0.0.1 plays the daemon.

use super::*;
use crate::docker::Client;
use crate::docker::testutil::{TempDir, env};
use crate::http::HttpError;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use rustls::{ServerConnection, StreamOwned};

pub(crate) use crate::http::testutil::{Pki, pki};

/// Writes `ca.pem` and, if `client`, `cert.pem` + `key.pem` into `dir`.
pub(crate) fn write_client_files(dir: &TempDir, rel: &str, pki: &Pki, client: bool) {
    dir.write(&format!("{rel}/ca.pem"), pki.ca_pem.as_bytes());
    if client {
        dir.write(&format!("{rel}/cert.pem"), pki.client_cert_pem.as_bytes());
        dir.write(&format!("{rel}/key.pem"), pki.client_key_pem.as_bytes());
    }
}

/// Serves one TLS connection that answers any request like `/_ping`; sends the request line
/// it saw. The client CA is required when `require_client`.
pub(crate) fn serve_once(pki: &Pki, require_client: bool) -> (u16, mpsc::Receiver<String>) {
    let config = crate::http::testutil::server_config(pki, require_client);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("tls-test".into())
        .spawn(move || {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let conn = ServerConnection::new(config).unwrap();
            let mut tls = StreamOwned::new(conn, tcp);
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK");
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let text = String::from_utf8_lossy(&seen);
            let _ = tx.send(text.lines().next().unwrap_or("").to_string());
        })
        .unwrap();
    (port, rx)
}

fn client(port: u16, cert_dir: &std::path::Path, verify: bool) -> Result<Client, DockerError> {
    let host = format!("tcp://127.0.0.1:{port}");
    let dir = cert_dir.display().to_string();
    let mut pairs = vec![
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_CERT_PATH", dir.as_str()),
    ];
    if verify {
        pairs.push(("DOCKER_TLS_VERIFY", "1"));
    }
    Client::from_env(&env(&pairs))
}

#[test]
fn ca_and_client_certificate_from_docker_cert_path() {
    let pki = pki();
    let dir = TempDir::new("tls-ok");
    write_client_files(&dir, "certs", &pki, true);
    let (port, seen) = serve_once(&pki, true);
    let c = client(port, &dir.path().join("certs"), true).unwrap();
    assert!(c.endpoint().is_tls());
    assert_eq!(c.endpoint().to_string(), format!("tcp://127.0.0.1:{port}"));
    assert_eq!(c.ping().unwrap().as_deref(), Some("1.41"));
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(20)).unwrap(),
        "GET /_ping HTTP/1.1"
    );
}

#[test]
fn a_server_requiring_client_certificates_rejects_a_client_without_one() {
    let pki = pki();
    let dir = TempDir::new("tls-noclient");
    write_client_files(&dir, "certs", &pki, false);
    let (port, _seen) = serve_once(&pki, true);
    let err = client(port, &dir.path().join("certs"), true)
        .unwrap()
        .ping()
        .unwrap_err();
    assert!(
        matches!(
            err,
            DockerError::Http(HttpError::Io { .. } | HttpError::Connect { .. })
        ),
        "{err}"
    );
}

#[test]
fn an_unknown_ca_fails_verification_but_passes_without_it() {
    let pki = pki();
    let other = self::pki();
    let dir = TempDir::new("tls-wrongca");
    write_client_files(&dir, "certs", &other, false);
    let (port, _seen) = serve_once(&pki, false);
    let err = client(port, &dir.path().join("certs"), true)
        .unwrap()
        .ping()
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // DOCKER_CERT_PATH without DOCKER_TLS_VERIFY: TLS, but the server is not verified.
    let (port, _seen) = serve_once(&pki, false);
    let c = client(port, &dir.path().join("certs"), false).unwrap();
    assert!(c.endpoint().is_tls());
    assert_eq!(c.ping().unwrap().as_deref(), Some("1.41"));
}

#[test]
fn broken_material_is_a_config_error_naming_the_file() {
    let pki = pki();
    let dir = TempDir::new("tls-broken");
    dir.write("a/ca.pem", pki.ca_pem.as_bytes());
    dir.write("a/cert.pem", pki.client_cert_pem.as_bytes());
    let err = client(1, &dir.path().join("a"), true).unwrap_err();
    assert!(err.to_string().contains("key.pem is missing"), "{err}");

    dir.write("b/ca.pem", b"not a certificate");
    let err = client(1, &dir.path().join("b"), true).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("b/ca.pem") && msg.contains("no PEM certificate"),
        "{msg}"
    );

    dir.write("c/ca.pem", pki.ca_pem.as_bytes());
    dir.write("c/cert.pem", pki.client_cert_pem.as_bytes());
    dir.write(
        "c/key.pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let err = client(1, &dir.path().join("c"), true).unwrap_err();
    assert!(
        err.to_string().contains("c/cert.pem") || err.to_string().contains("c/key.pem"),
        "{err}"
    );
}
