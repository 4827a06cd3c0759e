//! Byte-stream codecs: the HTTP/1.1 response codec, Docker's multiplexed stream frames and
//! JSON lines. Properties: any split of valid input decodes to the same thing as the whole;
//! hostile input is an error, never a panic.

use oz_agent_worker::docker::frames::{Demuxer, StreamKind};
use oz_agent_worker::http::BodySource;
use oz_agent_worker::http::HttpError;
use oz_agent_worker::http::codec::{BodyDecoder, Framing, parse_response_head, response_framing};
use oz_agent_worker::http::jsonlines::JsonLines;

use super::{Rng, mutate, run, show};

const HEAD_MAX: usize = 64 * 1024;

/// A random valid response: (wire bytes, status, body).
fn response(rng: &mut Rng) -> (Vec<u8>, u16, Vec<u8>) {
    let status = *rng.pick(&[200u16, 201, 404, 500, 409]);
    let max = if rng.chance(8) { 5000 } else { 100 };
    let body = rng.bytes(max);
    let mut head = format!("HTTP/1.{} {status} Some Reason\r\n", rng.below(2));
    for _ in 0..rng.below(4) {
        let (n, m) = (1 + rng.below(10), rng.below(20));
        let name = rng.string("abcdefXYZ-", n);
        let value = rng.string("abc 123;=/\t", m);
        head.push_str(&format!("X-{name}: {}\r\n", value.trim()));
    }
    let mut wire;
    if rng.chance(2) {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        wire = head.into_bytes();
        wire.extend_from_slice(&body);
    } else {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        wire = head.into_bytes();
        let mut at = 0;
        while at < body.len() {
            let n = (1 + rng.below(300)).min(body.len() - at);
            let ext = if rng.chance(5) { ";ext=1" } else { "" };
            let size = if rng.chance(2) {
                format!("{n:x}")
            } else {
                format!("{n:X}")
            };
            wire.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
            wire.extend_from_slice(&body[at..at + n]);
            wire.extend_from_slice(b"\r\n");
            at += n;
        }
        wire.extend_from_slice(b"0\r\n");
        if rng.chance(3) {
            wire.extend_from_slice(b"X-Trailer: t\r\n");
        }
        wire.extend_from_slice(b"\r\n");
    }
    (wire, status, body)
}

/// Decodes a whole response arriving in the pieces `cuts` describes, with output buffers of
/// random sizes. `Err` carries the first codec error.
fn decode(rng: &mut Rng, wire: &[u8], cuts: &[usize]) -> Result<Option<(u16, Vec<u8>)>, String> {
    let mut buf = Vec::new();
    let mut pieces = cuts.windows(2).map(|w| &wire[w[0]..w[1]]);
    let (used, head) = loop {
        match parse_response_head(&buf, HEAD_MAX).map_err(|e| e.to_string())? {
            Some(found) => break found,
            None => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return Ok(None),
            },
        }
    };
    let framing = response_framing("GET", &head).map_err(|e| e.to_string())?;
    let mut decoder = BodyDecoder::new(framing);
    let mut pending = buf[used..].to_vec();
    let mut body = Vec::new();
    loop {
        let mut out = vec![0u8; 1 + rng.below(700)];
        let (consumed, produced) = decoder
            .decode(&pending, &mut out)
            .map_err(|e| e.to_string())?;
        body.extend_from_slice(&out[..produced]);
        pending.drain(..consumed);
        if decoder.is_done() {
            break;
        }
        if consumed == 0 && produced == 0 {
            match pieces.next() {
                Some(p) => pending.extend_from_slice(p),
                None => {
                    decoder.at_eof().map_err(|e| e.to_string())?;
                    break;
                }
            }
        }
    }
    Ok(Some((head.status, body)))
}

#[test]
fn http_responses_decode_the_same_at_every_split() {
    run("http-split", |rng| {
        let (wire, status, body) = response(rng);
        let whole = decode(rng, &wire, &[0, wire.len()]);
        let cuts = rng.splits(wire.len());
        let split = decode(rng, &wire, &cuts);
        let expected = Ok(Some((status, body)));
        assert_eq!(whole, expected, "whole: {}", show(&wire));
        assert_eq!(split, expected, "split at {cuts:?}: {}", show(&wire));
    });
}

#[test]
fn hostile_http_responses_never_panic() {
    let tokens: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"ffffffffffffffffff\r\n",
        b"-1",
        b":",
        b"HTTP/1.1 ",
        b"\0",
        b"99999999999999999999",
    ];
    run("http-hostile", |rng| {
        let (wire, _, _) = response(rng);
        let bad = mutate(rng, &wire, tokens);
        let cuts = rng.splits(bad.len());
        // Any result is fine; a panic fails the target.
        let _ = decode(rng, &bad, &cuts);
        let noise = rng.bytes(200);
        let _ = decode(rng, &noise, &[0, noise.len()]);
    });
}

fn kind_byte(k: StreamKind) -> u8 {
    match k {
        StreamKind::Stdin => 0,
        StreamKind::Stdout => 1,
        StreamKind::Stderr => 2,
        StreamKind::System => 3,
    }
}

