//! The delivery function: one attempt per deliveries-queue message.
//!
//! - **Checks first, every attempt**: a webhook that is gone (deleted), inactive, has an open
//!   circuit or no longer subscribes to the event drops the delivery, with a log line. That is
//!   how deleting a webhook or opening its circuit cancels pending deliveries. So does a key
//!   that is revoked, suspended, expired or no longer holds the event's company (the key as the
//!   API sees it, cached per container for the API's TTL), with the `DeliveriesRefused` metric.
//! - **Waiting is done by SQS, never in the function**: a failed attempt sends the next one to
//!   the deliveries queue with `notBefore` = now + the retry delay (the receiver's `Retry-After`
//!   when longer) and a message delay of at most 15 minutes (SQS's maximum). A message that
//!   arrives before its `notBefore` (the 30-minute step, a long `Retry-After`) is sent again
//!   with the remaining delay, at most 15 minutes at a time, and no attempt is made. New
//!   messages rather than a longer visibility timeout: the receive count of a message then
//!   only counts the function's own failures, so the queue's redrive to the dead-letter queue
//!   means "this message broke the function", never "the receiver was down for a while".
//! - **Every step is idempotent per (delivery id, attempt number)**, so that a message that
//!   comes back (SQS is at least once; a batch returns whole when the function fails or times
//!   out) or a next attempt queued twice never forks the delivery's retries:
//!   1. one consistent `BatchGetItem` reads the webhook and the attempt's record
//!      ([`AttemptRecords::read_delivery`](super::ports::AttemptRecords::read_delivery)). A record written by another message (a copy) stops
//!      this one ([`Handled::Duplicate`]); one written by this very message (it came back) means
//!      the attempt was made: only its follow-up (step 3) is redone, nothing is sent again;
//!   2. after the answer, the record is written only if absent (`attribute_not_exists`); a
//!      failure's record and its count go in one `TransactWriteItems`
//!      ([`AttemptRecords::record_failed_attempt`](super::ports::AttemptRecords::record_failed_attempt)), so each attempt is counted exactly once and
//!      only the copy that wrote the record goes on; a retried write recognises its own record
//!      by the run's `claim`;
//!   3. then a success resets the count; a failure opens the circuit when due (one conditional
//!      update DynamoDB evaluates on the current count: [`CircuitCounters::open_circuit_if_due`](super::ports::CircuitCounters::open_circuit_if_due))
//!      and queues the next attempt. A message that comes back redoes these; a next attempt
//!      queued twice meets itself at step 1 or 2 of that attempt (its copies may both be sent,
//!      under the same `webhook-id`; one is counted and goes on).
//! - **The recording is budgeted from the calls it makes**: [`crate::time_budget::RECORDING_TIME`].
//! - **Every message of a batch is handled at once** (one task each), and each is answered on
//!   its own (partial batch answer): one slow receiver costs its own attempt, not the others'.
//! - **At least once**: the next attempt is queued before this message is reported done; a
//!   failure of the function's own calls reports the message failed, and SQS brings it back
//!   (the receiver may then see the same `webhook-id` twice, never a different one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::keys;
use super::messages::{DeliveryMessage, RecoverMessage};
use super::ports::{
    AttemptMark, AttemptRecord, CircuitChange, PipelineStorage, Queue, Recorded, Transport,
};
use super::queue::Queues;
use super::retry::{random_unit, RetryPolicy};
use super::sqs_event::{SqsBatchResponse, SqsEvent, SqsMessage};
use super::store::PipelineStore;
use crate::delivery::{DeliveryBody, Outcome, Sender, SignedRequest, Signer};
use crate::domain::{EventType, UrlPolicy, Webhook, WebhookUrl};
use crate::store::delivery_log::{DeliveryStatus, EventId, LoggedEvent};
use crate::store::secrets_manager::SecretsManagerStore;
use crate::store::{SecretDocument, SecretStore, StoreError};

