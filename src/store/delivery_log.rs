//! The delivery log (DELIVERY-LOG.md): events, once each, and one delivery per (event,
//! webhook) with its attempts, kept 30 days in a table of its own. The types here are what
//! the API reads and the pipeline writes; [`DeliveryLog`] is the API's port on it (DynamoDB:
//! `store::dynamodb::deliveries`; in memory: `store::memory_log`), [`PipelineQueue`] the
//! API's port on the deliveries queue (resend and recover run in the pipeline, never inside
//! the API call).
//!
//! Nothing here holds a secret, a custom header value or a receiver's answer body.

use std::future::Future;

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::domain::EventType;

/// How long an event is kept (DynamoDB TTL), in seconds: 30 days.
pub const EVENT_TTL_SECONDS: i64 = 30 * 24 * 60 * 60;
/// How long a delivery is kept: a day longer than its event, so that TTL deletion (late and in
/// no order) never leaves recover an event whose delivery is gone, which it would take for
/// never delivered.
pub const DELIVERY_TTL_SECONDS: i64 = EVENT_TTL_SECONDS + 24 * 60 * 60;
/// How far back `recover` may reach (`since`), in seconds: 30 days.
pub const RECOVER_WINDOW_SECONDS: i64 = EVENT_TTL_SECONDS;

/// An event's id: the publisher's `eventId` (1 to 100 of `A-Z a-z 0-9 . _ : -`), or one
/// derived from the event's content when the message has none ([`EventId::of_content`]);
/// never the SQS message id, so that a redrive or a second publish is the same event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    pub const MAX_LEN: usize = 100;

    /// A publisher's id, if it has the allowed form.
    pub fn parse(text: &str) -> Option<Self> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        (!text.is_empty() && text.len() <= Self::MAX_LEN && text.chars().all(allowed))
            .then(|| Self(text.to_owned()))
    }

    /// The id of an event published without one: a UUID (version 8) of the SHA-256 of its
    /// compact JSON, so that the same event published twice is one event.
    pub fn of_content(compact_json: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(b"instaview-event\0")
            .chain_update(compact_json.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(
            uuid::Builder::from_custom_bytes(bytes)
                .into_uuid()
                .to_string(),
        )
    }

    /// A fresh id (the test ping, operational events, `events publish` without `--event-id`).
    pub fn random() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of `event_id`'s delivery to `webhook_id` (= `webhook-id` on the wire): derived, so
/// that every fan-out, redrive, republish and recover of one event makes the same delivery.
pub fn delivery_id(event_id: &EventId, webhook_id: Uuid) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"instaview-delivery\0")
        .chain_update(event_id.as_str().as_bytes())
        .chain_update(b"\0")
        .chain_update(webhook_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // A version 8 ("custom") UUID: any UUID parser accepts it.
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// An event as the log keeps it (once, whatever the number of its deliveries).
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedEvent {
    pub id: EventId,
    pub event: EventType,
    /// The event's company; `None` for operational events (they are about a webhook, and go
    /// to the same key's other webhooks whatever their company) and the test ping.
    pub company_id: Option<Uuid>,
    pub occurred_at: OffsetDateTime,
    /// When the pipeline accepted it (recover's "created after the webhook" compares this).
    pub received_at: OffsetDateTime,
    pub data: Value,
}

/// An event as recover walks the log (no `data`): ordered by `occurred_key`, the store's
/// key of (`occurredAt` in milliseconds, event id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHead {
    pub id: EventId,
    pub event: EventType,
    pub occurred_key: String,
    pub received_at: OffsetDateTime,
}

/// Where a delivery stands (DELIVERY-LOG.md, "What is kept").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Queued, or between retries.
    Pending,
    Delivered,
    /// Retries exhausted, or `410 Gone`.
    Failed,
    /// Not attempted (again): the webhook was inactive or its circuit open. Recoverable.
    Skipped,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One attempt of a delivery, as listed (`attempts`, oldest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 is the first; a resend is the next number after the last.
    pub attempt: u32,
    pub at: OffsetDateTime,
    /// `delivered`, `failed` or `gone` (410).
    pub outcome: String,
    pub http_status: Option<u16>,
    pub duration_ms: Option<u64>,
    /// Today's sentences ("the endpoint answered 500", "connection timed out", ...).
    pub reason: Option<String>,
}

/// One delivery: one event to one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: EventId,
    pub event: EventType,
    pub status: DeliveryStatus,
    pub created_at: OffsetDateTime,
    pub last_attempt_at: Option<OffsetDateTime>,
    pub last_http_status: Option<u16>,
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
}

