//! The create-webhook use case: authenticate, authorise, store (secret first), answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use time::OffsetDateTime;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::{
    ApiKey, ApiToken, ClaimOutcome, IdempotencyClaim, NewWebhook, Pepper, SigningSecret, TokenHash,
    Webhook,
};
use crate::error::ApiError;
use crate::store::{
    ApiKeyStore, InsertError, SecretRef, SecretStore, StoreError, WebhookSecretMaterial,
    WebhookStore,
};

/// Most API keys one container remembers; past it the cache starts over. Keys are few per
/// customer, and only found keys are cached, so random tokens cannot grow it.
const KEY_CACHE_CAPACITY: usize = 1024;

/// A created webhook and the secret to show once.
#[derive(Debug)]
pub struct Created {
    pub webhook: Webhook,
    pub signing_secret: SigningSecret,
    /// True when this answers a retry with an idempotency key that already created it.
    pub replayed: bool,
}

/// The application: stores plus per-container state (pepper, key cache). Built once in `main`.
pub struct App<K, W, S> {
    keys: K,
    webhooks: W,
    secrets: S,
    settings: Settings,
    pepper: OnceCell<Pepper>,
    key_cache: Mutex<HashMap<TokenHash, (ApiKey, Instant)>>,
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore> App<K, W, S> {
    pub fn new(keys: K, webhooks: W, secrets: S, settings: Settings) -> Self {
        Self {
            keys,
            webhooks,
            secrets,
            settings,
            pepper: OnceCell::new(),
            key_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn keys(&self) -> &K {
        &self.keys
    }

    pub fn webhooks(&self) -> &W {
        &self.webhooks
    }

    pub fn secrets(&self) -> &S {
        &self.secrets
    }

    /// Finds the key for `token` and checks it may create webhooks.
    pub async fn authenticate(&self, token: &ApiToken) -> Result<ApiKey, ApiError> {
        let pepper = self
            .pepper
            .get_or_try_init(|| self.secrets.read_pepper())
            .await?;
        let hash = pepper.hash(token);
        let key = match self.cached_key(&hash) {
            Some(key) => key,
            None => {
                let key = self
                    .keys
                    .find_by_hash(&hash)
                    .await?
                    .ok_or(ApiError::InvalidApiKey)?;
                self.cache_key(hash, &key);
                key
            }
        };
        key.authorise_write(OffsetDateTime::now_utc())?;
        Ok(key)
    }

    fn cached_key(&self, hash: &TokenHash) -> Option<ApiKey> {
        let ttl = self.settings.api_key_cache_ttl;
        let cache = self.key_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(hash)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(key, _)| key.clone())
    }

    fn cache_key(&self, hash: TokenHash, key: &ApiKey) {
        if self.settings.api_key_cache_ttl.is_zero() {
            return;
        }
        let mut cache = self.key_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= KEY_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(hash, (key.clone(), Instant::now()));
    }

    /// Creates the webhook, at most once per idempotency claim.
    pub async fn create_webhook(
        &self,
        key: &ApiKey,
        request: NewWebhook,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Created, ApiError> {
        if let Some(company) = request.company_id {
            key.authorise_company(company)?;
        }
        let Some(claim) = claim else {
            return self.create_new(key, request, None).await;
        };
        match self
            .webhooks
            .claim(&claim, OffsetDateTime::now_utc())
            .await?
        {
            ClaimOutcome::Claimed => {}
            ClaimOutcome::InProgress => return Err(ApiError::RequestInProgress),
            ClaimOutcome::Reused => return Err(ApiError::IdempotencyKeyReused),
            ClaimOutcome::Completed(id) => return self.replay(id, key).await,
        }
        let created = self.create_new(key, request, Some(&claim)).await;
        if created.is_err() {
            // Let a retry try again rather than wait out the claim.
            if let Err(error) = self.webhooks.release(&claim).await {
                tracing::warn!(error = %error, "could not release an idempotency claim; it lapses by itself");
            }
        }
        created
    }

    /// The webhook an earlier request with the same idempotency key created, with its secret
    /// read back from the secret store (the only place it is kept).
    async fn replay(&self, id: Uuid, key: &ApiKey) -> Result<Created, ApiError> {
        let (webhook, secret) = self
            .webhooks
            .get(id)
            .await?
            .filter(|(webhook, _)| webhook.api_key_id == key.id)
            .ok_or(ApiError::IdempotencyKeyReused)?;
        let signing_secret = self.secrets.read_signing_secret(&secret).await?;
        Ok(Created {
            webhook,
            signing_secret,
            replayed: true,
        })
    }

    /// The secret first, then the record. If the record cannot be written, the secret is
    /// deleted before answering, so a failed request leaves nothing behind.
    async fn create_new(
        &self,
        key: &ApiKey,
        request: NewWebhook,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Created, ApiError> {
        let signing_secret = SigningSecret::try_generate()
            .map_err(|_| ApiError::Internal("the OS random number generator failed".into()))?;
        let webhook = Webhook::new(Uuid::new_v4(), &key.id, &request, OffsetDateTime::now_utc());
        let secret = self
            .secrets
            .create_webhook_secret(&WebhookSecretMaterial {
                webhook_id: webhook.id,
                api_key_id: &key.id,
                signing_secret: &signing_secret,
                headers: &request.headers,
            })
            .await?;
        let limit = self.settings.max_webhooks_per_key;
        if let Err(error) = self.webhooks.insert(&webhook, &secret, limit, claim).await {
            self.undo_insert(&webhook, &secret, &error).await;
            return Err(match error {
                InsertError::LimitReached => ApiError::WebhookLimitReached { limit },
                InsertError::ClaimLost => ApiError::RequestInProgress,
                InsertError::Store(error) => error.into(),
            });
        }
        Ok(Created {
            webhook,
            signing_secret,
            replayed: false,
        })
    }

    /// Leaves nothing behind after a failed insert: the secret is always deleted (the contract's
    /// rule). When the failure was ambiguous (a timeout can hide a write that landed), the record
    /// is removed first, conditionally on holding our secret's ARN. Should that removal fail too,
    /// the webhook id is logged so that reconciliation can check for a record without a secret.
    async fn undo_insert(&self, webhook: &Webhook, secret: &SecretRef, error: &InsertError) {
        if matches!(error, InsertError::Store(StoreError::Unavailable { .. })) {
            let removed = self
                .webhooks
                .remove(webhook.id, &webhook.api_key_id, secret)
                .await;
            if let Err(remove_error) = removed {
                tracing::error!(
                    webhook_id = %webhook.id,
                    error = %remove_error,
                    "could not confirm that no webhook record was written; reconcile this id"
                );
            }
        }
        for attempt in 1..=3 {
            match self.secrets.delete_webhook_secret(secret).await {
                Ok(()) => return,
                Err(delete_error) if attempt == 3 => tracing::error!(
                    webhook_id = %webhook.id,
                    error = %delete_error,
                    "could not delete the secret of a webhook that was never stored; reconcile this id"
                ),
                Err(_) => {}
            }
        }
    }
}
