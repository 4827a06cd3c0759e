//! Go's `time.ParseDuration` syntax, which the Go worker's config keys (and our `OZ_WORKER_*`
//! timing variables) use: a sign, then one or more `<decimal><unit>` terms such as `1h30m`,
//! `1.5h`, `300ms`; units `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`; no spaces, no days; bare
//! `0` needs no unit.
//!
//! The result is a signed nanosecond count in Go's range (`i64`); out-of-range input is an
//! error, never a panic or a wrap-around.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected. `Display` quotes the input like Go does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Empty, malformed, or out of Go's `i64` nanosecond range.
    Invalid(String),
    /// A number without a unit, e.g. `10`.
    MissingUnit(String),
    /// A unit Go does not know, e.g. `1d`.
    UnknownUnit { unit: String, input: String },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Invalid(s) => write!(f, "invalid duration {s:?}"),
            DurationError::MissingUnit(s) => write!(
                f,
                "missing unit in duration {s:?} (use one of ns, us, ms, s, m, h, e.g. \"90s\")"
            ),
            DurationError::UnknownUnit { unit, input } => write!(
                f,
                "unknown unit {unit:?} in duration {input:?} (valid units: ns, us, µs, ms, s, m, h)"
            ),
        }
    }
}

impl std::error::Error for DurationError {}

const NANOS_PER: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 micro sign
    ("μs", 1_000), // U+03BC Greek small letter mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// 2^63: the magnitude of Go's most negative duration.
const LIMIT: u64 = 1 << 63;

/// Parses a Go duration into signed nanoseconds.
pub fn parse_go_duration(input: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        let had_whole = rest.len() != s.len();
        s = rest;
        let mut frac = 0u64;
        let mut scale = 1f64;
        let mut had_frac = false;
        if let Some(rest) = s.strip_prefix('.') {
            let (f, sc, rest2) = leading_fraction(rest);
            had_frac = rest2.len() != rest.len();
            frac = f;
            scale = sc;
            s = rest2;
        }
        if !had_whole && !had_frac {
            return Err(invalid());
        }
        // The unit runs up to the next digit or '.', both ASCII, so the split is on a char
        // boundary.
        let unit_len = s
            .bytes()
            .position(|c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let per = NANOS_PER
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, n)| *n)
            .ok_or_else(|| DurationError::UnknownUnit {
                unit: unit.to_owned(),
                input: input.to_owned(),
            })?;
        if whole > LIMIT / per {
            return Err(invalid());
        }
        let mut term = whole * per;
        if frac > 0 {
            // As in Go: a float is precise enough for fractions of the largest unit (hours);
            // the product is below 3.6e12, so the cast cannot truncate meaningfully.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let extra = (frac as f64 * (per as f64 / scale)) as u64;
            term = term.checked_add(extra).ok_or_else(invalid)?;
            if term > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(term).ok_or_else(invalid)?;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // total <= 2^63, so the negation is within i64 (exactly i64::MIN at the edge).
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Consumes leading ASCII digits; `None` when the value exceeds 2^63.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut x: u64 = 0;
    for c in s.as_bytes()[..digits].iter() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
    }
    Some((x, &s[digits..]))
}

/// Consumes the digits after a '.', keeping as many as fit (the rest cannot change the result
/// at nanosecond precision). Returns (digits as integer, 10^kept, rest).
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut x: u64 = 0;
    let mut scale = 1f64;
    let mut overflow = false;
    for c in s.as_bytes()[..digits].iter() {
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[digits..])
}

/// What a parsed duration means where only positive values are usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Positive(Duration),
    /// Zero or negative: "disabled" for keys that allow it.
    NotPositive,
}

/// Parses a Go duration and classifies it as positive or not.
pub fn parse_signed(input: &str) -> Result<Sign, DurationError> {
    let ns = parse_go_duration(input)?;
    Ok(match u64::try_from(ns) {
        Ok(0) | Err(_) => Sign::NotPositive,
        Ok(n) => Sign::Positive(Duration::from_nanos(n)),
    })
}

