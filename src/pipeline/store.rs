//! The pipeline's DynamoDB adapter ([`PipelineStore`]) of its store ports
//! ([`super::ports`]): subscribers by index queries (never a scan), the API key of a webhook
//! (cached), the circuit breaker's counters, and the delivery log's attempt entries
//! (`store::dynamodb::deliveries`), written in the same calls as the counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::KeyCache;
use super::ports::{
    AttemptMark, AttemptRecord, AttemptRecords, CircuitChange, CircuitCounters, EventLog,
    FoundDelivery, Partition, Recorded, WebhookLookup, CIRCUIT_THRESHOLD,
};
use crate::domain::time_format::rfc3339;
use crate::domain::{ApiKey, EventType};
use crate::store::aws_error::classify;
use crate::store::delivery_log::{
    Attempt, Delivery, DeliveryStatus, EventHead, EventId, LoggedEvent,
};
use crate::store::dynamodb::deliveries::{
    delivery_from_item, delivery_item_key, event_from_item, event_item_key, recovered_by,
    AttemptEntry, AttemptWrite, DynamoDeliveryLog,
};
use crate::store::dynamodb::schema::{
    API_KEY_ID, CIRCUIT_OPENED_AT, CONSECUTIVE_FAILURES, EVENTS, LOG_ID, UPDATED_AT, VERSION,
};
use crate::store::dynamodb::{
    api_key_from_item, query_webhooks, update_item_of, webhook_from_item, Item, ALL_COMPANIES,
    API_KEYS_BY_ID_INDEX, BY_API_KEY_INDEX, BY_COMPANY_INDEX, FANOUT_COMPANY, FENCE, WEBHOOK_ID,
};
use crate::store::{StoreError, StoredWebhook};

/// The pipeline's view of the three tables (webhooks, API keys, the delivery log).
#[derive(Clone, Debug)]
pub struct PipelineStore {
    client: Client,
    webhooks_table: String,
    api_keys_table: String,
    /// The delivery log: events, deliveries and their attempts.
    pub log: DynamoDeliveryLog,
    /// Shared by the clones of one container's store (fan-out or deliver).
    keys: Arc<KeyCache>,
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// The record exists and is not a tombstone: an update must never create an item (UpdateItem
/// would) or touch a deleted webhook's tombstone.
const LIVE: &str = "attribute_exists(#id) AND attribute_not_exists(#fence)";
/// A cancelled transaction's reason for an item whose condition failed.
const CONDITION_FAILED: &str = "ConditionalCheckFailed";

impl PipelineStore {
    pub fn new(
        client: Client,
        webhooks_table: impl Into<String>,
        api_keys_table: impl Into<String>,
        log_table: impl Into<String>,
    ) -> Self {
        Self {
            log: DynamoDeliveryLog::new(client.clone(), log_table),
            client,
            webhooks_table: webhooks_table.into(),
            api_keys_table: api_keys_table.into(),
            keys: Arc::new(KeyCache::default()),
        }
    }

    /// The same store with its own key cache of `ttl` (`API_KEY_CACHE_TTL_SECONDS`; zero reads
    /// the key for every check).
    pub fn with_key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.keys = Arc::new(KeyCache::new(ttl));
        self
    }

    /// Reads the key record of `api_key_id` on the key table's index by id.
    async fn read_api_key(&self, api_key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        const OPERATION: &str = "dynamodb.Query(api key by id)";
        let output = self
            .client
            .query()
            .table_name(&self.api_keys_table)
            .index_name(API_KEYS_BY_ID_INDEX)
            .key_condition_expression("#id = :id")
            .expression_attribute_names("#id", API_KEY_ID)
            .expression_attribute_values(":id", s(api_key_id))
            .send()
            .await
            .map_err(|e| classify(OPERATION, &e))?;
        match output.items().first() {
            None => Ok(None),
            Some(item) => api_key_from_item(item).map(Some).ok_or(StoreError::Failed {
                operation: OPERATION,
                kind: "malformed api key record".into(),
            }),
        }
    }
}