/// Feeds `wire` to a demuxer in the given pieces; returns the bytes per stream kind.
fn demux(wire: &[u8], cuts: &[usize]) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut d = Demuxer::new();
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for w in cuts.windows(2) {
        let mut rest = &wire[w[0]..w[1]];
        while !rest.is_empty() {
            let (used, piece) = d.feed(rest).map_err(|e| e.to_string())?;
            if let Some((kind, data)) = piece {
                match out.last_mut() {
                    Some((k, buf)) if *k == kind_byte(kind) => buf.extend_from_slice(data),
                    _ => out.push((kind_byte(kind), data.to_vec())),
                }
            }
            assert!(used > 0 || piece.is_some(), "demuxer made no progress");
            rest = &rest[used..];
        }
    }
    Ok(out)
}

#[test]
fn docker_frames_demux_the_same_at_every_split() {
    run("docker-frames", |rng| {
        let mut wire = Vec::new();
        let mut expected: Vec<(u8, Vec<u8>)> = Vec::new();
        for _ in 0..rng.below(8) {
            let kind = 1 + rng.below(2) as u8;
            let max = if rng.chance(6) { 3000 } else { 40 };
            let payload = rng.bytes(max);
            wire.push(kind);
            wire.extend_from_slice(&[0, 0, 0]);
            wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            wire.extend_from_slice(&payload);
            if payload.is_empty() {
                continue;
            }
            match expected.last_mut() {
                Some((k, buf)) if *k == kind => buf.extend_from_slice(&payload),
                _ => expected.push((kind, payload)),
            }
        }
        let cuts = rng.splits(wire.len());
        assert_eq!(demux(&wire, &cuts), Ok(expected), "cuts {cuts:?}");
        // Hostile: any bytes are data or an error naming the stream byte.
        let bad = mutate(
            rng,
            &wire,
            &[&[9, 0, 0, 0], &[1, 0, 0, 0, 255, 255, 255, 255]],
        );
        let cuts = rng.splits(bad.len());
        let _ = demux(&bad, &cuts);
    });
}

/// A body source that hands out its bytes in random small reads.
struct Dribble<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
}

impl BodySource for Dribble<'_> {
    fn read_body(&mut self, out: &mut [u8]) -> Result<usize, HttpError> {
        let n = self
            .sizes
            .pop()
            .unwrap_or(usize::MAX)
            .min(out.len())
            .min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn json_lines_read_the_same_at_every_split() {
    run("json-lines", |rng| {
        let mut values = Vec::new();
        let mut wire = Vec::new();
        for _ in 0..rng.below(10) {
            if rng.chance(4) {
                wire.extend_from_slice(if rng.chance(2) { b"\n" } else { b"  \r\n" });
            }
            let v = serde_json::json!({
                "status": rng.text("abc xyz:/", 0, 29),
                "id": rng.next() % 1000,
                "progressDetail": {"current": rng.next() % 100_000},
            });
            wire.extend_from_slice(v.to_string().as_bytes());
            wire.extend_from_slice(if rng.chance(3) { b"\r\n" } else { b"\n" });
            values.push(v);
        }
        if rng.chance(3) && wire.ends_with(b"\n") {
            // A last line without its newline still counts.
            wire.pop();
            if wire.ends_with(b"\r") {
                wire.pop();
            }
        }
        let sizes = (0..wire.len() + 1).map(|_| 1 + rng.below(40)).collect();
        let source = Dribble { data: &wire, sizes };
        let mut lines = JsonLines::new(source, "GET /fuzz".into(), 1 << 20);
        let mut got = Vec::new();
        while let Some(v) = lines.next_json::<serde_json::Value>().unwrap() {
            got.push(v);
        }
        assert_eq!(got, values, "{}", show(&wire));

        // Hostile lines: errors, never panics; a line over the limit is refused.
        let bad = mutate(rng, &wire, &[b"\n", b"{", b"\"", b"\\u12"]);
        let source = Dribble {
            data: &bad,
            sizes: vec![],
        };
        let mut lines = JsonLines::new(source, "GET /fuzz".into(), 64);
        for _ in 0..50 {
            match lines.next_json::<serde_json::Value>() {
                Ok(Some(_)) | Err(HttpError::Json { .. }) => {}
                Ok(None) | Err(_) => break,
            }
        }
    });
}

#[test]
fn framing_of_random_heads_never_panics() {
    run("http-framing", |rng| {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..rng.below(4) {
            let name = rng.pick(&["Content-Length", "Transfer-Encoding", "content-length"]);
            let value = rng.pick(&[
                "5",
                "5, 5",
                "5,6",
                "chunked",
                "gzip, chunked",
                "chunked, gzip",
                "",
                " 7 ",
                "-3",
            ]);
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let bad = if rng.chance(2) {
            mutate(rng, &head, &[b"\r\n"])
        } else {
            head
        };
        if let Ok(Some((_, h))) = parse_response_head(&bad, HEAD_MAX)
            && let Ok(Framing::Length(n)) = response_framing("GET", &h)
        {
            // A length only ever comes from a Content-Length the head really holds.
            let declared = h.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("content-length")
                    && v.split(',').any(|p| p.trim().parse() == Ok(n))
            });
            assert!(declared, "length {n} from nowhere: {}", show(&bad));
        }
    });
}
