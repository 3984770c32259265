//! The delivery Lambda: one attempt per deliveries-queue message
//! (`instaview_webhooks::pipeline::deliver`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instaview_webhooks::delivery::Sender;
use instaview_webhooks::pipeline::queue::Queues;
use instaview_webhooks::pipeline::store::PipelineStore;
use instaview_webhooks::pipeline::{Deliverer, PipelineConfig, SqsBatchResponse, SqsEvent};
use instaview_webhooks::store::dynamodb::DynamoWebhooks;
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use instaview_webhooks::{aws, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};

/// Kept from the function's time for recording an attempt after its answer (a few DynamoDB
/// and SQS calls, each bounded by the SDK's 3 s operation timeout).
const RECORDING_TIME: Duration = Duration::from_secs(8);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = PipelineConfig::from_env()?;
    let sdk = aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let deliverer = Arc::new(Deliverer::new(
        DynamoWebhooks::new(dynamodb.clone(), &config.webhooks_table),
        // Secrets are read by the ARN on the record: no prefix, no pepper needed here.
        SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk), "", None, ""),
        PipelineStore::new(dynamodb, config.webhooks_table, config.api_keys_table),
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
        let deadline = deadline_of(event.context.deadline);
        Ok::<SqsBatchResponse, std::convert::Infallible>(
            deliverer.handle(event.payload, deadline).await,
        )
    }))
    .await
}

/// The instant by which every attempt must have its answer: the invocation's deadline (Unix
/// milliseconds) less [`RECORDING_TIME`].
fn deadline_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(RECORDING_TIME)
}
