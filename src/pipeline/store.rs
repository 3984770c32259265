//! The pipeline's DynamoDB calls: find an event's subscribers (index queries, never a scan),
//! the API key of a webhook (cached), the circuit breaker's counters, and attempt records.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::{self, KeyCache, KeyRefusal};
use crate::domain::time_format::rfc3339;
use crate::domain::{ApiKey, EventType};
use crate::store::aws_error::classify;
use crate::store::dynamodb::{
    api_key_from_item, query_webhooks, webhook_from_item, Item, ALL_COMPANIES,
    API_KEYS_BY_ID_INDEX, BY_COMPANY_INDEX, FANOUT_COMPANY, FENCE, WEBHOOK_ID,
};
use crate::store::{StoreError, StoredWebhook};

/// Consecutive failed attempts that open a webhook's circuit.
pub const CIRCUIT_THRESHOLD: u32 = 10;
/// How long an attempt record is kept (DynamoDB TTL on `expiresAt`).
pub const ATTEMPT_TTL_SECONDS: i64 = 30 * 24 * 60 * 60;

/// The pipeline's view of the two tables.
#[derive(Clone, Debug)]
pub struct PipelineStore {
    client: Client,
    webhooks_table: String,
    api_keys_table: String,
    /// Shared by the clones of one container's store (fan-out or deliver).
    keys: Arc<KeyCache>,
}

