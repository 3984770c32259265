//! API Gateway events in, Lambda responses out, without the panics lambda_http has on the way.
//!
//! `lambda_http::run` turns each event into an `http::Request` with `expect`s and `unwrap`s
//! (lambda_http 1.3, `request.rs`), so an event whose `Host` header is not a valid authority
//! (API Gateway's console test event has `1234567890.execute-api.{dns_suffix}`), whose
//! `X-Forwarded-Proto` is not a scheme, whose path or raw query string makes an invalid URI, or
//! whose body is marked base64 but is not, panics the function, and API Gateway answers 502
//! (aws-lambda-rust-runtime issues 368, 445, 488, 515). Here every one of those conditions is
//! checked first, exactly as lambda_http would compute it, and such an event is answered with a
//! `400 VALIDATION_ERROR`; only events that pass reach lambda_http's conversion.
//!
//! The checks mirror lambda_http's conversion, so they must be reread when lambda_http is
//! upgraded; `tests/api/published_events.rs` compares the URIs both build for the published events.

use base64::Engine;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use lambda_http::http::uri::Authority;
use lambda_http::http::{header, HeaderMap, HeaderValue, Uri};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Context, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::{Position, Url};

use crate::error::ApiError;
use crate::http::error_response;

/// The API Gateway payload format an event came in, which decides the response's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadVersion {
    /// REST API (and HTTP API with payload format 1.0).
    V1,
    /// HTTP API with payload format 2.0.
    V2,
    /// Neither: not an API Gateway proxy event. Answered in a shape both formats accept.
    Unrecognised,
}

/// Why an event cannot become a request. `Display` is the sentence the client gets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventRejected {
    #[error("The event is not an API Gateway proxy request")]
    NotAnApiGatewayRequest,
    #[error("The request's Host header is not a valid host")]
    InvalidHost,
    #[error("The request path is not valid")]
    InvalidPath,
    #[error("The request URI is not valid (query string or length)")]
    InvalidUri,
    #[error("The request body is marked base64-encoded but is not valid base64")]
    InvalidBase64Body,
}

impl EventRejected {
    /// The `details.fields[].field` the rejection names.
    fn field(&self) -> &'static str {
        match self {
            EventRejected::NotAnApiGatewayRequest => "event",
            EventRejected::InvalidHost => "host",
            EventRejected::InvalidPath => "path",
            EventRejected::InvalidUri => "uri",
            EventRejected::InvalidBase64Body => "body",
        }
    }

    /// The rejection as an error of the contract's table: `400 VALIDATION_ERROR`.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::invalid(self.field(), self.to_string())
    }
}

/// Reads a raw Lambda event as lambda_http does (REST payload first, then HTTP API), refuses
/// what would make lambda_http's conversion panic, and builds the request. Never panics.
pub fn request_from_event(event: &Value) -> (PayloadVersion, Result<Request, EventRejected>) {
    if let Ok(mut rest) = ApiGatewayProxyRequest::deserialize(event) {
        keep_repeated_headers(&mut rest);
        let checked = check_rest(&rest).map(|()| LambdaRequest::ApiGatewayV1(rest).into());
        return (PayloadVersion::V1, checked);
    }
    if let Ok(http) = ApiGatewayV2httpRequest::deserialize(event) {
        let checked = check_http(&http).map(|()| LambdaRequest::ApiGatewayV2(http).into());
        return (PayloadVersion::V2, checked);
    }
    (
        PayloadVersion::Unrecognised,
        Err(EventRejected::NotAnApiGatewayRequest),
    )
}

/// Headers a request must send at most once (the handler refuses a second one).
const SINGLE_HEADERS: [&str; 4] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
];

/// A REST (v1) event lists every value in `multiValueHeaders` and only the last in `headers`;
/// lambda_http merges the two with `headers` replacing, which hides a repeated header. Where a
/// header that must come once came more than once, the single-value copy is dropped, so the
/// handler sees every value (and refuses the request, as it does for HTTP API events).
fn keep_repeated_headers(rest: &mut ApiGatewayProxyRequest) {
    for name in SINGLE_HEADERS {
        if rest.multi_value_headers.get_all(name).iter().count() > 1 {
            rest.headers.remove(name);
        }
    }
}

/// What `lambda_http::Adapter` adds to a converted request: the X-Ray trace header and the
/// Lambda context (whose request id the answers carry).
pub fn with_lambda_context(mut request: Request, context: Context) -> Request {
    if let Some(trace_id) = context.xray_trace_id.as_deref() {
        if let Ok(value) = HeaderValue::from_str(trace_id) {
            request.headers_mut().insert("x-amzn-trace-id", value);
        }
    }
    request.with_lambda_context(context)
}

