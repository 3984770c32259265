//! `POST /webhooks/{id}/rotate-secret`: a new signing secret, with the old one still signing
//! for a grace period.
//!
//! The new secret goes into a new version of the webhook's secret (the old current secret
//! becomes `previousSigningSecret` until the grace ends; an older previous one is dropped, so at
//! most two sign), and the record's pointer moves to that version in one conditional write.
//! So an answer of 200 always names a stored secret, and the old secret is never lost inside its
//! grace period: until the pointer moves, deliveries sign with the old version as before.

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::{change_backoff, App, ServiceError, CHANGE_ATTEMPTS};
use crate::domain::{ApiKey, FieldError, IdempotencyClaim, SigningSecret, Webhook};
use crate::store::delivery_log::{DeliveryLog, PipelineQueue};
use crate::store::{
    ApiKeyStore, Caller, ChangeError, PreviousSecret, SecretDocument, SecretRef, SecretStore,
    SecretSwap, StoreError, WebhookChange, WebhookStore,
};

/// The grace period when the request names none: a day.
pub const DEFAULT_GRACE_SECONDS: u32 = 86_400;
/// The longest grace period: a week.
pub const MAX_GRACE_SECONDS: u32 = 604_800;

/// A rotated webhook and its new secret, to show once.
#[derive(Debug)]
pub struct Rotated {
    pub webhook: Webhook,
    pub signing_secret: SigningSecret,
    /// Until when the previous secret still signs; `None` with a grace period of 0.
    pub previous_expires_at: Option<OffsetDateTime>,
    pub replayed: bool,
}

