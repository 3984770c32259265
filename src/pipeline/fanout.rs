//! The fan-out function: one platform event in, one delivery per subscribed webhook out.
//!
//! - Subscribers are found by two queries on the `byCompany` index (the event's company, and
//!   `ALL` for webhooks without a company, kept when their key may act for the company), never
//!   a scan. Each subscriber's key must be active, unexpired and hold the event's company
//!   ([`super::keys`]); a webhook its key refuses gets no delivery, with a log line and the
//!   `DeliveriesRefused` metric. Keys are cached per container (the API's TTL).
//! - The event is kept once in the delivery log, under its id: the publisher's `eventId`, or
//!   one derived from its content, never the SQS message id. Each delivery's id is derived
//!   from the event id and the webhook id, so a fan-out that runs again (SQS is at least once;
//!   a batch is retried after a failure), a DLQ redrive or a second publish of the same event
//!   makes the very same deliveries, whose `webhook-id` receivers use to drop duplicates.
//! - Each delivery is created in the log once (a conditional put): `pending` and queued, or
//!   `skipped` (not sent, recoverable) when the webhook is inactive or its circuit open. One
//!   that exists already is queued again only while it is `pending` (a fan-out that failed
//!   before queuing it); a delivered, failed or skipped one is left as it is.
//! - A malformed event, or one larger than
//!   [`MAX_EVENT_BYTES`](super::messages::MAX_EVENT_BYTES) (its deliveries would not fit
//!   in SQS), is sent to the events dead-letter queue at once, with an error log line and the
//!   `EventsRefused` metric, and counts as handled: it can never succeed, so it must not come
//!   back and hold the queue.
//!   Transient failures (DynamoDB, SQS) report the message as failed: SQS brings it back after
//!   the visibility timeout, and the queue's redrive moves it to the dead-letter queue after
//!   a few tries. Other messages of the batch are unaffected (partial batch answer).

use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::keys::{self, KeyRefusal};
use super::messages::{DeliveryMessage, Event};
use super::ports::{Partition, PipelineStorage, Queue, WebhookLookup};
use super::queue::Queues;
use super::sqs_event::{SqsBatchResponse, SqsEvent, SqsMessage};
use super::store::PipelineStore;
use crate::delivery::DeliveryBody;
use crate::domain::EventType;
use crate::store::delivery_log::{delivery_id, Delivery, DeliveryStatus, LoggedEvent};
use crate::store::{StoreError, StoredWebhook};

/// The fan-out function's dependencies, built once per container: DynamoDB and SQS in the
/// function, the in-memory twins ([`super::memory`]) in tests.
#[derive(Clone, Debug)]
pub struct Fanout<S = PipelineStore, Q = Queues> {
    pub store: S,
    pub queues: Q,
    /// Where deliveries go (`DELIVERIES_QUEUE_URL`).
    pub deliveries_queue_url: String,
    /// Where malformed events go (`EVENTS_DLQ_URL`).
    pub events_dlq_url: String,
}

/// What became of one event message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fanned {
    /// This many deliveries were queued.
    Out(usize),
    /// Malformed: moved to the dead-letter queue.
    DeadLettered,
}

/// Who gets one event.
#[derive(Clone, Debug, Default)]
pub struct Subscribers {
    /// The webhooks that get a delivery: `pending`, or `skipped` for those inactive or with
    /// an open circuit.
    pub webhooks: Vec<StoredWebhook>,
    /// Webhooks of the event's company whose key refuses it: no delivery.
    pub refused: Vec<(StoredWebhook, KeyRefusal)>,
}

/// Every webhook that gets `event` of `company`: those of the company, and those without a
/// company whose key may act for it; each only while its key is active, unexpired and holds
/// the company. Answers the subscribers and the webhooks their key refused (to be logged and
/// counted). A webhook without a company whose key does not hold the company is simply not a
/// subscriber.
pub async fn subscribers<L: WebhookLookup>(
    lookup: &L,
    event: EventType,
    company: Uuid,
    now: OffsetDateTime,
) -> Result<Subscribers, StoreError> {
    let mut found = Subscribers::default();
    for stored in lookup
        .subscribed(Partition::Company(company), event)
        .await?
    {
        let key = lookup.api_key(&stored.webhook.api_key_id).await?;
        match keys::refusal(key.as_ref(), Some(company), now) {
            None => found.webhooks.push(stored),
            Some(refusal) => found.refused.push((stored, refusal)),
        }
    }
    for stored in lookup.subscribed(Partition::AllCompanies, event).await? {
        let key = lookup.api_key(&stored.webhook.api_key_id).await?;
        let holds = key
            .as_ref()
            .is_some_and(|key| key.company_ids.contains(&company));
        if !holds {
            continue;
        }
        match keys::refusal(key.as_ref(), Some(company), now) {
            None => found.webhooks.push(stored),
            Some(refusal) => found.refused.push((stored, refusal)),
        }
    }
    Ok(found)
}

