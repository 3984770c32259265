//! API key records: found by the hash of their token (the API), written and listed by the
//! admin tool (`src/admin.rs`). Every read and write of the API keys table is here.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::OffsetDateTime;

use super::codec::{api_key_from_item, api_key_hash_of, api_key_item, get_s, n, s};
use super::schema::{
    API_KEY_HASH, API_KEY_ID, KEY_STATUS, RATE_PER_HOUR, RATE_PER_MINUTE, SUSPENDED_AT,
    SUSPEND_REASON,
};
use super::{DynamoApiKeys, Item};
use crate::domain::time_format::rfc3339;
use crate::domain::{ApiKey, ApiKeyStatus, TokenHash};
use crate::store::aws_error::classify;
use crate::store::{ApiKeyStore, StoreError};

impl ApiKeyStore for DynamoApiKeys {
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(API_KEY_HASH, s(&hash.0))
            .send()
            .await
            .map_err(|e| classify("dynamodb.GetItem(api key)", &e))?;
        match output.item {
            None => Ok(None),
            Some(item) => api_key_from_item(&item)
                .map(Some)
                .ok_or(malformed("dynamodb.GetItem(api key)")),
        }
    }
}

/// A change the admin tool makes to one key record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// The key answers 401 `API_KEY_SUSPENDED` (with the reason) until reactivated.
    Suspend { reason: String, at: OffsetDateTime },
    /// The key is refused for good.
    Revoke,
    /// The key's own rate limits; `None` keeps a limit as it is.
    RateLimits {
        per_minute: Option<u32>,
        per_hour: Option<u32>,
    },
}

