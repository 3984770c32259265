//! The scheduled reconciler (an EventBridge schedule invokes it; template.yaml): one
//! [`Reconciler`] run per event, one JSON log line per action and a summary line. The run
//! fails (a Lambda error, so the `Errors` metric and its alarm see it) when the table or the
//! secret list could not be read, or when an item could not be handled.
//!
//! Settings (environment, read by [`ReconcileConfig`]): `WEBHOOKS_TABLE_NAME`,
//! `WEBHOOK_SECRET_PREFIX` (as the API function has them, but required),
//! `RECONCILE_MIN_SECRET_AGE_SECONDS` (default 900), `RECONCILE_DRY_RUN` (`true` or `1` reports
//! without changing anything; default `false`), `LOG_LEVEL`.

use instaview_webhooks::config::ReconcileConfig;
use instaview_webhooks::reconcile::Reconciler;
use instaview_webhooks::{aws, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let ReconcileConfig {
        webhooks_table,
        secret_prefix,
        options,
    } = ReconcileConfig::from_env()?;
    let sdk = aws::sdk_config().await;
    let reconciler = Reconciler {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        secretsmanager: aws_sdk_secretsmanager::Client::new(&sdk),
        webhooks_table,
        secret_prefix,
    };
    let (reconciler, options) = (&reconciler, &options);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The schedule's event carries nothing the run needs; its id ties the log lines to it.
        let event_id = event
            .payload
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("");
        tracing::info!(
            request_id = %event.context.request_id,
            event_id,
            "reconcile run started"
        );
        let report = reconciler.run(options).await?;
        if !report.errors.is_empty() {
            return Err::<Value, Error>(
                format!(
                    "reconcile: {} item(s) could not be handled: {}",
                    report.errors.len(),
                    report.errors.join("; ")
                )
                .into(),
            );
        }
        Ok(serde_json::to_value(&report)?)
    }))
    .await
}
