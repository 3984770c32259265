//! The create-webhook use case: authenticate, authorise, store (secret first), answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    ApiKeyStore, InsertError, SecretStore, StoreError, WebhookSecretMaterial, WebhookStore,
};

/// Time allowed for the writes of one create (claim, secret, record), or for answering a retry
/// again. Past it the request gives up and undoes what it may have written.
pub const WRITE_BUDGET: Duration = Duration::from_secs(10);
/// Time allowed for that undo. With authentication (at most two calls of 3 s) a request
/// answers within about 24 s whatever AWS does: inside the function's 28 s timeout and API
/// Gateway's 29 s.
pub const UNDO_BUDGET: Duration = Duration::from_secs(8);

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
    ///
    /// The writes (claim, secret, record) run within [`WRITE_BUDGET`]. When they fail, or the
    /// budget runs out, whatever they may have left is undone within [`UNDO_BUDGET`] before the
    /// answer, so that a failed request leaves nothing behind and still answers in time.
    pub async fn create_webhook(
        &self,
        key: &ApiKey,
        request: NewWebhook,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Created, ApiError> {
        if let Some(company) = request.company_id {
            key.authorise_company(company)?;
        }
        let signing_secret = SigningSecret::try_generate()
            .map_err(|_| ApiError::Internal("the OS random number generator failed".into()))?;
        let webhook = Webhook::new(Uuid::new_v4(), &key.id, &request, OffsetDateTime::now_utc());
        let write = self.write(key, &webhook, &signing_secret, &request, claim.as_ref());
        let failure = match tokio::time::timeout(WRITE_BUDGET, write).await {
            Ok(Ok(Written::New)) => {
                return Ok(Created {
                    webhook,
                    signing_secret,
                    replayed: false,
                })
            }
            Ok(Ok(Written::Replayed(created))) => return Ok(*created),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::Unknown(ApiError::ServiceUnavailable(StoreError::Unavailable {
                operation: "create webhook",
                kind: "write budget exhausted".into(),
            })),
        };
        let (error, record_may_exist) = match failure {
            Failure::NothingWritten(error) => return Err(error),
            Failure::BeforeRecord(error) => (error, false),
            Failure::Unknown(error) => (error, true),
        };
        let undo = self.undo(&webhook, record_may_exist, claim.as_ref());
        if tokio::time::timeout(UNDO_BUDGET, undo).await.is_err() {
            tracing::error!(
                webhook_id = %webhook.id,
                "undoing a failed create ran out of time; reconcile this id"
            );
        }
        Err(error)
    }

    /// Claims the idempotency key (if any), then writes the secret, then the record.
    async fn write(
        &self,
        key: &ApiKey,
        webhook: &Webhook,
        signing_secret: &SigningSecret,
        request: &NewWebhook,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Written, Failure> {
        if let Some(claim) = claim {
            let outcome = self.webhooks.claim(claim, OffsetDateTime::now_utc()).await;
            match outcome.map_err(|e| Failure::BeforeRecord(e.into()))? {
                ClaimOutcome::Claimed => {}
                ClaimOutcome::InProgress => {
                    return Err(Failure::NothingWritten(ApiError::RequestInProgress))
                }
                ClaimOutcome::Reused => {
                    return Err(Failure::NothingWritten(ApiError::IdempotencyKeyReused))
                }
                ClaimOutcome::Completed(id) => {
                    let replayed = self.replay(id, key).await;
                    return replayed
                        .map(|created| Written::Replayed(Box::new(created)))
                        .map_err(Failure::NothingWritten);
                }
            }
        }
        let secret = self
            .secrets
            .create_webhook_secret(&WebhookSecretMaterial {
                webhook_id: webhook.id,
                api_key_id: &key.id,
                signing_secret,
                headers: &request.headers,
            })
            .await
            .map_err(|e| Failure::BeforeRecord(e.into()))?;
        let limit = self.settings.max_webhooks_per_key;
        match self.webhooks.insert(webhook, &secret, limit, claim).await {
            Ok(()) => Ok(Written::New),
            // A cancelled transaction wrote nothing.
            Err(InsertError::LimitReached) => {
                Err(Failure::BeforeRecord(ApiError::WebhookLimitReached {
                    limit,
                }))
            }
            Err(InsertError::ClaimLost) => Err(Failure::BeforeRecord(ApiError::RequestInProgress)),
            // Anything else may hide a write that landed.
            Err(InsertError::Store(error)) => Err(Failure::Unknown(error.into())),
        }
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

    /// Removes what a failed create may have left, record first: a record without its secret
    /// would be the worse leftover. The secret is deleted by name, since a timed-out create
    /// may have made one whose ARN we never heard; the claim is released so a retry can go on.
    /// What cannot be undone is logged with the webhook id for reconciliation.
    async fn undo(
        &self,
        webhook: &Webhook,
        record_may_exist: bool,
        claim: Option<&IdempotencyClaim>,
    ) {
        if record_may_exist {
            if let Err(error) = self.webhooks.remove(webhook.id, &webhook.api_key_id).await {
                tracing::error!(
                    webhook_id = %webhook.id,
                    error = %error,
                    "could not confirm that no webhook record was written; reconcile this id"
                );
            }
        }
        if let Err(error) = self.secrets.delete_webhook_secret(webhook.id).await {
            tracing::error!(
                webhook_id = %webhook.id,
                error = %error,
                "could not delete the secret of a webhook that was never stored; reconcile this id"
            );
        }
        if let Some(claim) = claim {
            if let Err(error) = self.webhooks.release(claim).await {
                tracing::warn!(error = %error, "could not release an idempotency claim; it lapses by itself");
            }
        }
    }
}

/// What the writes of a create achieved.
enum Written {
    New,
    Replayed(Box<Created>),
}

/// How far a failed create got, which tells the undo what to look for.
enum Failure {
    /// Nothing of this request's can exist (refused, or answered from an earlier request).
    NothingWritten(ApiError),
    /// A claim and a secret may exist, but not the record.
    BeforeRecord(ApiError),
    /// Anything may exist: the record write was ambiguous.
    Unknown(ApiError),
}
