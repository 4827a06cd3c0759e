//! The Oz side fails: the server dies in the middle of a burst of tasks and comes back on the
//! same address; an HTTP CONNECT proxy dies in the middle of its handshake.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;
use crate::support::harness::TestDir;
use crate::support::oz_server::OzServer;
use crate::support::proxy::TestProxy;

fn terminals(oz: &OzServer, task: &str) -> usize {
    frames_for(oz, task)
        .iter()
        .filter(|(k, _)| k == "task_completed" || k == "task_failed")
        .count()
}

#[test]
fn the_server_dies_mid_burst_and_every_claimed_task_reports_once_when_it_returns() {
    let dir = TestDir::new("fault-server-dies");
    let mut oz = OzServer::start();
    let port = oz.port();
    let mut w = start(&dir, &oz, &[]);
    let ids: Vec<String> = (0..10).map(|i| format!("t-burst-{i}")).collect();
    for id in &ids {
        oz.push_json(&assignment(id, Some("e1"), json!({"STANDIN_SLEEP": "2"})))
            .unwrap();
    }
    for id in &ids {
        expect(&oz, "task_claimed", id);
    }
    // The server dies while all ten run: their outcomes have nowhere to go.
    oz.stop();
    w.wait_for_log("Failed to connect", T);
    for id in &ids {
        w.wait_for_log(&format!("Task {id} (execution e1) completed"), T);
    }
    for id in &ids {
        assert_eq!(terminals(&oz, id), 0, "{id} reported to a dead server");
    }
    // It comes back where it was; every outcome arrives there once, and new work runs.
    let oz2 = OzServer::start_on(port);
    for id in &ids {
        expect(&oz2, "task_completed", id);
    }
    oz2.push_json(&assignment("t-after", None, json!({})))
        .unwrap();
    expect(&oz2, "task_completed", "t-after");
    for id in &ids {
        assert_eq!(terminals(&oz2, id), 1, "{id}");
    }
    assert!(alive(w.pid()));
}

/// A proxy that, for its first `bad` connections, reads the CONNECT request, answers half a
/// status line and closes; later connections are relayed to `upstream` byte for byte.
fn flaky_proxy(upstream: std::net::SocketAddr, bad: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut client) = s else { continue };
            let n = count.fetch_add(1, Ordering::SeqCst);
            if n < bad {
                let mut buf = [0u8; 1024];
                let _ = client.read(&mut buf);
                let _ = client.write_all(b"HTTP/1.1 200 Connec");
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    });
    (url, seen)
}

#[test]
fn a_proxy_dying_mid_handshake_is_retried_and_the_worker_gets_through() {
    let dir = TestDir::new("fault-proxy-dies");
    let oz = OzServer::start();
    let real = TestProxy::start();
    let real_addr: std::net::SocketAddr = real.url().trim_start_matches("http://").parse().unwrap();
    let (url, seen) = flaky_proxy(real_addr, 3);
    let config = direct_config(&dir, "");
    let mut w = worker(&dir, &oz, &config)
        .args(["--web-socket-url", &oz.url_for_host("oz.test")])
        .env("HTTP_PROXY", &url)
        .spawn();
    w.wait_for_log("Failed to connect", T);
    oz.wait_for_connections(1, T);
    w.wait_for_log("Connected to Oz", T);
    assert!(
        seen.load(Ordering::SeqCst) >= 4,
        "the broken handshakes were not retried"
    );
    oz.push_json(&assignment("t-via-proxy", None, json!({})))
        .unwrap();
    expect(&oz, "task_completed", "t-via-proxy");
    assert!(alive(w.pid()));
    assert_no_secrets(&w, &[]);
}