/// The answer to a rejected event: `400 VALIDATION_ERROR` in the usual envelope.
pub fn rejection_response(rejected: &EventRejected, request_id: &str) -> Response<Body> {
    error_response(rejected.to_api_error().answer(), request_id)
}

/// A response in the shape API Gateway expects for the event's payload version, as
/// lambda_http's `LambdaResponse` builds it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EventResponse {
    V1(ApiGatewayProxyResponse),
    V2(ApiGatewayV2httpResponse),
}

impl EventResponse {
    /// REST (v1): headers in `multiValueHeaders` only (API Gateway merges both maps, so setting
    /// both would double them). HTTP API (v2): `headers`, with `Set-Cookie` moved to `cookies`.
    /// Unrecognised: single-valued `headers`, which both formats read.
    pub fn new(version: PayloadVersion, response: Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        let (is_base64_encoded, body) = match body {
            Body::Empty => (false, None),
            body @ Body::Text(_) => (false, Some(body)),
            body @ Body::Binary(_) => (true, Some(body)),
            _ => (false, None),
        };
        let status_code = i64::from(parts.status.as_u16());
        let mut headers = parts.headers;
        match version {
            PayloadVersion::V1 | PayloadVersion::Unrecognised => {
                let mut response = ApiGatewayProxyResponse::default();
                response.status_code = status_code;
                response.body = body;
                response.is_base64_encoded = is_base64_encoded;
                if version == PayloadVersion::V1 {
                    response.multi_value_headers = headers;
                } else {
                    response.headers = headers;
                }
                EventResponse::V1(response)
            }
            PayloadVersion::V2 => {
                let cookies = headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect();
                headers.remove(header::SET_COOKIE);
                let mut response = ApiGatewayV2httpResponse::default();
                response.status_code = status_code;
                response.body = body;
                response.is_base64_encoded = is_base64_encoded;
                response.cookies = cookies;
                response.headers = headers;
                EventResponse::V2(response)
            }
        }
    }
}

/// The checks for a REST (v1) event, mirroring lambda_http's `into_proxy_request`.
fn check_rest(event: &ApiGatewayProxyRequest) -> Result<(), EventRejected> {
    let path = path_with_stage(
        event.request_context.stage.as_deref(),
        event.path.as_deref().unwrap_or_default(),
    );
    let host = host_of(&event.headers, event.request_context.domain_name.as_deref());
    let UrlOf { mut uri, authority } = url_of(&path, &event.headers, host)?;
    let (multi, single) = (
        &event.multi_value_query_string_parameters,
        &event.query_string_parameters,
    );
    if !multi.is_empty() {
        uri.push('?');
        uri.push_str(&multi.to_query_string());
    } else if !single.is_empty() {
        uri.push('?');
        uri.push_str(&single.to_query_string());
    }
    check_uri(&uri, authority.as_deref())?;
    check_body(event.is_base64_encoded, event.body.as_deref())
}

/// The checks for an HTTP API (v2) event, mirroring lambda_http's
/// `into_api_gateway_v2_request`.
fn check_http(event: &ApiGatewayV2httpRequest) -> Result<(), EventRejected> {
    let path = path_with_stage(
        event.request_context.stage.as_deref(),
        event.raw_path.as_deref().unwrap_or_default(),
    );
    let host = host_of(&event.headers, event.request_context.domain_name.as_deref());
    let UrlOf { mut uri, authority } = url_of(&path, &event.headers, host)?;
    if let Some(query) = event.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(query);
    }
    check_uri(&uri, authority.as_deref())?;
    check_body(event.is_base64_encoded, event.body.as_deref())
}

/// The host lambda_http puts in the URI: the `Host` header if it is text, else the domain name.
fn host_of<'a>(headers: &'a HeaderMap, domain_name: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or(domain_name)
}

/// lambda_http's `apigw_path_with_stage`.
fn path_with_stage(stage: Option<&str>, path: &str) -> String {
    if crate::config::ignore_stage_in_path() {
        return path.into();
    }
    match stage {
        None | Some("$default") => path.into(),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => path.into(),
        Some(stage) => format!("/{stage}{path}"),
    }
}

/// The URI lambda_http builds before the query (`build_request_uri`, where it calls
/// `Url::parse(..).unwrap()`), and its authority when there is a host.
struct UrlOf {
    uri: String,
    authority: Option<String>,
}

