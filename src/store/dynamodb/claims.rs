//! Idempotency claims (`idempotency#<apiKeyId>#<digest>`): taken by a request, completed with
//! what a replay answers (alone, or in the same transaction as the write it guards), or given
//! up after a failure. Every completion and every release is conditioned on the claim's
//! owner: a request whose claim was taken over (stale) must not complete or free another's.

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, Update};
use time::OffsetDateTime;

use super::codec::{get_s, n, s};
use super::expression::build;
use super::schema::{
    claim_id, CLAIM_COMPLETED, CLAIM_IN_PROGRESS, CLAIM_OWNER, CLAIM_RESULT, CLAIM_STATUS,
    EXPIRES_AT, LOCKED_AT, REQUEST_HASH, WEBHOOK_ID,
};
use super::DynamoWebhooks;
use crate::domain::idempotency::{CLAIM_STALE_AFTER_SECONDS, IDEMPOTENCY_TTL_SECONDS};
use crate::domain::{ClaimOutcome, IdempotencyClaim};
use crate::store::aws_error::classify;
use crate::store::{IdempotencyClaims, StoreError};

impl DynamoWebhooks {
    /// The update that completes our own claim with `result`: the one completion, sent alone
    /// ([`IdempotencyClaims::complete`]) or in the transaction of the write it guards (insert,
    /// update). Lands only on a claim still in progress, for this body, held by this request.
    pub(super) fn complete_claim_item(
        &self,
        claim: &IdempotencyClaim,
        result: &str,
    ) -> Result<Update, StoreError> {
        build(
            Update::builder()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&claim_id(&claim.id)))
                .update_expression("SET #st = :done, #result = :result")
                .condition_expression("#st = :in_progress AND #hash = :hash AND #owner = :owner")
                .expression_attribute_names("#st", CLAIM_STATUS)
                .expression_attribute_names("#result", CLAIM_RESULT)
                .expression_attribute_names("#hash", REQUEST_HASH)
                .expression_attribute_names("#owner", CLAIM_OWNER)
                .expression_attribute_values(":done", s(CLAIM_COMPLETED))
                .expression_attribute_values(":in_progress", s(CLAIM_IN_PROGRESS))
                .expression_attribute_values(":hash", s(&claim.request_hash))
                .expression_attribute_values(":owner", s(&claim.owner))
                .expression_attribute_values(":result", s(result))
                .build(),
        )
    }
}

impl IdempotencyClaims for DynamoWebhooks {
    async fn claim(
        &self,
        claim: &IdempotencyClaim,
        now: OffsetDateTime,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = now.unix_timestamp();
        let id = claim_id(&claim.id);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(WEBHOOK_ID, s(&id))
            .item(CLAIM_STATUS, s(CLAIM_IN_PROGRESS))
            .item(REQUEST_HASH, s(&claim.request_hash))
            .item(CLAIM_OWNER, s(&claim.owner))
            .item(LOCKED_AT, n(now))
            // DynamoDB's TTL deletes the claim a day later (within a few days; reads check).
            .item(EXPIRES_AT, n(now + IDEMPOTENCY_TTL_SECONDS))
            .condition_expression(
                "attribute_not_exists(#id) OR #expires < :now \
                 OR (#st = :in_progress AND #locked < :stale)",
            )
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#st", CLAIM_STATUS)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_names("#locked", LOCKED_AT)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":stale", n(now - CLAIM_STALE_AFTER_SECONDS))
            .expression_attribute_values(":in_progress", s(CLAIM_IN_PROGRESS))
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
                .key(WEBHOOK_ID, s(&id))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("dynamodb.GetItem(idempotency claim)", &e))?
                .item
                .unwrap_or_default(),
        };
        Ok(
            if get_s(&held, CLAIM_OWNER) == Some(claim.owner.as_str())
                && get_s(&held, CLAIM_RESULT).is_none()
            {
                // Our own claim: an earlier attempt of this very call landed.
                ClaimOutcome::Claimed
            } else if get_s(&held, REQUEST_HASH) != Some(claim.request_hash.as_str()) {
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
            .key(WEBHOOK_ID, s(&claim_id(&claim.id)))
            .condition_expression("attribute_not_exists(#id) OR #owner = :owner")
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#owner", CLAIM_OWNER)
            .expression_attribute_values(":owner", s(&claim.owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
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
