//! Every way a request can fail, and the single place that turns each into an answer.
//!
//! [`ApiError`] is the HTTP edge's own failures (no route, wrong method, media type, size)
//! plus everything the use cases can fail with ([`ServiceError`]).

use serde_json::{json, Value};

use crate::domain::field_error::bounded_details;
use crate::service::ServiceError;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// A failed request, as the client will see it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No route has this path.
    #[error("no route")]
    NoRoute,
    /// The path is known, the method is not; `allow` lists the path's methods.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// `accepted` names the media types the route takes.
    #[error("unsupported media type")]
    UnsupportedMediaType { accepted: &'static str },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error(transparent)]
    Service(#[from] ServiceError),
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

    fn with_details(self, details: Value) -> Self {
        Self {
            details: Some(details),
            ..self
        }
    }
}

/// The longest resource id echoed back in a 404 (a real id has 36 characters).
const MAX_ECHOED_ID_CHARS: usize = 64;

/// A resource id as sent, cut to [`MAX_ECHOED_ID_CHARS`] characters.
fn echoed(resource_id: &str) -> String {
    if resource_id.chars().count() > MAX_ECHOED_ID_CHARS {
        let cut: String = resource_id.chars().take(MAX_ECHOED_ID_CHARS).collect();
        format!("{cut}…")
    } else {
        resource_id.to_owned()
    }
}

fn plain(status: u16, code: &'static str, message: impl Into<String>) -> Answer {
    Answer {
        status,
        code,
        message: message.into(),
        details: None,
        header: None,
    }
}

impl ApiError {
    /// The contract's error table, in one place.
    pub fn answer(&self) -> Answer {
        match self {
            ApiError::NoRoute => plain(404, "NOT_FOUND", "No route matches this path"),
            ApiError::MethodNotAllowed { allow } => plain(
                405,
                "METHOD_NOT_ALLOWED",
                format!("This path allows only {allow}"),
            )
            .with_header("allow", *allow),
            ApiError::UnsupportedMediaType { accepted } => plain(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("Content-Type must be {accepted}"),
            ),
            ApiError::PayloadTooLarge => plain(
                413,
                "PAYLOAD_TOO_LARGE",
                "Request body must be at most 512 KiB",
            ),
            ApiError::Service(error) => service_answer(error),
        }
    }

    /// One field error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Service(ServiceError::invalid(field, message))
    }
}

fn service_answer(error: &ServiceError) -> Answer {
    match error {
        ServiceError::InvalidApiKey => plain(
            401,
            "INVALID_API_KEY",
            "A valid API key is required as an Authorization: Bearer token",
        )
        .with_header("www-authenticate", "Bearer"),
        ServiceError::ApiKeySuspended {
            suspended_at,
            reason,
        } => plain(401, "API_KEY_SUSPENDED", "This API key is suspended")
            .with_details(json!({"suspendedAt": suspended_at, "reason": reason}))
            .with_header("www-authenticate", "Bearer"),
        ServiceError::InsufficientPermissions(scope) => plain(
            403,
            "INSUFFICIENT_PERMISSIONS",
            format!("Required scope {} not found", scope.as_str()),
        ),
        ServiceError::ResourceAccessDenied => plain(
            403,
            "RESOURCE_ACCESS_DENIED",
            "This API key may not act for this company",
        ),
        ServiceError::Validation(fields) => plain(
            400,
            "VALIDATION_ERROR",
            fields.first().map_or_else(
                || "The request is invalid".to_owned(),
                |f| f.message.clone(),
            ),
        )
        .with_details(bounded_details(fields)),
        ServiceError::IdempotencyKeyReused => plain(
            409,
            "IDEMPOTENCY_KEY_REUSED",
            "This Idempotency-Key was already used with a different request",
        ),
        ServiceError::RequestInProgress => plain(
            409,
            "REQUEST_IN_PROGRESS",
            "A request with this Idempotency-Key is still in progress; retry shortly",
        ),
        ServiceError::WebhookLimitReached { limit } => plain(
            409,
            "WEBHOOK_LIMIT_REACHED",
            format!("This API key already has the maximum of {limit} webhooks"),
        )
        .with_details(json!({ "limit": limit })),
        ServiceError::WebhookNotFound { resource_id } => {
            plain(404, "RESOURCE_NOT_FOUND", "Webhook configuration not found").with_details(
                json!({"resourceType": "WebhookConfig", "resourceId": echoed(resource_id)}),
            )
        }
        ServiceError::DeliveryNotFound { resource_id } => {
            plain(404, "RESOURCE_NOT_FOUND", "Delivery not found")
                .with_details(json!({"resourceType": "Delivery", "resourceId": echoed(resource_id)}))
        }
        ServiceError::WebhookNotDelivering {
            is_active,
            circuit_open,
        } => plain(
            409,
            "WEBHOOK_NOT_DELIVERING",
            "The webhook is inactive or its circuit is open: activate it or reset its circuit first",
        )
        .with_details(json!({"isActive": is_active, "circuitOpen": circuit_open})),
        ServiceError::DeliveryPending => plain(
            409,
            "DELIVERY_PENDING",
            "This delivery is still pending: it is on its way, resend it once it is delivered or failed",
        ),
        ServiceError::EventExpired => plain(
            409,
            "EVENT_EXPIRED",
            "This delivery's event is past its 30-day retention: it can no longer be resent",
        ),
        ServiceError::PreconditionFailed => plain(
            412,
            "PRECONDITION_FAILED",
            "The webhook has changed since that ETag; read it again and retry",
        ),
        ServiceError::RotationSuperseded => plain(
            412,
            "PRECONDITION_FAILED",
            "A newer rotation has replaced the secret of the rotation this Idempotency-Key made; read the webhook and rotate again with a new Idempotency-Key",
        ),
        ServiceError::RateLimited(status) => {
            let (window, limit, reset) = status.exceeded_window().unwrap_or((
                crate::domain::rate_limit::Window::Minute,
                0,
                0,
            ));
            plain(
                429,
                "RATE_LIMIT_EXCEEDED",
                format!(
                    "Rate limit of {limit} requests per {} exceeded; retry after {} seconds",
                    window.as_str(),
                    status.retry_after
                ),
            )
            .with_details(json!({
                "limit": limit,
                "remaining": 0,
                "reset": reset,
                "window": window.as_str(),
            }))
            .with_header("retry-after", status.retry_after.to_string())
        }
        ServiceError::Unavailable(_) => plain(
            503,
            "SERVICE_UNAVAILABLE",
            "The service is temporarily unavailable; retry later",
        )
        .with_header("retry-after", RETRY_AFTER_SECONDS.to_string()),
        ServiceError::Internal(_) => plain(
            500,
            "INTERNAL_ERROR",
            "An unexpected error occurred; nothing was changed",
        ),
    }
}
