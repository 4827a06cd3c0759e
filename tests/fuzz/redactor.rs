//! The redactor: no registered secret survives any interleaving of secrets, their fragments,
//! overlaps and other text.

use oz_agent_worker::redact::{REDACTED, Redactor};

use super::run;

/// Secrets from lowercase letters and digits, other text from anything but those... and a
/// few of them, so fragments of secrets mix with text that can complete them.
const SECRET_ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const TEXT_ALPHABET: &str = "abc019 =:/\"'\\{}[]\n\tÉ😀-_.%&?";

#[test]
fn no_registered_secret_survives_any_interleaving() {
    run("redactor", |rng| {
        let secrets: Vec<String> = (0..1 + rng.below(5))
            .map(|_| {
                let len = 4 + rng.below(20);
                rng.string(SECRET_ALPHABET, len)
            })
            .collect();
        let mut r = Redactor::new();
        r.add(&secrets);
        let mut text = String::new();
        for _ in 0..rng.below(12) {
            let s = rng.pick(&secrets).clone();
            match rng.below(6) {
                0 => text.push_str(&s),
                // A fragment: a prefix or a suffix.
                1 => text.push_str(&s[..rng.below(s.len())]),
                2 => text.push_str(&s[rng.below(s.len())..]),
                // Two secrets overlapping on a shared stretch.
                3 => {
                    let t = rng.pick(&secrets);
                    let cut = rng.below(s.len());
                    text.push_str(&s[..cut]);
                    text.push_str(t);
                }
                // The same secret twice in a row, and URL/JSON-ish surroundings.
                4 => text.push_str(&format!("https://x/?token={s}{s}&a=\"{s}\"")),
                _ => {
                    let len = rng.below(16);
                    text.push_str(&rng.string(TEXT_ALPHABET, len));
                }
            }
        }
        let out = r.redact(&text);
        for s in &secrets {
            assert!(
                !out.contains(s.as_str()),
                "secret {s:?} survived in {out:?} (input {text:?})"
            );
        }
        // Redaction only ever replaces: text without any secret is unchanged.
        if !secrets.iter().any(|s| text.contains(s.as_str())) && !text.contains("Bearer") {
            assert!(
                !out.contains(REDACTED) || text.contains("://"),
                "{text:?} -> {out:?}"
            );
        }
    });
}
