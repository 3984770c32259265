//! DynamoDB adapters: API key records (read) and the webhooks table (records, per-key counts,
//! idempotency claims, rate counters, tombstones).

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use super::aws_error::classify;
use super::{
    judge_change, ApiKeyStore, Caller, ChangeError, Deleted, IdempotencyClaims, InsertError,
    RateCounter, SecretRef, StoreError, StoredWebhook, WebhookChange, WebhookReads, WebhookWrites,
};
use crate::domain::idempotency::{CLAIM_STALE_AFTER_SECONDS, IDEMPOTENCY_TTL_SECONDS};
use crate::domain::rate_limit::{Usage, Windows};
use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::{
    ApiKey, ApiKeyStatus, ClaimOutcome, EventType, IdempotencyClaim, RateLimits, TokenHash, Webhook,
};

/// An item as the SDK represents it.
pub type Item = HashMap<String, AttributeValue>;

/// Partition key of the API key table.
pub const API_KEY_HASH: &str = "keyHash";
/// Partition key of the webhooks table.
pub const WEBHOOK_ID: &str = "id";
/// Marks an item that holds a failed create's or a deleted webhook's id (a tombstone), so that
/// a late copy of a write cannot bring the record back.
pub const FENCE: &str = "fence";
/// The index of webhook records by owner: partition `apiKeyId`, sort `createdAt`.
pub const BY_API_KEY_INDEX: &str = "byApiKey";
/// The fan-out index of webhook records (src/pipeline): partition [`FANOUT_COMPANY`].
pub const BY_COMPANY_INDEX: &str = "byCompany";
/// A webhook's company id, or [`ALL_COMPANIES`] for a webhook without one (which gets the
/// events of every company its key may act for).
pub const FANOUT_COMPANY: &str = "fanoutCompany";
/// [`FANOUT_COMPANY`] of webhooks without a company.
pub const ALL_COMPANIES: &str = "ALL";
/// The index of API key records by key id (partition `apiKeyId`): the fan-out's key lookups.
pub const API_KEYS_BY_ID_INDEX: &str = "byApiKeyId";
/// How long a deleted webhook's tombstone is kept (a retried DELETE finds it), in seconds.
const TOMBSTONE_TTL_SECONDS: i64 = 7 * 24 * 60 * 60;

/// Reads API key records by token hash.
#[derive(Clone, Debug)]
pub struct DynamoApiKeys {
    client: Client,
    table: String,
}

impl DynamoApiKeys {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl ApiKeyStore for DynamoApiKeys {
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(API_KEY_HASH, AttributeValue::S(hash.0.clone()))
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(api key)", &e))?;
        match output.item {
            None => Ok(None),
            Some(item) => api_key_from_item(&item)
                .map(Some)
                .ok_or(StoreError::Failed {
                    operation: "dynamodb.GetItem(api key)",
                    kind: "malformed API key record".into(),
                }),
        }
    }
}

/// The webhooks table.
#[derive(Clone, Debug)]
pub struct DynamoWebhooks {
    client: Client,
    table: String,
}

