//! DynamoDB adapters: API key records (read) and webhook records (write).

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use super::aws_error::classify;
use super::{ApiKeyStore, InsertError, SecretRef, StoreError, WebhookStore};
use crate::domain::idempotency::{CLAIM_STALE_AFTER_SECONDS, IDEMPOTENCY_TTL_SECONDS};
use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::{
    ApiKey, ApiKeyStatus, ClaimOutcome, EventType, IdempotencyClaim, TokenHash, Webhook,
};

/// An item as the SDK represents it.
pub type Item = HashMap<String, AttributeValue>;

/// Partition key of the API key table.
pub const API_KEY_HASH: &str = "keyHash";
/// Partition key of the webhooks table.
pub const WEBHOOK_ID: &str = "id";
/// Marks an item that holds a failed create's id, so that a late copy cannot write it.
pub const FENCE: &str = "fence";

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

/// Writes webhook records.
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
    match error.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";

impl WebhookStore for DynamoWebhooks {
    async fn insert(
        &self,
        webhook: &Webhook,
        secret: &SecretRef,
        limit: u32,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<(), InsertError> {
        let put = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(webhook_item(webhook, secret)))
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
                    .update_expression("SET #st = :done, webhookId = :webhook")
                    .condition_expression("#st = :in_progress AND requestHash = :hash")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":done", s("completed"))
                    .expression_attribute_values(":in_progress", s("in_progress"))
                    .expression_attribute_values(":hash", s(&claim.request_hash))
                    .expression_attribute_values(":webhook", s(&webhook.id.to_string()))
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
                Some((_, stored)) if stored.arn == secret.arn => Ok(()),
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

    async fn remove(&self, id: Uuid, api_key_id: &str) -> Result<(), StoreError> {
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
            let give_back = build(
                Update::builder()
                    .table_name(&self.table)
                    .key(WEBHOOK_ID, s(&quota_id(api_key_id)))
                    .update_expression("ADD webhookCount :minus_one")
                    .expression_attribute_values(":minus_one", AttributeValue::N("-1".into()))
                    .build(),
            )?;
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

    async fn get(&self, id: Uuid) -> Result<Option<(Webhook, SecretRef)>, StoreError> {
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
                && get_s(&held, "webhookId").is_none()
            {
                // Our own claim: an earlier attempt of this very call landed.
                ClaimOutcome::Claimed
            } else if get_s(&held, "requestHash") != Some(claim.request_hash.as_str()) {
                ClaimOutcome::Reused
            } else if let Some(id) =
                get_s(&held, "webhookId").and_then(|id| Uuid::try_parse(id).ok())
            {
                ClaimOutcome::Completed(id)
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

/// The stored form of a webhook: its fields and the ARN of its secret, no secret material.
pub fn webhook_item(webhook: &Webhook, secret: &SecretRef) -> Item {
    let company = webhook.company_id.map(|id| id.to_string());
    HashMap::from([
        (WEBHOOK_ID.to_owned(), s(&webhook.id.to_string())),
        ("apiKeyId".to_owned(), s(&webhook.api_key_id)),
        ("companyId".to_owned(), opt_s(company.as_deref())),
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
    ])
}

/// Reads a webhook record; `None` if it is malformed.
pub fn webhook_from_item(item: &Item) -> Option<(Webhook, SecretRef)> {
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
    };
    let arn = get_s(item, "secretArn")?.to_owned();
    Some((webhook, SecretRef { arn }))
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
    item
}

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
    })
}

/// The hash a stored API key item is kept under.
pub fn api_key_hash_of(item: &Item) -> Option<TokenHash> {
    get_s(item, API_KEY_HASH).map(|h| TokenHash(h.to_owned()))
}
