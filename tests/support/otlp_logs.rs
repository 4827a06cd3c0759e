//! Decodes OTLP `ExportLogsServiceRequest` protobuf, written independently of the worker's
//! encoder from the protobuf wire format and the OTLP `.proto` field numbers, so a test
//! collector checks what really went over the wire.

#![allow(dead_code)]

/// An `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// A kind the worker never sends (array, kvlist, bytes) or nothing at all.
    Other,
}

impl AnyValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AnyValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: u64,
    pub severity_text: String,
    pub body: AnyValue,
    pub attributes: Vec<(String, AnyValue)>,
}

impl LogRecord {
    pub fn attr(&self, key: &str) -> Option<&AnyValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AnyValue::as_str)
    }

    pub fn body_str(&self) -> &str {
        self.body.as_str().unwrap_or("")
    }
}

/// One request, flattened: every resource and scope of it (the worker sends one of each).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogsRequest {
    pub resources: Vec<Vec<(String, AnyValue)>>,
    pub scopes: Vec<(String, String)>,
    pub records: Vec<LogRecord>,
}

impl LogsRequest {
    pub fn resource(&self, key: &str) -> Option<&str> {
        self.resources
            .first()?
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_str())
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("truncated varint")?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// Every (field number, value) of one message, in order.
fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Field::Varint(varint(b, &mut i)?),
            1 => {
                let s = b.get(i..i + 8).ok_or("truncated fixed64")?;
                i += 8;
                Field::Fixed64(u64::from_le_bytes(s.try_into().unwrap()))
            }
            5 => {
                let s = b.get(i..i + 4).ok_or("truncated fixed32")?;
                i += 4;
                Field::Fixed32(u32::from_le_bytes(s.try_into().unwrap()))
            }
            2 => {
                let n = usize::try_from(varint(b, &mut i)?).map_err(|e| e.to_string())?;
                let s = b.get(i..i + n).ok_or("truncated length-delimited field")?;
                i += n;
                Field::Bytes(s)
            }
            w => return Err(format!("unsupported wire type {w} for field {field}")),
        };
        out.push((field, value));
    }
    Ok(out)
}

fn string(f: &Field<'_>) -> Result<String, String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|e| e.to_string()),
        _ => Err("expected a string".into()),
    }
}

fn bytes<'a>(f: &Field<'a>) -> Result<&'a [u8], String> {
    match f {
        Field::Bytes(b) => Ok(b),
        _ => Err("expected a message".into()),
    }
}

fn any_value(b: &[u8]) -> Result<AnyValue, String> {
    let mut v = AnyValue::Other;
    for (n, f) in fields(b)? {
        v = match (n, &f) {
            (1, _) => AnyValue::Str(string(&f)?),
            (2, Field::Varint(x)) => AnyValue::Bool(*x != 0),
            (3, Field::Varint(x)) => AnyValue::Int(*x as i64),
            (4, Field::Fixed64(x)) => AnyValue::Double(f64::from_bits(*x)),
            _ => AnyValue::Other,
        };
    }
    Ok(v)
}

fn key_value(b: &[u8]) -> Result<(String, AnyValue), String> {
    let mut key = String::new();
    let mut value = AnyValue::Other;
    for (n, f) in fields(b)? {
        match n {
            1 => key = string(&f)?,
            2 => value = any_value(bytes(&f)?)?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn log_record(b: &[u8]) -> Result<LogRecord, String> {
    let mut r = LogRecord {
        time_unix_nano: 0,
        observed_time_unix_nano: 0,
        severity_number: 0,
        severity_text: String::new(),
        body: AnyValue::Other,
        attributes: Vec::new(),
    };
    for (n, f) in fields(b)? {
        match (n, &f) {
            (1, Field::Fixed64(t)) => r.time_unix_nano = *t,
            (11, Field::Fixed64(t)) => r.observed_time_unix_nano = *t,
            (2, Field::Varint(s)) => r.severity_number = *s,
            (3, _) => r.severity_text = string(&f)?,
            (5, _) => r.body = any_value(bytes(&f)?)?,
            (6, _) => r.attributes.push(key_value(bytes(&f)?)?),
            (1 | 2 | 11, _) => return Err(format!("field {n} of LogRecord has the wrong type")),
            _ => {}
        }
    }
    Ok(r)
}

/// Decodes one request body.
pub fn decode(body: &[u8]) -> Result<LogsRequest, String> {
    let mut out = LogsRequest::default();
    for (n, f) in fields(body)? {
        if n != 1 {
            continue;
        }
        for (n, f) in fields(bytes(&f)?)? {
            match n {
                1 => {
                    let mut attrs = Vec::new();
                    for (n, f) in fields(bytes(&f)?)? {
                        if n == 1 {
                            attrs.push(key_value(bytes(&f)?)?);
                        }
                    }
                    out.resources.push(attrs);
                }
                2 => {
                    for (n, f) in fields(bytes(&f)?)? {
                        match n {
                            1 => {
                                let (mut name, mut version) = (String::new(), String::new());
                                for (n, f) in fields(bytes(&f)?)? {
                                    match n {
                                        1 => name = string(&f)?,
                                        2 => version = string(&f)?,
                                        _ => {}
                                    }
                                }
                                out.scopes.push((name, version));
                            }
                            2 => out.records.push(log_record(bytes(&f)?)?),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