impl DynamoWebhooks {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// The item that counts an API key's webhooks (in the webhooks table, beside them).
fn quota_id(api_key_id: &str) -> String {
    format!("quota#{api_key_id}")
}

fn build<T, E: std::fmt::Display>(built: Result<T, E>) -> Result<T, StoreError> {
    built.map_err(|e| StoreError::Failed {
        operation: "dynamodb request",
        kind: format!("invalid request: {e}"),
    })
}

/// The code of each item's cancellation reason in a cancelled transaction.
fn cancellation_codes(
    error: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<Vec<String>> {
    cancellation_reasons(error).map(|reasons| reasons.into_iter().map(|(code, _)| code).collect())
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";
/// The attribute of a completed claim that tells a replay what to answer.
const CLAIM_RESULT: &str = "result";
/// The key that deleted a webhook, on its tombstone.
const DELETED_BY: &str = "deletedBy";
/// The id of the last change written to a record (see `why_refused`).
const LAST_CHANGE: &str = "lastChange";

/// The code and (where asked for) the old item of each item of a cancelled transaction.
fn cancellation_reasons(
    error: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<Vec<(String, Option<Item>)>> {
    match error.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| {
                    (
                        reason.code().unwrap_or("None").to_owned(),
                        reason.item().cloned(),
                    )
                })
                .collect(),
        ),
        _ => None,
    }
}

impl WebhookWrites for DynamoWebhooks {
    async fn insert(
        &self,
        stored: &StoredWebhook,
        limit: u32,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<(), InsertError> {
        let webhook = &stored.webhook;
        let secret = &stored.secret;
        let put = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(webhook_item(stored)))
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", WEBHOOK_ID)
                .build(),
        )?;
        let count = build(
            Update::builder()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&quota_id(&webhook.api_key_id)))
                .update_expression("ADD webhookCount :one")
                .condition_expression("attribute_not_exists(webhookCount) OR webhookCount < :limit")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":limit", n(limit))
                .build(),
        )?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build());
        if let Some(claim) = claim {
            let complete = build(
                Update::builder()
                    .table_name(&self.table)
                    .key(WEBHOOK_ID, s(&claim.record_id))
                    .update_expression("SET #st = :done, #result = :result")
                    .condition_expression("#st = :in_progress AND requestHash = :hash")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_names("#result", CLAIM_RESULT)
                    .expression_attribute_values(":done", s("completed"))
                    .expression_attribute_values(":in_progress", s("in_progress"))
                    .expression_attribute_values(":hash", s(&claim.request_hash))
                    .expression_attribute_values(":result", s(&webhook.id.to_string()))
                    .build(),
            )?;
            request = request.transact_items(TransactWriteItem::builder().update(complete).build());
        }
        // The SDK gives the transaction an idempotency token (ClientRequestToken) that its
        // retries reuse, so a retried transaction whose first attempt landed succeeds again.
        let error = match request.send().await {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let Some(codes) = cancellation_codes(&error) else {
            return Err(classify("dynamodb.TransactWriteItems(webhook)", &error).into());
        };
        let failed = |i: usize| codes.get(i).is_some_and(|code| code == CONDITION_FAILED);
        if failed(0) {
            // Only our own earlier attempt can hold this fresh UUID; make sure it is ours.
            return match self.get(webhook.id).await? {
                Some(found) if found.secret.arn == secret.arn => Ok(()),
                _ => Err(StoreError::Failed {
                    operation: "dynamodb.TransactWriteItems(webhook)",
                    kind: "webhook id exists".into(),
                }
                .into()),
            };
        }
        if failed(1) {
            return Err(InsertError::LimitReached);
        }
        if failed(2) {
            return Err(InsertError::ClaimLost);
        }
        Err(StoreError::Unavailable {
            operation: "dynamodb.TransactWriteItems(webhook)",
            kind: format!("transaction cancelled: {}", codes.join(",")),
        }
        .into())
    }

    async fn undo_insert(&self, id: Uuid, api_key_id: &str) -> Result<(), StoreError> {
        // A copy of the insert may still be on its way: when there is no record, the id is
        // fenced, so that the copy's `attribute_not_exists(id)` fails if it lands later.
        for _ in 0..3 {
            let delete = build(
                Delete::builder()
                    .table_name(&self.table)
                    .key(WEBHOOK_ID, s(&id.to_string()))
                    .condition_expression("attribute_exists(#id) AND attribute_not_exists(#fence)")
                    .expression_attribute_names("#id", WEBHOOK_ID)
                    .expression_attribute_names("#fence", FENCE)
                    .build(),
            )?;
            let give_back = self.give_back(api_key_id)?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(TransactWriteItem::builder().update(give_back).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e)
                    if cancellation_codes(&e)
                        .is_some_and(|c| c.first().is_some_and(|c| c == CONDITION_FAILED)) => {}
                Err(e) => return Err(classify("dynamodb.TransactWriteItems(undo webhook)", &e)),
            }
            let expires = OffsetDateTime::now_utc().unix_timestamp() + IDEMPOTENCY_TTL_SECONDS;
            let fenced = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(WEBHOOK_ID, s(&id.to_string()))
                .item(FENCE, AttributeValue::Bool(true))
                .item("expiresAt", AttributeValue::N(expires.to_string()))
                .condition_expression("attribute_not_exists(#id) OR attribute_exists(#fence)")
                .expression_attribute_names("#id", WEBHOOK_ID)
                .expression_attribute_names("#fence", FENCE)
                .send()
                .await;
            match fenced {
                Ok(_) => return Ok(()),
                // The record landed in between: remove it.
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) => {}
                Err(e) => return Err(classify("dynamodb.PutItem(fence webhook id)", &e)),
            }
        }
        Err(StoreError::Failed {
            operation: "dynamodb.TransactWriteItems(undo webhook)",
            kind: "record keeps coming back".into(),
        })
    }

    async fn update(
        &self,
        id: Uuid,
        caller: &Caller<'_>,
        change: &WebhookChange,
        claim: Option<(&IdempotencyClaim, &str)>,
        now: OffsetDateTime,
    ) -> Result<StoredWebhook, ChangeError> {
        let mut expression = Expression::default();
        let mut sets = Vec::new();
        let mut set = |expression: &mut Expression, name: &str, value: AttributeValue| {
            let path = expression.name(name);
            let value = expression.value(value);
            sets.push(format!("{path} = {value}"));
        };
        if let Some(url) = &change.url {
            set(&mut expression, "url", s(url));
        }
        if let Some(events) = &change.events {
            set(
                &mut expression,
                "events",
                list(events.iter().map(|e| e.as_str())),
            );
        }
        if let Some(name) = &change.name {
            set(&mut expression, "name", opt_s(name.as_deref()));
        }
        if let Some(description) = &change.description {
            set(
                &mut expression,
                "description",
                opt_s(description.as_deref()),
            );
        }
        if let Some(active) = change.is_active {
            set(&mut expression, "isActive", AttributeValue::Bool(active));
        }
        if let Some(swap) = &change.secret {
            set(
                &mut expression,
                "secretVersion",
                opt_s(swap.to.version.as_deref()),
            );
            if let Some(names) = &swap.header_names {
                set(
                    &mut expression,
                    "headerNames",
                    list(names.iter().map(String::as_str)),
                );
            }
        }
        if change.reset_circuit {
            set(&mut expression, "consecutiveFailures", n(0));
            set(
                &mut expression,
                "circuitOpenedAt",
                AttributeValue::Null(true),
            );
            set(&mut expression, "isActive", AttributeValue::Bool(true));
        }
        set(
            &mut expression,
            "updatedAt",
            s(&rfc3339(super::whole_seconds(now))),
        );
        // Marks the record with this very change, so that a retried write that finds its own
        // change landed (its first answer lost) is taken for the success it is.
        let change_id = Uuid::new_v4().to_string();
        set(&mut expression, LAST_CHANGE, s(&change_id));
        let version = expression.name("version");
        let one = expression.value(n(1));
        let update = format!("SET {} ADD {version} {one}", sets.join(", "));
        let condition =
            expression.caller_condition(caller, change.secret.as_ref().map(|swap| &swap.from));
        // One conditional update of the record, sent alone or, with an idempotency claim, in
        // one transaction with the claim's completion.
        let record = build(
            Update::builder()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&id.to_string()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(Some(expression.names))
                .set_expression_attribute_values(Some(expression.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build(),
        )?;
        let Some((claim, result)) = claim else {
            let outcome = self
                .update_item_of(&record)
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            return match outcome {
                Ok(output) => output
                    .attributes
                    .as_ref()
                    .and_then(webhook_from_item)
                    .ok_or_else(|| malformed("dynamodb.UpdateItem(webhook)").into()),
                Err(error) => match error.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        self.why_refused(id, failed.item.clone(), caller, change, &change_id)
                            .await
                    }
                    _ => Err(classify("dynamodb.UpdateItem(webhook)", &error).into()),
                },
            };
        };
        // The transaction answers no attributes: the record is read back after it.
        let complete = self.complete_claim_item(claim, result)?;
        let outcome = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(record).build())
            .transact_items(TransactWriteItem::builder().update(complete).build())
            .send()
            .await;
        if let Err(error) = outcome {
            let Some(reasons) = cancellation_reasons(&error) else {
                return Err(classify("dynamodb.TransactWriteItems(change webhook)", &error).into());
            };
            return match reasons.first() {
                Some((code, item)) if code == CONDITION_FAILED => {
                    self.why_refused(id, item.clone(), caller, change, &change_id)
                        .await
                }
                _ => Err(StoreError::Failed {
                    operation: "dynamodb.TransactWriteItems(change webhook)",
                    kind: "idempotency claim lost".into(),
                }
                .into()),
            };
        }
        self.get(id)
            .await?
            .ok_or_else(|| malformed("dynamodb.GetItem(changed webhook)").into())
    }

    async fn delete(&self, id: Uuid, caller: &Caller<'_>) -> Result<Deleted, ChangeError> {
        let mut expression = Expression::default();
        let condition = expression.caller_condition(caller, None);
        let expires = OffsetDateTime::now_utc().unix_timestamp() + TOMBSTONE_TTL_SECONDS;
        let tombstone = build(
            Put::builder()
                .table_name(&self.table)
                .item(WEBHOOK_ID, s(&id.to_string()))
                .item(FENCE, AttributeValue::Bool(true))
                .item(DELETED_BY, s(caller.api_key_id))
                .item("expiresAt", AttributeValue::N(expires.to_string()))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(expression.names))
                .set_expression_attribute_values(Some(expression.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build(),
        )?;
        let give_back = self.give_back(caller.api_key_id)?;
        let outcome = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(tombstone).build())
            .transact_items(TransactWriteItem::builder().update(give_back).build())
            .send()
            .await;
        let error = match outcome {
            Ok(_) => return Ok(Deleted::Now),
            Err(error) => error,
        };
        let Some(reasons) = cancellation_reasons(&error) else {
            return Err(classify("dynamodb.TransactWriteItems(delete webhook)", &error).into());
        };
        match reasons.first() {
            Some((code, item)) if code == CONDITION_FAILED => {
                let item = match item {
                    Some(item) => Some(item.clone()),
                    None => self.read_item(id).await?,
                };
                if item.as_ref().is_some_and(|item| {
                    item.contains_key(FENCE) && get_s(item, DELETED_BY) == Some(caller.api_key_id)
                }) {
                    return Ok(Deleted::Earlier);
                }
                Err(self
                    .why_refused(id, item, caller, &WebhookChange::default(), "")
                    .await
                    .err()
                    .unwrap_or(ChangeError::SecretMoved))
            }
            _ => Err(StoreError::Unavailable {
                operation: "dynamodb.TransactWriteItems(delete webhook)",
                kind: "transaction cancelled".into(),
            }
            .into()),
        }
    }
}

