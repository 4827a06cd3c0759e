//! Prometheus text exposition format 0.0.4.

use std::fmt::Write;

use super::{Kind, Point, PointValue, Snapshot, WorkerInfo};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every family, then `target_info` with the resource attributes (as the OTel
/// Prometheus exporter of the Go worker does).
pub fn render(snapshot: &Snapshot, info: &WorkerInfo) -> String {
    let mut out = String::with_capacity(16 << 10);
    for family in &snapshot.families {
        if family.points.is_empty() {
            continue;
        }
        let kind = match family.kind {
            Kind::Gauge | Kind::UpDownCounter => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for point in &family.points {
            write_point(&mut out, family.name, point);
        }
    }
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
    let mut target = vec![("service_name", "oz-agent-worker".to_owned())];
    for (key, value) in [
        ("service_version", &info.version),
        ("worker_backend", &info.backend),
        ("worker_id", &info.worker_id),
    ] {
        if !value.is_empty() {
            target.push((key, value.clone()));
        }
    }
    sample(&mut out, "target_info", &target, None, "1");
    out
}

fn write_point(out: &mut String, name: &str, point: &Point) {
    match &point.value {
        PointValue::Int(v) => sample(out, name, &point.labels, None, &v.to_string()),
        PointValue::Histogram(h) => {
            let bucket = format!("{name}_bucket");
            let mut cumulative = 0u64;
            for (i, count) in h.counts.iter().enumerate() {
                cumulative += count;
                let le = h
                    .bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| float(*b));
                sample(
                    out,
                    &bucket,
                    &point.labels,
                    Some(&le),
                    &cumulative.to_string(),
                );
            }
            sample(
                out,
                &format!("{name}_sum"),
                &point.labels,
                None,
                &float(h.sum),
            );
            sample(
                out,
                &format!("{name}_count"),
                &point.labels,
                None,
                &h.count.to_string(),
            );
        }
    }
}

fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let all = labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(le.map(|le| ("le", le)));
        for (key, val) in all {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{key}=\"{}\"", escape_label(val));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Prometheus float syntax: `+Inf`, `-Inf`, `NaN`, otherwise the shortest decimal.
pub(super) fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

/// Label values escape backslash, double quote and newline.
pub(super) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}
