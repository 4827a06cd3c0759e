use super::*;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../tests/support/fixtures/docker/", $name)) as &[u8],
        )
    };
}

/// Responses captured from the real Docker 20.10 engine with `curl --raw -i --unix-socket`.
const FIXTURES: &[(&str, &[u8])] = &[
    fixture!("ping.http"),
    fixture!("version.http"),
    fixture!("image_not_found.http"),
    fixture!("image_inspect.http"),
    fixture!("pull_refused.http"),
    fixture!("import.http"),
    fixture!("create.http"),
    fixture!("start.http"),
    fixture!("wait.http"),
    fixture!("logs.http"),
    fixture!("kill_not_running.http"),
    fixture!("stop_not_modified.http"),
    fixture!("container_inspect.http"),
    fixture!("attach.http"),
];

fn fixture(name: &str) -> &'static [u8] {
    FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1
}

/// Drives the codec like the socket driver does: input arrives in `pieces` (cut points), the
/// body is read through an output buffer of `out_len` bytes. Returns the head and the body.
fn drive(
    input: &[u8],
    cuts: &[usize],
    out_len: usize,
) -> Result<(ResponseHead, Vec<u8>), CodecError> {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    bounds.push(input.len());
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut head = None;
    let mut decoder = None;
    let mut body = Vec::new();
    let mut out = vec![0u8; out_len];
    for &b in &bounds {
        buf.extend_from_slice(&input[fed..b]);
        fed = b;
        if head.is_none() {
            match parse_response_head(&buf, MAX_HEAD)? {
                None => continue,
                Some((used, h)) => {
                    buf.drain(..used);
                    decoder = Some(BodyDecoder::new(response_framing("GET", &h)?));
                    head = Some(h);
                }
            }
        }
        let dec = decoder.as_mut().unwrap();
        loop {
            let (used, made) = dec.decode(&buf, &mut out)?;
            buf.drain(..used);
            body.extend_from_slice(&out[..made]);
            if used == 0 && made == 0 {
                break;
            }
        }
    }
    let Some(head) = head else {
        return Err(CodecError::Truncated);
    };
    decoder.unwrap().at_eof()?;
    Ok((head, body))
}

fn expected_body(name: &str) -> Vec<u8> {
    drive(fixture(name), &[], 1 << 20).unwrap().1
}

#[test]
fn fixtures_decode_to_the_expected_bodies() {
    let (head, body) = drive(fixture("ping.http"), &[], 64).unwrap();
    assert_eq!(
        (head.status, head.header("api-version")),
        (200, Some("1.41"))
    );
    assert_eq!(body, b"OK");

    let (head, body) = drive(fixture("wait.http"), &[], 64).unwrap();
    assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(body, b"{\"Error\":null,\"StatusCode\":3}\n");

    let (head, body) = drive(fixture("logs.http"), &[], 64).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        body,
        b"\x01\0\0\0\0\0\0\x09out-line\n\x02\0\0\0\0\0\0\x09err-line\n"
    );

    let (head, body) = drive(fixture("image_not_found.http"), &[], 64).unwrap();
    assert_eq!(head.status, 404);
    assert_eq!(head.reason, "Not Found");
    assert_eq!(
        body,
        b"{\"message\":\"no such image: nope: No such image: nope:latest\"}\n"
    );

    let (head, body) = drive(fixture("stop_not_modified.http"), &[], 64).unwrap();
    assert_eq!(head.status, 304);
    assert!(body.is_empty());

    let (head, body) = drive(fixture("start.http"), &[], 64).unwrap();
    assert_eq!(head.status, 204);
    assert!(body.is_empty());
}

#[test]
fn every_prefix_of_a_head_is_incomplete_until_the_blank_line() {
    for (name, bytes) in FIXTURES {
        let end = head_end(bytes).unwrap();
        for i in 0..end {
            assert_eq!(
                parse_response_head(&bytes[..i], MAX_HEAD).unwrap(),
                None,
                "{name} prefix {i}"
            );
        }
        let (used, _) = parse_response_head(&bytes[..end], MAX_HEAD)
            .unwrap()
            .unwrap();
        assert_eq!(used, end, "{name}");
        let (used, _) = parse_response_head(bytes, MAX_HEAD).unwrap().unwrap();
        assert_eq!(used, end, "{name}");
    }
}

