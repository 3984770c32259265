//! Operator tasks: create the tables and the pepper, and manage API keys.
//! Used by the `webhooks-admin` binary and by the integration tests.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{ApiKey, ApiKeyStatus, ApiToken, Pepper, RateLimits};
use crate::store::dynamodb::schema::{
    API_KEYS_BY_ID_INDEX, API_KEY_HASH, API_KEY_ID, BY_API_KEY_INDEX, BY_COMPANY_INDEX, CREATED_AT,
    EXPIRES_AT, FANOUT_COMPANY, WEBHOOK_ID,
};
use crate::store::dynamodb::{DynamoApiKeys, KeyChange};
use crate::store::secrets_manager::SecretsManagerStore;
use crate::store::{SecretStore, StoreError};

/// What an admin command failed on. Messages name the resource, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{operation} failed: {code}")]
    Aws { operation: String, code: String },
    #[error("{0}")]
    Invalid(String),
}

fn aws_error<E: ProvideErrorMetadata>(operation: &str, error: &E) -> AdminError {
    AdminError::Aws {
        operation: operation.to_owned(),
        code: error
            .code()
            .unwrap_or("connection or timeout error")
            .to_owned(),
    }
}

/// A failed call of the API keys table (its message holds the operation and the code only).
fn store_error(error: StoreError) -> AdminError {
    match error {
        StoreError::Unavailable { operation, kind } | StoreError::Failed { operation, kind } => {
            AdminError::Aws {
                operation: operation.to_owned(),
                code: kind,
            }
        }
    }
}

/// Names of the resources the admin tool manages.
#[derive(Clone, Debug)]
pub struct Resources {
    pub webhooks_table: String,
    pub api_keys_table: String,
    pub pepper_secret_id: String,
    /// The delivery log (events, deliveries, attempts).
    pub delivery_log_table: String,
}

/// The admin tool's AWS clients and resource names.
pub struct Admin {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub resources: Resources,
}

/// What `setup` did, per resource.
#[derive(Debug, Default, serde::Serialize)]
pub struct SetupReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

/// A newly created key and its token, shown once.
pub struct CreatedKey {
    pub key: ApiKey,
    pub token: ApiToken,
}

/// What a new key may do.
pub struct KeySpec {
    pub name: String,
    pub scopes: Vec<String>,
    pub company_ids: Vec<Uuid>,
    pub expires_at: Option<OffsetDateTime>,
    /// A fixed token (local development fixtures only); drawn at random when `None`.
    pub token: Option<ApiToken>,
    pub rate_limits: RateLimits,
}

/// A string attribute of a table's key schema.
fn attribute(name: &str) -> Result<AttributeDefinition, AdminError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| AdminError::Invalid(e.to_string()))
}

/// One element of a key schema.
fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, AdminError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| AdminError::Invalid(e.to_string()))
}

impl Admin {
    /// Creates both tables and the pepper secret where they are missing. Safe to run again.
    pub async fn setup(&self) -> Result<SetupReport, AdminError> {
        let mut report = SetupReport::default();
        let tables = [
            (&self.resources.api_keys_table, API_KEY_HASH),
            (&self.resources.webhooks_table, WEBHOOK_ID),
        ];
        for (table, key) in tables {
            let by_owner = table == &self.resources.webhooks_table;
            if self.create_table(table, key, by_owner).await? {
                report.created.push(format!("table {table}"));
            } else {
                report.existing.push(format!("table {table}"));
            }
        }
        let log = &self.resources.delivery_log_table;
        if self.create_log_table().await? {
            report.created.push(format!("table {log}"));
        } else {
            report.existing.push(format!("table {log}"));
        }
        self.enable_ttl(&self.resources.delivery_log_table).await?;
        self.enable_ttl(&self.resources.webhooks_table).await?;
        let pepper_id = &self.resources.pepper_secret_id;
        if self.create_pepper().await? {
            report.created.push(format!("secret {pepper_id}"));
        } else {
            report.existing.push(format!("secret {pepper_id}"));
        }
        Ok(report)
    }

