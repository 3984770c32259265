//! Building requests: expressions with generated placeholders, the caller's condition, the
//! SDK's builder errors, a cancelled transaction's reasons, and a transaction's `Update` sent
//! as a request of its own.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Update};

use super::codec::{n, s};
use super::schema::{API_KEY_ID, COMPANY_ID, FENCE, SECRET_VERSION, VERSION, WEBHOOK_ID};
use super::{DynamoWebhooks, Item};
use crate::store::{Caller, SecretRef, StoreError};

/// The cancellation code of a transaction item whose condition failed.
pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// A request the SDK's builder refused (a missing required field: a bug).
pub(super) fn build<T, E: std::fmt::Display>(built: Result<T, E>) -> Result<T, StoreError> {
    built.map_err(|e| StoreError::Failed {
        operation: "dynamodb request",
        kind: format!("invalid request: {e}"),
    })
}

/// The code of each item's cancellation reason in a cancelled transaction.
pub(super) fn cancellation_codes(
    error: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<Vec<String>> {
    cancellation_reasons(error).map(|reasons| reasons.into_iter().map(|(code, _)| code).collect())
}

/// The code and (where asked for) the old item of each item of a cancelled transaction.
pub(super) fn cancellation_reasons(
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

impl DynamoWebhooks {
    /// `update`, a transaction item, as a request of its own (one builder for both uses).
    pub(super) fn update_item_of(&self, update: &Update) -> UpdateItemFluentBuilder {
        update_item_of(&self.client, update)
    }
}

/// `update`, a transaction item, as an `UpdateItem` request of its own: one builder for a write
/// sent alone or in a transaction (the pipeline's attempt entries too).
pub fn update_item_of(
    client: &aws_sdk_dynamodb::Client,
    update: &Update,
) -> UpdateItemFluentBuilder {
    client
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

/// Builds expression attribute names and values with generated placeholders.
#[derive(Default)]
pub(super) struct Expression {
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

impl Expression {
    pub(super) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// [`crate::store::judge_change`]'s rules as a condition: the caller's own live record, a
    /// company the caller may act for (or none), the `If-Match` version, the secret version a
    /// swap replaces.
    pub(super) fn caller_condition(
        &mut self,
        caller: &Caller<'_>,
        secret: Option<&SecretRef>,
    ) -> String {
        let id = self.name(WEBHOOK_ID);
        let fence = self.name(FENCE);
        let owner = self.name(API_KEY_ID);
        let key = self.value(s(caller.api_key_id));
        let mut parts = vec![
            format!("attribute_exists({id})"),
            format!("attribute_not_exists({fence})"),
            format!("{owner} = {key}"),
        ];
        let company = self.name(COMPANY_ID);
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
            let path = self.name(VERSION);
            let value = self.value(n(version));
            parts.push(format!("{path} = {value}"));
        }
        if let Some(from) = secret {
            let path = self.name(SECRET_VERSION);
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
