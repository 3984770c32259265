//! The schema of the three tables, once: every attribute name, key prefix, index and TTL attribute,
//! and the functions that build the keys of the webhooks table's items. Nothing else spells
//! them (`docs/TABLES.md` is the same schema as a table, checked against this module by the
//! test at the end).
//!
//! **The API keys table** holds one item per key, under the hash of its token
//! ([`API_KEY_HASH`]), with an index by key id ([`API_KEYS_BY_ID_INDEX`]).
//!
//! **The webhooks table** holds several kinds of item under one partition key
//! ([`WEBHOOK_ID`]), told apart by the key's form:
//!
//! | item kind | key | written by |
//! |---|---|---|
//! | webhook record | the webhook's UUID | `webhooks` |
//! | fence / tombstone | the webhook's UUID, with [`FENCE`] | `tombstones` |
//! | per-key webhook count | [`quota_id`] (`quota#<apiKeyId>`) | `quotas` |
//! | idempotency claim | [`claim_id`] (`idempotency#<apiKeyId>#<digest>`) | `claims` |
//! | rate window | [`rate_window_id`] (`rate#<apiKeyId>#<hourStart>`) | `rate_windows` |
//!
//! Only webhook records carry [`FANOUT_COMPANY`] and [`API_KEY_ID`] with [`CREATED_AT`], so
//! only they are in the two indexes (sparse indexes: no counter, claim or tombstone is ever
//! listed). [`EXPIRES_AT`] (epoch seconds) is the table's TTL attribute.

use uuid::Uuid;

use crate::domain::ClaimId;

// ----- The webhooks table: key, indexes, TTL -----

/// Partition key of the webhooks table (every item kind; see the module documentation).
pub const WEBHOOK_ID: &str = "id";
/// The TTL attribute of the webhooks table and of the delivery log: epoch seconds after which
/// DynamoDB may delete the item (within days; readers check it). On fences, tombstones,
/// claims, rate windows, events and deliveries; never on a webhook record or a count.
pub const EXPIRES_AT: &str = "expiresAt";
/// The index of webhook records by owner: partition [`API_KEY_ID`], sort [`CREATED_AT`].
pub const BY_API_KEY_INDEX: &str = "byApiKey";
/// The fan-out index of webhook records (src/pipeline): partition [`FANOUT_COMPANY`].
pub const BY_COMPANY_INDEX: &str = "byCompany";

// ----- Webhook records -----

/// The owning API key's id (webhook records); also the API key record's own id.
pub const API_KEY_ID: &str = "apiKeyId";
/// The webhook's company id (string), or NULL for a webhook without one.
pub const COMPANY_ID: &str = "companyId";
/// A webhook's company id, or [`ALL_COMPANIES`] for a webhook without one (which gets the
/// events of every company its key may act for).
pub const FANOUT_COMPANY: &str = "fanoutCompany";
/// [`FANOUT_COMPANY`] of webhooks without a company.
pub const ALL_COMPANIES: &str = "ALL";
pub const URL: &str = "url";
/// The webhook's name (NULL when none); also the API key record's name.
pub const NAME: &str = "name";
pub const DESCRIPTION: &str = "description";
/// The custom headers' names (a list); their values are in the webhook's secret only.
pub const HEADER_NAMES: &str = "headerNames";
/// The subscribed event types (a list).
pub const EVENTS: &str = "events";
pub const IS_ACTIVE: &str = "isActive";
pub const MAX_RETRIES: &str = "maxRetries";
pub const TIMEOUT_MS: &str = "timeoutMs";
/// Consecutive failed attempts (the circuit breaker's count).
pub const CONSECUTIVE_FAILURES: &str = "consecutiveFailures";
/// When the circuit opened (RFC 3339), NULL or absent while it is closed.
pub const CIRCUIT_OPENED_AT: &str = "circuitOpenedAt";
/// The ARN of the webhook's secret (signing secret and header values).
pub const SECRET_ARN: &str = "secretArn";
/// The secret version the record points at; absent on records older than pinned versions.
pub const SECRET_VERSION: &str = "secretVersion";
/// RFC 3339, whole seconds (webhook records and API key records).
pub const CREATED_AT: &str = "createdAt";
pub const UPDATED_AT: &str = "updatedAt";
/// The record's version, its ETag: every change adds 1.
pub const VERSION: &str = "version";
/// The id of the last change written to a record, so that a retried write can recognise its
/// own change landed.
pub const LAST_CHANGE: &str = "lastChange";

