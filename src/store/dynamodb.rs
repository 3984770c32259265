//! DynamoDB adapters: API key records (read) and webhook records (write).

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use uuid::Uuid;

use super::aws_error::classify;
use super::{ApiKeyStore, SecretRef, StoreError, WebhookStore};
use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::{ApiKey, ApiKeyStatus, TokenHash, Webhook};

/// An item as the SDK represents it.
pub type Item = HashMap<String, AttributeValue>;

/// Partition key of the API key table.
pub const API_KEY_HASH: &str = "keyHash";
/// Partition key of the webhooks table.
pub const WEBHOOK_ID: &str = "id";

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

impl WebhookStore for DynamoWebhooks {
    async fn insert(&self, webhook: &Webhook, secret: &SecretRef) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(webhook_item(webhook, secret)))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", WEBHOOK_ID)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The SDK retried a put whose first attempt had landed: the record is ours.
            Err(e) if holds_secret(&e, secret) => Ok(()),
            Err(e) => Err(classify("dynamodb.PutItem(webhook)", &e)),
        }
    }

    async fn remove(&self, id: Uuid, secret: &SecretRef) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(WEBHOOK_ID, AttributeValue::S(id.to_string()))
            .condition_expression("attribute_not_exists(#id) OR secretArn = :arn")
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_values(":arn", AttributeValue::S(secret.arn.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(classify("dynamodb.DeleteItem(webhook)", &e)),
        }
    }
}

/// True when a failed conditional put found a record that carries `secret`, i.e. our own.
fn holds_secret(error: &SdkError<PutItemError, HttpResponse>, secret: &SecretRef) -> bool {
    match error.as_service_error() {
        Some(PutItemError::ConditionalCheckFailedException(failed)) => failed
            .item()
            .and_then(|item| get_s(item, "secretArn"))
            .is_some_and(|arn| arn == secret.arn),
        _ => false,
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
