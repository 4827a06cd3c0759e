use super::*;
use crate::docker::testutil::{TempDir, env};
use std::os::unix::fs::PermissionsExt;

const HELPER: &str = r#"#!/bin/sh
server=$(cat)
printf '%s' "$server" > "$(dirname "$0")/last-server"
case "$server" in
  ghcr.io) printf '{"ServerURL":"ghcr.io","Username":"helper-user","Secret":"helper-pass"}' ;;
  https://index.docker.io/v1/) printf '{"ServerURL":"x","Username":"hub-user","Secret":"hub-pass"}' ;;
  tok.io) printf '{"ServerURL":"tok.io","Username":"<token>","Secret":"refresh-token"}' ;;
  slow.io) exec sleep 30 ;;
  bad.io) echo 'hunter2 not json' ;;
  broken.io) echo 'helper exploded'; exit 3 ;;
  leaky.io) printf '{"ServerURL":"leaky.io","Username":"u","Secret":"leaked-s3cr3t"}'; exit 2 ;;
  envdump.io) env > "$(dirname "$0")/env"; printf '{"ServerURL":"envdump.io","Username":"u","Secret":"p"}' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;

/// A config dir with `config.json` and the fake `docker-credential-test` helper in `bin/`.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new(tag: &str, config: &str) -> Setup {
        let dir = TempDir::new(tag);
        dir.write("cfg/config.json", config.as_bytes());
        let helper = dir.write("bin/docker-credential-test", HELPER.as_bytes());
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Setup { dir }
    }

    fn resolve_with(
        &self,
        image: &str,
        extra: &[(&str, &str)],
    ) -> Result<Option<RegistryAuth>, DockerError> {
        let cfg = self.dir.path().join("cfg").display().to_string();
        let path = format!("{}:/usr/bin:/bin", self.dir.path().join("bin").display());
        let mut pairs = vec![("DOCKER_CONFIG", cfg.as_str()), ("PATH", path.as_str())];
        pairs.extend_from_slice(extra);
        let image = ImageRef::parse(image).unwrap();
        resolve_with_timeout(&env(&pairs), &image, Duration::from_secs(20))
    }

    fn resolve(&self, image: &str) -> Result<Option<RegistryAuth>, DockerError> {
        self.resolve_with(image, &[])
    }

    fn last_server(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bin/last-server")).unwrap()
    }
}

fn password(auth: &RegistryAuth) -> (&str, &str, &str) {
    match &auth.credential {
        Credential::Password { username, password } => (
            auth.server_address.as_str(),
            username.as_str(),
            password.expose(),
        ),
        Credential::IdentityToken(_) => panic!("expected a password"),
    }
}

fn token(auth: &RegistryAuth) -> &str {
    match &auth.credential {
        Credential::IdentityToken(t) => t.expose(),
        Credential::Password { .. } => panic!("expected a token"),
    }
}

#[test]
fn header_is_base64url_json_of_the_credentials() {
    let auth = RegistryAuth {
        server_address: "ghcr.io".into(),
        credential: Credential::Password {
            username: "u".into(),
            password: Secret::new("p?>~"),
        },
    };
    let value = auth.header_value();
    assert!(!value.contains('+') && !value.contains('/'), "{value}");
    let json: serde_json::Value =
        serde_json::from_slice(&crate::docker::base64::decode(&value).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"username": "u", "password": "p?>~", "serveraddress": "ghcr.io"})
    );

    let auth = RegistryAuth {
        server_address: "tok.io".into(),
        credential: Credential::IdentityToken(Secret::new("t0k")),
    };
    let json: serde_json::Value =
        serde_json::from_slice(&crate::docker::base64::decode(&auth.header_value()).unwrap())
            .unwrap();
    assert_eq!(
        json,
        serde_json::json!({"identitytoken": "t0k", "serveraddress": "tok.io"})
    );
}

#[test]
fn debug_never_shows_secrets() {
    let auth = RegistryAuth {
        server_address: "r.io".into(),
        credential: Credential::Password {
            username: "user".into(),
            password: Secret::new("hunter2"),
        },
    };
    let debug = format!("{auth:?}");
    assert!(
        debug.contains("user") && !debug.contains("hunter2"),
        "{debug}"
    );
    let auth = RegistryAuth {
        server_address: "r.io".into(),
        credential: Credential::IdentityToken(Secret::new("hunter2")),
    };
    assert!(!format!("{auth:?}").contains("hunter2"));
}