/// What the fan-out index holds for one event.
#[derive(Clone, Debug, Default)]
pub struct Subscribers {
    /// The webhooks that get a delivery.
    pub webhooks: Vec<StoredWebhook>,
    /// Webhooks of the event's company whose key refuses it: no delivery.
    pub refused: Vec<(StoredWebhook, KeyRefusal)>,
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
    /// `delivered`, `failed` or `failed_permanently` (410).
    pub outcome: &'static str,
    /// The failure in words (`the endpoint answered 500`), none on success.
    pub reason: Option<String>,
    pub http_status: Option<u16>,
    pub duration_ms: Option<u64>,
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
    ) -> Self {
        Self {
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

    /// Active webhooks with a closed circuit that subscribe to `event` and are filed under
    /// `partition` in the fan-out index (a company id, or [`ALL_COMPANIES`]).
    async fn query_partition(
        &self,
        partition: &str,
        event: EventType,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        const OPERATION: &str = "dynamodb.Query(webhooks by company)";
        let query = self
            .client
            .query()
            .table_name(&self.webhooks_table)
            .index_name(BY_COMPANY_INDEX)
            .key_condition_expression("#company = :company")
            .filter_expression(
                "contains(#events, :event) AND #active = :true \
                 AND (attribute_not_exists(#opened) OR attribute_type(#opened, :null))",
            )
            .expression_attribute_names("#company", FANOUT_COMPANY)
            .expression_attribute_names("#events", "events")
            .expression_attribute_names("#active", "isActive")
            .expression_attribute_names("#opened", "circuitOpenedAt")
            .expression_attribute_values(":company", s(partition))
            .expression_attribute_values(":event", s(event.as_str()))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":null", s("NULL"));
        query_webhooks(query, OPERATION).await
    }

    /// Every webhook that gets `event` of `company`: those of the company, and those without a
    /// company whose key may act for it; each only while its key is active, unexpired and
    /// holds the company. Answers the subscribers and the webhooks their key refused (to be
    /// logged and counted). A webhook without a company whose key does not hold the company
    /// is simply not a subscriber.
    pub async fn subscribers(
        &self,
        event: EventType,
        company: Uuid,
        now: OffsetDateTime,
    ) -> Result<Subscribers, StoreError> {
        let mut found = Subscribers::default();
        for stored in self.query_partition(&company.to_string(), event).await? {
            let key = self.api_key(&stored.webhook.api_key_id).await?;
            match keys::refusal(key.as_ref(), Some(company), now) {
                None => found.webhooks.push(stored),
                Some(refusal) => found.refused.push((stored, refusal)),
            }
        }
        for stored in self.query_partition(ALL_COMPANIES, event).await? {
            let key = self.api_key(&stored.webhook.api_key_id).await?;
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

    /// The API key `api_key_id` (`None` when it is gone), from the container's cache while
    /// fresh ([`KeyCache`]).
    pub async fn api_key(&self, api_key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.keys
            .get(api_key_id, || self.read_api_key(api_key_id))
            .await
    }

    /// Reads the key record of `api_key_id` on the key table's index by id.
    async fn read_api_key(&self, api_key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        const OPERATION: &str = "dynamodb.Query(api key by id)";
        let output = self
            .client
            .query()
            .table_name(&self.api_keys_table)
            .index_name(API_KEYS_BY_ID_INDEX)
            .key_condition_expression("apiKeyId = :id")
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

    /// The webhook record and the record of `attempt` of `delivery_id`, in one consistent
    /// `BatchGetItem` (the call that was the webhook's `GetItem`): whether the attempt was made
    /// already is known before it is made again. A tombstone reads as no webhook.
    pub async fn read_delivery(
        &self,
        webhook_id: Uuid,
        delivery_id: Uuid,
        attempt: u32,
    ) -> Result<(Option<StoredWebhook>, Option<AttemptMark>), StoreError> {
        const OPERATION: &str = "dynamodb.BatchGetItem(webhook and attempt)";
        let webhook_key = webhook_id.to_string();
        let attempt_key = attempt_id(delivery_id, attempt);
        let keys = KeysAndAttributes::builder()
            .keys(HashMap::from([(WEBHOOK_ID.to_owned(), s(&webhook_key))]))
            .keys(HashMap::from([(WEBHOOK_ID.to_owned(), s(&attempt_key))]))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Failed {
                operation: OPERATION,
                kind: e.to_string(),
            })?;
        let output = self
            .client
            .batch_get_item()
            .request_items(&self.webhooks_table, keys)
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
        let items = output
            .responses()
            .and_then(|r| r.get(&self.webhooks_table))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let id_of = |item: &Item| item.get(WEBHOOK_ID).and_then(|v| v.as_s().ok()).cloned();
        let mut webhook = None;
        let mut mark = None;
        for item in items {
            match id_of(item) {
                Some(id) if id == webhook_key && !item.contains_key(FENCE) => {
                    webhook = Some(webhook_from_item(item).ok_or(StoreError::Failed {
                        operation: OPERATION,
                        kind: "malformed webhook record".into(),
                    })?);
                }
                Some(id) if id == attempt_key => mark = Some(AttemptMark::of(item)),
                _ => {}
            }
        }
        Ok((webhook, mark))
    }

    /// Records a failed attempt and counts it, in one `TransactWriteItems`: the attempt record,
    /// written only if there is none yet (`attribute_not_exists`), and the count's atomic
    /// `ADD` (which moves the record's `version`, its ETag). So an attempt is counted exactly
    /// once however often its message comes back, and only the copy that wrote the record
    /// goes on (queues the next attempt): one retry chain per delivery.
    pub async fn record_failed_attempt(
        &self,
        record: &AttemptRecord,
    ) -> Result<Recorded, StoreError> {
        const OPERATION: &str = "dynamodb.TransactWriteItems(attempt and failure count)";
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Failed {
            operation: OPERATION,
            kind: e.to_string(),
        };
        let put = Put::builder()
            .table_name(&self.webhooks_table)
            .set_item(Some(attempt_item(record)))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", WEBHOOK_ID)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(invalid)?;
        let count = Update::builder()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&record.webhook_id.to_string()))
            .update_expression("ADD consecutiveFailures :one, #v :one SET updatedAt = :now")
            .condition_expression(LIVE)
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&rfc3339(whole_seconds(record.at))))
            .build()
            .map_err(invalid)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
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
            let existing = reasons[0].item().map(AttemptMark::of);
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

    /// Records a successful attempt (or one whose webhook is gone), written only if the attempt
    /// has no record yet; see [`Recorded`].
    pub async fn put_attempt_once(&self, record: &AttemptRecord) -> Result<Recorded, StoreError> {
        const OPERATION: &str = "dynamodb.PutItem(attempt)";
        let result = self
            .client
            .put_item()
            .table_name(&self.webhooks_table)
            .set_item(Some(attempt_item(record)))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", WEBHOOK_ID)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Recorded::Written),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Recorded::judge(failed.item().map(AttemptMark::of), record))
                }
                _ => Err(classify(OPERATION, &error)),
            },
        }
    }

    /// Opens the circuit if this failure is due to: at once when `open_now` (the receiver
    /// answered `410 Gone`), else when the count has reached [`CIRCUIT_THRESHOLD`]. One
    /// conditional update, evaluated by DynamoDB on the count as it is now (so concurrent
    /// failures that together reach the threshold open it, once); it changes nothing when not
    /// due, and the old record it hands back on refusal tells why. Idempotent.
    pub async fn open_circuit_if_due(
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
            " AND consecutiveFailures >= :threshold"
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&webhook_id.to_string()))
            .update_expression("SET circuitOpenedAt = :now, updatedAt = :now ADD #v :one")
            .condition_expression(format!(
                "{LIVE} AND (attribute_not_exists(circuitOpenedAt) \
                 OR attribute_type(circuitOpenedAt, :null)){due}"
            ))
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&at))
            .expression_attribute_values(":null", s("NULL"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if !open_now {
            request = request.expression_attribute_values(":threshold", n(CIRCUIT_THRESHOLD));
        }
        match request.send().await {
            Ok(_) => Ok(CircuitChange::Opened),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let old = failed.item();
                    let live = old.is_some_and(|item| !item.contains_key(FENCE));
                    let open = old
                        .and_then(|item| item.get("circuitOpenedAt"))
                        .is_some_and(|at| at.as_s().is_ok());
                    let failures = old
                        .and_then(|item| item.get("consecutiveFailures"))
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
    pub async fn record_success(
        &self,
        webhook_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&webhook_id.to_string()))
            .update_expression("SET consecutiveFailures = :zero, updatedAt = :now ADD #v :one")
            .condition_expression(format!("{LIVE} AND consecutiveFailures > :zero"))
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#v", "version")
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

/// An attempt record, `attempt#<deliveryId>#<attempt>` in the webhooks table, expiring after
/// 30 days.
fn attempt_item(record: &AttemptRecord) -> Item {
    let mut item = HashMap::from([
        (
            WEBHOOK_ID.to_owned(),
            s(&attempt_id(record.delivery_id, record.attempt)),
        ),
        ("deliveryId".to_owned(), s(&record.delivery_id.to_string())),
        ("webhookId".to_owned(), s(&record.webhook_id.to_string())),
        ("event".to_owned(), s(&record.event)),
        ("attempt".to_owned(), n(record.attempt)),
        ("attemptedAt".to_owned(), s(&rfc3339(record.at))),
        ("outcome".to_owned(), s(record.outcome)),
        ("messageId".to_owned(), s(&record.message_id)),
        ("claim".to_owned(), s(&record.claim.to_string())),
        (
            "expiresAt".to_owned(),
            n(record.at.unix_timestamp() + ATTEMPT_TTL_SECONDS),
        ),
    ]);
    if let Some(reason) = &record.reason {
        item.insert("reason".to_owned(), s(reason));
    }
    if let Some(status) = record.http_status {
        item.insert("httpStatus".to_owned(), n(status));
    }
    if let Some(ms) = record.duration_ms {
        item.insert("durationMs".to_owned(), n(ms));
    }
    if let Some(at) = record.next_attempt_at {
        item.insert("nextAttemptAt".to_owned(), n(at));
    }
    item
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

impl AttemptMark {
    fn of(item: &Item) -> Self {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Self {
            message_id: text("messageId"),
            claim: text("claim"),
            outcome: text("outcome").unwrap_or_default(),
            next_attempt_at: item
                .get("nextAttemptAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok()),
        }
    }
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
    fn judge(existing: Option<AttemptMark>, record: &AttemptRecord) -> Self {
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

/// The id of an attempt record.
pub fn attempt_id(delivery_id: Uuid, attempt: u32) -> String {
    format!("attempt#{delivery_id}#{attempt}")
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
