//! `check`'s look at the Oz endpoint: does its name resolve, does it accept a connection
//! (through the proxy the daemon would use) and, for `wss://`, complete a TLS handshake with
//! the certificate checked, all within a small budget. No WebSocket handshake: the API key is
//! never sent by `check`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::dial::{Dialer, Headers};
use super::url::WsUrl;
use super::{tls_config, wake};
use crate::http::proxy::{self, ProxyEnv};
use crate::settings::Secret;

/// Reaches the endpoint `url` within `budget` per phase. `Ok` says what was reached
/// (`"TLS handshake with oz.warp.dev:443"`); `Err` is one line naming the phase that failed.
pub fn reach(
    url: &str,
    ca_bundle: Option<&Path>,
    proxy_env: &ProxyEnv,
    budget: Duration,
) -> Result<String, String> {
    let url = WsUrl::parse(url, "check").map_err(|e| format!("invalid Oz URL: {e}"))?;
    let proxy = proxy::select(proxy_env, url.secure, &url.host, url.port)
        .map_err(|e| format!("proxy: {e}"))?;
    let tls = if url.secure {
        Some(tls_config(ca_bundle).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let target = url.host.with_port(url.port);
    let via = proxy
        .as_ref()
        .map(|p| format!(" through proxy {}", p.display()))
        .unwrap_or_default();
    let secure = url.secure;
    let dialer = Dialer {
        url,
        proxy,
        tls,
        // Never sent: `reach` stops before the WebSocket handshake.
        headers: Headers {
            authorization: Secret::new("unused"),
            version: None,
            user_agent: "oz-agent-worker".to_owned(),
        },
        timeout: budget,
        stop: Arc::new(wake::StopAt::new()),
    };
    dialer.reach().map_err(|e| e.to_string())?;
    Ok(if secure {
        format!("TLS handshake with {target}{via}")
    } else {
        format!("connected to {target}{via} (ws://, no TLS)")
    })
}
