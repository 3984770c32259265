//! DynamoDB adapters: API key records (read by the API, written by the admin tool) and the
//! webhooks table (records, per-key counts, idempotency claims, rate counters, tombstones).
//!
//! - [`schema`]: every attribute name, key prefix, index and TTL attribute of the three tables, and
//!   the key-building functions (docs/TABLES.md is the same as a table).
//! - `codec`: attribute values, webhook and API key records to and from items.
//! - `expression`: placeholders, the caller's condition, cancelled transactions' reasons.
//! - One module per item kind: `webhooks` (records), `tombstones` (the fences and tombstones
//!   of undo and delete), `api_keys`, `quotas` (the per-key count), `claims` (idempotency
//!   claims), `rate_windows`, [`deliveries`] (the delivery log: events, deliveries and their
//!   attempts; the API reads it, the pipeline writes it).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

mod api_keys;
mod claims;
mod codec;
pub mod deliveries;
mod expression;
mod quotas;
mod rate_windows;
pub mod schema;
mod tombstones;
mod webhooks;
pub use api_keys::KeyChange;
pub use deliveries::DynamoDeliveryLog;
pub use expression::update_item_of;
pub use webhooks::query_webhooks;

pub use codec::{api_key_from_item, webhook_from_item, webhook_item};
pub use schema::{
    ALL_COMPANIES, API_KEYS_BY_ID_INDEX, API_KEY_HASH, BY_API_KEY_INDEX, BY_COMPANY_INDEX,
    FANOUT_COMPANY, FENCE, RATE_PER_HOUR, RATE_PER_MINUTE, WEBHOOK_ID,
};

/// An item as the SDK represents it.
pub type Item = HashMap<String, AttributeValue>;

/// The API keys table: records read by token hash, written and listed by the admin tool.
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

/// The webhooks table.
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
