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
    #[error(
        "the event is {bytes} bytes as compact JSON, more than the {MAX_EVENT_BYTES} allowed \
         (each delivery carries it escaped inside an SQS message of at most \
         {SQS_MAX_MESSAGE_BYTES} bytes)"
    )]
    TooLarge { bytes: usize },
}

impl MalformedEvent {
    /// The `Reason` dimension of the `EventsRefused` metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            MalformedEvent::TooLarge { .. } => "too large",
            _ => "malformed",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The size of an event (issue 15, item 5). Each delivery message carries the delivery body, a
// JSON text, as an escaped JSON string; SQS refuses a message over the queue's
// MaximumMessageSize. The cap on an event follows from the message format:
//
//   body    = {"event":E,"timestamp":T,"deliveryId":ID,"data":D}
//   event   = {"event":E,"companyId":C,"data":D,"occurredAt":T}     (`Event::to_json`)
//   message = {"deliveryId":ID,"webhookId":ID,"companyId":ID,"event":E,"body":<body escaped>,
//              "attempt":N,"notBefore":S}
//
// E, T and D are the same bytes in the event and in the body, so len(body) = len(event) -
// EVENT_FRAME + BODY_FRAME. The body is compact serde_json output, which holds no control
// character: escaping it as a string doubles at most the `"` and `\` it holds, so the escaped
// body is at most 2 x len(body). The rest of the message is MESSAGE_FRAME at most (the longest
// event type, the most digits of `attempt` and `notBefore`).

/// SQS's largest message: the queue's MaximumMessageSize (the default, 256 KiB).
pub const SQS_MAX_MESSAGE_BYTES: usize = 262_144;
/// DynamoDB's largest item (400 KB); the delivery log (issue 17) stores each event once.
pub const DYNAMODB_MAX_ITEM_BYTES: usize = 400 * 1024;
/// The largest event accepted, as its compact JSON ([`Event::to_json`]): at ingest by fan-out
/// (bigger ones go to the events dead-letter queue) and by `webhooks-admin events publish`.
/// A round figure under the largest that fits (the assertions below), leaving about 5.8 KB
/// of the SQS message for fields a later message format may add.
pub const MAX_EVENT_BYTES: usize = 128_000;

const UUID_TEXT: usize = 36;
/// Longer than every event type's name (a unit test checks).
const LONGEST_EVENT_TYPE: usize = 32;
/// `u32::MAX` (`attempt`) and `i64::MIN` (`notBefore`) as text.
const ATTEMPT_DIGITS: usize = 10;
const NOT_BEFORE_DIGITS: usize = 20;
/// The event's JSON without E, T and D.
const EVENT_FRAME: usize =
    r#"{"event":"","companyId":"","data":,"occurredAt":""}"#.len() + UUID_TEXT;
/// The body's JSON without E, T and D.
const BODY_FRAME: usize =
    r#"{"event":"","timestamp":"","deliveryId":"","data":}"#.len() + UUID_TEXT;
/// A delivery message without its body, at its longest.
const MESSAGE_FRAME: usize = r#"{"deliveryId":"","webhookId":"","companyId":"","event":"","body":"","attempt":,"notBefore":}"#
    .len()
    + 3 * UUID_TEXT
    + LONGEST_EVENT_TYPE
    + ATTEMPT_DIGITS
    + NOT_BEFORE_DIGITS;

/// The longest delivery message an event of `event_bytes` (its compact JSON) can make.
pub const fn max_delivery_message_bytes(event_bytes: usize) -> usize {
    MESSAGE_FRAME + 2 * (event_bytes - EVENT_FRAME + BODY_FRAME)
}

// Every delivery message of the largest event fits in SQS, and the event fits in one DynamoDB
// item with room to spare for the attributes around it.
const _: () = assert!(max_delivery_message_bytes(MAX_EVENT_BYTES) <= SQS_MAX_MESSAGE_BYTES);
const _: () = assert!(MAX_EVENT_BYTES + 64 * 1024 <= DYNAMODB_MAX_ITEM_BYTES);

impl Event {
    /// Parses an events-queue message body.
    pub fn parse(body: &str) -> Result<Self, MalformedEvent> {
        let value: Value = serde_json::from_str(body).map_err(|_| MalformedEvent::NotAnObject)?;
        let object = value.as_object().ok_or(MalformedEvent::NotAnObject)?;
        let text = |name: &str| object.get(name).and_then(Value::as_str);
        let event = text("event")
            .and_then(EventType::parse)
            // `ping` is the test route's alone, and the operational types the pipeline's: the
            // platform publishes neither.
            .filter(|event| event.is_published())
            .ok_or(MalformedEvent::Event)?;
        let company_id = text("companyId")
            .and_then(|c| Uuid::try_parse(c).ok())
            .ok_or(MalformedEvent::CompanyId)?;
        let data = object.get("data").cloned().ok_or(MalformedEvent::Data)?;
        let occurred_at = text("occurredAt")
            .and_then(parse_rfc3339)
            .ok_or(MalformedEvent::OccurredAt)?;
        let event = Self {
            event,
            company_id,
            data,
            occurred_at,
        };
        // Measured on the compact form, which every delivery carries: the message as sent may
        // be shorter (`1e15` is re-encoded as `1000000000000000.0`) or longer (whitespace).
        let bytes = event.to_json().len();
        if bytes > MAX_EVENT_BYTES {
            return Err(MalformedEvent::TooLarge { bytes });
        }
        Ok(event)
    }

