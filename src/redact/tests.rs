use std::borrow::Cow;
use std::time::Instant;

use super::*;

fn with(secrets: &[&str]) -> Redactor {
    let mut r = Redactor::new();
    let _ = r.add(secrets.iter().copied());
    r
}

fn red(r: &Redactor, text: &str) -> String {
    r.redact(text).into_owned()
}

#[test]
fn nothing_registered_borrows() {
    let r = Redactor::new();
    assert!(matches!(
        r.redact("plain line"),
        Cow::Borrowed("plain line")
    ));
    let r = with(&["s3cr3t-value"]);
    assert!(matches!(
        r.redact("Task t claimed: \"title\""),
        Cow::Borrowed(_)
    ));
}

#[test]
fn raw_value() {
    let r = with(&["s3cr3t-value"]);
    assert_eq!(red(&r, "key=s3cr3t-value;"), "key=[REDACTED];");
    assert_eq!(red(&r, "s3cr3t-values3cr3t-value"), REDACTED);
    assert_eq!(red(&r, "s3cr3t-valu"), "s3cr3t-valu");
}

#[test]
fn every_shape_of_a_value() {
    let secret = "p@ss word/\"quoted\"\\<&>";
    let r = with(&[secret]);
    let shapes = [
        secret.to_owned(),
        "p%40ss+word%2F%22quoted%22%5C%3C%26%3E".to_owned(),
        "p%40ss%20word%2F%22quoted%22%5C%3C%26%3E".to_owned(),
        serde_json::to_string(secret).unwrap(),
        "p@ss word/\\\"quoted\\\"\\\\\\u003c\\u0026\\u003e".to_owned(),
        format!("{secret:?}"),
    ];
    for shape in shapes {
        let line = format!("before {shape} after");
        let out = red(&r, &line);
        assert!(
            out.starts_with("before ") && out.ends_with(" after") && out.contains(REDACTED),
            "{line} -> {out}"
        );
        assert!(
            !out.contains("ss word") && !out.contains("ss+word"),
            "{out}"
        );
    }
}

#[test]
fn each_line_of_a_multi_line_value() {
    let key =
        "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nQ0s5c2VjcmV0bGluZQ==\n-----END KEY-----\n";
    let r = with(&[key]);
    let out = red(
        &r,
        "line two is MIIBOgIBAAJBAKj34GkxFhD9 and Q0s5c2VjcmV0bGluZQ==.",
    );
    assert_eq!(out, "line two is [REDACTED] and [REDACTED].");
    // The whole value, JSON-escaped, as in a frame dump.
    let dump = serde_json::to_string(key).unwrap();
    assert!(!red(&r, &dump).contains("MIIBOg"));
}

#[test]
fn longest_match_first() {
    let r = with(&["abcd1234", "abcd1234efgh5678"]);
    assert_eq!(red(&r, "x abcd1234efgh5678 y"), "x [REDACTED] y");
    assert_eq!(red(&r, "x abcd1234 y"), "x [REDACTED] y");
}

#[test]
fn overlapping_and_adjacent_secrets_leave_no_fragment() {
    let r = with(&["alpha-beta", "beta-gamma"]);
    assert_eq!(red(&r, "[alpha-beta-gamma]"), "[[REDACTED]]");
    let r = with(&["first-secret", "second-secret"]);
    assert_eq!(red(&r, "first-secretsecond-secret!"), "[REDACTED]!");
    // A secret contained in another.
    let r = with(&["outer-SECRET-value", "SECRET"]);
    assert_eq!(
        red(&r, "outer-SECRET-value SECRET"),
        "[REDACTED] [REDACTED]"
    );
}

#[test]
fn short_and_empty_values_are_not_registered() {
    let r = with(&["", "1", "on", "yes"]);
    assert_eq!(r.pattern_count(), 0);
    assert_eq!(red(&r, "1 on yes"), "1 on yes");
    let r = with(&["true"]);
    assert_eq!(red(&r, "it is true"), "it is [REDACTED]");
}