impl DynamoWebhooks {
    /// `update`, a transaction item, as a request of its own (one builder for both uses).
    fn update_item_of(
        &self,
        update: &Update,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .set_return_values_on_condition_check_failure(
                update.return_values_on_condition_check_failure().cloned(),
            )
    }

    /// The update that gives a webhook's place in its key's limit back (in a transaction).
    fn give_back(&self, api_key_id: &str) -> Result<Update, StoreError> {
        build(
            Update::builder()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&quota_id(api_key_id)))
                .update_expression("ADD webhookCount :minus_one")
                .expression_attribute_values(":minus_one", AttributeValue::N("-1".into()))
                .build(),
        )
    }

    /// The item as stored (tombstones and fences included), strongly consistent.
    async fn read_item(&self, id: Uuid) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key(WEBHOOK_ID, s(&id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(webhook)", &e))?
            .item)
    }

    /// Why a conditional change was refused, judged on the item it met (read again when the
    /// answer did not carry it). A record that carries `change_id` holds this very change: an
    /// earlier attempt of the same write landed and its answer was lost, so it succeeded.
    async fn why_refused(
        &self,
        id: Uuid,
        item: Option<Item>,
        caller: &Caller<'_>,
        change: &WebhookChange,
        change_id: &str,
    ) -> Result<StoredWebhook, ChangeError> {
        let item = match item {
            Some(item) => Some(item),
            None => self.read_item(id).await?,
        };
        let item = item.filter(|item| !item.contains_key(FENCE));
        if let Some(item) = &item {
            if !change_id.is_empty() && get_s(item, LAST_CHANGE) == Some(change_id) {
                return webhook_from_item(item)
                    .ok_or_else(|| malformed("dynamodb.UpdateItem(webhook)").into());
            }
        }
        let existing = item.as_ref().and_then(webhook_from_item);
        let expected = change.secret.as_ref().map(|swap| &swap.from);
        Err(match judge_change(existing.as_ref(), caller, expected) {
            Err(refused) => refused,
            // The record changed between the write and the read: the caller may try again.
            Ok(()) => ChangeError::SecretMoved,
        })
    }

    fn complete_claim_item(
        &self,
        claim: &IdempotencyClaim,
        result: &str,
    ) -> Result<Update, StoreError> {
        build(
            Update::builder()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&claim.record_id))
                .update_expression("SET #st = :done, #result = :result")
                .condition_expression(
                    "#st = :in_progress AND requestHash = :hash AND #owner = :owner",
                )
                .expression_attribute_names("#st", "status")
                .expression_attribute_names("#result", CLAIM_RESULT)
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":done", s("completed"))
                .expression_attribute_values(":in_progress", s("in_progress"))
                .expression_attribute_values(":hash", s(&claim.request_hash))
                .expression_attribute_values(":owner", s(&claim.owner))
                .expression_attribute_values(":result", s(result))
                .build(),
        )
    }
}

