//! The HTTP edge: API Gateway events (REST v1 and HTTP API v2) become requests
//! ([`lambda_event`]), are routed ([`routes`]), read and answered.
//!
//! Checks run in the contract's order: route → authentication (and scope) → rate limit →
//! query (only the lists take one) → content type → size → body → resource → store.

use lambda_http::http::{header, HeaderMap, HeaderName};
use lambda_http::{Body, Request, RequestExt, Response};
use uuid::Uuid;

use crate::domain::field_error::echo;
use crate::domain::rate_limit::RateStatus;
use crate::domain::{
    parse_etag, ApiKey, ApiToken, FieldError, IdempotencyClaim, IdempotencyKey, NewWebhook,
    WebhookPatch,
};
use crate::error::ApiError;
use crate::service::{
    parse_webhook_id, App, DeliveryDetail, DeliveryListQuery, DeliveryPageAnswer, RecoverRequest,
    Recovered, Resent, ServiceError,
};
use crate::store::delivery_log::{DeliveryLog, DeliveryStatus, PipelineQueue};
use crate::store::{ApiKeyStore, SecretStore, WebhookStore};
use crate::time_budget::{test_ping_deadline, Arrival};

pub mod lambda_event;
mod response;
pub mod routes;

pub use response::{created_body, error_response};
use routes::{Matched, Operation};

/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// What handling a request learned (its key, its webhook, its rate count), for the log line
/// and the rate headers.
#[derive(Default)]
struct RequestFacts {
    api_key_id: Option<String>,
    webhook_id: Option<String>,
    rate: Option<RateStatus>,
}

/// What a successful request answers.
enum Success {
    Created(crate::service::Created),
    List(Vec<crate::domain::Webhook>),
    /// One webhook, with its `ETag`; `replayed` for an idempotent replay.
    One {
        webhook: crate::domain::Webhook,
        replayed: bool,
    },
    Deleted,
    Tested {
        result: crate::service::TestResult,
        replayed: bool,
    },
    Rotated(crate::service::Rotated),
    Deliveries(DeliveryPageAnswer),
    Delivery(DeliveryDetail),
    Resent(Resent),
    Recovered {
        recovered: Recovered,
        replayed: bool,
    },
}

