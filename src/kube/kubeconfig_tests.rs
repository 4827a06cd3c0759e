use super::*;

struct Tmp(PathBuf);
impl Tmp {
    fn new(name: &str) -> Tmp {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "oz-kubeconfig-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Tmp(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn resolve_with(
    explicit: Option<&Path>,
    env: &[(&str, String)],
    sa: &Path,
) -> Result<ClusterConfig, String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let lookup = move |k: &str| env.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    resolve(
        explicit,
        &Inputs {
            env: &lookup,
            service_account_dir: sa.to_path_buf(),
        },
    )
}

const ONE: &str = "apiVersion: v1
kind: Config
current-context: a
clusters:
- name: ca
  cluster:
    server: https://10.0.0.1:6443/prefix/
    certificate-authority: ca.pem
    tls-server-name: kubernetes
    proxy-url: http://proxy:3128
contexts:
- name: a
  context: {cluster: ca, user: ua, namespace: agents}
users:
- name: ua
  user:
    tokenFile: tok
    as: admin
    as-groups: [g1, g2]
";

#[test]
fn explicit_file_resolves_relative_paths_against_its_directory() {
    let t = Tmp::new("explicit");
    t.write("ca.pem", "CA");
    let kc = t.write("config", ONE);
    let c = resolve_with(Some(&kc), &[], &t.0.join("no-sa")).expect("resolves");
    assert_eq!(c.server.to_string(), "https://10.0.0.1:6443/prefix");
    assert_eq!(c.ca_pem.as_deref(), Some(&b"CA"[..]));
    assert_eq!(c.tls_server_name.as_deref(), Some("kubernetes"));
    assert_eq!(c.proxy_url.as_deref(), Some("http://proxy:3128"));
    assert_eq!(c.auth, AuthConfig::TokenFile(t.0.join("tok")));
    assert_eq!(c.namespace.as_deref(), Some("agents"));
    assert_eq!(
        c.impersonate,
        vec![
            ("Impersonate-User".to_owned(), "admin".to_owned()),
            ("Impersonate-Group".to_owned(), "g1".to_owned()),
            ("Impersonate-Group".to_owned(), "g2".to_owned()),
        ]
    );
    assert!(c.source.contains("context a"), "{}", c.source);
}

#[test]
fn explicit_file_wins_over_in_cluster_and_kubeconfig_env() {
    let t = Tmp::new("precedence");
    t.write("ca.pem", "CA");
    let kc = t.write("config", ONE);
    t.write("token", "sa-token");
    let env = [
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1".to_owned()),
        ("KUBERNETES_SERVICE_PORT", "443".to_owned()),
        ("KUBECONFIG", "/nonexistent".to_owned()),
    ];
    let c = resolve_with(Some(&kc), &env, &t.0).expect("explicit");
    assert_eq!(c.server.host, "10.0.0.1");
    // Without the explicit file, in-cluster wins over $KUBECONFIG.
    let c = resolve_with(None, &env, &t.0).expect("in-cluster");
    assert_eq!(c.server.to_string(), "https://10.96.0.1:443");
    assert_eq!(c.auth, AuthConfig::TokenFile(t.0.join("token")));
    assert!(c.source.starts_with("in-cluster"));
}

#[test]
fn in_cluster_brackets_ipv6_hosts() {
    let t = Tmp::new("v6");
    t.write("token", "x");
    let env = [
        ("KUBERNETES_SERVICE_HOST", "fd00::1".to_owned()),
        ("KUBERNETES_SERVICE_PORT", "443".to_owned()),
    ];
    let c = resolve_with(None, &env, &t.0).expect("in-cluster");
    assert_eq!(c.server.to_string(), "https://[fd00::1]:443");
}

#[test]
fn kubeconfig_list_merges_first_wins_and_skips_missing_files() {
    let t = Tmp::new("merge");
    let a = t.write(
        "a",
        "clusters:\n- name: c\n  cluster: {server: 'http://first:8001'}\nusers:\n- name: u\n  user: {token: first}\n",
    );
    let b = t.write(
        "b",
        "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'http://second:8001'}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: second}\n",
    );
    let list = format!(
        "{}:{}:{}",
        t.0.join("missing").display(),
        a.display(),
        b.display()
    );
    let c = resolve_with(None, &[("KUBECONFIG", list)], &t.0).expect("merged");
    assert_eq!(c.server.to_string(), "http://first:8001");
    assert_eq!(c.auth, AuthConfig::Token(Secret("first".into())));
    assert!(!c.server.https);
}

