//! List, read, change, delete and reset a key's webhooks.
//!
//! A webhook belongs to the key that created it. Another key's webhook, an unknown id and an id
//! that is not a UUID all answer the same "not found". A webhook whose company the key may no
//! longer act for stays the key's to see and remove (listed, `GET`, `DELETE`), not to change,
//! test or rotate: those answer "access denied".

use time::OffsetDateTime;
use uuid::Uuid;

use super::{change_backoff, App, ServiceError, CHANGE_ATTEMPTS};
use crate::domain::{ApiKey, IdempotencyClaim, Webhook, WebhookPatch};
use crate::store::delivery_log::{DeliveryLog, PipelineQueue};
use crate::store::{
    ApiKeyStore, Caller, ChangeError, Deleted, SecretDocument, SecretStore, SecretSwap,
    StoredWebhook, WebhookChange, WebhookStore,
};

/// A webhook id from a path: the hyphenated UUID form (any case). Anything else is an id no
/// webhook has.
pub fn parse_webhook_id(text: &str) -> Result<Uuid, ServiceError> {
    let not_found = || ServiceError::WebhookNotFound {
        resource_id: text.to_owned(),
    };
    if text.len() != 36 {
        return Err(not_found());
    }
    Uuid::try_parse(text).map_err(|_| not_found())
}