/// Builds expression attribute names and values with generated placeholders.
#[derive(Default)]
struct Expression {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expression {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// [`judge_change`]'s rules as a condition: the caller's own live record, a company the
    /// caller may act for (or none), the `If-Match` version, the secret version a swap replaces.
    fn caller_condition(&mut self, caller: &Caller<'_>, secret: Option<&SecretRef>) -> String {
        let id = self.name(WEBHOOK_ID);
        let fence = self.name(FENCE);
        let owner = self.name("apiKeyId");
        let key = self.value(s(caller.api_key_id));
        let mut parts = vec![
            format!("attribute_exists({id})"),
            format!("attribute_not_exists({fence})"),
            format!("{owner} = {key}"),
        ];
        let company = self.name("companyId");
        let null = self.value(s("NULL"));
        let mut allowed = vec![format!("attribute_type({company}, {null})")];
        // IN takes at most 100 operands.
        for chunk in caller.company_ids.chunks(100) {
            let operands: Vec<_> = chunk
                .iter()
                .map(|c| self.value(s(&c.to_string())))
                .collect();
            allowed.push(format!("{company} IN ({})", operands.join(", ")));
        }
        parts.push(format!("({})", allowed.join(" OR ")));
        if let Some(version) = caller.if_match {
            let path = self.name("version");
            let value = self.value(AttributeValue::N(version.to_string()));
            parts.push(format!("{path} = {value}"));
        }
        if let Some(from) = secret {
            let path = self.name("secretVersion");
            match &from.version {
                Some(version) => {
                    let value = self.value(s(version));
                    parts.push(format!("{path} = {value}"));
                }
                None => parts.push(format!("attribute_not_exists({path})")),
            }
        }
        parts.join(" AND ")
    }
}

fn malformed(operation: &'static str) -> StoreError {
    StoreError::Failed {
        operation,
        kind: "malformed webhook record".into(),
    }
}

impl WebhookReads for DynamoWebhooks {
    async fn get(&self, id: Uuid) -> Result<Option<StoredWebhook>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(WEBHOOK_ID, s(&id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(webhook)", &e))?;
        match output.item.filter(|item| !item.contains_key(FENCE)) {
            None => Ok(None),
            Some(item) => webhook_from_item(&item)
                .map(Some)
                .ok_or(StoreError::Failed {
                    operation: "dynamodb.GetItem(webhook)",
                    kind: "malformed webhook record".into(),
                }),
        }
    }

    async fn list_by_owner(&self, api_key_id: &str) -> Result<Vec<StoredWebhook>, StoreError> {
        let pages: Result<Vec<Item>, _> = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_API_KEY_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "apiKeyId")
            .expression_attribute_values(":owner", s(api_key_id))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect();
        pages
            .map_err(|e| classify("dynamodb.Query(webhooks by key)", &e))?
            .iter()
            .map(|item| {
                webhook_from_item(item).ok_or_else(|| malformed("dynamodb.Query(webhooks by key)"))
            })
            .collect()
    }
}

impl IdempotencyClaims for DynamoWebhooks {
    async fn claim(
        &self,
        claim: &IdempotencyClaim,
        now: OffsetDateTime,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = now.unix_timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(WEBHOOK_ID, s(&claim.record_id))
            .item("status", s("in_progress"))
            .item("requestHash", s(&claim.request_hash))
            .item("owner", s(&claim.owner))
            .item("lockedAt", AttributeValue::N(now.to_string()))
            // DynamoDB's TTL deletes the claim a day later (within a few days; reads check).
            .item(
                "expiresAt",
                AttributeValue::N((now + IDEMPOTENCY_TTL_SECONDS).to_string()),
            )
            .condition_expression(
                "attribute_not_exists(#id) OR expiresAt < :now \
                 OR (#st = :in_progress AND lockedAt < :stale)",
            )
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(
                ":stale",
                AttributeValue::N((now - CLAIM_STALE_AFTER_SECONDS).to_string()),
            )
            .expression_attribute_values(":in_progress", s("in_progress"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(ClaimOutcome::Claimed),
            Err(error) => error,
        };
        let held = match error.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => failed.item().cloned(),
            _ => return Err(classify("dynamodb.PutItem(idempotency claim)", &error)),
        };
        // Without the old item (an emulator may not return it), read it.
        let held = match held {
            Some(item) => item,
            None => self
                .client
                .get_item()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&claim.record_id))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("dynamodb.GetItem(idempotency claim)", &e))?
                .item
                .unwrap_or_default(),
        };
        Ok(
            if get_s(&held, "owner") == Some(claim.owner.as_str())
                && get_s(&held, CLAIM_RESULT).is_none()
            {
                // Our own claim: an earlier attempt of this very call landed.
                ClaimOutcome::Claimed
            } else if get_s(&held, "requestHash") != Some(claim.request_hash.as_str()) {
                ClaimOutcome::Reused
            } else if let Some(result) = get_s(&held, CLAIM_RESULT) {
                ClaimOutcome::Completed(result.to_owned())
            } else {
                ClaimOutcome::InProgress
            },
        )
    }

    async fn release(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        // Only our own claim: a late retry must not free a later request's.
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(WEBHOOK_ID, s(&claim.record_id))
            .condition_expression("attribute_not_exists(#id) OR #owner = :owner")
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(&claim.owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("dynamodb.DeleteItem(idempotency claim)", &e)),
        }
    }

    async fn complete(&self, claim: &IdempotencyClaim, result: &str) -> Result<(), StoreError> {
        let complete = self.complete_claim_item(claim, result)?;
        self.update_item_of(&complete)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("dynamodb.UpdateItem(complete claim)", &e))
    }
}

