//! What one delivery sends: the JSON body and the header set (DELIVERY.md, "One delivery").
//!
//! The body is built once per delivery and kept byte for byte across retries (its `timestamp`
//! is the event's time); the headers are built per attempt (`webhook-timestamp` is the
//! attempt's time, and the signature covers it).

use std::fmt;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::signature::Signer;
use crate::domain::time_format::rfc3339;
use crate::domain::{CustomHeader, EventType};

/// `user-agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("InstaView-Webhooks/", env!("CARGO_PKG_VERSION"));

/// Standard Webhooks header names.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Unix seconds of the attempt.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64>`, two of them during a rotation.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The body of one delivery, serialized once: `{"event","timestamp","deliveryId","data"}`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeliveryBody {
    delivery_id: Uuid,
    json: String,
}

#[derive(Serialize)]
struct Wire<'a> {
    event: &'static str,
    timestamp: String,
    #[serde(rename = "deliveryId")]
    delivery_id: String,
    data: &'a Value,
}

impl DeliveryBody {
    /// Builds the body of a delivery of `event` that happened at `occurred_at`.
    pub fn new(
        event: EventType,
        occurred_at: OffsetDateTime,
        delivery_id: Uuid,
        data: &Value,
    ) -> Self {
        let wire = Wire {
            event: event.as_str(),
            timestamp: rfc3339(occurred_at),
            delivery_id: delivery_id.to_string(),
            data,
        };
        // A struct of strings and a `Value` always serializes.
        let json = serde_json::to_string(&wire).expect("a delivery body serializes");
        Self { delivery_id, json }
    }

    /// The test ping of `POST /webhooks/{id}/test`: `data: {"webhookId": "<id>"}`.
    pub fn ping(webhook_id: &str, at: OffsetDateTime, delivery_id: Uuid) -> Self {
        Self::new(
            EventType::Ping,
            at,
            delivery_id,
            &serde_json::json!({ "webhookId": webhook_id }),
        )
    }

    /// Rebuilds a body kept from an earlier attempt (the pipeline's queue message).
    pub fn from_stored(delivery_id: Uuid, json: String) -> Self {
        Self { delivery_id, json }
    }

    /// The delivery id, also sent as `webhook-id` (the same on every retry).
    pub fn delivery_id(&self) -> Uuid {
        self.delivery_id
    }

    /// The exact JSON text that is sent and signed.
    pub fn as_str(&self) -> &str {
        &self.json
    }
}

// Bodies carry customer data: never printed, only measured.
impl fmt::Debug for DeliveryBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryBody")
            .field("delivery_id", &self.delivery_id)
            .field("len", &self.json.len())
            .finish()
    }
}

/// A custom header could not be turned into an HTTP header. Cannot happen for headers that
/// passed registration; reported rather than panicking because the values come from storage.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("custom header {name} cannot be sent")]
pub struct InvalidCustomHeader {
    /// The header's name (names are not secret; values are).
    pub name: String,
}

/// One attempt, ready for the sender: the body and every header but `host` and
/// `content-length` (the sender's, since they depend on the connection).
#[derive(Clone)]
pub struct SignedRequest {
    body: Bytes,
    headers: HeaderMap,
}

impl SignedRequest {
    /// Signs `body` for an attempt made at `attempt_at` and adds the webhook's custom headers
    /// (names and values as stored in its secret), in DELIVERY.md's order.
    pub fn new(
        body: &DeliveryBody,
        attempt_at: OffsetDateTime,
        signer: &Signer,
        custom_headers: &[CustomHeader],
    ) -> Result<Self, InvalidCustomHeader> {
        let id = body.delivery_id().to_string();
        let timestamp = attempt_at.unix_timestamp();
        let signature = signer.signature_header(&id, timestamp, body.as_str());

        let mut headers = HeaderMap::with_capacity(5 + custom_headers.len());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        // A UUID, decimal digits and base64 are always valid header values.
        let valid = "uuid, digits and base64 are header-safe";
        headers.insert(WEBHOOK_ID, HeaderValue::from_str(&id).expect(valid));
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(
            WEBHOOK_SIGNATURE,
            HeaderValue::from_str(&signature).expect(valid),
        );
        for header in custom_headers {
            let invalid = || InvalidCustomHeader {
                name: header.name().to_owned(),
            };
            let name = HeaderName::from_bytes(header.name().as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(header.expose_value()).map_err(|_| invalid())?;
            // Marks the value as secret for anything that prints a HeaderMap.
            value.set_sensitive(true);
            headers.append(name, value);
        }
        Ok(Self {
            body: Bytes::from(body.as_str().to_owned()),
            headers,
        })
    }

    /// The headers in sending order.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

// Header values include customers' credentials and bodies customer data: names only.
impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRequest")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::custom_header::{HeaderName as Name, HeaderValue as Val};
    use crate::domain::SigningSecret;
    use time::macros::datetime;

    const ID: Uuid = uuid::uuid!("7b3e8a7c-5a1d-4c3e-9f1a-2b3c4d5e6f70");

    fn signer() -> Signer {
        Signer::new(&SigningSecret::from_stored("ab".repeat(32))).unwrap()
    }

    #[test]
    fn body_has_event_timestamp_delivery_id_and_data_in_that_order() {
        let body = DeliveryBody::ping(
            "0d9f0e43-8f6f-4a57-9a8e-9d1f2b0b1c11",
            datetime!(2026-11-27 10:30:00.123 UTC),
            ID,
        );
        assert_eq!(
            body.as_str(),
            r#"{"event":"ping","timestamp":"2026-11-27T10:30:00Z","deliveryId":"7b3e8a7c-5a1d-4c3e-9f1a-2b3c4d5e6f70","data":{"webhookId":"0d9f0e43-8f6f-4a57-9a8e-9d1f2b0b1c11"}}"#
        );
    }

    #[test]
    fn headers_come_in_the_documented_order_with_custom_headers_last() {
        let body = DeliveryBody::ping("w", datetime!(2026-11-27 10:30 UTC), ID);
        let custom = CustomHeader::new(
            Name::parse("X-Customer-Auth").unwrap(),
            Val::parse("Bearer t0ken").unwrap(),
        );
        let request =
            SignedRequest::new(&body, datetime!(2026-11-27 10:31 UTC), &signer(), &[custom])
                .unwrap();
        let names: Vec<&str> = request.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "user-agent",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "x-customer-auth"
            ]
        );
        let h = request.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            h["user-agent"],
            concat!("InstaView-Webhooks/", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(h["webhook-id"], ID.to_string().as_str());
        assert_eq!(h["webhook-timestamp"], "1795775460");
        assert_eq!(h["x-customer-auth"], "Bearer t0ken");
        assert_eq!(request.body().as_ref(), body.as_str().as_bytes());
    }

    #[test]
    fn debug_shows_neither_header_values_nor_body() {
        let body = DeliveryBody::ping("secret-data", datetime!(2026-11-27 10:30 UTC), ID);
        let custom = CustomHeader::new(
            Name::parse("X-Customer-Auth").unwrap(),
            Val::parse("Bearer t0ken").unwrap(),
        );
        let request =
            SignedRequest::new(&body, datetime!(2026-11-27 10:31 UTC), &signer(), &[custom])
                .unwrap();
        let shown = format!("{request:?} {body:?}");
        assert!(shown.contains("x-customer-auth"));
        for hidden in ["t0ken", "secret-data", "v1,"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
    }
}
