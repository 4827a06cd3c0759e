//! Text parsers: protocol frames from the server, the setup hook's dotenv file, the YAML
//! config. Properties: generated valid input parses to what was generated; mutated input is
//! an error or a value, never a panic.

use oz_agent_worker::config::file;
use oz_agent_worker::dotenv;
use oz_agent_worker::protocol::{self, Inbound};
use serde_json::{Value, json};

use super::{Rng, mutate, run, show};

fn assignment(rng: &mut Rng) -> Value {
    let id = rng.text("abcdef0123456789-", 1, 36);
    let mut data = json!({
        "task_id": id,
        "task": {
            "id": id,
            "title": rng.text("abc \"\\\u{e9}\u{1F600}", 0, 19),
            "agent_config_snapshot": {"idle_timeout_minutes": rng.below(100), "model_id": "m"},
        },
        "env_vars": {"A_TOKEN": rng.string("xyz0123", 8)},
    });
    if rng.chance(2) {
        data["execution_id"] = json!(rng.string("0123456789abcdef", 12));
    }
    if rng.chance(2) {
        data["docker_image"] = json!("ubuntu:22.04");
        data["sidecars"] = json!([{"image": "warp/agent:1", "mount_path": "/agent"}]);
    }
    json!({"type": "task_assignment", "data": data})
}

#[test]
fn protocol_frames_decode_and_hostile_ones_never_panic() {
    let tokens: &[&[u8]] = &[
        b"\"type\"",
        b"\"task_assignment\"",
        b"\"task_cancellation\"",
        b"null",
        b"{",
        b"}",
        b"[",
        b"\"\\ud800\"",
        b"1e999",
        b"-0",
        b"\"task_id\":\"../../etc\"",
    ];
    run("protocol-frames", |rng| {
        let frame = if rng.chance(4) {
            json!({"type": "task_cancellation", "data": {"task_id": "t", "execution_id": "e"}})
        } else {
            assignment(rng)
        };
        let text = frame.to_string();
        match protocol::decode(&text) {
            Ok(Inbound::Assignment(a)) => assert_eq!(
                Some(&a.task_id),
                frame["data"]["task_id"]
                    .as_str()
                    .map(str::to_owned)
                    .as_ref()
            ),
            Ok(Inbound::Cancellation(c)) => assert_eq!(c.task_id, "t"),
            other => panic!("a valid frame decoded to {other:?}: {text}"),
        }
        let bad = mutate(rng, text.as_bytes(), tokens);
        if let Ok(s) = std::str::from_utf8(&bad) {
            let _ = protocol::decode(s);
        }
        let lossy = String::from_utf8_lossy(&bad);
        let _ = protocol::decode(&lossy);
    });
}

const KEY_START: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_abc";
const KEY_REST: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789.";

#[test]
fn dotenv_round_trips_generated_files_and_survives_mutation() {
    run("dotenv", |rng| {
        let mut text = String::new();
        let mut expected: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.below(8) {
            if rng.chance(4) {
                text.push_str("# a comment = 'x'\n");
            }
            let len = rng.below(10);
            let key = format!("{}{}", rng.string(KEY_START, 1), rng.string(KEY_REST, len));
            let (encoded, value) = match rng.below(3) {
                // Unquoted: no spaces at the ends, no quotes, `#`, `$` or backslash.
                0 => {
                    let len = rng.below(12);
                    let v = rng.string("abcXYZ019-_./:@%+,", len);
                    (v.clone(), v)
                }
                // Single quotes: literal (a backslash before the closing quote would escape
                // it, as in godotenv, so none is generated).
                1 => {
                    let len = rng.below(12);
                    let v = rng.string("ab $#=\" {}\u{e9}", len);
                    (format!("'{v}'"), v)
                }
                // Double quotes with the escapes godotenv knows. Its closing quote is the first
                // one not right after a backslash, so a value ending in a backslash cannot be
                // written (godotenv's rule, kept); none is generated.
                _ => {
                    let len = rng.below(12);
                    let mut v = rng.string("ab #=' \n\"\\\u{e9}", len);
                    if v.ends_with('\\') {
                        v.push('b');
                    }
                    let esc = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    (format!("\"{esc}\""), v)
                }
            };
            let export = if rng.chance(4) { "export " } else { "" };
            text.push_str(&format!("{export}{key}={encoded}\n"));
            match expected.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => *v = value,
                None => expected.push((key, value)),
            }
        }
        assert_eq!(
            dotenv::parse(&text).as_ref(),
            Ok(&expected),
            "{}",
            show(text.as_bytes())
        );
        let bad = mutate(
            rng,
            text.as_bytes(),
            &[b"'", b"\"", b"\\", b"${", b"}", b"\n", b"=", b"\r\n"],
        );
        let _ = dotenv::parse(&String::from_utf8_lossy(&bad));
    });
}

const CONFIG: &str = "worker_id: fuzz-worker
cleanup: true
max_concurrent_tasks: 4
idle_on_complete: 10m
ca_bundle: /etc/oz/ca.pem
log_format: json
metrics_addr: 127.0.0.1:9464
drain_timeout: 90s
state_dir: /var/lib/oz-agent-worker
backend:
  docker:
    volumes: [\"/srv/cache:/cache:ro\"]
    environment: [{name: FOO, value: bar}, {name: HOME}]
    image_pull_policy: IfNotPresent
  direct:
    workspace_root: /srv/ws
    setup_command: ./setup.sh
";

#[test]
fn yaml_config_mutations_never_panic() {
    assert!(file::decode(CONFIG).is_ok());
    let tokens: &[&[u8]] = &[
        b"\n  ",
        b": ",
        b"- ",
        b"&a ",
        b"*a",
        b"!!binary ",
        b"{",
        b"[",
        b"~",
        b"'",
        b"\"",
        b"<<: *a\n",
        b"9999999999999999999999",
        b"-1",
        b"\t",
    ];
    run("yaml-config", |rng| {
        let bad = mutate(rng, CONFIG.as_bytes(), tokens);
        let text = String::from_utf8_lossy(&bad);
        if let Ok(cfg) = file::decode(&text) {
            let _ = file::validate(&cfg);
            let _ = file::drain_timeout(&cfg);
        }
    });
}
