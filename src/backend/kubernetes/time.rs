//! RFC 3339 timestamps as the API server writes them (`metav1.Time` `2026-01-02T03:04:05Z`,
//! `MicroTime` with a fraction), without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. `None` for anything else (the caller
/// then falls back to what the worker saw itself).
pub fn parse(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (i, c) in frac[..digits].bytes().take(9).enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - u32::try_from(i).ok()?);
        }
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' || !matches!(rb[0], b'+' | b'-') {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `now − then`, zero when `then` is in the future (clock skew between worker and cluster).
pub fn elapsed(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// RFC 3339 in UTC with milliseconds, as `observed_at` in failure details.
pub fn format(t: SystemTime) -> String {
    crate::logging::utc_timestamp(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn parses_api_server_timestamps() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(at(0, 0)));
        assert_eq!(parse("2026-12-02T15:45:25Z"), Some(at(1_796_226_325, 0)));
        assert_eq!(
            parse("2026-12-02T15:45:25.123456Z"),
            Some(at(1_796_226_325, 123_456_000))
        );
        assert_eq!(
            parse("2026-12-02T17:45:25+02:00"),
            Some(at(1_796_226_325, 0))
        );
        assert_eq!(
            parse("2026-12-02T14:45:25-01:00"),
            Some(at(1_796_226_325, 0))
        );
        assert_eq!(parse("2024-02-29T00:00:00Z"), Some(at(1_709_164_800, 0)));
    }

    #[test]
    fn round_trips_with_format() {
        let t = at(1_796_226_325, 987_000_000);
        assert_eq!(format(t), "2026-12-02T15:45:25.987Z");
        assert_eq!(parse(&format(t)), Some(t));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2026-12-02",
            "2026-12-02T15:45:25",
            "2026-13-02T15:45:25Z",
            "2026-12-02T25:45:25Z",
            "2026-12-02T15:45:25.Z",
            "2026-12-02T15:45:25+0200",
            "20x6-12-02T15:45:25Z",
            "1969-12-31T23:59:59Z",
            "2026-12-02T15:45:25Zjunk",
            "２026-12-02T15:45:25Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn random_text_never_panics() {
        let pool = ["2", "0", "-", "T", "Z", ":", ".", "+", "é", "🙂", "9", " "];
        let mut rng = crate::backend::kubernetes::fixtures::Rng(0x1234_5678_9abc_def1);
        for _ in 0..20_000 {
            let len = rng.below(32);
            let s: String = (0..len).map(|_| *rng.pick(&pool)).collect();
            let _ = parse(&s);
        }
        // Near-valid shapes with a multibyte character where a digit should be.
        for bad in [
            "2026-12-02T15:45:2é",
            "2026-12-02T15:45:25.é",
            "2026-12-02T15:45:25+0é:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn elapsed_never_goes_negative() {
        assert_eq!(elapsed(at(10, 0), at(4, 0)), Duration::from_secs(6));
        assert_eq!(elapsed(at(4, 0), at(10, 0)), Duration::ZERO);
    }
}