impl RateCounter for DynamoWebhooks {
    async fn count_request(
        &self,
        api_key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Usage, StoreError> {
        let windows = Windows::at(now);
        let minute = format!("m{:02}", windows.minute_of_hour);
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                WEBHOOK_ID,
                s(&format!("rate#{api_key_id}#{}", windows.hour_start)),
            )
            .update_expression("ADD hourCount :one, #minute :one SET expiresAt = :expires")
            .expression_attribute_names("#minute", &minute)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((windows.hour_reset + 3600).to_string()),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| classify("dynamodb.UpdateItem(rate count)", &e))?;
        let attributes = output.attributes.unwrap_or_default();
        let count = |name: &str| {
            attributes
                .get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u32>().ok())
        };
        match (count(&minute), count("hourCount")) {
            (Some(minute), Some(hour)) => Ok(Usage { minute, hour }),
            _ => Err(StoreError::Failed {
                operation: "dynamodb.UpdateItem(rate count)",
                kind: "no counts in the answer".into(),
            }),
        }
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn opt_s(text: Option<&str>) -> AttributeValue {
    text.map_or(AttributeValue::Null(true), s)
}

fn n(number: u32) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> AttributeValue {
    AttributeValue::L(items.into_iter().map(s).collect())
}

/// The stored form of a webhook: its fields and the ARN and version of its secret, no secret
/// material.
pub fn webhook_item(stored: &StoredWebhook) -> Item {
    let webhook = &stored.webhook;
    let secret = &stored.secret;
    let company = webhook.company_id.map(|id| id.to_string());
    let mut item = HashMap::from([
        (WEBHOOK_ID.to_owned(), s(&webhook.id.to_string())),
        ("apiKeyId".to_owned(), s(&webhook.api_key_id)),
        ("companyId".to_owned(), opt_s(company.as_deref())),
        (
            FANOUT_COMPANY.to_owned(),
            s(company.as_deref().unwrap_or(ALL_COMPANIES)),
        ),
        ("url".to_owned(), s(&webhook.url)),
        ("name".to_owned(), opt_s(webhook.name.as_deref())),
        (
            "description".to_owned(),
            opt_s(webhook.description.as_deref()),
        ),
        (
            "headerNames".to_owned(),
            list(webhook.header_names.iter().map(String::as_str)),
        ),
        (
            "events".to_owned(),
            list(webhook.events.iter().map(|e| e.as_str())),
        ),
        (
            "isActive".to_owned(),
            AttributeValue::Bool(webhook.is_active),
        ),
        ("maxRetries".to_owned(), n(webhook.max_retries)),
        ("timeoutMs".to_owned(), n(webhook.timeout_ms)),
        (
            "consecutiveFailures".to_owned(),
            n(webhook.consecutive_failures),
        ),
        (
            "circuitOpenedAt".to_owned(),
            opt_s(webhook.circuit_opened_at.map(rfc3339).as_deref()),
        ),
        ("secretArn".to_owned(), s(&secret.arn)),
        ("createdAt".to_owned(), s(&rfc3339(webhook.created_at))),
        ("updatedAt".to_owned(), s(&rfc3339(webhook.updated_at))),
        (
            "version".to_owned(),
            AttributeValue::N(webhook.version.to_string()),
        ),
    ]);
    if let Some(version) = &secret.version {
        item.insert("secretVersion".to_owned(), s(version));
    }
    item
}

