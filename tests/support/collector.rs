//! A tiny OTLP/HTTP collector on 127.0.0.1: it reads each POST (Content-Length bodies,
//! keep-alive), decodes the JSON body and hands it to the test, answering with a status the
//! test chooses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};

/// One request the collector received.
#[derive(Debug, Clone)]
pub struct Push {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The decoded body; `Err` holds the decode error (a test failure for the caller).
    pub body: Result<serde_json::Value, String>,
}

impl Push {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> &serde_json::Value {
        self.body.as_ref().expect("a JSON body")
    }

    /// The metric called `name` in the first resource/scope, if present.
    pub fn metric(&self, name: &str) -> Option<&serde_json::Value> {
        self.json()["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name)
    }
}

pub struct Collector {
    addr: SocketAddr,
    scheme: &'static str,
    pushes: Receiver<Push>,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Collector {
    pub fn start() -> Collector {
        Collector::start_with(None)
    }

    /// An `https` collector; returns it with the PEM of the CA that signed its certificate.
    pub fn start_tls() -> (Collector, String) {
        let (ca_pem, config) = test_tls();
        (Collector::start_with(Some(config)), ca_pem)
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Collector {
        let tls_enabled = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (tx, rx) = unbounded();
        let status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&status), Arc::clone(&stop));
        thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                while !sp.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (tx, st, tls) = (tx.clone(), Arc::clone(&st), tls.clone());
                            thread::Builder::new()
                                .name("collector-conn".into())
                                .spawn(move || {
                                    stream.set_nonblocking(false).unwrap();
                                    stream
                                        .set_read_timeout(Some(Duration::from_secs(30)))
                                        .unwrap();
                                    match tls {
                                        None => serve(stream, &tx, &st),
                                        Some(config) => {
                                            let conn =
                                                rustls::ServerConnection::new(config).unwrap();
                                            serve(rustls::StreamOwned::new(conn, stream), &tx, &st)
                                        }
                                    }
                                })
                                .unwrap();
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .unwrap();
        Collector {
            addr,
            scheme: if tls_enabled { "https" } else { "http" },
            pushes: rx,
            status,
            stop,
        }
    }

    /// The full metrics endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("{}://{}/v1/metrics", self.scheme, self.addr)
    }

    /// The status code of later responses.
    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::Relaxed);
    }

    /// The next push, within a generous timeout.
    pub fn next(&self) -> Push {
        self.pushes
            .recv_timeout(Duration::from_secs(30))
            .expect("a push within 30 s")
    }

    /// A push, if one arrives within `wait`.
    pub fn try_next(&self, wait: Duration) -> Option<Push> {
        self.pushes.recv_timeout(wait).ok()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One request read off a keep-alive connection: method, path, lowercased headers, body.
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads the next request (a head, then a Content-Length body) from `stream`, keeping what
/// follows it in `buf` for the next call; `None` at EOF or on a read error. Shared by the test
/// servers that speak plain HTTP/1.1 (this collector, the fake Warp endpoints).
pub fn read_request<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> Option<RawRequest> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some(RawRequest {
        method,
        path,
        headers,
        body,
    })
}

fn serve<S: Read + Write>(mut stream: S, tx: &Sender<Push>, status: &AtomicU16) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf) {
        let RawRequest {
            method,
            path,
            headers,
            body,
        } = req;
        let body = serde_json::from_slice(&body).map_err(|e| e.to_string());
        let _ = tx.send(Push {
            method,
            path,
            headers,
            body,
        });
        let answer = "{}";
        let code = status.load(Ordering::Relaxed);
        let response = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream
            .write_all(response.as_bytes())
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

/// A CA and a leaf for `127.0.0.1`/`localhost`: (CA PEM, server config).
fn test_tls() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "collector test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    (ca_cert.pem(), Arc::new(config))
}
