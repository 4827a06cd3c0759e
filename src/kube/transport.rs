//! Interim transport for the Kubernetes client: one request per connection over TCP or rustls,
//! framed by the shared `http::codec`. This file is a stand-in for the shared HTTP client that
//! `src/http` is growing (transport, proxy CONNECT, per-phase deadlines, abort handles); when it
//! lands, `Client` switches to it and this file goes. Keep its surface narrow for that reason:
//! [`Transport::send`] and [`Body`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};

use super::kubeconfig::{ClientCert, ClusterConfig, ServerUrl};
use crate::http::codec::{self, BodyDecoder, RequestBody, ResponseHead};

const MAX_HEAD: usize = 64 * 1024;

/// TLS settings turned into a rustls config once (and again when an exec plugin rotates the
/// client certificate).
pub fn tls_config(
    cfg: &ClusterConfig,
    exec_cert: Option<&ClientCert>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = if cfg.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider.signature_verification_algorithms,
            )))
    } else {
        let mut roots = RootCertStore::empty();
        match &cfg.ca_pem {
            Some(pem) => {
                for c in CertificateDer::pem_slice_iter(pem) {
                    let c = c.map_err(|e| {
                        format!("the cluster's certificate-authority is not valid PEM: {e}")
                    })?;
                    roots.add(c).map_err(|e| {
                        format!("the cluster's certificate-authority is not a usable CA: {e}")
                    })?;
                }
                if roots.is_empty() {
                    return Err("the cluster's certificate-authority holds no certificate".into());
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        builder.with_root_certificates(roots)
    };
    let cert = exec_cert.or(cfg.client_cert.as_ref());
    let config = match cert {
        Some(c) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("the client certificate is not valid PEM: {e}"))?;
            // The key's bytes never reach the message.
            let key = PrivateKeyDer::from_pem_slice(&c.key_pem)
                .map_err(|_| "the client key is not a valid PEM private key".to_owned())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key do not fit together: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

/// A handle that closes a connection from another thread (to end a watch at once).
#[derive(Clone)]
pub struct Closer(Arc<TcpStream>);

impl Closer {
    pub fn close(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// A response body being read; `Read` yields decoded bytes.
pub struct Body {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    decoder: BodyDecoder,
}

impl Body {
    /// Sets the longest wait for the next bytes (`None` = wait forever: watches).
    pub fn set_idle_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.tcp().set_read_timeout(t)
    }
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.decoder.is_done() {
                return Ok(0);
            }
            if self.pos < self.buf.len() {
                let (used, made) = self
                    .decoder
                    .decode(&self.buf[self.pos..], out)
                    .map_err(io::Error::other)?;
                self.pos += used;
                if made > 0 || self.decoder.is_done() {
                    return Ok(made);
                }
                if used > 0 {
                    continue;
                }
            }
            // Need more input.
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
            }
            let start = self.buf.len();
            self.buf.resize(start + 16 * 1024, 0);
            let n = match self.stream.read(&mut self.buf[start..]) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                self.decoder.at_eof().map_err(io::Error::other)?;
                return Ok(0);
            }
        }
    }
}

/// What came back.
pub struct Response {
    pub head: ResponseHead,
    pub body: Body,
    pub closer: Closer,
}

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    /// Until the head has arrived, and between body reads (`None` for the body of a watch).
    pub response: Duration,
}

pub struct Transport {
    server: ServerUrl,
    tls_name: Option<ServerName<'static>>,
}

impl Transport {
    pub fn new(cfg: &ClusterConfig) -> Result<Transport, String> {
        let tls_name = if cfg.server.https {
            let name = cfg
                .tls_server_name
                .clone()
                .unwrap_or_else(|| cfg.server.host.clone());
            Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| format!("{name:?} is not a valid TLS server name"))?,
            )
        } else {
            None
        };
        Ok(Transport {
            server: cfg.server.clone(),
            tls_name,
        })
    }

    pub fn send(
        &self,
        tls: Option<&Arc<ClientConfig>>,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        limits: Limits,
    ) -> io::Result<Response> {
        let addrs: Vec<_> = (self.server.host.as_str(), self.server.port)
            .to_socket_addrs()?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, limits.connect) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(limits.response))?;
        tcp.set_write_timeout(Some(limits.response))?;
        let closer = Closer(Arc::new(tcp.try_clone()?));
        let mut stream = match (&self.tls_name, tls) {
            (Some(name), Some(cfg)) => {
                let conn = ClientConnection::new(Arc::clone(cfg), name.clone())
                    .map_err(io::Error::other)?;
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
            _ => Stream::Plain(tcp),
        };
        let mut out = Vec::new();
        let framing = match body {
            Some(b) => RequestBody::Length(b.len() as u64),
            None => RequestBody::None,
        };
        let path = format!("{}{target}", self.server.base);
        codec::write_request_head(
            &mut out,
            method,
            &path,
            &self.server.authority(),
            headers,
            framing,
        )
        .map_err(io::Error::other)?;
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
        stream.write_all(&out)?;
        stream.flush()?;
        let mut buf = Vec::new();
        loop {
            if let Some((used, head)) =
                codec::parse_response_head(&buf, MAX_HEAD).map_err(io::Error::other)?
            {
                if head.status < 200 && head.status != 101 {
                    buf.drain(..used);
                    continue;
                }
                let framing = codec::response_framing(method, &head).map_err(io::Error::other)?;
                buf.drain(..used);
                return Ok(Response {
                    head,
                    body: Body {
                        stream,
                        buf,
                        pos: 0,
                        decoder: BodyDecoder::new(framing),
                    },
                    closer,
                });
            }
            let start = buf.len();
            buf.resize(start + 8192, 0);
            let n = stream.read(&mut buf[start..])?;
            buf.truncate(start + n);
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering",
                ));
            }
        }
    }
}