/// Reads a webhook record; `None` if it is malformed.
pub fn webhook_from_item(item: &Item) -> Option<StoredWebhook> {
    let number = |name: &str| item.get(name)?.as_n().ok()?.parse::<u32>().ok();
    let optional = |name: &str| get_s(item, name).map(str::to_owned);
    let id = Uuid::try_parse(get_s(item, WEBHOOK_ID)?).ok()?;
    let webhook = Webhook {
        id,
        api_key_id: get_s(item, "apiKeyId")?.to_owned(),
        company_id: match get_s(item, "companyId") {
            None => None,
            Some(company) => Some(Uuid::try_parse(company).ok()?),
        },
        url: get_s(item, "url")?.to_owned(),
        name: optional("name"),
        description: optional("description"),
        header_names: get_list(item, "headerNames")?,
        events: get_list(item, "events")?
            .iter()
            .map(|e| EventType::parse(e))
            .collect::<Option<Vec<_>>>()?,
        is_active: *item.get("isActive")?.as_bool().ok()?,
        max_retries: number("maxRetries")?,
        timeout_ms: number("timeoutMs")?,
        consecutive_failures: number("consecutiveFailures")?,
        circuit_opened_at: match get_s(item, "circuitOpenedAt") {
            None => None,
            Some(at) => Some(parse_rfc3339(at)?),
        },
        created_at: parse_rfc3339(get_s(item, "createdAt")?)?,
        updated_at: parse_rfc3339(get_s(item, "updatedAt")?)?,
        version: item.get("version")?.as_n().ok()?.parse().ok()?,
    };
    let secret = SecretRef {
        arn: get_s(item, "secretArn")?.to_owned(),
        version: get_s(item, "secretVersion").map(str::to_owned),
    };
    Some(StoredWebhook { webhook, secret })
}

