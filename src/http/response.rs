//! The response envelope: `{success, data, error, timestamp}` and the contract's headers.

use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::domain::rate_limit::RateStatus;
use crate::domain::time_format::rfc3339;
use crate::domain::{EventType, Webhook};
use crate::error::Answer;
use crate::service::{Created, Rotated, TestResult};

/// A webhook as answered: exactly the documentation's fields, in its example's order. The
/// signing secret is there only in the answer that shows it once.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookData<'a> {
    id: String,
    api_key_id: &'a str,
    company_id: Option<String>,
    url: &'a str,
    name: Option<&'a str>,
    description: Option<&'a str>,
    headers: Vec<MaskedHeader<'a>>,
    events: Vec<&'static str>,
    is_active: bool,
    max_retries: u32,
    timeout_ms: u32,
    consecutive_failures: u32,
    circuit_opened_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_secret: Option<&'a str>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MaskedHeader<'a> {
    name: &'a str,
    is_masked: bool,
}

fn view<'a>(webhook: &'a Webhook, signing_secret: Option<&'a str>) -> WebhookData<'a> {
    WebhookData {
        id: webhook.id.to_string(),
        api_key_id: &webhook.api_key_id,
        company_id: webhook.company_id.map(|id| id.to_string()),
        url: &webhook.url,
        name: webhook.name.as_deref(),
        description: webhook.description.as_deref(),
        headers: webhook
            .header_names
            .iter()
            .map(|name| MaskedHeader {
                name,
                is_masked: true,
            })
            .collect(),
        events: webhook
            .events
            .iter()
            .map(|e| EventType::as_str(*e))
            .collect(),
        is_active: webhook.is_active,
        max_retries: webhook.max_retries,
        timeout_ms: webhook.timeout_ms,
        consecutive_failures: webhook.consecutive_failures,
        circuit_opened_at: webhook.circuit_opened_at.map(rfc3339),
        signing_secret,
        created_at: rfc3339(webhook.created_at),
        updated_at: rfc3339(webhook.updated_at),
    }
}

/// The success envelope around `data`.
fn success(data: impl Serialize) -> String {
    json!({
        "success": true,
        "data": data,
        "error": null,
        "timestamp": rfc3339(OffsetDateTime::now_utc()),
    })
    .to_string()
}

/// The JSON body of a 201 (also used by benchmarks).
pub fn created_body(created: &Created) -> String {
    success(view(
        &created.webhook,
        Some(created.signing_secret.expose()),
    ))
}

pub(super) fn created(created: &Created, request_id: &str) -> Response<Body> {
    let mut response = base(StatusCode::CREATED, request_id, created_body(created));
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/webhooks/{}", created.webhook.id)),
    );
    // The body holds the signing secret: no cache anywhere may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if created.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `200` with `{"data": [view, ...], "total": N}`.
pub(super) fn list(webhooks: &[Webhook], request_id: &str) -> Response<Body> {
    let views: Vec<_> = webhooks.iter().map(|w| view(w, None)).collect();
    let body = success(json!({"data": views, "total": webhooks.len()}));
    let mut response = base(StatusCode::OK, request_id, body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `200` with one webhook's view and its `ETag`.
pub(super) fn one(webhook: &Webhook, replayed: bool, request_id: &str) -> Response<Body> {
    let mut response = base(StatusCode::OK, request_id, success(view(webhook, None)));
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(&webhook.etag()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `200` with a test ping's result.
pub(super) fn tested(result: &TestResult, replayed: bool, request_id: &str) -> Response<Body> {
    let mut response = base(StatusCode::OK, request_id, success(result));
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The `data` of a rotation: the view, then the new secret and the previous one's expiry.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RotatedData<'a> {
    #[serde(flatten)]
    view: WebhookData<'a>,
    signing_secret: &'a str,
    previous_secret_expires_at: Option<String>,
}

/// `200` with the rotated webhook and its new secret (never cached anywhere).
pub(super) fn rotated(rotated: &Rotated, request_id: &str) -> Response<Body> {
    let data = RotatedData {
        view: view(&rotated.webhook, None),
        signing_secret: rotated.signing_secret.expose(),
        previous_secret_expires_at: rotated.previous_expires_at.map(rfc3339),
    };
    let mut response = base(StatusCode::OK, request_id, success(data));
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(&rotated.webhook.etag()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if rotated.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `200` with `data` (the delivery log's reads), never cached: deliveries and their bodies
/// are the customer's data.
pub(super) fn ok(data: impl Serialize, request_id: &str) -> Response<Body> {
    let mut response = base(StatusCode::OK, request_id, success(data));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `202` with `data`: a job queued for the pipeline (resend, recover).
pub(super) fn accepted(data: impl Serialize, replayed: bool, request_id: &str) -> Response<Body> {
    let mut response = base(StatusCode::ACCEPTED, request_id, success(data));
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `204` without a body.
pub(super) fn no_content(request_id: &str) -> Response<Body> {
    let mut response = base(StatusCode::NO_CONTENT, request_id, String::new());
    *response.body_mut() = Body::Empty;
    response
}

/// InstaView's rate headers, on every answer to an authenticated request.
pub(super) fn rate_headers(headers: &mut HeaderMap, rate: &RateStatus) {
    let limits = rate.limits;
    let windows = rate.windows;
    for (name, value) in [
        ("x-ratelimit-limit-minute", i64::from(limits.per_minute)),
        (
            "x-ratelimit-remaining-minute",
            i64::from(rate.remaining_minute),
        ),
        ("x-ratelimit-reset-minute", windows.minute_reset),
        ("x-ratelimit-limit-hour", i64::from(limits.per_hour)),
        ("x-ratelimit-remaining-hour", i64::from(rate.remaining_hour)),
        ("x-ratelimit-reset-hour", windows.hour_reset),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// The response for an error's answer, with the header its status calls for.
pub fn error_response(answer: Answer, request_id: &str) -> Response<Body> {
    let mut error_body = json!({"code": answer.code, "message": answer.message});
    if let Some(details) = answer.details {
        error_body["details"] = details;
    }
    let body = json!({
        "success": false,
        "data": null,
        "error": error_body,
        "timestamp": rfc3339(OffsetDateTime::now_utc()),
    });
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = base(status, request_id, body.to_string());
    if let Some((name, value)) = answer.header {
        response.headers_mut().insert(name, header_value(&value));
    }
    response
}

fn base(status: StatusCode, request_id: &str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-request-id", header_value(request_id));
    response
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
