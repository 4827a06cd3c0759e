//! The Oz link through the library API, against the fake Oz server (and the test proxy).

mod connect;
mod delivery;
mod faults;
mod proxy;
mod shutdown;

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use oz_agent_worker::link::{Link, LinkConfig, LinkEvent, ProxyEnv, ShutdownReport};
use oz_agent_worker::protocol::Outbound;
use oz_agent_worker::settings::{Secret, Timing};

use crate::support::log_capture;

/// Upper bound for anything that should happen "soon" (generous: loaded 2-core CI).
pub(super) const T: Duration = Duration::from_secs(30);

/// Timing for tests that must not see pings or stalls, with quick redials.
pub(super) fn quiet_timing() -> Timing {
    Timing {
        ping_interval: Duration::from_secs(20),
        pong_timeout: Duration::from_secs(60),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        write_timeout: Duration::from_secs(10),
        ..Timing::default()
    }
}

pub(super) struct Harness {
    pub(super) link: Option<Link>,
    pub(super) events: Receiver<LinkEvent>,
    pub(super) seen: Vec<(Instant, LinkEvent)>,
    pub(super) key: String,
}

pub(super) fn config(url: String, test: &str, timing: Timing) -> LinkConfig {
    LinkConfig {
        url,
        worker_id: format!("worker-{test}"),
        api_key: Secret::new(format!("sk-{test}-{}", std::process::id())),
        ca_bundle: None,
        timing,
        version: "9.8.7-test".into(),
    }
}

pub(super) fn start(cfg: LinkConfig, proxy: ProxyEnv) -> Harness {
    log_capture::install();
    let key = cfg.api_key.expose().to_owned();
    let (tx, rx) = crossbeam_channel::unbounded();
    let link = Link::spawn_with_proxy(cfg, tx, proxy).expect("spawn link");
    Harness {
        link: Some(link),
        events: rx,
        seen: Vec::new(),
        key,
    }
}

impl Harness {
    pub(super) fn link(&self) -> &Link {
        self.link.as_ref().expect("link running")
    }

    /// The next event matching `pred` (earlier events are kept in `seen`).
    pub(super) fn wait(
        &mut self,
        what: &str,
        pred: impl Fn(&LinkEvent) -> bool,
    ) -> (Instant, LinkEvent) {
        let end = Instant::now() + T;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) => {
                    let at = Instant::now();
                    self.seen.push((at, ev.clone()));
                    if pred(&ev) {
                        return (at, ev);
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; events so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    pub(super) fn connected(&mut self) -> Instant {
        self.wait("Connected", |e| matches!(e, LinkEvent::Connected))
            .0
    }

    pub(super) fn disconnected(&mut self) -> String {
        match self
            .wait("Disconnected", |e| {
                matches!(e, LinkEvent::Disconnected { .. })
            })
            .1
        {
            LinkEvent::Disconnected { reason } => reason,
            _ => unreachable!(),
        }
    }

    pub(super) fn dial_failed(&mut self) -> (String, Duration) {
        match self
            .wait("DialFailed", |e| matches!(e, LinkEvent::DialFailed { .. }))
            .1
        {
            LinkEvent::DialFailed { error, retry_in } => (error, retry_in),
            _ => unreachable!(),
        }
    }

    pub(super) fn shutdown(&mut self, within: Duration) -> ShutdownReport {
        self.link
            .take()
            .expect("link running")
            .shutdown(Instant::now() + within)
    }

    pub(super) fn assert_key_never_logged(&self) {
        let leaks = log_capture::matching(&self.key);
        assert!(leaks.is_empty(), "the API key reached the log: {leaks:?}");
    }
}

pub(super) fn rejected(task: usize) -> Outbound {
    Outbound::Rejected {
        task_id: format!("task-{task}"),
        reason: "worker at maximum concurrency".into(),
    }
}

/// Task numbers of the frames, in arrival order.
pub(super) fn task_numbers(frames: &[crate::support::oz_server::Frame]) -> Vec<usize> {
    frames
        .iter()
        .map(|f| {
            f.task_id()
                .strip_prefix("task-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected frame {}", f.text))
        })
        .collect()
}
