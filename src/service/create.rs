//! `POST /webhooks`: authorise the company, store (secret first, then the record), answer.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{App, ServiceError};
use crate::domain::{ApiKey, ClaimOutcome, IdempotencyClaim, NewWebhook, SigningSecret, Webhook};
use crate::store::delivery_log::{DeliveryLog, PipelineQueue};
use crate::store::{
    ApiKeyStore, InsertError, SecretDocument, SecretStore, StoreError, StoredWebhook, WebhookStore,
};
use crate::time_budget::UNDO_BUDGET;

/// A created webhook and the secret to show once.
#[derive(Debug)]
pub struct Created {
    pub webhook: Webhook,
    pub signing_secret: SigningSecret,
    /// True when this answers a retry with an idempotency key that already created it.
    pub replayed: bool,
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore, L: DeliveryLog, Q: PipelineQueue>
    App<K, W, S, L, Q>
{
    /// Creates the webhook, at most once per idempotency claim.
    ///
    /// The writes (claim, secret, record) run within the settings' write budget
    /// ([`crate::time_budget::WRITE_BUDGET`] in production). When they fail, or the
    /// budget runs out, whatever they may have left is undone within [`UNDO_BUDGET`] before the
    /// answer, so that a failed request leaves nothing behind and still answers in time.
    pub async fn create_webhook(
        &self,
        key: &ApiKey,
        request: NewWebhook,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Created, ServiceError> {
        if let Some(company) = request.company_id {
            key.authorise_company(company)?;
        }
        let signing_secret = SigningSecret::try_generate()
            .map_err(|_| ServiceError::Internal("the OS random number generator failed".into()))?;
        let webhook = Webhook::new(Uuid::new_v4(), &key.id, &request, OffsetDateTime::now_utc());
        let document = SecretDocument {
            signing_secret: signing_secret.clone(),
            previous: None,
            headers: request.headers.clone(),
        };
        let write = self.write(key, &webhook, &document, claim.as_ref());
        let failure = match tokio::time::timeout(self.settings.write_budget, write).await {
            Ok(Ok(Written::New)) => {
                return Ok(Created {
                    webhook,
                    signing_secret,
                    replayed: false,
                })
            }
            Ok(Ok(Written::Replayed(created))) => return Ok(*created),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::Unknown(ServiceError::Unavailable(StoreError::Unavailable {
                operation: "create webhook",
                kind: "write budget exhausted".into(),
            })),
        };
        let (error, record_may_exist) = match failure {
            Failure::NothingWritten(error) => return Err(error),
            Failure::BeforeRecord(error) => (error, false),
            Failure::Unknown(error) => (error, true),
        };
        let undo = self.undo(&webhook, record_may_exist, claim.as_ref());
        if tokio::time::timeout(UNDO_BUDGET, undo).await.is_err() {
            tracing::error!(
                webhook_id = %webhook.id,
                "undoing a failed create ran out of time; reconcile this id"
            );
        }
        Err(error)
    }

    /// Claims the idempotency key (if any), then writes the secret, then the record.
    async fn write(
        &self,
        key: &ApiKey,
        webhook: &Webhook,
        document: &SecretDocument,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Written, Failure> {
        if let Some(claim) = claim {
            let outcome = self.webhooks.claim(claim, OffsetDateTime::now_utc()).await;
            match outcome.map_err(|e| Failure::BeforeRecord(e.into()))? {
                ClaimOutcome::Claimed => {}
                ClaimOutcome::InProgress => {
                    return Err(Failure::NothingWritten(ServiceError::RequestInProgress))
                }
                ClaimOutcome::Reused => {
                    return Err(Failure::NothingWritten(ServiceError::IdempotencyKeyReused))
                }
                ClaimOutcome::Completed(result) => {
                    let replayed = self.replay(&result, key).await;
                    return replayed
                        .map(|created| Written::Replayed(Box::new(created)))
                        .map_err(Failure::NothingWritten);
                }
            }
        }
        let secret = self
            .secrets
            .create_webhook_secret(webhook.id, &key.id, document)
            .await
            .map_err(|e| Failure::BeforeRecord(e.into()))?;
        let limit = self.settings.max_webhooks_per_key;
        let stored = StoredWebhook {
            webhook: webhook.clone(),
            secret,
        };
        match self.webhooks.insert(&stored, limit, claim).await {
            Ok(()) => Ok(Written::New),
            // A cancelled transaction wrote nothing.
            Err(InsertError::LimitReached) => {
                Err(Failure::BeforeRecord(ServiceError::WebhookLimitReached {
                    limit,
                }))
            }
            Err(InsertError::ClaimLost) => {
                Err(Failure::BeforeRecord(ServiceError::RequestInProgress))
            }
            // Anything else may hide a write that landed.
            Err(InsertError::Store(error)) => Err(Failure::Unknown(error.into())),
        }
    }

    /// The webhook an earlier request with the same idempotency key created, with its secret
    /// read back from the secret store (the only place it is kept).
    async fn replay(&self, result: &str, key: &ApiKey) -> Result<Created, ServiceError> {
        let id = Uuid::try_parse(result).map_err(|_| ServiceError::IdempotencyKeyReused)?;
        let stored = self
            .webhooks
            .get(id)
            .await?
            .filter(|stored| stored.webhook.api_key_id == key.id)
            .ok_or(ServiceError::IdempotencyKeyReused)?;
        let document = self.secrets.read_webhook_secret(&stored.secret).await?;
        Ok(Created {
            webhook: stored.webhook,
            signing_secret: document.signing_secret,
            replayed: true,
        })
    }

    /// Removes what a failed create may have left, record first: a record without its secret
    /// would be the worse leftover. The secret is deleted by name, since a timed-out create
    /// may have made one whose ARN we never heard; the claim is released so a retry can go on.
    /// What cannot be undone is logged with the webhook id for reconciliation.
    async fn undo(
        &self,
        webhook: &Webhook,
        record_may_exist: bool,
        claim: Option<&IdempotencyClaim>,
    ) {
        if record_may_exist {
            if let Err(error) = self
                .webhooks
                .undo_insert(webhook.id, &webhook.api_key_id)
                .await
            {
                tracing::error!(
                    webhook_id = %webhook.id,
                    error = %error,
                    "could not confirm that no webhook record was written; reconcile this id"
                );
            }
        }
        if let Err(error) = self.secrets.delete_webhook_secret(webhook.id).await {
            tracing::error!(
                webhook_id = %webhook.id,
                error = %error,
                "could not delete the secret of a webhook that was never stored; reconcile this id"
            );
        }
        if let Some(claim) = claim {
            if let Err(error) = self.webhooks.release(claim).await {
                tracing::warn!(error = %error, "could not release an idempotency claim; it lapses by itself");
            }
        }
    }
}

/// What the writes of a create achieved.
enum Written {
    New,
    Replayed(Box<Created>),
}

/// How far a failed create got, which tells the undo what to look for.
enum Failure {
    /// Nothing of this request's can exist (refused, or answered from an earlier request).
    NothingWritten(ServiceError),
    /// A claim and a secret may exist, but not the record.
    BeforeRecord(ServiceError),
    /// Anything may exist: the record write was ambiguous.
    Unknown(ServiceError),
}
