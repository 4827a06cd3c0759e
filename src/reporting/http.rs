//! [`Transport`] on the worker's one HTTP client ([`crate::http`]).
//!
//! Each POST gets a fresh connection (system CA roots for `https`, `HTTPS_PROXY`/`NO_PROXY`
//! as the Go worker's default transport), and one deadline for the whole exchange: every
//! phase is bounded by it, and a watchdog aborts the request when it runs out. Redirects are
//! never followed (the client does not follow them; a 3xx is returned as a status).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rustls::ClientConfig;

use super::send::{Reply, Request, SendError, Transport};
use crate::http::{self, Abort, Body, Endpoint, HttpError, Timeouts, host};

/// The system roots, loaded once (reading them costs milliseconds).
static TLS: LazyLock<Result<Arc<ClientConfig>, String>> = LazyLock::new(|| {
    http::tls::client_config(&http::TlsOptions::default()).map_err(|e| e.to_string())
});

/// POSTs over the worker's HTTP client.
#[derive(Debug, Default)]
pub struct HttpTransport {
    proxy_env: http::proxy::ProxyEnv,
}

impl HttpTransport {
    /// With the process's proxy environment.
    pub fn new() -> HttpTransport {
        HttpTransport {
            proxy_env: http::proxy::ProxyEnv::from_env(),
        }
    }
}

/// `(tls, host, port, path)` of an `http(s)://` URL (already checked by the gate).
fn split(url: &str) -> Result<(bool, host::Host, u16, String), SendError> {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let (tls, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err(SendError("not an http:// or https:// URL".into()));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (h, port) = host::split_host_port(authority).map_err(|e| SendError(e.to_string()))?;
    Ok((
        tls,
        h,
        port.unwrap_or(if tls { 443 } else { 80 }),
        path.to_owned(),
    ))
}

impl Transport for HttpTransport {
    fn post(&self, request: &Request) -> Result<Reply, SendError> {
        let (tls, h, port, path) = split(&request.url)?;
        let proxy = http::proxy::select(&self.proxy_env, tls, &h, port)
            .map_err(|e| SendError(e.to_string()))?;
        let dial = match &h {
            host::Host::Name(n) => n.clone(),
            host::Host::Ip(ip) => ip.to_string(),
        };
        let mut endpoint = Endpoint::tcp(dial, port).with_proxy(proxy);
        endpoint.host_header = Some(h.with_port(port));
        if tls {
            let config = TLS
                .as_ref()
                .map_err(|e| SendError(format!("TLS setup: {e}")))?;
            endpoint = endpoint.with_tls(Arc::clone(config));
        }
        let t = request.timeout;
        let mut req = http::Request::new("POST", path)
            .body(Body::Bytes {
                content_type: request.content_type,
                data: request.body.clone(),
            })
            .timeouts(Timeouts {
                connect: t,
                send: t,
                head: t,
                body_idle: Some(t),
            });
        for (name, value) in &request.headers {
            // A CR or LF would split the request: such a header is dropped, never sent.
            if name
                .bytes()
                .chain(value.bytes())
                .any(|b| b == b'\r' || b == b'\n')
            {
                continue;
            }
            req = req.header(name.as_str(), value.as_str());
        }
        let abort = Abort::new();
        let _watchdog = Watchdog::arm(&abort, t);
        let describe = |e: HttpError| {
            if abort.is_aborted() {
                SendError(format!("{endpoint}: no answer within {t:?}"))
            } else {
                SendError(match &e {
                    HttpError::Timeout { phase, .. } => {
                        format!("{endpoint}: timed out while {phase}")
                    }
                    _ => e.to_string(),
                })
            }
        };
        let response = http::send(&endpoint, Some(&abort), req).map_err(describe)?;
        let status = response.status();
        let body = if request.keep_body == 0 {
            Vec::new()
        } else {
            // A body longer than we keep is cut, not an error: only its start is wanted.
            read_prefix(response, request.keep_body)
        };
        Ok(Reply { status, body })
    }
}

/// At most `limit` bytes of the body; the rest is left unread (the connection is closed).
fn read_prefix(response: http::Response, limit: usize) -> Vec<u8> {
    let mut reader = response.body;
    let mut out = vec![0u8; limit];
    let mut used = 0;
    while used < limit {
        match reader.read_body(&mut out[used..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => used += n,
        }
    }
    out.truncate(used);
    out
}

/// Fires `abort` after `after` unless dropped first.
struct Watchdog {
    _stop: Option<crossbeam_channel::Sender<()>>,
}

impl Watchdog {
    fn arm(abort: &Abort, after: Duration) -> Watchdog {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let abort = abort.clone();
        let spawned = std::thread::Builder::new()
            .name("post-deadline".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                if let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                    abort.abort();
                }
            });
        // Without the thread the per-phase limits still bound the request.
        Watchdog {
            _stop: spawned.ok().map(|_| tx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_their_parts() {
        let (tls, h, port, path) = split("https://otel.example/v1/logs").unwrap();
        assert!(tls);
        assert_eq!(
            (h.authority_form(), port, path.as_str()),
            ("otel.example".into(), 443, "/v1/logs")
        );
        let (tls, h, port, path) = split("http://[::1]:4318").unwrap();
        assert!(!tls);
        assert_eq!(
            (h.authority_form(), port, path.as_str()),
            ("[::1]".into(), 4318, "/")
        );
        assert!(split("ftp://x").is_err());
    }
}
