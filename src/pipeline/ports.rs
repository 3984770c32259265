//! The pipeline's ports: what fan-out, deliver and recover need from the world, one small trait
//! per use, each with an AWS adapter and an in-memory twin ([`super::memory`]), so that their
//! logic (retry delays, the circuit at 10 and on `410`, `Retry-After`, deleted or inactive
//! webhooks, a batch's failures, recover's walk) is tested in-process in milliseconds, and
//! moto keeps the adapters' tests and the end-to-end ones.
//!
//! | Port | What | AWS adapter | Twin |
//! |---|---|---|---|
//! | [`WebhookLookup`] | subscribers by index, a webhook, its key | [`PipelineStore`] | [`MemoryPipeline`] |
//! | [`CircuitCounters`] | open the circuit when due, reset on success | [`PipelineStore`] | [`MemoryPipeline`] |
//! | [`AttemptRecords`] | each attempt written once, a failure with its count | [`PipelineStore`] | [`MemoryPipeline`] |
//! | [`EventLog`] | events and deliveries as the pipeline writes them | [`PipelineStore`] | [`MemoryPipeline`] |
//! | [`Queue`] | SQS sends, delayed and batched | [`Queues`] | [`MemoryQueues`] |
//! | [`Transport`] | one signed POST to a receiver | [`Sender`] | [`ScriptedTransport`] |
//! | [`SecretStore`](crate::store::SecretStore) | a webhook's secret at its version | `SecretsManagerStore` | `MemorySecrets` |
//!
//! [`PipelineStore`]: super::store::PipelineStore
//! [`MemoryPipeline`]: super::memory::MemoryPipeline
//! [`Queues`]: super::queue::Queues
//! [`MemoryQueues`]: super::memory::MemoryQueues
//! [`Sender`]: crate::delivery::Sender
//! [`ScriptedTransport`]: super::memory::ScriptedTransport

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::delivery::{Outcome, SignedRequest};
use crate::domain::{ApiKey, EventType, WebhookUrl};
use crate::store::delivery_log::{Delivery, DeliveryStatus, EventHead, EventId, LoggedEvent};
use crate::store::{StoreError, StoredWebhook};

/// Consecutive failed attempts that open a webhook's circuit.
pub const CIRCUIT_THRESHOLD: u32 = 10;

/// Where the fan-out index files a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// Webhooks of this company.
    Company(Uuid),
    /// Webhooks without a company (they get the events of every company their key holds).
    AllCompanies,
}

/// Finding webhooks and their keys.
pub trait WebhookLookup: Send + Sync {
    /// Webhooks filed under `partition` that subscribe to `event`, inactive ones and open
    /// circuits too (their deliveries are recorded `skipped`), from an index, never a scan.
    fn subscribed(
        &self,
        partition: Partition,
        event: EventType,
    ) -> impl Future<Output = Result<Vec<StoredWebhook>, StoreError>> + Send;

    /// The webhooks of `api_key_id` that subscribe to `event` (an operational event's
    /// subscribers), from the index by owner, never a scan.
    fn webhooks_of_key(
        &self,
        api_key_id: &str,
        event: EventType,
    ) -> impl Future<Output = Result<Vec<StoredWebhook>, StoreError>> + Send;

    /// One webhook (consistent); a deleted one reads as none.
    fn webhook(
        &self,
        webhook_id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredWebhook>, StoreError>> + Send;

    /// The API key `api_key_id` (`None` when it is gone), as the API sees it (the AWS adapter
    /// caches it for the API's key cache TTL).
    fn api_key(
        &self,
        api_key_id: &str,
    ) -> impl Future<Output = Result<Option<ApiKey>, StoreError>> + Send;
}

/// What a failed attempt did to the circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitChange {
    /// One more consecutive failure; the circuit stays closed.
    Counted(u32),
    /// This failure opened the circuit (the 10th in a row, or a `410 Gone`).
    Opened,
    /// The circuit was open already (another attempt opened it).
    AlreadyOpen,
    /// The webhook is gone (deleted in the meantime): nothing was written.
    Gone,
}