    /// Turns on the TTL of `table` (on `expiresAt`); already on is fine.
    async fn enable_ttl(&self, table: &str) -> Result<(), AdminError> {
        let ttl = self
            .dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(EXPIRES_AT)
                    .build()
                    .map_err(|e| AdminError::Invalid(e.to_string()))?,
            )
            .send()
            .await;
        match ttl {
            // "TimeToLive is already enabled" is a ValidationException.
            Ok(_) => {}
            Err(e) if e.code() == Some("ValidationException") => {}
            Err(e) => return Err(aws_error("UpdateTimeToLive", &e)),
        }
        Ok(())
    }

    /// Creates the delivery log table (as template.yaml declares it): key `id`, the index of
    /// events by company and the index of deliveries by webhook (docs/TABLES.md).
    async fn create_log_table(&self) -> Result<bool, AdminError> {
        use crate::store::dynamodb::schema::{
            ATTEMPT_WEBHOOK_ID, COMPANY_ID, CREATED_KEY, DELIVERIES_BY_WEBHOOK_INDEX,
            EVENTS_BY_COMPANY_INDEX, LOG_ID, OCCURRED_KEY,
        };
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| AdminError::Invalid(e.to_string());
        let index = |name: &str, hash: &str, range: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key_element(hash, KeyType::Hash)?)
                .key_schema(key_element(range, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(invalid)
        };
        let result = self
            .dynamodb
            .create_table()
            .table_name(&self.resources.delivery_log_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(LOG_ID)?)
            .attribute_definitions(attribute(COMPANY_ID)?)
            .attribute_definitions(attribute(OCCURRED_KEY)?)
            .attribute_definitions(attribute(ATTEMPT_WEBHOOK_ID)?)
            .attribute_definitions(attribute(CREATED_KEY)?)
            .key_schema(key_element(LOG_ID, KeyType::Hash)?)
            .global_secondary_indexes(index(EVENTS_BY_COMPANY_INDEX, COMPANY_ID, OCCURRED_KEY)?)
            .global_secondary_indexes(index(
                DELIVERIES_BY_WEBHOOK_INDEX,
                ATTEMPT_WEBHOOK_ID,
                CREATED_KEY,
            )?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(false),
            Err(e) => Err(aws_error("CreateTable", &e)),
        }
    }

    /// Creates a table keyed on `key`; with `by_owner`, also the index of webhooks by API key
    /// and the pipeline's fan-out index by company; without, the index of API keys by id (as
    /// template.yaml declares them).
    async fn create_table(
        &self,
        table: &str,
        key: &str,
        by_owner: bool,
    ) -> Result<bool, AdminError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| AdminError::Invalid(e.to_string());
        let mut request = self
            .dynamodb
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(key)?)
            .key_schema(key_element(key, KeyType::Hash)?);
        let all = || {
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build()
        };
        if !by_owner {
            request = request
                .attribute_definitions(attribute(API_KEY_ID)?)
                .global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(API_KEYS_BY_ID_INDEX)
                        .key_schema(key_element(API_KEY_ID, KeyType::Hash)?)
                        .projection(all())
                        .build()
                        .map_err(invalid)?,
                );
        }
        if by_owner {
            request = request
                .attribute_definitions(attribute(FANOUT_COMPANY)?)
                .global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(BY_COMPANY_INDEX)
                        .key_schema(key_element(FANOUT_COMPANY, KeyType::Hash)?)
                        .projection(all())
                        .build()
                        .map_err(invalid)?,
                )
                .attribute_definitions(attribute(API_KEY_ID)?)
                .attribute_definitions(attribute(CREATED_AT)?)
                .global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(BY_API_KEY_INDEX)
                        .key_schema(key_element(API_KEY_ID, KeyType::Hash)?)
                        .key_schema(key_element(CREATED_AT, KeyType::Range)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(invalid)?,
                );
        }
        let result = request.send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(false),
            Err(e) => Err(aws_error("CreateTable", &e)),
        }
    }

    async fn create_pepper(&self) -> Result<bool, AdminError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let result = self
            .secretsmanager
            .create_secret()
            .name(&self.resources.pepper_secret_id)
            .description("InstaView API key pepper (HMAC key of the API key hashes)")
            .secret_string(hex::encode(bytes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceExistsException") => Ok(false),
            Err(e) => Err(aws_error("CreateSecret(pepper)", &e)),
        }
    }

    async fn pepper(&self) -> Result<Pepper, AdminError> {
        SecretsManagerStore::new(
            self.secretsmanager.clone(),
            "",
            None,
            &self.resources.pepper_secret_id,
        )
        .read_pepper()
        .await
        .map_err(|e| AdminError::Invalid(format!("cannot read the pepper ({e}); run setup first")))
    }

    /// Creates a key and returns it with its token (which is stored only as a hash).
    pub async fn create_key(&self, spec: KeySpec) -> Result<CreatedKey, AdminError> {
        if spec.name.trim().is_empty() {
            return Err(AdminError::Invalid("a key needs a name".into()));
        }
        let token = match spec.token {
            Some(token) => token,
            None => ApiToken::generate().map_err(|e| AdminError::Invalid(e.to_string()))?,
        };
        let key = ApiKey {
            id: Uuid::new_v4().to_string(),
            name: spec.name,
            scopes: spec.scopes,
            company_ids: spec.company_ids,
            status: ApiKeyStatus::Active,
            suspended_at: None,
            suspend_reason: None,
            expires_at: spec.expires_at,
            created_at: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or(OffsetDateTime::now_utc()),
            rate_limits: spec.rate_limits,
        };
        let hash = self.pepper().await?.hash(&token);
        if !self
            .api_keys()
            .insert(&hash, &key)
            .await
            .map_err(store_error)?
        {
            return Err(AdminError::Invalid(
                "a key with this token exists already".into(),
            ));
        }
        Ok(CreatedKey { key, token })
    }

    /// Every key, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, AdminError> {
        self.api_keys().list().await.map_err(store_error)
    }

    /// Suspends a key: it answers 401 API_KEY_SUSPENDED (with `reason`) until reactivated.
    pub async fn suspend_key(&self, api_key_id: &str, reason: &str) -> Result<ApiKey, AdminError> {
        let change = KeyChange::Suspend {
            reason: reason.to_owned(),
            at: OffsetDateTime::now_utc(),
        };
        self.change_key(api_key_id, &change).await
    }

    /// Sets a key's own rate limits (`None` keeps a limit as it is).
    pub async fn set_rate_limits(
        &self,
        api_key_id: &str,
        per_minute: Option<u32>,
        per_hour: Option<u32>,
    ) -> Result<ApiKey, AdminError> {
        if per_minute == Some(0) || per_hour == Some(0) {
            return Err(AdminError::Invalid(
                "a rate limit must be at least 1".into(),
            ));
        }
        if per_minute.is_none() && per_hour.is_none() {
            return Err(AdminError::Invalid(
                "give --rate-limit-minute or --rate-limit-hour".into(),
            ));
        }
        let change = KeyChange::RateLimits {
            per_minute,
            per_hour,
        };
        self.change_key(api_key_id, &change).await
    }

    /// Revokes a key for good.
    pub async fn revoke_key(&self, api_key_id: &str) -> Result<ApiKey, AdminError> {
        self.change_key(api_key_id, &KeyChange::Revoke).await
    }

    async fn change_key(&self, api_key_id: &str, change: &KeyChange) -> Result<ApiKey, AdminError> {
        self.api_keys()
            .update(api_key_id, change)
            .await
            .map_err(store_error)?
            .ok_or_else(|| AdminError::Invalid(format!("no API key with id {api_key_id}")))
    }

    /// The API keys table (src/store/dynamodb/api_keys.rs holds its reads and writes).
    fn api_keys(&self) -> DynamoApiKeys {
        DynamoApiKeys::new(self.dynamodb.clone(), &self.resources.api_keys_table)
    }
}
