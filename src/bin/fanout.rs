//! The fan-out Lambda: events queue in, one delivery per subscribed webhook out
//! (`instaview_webhooks::pipeline::fanout`).

use instaview_webhooks::pipeline::queue::Queues;
use instaview_webhooks::pipeline::store::PipelineStore;
use instaview_webhooks::pipeline::{Fanout, PipelineConfig, SqsBatchResponse, SqsEvent};
use instaview_webhooks::{aws, emf, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = PipelineConfig::from_env()?;
    let events_dlq_url = config
        .events_dlq_url
        .ok_or("configuration: EVENTS_DLQ_URL must be set")?;
    let sdk = aws::sdk_config().await;
    // DeliveriesRefused and EventsRefused (src/emf.rs), one document per invocation.
    let metrics = emf::init();
    let fanout = Fanout {
        store: PipelineStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            config.webhooks_table,
            config.api_keys_table,
            config.delivery_log_table,
        )
        .with_key_cache_ttl(config.key_cache_ttl),
        queues: Queues::new(aws_sdk_sqs::Client::new(&sdk)),
        deliveries_queue_url: config.deliveries_queue_url,
        events_dlq_url,
    };
    let fanout = &fanout;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let answer = fanout.handle(event.payload).await;
        if let Some(metrics) = metrics {
            emf::flush(metrics, &event.context.request_id);
        }
        Ok::<SqsBatchResponse, std::convert::Infallible>(answer)
    }))
    .await
}