impl Delivery {
    /// The number of attempts made (`attemptCount`).
    pub fn attempt_count(&self) -> u32 {
        self.attempts.len() as u32
    }

    /// The number the next attempt (a resend) gets.
    pub fn next_attempt_number(&self) -> u32 {
        self.attempts.iter().map(|a| a.attempt).max().unwrap_or(0) + 1
    }
}

/// The list's filters (all optional, combined with AND) and page size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event: Option<EventType>,
    /// On `createdAt`: `since` <= createdAt < `until`.
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// One page of a webhook's deliveries, newest first. `next` is the store's position after the
/// page (plain, not authenticated: the API wraps it in an authenticated cursor bound to the
/// webhook and the filters); `None` means the end. A page may hold fewer than asked while
/// more follow (filters are applied after the key range).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    pub next: Option<String>,
}

/// What marking a delivery for a resend found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResendMark {
    /// Now `pending`, to be sent as attempt `attempt`.
    Marked { attempt: u32 },
    /// It is `pending` already (on its way).
    AlreadyPending,
    /// No such delivery (or it is gone with its TTL).
    NotFound,
}

/// The API's reads and writes of the delivery log.
pub trait DeliveryLog: Send + Sync {
    /// A page of `webhook_id`'s deliveries, newest first (`createdAt`, then id), from an index
    /// by webhook (never a scan), starting after `after` (a `DeliveryPage::next` of the same
    /// webhook and filter). `limit` is 1 to 100.
    fn list(
        &self,
        webhook_id: Uuid,
        filter: &DeliveryFilter,
        limit: u32,
        after: Option<&str>,
    ) -> impl Future<Output = Result<DeliveryPage, StoreError>> + Send;

    /// One delivery and its event (the event may be gone with its TTL), by `GetItem`s.
    fn get(
        &self,
        delivery_id: Uuid,
    ) -> impl Future<Output = Result<Option<(Delivery, Option<LoggedEvent>)>, StoreError>> + Send;

    /// Marks a delivery `pending` for a resend, in one conditional write (refused when it is
    /// `pending` already). Undone by [`DeliveryLog::unmark_resend`] when queuing fails.
    fn mark_resend(
        &self,
        delivery_id: Uuid,
    ) -> impl Future<Output = Result<ResendMark, StoreError>> + Send;

    /// Gives a resend's mark back (`status` as it was), when the message could not be queued.
    fn unmark_resend(
        &self,
        delivery_id: Uuid,
        status: DeliveryStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records the test ping: its event and its delivery with its one attempt, in one call.
    fn record_ping(
        &self,
        event: &LoggedEvent,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A `recover` request, as the pipeline works it off: every event of `[since, until)` that
/// `webhook_id` subscribes to and whose delivery to it is not `delivered` (nor `pending`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverJob {
    pub webhook_id: Uuid,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

/// A resend, as queued: one attempt of `delivery`, not retried.
#[derive(Clone, Debug, PartialEq)]
pub struct ResendJob {
    pub delivery: Delivery,
    pub event: LoggedEvent,
    /// The attempt number ([`ResendMark::Marked`]).
    pub attempt: u32,
}

/// The API's port on the deliveries queue.
pub trait PipelineQueue: Send + Sync {
    fn queue_resend(&self, job: &ResendJob) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn queue_recover(
        &self,
        job: &RecoverJob,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_the_publishers_or_derived_from_the_content() {
        assert_eq!(
            EventId::parse("evt_2026-12-04:a.b").unwrap().as_str(),
            "evt_2026-12-04:a.b"
        );
        for bad in ["", "a b", "a#b", "é", &"x".repeat(101)] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(EventId::of_content("{}"), EventId::of_content("{}"));
        assert_ne!(EventId::of_content("{}"), EventId::of_content("{ }"));
    }

    #[test]
    fn delivery_ids_are_stable_per_event_and_webhook() {
        let (e1, e2) = (EventId::parse("e1").unwrap(), EventId::parse("e2").unwrap());
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(delivery_id(&e1, a), delivery_id(&e1, a));
        assert_ne!(delivery_id(&e1, a), delivery_id(&e1, b));
        assert_ne!(delivery_id(&e1, a), delivery_id(&e2, a));
        assert_eq!(delivery_id(&e1, a).get_version_num(), 8);
    }

    #[test]
    fn a_delivery_outlives_its_event() {
        assert_eq!(DELIVERY_TTL_SECONDS - EVENT_TTL_SECONDS, 86_400);
    }
}