/// Answers one request. Never fails: every error becomes an answer from the contract's table.
pub async fn handle<K, W, S, L, Q>(app: &App<K, W, S, L, Q>, request: Request) -> Response<Body>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
    L: DeliveryLog,
    Q: PipelineQueue,
{
    let arrival = Arrival::now();
    let started = arrival.at;
    let request_id = request_id(&request);
    let path = path_of(&request);
    let template = routes::template_of(path);
    let mut outcome = RequestFacts::default();
    let result = serve(app, &request, path, arrival, &mut outcome).await;
    let (mut response, error_code) = match &result {
        Ok(success) => (answer(success, &request_id), None),
        Err(error) => {
            let answer = error.answer();
            let code = answer.code;
            (error_response(answer, &request_id), Some(code))
        }
    };
    if let Some(rate) = &outcome.rate {
        response::rate_headers(response.headers_mut(), rate);
    }
    // AWS trouble and bugs are warnings, with their cause (an error code, never SDK text).
    let cause = match &result {
        Err(ApiError::Service(
            error @ (ServiceError::Unavailable(_) | ServiceError::Internal(_)),
        )) => Some(error.to_string()),
        _ => None,
    };
    macro_rules! log_request {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                request_id = %request_id,
                route = template,
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
    let created = matches!(&result, Ok(Success::Created(created)) if !created.replayed);
    crate::emf::answered(response.status().as_u16(), error_code, created);
    if cause.is_some() {
        log_request!(tracing::Level::WARN, "request failed");
    } else {
        log_request!(tracing::Level::INFO, "request handled");
    }
    response
}

fn answer(success: &Success, request_id: &str) -> Response<Body> {
    match success {
        Success::Created(created) => response::created(created, request_id),
        Success::List(webhooks) => response::list(webhooks, request_id),
        Success::One { webhook, replayed } => response::one(webhook, *replayed, request_id),
        Success::Deleted => response::no_content(request_id),
        Success::Tested { result, replayed } => response::tested(result, *replayed, request_id),
        Success::Rotated(rotated) => response::rotated(rotated, request_id),
        Success::Deliveries(page) => response::ok(page, request_id),
        Success::Delivery(detail) => response::ok(detail, request_id),
        Success::Resent(resent) => response::accepted(&resent.summary, resent.replayed, request_id),
        Success::Recovered {
            recovered,
            replayed,
        } => response::accepted(recovered, *replayed, request_id),
    }
}

async fn serve<K, W, S, L, Q>(
    app: &App<K, W, S, L, Q>,
    request: &Request,
    path: &str,
    arrival: Arrival,
    outcome: &mut RequestFacts,
) -> Result<Success, ApiError>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
    L: DeliveryLog,
    Q: PipelineQueue,
{
    let matched = routes::route(path, request.method())?;
    if let Some(id) = matched.id {
        outcome.webhook_id = parse_webhook_id(id).ok().map(|id| id.to_string());
    }
    let key = authenticate(app, request).await?;
    outcome.api_key_id = Some(key.id.clone());
    let scope = key.require(matched.scope);
    // Reads run beside the rate count (one round trip); everything else waits for it.
    let result = match (&matched.operation, &scope) {
        (
            Operation::List | Operation::Get | Operation::ListDeliveries | Operation::GetDelivery,
            Ok(()),
        ) => {
            let (count, read) =
                tokio::join!(app.count_request(&key), read(app, request, &key, matched));
            outcome.rate = Some(count?);
            admit(outcome)?;
            read
        }
        _ => {
            outcome.rate = Some(app.count_request(&key).await?);
            scope.map_err(ServiceError::from)?;
            admit(outcome)?;
            write(app, request, &key, matched, arrival).await
        }
    };
    if let Ok(Success::Created(created)) = &result {
        outcome.webhook_id = Some(created.webhook.id.to_string());
    }
    result
}

/// Refuses a request over its key's rate limit.
fn admit(outcome: &RequestFacts) -> Result<(), ApiError> {
    match &outcome.rate {
        Some(rate) if rate.exceeded.is_some() => Err(ServiceError::RateLimited(*rate).into()),
        _ => Ok(()),
    }
}

async fn read<K, W, S, L, Q>(
    app: &App<K, W, S, L, Q>,
    request: &Request,
    key: &ApiKey,
    matched: Matched<'_>,
) -> Result<Success, ApiError>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
    L: DeliveryLog,
    Q: PipelineQueue,
{
    match (matched.operation, matched.id) {
        (Operation::List, _) => {
            let company = list_query(request)?;
            Ok(Success::List(app.list_webhooks(key, company).await?))
        }
        (Operation::ListDeliveries, Some(id)) => {
            let query = deliveries_query(request);
            Ok(Success::Deliveries(
                app.list_deliveries(key, id, query).await?,
            ))
        }
        (Operation::GetDelivery, Some(id)) => {
            no_query(request, matched.operation)?;
            let delivery_id = matched.delivery_id.unwrap_or_default();
            Ok(Success::Delivery(
                app.get_delivery(key, id, delivery_id).await?,
            ))
        }
        (_, Some(id)) => {
            no_query(request, matched.operation)?;
            Ok(Success::One {
                webhook: app.get_webhook(key, id).await?,
                replayed: false,
            })
        }
        _ => Err(ApiError::NoRoute),
    }
}

async fn write<K, W, S, L, Q>(
    app: &App<K, W, S, L, Q>,
    request: &Request,
    key: &ApiKey,
    matched: Matched<'_>,
    arrival: Arrival,
) -> Result<Success, ApiError>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
    L: DeliveryLog,
    Q: PipelineQueue,
{
    let id = matched.id.unwrap_or_default();
    if !is_read(matched.operation) {
        no_query(request, matched.operation)?;
    }
    match matched.operation {
        Operation::Create => {
            let body = json_body(request, JSON)?;
            let claim = claim(request, key, matched, body)?;
            let new_webhook = NewWebhook::parse(body, app.settings().url_policy)
                .map_err(ServiceError::Validation)?;
            Ok(Success::Created(
                app.create_webhook(key, new_webhook, claim).await?,
            ))
        }
        Operation::Update => {
            let body = json_body(request, JSON_OR_MERGE_PATCH)?;
            let if_match = if_match(request)?;
            let patch = WebhookPatch::parse(body, app.settings().url_policy)
                .map_err(ServiceError::Validation)?;
            let webhook = app.update_webhook(key, id, patch, if_match).await?;
            Ok(Success::One {
                webhook,
                replayed: false,
            })
        }
        Operation::Delete => {
            app.delete_webhook(key, id, if_match(request)?).await?;
            Ok(Success::Deleted)
        }
        Operation::ResetCircuit => {
            let body = empty_body(request)?;
            let claim = claim(request, key, matched, body)?;
            let answered = app.reset_circuit(key, id, claim).await?;
            Ok(Success::One {
                webhook: answered.webhook,
                replayed: answered.replayed,
            })
        }
        Operation::Test => {
            let body = empty_body(request)?;
            let claim = claim(request, key, matched, body)?;
            let deadline =
                test_ping_deadline(request.lambda_context_ref().map(|c| c.deadline), arrival);
            let (result, replayed) = app.test_webhook(key, id, deadline, claim).await?;
            Ok(Success::Tested { result, replayed })
        }
        Operation::RotateSecret => {
            let body: &[u8] = request.body().as_ref();
            if body.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            let body = if body.iter().all(u8::is_ascii_whitespace) {
                body
            } else {
                json_body(request, JSON)?
            };
            let claim = claim(request, key, matched, body)?;
            let grace = crate::service::parse_grace_period(body)?;
            let if_match = if_match(request)?;
            Ok(Success::Rotated(
                app.rotate_secret(key, id, grace, if_match, claim).await?,
            ))
        }
        Operation::ResendDelivery => {
            let body = empty_body(request)?;
            let claim = claim(request, key, matched, body)?;
            let delivery_id = matched.delivery_id.unwrap_or_default();
            Ok(Success::Resent(
                app.resend_delivery(key, id, delivery_id, claim).await?,
            ))
        }
        Operation::Recover => {
            let body = json_body(request, JSON)?;
            let claim = claim(request, key, matched, body)?;
            let window = RecoverRequest::parse(body, time::OffsetDateTime::now_utc())?;
            let (recovered, replayed) = app.recover(key, id, window, claim).await?;
            Ok(Success::Recovered {
                recovered,
                replayed,
            })
        }
        Operation::List | Operation::Get | Operation::ListDeliveries | Operation::GetDelivery => {
            read(app, request, key, matched).await
        }
    }
}

/// The operations that only read (served beside the rate count, and taking their own query).
fn is_read(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::List | Operation::Get | Operation::ListDeliveries | Operation::GetDelivery
    )
}