fn url_of(path: &str, headers: &HeaderMap, host: Option<&str>) -> Result<UrlOf, EventRejected> {
    let path_alone =
        Url::parse(&format!("http://localhost{path}")).map_err(|_| EventRejected::InvalidPath)?;
    let Some(host) = host else {
        return Ok(UrlOf {
            uri: path_alone.path().to_owned(),
            authority: None,
        });
    };
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("https");
    let url =
        Url::parse(&format!("{scheme}://{host}{path}")).map_err(|_| EventRejected::InvalidHost)?;
    Ok(UrlOf {
        authority: Some(url[Position::BeforeHost..Position::AfterPort].to_owned()),
        uri: url.into(),
    })
}

/// The `expect("failed to build request")`: the URI must be one the `http` crate accepts.
/// When it is not, the message blames the host if the authority alone is not valid.
fn check_uri(uri: &str, authority: Option<&str>) -> Result<(), EventRejected> {
    if Uri::try_from(uri).is_ok() {
        return Ok(());
    }
    Err(match authority {
        Some(authority) if authority.parse::<Authority>().is_err() => EventRejected::InvalidHost,
        _ => EventRejected::InvalidUri,
    })
}

/// `Body::from_maybe_encoded` panics on a body that is marked base64 but is not.
fn check_body(is_base64_encoded: bool, body: Option<&str>) -> Result<(), EventRejected> {
    match body {
        Some(body) if is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(body)
            .map(drop)
            .map_err(|_| EventRejected::InvalidBase64Body),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The published REST event (`events/published/`) with its host and path replaced.
    fn rest_event(host: &str, path: &str) -> Value {
        let mut event: Value = serde_json::from_str(include_str!(
            "../../events/published/example-apigw-request.json"
        ))
        .unwrap();
        event["headers"]["Host"] = json!(host);
        event["multiValueHeaders"]["Host"] = json!([host]);
        event["path"] = json!(path);
        event
    }

    /// The published HTTP API event with its host, raw path and raw query string replaced.
    fn http_event(host: &str, raw_path: &str, raw_query: &str) -> Value {
        let mut event: Value = serde_json::from_str(include_str!(
            "../../events/published/example-apigw-v2-request-no-authorizer.json"
        ))
        .unwrap();
        event["headers"]["host"] = json!(host);
        event["requestContext"]["domainName"] = json!(host);
        event["rawPath"] = json!(raw_path);
        event["rawQueryString"] = json!(raw_query);
        event
    }

    /// lambda_http's own conversion of the event, which may panic.
    fn lambda_http_panics(event: &Value) -> bool {
        let text = event.to_string();
        std::panic::catch_unwind(|| lambda_http::request::from_str(&text)).is_err()
    }

    fn rejected(event: &Value) -> Option<EventRejected> {
        request_from_event(event).1.err()
    }

    #[test]
    fn a_header_repeated_in_a_rest_event_reaches_the_handler_with_every_value() {
        for name in [
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-Match",
        ] {
            let mut event = rest_event("api.example.com", "/webhooks");
            event["headers"][name] = json!("second");
            event["multiValueHeaders"][name] = json!(["first", "second"]);
            let (_, request) = request_from_event(&event);
            let request = request.unwrap();
            let values: Vec<_> = request.headers().get_all(name).iter().collect();
            assert_eq!(values, ["first", "second"], "{name}");
        }
    }

    #[test]
    fn a_header_sent_once_in_a_rest_event_is_seen_once() {
        let mut event = rest_event("api.example.com", "/webhooks");
        event["headers"]["Authorization"] = json!("Bearer x");
        event["multiValueHeaders"]["Authorization"] = json!(["Bearer x"]);
        let request = request_from_event(&event).1.unwrap();
        assert_eq!(request.headers().get_all("authorization").iter().count(), 1);
    }

    #[test]
    fn accepts_an_ordinary_rest_event_and_keeps_its_path_and_method() {
        let (version, request) = request_from_event(&rest_event("api.example.com", "/webhooks"));
        let request = request.unwrap();
        assert_eq!(version, PayloadVersion::V1);
        assert_eq!(request.method(), "POST");
        assert_eq!(request.raw_http_path(), "/webhooks");
    }

    #[test]
    fn rejects_a_host_header_that_is_not_a_valid_authority() {
        let event = rest_event("1234567890.execute-api.{dns_suffix}", "/webhooks");
        assert!(lambda_http_panics(&event));
        assert_eq!(rejected(&event), Some(EventRejected::InvalidHost));
        let event = rest_event("exa mple.com", "/webhooks");
        assert!(lambda_http_panics(&event));
        assert_eq!(rejected(&event), Some(EventRejected::InvalidHost));
    }

    #[test]
    fn rejects_an_x_forwarded_proto_that_is_not_a_scheme() {
        let mut event = rest_event("api.example.com", "/webhooks");
        event["headers"]["X-Forwarded-Proto"] = json!("ht tp");
        assert!(lambda_http_panics(&event));
        assert_eq!(rejected(&event), Some(EventRejected::InvalidHost));
    }

    #[test]
    fn rejects_a_path_that_makes_no_url_without_a_host() {
        let mut event = rest_event("x", ":99999");
        event["headers"].as_object_mut().unwrap().remove("Host");
        event["multiValueHeaders"]
            .as_object_mut()
            .unwrap()
            .remove("Host");
        event["requestContext"]["stage"] = json!("$default");
        assert!(lambda_http_panics(&event));
        assert_eq!(rejected(&event), Some(EventRejected::InvalidPath));
    }

    #[test]
    fn rejects_a_raw_query_string_that_makes_an_invalid_uri() {
        let event = http_event("api.example.com", "/webhooks", "a=\"b c\"");
        assert!(lambda_http_panics(&event));
        assert_eq!(rejected(&event), Some(EventRejected::InvalidUri));
        let ok = http_event("api.example.com", "/webhooks", "a=b");
        assert_eq!(rejected(&ok), None);
    }

    #[test]
    fn rejects_a_uri_longer_than_http_accepts() {
        let event = http_event("api.example.com", &format!("/{}", "a".repeat(70_000)), "");
        assert!(lambda_http_panics(&event));
        assert_eq!(rejected(&event), Some(EventRejected::InvalidUri));
    }

    #[test]
    fn rejects_a_body_marked_base64_that_is_not() {
        let mut event = rest_event("api.example.com", "/webhooks");
        event["isBase64Encoded"] = json!(true);
        event["body"] = json!("not base64!");
        assert!(lambda_http_panics(&event));
        assert_eq!(rejected(&event), Some(EventRejected::InvalidBase64Body));
    }

    #[test]
    fn rejects_an_event_that_is_not_an_api_gateway_request() {
        let (version, request) = request_from_event(&json!({"Records": []}));
        assert_eq!(version, PayloadVersion::Unrecognised);
        assert_eq!(request.err(), Some(EventRejected::NotAnApiGatewayRequest));
    }

    #[test]
    fn rejection_is_a_400_validation_error_naming_the_part() {
        let response = rejection_response(&EventRejected::InvalidHost, "req-1");
        assert_eq!(response.status(), 400);
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(
            body["error"]["message"],
            "The request's Host header is not a valid host"
        );
        assert_eq!(body["error"]["details"]["fields"][0]["field"], "host");
        assert_eq!(response.headers()["x-request-id"], "req-1");
    }

    #[test]
    fn v1_responses_carry_headers_in_multi_value_headers_only() {
        let response = rejection_response(&EventRejected::InvalidHost, "req-1");
        let json = serde_json::to_value(EventResponse::new(PayloadVersion::V1, response)).unwrap();
        assert_eq!(json["statusCode"], 400);
        assert_eq!(json["headers"], json!({}));
        assert_eq!(
            json["multiValueHeaders"]["content-type"],
            json!(["application/json"])
        );
        assert_eq!(json["isBase64Encoded"], false);
        assert!(json["body"].as_str().unwrap().contains("VALIDATION_ERROR"));
    }

    #[test]
    fn v2_responses_carry_headers_and_cookies() {
        let mut response = rejection_response(&EventRejected::InvalidHost, "req-1");
        response
            .headers_mut()
            .insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        let json = serde_json::to_value(EventResponse::new(PayloadVersion::V2, response)).unwrap();
        assert_eq!(json["statusCode"], 400);
        assert_eq!(json["headers"]["content-type"], "application/json");
        assert_eq!(json["cookies"], json!(["a=b"]));
        assert!(json["headers"].get("set-cookie").is_none());
    }

    #[test]
    fn unrecognised_events_are_answered_with_single_valued_headers() {
        let response = rejection_response(&EventRejected::NotAnApiGatewayRequest, "req-1");
        let json = serde_json::to_value(EventResponse::new(PayloadVersion::Unrecognised, response))
            .unwrap();
        assert_eq!(json["statusCode"], 400);
        assert_eq!(json["headers"]["content-type"], "application/json");
        assert_eq!(json["multiValueHeaders"], json!({}));
    }
}