#[test]
fn auths_entries_in_every_form() {
    let s = Setup::new(
        "auth-forms",
        r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"aHViOmh1YnBhc3M="},
            "r1.io":{"username":"u1","password":"p1"},
            "https://r2.io/v2/":{"identitytoken":"tok2","auth":"dTI6"},
            "r3.io":{},
            "r4.io":{"auth":"!!!"},
            "r5.io":{"auth":"bm9jb2xvbg=="},
            "r6.io":{"auth":"OnB3"}
        }}"#,
    );
    let hub = s.resolve("ubuntu:22.04").unwrap().unwrap();
    assert_eq!(
        password(&hub),
        ("https://index.docker.io/v1/", "hub", "hubpass")
    );
    let hub = s
        .resolve("docker.io/warpdotdev/warp-agent")
        .unwrap()
        .unwrap();
    assert_eq!(password(&hub).1, "hub");

    let r1 = s.resolve("r1.io/a/b:1").unwrap().unwrap();
    assert_eq!(password(&r1), ("r1.io", "u1", "p1"));

    // Keys match by host: "https://r2.io/v2/" serves r2.io; the token wins over the auth field.
    let r2 = s.resolve("r2.io/img").unwrap().unwrap();
    assert_eq!((r2.server_address.as_str(), token(&r2)), ("r2.io", "tok2"));

    assert!(s.resolve("r3.io/img").unwrap().is_none());
    assert!(s.resolve("unknown.io/img").unwrap().is_none());

    let err = s.resolve("r4.io/img").unwrap_err().to_string();
    assert!(
        err.contains("not valid base64") && err.contains("config.json"),
        "{err}"
    );
    let err = s.resolve("r5.io/img").unwrap_err().to_string();
    assert!(
        err.contains("not user:password") && !err.contains("nocolon"),
        "{err}"
    );
    // An empty username is no credential.
    assert!(s.resolve("r6.io/img").unwrap().is_none());
}

#[test]
fn hub_entries_under_other_spellings_match() {
    let s = Setup::new(
        "auth-hub",
        r#"{"auths":{"docker.io":{"username":"u","password":"p"}}}"#,
    );
    assert_eq!(password(&s.resolve("ubuntu").unwrap().unwrap()).1, "u");
    let s = Setup::new(
        "auth-hub2",
        r#"{"auths":{"index.docker.io":{"username":"v","password":"p"}}}"#,
    );
    assert_eq!(
        password(&s.resolve("library/ubuntu").unwrap().unwrap()).1,
        "v"
    );
}

#[test]
fn docker_auth_config_takes_precedence() {
    let s = Setup::new(
        "auth-env",
        r#"{"auths":{"r1.io":{"username":"file","password":"f"},"r2.io":{"username":"file2","password":"f"}}}"#,
    );
    let inline = r#"{"auths":{"r1.io":{"auth":"ZW52OmU="}}}"#;
    let r1 = s
        .resolve_with("r1.io/x", &[("DOCKER_AUTH_CONFIG", inline)])
        .unwrap()
        .unwrap();
    assert_eq!(password(&r1), ("r1.io", "env", "e"));
    // Registries the inline config does not know fall through to the file.
    let r2 = s
        .resolve_with("r2.io/x", &[("DOCKER_AUTH_CONFIG", inline)])
        .unwrap()
        .unwrap();
    assert_eq!(password(&r2).1, "file2");
    let err = s
        .resolve_with("r1.io/x", &[("DOCKER_AUTH_CONFIG", "{oops")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("DOCKER_AUTH_CONFIG"), "{err}");
}

#[test]
fn cred_helpers_and_creds_store_run_the_helper() {
    let s = Setup::new(
        "auth-helpers",
        r#"{"credsStore":"test","credHelpers":{"ghcr.io":"test"},
            "auths":{"fallback.io":{"username":"fb","password":"p"}}}"#,
    );
    let ghcr = s.resolve("ghcr.io/org/img").unwrap().unwrap();
    assert_eq!(password(&ghcr), ("ghcr.io", "helper-user", "helper-pass"));
    assert_eq!(s.last_server(), "ghcr.io");

    let hub = s.resolve("ubuntu").unwrap().unwrap();
    assert_eq!(password(&hub).1, "hub-user");
    assert_eq!(s.last_server(), "https://index.docker.io/v1/");

    let tok = s.resolve("tok.io/img").unwrap().unwrap();
    assert_eq!(token(&tok), "refresh-token");

    // "credentials not found" from the store: the auths entry, else anonymous.
    let fb = s.resolve("fallback.io/img").unwrap().unwrap();
    assert_eq!(password(&fb).1, "fb");
    assert!(s.resolve("nothing.io/img").unwrap().is_none());
}

