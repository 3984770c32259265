//! Sending to the pipeline's queues: [`Queues`], the SQS adapter of [`Queue`], and
//! [`SqsPipelineQueue`], the API's port on the deliveries queue (resend, recover).

use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;

use super::messages::{DeliveryMessage, RecoverMessage};
use super::ports::Queue;
use crate::delivery::DeliveryBody;
use crate::store::aws_error::classify;
use crate::store::delivery_log::{PipelineQueue, RecoverJob, ResendJob};
use crate::store::StoreError;

/// SQS delays a message by at most 15 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// At most 10 messages per `SendMessageBatch`...
const BATCH_ENTRIES: usize = 10;
/// ...and at most 256 KiB in all (kept under, for the attribute overhead).
const BATCH_BYTES: usize = 240 * 1024;

/// Sends messages to SQS queues.
#[derive(Clone, Debug)]
pub struct Queues {
    client: Client,
}

impl Queues {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Sends one message, delayed by `delay` (at most [`MAX_DELAY`]).
    pub async fn send(
        &self,
        queue_url: &str,
        body: &str,
        delay: Duration,
    ) -> Result<(), StoreError> {
        let seconds = delay.min(MAX_DELAY).as_secs() as i32;
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(seconds)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("sqs.SendMessage", &e))
    }

    /// Sends every body, in batches of at most 10 messages and 240 KiB. Entries SQS refuses are
    /// sent once more; any still refused make the whole call fail (the caller retries it all,
    /// which is safe: a delivery's id does not change).
    pub async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<(), StoreError> {
        let delayed: Vec<(String, Duration)> =
            bodies.iter().map(|b| (b.clone(), Duration::ZERO)).collect();
        self.send_all_delayed(queue_url, &delayed).await
    }

    /// [`Queues::send_all`] with a delay per message (at most [`MAX_DELAY`] each).
    pub async fn send_all_delayed(
        &self,
        queue_url: &str,
        bodies: &[(String, Duration)],
    ) -> Result<(), StoreError> {
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < bodies.len()
                && end - start < BATCH_ENTRIES
                && (end == start || bytes + bodies[end].0.len() <= BATCH_BYTES)
            {
                bytes += bodies[end].0.len();
                end += 1;
            }
            let mut pending: Vec<usize> = (start..end).collect();
            for _ in 0..2 {
                if pending.is_empty() {
                    break;
                }
                pending = self.send_batch(queue_url, bodies, &pending).await?;
            }
            if !pending.is_empty() {
                return Err(StoreError::Unavailable {
                    operation: "sqs.SendMessageBatch",
                    kind: format!("{} messages refused", pending.len()),
                });
            }
            start = end;
        }
        Ok(())
    }

    /// One batch of `indices`; answers the indices SQS refused.
    async fn send_batch(
        &self,
        queue_url: &str,
        bodies: &[(String, Duration)],
        indices: &[usize],
    ) -> Result<Vec<usize>, StoreError> {
        let entries = indices
            .iter()
            .map(|&i| {
                let (body, delay) = &bodies[i];
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body);
                let entry = if delay.is_zero() {
                    entry
                } else {
                    entry.delay_seconds(delay.min(&MAX_DELAY).as_secs() as i32)
                };
                entry.build().map_err(|e| StoreError::Failed {
                    operation: "sqs.SendMessageBatch",
                    kind: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify("sqs.SendMessageBatch", &e))?;
        Ok(output
            .failed()
            .iter()
            .filter_map(|failure| failure.id().parse().ok())
            .collect())
    }
}

/// The pipeline's port on SQS ([`Queue`]): the methods above.
impl Queue for Queues {
    async fn send(&self, queue_url: &str, body: &str, delay: Duration) -> Result<(), StoreError> {
        Queues::send(self, queue_url, body, delay).await
    }

    async fn send_all_delayed(
        &self,
        queue_url: &str,
        bodies: &[(String, Duration)],
    ) -> Result<(), StoreError> {
        Queues::send_all_delayed(self, queue_url, bodies).await
    }
}

/// The API's port on the deliveries queue ([`PipelineQueue`]): a resend as one delivery
/// message (its one attempt, not retried), a recover as a message that deliver works off.
#[derive(Clone, Debug)]
pub struct SqsPipelineQueue {
    queues: Queues,
    deliveries_queue_url: String,
}

impl SqsPipelineQueue {
    pub fn new(client: Client, deliveries_queue_url: impl Into<String>) -> Self {
        Self {
            queues: Queues::new(client),
            deliveries_queue_url: deliveries_queue_url.into(),
        }
    }

    /// The resend's message: the same delivery id and body, a new attempt number.
    pub fn resend_message(job: &ResendJob) -> DeliveryMessage {
        let (delivery, event) = (&job.delivery, &job.event);
        DeliveryMessage {
            delivery_id: delivery.id,
            webhook_id: delivery.webhook_id,
            company_id: event.company_id,
            event: event.event.as_str().to_owned(),
            body: DeliveryBody::new(event.event, event.occurred_at, delivery.id, &event.data)
                .as_str()
                .to_owned(),
            attempt: job.attempt,
            not_before: None,
            single: true,
            retry_base: 0,
        }
    }
}

impl PipelineQueue for SqsPipelineQueue {
    async fn queue_resend(&self, job: &ResendJob) -> Result<(), StoreError> {
        let message = Self::resend_message(job).to_json();
        self.queues
            .send(&self.deliveries_queue_url, &message, Duration::ZERO)
            .await
    }

    async fn queue_recover(&self, job: &RecoverJob) -> Result<(), StoreError> {
        let message = RecoverMessage::new(job.clone()).to_json();
        self.queues
            .send(&self.deliveries_queue_url, &message, Duration::ZERO)
            .await
    }
}
