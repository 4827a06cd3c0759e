//! Checks and conversions of single values: `-e` entries, env overlays, volume specs, URLs and
//! path expansion. Pure; the environment and the working directory are passed in.

use std::path::{Path, PathBuf};

use crate::settings::EnvList;

/// Parses one `-e` entry. A bare `KEY` takes the worker's own value, or "" when unset.
/// The error is the part after `invalid --env flag: `.
pub fn parse_env_flag(
    entry: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, String), String> {
    if entry.is_empty() {
        return Err("empty value".to_owned());
    }
    let (key, value) = match entry.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (entry, None),
    };
    // The value may be a secret: errors name the key only.
    if key.is_empty() {
        return Err("missing key before `=` (expected KEY=value or KEY)".to_owned());
    }
    if key.contains(char::is_whitespace) {
        return Err(format!(
            "key {key:?} contains whitespace (expected KEY=value or KEY)"
        ));
    }
    let value = match value {
        Some(v) => v.to_owned(),
        None => env(key).unwrap_or_default(),
    };
    Ok((key.to_owned(), value))
}

/// Sets `key` in `list`: replaces the value in place when the key is already there (keeping
/// first-seen order), else appends.
pub fn overlay(list: &mut EnvList, key: String, value: String) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => list.push((key, value)),
    }
}

const VOLUME_OPTS: &[&str] = &[
    "ro", "rw", "z", "Z", "nocopy", "shared", "slave", "private", "rshared", "rslave", "rprivate",
];

/// Checks a Docker bind spec `SRC:DST[:OPTS]`. The error says what is wrong with it.
pub fn check_volume(spec: &str) -> Result<(), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [src, dst] => (*src, *dst, None),
        [src, dst, opts] => (*src, *dst, Some(*opts)),
        _ => return Err("expected SRC:DST or SRC:DST:OPTS".to_owned()),
    };
    if src.is_empty() {
        return Err("the source (host path or volume name) is empty".to_owned());
    }
    // Docker takes an absolute host path or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*).
    let volume_name = src.starts_with(|c: char| c.is_ascii_alphanumeric())
        && src
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !src.starts_with('/') && !volume_name {
        return Err(format!(
            "the source {src:?} must be an absolute host path or a volume name"
        ));
    }
    if !dst.starts_with('/') {
        return Err(format!(
            "the destination {dst:?} must be an absolute path in the container"
        ));
    }
    let Some(opts) = opts else { return Ok(()) };
    let mut mode = None;
    let mut label = None;
    let mut propagation = None;
    for opt in opts.split(',') {
        if !VOLUME_OPTS.contains(&opt) {
            return Err(format!(
                "unknown option {opt:?} (allowed: {})",
                VOLUME_OPTS.join(", ")
            ));
        }
        let slot = match opt {
            "ro" | "rw" => &mut mode,
            "z" | "Z" => &mut label,
            "nocopy" => continue,
            _ => &mut propagation,
        };
        if let Some(prev) = slot.replace(opt) {
            return Err(format!("options {prev:?} and {opt:?} conflict"));
        }
    }
    Ok(())
}

/// Checks that `url` uses one of `schemes` and names a host. The error says what is wrong.
pub fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    if url.contains(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("expected {}://HOST...", schemes.join(":// or ")));
    };
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err(format!(
            "scheme {scheme:?} is not allowed (expected {})",
            schemes.join(" or ")
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err("the host is missing".to_owned());
    }
    Ok(())
}

