//! Every way a request can fail, and the single place that turns each into an answer.

use serde_json::{json, Value};

use crate::domain::{time_format::rfc3339, Denied, FieldError};
use crate::store::StoreError;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// A failed request, as the client will see it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("API key suspended")]
    ApiKeySuspended {
        suspended_at: Option<String>,
        reason: Option<String>,
    },
    #[error("insufficient permissions")]
    InsufficientPermissions,
    #[error("resource access denied")]
    ResourceAccessDenied,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("idempotency key reused with another body")]
    IdempotencyKeyReused,
    #[error("request with this idempotency key in progress")]
    RequestInProgress,
    #[error("webhook limit reached")]
    WebhookLimitReached { limit: u32 },
    /// AWS is throttling, timing out or down. The payload is for logs only (no SDK text).
    #[error("service unavailable: {0}")]
    ServiceUnavailable(StoreError),
    /// A bug or misconfiguration. The payload is for logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the client gets for an error.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// A header the status calls for (`WWW-Authenticate`, `Allow`, `Retry-After`).
    pub header: Option<(&'static str, String)>,
}

impl Answer {
    fn with_header(self, name: &'static str, value: impl Into<String>) -> Self {
        Self {
            header: Some((name, value.into())),
            ..self
        }
    }
}

impl ApiError {
    /// The contract's error table, in one place.
    pub fn answer(&self) -> Answer {
        let plain = |status, code, message: &str| Answer {
            status,
            code,
            message: message.to_owned(),
            details: None,
            header: None,
        };
        match self {
            ApiError::NotFound => plain(
                404,
                "NOT_FOUND",
                "No route matches this path; use POST /webhooks",
            ),
            ApiError::MethodNotAllowed => plain(
                405,
                "METHOD_NOT_ALLOWED",
                "Only POST is allowed on /webhooks",
            )
            .with_header("allow", "POST"),
            ApiError::InvalidApiKey => plain(
                401,
                "INVALID_API_KEY",
                "A valid API key is required as an Authorization: Bearer token",
            )
            .with_header("www-authenticate", "Bearer"),
            ApiError::ApiKeySuspended {
                suspended_at,
                reason,
            } => Answer {
                status: 401,
                code: "API_KEY_SUSPENDED",
                message: "This API key is suspended".into(),
                details: Some(json!({"suspendedAt": suspended_at, "reason": reason})),
                header: None,
            }
            .with_header("www-authenticate", "Bearer"),
            ApiError::InsufficientPermissions => plain(
                403,
                "INSUFFICIENT_PERMISSIONS",
                "Required scope write:webhooks not found",
            ),
            ApiError::ResourceAccessDenied => plain(
                403,
                "RESOURCE_ACCESS_DENIED",
                "This API key may not act for the given companyId",
            ),
            ApiError::UnsupportedMediaType => plain(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json",
            ),
            ApiError::PayloadTooLarge => plain(
                413,
                "PAYLOAD_TOO_LARGE",
                "Request body must be at most 512 KiB",
            ),
            ApiError::Validation(fields) => Answer {
                status: 400,
                code: "VALIDATION_ERROR",
                message: fields.first().map_or_else(
                    || "The request is invalid".to_owned(),
                    |f| f.message.clone(),
                ),
                details: Some(json!({ "fields": fields })),
                header: None,
            },
            ApiError::IdempotencyKeyReused => plain(
                409,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was already used with a different request body",
            ),
            ApiError::RequestInProgress => plain(
                409,
                "REQUEST_IN_PROGRESS",
                "A request with this Idempotency-Key is still in progress; retry shortly",
            ),
            ApiError::WebhookLimitReached { limit } => Answer {
                status: 409,
                code: "WEBHOOK_LIMIT_REACHED",
                message: format!("This API key already has the maximum of {limit} webhooks"),
                details: Some(json!({ "limit": limit })),
                header: None,
            },
            ApiError::ServiceUnavailable(_) => plain(
                503,
                "SERVICE_UNAVAILABLE",
                "The service is temporarily unavailable; retry later",
            )
            .with_header("retry-after", RETRY_AFTER_SECONDS.to_string()),
            ApiError::Internal(_) => plain(
                500,
                "INTERNAL_ERROR",
                "An unexpected error occurred; nothing was created",
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { .. } => ApiError::ServiceUnavailable(error),
            StoreError::Failed { .. } => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::InvalidKey => ApiError::InvalidApiKey,
            Denied::Suspended { at, reason } => ApiError::ApiKeySuspended {
                suspended_at: at.map(rfc3339),
                reason,
            },
            Denied::MissingScope => ApiError::InsufficientPermissions,
            Denied::CompanyNotAllowed => ApiError::ResourceAccessDenied,
        }
    }
}
