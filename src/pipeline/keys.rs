//! Whether a webhook's API key still lets it receive an event (DELIVERY.md, "The event
//! pipeline": "provided its key is active, unexpired and still holds that company").
//!
//! - The decision is the API's own: [`ApiKey::check_usable`] (status and expiry) and
//!   [`ApiKey::authorise_company`]; this module only names the refusal for logs and metrics.
//! - It is made at fan-out and again before each attempt, so that revoking or suspending a key,
//!   its expiry, or taking a company from it stops deliveries already queued.
//! - Keys are cached per container for the API's key cache TTL (`API_KEY_CACHE_TTL_SECONDS`,
//!   60 s by default): a changed key takes effect in the pipeline as soon as in the API.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::domain::{ApiKey, ApiKeyStatus, Denied};
use crate::store::StoreError;

/// The API's default key cache TTL (`src/config.rs`), which the pipeline follows.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most keys one container remembers; past it the cache starts over.
const KEY_CACHE_CAPACITY: usize = 10_000;

/// Why a webhook's key refuses a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key record with the webhook's `apiKeyId`.
    Gone,
    Revoked,
    Suspended,
    Expired,
    /// The key no longer holds the event's company.
    LostCompany,
}

impl KeyRefusal {
    /// The reason, for log lines, the `Handled::Dropped` answer and the metric's dimension.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRefusal::Gone => "key gone",
            KeyRefusal::Revoked => "key revoked",
            KeyRefusal::Suspended => "key suspended",
            KeyRefusal::Expired => "key expired",
            KeyRefusal::LostCompany => "key no longer holds the company",
        }
    }
}

/// Whether `key` (`None`: no such key) lets its webhook receive an event of `company` at
/// `now`. `company` is `None` only for a delivery message queued before messages carried the
/// event's company and a webhook without one: then status and expiry alone decide.
pub fn refusal(
    key: Option<&ApiKey>,
    company: Option<Uuid>,
    now: OffsetDateTime,
) -> Option<KeyRefusal> {
    let Some(key) = key else {
        return Some(KeyRefusal::Gone);
    };
    match key.check_usable(now) {
        Ok(()) => {}
        Err(Denied::Suspended { .. }) => return Some(KeyRefusal::Suspended),
        // `check_usable` answers InvalidKey for both; the status tells which it was.
        Err(_) if key.status == ApiKeyStatus::Revoked => return Some(KeyRefusal::Revoked),
        Err(_) => return Some(KeyRefusal::Expired),
    }
    match company {
        Some(company) if key.authorise_company(company).is_err() => Some(KeyRefusal::LostCompany),
        _ => None,
    }
}

/// Key records by key id, each read at most once per TTL by one container, even when the
/// messages of a batch ask for it at the same time (one read, the others wait for it).
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

type Entry = (Arc<OnceCell<Option<ApiKey>>>, Instant);

impl KeyCache {
    /// A cache keeping each key for `ttl` (zero: every lookup reads the key).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The key `id` as `read` finds it, from the cache while fresh. A failed read is not
    /// remembered.
    pub async fn get<F, Fut>(&self, id: &str, read: F) -> Result<Option<ApiKey>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<ApiKey>, StoreError>>,
    {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            match entries.get(id) {
                Some((cell, at)) if at.elapsed() < self.ttl => Arc::clone(cell),
                _ => {
                    if entries.len() >= KEY_CACHE_CAPACITY {
                        entries.clear();
                    }
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(id.to_owned(), (Arc::clone(&cell), Instant::now()));
                    cell
                }
            }
        };
        cell.get_or_try_init(read).await.cloned()
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(DEFAULT_KEY_CACHE_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RateLimits;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-03 12:00 UTC);

    fn key() -> ApiKey {
        ApiKey {
            id: "k".into(),
            name: "k".into(),
            scopes: vec![],
            company_ids: vec![Uuid::from_u128(1)],
            status: ApiKeyStatus::Active,
            suspended_at: None,
            suspend_reason: None,
            expires_at: None,
            created_at: datetime!(2026-01-01 0:00 UTC),
            rate_limits: RateLimits::default(),
        }
    }

    #[test]
    fn only_an_active_unexpired_key_holding_the_company_lets_a_delivery_through() {
        let company = Some(Uuid::from_u128(1));
        assert_eq!(refusal(Some(&key()), company, NOW), None);
        assert_eq!(refusal(Some(&key()), None, NOW), None);
        assert_eq!(refusal(None, company, NOW), Some(KeyRefusal::Gone));
        let with = |status| ApiKey { status, ..key() };
        assert_eq!(
            refusal(Some(&with(ApiKeyStatus::Revoked)), company, NOW),
            Some(KeyRefusal::Revoked)
        );
        assert_eq!(
            refusal(Some(&with(ApiKeyStatus::Suspended)), company, NOW),
            Some(KeyRefusal::Suspended)
        );
        let expired = ApiKey {
            expires_at: Some(NOW),
            ..key()
        };
        assert_eq!(
            refusal(Some(&expired), company, NOW),
            Some(KeyRefusal::Expired)
        );
        assert_eq!(
            refusal(Some(&key()), Some(Uuid::from_u128(2)), NOW),
            Some(KeyRefusal::LostCompany)
        );
    }

    #[tokio::test]
    async fn a_key_is_read_once_per_ttl_and_a_failed_read_is_not_kept() {
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(Some(key()))
        };
        let cache = KeyCache::new(Duration::from_secs(60));
        let (a, b) = tokio::join!(cache.get("k", read), cache.get("k", read));
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for both");

        let failing = KeyCache::new(Duration::from_secs(60));
        let unavailable = || async {
            Err(StoreError::Unavailable {
                operation: "test",
                kind: "down".into(),
            })
        };
        assert!(failing.get("k", unavailable).await.is_err());
        assert!(failing.get("k", read).await.unwrap().is_some());

        let uncached = KeyCache::new(Duration::ZERO);
        uncached.get("k", read).await.unwrap();
        uncached.get("k", read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }
}
