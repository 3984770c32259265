//! AWS SDK configuration shared by the function and the admin tool.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Per-attempt limit: a healthy DynamoDB or Secrets Manager call takes tens of milliseconds.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Whole-operation limit, retries included. Authentication makes at most two calls (pepper,
/// key) before the create's own write and undo budgets (`time_budget::WRITE_BUDGET`,
/// `time_budget::UNDO_BUDGET`) take over, so every answer comes within about 24 s, inside the
/// function's 28 s timeout and API Gateway's 29 s.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// Loads the SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL*`)
/// with our timeouts and the standard retry strategy (3 attempts, jittered backoff).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(retries())
        .load()
        .await
}

/// The retry strategy every client uses: standard, 3 attempts with jittered backoff.
pub fn retries() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(3)
}

/// The timeouts every client uses.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}
