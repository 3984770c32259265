//! The HTTP edge: routes, reads and answers API Gateway requests (REST v1 and HTTP API v2).

use std::time::Instant;

use lambda_http::http::{header, Method};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::domain::{ApiKey, ApiToken, FieldError, IdempotencyClaim, IdempotencyKey, NewWebhook};
use crate::error::ApiError;
use crate::service::{App, Created};
use crate::store::{ApiKeyStore, SecretStore, WebhookStore};

mod response;

pub use response::{created_body, error_response};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// What a request led to, for the log line.
#[derive(Default)]
struct Outcome {
    api_key_id: Option<String>,
    webhook_id: Option<String>,
}

/// Answers one request. Never fails: every error becomes an answer from the contract's table.
pub async fn handle<K, W, S>(app: &App<K, W, S>, request: Request) -> Response<Body>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
{
    let started = Instant::now();
    let request_id = request_id(&request);
    let route = route_of(path_of(&request));
    let mut outcome = Outcome::default();
    let result = create(app, &request, route, &mut outcome).await;
    let (response, error_code) = match &result {
        Ok(created) => (response::created(created, &request_id), None),
        Err(error) => {
            let answer = error.answer();
            let code = answer.code;
            (error_response(answer, &request_id), Some(code))
        }
    };
    // AWS trouble and bugs are warnings, with their cause (an error code, never SDK text).
    let cause = match &result {
        Err(error @ (ApiError::ServiceUnavailable(_) | ApiError::Internal(_))) => {
            Some(error.to_string())
        }
        _ => None,
    };
    macro_rules! log_request {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                request_id = %request_id,
                route,
                method = %request.method(),
                status = response.status().as_u16(),
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                api_key_id = outcome.api_key_id.as_deref(),
                webhook_id = outcome.webhook_id.as_deref(),
                error_code,
                cause = cause.as_deref(),
                $message
            )
        };
    }
    if cause.is_some() {
        log_request!(tracing::Level::WARN, "request failed");
    } else {
        log_request!(tracing::Level::INFO, "request handled");
    }
    response
}

/// The request path without the API Gateway stage. REST (v1) events carry a stage-less path
/// already; HTTP API (v2) events keep a named stage in `rawPath` (`/prod/webhooks`), which is
/// removed when present (a custom domain's path has none). Requests that did not come from API
/// Gateway use the URI's path.
fn path_of(request: &Request) -> &str {
    use lambda_http::request::RequestContext;
    let path = match request.raw_http_path() {
        "" => request.uri().path(),
        path => path,
    };
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" => path
            .strip_prefix('/')
            .and_then(|rest| rest.strip_prefix(stage))
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .unwrap_or(path),
        _ => path,
    }
}

/// The one route this function serves.
const WEBHOOKS: &str = "/webhooks";

/// The route a path matches, ignoring one trailing slash.
fn route_of(path: &str) -> &'static str {
    match path.strip_suffix('/').unwrap_or(path) {
        WEBHOOKS => WEBHOOKS,
        _ => "unmatched",
    }
}

/// The Lambda request id; API Gateway's when run outside Lambda (tests), else a fresh UUID.
fn request_id(request: &Request) -> String {
    if let Some(context) = request.lambda_context_ref() {
        if !context.request_id.is_empty() {
            return context.request_id.clone();
        }
    }
    use lambda_http::request::RequestContext;
    let from_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

async fn create<K, W, S>(
    app: &App<K, W, S>,
    request: &Request,
    route: &str,
    outcome: &mut Outcome,
) -> Result<Created, ApiError>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
{
    if route != WEBHOOKS {
        return Err(ApiError::NotFound);
    }
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let key = authenticate(app, request).await?;
    outcome.api_key_id = Some(key.id.clone());
    check_content_type(request)?;
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let claim = idempotency_key(request)?.map(|k| IdempotencyClaim::new(&key.id, &k, body));
    let new_webhook =
        NewWebhook::parse(body, app.settings().url_policy).map_err(ApiError::Validation)?;
    let created = app.create_webhook(&key, new_webhook, claim).await?;
    outcome.webhook_id = Some(created.webhook.id.to_string());
    Ok(created)
}

/// Exactly one `Authorization: Bearer <sk_…>` header, naming a usable key.
async fn authenticate<K, W, S>(app: &App<K, W, S>, request: &Request) -> Result<ApiKey, ApiError>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
{
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::InvalidApiKey);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(ApiToken::from_authorization)
        .ok_or(ApiError::InvalidApiKey)?;
    app.authenticate(&token).await
}

/// The optional `Idempotency-Key` header (at most one).
fn idempotency_key(request: &Request) -> Result<Option<IdempotencyKey>, ApiError> {
    const HEADER: &str = "idempotency-key";
    let invalid =
        |message: &str| ApiError::Validation(vec![FieldError::new("Idempotency-Key", message)]);
    let mut values = request.headers().get_all(HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(invalid("Idempotency-Key must be sent once")),
        (Some(value), None) => {
            let text = value.to_str().map_err(|_| {
                invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
            })?;
            IdempotencyKey::parse(text)
                .map(Some)
                .map_err(|m| invalid(&m))
        }
    }
}

/// `application/json`, optionally with parameters; a charset, if given, must be UTF-8.
fn check_content_type(request: &Request) -> Result<(), ApiError> {
    let value = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::UnsupportedMediaType)?;
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    for parameter in parts {
        let (name, val) = parameter.split_once('=').unwrap_or((parameter, ""));
        let val = val.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !val.eq_ignore_ascii_case("utf-8") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    Ok(())
}
