//! In-memory adapters for fast handler tests and benchmarks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use uuid::Uuid;

use super::{
    secret_document, ApiKeyStore, SecretRef, SecretStore, StoreError, WebhookSecretMaterial,
    WebhookStore,
};
use crate::domain::{ApiKey, ApiToken, Pepper, TokenHash, Webhook};

/// The pepper the in-memory stores use.
pub const MEMORY_PEPPER: &[u8] = b"in-memory-pepper";

/// API keys held in a map, keyed by token hash.
#[derive(Default)]
pub struct MemoryApiKeys {
    keys: Mutex<HashMap<TokenHash, ApiKey>>,
    lookups: AtomicUsize,
    fail_with: Mutex<Option<StoreError>>,
}

impl MemoryApiKeys {
    /// Registers `key` under `token`, hashed with [`MEMORY_PEPPER`].
    pub fn insert(&self, token: &ApiToken, key: ApiKey) {
        let hash = Pepper::new(MEMORY_PEPPER.to_vec()).hash(token);
        self.keys.lock().unwrap().insert(hash, key);
    }

    /// How many lookups reached the store.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    /// Makes every later lookup fail with `error`.
    pub fn fail_with(&self, error: StoreError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }
}

impl ApiKeyStore for MemoryApiKeys {
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<ApiKey>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = self.fail_with.lock().unwrap().clone() {
            return Err(error);
        }
        Ok(self.keys.lock().unwrap().get(hash).cloned())
    }
}

/// Webhook records held in a map, with their secret references.
#[derive(Default)]
pub struct MemoryWebhooks {
    records: Mutex<HashMap<Uuid, (Webhook, SecretRef)>>,
    fail_with: Mutex<Option<StoreError>>,
}

impl MemoryWebhooks {
    pub fn get(&self, id: Uuid) -> Option<(Webhook, SecretRef)> {
        self.records.lock().unwrap().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every later insert fail with `error`.
    pub fn fail_with(&self, error: StoreError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }
}

impl WebhookStore for MemoryWebhooks {
    async fn insert(&self, webhook: &Webhook, secret: &SecretRef) -> Result<(), StoreError> {
        if let Some(error) = self.fail_with.lock().unwrap().clone() {
            return Err(error);
        }
        let mut records = self.records.lock().unwrap();
        if records.contains_key(&webhook.id) {
            return Err(StoreError::Failed {
                operation: "webhooks.insert",
                kind: "ConditionalCheckFailed".into(),
            });
        }
        records.insert(webhook.id, (webhook.clone(), secret.clone()));
        Ok(())
    }

    async fn remove(&self, id: Uuid, secret: &SecretRef) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        if records.get(&id).is_some_and(|(_, stored)| stored == secret) {
            records.remove(&id);
        }
        Ok(())
    }
}

/// Secrets held in a map: name → JSON document.
#[derive(Default)]
pub struct MemorySecrets {
    secrets: Mutex<HashMap<String, String>>,
    fail_create_with: Mutex<Option<StoreError>>,
}

impl MemorySecrets {
    pub fn document(&self, name: &str) -> Option<String> {
        self.secrets.lock().unwrap().get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.secrets.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every later create fail with `error`.
    pub fn fail_create_with(&self, error: StoreError) {
        *self.fail_create_with.lock().unwrap() = Some(error);
    }
}

impl SecretStore for MemorySecrets {
    async fn create_webhook_secret(
        &self,
        material: &WebhookSecretMaterial<'_>,
    ) -> Result<SecretRef, StoreError> {
        if let Some(error) = self.fail_create_with.lock().unwrap().clone() {
            return Err(error);
        }
        let name = format!("memory/webhooks/{}", material.webhook_id);
        self.secrets
            .lock()
            .unwrap()
            .insert(name.clone(), secret_document(material));
        Ok(SecretRef {
            arn: format!("arn:memory:{name}"),
            name,
        })
    }

    async fn delete_webhook_secret(&self, secret: &SecretRef) -> Result<(), StoreError> {
        self.secrets.lock().unwrap().remove(&secret.name);
        Ok(())
    }

    async fn read_pepper(&self) -> Result<Pepper, StoreError> {
        Ok(Pepper::new(MEMORY_PEPPER.to_vec()))
    }
}
