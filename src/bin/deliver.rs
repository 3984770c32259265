//! The delivery Lambda: one attempt per deliveries-queue message
//! (`instaview_webhooks::pipeline::deliver`).

use std::sync::Arc;

use instaview_webhooks::delivery::Sender;
use instaview_webhooks::pipeline::queue::Queues;
use instaview_webhooks::pipeline::store::PipelineStore;
use instaview_webhooks::pipeline::{Deliverer, PipelineConfig, SqsBatchResponse, SqsEvent};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use instaview_webhooks::time_budget::{deliver_deadline, Arrival};
use instaview_webhooks::{aws, emf, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = PipelineConfig::from_env()?;
    let sdk = aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    // DeliveriesRefused (src/emf.rs), one document per invocation.
    let metrics = emf::init();
    let deliverer = Arc::new(
        Deliverer::new(
            // Secrets are read by the ARN on the record: no prefix, no pepper needed here.
            SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk), "", None, ""),
            PipelineStore::new(
                dynamodb,
                config.webhooks_table,
                config.api_keys_table,
                config.delivery_log_table,
            )
            .with_key_cache_ttl(config.key_cache_ttl),
            Queues::new(aws_sdk_sqs::Client::new(&sdk)),
            // DELIVER_TO_LOOPBACK_ONLY (local stacks): nothing leaves the machine.
            Sender::new(config.url_policy)?.loopback_only(
                std::env::var("DELIVER_TO_LOOPBACK_ONLY").is_ok_and(|v| v == "true" || v == "1"),
            ),
            config.retry,
            config.deliveries_queue_url,
        )
        .with_recover_rate(config.recover_rate),
    );
    let deliverer = &deliverer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // The function's deadline less the recording time; cargo lambda watch's constant
        // deadline gets a fallback (time_budget).
        let deadline = deliver_deadline(event.context.deadline, Arrival::now());
        let answer = deliverer.handle(event.payload, deadline).await;
        if let Some(metrics) = metrics {
            emf::flush(metrics, &event.context.request_id);
        }
        Ok::<SqsBatchResponse, std::convert::Infallible>(answer)
    }))
    .await
}
