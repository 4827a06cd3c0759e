//! HTTP CONNECT proxies.

use std::time::Duration;

use oz_agent_worker::link::ProxyEnv;

use super::*;
use crate::support::log_capture;
use crate::support::oz_server::OzServer;
use crate::support::proxy::TestProxy;

#[test]
fn ws_through_a_connect_proxy_with_credentials() {
    let oz = OzServer::start();
    let proxy = TestProxy::start();
    let env = ProxyEnv {
        http_proxy: Some(proxy.url_with_credentials("user", "pa55")),
        https_proxy: None,
        no_proxy: Some("example.com,.internal,10.0.0.0/8".into()),
    };
    let mut h = start(
        config(oz.url_for_host("oz.test"), "proxy-ws", quiet_timing()),
        env,
    );
    h.connected();
    let connects = proxy.wait_for_connects(1, T);
    assert_eq!(connects[0].target, format!("oz.test:{}", oz.port()));
    assert_eq!(
        connects[0].authorization.as_deref(),
        Some("Basic dXNlcjpwYTU1")
    );
    let hs = &oz.wait_for_handshakes(1, T)[0];
    assert_eq!(
        hs.header("host"),
        Some(format!("oz.test:{}", oz.port()).as_str())
    );
    h.link().send(rejected(1));
    oz.wait_for_frame(T, |f| f.task_id() == "task-1");
    h.shutdown(T);
    assert!(
        log_capture::matching("pa55").is_empty(),
        "proxy credentials reached the log"
    );
}

#[test]
fn wss_through_a_connect_proxy_verifies_the_target_name() {
    let oz = OzServer::start_tls();
    let proxy = TestProxy::start();
    let env = ProxyEnv {
        http_proxy: None,
        https_proxy: Some(proxy.url()),
        no_proxy: Some("example.com".into()),
    };
    let mut cfg = config(oz.url_for_host("oz.test"), "proxy-wss", quiet_timing());
    cfg.ca_bundle = oz.ca_bundle();
    let mut h = start(cfg, env);
    h.connected();
    let connects = proxy.wait_for_connects(1, T);
    assert_eq!(connects[0].target, format!("oz.test:{}", oz.port()));
    assert_eq!(connects[0].authorization, None);
    h.link().send(rejected(2));
    oz.wait_for_frame(T, |f| f.task_id() == "task-2");
    let report = h.shutdown(T);
    assert!(report.closed_cleanly);
}

#[test]
fn proxy_refusal_is_a_dial_error_naming_the_status() {
    let oz = OzServer::start();
    let proxy = TestProxy::start();
    proxy.reject_with(407);
    let env = ProxyEnv {
        http_proxy: Some(proxy.url_with_credentials("u", "s3cr3t")),
        ..ProxyEnv::none()
    };
    let mut h = start(
        config(oz.url_for_host("oz.test"), "proxy-407", quiet_timing()),
        env,
    );
    let (error, _) = h.dial_failed();
    let addr = proxy.url().trim_start_matches("http://").to_owned();
    assert_eq!(error, format!("proxy {addr} refused CONNECT: HTTP 407"));
    h.shutdown(Duration::from_millis(100));
    assert!(log_capture::matching("s3cr3t").is_empty());
}

#[test]
fn loopback_targets_never_use_the_proxy() {
    let oz = OzServer::start();
    let proxy = TestProxy::start();
    let env = ProxyEnv {
        http_proxy: Some(proxy.url()),
        ..ProxyEnv::none()
    };
    let mut h = start(config(oz.url(), "loopback", quiet_timing()), env);
    h.connected();
    h.shutdown(T);
    assert!(proxy.connects().is_empty(), "{:?}", proxy.connects());
}
