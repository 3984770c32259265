//! Webhook records (under the webhook's UUID): the create's insert (with the key's count and
//! the claim's completion, in one transaction), conditional changes, reads by id and by owner.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::codec::{get_s, list, malformed, n, opt_s, s, webhook_from_item, webhook_item};
use super::expression::{
    build, cancellation_codes, cancellation_reasons, Expression, CONDITION_FAILED,
};
use super::schema::{
    API_KEY_ID, BY_API_KEY_INDEX, CIRCUIT_OPENED_AT, CONSECUTIVE_FAILURES, DESCRIPTION, EVENTS,
    FENCE, HEADER_NAMES, IS_ACTIVE, LAST_CHANGE, NAME, SECRET_VERSION, UPDATED_AT, URL, VERSION,
    WEBHOOK_ID,
};
use super::{DynamoWebhooks, Item};
use crate::domain::time_format::rfc3339;
use crate::domain::IdempotencyClaim;
use crate::store::aws_error::classify;
use crate::store::{
    judge_change, whole_seconds, Caller, ChangeError, Deleted, InsertError, StoreError,
    StoredWebhook, WebhookChange, WebhookReads, WebhookWrites,
};

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
        let count = self.take_place(&webhook.api_key_id, limit)?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build());
        if let Some(claim) = claim {
            // The one completion (owner included), as in `update` and `complete`.
            let complete = self.complete_claim_item(claim, &webhook.id.to_string())?;
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
        self.undo(id, api_key_id).await
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
            set(&mut expression, URL, s(url));
        }
        if let Some(events) = &change.events {
            set(
                &mut expression,
                EVENTS,
                list(events.iter().map(|e| e.as_str())),
            );
        }
        if let Some(name) = &change.name {
            set(&mut expression, NAME, opt_s(name.as_deref()));
        }
        if let Some(description) = &change.description {
            set(&mut expression, DESCRIPTION, opt_s(description.as_deref()));
        }
        if let Some(active) = change.is_active {
            set(&mut expression, IS_ACTIVE, AttributeValue::Bool(active));
        }
        if let Some(swap) = &change.secret {
            set(
                &mut expression,
                SECRET_VERSION,
                opt_s(swap.to.version.as_deref()),
            );
            if let Some(names) = &swap.header_names {
                set(
                    &mut expression,
                    HEADER_NAMES,
                    list(names.iter().map(String::as_str)),
                );
            }
        }
        if change.reset_circuit {
            set(&mut expression, CONSECUTIVE_FAILURES, n(0));
            set(
                &mut expression,
                CIRCUIT_OPENED_AT,
                AttributeValue::Null(true),
            );
            set(&mut expression, IS_ACTIVE, AttributeValue::Bool(true));
        }
        set(&mut expression, UPDATED_AT, s(&rfc3339(whole_seconds(now))));
        // Marks the record with this very change, so that a retried write that finds its own
        // change landed (its first answer lost) is taken for the success it is.
        let change_id = Uuid::new_v4().to_string();
        set(&mut expression, LAST_CHANGE, s(&change_id));
        let version = expression.name(VERSION);
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
        self.delete_to_tombstone(id, caller).await
    }
}

impl DynamoWebhooks {
    /// The item as stored (tombstones and fences included), strongly consistent.
    pub(super) async fn read_item(&self, id: Uuid) -> Result<Option<Item>, StoreError> {
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
    pub(super) async fn why_refused(
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
}

impl WebhookReads for DynamoWebhooks {
    async fn get(&self, id: Uuid) -> Result<Option<StoredWebhook>, StoreError> {
        let item = self.read_item(id).await?;
        match item.filter(|item| !item.contains_key(FENCE)) {
            None => Ok(None),
            Some(item) => webhook_from_item(&item)
                .map(Some)
                .ok_or_else(|| malformed("dynamodb.GetItem(webhook)")),
        }
    }

    async fn list_by_owner(&self, api_key_id: &str) -> Result<Vec<StoredWebhook>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_API_KEY_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", API_KEY_ID)
            .expression_attribute_values(":owner", s(api_key_id));
        query_webhooks(query, "dynamodb.Query(webhooks by key)").await
    }
}

/// Every page of a `Query` on the webhooks table, each item read as a webhook record (the list
/// by owner, the pipeline's fan-out partitions).
pub async fn query_webhooks(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    operation: &'static str,
) -> Result<Vec<StoredWebhook>, StoreError> {
    let pages: Result<Vec<Item>, _> = query
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect();
    pages
        .map_err(|e| classify(operation, &e))?
        .iter()
        .map(|item| webhook_from_item(item).ok_or_else(|| malformed(operation)))
        .collect()
}
