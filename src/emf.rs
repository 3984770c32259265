//! Operational metrics as CloudWatch embedded metric format (EMF): one JSON document per
//! invocation on stdout, which CloudWatch Logs turns into metrics (no API call, no agent).
//!
//! Namespace `InstaView/Webhooks`:
//! - `WebhooksCreated`: new webhooks (replays not counted);
//! - `Errors` by `Code`: error answers, by their contract code;
//! - `RateLimited`: requests refused with 429;
//! - `AwsCallLatency` by `Operation` (milliseconds): each attempt of each AWS call, from the SDK.
//!
//! Without [`init`] (tests, the admin tool) the `metrics` macros record nowhere.

use std::time::Instant;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use metrics_cloudwatch_embedded::Collector;

/// The namespace of every metric.
pub const NAMESPACE: &str = "InstaView/Webhooks";

/// Installs the EMF recorder for the process. `None` if one is installed already.
pub fn init() -> Option<&'static Collector> {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .init()
        .ok()
}

/// Writes what this invocation recorded as one EMF document, with its request id.
pub fn flush(collector: &Collector, request_id: &str) {
    let _ = collector
        .set_property("requestId", request_id.to_owned())
        .flush(std::io::stdout());
}

/// Records what an answer tells: a creation, an error code, a rate-limited request.
pub fn answered(status: u16, error_code: Option<&'static str>, created: bool) {
    if created {
        ::metrics::counter!("WebhooksCreated").increment(1);
    }
    if let Some(code) = error_code {
        ::metrics::counter!("Errors", "Code" => code).increment(1);
    }
    if status == 429 {
        ::metrics::counter!("RateLimited").increment(1);
    }
}

/// Times every attempt of every AWS call (add it to each SDK client's config).
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsCallTimer;

#[derive(Debug, Clone)]
struct Sent {
    operation: String,
    at: Instant,
}

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

impl Intercept for AwsCallTimer {
    fn name(&self) -> &'static str {
        "AwsCallTimer"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Both services speak AWS JSON, which names the operation in `X-Amz-Target`.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown")
            .replace('_', "")
            .to_owned();
        cfg.interceptor_state().store_put(Sent {
            operation,
            at: Instant::now(),
        });
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(sent) = cfg.load::<Sent>() {
            let millis = sent.at.elapsed().as_secs_f64() * 1000.0;
            ::metrics::histogram!("AwsCallLatency", "Operation" => sent.operation.clone())
                .record(millis);
        }
        Ok(())
    }
}
