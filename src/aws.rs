//! AWS SDK configuration shared by the function and the admin tool.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Per-attempt limit: a healthy DynamoDB or Secrets Manager call takes tens of milliseconds.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2_500);
/// Whole-operation limit, retries included. A create makes at most five calls in sequence
/// (pepper, key, secret, record, undo), so even when every one of them times out the function
/// answers in well under API Gateway's 29 seconds.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL*`)
/// with our timeouts and the standard retry strategy (3 attempts, jittered backoff).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// The timeouts every client uses.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}
