//! API key records: found by the hash of their token. (The admin tool writes them, with
//! [`super::api_key_item`].)

use super::codec::{api_key_from_item, s};
use super::schema::API_KEY_HASH;
use super::DynamoApiKeys;
use crate::domain::{ApiKey, TokenHash};
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
                .ok_or(StoreError::Failed {
                    operation: "dynamodb.GetItem(api key)",
                    kind: "malformed API key record".into(),
                }),
        }
    }
}
