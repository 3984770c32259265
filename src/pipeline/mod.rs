//! The event pipeline (DELIVERY.md, "The event pipeline"): platform events in through the
//! events queue, one delivery per subscribed webhook through the deliveries queue, signed,
//! retried by SQS, with a circuit breaker on the webhook record.
//!
//! ```text
//! platform ─▶ events queue ─▶ fanout ─▶ deliveries queue ─▶ deliver ─▶ receiver
//!               │ (DLQ)                   ▲     │ (DLQ)          │
//!               ▼                         └─────┴── next attempt ┘ (delayed by SQS)
//! ```
//! - [`fanout`]: parse the event, query the subscribers, queue one delivery each.
//! - [`deliver`]: check the webhook, sign, send, count the outcome, queue the next attempt.
//! - [`ports`]: what they need from the world, one trait per use (webhook lookup, circuit
//!   counters, attempt records, the log, queues, the receiver's transport; secrets are
//!   [`crate::store::SecretStore`]).
//! - [`store`], [`queue`], [`crate::delivery::Sender`]: the AWS and HTTP adapters;
//!   [`memory`]: their in-memory twins, for in-process tests.
//! - [`keys`]: whether a webhook's key still lets it receive an event (fan-out and deliver).
//! - [`recover`]: `recover`'s walk of the delivery log, worked off by deliver.
//! - [`messages`], [`retry`], [`sqs_event`], [`config`]: the parts they share.

pub mod config;
pub mod deliver;
pub mod fanout;
pub mod keys;
pub mod memory;
pub mod messages;
pub mod ports;
pub mod queue;
pub mod recover;
pub mod retry;
pub mod sqs_event;
pub mod store;

pub use config::PipelineConfig;
pub use deliver::{Deliverer, Handled};
pub use fanout::{Fanned, Fanout};
pub use messages::{DeliveryMessage, Event};
pub use retry::RetryPolicy;
pub use sqs_event::{SqsBatchResponse, SqsEvent, SqsMessage};

#[cfg(test)]
mod tests;