#[test]
fn helper_failures_are_errors_without_secrets() {
    let s = Setup::new("auth-helper-fail", r#"{"credsStore":"test"}"#);
    let err = s.resolve("bad.io/img").unwrap_err().to_string();
    assert!(
        err.contains("not credentials JSON") && !err.contains("hunter2"),
        "{err}"
    );
    assert!(err.contains("credsStore"), "{err}");
    let err = s.resolve("broken.io/img").unwrap_err().to_string();
    assert!(
        !err.contains("helper exploded") && err.contains("exit status: 3"),
        "{err}"
    );
    // A helper that prints its secret JSON and then fails: the output is not echoed.
    let err = s.resolve("leaky.io/img").unwrap_err().to_string();
    assert!(
        !err.contains("leaked-s3cr3t") && err.contains("exit status: 2"),
        "{err}"
    );

    let s = Setup::new("auth-helper-missing", r#"{"credHelpers":{"r.io":"nope"}}"#);
    let err = s.resolve("r.io/img").unwrap_err().to_string();
    assert!(
        err.contains("docker-credential-nope not found on PATH") && err.contains("credHelpers"),
        "{err}"
    );
    let s = Setup::new("auth-helper-name", r#"{"credsStore":"../evil"}"#);
    let err = s.resolve("r.io/img").unwrap_err().to_string();
    assert!(err.contains("invalid credential helper name"), "{err}");
}

#[test]
fn the_helper_gets_a_cleared_environment_with_what_it_needs() {
    let s = Setup::new("auth-helper-env", r#"{"credsStore":"test"}"#);
    let auth = s
        .resolve_with(
            "envdump.io/img",
            &[
                ("WARP_API_KEY", "wk-s3cr3t"),
                ("NOTIFY_SOCKET", "/run/systemd/notify"),
                ("WATCHDOG_USEC", "1000000"),
                ("HOME", "/home/op"),
                ("HTTPS_PROXY", "http://proxy:3128"),
                ("no_proxy", "localhost"),
            ],
        )
        .unwrap()
        .unwrap();
    assert_eq!(password(&auth).1, "u");
    let dump = std::fs::read_to_string(s.dir.path().join("bin/env")).unwrap();
    let mut names = Vec::new();
    for line in dump.lines() {
        let name = line.split('=').next().unwrap();
        // The shell adds these itself.
        if ["PWD", "OLDPWD", "SHLVL", "_"].contains(&name) {
            continue;
        }
        assert!(
            credhelper::HELPER_ENV.contains(&name),
            "the helper was given {name}: {dump}"
        );
        names.push(name);
    }
    for expected in ["PATH", "HOME", "DOCKER_CONFIG", "HTTPS_PROXY", "no_proxy"] {
        assert!(names.contains(&expected), "{expected} missing: {dump}");
    }
    assert!(dump.contains("HOME=/home/op"), "{dump}");
    assert!(!dump.contains("wk-s3cr3t"), "{dump}");
}

#[test]
fn a_slow_helper_is_killed_at_the_deadline() {
    let s = Setup::new("auth-helper-slow", r#"{"credsStore":"test"}"#);
    let cfg = s.dir.path().join("cfg").display().to_string();
    let path = format!("{}:/usr/bin:/bin", s.dir.path().join("bin").display());
    let e = env(&[("DOCKER_CONFIG", &cfg), ("PATH", &path)]);
    let image = ImageRef::parse("slow.io/img").unwrap();
    let err = resolve_with_timeout(&e, &image, Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not answer within 300ms"), "{err}");
}

#[test]
fn no_config_means_anonymous() {
    let dir = TempDir::new("auth-none");
    let home = dir.path().display().to_string();
    let image = ImageRef::parse("ubuntu").unwrap();
    assert!(resolve(&env(&[("HOME", &home)]), &image).unwrap().is_none());
    assert!(resolve(&env(&[]), &image).unwrap().is_none());
}

#[test]
fn secret_values_cover_the_secret_and_its_header_form() {
    let auth = RegistryAuth {
        server_address: "ghcr.io".into(),
        credential: Credential::Password {
            username: "me".into(),
            password: Secret::new("pw-canary"),
        },
    };
    let values = auth.secret_values();
    assert_eq!(values, vec!["pw-canary".to_owned(), auth.header_value()]);
    let auth = RegistryAuth {
        server_address: "ghcr.io".into(),
        credential: Credential::IdentityToken(Secret::new("tok-canary")),
    };
    assert_eq!(auth.secret_values()[0], "tok-canary");
}
