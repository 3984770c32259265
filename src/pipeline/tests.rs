//! The pipeline's logic in-process, on the in-memory twins of its ports ([`super::memory`]):
//! fan-out, deliver, retry and recover exactly as the functions run them, with the store, the
//! queues, the secrets and the receiver replaced. Milliseconds each; moto keeps the adapters'
//! tests and the end-to-end ones (`tests/pipeline`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::memory::{MemoryPipeline, MemoryQueues, ScriptedTransport};
use super::messages::{DeliveryMessage, Event, RecoverMessage};
use super::sqs_event::{SqsEvent, SqsMessage};
use super::{Deliverer, Fanned, Fanout, Handled, RetryPolicy};
use crate::delivery::Outcome;
use crate::domain::{
    ApiKey, ApiKeyStatus, EventType, NewWebhook, RateLimits, UrlPolicy, Webhook, WebhookUrl,
};
use crate::store::delivery_log::{Delivery, DeliveryStatus, RecoverJob};
use crate::store::memory::MemorySecrets;
use crate::store::{Caller, SecretDocument, SecretStore, StoreError, StoredWebhook, WebhookWrites};

const COMPANY: Uuid = Uuid::from_u128(0xc0);
const OTHER_COMPANY: Uuid = Uuid::from_u128(0xc1);
const KEY: &str = "key-1";
const DELIVERIES: &str = "deliveries-queue";
const EVENTS_DLQ: &str = "events-dlq";

type TestDeliverer = Deliverer<MemoryPipeline, MemoryQueues, MemorySecrets, ScriptedTransport>;

/// The pipeline on its twins: one store, one set of queues, one receiver.
struct World {
    store: MemoryPipeline,
    queues: MemoryQueues,
    receiver: ScriptedTransport,
    fanout: Fanout<MemoryPipeline, MemoryQueues>,
    deliverer: Arc<TestDeliverer>,
    messages: std::sync::atomic::AtomicUsize,
}

/// A webhook as made here: its id and its signing secret (hex).
struct Made {
    id: Uuid,
    secret: String,
}

impl World {
    /// The retry delays the functions use by default (5 s, 5 min, 30 min).
    fn new() -> Self {
        Self::with_retry(RetryPolicy::default())
    }

    fn with_retry(retry: RetryPolicy) -> Self {
        let store = MemoryPipeline::default();
        let queues = MemoryQueues::default();
        let receiver = ScriptedTransport::default();
        store.put_key(key(KEY, ApiKeyStatus::Active, &[COMPANY, OTHER_COMPANY]));
        let fanout = Fanout {
            store: store.clone(),
            queues: queues.clone(),
            deliveries_queue_url: DELIVERIES.into(),
            events_dlq_url: EVENTS_DLQ.into(),
        };
        let deliverer = Arc::new(Deliverer::new(
            MemorySecrets::default(),
            store.clone(),
            queues.clone(),
            receiver.clone(),
            retry,
            DELIVERIES,
        ));
        Self {
            store,
            queues,
            receiver,
            fanout,
            deliverer,
            messages: Default::default(),
        }
    }

    /// A webhook of `key_id` for `events` of `company` (every company of its key if `None`).
    async fn webhook_of(&self, key_id: &str, events: &[EventType], company: Option<Uuid>) -> Made {
        let id = Uuid::new_v4();
        let request = NewWebhook {
            url: WebhookUrl::parse(
                &format!("https://hooks.acme-ats.com/{id}"),
                UrlPolicy::default(),
            )
            .unwrap(),
            events: events.to_vec(),
            name: None,
            description: None,
            company_id: company,
            headers: Vec::new(),
        };
        let webhook = Webhook::new(id, key_id, &request, OffsetDateTime::now_utc());
        let signing_secret = crate::domain::SigningSecret::try_generate().unwrap();
        let secret_hex = signing_secret.expose().to_owned();
        let document = SecretDocument {
            signing_secret,
            previous: None,
            headers: Vec::new(),
        };
        let secret = self
            .deliverer
            .secrets
            .create_webhook_secret(id, key_id, &document)
            .await
            .unwrap();
        self.store
            .webhooks
            .put_record(StoredWebhook { webhook, secret });
        Made {
            id,
            secret: secret_hex,
        }
    }

    async fn webhook(&self, events: &[EventType], company: Option<Uuid>) -> Made {
        self.webhook_of(KEY, events, company).await
    }

    fn record(&self, id: Uuid) -> Webhook {
        self.store.webhooks.get_record(id).unwrap().webhook
    }

    fn change(&self, id: Uuid, change: impl FnOnce(&mut Webhook)) {
        self.store
            .webhooks
            .update_record(id, |stored| change(&mut stored.webhook))
            .unwrap();
    }

