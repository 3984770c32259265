//! Rate windows (`rate#<apiKeyId>#<hourStart>`): one item per key and hour, counting the hour
//! and each of its minutes in one `UpdateItem`.

use aws_sdk_dynamodb::types::ReturnValue;
use time::OffsetDateTime;

use super::codec::{n, s};
use super::schema::{minute_count, rate_window_id, EXPIRES_AT, HOUR_COUNT, WEBHOOK_ID};
use super::DynamoWebhooks;
use crate::domain::rate_limit::{Usage, Windows};
use crate::store::aws_error::classify;
use crate::store::{RateCounter, StoreError};

/// How long a window outlives its hour's reset (it is never read after it).
const WINDOW_KEPT_SECONDS: i64 = 3600;

impl RateCounter for DynamoWebhooks {
    async fn count_request(
        &self,
        api_key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Usage, StoreError> {
        let windows = Windows::at(now);
        let minute = minute_count(windows.minute_of_hour);
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                WEBHOOK_ID,
                s(&rate_window_id(api_key_id, windows.hour_start)),
            )
            .update_expression("ADD #hour :one, #minute :one SET #expires = :expires")
            .expression_attribute_names("#hour", HOUR_COUNT)
            .expression_attribute_names("#minute", &minute)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(windows.hour_reset + WINDOW_KEPT_SECONDS))
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
        match (count(&minute), count(HOUR_COUNT)) {
            (Some(minute), Some(hour)) => Ok(Usage { minute, hour }),
            _ => Err(StoreError::Failed {
                operation: "dynamodb.UpdateItem(rate count)",
                kind: "no counts in the answer".into(),
            }),
        }
    }
}