impl<S: PipelineStorage, Q: Queue> Fanout<S, Q> {
    /// Handles one batch; the answer lists the messages that must come back.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut failed = Vec::new();
        for message in &event.records {
            if let Err(error) = self.fan_out(message).await {
                tracing::error!(
                    message_id = %message.message_id,
                    error = %error,
                    "fan-out failed; the event will be retried"
                );
                failed.push(message.message_id.clone());
            }
        }
        SqsBatchResponse::failed(failed)
    }

    /// Fans one event message out.
    pub async fn fan_out(&self, message: &SqsMessage) -> Result<Fanned, StoreError> {
        let event = match Event::parse(&message.body) {
            Ok(event) => event,
            Err(malformed) => {
                self.queues
                    .send(&self.events_dlq_url, &message.body, Duration::ZERO)
                    .await?;
                tracing::error!(
                    message_id = %message.message_id,
                    kind = malformed.metric_reason(),
                    reason = %malformed,
                    bytes = message.body.len(),
                    "event refused and moved to the dead-letter queue"
                );
                crate::emf::event_refused(malformed.metric_reason());
                return Ok(Fanned::DeadLettered);
            }
        };
        let now = OffsetDateTime::now_utc();
        let logged = event.logged(now);
        self.store.put_event_once(&logged).await?;
        let subscribers = subscribers(&self.store, event.event, event.company_id, now).await?;
        for (stored, refusal) in &subscribers.refused {
            tracing::warn!(
                message_id = %message.message_id,
                event_id = %logged.id,
                webhook_id = %stored.webhook.id,
                api_key_id = %stored.webhook.api_key_id,
                event = event.event.as_str(),
                company_id = %event.company_id,
                reason = refusal.as_str(),
                "delivery refused: the webhook's key may not receive this company's events"
            );
            crate::emf::delivery_refused("fanout", refusal.as_str());
        }
        let spread = spread(
            &self.store,
            &self.queues,
            &self.deliveries_queue_url,
            &logged,
            &subscribers.webhooks,
            now,
        )
        .await?;
        tracing::info!(
            message_id = %message.message_id,
            event_id = %logged.id,
            event = event.event.as_str(),
            company_id = %event.company_id,
            deliveries = spread.queued,
            skipped = spread.skipped,
            already_done = spread.already,
            refused = subscribers.refused.len(),
            "event fanned out"
        );
        Ok(Fanned::Out(spread.queued))
    }
}

/// What [`spread`] did with an event's subscribers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    /// Deliveries queued (new ones, and `pending` ones a fan-out before left unqueued).
    pub queued: usize,
    /// Deliveries recorded `skipped`: the webhook inactive or its circuit open.
    pub skipped: usize,
    /// Deliveries that were there already, delivered, failed or skipped: left as they are.
    pub already: usize,
}

/// Creates `event`'s delivery to each of `webhooks` in the log (`pending`, or `skipped` for an
/// inactive webhook or an open circuit) and queues the pending ones. Shared by fan-out and the
/// operational events (`deliver`).
pub async fn spread<S: PipelineStorage, Q: Queue>(
    store: &S,
    queues: &Q,
    deliveries_queue_url: &str,
    event: &LoggedEvent,
    webhooks: &[StoredWebhook],
    now: OffsetDateTime,
) -> Result<Spread, StoreError> {
    let mut creates = JoinSet::new();
    for stored in webhooks {
        let webhook = &stored.webhook;
        let status = if !webhook.is_active || webhook.circuit_opened_at.is_some() {
            DeliveryStatus::Skipped
        } else {
            DeliveryStatus::Pending
        };
        let delivery = Delivery {
            id: delivery_id(&event.id, webhook.id),
            webhook_id: webhook.id,
            event_id: event.id.clone(),
            event: event.event,
            status,
            created_at: now,
            last_attempt_at: None,
            last_http_status: None,
            next_attempt_at: None,
            attempts: Vec::new(),
        };
        let log = store.clone();
        creates.spawn(async move {
            let found = log.create_delivery(&delivery).await;
            (delivery, found)
        });
    }
    let mut spread = Spread::default();
    let mut bodies = Vec::new();
    let mut failure = None;
    while let Some(joined) = creates.join_next().await {
        let (delivery, found) = match joined {
            Ok(done) => done,
            Err(_) => {
                failure = Some(StoreError::Failed {
                    operation: "fan-out task",
                    kind: "panicked".into(),
                });
                continue;
            }
        };
        let status = match found {
            Ok(status) => status,
            Err(error) => {
                failure = Some(error);
                continue;
            }
        };
        match (delivery.status, status) {
            (_, DeliveryStatus::Pending) => {
                bodies.push(
                    DeliveryMessage {
                        delivery_id: delivery.id,
                        webhook_id: delivery.webhook_id,
                        company_id: event.company_id,
                        event: event.event.as_str().to_owned(),
                        body: DeliveryBody::new(
                            event.event,
                            event.occurred_at,
                            delivery.id,
                            &event.data,
                        )
                        .as_str()
                        .to_owned(),
                        attempt: 1,
                        not_before: None,
                        single: false,
                        retry_base: 0,
                    }
                    .to_json(),
                );
            }
            (DeliveryStatus::Skipped, DeliveryStatus::Skipped) => {
                tracing::info!(
                    delivery_id = %delivery.id,
                    webhook_id = %delivery.webhook_id,
                    event_id = %event.id,
                    event = event.event.as_str(),
                    "delivery skipped: the webhook is inactive or its circuit open (recoverable)"
                );
                spread.skipped += 1;
            }
            _ => spread.already += 1,
        }
    }
    if let Some(error) = failure {
        // Those created are kept; the message comes back, finds them and queues the pending.
        return Err(error);
    }
    queues.send_all(deliveries_queue_url, &bodies).await?;
    spread.queued = bodies.len();
    Ok(spread)
}
