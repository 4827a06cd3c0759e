use std::time::Duration;

use super::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const T0: u64 = 1_795_606_576_123;

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(T0)
}

fn line(
    format: LogFormat,
    level: Level,
    msg: &str,
    kv: &[(&str, &str)],
    scope: Option<&str>,
) -> String {
    format_line(
        format,
        &Record::builder()
            .args(format_args!("{msg}"))
            .level(level)
            .target("oz_agent_worker::supervisor")
            .key_values(&kv)
            .build(),
        at(),
        scope,
    )
}

#[test]
fn timestamps() {
    assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    assert_eq!(utc_timestamp(at()), "2026-11-25T11:36:16.123Z");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
    assert_eq!(utc_timestamp(before_epoch), "1970-01-01T00:00:00.000Z");
}

#[test]
fn log_formats_parse() {
    assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
    assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
    assert_eq!(LogFormat::parse("JSON"), None);
    assert_eq!(LogFormat::default(), LogFormat::Text);
}

#[test]
fn text_lines() {
    assert_eq!(
        line(LogFormat::Text, Level::Info, "Connected to Oz", &[], None),
        "2026-11-25T11:36:16.123Z INFO  Connected to Oz\n"
    );
    assert_eq!(
        line(
            LogFormat::Text,
            Level::Warn,
            "Pulling image",
            &[],
            Some("t-42")
        ),
        "2026-11-25T11:36:16.123Z WARN  [t-42] Pulling image\n"
    );
    // Lifecycle lines and agent lines already name the task: no prefix.
    assert_eq!(
        line(
            LogFormat::Text,
            Level::Info,
            "Task t-42 claimed: \"x\"",
            &[("task_id", "t-42")],
            None
        ),
        "2026-11-25T11:36:16.123Z INFO  Task t-42 claimed: \"x\"\n"
    );
    assert_eq!(
        line(
            LogFormat::Text,
            Level::Debug,
            "[t-42] agent says hi",
            &[],
            Some("t-42")
        ),
        "2026-11-25T11:36:16.123Z DEBUG [t-42] agent says hi\n"
    );
    // The key-value wins over the thread's scope; other fields follow the message.
    assert_eq!(
        line(
            LogFormat::Text,
            Level::Error,
            "boom",
            &[
                ("task_id", "kv"),
                ("exit_code", "3"),
                ("why", "two words"),
                ("e", "")
            ],
            Some("scope")
        ),
        "2026-11-25T11:36:16.123Z ERROR [kv] boom e=\"\" exit_code=3 why=\"two words\"\n"
    );
    assert!(line(LogFormat::Text, Level::Trace, "x", &[], None).contains(" TRACE x"));
}

#[test]
fn json_lines() {
    let l = line(
        LogFormat::Json,
        Level::Info,
        "Task t-1 claimed: \"quoted\"\nsecond",
        &[("task_id", "t-1"), ("attempt", "2")],
        None,
    );
    assert!(l.ends_with("}\n") && l.matches('\n').count() == 1);
    assert!(l.starts_with("{\"time\":\"2026-11-25T11:36:16.123Z\",\"level\":\"info\""));
    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["message"], "Task t-1 claimed: \"quoted\"\nsecond");
    assert_eq!(v["task_id"], "t-1");
    assert_eq!(v["target"], "oz_agent_worker::supervisor");
    assert_eq!(v["fields"]["attempt"], "2");

    let v: serde_json::Value =
        serde_json::from_str(&line(LogFormat::Json, Level::Warn, "m", &[], None)).unwrap();
    assert_eq!(v["level"], "warn");
    assert!(v.get("task_id").is_none() && v.get("fields").is_none());

    let v: serde_json::Value =
        serde_json::from_str(&line(LogFormat::Json, Level::Debug, "m", &[], Some("s-1"))).unwrap();
    assert_eq!(v["task_id"], "s-1");
}

#[test]
fn task_scopes_nest_and_restore() {
    let current = || CURRENT_TASK.with(|t| t.borrow().as_deref().map(str::to_owned));
    assert_eq!(current(), None);
    {
        let _a = task_scope("a");
        assert_eq!(current().as_deref(), Some("a"));
        {
            let _b = task_scope("b");
            assert_eq!(current().as_deref(), Some("b"));
        }
        assert_eq!(current().as_deref(), Some("a"));
        // Another thread has its own scope.
        std::thread::spawn(move || assert_eq!(current(), None))
            .join()
            .unwrap();
    }
    assert_eq!(current(), None);
}

