//! Time: how long an invocation has, and what each step of it may spend.
//!
//! Lambda hands every invocation its deadline (`Lambda-Runtime-Deadline-Ms`, Unix milliseconds).
//! A local Runtime API may not: `cargo lambda watch` (`make run`) sends the constant `600000`,
//! ten minutes after the epoch, so a deadline taken at its word leaves no time at all (every
//! test ping answered "connection timed out", issue 15). Every deadline is therefore read here,
//! through one guard, and every budget that depends on it is set here:
//!
//! | budget | API (`create-webhook`) | `deliver` |
//! |---|---|---|
//! | the function's time when the deadline is not a real one | [`API_TIMEOUT`] (its `Timeout`) | [`DELIVER_FALLBACK_TIMEOUT`] |
//! | kept from that time after the call to the receiver | [`ANSWER_MARGIN`] | [`RECORDING_TIME`] |
//! | a receiver's time | [`receiver_timeout`], capped by the deadline | the same |
//! | the create's writes, and their undo | [`WRITE_BUDGET`], [`UNDO_BUDGET`] | |

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lambda's longest function timeout: a deadline further away than this is not a real one.
pub const LONGEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Clock skew allowed between the Runtime API and this container when judging a deadline.
const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// The API function's timeout (`Timeout: 28` in template.yaml): its time when the invocation
/// names no usable deadline (no Lambda context in tests; `cargo lambda watch`).
pub const API_TIMEOUT: Duration = Duration::from_secs(28);
/// Kept from the API function's time after a test ping, to build and send the answer.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(1_500);

/// Time allowed for the writes of one create (claim, secret, record), or for answering a retry
/// again. Past it the request gives up and undoes what it may have written. The default of
/// [`crate::config::Settings::write_budget`] (tests against a loaded emulator allow more).
pub const WRITE_BUDGET: Duration = Duration::from_secs(10);
/// Time allowed for that undo. With authentication (at most two calls of 3 s) a create answers
/// within about 24 s whatever AWS does: inside [`API_TIMEOUT`] and API Gateway's 29 s.
pub const UNDO_BUDGET: Duration = Duration::from_secs(8);

/// The most sequential AWS calls a `deliver` attempt makes after its answer: the attempt's
/// record (a failure's in one transaction with its count), the circuit's conditional opening,
/// the next attempt's `SendMessage`. A success makes two (the record, the count's reset); a
/// failure whose webhook was deleted meanwhile two (the cancelled transaction, the record alone).
pub const RECORDING_CALLS: u32 = 3;
/// Clock, the log line and the batch answer, beyond the calls.
const RECORDING_MARGIN: Duration = Duration::from_secs(1);
/// Kept from `deliver`'s time for recording an attempt after its answer: each call is bounded
/// by the SDK's operation timeout, retries included ([`crate::aws::OPERATION_TIMEOUT`], 3 s),
/// so [`RECORDING_CALLS`] x 3 s + 1 s = 10 s.
pub const RECORDING_TIME: Duration = Duration::from_secs(
    crate::aws::OPERATION_TIMEOUT.as_secs() * RECORDING_CALLS as u64 + RECORDING_MARGIN.as_secs(),
);
/// `deliver`'s time when the invocation names no usable deadline (`cargo lambda watch`, which
/// scripts/local-stack.sh runs without `--timeout`: the poller's invoke timeout is above this).
pub const DELIVER_FALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

/// When an invocation arrived, on both clocks: the wall clock to judge the Runtime API's
/// deadline, the monotonic one to count down from.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub unix_ms: u64,
    pub at: Instant,
}

impl Arrival {
    pub fn now() -> Self {
        Self {
            unix_ms: unix_ms_now(),
            at: Instant::now(),
        }
    }
}

/// The invocation's deadline (`deadline_ms`, Unix milliseconds) as an instant. A deadline that
/// cannot be one (already past when the invocation arrived, or further away than Lambda's
/// longest timeout) is replaced by `fallback` from the arrival, with a warning.
pub fn function_deadline(deadline_ms: u64, arrival: Arrival, fallback: Duration) -> Instant {
    let now_ms = arrival.unix_ms;
    let plausible = deadline_ms > now_ms
        && Duration::from_millis(deadline_ms - now_ms) <= LONGEST_TIMEOUT + CLOCK_SLACK;
    let left = if plausible {
        Duration::from_millis(deadline_ms - now_ms)
    } else {
        tracing::warn!(
            deadline_ms,
            now_ms,
            fallback_seconds = fallback.as_secs(),
            "the invocation's deadline is not a real one (a local Runtime API?); using the fallback"
        );
        fallback
    };
    arrival.at + left
}

/// The instant by which every attempt of a `deliver` invocation must have its answer: the
/// function's deadline less [`RECORDING_TIME`].
pub fn deliver_deadline(deadline_ms: u64, arrival: Arrival) -> Instant {
    let deadline = function_deadline(deadline_ms, arrival, DELIVER_FALLBACK_TIMEOUT);
    deadline
        .checked_sub(RECORDING_TIME)
        .map_or(arrival.at, |d| d.max(arrival.at))
}

