//! The one HTTP/1.1 client of the worker. Docker's Engine API, the OTLP push, the link's proxy
//! tunnel and TLS, and the Kubernetes API all go through it; nothing else in the crate dials a
//! socket for HTTP.
//!
//! - [`transport`]: where the server is ([`Endpoint`]: unix socket or TCP, TLS with an optional
//!   server-name override, an HTTP CONNECT proxy) and [`transport::connect`], which dials under
//!   one budget that also bounds name resolution, and stops within 100 ms of a cancel.
//! - [`tls`]: rustls client configurations from PEM files or in-memory PEM ([`TlsOptions`]).
//! - [`proxy`]: `HTTP(S)_PROXY` / `NO_PROXY` selection as Go does it.
//! - [`client`]: [`send`] one request, with a deadline per phase and an optional [`Abort`] that
//!   another thread fires to end it; any status (4xx and 5xx too) comes back as a [`Response`].
//!   Bodies by length, chunked or until close; read them whole ([`Response::bytes`],
//!   [`Response::json`]), as a stream ([`BodyReader`]), or line by line ([`JsonLines`]).
//! - [`codec`]: the sans-IO HTTP/1.1 codec under it all (fuzzed by prefix in its tests).
//! - [`error`]: [`HttpError`], which names the [`Phase`] and the endpoint, never a header value.
//!
//! One request per connection, no pool, no redirects, no compression: each caller makes a
//! request every few seconds at most, and a fresh connection keeps the client stateless.
//!
//! ```no_run
//! use std::time::Duration;
//! use oz_agent_worker::http::{self, Abort, Body, Endpoint, Request, Timeouts, TlsOptions, Trust, Pem};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // TLS trusting an in-memory CA, the certificate checked against another name.
//! let tls = http::tls::client_config(&TlsOptions {
//!     trust: Trust::Only(Pem::Memory(b"-----BEGIN CERTIFICATE-----...".to_vec())),
//!     ..TlsOptions::default()
//! })?;
//! let env = http::proxy::ProxyEnv::from_env();
//! let host = http::host::Host::Name("api.cluster.example".into());
//! let endpoint = Endpoint::tcp("api.cluster.example", 6443)
//!     .with_tls(tls)
//!     .with_server_name("kubernetes.default.svc")
//!     .with_proxy(http::proxy::select(&env, true, &host, 6443)?);
//!
//! // A PATCH with a bearer token; a 4xx answer is data, not an error.
//! let request = Request::new("PATCH", "/api/v1/namespaces/ns/pods/p")
//!     .header("Authorization", "Bearer <token>")
//!     .body(Body::Bytes { content_type: "application/merge-patch+json", data: b"{}".to_vec() });
//! let response = http::send(&endpoint, None, request)?;
//! if !response.is_success() {
//!     eprintln!("{} answered {}", response.request(), response.status());
//! }
//!
//! // A watch: no idle limit, read line by line, ended from another thread by `abort.abort()`.
//! let abort = Abort::new();
//! let watch = Request::new("GET", "/api/v1/pods?watch=1").timeouts(Timeouts {
//!     body_idle: None,
//!     ..Timeouts::default()
//! });
//! let mut lines = http::send(&endpoint, Some(&abort), watch)?.json_lines(16 << 20);
//! while let Some(event) = lines.next_json::<serde_json::Value>()? {
//!     println!("{}", event["type"]);
//! }
//! # Ok(())
//! # }
//! ```

pub mod abort;
pub mod client;
pub mod codec;
pub mod error;
pub mod host;
pub mod jsonlines;
pub mod proxy;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tls;
pub mod transport;

pub use abort::{Abort, Registration};
pub use client::{Body, BodyReader, Conn, Request, Response, Timeouts, send};
pub use error::{HttpError, Phase};
pub use jsonlines::{BodySource, JsonLines};
pub use tls::{Identity, Pem, TlsOptions, Trust};
pub use transport::{Address, Endpoint, Stream};
