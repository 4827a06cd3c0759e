//! Connect against real sockets on 127.0.0.1: refusal, resolution, cancel, proxy tunnels, TLS
//! from in-memory PEM with a server-name override.

use super::*;
use crate::http::host::Host;
use crate::http::proxy::{ProxyEnv, select};
use crate::http::testutil::{Pki, pki, server_config};
use crate::http::tls::{Identity, Pem, TlsOptions, Trust, client_config};

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};

fn never() -> bool {
    false
}

fn free_port() -> u16 {
    // Bind, note the port, close: nobody listens there afterwards.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn connect_reports_refusal_and_unresolvable_names() {
    let port = free_port();
    let e = connect(
        &Endpoint::tcp("127.0.0.1", port),
        Duration::from_secs(30),
        &never,
    )
    .unwrap_err();
    assert!(
        matches!(&e, HttpError::Connect { phase: Phase::Connect, source, .. }
            if source.kind() == io::ErrorKind::ConnectionRefused),
        "{e}"
    );
    assert!(
        e.to_string().contains(&format!("http://127.0.0.1:{port}")),
        "{e}"
    );
    let e = connect(
        &Endpoint::tcp("no-such-host.invalid", 1),
        Duration::from_secs(30),
        &never,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            HttpError::Connect {
                phase: Phase::Resolve,
                ..
            } | HttpError::Timeout { .. }
        ),
        "{e}"
    );
}

#[test]
fn missing_unix_socket_is_no_socket() {
    let path = std::env::temp_dir().join(format!("oz-http-none-{}.sock", std::process::id()));
    let e = connect(&Endpoint::unix(&path), Duration::from_secs(1), &never).unwrap_err();
    assert!(matches!(e, HttpError::NoSocket { path: p } if p == path));
}

#[test]
fn a_cancel_ends_a_stalled_tls_handshake_within_slices() {
    // A server that accepts and never speaks: the TLS handshake waits for its hello.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let pki = pki();
    let tls = client_config(&TlsOptions {
        trust: Trust::Only(Pem::Memory(pki.ca_pem.into_bytes())),
        ..TlsOptions::default()
    })
    .unwrap();
    let cancel = AtomicBool::new(false);
    let cancelled = || cancel.load(Ordering::SeqCst);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            cancel.store(true, Ordering::SeqCst);
        });
        let e = connect(
            &Endpoint::tcp("127.0.0.1", port).with_tls(tls),
            Duration::from_secs(600),
            &cancelled,
        )
        .unwrap_err();
        assert!(e.is_aborted(), "{e}");
    });
    drop(hold.join().unwrap());
}

#[test]
fn a_connect_budget_bounds_a_silent_proxy() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let env = ProxyEnv {
        http_proxy: Some(format!("http://127.0.0.1:{port}")),
        ..ProxyEnv::none()
    };
    let target = Host::Name("oz.test".into());
    let proxy = select(&env, false, &target, 80).unwrap();
    assert!(proxy.is_some());
    let e = connect(
        &Endpoint::tcp("oz.test", 80).with_proxy(proxy),
        Duration::from_millis(300),
        &never,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            HttpError::Timeout {
                phase: Phase::Proxy,
                ..
            }
        ),
        "{e}"
    );
    drop(hold.join().unwrap());
}

/// A one-connection CONNECT proxy: answers `status`, then (on 200) relays to `upstream`.
fn proxy_once(status: u16, upstream: Option<u16>) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(c.read(&mut b).unwrap(), 1);
            head.push(b[0]);
        }
        write!(c, "HTTP/1.1 {status} Whatever\r\n\r\n").unwrap();
        if let Some(up) = upstream {
            let mut u = TcpStream::connect(("127.0.0.1", up)).unwrap();
            let (mut c2, mut u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
            let t = std::thread::spawn(move || io::copy(&mut u2, &mut c2));
            let _ = io::copy(&mut c, &mut u);
            let _ = u.shutdown(Shutdown::Write);
            let _ = t.join();
        }
        String::from_utf8(head).unwrap()
    });
    (port, t)
}

/// Accepts one TLS connection and echoes one line back.
fn tls_echo_once(pki: &Pki, require_client: bool) -> u16 {
    let config = server_config(pki, require_client);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\n") {
            match tls.read(&mut b) {
                Ok(1) => line.push(b[0]),
                _ => return,
            }
        }
        let _ = tls.write_all(&line);
        let _ = tls.flush();
    });
    port
}

fn echo(stream: &mut Stream) -> String {
    stream.write_all(b"ping\n").unwrap();
    stream.flush().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = [0u8; 5];
    stream.read_exact(&mut got).unwrap();
    String::from_utf8(got.to_vec()).unwrap()
}