/// What `change` sets: (placeholder, attribute, value), each attribute once.
fn sets_of(change: &KeyChange) -> Vec<(&'static str, &'static str, AttributeValue)> {
    match change {
        KeyChange::Suspend { reason, at } => vec![
            ("status", KEY_STATUS, s(ApiKeyStatus::Suspended.as_str())),
            ("at", SUSPENDED_AT, s(&rfc3339(*at))),
            ("reason", SUSPEND_REASON, s(reason)),
        ],
        KeyChange::Revoke => vec![("status", KEY_STATUS, s(ApiKeyStatus::Revoked.as_str()))],
        KeyChange::RateLimits {
            per_minute,
            per_hour,
        } => [
            per_minute.map(|limit| ("minute", RATE_PER_MINUTE, n(limit))),
            per_hour.map(|limit| ("hour", RATE_PER_HOUR, n(limit))),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

fn malformed(operation: &'static str) -> StoreError {
    StoreError::Failed {
        operation,
        kind: "malformed API key record".into(),
    }
}

impl DynamoApiKeys {
    /// Writes a new key record under the hash of its token. `Ok(false)`: a record with this
    /// hash exists already (the same token), and is left as it was.
    pub async fn insert(&self, hash: &TokenHash, key: &ApiKey) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(api_key_item(hash, key)))
            .condition_expression("attribute_not_exists(#hash)")
            .expression_attribute_names("#hash", API_KEY_HASH)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(classify("dynamodb.PutItem(api key)", &e)),
        }
    }

    /// Every key record, oldest first (records that cannot be read are left out).
    pub async fn list(&self) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys: Vec<ApiKey> = self
            .scan()
            .await?
            .iter()
            .filter_map(api_key_from_item)
            .collect();
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }

    /// Applies `change` to the key with id `api_key_id` and returns the key as changed;
    /// `Ok(None)` when there is no such key.
    pub async fn update(
        &self,
        api_key_id: &str,
        change: &KeyChange,
    ) -> Result<Option<ApiKey>, StoreError> {
        const OPERATION: &str = "dynamodb.UpdateItem(api key)";
        // Keys are few: a scan finds one by id. (The byApiKeyId index would too, but only
        // eventually: a key created a moment ago might not be in it yet.)
        let items = self.scan().await?;
        let Some(item) = items
            .iter()
            .find(|item| get_s(item, API_KEY_ID) == Some(api_key_id))
        else {
            return Ok(None);
        };
        let hash = api_key_hash_of(item).ok_or(malformed(OPERATION))?;
        let sets = sets_of(change);
        if sets.is_empty() {
            // Nothing to write: the key as it is.
            return api_key_from_item(item)
                .map(Some)
                .ok_or(malformed(OPERATION));
        }
        let expression = sets
            .iter()
            .map(|(placeholder, _, _)| format!("#{placeholder} = :{placeholder}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(API_KEY_HASH, s(&hash.0))
            .update_expression(format!("SET {expression}"))
            // Never a new, partial record if the key went in between.
            .condition_expression("attribute_exists(#hash)")
            .expression_attribute_names("#hash", API_KEY_HASH)
            .return_values(ReturnValue::AllNew);
        for (placeholder, attribute, value) in sets {
            request = request
                .expression_attribute_names(format!("#{placeholder}"), attribute)
                .expression_attribute_values(format!(":{placeholder}"), value);
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(classify(OPERATION, &e)),
        };
        output
            .attributes
            .as_ref()
            .and_then(api_key_from_item)
            .map(Some)
            .ok_or(malformed(OPERATION))
    }

    /// Every item of the API keys table.
    async fn scan(&self) -> Result<Vec<Item>, StoreError> {
        let pages: Result<Vec<_>, _> = self
            .client
            .scan()
            .table_name(&self.table)
            // A key created a moment ago is listed (and can be changed) at once.
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        pages.map_err(|e| classify("dynamodb.Scan(api keys)", &e))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use crate::domain::RateLimits;

    fn key() -> ApiKey {
        ApiKey {
            id: "k1".into(),
            name: "Acme".into(),
            scopes: vec!["write:webhooks".into()],
            company_ids: vec![Uuid::nil()],
            status: ApiKeyStatus::Active,
            suspended_at: None,
            suspend_reason: None,
            expires_at: None,
            created_at: datetime!(2026-01-01 0:00 UTC),
            rate_limits: RateLimits::default(),
        }
    }

    /// The record as DynamoDB holds it after the update's `SET`s.
    fn changed(change: &KeyChange) -> ApiKey {
        let mut item = api_key_item(&TokenHash("h".into()), &key());
        for (_, attribute, value) in sets_of(change) {
            item.insert(attribute.to_owned(), value);
        }
        api_key_from_item(&item).expect("the codec reads what the update writes")
    }

    #[test]
    fn a_suspension_is_read_back_with_its_time_and_reason() {
        let at = datetime!(2026-02-03 4:05:06 UTC);
        let key = changed(&KeyChange::Suspend {
            reason: "Unpaid invoice".into(),
            at,
        });
        assert_eq!(key.status, ApiKeyStatus::Suspended);
        assert_eq!(key.suspended_at, Some(at));
        assert_eq!(key.suspend_reason.as_deref(), Some("Unpaid invoice"));
    }

    #[test]
    fn a_revocation_changes_only_the_status() {
        let key = changed(&KeyChange::Revoke);
        assert_eq!(key.status, ApiKeyStatus::Revoked);
        assert_eq!(
            key,
            ApiKey {
                status: ApiKeyStatus::Revoked,
                ..self::key()
            }
        );
    }

    #[test]
    fn rate_limits_change_only_the_limits_given() {
        let defaults = RateLimits::default();
        let key = changed(&KeyChange::RateLimits {
            per_minute: Some(120),
            per_hour: None,
        });
        assert_eq!(key.rate_limits.per_minute, 120);
        assert_eq!(key.rate_limits.per_hour, defaults.per_hour);
        let sets = sets_of(&KeyChange::RateLimits {
            per_minute: None,
            per_hour: Some(5000),
        });
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].1, RATE_PER_HOUR);
        assert!(sets_of(&KeyChange::RateLimits {
            per_minute: None,
            per_hour: None
        })
        .is_empty());
    }
}