#[test]
fn logger_filters_by_level_and_uses_the_thread_scope() {
    let buf = Buf::default();
    let logger = Logger::to_writer(LevelFilter::Info, LogFormat::Text, Box::new(buf.clone()));
    let _scope = task_scope("scoped-task");
    logger.log(
        &Record::builder()
            .args(format_args!("hidden"))
            .level(Level::Debug)
            .build(),
    );
    logger.log(
        &Record::builder()
            .args(format_args!("shown"))
            .level(Level::Info)
            .build(),
    );
    logger.flush();
    let out = buf.text();
    assert!(!out.contains("hidden"));
    assert!(out.ends_with(" INFO  [scoped-task] shown\n"), "{out}");
}

/// Canary secrets registered like the API key and a task's env_vars never reach the output,
/// at any level, in either format, in the message, a field or a frame dump.
#[test]
fn canaries_never_reach_the_output() {
    let api_key = "wk-1.canary-api-key-9d8e7f";
    let env_value = "canary-env \"value\"\\with/odd=chars";
    let multi = "canary-line-one\ncanary-line-two";
    let guard = redact::register([api_key, env_value, multi]);
    for format in LogFormat::ALL {
        let buf = Buf::default();
        let logger = Logger::to_writer(LevelFilter::Trace, format, Box::new(buf.clone()));
        for level in [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            let frame = format!(
                r#"{{"type":"task_assignment","data":{{"env_vars":{{"K":"{}"}}}}}}"#,
                "unregistered-canary-in-frame"
            );
            let messages = [
                format!("dial: Authorization: Bearer {api_key}"),
                format!(
                    "env {env_value:?} and {}",
                    serde_json::to_string(env_value).unwrap()
                ),
                format!("url https://u:{api_key}@host/x and raw {env_value}"),
                format!(
                    "second line only: canary-line-two; query key={}",
                    "canary-env+%22value%22%5Cwith%2Fodd%3Dchars"
                ),
                format!("frame {}", redact::mask_frame(&frame)),
                "Bearer unregistered-token-abcdefgh".to_owned(),
            ];
            for msg in &messages {
                logger.log(
                    &Record::builder()
                        .args(format_args!("MARK {msg}"))
                        .level(level)
                        .target("oz_agent_worker::link")
                        .key_values(&[("header", api_key), ("task_id", "t-canary")])
                        .build(),
                );
            }
        }
        let out = buf.text();
        assert_eq!(out.matches("MARK").count(), 5 * 6, "{out}");
        for canary in [
            "canary-api-key",
            "canary-env",
            "odd=chars",
            "canary-line-one",
            "canary-line-two",
            "unregistered-canary-in-frame",
            "unregistered-token",
        ] {
            assert!(
                !out.contains(canary),
                "{canary} leaked ({format:?}):\n{out}"
            );
        }
        if format == LogFormat::Json {
            for l in out.lines() {
                serde_json::from_str::<serde_json::Value>(l).expect("valid JSON line");
            }
        }
    }
    drop(guard);
}

#[test]
fn third_party_trace_is_dropped() {
    let buf = Buf::default();
    let logger = Logger::to_writer(LevelFilter::Trace, LogFormat::Text, Box::new(buf.clone()));
    for target in [
        "tungstenite::protocol",
        "oz_agent_worker::link",
        "agent",
        "rustls",
    ] {
        for level in [Level::Trace, Level::Debug] {
            logger.log(
                &Record::builder()
                    .args(format_args!("{level} from {target}"))
                    .level(level)
                    .target(target)
                    .build(),
            );
        }
    }
    let out = buf.text();
    assert!(!out.contains("TRACE from tungstenite") && !out.contains("TRACE from rustls"));
    for kept in [
        "TRACE from oz_agent_worker::link",
        "TRACE from agent",
        "DEBUG from tungstenite::protocol",
        "DEBUG from rustls",
    ] {
        assert!(out.contains(kept), "{kept} missing in {out}");
    }
}