    /// The compact message body (what `events publish` sends; its length is the event's size).
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
    use crate::delivery::DeliveryBody;

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
        assert_eq!(
            with("event", "webhook.circuit_opened".into()),
            MalformedEvent::Event
        );
        assert_eq!(
            with("event", "delivery.failed".into()),
            MalformedEvent::Event
        );
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

    /// An event of `event` whose compact JSON is exactly `bytes` long, its data a string made of
    /// `fill` (a character JSON escapes, `"`, is the worst case for the delivery message).
    fn event_of(event: EventType, bytes: usize, fill: char) -> String {
        let frame = |data: &str| {
            json_event(event, &serde_json::Value::String(data.to_owned()))
                .to_json()
                .len()
        };
        let per_char = frame(&fill.to_string()) - frame("");
        let missing = bytes - frame("");
        assert_eq!(
            missing % per_char,
            0,
            "fill {fill:?} reaches {bytes} exactly"
        );
        let data = fill.to_string().repeat(missing / per_char);
        let text = json_event(event, &serde_json::Value::String(data)).to_json();
        assert_eq!(text.len(), bytes);
        text
    }

    fn json_event(event: EventType, data: &Value) -> Event {
        Event {
            event,
            company_id: Uuid::from_u128(7),
            data: data.clone(),
            occurred_at: parse_rfc3339("2026-12-03T12:00:00.123456789Z").unwrap(),
        }
    }

    #[test]
    fn an_event_at_the_size_limit_is_accepted_and_one_byte_more_is_refused() {
        let at_limit = event_of(EventType::InterviewCompleted, MAX_EVENT_BYTES, 'a');
        assert!(Event::parse(&at_limit).is_ok());
        let over = event_of(EventType::InterviewCompleted, MAX_EVENT_BYTES + 1, 'a');
        let refused = Event::parse(&over).unwrap_err();
        assert_eq!(
            refused,
            MalformedEvent::TooLarge {
                bytes: MAX_EVENT_BYTES + 1
            }
        );
        assert_eq!(refused.metric_reason(), "too large");
        assert!(refused.to_string().contains("128001 bytes"), "{refused}");
        // The size is the compact form's: whitespace in the message does not count...
        let spaced = at_limit.replace(r#""data":"#, r#""data":   "#);
        assert!(Event::parse(&spaced).is_ok());
        // ...and numbers count as they are re-encoded (`1e15` is 18 bytes in a delivery).
        let mut numbers = serde_json::from_str::<Value>(GOOD).unwrap();
        numbers["data"] = Value::Array(vec![serde_json::json!(1e15); MAX_EVENT_BYTES / 16]);
        let short = serde_json::to_string(&numbers)
            .unwrap()
            .replace("1000000000000000.0", "1e15");
        assert!(short.len() < MAX_EVENT_BYTES);
        assert!(matches!(
            Event::parse(&short),
            Err(MalformedEvent::TooLarge { .. })
        ));
    }

    #[test]
    fn the_message_frames_are_those_of_the_real_formats() {
        for event in EventType::ALL {
            assert!(
                event.as_str().len() <= LONGEST_EVENT_TYPE,
                "{}",
                event.as_str()
            );
        }
        let event = json_event(
            EventType::AnalysisCompleted,
            &serde_json::json!({"a": [1, "b"]}),
        );
        let id = delivery_id("m", Uuid::from_u128(1));
        let body = DeliveryBody::new(event.event, event.occurred_at, id, &event.data);
        let event_bytes = event.to_json().len();
        assert_eq!(body.as_str().len(), event_bytes - EVENT_FRAME + BODY_FRAME);
        // A body without characters to escape: the message is the frame plus the body, less
        // what this event type's name is shorter than the longest.
        let plain = json_event(EventType::AnalysisCompleted, &serde_json::json!(12));
        let body = DeliveryBody::new(plain.event, plain.occurred_at, id, &plain.data);
        let message = DeliveryMessage {
            delivery_id: id,
            webhook_id: Uuid::from_u128(2),
            company_id: Some(plain.company_id),
            event: plain.event.as_str().to_owned(),
            body: body.as_str().to_owned(),
            attempt: u32::MAX,
            not_before: Some(i64::MIN),
        }
        .to_json();
        let quotes = body.as_str().matches('"').count();
        assert_eq!(
            message.len(),
            MESSAGE_FRAME - (LONGEST_EVENT_TYPE - plain.event.as_str().len())
                + body.as_str().len()
                + quotes
        );
    }

    #[test]
    fn every_delivery_message_of_a_maximal_event_fits_in_sqs() {
        let longest = EventType::ALL
            .into_iter()
            .filter(|e| e.is_published())
            .max_by_key(|e| e.as_str().len())
            .unwrap();
        // Quotes and backslashes: each is escaped again in the message.
        for fill in ['"', '\\', 'a', '\u{e9}'] {
            let text = event_of(longest, MAX_EVENT_BYTES, fill);
            let event = Event::parse(&text).unwrap();
            let id = delivery_id("an-sqs-message-id", Uuid::from_u128(3));
            let message = DeliveryMessage {
                delivery_id: id,
                webhook_id: Uuid::from_u128(3),
                company_id: Some(event.company_id),
                event: event.event.as_str().to_owned(),
                body: DeliveryBody::new(event.event, event.occurred_at, id, &event.data)
                    .as_str()
                    .to_owned(),
                attempt: u32::MAX,
                not_before: Some(i64::MIN),
            }
            .to_json();
            assert!(
                message.len() <= max_delivery_message_bytes(MAX_EVENT_BYTES),
                "{fill:?}: {}",
                message.len()
            );
            assert!(message.len() <= SQS_MAX_MESSAGE_BYTES);
        }
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