// ----- Fences and tombstones (under a webhook's id) -----

/// Marks an item that holds a failed create's or a deleted webhook's id (a fence, or a
/// tombstone when a delete left it), so that a late copy of a write cannot bring the record
/// back.
pub const FENCE: &str = "fence";
/// The key that deleted a webhook, on its tombstone.
pub const DELETED_BY: &str = "deletedBy";

// ----- Per-key webhook counts -----

/// Key prefix of the item that counts an API key's webhooks.
pub const QUOTA_PREFIX: &str = "quota#";
/// The number of webhooks the key holds.
pub const WEBHOOK_COUNT: &str = "webhookCount";

/// The item that counts an API key's webhooks (in the webhooks table, beside them).
pub fn quota_id(api_key_id: &str) -> String {
    format!("{QUOTA_PREFIX}{api_key_id}")
}

// ----- Idempotency claims -----

/// Key prefix of idempotency claims.
pub const CLAIM_PREFIX: &str = "idempotency#";
/// [`CLAIM_IN_PROGRESS`] or [`CLAIM_COMPLETED`].
pub const CLAIM_STATUS: &str = "status";
pub const CLAIM_IN_PROGRESS: &str = "in_progress";
pub const CLAIM_COMPLETED: &str = "completed";
/// SHA-256 of the request body (hex).
pub const REQUEST_HASH: &str = "requestHash";
/// The request that holds the claim (random per request).
pub const CLAIM_OWNER: &str = "owner";
/// When the claim was taken (epoch seconds): an unfinished claim goes stale after a while.
pub const LOCKED_AT: &str = "lockedAt";
/// The attribute of a completed claim that tells a replay what to answer.
pub const CLAIM_RESULT: &str = "result";

/// The key of an idempotency claim: the API key id, so that two keys never share a claim, and
/// the claim's digest (hex), so that odd key characters never reach a table key.
pub fn claim_id(claim: &ClaimId) -> String {
    format!("{CLAIM_PREFIX}{}#{}", claim.api_key_id(), claim.digest())
}

// ----- Rate windows -----

/// Key prefix of a key's rate window (one item per key and hour).
pub const RATE_PREFIX: &str = "rate#";
/// Requests in the window's hour.
pub const HOUR_COUNT: &str = "hourCount";

/// The item that counts `api_key_id`'s requests in the hour starting at `hour_start` (epoch
/// seconds).
pub fn rate_window_id(api_key_id: &str, hour_start: i64) -> String {
    format!("{RATE_PREFIX}{api_key_id}#{hour_start}")
}

/// The attribute of a rate window that counts the requests of one minute of its hour
/// (`m00` to `m59`).
pub fn minute_count(minute_of_hour: u8) -> String {
    format!("m{minute_of_hour:02}")
}

// ----- Delivery attempts: entries of their delivery in the delivery log (below) -----

pub const DELIVERY_ID: &str = "deliveryId";
/// The webhook a delivery is for (deliveries are keyed by their own id).
pub const ATTEMPT_WEBHOOK_ID: &str = "webhookId";
/// The event type delivered.
pub const EVENT: &str = "event";
/// The attempt's number, from 1.
pub const ATTEMPT: &str = "attempt";
pub const ATTEMPTED_AT: &str = "attemptedAt";
/// `delivered`, `failed` or `gone` (410).
pub const OUTCOME: &str = "outcome";
/// The failure in words; absent on success.
pub const REASON: &str = "reason";
pub const HTTP_STATUS: &str = "httpStatus";
pub const DURATION_MS: &str = "durationMs";

// ----- The delivery log table (store/dynamodb/deliveries.rs; the pipeline writes it) -----
//
// A table of its own (the reconciler scans the webhooks table: it must not grow with the log).
// Two item kinds under one partition key, [`LOG_ID`]: events ([`EVENT_PREFIX`]) and
// deliveries ([`DELIVERY_PREFIX`]), each attempt an attribute of its delivery
// ([`attempt_attribute`]). [`EXPIRES_AT`] is its TTL attribute too.

