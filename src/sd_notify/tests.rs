use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::metrics::WorkerInfo;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    move |k| map.get(k).cloned()
}

/// A listening datagram socket at a unique path, as systemd would create.
fn path_socket() -> (UnixDatagram, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "oz-sd-notify-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (sock, path, dir)
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn disabled_without_notify_socket() {
    let (n, w) = Notifier::from_env(&env_of(&[]));
    assert!(!n.is_enabled() && w.is_empty());
    assert!(n.notify("READY=1").is_ok());
    assert!(n.watchdog_interval().is_none());
    let (n, _) = Notifier::from_env(&env_of(&[("NOTIFY_SOCKET", String::new())]));
    assert!(!n.is_enabled());
}

#[test]
fn sends_to_a_path_socket() {
    let (sock, path, dir) = path_socket();
    let (n, w) = Notifier::from_env(&env_of(&[(
        "NOTIFY_SOCKET",
        path.to_string_lossy().into_owned(),
    )]));
    assert!(n.is_enabled() && w.is_empty());
    n.ready();
    assert_eq!(recv(&sock), "READY=1");
    n.status("Connected\nto Oz");
    assert_eq!(recv(&sock), "STATUS=Connected to Oz");
    n.extend_timeout(Duration::from_secs(90));
    assert_eq!(recv(&sock), "EXTEND_TIMEOUT_USEC=90000000");
    n.stopping();
    assert_eq!(recv(&sock), "STOPPING=1");
    n.watchdog();
    assert_eq!(recv(&sock), "WATCHDOG=1");
    drop(sock);
    std::fs::remove_dir_all(dir).unwrap();
    // The listener is gone: sending fails, the helpers do not panic.
    assert!(n.notify("READY=1").is_err());
    n.ready();
}

#[cfg(target_os = "linux")]
#[test]
fn sends_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!(
        "oz-sd-notify-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (n, w) = Notifier::from_env(&env_of(&[("NOTIFY_SOCKET", format!("@{name}"))]));
    assert!(n.is_enabled(), "{w:?}");
    n.ready();
    assert_eq!(recv(&sock), "READY=1");
}

#[test]
fn unsupported_addresses_are_warned_about() {
    for raw in ["relative/path", "vsock:2:1234"] {
        let (n, w) = Notifier::from_env(&env_of(&[("NOTIFY_SOCKET", raw.to_owned())]));
        assert!(!n.is_enabled());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("disabled"), "{}", w[0]);
    }
}

#[test]
fn watchdog_interval_is_half_and_respects_pid() {
    let sock = || ("NOTIFY_SOCKET", "/run/nonexistent/notify".to_owned());
    let with = |pairs: Vec<(&'static str, String)>, pid| {
        let mut all = vec![sock()];
        all.extend(pairs);
        Notifier::from_env_for_pid(&env_of(&all), pid)
    };
    let (n, w) = with(vec![("WATCHDOG_USEC", "30000000".into())], 7);
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
    assert!(w.is_empty());
    let (n, _) = with(
        vec![
            ("WATCHDOG_USEC", "30000000".into()),
            ("WATCHDOG_PID", "7".into()),
        ],
        7,
    );
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
    let (n, w) = with(
        vec![
            ("WATCHDOG_USEC", "30000000".into()),
            ("WATCHDOG_PID", "8".into()),
        ],
        7,
    );
    assert!(n.watchdog_interval().is_none() && w.is_empty());
    for bad in ["0", "-1", "lots"] {
        let (n, w) = with(vec![("WATCHDOG_USEC", bad.into())], 7);
        assert!(n.watchdog_interval().is_none());
        assert_eq!(w.len(), 1, "{bad}");
    }
    let (n, w) = with(
        vec![
            ("WATCHDOG_USEC", "1000".into()),
            ("WATCHDOG_PID", "x".into()),
        ],
        7,
    );
    assert!(n.watchdog_interval().is_none());
    assert_eq!(w.len(), 1);
    // Without NOTIFY_SOCKET there is no watchdog either.
    let (n, _) = Notifier::from_env_for_pid(&env_of(&[("WATCHDOG_USEC", "1000".into())]), 7);
    assert!(n.watchdog_interval().is_none());
}

#[test]
fn status_texts() {
    assert_eq!(
        status_text(true, 2, 4, false, None),
        "Connected to Oz; 2/4 tasks active"
    );
    assert_eq!(
        status_text(false, 0, 0, false, None),
        "Connecting to Oz; 0 tasks active (no limit)"
    );
    assert_eq!(
        status_text(true, 1, 0, true, None),
        "Shutting down; 1 tasks active (no limit)"
    );
    assert_eq!(
        status_text(true, 1, 1, false, Some(Duration::from_secs(42))),
        "Supervisor loop stalled for 42s; 1/1 tasks active"
    );
}

#[test]
fn ticks_ping_only_while_alive_and_send_status_on_change() {
    let mut last = String::new();
    assert_eq!(
        tick_messages(true, true, "A".into(), &mut last),
        vec!["WATCHDOG=1", "STATUS=A"]
    );
    assert_eq!(
        tick_messages(true, true, "A".into(), &mut last),
        vec!["WATCHDOG=1"]
    );
    // A stalled supervisor gets no ping: systemd's watchdog then restarts the worker.
    assert_eq!(
        tick_messages(true, false, "B".into(), &mut last),
        vec!["STATUS=B"]
    );
    assert!(tick_messages(false, true, "B".into(), &mut last).is_empty());
}

#[test]
fn keeper_pings_the_watchdog_and_reports_status() {
    let (sock, path, dir) = path_socket();
    let (n, _) = Notifier::from_env(&env_of(&[
        ("NOTIFY_SOCKET", path.to_string_lossy().into_owned()),
        // 20 ms: pings every 10 ms.
        ("WATCHDOG_USEC", "20000".into()),
    ]));
    let metrics = Metrics::new(
        WorkerInfo {
            version: "v".into(),
            backend: "direct".into(),
            worker_id: "w".into(),
        },
        3,
    );
    metrics.set_connected(true);
    let health = Health::new(Duration::from_secs(3600));
    let keeper = Keeper::spawn(Arc::new(n), Arc::clone(&metrics), health)
        .unwrap()
        .expect("enabled");
    let first: Vec<String> = (0..2).map(|_| recv(&sock)).collect();
    assert_eq!(
        first,
        vec!["WATCHDOG=1", "STATUS=Connected to Oz; 0/3 tasks active"]
    );
    assert_eq!(recv(&sock), "WATCHDOG=1");
    metrics.task_claimed();
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with("STATUS=")) {
        seen.push(recv(&sock));
    }
    assert_eq!(
        seen.last().unwrap(),
        "STATUS=Connected to Oz; 1/3 tasks active"
    );
    keeper.stop();
    std::fs::remove_dir_all(dir).unwrap();

    let disabled = Keeper::spawn(
        Arc::new(Notifier::disabled()),
        metrics,
        Health::new(Duration::from_secs(1)),
    )
    .unwrap();
    assert!(disabled.is_none());
}
