//! The use cases, free of HTTP: authenticate a key, count its request, and create, list, read,
//! change, delete and reset webhooks. Each fails with a [`ServiceError`]; the HTTP edge adds
//! its own (routes, media types, sizes) and turns both into answers in one table (`error.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::config::Settings;
use crate::delivery::Sender;
use crate::domain::rate_limit::RateStatus;
use crate::domain::time_format::rfc3339;
use crate::domain::{
    ApiKey, ApiToken, ClaimOutcome, Denied, FieldError, IdempotencyClaim, Pepper, Scope, TokenHash,
};
use crate::store::delivery_log::{DeliveryLog, PipelineQueue};
use crate::store::memory_log::{MemoryDeliveryLog, MemoryPipelineQueue};
use crate::store::{ApiKeyStore, SecretStore, StoreError, WebhookStore};

mod create;
pub mod deliveries;
mod manage;
mod ping;
mod rotate;

pub use create::Created;
pub use deliveries::{
    DeliveryDetail, DeliveryListQuery, DeliveryPageAnswer, DeliverySummary, RecoverRequest,
    Recovered, Resent,
};
pub use manage::{parse_webhook_id, Answered};
pub use ping::TestResult;
pub use rotate::{parse_grace_period, Rotated, DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS};

/// Most API keys one container remembers; past it the cache starts over.
const KEY_CACHE_CAPACITY: usize = 1024;
/// Most unknown token hashes one container remembers; past it that cache starts over.
const UNKNOWN_CACHE_CAPACITY: usize = 4096;

/// Why a use case failed, as the client will learn it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("API key suspended")]
    ApiKeySuspended {
        suspended_at: Option<String>,
        reason: Option<String>,
    },
    #[error("insufficient permissions")]
    InsufficientPermissions(Scope),
    #[error("resource access denied")]
    ResourceAccessDenied,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    #[error("request with this idempotency key in progress")]
    RequestInProgress,
    #[error("webhook limit reached")]
    WebhookLimitReached { limit: u32 },
    /// No such webhook, or not the caller's: the two are never told apart.
    #[error("webhook not found")]
    WebhookNotFound { resource_id: String },
    /// No such delivery under this webhook (unknown, malformed, or another webhook's).
    #[error("delivery not found")]
    DeliveryNotFound { resource_id: String },
    /// Resend or recover of a webhook that is inactive or whose circuit is open.
    #[error("webhook not delivering")]
    WebhookNotDelivering { is_active: bool, circuit_open: bool },
    /// Resend of a delivery still `pending` (it is on its way).
    #[error("delivery pending")]
    DeliveryPending,
    /// Resend of a delivery whose event is gone with its TTL (its body cannot be rebuilt).
    #[error("event expired")]
    EventExpired,
    #[error("precondition failed")]
    PreconditionFailed,
    /// An idempotent replay of a rotation whose secret a newer rotation has replaced.
    #[error("rotation superseded")]
    RotationSuperseded,
    #[error("rate limit exceeded")]
    RateLimited(RateStatus),
    /// AWS is throttling, timing out or down. The payload is for logs only (no SDK text).
    #[error("service unavailable: {0}")]
    Unavailable(StoreError),
    /// A bug or misconfiguration. The payload is for logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// One field error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { .. } => ServiceError::Unavailable(error),
            StoreError::Failed { .. } => ServiceError::Internal(error.to_string()),
        }
    }
}

impl From<Denied> for ServiceError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::InvalidKey => ServiceError::InvalidApiKey,
            Denied::Suspended { at, reason } => ServiceError::ApiKeySuspended {
                suspended_at: at.map(rfc3339),
                reason,
            },
            Denied::MissingScope(scope) => ServiceError::InsufficientPermissions(scope),
            Denied::CompanyNotAllowed => ServiceError::ResourceAccessDenied,
        }
    }
}

/// What a container remembers of token hashes: found keys, and hashes that found nothing.
#[derive(Default)]
struct KeyCache {
    found: HashMap<TokenHash, (ApiKey, Instant)>,
    unknown: HashMap<TokenHash, Instant>,
}

/// The application: stores plus per-container state (pepper, key cache). Built once in `main`.
///
/// `L` and `Q` are the delivery log and the deliveries queue; [`App::new`] starts with their
/// in-memory twins, [`App::with_delivery_log`] puts the real ones in.
pub struct App<K, W, S, L = MemoryDeliveryLog, Q = MemoryPipelineQueue> {
    keys: K,
    webhooks: W,
    secrets: S,
    delivery_log: L,
    pipeline: Q,
    settings: Settings,
    pepper: OnceCell<Pepper>,
    key_cache: Mutex<KeyCache>,
    /// The one HTTP client of deliveries, built on first use (loading the system roots is
    /// start-up work the other routes should not pay for).
    sender: std::sync::OnceLock<Sender>,
    /// The MAC of the delivery list's cursors, derived from the pepper on first use.
    cursor_mac: OnceCell<hmac::Hmac<sha2::Sha256>>,
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore> App<K, W, S> {
    /// An app whose delivery log and deliveries queue are the in-memory twins (tests, and
    /// until [`App::with_delivery_log`] replaces them).
    pub fn new(keys: K, webhooks: W, secrets: S, settings: Settings) -> Self {
        Self {
            keys,
            webhooks,
            secrets,
            delivery_log: MemoryDeliveryLog::default(),
            pipeline: MemoryPipelineQueue::default(),
            settings,
            pepper: OnceCell::new(),
            key_cache: Mutex::new(KeyCache::default()),
            sender: std::sync::OnceLock::new(),
            cursor_mac: OnceCell::new(),
        }
    }
}

impl<K, W, S, L, Q> App<K, W, S, L, Q> {
    /// The same app over `log` and `queue` (`main`: DynamoDB and SQS).
    pub fn with_delivery_log<L2: DeliveryLog, Q2: PipelineQueue>(
        self,
        log: L2,
        queue: Q2,
    ) -> App<K, W, S, L2, Q2> {
        App {
            keys: self.keys,
            webhooks: self.webhooks,
            secrets: self.secrets,
            delivery_log: log,
            pipeline: queue,
            settings: self.settings,
            pepper: self.pepper,
            key_cache: self.key_cache,
            sender: self.sender,
            cursor_mac: OnceCell::new(),
        }
    }

