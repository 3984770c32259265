//! Signed deliveries to receivers: the Standard Webhooks signer ([`signature`]), the body and
//! headers of one attempt ([`payload`]) and the one HTTP client that sends them ([`sender`]).
//!
//! Used by `POST /webhooks/{id}/test`, secret rotation and the event pipeline:
//! ```text
//! let body = DeliveryBody::ping(webhook_id, now, delivery_id);
//! let signer = Signer::new(&secret)?;            // .with_previous(..) during a rotation
//! let request = SignedRequest::new(&body, now, &signer, &custom_headers)?;
//! let outcome = sender.send(&url, &request, timeout, deadline).await;
//! ```

pub mod payload;
pub mod sender;
pub mod signature;

pub use payload::{DeliveryBody, InvalidCustomHeader, SignedRequest};
pub use sender::{ConnectionFailure, Outcome, Resolve, Sender, SystemResolver};
pub use signature::{InvalidSigningSecret, Signer, SigningKey};

use time::OffsetDateTime;

use crate::store::SecretDocument;

/// The signer of a webhook's secret document at `now`: its signing secret, and the previous
/// one while a rotation's grace period runs.
pub fn signer_for(
    document: &SecretDocument,
    now: OffsetDateTime,
) -> Result<Signer, InvalidSigningSecret> {
    let signer = Signer::new(&document.signing_secret)?;
    match &document.previous {
        Some(previous) => signer.with_previous(&previous.signing_secret, previous.expires_at, now),
        None => Ok(signer),
    }
}
