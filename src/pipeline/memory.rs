//! In-memory twins of the pipeline's ports ([`super::ports`]), for in-process tests of
//! fan-out, deliver, retry and recover. They keep the DynamoDB adapter's rules where the
//! pipeline can see them:
//! - an attempt's entry is written once per (delivery, attempt number), refused with the mark
//!   it found, judged by [`Recorded::judge`]; a failure's entry and its count are one atomic
//!   write, and a webhook deleted meanwhile gets the entry alone;
//! - the circuit opens at [`CIRCUIT_THRESHOLD`] consecutive failures or on `410`, once, judged
//!   on the count as it is; a success resets a count that is not 0 already; each change moves
//!   the record's `version` and `updatedAt` (whole seconds);
//! - a delivery is created once; `skip_pending` and recover's move change only the statuses
//!   DynamoDB's conditions allow, and a move is recognised by its mark;
//! - recover's walk is paged, oldest first, over `[since, until)` by the same `occurred_key`.
//!
//! Webhook records are the API's own twin's ([`MemoryWebhooks`]) and deliveries the delivery
//! log's ([`MemoryDeliveryLog`]), so a test can make a webhook through the API and see its
//! deliveries through it. Every port call can be made to fail ([`MemoryPipeline::fail`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use super::ports::{
    AttemptMark, AttemptRecord, AttemptRecords, CircuitChange, CircuitCounters, EventLog,
    FoundDelivery, Partition, Queue, Recorded, Transport, WebhookLookup, CIRCUIT_THRESHOLD,
};
use crate::delivery::{Outcome, SignedRequest};
use crate::domain::{ApiKey, EventType, WebhookUrl};
use crate::store::delivery_log::{
    Attempt, Delivery, DeliveryStatus, EventHead, EventId, LoggedEvent,
};
use crate::store::dynamodb::schema::{time_key, time_key_prefix};
use crate::store::memory::MemoryWebhooks;
use crate::store::memory_log::MemoryDeliveryLog;
use crate::store::{whole_seconds, StoreError, StoredWebhook};

/// Events per page of recover's walk (DynamoDB pages by 1 MB; small here, so tests page).
const EVENTS_PAGE: usize = 25;

/// What the pipeline's twin keeps beside the webhooks and the log: the keys by id, each
/// attempt's mark, recover's marks, the injected failures and the calls made.
#[derive(Default)]
struct State {
    keys: HashMap<String, ApiKey>,
    marks: HashMap<(Uuid, u32), AttemptMark>,
    recovered_by: HashMap<Uuid, String>,
    faults: HashMap<&'static str, StoreError>,
    calls: Vec<&'static str>,
}

/// The twin of [`super::store::PipelineStore`]: every store port of the pipeline. Clones share
/// their state (as the clones of one container's store share its tables).
#[derive(Clone, Default)]
pub struct MemoryPipeline {
    pub webhooks: Arc<MemoryWebhooks>,
    pub log: Arc<MemoryDeliveryLog>,
    state: Arc<Mutex<State>>,
}

impl MemoryPipeline {
    /// A twin over these webhooks and this log (an API app's own, for example).
    pub fn over(webhooks: Arc<MemoryWebhooks>, log: Arc<MemoryDeliveryLog>) -> Self {
        Self {
            webhooks,
            log,
            state: Arc::default(),
        }
    }

    /// Stores (or replaces) an API key, as the API's key table holds it.
    pub fn put_key(&self, key: ApiKey) {
        self.state().keys.insert(key.id.clone(), key);
    }

    /// Makes every later call of the port method `operation` (its name, e.g.
    /// `"record_failed_attempt"`) fail with `error`, until [`Self::recover`].
    pub fn fail(&self, operation: &'static str, error: StoreError) {
        self.state().faults.insert(operation, error);
    }

    /// Ends every injected failure.
    pub fn recover(&self) {
        self.state().faults.clear();
    }