/// Partition key of the delivery log table.
pub const LOG_ID: &str = "id";
/// Key prefix of an event: `event#<eventId>`.
pub const EVENT_PREFIX: &str = "event#";
/// Key prefix of a delivery: `delivery#<deliveryId>`.
pub const DELIVERY_PREFIX: &str = "delivery#";
/// The index of events by company (partition [`COMPANY_ID`], sort [`OCCURRED_KEY`]): recover's
/// walk by time window. Operational events and pings have no company, so are not in it.
pub const EVENTS_BY_COMPANY_INDEX: &str = "eventsByCompany";
/// The index of deliveries by webhook (partition [`ATTEMPT_WEBHOOK_ID`], sort
/// [`CREATED_KEY`]): the delivery list, newest first.
pub const DELIVERIES_BY_WEBHOOK_INDEX: &str = "deliveriesByWebhook";
/// The event's id (events and deliveries).
pub const EVENT_ID: &str = "eventId";
/// When the event occurred (RFC 3339, as published).
pub const OCCURRED_AT: &str = "occurredAt";
/// `<occurredAt in epoch milliseconds, 13 digits>#<eventId>`: sorts by time, unique.
pub const OCCURRED_KEY: &str = "occurredKey";
/// When the pipeline accepted the event (RFC 3339).
pub const RECEIVED_AT: &str = "receivedAt";
/// The event's `data`, as its compact JSON text.
pub const DATA: &str = "data";
/// A delivery's status: `pending`, `delivered`, `failed` or `skipped`.
pub const DELIVERY_STATUS: &str = "status";
/// `<createdAt in epoch milliseconds, 13 digits>#<deliveryId>`: sorts by time, unique.
pub const CREATED_KEY: &str = "createdKey";
pub const ATTEMPT_COUNT: &str = "attemptCount";
pub const LAST_ATTEMPT_AT: &str = "lastAttemptAt";
pub const LAST_HTTP_STATUS: &str = "lastHttpStatus";
/// Epoch seconds the next attempt is planned for (on deliveries and on failed attempts).
pub const NEXT_ATTEMPT_AT: &str = "nextAttemptAt";
/// Prefix of a delivery's attribute that holds one attempt (a map: [`ATTEMPT`],
/// [`ATTEMPTED_AT`], [`OUTCOME`], [`REASON`], [`HTTP_STATUS`], [`DURATION_MS`],
/// [`NEXT_ATTEMPT_AT`], [`MESSAGE_ID`], [`CLAIM`]).
pub const ATTEMPT_ATTRIBUTE_PREFIX: &str = "attempt#";
/// The SQS message that made an attempt (a message that comes back finds its own record).
pub const MESSAGE_ID: &str = "messageId";
/// The token of the run that wrote an attempt (a retried write recognises its own).
pub const CLAIM: &str = "claim";
/// On a delivery: the SQS message id of the recover step that last moved it to `pending`, so
/// that the step recognises its own move when its write is retried or the message comes back.
pub const RECOVERED_BY: &str = "recoveredBy";

/// The key of an event in the delivery log.
pub fn event_key(event_id: &str) -> String {
    format!("{EVENT_PREFIX}{event_id}")
}

/// The key of a delivery in the delivery log.
pub fn delivery_key(delivery_id: Uuid) -> String {
    format!("{DELIVERY_PREFIX}{delivery_id}")
}

/// The attribute of a delivery that holds attempt `attempt`.
pub fn attempt_attribute(attempt: u32) -> String {
    format!("{ATTEMPT_ATTRIBUTE_PREFIX}{attempt}")
}

/// A sort key of the log's indexes: the time in epoch milliseconds, fixed width, then the id.
pub fn time_key(epoch_ms: i128, id: &str) -> String {
    format!("{}#{id}", time_key_prefix(epoch_ms))
}

/// The part of [`time_key`] that orders by time alone (range bounds).
pub fn time_key_prefix(epoch_ms: i128) -> String {
    format!("{:013}", epoch_ms.max(0))
}

// ----- The API keys table -----

