//! The item codec: attribute values, and webhook and API key records to and from items. Every
//! attribute is spelled through [`super::schema`].

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use uuid::Uuid;

use super::schema::{
    ALL_COMPANIES, API_KEY_HASH, API_KEY_ID, CIRCUIT_OPENED_AT, COMPANY_ID, COMPANY_IDS,
    CONSECUTIVE_FAILURES, CREATED_AT, DESCRIPTION, EVENTS, FANOUT_COMPANY, HEADER_NAMES, IS_ACTIVE,
    KEY_EXPIRES_AT, KEY_STATUS, MAX_RETRIES, NAME, RATE_PER_HOUR, RATE_PER_MINUTE, SCOPES,
    SECRET_ARN, SECRET_VERSION, SUSPENDED_AT, SUSPEND_REASON, TIMEOUT_MS, UPDATED_AT, URL, VERSION,
    WEBHOOK_ID,
};
use super::Item;
use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::{ApiKey, ApiKeyStatus, EventType, RateLimits, TokenHash, Webhook};
use crate::store::{SecretRef, StoreError, StoredWebhook};

pub(super) fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

pub(super) fn opt_s(text: Option<&str>) -> AttributeValue {
    text.map_or(AttributeValue::Null(true), s)
}

pub(super) fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

pub(super) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> AttributeValue {
    AttributeValue::L(items.into_iter().map(s).collect())
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
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

/// A record that [`webhook_from_item`] could not read.
pub(super) fn malformed(operation: &'static str) -> StoreError {
    StoreError::Failed {
        operation,
        kind: "malformed webhook record".into(),
    }
}

/// The stored form of a webhook: its fields and the ARN and version of its secret, no secret
/// material.
pub fn webhook_item(stored: &StoredWebhook) -> Item {
    let webhook = &stored.webhook;
    let secret = &stored.secret;
    let company = webhook.company_id.map(|id| id.to_string());
    let mut item = HashMap::from([
        (WEBHOOK_ID.to_owned(), s(&webhook.id.to_string())),
        (API_KEY_ID.to_owned(), s(&webhook.api_key_id)),
        (COMPANY_ID.to_owned(), opt_s(company.as_deref())),
        (
            FANOUT_COMPANY.to_owned(),
            s(company.as_deref().unwrap_or(ALL_COMPANIES)),
        ),
        (URL.to_owned(), s(&webhook.url)),
        (NAME.to_owned(), opt_s(webhook.name.as_deref())),
        (
            DESCRIPTION.to_owned(),
            opt_s(webhook.description.as_deref()),
        ),
        (
            HEADER_NAMES.to_owned(),
            list(webhook.header_names.iter().map(String::as_str)),
        ),
        (
            EVENTS.to_owned(),
            list(webhook.events.iter().map(|e| e.as_str())),
        ),
        (
            IS_ACTIVE.to_owned(),
            AttributeValue::Bool(webhook.is_active),
        ),
        (MAX_RETRIES.to_owned(), n(webhook.max_retries)),
        (TIMEOUT_MS.to_owned(), n(webhook.timeout_ms)),
        (
            CONSECUTIVE_FAILURES.to_owned(),
            n(webhook.consecutive_failures),
        ),
        (
            CIRCUIT_OPENED_AT.to_owned(),
            opt_s(webhook.circuit_opened_at.map(rfc3339).as_deref()),
        ),
        (SECRET_ARN.to_owned(), s(&secret.arn)),
        (CREATED_AT.to_owned(), s(&rfc3339(webhook.created_at))),
        (UPDATED_AT.to_owned(), s(&rfc3339(webhook.updated_at))),
        (VERSION.to_owned(), n(webhook.version)),
    ]);
    if let Some(version) = &secret.version {
        item.insert(SECRET_VERSION.to_owned(), s(version));
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
        api_key_id: get_s(item, API_KEY_ID)?.to_owned(),
        company_id: match get_s(item, COMPANY_ID) {
            None => None,
            Some(company) => Some(Uuid::try_parse(company).ok()?),
        },
        url: get_s(item, URL)?.to_owned(),
        name: optional(NAME),
        description: optional(DESCRIPTION),
        header_names: get_list(item, HEADER_NAMES)?,
        events: get_list(item, EVENTS)?
            .iter()
            .map(|e| EventType::parse(e))
            .collect::<Option<Vec<_>>>()?,
        is_active: *item.get(IS_ACTIVE)?.as_bool().ok()?,
        max_retries: number(MAX_RETRIES)?,
        timeout_ms: number(TIMEOUT_MS)?,
        consecutive_failures: number(CONSECUTIVE_FAILURES)?,
        circuit_opened_at: match get_s(item, CIRCUIT_OPENED_AT) {
            None => None,
            Some(at) => Some(parse_rfc3339(at)?),
        },
        created_at: parse_rfc3339(get_s(item, CREATED_AT)?)?,
        updated_at: parse_rfc3339(get_s(item, UPDATED_AT)?)?,
        version: item.get(VERSION)?.as_n().ok()?.parse().ok()?,
    };
    let secret = SecretRef {
        arn: get_s(item, SECRET_ARN)?.to_owned(),
        version: get_s(item, SECRET_VERSION).map(str::to_owned),
    };
    Some(StoredWebhook { webhook, secret })
}

/// The stored form of an API key, under the hash of its token.
pub fn api_key_item(hash: &TokenHash, key: &ApiKey) -> Item {
    let mut item = HashMap::from([
        (API_KEY_HASH.to_owned(), s(&hash.0)),
        (API_KEY_ID.to_owned(), s(&key.id)),
        (NAME.to_owned(), s(&key.name)),
        (
            SCOPES.to_owned(),
            list(key.scopes.iter().map(String::as_str)),
        ),
        (
            COMPANY_IDS.to_owned(),
            AttributeValue::L(key.company_ids.iter().map(|c| s(&c.to_string())).collect()),
        ),
        (KEY_STATUS.to_owned(), s(key.status.as_str())),
        (CREATED_AT.to_owned(), s(&rfc3339(key.created_at))),
    ]);
    if let Some(at) = key.expires_at {
        item.insert(KEY_EXPIRES_AT.to_owned(), s(&rfc3339(at)));
    }
    if let Some(at) = key.suspended_at {
        item.insert(SUSPENDED_AT.to_owned(), s(&rfc3339(at)));
    }
    if let Some(reason) = &key.suspend_reason {
        item.insert(SUSPEND_REASON.to_owned(), s(reason));
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

/// Reads an API key record; `None` if it is malformed.
pub fn api_key_from_item(item: &Item) -> Option<ApiKey> {
    let optional_time = |name: &str| match get_s(item, name) {
        None => Some(None),
        Some(text) => parse_rfc3339(text).map(Some),
    };
    Some(ApiKey {
        id: get_s(item, API_KEY_ID)?.to_owned(),
        name: get_s(item, NAME).unwrap_or_default().to_owned(),
        scopes: get_list(item, SCOPES).unwrap_or_default(),
        company_ids: get_list(item, COMPANY_IDS)
            .unwrap_or_default()
            .iter()
            .map(|c| Uuid::try_parse(c).ok())
            .collect::<Option<Vec<_>>>()?,
        status: ApiKeyStatus::parse(get_s(item, KEY_STATUS)?)?,
        suspended_at: optional_time(SUSPENDED_AT)?,
        suspend_reason: get_s(item, SUSPEND_REASON).map(str::to_owned),
        expires_at: optional_time(KEY_EXPIRES_AT)?,
        created_at: parse_rfc3339(get_s(item, CREATED_AT)?)?,
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