    fn message(&self, body: String) -> SqsMessage {
        let n = self
            .messages
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SqsMessage::new(format!("message-{n}"), body)
    }

    fn event(&self, event: EventType, company: Uuid) -> SqsMessage {
        self.message(
            Event {
                event_id: None,
                event,
                company_id: company,
                data: json!({ "interviewId": Uuid::new_v4().to_string() }),
                occurred_at: OffsetDateTime::now_utc(),
            }
            .to_json(),
        )
    }

    /// Fans one new event out; answers the delivery messages it queued.
    async fn publish(&self, event: EventType, company: Uuid) -> Vec<SqsMessage> {
        let message = self.event(event, company);
        self.fanout.fan_out(&message).await.unwrap();
        self.queued()
    }

    /// The delivery messages queued since the last look, as SQS would hand them over.
    fn queued(&self) -> Vec<SqsMessage> {
        self.queues
            .take(DELIVERIES)
            .into_iter()
            .map(|sent| self.message(sent.body))
            .collect()
    }

    /// The messages queued since the last look, with their delays.
    fn queued_with_delays(&self) -> Vec<(DeliveryMessage, Duration)> {
        self.queues
            .take(DELIVERIES)
            .into_iter()
            .map(|sent| (DeliveryMessage::parse(&sent.body).unwrap(), sent.delay))
            .collect()
    }

    async fn deliver(&self, message: &SqsMessage) -> Handled {
        self.deliverer.deliver(message, far()).await.unwrap()
    }

    /// The next attempt of `message` as it arrives once its time has come.
    fn in_time(&self, message: &DeliveryMessage) -> SqsMessage {
        let arrived = DeliveryMessage {
            not_before: None,
            ..message.clone()
        };
        self.message(arrived.to_json())
    }

    fn delivery(&self, id: Uuid) -> Delivery {
        self.store.log.delivery(id).unwrap()
    }

    fn deliveries_of(&self, webhook: Uuid) -> Vec<Delivery> {
        self.store.log.with_maps(|_, deliveries| {
            deliveries
                .values()
                .filter(|d| d.webhook_id == webhook)
                .cloned()
                .collect()
        })
    }

    /// The operational events the log keeps, oldest first.
    fn alerts(&self) -> Vec<(EventType, Value)> {
        let mut alerts: Vec<_> = self.store.log.with_maps(|events, _| {
            events
                .values()
                .filter(|e| e.event.is_operational())
                .map(|e| (e.occurred_at, e.event, e.data.clone()))
                .collect()
        });
        alerts.sort_by_key(|a| a.0);
        alerts.into_iter().map(|(_, e, d)| (e, d)).collect()
    }

    fn posted_to(&self, webhook: Uuid) -> Vec<super::memory::Posted> {
        let url = format!("https://hooks.acme-ats.com/{webhook}");
        self.receiver
            .posted()
            .into_iter()
            .filter(|p| p.url == url)
            .collect()
    }
}

fn key(id: &str, status: ApiKeyStatus, companies: &[Uuid]) -> ApiKey {
    ApiKey {
        id: id.into(),
        name: id.into(),
        scopes: vec![],
        company_ids: companies.to_vec(),
        status,
        suspended_at: None,
        suspend_reason: None,
        expires_at: None,
        created_at: OffsetDateTime::now_utc() - Duration::from_secs(3600),
        rate_limits: RateLimits::default(),
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn status(code: u16) -> Outcome {
    ScriptedTransport::status(code)
}

fn pending_of(message: &SqsMessage) -> DeliveryMessage {
    DeliveryMessage::parse(&message.body).unwrap()
}

/// The Standard Webhooks signature of `posted`, checked with the specification's library.
fn signature_is_valid(posted: &super::memory::Posted, secret_hex: &str) -> bool {
    let mut headers = lambda_http::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, posted.header(name).unwrap().parse().unwrap());
    }
    standardwebhooks::Webhook::from_bytes(hex::decode(secret_hex).unwrap())
        .unwrap()
        .verify(posted.body.as_bytes(), &headers)
        .is_ok()
}

