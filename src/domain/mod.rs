//! The pure core: webhooks, event types, URL policy, custom headers, signing secrets and API
//! keys. Nothing here knows about HTTP or AWS.

pub mod address;
pub mod api_key;
pub mod custom_header;
pub mod event_type;
pub mod field_error;
pub mod idempotency;
pub mod new_webhook;
pub mod rate_limit;
pub mod signing_secret;
pub mod strict_json;
pub mod text;
pub mod time_format;
pub mod webhook;
pub mod webhook_patch;
pub mod webhook_url;

pub use api_key::{
    ApiKey, ApiKeyStatus, ApiToken, Denied, Pepper, RateLimits, Scope, TokenHash, READ_WEBHOOKS,
    WRITE_WEBHOOKS,
};
pub use custom_header::CustomHeader;
pub use event_type::EventType;
pub use field_error::FieldError;
pub use idempotency::{ClaimId, ClaimOutcome, IdempotencyClaim, IdempotencyKey};
pub use new_webhook::NewWebhook;
pub use signing_secret::SigningSecret;
pub use webhook::{parse_etag, Webhook};
pub use webhook_patch::WebhookPatch;
pub use webhook_url::{UrlPolicy, WebhookUrl};
