//! In-memory adapters for fast handler tests and benchmarks. They keep the same rules as the
//! AWS adapters (atomic insert with limit and claim, conditional undo).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    secret_document, signing_secret_from_document, ApiKeyStore, InsertError, SecretRef,
    SecretStore, StoreError, WebhookSecretMaterial, WebhookStore,
};
use crate::domain::idempotency::{CLAIM_STALE_AFTER_SECONDS, IDEMPOTENCY_TTL_SECONDS};
use crate::domain::{
    ApiKey, ApiToken, ClaimOutcome, IdempotencyClaim, Pepper, SigningSecret, TokenHash, Webhook,
};

/// The pepper the in-memory stores use.
pub const MEMORY_PEPPER: &[u8] = b"in-memory-pepper";

fn injected(slot: &Mutex<Option<StoreError>>) -> Result<(), StoreError> {
    slot.lock().unwrap().clone().map_or(Ok(()), Err)
}

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
        injected(&self.fail_with)?;
        Ok(self.keys.lock().unwrap().get(hash).cloned())
    }
}

#[derive(Clone, Debug)]
struct Claim {
    request_hash: String,
    webhook_id: Option<Uuid>,
    locked_at: i64,
    expires_at: i64,
}

#[derive(Default)]
struct Tables {
    records: HashMap<Uuid, (Webhook, SecretRef)>,
    counts: HashMap<String, u32>,
    claims: HashMap<String, Claim>,
}

/// Webhook records, per-key counts and idempotency claims, behind one lock (so that inserts
/// are as atomic as DynamoDB's transactions).
#[derive(Default)]
pub struct MemoryWebhooks {
    tables: Mutex<Tables>,
    fail_with: Mutex<Option<StoreError>>,
}

impl MemoryWebhooks {
    pub fn get_record(&self, id: Uuid) -> Option<(Webhook, SecretRef)> {
        self.tables.lock().unwrap().records.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.tables.lock().unwrap().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many webhooks count against `api_key_id`'s limit.
    pub fn count_for(&self, api_key_id: &str) -> u32 {
        self.tables
            .lock()
            .unwrap()
            .counts
            .get(api_key_id)
            .copied()
            .unwrap_or(0)
    }

    /// Makes every later insert fail with `error`.
    pub fn fail_with(&self, error: StoreError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }
}

impl WebhookStore for MemoryWebhooks {
    async fn insert(
        &self,
        webhook: &Webhook,
        secret: &SecretRef,
        limit: u32,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<(), InsertError> {
        injected(&self.fail_with)?;
        let mut tables = self.tables.lock().unwrap();
        if tables.records.contains_key(&webhook.id) {
            return Err(InsertError::Store(StoreError::Failed {
                operation: "webhooks.insert",
                kind: "ConditionalCheckFailed".into(),
            }));
        }
        let count = tables.counts.get(&webhook.api_key_id).copied().unwrap_or(0);
        if count >= limit {
            return Err(InsertError::LimitReached);
        }
        if let Some(claim) = claim {
            match tables.claims.get_mut(&claim.record_id) {
                Some(held)
                    if held.request_hash == claim.request_hash && held.webhook_id.is_none() =>
                {
                    held.webhook_id = Some(webhook.id);
                }
                _ => return Err(InsertError::ClaimLost),
            }
        }
        tables.counts.insert(webhook.api_key_id.clone(), count + 1);
        tables
            .records
            .insert(webhook.id, (webhook.clone(), secret.clone()));
        Ok(())
    }

    async fn remove(&self, id: Uuid, api_key_id: &str) -> Result<(), StoreError> {
        let mut tables = self.tables.lock().unwrap();
        if tables.records.remove(&id).is_some() {
            if let Some(count) = tables.counts.get_mut(api_key_id) {
                *count = count.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<Option<(Webhook, SecretRef)>, StoreError> {
        Ok(self.get_record(id))
    }

    async fn claim(
        &self,
        claim: &IdempotencyClaim,
        now: OffsetDateTime,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = now.unix_timestamp();
        let mut tables = self.tables.lock().unwrap();
        if let Some(held) = tables.claims.get(&claim.record_id) {
            let expired = held.expires_at < now;
            let abandoned =
                held.webhook_id.is_none() && held.locked_at < now - CLAIM_STALE_AFTER_SECONDS;
            if !expired && !abandoned {
                return Ok(if held.request_hash != claim.request_hash {
                    ClaimOutcome::Reused
                } else if let Some(id) = held.webhook_id {
                    ClaimOutcome::Completed(id)
                } else {
                    ClaimOutcome::InProgress
                });
            }
        }
        tables.claims.insert(
            claim.record_id.clone(),
            Claim {
                request_hash: claim.request_hash.clone(),
                webhook_id: None,
                locked_at: now,
                expires_at: now + IDEMPOTENCY_TTL_SECONDS,
            },
        );
        Ok(ClaimOutcome::Claimed)
    }

    async fn release(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        self.tables.lock().unwrap().claims.remove(&claim.record_id);
        Ok(())
    }
}

/// Secrets held in a map: ARN → JSON document.
#[derive(Default)]
pub struct MemorySecrets {
    secrets: Mutex<HashMap<String, String>>,
    fail_create_with: Mutex<Option<StoreError>>,
}

impl MemorySecrets {
    fn secret_arn(webhook_id: Uuid) -> String {
        format!("arn:memory:webhooks/{webhook_id}")
    }

    /// The JSON document of the secret with this ARN.
    pub fn document(&self, arn: &str) -> Option<String> {
        self.secrets.lock().unwrap().get(arn).cloned()
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

    /// Ends an injected failure.
    pub fn recover(&self) {
        *self.fail_create_with.lock().unwrap() = None;
    }
}

impl SecretStore for MemorySecrets {
    async fn create_webhook_secret(
        &self,
        material: &WebhookSecretMaterial<'_>,
    ) -> Result<SecretRef, StoreError> {
        injected(&self.fail_create_with)?;
        let arn = Self::secret_arn(material.webhook_id);
        self.secrets
            .lock()
            .unwrap()
            .insert(arn.clone(), secret_document(material));
        Ok(SecretRef { arn })
    }

    async fn delete_webhook_secret(&self, webhook_id: Uuid) -> Result<(), StoreError> {
        self.secrets
            .lock()
            .unwrap()
            .remove(&Self::secret_arn(webhook_id));
        Ok(())
    }

    async fn read_signing_secret(&self, secret: &SecretRef) -> Result<SigningSecret, StoreError> {
        self.document(&secret.arn)
            .as_deref()
            .and_then(signing_secret_from_document)
            .ok_or(StoreError::Failed {
                operation: "secrets.read",
                kind: "ResourceNotFoundException".into(),
            })
    }

    async fn read_pepper(&self) -> Result<Pepper, StoreError> {
        Ok(Pepper::new(MEMORY_PEPPER.to_vec()))
    }
}
