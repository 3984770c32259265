//! The two queues' messages: a platform event (events queue) and one pending delivery
//! (deliveries queue). Parsed once at the edge; everything after trusts the types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::time_format::{parse_rfc3339, rfc3339};
use crate::domain::EventType;
use crate::store::delivery_log::{EventId, LoggedEvent, RecoverJob};

/// An event published by InstaView's platform: `{"eventId"?,"event","companyId","data",
/// "occurredAt"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The publisher's id, if it gave one ([`Event::id`] derives one otherwise).
    pub event_id: Option<EventId>,
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
    #[error("`eventId` is not 1 to 100 of A-Z a-z 0-9 . _ : -")]
    EventId,
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
/// The largest event accepted, as its compact JSON without its id ([`Event::content_json`]):
/// at ingest by fan-out
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
const MESSAGE_FRAME: usize = r#"{"deliveryId":"","webhookId":"","companyId":"","event":"","body":"","attempt":,"notBefore":,"single":true,"retryBase":}"#
    .len()
    + 3 * UUID_TEXT
    + LONGEST_EVENT_TYPE
    + 2 * ATTEMPT_DIGITS
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
        let event_id = match object.get("eventId") {
            None | Some(Value::Null) => None,
            Some(id) => Some(
                id.as_str()
                    .and_then(EventId::parse)
                    .ok_or(MalformedEvent::EventId)?,
            ),
        };
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
            event_id,
            event,
            company_id,
            data,
            occurred_at,
        };
        // Measured on the compact form, which every delivery carries: the message as sent may
        // be shorter (`1e15` is re-encoded as `1000000000000000.0`) or longer (whitespace).
        // The publisher's id is not part of any delivery message: it does not count.
        let bytes = event.content_json().len();
        if bytes > MAX_EVENT_BYTES {
            return Err(MalformedEvent::TooLarge { bytes });
        }
        Ok(event)
    }

    /// The compact message body (what `events publish` sends; its length is the event's size).
    pub fn to_json(&self) -> String {
        match &self.event_id {
            None => self.content_json(),
            Some(id) => {
                let mut json = self.content_value();
                json["eventId"] = Value::String(id.as_str().to_owned());
                json.to_string()
            }
        }
    }

    /// The compact JSON of the event without its id: its size (the cap applies to it) and
    /// what an event without an id is identified by.
    pub fn content_json(&self) -> String {
        self.content_value().to_string()
    }

    fn content_value(&self) -> Value {
        serde_json::json!({
            "event": self.event.as_str(),
            "companyId": self.company_id.to_string(),
            "data": self.data,
            "occurredAt": rfc3339(self.occurred_at),
        })
    }

    /// The event's id: the publisher's, or one derived from the content (its compact JSON
    /// without an id), never the SQS message id: a redrive or a second publish of the same
    /// event is the same event, with the same delivery ids.
    pub fn id(&self) -> EventId {
        match &self.event_id {
            Some(id) => id.clone(),
            None => EventId::of_content(&self.content_json()),
        }
    }

    /// The event as the delivery log keeps it, accepted at `received_at`.
    pub fn logged(&self, received_at: OffsetDateTime) -> LoggedEvent {
        LoggedEvent {
            id: self.id(),
            event: self.event,
            company_id: Some(self.company_id),
            occurred_at: self.occurred_at,
            received_at,
            data: self.data.clone(),
        }
    }
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
    /// A resend: one attempt, never retried.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single: bool,
    /// Attempts made before this chain (a recovered delivery's earlier ones): the chain
    /// ends after `retryBase + maxRetries + 1`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_base: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl DeliveryMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a delivery message serializes")
    }

    pub fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }
}

/// A `recover` at work (deliveries queue): the API queues it as asked, deliver works it off in
/// steps, each queuing the window's next events and, when time runs short, this message again
/// with where it stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverMessage {
    pub job: RecoverJob,
    /// The last event (its `occurredKey`) queued by an earlier step.
    pub after: Option<String>,
    /// Unix seconds up to which earlier steps have paced their sends.
    pub paced_until: Option<i64>,
    /// Deliveries queued by earlier steps.
    pub queued: u64,
}

impl RecoverMessage {
    pub fn new(job: RecoverJob) -> Self {
        Self {
            job,
            after: None,
            paced_until: None,
            queued: 0,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({"recover": {
            "webhookId": self.job.webhook_id.to_string(),
            "since": crate::domain::time_format::rfc3339(self.job.since),
            "until": crate::domain::time_format::rfc3339(self.job.until),
            "after": self.after,
            "pacedUntil": self.paced_until,
            "queued": self.queued,
        }})
        .to_string()
    }

    /// A recover message, or `None` for any other body.
    pub fn parse(body: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(body).ok()?;
        let work = value.get("recover")?;
        let text = |name: &str| work.get(name).and_then(Value::as_str);
        Some(Self {
            job: RecoverJob {
                webhook_id: Uuid::try_parse(text("webhookId")?).ok()?,
                since: parse_rfc3339(text("since")?)?,
                until: parse_rfc3339(text("until")?)?,
            },
            after: text("after").map(str::to_owned),
            paced_until: work.get("pacedUntil").and_then(Value::as_i64),
            queued: work.get("queued").and_then(Value::as_u64).unwrap_or(0),
        })
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
    use crate::store::delivery_log::delivery_id;

    const GOOD: &str = r#"{"event":"interview.completed","companyId":"3f1c2a9e-8b4d-4e6f-9a7b-1c2d3e4f5a6b","data":{"interviewId":"i-1"},"occurredAt":"2026-11-27T12:00:00Z"}"#;

    #[test]
    fn recover_messages_read_back_and_are_never_deliveries() {
        let mut message = RecoverMessage::new(RecoverJob {
            webhook_id: Uuid::from_u128(4),
            since: parse_rfc3339("2026-12-01T00:00:00Z").unwrap(),
            until: parse_rfc3339("2026-12-02T00:00:00Z").unwrap(),
        });
        message.after = Some("1796378400000#e".into());
        message.paced_until = Some(1_796_378_400);
        message.queued = 7;
        let text = message.to_json();
        assert_eq!(RecoverMessage::parse(&text), Some(message));
        assert_eq!(DeliveryMessage::parse(&text), None);
        assert_eq!(RecoverMessage::parse(r#"{"deliveryId":"x"}"#), None);
    }

    #[test]
    fn an_events_id_is_the_publishers_or_its_contents() {
        let event = Event::parse(GOOD).unwrap();
        assert_eq!(event.event_id, None);
        assert_eq!(event.id(), Event::parse(GOOD).unwrap().id());
        let mut with_id: Value = serde_json::from_str(GOOD).unwrap();
        with_id["eventId"] = "evt_1".into();
        let event = Event::parse(&with_id.to_string()).unwrap();
        assert_eq!(event.id().as_str(), "evt_1");
        assert_eq!(Event::parse(&event.to_json()).unwrap(), event);
        with_id["eventId"] = "no spaces".into();
        assert_eq!(
            Event::parse(&with_id.to_string()).unwrap_err(),
            MalformedEvent::EventId
        );
    }

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
            event_id: None,
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
        let id = delivery_id(&EventId::parse("m").unwrap(), Uuid::from_u128(1));
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
            single: true,
            retry_base: u32::MAX,
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
            let id = delivery_id(&EventId::parse("e").unwrap(), Uuid::from_u128(3));
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
                single: true,
                retry_base: u32::MAX,
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
}
