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
        }
    }
}
