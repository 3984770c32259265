//! The two queues' messages: a platform event (events queue) and one pending delivery
//! (deliveries queue). Parsed once at the edge; everything after trusts the types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::EventType;

/// An event published by InstaView's platform: `{"event","companyId","data","occurredAt"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event: EventType,
    pub company_id: Uuid,
    pub data: Value,
    pub occurred_at: OffsetDateTime,
}

/// Why an event message can never be fanned out (it goes to the dead-letter queue).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MalformedEvent {
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("`event` is missing or not a known event type")]
    Event,
    #[error("`companyId` is missing or not a UUID")]
    CompanyId,
    #[error("`data` is missing")]
    Data,
    #[error("`occurredAt` is missing or not an RFC 3339 time")]
    OccurredAt,
}

impl Event {
    /// Parses an events-queue message body.
    pub fn parse(body: &str) -> Result<Self, MalformedEvent> {
        let value: Value = serde_json::from_str(body).map_err(|_| MalformedEvent::NotAnObject)?;
        let object = value.as_object().ok_or(MalformedEvent::NotAnObject)?;
        let text = |name: &str| object.get(name).and_then(Value::as_str);
        let event = text("event")
            .and_then(EventType::parse)
            // `ping` is the test route's alone; the platform never publishes it.
            .filter(|event| *event != EventType::Ping)
            .ok_or(MalformedEvent::Event)?;
        let company_id = text("companyId")
            .and_then(|c| Uuid::try_parse(c).ok())
            .ok_or(MalformedEvent::CompanyId)?;
        let data = object.get("data").cloned().ok_or(MalformedEvent::Data)?;
        let occurred_at = text("occurredAt")
            .and_then(parse_rfc3339)
            .ok_or(MalformedEvent::OccurredAt)?;
        Ok(Self {
            event,
            company_id,
            data,
            occurred_at,
        })
    }

    /// The message body (what `events publish` and the platform send).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "event": self.event.as_str(),
            "companyId": self.company_id.to_string(),
            "data": self.data,
            "occurredAt": rfc3339(self.occurred_at),
        })
        .to_string()
    }
}

/// The delivery id of `event_message_id`'s delivery to `webhook_id`: derived, not drawn, so that
/// a fan-out that runs again for the same queue message (at least once) makes the same deliveries
/// with the same `webhook-id`, which receivers drop as duplicates.
pub fn delivery_id(event_message_id: &str, webhook_id: Uuid) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"instaview-delivery\0")
        .chain_update(event_message_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(webhook_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // A version 8 ("custom") UUID: any UUID parser accepts it.
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// One pending attempt of one delivery (deliveries queue). The body is built once at fan-out
/// and sent byte for byte on every attempt; only the signature's timestamp changes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryMessage {
    #[serde(with = "uuid_text")]
    pub delivery_id: Uuid,
    #[serde(with = "uuid_text")]
    pub webhook_id: Uuid,
    /// The event's company: deliver checks again, before each attempt, that the webhook's key
    /// still holds it. Absent only in messages queued before this field existed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_uuid_text"
    )]
    pub company_id: Option<Uuid>,
    /// The event type (for logs and attempt records; the body has it too).
    pub event: String,
    /// The exact JSON body `{"event","timestamp","deliveryId","data"}`.
    pub body: String,
    /// The attempt this message is for: 1 is the first, `maxRetries + 1` the last.
    pub attempt: u32,
    /// Unix seconds before which the attempt must not be made. SQS delays a message by at most
    /// 15 minutes; a longer wait is made of several delayed sends (see `deliver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
}

impl DeliveryMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a delivery message serializes")
    }

    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

/// UUIDs as their text (the `uuid` crate is built without its `serde` feature).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Uuid::try_parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An optional UUID as its text.
mod opt_uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Option<Uuid>, serializer: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.collect_str(id),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Uuid>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => Uuid::try_parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event":"interview.completed","companyId":"3f1c2a9e-8b4d-4e6f-9a7b-1c2d3e4f5a6b","data":{"interviewId":"i-1"},"occurredAt":"2026-11-27T12:00:00Z"}"#;

    #[test]
    fn parses_a_platform_event_and_writes_it_back() {
        let event = Event::parse(GOOD).unwrap();
        assert_eq!(event.event, EventType::InterviewCompleted);
        assert_eq!(Event::parse(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn malformed_events_say_which_field_is_wrong() {
        let with = |field: &str, value: Value| {
            let mut v: Value = serde_json::from_str(GOOD).unwrap();
            v[field] = value;
            Event::parse(&v.to_string()).unwrap_err()
        };
        assert_eq!(
            Event::parse("not json").unwrap_err(),
            MalformedEvent::NotAnObject
        );
        assert_eq!(Event::parse("[]").unwrap_err(), MalformedEvent::NotAnObject);
        assert_eq!(with("event", "nope".into()), MalformedEvent::Event);
        assert_eq!(with("event", "ping".into()), MalformedEvent::Event);
        assert_eq!(with("companyId", "acme".into()), MalformedEvent::CompanyId);
        assert_eq!(
            with("occurredAt", "yesterday".into()),
            MalformedEvent::OccurredAt
        );
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        v.as_object_mut().unwrap().remove("data");
        assert_eq!(
            Event::parse(&v.to_string()).unwrap_err(),
            MalformedEvent::Data
        );
    }

    #[test]
    fn delivery_ids_are_stable_per_event_message_and_webhook() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(delivery_id("m1", a), delivery_id("m1", a));
        assert_ne!(delivery_id("m1", a), delivery_id("m1", b));
        assert_ne!(delivery_id("m1", a), delivery_id("m2", a));
        assert_eq!(delivery_id("m1", a).get_version_num(), 8);
    }
}