/// The circuit breaker's counters on the webhook record.
pub trait CircuitCounters: Send + Sync {
    /// Opens the circuit if this failure is due to: at once when `open_now` (the receiver
    /// answered `410 Gone`), else when the count has reached [`CIRCUIT_THRESHOLD`], judged on
    /// the count as it is now (so concurrent failures that together reach it open it, once).
    /// Changes nothing when not due. Idempotent.
    fn open_circuit_if_due(
        &self,
        webhook_id: Uuid,
        open_now: bool,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<CircuitChange, StoreError>> + Send;

    /// A successful attempt sets the count back to 0, writing only when it was not 0 already
    /// (a healthy webhook's ETag does not move with every delivery). Idempotent.
    fn record_success(
        &self,
        webhook_id: Uuid,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One attempt, as recorded (and logged): no body, no secret, no header value.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    /// The SQS message that made the attempt: a message that comes back finds its own record.
    pub message_id: String,
    /// Drawn per handling of a message: a retried write that finds the record knows its own.
    pub claim: Uuid,
    /// Unix seconds the next attempt is planned for (failed attempts).
    pub next_attempt_at: Option<i64>,
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub event: String,
    pub attempt: u32,
    pub at: OffsetDateTime,
    /// `delivered`, `failed` or `gone` (410).
    pub outcome: &'static str,
    /// The delivery's status once this attempt is recorded: `delivered`, `pending` (a retry
    /// follows) or `failed` (the last attempt, a `410`, a resend's one attempt).
    pub status: DeliveryStatus,
    /// The failure in words (`the endpoint answered 500`), none on success.
    pub reason: Option<String>,
    pub http_status: Option<u16>,
    pub duration_ms: Option<u64>,
}

/// What an attempt's record says about it, read before the attempt or handed back when a
/// conditional write found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptMark {
    /// The SQS message id of the message that made the attempt (absent in older records).
    pub message_id: Option<String>,
    /// The token of the run that wrote it (one per handling of a message).
    pub claim: Option<String>,
    /// `delivered`, `failed` or `gone`.
    pub outcome: String,
    /// Unix seconds the next attempt was planned for (failed attempts).
    pub next_attempt_at: Option<i64>,
}

/// What a conditional write of an attempt record found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Written now, or by this very run (a retried call whose first try landed): go on.
    Written,
    /// Written by another copy of the message: that copy goes on, this one stops.
    Duplicate(AttemptMark),
    /// Written alone: the webhook was deleted meanwhile (nothing counted).
    WebhookGone,
}

impl Recorded {
    /// The write was refused because the record exists: ours if it holds this run's claim.
    /// Both adapters judge a refusal by this one rule.
    pub fn judge(existing: Option<AttemptMark>, record: &AttemptRecord) -> Self {
        let claim = record.claim.to_string();
        match existing {
            Some(mark) if mark.claim.as_deref() == Some(claim.as_str()) => Recorded::Written,
            Some(mark) => Recorded::Duplicate(mark),
            // The emulator or service did not hand the record back: another copy's, to be safe
            // against counting twice (a real one always does, ReturnValuesOnConditionCheckFailure).
            None => Recorded::Duplicate(AttemptMark {
                message_id: None,
                claim: None,
                outcome: String::new(),
                next_attempt_at: None,
            }),
        }
    }
}

/// Each attempt written once per (delivery, attempt number), however often its message comes
/// back.
pub trait AttemptRecords: Send + Sync {
    /// The webhook and the mark of `attempt` on its delivery, in one consistent read: whether
    /// the attempt was made already is known before it is made again.
    fn read_delivery(
        &self,
        webhook_id: Uuid,
        delivery_id: Uuid,
        attempt: u32,
    ) -> impl Future<Output = Result<(Option<StoredWebhook>, Option<AttemptMark>), StoreError>> + Send;

