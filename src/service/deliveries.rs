//! A webhook's deliveries (DELIVERY-LOG.md, "Routes"): list them, read one, resend one, and
//! recover a window of events. Resend and recover only queue a job: the pipeline does the work.
//!
//! A delivery is found only under its own webhook, and the webhook only for its key (an
//! unknown, malformed or foreign delivery id is "not found", `resourceType` `Delivery`). The
//! list's cursors are opaque and authenticated: an HMAC-SHA256, keyed from the pepper for this
//! purpose alone, over the webhook id, the filter set and the store's position, so a cursor
//! of another webhook, another filter set or a tampered one is a `400` on `cursor`, never
//! another webhook's page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{parse_webhook_id, App, ServiceError};
use crate::delivery::DeliveryBody;
use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::{ApiKey, FieldError, IdempotencyClaim};
use crate::store::delivery_log::{
    Attempt, Delivery, DeliveryFilter, DeliveryLog, DeliveryStatus, LoggedEvent, PipelineQueue,
    RecoverJob, ResendJob, ResendMark, RECOVER_WINDOW_SECONDS,
};
use crate::store::{ApiKeyStore, SecretStore, StoredWebhook, WebhookStore};

/// The page size when the request names none.
pub const DEFAULT_LIMIT: u32 = 20;
/// The largest page.
pub const MAX_LIMIT: u32 = 100;
/// The longest cursor read (ours are far shorter): a longer one is refused unread.
const MAX_CURSOR_CHARS: usize = 2048;
/// The purpose the cursors' MAC key is derived for.
const CURSOR_PURPOSE: &str = "delivery-cursor";
/// Bytes of the MAC at the head of a cursor.
const TAG_BYTES: usize = 32;

const CURSOR_MESSAGE: &str =
    "cursor is not one this list returned: pass nextCursor as returned, with the same webhook and filters";

/// `GET /webhooks/{id}/deliveries`' query as the edge read it: the filters and page it names,
/// and every field error found in it (the cursor's own is judged here, with the key).
#[derive(Clone, Debug, Default)]
pub struct DeliveryListQuery {
    pub filter: DeliveryFilter,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub errors: Vec<FieldError>,
}

/// A delivery as listed (`data.data[]`), and as a resend answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySummary {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event: String,
    pub status: String,
    pub attempt_count: u32,
    pub created_at: String,
    pub last_attempt_at: Option<String>,
    pub last_http_status: Option<u16>,
    pub next_attempt_at: Option<String>,
}

impl DeliverySummary {
    fn of(delivery: &Delivery) -> Self {
        Self {
            id: delivery.id.to_string(),
            webhook_id: delivery.webhook_id.to_string(),
            event_id: delivery.event_id.to_string(),
            event: delivery.event.as_str().to_owned(),
            status: delivery.status.as_str().to_owned(),
            attempt_count: delivery.attempt_count(),
            created_at: rfc3339(delivery.created_at),
            last_attempt_at: delivery.last_attempt_at.map(rfc3339),
            last_http_status: delivery.last_http_status,
            next_attempt_at: delivery.next_attempt_at.map(rfc3339),
        }
    }
}

/// One attempt as answered (`attempts[]`, oldest first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: u32,
    pub at: String,
    pub outcome: String,
    pub http_status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub reason: Option<String>,
}

impl AttemptView {
    fn of(attempt: &Attempt) -> Self {
        Self {
            attempt: attempt.attempt,
            at: rfc3339(attempt.at),
            outcome: attempt.outcome.clone(),
            http_status: attempt.http_status,
            duration_ms: attempt.duration_ms,
            reason: attempt.reason.clone(),
        }
    }
}

/// One delivery: the summary, its attempts and the body the receiver got (`null` once the
/// event is gone with its TTL).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    pub attempts: Vec<AttemptView>,
    pub payload: Option<Value>,
}

/// A page of deliveries: `{"data": [summary], "nextCursor": "<opaque>" | null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPageAnswer {
    pub data: Vec<DeliverySummary>,
    pub next_cursor: Option<String>,
}

/// A queued resend: the delivery, now `pending`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resent {
    pub summary: DeliverySummary,
    pub replayed: bool,
}

/// A queued recover: its window and how many events it queues (`null`: the pipeline counts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovered {
    pub since: String,
    pub until: String,
    pub queued: Option<u64>,
}