impl WebhookLookup for PipelineStore {
    /// Webhooks that subscribe to `event` and are filed under `partition` in the fan-out
    /// index (a company id, or [`ALL_COMPANIES`]), inactive ones and open circuits too: their
    /// deliveries are recorded as `skipped` (DELIVERY.md: skipped, not dropped).
    async fn subscribed(
        &self,
        partition: Partition,
        event: EventType,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        const OPERATION: &str = "dynamodb.Query(webhooks by company)";
        let partition_key = match partition {
            Partition::Company(company) => company.to_string(),
            Partition::AllCompanies => ALL_COMPANIES.to_owned(),
        };
        let query = self
            .client
            .query()
            .table_name(&self.webhooks_table)
            .index_name(BY_COMPANY_INDEX)
            .key_condition_expression("#company = :company")
            .filter_expression("contains(#events, :event)")
            .expression_attribute_names("#company", FANOUT_COMPANY)
            .expression_attribute_names("#events", EVENTS)
            .expression_attribute_values(":company", s(&partition_key))
            .expression_attribute_values(":event", s(event.as_str()));
        query_webhooks(query, OPERATION).await
    }

    /// The webhooks of `api_key_id` that subscribe to `event` (an operational event's
    /// subscribers), from the index by owner, never a scan.
    async fn webhooks_of_key(
        &self,
        api_key_id: &str,
        event: EventType,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        const OPERATION: &str = "dynamodb.Query(webhooks by key)";
        let query = self
            .client
            .query()
            .table_name(&self.webhooks_table)
            .index_name(BY_API_KEY_INDEX)
            .key_condition_expression("#key = :key")
            .filter_expression("contains(#events, :event)")
            .expression_attribute_names("#key", API_KEY_ID)
            .expression_attribute_names("#events", EVENTS)
            .expression_attribute_values(":key", s(api_key_id))
            .expression_attribute_values(":event", s(event.as_str()));
        query_webhooks(query, OPERATION).await
    }

    /// One webhook record (consistent); a tombstone reads as none.
    async fn webhook(&self, webhook_id: Uuid) -> Result<Option<StoredWebhook>, StoreError> {
        const OPERATION: &str = "dynamodb.GetItem(webhook)";
        let output = self
            .client
            .get_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&webhook_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(OPERATION, &e))?;
        match output.item {
            Some(item) if !item.contains_key(FENCE) => {
                webhook_from_item(&item)
                    .map(Some)
                    .ok_or(StoreError::Failed {
                        operation: OPERATION,
                        kind: "malformed webhook record".into(),
                    })
            }
            _ => Ok(None),
        }
    }

    /// The API key `api_key_id` (`None` when it is gone), from the container's cache while
    /// fresh ([`KeyCache`]).
    async fn api_key(&self, api_key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.keys
            .get(api_key_id, || self.read_api_key(api_key_id))
            .await
    }
}

impl AttemptRecords for PipelineStore {
    /// The webhook record and the delivery with its entry of `attempt`, in one consistent
    /// `BatchGetItem` over both tables (the call that was the webhook's `GetItem`): whether the
    /// attempt was made already is known before it is made again. A tombstone reads as no
    /// webhook.
    async fn read_delivery(
        &self,
        webhook_id: Uuid,
        delivery_id: Uuid,
        attempt: u32,
    ) -> Result<(Option<StoredWebhook>, Option<AttemptMark>), StoreError> {
        const OPERATION: &str = "dynamodb.BatchGetItem(webhook and delivery)";
        let webhook_key = webhook_id.to_string();
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Failed {
            operation: OPERATION,
            kind: e.to_string(),
        };
        let webhook_keys = KeysAndAttributes::builder()
            .keys(HashMap::from([(WEBHOOK_ID.to_owned(), s(&webhook_key))]))
            .consistent_read(true)
            .build()
            .map_err(invalid)?;
        let delivery_keys = KeysAndAttributes::builder()
            .keys(HashMap::from([(
                LOG_ID.to_owned(),
                s(&delivery_item_key(delivery_id)),
            )]))
            .consistent_read(true)
            .build()
            .map_err(invalid)?;
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.webhooks_table, webhook_keys)
            .request_items(self.log.table(), delivery_keys)
            .send()
            .await
            .map_err(|e| classify(OPERATION, &e))?;
        // Throttled keys come back unprocessed rather than as an error: the message is then
        // reported failed and comes back, as for any unavailable read.
        if output
            .unprocessed_keys()
            .is_some_and(|unprocessed| !unprocessed.is_empty())
        {
            return Err(StoreError::Unavailable {
                operation: OPERATION,
                kind: "keys left unprocessed".into(),
            });
        }
        let items = |table: &str| {
            output
                .responses()
                .and_then(|r| r.get(table))
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        let mut webhook = None;
        for item in items(&self.webhooks_table) {
            if !item.contains_key(FENCE) {
                webhook = Some(webhook_from_item(item).ok_or(StoreError::Failed {
                    operation: OPERATION,
                    kind: "malformed webhook record".into(),
                })?);
            }
        }
        let mark = items(self.log.table())
            .first()
            .and_then(|item| mark_in(item, attempt));
        Ok((webhook, mark))
    }