/// Recover's default sends per second per webhook (DELIVERY-LOG.md).
pub const DEFAULT_RECOVER_RATE: u32 = 10;

/// Secret versions kept in memory (a version never changes, so a cached one is never stale).
const SECRET_CACHE_ENTRIES: usize = 1_000;

/// The delivery function's dependencies, built once per container: AWS and hyper in the
/// function, the in-memory twins ([`super::memory`]) in tests.
pub struct Deliverer<S = PipelineStore, Q = Queues, X = SecretsManagerStore, T = Sender> {
    pub secrets: X,
    pub store: S,
    pub queues: Q,
    pub sender: T,
    pub retry: RetryPolicy,
    /// The deliveries queue, where the next attempts go (`DELIVERIES_QUEUE_URL`).
    pub deliveries_queue_url: String,
    /// Recover's sends per second per webhook (`RECOVER_RATE_PER_SECOND`, default 10).
    pub recover_rate: u32,
    secret_cache: Mutex<HashMap<(String, String), Arc<SecretDocument>>>,
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The receiver answered 2xx.
    Delivered,
    /// The attempt failed; the next one is queued.
    Retrying { next_attempt: u32, delay: Duration },
    /// The attempt failed and was the last one (`maxRetries` retries made), or opened the
    /// circuit.
    GaveUp,
    /// Not yet time: sent again with a delay, no attempt made.
    Waiting,
    /// No attempt: the webhook is gone, inactive, its circuit is open, it no longer
    /// subscribes to the event, or its key refuses it.
    Dropped(&'static str),
    /// Another copy of this message made (or is making) this attempt: its record says so, and
    /// that copy queues what follows. Nothing counted, nothing queued.
    Duplicate,
    /// A step of a recover: `queued` deliveries so far; `done` unless it goes on in a next
    /// message.
    Recovering { queued: u64, done: bool },
}

/// Why a message must come back (reported as a batch item failure).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("malformed delivery message")]
    Malformed,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("custom header {0} cannot be sent")]
    Header(String),
    #[error("the webhook's signing secret is malformed")]
    Secret,
}