#[tokio::test]
async fn a_retry_keeps_its_webhook_id_and_body_and_waits_its_delay_in_the_queue() {
    let world = World::new();
    world
        .receiver
        .script([status(500), status(503)], status(200));
    let made = world
        .webhook(&[EventType::AnalysisCompleted], Some(COMPANY))
        .await;
    let mut message = world
        .publish(EventType::AnalysisCompleted, COMPANY)
        .await
        .remove(0);
    let mut handled = Vec::new();
    let before = OffsetDateTime::now_utc().unix_timestamp();
    loop {
        let outcome = world.deliver(&message).await;
        handled.push(outcome.clone());
        let Handled::Retrying { delay, .. } = outcome else {
            break;
        };
        let mut next = world.queued_with_delays();
        assert_eq!(next.len(), 1, "exactly one next attempt is queued");
        let (next, queued_delay) = next.remove(0);
        // The wait is SQS's (a delayed message) and the message says when it is due.
        assert_eq!(queued_delay, delay);
        let not_before = next.not_before.unwrap();
        assert!(not_before >= before + delay.as_secs() as i64);
        message = world.in_time(&next);
    }
    // 5 s then 5 min, each with up to 20 % jitter.
    let delays: Vec<_> = handled
        .iter()
        .filter_map(|h| match h {
            Handled::Retrying {
                next_attempt,
                delay,
            } => Some((*next_attempt, delay.as_secs_f64())),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 2);
    assert_eq!((delays[0].0, delays[1].0), (2, 3));
    assert!((5.0..=6.0).contains(&delays[0].1), "{delays:?}");
    assert!((300.0..=360.0).contains(&delays[1].1), "{delays:?}");
    assert_eq!(handled.last(), Some(&Handled::Delivered));

    let posted = world.receiver.posted();
    assert_eq!(posted.len(), 3);
    let id = posted[0].header("webhook-id").unwrap().to_owned();
    for request in &posted {
        assert_eq!(request.header("webhook-id"), Some(id.as_str()));
        assert_eq!(request.body, posted[0].body);
        assert!(signature_is_valid(request, &made.secret));
    }
    // Two failures counted, then the success set the count back to 0.
    assert_eq!(world.record(made.id).consecutive_failures, 0);
    let delivery = world.delivery(pending_of(&message).delivery_id);
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    let attempts: Vec<_> = delivery
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.http_status))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, "failed", Some(500)),
            (2, "failed", Some(503)),
            (3, "delivered", Some(200)),
        ]
    );
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer_and_retries_stop_after_max_retries() {
    let world = World::with_retry(RetryPolicy::new(vec![Duration::ZERO]).unwrap());
    world
        .receiver
        .script([ScriptedTransport::answer(429, Some(120))], status(500));
    let made = world
        .webhook(&[EventType::AnalysisCompleted], Some(COMPANY))
        .await;
    let alerts = world
        .webhook(&[EventType::DeliveryFailed], Some(COMPANY))
        .await;
    let message = world
        .publish(EventType::AnalysisCompleted, COMPANY)
        .await
        .remove(0);
    let handled = world.deliver(&message).await;
    assert!(
        matches!(handled, Handled::Retrying { next_attempt: 2, delay } if delay >= Duration::from_secs(120)),
        "{handled:?}"
    );
    let queued = world.queued_with_delays();
    assert_eq!(queued.len(), 1);
    assert!(queued[0].1 >= Duration::from_secs(120));

    // A message that arrives before its time is sent on with the rest of the wait, and no
    // request is made.
    let pending = pending_of(&message);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let early = DeliveryMessage {
        attempt: 2,
        not_before: Some(now + 1_800),
        ..pending.clone()
    };
    let handled = world.deliver(&world.message(early.to_json())).await;
    assert_eq!(handled, Handled::Waiting);
    let waiting = world.queued_with_delays();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].0, early, "sent on as it came");
    assert!(waiting[0].1 >= Duration::from_secs(1_790));
    assert_eq!(world.posted_to(made.id).len(), 1);

    // Attempts 2..=4 (maxRetries 3) fail; the 4th is the last.
    for attempt in 2..=4 {
        let next = DeliveryMessage {
            attempt,
            not_before: None,
            ..pending.clone()
        };
        let handled = world.deliver(&world.message(next.to_json())).await;
        if attempt < 4 {
            assert!(
                matches!(handled, Handled::Retrying { next_attempt, .. } if next_attempt == attempt + 1),
                "{handled:?}"
            );
        } else {
            assert_eq!(handled, Handled::GaveUp);
        }
    }
    let _ = world.queued();
    let delivery = world.delivery(pending.delivery_id);
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts.len(), 4);
    assert_eq!(delivery.next_attempt_at, None);
    // The owner is told, once, on the key's other webhook that subscribes.
    let told = world.alerts();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, EventType::DeliveryFailed);
    assert_eq!(told[0].1["reason"], "retries exhausted");
    assert_eq!(told[0].1["attemptCount"], 4);
    assert_eq!(told[0].1["deliveryId"], pending.delivery_id.to_string());
    assert_eq!(world.deliveries_of(alerts.id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn circuit_opens_after_ten_consecutive_failures_and_skips_pending_deliveries() {
    let world = World::new();
    world.receiver.script([], status(500));
    let made = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let alerts = world
        .webhook(&[EventType::WebhookCircuitOpened], Some(COMPANY))
        .await;
    let version_before = world.record(made.id).version;
    // Ten deliveries (ten events), attempted at the same time in one batch.
    let mut first = Vec::new();
    for _ in 0..10 {
        first.extend(world.publish(EventType::InterviewCompleted, COMPANY).await);
    }
    assert_eq!(first.len(), 10);
    let answer = world
        .deliverer
        .handle(SqsEvent { records: first }, far())
        .await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(world.posted_to(made.id).len(), 10);
    let record = world.record(made.id);
    assert_eq!(record.consecutive_failures, 10);
    assert!(record.circuit_opened_at.is_some(), "circuit open");
    // Ten counted failures and one opening, each a change of the ETag.
    assert_eq!(record.version, version_before + 11);
    // Told once, on the key's other webhook.
    let told = world.alerts();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, EventType::WebhookCircuitOpened);
    assert_eq!(told[0].1["webhookId"], made.id.to_string());
    assert_eq!(told[0].1["consecutiveFailures"], 10);
    let (retries, alerted): (Vec<_>, Vec<_>) = world
        .queued()
        .into_iter()
        .partition(|m| pending_of(m).webhook_id == made.id);
    assert_eq!(alerted.len(), 1, "one delivery of the alert");
    assert_eq!(pending_of(&alerted[0]).webhook_id, alerts.id);
    // The failure that opened the circuit ended its delivery `skipped` (recoverable); the nine
    // retries queued before it opened are skipped when they come: no request is made.
    assert_eq!(retries.len(), 9);
    for retry in &retries {
        assert_eq!(
            world.deliver(&world.in_time(&pending_of(retry))).await,
            Handled::Dropped("circuit open")
        );
    }
    assert_eq!(world.posted_to(made.id).len(), 10, "no request since");
    assert!(world.queued().is_empty());
    let deliveries = world.deliveries_of(made.id);
    assert_eq!(deliveries.len(), 10);
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Skipped),
        "{deliveries:?}"
    );
    // New events no longer go to it, until reset-circuit: recorded `skipped`, not dropped.
    let event = world.event(EventType::InterviewCompleted, COMPANY);
    assert_eq!(world.fanout.fan_out(&event).await.unwrap(), Fanned::Out(0));
    assert_eq!(world.deliveries_of(made.id).len(), 11);
    world.change(made.id, |w| {
        w.circuit_opened_at = None;
        w.consecutive_failures = 0;
    });
    // Fanning that event out again does not send it (recover does); a new event does.
    assert_eq!(world.fanout.fan_out(&event).await.unwrap(), Fanned::Out(0));
    let event = world.event(EventType::InterviewCompleted, COMPANY);
    assert_eq!(world.fanout.fan_out(&event).await.unwrap(), Fanned::Out(1));
}