#[test]
fn unicode_secrets_and_text() {
    let r = with(&["pässwörd✓"]);
    assert_eq!(red(&r, "ünï pässwörd✓ ✓"), "ünï [REDACTED] ✓");
    assert_eq!(red(&r, "pässwörd"), "pässwörd");
}

#[test]
fn remove_unregisters_only_that_set() {
    let mut r = Redactor::new();
    let (a, _) = r.add(["secret-of-task-a"]);
    let (b, _) = r.add(["secret-of-task-b"]);
    r.remove(a);
    assert_eq!(
        red(&r, "secret-of-task-a secret-of-task-b"),
        "secret-of-task-a [REDACTED]"
    );
    r.remove(b);
    r.remove(b);
    assert_eq!(red(&r, "secret-of-task-b"), "secret-of-task-b");
}

#[test]
fn shared_value_stays_registered_while_another_set_holds_it() {
    let mut r = Redactor::new();
    let (a, _) = r.add(["shared-secret"]);
    let (_b, _) = r.add(["shared-secret"]);
    r.remove(a);
    assert_eq!(red(&r, "shared-secret"), REDACTED);
}

#[test]
fn limits_fail_closed_until_removed() {
    let mut r = Redactor::new();
    let (ok, over) = r.add(["normal-secret"]);
    assert!(!over);

    let huge = "x".repeat(MAX_VALUE_BYTES + 1);
    let (id, over) = r.add([huge.as_str()]);
    assert!(over && r.is_fail_closed());
    assert_eq!(red(&r, "an ordinary line"), REDACTED);
    r.remove(id);
    assert!(!r.is_fail_closed());
    assert_eq!(red(&r, "an ordinary line"), "an ordinary line");

    // Too many patterns (each value yields at least its raw shape).
    let many: Vec<String> = (0..=MAX_PATTERNS)
        .map(|i| format!("value-{i:06}"))
        .collect();
    let (id, over) = r.add(many.iter());
    assert!(over);
    assert_eq!(red(&r, "anything"), REDACTED);
    r.remove(id);

    // Too many pattern bytes.
    let big: Vec<String> = (0..3)
        .map(|i| format!("{i}{}", "y".repeat(MAX_PATTERN_BYTES / 2)))
        .collect();
    let (id, over) = r.add(big.iter());
    assert!(over);
    assert_eq!(red(&r, "anything"), REDACTED);
    r.remove(id);
    assert_eq!(red(&r, "normal-secret"), REDACTED);
    r.remove(ok);
}

#[test]
fn oversized_text_is_replaced_whole() {
    let r = Redactor::new();
    let text = "a".repeat(MAX_TEXT_BYTES + 1);
    let out = red(&r, &text);
    assert!(out.starts_with(REDACTED) && out.len() < 200, "{out}");
    assert_eq!(red(&r, &"a".repeat(MAX_TEXT_BYTES)).len(), MAX_TEXT_BYTES);
}

#[test]
fn bearer_tokens() {
    let r = Redactor::new();
    assert_eq!(
        red(&r, "sending Bearer eyJhbGciOi.JIUzI1NiJ9-x_y~z+/= now"),
        "sending Bearer [REDACTED] now"
    );
    assert_eq!(red(&r, "bearer\tabcdefgh12345678"), "bearer\t[REDACTED]");
    // Prose and short words are left alone.
    assert_eq!(
        red(&r, "a bearer token is required"),
        "a bearer token is required"
    );
    assert_eq!(red(&r, "Bearer [REDACTED]"), "Bearer [REDACTED]");
    assert_eq!(red(&r, "cobearer abcdefghijkl"), "cobearer abcdefghijkl");
}