/// Exactly one `Authorization: Bearer <sk_…>` header, naming a usable key.
async fn authenticate<K, W, S, L, Q>(
    app: &App<K, W, S, L, Q>,
    request: &Request,
) -> Result<ApiKey, ApiError>
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
    L: DeliveryLog,
    Q: PipelineQueue,
{
    let value = single(request.headers(), &header::AUTHORIZATION)
        .ok()
        .flatten()
        .ok_or(ServiceError::InvalidApiKey)?;
    let token = value
        .to_str()
        .ok()
        .and_then(ApiToken::from_authorization)
        .ok_or(ServiceError::InvalidApiKey)?;
    Ok(app.authenticate(&token).await?)
}

/// The one value of a header that may be sent at most once: `Err` when it came twice.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a lambda_http::http::HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        _ => Err(()),
    }
}

/// The optional `Idempotency-Key` header (at most one), as a claim scoped to the key, the
/// method and the route as called.
fn claim(
    request: &Request,
    key: &ApiKey,
    matched: Matched<'_>,
    body: &[u8],
) -> Result<Option<IdempotencyClaim>, ApiError> {
    const FIELD: &str = "Idempotency-Key";
    let name = HeaderName::from_static("idempotency-key");
    let value = single(request.headers(), &name)
        .map_err(|()| ApiError::invalid(FIELD, "Idempotency-Key must be sent once"))?;
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        ApiError::invalid(
            FIELD,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    })?;
    let idempotency_key = IdempotencyKey::parse(text).map_err(|m| ApiError::invalid(FIELD, m))?;
    // Every path parameter fills its place, as the resource's own id (lowercase) when it is
    // a UUID, so that two spellings share one scope and two deliveries never do.
    let own = |id: &str| match Uuid::try_parse(id) {
        Ok(uuid) if id.len() == 36 => uuid.to_string(),
        _ => id.to_owned(),
    };
    let mut route = matched.template.to_owned();
    if let Some(id) = matched.id {
        route = route.replace("{id}", &own(id));
    }
    if let Some(delivery_id) = matched.delivery_id {
        route = route.replace("{deliveryId}", &own(delivery_id));
    }
    let scope = format!("{} {route}", request.method());
    Ok(Some(IdempotencyClaim::new(
        &key.id,
        &scope,
        &idempotency_key,
        body,
    )))
}

