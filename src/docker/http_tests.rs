//! The shared HTTP driver through the Docker client, against scripted unix-socket servers:
//! phases, deadlines, hostile daemons, and Docker's reading of the answers.

use super::*;
use crate::docker::{Endpoint, Phase};
use crate::http::{Abort, Body, HttpError, Timeouts, codec};

use crate::docker::client::Client;
use crate::docker::testutil::TempDir;
use std::io::{self, Read, Write};
use std::time::Duration;

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;

/// A server for one connection: reads the request (head, and a chunked body if announced),
/// sends it on the channel, then runs `script` on the connection.
fn serve<F>(script: F) -> (TempDir, Client, mpsc::Receiver<Vec<u8>>)
where
    F: FnOnce(&mut UnixStream) + Send + 'static,
{
    let dir = TempDir::new("http");
    let path = dir.path().join("d.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("http-test".into())
        .spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 65536];
            let done = |r: &[u8]| match r.windows(4).position(|w| w == b"\r\n\r\n") {
                None => false,
                Some(end) => {
                    let head = String::from_utf8_lossy(&r[..end]).to_ascii_lowercase();
                    !head.contains("transfer-encoding: chunked") || r.ends_with(b"\r\n0\r\n\r\n")
                }
            };
            while !done(&request) {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(request);
            script(&mut conn);
        })
        .unwrap();
    let client = Client::new(Endpoint::unix(&path)).with_timeouts(Timeouts {
        connect: Duration::from_secs(10),
        send: Duration::from_secs(10),
        head: Duration::from_millis(300),
        body_idle: Some(Duration::from_millis(300)),
    });
    (dir, client, rx)
}

fn get(client: &Client) -> Result<Response, DockerError> {
    client.call("GET", "/x".to_string())
}

#[test]
fn a_silent_daemon_times_out_waiting_for_the_head() {
    let (_dir, client, _rx) = serve(|conn| {
        let mut sink = [0u8; 1];
        let _ = conn.read(&mut sink); // hold the connection open until the client gives up
    });
    let err = get(&client).err().unwrap();
    assert!(
        matches!(
            err,
            DockerError::Http(HttpError::Timeout {
                phase: Phase::ReceiveHead,
                ..
            })
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("GET /x") && msg.contains("unix://") && msg.contains("response head"),
        "{msg}"
    );
}

#[test]
fn a_stalled_body_times_out_in_the_body_phase() {
    let (_dir, client, _rx) = serve(|conn| {
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        let mut sink = [0u8; 1];
        let _ = conn.read(&mut sink);
    });
    let err = get(&client).unwrap().bytes(1024).unwrap_err();
    assert!(
        matches!(
            err,
            DockerError::Http(HttpError::Timeout {
                phase: Phase::ReceiveBody,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn hostile_responses_are_protocol_errors() {
    let cases: [(&[u8], &str); 4] = [
        (b"SSH-2.0-OpenSSH_9.0\r\n\r\n", "malformed HTTP status line"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "invalid Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "closed before the body ended",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "invalid chunk size",
        ),
    ];
    for (answer, expected) in cases {
        let answer = answer.to_vec();
        let (_dir, client, _rx) = serve(move |conn| {
            conn.write_all(&answer).unwrap();
        });
        let err = get(&client).and_then(|r| r.bytes(1024)).unwrap_err();
        assert!(
            matches!(err, DockerError::Http(HttpError::Protocol { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn an_endless_head_is_cut_at_the_cap() {
    let (_dir, client, _rx) = serve(|conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n");
        let filler = [b'a'; 1024];
        for _ in 0..100 {
            if conn
                .write_all(b"X-Filler: ")
                .and_then(|()| conn.write_all(&filler))
                .and_then(|()| conn.write_all(b"\r\n"))
                .is_err()
            {
                return;
            }
        }
    });
    let err = get(&client).err().unwrap();
    assert!(
        err.to_string()
            .contains("response head is larger than 65536 bytes"),
        "{err}"
    );
}

#[test]
fn a_hangup_before_the_head_is_an_io_error() {
    let (_dir, client, _rx) = serve(|_conn| {});
    let err = get(&client).err().unwrap();
    assert!(
        matches!(
            err,
            DockerError::Http(HttpError::Io {
                phase: Phase::ReceiveHead,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn informational_heads_are_skipped_and_error_bodies_mapped() {
    let (_dir, client, rx) = serve(|conn| {
        conn.write_all(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Length: 28\r\n\r\n{\"message\":\"name is in use\"}",
        )
        .unwrap();
    });
    let response = get(&client).unwrap();
    assert_eq!(response.status(), 409);
    let err = response.into_error();
    assert_eq!(
        err.to_string(),
        "Docker GET /x returned 409: name is in use"
    );
    let request = String::from_utf8(rx.recv().unwrap()).unwrap();
    assert!(
        request.starts_with("GET /x HTTP/1.1\r\nHost: docker\r\n"),
        "{request}"
    );
    assert!(request.contains("Connection: close\r\n"), "{request}");

    let (_dir, client, _rx) = serve(|conn| {
        conn.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 15\r\n\r\nplain\ntext fail",
        )
        .unwrap();
    });
    let err = get(&client).unwrap().into_error();
    assert_eq!(
        err.to_string(),
        "Docker GET /x returned 500: plain text fail"
    );
    assert!(!err.is_definitive());
}

#[test]
fn streamed_bodies_are_sent_chunked_and_arrive_whole() {
    let (_dir, client, rx) = serve(|conn| {
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let response = client
        .send(
            "PUT",
            "/upload".to_string(),
            vec![("X-Test", "1".to_string())],
            Body::Stream(&mut data.as_slice(), "application/x-tar"),
            client.timeouts(),
        )
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = rx.recv().unwrap();
    let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&request[..end]).into_owned();
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: application/x-tar\r\n"),
        "{head}"
    );
    assert!(head.contains("X-Test: 1\r\n"), "{head}");
    // Decode the chunked upload with our own decoder.
    let mut decoder = codec::BodyDecoder::new(codec::Framing::Chunked);
    let mut out = vec![0u8; data.len() + 16];
    let (_, made) = decoder.decode(&request[end..], &mut out).unwrap();
    assert!(decoder.is_done());
    assert_eq!(&out[..made], data.as_slice());
}

#[test]
fn a_failing_body_source_is_reported_as_such() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let (_dir, client, _rx) = serve(|_conn| {});
    let err = client
        .send(
            "PUT",
            "/upload".to_string(),
            Vec::new(),
            Body::Stream(&mut Broken, "application/x-tar"),
            client.timeouts(),
        )
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "reading the request body for PUT /upload failed: disk on fire"
    );
}

#[test]
fn an_aborted_client_does_not_connect() {
    let abort = Abort::new();
    abort.abort();
    let client = Client::new(Endpoint::unix("/nonexistent/d.sock")).with_abort(abort);
    let err = get(&client).err().unwrap();
    assert!(err.is_aborted(), "{err}");
    assert_eq!(err.to_string(), "Docker request GET /x was aborted");
}