    /// Records a failed attempt and counts it on the webhook (which moves its `version`), as
    /// one atomic write: the entry only if the attempt has none yet. So an attempt is counted
    /// exactly once and only the copy that wrote it goes on. A webhook deleted meanwhile gets
    /// the entry alone ([`Recorded::WebhookGone`]).
    fn record_failed_attempt(
        &self,
        record: &AttemptRecord,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    /// Records a successful attempt (or one whose webhook is gone), only if the attempt has no
    /// entry yet.
    fn put_attempt_once(
        &self,
        record: &AttemptRecord,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;
}

/// A delivery as recover finds it: the delivery and the recover step that last moved it to
/// `pending`, if one did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDelivery {
    pub delivery: Delivery,
    pub recovered_by: Option<String>,
}

/// The delivery log as the pipeline writes and walks it (the API reads it through
/// [`crate::store::delivery_log::DeliveryLog`]).
pub trait EventLog: Send + Sync {
    /// Stores an event once: a second publish, a redrive or a recover leaves it as first stored.
    fn put_event_once(
        &self,
        event: &LoggedEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Creates a delivery if it does not exist, and answers the status it has now: the new
    /// one, or the one a fan-out that ran before left.
    fn create_delivery(
        &self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<DeliveryStatus, StoreError>> + Send;

    /// Records a `pending` delivery as `skipped` (not attempted, recoverable). Answers whether
    /// it moved: one in another status, or none, is left as it is.
    fn skip_pending(
        &self,
        delivery_id: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Recover's move: `failed` or `skipped` (or absent: then created as `delivery`) to
    /// `pending`, marked with `by` (the step's SQS message id). A move refused because the
    /// delivery is `pending` under the same mark is `by`'s own (a retried write whose first try
    /// landed, or the same message come back) and answers moved, so that it is queued.
    fn move_to_pending(
        &self,
        delivery: &Delivery,
        by: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One page of the events of `company` that occurred in `[since, until)`, oldest first
    /// (without their data), after the `occurred_key` `after`; the next page's `after`, if any.
    fn events_of_company(
        &self,
        company: Uuid,
        since: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<EventHead>, Option<String>), StoreError>> + Send;

    /// The deliveries of `ids` that exist (consistent reads).
    fn deliveries(
        &self,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<HashMap<Uuid, FoundDelivery>, StoreError>> + Send;

    /// The events of `ids` that exist (consistent reads).
    fn events(
        &self,
        ids: &[EventId],
    ) -> impl Future<Output = Result<HashMap<EventId, LoggedEvent>, StoreError>> + Send;
}

/// What the pipeline keeps: every store port together, cloned into the tasks of a batch.
pub trait PipelineStorage:
    WebhookLookup + CircuitCounters + AttemptRecords + EventLog + Clone + 'static
{
}
impl<T: WebhookLookup + CircuitCounters + AttemptRecords + EventLog + Clone + 'static>
    PipelineStorage for T
{
}

/// Sending to the pipeline's queues.
pub trait Queue: Send + Sync + 'static {
    /// Sends one message, delayed by `delay` (at most SQS's 15 minutes).
    fn send(
        &self,
        queue_url: &str,
        body: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sends every body with its delay (batched); fails as a whole if any is refused (the
    /// caller retries all of it, which is safe: a delivery's id does not change).
    fn send_all_delayed(
        &self,
        queue_url: &str,
        bodies: &[(String, Duration)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`Queue::send_all_delayed`] without delays.
    fn send_all(
        &self,
        queue_url: &str,
        bodies: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let delayed: Vec<(String, Duration)> =
            bodies.iter().map(|b| (b.clone(), Duration::ZERO)).collect();
        async move { self.send_all_delayed(queue_url, &delayed).await }
    }
}

/// One signed POST to a receiver, answered within `min(timeout, deadline)`.
pub trait Transport: Send + Sync + 'static {
    fn send(
        &self,
        url: &WebhookUrl,
        request: &SignedRequest,
        timeout: Duration,
        deadline: Instant,
    ) -> impl Future<Output = Outcome> + Send;
}

/// The AWS adapter: hyper 1 and rustls, with the URL policy re-checked at every connection.
impl Transport for crate::delivery::Sender {
    async fn send(
        &self,
        url: &WebhookUrl,
        request: &SignedRequest,
        timeout: Duration,
        deadline: Instant,
    ) -> Outcome {
        crate::delivery::Sender::send(self, url, request, timeout, deadline).await
    }
}
