//! The SQS event a Lambda event source mapping hands a function, and the partial batch answer
//! (`ReportBatchItemFailures`).
//!
//! Our own few serde structs rather than `aws_lambda_events`: its `sqs` feature brings
//! serde_with, chrono, jiff and schemars for the two fields we read (`messageId`, `body`).

use serde::{Deserialize, Serialize};

/// A batch of messages (`{"Records": [...]}`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct SqsEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<SqsMessage>,
}

/// One message of a batch: the fields the pipeline reads (the rest are ignored).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SqsMessage {
    /// SQS's id of the message: stable across redeliveries of the same message.
    pub message_id: String,
    /// Used by the local poller to delete successes (Lambda does it itself).
    #[serde(default)]
    pub receipt_handle: String,
    #[serde(default)]
    pub body: String,
}

impl SqsMessage {
    /// A message with `id` and `body` (tests and the local poller build batches with it).
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            message_id: id.into(),
            receipt_handle: String::new(),
            body: body.into(),
        }
    }
}

/// The answer: the messages that failed and must come back; the rest are deleted.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SqsBatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One message that failed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}

impl SqsBatchResponse {
    /// The answer for these failed message ids.
    pub fn failed(ids: impl IntoIterator<Item = String>) -> Self {
        Self {
            batch_item_failures: ids
                .into_iter()
                .map(|item_identifier| BatchItemFailure { item_identifier })
                .collect(),
        }
    }

    /// The ids of the failed messages.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lambdas_sqs_event_and_writes_the_partial_batch_answer() {
        let event: SqsEvent = serde_json::from_str(
            r#"{"Records":[{"messageId":"m1","receiptHandle":"r1","body":"{}",
                "attributes":{"ApproximateReceiveCount":"1"},"eventSource":"aws:sqs"}]}"#,
        )
        .unwrap();
        assert_eq!(event.records[0].message_id, "m1");
        assert_eq!(event.records[0].body, "{}");
        let answer = serde_json::to_string(&SqsBatchResponse::failed(["m1".to_owned()])).unwrap();
        assert_eq!(answer, r#"{"batchItemFailures":[{"itemIdentifier":"m1"}]}"#);
    }
}
