//! The delivery Lambda: one attempt per deliveries-queue message
//! (`instaview_webhooks::pipeline::deliver`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instaview_webhooks::delivery::Sender;
use instaview_webhooks::pipeline::queue::Queues;
use instaview_webhooks::pipeline::store::PipelineStore;
use instaview_webhooks::pipeline::{Deliverer, PipelineConfig, SqsBatchResponse, SqsEvent};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use instaview_webhooks::{aws, emf, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};

/// Kept from the function's time for recording an attempt after its answer (a few DynamoDB
/// and SQS calls, each bounded by the SDK's 3 s operation timeout).
const RECORDING_TIME: Duration = Duration::from_secs(8);

/// Lambda's longest function timeout: a deadline further away than this is not a real one.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The budget when the Runtime API gives no usable deadline. `cargo lambda watch` (local
/// stacks) sends the constant `Lambda-Runtime-Deadline-Ms: 600000`, i.e. 00:10 on 1 January
/// 1970, long past: taken at its word, every attempt would time out at once. 60 s matches
/// `cargo lambda watch --timeout 60` in scripts/local-stack.sh.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = PipelineConfig::from_env()?;
    let sdk = aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    // DeliveriesRefused (src/emf.rs), one document per invocation.
    let metrics = emf::init();
    let deliverer = Arc::new(Deliverer::new(
        // Secrets are read by the ARN on the record: no prefix, no pepper needed here.
        SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk), "", None, ""),
        PipelineStore::new(dynamodb, config.webhooks_table, config.api_keys_table)
            .with_key_cache_ttl(config.key_cache_ttl),
        Queues::new(aws_sdk_sqs::Client::new(&sdk)),
        // DELIVER_TO_LOOPBACK_ONLY (local stacks): nothing leaves the machine.
        Sender::new(config.url_policy)?.loopback_only(
            std::env::var("DELIVER_TO_LOOPBACK_ONLY").is_ok_and(|v| v == "true" || v == "1"),
        ),
        config.retry,
        config.deliveries_queue_url,
    ));
    let deliverer = &deliverer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_of(event.context.deadline, unix_ms_now(), Instant::now());
        let answer = deliverer.handle(event.payload, deadline).await;
        if let Some(metrics) = metrics {
            emf::flush(metrics, &event.context.request_id);
        }
        Ok::<SqsBatchResponse, std::convert::Infallible>(answer)
    }))
    .await
}

/// The instant by which every attempt must have its answer: the invocation's deadline (Unix
/// milliseconds) less [`RECORDING_TIME`]. A deadline that cannot be one (already past when the
/// invocation arrives, or further away than Lambda's longest timeout) is replaced by
/// [`FALLBACK_TIMEOUT`] from now, with a log line.
fn deadline_of(deadline_ms: u64, now_ms: u64, now: Instant) -> Instant {
    let plausible = deadline_ms > now_ms
        && Duration::from_millis(deadline_ms - now_ms) <= LONGEST_TIMEOUT + Duration::from_secs(5);
    let left = if plausible {
        Duration::from_millis(deadline_ms - now_ms)
    } else {
        tracing::warn!(
            deadline_ms,
            now_ms,
            fallback_seconds = FALLBACK_TIMEOUT.as_secs(),
            "the invocation's deadline is not a real one (a local Runtime API?); using the fallback"
        );
        FALLBACK_TIMEOUT
    };
    now + left.saturating_sub(RECORDING_TIME)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_795_000_000_000;

    #[test]
    fn a_real_deadline_leaves_the_recording_time() {
        let now = Instant::now();
        let deadline = deadline_of(NOW_MS + 30_000, NOW_MS, now);
        assert_eq!(deadline - now, Duration::from_secs(22));
        // A deadline closer than the recording time leaves nothing for attempts.
        assert_eq!(deadline_of(NOW_MS + 5_000, NOW_MS, now), now);
    }

    #[test]
    fn cargo_lambda_watchs_constant_deadline_gets_the_fallback() {
        let now = Instant::now();
        // cargo lambda watch 1.9 sends `Lambda-Runtime-Deadline-Ms: 600000`.
        let deadline = deadline_of(600_000, NOW_MS, now);
        assert_eq!(deadline - now, FALLBACK_TIMEOUT - RECORDING_TIME);
        // So does a deadline hours away.
        let far = deadline_of(NOW_MS + 3_600_000, NOW_MS, now);
        assert_eq!(far - now, FALLBACK_TIMEOUT - RECORDING_TIME);
    }
}