#[test]
fn home_kubeconfig_is_the_last_resort_and_its_absence_says_what_to_set() {
    let t = Tmp::new("home");
    let err = resolve_with(None, &[("HOME", t.0.display().to_string())], &t.0).unwrap_err();
    assert!(err.contains("backend.kubernetes.kubeconfig"), "{err}");
    std::fs::create_dir_all(t.0.join(".kube")).expect("mkdir");
    t.write(
        ".kube/config",
        "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://h'}\ncontexts:\n- name: x\n  context: {cluster: c}\n",
    );
    let c = resolve_with(None, &[("HOME", t.0.display().to_string())], &t.0).expect("home");
    assert_eq!(c.server.to_string(), "https://h:443");
    assert_eq!(c.auth, AuthConfig::None);
}

#[test]
fn auth_provider_is_refused_naming_the_exec_plugin() {
    let t = Tmp::new("authprov");
    let kc = t.write(
        "config",
        "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://h'}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n      config: {access-token: SECRET-TOKEN}\n",
    );
    let err = resolve_with(Some(&kc), &[], &t.0).unwrap_err();
    assert!(err.contains("gke-gcloud-auth-plugin"), "{err}");
    assert!(!err.contains("SECRET-TOKEN"), "{err}");
}

#[test]
fn client_cert_data_exec_and_basic_auth_are_read() {
    let t = Tmp::new("users");
    let cert = crate::base64::encode(b"CERT");
    let key = crate::base64::encode(b"KEY");
    let kc = t.write(
        "config",
        &format!(
            "current-context: x\nclusters:\n- name: c\n  cluster: {{server: 'https://h', insecure-skip-tls-verify: true}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\n- name: e\n  context: {{cluster: c, user: ex}}\n- name: b\n  context: {{cluster: c, user: basic}}\nusers:\n- name: u\n  user: {{client-certificate-data: {cert}, client-key-data: {key}}}\n- name: ex\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ./plugin\n      args: [get-token]\n      env: [{{name: A, value: b}}]\n      interactiveMode: Never\n- name: basic\n  user: {{username: me, password: pw}}\n"
        ),
    );
    let c = resolve_with(Some(&kc), &[], &t.0).expect("cert user");
    assert!(c.insecure_skip_tls_verify);
    let cc = c.client_cert.expect("client cert");
    assert_eq!(cc.cert_pem, b"CERT");
    assert_eq!(cc.key_pem, b"KEY");
    assert!(!format!("{cc:?}").contains("KEY\""));

    let text = std::fs::read_to_string(&kc)
        .expect("read")
        .replace("current-context: x", "current-context: e");
    let kc2 = t.write("config2", &text);
    let c = resolve_with(Some(&kc2), &[], &t.0).expect("exec user");
    let AuthConfig::Exec(e) = c.auth else {
        panic!("exec expected")
    };
    assert_eq!(e.command, t.0.join("plugin").display().to_string());
    assert_eq!(e.args, vec!["get-token"]);
    assert_eq!(e.interactive_mode.as_deref(), Some("Never"));

    let text = text.replace("current-context: e", "current-context: b");
    let kc3 = t.write("config3", &text);
    let c = resolve_with(Some(&kc3), &[], &t.0).expect("basic user");
    assert!(matches!(c.auth, AuthConfig::Basic { ref username, .. } if username == "me"));
    assert!(!format!("{:?}", c.auth).contains("pw"));
}

#[test]
fn broken_references_name_the_missing_entry() {
    let t = Tmp::new("broken");
    let kc = t.write("config", "current-context: nope\ncontexts: []\n");
    let err = resolve_with(Some(&kc), &[], &t.0).unwrap_err();
    assert!(err.contains("\"nope\""), "{err}");
    let err = resolve_with(Some(&t.0.join("absent")), &[], &t.0).unwrap_err();
    assert!(err.contains("backend.kubernetes.kubeconfig"), "{err}");
    assert!(ServerUrl::parse("ftp://x").is_err());
}

#[test]
fn yaml_errors_never_quote_the_offending_value() {
    let msg = r#"users[0].user: invalid type: string "token: \"s3cret\"", expected struct UserEntry at line 15 column 5"#;
    let clean = without_quoted_values(msg);
    assert!(!clean.contains("s3cret"), "{clean}");
    assert!(
        clean.contains(
            "users[0].user: invalid type: string \"...\", expected struct UserEntry at line 15"
        ),
        "{clean}"
    );
    let t = Tmp::new("quoted");
    let kc = t.write("config", "users:\n- name: u\n  user: \"token: s3cret\"\n");
    let e = resolve_with(Some(&kc), &[], &t.0).expect_err("a user that is a string");
    assert!(!e.contains("s3cret"), "{e}");
    assert!(e.contains("line 3"), "{e}");
}