#[test]
fn every_split_point_gives_the_same_head_and_body() {
    for (name, bytes) in FIXTURES {
        if *name == "attach.http" {
            continue; // raw stream after the head, covered below
        }
        let whole = drive(bytes, &[], 1 << 20).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                drive(bytes, &[cut], 5).unwrap(),
                whole,
                "{name} split at {cut}"
            );
        }
    }
}

#[test]
fn every_pair_of_split_points_of_chunked_bodies_decodes() {
    for name in ["wait.http", "logs.http", "import.http"] {
        let bytes = fixture(name);
        let body = expected_body(name);
        let start = head_end(bytes).unwrap();
        for a in start..bytes.len() {
            for b in a..bytes.len() {
                assert_eq!(drive(bytes, &[a, b], 3).unwrap().1, body, "{name} {a} {b}");
            }
        }
    }
}

#[test]
fn byte_at_a_time_decoding_matches() {
    for (name, bytes) in FIXTURES {
        if *name == "attach.http" {
            continue;
        }
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        assert_eq!(
            drive(bytes, &cuts, 1).unwrap(),
            drive(bytes, &[], 4096).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn truncated_bodies_are_errors_not_short_reads() {
    for (name, bytes) in FIXTURES {
        let end = head_end(bytes).unwrap();
        let framing = response_framing(
            "GET",
            &parse_response_head(bytes, MAX_HEAD).unwrap().unwrap().1,
        )
        .unwrap();
        if matches!(
            framing,
            Framing::Empty | Framing::UntilClose | Framing::Upgraded
        ) {
            continue;
        }
        for cut in end..bytes.len() {
            assert_eq!(
                drive(&bytes[..cut], &[], 64).unwrap_err(),
                CodecError::Truncated,
                "{name} cut at {cut}"
            );
        }
    }
}

#[test]
fn upgrade_leaves_the_raw_stream_after_the_head() {
    let bytes = fixture("attach.http");
    let (used, head) = parse_response_head(bytes, MAX_HEAD).unwrap().unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(head.header("upgrade"), Some("tcp"));
    assert_eq!(response_framing("POST", &head).unwrap(), Framing::Upgraded);
    assert_eq!(&bytes[used..used + 8], b"\x01\0\0\0\0\0\0\x11");
}

#[test]
fn informational_heads_are_returned_for_the_caller_to_skip() {
    let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let (used, head) = parse_response_head(input, MAX_HEAD).unwrap().unwrap();
    assert_eq!(head.status, 100);
    assert_eq!(response_framing("GET", &head).unwrap(), Framing::Empty);
    let (head, body) = drive(&input[used..], &[], 8).unwrap();
    assert_eq!((head.status, body.as_slice()), (200, &b"hi"[..]));
}

#[test]
fn framing_rules() {
    let head = |status: u16, headers: &[(&str, &str)]| ResponseHead {
        status,
        reason: String::new(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    };
    let f = |h: &ResponseHead| response_framing("GET", h);
    assert_eq!(f(&head(200, &[])), Ok(Framing::UntilClose));
    assert_eq!(
        f(&head(200, &[("Content-Length", "12")])),
        Ok(Framing::Length(12))
    );
    assert_eq!(
        f(&head(
            200,
            &[("Content-Length", "12"), ("content-length", "12")]
        )),
        Ok(Framing::Length(12))
    );
    assert_eq!(
        f(&head(200, &[("Content-Length", "12, 12")])),
        Ok(Framing::Length(12))
    );
    assert_eq!(
        f(&head(
            200,
            &[("Content-Length", "12"), ("Content-Length", "13")]
        )),
        Err(CodecError::BadContentLength)
    );
    for bad in ["", "-1", "+1", "1e3", "0x10", "99999999999999999999", "1 2"] {
        assert_eq!(
            f(&head(200, &[("Content-Length", bad)])),
            Err(CodecError::BadContentLength),
            "{bad:?}"
        );
    }
    // Transfer-Encoding wins over Content-Length (request smuggling defence).
    assert_eq!(
        f(&head(
            200,
            &[("Content-Length", "3"), ("Transfer-Encoding", "chunked")]
        )),
        Ok(Framing::Chunked)
    );
    assert_eq!(
        f(&head(200, &[("Transfer-Encoding", "gzip, chunked")])),
        Ok(Framing::Chunked)
    );
    assert_eq!(
        f(&head(200, &[("Transfer-Encoding", "chunked, gzip")])),
        Ok(Framing::UntilClose)
    );
    assert_eq!(
        f(&head(204, &[("Content-Length", "3")])),
        Ok(Framing::Empty)
    );
    assert_eq!(
        f(&head(304, &[("Content-Length", "3")])),
        Ok(Framing::Empty)
    );
    assert_eq!(f(&head(101, &[])), Ok(Framing::Upgraded));
    assert_eq!(
        response_framing("HEAD", &head(200, &[("Content-Length", "3")])),
        Ok(Framing::Empty)
    );
}

#[test]
fn hostile_heads_are_errors() {
    // A head that never ends.
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    while huge.len() < MAX_HEAD + 10 {
        huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert_eq!(
        parse_response_head(&huge, MAX_HEAD),
        Err(CodecError::HeadTooLarge { max: MAX_HEAD })
    );
    // Exactly at the cap, still incomplete.
    assert_eq!(
        parse_response_head(&huge[..MAX_HEAD], MAX_HEAD),
        Err(CodecError::HeadTooLarge { max: MAX_HEAD })
    );
    // Too many (small) headers.
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_response_head(&many, MAX_HEAD),
        Err(CodecError::TooManyHeaders)
    );

    for bad in [
        &b"HTTP/2 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 099 X\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/1.x 200 OK\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00",
    ] {
        assert_eq!(
            parse_response_head(bad, MAX_HEAD),
            Err(CodecError::BadStatusLine),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    for bad in [
        &b"HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: nul\0byte\r\n\r\n",
    ] {
        assert_eq!(
            parse_response_head(bad, MAX_HEAD),
            Err(CodecError::BadHeader),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Bare LF line ends and a missing reason are tolerated.
    let (_, head) = parse_response_head(b"HTTP/1.0 200\nA:  b \n\n", MAX_HEAD)
        .unwrap()
        .unwrap();
    assert_eq!((head.status, head.header("a")), (200, Some("b")));
}

fn chunked(body: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    input.extend_from_slice(body);
    drive(&input, &[], 16).map(|(_, b)| b)
}

#[test]
fn chunked_bodies_accept_extensions_trailers_and_case() {
    assert_eq!(chunked(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
    assert_eq!(
        chunked(b"A;x=y\r\n0123456789\r\n0\r\n\r\n").unwrap(),
        b"0123456789"
    );
    assert_eq!(
        chunked(b"a \r\n0123456789\r\n0\r\n\r\n").unwrap(),
        b"0123456789"
    );
    assert_eq!(chunked(b"3\nabc\n0\n\n").unwrap(), b"abc");
    assert_eq!(
        chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n").unwrap(),
        b"abc"
    );
    assert_eq!(chunked(b"000\r\n\r\n").unwrap(), b"");
}

#[test]
fn hostile_chunked_bodies_are_errors() {
    for (bad, err) in [
        (&b"x\r\nabc\r\n0\r\n\r\n"[..], CodecError::BadChunkSize),
        (b"\r\nabc\r\n0\r\n\r\n", CodecError::BadChunkSize),
        (b";ext\r\n0\r\n\r\n", CodecError::BadChunkSize),
        (b"-3\r\nabc\r\n", CodecError::BadChunkSize),
        (b"1\rX\nabc", CodecError::BadChunkSize),
        (b"1000000000000000\r\n", CodecError::BadChunkSize),
        (b"ffffffffffffffffffff\r\n", CodecError::BadChunkSize),
        (b"3\r\nabcd\r\n", CodecError::BadChunkEnd),
        (b"3\r\nabc\rX", CodecError::BadChunkEnd),
        (b"3\r\nabc", CodecError::Truncated),
        (b"3\r\nab", CodecError::Truncated),
        (b"3\r\nabc\r\n", CodecError::Truncated),
        (b"3\r\nabc\r\n0\r\n", CodecError::Truncated),
        (b"", CodecError::Truncated),
    ] {
        assert_eq!(
            chunked(bad),
            Err(err.clone()),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut long_ext = b"1;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'x', MAX_LINE));
    assert_eq!(chunked(&long_ext), Err(CodecError::LineTooLong));
    let mut long_trailer = b"0\r\n".to_vec();
    long_trailer.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
    assert_eq!(chunked(&long_trailer), Err(CodecError::LineTooLong));
}

#[test]
fn content_length_bodies_stop_at_the_length() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA";
    let (used, head) = parse_response_head(input, MAX_HEAD).unwrap().unwrap();
    let mut dec = BodyDecoder::new(response_framing("GET", &head).unwrap());
    let mut out = [0u8; 64];
    assert_eq!(dec.decode(&input[used..], &mut out).unwrap(), (3, 3));
    assert!(dec.is_done());
    assert_eq!(dec.decode(b"more", &mut out).unwrap(), (0, 0));
}

#[test]
fn until_close_bodies_end_at_eof() {
    let (_, body) = drive(b"HTTP/1.1 200 OK\r\n\r\nraw bytes", &[20], 4).unwrap();
    assert_eq!(body, b"raw bytes");
}

/// xorshift: deterministic junk without a rand crate.
fn junk(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24).to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    for round in 0..3000 {
        let mut input = if round % 2 == 0 {
            junk(&mut seed, 200)
        } else {
            let (_, base) = FIXTURES[round / 2 % FIXTURES.len()];
            let mut m = base.to_vec();
            let flips = junk(&mut seed, 8);
            for pair in flips.chunks(2) {
                let at = usize::from(pair[0]) * m.len() / 256;
                m[at] = pair[1];
            }
            m
        };
        if round % 3 == 0 {
            input.splice(
                0..0,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .iter()
                    .copied(),
            );
        }
        let _ = drive(&input, &[7, 50, 51], 3);
    }
}

#[test]
fn request_heads_are_written_and_injection_refused() {
    let mut out = Vec::new();
    write_request_head(
        &mut out,
        "POST",
        "/v1.41/containers/create?name=x",
        "docker",
        &[("Content-Type", "application/json")],
        RequestBody::Length(2),
    )
    .unwrap();
    assert_eq!(
        out,
        b"POST /v1.41/containers/create?name=x HTTP/1.1\r\nHost: docker\r\n\
          Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
    );
    let mut out = Vec::new();
    write_request_head(&mut out, "PUT", "/a", "h:1", &[], RequestBody::Chunked).unwrap();
    assert_eq!(
        out,
        b"PUT /a HTTP/1.1\r\nHost: h:1\r\nTransfer-Encoding: chunked\r\n\r\n"
    );

    let w = |target: &str, headers: &[(&str, &str)]| {
        write_request_head(
            &mut Vec::new(),
            "GET",
            target,
            "docker",
            headers,
            RequestBody::None,
        )
    };
    assert!(w("/x\r\nEvil: 1", &[]).is_err());
    assert!(w("/x y", &[]).is_err());
    assert!(w("x", &[]).is_err());
    assert!(w("/x", &[("X-Registry-Auth", "a\r\nb")]).is_err());
    assert!(w("/x", &[("Bad Name", "v")]).is_err());
    assert!(w("/x", &[("", "v")]).is_err());
    assert!(w("/x", &[("X-Ok", "v")]).is_ok());
}

#[test]
fn chunks_are_framed_in_hex() {
    let mut out = Vec::new();
    write_chunk(&mut out, &[b'a'; 26]);
    write_chunk(&mut out, b"");
    out.extend_from_slice(LAST_CHUNK);
    let mut expected = b"1a\r\n".to_vec();
    expected.extend_from_slice(&[b'a'; 26]);
    expected.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(out, expected);
    // And our own encoder round-trips through our decoder.
    assert_eq!(chunked(&out[..]).unwrap(), vec![b'a'; 26]);
}

#[test]
fn errors_display_without_panicking() {
    for e in [
        CodecError::HeadTooLarge { max: 1 },
        CodecError::BadStatusLine,
        CodecError::BadHeader,
        CodecError::TooManyHeaders,
        CodecError::BadContentLength,
        CodecError::BadChunkSize,
        CodecError::LineTooLong,
        CodecError::BadChunkEnd,
        CodecError::Truncated,
        CodecError::UnsafeRequest("header value"),
    ] {
        assert!(!e.to_string().is_empty());
    }
}
