//! The pipeline's DynamoDB calls: find an event's subscribers (index queries, never a scan),
//! the API key of a webhook (cached), the circuit breaker's counters, and attempt records.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::{self, KeyCache, KeyRefusal};
use crate::domain::time_format::rfc3339;
use crate::domain::{ApiKey, EventType};
use crate::store::aws_error::classify;
use crate::store::dynamodb::{
    api_key_from_item, webhook_from_item, Item, ALL_COMPANIES, API_KEYS_BY_ID_INDEX,
    BY_COMPANY_INDEX, FANOUT_COMPANY, FENCE, WEBHOOK_ID,
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
        let pages: Result<Vec<Item>, _> = self
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
            .expression_attribute_values(":null", s("NULL"))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect();
        pages
            .map_err(|e| classify(OPERATION, &e))?
            .iter()
            .map(|item| {
                webhook_from_item(item).ok_or(StoreError::Failed {
                    operation: OPERATION,
                    kind: "malformed webhook record".into(),
                })
            })
            .collect()
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

    /// Counts a failed attempt; opens the circuit at [`CIRCUIT_THRESHOLD`], or at once when
    /// `open_now` (the receiver answered `410 Gone`). Two conditional updates: the count is an
    /// atomic `ADD`, and only the attempt that finds the circuit closed opens it, so concurrent
    /// attempts neither lose a count nor set `circuitOpenedAt` twice. Each change moves the
    /// record's `version` (its ETag).
    pub async fn record_failure(
        &self,
        webhook_id: Uuid,
        open_now: bool,
        now: OffsetDateTime,
    ) -> Result<CircuitChange, StoreError> {
        const OPERATION: &str = "dynamodb.UpdateItem(count failure)";
        let result = self
            .client
            .update_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&webhook_id.to_string()))
            .update_expression("ADD consecutiveFailures :one, #v :one SET updatedAt = :now")
            .condition_expression(LIVE)
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&rfc3339(whole_seconds(now))))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let failures = match result {
            Ok(output) => output
                .attributes()
                .and_then(|a| a.get("consecutiveFailures"))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
            Err(e) if is_condition_failure(&e) => return Ok(CircuitChange::Gone),
            Err(e) => return Err(classify(OPERATION, &e)),
        };
        if !open_now && failures < CIRCUIT_THRESHOLD {
            return Ok(CircuitChange::Counted(failures));
        }
        self.open_circuit(webhook_id, now).await
    }

    async fn open_circuit(
        &self,
        webhook_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<CircuitChange, StoreError> {
        let at = rfc3339(whole_seconds(now));
        let result = self
            .client
            .update_item()
            .table_name(&self.webhooks_table)
            .key(WEBHOOK_ID, s(&webhook_id.to_string()))
            .update_expression("SET circuitOpenedAt = :now, updatedAt = :now ADD #v :one")
            .condition_expression(format!(
                "{LIVE} AND (attribute_not_exists(circuitOpenedAt) \
                 OR attribute_type(circuitOpenedAt, :null))"
            ))
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#fence", FENCE)
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(&at))
            .expression_attribute_values(":null", s("NULL"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(CircuitChange::Opened),
            Err(e) if is_condition_failure(&e) => Ok(CircuitChange::AlreadyOpen),
            Err(e) => Err(classify("dynamodb.UpdateItem(open circuit)", &e)),
        }
    }

    /// A successful attempt sets the count back to 0, writing only when it was not 0 already
    /// (so a healthy webhook's ETag does not change with every delivery).
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

    /// Writes an attempt record, `attempt#<deliveryId>#<attempt>` in the webhooks table, expiring
    /// after 30 days. Idempotent: a repeated attempt overwrites its own record.
    pub async fn put_attempt(&self, record: &AttemptRecord) -> Result<(), StoreError> {
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
        self.client
            .put_item()
            .table_name(&self.webhooks_table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("dynamodb.PutItem(attempt)", &e))
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
