//! The per-key webhook count (`quota#<apiKeyId>`): taken by an insert, given back by a delete
//! or an undo, always in the same transaction as the record's write.

use aws_sdk_dynamodb::types::Update;

use super::codec::{n, s};
use super::expression::build;
use super::schema::{quota_id, WEBHOOK_COUNT, WEBHOOK_ID};
use super::DynamoWebhooks;
use crate::store::StoreError;

impl DynamoWebhooks {
    /// The update that takes one of `api_key_id`'s places, if it has fewer than `limit`
    /// webhooks (in the insert's transaction).
    pub(super) fn take_place(&self, api_key_id: &str, limit: u32) -> Result<Update, StoreError> {
        build(
            Update::builder()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&quota_id(api_key_id)))
                .update_expression("ADD #count :one")
                .condition_expression("attribute_not_exists(#count) OR #count < :limit")
                .expression_attribute_names("#count", WEBHOOK_COUNT)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":limit", n(limit))
                .build(),
        )
    }

    /// The update that gives a webhook's place in its key's limit back (in a transaction).
    pub(super) fn give_back(&self, api_key_id: &str) -> Result<Update, StoreError> {
        build(
            Update::builder()
                .table_name(&self.table)
                .key(WEBHOOK_ID, s(&quota_id(api_key_id)))
                .update_expression("ADD #count :minus_one")
                .expression_attribute_names("#count", WEBHOOK_COUNT)
                .expression_attribute_values(":minus_one", n(-1))
                .build(),
        )
    }
}
