//! Ports to storage: one small trait per capability, with AWS and in-memory adapters.

use std::future::Future;

use uuid::Uuid;

use crate::domain::{ApiKey, CustomHeader, Pepper, SigningSecret, TokenHash, Webhook};

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

/// Where the webhook records live.
pub trait WebhookStore: Send + Sync {
    /// Stores a new record; fails (rather than overwrites) if the id exists.
    fn insert(
        &self,
        webhook: &Webhook,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the record `id` if it exists and still points at `secret` (so that only our own
    /// possibly-landed write is undone). Absent is success.
    fn remove(
        &self,
        id: Uuid,
        secret: &SecretRef,
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

/// A handle on a stored secret: its ARN (kept in the webhook record) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub arn: String,
    pub name: String,
}

/// The secret store: one secret per webhook, and the pepper of the API key hashes.
pub trait SecretStore: Send + Sync {
    fn create_webhook_secret(
        &self,
        material: &WebhookSecretMaterial<'_>,
    ) -> impl Future<Output = Result<SecretRef, StoreError>> + Send;

    /// Deletes a secret at once, without a recovery window (it was never handed out).
    fn delete_webhook_secret(
        &self,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn read_pepper(&self) -> impl Future<Output = Result<Pepper, StoreError>> + Send;
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
