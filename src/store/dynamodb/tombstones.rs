//! Fences and tombstones: items under a webhook's id that carry [`FENCE`] and no record. The
//! create's undo leaves a fence where no record landed (so that a late copy of the insert
//! fails its `attribute_not_exists(id)`); a delete leaves a tombstone with [`DELETED_BY`] (so
//! that a retried delete can finish the secret's deletion, and a late write cannot bring the
//! record back). Both expire by TTL ([`EXPIRES_AT`]); the reconciler removes those past it.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::codec::{get_s, n, s};
use super::expression::{
    build, cancellation_codes, cancellation_reasons, Expression, CONDITION_FAILED,
};
use super::schema::{DELETED_BY, EXPIRES_AT, FENCE, WEBHOOK_ID};
use super::DynamoWebhooks;
use crate::domain::idempotency::IDEMPOTENCY_TTL_SECONDS;
use crate::store::aws_error::classify;
use crate::store::{Caller, ChangeError, Deleted, StoreError, WebhookChange};

/// How long a deleted webhook's tombstone is kept (a retried DELETE finds it), in seconds.
const TOMBSTONE_TTL_SECONDS: i64 = 7 * 24 * 60 * 60;
/// How long an undo's fence is kept: as long as the create's claim, which a retry of the
/// create would present.
const FENCE_TTL_SECONDS: i64 = IDEMPOTENCY_TTL_SECONDS;

impl DynamoWebhooks {
    /// [`crate::store::WebhookWrites::undo_insert`]: removes the record with its place in the
    /// key's limit, or fences the id where there is no record.
    pub(super) async fn undo(&self, id: Uuid, api_key_id: &str) -> Result<(), StoreError> {
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
            let expires = OffsetDateTime::now_utc().unix_timestamp() + FENCE_TTL_SECONDS;
            let fenced = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(WEBHOOK_ID, s(&id.to_string()))
                .item(FENCE, AttributeValue::Bool(true))
                .item(EXPIRES_AT, n(expires))
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

    /// [`crate::store::WebhookWrites::delete`]: replaces the record with a tombstone and gives
    /// its place back, in one transaction.
    pub(super) async fn delete_to_tombstone(
        &self,
        id: Uuid,
        caller: &Caller<'_>,
    ) -> Result<Deleted, ChangeError> {
        let mut expression = Expression::default();
        let condition = expression.caller_condition(caller, None);
        let expires = OffsetDateTime::now_utc().unix_timestamp() + TOMBSTONE_TTL_SECONDS;
        let tombstone = build(
            Put::builder()
                .table_name(&self.table)
                .item(WEBHOOK_ID, s(&id.to_string()))
                .item(FENCE, AttributeValue::Bool(true))
                .item(DELETED_BY, s(caller.api_key_id))
                .item(EXPIRES_AT, n(expires))
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
