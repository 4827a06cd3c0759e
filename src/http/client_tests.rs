//! The driver against scripted servers on 127.0.0.1: what a Kubernetes client needs (headers,
//! PATCH bodies, statuses as data, watches read line by line and aborted from another thread).

use super::*;

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

/// A server for one connection: reads the request head plus `Content-Length` body, sends the
/// request on the channel, then runs `script` on the connection.
fn serve<F>(script: F) -> (Endpoint, mpsc::Receiver<String>)
where
    F: FnOnce(&mut TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("http-client-test".into())
        .spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let complete = |r: &[u8]| {
                let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return false;
                };
                let head = String::from_utf8_lossy(&r[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                r.len() >= end + 4 + length
            };
            while !complete(&request) {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
            script(&mut conn);
        })
        .unwrap();
    (Endpoint::tcp("127.0.0.1", port), rx)
}

#[test]
fn headers_and_a_patch_body_go_out_and_a_4xx_comes_back_as_data() {
    let (endpoint, seen) = serve(|c| {
        c.write_all(
            b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"reason\":\"Invalid\",\"x\":1}\n",
        )
        .unwrap();
    });
    let request = Request::new(
        "PATCH",
        "/apis/batch/v1/namespaces/ns/jobs/j?fieldManager=oz",
    )
    .header("Authorization", "Bearer t0ken")
    .header("Impersonate-User", "alice")
    .body(Body::Bytes {
        content_type: "application/merge-patch+json",
        data: br#"{"spec":{"suspend":true}}"#.to_vec(),
    });
    let response = send(&endpoint, None, request).unwrap();
    assert_eq!(response.status(), 422);
    assert!(!response.is_success());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.request(),
        "PATCH /apis/batch/v1/namespaces/ns/jobs/j"
    );
    let body: serde_json::Value = response.json(1024).unwrap();
    assert_eq!(body["reason"], "Invalid");
    let sent = seen.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        sent.starts_with("PATCH /apis/batch/v1/namespaces/ns/jobs/j?fieldManager=oz HTTP/1.1\r\n"),
        "{sent}"
    );
    for line in [
        format!("Host: {}\r\n", endpoint.authority()),
        "Authorization: Bearer t0ken\r\n".to_string(),
        "Impersonate-User: alice\r\n".to_string(),
        "Content-Type: application/merge-patch+json\r\n".to_string(),
        "Content-Length: 25\r\n".to_string(),
        "Connection: close\r\n".to_string(),
    ] {
        assert!(sent.contains(&line), "{line:?} missing in {sent}");
    }
    assert!(
        sent.ends_with("\r\n\r\n{\"spec\":{\"suspend\":true}}"),
        "{sent}"
    );
}

#[test]
fn a_watch_is_read_line_by_line_and_an_abort_from_another_thread_ends_it() {
    let (endpoint, _seen) = serve(|c| {
        c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        // One event split across chunks, then one whole, then silence (a quiet watch).
        for chunk in [
            &b"{\"type\":\"ADDED\",\"object\""[..],
            b":{\"n\":1}}\n{\"type\":\"MODIFIED\",\"object\":{\"n\":2}}\n",
        ] {
            write!(c, "{:x}\r\n", chunk.len()).unwrap();
            c.write_all(chunk).unwrap();
            c.write_all(b"\r\n").unwrap();
        }
        let mut sink = [0u8; 1];
        let _ = c.read(&mut sink); // hold the connection until the client goes away
    });
    let abort = Abort::new();
    let watch = Request::new("GET", "/api/v1/pods?watch=true").timeouts(Timeouts {
        body_idle: None,
        ..Timeouts::default()
    });
    let mut lines = send(&endpoint, Some(&abort), watch)
        .unwrap()
        .json_lines(1 << 20);
    let first: serde_json::Value = lines.next_json().unwrap().unwrap();
    assert_eq!(
        (first["type"].as_str(), first["object"]["n"].as_i64()),
        (Some("ADDED"), Some(1))
    );
    let second: serde_json::Value = lines.next_json().unwrap().unwrap();
    assert_eq!(second["type"], "MODIFIED");
    let aborter = abort.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        aborter.abort();
    });
    let e = lines.next_json::<serde_json::Value>().unwrap_err();
    assert!(e.is_aborted(), "{e}");
    assert_eq!(e.to_string(), "request GET /api/v1/pods was aborted");
    t.join().unwrap();
    // Aborting is permanent: the next request fails without connecting.
    let e = send(&endpoint, Some(&abort), Request::new("GET", "/x"))
        .err()
        .unwrap();
    assert!(e.is_aborted(), "{e}");
}

#[test]
fn a_body_until_close_and_a_stalled_body_times_out_in_its_phase() {
    let (endpoint, _seen) = serve(|c| {
        c.write_all(b"HTTP/1.1 200 OK\r\n\r\nall of it").unwrap();
    });
    let body = send(&endpoint, None, Request::new("GET", "/a"))
        .unwrap()
        .bytes(64)
        .unwrap();
    assert_eq!(body, b"all of it");

    let (endpoint, _seen) = serve(|c| {
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            .unwrap();
        let mut sink = [0u8; 1];
        let _ = c.read(&mut sink);
    });
    let request = Request::new("GET", "/b").timeouts(Timeouts {
        body_idle: Some(Duration::from_millis(200)),
        ..Timeouts::default()
    });
    let e = send(&endpoint, None, request)
        .unwrap()
        .bytes(64)
        .unwrap_err();
    assert!(
        matches!(
            e,
            HttpError::Timeout {
                phase: Phase::ReceiveBody,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn an_injected_header_value_is_refused_and_not_echoed() {
    let endpoint = Endpoint::tcp("127.0.0.1", 1);
    let request = Request::new("GET", "/").header("Authorization", "Bearer x\r\nEvil: 1");
    let e = encode(&endpoint, &request).unwrap_err();
    assert!(!e.to_string().contains("Evil"), "{e}");
    let bytes = encode(&endpoint, &Request::new("GET", "/ok")).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.starts_with("GET /ok HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUser-Agent: oz-agent-worker/")
    );
}
