//! Wording of decoding errors: serde's Rust type names in plain words, and a one-line example
//! for the shape mistakes operators make most.

/// serde names Rust types (`expected i64`, `expected struct DockerFile`, `invalid type:
/// floating point`): say what to write instead.
pub(super) fn plain_type_names(msg: &str) -> String {
    let msg = match msg.find("expected struct ") {
        Some(i) => format!("{}expected a mapping", &msg[..i]),
        None => msg.to_owned(),
    };
    const WORDS: &[(&str, &str)] = &[
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected u64", "expected a whole number, not negative"),
        ("expected u32", "expected a whole number, not negative"),
        ("expected u16", "expected a whole number, not negative"),
        ("expected usize", "expected a whole number, not negative"),
        ("expected f64", "expected a number"),
        ("expected a map", "expected a mapping"),
        ("invalid type: map", "invalid type: mapping"),
        (
            "invalid type: floating point",
            "invalid type: decimal number",
        ),
        (
            "invalid value: floating point",
            "invalid value: decimal number",
        ),
        ("invalid type: unit value", "invalid type: null"),
    ];
    let mut out = msg;
    for (rust, plain) in WORDS {
        if let Some(i) = out.find(rust) {
            let end = i + rust.len();
            // Whole words only: `expected a mapping` must not become `expected a mappinging`.
            if !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                out.replace_range(i..end, plain);
            }
        }
    }
    if out.contains("expected a whole number") && out.contains("invalid value: integer") {
        // An integer out of range for its key (`99999999999` for an i32).
        out.push_str(" (out of range)");
    }
    out
}

/// A one-line example for the common shape mistakes, appended to the message.
pub(super) fn shape_hint(path: Option<&str>, msg: &str) -> String {
    const BACKENDS: [&str; 4] = ["docker", "direct", "command", "kubernetes"];
    let Some(path) = path else {
        return String::new();
    };
    let got_scalar = msg.starts_with("invalid type: string")
        || msg.starts_with("invalid type: integer")
        || msg.starts_with("invalid type: boolean")
        || msg.starts_with("invalid type: null");
    if path == "backend" && msg.contains("expected a mapping") {
        let name = msg
            .split('"')
            .nth(1)
            .filter(|n| BACKENDS.contains(n))
            .unwrap_or("direct");
        return format!(
            " (write the backend as a block: `backend: {{{name}: {{}}}}`, or `{name}:` indented \
             under `backend:`)"
        );
    }
    if let Some(block) = path.strip_prefix("backend.")
        && BACKENDS.contains(&block)
        && got_scalar
    {
        return format!(" (e.g. `backend: {{{block}: {{}}}}` for its defaults)");
    }
    if path.ends_with(".environment") && msg.contains("expected a sequence") {
        return " (a list of name/value entries, e.g. `environment: [{name: KEY, value: v}]`)"
            .to_owned();
    }
    if path.ends_with(".volumes") && msg.contains("expected a sequence") {
        return " (a list, e.g. `volumes: [\"/host/path:/container/path:ro\"]`)".to_owned();
    }
    String::new()
}
