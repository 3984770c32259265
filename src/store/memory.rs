//! In-memory adapters for fast handler tests and benchmarks. They keep the same rules as the
//! AWS adapters (atomic insert with limit and claim, conditional changes, tombstones, the
//! claim's owner, versioned secrets, AWS's secret size limit), and refuse what they refuse:
//! the conformance suite (`tests/aws/conformance.rs`) runs the same cases against both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    judge_change, ApiKeyStore, Caller, ChangeError, Deleted, IdempotencyClaims, InsertError,
    RateCounter, SecretDocument, SecretRef, SecretStore, StoreError, StoredWebhook, WebhookChange,
    WebhookReads, WebhookWrites, MAX_SECRET_BYTES,
};
use crate::domain::idempotency::{CLAIM_STALE_AFTER_SECONDS, IDEMPOTENCY_TTL_SECONDS};
use crate::domain::rate_limit::{Usage, Windows};
use crate::domain::{ApiKey, ApiToken, ClaimId, ClaimOutcome, IdempotencyClaim, Pepper, TokenHash};

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
    owner: String,
    result: Option<String>,
    locked_at: i64,
    expires_at: i64,
}

impl Claim {
    /// `claim`'s own, still in progress: what DynamoDB's completion condition asks (status in
    /// progress, same body, same owner).
    fn is_ours(&self, claim: &IdempotencyClaim) -> bool {
        self.result.is_none()
            && self.request_hash == claim.request_hash
            && self.owner == claim.owner
    }
}

#[derive(Default)]
struct Tables {
    records: HashMap<Uuid, StoredWebhook>,
    /// Deleted ids and the key that deleted them.
    tombstones: HashMap<Uuid, String>,
    counts: HashMap<String, u32>,
    claims: HashMap<ClaimId, Claim>,
    /// (key, hour start) → (hour count, per-minute counts).
    rates: HashMap<(String, i64), (u32, [u32; 60])>,
}

/// Webhook records, per-key counts, claims and rate counters, behind one lock (so that every
/// write is as atomic as DynamoDB's conditional writes and transactions).
#[derive(Default)]
pub struct MemoryWebhooks {
    tables: Mutex<Tables>,
    fail_with: Mutex<Option<StoreError>>,
    calls: AtomicUsize,
}