    /// Records a failed attempt and counts it, in one `TransactWriteItems`: the attempt record,
    /// written only if there is none yet (`attribute_not_exists`), and the count's atomic
    /// `ADD` (which moves the record's `version`, its ETag). So an attempt is counted exactly
    /// once however often its message comes back, and only the copy that wrote the record
    /// goes on (queues the next attempt): one retry chain per delivery.
    async fn record_failed_attempt(&self, record: &AttemptRecord) -> Result<Recorded, StoreError> {
        const OPERATION: &str = "dynamodb.TransactWriteItems(attempt and failure count)";
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Failed {
            operation: OPERATION,
            kind: e.to_string(),
        };
        let entry = self.log.attempt_update(&attempt_write(record))?;
        let count = Update::builder()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&record.webhook_id.to_string()))
            .update_expression("ADD #failures :one, #v :one SET #updated = :now")
            .condition_expression(LIVE)
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#failures", CONSECUTIVE_FAILURES)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&rfc3339(whole_seconds(record.at))))
            .build()
            .map_err(invalid)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(entry).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(Recorded::Written),
            Err(error) => error,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        else {
            return Err(classify(OPERATION, &error));
        };
        let reasons = cancelled.cancellation_reasons();
        let failed = |i: usize| {
            reasons
                .get(i)
                .and_then(|r| r.code())
                .is_some_and(|code| code == CONDITION_FAILED)
        };
        if failed(0) {
            let existing = reasons[0]
                .item()
                .and_then(|item| mark_in(item, record.attempt));
            return Ok(Recorded::judge(existing, record));
        }
        if failed(1) {
            // The webhook was deleted meanwhile: nothing to count, but the attempt was made.
            return match self.put_attempt_once(record).await? {
                Recorded::Written => Ok(Recorded::WebhookGone),
                other => Ok(other),
            };
        }
        Err(classify(OPERATION, &error))
    }

    /// Records a successful attempt (or one whose webhook is gone) on its delivery, written
    /// only if the attempt has no entry yet; see [`Recorded`].
    async fn put_attempt_once(&self, record: &AttemptRecord) -> Result<Recorded, StoreError> {
        const OPERATION: &str = "dynamodb.UpdateItem(attempt)";
        let update = self.log.attempt_update(&attempt_write(record))?;
        // The entry's update, sent alone (it asks for the old item on refusal).
        let result = update_item_of(&self.client, &update).send().await;
        match result {
            Ok(_) => Ok(Recorded::Written),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let existing = failed.item().and_then(|item| mark_in(item, record.attempt));
                    Ok(Recorded::judge(existing, record))
                }
                _ => Err(classify(OPERATION, &error)),
            },
        }
    }
}

impl CircuitCounters for PipelineStore {
    /// Opens the circuit if this failure is due to: at once when `open_now` (the receiver
    /// answered `410 Gone`), else when the count has reached [`CIRCUIT_THRESHOLD`]. One
    /// conditional update, evaluated by DynamoDB on the count as it is now (so concurrent
    /// failures that together reach the threshold open it, once); it changes nothing when not
    /// due, and the old record it hands back on refusal tells why. Idempotent.
    async fn open_circuit_if_due(
        &self,
        webhook_id: Uuid,
        open_now: bool,
        now: OffsetDateTime,
    ) -> Result<CircuitChange, StoreError> {
        const OPERATION: &str = "dynamodb.UpdateItem(open circuit)";
        let at = rfc3339(whole_seconds(now));
        let due = if open_now {
            ""
        } else {
            " AND #failures >= :threshold"
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&webhook_id.to_string()))
            .update_expression("SET #opened = :now, #updated = :now ADD #v :one")
            .condition_expression(format!(
                "{LIVE} AND (attribute_not_exists(#opened) \
                 OR attribute_type(#opened, :null)){due}"
            ))
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#opened", CIRCUIT_OPENED_AT)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&at))
            .expression_attribute_values(":null", s("NULL"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if !open_now {
            request = request
                .expression_attribute_names("#failures", CONSECUTIVE_FAILURES)
                .expression_attribute_values(":threshold", n(CIRCUIT_THRESHOLD));
        }
        match request.send().await {
            Ok(_) => Ok(CircuitChange::Opened),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let old = failed.item();
                    let live = old.is_some_and(|item| !item.contains_key(FENCE));
                    let open = old
                        .and_then(|item| item.get(CIRCUIT_OPENED_AT))
                        .is_some_and(|at| at.as_s().is_ok());
                    let failures = old
                        .and_then(|item| item.get(CONSECUTIVE_FAILURES))
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    Ok(match (live, open) {
                        (false, _) => CircuitChange::Gone,
                        (true, true) => CircuitChange::AlreadyOpen,
                        (true, false) => CircuitChange::Counted(failures),
                    })
                }
                _ => Err(classify(OPERATION, &error)),
            },
        }
    }

    /// A successful attempt sets the count back to 0, writing only when it was not 0 already
    /// (so a healthy webhook's ETag does not change with every delivery). Idempotent.
    async fn record_success(
        &self,
        webhook_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&webhook_id.to_string()))
            .update_expression("SET #failures = :zero, #updated = :now ADD #v :one")
            .condition_expression(format!("{LIVE} AND #failures > :zero"))
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#failures", CONSECUTIVE_FAILURES)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&rfc3339(whole_seconds(now))))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(classify("dynamodb.UpdateItem(reset failures)", &e)),
        }
    }
}