#[tokio::test]
async fn gone_opens_the_circuit_at_once_and_tells_the_owner() {
    let world = World::new();
    world.receiver.script([], status(410));
    let made = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let alerts = world
        .webhook(
            &[EventType::DeliveryFailed, EventType::WebhookCircuitOpened],
            Some(COMPANY),
        )
        .await;
    let message = world
        .publish(EventType::InterviewCompleted, COMPANY)
        .await
        .remove(0);
    assert_eq!(world.deliver(&message).await, Handled::GaveUp);
    let record = world.record(made.id);
    assert_eq!(record.consecutive_failures, 1);
    assert!(record.circuit_opened_at.is_some(), "circuit open");
    let queued: Vec<_> = world.queued_with_delays();
    assert!(
        queued.iter().all(|(m, _)| m.webhook_id == alerts.id),
        "no retry: {queued:?}"
    );
    let delivery = world.delivery(pending_of(&message).delivery_id);
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts[0].outcome, "gone");
    // Both alerts, to the other webhook only.
    let mut told = world.alerts();
    told.sort_by_key(|(e, _)| e.as_str());
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[0].0, EventType::DeliveryFailed);
    assert_eq!(told[0].1["reason"], "the endpoint answered 410 Gone");
    assert_eq!(told[0].1["attemptCount"], 1);
    assert_eq!(told[1].0, EventType::WebhookCircuitOpened);
    assert_eq!(queued.len(), 2, "one delivery of each alert");
    assert!(
        world.deliveries_of(made.id).len() == 1,
        "none of its own alerts"
    );
}

