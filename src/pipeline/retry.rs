//! When the next attempt of a failed delivery is made.

use std::time::Duration;

/// The delays between attempts: after the first failure the first delay, and so on; attempts
/// beyond the list wait as long as its last entry. DELIVERY.md: about 5 s, 5 min and 30 min.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
}

/// The most a receiver's `Retry-After` may push an attempt back: a receiver cannot park a
/// delivery for longer than the deliveries queue keeps messages (4 days) with this margin.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Jitter: each delay is stretched by up to this fraction, so that the retries of one burst
/// of failures do not all come back at the same second.
const JITTER: f64 = 0.2;

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(vec![
            Duration::from_secs(5),
            Duration::from_secs(5 * 60),
            Duration::from_secs(30 * 60),
        ])
        .expect("non-empty")
    }
}

impl RetryPolicy {
    /// A policy with these delays; `None` when the list is empty.
    pub fn new(delays: Vec<Duration>) -> Option<Self> {
        (!delays.is_empty()).then_some(Self { delays })
    }

    /// Reads `RETRY_DELAYS_SECONDS` (`"5,300,1800"`; tests shorten it, e.g. `"1,1,1"`).
    pub fn parse(text: &str) -> Option<Self> {
        let delays = text
            .split(',')
            .map(|part| part.trim().parse::<u64>().ok().map(Duration::from_secs))
            .collect::<Option<Vec<_>>>()?;
        Self::new(delays)
    }

    /// The wait before attempt `failed_attempt + 1`, given the receiver's `Retry-After` (taken
    /// when it asks for longer, capped at [`MAX_RETRY_AFTER`]) and `random` in `[0, 1)`.
    pub fn delay_after(
        &self,
        failed_attempt: u32,
        retry_after: Option<u64>,
        random: f64,
    ) -> Duration {
        let index = (failed_attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        let base = self.delays[index];
        let jittered = base.mul_f64(1.0 + JITTER * random.clamp(0.0, 1.0));
        let asked = retry_after
            .map(Duration::from_secs)
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER);
        jittered.max(asked)
    }
}

/// A uniform number in `[0, 1)` from the OS RNG (0 should the RNG fail: no jitter, no panic).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_delays_are_5_seconds_5_minutes_and_30_minutes() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_after(1, None, 0.0), Duration::from_secs(5));
        assert_eq!(policy.delay_after(2, None, 0.0), Duration::from_secs(300));
        assert_eq!(policy.delay_after(3, None, 0.0), Duration::from_secs(1800));
        assert_eq!(policy.delay_after(7, None, 0.0), Duration::from_secs(1800));
    }

    #[test]
    fn jitter_stretches_a_delay_by_at_most_a_fifth() {
        let policy = RetryPolicy::default();
        let most = policy.delay_after(2, None, 0.999_999);
        assert!(most > Duration::from_secs(300) && most < Duration::from_secs(360));
    }

    #[test]
    fn retry_after_is_honoured_when_longer_and_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_after(1, Some(120), 0.0),
            Duration::from_secs(120)
        );
        assert_eq!(
            policy.delay_after(2, Some(10), 0.0),
            Duration::from_secs(300)
        );
        assert_eq!(
            policy.delay_after(1, Some(10_000_000), 0.0),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn delays_can_be_shortened_by_configuration() {
        let policy = RetryPolicy::parse("1, 2,3").unwrap();
        assert_eq!(policy.delay_after(2, None, 0.0), Duration::from_secs(2));
        assert!(RetryPolicy::parse("").is_none());
        assert!(RetryPolicy::parse("5,x").is_none());
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