/// The log's writes are [`DynamoDeliveryLog`]'s; the two reads by key are its
/// `BatchGetItem`s, decoded here.
impl EventLog for PipelineStore {
    async fn put_event_once(&self, event: &LoggedEvent) -> Result<(), StoreError> {
        self.log.put_event_once(event).await
    }

    async fn create_delivery(&self, delivery: &Delivery) -> Result<DeliveryStatus, StoreError> {
        self.log.create_delivery(delivery).await
    }

    async fn skip_pending(&self, delivery_id: Uuid) -> Result<bool, StoreError> {
        self.log.skip_pending(delivery_id).await
    }

    async fn move_to_pending(&self, delivery: &Delivery, by: &str) -> Result<bool, StoreError> {
        self.log
            .move_status_by(
                delivery.id,
                &[DeliveryStatus::Failed, DeliveryStatus::Skipped],
                DeliveryStatus::Pending,
                Some(delivery),
                Some(by),
            )
            .await
    }

    async fn events_of_company(
        &self,
        company: Uuid,
        since: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&str>,
    ) -> Result<(Vec<EventHead>, Option<String>), StoreError> {
        self.log
            .events_of_company(company, since, until, after)
            .await
    }

    async fn deliveries(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, FoundDelivery>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| delivery_item_key(*id)).collect();
        let items = self.log.get_items(&keys).await?;
        Ok(ids
            .iter()
            .zip(&keys)
            .filter_map(|(id, key)| {
                let item = items.get(key)?;
                let found = FoundDelivery {
                    delivery: delivery_from_item(item)?,
                    recovered_by: recovered_by(item).map(str::to_owned),
                };
                Some((*id, found))
            })
            .collect())
    }

    async fn events(&self, ids: &[EventId]) -> Result<HashMap<EventId, LoggedEvent>, StoreError> {
        let keys: Vec<String> = ids.iter().map(event_item_key).collect();
        let items = self.log.get_items(&keys).await?;
        Ok(ids
            .iter()
            .zip(&keys)
            .filter_map(|(id, key)| Some((id.clone(), event_from_item(items.get(key)?)?)))
            .collect())
    }
}

/// What the recording of `record` sets on its delivery in the log.
fn attempt_write(record: &AttemptRecord) -> AttemptWrite {
    AttemptWrite {
        delivery_id: record.delivery_id,
        webhook_id: record.webhook_id,
        event_id: None,
        event: record.event.clone(),
        entry: AttemptEntry {
            attempt: Attempt {
                attempt: record.attempt,
                at: record.at,
                outcome: record.outcome.to_owned(),
                http_status: record.http_status,
                duration_ms: record.duration_ms,
                reason: record.reason.clone(),
            },
            message_id: Some(record.message_id.clone()),
            claim: Some(record.claim.to_string()),
            next_attempt_at: record.next_attempt_at,
        },
        status: record.status,
    }
}

/// The mark of `attempt` in a delivery's item, if that attempt was made.
fn mark_in(item: &Item, attempt: u32) -> Option<AttemptMark> {
    AttemptEntry::in_item(item, attempt).map(|entry| AttemptMark {
        message_id: entry.message_id,
        claim: entry.claim,
        outcome: entry.attempt.outcome,
        next_attempt_at: entry.next_attempt_at,
    })
}

fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(0).unwrap_or(at)
}

fn is_condition_failure<R>(error: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, R>) -> bool {
    matches!(
        error.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}
