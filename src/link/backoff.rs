//! Reconnect pacing: full-jitter exponential backoff and `Retry-After`.
//!
//! The delay ceiling starts at `initial` and doubles per consecutive failure up to `max`; each
//! actual delay is uniform in `[0, ceiling]`, so a fleet of workers cut off together does not
//! redial in lockstep. A tiny PRNG is enough for jitter; it is not used for anything secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest `Retry-After` we honour; a longer one is clipped to this.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Shortest ceiling, so a zero `initial` cannot turn into a tight redial loop.
const MIN_CEILING: Duration = Duration::from_millis(1);

/// splitmix64: small, fast, statistically fine for jitter.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from the clock and the process id, so workers started together still differ.
    pub(crate) fn from_entropy() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        // Distinct seeds for links spawned in the same nanosecond (tests).
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng(nanos ^ (u64::from(std::process::id()) << 32) ^ n.rotate_left(48));
        let _ = rng.next_u64();
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n]` (multiply-shift; the bias is far below anything observable).
    pub(crate) fn up_to(&mut self, n: u64) -> u64 {
        let span = u128::from(n) + 1;
        ((u128::from(self.next_u64()) * span) >> 64) as u64
    }
}

/// Full-jitter exponential backoff state.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    ceiling: Duration,
    rng: Rng,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, rng: Rng) -> Backoff {
        let initial = initial.max(MIN_CEILING);
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            ceiling: initial,
            rng,
        }
    }

    /// The next delay, uniform in `[0, ceiling]`; then the ceiling doubles (up to `max`).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nanos = u64::try_from(self.ceiling.as_nanos()).unwrap_or(u64::MAX);
        let delay = Duration::from_nanos(self.rng.up_to(nanos));
        self.ceiling = self.ceiling.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the initial ceiling (after a connection was established).
    pub(crate) fn reset(&mut self) {
        self.ceiling = self.initial;
    }

    #[cfg(test)]
    pub(crate) fn ceiling(&self) -> Duration {
        self.ceiling
    }
}

/// Parses a `Retry-After` value given in seconds, clipped to [`RETRY_AFTER_CAP`]. The HTTP-date
/// form is not honoured (`None`): the server we talk to sends seconds.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = v.parse().ok()?;
    Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_doubling_ceiling() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(initial, max, Rng::new(7));
        let expected = [100, 200, 400, 800, 1000, 1000, 1000];
        for want in expected {
            let ceiling = b.ceiling();
            assert_eq!(ceiling, Duration::from_millis(want));
            for _ in 0..50 {
                // Sample the same ceiling repeatedly without advancing it.
                let mut probe = b.clone();
                let d = probe.next_delay();
                assert!(d <= ceiling, "{d:?} > {ceiling:?}");
                b.rng = probe.rng;
            }
            let _ = b.next_delay();
        }
        b.reset();
        assert_eq!(b.ceiling(), initial);
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), Rng::new(42));
        let samples: Vec<Duration> = (0..2000).map(|_| b.next_delay()).collect();
        let low = samples
            .iter()
            .filter(|d| **d < Duration::from_millis(100))
            .count();
        let high = samples
            .iter()
            .filter(|d| **d > Duration::from_millis(900))
            .count();
        assert!(low > 100 && high > 100, "low {low} high {high}");
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(1)));
    }

    #[test]
    fn degenerate_settings_are_safe() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, Rng::new(1));
        assert_eq!(b.ceiling(), MIN_CEILING);
        for _ in 0..10 {
            assert!(b.next_delay() <= MIN_CEILING);
        }
        // max below initial: the ceiling never drops below initial.
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1), Rng::new(1));
        let _ = b.next_delay();
        assert_eq!(b.ceiling(), Duration::from_secs(5));
        // Huge values saturate instead of overflowing.
        let mut b = Backoff::new(Duration::MAX, Duration::MAX, Rng::new(1));
        let _ = b.next_delay();
        let _ = b.next_delay();
        assert_eq!(b.ceiling(), Duration::MAX);
    }

    #[test]
    fn rng_up_to_is_inclusive_and_bounded() {
        let mut r = Rng::new(3);
        assert_eq!(r.up_to(0), 0);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let v = r.up_to(3);
            seen[usize::try_from(v).unwrap()] = true;
        }
        assert!(seen.iter().all(|s| *s));
        for _ in 0..1000 {
            let _ = r.up_to(u64::MAX);
        }
        assert_ne!(
            Rng::from_entropy().next_u64(),
            Rng::from_entropy().next_u64()
        );
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("3600"), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("99999999999999999999"), None);
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "+3",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }
}