#[tokio::test]
async fn a_deleted_webhooks_pending_deliveries_stop() {
    let world = World::new();
    world.receiver.script([status(500)], status(200));
    let made = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let message = world
        .publish(EventType::InterviewCompleted, COMPANY)
        .await
        .remove(0);
    assert!(matches!(
        world.deliver(&message).await,
        Handled::Retrying { .. }
    ));
    let retry = world.queued().remove(0);
    let caller = Caller {
        api_key_id: KEY,
        company_ids: &[COMPANY],
        if_match: None,
    };
    world.store.webhooks.delete(made.id, &caller).await.unwrap();
    assert_eq!(
        world.deliver(&world.in_time(&pending_of(&retry))).await,
        Handled::Dropped("webhook deleted")
    );
    assert_eq!(world.receiver.posted().len(), 1, "only the first attempt");
    assert!(world.queued().is_empty());
    // No counter brought a record back.
    assert!(world.store.webhooks.get_record(made.id).is_none());
}

#[tokio::test]
async fn inactive_unsubscribed_and_refused_webhooks_skip_their_queued_deliveries() {
    type Change = fn(&World, Uuid);
    let cases: [(&str, Change); 7] = [
        ("webhook inactive", |w, id| {
            w.change(id, |w| w.is_active = false)
        }),
        ("no longer subscribed", |w, id| {
            w.change(id, |w| w.events = vec![EventType::AnalysisCompleted])
        }),
        ("key gone", |w, id| {
            w.change(id, |w| w.api_key_id = "deleted-key".into())
        }),
        ("key revoked", |w, _| {
            w.store.put_key(key(KEY, ApiKeyStatus::Revoked, &[COMPANY]))
        }),
        ("key suspended", |w, _| {
            w.store
                .put_key(key(KEY, ApiKeyStatus::Suspended, &[COMPANY]))
        }),
        ("key expired", |w, _| {
            w.store.put_key(ApiKey {
                expires_at: Some(OffsetDateTime::now_utc() - Duration::from_secs(1)),
                ..key(KEY, ApiKeyStatus::Active, &[COMPANY])
            })
        }),
        ("key no longer holds the company", |w, _| {
            w.store
                .put_key(key(KEY, ApiKeyStatus::Active, &[OTHER_COMPANY]))
        }),
    ];
    for (why, change) in cases {
        let world = World::new();
        world.receiver.script([status(500)], status(200));
        let made = world
            .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
            .await;
        let message = world
            .publish(EventType::InterviewCompleted, COMPANY)
            .await
            .remove(0);
        assert!(matches!(
            world.deliver(&message).await,
            Handled::Retrying { .. }
        ));
        let retry = world.queued().remove(0);
        change(&world, made.id);
        let handled = world.deliver(&world.in_time(&pending_of(&retry))).await;
        let Handled::Dropped(reason) = handled else {
            panic!("{why}: {handled:?}");
        };
        assert_eq!(reason, why);
        assert_eq!(world.receiver.posted().len(), 1, "{why}: no second request");
        assert!(world.queued().is_empty(), "{why}: nothing queued");
        // Recorded `skipped`: not lost, recover brings it back.
        let delivery = world.delivery(pending_of(&retry).delivery_id);
        assert_eq!(delivery.status, DeliveryStatus::Skipped, "{why}");
        assert_eq!(delivery.next_attempt_at, None, "{why}");
    }
}

