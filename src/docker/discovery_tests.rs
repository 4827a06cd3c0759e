use super::*;
use crate::docker::testutil::{TempDir, env};
use crate::docker::tls::tests::{pki, write_client_files};

/// A fake machine: a config dir, a home, and a default socket path that may or may not exist.
struct Machine {
    dir: TempDir,
}

impl Machine {
    fn new(tag: &str) -> Machine {
        Machine {
            dir: TempDir::new(tag),
        }
    }
    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }
    fn default_socket(&self) -> PathBuf {
        self.dir.path().join("var/run/docker.sock")
    }
    fn touch(&self, rel: &str) {
        self.dir.write(rel, b"");
    }
    fn config(&self, json: &str) {
        self.dir.write("home/.docker/config.json", json.as_bytes());
    }
    fn context(&self, name: &str, meta: &str) {
        let id = context_id(name);
        self.dir.write(
            &format!("home/.docker/contexts/meta/{id}/meta.json"),
            meta.as_bytes(),
        );
    }
    fn discover(&self, pairs: &[(&str, &str)]) -> Result<Endpoint, DockerError> {
        let home = self.path("home");
        let mut all = vec![("HOME", home.as_str())];
        all.extend_from_slice(pairs);
        discover(&env(&all), &self.default_socket())
    }
}

fn unix_path(e: &Endpoint) -> PathBuf {
    match e.address() {
        Address::Unix(p) => p.clone(),
        other => panic!("not unix: {other:?}"),
    }
}

fn meta(host: &str, skip_verify: bool) -> String {
    format!(
        r#"{{"Name":"x","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip_verify}}}}}}}"#
    )
}