#[test]
fn authorization_values() {
    let r = Redactor::new();
    let cases = [
        (
            "Authorization: Basic dXNlcjpwYXNz",
            "Authorization: [REDACTED]",
        ),
        (
            "proxy-authorization=Negotiate abc; next",
            "proxy-authorization=[REDACTED]; next",
        ),
        (
            r#"{"authorization":"Token xyz","x":1}"#,
            r#"{"authorization":"[REDACTED]","x":1}"#,
        ),
        (
            r#"headers: {\"Authorization\": \"Bearer abc\"}"#,
            r#"headers: {\"Authorization\": \"[REDACTED]\"}"#,
        ),
        (
            r#"{"authorization": "k"}"#,
            r#"{"authorization": "[REDACTED]"}"#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(red(&r, input), want, "{input}");
    }
    for prose in [
        "authorization failed (401)",
        "the authorization header is missing",
        "Authorization:",
        "reauthorization: none",
    ] {
        assert_eq!(red(&r, prose), prose);
    }
}

#[test]
fn url_userinfo() {
    let r = Redactor::new();
    assert_eq!(
        red(&r, "proxy http://user:p%40ss@proxy:3128 failed"),
        "proxy http://[REDACTED]@proxy:3128 failed"
    );
    assert_eq!(
        red(
            &r,
            "git clone https://x-access-token:ghp_abc@github.com/o/r"
        ),
        "git clone https://[REDACTED]@github.com/o/r"
    );
    for plain in [
        "https://example.com/path@v1",
        "see https://example.com?q=a@b",
        "mailto:me@example.com",
        "weird :// @ text",
        "://",
    ] {
        assert_eq!(red(&r, plain), plain);
    }
}

#[test]
fn no_secret_survives_random_embedding() {
    let secrets = [
        "Zm9vYmFyYmF6cXV4",
        "sk-live-0123456789",
        "hunter2!hunter2",
        "ab\"cd\\ef",
    ];
    let r = with(&secrets);
    let alphabet: Vec<char> = "ab\\\"cdefsk-Zm9 2!\n%+é".chars().collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let mut text = String::new();
        for _ in 0..(next() % 6) {
            for _ in 0..(next() % 12) {
                text.push(alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()]);
            }
            text.push_str(secrets[usize::try_from(next() % secrets.len() as u64).unwrap()]);
        }
        let out = red(&r, &text);
        for s in secrets {
            assert!(
                !out.contains(s),
                "{s:?} survived in {out:?} (from {text:?})"
            );
        }
    }
}

#[test]
fn global_guard_registers_until_dropped() {
    let canary = "global-canary-7f3a9c";
    assert_eq!(redact(canary), canary);
    let guard = register([canary]);
    assert!(!guard.is_over_limit());
    assert_eq!(redact(&format!("x {canary} y")), "x [REDACTED] y");
    drop(guard);
    assert_eq!(redact(canary), canary);

    let kept = "kept-canary-52be11";
    register([kept]).keep();
    assert_eq!(redact(kept), REDACTED);
}