/// `POST /webhooks/{id}/recover`'s body: `{"since", "until"?}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoverRequest {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

impl RecoverRequest {
    /// Reads the body at `now`: `since` RFC 3339 and at most 30 days back, `until` RFC 3339 or
    /// absent (`null` too) for now; an `until` in the future means now (nothing later exists
    /// to recover), and `since` must come before it. Every field error at once.
    pub fn parse(body: &[u8], now: OffsetDateTime) -> Result<Self, ServiceError> {
        let value = crate::domain::strict_json::from_slice(body)
            .map_err(|_| ServiceError::invalid("body", "request body must be valid JSON"))?;
        let Value::Object(object) = value else {
            return Err(ServiceError::invalid(
                "body",
                "request body must be a JSON object",
            ));
        };
        let mut errors = Vec::new();
        let timestamp = |name: &str, value: Option<&Value>, errors: &mut Vec<FieldError>| {
            let parsed = value.and_then(Value::as_str).and_then(parse_rfc3339);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    name,
                    format!("{name} must be an RFC 3339 timestamp such as 2026-12-01T10:00:00Z"),
                ));
            }
            parsed
        };
        let since = match object.get("since") {
            None | Some(Value::Null) => {
                errors.push(FieldError::new("since", "since is required"));
                None
            }
            value => timestamp("since", value, &mut errors),
        };
        let until = match object.get("until") {
            None | Some(Value::Null) => Some(now),
            value => timestamp("until", value, &mut errors).map(|until| until.min(now)),
        };
        let earliest = now - Duration::seconds(RECOVER_WINDOW_SECONDS);
        if let Some(since) = since {
            if since < earliest {
                errors.push(FieldError::new(
                    "since",
                    "since must be at most 30 days back: older events are no longer kept",
                ));
            } else if until.is_some_and(|until| since >= until) {
                errors.push(FieldError::new(
                    "until",
                    "until must be later than since (an until in the future counts as now)",
                ));
            }
        }
        for name in object
            .keys()
            .filter(|n| !matches!(n.as_str(), "since" | "until"))
        {
            let field = crate::domain::field_error::echo(name);
            errors.push(FieldError::new(
                &field,
                format!("{field} is not a known field: since and until are the only ones"),
            ));
        }
        match (since, until) {
            (Some(since), Some(until)) if errors.is_empty() => Ok(Self { since, until }),
            _ => Err(ServiceError::Validation(errors)),
        }
    }
}

/// A delivery id from a path: the hyphenated UUID form (any case). Anything else is an id no
/// delivery has.
fn parse_delivery_id(text: &str) -> Result<Uuid, ServiceError> {
    let not_found = || ServiceError::DeliveryNotFound {
        resource_id: text.to_owned(),
    };
    if text.len() != 36 {
        return Err(not_found());
    }
    Uuid::try_parse(text).map_err(|_| not_found())
}

/// What a cursor turned out to be.
enum Opened {
    /// Ours, for this webhook and filters: the store's position.
    Position(String),
    /// Not ours, or of another webhook or filter set, or changed.
    Foreign,
    /// Not even of a cursor's form.
    Malformed,
}

/// Refuses a resend or recover of a webhook that is inactive or whose circuit is open.
fn check_delivering(stored: &StoredWebhook) -> Result<(), ServiceError> {
    let webhook = &stored.webhook;
    if !webhook.is_active || webhook.circuit_open() {
        return Err(ServiceError::WebhookNotDelivering {
            is_active: webhook.is_active,
            circuit_open: webhook.circuit_open(),
        });
    }
    Ok(())
}

/// The webhook id a cursor is bound to: the webhook's own spelling when the path names a UUID.
fn cursor_webhook(id: &str) -> String {
    parse_webhook_id(id).map_or_else(|_| id.to_owned(), |uuid| uuid.to_string())
}

