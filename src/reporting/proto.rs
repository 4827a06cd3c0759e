//! Hand-encoded OTLP `ExportLogsServiceRequest` (protobuf binary, as OTLP/HTTP sends it).
//!
//! Only the few messages task-log export needs are written, and only encoded, never decoded:
//! a protobuf crate plus generated code would cost far more bytes than these ~150 lines.
//! Field numbers follow `opentelemetry/proto/{collector/logs/v1,logs/v1,common/v1,resource/v1}`:
//!
//! ```text
//! ExportLogsServiceRequest { 1: repeated ResourceLogs }
//! ResourceLogs   { 1: Resource, 2: repeated ScopeLogs }
//! Resource       { 1: repeated KeyValue }
//! ScopeLogs      { 1: InstrumentationScope, 2: repeated LogRecord }
//! InstrumentationScope { 1: string name, 2: string version }
//! LogRecord      { 1: fixed64 time_unix_nano, 2: SeverityNumber, 3: string severity_text,
//!                  5: AnyValue body, 6: repeated KeyValue, 11: fixed64 observed_time_unix_nano }
//! KeyValue       { 1: string key, 2: AnyValue }
//! AnyValue       { oneof 1: string, 2: bool, 3: int64, 4: double }
//! ```
//!
//! Nested messages are length-prefixed, so each one is encoded into its own buffer first.

use std::time::{SystemTime, UNIX_EPOCH};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
}

/// OTLP severity numbers (the first of each range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    pub fn number(self) -> u64 {
        match self {
            Severity::Trace => 1,
            Severity::Debug => 5,
            Severity::Info => 9,
            Severity::Warn => 13,
            Severity::Error => 17,
            Severity::Fatal => 21,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Severity::Trace => "trace",
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }
}

/// One log record, already redacted and bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: SystemTime,
    pub severity: Severity,
    pub body: String,
    pub attributes: Vec<(&'static str, Value)>,
}

/// What every request of one task carries besides its records.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub resource: Vec<(&'static str, String)>,
    pub scope_name: &'static str,
    pub scope_version: &'static str,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    // Seven bits per byte, low first; the masks make the truncations exact.
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or(0));
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn any_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Value::Str(s) => bytes_field(&mut out, 1, s.as_bytes()),
        Value::Bool(b) => {
            tag(&mut out, 2, VARINT);
            varint(&mut out, u64::from(*b));
        }
        Value::Int(i) => {
            tag(&mut out, 3, VARINT);
            // int64 is encoded as its two's complement in 64 bits.
            varint(&mut out, i.cast_unsigned());
        }
        Value::Double(d) => fixed64(&mut out, 4, d.to_bits()),
    }
    out
}

fn key_value(key: &str, v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16);
    bytes_field(&mut out, 1, key.as_bytes());
    bytes_field(&mut out, 2, &any_value(v));
    out
}

/// Nanoseconds since the epoch (0 for times before it).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn log_record(r: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(r.body.len() + 64);
    let nanos = unix_nanos(r.time);
    fixed64(&mut out, 1, nanos);
    tag(&mut out, 2, VARINT);
    varint(&mut out, r.severity.number());
    bytes_field(&mut out, 3, r.severity.text().as_bytes());
    bytes_field(&mut out, 5, &any_value(&Value::Str(r.body.clone())));
    for (k, v) in &r.attributes {
        bytes_field(&mut out, 6, &key_value(k, v));
    }
    fixed64(&mut out, 11, nanos);
    out
}

/// The request body for `records`.
pub fn encode(envelope: &Envelope, records: &[Record]) -> Vec<u8> {
    let mut resource = Vec::new();
    for (k, v) in &envelope.resource {
        bytes_field(&mut resource, 1, &key_value(k, &Value::Str(v.clone())));
    }
    let mut scope = Vec::new();
    bytes_field(&mut scope, 1, envelope.scope_name.as_bytes());
    bytes_field(&mut scope, 2, envelope.scope_version.as_bytes());
    let mut scope_logs = Vec::new();
    bytes_field(&mut scope_logs, 1, &scope);
    for r in records {
        bytes_field(&mut scope_logs, 2, &log_record(r));
    }
    let mut resource_logs = Vec::with_capacity(scope_logs.len() + resource.len() + 16);
    bytes_field(&mut resource_logs, 1, &resource);
    bytes_field(&mut resource_logs, 2, &scope_logs);
    let mut out = Vec::with_capacity(resource_logs.len() + 8);
    bytes_field(&mut out, 1, &resource_logs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_examples() {
        let enc = |v| {
            let mut o = Vec::new();
            varint(&mut o, v);
            o
        };
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(150), [0x96, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn values_encode_per_their_oneof_field() {
        assert_eq!(any_value(&Value::Str("hi".into())), [0x0a, 2, b'h', b'i']);
        assert_eq!(any_value(&Value::Bool(true)), [0x10, 1]);
        assert_eq!(any_value(&Value::Int(-1)).len(), 11);
        assert_eq!(any_value(&Value::Int(150)), [0x18, 0x96, 0x01]);
        let d = any_value(&Value::Double(1.5));
        assert_eq!(d[0], 0x21);
        assert_eq!(&d[1..], 1.5f64.to_bits().to_le_bytes());
    }

    #[test]
    fn request_nests_resource_scope_and_records() {
        let env = Envelope {
            resource: vec![("service.name", "oz-agent-worker".into())],
            scope_name: "s",
            scope_version: "v",
        };
        let r = Record {
            time: UNIX_EPOCH + std::time::Duration::from_nanos(7),
            severity: Severity::Warn,
            body: "b".into(),
            attributes: vec![("log.source", Value::Str("x".into()))],
        };
        let out = encode(&env, &[r]);
        // Outer field 1 (ResourceLogs), length-delimited, spanning the rest.
        assert_eq!(out[0], 0x0a);
        assert_eq!(usize::from(out[1]), out.len() - 2);
        // ResourceLogs starts with its resource (field 1).
        assert_eq!(out[2], 0x0a);
        let text = String::from_utf8_lossy(&out);
        for needle in ["service.name", "oz-agent-worker", "log.source", "warn"] {
            assert!(text.contains(needle), "{needle}");
        }
        // The time appears as fixed64 (field 1 of the record and field 11).
        let seven = 7u64.to_le_bytes();
        assert_eq!(out.windows(8).filter(|w| *w == seven).count(), 2);
    }
}