/// A webhook and whether this answer replays an earlier request's.
#[derive(Debug)]
pub struct Answered {
    pub webhook: Webhook,
    pub replayed: bool,
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore, L: DeliveryLog, Q: PipelineQueue>
    App<K, W, S, L, Q>
{
    /// The key's webhooks, oldest first (`createdAt`, then `id`); only `company`'s when given.
    pub async fn list_webhooks(
        &self,
        key: &ApiKey,
        company: Option<Uuid>,
    ) -> Result<Vec<Webhook>, ServiceError> {
        if let Some(company) = company {
            key.authorise_company(company)?;
        }
        let mut webhooks: Vec<Webhook> = self
            .webhooks
            .list_by_owner(&key.id)
            .await?
            .into_iter()
            .map(|stored| stored.webhook)
            .filter(|webhook| company.is_none() || webhook.company_id == company)
            .collect();
        webhooks.sort_by_key(|w| (w.created_at, w.id));
        Ok(webhooks)
    }

    /// One of the key's webhooks, even of a company the key no longer holds (it is listed, so
    /// it can be read).
    pub async fn get_webhook(&self, key: &ApiKey, id: &str) -> Result<Webhook, ServiceError> {
        let (_, stored) = self.owned(key, id).await?;
        Ok(stored.webhook)
    }

    /// The key's webhook `id` as stored, or "not found": whether the key may still act for its
    /// company is not asked (reads and deletes).
    pub(super) async fn owned(
        &self,
        key: &ApiKey,
        id: &str,
    ) -> Result<(Uuid, StoredWebhook), ServiceError> {
        let uuid = parse_webhook_id(id)?;
        let stored = self
            .webhooks
            .get(uuid)
            .await?
            .filter(|stored| stored.webhook.api_key_id == key.id)
            .ok_or_else(|| ServiceError::WebhookNotFound {
                resource_id: id.to_owned(),
            })?;
        Ok((uuid, stored))
    }

    /// The key's webhook `id`, which the key may still act for: [`Self::owned`], and "access
    /// denied" when the webhook's company is no longer among the key's (changes, tests,
    /// rotations, and the replays of each).
    pub(super) async fn changeable(
        &self,
        key: &ApiKey,
        id: &str,
    ) -> Result<(Uuid, StoredWebhook), ServiceError> {
        let (uuid, stored) = self.owned(key, id).await?;
        if let Some(company) = stored.webhook.company_id {
            key.authorise_company(company)?;
        }
        Ok((uuid, stored))
    }

    /// A step on the webhook's secret failed: if the webhook is gone meanwhile (a DELETE won the
    /// race and deleted its secret), that is the answer; else the failure is.
    pub(super) async fn secret_failed(
        &self,
        key: &ApiKey,
        id: &str,
        error: crate::store::StoreError,
    ) -> ServiceError {
        match self.changeable(key, id).await {
            Err(gone) => gone,
            Ok(_) => error.into(),
        }
    }

    /// Applies `patch` (all of it, or none of it). Without headers this is one conditional
    /// write. With headers, the new values go to a new version of the webhook's secret first,
    /// and the record's pointer moves to it in the same conditional write that changes the
    /// names, so names and values can never be out of step; a race with another change of
    /// the secret is tried again.
    pub async fn update_webhook(
        &self,
        key: &ApiKey,
        id: &str,
        patch: WebhookPatch,
        if_match: Option<u64>,
    ) -> Result<Webhook, ServiceError> {
        let uuid = parse_webhook_id(id)?;
        let caller = caller(key, if_match);
        let mut change = WebhookChange {
            url: patch.url.map(|url| url.as_str().to_owned()),
            events: patch.events,
            name: patch.name,
            description: patch.description,
            is_active: patch.is_active,
            secret: None,
            reset_circuit: false,
        };
        let Some(headers) = patch.headers else {
            let changed = self
                .webhooks
                .update(uuid, &caller, &change, None, OffsetDateTime::now_utc())
                .await;
            return changed.map(|s| s.webhook).map_err(|e| refused(e, id));
        };
        let names: Vec<String> = headers.iter().map(|h| h.name().to_owned()).collect();
        for attempt in 0..CHANGE_ATTEMPTS {
            let (_, stored) = self.changeable(key, id).await?;
            if if_match.is_some_and(|v| v != stored.webhook.version) {
                return Err(ServiceError::PreconditionFailed);
            }
            let current = match self.secrets.read_webhook_secret(&stored.secret).await {
                Ok(current) => current,
                Err(error) => return Err(self.secret_failed(key, id, error).await),
            };
            let document = SecretDocument {
                headers: headers.clone(),
                ..current
            };
            let to = match self
                .secrets
                .put_webhook_secret(&stored.secret, &document)
                .await
            {
                Ok(to) => to,
                Err(error) => return Err(self.secret_failed(key, id, error).await),
            };
            change.secret = Some(SecretSwap {
                from: stored.secret,
                to,
                header_names: Some(names.clone()),
            });
            let changed = self
                .webhooks
                .update(uuid, &caller, &change, None, OffsetDateTime::now_utc())
                .await;
            match changed {
                Ok(stored) => return Ok(stored.webhook),
                Err(ChangeError::SecretMoved) => tokio::time::sleep(change_backoff(attempt)).await,
                Err(error) => return Err(refused(error, id)),
            }
        }
        Err(ServiceError::Unavailable(
            crate::store::StoreError::Unavailable {
                operation: "change webhook headers",
                kind: "too many concurrent changes".into(),
            },
        ))
    }

    /// Deletes the webhook and then its secret (at once, no recovery window). A delete whose
    /// secret could not be deleted answers 503 with the record gone; a retry finds the
    /// tombstone, finishes the secret's deletion and answers "not found". A webhook of a
    /// company the key no longer holds is deleted too: the key may remove what it can see.
    pub async fn delete_webhook(
        &self,
        key: &ApiKey,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<(), ServiceError> {
        let uuid = parse_webhook_id(id)?;
        let deleted = match self.webhooks.delete(uuid, &caller(key, if_match)).await {
            Err(ChangeError::CompanyDenied) => {
                self.delete_of_a_lost_company(key, id, uuid, if_match)
                    .await?
            }
            deleted => deleted.map_err(|e| refused(e, id))?,
        };
        self.secrets.delete_webhook_secret(uuid).await?;
        match deleted {
            Deleted::Now => Ok(()),
            Deleted::Earlier => Err(ServiceError::WebhookNotFound {
                resource_id: id.to_owned(),
            }),
        }
    }

    /// The delete of the key's webhook whose company the key lost. The store's delete judges
    /// the caller's companies as every conditional write does; a webhook's company never
    /// changes, so naming it among the caller's for this one write lifts only that check,
    /// while ownership and `If-Match` stay conditions of the write. Costs a read, and only on
    /// this rare path.
    async fn delete_of_a_lost_company(
        &self,
        key: &ApiKey,
        id: &str,
        uuid: Uuid,
        if_match: Option<u64>,
    ) -> Result<Deleted, ServiceError> {
        let (_, stored) = self.owned(key, id).await?;
        let mut companies = key.company_ids.clone();
        companies.extend(stored.webhook.company_id);
        let caller = Caller {
            api_key_id: &key.id,
            company_ids: &companies,
            if_match,
        };
        self.webhooks
            .delete(uuid, &caller)
            .await
            .map_err(|e| refused(e, id))
    }

    /// Closes the circuit: no failures, not opened, active. With an idempotency claim, the
    /// change and the claim's completion are one write, and a replay answers the webhook as
    /// it is now, once it is known to be still there and the key's to change.
    pub async fn reset_circuit(
        &self,
        key: &ApiKey,
        id: &str,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Answered, ServiceError> {
        let uuid = parse_webhook_id(id)?;
        let change = WebhookChange {
            reset_circuit: true,
            ..WebhookChange::default()
        };
        let Some(claim) = claim else {
            let changed = self
                .webhooks
                .update(
                    uuid,
                    &caller(key, None),
                    &change,
                    None,
                    OffsetDateTime::now_utc(),
                )
                .await
                .map_err(|e| refused(e, id))?;
            return Ok(Answered {
                webhook: changed.webhook,
                replayed: false,
            });
        };
        if self.begin(&claim).await?.is_some() {
            let (_, stored) = self.changeable(key, id).await?;
            return Ok(Answered {
                webhook: stored.webhook,
                replayed: true,
            });
        }
        let changed = self
            .webhooks
            .update(
                uuid,
                &caller(key, None),
                &change,
                Some((&claim, "reset")),
                OffsetDateTime::now_utc(),
            )
            .await;
        match changed {
            Ok(stored) => Ok(Answered {
                webhook: stored.webhook,
                replayed: false,
            }),
            Err(error) => {
                self.give_up(&claim).await;
                Err(refused(error, id))
            }
        }
    }
}

fn caller(key: &ApiKey, if_match: Option<u64>) -> Caller<'_> {
    Caller {
        api_key_id: &key.id,
        company_ids: &key.company_ids,
        if_match,
    }
}

/// A refused change as the client sees it.
fn refused(error: ChangeError, id: &str) -> ServiceError {
    match error {
        ChangeError::NotFound => ServiceError::WebhookNotFound {
            resource_id: id.to_owned(),
        },
        ChangeError::CompanyDenied => ServiceError::ResourceAccessDenied,
        ChangeError::PreconditionFailed => ServiceError::PreconditionFailed,
        ChangeError::SecretMoved => {
            ServiceError::Unavailable(crate::store::StoreError::Unavailable {
                operation: "change webhook",
                kind: "the record changed during the request".into(),
            })
        }
        ChangeError::Store(error) => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_are_hyphenated_uuids_in_any_case() {
        let id = "1B4E28BA-2FA1-4D2B-883F-0016D3CCA427";
        assert_eq!(
            parse_webhook_id(id).unwrap(),
            Uuid::try_parse(&id.to_lowercase()).unwrap()
        );
        for bad in [
            "",
            "abc",
            "1b4e28ba2fa14d2b883f0016d3cca427",
            "{1b4e28ba-2fa1-4d2b-883f-0016d3cca427}",
            "1b4e28ba-2fa1-4d2b-883f-0016d3cca42g",
        ] {
            assert_eq!(
                parse_webhook_id(bad),
                Err(ServiceError::WebhookNotFound {
                    resource_id: bad.into()
                })
            );
        }
    }
}