/// The installed global logger, driven through the `log` macros (with the `task_id`
/// key-value syntax call sites use). The only test in this binary that installs a logger.
#[test]
fn installed_logger_redacts_macro_output() {
    let buf = Buf::default();
    assert!(init_with_writer(
        LevelFilter::Trace,
        LogFormat::Json,
        Box::new(buf.clone())
    ));
    assert!(!init_with_writer(
        LevelFilter::Info,
        LogFormat::Text,
        Box::new(Buf::default())
    ));
    let canary = "macro-canary-secret-0c1d2e";
    let _guard = redact::register([canary]);
    log::error!(task_id = "t-macro"; "MACRO error {canary}");
    log::warn!("MACRO warn {canary}");
    log::info!(task_id = "t-macro", attempt = 2; "MACRO info key={canary}");
    log::debug!(target: "agent", "MACRO [t-macro] agent says {canary}");
    {
        let _scope = task_scope("t-scoped");
        log::trace!("MACRO trace {canary}");
    }
    log::logger().flush();
    let out = buf.text();
    let mine: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.contains("MACRO"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(mine.len(), 5, "{out}");
    assert!(!out.contains(canary));
    assert_eq!(mine[0]["task_id"], "t-macro");
    assert_eq!(mine[0]["level"], "error");
    assert_eq!(mine[2]["fields"]["attempt"], "2");
    assert_eq!(mine[3]["target"], "agent");
    assert_eq!(mine[4]["task_id"], "t-scoped");
    assert_eq!(mine[4]["level"], "trace");
}

/// Collects what the logger routes to it.
#[derive(Default)]
struct Routed(Mutex<Vec<(Level, String)>>);

impl TaskLogSink for Routed {
    fn record(&self, level: Level, message: &str) {
        // A sink that logs must not be routed into again (no recursion, no deadlock).
        log::warn!("sink saw a record");
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

fn log_to(logger: &Logger, level: Level, target: &str, msg: &str, kv: &[(&str, &str)]) {
    logger.log(
        &Record::builder()
            .args(format_args!("{msg}"))
            .level(level)
            .target(target)
            .key_values(&kv)
            .build(),
    );
}

#[test]
fn task_records_are_routed_to_the_task_sink_by_scope_or_key() {
    let buf = Buf::default();
    let logger = Logger::to_writer(LevelFilter::Trace, LogFormat::Text, Box::new(buf.clone()));
    let sink = Arc::new(Routed::default());
    let other = Arc::new(Routed::default());
    let own = "oz_agent_worker::backend";
    {
        let _route = route_task("route-t1", Arc::clone(&sink) as Arc<dyn TaskLogSink>);
        let _other = route_task("route-t2", Arc::clone(&other) as Arc<dyn TaskLogSink>);
        // No scope, no key: not the task's.
        log_to(&logger, Level::Info, own, "unscoped", &[]);
        {
            let _scope = task_scope("route-t1");
            log_to(&logger, Level::Info, own, "Running oz agent", &[]);
            log_to(
                &logger,
                Level::Warn,
                own,
                "ignoring a variable",
                &[("n", "2")],
            );
            // Forwarded output is exported under its own source, not as a worker record.
            log_to(&logger, Level::Info, "agent", "[route-t1] agent line", &[]);
            log_to(
                &logger,
                Level::Info,
                "hook",
                "[route-t1 setup] hook line",
                &[],
            );
            log_to(&logger, Level::Info, "dispatch", "[route-t1] dispatch", &[]);
        }
        // Another thread's record that names the task by key.
        log_to(
            &logger,
            Level::Error,
            own,
            "Task claimed",
            &[("task_id", "route-t1")],
        );
        log_to(
            &logger,
            Level::Debug,
            own,
            "for t2",
            &[("task_id", "route-t2")],
        );
    }
    // Unregistered: nothing more arrives.
    let _scope = task_scope("route-t1");
    log_to(&logger, Level::Info, own, "after the task", &[]);
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            (Level::Info, "Running oz agent".to_owned()),
            (Level::Warn, "ignoring a variable n=2".to_owned()),
            (Level::Error, "Task claimed".to_owned()),
        ]
    );
    assert_eq!(
        *other.0.lock().unwrap(),
        [(Level::Debug, "for t2".to_owned())]
    );
    // Every line still went to the local output.
    assert!(buf.text().contains("after the task"));
}
