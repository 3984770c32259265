//! Safe retries: a client-chosen `Idempotency-Key` makes a `POST` happen at most once.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long a key is remembered, in seconds (24 hours).
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;
/// After this many seconds an unfinished claim is considered abandoned (the function's own
/// timeout is far shorter), so a crashed request cannot block its key for a day.
pub const CLAIM_STALE_AFTER_SECONDS: i64 = 120;

/// The value of an `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty()
            || value.len() > 255
            || !value.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err("Idempotency-Key must be 1 to 255 visible ASCII characters".into());
        }
        Ok(Self(value.to_owned()))
    }
}

/// A request's claim on an idempotency key, scoped to the API key that sent it and to the
/// method and route it was sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Which claim this is: two API keys or two routes never share one. The store turns it
    /// into its own key.
    pub id: ClaimId,
    /// SHA-256 of the request body: the same key with another body is a client bug.
    pub request_hash: String,
    /// Random per request: tells this request's own claim (say, a retried write whose first
    /// answer was lost) from another request's.
    pub owner: String,
}

/// The identity of a claim: the API key id and a digest of the scope and the
/// `Idempotency-Key`, so that odd key characters never reach a storage key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimId {
    api_key_id: String,
    digest: String,
}

impl ClaimId {
    /// The API key whose request holds the claim.
    pub fn api_key_id(&self) -> &str {
        &self.api_key_id
    }

    /// SHA-256 (hex) of the scope, a zero byte and the `Idempotency-Key`.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl IdempotencyClaim {
    /// `scope` names the method and the route as called (`POST /webhooks/<id>/test`).
    pub fn new(api_key_id: &str, scope: &str, key: &IdempotencyKey, body: &[u8]) -> Self {
        let mut scoped = Sha256::new();
        scoped.update(scope.as_bytes());
        scoped.update([0]);
        scoped.update(key.0.as_bytes());
        Self {
            id: ClaimId {
                api_key_id: api_key_id.to_owned(),
                digest: hex::encode(scoped.finalize()),
            },
            request_hash: hex::encode(Sha256::digest(body)),
            owner: Uuid::new_v4().to_string(),
        }
    }
}

/// What claiming a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key is ours: go ahead and create.
    Claimed,
    /// Another request with this key is still running.
    InProgress,
    /// The key was used with a different body.
    Reused,
    /// The key already did its work; the stored result (a webhook id for a create) tells
    /// how to answer the same again.
    Completed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_is_1_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("550e8400-e29b-41d4-a716-446655440000").is_ok());
        for bad in ["", " ", "a b", "tab\t", "é", "\u{7f}", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claims_are_scoped_to_the_api_key() {
        let key = IdempotencyKey::parse("retry-1").unwrap();
        let a = IdempotencyClaim::new("key-a", "POST /webhooks", &key, b"{}");
        let b = IdempotencyClaim::new("key-b", "POST /webhooks", &key, b"{}");
        assert_ne!(a.id, b.id);
        assert_eq!(a.request_hash, b.request_hash);
    }

    #[test]
    fn claims_are_scoped_to_the_method_and_route() {
        let key = IdempotencyKey::parse("retry-1").unwrap();
        let create = IdempotencyClaim::new("key-a", "POST /webhooks", &key, b"");
        let test = IdempotencyClaim::new("key-a", "POST /webhooks/1/test", &key, b"");
        let other = IdempotencyClaim::new("key-a", "POST /webhooks/2/test", &key, b"");
        assert_ne!(create.id, test.id);
        assert_ne!(test.id, other.id);
    }

    #[test]
    fn claims_tell_bodies_apart() {
        let key = IdempotencyKey::parse("retry-1").unwrap();
        let a = IdempotencyClaim::new("key-a", "POST /webhooks", &key, b"{\"a\":1}");
        let b = IdempotencyClaim::new("key-a", "POST /webhooks", &key, b"{\"a\":2}");
        assert_eq!(a.id, b.id);
        assert_ne!(a.request_hash, b.request_hash);
    }
}