/// Expands a leading `~` and makes a relative path absolute against `cwd`.
pub fn expand_path(path: &Path, home: Option<&str>, cwd: &Path) -> Result<PathBuf, String> {
    let expanded = match path.strip_prefix("~") {
        Ok(rest) => match home.filter(|h| !h.is_empty()) {
            Some(h) => Path::new(h).join(rest),
            None => return Err("cannot expand ~: HOME is not set".to_owned()),
        },
        Err(_) => path.to_path_buf(),
    };
    Ok(if expanded.is_absolute() {
        expanded
    } else {
        cwd.join(expanded)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(k: &str) -> Option<String> {
        match k {
            "HOME_VAR" => Some("from-host".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_flag_forms() {
        let p = |e: &str| parse_env_flag(e, &host);
        assert_eq!(p("A=b"), Ok(("A".into(), "b".into())));
        assert_eq!(p("A="), Ok(("A".into(), "".into())));
        assert_eq!(p("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(p("A=a,b"), Ok(("A".into(), "a,b".into())));
        assert_eq!(p("HOME_VAR"), Ok(("HOME_VAR".into(), "from-host".into())));
        assert_eq!(p("EMPTY"), Ok(("EMPTY".into(), "".into())));
        assert_eq!(p("UNSET"), Ok(("UNSET".into(), "".into())));
        assert_eq!(
            p("A= spaced value "),
            Ok(("A".into(), " spaced value ".into()))
        );
    }

    #[test]
    fn env_flag_errors() {
        let p = |e: &str| parse_env_flag(e, &host).unwrap_err();
        assert_eq!(p(""), "empty value");
        let missing = "missing key before `=` (expected KEY=value or KEY)";
        assert_eq!(p("=x"), missing);
        assert_eq!(p("="), missing);
        let spaced = "key \"A B\" contains whitespace (expected KEY=value or KEY)";
        assert_eq!(p("A B=c"), spaced);
        assert_eq!(p("A B"), spaced);
        assert!(p("A\tB=c").starts_with("key \"A\\tB\" contains"));
        // The value is never echoed: it may be a secret.
        for entry in ["=s3cr3t", "A B=s3cr3t", " =s3cr3t"] {
            assert!(!p(entry).contains("s3cr3t"), "{}", p(entry));
        }
    }

    #[test]
    fn overlay_replaces_in_place() {
        let mut l: EnvList = vec![("A".into(), "1".into()), ("B".into(), "2".into())];
        overlay(&mut l, "A".into(), "3".into());
        overlay(&mut l, "C".into(), "4".into());
        assert_eq!(
            l,
            vec![
                ("A".into(), "3".into()),
                ("B".into(), "2".into()),
                ("C".into(), "4".into())
            ]
        );
    }

    #[test]
    fn volumes_accepted() {
        for v in [
            "/a:/b",
            "name:/b",
            "/a:/b:ro",
            "/a:/b:rw",
            "/a:/b:z",
            "/a:/b:Z",
            "/a:/b:ro,Z",
            "/a:/b:rw,z,rshared",
            "/a:/b:nocopy",
            "/a:/b:shared",
            "/a:/b:slave",
            "/a:/b:private",
            "/a:/b:rslave",
            "/a:/b:rprivate",
            "/a,b:/c,d",
            "my_vol.1-x:/data",
        ] {
            assert_eq!(check_volume(v), Ok(()), "{v}");
        }
    }

    #[test]
    fn volumes_rejected_with_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "expected SRC:DST or SRC:DST:OPTS"),
            ("/a", "expected SRC:DST or SRC:DST:OPTS"),
            ("/a:/b:ro:x", "expected SRC:DST or SRC:DST:OPTS"),
            (":/b", "the source (host path or volume name) is empty"),
            (
                "./rel:/b",
                "the source \"./rel\" must be an absolute host path or a volume name",
            ),
            (
                "rel/dir:/b",
                "the source \"rel/dir\" must be an absolute host path or a volume name",
            ),
            (
                "~/x:/b",
                "the source \"~/x\" must be an absolute host path or a volume name",
            ),
            (
                "_v:/b",
                "the source \"_v\" must be an absolute host path or a volume name",
            ),
            (
                "/a:b",
                "the destination \"b\" must be an absolute path in the container",
            ),
            (
                "/a:",
                "the destination \"\" must be an absolute path in the container",
            ),
            (
                "/a:/b:",
                "unknown option \"\" (allowed: ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate)",
            ),
            (
                "/a:/b:rx",
                "unknown option \"rx\" (allowed: ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate)",
            ),
            ("/a:/b:ro,rw", "options \"ro\" and \"rw\" conflict"),
            ("/a:/b:z,Z", "options \"z\" and \"Z\" conflict"),
            (
                "/a:/b:shared,rslave",
                "options \"shared\" and \"rslave\" conflict",
            ),
            (
                "/a:/b:ro,",
                "unknown option \"\" (allowed: ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate)",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(check_volume(spec).unwrap_err(), *want, "{spec}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_url("wss://oz.warp.dev/api/v1/x", &["ws", "wss"]),
            Ok(())
        );
        assert_eq!(check_url("ws://127.0.0.1:8080/ws", &["ws", "wss"]), Ok(()));
        assert_eq!(check_url("WSS://host", &["ws", "wss"]), Ok(()));
        assert_eq!(
            check_url("https://app.warp.dev", &["http", "https"]),
            Ok(())
        );
        assert_eq!(
            check_url("http://[::1]:9/x?y#z", &["http", "https"]),
            Ok(())
        );
        assert_eq!(
            check_url("http://oz/ws", &["ws", "wss"]).unwrap_err(),
            "scheme \"http\" is not allowed (expected ws or wss)"
        );
        assert_eq!(
            check_url("oz.warp.dev", &["ws", "wss"]).unwrap_err(),
            "expected ws:// or wss://HOST..."
        );
        assert_eq!(
            check_url("wss:///x", &["ws", "wss"]).unwrap_err(),
            "the host is missing"
        );
        assert_eq!(
            check_url("wss://:80", &["ws", "wss"]).unwrap_err(),
            "the host is missing"
        );
        assert_eq!(
            check_url("wss://u@/x", &["ws", "wss"]).unwrap_err(),
            "the host is missing"
        );
        assert_eq!(
            check_url("wss://a b", &["ws", "wss"]).unwrap_err(),
            "contains whitespace"
        );
    }

    #[test]
    fn path_expansion() {
        let cwd = Path::new("/work");
        assert_eq!(
            expand_path(Path::new("~/c.yaml"), Some("/home/u"), cwd),
            Ok(PathBuf::from("/home/u/c.yaml"))
        );
        assert_eq!(
            expand_path(Path::new("~"), Some("/home/u"), cwd),
            Ok(PathBuf::from("/home/u"))
        );
        assert_eq!(
            expand_path(Path::new("c.yaml"), None, cwd),
            Ok(PathBuf::from("/work/c.yaml"))
        );
        assert_eq!(
            expand_path(Path::new("/etc/c.yaml"), None, cwd),
            Ok(PathBuf::from("/etc/c.yaml"))
        );
        // `~user` is not expanded (no passwd lookups); it is a relative name.
        assert_eq!(
            expand_path(Path::new("~bob/c"), Some("/home/u"), cwd),
            Ok(PathBuf::from("/work/~bob/c"))
        );
        assert_eq!(
            expand_path(Path::new("~/c"), None, cwd).unwrap_err(),
            "cannot expand ~: HOME is not set"
        );
        assert_eq!(
            expand_path(Path::new("~/c"), Some(""), cwd).unwrap_err(),
            "cannot expand ~: HOME is not set"
        );
    }
}