/// The filter set in one spelling (times as Unix nanoseconds), for the cursor's MAC.
fn canonical_filter(filter: &DeliveryFilter) -> String {
    let time = |at: Option<OffsetDateTime>| {
        at.map_or(String::new(), |at| at.unix_timestamp_nanos().to_string())
    };
    format!(
        "status={}&event={}&since={}&until={}",
        filter.status.map_or("", DeliveryStatus::as_str),
        filter.event.map_or("", |e| e.as_str()),
        time(filter.since),
        time(filter.until),
    )
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore, L: DeliveryLog, Q: PipelineQueue>
    App<K, W, S, L, Q>
{
    /// The cursors' MAC, keyed once per container from the pepper.
    async fn cursor_mac(&self) -> Result<hmac::Hmac<sha2::Sha256>, ServiceError> {
        let pepper = self.pepper().await?;
        Ok(self
            .cursor_mac
            .get_or_init(|| async { pepper.keyed_mac(CURSOR_PURPOSE) })
            .await
            .clone())
    }

    async fn cursor_tag(
        &self,
        webhook: &str,
        filter: &DeliveryFilter,
        position: &str,
    ) -> Result<hmac::Hmac<sha2::Sha256>, ServiceError> {
        let mut mac = self.cursor_mac().await?;
        for part in ["v1", webhook, &canonical_filter(filter), position] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        Ok(mac)
    }

    /// The opaque cursor of `position` for this webhook and filter set: the MAC, then the
    /// position, base64url.
    async fn seal_cursor(
        &self,
        webhook: &str,
        filter: &DeliveryFilter,
        position: &str,
    ) -> Result<String, ServiceError> {
        let tag = self.cursor_tag(webhook, filter, position).await?.finalize();
        let mut bytes = tag.into_bytes().to_vec();
        bytes.extend_from_slice(position.as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// What `cursor` is for this webhook and filters.
    async fn open_cursor(
        &self,
        webhook: &str,
        filter: &DeliveryFilter,
        cursor: &str,
    ) -> Result<Opened, ServiceError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Ok(Opened::Malformed);
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(cursor) else {
            return Ok(Opened::Malformed);
        };
        if bytes.len() <= TAG_BYTES {
            return Ok(Opened::Malformed);
        }
        let (tag, position) = bytes.split_at(TAG_BYTES);
        let Ok(position) = std::str::from_utf8(position) else {
            return Ok(Opened::Malformed);
        };
        let mac = self.cursor_tag(webhook, filter, position).await?;
        // `verify_slice` compares in constant time.
        Ok(match mac.verify_slice(tag) {
            Ok(()) => Opened::Position(position.to_owned()),
            Err(_) => Opened::Foreign,
        })
    }

    /// A page of webhook `id`'s deliveries, newest first. Query errors (the cursor's too) come
    /// before the webhook is looked up, as the order of checks asks.
    pub async fn list_deliveries(
        &self,
        key: &ApiKey,
        id: &str,
        query: DeliveryListQuery,
    ) -> Result<DeliveryPageAnswer, ServiceError> {
        let DeliveryListQuery {
            filter,
            limit,
            cursor,
            mut errors,
        } = query;
        let webhook = cursor_webhook(id);
        let mut after = None;
        if let Some(cursor) = cursor {
            // Only a cursor of ours has a position; whether it is this list's is judged only
            // when every filter could be read (else the error is the filter's, not its).
            let filter_read = errors.is_empty();
            match self.open_cursor(&webhook, &filter, &cursor).await? {
                Opened::Position(position) => after = Some(position),
                Opened::Foreign if !filter_read => {}
                Opened::Foreign | Opened::Malformed => {
                    errors.push(FieldError::new("cursor", CURSOR_MESSAGE));
                }
            }
        }
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let (uuid, _) = self.owned(key, id).await?;
        let page = self
            .delivery_log
            .list(
                uuid,
                &filter,
                limit.unwrap_or(DEFAULT_LIMIT),
                after.as_deref(),
            )
            .await?;
        let next_cursor = match &page.next {
            Some(position) => Some(self.seal_cursor(&webhook, &filter, position).await?),
            None => None,
        };
        Ok(DeliveryPageAnswer {
            data: page.deliveries.iter().map(DeliverySummary::of).collect(),
            next_cursor,
        })
    }

    /// Delivery `delivery_id` of the key's webhook `id`, and its event (if still kept).
    async fn delivery_of(
        &self,
        webhook_id: Uuid,
        delivery_id: &str,
    ) -> Result<(Delivery, Option<LoggedEvent>), ServiceError> {
        let not_found = || ServiceError::DeliveryNotFound {
            resource_id: delivery_id.to_owned(),
        };
        let uuid = parse_delivery_id(delivery_id)?;
        self.delivery_log
            .get(uuid)
            .await?
            .filter(|(delivery, _)| delivery.webhook_id == webhook_id)
            .ok_or_else(not_found)
    }

    /// One delivery with its attempts and the body its receiver got. The body holds the
    /// event's data: it is shown only while the key still holds the event's company.
    pub async fn get_delivery(
        &self,
        key: &ApiKey,
        id: &str,
        delivery_id: &str,
    ) -> Result<DeliveryDetail, ServiceError> {
        let (uuid, _) = self.owned(key, id).await?;
        let (delivery, event) = self.delivery_of(uuid, delivery_id).await?;
        let payload = match &event {
            Some(event) => {
                if let Some(company) = event.company_id {
                    key.authorise_company(company)?;
                }
                let body =
                    DeliveryBody::new(event.event, event.occurred_at, delivery.id, &event.data);
                Some(serde_json::from_str(body.as_str()).map_err(|_| {
                    ServiceError::Internal("a delivery body that is not JSON".into())
                })?)
            }
            None => None,
        };
        Ok(DeliveryDetail {
            summary: DeliverySummary::of(&delivery),
            attempts: delivery.attempts.iter().map(AttemptView::of).collect(),
            payload,
        })
    }

    /// The key's webhook `id` that may deliver now: the key may act for its company, and it is
    /// active with its circuit closed.
    async fn delivering(&self, key: &ApiKey, id: &str) -> Result<StoredWebhook, ServiceError> {
        let (_, stored) = self.changeable(key, id).await?;
        check_delivering(&stored)?;
        Ok(stored)
    }

    /// Queues one new attempt of a delivery (same `webhook-id` and body), marking it `pending`
    /// first; when the job cannot be queued, the mark is given back and nothing happened.
    pub async fn resend_delivery(
        &self,
        key: &ApiKey,
        id: &str,
        delivery_id: &str,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Resent, ServiceError> {
        let Some(claim) = claim else {
            let summary = self.resend(key, id, delivery_id).await?;
            return Ok(Resent {
                summary,
                replayed: false,
            });
        };
        if let Some(stored) = self.begin(&claim).await? {
            self.changeable(key, id).await?;
            let summary = serde_json::from_str(&stored)
                .map_err(|_| ServiceError::Internal("malformed stored resend".into()))?;
            return Ok(Resent {
                summary,
                replayed: true,
            });
        }
        match self.resend(key, id, delivery_id).await {
            Ok(summary) => {
                let json = serde_json::to_string(&summary)
                    .map_err(|_| ServiceError::Internal("unserialisable resend".into()))?;
                self.webhooks.complete(&claim, &json).await?;
                Ok(Resent {
                    summary,
                    replayed: false,
                })
            }
            Err(error) => {
                self.give_up(&claim).await;
                Err(error)
            }
        }
    }

    async fn resend(
        &self,
        key: &ApiKey,
        id: &str,
        delivery_id: &str,
    ) -> Result<DeliverySummary, ServiceError> {
        let (_, stored) = self.changeable(key, id).await?;
        let (mut delivery, event) = self.delivery_of(stored.webhook.id, delivery_id).await?;
        if let Some(company) = event.as_ref().and_then(|e| e.company_id) {
            key.authorise_company(company)?;
        }
        check_delivering(&stored)?;
        if delivery.status == DeliveryStatus::Pending {
            return Err(ServiceError::DeliveryPending);
        }
        let Some(event) = event else {
            return Err(ServiceError::EventExpired);
        };
        let status = delivery.status;
        let attempt = match self.delivery_log.mark_resend(delivery.id).await? {
            ResendMark::Marked { attempt } => attempt,
            ResendMark::AlreadyPending => return Err(ServiceError::DeliveryPending),
            ResendMark::NotFound => {
                return Err(ServiceError::DeliveryNotFound {
                    resource_id: delivery_id.to_owned(),
                })
            }
        };
        // As marked: pending, due now, no retry planned.
        delivery.status = DeliveryStatus::Pending;
        delivery.next_attempt_at = None;
        let job = ResendJob {
            delivery,
            event,
            attempt,
        };
        if let Err(error) = self.pipeline.queue_resend(&job).await {
            if let Err(undo) = self
                .delivery_log
                .unmark_resend(job.delivery.id, status)
                .await
            {
                tracing::warn!(
                    delivery_id = %job.delivery.id,
                    error = %undo,
                    "a resend that could not be queued stays marked pending"
                );
            }
            return Err(error.into());
        }
        Ok(DeliverySummary::of(&job.delivery))
    }

    /// Queues the recovery of `request`'s window for webhook `id`: the pipeline sends every
    /// event of it the webhook subscribes to and did not get, in `occurredAt` order.
    pub async fn recover(
        &self,
        key: &ApiKey,
        id: &str,
        request: RecoverRequest,
        claim: Option<IdempotencyClaim>,
    ) -> Result<(Recovered, bool), ServiceError> {
        let Some(claim) = claim else {
            return Ok((self.queue_recover(key, id, request).await?, false));
        };
        if let Some(stored) = self.begin(&claim).await? {
            self.changeable(key, id).await?;
            let recovered = serde_json::from_str(&stored)
                .map_err(|_| ServiceError::Internal("malformed stored recover".into()))?;
            return Ok((recovered, true));
        }
        match self.queue_recover(key, id, request).await {
            Ok(recovered) => {
                let json = serde_json::to_string(&recovered)
                    .map_err(|_| ServiceError::Internal("unserialisable recover".into()))?;
                self.webhooks.complete(&claim, &json).await?;
                Ok((recovered, false))
            }
            Err(error) => {
                self.give_up(&claim).await;
                Err(error)
            }
        }
    }

    async fn queue_recover(
        &self,
        key: &ApiKey,
        id: &str,
        request: RecoverRequest,
    ) -> Result<Recovered, ServiceError> {
        let stored = self.delivering(key, id).await?;
        // Whole seconds, as answered: the job is exactly the window the answer names.
        let whole = |at: OffsetDateTime| at.replace_nanosecond(0).unwrap_or(at);
        let job = RecoverJob {
            webhook_id: stored.webhook.id,
            since: whole(request.since),
            until: whole(request.until),
        };
        self.pipeline.queue_recover(&job).await?;
        Ok(Recovered {
            since: rfc3339(job.since),
            until: rfc3339(job.until),
            queued: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    fn recover(body: &str) -> Result<RecoverRequest, Vec<String>> {
        RecoverRequest::parse(body.as_bytes(), NOW).map_err(|e| match e {
            ServiceError::Validation(fields) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn a_recover_window_is_at_most_30_days_back_and_ends_by_now() {
        assert_eq!(
            recover(r#"{"since": "2026-12-01T00:00:00Z"}"#),
            Ok(RecoverRequest {
                since: datetime!(2026-12-01 0:00 UTC),
                until: NOW
            })
        );
        assert_eq!(
            recover(r#"{"since": "2026-12-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"}"#)
                .unwrap()
                .until,
            NOW
        );
        assert_eq!(
            recover(r#"{"since": "2026-11-01T00:00:00Z"}"#),
            Err(vec!["since".into()])
        );
        assert_eq!(
            recover(r#"{"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}"#),
            Err(vec!["until".into()])
        );
        assert_eq!(
            recover(r#"{"since": "2026-12-05T00:00:00Z"}"#),
            Err(vec!["until".into()])
        );
        assert_eq!(
            recover(r#"{"since": 1, "until": "yesterday", "x": 1}"#),
            Err(vec!["since".into(), "until".into(), "x".into()])
        );
        assert_eq!(recover("{}"), Err(vec!["since".into()]));
        assert_eq!(recover("[]"), Err(vec!["body".into()]));
    }

    #[test]
    fn the_cursor_key_is_the_peppers_for_this_purpose_alone() {
        let tag = |pepper: &[u8], purpose: &str| {
            let mut mac = crate::domain::Pepper::new(pepper.to_vec()).keyed_mac(purpose);
            mac.update(b"position");
            mac.finalize().into_bytes().to_vec()
        };
        assert_eq!(tag(b"p", CURSOR_PURPOSE), tag(b"p", CURSOR_PURPOSE));
        assert_ne!(tag(b"p", CURSOR_PURPOSE), tag(b"q", CURSOR_PURPOSE));
        assert_ne!(tag(b"p", CURSOR_PURPOSE), tag(b"p", "another purpose"));
    }

    #[test]
    fn the_canonical_filter_names_every_filter() {
        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            event: Some(crate::domain::EventType::Ping),
            since: Some(datetime!(1970-01-01 0:00:01 UTC)),
            until: None,
        };
        assert_eq!(
            canonical_filter(&filter),
            "status=failed&event=ping&since=1000000000&until="
        );
        assert_ne!(
            canonical_filter(&filter),
            canonical_filter(&DeliveryFilter::default())
        );
    }
}