/// The instant by which a test ping must have its answer: the API function's deadline less
/// [`ANSWER_MARGIN`]. `None` or `0` is no Lambda context at all (tests): [`API_TIMEOUT`] from the
/// arrival, quietly.
pub fn test_ping_deadline(deadline_ms: Option<u64>, arrival: Arrival) -> Instant {
    let deadline = match deadline_ms {
        None | Some(0) => arrival.at + API_TIMEOUT,
        Some(ms) => function_deadline(ms, arrival, API_TIMEOUT),
    };
    deadline
        .checked_sub(ANSWER_MARGIN)
        .map_or(arrival.at, |d| d.max(arrival.at))
}

/// How long one delivery (an attempt or the test ping) waits for its receiver: the webhook's
/// `timeoutMs`. The sender caps it by the deadline the caller passes.
pub fn receiver_timeout(timeout_ms: u32) -> Duration {
    Duration::from_millis(u64::from(timeout_ms))
}

/// The wall clock in Unix milliseconds (0 before the epoch, which no real clock is).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_795_000_000_000;

    fn arrival() -> Arrival {
        Arrival {
            unix_ms: NOW_MS,
            at: Instant::now(),
        }
    }

    #[test]
    fn a_real_deadline_leaves_the_recording_time() {
        let arrival = arrival();
        let deadline = deliver_deadline(NOW_MS + 30_000, arrival);
        assert_eq!(deadline - arrival.at, Duration::from_secs(20));
        // A deadline closer than the recording time leaves nothing for attempts.
        assert_eq!(deliver_deadline(NOW_MS + 5_000, arrival), arrival.at);
    }

    #[test]
    fn the_recording_time_covers_its_calls_at_the_sdks_operation_timeout() {
        assert_eq!(crate::aws::OPERATION_TIMEOUT, Duration::from_secs(3));
        assert_eq!(RECORDING_TIME, Duration::from_secs(10));
        assert!(RECORDING_TIME >= crate::aws::OPERATION_TIMEOUT * RECORDING_CALLS);
    }

    #[test]
    fn cargo_lambda_watchs_constant_deadline_gets_the_fallback() {
        let arrival = arrival();
        // cargo lambda watch 1.9 sends `Lambda-Runtime-Deadline-Ms: 600000`.
        let deadline = deliver_deadline(600_000, arrival);
        assert_eq!(
            deadline - arrival.at,
            DELIVER_FALLBACK_TIMEOUT - RECORDING_TIME
        );
        // So does a deadline hours away.
        let far = deliver_deadline(NOW_MS + 3_600_000, arrival);
        assert_eq!(far - arrival.at, DELIVER_FALLBACK_TIMEOUT - RECORDING_TIME);
    }

    #[test]
    fn a_deadline_at_lambdas_longest_timeout_is_a_real_one() {
        let arrival = arrival();
        let ms = u64::try_from(LONGEST_TIMEOUT.as_millis()).unwrap();
        let deadline = function_deadline(NOW_MS + ms, arrival, Duration::ZERO);
        assert_eq!(deadline - arrival.at, LONGEST_TIMEOUT);
        // Already past on arrival: not real either.
        let past = function_deadline(NOW_MS - 1, arrival, Duration::from_secs(7));
        assert_eq!(past - arrival.at, Duration::from_secs(7));
    }

    #[test]
    fn a_test_ping_keeps_the_answer_margin_from_the_functions_deadline() {
        let arrival = arrival();
        let deadline = test_ping_deadline(Some(NOW_MS + 20_000), arrival);
        assert_eq!(deadline - arrival.at, Duration::from_millis(18_500));
        // Less time left than the margin: the ping gets none.
        assert_eq!(
            test_ping_deadline(Some(NOW_MS + 1_000), arrival),
            arrival.at
        );
    }

    #[test]
    fn a_test_ping_under_cargo_lambda_watch_or_without_a_context_gets_the_functions_timeout() {
        let arrival = arrival();
        for deadline_ms in [Some(600_000), Some(NOW_MS + 3_600_000), Some(0), None] {
            let deadline = test_ping_deadline(deadline_ms, arrival);
            assert_eq!(
                deadline - arrival.at,
                API_TIMEOUT - ANSWER_MARGIN,
                "{deadline_ms:?}"
            );
        }
    }

    #[test]
    fn the_receivers_time_is_the_webhooks_timeout() {
        assert_eq!(receiver_timeout(30_000), Duration::from_secs(30));
    }

    #[test]
    fn the_create_answers_inside_the_functions_timeout() {
        // Authentication (two SDK operations of at most 3 s), the writes, then their undo.
        let auth = crate::aws::OPERATION_TIMEOUT * 2;
        assert!(auth + WRITE_BUDGET + UNDO_BUDGET < API_TIMEOUT);
    }
}