/// Formats a duration compactly in Go syntax for messages and docs (`1m30s`, `10m`, `500ms`,
/// `0s`); the result parses back with [`parse_go_duration`].
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000_000_000 {
        return if ns.is_multiple_of(1_000_000) {
            format!("{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            format!("{}µs", ns / 1_000)
        } else {
            format!("{ns}ns")
        };
    }
    let secs = d.as_secs();
    let sub = d.subsec_nanos();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sub != 0 {
        let frac = format!("{sub:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    } else if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn accepts_go_examples() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0s", 0),
            ("+0s", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600_000_000),
            ("5.s", 5 * S),
            (".5s", S / 2),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4_000_000),
            ("1.0040s", S + 4_000_000),
            ("100.00100s", 100 * S + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14 * S),
            ("15m", 15 * 60 * S),
            ("16h", 16 * 3600 * S),
            ("3h30m", (3 * 3600 + 30 * 60) * S),
            ("10.5s4m", 4 * 60 * S + 10 * S + S / 2),
            ("-2m3.4s", -(2 * 60 * S + 3 * S + 400_000_000)),
            (
                "1h2m3s4ms5us6ns",
                3600 * S + 2 * 60 * S + 3 * S + 4_000_000 + 5_000 + 6,
            ),
            (
                "39h9m14.425s",
                39 * 3600 * S + 9 * 60 * S + 14 * S + 425_000_000,
            ),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * S),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * S),
            ("0.830103483285477580700h", 49 * 60 * S + 48_372_539_827),
            ("90s", 90 * S),
            ("1m30s", 90 * S),
            ("1.5h", 5400 * S),
            ("300ms", 300_000_000),
            ("2m", 120 * S),
            ("10m", 600 * S),
            ("1h30m", 5400 * S),
            ("000s", 0),
            ("0.0s", 0),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_malformed_input() {
        for input in [
            "", "-", "+", "s", ".", "-.", ".s", "+.s", "1d", "1 s", " 1s", "1s ", "1h 30m", "1e3s",
            "0x10s", "1,5s", "--1s", "+-1s", "-+1s", "1.2.3s", "..1s", "1..s", "1_000s", "1S",
            "1H", "1sec", "1min", "P1D", "1h-30m", "1h+30m", "inf", "NaN", "1ms.", "１s",
        ] {
            assert!(parse_go_duration(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn error_kinds_and_messages() {
        assert_eq!(
            parse_go_duration("10"),
            Err(DurationError::MissingUnit("10".into()))
        );
        assert_eq!(
            parse_go_duration("00"),
            Err(DurationError::MissingUnit("00".into()))
        );
        assert_eq!(
            parse_go_duration("1h30"),
            Err(DurationError::MissingUnit("1h30".into()))
        );
        assert_eq!(
            parse_go_duration("3d"),
            Err(DurationError::UnknownUnit {
                unit: "d".into(),
                input: "3d".into()
            })
        );
        assert_eq!(
            parse_go_duration("1 s"),
            Err(DurationError::UnknownUnit {
                unit: " s".into(),
                input: "1 s".into()
            })
        );
        assert_eq!(
            parse_go_duration(""),
            Err(DurationError::Invalid("".into()))
        );
        assert_eq!(
            parse_go_duration("x").unwrap_err().to_string(),
            "invalid duration \"x\""
        );
        assert_eq!(
            parse_go_duration("3d").unwrap_err().to_string(),
            "unknown unit \"d\" in duration \"3d\" (valid units: ns, us, µs, ms, s, m, h)"
        );
        assert!(
            parse_go_duration("5")
                .unwrap_err()
                .to_string()
                .starts_with("missing unit in duration \"5\"")
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        for input in [
            "9223372036854775808ns",
            "-9223372036854775809ns",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "2562048h",
            "2562047h47m16.854775808s",
            "9999999999999999999999999999999h",
            "18446744073709551616ns",
            "18446744073709551615ns",
            "106751991167301d",
            "2562047h2562047h",
            "5124094h",
            "9223372036854775807ns1ns",
            "-9223372036854775808ns1ns",
            "99999999999999999999.5h",
            "153722867280.912930s1ns",
            "3000000h",
        ] {
            assert!(parse_go_duration(input).is_err(), "{input:?} should fail");
        }
        // Very long fractions are truncated, never overflow; like Go, the float conversion
        // rounds 1.999…9s up to 2s.
        let long = format!("1.{}s", "9".repeat(500));
        assert_eq!(parse_go_duration(&long), Ok(2 * S));
        let long_int = format!("{}s", "9".repeat(500));
        assert!(parse_go_duration(&long_int).is_err());
    }

    #[test]
    fn hostile_unicode_does_not_panic() {
        for input in [
            "1é",
            "é1s",
            "1sé",
            "1µ",
            "µs",
            "1µs2",
            "1\u{0}s",
            "1s\u{0}",
            "1\u{200b}s",
            "-µs",
            "1.µs",
            "1..µs",
        ] {
            let _ = parse_go_duration(input);
        }
        assert_eq!(parse_go_duration("1.µs"), Ok(1_000));
    }

    #[test]
    fn sign_classification() {
        assert_eq!(
            parse_signed("2m"),
            Ok(Sign::Positive(Duration::from_secs(120)))
        );
        assert_eq!(
            parse_signed("1ns"),
            Ok(Sign::Positive(Duration::from_nanos(1)))
        );
        assert_eq!(parse_signed("0"), Ok(Sign::NotPositive));
        assert_eq!(parse_signed("0s"), Ok(Sign::NotPositive));
        assert_eq!(parse_signed("-1s"), Ok(Sign::NotPositive));
        assert_eq!(
            parse_signed("-9223372036854775808ns"),
            Ok(Sign::NotPositive)
        );
        assert!(parse_signed("x").is_err());
    }

    #[test]
    fn formats_compactly() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1500ns"),
            (2_000, "2µs"),
            (300_000_000, "300ms"),
            (S as u64, "1s"),
            (90 * S as u64, "1m30s"),
            (60 * S as u64, "1m"),
            (600 * S as u64, "10m"),
            (5400 * S as u64, "1h30m"),
            (3601 * S as u64, "1h1s"),
            (3600 * S as u64 + 1, "1h0.000000001s"),
            (1_500_000_000, "1.5s"),
        ];
        for (ns, want) in cases {
            assert_eq!(format_duration(Duration::from_nanos(*ns)), *want);
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for ns in [
            1u64,
            999,
            1_000,
            1_000_000,
            S as u64,
            61 * S as u64,
            3601 * S as u64 + 7,
        ] {
            let text = format_duration(Duration::from_nanos(ns));
            assert_eq!(parse_go_duration(&text), Ok(ns as i64), "{text}");
        }
    }
}
