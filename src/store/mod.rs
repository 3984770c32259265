//! Ports to storage: one small trait per use, with AWS and in-memory adapters.
//!
//! - [`ApiKeyStore`]: find a key by the hash of its token.
//! - [`WebhookReads`]: get one webhook, list a key's webhooks (by an index, never a scan).
//! - [`WebhookWrites`]: insert (with the create's [`WebhookWrites::undo_insert`]), conditional
//!   update, delete.
//! - [`IdempotencyClaims`]: claim, complete and release `Idempotency-Key`s.
//! - [`RateCounter`]: count a request against its key's windows.
//! - [`SecretStore`]: the per-webhook secret and the pepper.
//! - [`delivery_log::DeliveryLog`], [`delivery_log::PipelineQueue`]: the delivery log's
//!   reads, resend marks and the test ping's record; resend and recover jobs to the pipeline.
//!
//! [`WebhookStore`] is all of the webhook table's traits together, the bound the app takes.

use std::future::Future;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::custom_header::{HeaderName, HeaderValue};
use crate::domain::rate_limit::Usage;
use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::{
    ApiKey, ClaimOutcome, CustomHeader, EventType, IdempotencyClaim, Pepper, SigningSecret,
    TokenHash, Webhook,
};

pub mod aws_error;
pub mod delivery_log;
pub mod dynamodb;
pub mod memory;
pub mod memory_log;
pub mod secrets_manager;

/// AWS Secrets Manager's limit on a secret value, in bytes. The in-memory twin enforces it too,
/// so that the emulator's leniency hides nothing.
pub use crate::domain::custom_header::MAX_SECRET_BYTES;

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

/// A webhook record and the handle on its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWebhook {
    pub webhook: Webhook,
    pub secret: SecretRef,
}

/// A handle on one version of a webhook's secret: the secret's ARN and the version the record
/// points at. The record is the one commit point of a change of the secret: a new version is
/// written first and becomes the webhook's only when the record's pointer moves to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub arn: String,
    /// `None` for records written before versions were pinned (the current version is meant).
    pub version: Option<String>,
}