    /// The port methods called so far, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.state().calls.clone()
    }

    /// The mark of attempt `attempt` of `delivery_id`, if it was made.
    pub fn mark(&self, delivery_id: Uuid, attempt: u32) -> Option<AttemptMark> {
        self.state().marks.get(&(delivery_id, attempt)).cloned()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a call of `operation` and answers its injected failure, if any.
    fn call(&self, operation: &'static str) -> Result<(), StoreError> {
        let mut state = self.state();
        state.calls.push(operation);
        state.faults.get(operation).cloned().map_or(Ok(()), Err)
    }

    /// Writes `record`'s entry unless its attempt has one: the mark it found otherwise.
    /// Called with the state locked, so that the check and the write are one step.
    fn write_entry(&self, state: &mut State, record: &AttemptRecord) -> Result<(), AttemptMark> {
        let key = (record.delivery_id, record.attempt);
        if let Some(mark) = state.marks.get(&key) {
            return Err(mark.clone());
        }
        state.marks.insert(
            key,
            AttemptMark {
                message_id: Some(record.message_id.clone()),
                claim: Some(record.claim.to_string()),
                outcome: record.outcome.to_owned(),
                next_attempt_at: record.next_attempt_at,
            },
        );
        // The delivery as DynamoDB's update leaves it. One that does not exist (never the
        // case: fan-out, resend and ping create theirs first) gets the mark alone here, where
        // DynamoDB would create an item the list cannot decode (it has no event id).
        self.log.with_maps(|_, deliveries| {
            if let Some(delivery) = deliveries.get_mut(&record.delivery_id) {
                delivery.attempts.push(Attempt {
                    attempt: record.attempt,
                    at: record.at,
                    outcome: record.outcome.to_owned(),
                    http_status: record.http_status,
                    duration_ms: record.duration_ms,
                    reason: record.reason.clone(),
                });
                delivery.attempts.sort_by_key(|a| a.attempt);
                delivery.status = record.status;
                delivery.last_attempt_at = Some(record.at);
                delivery.last_http_status = record.http_status;
                delivery.next_attempt_at = match (record.status, record.next_attempt_at) {
                    (DeliveryStatus::Pending, Some(at)) => {
                        OffsetDateTime::from_unix_timestamp(at).ok()
                    }
                    _ => None,
                };
            }
        });
        Ok(())
    }
}