#[test]
fn context_ids_are_sha256_hex() {
    assert_eq!(
        context_id("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn default_socket_then_rootless_then_desktop() {
    let m = Machine::new("disc-default");
    let xdg = m.path("run/user/1000");
    // Nothing exists: the conventional path, so the connect error names it.
    let e = m.discover(&[("XDG_RUNTIME_DIR", &xdg)]).unwrap();
    assert_eq!(unix_path(&e), m.default_socket());

    m.touch("home/.docker/run/docker.sock");
    let e = m.discover(&[("XDG_RUNTIME_DIR", &xdg)]).unwrap();
    assert_eq!(
        unix_path(&e),
        m.dir.path().join("home/.docker/run/docker.sock")
    );
    assert_eq!(e.source(), "Docker Desktop socket");

    m.touch("run/user/1000/docker.sock");
    let e = m.discover(&[("XDG_RUNTIME_DIR", &xdg)]).unwrap();
    assert_eq!(
        unix_path(&e),
        m.dir.path().join("run/user/1000/docker.sock")
    );

    m.touch("var/run/docker.sock");
    let e = m.discover(&[("XDG_RUNTIME_DIR", &xdg)]).unwrap();
    assert_eq!(unix_path(&e), m.default_socket());
    assert_eq!(e.source(), "default socket");
}

#[test]
fn precedence_host_then_context_env_then_current_context_then_default() {
    let m = Machine::new("disc-prec");
    m.touch("var/run/docker.sock");
    m.context("from-env", &meta("unix:///ctx/env.sock", false));
    m.context("from-config", &meta("unix:///ctx/config.sock", false));
    m.config(r#"{"currentContext":"from-config"}"#);

    let e = m
        .discover(&[
            ("DOCKER_HOST", "unix:///host.sock"),
            ("DOCKER_CONTEXT", "from-env"),
        ])
        .unwrap();
    assert_eq!(unix_path(&e), PathBuf::from("/host.sock"));
    assert_eq!(e.source(), "DOCKER_HOST");

    let e = m.discover(&[("DOCKER_CONTEXT", "from-env")]).unwrap();
    assert_eq!(unix_path(&e), PathBuf::from("/ctx/env.sock"));
    assert!(e.source().contains("from-env") && e.source().contains("DOCKER_CONTEXT"));

    let e = m.discover(&[]).unwrap();
    assert_eq!(unix_path(&e), PathBuf::from("/ctx/config.sock"));
    assert!(e.source().contains("currentContext"));

    // "default" is the no-context context, and an empty DOCKER_HOST is unset.
    let e = m
        .discover(&[("DOCKER_CONTEXT", "default"), ("DOCKER_HOST", "")])
        .unwrap();
    assert_eq!(unix_path(&e), m.default_socket());
}

#[test]
fn docker_config_moves_the_config_and_context_store() {
    let m = Machine::new("disc-dockerconfig");
    let cfg = m.path("elsewhere");
    m.dir.write(
        "elsewhere/config.json",
        br#"{"currentContext":"remote","auths":{}}"#,
    );
    m.dir.write(
        &format!("elsewhere/contexts/meta/{}/meta.json", context_id("remote")),
        meta("tcp://10.1.2.3:2375", false).as_bytes(),
    );
    let e = m.discover(&[("DOCKER_CONFIG", &cfg)]).unwrap();
    assert_eq!(
        e.address().clone(),
        Address::Tcp {
            host: "10.1.2.3".into(),
            port: 2375
        }
    );
    assert!(!e.is_tls());
}

#[test]
fn context_tls_material_and_skip_verify() {
    let m = Machine::new("disc-ctx-tls");
    let pki = pki();
    m.context("secure", &meta("tcp://docker.example:2376", false));
    let id = context_id("secure");
    write_client_files(
        &m.dir,
        &format!("home/.docker/contexts/tls/{id}/docker"),
        &pki,
        true,
    );
    let e = m.discover(&[("DOCKER_CONTEXT", "secure")]).unwrap();
    assert!(e.is_tls());
    assert_eq!(e.to_string(), "tcp://docker.example:2376");

    // SkipTLSVerify without material: TLS without verification.
    m.context("skip", &meta("tcp://docker.example", true));
    let e = m.discover(&[("DOCKER_CONTEXT", "skip")]).unwrap();
    assert!(e.is_tls());
    assert_eq!(e.to_string(), "tcp://docker.example:2376");

    // Neither: plain TCP on the plain port.
    m.context("plain", &meta("tcp://docker.example", false));
    let e = m.discover(&[("DOCKER_CONTEXT", "plain")]).unwrap();
    assert!(!e.is_tls());
    assert_eq!(e.to_string(), "tcp://docker.example:2375");
}

#[test]
fn context_errors_name_the_context_and_file() {
    let m = Machine::new("disc-ctx-err");
    let err = m
        .discover(&[("DOCKER_CONTEXT", "ghost")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"ghost\"") && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.contains(&context_id("ghost")), "{err}");

    m.context("broken", "{");
    let err = m
        .discover(&[("DOCKER_CONTEXT", "broken")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot parse Docker context \"broken\""),
        "{err}"
    );

    m.context("k8s-only", r#"{"Endpoints":{"kubernetes":{"Host":"x"}}}"#);
    let err = m
        .discover(&[("DOCKER_CONTEXT", "k8s-only")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no docker endpoint"), "{err}");

    m.config("{not json");
    let err = m.discover(&[]).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("DOCKER_HOST"),
        "{err}"
    );
    // DOCKER_HOST bypasses a broken config.
    assert!(m.discover(&[("DOCKER_HOST", "unix:///x.sock")]).is_ok());
}

#[test]
fn host_urls() {
    let plain = |raw: &str| {
        parse_host(
            raw,
            "DOCKER_HOST".into(),
            TlsChoice {
                enabled: false,
                files: TlsFiles {
                    dir: PathBuf::new(),
                    verify: false,
                },
            },
        )
    };
    let tcp = |raw: &str| plain(raw).map(|e| e.address().clone());
    assert_eq!(
        tcp("unix:///var/run/docker.sock").unwrap(),
        Address::Unix("/var/run/docker.sock".into())
    );
    assert_eq!(
        tcp("tcp://h:1234").unwrap(),
        Address::Tcp {
            host: "h".into(),
            port: 1234
        }
    );
    assert_eq!(
        tcp("tcp://h/").unwrap(),
        Address::Tcp {
            host: "h".into(),
            port: 2375
        }
    );
    assert_eq!(
        tcp("http://10.0.0.1").unwrap(),
        Address::Tcp {
            host: "10.0.0.1".into(),
            port: 2375
        }
    );
    assert_eq!(
        tcp("tcp://[::1]:2376").unwrap(),
        Address::Tcp {
            host: "::1".into(),
            port: 2376
        }
    );
    assert_eq!(
        tcp("tcp://[fe80::1]").unwrap(),
        Address::Tcp {
            host: "fe80::1".into(),
            port: 2375
        }
    );
    let https = plain("https://h").unwrap();
    assert!(https.is_tls());
    assert_eq!(https.to_string(), "tcp://h:2376");
    for (bad, why) in [
        ("ssh://user@host", "ssh -nNT -L"),
        ("npipe:////./pipe/docker_engine", "expected unix://"),
        ("/var/run/docker.sock", "expected unix:///path"),
        ("unix://relative.sock", "absolute"),
        ("tcp://h:notaport", "invalid port"),
        ("tcp://h:0", "invalid port"),
        ("tcp://h:2375/base", "base path"),
        ("tcp://", "empty host"),
        ("tcp://[::1", "unclosed"),
    ] {
        let err = plain(bad).unwrap_err().to_string();
        assert!(
            err.contains(why) && err.contains("DOCKER_HOST"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn env_tls_follows_the_docker_client() {
    let t = |pairs: &[(&str, &str)]| env_tls(&env(pairs));
    let off = t(&[("HOME", "/h")]);
    assert!(!off.enabled);
    let verify = t(&[("HOME", "/h"), ("DOCKER_TLS_VERIFY", "1")]);
    assert!(verify.enabled && verify.files.verify);
    assert_eq!(verify.files.dir, PathBuf::from("/h/.docker"));
    let path_only = t(&[("DOCKER_CERT_PATH", "/certs")]);
    assert!(path_only.enabled && !path_only.files.verify);
    assert_eq!(path_only.files.dir, PathBuf::from("/certs"));
    let tls_only = t(&[("DOCKER_TLS", "1"), ("DOCKER_CONFIG", "/cfg")]);
    assert!(tls_only.enabled && !tls_only.files.verify);
    assert_eq!(tls_only.files.dir, PathBuf::from("/cfg"));
    // Empty means unset, as in the CLI.
    assert!(!t(&[("DOCKER_TLS_VERIFY", ""), ("DOCKER_CERT_PATH", "")]).enabled);
}

#[test]
fn tcp_with_tls_verify_loads_the_cert_path() {
    let m = Machine::new("disc-env-tls");
    let pki = pki();
    write_client_files(&m.dir, "certs", &pki, true);
    let certs = m.path("certs");
    let e = m
        .discover(&[
            ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &certs),
        ])
        .unwrap();
    assert!(e.is_tls());
    // TLS settings do not apply to a unix socket.
    let e = m
        .discover(&[
            ("DOCKER_HOST", "unix:///x.sock"),
            ("DOCKER_TLS_VERIFY", "1"),
        ])
        .unwrap();
    assert!(!e.is_tls());
}