/// Reads of webhook records.
pub trait WebhookReads: Send + Sync {
    /// One record, strongly consistent; `None` if absent or deleted.
    fn get(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredWebhook>, StoreError>> + Send;

    /// Every webhook of `api_key_id`, from an index by owner (never a scan), in no set order.
    fn list_by_owner(
        &self,
        api_key_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredWebhook>, StoreError>> + Send;
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

/// Who asks for a change, as the conditional writes check it: the owning key, and the
/// companies it may act for now.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub api_key_id: &'a str,
    pub company_ids: &'a [Uuid],
    /// `If-Match`: the version the caller last saw, if it sent one.
    pub if_match: Option<u64>,
}

/// Moves a webhook to a new version of its secret (new header values, or a rotated signing
/// secret). Lands only if the record still points at `from`.
#[derive(Clone, Debug)]
pub struct SecretSwap {
    pub from: SecretRef,
    pub to: SecretRef,
    /// The new header names, when the headers change.
    pub header_names: Option<Vec<String>>,
}

/// A change of a webhook record; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    pub name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub secret: Option<SecretSwap>,
    /// Close the circuit: no failures counted, not opened, active again.
    pub reset_circuit: bool,
}

impl WebhookChange {
    /// Applies the change to `stored` as the store does (version and `updatedAt` move).
    pub fn apply(&self, stored: &mut StoredWebhook, now: OffsetDateTime) {
        let webhook = &mut stored.webhook;
        if let Some(url) = &self.url {
            webhook.url.clone_from(url);
        }
        if let Some(events) = &self.events {
            webhook.events.clone_from(events);
        }
        if let Some(name) = &self.name {
            webhook.name.clone_from(name);
        }
        if let Some(description) = &self.description {
            webhook.description.clone_from(description);
        }
        if let Some(active) = self.is_active {
            webhook.is_active = active;
        }
        if let Some(swap) = &self.secret {
            stored.secret = swap.to.clone();
            if let Some(names) = &swap.header_names {
                webhook.header_names.clone_from(names);
            }
        }
        if self.reset_circuit {
            webhook.consecutive_failures = 0;
            webhook.circuit_opened_at = None;
            webhook.is_active = true;
        }
        webhook.version += 1;
        webhook.updated_at = whole_seconds(now);
    }
}

/// Timestamps are whole seconds, as in the documentation (and so equal after a round trip).
pub fn whole_seconds(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Why a conditional change (or delete) did not land. Checked in this order.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// No such webhook, deleted, or another key's.
    #[error("webhook not found")]
    NotFound,
    /// The caller's key may no longer act for the webhook's company.
    #[error("company not allowed")]
    CompanyDenied,
    /// `If-Match` names another version.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The record no longer points at the secret version the change was built on.
    #[error("secret version moved")]
    SecretMoved,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Judges a change against the record as it is: the one rule both adapters follow.
pub fn judge_change(
    existing: Option<&StoredWebhook>,
    caller: &Caller<'_>,
    expected_secret: Option<&SecretRef>,
) -> Result<(), ChangeError> {
    let stored = existing
        .filter(|s| s.webhook.api_key_id == caller.api_key_id)
        .ok_or(ChangeError::NotFound)?;
    if let Some(company) = stored.webhook.company_id {
        if !caller.company_ids.contains(&company) {
            return Err(ChangeError::CompanyDenied);
        }
    }
    if caller.if_match.is_some_and(|v| v != stored.webhook.version) {
        return Err(ChangeError::PreconditionFailed);
    }
    if expected_secret.is_some_and(|s| s.version != stored.secret.version) {
        return Err(ChangeError::SecretMoved);
    }
    Ok(())
}

/// What a delete found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The record is gone now (with its place in the key's limit).
    Now,
    /// The caller's own webhook was deleted before; its secret may still need deleting.
    Earlier,
}

/// Writes of webhook records.
pub trait WebhookWrites: Send + Sync {
    /// Atomically: stores the new record (never overwriting one), counts it against its API
    /// key's `limit`, and completes `claim` if there is one. All of it, or none of it.
    fn insert(
        &self,
        stored: &StoredWebhook,
        limit: u32,
        claim: Option<&IdempotencyClaim>,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// The create's undo of an insert that may have landed: removes record `id` (a fresh
    /// UUID: only the failed request can have written it) and gives its place in
    /// `api_key_id`'s limit back. Absent is success, and a late copy of the insert must not
    /// bring the record back.
    fn undo_insert(
        &self,
        id: Uuid,
        api_key_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Changes a record in one conditional write ([`judge_change`]'s rules), and completes
    /// `claim` with `result` in the same write if there is one. Answers the record as changed.
    fn update(
        &self,
        id: Uuid,
        caller: &Caller<'_>,
        change: &WebhookChange,
        claim: Option<(&IdempotencyClaim, &str)>,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<StoredWebhook, ChangeError>> + Send;

    /// Deletes a record ([`judge_change`]'s rules) and gives its place in the key's limit back,
    /// in one transaction. Leaves a tombstone that expires, so that a retried delete can
    /// finish the secret's deletion and a late write cannot bring the record back.
    fn delete(
        &self,
        id: Uuid,
        caller: &Caller<'_>,
    ) -> impl Future<Output = Result<Deleted, ChangeError>> + Send;
}

/// `Idempotency-Key` claims.
pub trait IdempotencyClaims: Send + Sync {
    /// Claims an idempotency key for this request, or tells what already holds it.
    fn claim(
        &self,
        claim: &IdempotencyClaim,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Marks our claim done with `result` (what a replay needs to answer again).
    fn complete(
        &self,
        claim: &IdempotencyClaim,
        result: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a claim up after a failed request, so that a retry can try again.
    fn release(
        &self,
        claim: &IdempotencyClaim,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Per-key request counting over fixed windows.
pub trait RateCounter: Send + Sync {
    /// Counts one request of `api_key_id` at `now`, in one call; answers the counts of the
    /// current minute and hour, this request included.
    fn count_request(
        &self,
        api_key_id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Usage, StoreError>> + Send;
}

/// Everything the webhooks table serves.
pub trait WebhookStore: WebhookReads + WebhookWrites + IdempotencyClaims + RateCounter {}
impl<T: WebhookReads + WebhookWrites + IdempotencyClaims + RateCounter> WebhookStore for T {}

/// A signing secret that still signs beside the new one until `expires_at` (rotation).
#[derive(Clone, Debug)]
pub struct PreviousSecret {
    pub signing_secret: SigningSecret,
    pub expires_at: OffsetDateTime,
}

/// What a webhook's secret holds: the signing secret(s) and the custom header values.
#[derive(Clone, Debug)]
pub struct SecretDocument {
    pub signing_secret: SigningSecret,
    pub previous: Option<PreviousSecret>,
    pub headers: Vec<CustomHeader>,
}

impl SecretDocument {
    /// The JSON stored in Secrets Manager.
    pub fn to_json(&self) -> String {
        let headers: Vec<_> = self
            .headers
            .iter()
            .map(|h| serde_json::json!({"name": h.name(), "value": h.expose_value()}))
            .collect();
        let mut document = serde_json::json!({
            "signingSecret": self.signing_secret.expose(),
            "headers": headers,
        });
        if let Some(previous) = &self.previous {
            document["previousSigningSecret"] = previous.signing_secret.expose().into();
            document["previousExpiresAt"] = rfc3339(previous.expires_at).into();
        }
        document.to_string()
    }

    /// Reads the stored JSON; `None` if it is malformed.
    pub fn from_json(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let secret = |name: &str| {
            Some(SigningSecret::from_stored(
                value.get(name)?.as_str()?.into(),
            ))
        };
        let headers = match value.get("headers") {
            None => Vec::new(),
            Some(list) => list
                .as_array()?
                .iter()
                .map(|h| {
                    let name = HeaderName::parse(h.get("name")?.as_str()?).ok()?;
                    let value = HeaderValue::parse(h.get("value")?.as_str()?).ok()?;
                    Some(CustomHeader::new(name, value))
                })
                .collect::<Option<Vec<_>>>()?,
        };
        let previous = match secret("previousSigningSecret") {
            None => None,
            Some(signing_secret) => Some(PreviousSecret {
                signing_secret,
                expires_at: parse_rfc3339(value.get("previousExpiresAt")?.as_str()?)?,
            }),
        };
        Some(Self {
            signing_secret: secret("signingSecret")?,
            previous,
            headers,
        })
    }
}

/// The secret store: one secret per webhook (versioned), and the pepper of the API key hashes.
pub trait SecretStore: Send + Sync {
    /// Creates the webhook's secret, tagged with the webhook and key ids.
    fn create_webhook_secret(
        &self,
        webhook_id: Uuid,
        api_key_id: &str,
        document: &SecretDocument,
    ) -> impl Future<Output = Result<SecretRef, StoreError>> + Send;

    /// Writes a new version of an existing secret; the old versions stay readable.
    fn put_webhook_secret(
        &self,
        secret: &SecretRef,
        document: &SecretDocument,
    ) -> impl Future<Output = Result<SecretRef, StoreError>> + Send;

    /// Reads the version of a webhook's secret that `secret` names.
    fn read_webhook_secret(
        &self,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<SecretDocument, StoreError>> + Send;

    /// Deletes the secret of `webhook_id` at once, without a recovery window (nobody can
    /// restore it). Found by name, since a create whose answer was lost leaves no ARN; one
    /// that does not exist is deleted already.
    fn delete_webhook_secret(
        &self,
        webhook_id: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn read_pepper(&self) -> impl Future<Output = Result<Pepper, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_documents_read_back_with_a_previous_secret() {
        let document = SecretDocument {
            signing_secret: SigningSecret::from_stored("ab".repeat(32)),
            previous: Some(PreviousSecret {
                signing_secret: SigningSecret::from_stored("cd".repeat(32)),
                expires_at: time::macros::datetime!(2026-11-28 10:00 UTC),
            }),
            headers: vec![CustomHeader::new(
                HeaderName::parse("X-Token").unwrap(),
                HeaderValue::parse("v").unwrap(),
            )],
        };
        let back = SecretDocument::from_json(&document.to_json()).unwrap();
        assert_eq!(back.signing_secret.expose(), "ab".repeat(32));
        let previous = back.previous.unwrap();
        assert_eq!(previous.signing_secret.expose(), "cd".repeat(32));
        assert_eq!(back.headers[0].name(), "X-Token");
        assert_eq!(back.headers[0].expose_value(), "v");
    }
}