#[test]
fn mask_frame_env_vars_and_credentials() {
    let frame = r#"{"type":"task_assignment","data":{"task_id":"t1","task":{"title":"x"},
        "env_vars":{"WARP_API_KEY":"wk-secret","OTHER":"v"},
        "docker":{"registry_password":"pw","auth":{"Authorization":"Bearer zzz"}},
        "list":[{"env_vars":["A=1","B=two","C"]},{"env_vars":[{"name":"N","value":"val"}]}],
        "headers":{"X-Api-Key":"k","Cookie":"c","ok":"visible"},
        "n":null,"env_vars_count":3}}"#;
    let out = mask_frame(frame);
    for leaked in [
        "wk-secret",
        "\"v\"",
        "pw",
        "zzz",
        "two",
        "\"val\"",
        "\"k\"",
        "\"c\"",
    ] {
        assert!(!out.contains(leaked), "{leaked} in {out}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &v["data"];
    assert_eq!(d["task_id"], "t1");
    assert_eq!(d["env_vars"]["WARP_API_KEY"], REDACTED);
    assert_eq!(d["env_vars"]["OTHER"], REDACTED);
    assert_eq!(d["docker"]["registry_password"], REDACTED);
    assert_eq!(d["docker"]["auth"]["Authorization"], REDACTED);
    assert_eq!(
        d["list"][0]["env_vars"],
        serde_json::json!(["A=[REDACTED]", "B=[REDACTED]", "[REDACTED]"])
    );
    assert_eq!(d["list"][1]["env_vars"][0]["name"], "N");
    assert_eq!(d["list"][1]["env_vars"][0]["value"], REDACTED);
    assert_eq!(d["headers"]["ok"], "visible");
    assert_eq!(d["env_vars_count"], 3);
    assert!(d["n"].is_null());
}

#[test]
fn mask_frame_hostile_input() {
    assert_eq!(mask_frame("not json"), "<not JSON, 8 bytes, not shown>");
    assert_eq!(
        mask_frame(r#"{"env_vars":{"K":"secret""#),
        "<not JSON, 25 bytes, not shown>"
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(mask_frame(&deep).starts_with("<not JSON"));
    assert_eq!(
        mask_frame(r#"{"env_vars":"K=V"}"#),
        r#"{"env_vars":"[REDACTED]"}"#
    );
    assert_eq!(
        mask_frame(r#"{"env_vars":42}"#),
        r#"{"env_vars":"[REDACTED]"}"#
    );
    assert_eq!(mask_frame(r#"{"env_vars":null}"#), r#"{"env_vars":null}"#);
    assert_eq!(mask_frame("[1,\"a\",true]"), "[1,\"a\",true]");
    assert_eq!(mask_frame("\"\\ud800\""), "<not JSON, 8 bytes, not shown>");
}

/// Figures, not a pass/fail timing: run with `--nocapture` to see them.
#[test]
fn micro_benchmark_common_path() {
    let mut r = Redactor::new();
    // 40 tasks with 15 env vars each, like a busy worker.
    for task in 0..40 {
        let values: Vec<String> = (0..15)
            .map(|i| format!("task{task}-value-{i}-Zm9vYmFyYmF6"))
            .collect();
        let _ = r.add(values.iter());
    }
    let lines = [
        "2026-11-25T11:36:16.123Z INFO  Task 5b2c1e0a-93f1-4c1e-9a55-6a1f0e2d7c44 (execution 3) claimed: \"Fix the flaky test in the CI pipeline\"",
        "[5b2c1e0a-93f1-4c1e-9a55-6a1f0e2d7c44] Running tool call: grep -rn 'TODO' src/ | head -20 && cargo test --workspace",
    ];
    let n = 20_000;
    let empty = Redactor::new();
    let start = Instant::now();
    for i in 0..n {
        assert!(matches!(empty.redact(lines[i % 2]), Cow::Borrowed(_)));
    }
    let baseline = start.elapsed();
    let start = Instant::now();
    let mut borrowed = 0;
    for i in 0..n {
        if matches!(r.redact(lines[i % 2]), Cow::Borrowed(_)) {
            borrowed += 1;
        }
    }
    let clean = start.elapsed();
    let hit = "env dump: task7-value-3-Zm9vYmFyYmF6 and Bearer abcdefghijklmnop";
    let start = Instant::now();
    for _ in 0..n {
        assert!(!r.redact(hit).contains("task7-value-3"));
    }
    let dirty = start.elapsed();
    assert_eq!(borrowed, n);
    eprintln!(
        "redact micro-benchmark: no secrets registered {:.0} ns/line; {} patterns: no match \
         {:.0} ns/line, with matches {:.0} ns/line",
        baseline.as_nanos() as f64 / n as f64,
        r.pattern_count(),
        clean.as_nanos() as f64 / n as f64,
        dirty.as_nanos() as f64 / n as f64
    );
}
