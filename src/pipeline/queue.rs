//! Sending to the pipeline's queues.

use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;

use crate::store::aws_error::classify;
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
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < bodies.len()
                && end - start < BATCH_ENTRIES
                && (end == start || bytes + bodies[end].len() <= BATCH_BYTES)
            {
                bytes += bodies[end].len();
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
        bodies: &[String],
        indices: &[usize],
    ) -> Result<Vec<usize>, StoreError> {
        let entries = indices
            .iter()
            .map(|&i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&bodies[i])
                    .build()
                    .map_err(|e| StoreError::Failed {
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