impl<S, Q, X, T> Deliverer<S, Q, X, T>
where
    S: PipelineStorage,
    Q: Queue,
    X: SecretStore + 'static,
    T: Transport,
{
    pub fn new(
        secrets: X,
        store: S,
        queues: Q,
        sender: T,
        retry: RetryPolicy,
        deliveries_queue_url: impl Into<String>,
    ) -> Self {
        Self {
            secrets,
            store,
            queues,
            sender,
            retry,
            deliveries_queue_url: deliveries_queue_url.into(),
            recover_rate: DEFAULT_RECOVER_RATE,
            secret_cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same with recover's rate per webhook (sends per second, at least 1).
    pub fn with_recover_rate(mut self, per_second: u32) -> Self {
        self.recover_rate = per_second.max(1);
        self
    }

    /// Handles one batch, every message at once; `deadline` is when the last attempt must have
    /// its answer (the function's deadline less the time to record it).
    pub async fn handle(self: &Arc<Self>, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let ids: Vec<String> = event.records.iter().map(|m| m.message_id.clone()).collect();
        let mut tasks = JoinSet::new();
        for message in event.records {
            let this = Arc::clone(self);
            tasks.spawn(async move {
                let result = this.deliver(&message, deadline).await;
                (message.message_id, result)
            });
        }
        let mut done = std::collections::HashSet::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((message_id, Ok(_))) => {
                    done.insert(message_id);
                }
                Ok((message_id, Err(error))) => {
                    tracing::error!(
                        message_id = %message_id,
                        error = %error,
                        "delivery message failed; it will come back"
                    );
                }
                // A task that panicked takes its message id with it: every message that did not
                // answer is reported failed below, so none is lost.
                Err(_) => tracing::error!("a delivery task panicked"),
            }
        }
        let failed = ids.into_iter().filter(|id| !done.contains(id));
        SqsBatchResponse::failed(failed)
    }

    /// One message: wait, drop, or attempt (and queue the next attempt on failure).
    pub async fn deliver(
        &self,
        message: &SqsMessage,
        deadline: Instant,
    ) -> Result<Handled, DeliverError> {
        if let Some(recover) = RecoverMessage::parse(&message.body) {
            return super::recover::work(self, recover, &message.message_id, deadline).await;
        }
        let Some(pending) = DeliveryMessage::parse(&message.body) else {
            return Err(DeliverError::Malformed);
        };
        let now = OffsetDateTime::now_utc();
        if let Some(not_before) = pending.not_before {
            let wait = not_before - now.unix_timestamp();
            if wait > 0 {
                self.queues
                    .send(
                        &self.deliveries_queue_url,
                        &message.body,
                        Duration::from_secs(wait as u64),
                    )
                    .await?;
                return Ok(Handled::Waiting);
            }
        }
        let dropped = |why: &'static str| {
            tracing::info!(
                delivery_id = %pending.delivery_id,
                webhook_id = %pending.webhook_id,
                event = %pending.event,
                attempt = pending.attempt,
                reason = why,
                "delivery dropped"
            );
            Ok(Handled::Dropped(why))
        };
        let (stored, made) = self
            .store
            .read_delivery(pending.webhook_id, pending.delivery_id, pending.attempt)
            .await?;
        // This attempt has a record already. Made by another copy of the message (SQS is at
        // least once; a next attempt queued twice): that copy owns the rest, this one stops.
        // Made by this very message (it came back: the function failed or timed out after
        // recording): finish what recording left undone, without attempting again.
        let resume = match made {
            Some(mark) if mark.message_id.as_deref() == Some(message.message_id.as_str()) => {
                Some(mark)
            }
            Some(mark) => return Ok(duplicate(&pending, &mark)),
            None => None,
        };
        let Some(stored) = stored else {
            // Its deliveries go with it: nothing lists them any more.
            return dropped("webhook deleted");
        };
        let webhook = &stored.webhook;
        // Not attempted (again): the delivery is recorded `skipped`, not lost, and `recover`
        // brings it back once the webhook is active and its circuit closed.
        let skip = |why: &'static str| async move {
            self.store.skip_pending(pending.delivery_id).await?;
            dropped(why)
        };
        if !webhook.is_active {
            return skip("webhook inactive").await;
        }
        if webhook.circuit_opened_at.is_some() {
            return skip("circuit open").await;
        }
        let subscribed =
            EventType::parse(&pending.event).is_some_and(|event| webhook.events.contains(&event));
        if !subscribed {
            return skip("no longer subscribed").await;
        }
        // The key as the API sees it, again before every attempt: a revoked, suspended or
        // expired key, or one that lost the event's company, stops deliveries already queued.
        let company = pending.company_id.or(webhook.company_id);
        let key = self.store.api_key(&webhook.api_key_id).await?;
        if let Some(refusal) = keys::refusal(key.as_ref(), company, now) {
            tracing::warn!(
                delivery_id = %pending.delivery_id,
                webhook_id = %pending.webhook_id,
                api_key_id = %webhook.api_key_id,
                event = %pending.event,
                attempt = pending.attempt,
                reason = refusal.as_str(),
                "delivery refused: the webhook's key may not receive this company's events"
            );
            crate::emf::delivery_refused("deliver", refusal.as_str());
            self.store.skip_pending(pending.delivery_id).await?;
            return Ok(Handled::Dropped(refusal.as_str()));
        }

        if let Some(mark) = resume {
            return self.finish(&pending, webhook, &mark, now).await;
        }

        let document = self.secret(&stored.secret).await?;
        let mut signer = Signer::new(&document.signing_secret).map_err(|_| DeliverError::Secret)?;
        if let Some(previous) = &document.previous {
            signer = signer
                .with_previous(&previous.signing_secret, previous.expires_at, now)
                .map_err(|_| DeliverError::Secret)?;
        }
        let body = DeliveryBody::from_stored(pending.delivery_id, pending.body.clone());
        let request = SignedRequest::new(&body, now, &signer, &document.headers)
            .map_err(|e| DeliverError::Header(e.name))?;
        // The sender re-checks the URL under its own policy; a URL that no longer parses at
        // all is refused the same way.
        let outcome = match WebhookUrl::parse(
            &webhook.url,
            UrlPolicy {
                allow_localhost: true,
            },
        ) {
            Ok(url) => {
                let timeout = crate::time_budget::receiver_timeout(webhook.timeout_ms);
                self.sender.send(&url, &request, timeout, deadline).await
            }
            Err(_) => Outcome::AddressNotAllowed,
        };

        // Recording: at most time_budget::RECORDING_CALLS sequential calls from here.
        let gone = outcome.http_status() == Some(410);
        // The delivery's last attempt: retries exhausted, a `410 Gone`, or a resend's one.
        let last = gone
            || pending.single
            || pending.attempt > pending.retry_base.saturating_add(webhook.max_retries);
        let delay = (!outcome.is_success() && !last).then(|| {
            self.retry.delay_after(
                pending.attempt.saturating_sub(pending.retry_base),
                outcome.retry_after(),
                random_unit(),
            )
        });
        let record = AttemptRecord {
            message_id: message.message_id.clone(),
            claim: Uuid::new_v4(),
            next_attempt_at: delay.map(|d| now.unix_timestamp() + d.as_secs() as i64),
            delivery_id: pending.delivery_id,
            webhook_id: webhook.id,
            event: pending.event.clone(),
            attempt: pending.attempt,
            at: now,
            outcome: if outcome.is_success() {
                "delivered"
            } else if gone {
                "gone"
            } else {
                "failed"
            },
            reason: (!outcome.is_success()).then(|| outcome.reason()),
            http_status: outcome.http_status(),
            duration_ms: outcome.duration().map(|d| d.as_millis() as u64),
            status: if outcome.is_success() {
                DeliveryStatus::Delivered
            } else if last {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Pending
            },
        };
        // 1. The record, written once per (delivery, attempt); with a failure, in the same
        //    transaction as its count.
        let recorded = if outcome.is_success() {
            self.store.put_attempt_once(&record).await?
        } else {
            self.store.record_failed_attempt(&record).await?
        };
        let (handled, circuit) = match recorded {
            Recorded::Duplicate(mark) => {
                log_attempt(&record, &Handled::Duplicate, None);
                return Ok(duplicate(&pending, &mark));
            }
            Recorded::WebhookGone => (Handled::GaveUp, Some(CircuitChange::Gone)),
            // 2. What follows from it: each step idempotent, redone if this message comes back.
            Recorded::Written => {
                self.follow_up(
                    &pending,
                    webhook,
                    record.outcome,
                    record.next_attempt_at,
                    delay,
                    now,
                )
                .await?
            }
        };
        log_attempt(&record, &handled, circuit);
        Ok(handled)
    }

    /// The steps after an attempt's record is written: a success resets the failure count; a
    /// failure opens the circuit when due, then queues the next attempt unless the delivery
    /// stops there. Each step is idempotent, so a message that comes back redoes them safely
    /// (the next attempt may be queued twice: its copies meet at its own record).
    async fn follow_up(
        &self,
        pending: &DeliveryMessage,
        webhook: &Webhook,
        outcome: &str,
        next_attempt_at: Option<i64>,
        delay: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<(Handled, Option<CircuitChange>), DeliverError> {
        if outcome == "delivered" {
            self.store.record_success(webhook.id, now).await?;
            return Ok((Handled::Delivered, None));
        }
        let gone = outcome == "gone";
        let circuit = self
            .store
            .open_circuit_if_due(webhook.id, gone, now)
            .await?;
        let last = gone
            || pending.single
            || pending.attempt > pending.retry_base.saturating_add(webhook.max_retries);
        // The failure that opened the circuit ends its delivery: `skipped` (recoverable) unless
        // it was its last attempt anyway (`failed`). Others queue their next attempt even when
        // the circuit opened meanwhile: it meets the open circuit there and is skipped.
        let stop = last || matches!(circuit, CircuitChange::Opened | CircuitChange::Gone);
        if stop {
            if circuit == CircuitChange::Opened && !last {
                self.store.skip_pending(pending.delivery_id).await?;
            }
            // Telling the owner: never about the deliveries of an operational event (so an
            // alert webhook that fails starts no chain), never to the failing webhook.
            let operational =
                EventType::parse(&pending.event).is_some_and(EventType::is_operational);
            if !operational {
                if circuit == CircuitChange::Opened {
                    crate::emf::circuit_opened();
                    self.alert(
                        EventType::WebhookCircuitOpened,
                        pending,
                        webhook,
                        serde_json::json!({
                            "webhookId": webhook.id.to_string(),
                            "url": webhook.url,
                            "consecutiveFailures": webhook.consecutive_failures + 1,
                            "circuitOpenedAt": crate::domain::time_format::rfc3339(now),
                        }),
                        now,
                    )
                    .await?;
                }
                // A resend's failure is the customer's own request: its answer is in the log.
                if last && !pending.single {
                    crate::emf::delivery_failed();
                    self.alert(
                        EventType::DeliveryFailed,
                        pending,
                        webhook,
                        serde_json::json!({
                            "webhookId": webhook.id.to_string(),
                            "url": webhook.url,
                            "deliveryId": pending.delivery_id.to_string(),
                            "event": pending.event,
                            "attemptCount": pending.attempt,
                            "reason": if gone { "the endpoint answered 410 Gone" } else { "retries exhausted" },
                        }),
                        now,
                    )
                    .await?;
                }
            }
            return Ok((Handled::GaveUp, Some(circuit)));
        }
        let not_before = next_attempt_at.unwrap_or(now.unix_timestamp());
        let delay = delay.unwrap_or_else(|| {
            Duration::from_secs(not_before.saturating_sub(now.unix_timestamp()).max(0) as u64)
        });
        let next = DeliveryMessage {
            attempt: pending.attempt + 1,
            not_before: Some(not_before),
            ..pending.clone()
        };
        self.queues
            .send(&self.deliveries_queue_url, &next.to_json(), delay)
            .await?;
        Ok((
            Handled::Retrying {
                next_attempt: next.attempt,
                delay,
            },
            Some(circuit),
        ))
    }

    /// Emits an operational event about `webhook` (from `pending`'s attempt): kept once in the
    /// log (its id derived from the delivery and attempt, so a message that comes back emits
    /// the same event) and delivered to the same key's other webhooks that subscribe to it.
    async fn alert(
        &self,
        kind: EventType,
        pending: &DeliveryMessage,
        webhook: &Webhook,
        data: serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let event = LoggedEvent {
            id: EventId::of_content(&format!(
                "{}\0{}\0{}",
                kind.as_str(),
                pending.delivery_id,
                pending.attempt
            )),
            event: kind,
            company_id: None,
            occurred_at: now,
            received_at: now,
            data,
        };
        let targets: Vec<_> = self
            .store
            .webhooks_of_key(&webhook.api_key_id, kind)
            .await?
            .into_iter()
            .filter(|other| other.webhook.id != webhook.id)
            .collect();
        // No other webhook of the key subscribes (the usual case): nothing to deliver, so no
        // event to keep. Stored anyway, it would be a write per failed delivery of an item no
        // route can reach (operational events are in no company index and have no delivery).
        if targets.is_empty() {
            return Ok(());
        }
        self.store.put_event_once(&event).await?;
        let spread = super::fanout::spread(
            &self.store,
            &self.queues,
            &self.deliveries_queue_url,
            &event,
            &targets,
            now,
        )
        .await?;
        tracing::info!(
            event_id = %event.id,
            event = kind.as_str(),
            webhook_id = %webhook.id,
            delivery_id = %pending.delivery_id,
            deliveries = spread.queued,
            skipped = spread.skipped,
            "operational event emitted to the key's other webhooks"
        );
        Ok(())
    }

    /// A message that came back after its attempt was recorded: no new attempt, only the
    /// steps that follow the record, from what the record says.
    async fn finish(
        &self,
        pending: &DeliveryMessage,
        webhook: &Webhook,
        mark: &AttemptMark,
        now: OffsetDateTime,
    ) -> Result<Handled, DeliverError> {
        let outcome = match mark.outcome.as_str() {
            "delivered" => "delivered",
            "gone" => "gone",
            _ => "failed",
        };
        let (handled, circuit) = self
            .follow_up(pending, webhook, outcome, mark.next_attempt_at, None, now)
            .await?;
        tracing::info!(
            delivery_id = %pending.delivery_id,
            webhook_id = %pending.webhook_id,
            event = %pending.event,
            attempt = pending.attempt,
            outcome,
            next_attempt = match handled {
                Handled::Retrying { next_attempt, .. } => Some(next_attempt),
                _ => None,
            },
            circuit = circuit.map(circuit_word),
            "attempt already recorded by this message; its follow-up finished"
        );
        Ok(handled)
    }

    /// The webhook's secret at the version its record points at (cached: versions never change).
    async fn secret(
        &self,
        secret: &crate::store::SecretRef,
    ) -> Result<Arc<SecretDocument>, StoreError> {
        let key = secret
            .version
            .as_ref()
            .map(|version| (secret.arn.clone(), version.clone()));
        if let Some(key) = &key {
            if let Some(found) = self.secret_cache.lock().expect("cache lock").get(key) {
                return Ok(Arc::clone(found));
            }
        }
        let document = Arc::new(self.secrets.read_webhook_secret(secret).await?);
        if let Some(key) = key {
            let mut cache = self.secret_cache.lock().expect("cache lock");
            if cache.len() >= SECRET_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, Arc::clone(&document));
        }
        Ok(document)
    }
}