/// Partition key of the API keys table: the HMAC-SHA-256 of the token with the pepper (hex).
pub const API_KEY_HASH: &str = "keyHash";
/// The index of API key records by key id (partition [`API_KEY_ID`]): the fan-out's key
/// lookups.
pub const API_KEYS_BY_ID_INDEX: &str = "byApiKeyId";
/// The key's scopes (a list).
pub const SCOPES: &str = "scopes";
/// The companies the key may act for (a list of UUIDs).
pub const COMPANY_IDS: &str = "companyIds";
/// `active`, `suspended` or `revoked`.
pub const KEY_STATUS: &str = "status";
/// When the key expires (RFC 3339): not a TTL (the API keys table has none), a refused key
/// must stay readable to be told apart from an unknown one.
pub const KEY_EXPIRES_AT: &str = "expiresAt";
pub const SUSPENDED_AT: &str = "suspendedAt";
pub const SUSPEND_REASON: &str = "suspendReason";
/// Attributes of an API key record holding its own rate limits (absent: the defaults).
pub const RATE_PER_MINUTE: &str = "rateLimitPerMinute";
pub const RATE_PER_HOUR: &str = "rateLimitPerHour";

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::domain::{IdempotencyClaim, IdempotencyKey};

    /// Every name above, as docs/TABLES.md must spell it.
    const DOCUMENTED: &[&str] = &[
        WEBHOOK_ID,
        EXPIRES_AT,
        BY_API_KEY_INDEX,
        BY_COMPANY_INDEX,
        API_KEY_ID,
        COMPANY_ID,
        FANOUT_COMPANY,
        ALL_COMPANIES,
        URL,
        NAME,
        DESCRIPTION,
        HEADER_NAMES,
        EVENTS,
        IS_ACTIVE,
        MAX_RETRIES,
        TIMEOUT_MS,
        CONSECUTIVE_FAILURES,
        CIRCUIT_OPENED_AT,
        SECRET_ARN,
        SECRET_VERSION,
        CREATED_AT,
        UPDATED_AT,
        VERSION,
        LAST_CHANGE,
        FENCE,
        DELETED_BY,
        QUOTA_PREFIX,
        WEBHOOK_COUNT,
        CLAIM_PREFIX,
        CLAIM_STATUS,
        CLAIM_IN_PROGRESS,
        CLAIM_COMPLETED,
        REQUEST_HASH,
        CLAIM_OWNER,
        LOCKED_AT,
        CLAIM_RESULT,
        RATE_PREFIX,
        HOUR_COUNT,
        DELIVERY_ID,
        ATTEMPT_WEBHOOK_ID,
        EVENT,
        ATTEMPT,
        ATTEMPTED_AT,
        OUTCOME,
        REASON,
        HTTP_STATUS,
        DURATION_MS,
        LOG_ID,
        EVENT_PREFIX,
        DELIVERY_PREFIX,
        EVENTS_BY_COMPANY_INDEX,
        DELIVERIES_BY_WEBHOOK_INDEX,
        EVENT_ID,
        OCCURRED_AT,
        OCCURRED_KEY,
        RECEIVED_AT,
        DATA,
        DELIVERY_STATUS,
        CREATED_KEY,
        ATTEMPT_COUNT,
        LAST_ATTEMPT_AT,
        LAST_HTTP_STATUS,
        NEXT_ATTEMPT_AT,
        ATTEMPT_ATTRIBUTE_PREFIX,
        MESSAGE_ID,
        CLAIM,
        RECOVERED_BY,
        API_KEY_HASH,
        API_KEYS_BY_ID_INDEX,
        SCOPES,
        COMPANY_IDS,
        KEY_STATUS,
        KEY_EXPIRES_AT,
        SUSPENDED_AT,
        SUSPEND_REASON,
        RATE_PER_MINUTE,
        RATE_PER_HOUR,
    ];

    #[test]
    fn docs_tables_names_every_attribute_prefix_and_index_of_the_schema() {
        let doc = include_str!("../../../docs/TABLES.md");
        let missing: Vec<_> = DOCUMENTED
            .iter()
            .filter(|name| !doc.contains(&format!("`{name}")))
            .collect();
        assert!(missing.is_empty(), "not in docs/TABLES.md: {missing:?}");
    }

    #[test]
    fn keys_keep_the_formats_already_stored() {
        let delivery = Uuid::nil();
        assert_eq!(quota_id("k"), "quota#k");
        assert_eq!(rate_window_id("k", 3600), "rate#k#3600");
        assert_eq!(minute_count(7), "m07");
        assert_eq!(
            delivery_key(delivery),
            "delivery#00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(attempt_attribute(2), "attempt#2");
        assert_eq!(time_key(1_796_378_400_000, "e"), "1796378400000#e");
        let key = IdempotencyKey::parse("retry-1").unwrap();
        let claim = IdempotencyClaim::new("k", "POST /webhooks", &key, b"{}");
        let digest = hex::encode(Sha256::digest(b"POST /webhooks\0retry-1"));
        assert_eq!(claim_id(&claim.id), format!("idempotency#k#{digest}"));
    }
}