#[tokio::test]
async fn a_message_that_comes_back_is_neither_sent_nor_counted_again_and_a_copy_stops() {
    let world = World::new();
    world.receiver.script([], status(500));
    let made = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let message = world
        .publish(EventType::InterviewCompleted, COMPANY)
        .await
        .remove(0);
    let first = world.deliver(&message).await;
    assert!(matches!(
        first,
        Handled::Retrying {
            next_attempt: 2,
            ..
        }
    ));
    let queued = world.queued_with_delays();
    // The same message back (the function died after recording): the follow-up is redone,
    // nothing is sent or counted again, and the next attempt is queued again under the same
    // delivery and attempt number.
    let again = world.deliver(&message).await;
    assert!(
        matches!(
            again,
            Handled::Retrying {
                next_attempt: 2,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(world.receiver.posted().len(), 1);
    assert_eq!(world.record(made.id).consecutive_failures, 1);
    let requeued = world.queued_with_delays();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].0.attempt, queued[0].0.attempt);
    assert_eq!(requeued[0].0.not_before, queued[0].0.not_before);
    // A copy of it (another message id, same attempt) stops at the record.
    let copy = world.message(message.body.clone());
    assert_eq!(world.deliver(&copy).await, Handled::Duplicate);
    assert_eq!(world.receiver.posted().len(), 1);
    assert!(world.queued().is_empty());
    // The two queued next attempts meet at attempt 2's record: one is sent and counted.
    let (a, b) = (world.in_time(&queued[0].0), world.in_time(&requeued[0].0));
    assert!(matches!(
        world.deliver(&a).await,
        Handled::Retrying {
            next_attempt: 3,
            ..
        }
    ));
    assert_eq!(world.deliver(&b).await, Handled::Duplicate);
    assert_eq!(world.record(made.id).consecutive_failures, 2);
    assert_eq!(world.receiver.posted().len(), 2);
}

#[tokio::test]
async fn failed_bookkeeping_neither_counts_twice_nor_resends_nor_loses_the_retry() {
    let world = World::new();
    world.receiver.script([], status(500));
    let made = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let message = world
        .publish(EventType::InterviewCompleted, COMPANY)
        .await
        .remove(0);
    let failure = || StoreError::Failed {
        operation: "test",
        kind: "ServiceUnavailable".into(),
    };
    // The record's write fails: nothing counted, the message comes back and attempts again
    // (the receiver sees the same webhook-id twice, never a different one).
    world.store.fail("record_failed_attempt", failure());
    assert!(world.deliverer.deliver(&message, far()).await.is_err());
    world.store.recover();
    assert_eq!(world.record(made.id).consecutive_failures, 0);
    assert!(world.queued().is_empty());
    assert!(matches!(
        world.deliver(&message).await,
        Handled::Retrying { .. }
    ));
    let posted = world.receiver.posted();
    assert_eq!(posted.len(), 2);
    assert_eq!(
        posted[0].header("webhook-id"),
        posted[1].header("webhook-id")
    );
    assert_eq!(world.record(made.id).consecutive_failures, 1);
    let _ = world.queued();

    // The circuit's check fails after the record is written: the message comes back, finishes
    // the follow-up from the record: not sent, not counted again, the retry queued once.
    let second = world
        .publish(EventType::InterviewCompleted, COMPANY)
        .await
        .remove(0);
    world.store.fail("open_circuit_if_due", failure());
    assert!(world.deliverer.deliver(&second, far()).await.is_err());
    world.store.recover();
    assert!(
        world.queued().is_empty(),
        "no retry queued before its count"
    );
    assert!(matches!(
        world.deliver(&second).await,
        Handled::Retrying { .. }
    ));
    assert_eq!(world.receiver.posted().len(), 3);
    assert_eq!(world.record(made.id).consecutive_failures, 2);
    assert_eq!(world.queued().len(), 1);

    // The queue refuses the next attempt: the message comes back and queues it then.
    let third = world
        .publish(EventType::InterviewCompleted, COMPANY)
        .await
        .remove(0);
    world.queues.fail_with(failure());
    assert!(world.deliverer.deliver(&third, far()).await.is_err());
    world.queues.recover();
    assert!(matches!(
        world.deliver(&third).await,
        Handled::Retrying { .. }
    ));
    assert_eq!(world.receiver.posted().len(), 4);
    assert_eq!(world.record(made.id).consecutive_failures, 3);
    assert_eq!(world.queued().len(), 1);
}

#[tokio::test]
async fn a_batch_reports_exactly_the_messages_that_must_come_back() {
    let world = World::new();
    let good = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let secretless = world
        .webhook(&[EventType::InterviewStarted], Some(COMPANY))
        .await;
    let arn = world
        .store
        .webhooks
        .get_record(secretless.id)
        .unwrap()
        .secret;
    world
        .deliverer
        .secrets
        .delete_webhook_secret(secretless.id)
        .await
        .unwrap();
    assert!(world.deliverer.secrets.document_of(&arn).is_none());
    let ok = world
        .publish(EventType::InterviewCompleted, COMPANY)
        .await
        .remove(0);
    let no_secret = world
        .publish(EventType::InterviewStarted, COMPANY)
        .await
        .remove(0);
    let malformed = world.message("{\"not\": \"a delivery\"}".into());
    let ids = [
        ok.message_id.clone(),
        no_secret.message_id.clone(),
        malformed.message_id.clone(),
    ];
    let answer = world
        .deliverer
        .handle(
            SqsEvent {
                records: vec![ok, no_secret, malformed],
            },
            far(),
        )
        .await;
    let mut failed: Vec<_> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    let mut expected = vec![ids[1].clone(), ids[2].clone()];
    expected.sort();
    assert_eq!(failed, expected);
    assert_eq!(world.posted_to(good.id).len(), 1);
    assert!(world.posted_to(secretless.id).is_empty());
}

#[tokio::test]
async fn a_resend_is_one_attempt_not_retried_and_tells_nobody() {
    let world = World::new();
    world.receiver.script([], status(500));
    let made = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    world
        .webhook(&[EventType::DeliveryFailed], Some(COMPANY))
        .await;
    let first = pending_of(
        &world
            .publish(EventType::InterviewCompleted, COMPANY)
            .await
            .remove(0),
    );
    // As the API queues it: attempt 5 of a delivery that failed after 4.
    let resend = DeliveryMessage {
        attempt: 5,
        single: true,
        retry_base: 4,
        ..first.clone()
    };
    assert_eq!(
        world.deliver(&world.message(resend.to_json())).await,
        Handled::GaveUp
    );
    assert!(world.queued().is_empty(), "not retried");
    assert!(world.alerts().is_empty(), "its answer is in the log");
    assert_eq!(world.record(made.id).consecutive_failures, 1, "counted");
    let delivery = world.delivery(first.delivery_id);
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts.len(), 1);
    assert_eq!(delivery.attempts[0].attempt, 5);
}

