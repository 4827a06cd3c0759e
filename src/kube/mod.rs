//! The Kubernetes API client: kubeconfig and in-cluster resolution, credentials (tokens, token
//! files, client certificates, exec plugins), JSON requests with retries, and watch streams.
//! Raw REST; no client library.

pub mod auth;
pub mod client;
pub mod error;
pub mod kubeconfig;
pub mod retry;

pub use client::{ApiResponse, ApiStats, Client, LogStream, WatchEvent, WatchStream};
pub use error::KubeError;
pub use kubeconfig::{ClusterConfig, Inputs, SERVICE_ACCOUNT_DIR};

/// Percent-encodes a query parameter value (selectors carry `=` and `,`).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