/// The stored form of an API key, under the hash of its token.
pub fn api_key_item(hash: &TokenHash, key: &ApiKey) -> Item {
    let mut item = HashMap::from([
        (API_KEY_HASH.to_owned(), s(&hash.0)),
        ("apiKeyId".to_owned(), s(&key.id)),
        ("name".to_owned(), s(&key.name)),
        (
            "scopes".to_owned(),
            list(key.scopes.iter().map(String::as_str)),
        ),
        (
            "companyIds".to_owned(),
            AttributeValue::L(key.company_ids.iter().map(|c| s(&c.to_string())).collect()),
        ),
        ("status".to_owned(), s(key.status.as_str())),
        ("createdAt".to_owned(), s(&rfc3339(key.created_at))),
    ]);
    if let Some(at) = key.expires_at {
        item.insert("expiresAt".to_owned(), s(&rfc3339(at)));
    }
    if let Some(at) = key.suspended_at {
        item.insert("suspendedAt".to_owned(), s(&rfc3339(at)));
    }
    if let Some(reason) = &key.suspend_reason {
        item.insert("suspendReason".to_owned(), s(reason));
    }
    // Only limits that differ from the defaults are stored, so that changing a default
    // reaches every key that never had its own.
    let defaults = RateLimits::default();
    if key.rate_limits.per_minute != defaults.per_minute {
        item.insert(RATE_PER_MINUTE.to_owned(), n(key.rate_limits.per_minute));
    }
    if key.rate_limits.per_hour != defaults.per_hour {
        item.insert(RATE_PER_HOUR.to_owned(), n(key.rate_limits.per_hour));
    }
    item
}

