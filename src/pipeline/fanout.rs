//! The fan-out function: one platform event in, one delivery per subscribed webhook out.
//!
//! - Subscribers are found by two queries on the `byCompany` index (the event's company, and
//!   `ALL` for webhooks without a company, kept when their key may act for the company), never
//!   a scan. Each subscriber's key must be active, unexpired and hold the event's company
//!   ([`super::keys`]); a webhook its key refuses gets no delivery, with a log line and the
//!   `DeliveriesRefused` metric. Keys are cached per container (the API's TTL).
//! - Each delivery's id is derived from the event's queue message id and the webhook id, so a
//!   fan-out that runs again (SQS is at least once; a batch is retried after a failure) makes
//!   the very same deliveries, whose `webhook-id` receivers use to drop duplicates.
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

use super::messages::{delivery_id, DeliveryMessage, Event};
use super::queue::Queues;
use super::sqs_event::{SqsBatchResponse, SqsEvent, SqsMessage};
use super::store::PipelineStore;
use crate::delivery::DeliveryBody;
use crate::store::StoreError;

/// The fan-out function's dependencies, built once per container.
#[derive(Clone, Debug)]
pub struct Fanout {
    pub store: PipelineStore,
    pub queues: Queues,
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

impl Fanout {
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
        let subscribers = self
            .store
            .subscribers(event.event, event.company_id, OffsetDateTime::now_utc())
            .await?;
        for (stored, refusal) in &subscribers.refused {
            tracing::warn!(
                message_id = %message.message_id,
                webhook_id = %stored.webhook.id,
                api_key_id = %stored.webhook.api_key_id,
                event = event.event.as_str(),
                company_id = %event.company_id,
                reason = refusal.as_str(),
                "delivery refused: the webhook's key may not receive this company's events"
            );
            crate::emf::delivery_refused("fanout", refusal.as_str());
        }
        let bodies: Vec<String> = subscribers
            .webhooks
            .iter()
            .map(|stored| {
                let id = delivery_id(&message.message_id, stored.webhook.id);
                DeliveryMessage {
                    delivery_id: id,
                    webhook_id: stored.webhook.id,
                    company_id: Some(event.company_id),
                    event: event.event.as_str().to_owned(),
                    body: DeliveryBody::new(event.event, event.occurred_at, id, &event.data)
                        .as_str()
                        .to_owned(),
                    attempt: 1,
                    not_before: None,
                }
                .to_json()
            })
            .collect();
        self.queues
            .send_all(&self.deliveries_queue_url, &bodies)
            .await?;
        tracing::info!(
            message_id = %message.message_id,
            event = event.event.as_str(),
            company_id = %event.company_id,
            deliveries = bodies.len(),
            refused = subscribers.refused.len(),
            "event fanned out"
        );
        Ok(Fanned::Out(bodies.len()))
    }
}