    pub fn delivery_log(&self) -> &L {
        &self.delivery_log
    }

    pub fn pipeline(&self) -> &Q {
        &self.pipeline
    }
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore, L: DeliveryLog, Q: PipelineQueue>
    App<K, W, S, L, Q>
{
    /// Uses `sender` for deliveries (tests: an injected resolver or trust store).
    pub fn with_sender(self, sender: Sender) -> Self {
        let _ = self.sender.set(sender);
        self
    }

    fn sender(&self) -> Result<&Sender, ServiceError> {
        if let Some(sender) = self.sender.get() {
            return Ok(sender);
        }
        let sender = Sender::new(self.settings.url_policy)
            .map_err(|_| ServiceError::Internal("no trusted root certificates".into()))?
            .loopback_only(self.settings.loopback_only_deliveries);
        Ok(self.sender.get_or_init(|| sender))
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

    /// Finds the usable (active, unexpired) key for `token`. Scopes are checked per route.
    ///
    /// Unknown hashes are remembered like found keys, so that an unknown token, a revoked key
    /// and an expired key cost the same (a cache hit) when tried again: timing tells them
    /// apart no more than the answer does.
    pub async fn authenticate(&self, token: &ApiToken) -> Result<ApiKey, ServiceError> {
        let pepper = self.pepper().await?;
        let hash = pepper.hash(token);
        let key = match self.cached_key(&hash) {
            Some(key) => key,
            None => {
                let found = self.keys.find_by_hash(&hash).await?;
                self.cache_key(hash, found.as_ref());
                found
            }
        };
        let key = key.ok_or(ServiceError::InvalidApiKey)?;
        key.check_usable(OffsetDateTime::now_utc())?;
        Ok(key)
    }

    /// The pepper, read once per container.
    async fn pepper(&self) -> Result<&Pepper, ServiceError> {
        Ok(self
            .pepper
            .get_or_try_init(|| self.secrets.read_pepper())
            .await?)
    }

    /// The cached lookup of `hash`: `Some(None)` for a remembered unknown token.
    fn cached_key(&self, hash: &TokenHash) -> Option<Option<ApiKey>> {
        let ttl = self.settings.api_key_cache_ttl;
        let cache = self.key_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, at)) = cache.found.get(hash) {
            return (at.elapsed() < ttl).then(|| Some(key.clone()));
        }
        cache
            .unknown
            .get(hash)
            .filter(|at| at.elapsed() < ttl)
            .map(|_| None)
    }

    fn cache_key(&self, hash: TokenHash, key: Option<&ApiKey>) {
        if self.settings.api_key_cache_ttl.is_zero() {
            return;
        }
        let mut cache = self.key_cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match key {
            Some(key) => {
                if cache.found.len() >= KEY_CACHE_CAPACITY {
                    cache.found.clear();
                }
                cache.unknown.remove(&hash);
                cache.found.insert(hash, (key.clone(), now));
            }
            None => {
                if cache.unknown.len() >= UNKNOWN_CACHE_CAPACITY {
                    cache.unknown.clear();
                }
                cache.unknown.insert(hash, now);
            }
        }
    }

    /// Claims an idempotency key for a request that is not a create: `None` to go ahead,
    /// `Some(result)` when an earlier request with the key completed (answer it again).
    async fn begin(&self, claim: &IdempotencyClaim) -> Result<Option<String>, ServiceError> {
        match self
            .webhooks
            .claim(claim, OffsetDateTime::now_utc())
            .await?
        {
            ClaimOutcome::Claimed => Ok(None),
            ClaimOutcome::InProgress => Err(ServiceError::RequestInProgress),
            ClaimOutcome::Reused => Err(ServiceError::IdempotencyKeyReused),
            ClaimOutcome::Completed(result) => Ok(Some(result)),
        }
    }

    /// Gives a claim up after a failed request, so that a retry can run again. A claim that
    /// cannot be released lapses by itself.
    async fn give_up(&self, claim: &IdempotencyClaim) {
        if let Err(error) = self.webhooks.release(claim).await {
            tracing::warn!(error = %error, "could not release an idempotency claim; it lapses by itself");
        }
    }

    /// Counts a request of `key` (one store call) and judges it against the key's limits.
    /// The caller answers 429 when [`RateStatus::exceeded`] is set.
    pub async fn count_request(&self, key: &ApiKey) -> Result<RateStatus, ServiceError> {
        let now = OffsetDateTime::now_utc();
        let usage = self.webhooks.count_request(&key.id, now).await?;
        Ok(RateStatus::judge(key.rate_limits, usage, now))
    }
}

/// How long a change that races another may be tried again (header changes, rotations).
const CHANGE_ATTEMPTS: usize = 5;
/// A short, jittered pause between such attempts.
fn change_backoff(attempt: usize) -> Duration {
    let mut byte = [0u8; 1];
    let jitter = getrandom::fill(&mut byte).map_or(0, |()| u64::from(byte[0]) % 20);
    Duration::from_millis(10 * (attempt as u64 + 1) + jitter)
}