/// `If-Match` (at most one): `Some(version)` to check, `None` for absent or `*`. A value that
/// names no version we make becomes version 0, which no webhook has: it cannot match (412),
/// but is judged like any stale tag, after the webhook is found.
fn if_match(request: &Request) -> Result<Option<u64>, ApiError> {
    let value = single(request.headers(), &header::IF_MATCH)
        .map_err(|()| ApiError::invalid("If-Match", "If-Match must be sent once"))?;
    Ok(match value.map(|v| v.to_str().map(str::trim)) {
        None | Some(Ok("*")) => None,
        Some(Ok(text)) => Some(parse_etag(text).unwrap_or(0)),
        Some(Err(_)) => Some(0),
    })
}

const JSON: &[&str] = &["application/json"];
const JSON_OR_MERGE_PATCH: &[&str] = &["application/json", "application/merge-patch+json"];

/// A body that must be JSON of one of `media_types`, within the size limit.
fn json_body<'r>(request: &'r Request, media_types: &[&str]) -> Result<&'r [u8], ApiError> {
    check_content_type(request, media_types)?;
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(body)
}

/// A route that takes no body: empty, or `{}` sent as JSON.
fn empty_body(request: &Request) -> Result<&[u8], ApiError> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(body);
    }
    let body = json_body(request, JSON)?;
    match crate::domain::strict_json::from_slice(body) {
        Ok(serde_json::Value::Object(object)) if object.is_empty() => Ok(body),
        _ => Err(ApiError::invalid(
            "body",
            "this route takes no request body (send none, or {})",
        )),
    }
}

/// Exactly one `Content-Type` of `media_types`, optionally with parameters; a charset, if
/// given, must be UTF-8.
fn check_content_type(request: &Request, media_types: &[&str]) -> Result<(), ApiError> {
    let unsupported = ApiError::UnsupportedMediaType {
        accepted: if media_types.len() > 1 {
            "application/json or application/merge-patch+json"
        } else {
            "application/json"
        },
    };
    let value = single(request.headers(), &header::CONTENT_TYPE)
        .ok()
        .flatten()
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unsupported.clone())?;
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_types
        .iter()
        .any(|m| media_type.eq_ignore_ascii_case(m))
    {
        return Err(unsupported);
    }
    for parameter in parts {
        let (name, val) = parameter.split_once('=').unwrap_or((parameter, ""));
        let val = val.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !val.eq_ignore_ascii_case("utf-8") {
            return Err(unsupported);
        }
    }
    Ok(())
}

/// The query parameters `GET /webhooks/{id}/deliveries` takes.
const DELIVERY_LIST_PARAMETERS: [&str; 6] =
    ["status", "event", "since", "until", "limit", "cursor"];

/// One error per query parameter the route does not take, each on the parameter's own name
/// (as an unknown body field is named): the list takes `companyId`, the deliveries' list
/// [`DELIVERY_LIST_PARAMETERS`], every other route none. A parameter ignored would be a
/// setting the client believes it made (`rotate-secret?gracePeriodSeconds=0`).
fn unknown_query(request: &Request, operation: Operation) -> Vec<FieldError> {
    let Some(query) = request.query_string_parameters_ref() else {
        return Vec::new();
    };
    let taken: &[&str] = match operation {
        Operation::List => &["companyId"],
        Operation::ListDeliveries => &DELIVERY_LIST_PARAMETERS,
        _ => &[],
    };
    let mut names: Vec<&str> = query
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !taken.contains(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let echoed = echo(name);
            let message = match operation {
                Operation::List => {
                    format!("{echoed} is not a query parameter: companyId is the only one")
                }
                Operation::ListDeliveries => format!(
                    "{echoed} is not a query parameter: status, event, since, until, limit and cursor are the only ones"
                ),
                Operation::RotateSecret if name == "gracePeriodSeconds" => {
                    "gracePeriodSeconds goes in the JSON body, not the query".to_owned()
                }
                _ => format!("{echoed} is not a query parameter: this route takes none"),
            };
            let field = if echoed.is_empty() {
                "query".to_owned()
            } else {
                echoed
            };
            FieldError::new(field, message)
        })
        .collect()
}

