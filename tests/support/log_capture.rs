//! A process-wide `log` capture for tests that call the library in-process (tests spawning the
//! binary read its stderr instead). Tests run in parallel and share it, so assertions should
//! look for strings unique to the test (its own API key, port, worker id).
//!
//! Like the production logger must, it keeps third-party crates at DEBUG at most: tungstenite's
//! TRACE output prints raw frames and the handshake request, secrets included.

#![allow(dead_code)]

use std::sync::{Mutex, Once};

use log::{Level, LevelFilter, Log, Metadata, Record};

#[derive(Debug, Clone)]
pub struct Line {
    pub level: Level,
    pub target: String,
    pub message: String,
}

struct Capture {
    lines: Mutex<Vec<Line>>,
}

static CAPTURE: Capture = Capture {
    lines: Mutex::new(Vec::new()),
};

impl Log for Capture {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target().starts_with("oz_agent_worker") || meta.level() <= Level::Debug
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = Line {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
        };
        if std::env::var_os("OZ_TEST_LOG").is_some() {
            eprintln!("[{} {}] {}", line.level, line.target, line.message);
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    fn flush(&self) {}
}

/// Installs the capture (once per process). If another logger got there first, captured
/// assertions would be meaningless, so that is a test failure.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).expect("log capture must be the only logger in the test binary");
        log::set_max_level(LevelFilter::Trace);
    });
}

pub fn lines() -> Vec<Line> {
    CAPTURE
        .lines
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Lines containing `needle`.
pub fn matching(needle: &str) -> Vec<Line> {
    lines()
        .into_iter()
        .filter(|l| l.message.contains(needle))
        .collect()
}
