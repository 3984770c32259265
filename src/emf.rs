//! Operational metrics as CloudWatch embedded metric format (EMF): one JSON document per
//! invocation on stdout, which CloudWatch Logs turns into metrics (no API call, no agent).
//!
//! Namespace `InstaView/Webhooks`:
//! - `WebhooksCreated`: new webhooks (replays not counted);
//! - `Errors` by `Code`: error answers, by their contract code;
//! - `RateLimited`: requests refused with 429;
//! - `AwsCallLatency` by `Operation` (milliseconds): each attempt of each AWS call, from the SDK;
//! - `DeliveriesRefused` by `Stage` (`fanout`, `deliver`) and `Reason`: deliveries not made
//!   because the webhook's key is revoked, suspended, expired, gone or lost the company;
//! - `EventsRefused` by `Reason` (`malformed`, `too large`): events moved to the events
//!   dead-letter queue by fan-out.
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

/// Counts a delivery the webhook's key refused, at `stage` (`fanout` or `deliver`).
pub fn delivery_refused(stage: &'static str, reason: &'static str) {
    ::metrics::counter!("DeliveriesRefused", "Stage" => stage, "Reason" => reason).increment(1);
}

/// Counts a circuit opened by a failed attempt (the template's alarm watches it).
pub fn circuit_opened() {
    ::metrics::counter!("CircuitsOpened").increment(1);
}

/// Counts a delivery that failed for good: retries exhausted, or `410 Gone`.
pub fn delivery_failed() {
    ::metrics::counter!("DeliveriesFailed").increment(1);
}

/// Counts an event fan-out moved to the events dead-letter queue.
pub fn event_refused(reason: &'static str) {
    ::metrics::counter!("EventsRefused", "Reason" => reason).increment(1);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    /// Counters by name and labels (`DeliveriesRefused{Stage=deliver,Reason=key revoked}`).
    #[derive(Default)]
    struct Counters(Mutex<Vec<(String, Arc<AtomicU64>)>>);

    struct Count(Arc<AtomicU64>);

    impl CounterFn for Count {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::SeqCst);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::SeqCst);
        }
    }

    impl Recorder for Counters {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let value = Arc::new(AtomicU64::new(0));
            self.0.lock().unwrap().push((name, value.clone()));
            Counter::from_arc(Arc::new(Count(value)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn refusals_are_counted_by_stage_and_reason() {
        let counters = Counters::default();
        metrics::with_local_recorder(&counters, || {
            super::delivery_refused("deliver", "key revoked");
            super::event_refused("too large");
        });
        let seen: Vec<(String, u64)> = counters
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(name, n)| (name.clone(), n.load(Ordering::SeqCst)))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "DeliveriesRefused{Stage=deliver,Reason=key revoked}".to_owned(),
                    1
                ),
                ("EventsRefused{Reason=too large}".to_owned(), 1)
            ]
        );
    }
}