#[tokio::test]
async fn fan_out_finds_the_companys_and_the_keys_all_company_webhooks_and_refuses_the_rest() {
    let world = World::new();
    let of_company = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let every_company = world.webhook(&[EventType::InterviewCompleted], None).await;
    let other_company = world
        .webhook(&[EventType::InterviewCompleted], Some(OTHER_COMPANY))
        .await;
    let other_type = world
        .webhook(&[EventType::AnalysisCompleted], Some(COMPANY))
        .await;
    // Another key: one that holds the company, one revoked, one without it (all companies).
    world
        .store
        .put_key(key("key-2", ApiKeyStatus::Active, &[COMPANY]));
    world
        .store
        .put_key(key("key-3", ApiKeyStatus::Revoked, &[COMPANY]));
    world
        .store
        .put_key(key("key-4", ApiKeyStatus::Active, &[OTHER_COMPANY]));
    let second_key = world
        .webhook_of("key-2", &[EventType::InterviewCompleted], None)
        .await;
    let revoked = world
        .webhook_of("key-3", &[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let without = world
        .webhook_of("key-4", &[EventType::InterviewCompleted], None)
        .await;
    let inactive = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    world.change(inactive.id, |w| w.is_active = false);

    let event = world.event(EventType::InterviewCompleted, COMPANY);
    assert_eq!(world.fanout.fan_out(&event).await.unwrap(), Fanned::Out(3));
    let mut to: Vec<Uuid> = world
        .queued()
        .iter()
        .map(|m| pending_of(m).webhook_id)
        .collect();
    to.sort();
    let mut expected = vec![of_company.id, every_company.id, second_key.id];
    expected.sort();
    assert_eq!(to, expected);
    for nothing in [other_company.id, other_type.id, revoked.id, without.id] {
        assert!(world.deliveries_of(nothing).is_empty());
    }
    assert_eq!(
        world.deliveries_of(inactive.id)[0].status,
        DeliveryStatus::Skipped
    );
    // The same event again (SQS at least once, a redrive): the same deliveries, none new;
    // the pending ones are queued again under their ids.
    let ids: Vec<_> = world
        .deliveries_of(of_company.id)
        .iter()
        .map(|d| d.id)
        .collect();
    let again = world.message(event.body.clone());
    assert_eq!(world.fanout.fan_out(&again).await.unwrap(), Fanned::Out(3));
    let queued = world.queued();
    assert!(queued.iter().any(|m| pending_of(m).delivery_id == ids[0]));
    assert_eq!(world.deliveries_of(of_company.id).len(), 1);
    assert_eq!(
        world.store.log.with_maps(|events, _| events
            .values()
            .filter(|e| !e.event.is_operational())
            .count()),
        1,
        "kept once"
    );
}

#[tokio::test]
async fn a_poison_event_goes_to_the_dead_letter_queue_and_a_failing_store_brings_it_back() {
    let world = World::new();
    world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    let poison = world.message("{\"event\": \"interview.completed\"}".into());
    let good = world.event(EventType::InterviewCompleted, COMPANY);
    let answer = world
        .fanout
        .handle(SqsEvent {
            records: vec![poison.clone(), good],
        })
        .await;
    assert!(answer.batch_item_failures.is_empty());
    let dead = world.queues.take(EVENTS_DLQ);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, poison.body, "moved as it came");
    assert_eq!(world.queued().len(), 1, "the other event is not held");
    // A store that fails: reported failed (it comes back), nothing queued.
    world.store.fail(
        "subscribed",
        StoreError::Failed {
            operation: "test",
            kind: "ThrottlingException".into(),
        },
    );
    let event = world.event(EventType::InterviewCompleted, COMPANY);
    let answer = world
        .fanout
        .handle(SqsEvent {
            records: vec![event.clone()],
        })
        .await;
    assert_eq!(answer.batch_item_failures.len(), 1);
    assert_eq!(
        answer.batch_item_failures[0].item_identifier,
        event.message_id
    );
    assert!(world.queued().is_empty());
}

#[tokio::test]
async fn recover_pages_paces_and_queues_each_skipped_delivery_once() {
    let world = World::new();
    let made = world
        .webhook(&[EventType::InterviewCompleted], Some(COMPANY))
        .await;
    world.change(made.id, |w| {
        w.is_active = false;
        w.created_at -= Duration::from_secs(3600);
    });
    // 60 events (more than two of the twin's pages), all skipped while it was inactive; one
    // of another type, one of another company.
    let since = OffsetDateTime::now_utc() - Duration::from_secs(60);
    for _ in 0..60 {
        world.publish(EventType::InterviewCompleted, COMPANY).await;
    }
    world.publish(EventType::AnalysisCompleted, COMPANY).await;
    world
        .publish(EventType::InterviewCompleted, OTHER_COMPANY)
        .await;
    let skipped = world.deliveries_of(made.id);
    assert_eq!(skipped.len(), 60);
    assert!(skipped.iter().all(|d| d.status == DeliveryStatus::Skipped));
    // One was delivered before: left alone.
    world.store.log.with_maps(|_, deliveries| {
        let one = deliveries.get_mut(&skipped[0].id).unwrap();
        one.status = DeliveryStatus::Delivered;
    });

    // While inactive, recover queues nothing.
    let job = RecoverJob {
        webhook_id: made.id,
        since,
        until: OffsetDateTime::now_utc() + Duration::from_secs(1),
    };
    let recover = world.message(RecoverMessage::new(job.clone()).to_json());
    assert_eq!(
        world.deliver(&recover).await,
        Handled::Dropped("webhook inactive")
    );
    world.change(made.id, |w| w.is_active = true);
    let handled = world.deliver(&recover).await;
    assert_eq!(
        handled,
        Handled::Recovering {
            queued: 59,
            done: true
        }
    );
    let queued = world.queued_with_delays();
    assert_eq!(queued.len(), 59);
    let mut ids: Vec<_> = queued.iter().map(|(m, _)| m.delivery_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 59, "each once");
    // Paced at 10 a second: the last is due about 5 seconds after the first.
    let starts: Vec<_> = queued.iter().map(|(m, _)| m.not_before.unwrap()).collect();
    let (first, last) = (starts[0], *starts.last().unwrap());
    assert_eq!(last - first, 5, "{starts:?}");
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "in the window's order"
    );
    for second in first..=last {
        assert!(starts.iter().filter(|s| **s == second).count() <= 10);
    }
    assert!(queued
        .iter()
        .all(|(m, _)| m.attempt == 1 && m.retry_base == 0));
    let pending = world
        .deliveries_of(made.id)
        .iter()
        .filter(|d| d.status == DeliveryStatus::Pending)
        .count();
    assert_eq!(pending, 59);
    // The same message come back queues what it moved again (same ids); another recover of
    // the window queues none (they are pending).
    let again = world.deliver(&recover).await;
    assert_eq!(
        again,
        Handled::Recovering {
            queued: 59,
            done: true
        }
    );
    assert_eq!(world.queued().len(), 59);
    let other = world.message(RecoverMessage::new(job).to_json());
    assert_eq!(
        world.deliver(&other).await,
        Handled::Recovering {
            queued: 0,
            done: true
        }
    );
    assert!(world.queued().is_empty());
}

#[tokio::test]
async fn an_operational_events_failure_tells_nobody_so_no_alert_starts_a_chain() {
    let world = World::new();
    world.receiver.script([], status(410));
    let made = world
        .webhook(&[EventType::DeliveryFailed], Some(COMPANY))
        .await;
    world
        .webhook(&[EventType::DeliveryFailed], Some(COMPANY))
        .await;
    let id = Uuid::new_v4();
    let alert = DeliveryMessage {
        delivery_id: id,
        webhook_id: made.id,
        company_id: None,
        event: EventType::DeliveryFailed.as_str().into(),
        body: "{}".into(),
        attempt: 1,
        not_before: None,
        single: false,
        retry_base: 0,
    };
    assert_eq!(
        world.deliver(&world.message(alert.to_json())).await,
        Handled::GaveUp
    );
    assert!(world.record(made.id).circuit_opened_at.is_some());
    assert!(world.alerts().is_empty());
    assert!(world.queued().is_empty());
}
