//! A created webhook: what is stored and what the client sees (minus the signing secret).

use time::OffsetDateTime;
use uuid::Uuid;

use super::event_type::EventType;
use super::new_webhook::NewWebhook;

/// Delivery settings every new webhook starts with (the documentation's values).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;

/// A webhook as stored: no secret material, only the names of its custom headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub api_key_id: String,
    pub company_id: Option<Uuid>,
    pub url: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub header_names: Vec<String>,
    pub events: Vec<EventType>,
    pub is_active: bool,
    pub max_retries: u32,
    pub timeout_ms: u32,
    pub consecutive_failures: u32,
    pub circuit_opened_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Goes up by one with every change of the webhook; its `ETag`.
    pub version: u64,
}

impl Webhook {
    /// A new, active webhook for `request`, owned by the key `api_key_id`.
    pub fn new(id: Uuid, api_key_id: &str, request: &NewWebhook, now: OffsetDateTime) -> Self {
        // Whole seconds, as in the documentation's timestamps (and so equal after a round trip).
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Self {
            id,
            api_key_id: api_key_id.to_owned(),
            company_id: request.company_id,
            url: request.url.as_str().to_owned(),
            name: request.name.clone(),
            description: request.description.clone(),
            header_names: request
                .headers
                .iter()
                .map(|h| h.name().to_owned())
                .collect(),
            events: request.events.clone(),
            is_active: true,
            max_retries: DEFAULT_MAX_RETRIES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            consecutive_failures: 0,
            circuit_opened_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// The strong entity tag of this state of the webhook.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// Whether the circuit breaker is open (deliveries are dropped until a reset).
    pub fn circuit_open(&self) -> bool {
        self.circuit_opened_at.is_some()
    }
}

/// Reads an `If-Match` value: one strong entity tag as [`Webhook::etag`] makes it.
/// `None` when it is not one (the caller answers 412: it cannot match).
pub fn parse_etag(value: &str) -> Option<u64> {
    let inner = value.trim().strip_prefix('"')?.strip_suffix('"')?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) || inner.len() > 19 {
        return None;
    }
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_strong_and_read_back() {
        assert_eq!(parse_etag("\"7\""), Some(7));
        assert_eq!(parse_etag(" \"12\" "), Some(12));
        for bad in [
            "7",
            "W/\"7\"",
            "\"\"",
            "\"x\"",
            "*",
            "\"99999999999999999999\"",
        ] {
            assert_eq!(parse_etag(bad), None, "{bad}");
        }
    }
}
