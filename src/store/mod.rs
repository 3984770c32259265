//! Ports to storage: one small trait per capability, with AWS and in-memory adapters.

use std::future::Future;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{
    ApiKey, ClaimOutcome, CustomHeader, IdempotencyClaim, Pepper, SigningSecret, TokenHash, Webhook,
};

pub mod aws_error;
pub mod dynamodb;
pub mod memory;
pub mod secrets_manager;

/// Why a storage call failed, in the only terms the rest of the code needs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Throttling, timeouts, outages: worth retrying later (503).
    #[error("storage unavailable during {operation}: {kind}")]
    Unavailable {
        operation: &'static str,
        kind: String,
    },
    /// Anything else: a bug or a misconfiguration (500).
    #[error("storage failed during {operation}: {kind}")]
    Failed {
        operation: &'static str,
        kind: String,
    },
}

/// Looks up API keys by the hash of their token.
pub trait ApiKeyStore: Send + Sync {
    fn find_by_hash(
        &self,
        hash: &TokenHash,
    ) -> impl Future<Output = Result<Option<ApiKey>, StoreError>> + Send;
}

/// Why a webhook record could not be inserted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// The API key has as many webhooks as it may have.
    #[error("webhook limit reached")]
    LimitReached,
    /// The idempotency claim this insert was to complete is no longer ours.
    #[error("idempotency claim lost")]
    ClaimLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the webhook records live (with the per-key counters and idempotency claims).
pub trait WebhookStore: Send + Sync {
    /// Atomically: stores the new record (never overwriting one), counts it against its API
    /// key's `limit`, and completes `claim` if there is one. All of it, or none of it.
    fn insert(
        &self,
        webhook: &Webhook,
        secret: &SecretRef,
        limit: u32,
        claim: Option<&IdempotencyClaim>,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Undoes an insert that may have landed: removes record `id` (a fresh UUID: only the
    /// failed request can have written it) and gives its place in `api_key_id`'s limit back.
    /// Absent is success, and a late copy of the insert must not bring the record back.
    fn remove(
        &self,
        id: Uuid,
        api_key_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a record (strongly consistent), for answering a retried request again.
    fn get(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<(Webhook, SecretRef)>, StoreError>> + Send;

    /// Claims an idempotency key for this request, or tells what already holds it.
    fn claim(
        &self,
        claim: &IdempotencyClaim,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Gives a claim up after a failed create, so that a retry can try again.
    fn release(
        &self,
        claim: &IdempotencyClaim,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What goes into a webhook's secret: the signing secret and the custom header values.
#[derive(Debug)]
pub struct WebhookSecretMaterial<'a> {
    pub webhook_id: Uuid,
    pub api_key_id: &'a str,
    pub signing_secret: &'a SigningSecret,
    pub headers: &'a [CustomHeader],
}

/// A handle on a stored secret: its ARN, which the webhook record keeps. (Its name is
/// derived from the webhook id, so it need not travel.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub arn: String,
}

/// The secret store: one secret per webhook, and the pepper of the API key hashes.
pub trait SecretStore: Send + Sync {
    fn create_webhook_secret(
        &self,
        material: &WebhookSecretMaterial<'_>,
    ) -> impl Future<Output = Result<SecretRef, StoreError>> + Send;

    /// Deletes the secret of `webhook_id` at once, without a recovery window (it was never
    /// handed out). Found by name, since a create whose answer was lost leaves no ARN; one that
    /// does not exist is deleted already.
    fn delete_webhook_secret(
        &self,
        webhook_id: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a webhook's signing secret back, to answer a retried request with it again.
    fn read_signing_secret(
        &self,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<SigningSecret, StoreError>> + Send;

    fn read_pepper(&self) -> impl Future<Output = Result<Pepper, StoreError>> + Send;
}

/// Reads the signing secret out of a webhook secret's JSON document.
pub fn signing_secret_from_document(document: &str) -> Option<SigningSecret> {
    let value: serde_json::Value = serde_json::from_str(document).ok()?;
    Some(SigningSecret::from_stored(
        value.get("signingSecret")?.as_str()?.to_owned(),
    ))
}

/// The JSON document stored in a webhook's secret.
pub fn secret_document(material: &WebhookSecretMaterial<'_>) -> String {
    let headers: Vec<_> = material
        .headers
        .iter()
        .map(|h| serde_json::json!({"name": h.name(), "value": h.expose_value()}))
        .collect();
    serde_json::json!({
        "signingSecret": material.signing_secret.expose(),
        "headers": headers,
    })
    .to_string()
}
