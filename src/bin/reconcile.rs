//! The scheduled reconciler (an EventBridge schedule invokes it; template.yaml): one
//! [`Reconciler`] run per event, one JSON log line per action and a summary line. The run
//! fails (a Lambda error, so the `Errors` metric and its alarm see it) when the table or the
//! secret list could not be read, or when an item could not be handled.
//!
//! Settings (environment): `WEBHOOKS_TABLE_NAME`, `WEBHOOK_SECRET_PREFIX` (as the API function
//! has them), `RECONCILE_MIN_SECRET_AGE_SECONDS` (default 900), `RECONCILE_DRY_RUN`
//! (`true` reports without changing anything; default `false`), `LOG_LEVEL`.

use std::time::Duration;

use instaview_webhooks::reconcile::{Options, Reconciler, DEFAULT_MIN_SECRET_AGE};
use instaview_webhooks::{aws, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};
use serde_json::Value;

fn setting(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(format!("{name} must be set").into()),
    }
}

/// The run's options from the environment.
fn options() -> Result<Options, Error> {
    let min_secret_age = match std::env::var("RECONCILE_MIN_SECRET_AGE_SECONDS") {
        Err(_) => DEFAULT_MIN_SECRET_AGE,
        Ok(text) => Duration::from_secs(
            text.trim()
                .parse()
                .map_err(|_| "RECONCILE_MIN_SECRET_AGE_SECONDS must be a whole number")?,
        ),
    };
    let dry_run = match std::env::var("RECONCILE_DRY_RUN").as_deref() {
        Err(_) | Ok("" | "false") => false,
        Ok("true") => true,
        Ok(_) => return Err("RECONCILE_DRY_RUN must be true or false".into()),
    };
    Ok(Options {
        min_secret_age,
        dry_run,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let options = options()?;
    let sdk = aws::sdk_config().await;
    let reconciler = Reconciler {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        secretsmanager: aws_sdk_secretsmanager::Client::new(&sdk),
        webhooks_table: setting("WEBHOOKS_TABLE_NAME")?,
        secret_prefix: setting("WEBHOOK_SECRET_PREFIX")?,
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
