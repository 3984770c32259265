//! The Lambda entry point: build the SDK clients once, then serve requests.

use instaview_webhooks::config::Config;
use instaview_webhooks::http::lambda_event::{
    rejection_response, request_from_event, with_lambda_context, EventResponse,
};
use instaview_webhooks::pipeline::queue::SqsPipelineQueue;
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoDeliveryLog, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use instaview_webhooks::{aws, emf, http, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};
use serde_json::Value;

// One event at a time per execution environment: a single thread does the work with fewer
// context switches and less CPU per request (docs/PERFORMANCE.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let metrics = emf::init();
    // Every attempt of every AWS call is timed (`AwsCallLatency`).
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(emf::AwsCallTimer)
            .build(),
    );
    let secretsmanager = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .interceptor(emf::AwsCallTimer)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(emf::AwsCallTimer)
            .build(),
    );
    let app = App::new(
        DynamoApiKeys::new(dynamodb.clone(), config.api_keys_table),
        DynamoWebhooks::new(dynamodb.clone(), config.webhooks_table),
        SecretsManagerStore::new(
            secretsmanager,
            config.secret_prefix,
            config.kms_key_id,
            config.pepper_secret_id,
        ),
        config.settings,
    )
    // The delivery log's routes and the test ping's record; resend and recover are queued
    // for the pipeline.
    .with_delivery_log(
        DynamoDeliveryLog::new(dynamodb, config.delivery_log_table),
        SqsPipelineQueue::new(sqs, config.deliveries_queue_url),
    );
    let app = &app;
    // Raw events rather than `lambda_http::run`, whose conversion to a request panics on some
    // events (a Host that is not an authority, a bad base64 body); see `http::lambda_event`.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let LambdaEvent { payload, context } = event;
        let request_id = context.request_id.clone();
        let (version, request) = request_from_event(&payload);
        let response = match request {
            Ok(request) => {
                // Boxed: the handler future nested in the runtime's is deeper than rustc lays
                // out by default.
                Box::pin(http::handle(app, with_lambda_context(request, context))).await
            }
            Err(rejected) => {
                tracing::info!(
                    request_id = %context.request_id,
                    status = 400u16,
                    error_code = "VALIDATION_ERROR",
                    cause = %rejected,
                    "event refused before routing"
                );
                emf::answered(400, Some("VALIDATION_ERROR"), false);
                rejection_response(&rejected, &context.request_id)
            }
        };
        if let Some(metrics) = metrics {
            emf::flush(metrics, &request_id);
        }
        Ok::<_, std::convert::Infallible>(EventResponse::new(version, response))
    }))
    .await
}
