//! `POST /webhooks/{id}/test`: one signed `ping` delivery now, and what came of it.
//!
//! The test never changes the webhook (no failure is counted): it reads the record and the
//! secret version it points at, signs, sends once, and reports.
//!
//! The ping is a delivery like any other (DELIVERY-LOG.md): an event `ping` of its own (a fresh
//! id, `data: {"webhookId"}`), its delivery id derived from the event and the webhook (the
//! answer's `deliveryId` and the `webhook-id` header), recorded with its one attempt after
//! the send. The record is the log's, not the test's: when it cannot be written the ping was
//! still sent, so the answer is still its result, and the failure is logged (no secret in it).

use std::time::Instant;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{App, ServiceError};
use crate::delivery::{signer_for, DeliveryBody, Outcome, SignedRequest};
use crate::domain::{ApiKey, EventType, IdempotencyClaim, WebhookUrl};
use crate::store::delivery_log::{
    delivery_id, Attempt, Delivery, DeliveryLog, DeliveryStatus, EventId, LoggedEvent,
    PipelineQueue,
};
use crate::store::{ApiKeyStore, SecretStore, WebhookStore};

/// What a test ping did (the `data` of its answer).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub success: bool,
    pub delivery_id: Option<String>,
    pub http_status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub message: String,
}

impl TestResult {
    fn not_sent(message: &str) -> Self {
        Self {
            success: false,
            delivery_id: None,
            http_status: None,
            duration_ms: None,
            message: message.to_owned(),
        }
    }

    fn from_outcome(delivery_id: Uuid, outcome: &Outcome) -> Self {
        let message = if outcome.is_success() {
            "Webhook test succeeded".to_owned()
        } else {
            format!("Webhook test failed: {}", outcome.reason())
        };
        Self {
            success: outcome.is_success(),
            delivery_id: Some(delivery_id.to_string()),
            http_status: outcome.http_status(),
            duration_ms: outcome
                .duration()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            message,
        }
    }
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore, L: DeliveryLog, Q: PipelineQueue>
    App<K, W, S, L, Q>
{
    /// Sends the test ping of webhook `id`, answering by `deadline` at the latest (the time the
    /// function has left, less a margin to answer).
    ///
    /// With an idempotency claim, a retry answers the first test's result again and sends
    /// nothing, once the webhook is known to be still there and the key's to test (a replay
    /// after a delete is "not found", as a new test would be).
    pub async fn test_webhook(
        &self,
        key: &ApiKey,
        id: &str,
        deadline: Instant,
        claim: Option<IdempotencyClaim>,
    ) -> Result<(TestResult, bool), ServiceError> {
        let Some(claim) = claim else {
            return Ok((self.ping(key, id, deadline).await?, false));
        };
        if let Some(result) = self.begin(&claim).await? {
            self.changeable(key, id).await?;
            let result = serde_json::from_str(&result)
                .map_err(|_| ServiceError::Internal("malformed stored test result".into()))?;
            return Ok((result, true));
        }
        let result = self.ping(key, id, deadline).await;
        let stored = match &result {
            Ok(result) => serde_json::to_string(result)
                .map_err(|_| ServiceError::Internal("unserialisable test result".into())),
            Err(error) => Err(error.clone()),
        };
        match stored {
            Ok(json) => self.webhooks.complete(&claim, &json).await?,
            Err(_) => self.give_up(&claim).await,
        }
        Ok((result?, false))
    }

    async fn ping(
        &self,
        key: &ApiKey,
        id: &str,
        deadline: Instant,
    ) -> Result<TestResult, ServiceError> {
        let (_, stored) = self.changeable(key, id).await?;
        let webhook = &stored.webhook;
        if !webhook.events.contains(&EventType::Ping) {
            return Ok(TestResult::not_sent(
                "No delivery was created: the webhook is not subscribed to ping; add ping to its events to test it",
            ));
        }
        if !webhook.is_active {
            return Ok(TestResult::not_sent(
                "No delivery was created: the webhook is disabled",
            ));
        }
        if webhook.circuit_open() {
            return Ok(TestResult::not_sent(
                "No delivery was created: its circuit breaker is open",
            ));
        }
        let document = match self.secrets.read_webhook_secret(&stored.secret).await {
            Ok(document) => document,
            Err(error) => return Err(self.secret_failed(key, id, error).await),
        };
        let now = OffsetDateTime::now_utc();
        let signer = signer_for(&document, now)
            .map_err(|_| ServiceError::Internal("malformed signing secret".into()))?;
        let event_id = EventId::random();
        let delivery_id = delivery_id(&event_id, webhook.id);
        let body = DeliveryBody::ping(&webhook.id.to_string(), now, delivery_id);
        let request = SignedRequest::new(&body, now, &signer, &document.headers)
            .map_err(|_| ServiceError::Internal("a stored custom header is not sendable".into()))?;
        let outcome = match WebhookUrl::parse(&webhook.url, self.settings.url_policy) {
            Ok(url) => {
                let timeout = crate::time_budget::receiver_timeout(webhook.timeout_ms);
                self.sender()?.send(&url, &request, timeout, deadline).await
            }
            // A URL the policy no longer allows (say, localhost after the switch was turned off).
            Err(_) => Outcome::AddressNotAllowed,
        };
        self.record_ping(webhook.id, event_id, delivery_id, now, &outcome)
            .await;
        Ok(TestResult::from_outcome(delivery_id, &outcome))
    }

    /// Records the ping sent at `at` and its one attempt in the delivery log; a failure is
    /// logged, not answered (the ping was sent).
    async fn record_ping(
        &self,
        webhook_id: Uuid,
        event_id: EventId,
        delivery_id: Uuid,
        at: OffsetDateTime,
        outcome: &Outcome,
    ) {
        let event = LoggedEvent {
            id: event_id,
            event: EventType::Ping,
            company_id: None,
            occurred_at: at,
            received_at: at,
            data: serde_json::json!({ "webhookId": webhook_id.to_string() }),
        };
        let (status, attempt_outcome) = match outcome {
            _ if outcome.is_success() => (DeliveryStatus::Delivered, "delivered"),
            Outcome::ReceiverError { status: 410, .. } => (DeliveryStatus::Failed, "gone"),
            _ => (DeliveryStatus::Failed, "failed"),
        };
        let delivery = Delivery {
            id: delivery_id,
            webhook_id,
            event_id: event.id.clone(),
            event: EventType::Ping,
            status,
            created_at: at,
            last_attempt_at: Some(at),
            last_http_status: outcome.http_status(),
            next_attempt_at: None,
            attempts: vec![Attempt {
                attempt: 1,
                at,
                outcome: attempt_outcome.to_owned(),
                http_status: outcome.http_status(),
                duration_ms: outcome
                    .duration()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                reason: (!outcome.is_success()).then(|| outcome.reason()),
            }],
        };
        if let Err(error) = self.delivery_log.record_ping(&event, &delivery).await {
            tracing::warn!(
                webhook_id = %webhook_id,
                delivery_id = %delivery_id,
                error = %error,
                "the test ping was sent but could not be recorded in the delivery log"
            );
        }
    }
}