/// Another copy of the message made this attempt (its record says so): this one stops.
fn duplicate(pending: &DeliveryMessage, mark: &AttemptMark) -> Handled {
    tracing::info!(
        delivery_id = %pending.delivery_id,
        webhook_id = %pending.webhook_id,
        event = %pending.event,
        attempt = pending.attempt,
        recorded_outcome = %mark.outcome,
        "attempt already made by another copy of this message; this copy stops"
    );
    Handled::Duplicate
}

fn circuit_word(change: CircuitChange) -> &'static str {
    match change {
        CircuitChange::Counted(_) => "counted",
        CircuitChange::Opened => "opened",
        CircuitChange::AlreadyOpen => "open",
        CircuitChange::Gone => "webhook gone",
    }
}

/// One JSON line per attempt: ids, event, attempt number, outcome, status, duration. Never a
/// body, a secret or a header value (the record holds none).
fn log_attempt(record: &AttemptRecord, handled: &Handled, circuit: Option<CircuitChange>) {
    let next = match handled {
        Handled::Retrying {
            next_attempt,
            delay,
        } => Some((next_attempt, delay.as_secs())),
        _ => None,
    };
    tracing::info!(
        delivery_id = %record.delivery_id,
        webhook_id = %record.webhook_id,
        event = %record.event,
        attempt = record.attempt,
        outcome = record.outcome,
        reason = record.reason.as_deref(),
        http_status = record.http_status,
        duration_ms = record.duration_ms,
        next_attempt = next.map(|(n, _)| *n),
        next_in_seconds = next.map(|(_, s)| s),
        circuit = circuit.map(circuit_word),
        duplicate = matches!(handled, Handled::Duplicate),
        consecutive_failures = match circuit {
            Some(CircuitChange::Counted(n)) => Some(n),
            _ => None,
        },
        "delivery attempt"
    );
}
