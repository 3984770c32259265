//! Per-key rate limits over fixed UTC windows (a minute and an hour), as InstaView documents.
//!
//! The store counts a request in one call and hands back the counts of the current minute and
//! hour, this request included; everything else here is arithmetic on those two numbers.

use time::OffsetDateTime;

use super::api_key::RateLimits;

/// The two fixed windows a moment falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Unix seconds at which the current hour began.
    pub hour_start: i64,
    /// The minute of that hour, 0 to 59.
    pub minute_of_hour: u8,
    /// Unix seconds at which the current minute ends (its reset).
    pub minute_reset: i64,
    /// Unix seconds at which the current hour ends.
    pub hour_reset: i64,
}

impl Windows {
    pub fn at(now: OffsetDateTime) -> Self {
        let seconds = now.unix_timestamp();
        let hour_start = seconds - seconds.rem_euclid(3600);
        let minute_start = seconds - seconds.rem_euclid(60);
        Self {
            hour_start,
            minute_of_hour: u8::try_from((minute_start - hour_start) / 60).unwrap_or(0),
            minute_reset: minute_start + 60,
            hour_reset: hour_start + 3600,
        }
    }
}

/// Requests counted in the current windows, this one included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub minute: u32,
    pub hour: u32,
}

/// Which window a refused request ran over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Minute,
    Hour,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
        }
    }
}

/// What every answer to an authenticated request tells about the key's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    pub limits: RateLimits,
    pub remaining_minute: u32,
    pub remaining_hour: u32,
    pub windows: Windows,
    /// The window the request ran over, if it did.
    pub exceeded: Option<Window>,
    /// Seconds from `now` to the end of the exceeded window (at least 1).
    pub retry_after: u32,
}

impl RateStatus {
    /// Judges `usage` against `limits` at `now`. The minute is reported first when both are over.
    pub fn judge(limits: RateLimits, usage: Usage, now: OffsetDateTime) -> Self {
        let windows = Windows::at(now);
        let exceeded = if usage.minute > limits.per_minute {
            Some(Window::Minute)
        } else if usage.hour > limits.per_hour {
            Some(Window::Hour)
        } else {
            None
        };
        let reset = match exceeded {
            Some(Window::Hour) => windows.hour_reset,
            _ => windows.minute_reset,
        };
        Self {
            limits,
            remaining_minute: limits.per_minute.saturating_sub(usage.minute),
            remaining_hour: limits.per_hour.saturating_sub(usage.hour),
            windows,
            exceeded,
            retry_after: u32::try_from((reset - now.unix_timestamp()).max(1)).unwrap_or(1),
        }
    }

    /// The limit, reset and window of the exceeded window (for the 429's details).
    pub fn exceeded_window(&self) -> Option<(Window, u32, i64)> {
        self.exceeded.map(|window| match window {
            Window::Minute => (window, self.limits.per_minute, self.windows.minute_reset),
            Window::Hour => (window, self.limits.per_hour, self.windows.hour_reset),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const LIMITS: RateLimits = RateLimits {
        per_minute: 60,
        per_hour: 2_000,
    };

    #[test]
    fn windows_are_fixed_utc_minutes_and_hours() {
        let w = Windows::at(datetime!(2026-11-27 10:17:42 UTC));
        assert_eq!(
            w.hour_start,
            datetime!(2026-11-27 10:00 UTC).unix_timestamp()
        );
        assert_eq!(w.minute_of_hour, 17);
        assert_eq!(
            w.minute_reset,
            datetime!(2026-11-27 10:18 UTC).unix_timestamp()
        );
        assert_eq!(
            w.hour_reset,
            datetime!(2026-11-27 11:00 UTC).unix_timestamp()
        );
    }

    #[test]
    fn the_sixtieth_request_of_a_minute_passes_and_the_sixty_first_is_refused() {
        let now = datetime!(2026-11-27 10:17:42 UTC);
        let ok = RateStatus::judge(
            LIMITS,
            Usage {
                minute: 60,
                hour: 60,
            },
            now,
        );
        assert_eq!(ok.exceeded, None);
        assert_eq!(ok.remaining_minute, 0);
        assert_eq!(ok.remaining_hour, 1_940);
        let over = RateStatus::judge(
            LIMITS,
            Usage {
                minute: 61,
                hour: 61,
            },
            now,
        );
        assert_eq!(over.exceeded, Some(Window::Minute));
        assert_eq!(over.retry_after, 18);
        assert_eq!(over.remaining_minute, 0);
    }

    #[test]
    fn the_hour_limit_holds_when_the_minute_is_fine() {
        let now = datetime!(2026-11-27 10:17:42 UTC);
        let over = RateStatus::judge(
            LIMITS,
            Usage {
                minute: 1,
                hour: 2_001,
            },
            now,
        );
        assert_eq!(over.exceeded, Some(Window::Hour));
        assert_eq!(over.retry_after, 42 * 60 + 18);
        let (window, limit, reset) = over.exceeded_window().unwrap();
        assert_eq!((window, limit), (Window::Hour, 2_000));
        assert_eq!(reset, datetime!(2026-11-27 11:00 UTC).unix_timestamp());
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let now = datetime!(2026-11-27 10:17:59.999 UTC);
        let over = RateStatus::judge(
            LIMITS,
            Usage {
                minute: 61,
                hour: 61,
            },
            now,
        );
        assert_eq!(over.retry_after, 1);
    }
}