/// Refuses any query parameter on a route that takes none.
fn no_query(request: &Request, operation: Operation) -> Result<(), ApiError> {
    let errors = unknown_query(request, operation);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(errors).into())
    }
}

/// `GET /webhooks`' query: an optional `companyId`, nothing else.
fn list_query(request: &Request) -> Result<Option<Uuid>, ApiError> {
    const MESSAGE: &str = "companyId must be a UUID such as 550e8400-e29b-41d4-a716-446655440000";
    let query = request.query_string_parameters_ref();
    let mut company = None;
    let mut errors = unknown_query(request, Operation::List);
    if let Some(query) = query {
        let values = query.all("companyId").unwrap_or_default();
        match values.as_slice() {
            [] => {}
            [one] if one.len() == 36 => match Uuid::try_parse(one) {
                Ok(id) => company = Some(id),
                Err(_) => errors.push(FieldError::new("companyId", MESSAGE)),
            },
            [_] => errors.push(FieldError::new("companyId", MESSAGE)),
            _ => errors.push(FieldError::new(
                "companyId",
                "companyId must be given at most once",
            )),
        }
    }
    if errors.is_empty() {
        Ok(company)
    } else {
        Err(ServiceError::Validation(errors).into())
    }
}

/// `GET /webhooks/{id}/deliveries`' query: the filters, the page size and the cursor, with
/// every field error found (unknown parameters included); the cursor is judged by the service.
fn deliveries_query(request: &Request) -> DeliveryListQuery {
    let mut query = DeliveryListQuery {
        errors: unknown_query(request, Operation::ListDeliveries),
        ..DeliveryListQuery::default()
    };
    let Some(parameters) = request.query_string_parameters_ref() else {
        return query;
    };
    let mut errors = Vec::new();
    let mut one = |name: &'static str| -> Option<String> {
        match parameters.all(name).unwrap_or_default().as_slice() {
            [] => None,
            [value] => Some((*value).to_owned()),
            _ => {
                errors.push(FieldError::new(
                    name,
                    format!("{name} must be given at most once"),
                ));
                None
            }
        }
    };
    let (status, event, since, until, limit, cursor) = (
        one("status"),
        one("event"),
        one("since"),
        one("until"),
        one("limit"),
        one("cursor"),
    );
    if let Some(status) = status {
        match DeliveryStatus::parse(&status) {
            Some(status) => query.filter.status = Some(status),
            None => errors.push(FieldError::new(
                "status",
                "status must be one of pending, delivered, failed, skipped",
            )),
        }
    }
    if let Some(event) = event {
        match crate::domain::EventType::parse(&event) {
            Some(event) => query.filter.event = Some(event),
            None => errors.push(FieldError::new(
                "event",
                format!(
                    "event must be one of {}",
                    crate::domain::EventType::allowed_list()
                ),
            )),
        }
    }
    let mut time = |name: &'static str, value: Option<String>| {
        let value = value?;
        // A `+` of an offset sent unencoded in a query string arrives as a space.
        let parsed = crate::domain::time_format::parse_rfc3339(&value)
            .or_else(|| crate::domain::time_format::parse_rfc3339(&value.replace(' ', "+")));
        if parsed.is_none() {
            errors.push(FieldError::new(
                name,
                format!("{name} must be an RFC 3339 timestamp such as 2026-12-01T10:00:00Z"),
            ));
        }
        parsed
    };
    query.filter.since = time("since", since);
    query.filter.until = time("until", until);
    if let (Some(since), Some(until)) = (query.filter.since, query.filter.until) {
        if since >= until {
            errors.push(FieldError::new("until", "until must be later than since"));
        }
    }
    if let Some(limit) = limit {
        let max = crate::service::deliveries::MAX_LIMIT;
        match limit.parse::<u32>() {
            Ok(n) if limit.bytes().all(|b| b.is_ascii_digit()) && (1..=max).contains(&n) => {
                query.limit = Some(n);
            }
            _ => errors.push(FieldError::new(
                "limit",
                format!("limit must be a whole number from 1 to {max}"),
            )),
        }
    }
    query.cursor = cursor;
    // Unknown parameters first, then the known ones in the documentation's order.
    query.errors.extend(errors);
    query
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
    from_gateway.unwrap_or_else(|| Uuid::new_v4().to_string())
}