/// Attributes of an API key record holding its own rate limits.
pub const RATE_PER_MINUTE: &str = "rateLimitPerMinute";
pub const RATE_PER_HOUR: &str = "rateLimitPerHour";

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_list(item: &Item, name: &str) -> Option<Vec<String>> {
    match item.get(name)? {
        AttributeValue::L(values) => values
            .iter()
            .map(|v| v.as_s().ok().cloned())
            .collect::<Option<Vec<_>>>(),
        AttributeValue::Ss(values) => Some(values.clone()),
        _ => None,
    }
}

/// Reads an API key record; `None` if it is malformed.
pub fn api_key_from_item(item: &Item) -> Option<ApiKey> {
    let optional_time = |name: &str| match get_s(item, name) {
        None => Some(None),
        Some(text) => parse_rfc3339(text).map(Some),
    };
    Some(ApiKey {
        id: get_s(item, "apiKeyId")?.to_owned(),
        name: get_s(item, "name").unwrap_or_default().to_owned(),
        scopes: get_list(item, "scopes").unwrap_or_default(),
        company_ids: get_list(item, "companyIds")
            .unwrap_or_default()
            .iter()
            .map(|c| Uuid::try_parse(c).ok())
            .collect::<Option<Vec<_>>>()?,
        status: ApiKeyStatus::parse(get_s(item, "status")?)?,
        suspended_at: optional_time("suspendedAt")?,
        suspend_reason: get_s(item, "suspendReason").map(str::to_owned),
        expires_at: optional_time("expiresAt")?,
        created_at: parse_rfc3339(get_s(item, "createdAt")?)?,
        rate_limits: {
            let defaults = RateLimits::default();
            let limit = |name: &str| item.get(name).and_then(|v| v.as_n().ok()?.parse().ok());
            RateLimits {
                per_minute: limit(RATE_PER_MINUTE).unwrap_or(defaults.per_minute),
                per_hour: limit(RATE_PER_HOUR).unwrap_or(defaults.per_hour),
            }
        },
    })
}

/// The hash a stored API key item is kept under.
pub fn api_key_hash_of(item: &Item) -> Option<TokenHash> {
    get_s(item, API_KEY_HASH).map(|h| TokenHash(h.to_owned()))
}