fn epoch_ms(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

impl WebhookLookup for MemoryPipeline {
    async fn subscribed(
        &self,
        partition: Partition,
        event: EventType,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        self.call("subscribed")?;
        let company = match partition {
            Partition::Company(company) => Some(company),
            Partition::AllCompanies => None,
        };
        Ok(self.webhooks.records_where(|s| {
            s.webhook.company_id == company && s.webhook.events.contains(&event)
        }))
    }

    async fn webhooks_of_key(
        &self,
        api_key_id: &str,
        event: EventType,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        self.call("webhooks_of_key")?;
        Ok(self.webhooks.records_where(|s| {
            s.webhook.api_key_id == api_key_id && s.webhook.events.contains(&event)
        }))
    }

    async fn webhook(&self, webhook_id: Uuid) -> Result<Option<StoredWebhook>, StoreError> {
        self.call("webhook")?;
        Ok(self.webhooks.get_record(webhook_id))
    }

    async fn api_key(&self, api_key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.call("api_key")?;
        Ok(self.state().keys.get(api_key_id).cloned())
    }
}

impl AttemptRecords for MemoryPipeline {
    async fn read_delivery(
        &self,
        webhook_id: Uuid,
        delivery_id: Uuid,
        attempt: u32,
    ) -> Result<(Option<StoredWebhook>, Option<AttemptMark>), StoreError> {
        self.call("read_delivery")?;
        let webhook = self.webhooks.get_record(webhook_id);
        Ok((webhook, self.mark(delivery_id, attempt)))
    }

    async fn record_failed_attempt(&self, record: &AttemptRecord) -> Result<Recorded, StoreError> {
        self.call("record_failed_attempt")?;
        let mut state = self.state();
        if let Some(mark) = state.marks.get(&(record.delivery_id, record.attempt)) {
            return Ok(Recorded::judge(Some(mark.clone()), record));
        }
        let counted = self.webhooks.update_record(record.webhook_id, |stored| {
            let webhook = &mut stored.webhook;
            webhook.consecutive_failures += 1;
            webhook.version += 1;
            webhook.updated_at = whole_seconds(record.at);
        });
        match self.write_entry(&mut state, record) {
            Err(mark) => Ok(Recorded::judge(Some(mark), record)),
            Ok(()) if counted.is_some() => Ok(Recorded::Written),
            Ok(()) => Ok(Recorded::WebhookGone),
        }
    }

    async fn put_attempt_once(&self, record: &AttemptRecord) -> Result<Recorded, StoreError> {
        self.call("put_attempt_once")?;
        let mut state = self.state();
        match self.write_entry(&mut state, record) {
            Ok(()) => Ok(Recorded::Written),
            Err(mark) => Ok(Recorded::judge(Some(mark), record)),
        }
    }
}

impl CircuitCounters for MemoryPipeline {
    async fn open_circuit_if_due(
        &self,
        webhook_id: Uuid,
        open_now: bool,
        now: OffsetDateTime,
    ) -> Result<CircuitChange, StoreError> {
        self.call("open_circuit_if_due")?;
        let change = self.webhooks.update_record(webhook_id, |stored| {
            let webhook = &mut stored.webhook;
            if webhook.circuit_opened_at.is_some() {
                return CircuitChange::AlreadyOpen;
            }
            if !open_now && webhook.consecutive_failures < CIRCUIT_THRESHOLD {
                return CircuitChange::Counted(webhook.consecutive_failures);
            }
            webhook.circuit_opened_at = Some(whole_seconds(now));
            webhook.updated_at = whole_seconds(now);
            webhook.version += 1;
            CircuitChange::Opened
        });
        Ok(change.unwrap_or(CircuitChange::Gone))
    }

    async fn record_success(
        &self,
        webhook_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.call("record_success")?;
        self.webhooks.update_record(webhook_id, |stored| {
            let webhook = &mut stored.webhook;
            if webhook.consecutive_failures > 0 {
                webhook.consecutive_failures = 0;
                webhook.updated_at = whole_seconds(now);
                webhook.version += 1;
            }
        });
        Ok(())
    }
}

impl EventLog for MemoryPipeline {
    async fn put_event_once(&self, event: &LoggedEvent) -> Result<(), StoreError> {
        self.call("put_event_once")?;
        self.log.with_maps(|events, _| {
            events
                .entry(event.id.clone())
                .or_insert_with(|| event.clone());
        });
        Ok(())
    }

    async fn create_delivery(&self, delivery: &Delivery) -> Result<DeliveryStatus, StoreError> {
        self.call("create_delivery")?;
        Ok(self.log.with_maps(|_, deliveries| {
            deliveries
                .entry(delivery.id)
                .or_insert_with(|| delivery.clone())
                .status
        }))
    }

    async fn skip_pending(&self, delivery_id: Uuid) -> Result<bool, StoreError> {
        self.call("skip_pending")?;
        Ok(self
            .log
            .with_maps(|_, deliveries| match deliveries.get_mut(&delivery_id) {
                Some(d) if d.status == DeliveryStatus::Pending => {
                    d.status = DeliveryStatus::Skipped;
                    d.next_attempt_at = None;
                    true
                }
                _ => false,
            }))
    }

    async fn move_to_pending(&self, delivery: &Delivery, by: &str) -> Result<bool, StoreError> {
        self.call("move_to_pending")?;
        let mut state = self.state();
        let moved = self
            .log
            .with_maps(|_, deliveries| match deliveries.get_mut(&delivery.id) {
                None => {
                    let mut new = delivery.clone();
                    new.status = DeliveryStatus::Pending;
                    new.next_attempt_at = None;
                    deliveries.insert(new.id, new);
                    true
                }
                Some(d) if matches!(d.status, DeliveryStatus::Failed | DeliveryStatus::Skipped) => {
                    d.status = DeliveryStatus::Pending;
                    d.next_attempt_at = None;
                    true
                }
                Some(_) => false,
            });
        if moved {
            state.recovered_by.insert(delivery.id, by.to_owned());
            return Ok(true);
        }
        let pending = self
            .log
            .delivery(delivery.id)
            .is_some_and(|d| d.status == DeliveryStatus::Pending);
        Ok(pending && state.recovered_by.get(&delivery.id).map(String::as_str) == Some(by))
    }

    async fn events_of_company(
        &self,
        company: Uuid,
        since: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&str>,
    ) -> Result<(Vec<EventHead>, Option<String>), StoreError> {
        self.call("events_of_company")?;
        let (lo, hi) = (
            time_key_prefix(epoch_ms(since)),
            time_key_prefix(epoch_ms(until)),
        );
        let mut heads: Vec<EventHead> = self.log.with_maps(|events, _| {
            events
                .values()
                .filter(|e| e.company_id == Some(company))
                .map(|e| EventHead {
                    id: e.id.clone(),
                    event: e.event,
                    occurred_key: time_key(epoch_ms(e.occurred_at), e.id.as_str()),
                    received_at: e.received_at,
                })
                .filter(|h| h.occurred_key >= lo && h.occurred_key <= hi)
                .filter(|h| after.is_none_or(|after| h.occurred_key.as_str() > after))
                .collect()
        });
        heads.sort_by(|a, b| a.occurred_key.cmp(&b.occurred_key));
        let next = (heads.len() > EVENTS_PAGE).then(|| heads[EVENTS_PAGE - 1].occurred_key.clone());
        heads.truncate(EVENTS_PAGE);
        Ok((heads, next))
    }

    async fn deliveries(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, FoundDelivery>, StoreError> {
        self.call("deliveries")?;
        let state = self.state();
        Ok(ids
            .iter()
            .filter_map(|id| {
                let delivery = self.log.delivery(*id)?;
                let recovered_by = state.recovered_by.get(id).cloned();
                Some((
                    *id,
                    FoundDelivery {
                        delivery,
                        recovered_by,
                    },
                ))
            })
            .collect())
    }

    async fn events(&self, ids: &[EventId]) -> Result<HashMap<EventId, LoggedEvent>, StoreError> {
        self.call("events")?;
        Ok(ids
            .iter()
            .filter_map(|id| Some((id.clone(), self.log.event(id)?)))
            .collect())
    }
}

/// One message as sent to a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub queue: String,
    pub body: String,
    /// As asked (SQS would cap it at 15 minutes; [`super::queue::MAX_DELAY`]).
    pub delay: Duration,
}

/// The twin of [`super::queue::Queues`]: every message sent, in order. Clones share them.
#[derive(Clone, Default)]
pub struct MemoryQueues {
    sent: Arc<Mutex<Vec<Sent>>>,
    fail_with: Arc<Mutex<Option<StoreError>>>,
}

impl MemoryQueues {
    /// Takes the messages sent to `queue` so far (they are received).
    pub fn take(&self, queue: &str) -> Vec<Sent> {
        let mut sent = self.sent.lock().unwrap();
        let (taken, kept) = sent.drain(..).partition(|s| s.queue == queue);
        *sent = kept;
        taken
    }

    /// Makes every later send fail with `error` (nothing is sent), until [`Self::recover`].
    pub fn fail_with(&self, error: StoreError) {
        *self.fail_with.lock().unwrap() = Some(error);
    }

    pub fn recover(&self) {
        *self.fail_with.lock().unwrap() = None;
    }

    fn injected(&self) -> Result<(), StoreError> {
        self.fail_with.lock().unwrap().clone().map_or(Ok(()), Err)
    }
}

impl Queue for MemoryQueues {
    async fn send(&self, queue_url: &str, body: &str, delay: Duration) -> Result<(), StoreError> {
        self.injected()?;
        self.sent.lock().unwrap().push(Sent {
            queue: queue_url.to_owned(),
            body: body.to_owned(),
            delay,
        });
        Ok(())
    }

    async fn send_all_delayed(
        &self,
        queue_url: &str,
        bodies: &[(String, Duration)],
    ) -> Result<(), StoreError> {
        self.injected()?;
        let mut sent = self.sent.lock().unwrap();
        for (body, delay) in bodies {
            sent.push(Sent {
                queue: queue_url.to_owned(),
                body: body.clone(),
                delay: *delay,
            });
        }
        Ok(())
    }
}

/// One request as a receiver got it.
#[derive(Clone, Debug)]
pub struct Posted {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Posted {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The twin of [`crate::delivery::Sender`]: answers each request with the next scripted
/// outcome (then `then`, 200 unless set), and keeps every request. Clones share both.
#[derive(Clone)]
pub struct ScriptedTransport {
    script: Arc<Mutex<VecDeque<Outcome>>>,
    then: Arc<Mutex<Outcome>>,
    posted: Arc<Mutex<Vec<Posted>>>,
}

impl Default for ScriptedTransport {
    fn default() -> Self {
        Self {
            script: Arc::default(),
            then: Arc::new(Mutex::new(Self::status(200))),
            posted: Arc::default(),
        }
    }
}

impl ScriptedTransport {
    /// The outcome of an answer with `status` (and no `Retry-After`).
    pub fn status(status: u16) -> Outcome {
        Self::answer(status, None)
    }

    /// The outcome of an answer with `status` and `Retry-After: retry_after` seconds.
    pub fn answer(status: u16, retry_after: Option<u64>) -> Outcome {
        let duration = Duration::from_millis(3);
        if (200..300).contains(&status) {
            Outcome::Delivered { status, duration }
        } else {
            Outcome::ReceiverError {
                status,
                duration,
                retry_after,
            }
        }
    }

    /// Answers the next requests with `outcomes`, in order, then with `then`.
    pub fn script(&self, outcomes: impl IntoIterator<Item = Outcome>, then: Outcome) {
        self.script.lock().unwrap().extend(outcomes);
        *self.then.lock().unwrap() = then;
    }

    /// Every request so far, in order.
    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }
}

impl Transport for ScriptedTransport {
    async fn send(
        &self,
        url: &WebhookUrl,
        request: &SignedRequest,
        _timeout: Duration,
        _deadline: Instant,
    ) -> Outcome {
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        self.posted.lock().unwrap().push(Posted {
            url: url.as_str().to_owned(),
            headers,
            body: String::from_utf8_lossy(request.body()).into_owned(),
        });
        let next = self.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| self.then.lock().unwrap().clone())
    }
}