#[test]
fn tls_from_memory_with_client_certificate_through_a_proxy_and_a_server_name_override() {
    let pki = pki();
    let port = tls_echo_once(&pki, true);
    let (proxy_port, proxy) = proxy_once(200, Some(port));
    let tls = client_config(&TlsOptions {
        trust: Trust::Only(Pem::Memory(pki.ca_pem.clone().into_bytes())),
        identity: Some(Identity {
            cert: Pem::Memory(pki.client_cert_pem.clone().into_bytes()),
            key: Pem::Memory(pki.client_key_pem.clone().into_bytes()),
        }),
        insecure: false,
    })
    .unwrap();
    let env = ProxyEnv {
        https_proxy: Some(format!("http://u:p@127.0.0.1:{proxy_port}")),
        ..ProxyEnv::none()
    };
    // The target is named by an address the certificate does not carry; the override makes
    // the certificate check use `localhost`, which it does.
    let target = Host::Name("k8s.test".into());
    let endpoint = Endpoint::tcp("k8s.test", port)
        .with_tls(tls)
        .with_server_name("localhost")
        .with_proxy(select(&env, true, &target, port).unwrap());
    let mut stream = connect(&endpoint, Duration::from_secs(20), &never).unwrap();
    assert_eq!(echo(&mut stream), "ping\n");
    drop(stream);
    let head = proxy.join().unwrap();
    assert!(
        head.starts_with(&format!("CONNECT k8s.test:{port} HTTP/1.1\r\n")),
        "{head}"
    );
    assert!(
        head.contains("Proxy-Authorization: Basic dTpw\r\n"),
        "{head}"
    );
}

#[test]
fn no_proxy_bypasses_and_a_refusing_proxy_is_a_status() {
    let env = ProxyEnv {
        https_proxy: Some("http://127.0.0.1:1".into()),
        no_proxy: Some(".internal".into()),
        ..ProxyEnv::none()
    };
    assert!(
        select(&env, true, &Host::Name("api.internal".into()), 443)
            .unwrap()
            .is_none()
    );
    let (proxy_port, proxy) = proxy_once(407, None);
    let env = ProxyEnv {
        http_proxy: Some(format!("127.0.0.1:{proxy_port}")),
        ..ProxyEnv::none()
    };
    let p = select(&env, false, &Host::Name("oz.test".into()), 80).unwrap();
    let e = connect(
        &Endpoint::tcp("oz.test", 80).with_proxy(p),
        Duration::from_secs(20),
        &never,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("proxy 127.0.0.1:{proxy_port} refused CONNECT: HTTP 407")
    );
    proxy.join().unwrap();
}

#[test]
fn wrong_server_name_fails_and_insecure_accepts_an_unknown_ca() {
    let pki = pki();
    let tls = client_config(&TlsOptions {
        trust: Trust::Only(Pem::Memory(pki.ca_pem.clone().into_bytes())),
        ..TlsOptions::default()
    })
    .unwrap();
    let port = tls_echo_once(&pki, false);
    let endpoint = Endpoint::tcp("127.0.0.1", port)
        .with_tls(tls)
        .with_server_name("other.example");
    let e = connect(&endpoint, Duration::from_secs(20), &never).unwrap_err();
    assert!(
        matches!(
            e,
            HttpError::Connect {
                phase: Phase::Tls,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("certificate"), "{e}");

    let insecure = client_config(&TlsOptions {
        trust: Trust::Only(Pem::Memory(self::pki().ca_pem.into_bytes())),
        insecure: true,
        ..TlsOptions::default()
    })
    .unwrap();
    let port = tls_echo_once(&pki, false);
    let mut stream = connect(
        &Endpoint::tcp("127.0.0.1", port).with_tls(insecure),
        Duration::from_secs(20),
        &never,
    )
    .unwrap();
    assert_eq!(echo(&mut stream), "ping\n");
}

#[test]
fn bad_in_memory_material_names_the_item_never_the_bytes() {
    let e = client_config(&TlsOptions {
        trust: Trust::Only(Pem::Memory(b"not a certificate".to_vec())),
        ..TlsOptions::default()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot load TLS CA (inline data): no PEM certificate in it"
    );
    let pki = pki();
    let e = client_config(&TlsOptions {
        trust: Trust::Only(Pem::Memory(pki.ca_pem.into_bytes())),
        identity: Some(Identity {
            cert: Pem::Memory(pki.client_cert_pem.into_bytes()),
            key: Pem::Memory(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n".to_vec()),
        }),
        insecure: false,
    })
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot load TLS client key (inline data)"),
        "{msg}"
    );
    assert!(!msg.contains("c2VjcmV0"), "{msg}");
    let dbg = format!("{:?}", Pem::Memory(b"secret".to_vec()));
    assert_eq!(dbg, "Pem::Memory(6 bytes)");
}

#[test]
fn endpoints_display_and_host_headers() {
    let e = Endpoint::tcp("::1", 6443);
    assert_eq!(e.to_string(), "http://[::1]:6443");
    assert_eq!(e.host_header(), "[::1]:6443");
    let e = Endpoint::unix("/run/x.sock");
    assert_eq!(e.to_string(), "unix:///run/x.sock");
    assert_eq!(e.host_header(), "localhost");
    let mut e = Endpoint::tcp("h", 1);
    e.label = Some("tcp://h:1".into());
    assert_eq!(e.to_string(), "tcp://h:1");
}

#[path = "proxy_head_tests.rs"]
mod proxy_head;