/// The optional body `{"gracePeriodSeconds": 0..604800}`: the grace period in seconds.
pub fn parse_grace_period(body: &[u8]) -> Result<u32, ServiceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_GRACE_SECONDS);
    }
    let value = crate::domain::strict_json::from_slice(body)
        .map_err(|_| ServiceError::invalid("body", "request body must be valid JSON"))?;
    let Value::Object(object) = value else {
        return Err(ServiceError::invalid(
            "body",
            "request body must be a JSON object",
        ));
    };
    let mut errors = Vec::new();
    let mut grace = DEFAULT_GRACE_SECONDS;
    for (name, value) in &object {
        if name != "gracePeriodSeconds" {
            errors.push(FieldError::new(
                "body",
                "gracePeriodSeconds is the only field",
            ));
            break;
        }
        match value
            .as_u64()
            .filter(|s| *s <= u64::from(MAX_GRACE_SECONDS))
        {
            Some(seconds) => grace = u32::try_from(seconds).unwrap_or(MAX_GRACE_SECONDS),
            None => errors.push(FieldError::new(
                "gracePeriodSeconds",
                format!("gracePeriodSeconds must be a whole number from 0 to {MAX_GRACE_SECONDS}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(grace)
    } else {
        Err(ServiceError::Validation(errors))
    }
}

impl<K: ApiKeyStore, W: WebhookStore, S: SecretStore, L: DeliveryLog, Q: PipelineQueue>
    App<K, W, S, L, Q>
{
    /// Rotates the signing secret of webhook `id`. `if_match` (the version the caller last saw)
    /// lets clients serialise rotations: a stale one is "precondition failed" and writes nothing.
    /// With an idempotency claim, the pointer's move and the claim's completion are one write,
    /// and a retry answers the same new secret while it is still the webhook's
    /// ([`Self::replay_rotation`]; the retry's `If-Match` was judged by the first request).
    pub async fn rotate_secret(
        &self,
        key: &ApiKey,
        id: &str,
        grace_seconds: u32,
        if_match: Option<u64>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Rotated, ServiceError> {
        if let Some(claim) = &claim {
            if let Some(version) = self.begin(claim).await? {
                return self.replay_rotation(key, id, version).await;
            }
        }
        let rotated = self
            .rotate(key, id, grace_seconds, if_match, claim.as_ref())
            .await;
        if rotated.is_err() {
            if let Some(claim) = &claim {
                self.give_up(claim).await;
            }
        }
        rotated
    }

    async fn rotate(
        &self,
        key: &ApiKey,
        id: &str,
        grace_seconds: u32,
        if_match: Option<u64>,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Rotated, ServiceError> {
        let signing_secret = SigningSecret::try_generate()
            .map_err(|_| ServiceError::Internal("the OS random number generator failed".into()))?;
        // `If-Match` is a condition of the record's write too, so that of rotations racing with
        // the same tag exactly one lands.
        let caller = Caller {
            api_key_id: &key.id,
            company_ids: &key.company_ids,
            if_match,
        };
        for attempt in 0..CHANGE_ATTEMPTS {
            let (uuid, stored) = self.changeable(key, id).await?;
            // A stale tag is refused before a secret version is written for nothing.
            if if_match.is_some_and(|v| v != stored.webhook.version) {
                return Err(ServiceError::PreconditionFailed);
            }
            let current = match self.secrets.read_webhook_secret(&stored.secret).await {
                Ok(current) => current,
                Err(error) => return Err(self.secret_failed(key, id, error).await),
            };
            let now = OffsetDateTime::now_utc();
            let previous_expires_at = (grace_seconds > 0).then(|| {
                crate::store::whole_seconds(now) + Duration::seconds(grace_seconds.into())
            });
            let document = SecretDocument {
                signing_secret: signing_secret.clone(),
                previous: previous_expires_at.map(|expires_at| PreviousSecret {
                    signing_secret: current.signing_secret.clone(),
                    expires_at,
                }),
                headers: current.headers,
            };
            let to = match self
                .secrets
                .put_webhook_secret(&stored.secret, &document)
                .await
            {
                Ok(to) => to,
                Err(error) => return Err(self.secret_failed(key, id, error).await),
            };
            let version = to.version.clone().unwrap_or_default();
            let change = WebhookChange {
                secret: Some(SecretSwap {
                    from: stored.secret,
                    to,
                    header_names: None,
                }),
                ..WebhookChange::default()
            };
            let completion = claim.map(|claim| (claim, version.as_str()));
            match self
                .webhooks
                .update(uuid, &caller, &change, completion, now)
                .await
            {
                Ok(changed) => {
                    return Ok(Rotated {
                        webhook: changed.webhook,
                        signing_secret,
                        previous_expires_at,
                        replayed: false,
                    })
                }
                Err(ChangeError::SecretMoved) => tokio::time::sleep(change_backoff(attempt)).await,
                Err(ChangeError::NotFound) => {
                    return Err(ServiceError::WebhookNotFound {
                        resource_id: id.to_owned(),
                    })
                }
                Err(ChangeError::CompanyDenied) => return Err(ServiceError::ResourceAccessDenied),
                Err(ChangeError::PreconditionFailed) => {
                    return Err(ServiceError::PreconditionFailed)
                }
                Err(ChangeError::Store(error)) => return Err(error.into()),
            }
        }
        Err(ServiceError::Unavailable(StoreError::Unavailable {
            operation: "rotate secret",
            kind: "too many concurrent changes".into(),
        }))
    }

    /// Answers a rotation again: the secret version it wrote holds its new secret. First the
    /// webhook must still be there and the key's to rotate (else the answer a new rotation
    /// would get: 404, 403). Then that secret must still be the webhook's signing secret: after
    /// a newer rotation it signs for a grace period at most, or not at all, and handing it out
    /// as "the new secret" would have the client configure a superseded one; that replay is
    /// refused ([`ServiceError::RotationSuperseded`], 412) and changes nothing. A later change
    /// of the headers alone moves the record to another version with the same signing secret:
    /// still current, replayed.
    async fn replay_rotation(
        &self,
        key: &ApiKey,
        id: &str,
        version: String,
    ) -> Result<Rotated, ServiceError> {
        let (_, stored) = self.changeable(key, id).await?;
        let secret = SecretRef {
            arn: stored.secret.arn.clone(),
            version: Some(version),
        };
        let document = self.secrets.read_webhook_secret(&secret).await?;
        if stored.secret != secret {
            let current = self.secrets.read_webhook_secret(&stored.secret).await?;
            if current.signing_secret.expose() != document.signing_secret.expose() {
                return Err(ServiceError::RotationSuperseded);
            }
        }
        Ok(Rotated {
            webhook: stored.webhook,
            signing_secret: document.signing_secret,
            previous_expires_at: document.previous.map(|p| p.expires_at),
            replayed: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_defaults_to_a_day() {
        assert_eq!(parse_grace_period(b"").unwrap(), 86_400);
        assert_eq!(parse_grace_period(b"{}").unwrap(), 86_400);
    }

    #[test]
    fn grace_period_is_0_to_a_week() {
        assert_eq!(
            parse_grace_period(br#"{"gracePeriodSeconds":0}"#).unwrap(),
            0
        );
        assert_eq!(
            parse_grace_period(br#"{"gracePeriodSeconds":604800}"#).unwrap(),
            604_800
        );
        for bad in [
            &br#"{"gracePeriodSeconds":604801}"#[..],
            br#"{"gracePeriodSeconds":-1}"#,
            br#"{"gracePeriodSeconds":1.5}"#,
            br#"{"gracePeriodSeconds":"60"}"#,
            br#"{"other":1}"#,
            b"[]",
            b"{",
        ] {
            assert!(
                parse_grace_period(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