impl MemoryWebhooks {
    pub fn get_record(&self, id: Uuid) -> Option<StoredWebhook> {
        self.tables.lock().unwrap().records.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.tables.lock().unwrap().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces a record as it is (tests: states that only the pipeline makes, such as an open
    /// circuit).
    pub fn put_record(&self, stored: StoredWebhook) {
        let mut tables = self.tables.lock().unwrap();
        tables.records.insert(stored.webhook.id, stored);
    }

    /// The live records `keep` selects, in no set order (the pipeline's twin: its index
    /// queries).
    pub fn records_where(&self, keep: impl Fn(&StoredWebhook) -> bool) -> Vec<StoredWebhook> {
        let tables = self.tables.lock().unwrap();
        tables
            .records
            .values()
            .filter(|s| keep(s))
            .cloned()
            .collect()
    }

    /// Changes live record `id` in place, atomically (the pipeline's twin: its conditional
    /// updates of the circuit counters); `None` when there is no live record (absent or
    /// deleted: DynamoDB's `attribute_exists`, not a tombstone).
    pub fn update_record<R>(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut StoredWebhook) -> R,
    ) -> Option<R> {
        let mut tables = self.tables.lock().unwrap();
        tables.records.get_mut(&id).map(change)
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

    /// Makes every later read and write of webhook records fail with `error` (claims and
    /// rate counting go on).
    pub fn fail_with(&self, error: StoreError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }

    /// Ends an injected failure.
    pub fn recover(&self) {
        *self.fail_with.lock().unwrap() = None;
    }

    /// How many calls reached the store (every trait method counts one).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn call(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl WebhookReads for MemoryWebhooks {
    async fn get(&self, id: Uuid) -> Result<Option<StoredWebhook>, StoreError> {
        self.call();
        injected(&self.fail_with)?;
        Ok(self.get_record(id))
    }

    async fn list_by_owner(&self, api_key_id: &str) -> Result<Vec<StoredWebhook>, StoreError> {
        self.call();
        injected(&self.fail_with)?;
        let tables = self.tables.lock().unwrap();
        Ok(tables
            .records
            .values()
            .filter(|s| s.webhook.api_key_id == api_key_id)
            .cloned()
            .collect())
    }
}

impl WebhookWrites for MemoryWebhooks {
    async fn insert(
        &self,
        stored: &StoredWebhook,
        limit: u32,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<(), InsertError> {
        self.call();
        injected(&self.fail_with)?;
        let webhook = &stored.webhook;
        let mut tables = self.tables.lock().unwrap();
        // As DynamoDB's adapter: the same record again is a retry whose first attempt landed.
        if let Some(found) = tables.records.get(&webhook.id) {
            if found.secret.arn == stored.secret.arn {
                return Ok(());
            }
        }
        if tables.records.contains_key(&webhook.id) || tables.tombstones.contains_key(&webhook.id) {
            return Err(InsertError::Store(StoreError::Failed {
                operation: "webhooks.insert",
                kind: "webhook id exists".into(),
            }));
        }
        let count = tables.counts.get(&webhook.api_key_id).copied().unwrap_or(0);
        if count >= limit {
            return Err(InsertError::LimitReached);
        }
        if let Some(claim) = claim {
            match tables.claims.get_mut(&claim.id) {
                Some(held) if held.is_ours(claim) => {
                    held.result = Some(webhook.id.to_string());
                }
                _ => return Err(InsertError::ClaimLost),
            }
        }
        tables.counts.insert(webhook.api_key_id.clone(), count + 1);
        tables.records.insert(webhook.id, stored.clone());
        Ok(())
    }

    async fn undo_insert(&self, id: Uuid, api_key_id: &str) -> Result<(), StoreError> {
        self.call();
        let mut tables = self.tables.lock().unwrap();
        // As DynamoDB's adapter: a record that landed is removed with its place; where none
        // did, the id is fenced against a late copy of the insert.
        if tables.records.remove(&id).is_some() {
            if let Some(count) = tables.counts.get_mut(api_key_id) {
                *count = count.saturating_sub(1);
            }
        } else {
            tables.tombstones.insert(id, String::new());
        }
        Ok(())
    }

    async fn update(
        &self,
        id: Uuid,
        caller: &Caller<'_>,
        change: &WebhookChange,
        claim: Option<(&IdempotencyClaim, &str)>,
        now: OffsetDateTime,
    ) -> Result<StoredWebhook, ChangeError> {
        self.call();
        injected(&self.fail_with)?;
        let mut tables = self.tables.lock().unwrap();
        let expected = change.secret.as_ref().map(|swap| &swap.from);
        judge_change(tables.records.get(&id), caller, expected)?;
        if let Some((claim, _)) = claim {
            let ours = tables
                .claims
                .get(&claim.id)
                .is_some_and(|held| held.is_ours(claim));
            if !ours {
                return Err(ChangeError::Store(StoreError::Failed {
                    operation: "webhooks.update",
                    kind: "idempotency claim lost".into(),
                }));
            }
        }
        let stored = tables.records.get_mut(&id).expect("judged present");
        change.apply(stored, now);
        let changed = stored.clone();
        if let Some((claim, result)) = claim {
            if let Some(held) = tables.claims.get_mut(&claim.id) {
                held.result = Some(result.to_owned());
            }
        }
        Ok(changed)
    }

    async fn delete(&self, id: Uuid, caller: &Caller<'_>) -> Result<Deleted, ChangeError> {
        self.call();
        injected(&self.fail_with)?;
        let mut tables = self.tables.lock().unwrap();
        if tables
            .tombstones
            .get(&id)
            .is_some_and(|by| by == caller.api_key_id)
        {
            return Ok(Deleted::Earlier);
        }
        judge_change(tables.records.get(&id), caller, None)?;
        tables.records.remove(&id);
        if let Some(count) = tables.counts.get_mut(caller.api_key_id) {
            *count = count.saturating_sub(1);
        }
        tables.tombstones.insert(id, caller.api_key_id.to_owned());
        Ok(Deleted::Now)
    }
}

impl IdempotencyClaims for MemoryWebhooks {
    async fn claim(
        &self,
        claim: &IdempotencyClaim,
        now: OffsetDateTime,
    ) -> Result<ClaimOutcome, StoreError> {
        self.call();
        let now = now.unix_timestamp();
        let mut tables = self.tables.lock().unwrap();
        if let Some(held) = tables.claims.get(&claim.id) {
            let expired = held.expires_at < now;
            let abandoned =
                held.result.is_none() && held.locked_at < now - CLAIM_STALE_AFTER_SECONDS;
            if !expired && !abandoned {
                return Ok(if held.owner == claim.owner && held.result.is_none() {
                    // Our own claim: an earlier attempt of this very call landed.
                    ClaimOutcome::Claimed
                } else if held.request_hash != claim.request_hash {
                    ClaimOutcome::Reused
                } else if let Some(result) = &held.result {
                    ClaimOutcome::Completed(result.clone())
                } else {
                    ClaimOutcome::InProgress
                });
            }
        }
        tables.claims.insert(
            claim.id.clone(),
            Claim {
                request_hash: claim.request_hash.clone(),
                owner: claim.owner.clone(),
                result: None,
                locked_at: now,
                expires_at: now + IDEMPOTENCY_TTL_SECONDS,
            },
        );
        Ok(ClaimOutcome::Claimed)
    }

    async fn complete(&self, claim: &IdempotencyClaim, result: &str) -> Result<(), StoreError> {
        self.call();
        let mut tables = self.tables.lock().unwrap();
        match tables.claims.get_mut(&claim.id) {
            Some(held) if held.is_ours(claim) => {
                held.result = Some(result.to_owned());
                Ok(())
            }
            // DynamoDB refuses the completion's condition: a failure, not a silent success.
            _ => Err(StoreError::Failed {
                operation: "webhooks.complete",
                kind: "ConditionalCheckFailedException".into(),
            }),
        }
    }

    async fn release(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        self.call();
        let mut tables = self.tables.lock().unwrap();
        // Only our own claim: a late retry must not free a later request's.
        if tables
            .claims
            .get(&claim.id)
            .is_some_and(|held| held.owner == claim.owner)
        {
            tables.claims.remove(&claim.id);
        }
        Ok(())
    }
}

impl RateCounter for MemoryWebhooks {
    async fn count_request(
        &self,
        api_key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Usage, StoreError> {
        self.call();
        let windows = Windows::at(now);
        let mut tables = self.tables.lock().unwrap();
        let (hour, minutes) = tables
            .rates
            .entry((api_key_id.to_owned(), windows.hour_start))
            .or_insert((0, [0; 60]));
        *hour += 1;
        let minute = &mut minutes[usize::from(windows.minute_of_hour)];
        *minute += 1;
        Ok(Usage {
            minute: *minute,
            hour: *hour,
        })
    }
}

/// Secrets held in a map: ARN → versions (id, JSON document), newest last.
#[derive(Default)]
pub struct MemorySecrets {
    secrets: Mutex<HashMap<String, Vec<(String, String)>>>,
    fail_create_with: Mutex<Option<StoreError>>,
    fail_put_with: Mutex<Option<StoreError>>,
}

impl MemorySecrets {
    fn secret_arn(webhook_id: Uuid) -> String {
        format!("arn:memory:webhooks/{webhook_id}")
    }

    /// The JSON document of the newest version of the secret with this ARN.
    pub fn document(&self, arn: &str) -> Option<String> {
        let secrets = self.secrets.lock().unwrap();
        secrets.get(arn)?.last().map(|(_, doc)| doc.clone())
    }

    /// The JSON document of the version `secret` names.
    pub fn document_of(&self, secret: &SecretRef) -> Option<String> {
        let secrets = self.secrets.lock().unwrap();
        let versions = secrets.get(&secret.arn)?;
        match &secret.version {
            None => versions.last(),
            Some(id) => versions.iter().find(|(v, _)| v == id),
        }
        .map(|(_, doc)| doc.clone())
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

    /// Makes every later new version fail with `error`.
    pub fn fail_put_with(&self, error: StoreError) {
        *self.fail_put_with.lock().unwrap() = Some(error);
    }

    /// Ends injected failures.
    pub fn recover(&self) {
        *self.fail_create_with.lock().unwrap() = None;
        *self.fail_put_with.lock().unwrap() = None;
    }

    /// AWS refuses a secret value over 65,536 bytes with a `ValidationException`.
    fn checked(document: &SecretDocument) -> Result<String, StoreError> {
        let json = document.to_json();
        if json.len() > MAX_SECRET_BYTES {
            return Err(StoreError::Failed {
                operation: "secrets.write",
                kind: "ValidationException".into(),
            });
        }
        Ok(json)
    }
}

impl SecretStore for MemorySecrets {
    async fn create_webhook_secret(
        &self,
        webhook_id: Uuid,
        _api_key_id: &str,
        document: &SecretDocument,
    ) -> Result<SecretRef, StoreError> {
        injected(&self.fail_create_with)?;
        let json = Self::checked(document)?;
        let arn = Self::secret_arn(webhook_id);
        let version = Uuid::new_v4().to_string();
        self.secrets
            .lock()
            .unwrap()
            .insert(arn.clone(), vec![(version.clone(), json)]);
        Ok(SecretRef {
            arn,
            version: Some(version),
        })
    }

    async fn put_webhook_secret(
        &self,
        secret: &SecretRef,
        document: &SecretDocument,
    ) -> Result<SecretRef, StoreError> {
        injected(&self.fail_put_with)?;
        let json = Self::checked(document)?;
        let version = Uuid::new_v4().to_string();
        let mut secrets = self.secrets.lock().unwrap();
        let versions = secrets.get_mut(&secret.arn).ok_or(StoreError::Failed {
            operation: "secrets.put",
            kind: "ResourceNotFoundException".into(),
        })?;
        versions.push((version.clone(), json));
        Ok(SecretRef {
            arn: secret.arn.clone(),
            version: Some(version),
        })
    }

    async fn read_webhook_secret(&self, secret: &SecretRef) -> Result<SecretDocument, StoreError> {
        self.document_of(secret)
            .as_deref()
            .and_then(SecretDocument::from_json)
            .ok_or(StoreError::Failed {
                operation: "secrets.read",
                kind: "ResourceNotFoundException".into(),
            })
    }

    async fn delete_webhook_secret(&self, webhook_id: Uuid) -> Result<(), StoreError> {
        self.secrets
            .lock()
            .unwrap()
            .remove(&Self::secret_arn(webhook_id));
        Ok(())
    }

    async fn read_pepper(&self) -> Result<Pepper, StoreError> {
        Ok(Pepper::new(MEMORY_PEPPER.to_vec()))
    }
}
