//! Structural masking of protocol frames for debug dumps.

use serde_json::Value;

use super::REDACTED;

/// Object keys whose values are credentials wherever they appear (compared lowercase, as
/// substrings, so `X-Api-Key`, `registry_password` and `WARP_WORKLOAD_TOKEN` all match).
const SECRET_KEY_PARTS: &[&str] = &[
    "authorization",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "credential",
    "cookie",
    "private_key",
];

/// `json_text` re-serialised with every value under an `env_vars` key masked (object values
/// become `[REDACTED]`, `KEY=VALUE` strings become `KEY=[REDACTED]`; keys stay visible) and
/// every credential-like key's value masked. Text that is not JSON, or nests deeper than
/// serde_json's limit, cannot be masked structurally and is summarised instead: a frame dump
/// must never be the line that leaks a secret.
pub fn mask_frame(json_text: &str) -> String {
    match serde_json::from_str::<Value>(json_text) {
        Ok(mut v) => {
            mask(&mut v);
            v.to_string()
        }
        Err(_) => format!("<not JSON, {} bytes, not shown>", json_text.len()),
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key.eq_ignore_ascii_case("env_vars") {
                    mask_env(value);
                } else if is_secret_key(key) && !value.is_null() {
                    *value = Value::String(REDACTED.to_owned());
                } else {
                    mask(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// Masks an `env_vars` value: a map of names to values, a list of `KEY=VALUE` strings or of
/// `{name, value}` objects; anything else is masked whole.
fn mask_env(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for value in map.values_mut() {
                *value = Value::String(REDACTED.to_owned());
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                match item {
                    Value::String(s) => {
                        let masked = match s.split_once('=') {
                            Some((name, _)) => format!("{name}={REDACTED}"),
                            None => REDACTED.to_owned(),
                        };
                        *s = masked;
                    }
                    Value::Object(entry) => {
                        for (key, value) in entry.iter_mut() {
                            if key != "name" {
                                *value = Value::String(REDACTED.to_owned());
                            }
                        }
                    }
                    other => *other = Value::String(REDACTED.to_owned()),
                }
            }
        }
        Value::Null => {}
        other => *other = Value::String(REDACTED.to_owned()),
    }
}
