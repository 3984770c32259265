//! WEBHOOKS-API.md, row by row, against the handler with in-memory stores: the routes besides
//! the create, ownership, the webhook view, list, change, delete, reset-circuit, idempotency
//! scopes and rate limits.

use crate::support;

use std::time::Duration;

use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::{ApiKey, ApiToken, RateLimits, READ_WEBHOOKS, WRITE_WEBHOOKS};
use instaview_webhooks::http::handle;
use instaview_webhooks::store::{StoredWebhook, WebhookWrites};
use lambda_http::http::Method;
use lambda_http::Body;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use uuid::Uuid;

/// A second key with both scopes, owning nothing of the first key's.
const OTHER_TOKEN: &str = "sk_TestOtherWriteKey0123456789abcdefg";
/// A key with only `write:webhooks`.
const WRITE_ONLY_TOKEN: &str = "sk_TestWriteOnlyKey0123456789abcdefgh";
/// The first key (same `apiKeyId`) after its companies changed: `OTHER_COMPANY` only.
const MOVED_TOKEN: &str = "sk_TestMovedCompanyKey0123456789abcde";
/// A key allowed 3 requests a minute.
const MINUTE_TOKEN: &str = "sk_TestMinuteLimitKey0123456789abcdef";
/// A key allowed 3 requests an hour.
const HOUR_TOKEN: &str = "sk_TestHourLimitKey0123456789abcdefgh";
/// A key with InstaView's default limits.
const DEFAULT_LIMITS_TOKEN: &str = "sk_TestDefaultLimitKey0123456789abcde";

const BOTH: &[&str] = &[WRITE_WEBHOOKS, READ_WEBHOOKS];
const RATE_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-minute",
    "x-ratelimit-remaining-minute",
    "x-ratelimit-reset-minute",
    "x-ratelimit-limit-hour",
    "x-ratelimit-remaining-hour",
    "x-ratelimit-reset-hour",
];

/// `memory_app()` with the extra keys above.
fn app() -> MemoryApp {
    app_with(Settings::default())
}

fn app_with(settings: Settings) -> MemoryApp {
    let app = memory_app_with(settings);
    let token = |t: &str| ApiToken::parse(t).unwrap();
    let keys = app.keys();
    keys.insert(&token(OTHER_TOKEN), key("other-key", BOTH));
    keys.insert(
        &token(WRITE_ONLY_TOKEN),
        key("write-only", &[WRITE_WEBHOOKS]),
    );
    keys.insert(
        &token(MOVED_TOKEN),
        ApiKey {
            company_ids: vec![Uuid::parse_str(OTHER_COMPANY).unwrap()],
            ..key(KEY_ID, BOTH)
        },
    );
    keys.insert(
        &token(MINUTE_TOKEN),
        ApiKey {
            rate_limits: RateLimits {
                per_minute: 3,
                per_hour: 1000,
            },
            ..key("minute-limited", BOTH)
        },
    );
    keys.insert(
        &token(HOUR_TOKEN),
        ApiKey {
            rate_limits: RateLimits {
                per_minute: 1000,
                per_hour: 3,
            },
            ..key("hour-limited", BOTH)
        },
    );
    app
}

async fn send(app: &MemoryApp, request: RequestBuilder) -> Answer {
    parse(handle(app, request.build()).await)
}

/// Creates the seed's webhook with `token`; answers its `data`.
async fn create_as(app: &MemoryApp, token: &str, body: &str) -> Value {
    let answer = send(app, post(body).token(token)).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    answer.json["data"].clone()
}

/// Creates the seed's webhook with the first key; answers its id.
async fn create_one(app: &MemoryApp) -> String {
    id_of(&create_as(app, TOKEN, SEED_BODY).await)
}

fn id_of(data: &Value) -> String {
    data["id"].as_str().unwrap().to_owned()
}

fn path(id: &str) -> String {
    format!("/webhooks/{id}")
}

fn reset_path(id: &str) -> String {
    format!("/webhooks/{id}/reset-circuit")
}

fn reset(id: &str) -> RequestBuilder {
    request(Method::POST, &reset_path(id))
}

fn stored(app: &MemoryApp, id: &str) -> Option<StoredWebhook> {
    app.webhooks().get_record(Uuid::parse_str(id).unwrap())
}

/// Stores a copy of webhook `id` under a new id, changed by `change` (for states the API
/// cannot reach by itself: an open circuit, another creation time). Answers the new id.
async fn insert_copy(
    app: &MemoryApp,
    id: &str,
    change: impl FnOnce(&mut instaview_webhooks::domain::Webhook),
) -> String {
    let mut copy = stored(app, id).unwrap();
    copy.webhook.id = Uuid::new_v4();
    change(&mut copy.webhook);
    app.webhooks().insert(&copy, 1000, None).await.unwrap();
    copy.webhook.id.to_string()
}

/// Webhook `id` as the seed's create left it: record, header names and secret values.
fn assert_untouched(app: &MemoryApp, id: &str) {
    let record = stored(app, id).expect("the webhook still exists");
    assert_eq!(record.webhook.version, 1);
    assert_eq!(record.webhook.name.as_deref(), Some("Production Webhook"));
    assert_eq!(record.webhook.header_names, ["Authorization"]);
    let document: Value =
        serde_json::from_str(&app.secrets().document_of(&record.secret).unwrap()).unwrap();
    assert_eq!(
        document["headers"],
        json!([{"name": "Authorization", "value": "Bearer your-internal-token"}])
    );
}

/// The 404 of an id, exactly as the spec writes it.
fn assert_not_found(answer: &Answer, id_as_sent: &str) {
    assert_error(answer, 404, "RESOURCE_NOT_FOUND");
    assert_eq!(
        answer.json["error"]["message"],
        "Webhook configuration not found"
    );
    assert_eq!(
        answer.json["error"]["details"],
        json!({"resourceType": "WebhookConfig", "resourceId": id_as_sent})
    );
}

fn assert_success(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{}", answer.raw);
    assert_eq!(answer.json["success"], true, "{}", answer.raw);
    assert_eq!(answer.json["error"], Value::Null);
}

fn field_names(answer: &Answer) -> Vec<String> {
    answer.field_errors().into_iter().map(|(f, _)| f).collect()
}

fn keys_of(data: &Value) -> Vec<&str> {
    data.as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

/// Waits, if needed, so that a few requests land in one UTC minute (and hour).
async fn away_from_a_minute_edge() {
    let second = OffsetDateTime::now_utc().second();
    if second >= 57 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
}

// --- Routes --------------------------------------------------------------------------------

#[tokio::test]
async fn every_route_answers_its_success() {
    let app = app();
    let created = send(&app, post(SEED_BODY)).await;
    assert_success(&created, 201);
    let id = id_of(&created.json["data"]);
    assert_success(&send(&app, get("/webhooks")).await, 200);
    assert_success(&send(&app, get(&path(&id))).await, 200);
    assert_success(&send(&app, patch(&path(&id), r#"{"name":"n"}"#)).await, 200);
    assert_success(&send(&app, reset(&id)).await, 200);
    let deleted = send(&app, delete(&path(&id))).await;
    assert_eq!(deleted.status, 204, "{}", deleted.raw);
}

#[tokio::test]
async fn every_route_accepts_a_trailing_slash() {
    let app = app();
    let id = create_one(&app).await;
    assert_success(&send(&app, get("/webhooks/")).await, 200);
    assert_success(&send(&app, get(&format!("/webhooks/{id}/"))).await, 200);
    let patched = send(&app, patch(&format!("/webhooks/{id}/"), r#"{"name":"n"}"#)).await;
    assert_success(&patched, 200);
    let reset = send(
        &app,
        request(Method::POST, &format!("/webhooks/{id}/reset-circuit/")),
    )
    .await;
    assert_success(&reset, 200);
    let deleted = send(&app, delete(&format!("/webhooks/{id}/"))).await;
    assert_eq!(deleted.status, 204, "{}", deleted.raw);
}

/// An HTTP API (v2) event on a named stage, as API Gateway sends it.
fn staged_event(method: &str, path: &str, body: Option<&str>) -> lambda_http::Request {
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": format!("/prod{path}"),
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {TOKEN}"),
            "content-type": "application/json",
            "host": "k3x9q2w7ab.execute-api.eu-central-1.amazonaws.com"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "k3x9q2w7ab",
            "domainName": "k3x9q2w7ab.execute-api.eu-central-1.amazonaws.com",
            "domainPrefix": "k3x9q2w7ab",
            "http": {
                "method": method,
                "path": format!("/prod{path}"),
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.24",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "Cz3suowkbniUEQ==",
            "routeKey": "$default",
            "stage": "prod",
            "time": "01/Jan/2026:10:11:27 +0000",
            "timeEpoch": 1767262287655u64
        },
        "isBase64Encoded": false,
        "body": body
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn the_stage_never_matters_on_any_route() {
    let app = app();
    let id = create_one(&app).await;
    for (method, path, body, status) in [
        ("GET", "/webhooks".to_owned(), None, 200),
        ("GET", path(&id), None, 200),
        ("PATCH", path(&id), Some(r#"{"name":"n"}"#), 200),
        ("POST", reset_path(&id), None, 200),
        ("DELETE", path(&id), None, 204),
    ] {
        let answer = parse(handle(&app, staged_event(method, &path, body)).await);
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.raw);
    }
}

#[tokio::test]
async fn other_methods_on_each_path_are_405_with_that_paths_allow() {
    let app = app();
    let id = create_one(&app).await;
    let cases: [(String, &[Method], &str); 3] = [
        (
            "/webhooks".into(),
            &[Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD],
            "GET, POST",
        ),
        (
            path(&id),
            &[Method::POST, Method::PUT, Method::OPTIONS],
            "GET, PATCH, DELETE",
        ),
        (
            reset_path(&id),
            &[Method::GET, Method::PATCH, Method::DELETE, Method::PUT],
            "POST",
        ),
    ];
    for (path, methods, allow) in cases {
        for method in methods {
            let answer = send(&app, request(method.clone(), &path)).await;
            assert_error(&answer, 405, "METHOD_NOT_ALLOWED");
            assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn unknown_sub_paths_are_404_not_found() {
    let app = app();
    let id = create_one(&app).await;
    for path in [
        format!("/webhooks/{id}/unknown"),
        format!("/webhooks/{id}/reset-circuit/again"),
        format!("/webhooks/{id}/RESET-CIRCUIT"),
        format!("/webhooks/{id}//"),
        "/webhooks//reset-circuit".into(),
        format!("/webhook/{id}"),
        format!("/v1/webhooks/{id}"),
    ] {
        for method in [Method::GET, Method::POST] {
            let answer = send(&app, request(method.clone(), &path)).await;
            assert_error(&answer, 404, "NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn a_key_with_only_write_webhooks_cannot_read() {
    let app = app();
    let id = id_of(&create_as(&app, WRITE_ONLY_TOKEN, SEED_BODY).await);
    for path in ["/webhooks".to_owned(), path(&id)] {
        let answer = send(&app, get(&path).token(WRITE_ONLY_TOKEN)).await;
        assert_error(&answer, 403, "INSUFFICIENT_PERMISSIONS");
        assert_eq!(
            answer.json["error"]["message"],
            "Required scope read:webhooks not found"
        );
    }
}

#[tokio::test]
async fn a_key_with_only_read_webhooks_cannot_change_delete_or_reset() {
    let app = app();
    let id = create_one(&app).await;
    for request in [
        patch(&path(&id), r#"{"name":"n"}"#),
        delete(&path(&id)),
        reset(&id),
    ] {
        let answer = send(&app, request.token(READ_ONLY_TOKEN)).await;
        assert_error(&answer, 403, "INSUFFICIENT_PERMISSIONS");
        assert_eq!(
            answer.json["error"]["message"],
            "Required scope write:webhooks not found"
        );
    }
    let record = stored(&app, &id).unwrap().webhook;
    assert_eq!(record.version, 1);
    assert_eq!(record.name.as_deref(), Some("Production Webhook"));
}

#[tokio::test]
async fn the_route_is_checked_before_authentication() {
    let app = app();
    let id = create_one(&app).await;
    let answer = send(
        &app,
        request(Method::PUT, &path(&id)).without_header("authorization"),
    )
    .await;
    assert_error(&answer, 405, "METHOD_NOT_ALLOWED");
    let answer = send(
        &app,
        get(&format!("/webhooks/{id}/unknown")).token(UNKNOWN_TOKEN),
    )
    .await;
    assert_error(&answer, 404, "NOT_FOUND");
}

#[tokio::test]
async fn authentication_is_checked_before_the_rate_limit() {
    away_from_a_minute_edge().await;
    let app = app();
    for _ in 0..3 {
        assert_eq!(
            send(&app, get("/webhooks").token(MINUTE_TOKEN))
                .await
                .status,
            200
        );
    }
    let answer = send(&app, get("/webhooks").without_header("authorization")).await;
    assert_error(&answer, 401, "INVALID_API_KEY");
    let answer = send(&app, get("/webhooks").token(UNKNOWN_TOKEN)).await;
    assert_error(&answer, 401, "INVALID_API_KEY");
}

#[tokio::test]
async fn the_rate_limit_is_checked_before_content_type_size_body_and_resource() {
    away_from_a_minute_edge().await;
    let app = app();
    let id = id_of(&create_as(&app, MINUTE_TOKEN, SEED_BODY).await);
    for _ in 0..2 {
        assert_eq!(
            send(&app, get(&path(&id)).token(MINUTE_TOKEN)).await.status,
            200
        );
    }
    let oversized = format!(r#"{{"name":"{}"}}"#, "a".repeat(600 * 1024));
    for request in [
        patch(&path(&id), r#"{"name":"n"}"#).header("content-type", "text/plain"),
        patch(&path(&id), &oversized),
        patch(&path(&id), "not json"),
        post("{}"),
        patch(&path(&Uuid::new_v4().to_string()), r#"{"name":"n"}"#),
        get("/webhooks/not-a-uuid"),
        reset(&id).body(Body::Text("x".into())),
    ] {
        let answer = send(&app, request.token(MINUTE_TOKEN)).await;
        assert_error(&answer, 429, "RATE_LIMIT_EXCEEDED");
    }
}

#[tokio::test]
async fn content_type_is_checked_before_size_and_size_before_the_body() {
    let app = app();
    let id = create_one(&app).await;
    let oversized = format!("{{{}", "a".repeat(600 * 1024));
    let answer = send(
        &app,
        patch(&path(&id), &oversized).header("content-type", "text/plain"),
    )
    .await;
    assert_error(&answer, 415, "UNSUPPORTED_MEDIA_TYPE");
    let answer = send(&app, patch(&path(&id), &oversized)).await;
    assert_error(&answer, 413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn the_body_is_checked_before_the_resource() {
    let app = app();
    let unknown = Uuid::new_v4().to_string();
    let answer = send(&app, patch(&path(&unknown), r#"{"colour":"red"}"#)).await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    let answer = send(&app, patch("/webhooks/not-a-uuid", "{}")).await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    let answer = send(
        &app,
        reset(&unknown)
            .header("content-type", "application/json")
            .body(Body::Text(r#"{"force":true}"#.into())),
    )
    .await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
}

// --- Ownership and "not found" -------------------------------------------------------------

/// Every route on a webhook id, for `token`.
fn every_id_route(id: &str, token: &str) -> Vec<RequestBuilder> {
    let mut routes = vec![get(&path(id)).token(token)];
    routes.extend(changing_routes(id, token));
    routes.push(delete(&path(id)).token(token));
    routes
}

/// Every route that changes, tests or rotates webhook `id` (each action with and without an
/// idempotency key): what a key may not do to a webhook of a company it lost.
fn changing_routes(id: &str, token: &str) -> Vec<RequestBuilder> {
    vec![
        patch(&path(id), r#"{"name":"changed"}"#).token(token),
        patch(&path(id), r#"{"headers":[{"name":"X-New","value":"v"}]}"#).token(token),
        reset(id).token(token),
        reset(id).header("idempotency-key", "k-1").token(token),
        test_ping(id).token(token),
        test_ping(id).header("idempotency-key", "k-2").token(token),
        rotate(id).token(token),
        rotate(id).header("idempotency-key", "k-3").token(token),
    ]
}

fn test_ping(id: &str) -> RequestBuilder {
    request(Method::POST, &format!("/webhooks/{id}/test"))
}

fn rotate(id: &str) -> RequestBuilder {
    request(Method::POST, &format!("/webhooks/{id}/rotate-secret"))
}

/// The seed's webhook with `companyId` set to `COMPANY`, created by the first key.
async fn create_for_company(app: &MemoryApp) -> String {
    let body = SEED_BODY.replacen('{', &format!(r#"{{"companyId":"{COMPANY}","#), 1);
    id_of(&create_as(app, TOKEN, &body).await)
}

#[tokio::test]
async fn an_unknown_id_is_404_resource_not_found_on_every_route() {
    let app = app();
    create_one(&app).await;
    let unknown = Uuid::new_v4().to_string();
    for request in every_id_route(&unknown, TOKEN) {
        assert_not_found(&send(&app, request).await, &unknown);
    }
}

#[tokio::test]
async fn an_id_that_is_not_a_uuid_is_the_same_404_echoing_the_id_as_sent() {
    let app = app();
    let id = create_one(&app).await;
    let simple = id.replace('-', "");
    let braced = format!("{{{id}}}");
    let urn = format!("urn:uuid:{id}");
    for sent in ["not-a-uuid", "123", simple.as_str(), &braced, &urn, "%20"] {
        for request in every_id_route(sent, TOKEN) {
            assert_not_found(&send(&app, request).await, sent);
        }
    }
    assert_untouched(&app, &id);
}

#[tokio::test]
async fn another_keys_webhook_is_the_same_404_and_stays_untouched() {
    let app = app();
    let id = create_one(&app).await;
    let unknown = Uuid::new_v4().to_string();
    for (theirs, nobodys) in every_id_route(&id, OTHER_TOKEN)
        .into_iter()
        .zip(every_id_route(&unknown, OTHER_TOKEN))
    {
        let theirs = send(&app, theirs).await;
        assert_not_found(&theirs, &id);
        let nobodys = send(&app, nobodys).await;
        assert_eq!(theirs.status, nobodys.status);
        assert_eq!(theirs.json["error"]["code"], nobodys.json["error"]["code"]);
        assert_eq!(
            theirs.json["error"]["message"],
            nobodys.json["error"]["message"]
        );
    }
    assert_untouched(&app, &id);
}

#[tokio::test]
async fn the_id_is_a_uuid_in_any_case_and_echoed_as_sent() {
    let app = app();
    let id = create_one(&app).await;
    let upper = id.to_uppercase();
    let answer = send(&app, get(&path(&upper))).await;
    assert_success(&answer, 200);
    assert_eq!(answer.json["data"]["id"], id.as_str());
    let unknown = Uuid::new_v4().to_string().to_uppercase();
    assert_not_found(&send(&app, get(&path(&unknown))).await, &unknown);
}

#[tokio::test]
async fn a_long_id_is_echoed_cut_to_64_characters() {
    let app = app();
    let long = "a".repeat(300);
    let answer = send(&app, get(&path(&long))).await;
    assert_not_found(&answer, &format!("{}…", "a".repeat(64)));
}

/// WEBHOOKS-API.md (amended): the key's webhook of a company it lost is its to see and remove,
/// not to change, test or rotate.
#[tokio::test]
async fn own_webhook_of_a_company_the_key_no_longer_has_is_403_resource_access_denied() {
    let app = app();
    let id = create_for_company(&app).await;
    let secret = stored(&app, &id).unwrap().secret;
    let document = app.secrets().document_of(&secret).unwrap();
    for request in changing_routes(&id, MOVED_TOKEN) {
        let answer = send(&app, request).await;
        assert_error(&answer, 403, "RESOURCE_ACCESS_DENIED");
    }
    assert_untouched(&app, &id);
    assert_eq!(stored(&app, &id).unwrap().secret, secret);
    assert_eq!(app.secrets().document_of(&secret).unwrap(), document);
}

#[tokio::test]
async fn own_webhook_of_a_company_the_key_no_longer_has_is_listed_and_readable() {
    let app = app();
    let id = create_for_company(&app).await;
    let before = send(&app, get(&path(&id))).await;

    let listed = send(&app, get("/webhooks").token(MOVED_TOKEN)).await;
    let read = send(&app, get(&path(&id)).token(MOVED_TOKEN)).await;

    assert_success(&listed, 200);
    assert_eq!(listed.json["data"]["total"], 1);
    assert_eq!(listed.json["data"]["data"][0]["id"], id.as_str());
    assert_success(&read, 200);
    assert_eq!(read.json["data"], before.json["data"]);
    assert_eq!(read.json["data"]["companyId"], COMPANY);
    assert_eq!(read.header("etag"), before.header("etag"));
    // Asking for the lost company by name is still refused: the key may not act for it.
    let by_company = send(
        &app,
        get("/webhooks")
            .query("companyId", COMPANY)
            .token(MOVED_TOKEN),
    )
    .await;
    assert_error(&by_company, 403, "RESOURCE_ACCESS_DENIED");
}

#[tokio::test]
async fn own_webhook_of_a_company_the_key_no_longer_has_can_be_deleted() {
    let app = app();
    let id = create_for_company(&app).await;
    let other = create_one(&app).await;
    let secret = stored(&app, &id).unwrap().secret;
    assert_eq!(app.webhooks().count_for(KEY_ID), 2);

    // If-Match is judged as on any delete: a stale one changes nothing.
    let stale = send(
        &app,
        delete(&path(&id))
            .header("if-match", "\"999\"")
            .token(MOVED_TOKEN),
    )
    .await;
    assert_error(&stale, 412, "PRECONDITION_FAILED");
    assert_untouched(&app, &id);
    let etag = send(&app, get(&path(&id)))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let deleted = send(
        &app,
        delete(&path(&id))
            .header("if-match", &etag)
            .token(MOVED_TOKEN),
    )
    .await;

    assert_eq!(deleted.status, 204, "{}", deleted.raw);
    assert!(stored(&app, &id).is_none());
    assert!(
        app.secrets().document_of(&secret).is_none(),
        "secret deleted"
    );
    assert_eq!(app.webhooks().count_for(KEY_ID), 1);
    assert_not_found(&send(&app, get(&path(&id)).token(MOVED_TOKEN)).await, &id);
    assert_not_found(
        &send(&app, delete(&path(&id)).token(MOVED_TOKEN)).await,
        &id,
    );
    // Another key still cannot delete it, whatever its companies.
    assert!(stored(&app, &other).is_some());
    assert_not_found(
        &send(&app, delete(&path(&other)).token(OTHER_TOKEN)).await,
        &other,
    );
}

#[tokio::test]
async fn own_webhook_without_a_company_stays_reachable_when_the_keys_companies_change() {
    let app = app();
    let id = create_one(&app).await;
    assert_success(&send(&app, get(&path(&id)).token(MOVED_TOKEN)).await, 200);
}

// --- The webhook view ----------------------------------------------------------------------

#[tokio::test]
async fn get_answers_the_create_data_without_the_signing_secret_in_the_same_order() {
    let app = app();
    let mut created = create_as(&app, TOKEN, SEED_BODY).await;
    let answer = send(&app, get(&path(&id_of(&created)))).await;
    assert_success(&answer, 200);
    assert_eq!(
        keys_of(&answer.json),
        ["success", "data", "error", "timestamp"]
    );
    let data = &answer.json["data"];
    assert_eq!(keys_of(data), VIEW_FIELDS);
    created.as_object_mut().unwrap().remove("signingSecret");
    assert_eq!(data, &created);
    assert!(!answer.raw.contains("signingSecret"));
}

#[tokio::test]
async fn every_view_has_the_same_fields_in_the_same_order() {
    let app = app();
    let id = create_one(&app).await;
    let patched = send(&app, patch(&path(&id), r#"{"isActive":false}"#)).await;
    assert_eq!(keys_of(&patched.json["data"]), VIEW_FIELDS);
    let reset = send(&app, reset(&id)).await;
    assert_eq!(keys_of(&reset.json["data"]), VIEW_FIELDS);
    let list = send(&app, get("/webhooks")).await;
    assert_eq!(keys_of(&list.json["data"]["data"][0]), VIEW_FIELDS);
}

#[tokio::test]
async fn header_values_are_never_returned_by_any_route() {
    let app = app();
    let id = create_one(&app).await;
    let new_headers = r#"{"headers":[{"name":"X-Token","value":"brand-new-secret-value"}]}"#;
    let answers = [
        send(&app, get(&path(&id))).await,
        send(&app, get("/webhooks")).await,
        send(&app, patch(&path(&id), new_headers)).await,
        send(&app, reset(&id)).await,
        send(&app, get(&path(&id))).await,
    ];
    for answer in &answers {
        assert_success(answer, 200);
        assert!(
            !answer.raw.contains("your-internal-token"),
            "{}",
            answer.raw
        );
        assert!(
            !answer.raw.contains("brand-new-secret-value"),
            "{}",
            answer.raw
        );
    }
    assert_eq!(
        answers[0].json["data"]["headers"],
        json!([{"name": "Authorization", "isMasked": true}])
    );
    assert_eq!(
        answers[2].json["data"]["headers"],
        json!([{"name": "X-Token", "isMasked": true}])
    );
}

fn assert_strong_etag_and_no_store(answer: &Answer) -> String {
    let etag = answer.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "not a strong, quoted ETag: {etag}"
    );
    assert!(!etag[1..etag.len() - 1].contains('"'));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    etag
}

#[tokio::test]
async fn get_patch_and_reset_answer_a_strong_etag_and_no_store() {
    let app = app();
    let id = create_one(&app).await;
    for request in [
        get(&path(&id)),
        patch(&path(&id), r#"{"name":"n"}"#),
        reset(&id),
    ] {
        let answer = send(&app, request).await;
        assert_success(&answer, 200);
        assert_strong_etag_and_no_store(&answer);
    }
}

#[tokio::test]
async fn the_etag_changes_with_every_change_and_only_then() {
    let app = app();
    let id = create_one(&app).await;
    let mut seen = vec![assert_strong_etag_and_no_store(
        &send(&app, get(&path(&id))).await,
    )];
    assert_eq!(
        send(&app, get(&path(&id))).await.header("etag"),
        Some(seen[0].as_str())
    );
    for request in [
        patch(&path(&id), r#"{"name":"one"}"#),
        patch(&path(&id), r#"{"isActive":false}"#),
        patch(&path(&id), r#"{"headers":[{"name":"X-A","value":"b"}]}"#),
        reset(&id),
    ] {
        let etag = assert_strong_etag_and_no_store(&send(&app, request).await);
        assert!(!seen.contains(&etag), "{etag} seen before: {seen:?}");
        let read = send(&app, get(&path(&id))).await;
        assert_eq!(read.header("etag"), Some(etag.as_str()));
        seen.push(etag);
    }
}

// --- GET /webhooks -------------------------------------------------------------------------

#[tokio::test]
async fn list_answers_data_and_total() {
    let app = app();
    let answer = send(&app, get("/webhooks")).await;
    assert_success(&answer, 200);
    assert_eq!(answer.json["data"], json!({"data": [], "total": 0}));
    let first = create_as(&app, TOKEN, SEED_BODY).await;
    create_one(&app).await;
    let answer = send(&app, get("/webhooks")).await;
    assert_eq!(keys_of(&answer.json["data"]), ["data", "total"]);
    assert_eq!(answer.json["data"]["total"], 2);
    let items = answer.json["data"]["data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let listed = items.iter().find(|i| i["id"] == first["id"]).unwrap();
    let mut expected = first.clone();
    expected.as_object_mut().unwrap().remove("signingSecret");
    assert_eq!(listed, &expected);
    assert!(!answer.raw.contains("signingSecret"));
}

#[tokio::test]
async fn list_is_oldest_first_by_created_at_then_id() {
    let app = app();
    let template = create_one(&app).await;
    let at = |s: i64| OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap();
    let late = insert_copy(&app, &template, |w| w.created_at = at(100)).await;
    let early_a = insert_copy(&app, &template, |w| {
        w.id = Uuid::parse_str("ffffffff-0000-4000-8000-000000000000").unwrap();
        w.created_at = at(0);
    })
    .await;
    let early_b = insert_copy(&app, &template, |w| {
        w.id = Uuid::parse_str("00000000-0000-4000-8000-000000000000").unwrap();
        w.created_at = at(0);
    })
    .await;
    let middle = insert_copy(&app, &template, |w| w.created_at = at(50)).await;
    let answer = send(&app, get("/webhooks")).await;
    let ids: Vec<&str> = answer.json["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    let expected = [&early_b, &early_a, &middle, &late, &template].map(String::as_str);
    assert_eq!(ids, expected);
    assert_eq!(answer.json["data"]["total"], 5);
}

#[tokio::test]
async fn list_with_company_id_gives_only_that_companys_webhooks() {
    let app = app();
    let with_company = SEED_BODY.replacen('{', &format!(r#"{{"companyId":"{COMPANY}","#), 1);
    let mine = id_of(&create_as(&app, TOKEN, &with_company).await);
    create_one(&app).await;
    for sent in [COMPANY.to_owned(), COMPANY.to_uppercase()] {
        let answer = send(&app, get("/webhooks").query("companyId", &sent)).await;
        assert_success(&answer, 200);
        assert_eq!(answer.json["data"]["total"], 1);
        assert_eq!(answer.json["data"]["data"][0]["id"], mine.as_str());
    }
    assert_eq!(send(&app, get("/webhooks")).await.json["data"]["total"], 2);
}

#[tokio::test]
async fn list_company_id_that_is_not_a_uuid_is_400_on_field_company_id() {
    let app = app();
    for sent in [
        "",
        "abc",
        "3f1c2a9e8b4d4e6f9a7b1c2d3e4f5a6b",
        &format!("{COMPANY}x"),
    ] {
        let answer = send(&app, get("/webhooks").query("companyId", sent)).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(field_names(&answer), ["companyId"], "{sent}");
    }
}

#[tokio::test]
async fn list_company_id_not_among_the_keys_companies_is_403() {
    let app = app();
    let answer = send(&app, get("/webhooks").query("companyId", OTHER_COMPANY)).await;
    assert_error(&answer, 403, "RESOURCE_ACCESS_DENIED");
}

#[tokio::test]
async fn list_with_any_other_query_parameter_is_400() {
    let app = app();
    for (name, value) in [
        ("limit", "10"),
        ("cursor", "x"),
        ("companyid", COMPANY),
        ("apiKeyId", KEY_ID),
    ] {
        let answer = send(&app, get("/webhooks").query(name, value)).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
    }
    let answer = send(
        &app,
        get("/webhooks")
            .query("companyId", COMPANY)
            .query("page", "2"),
    )
    .await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn an_unknown_query_parameter_is_400_naming_it_on_every_route() {
    let app = app();
    let id = create_one(&app).await;
    let routes = [
        post(SEED_BODY),
        get("/webhooks"),
        get(&path(&id)),
        patch(&path(&id), r#"{"name":"changed"}"#),
        delete(&path(&id)),
        reset(&id),
        test_ping(&id),
        rotate(&id),
    ];
    for request in routes {
        let answer = send(&app, request.query("verbose", "1")).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(field_names(&answer), ["verbose"], "{}", answer.raw);
        assert_eq!(
            answer.json["error"]["message"],
            if answer.raw.contains("companyId is the only one") {
                "verbose is not a query parameter: companyId is the only one"
            } else {
                "verbose is not a query parameter: this route takes none"
            }
        );
    }
    assert_eq!(app.webhooks().len(), 1, "nothing created");
    assert_untouched(&app, &id);
}

#[tokio::test]
async fn every_unknown_query_parameter_is_named_once() {
    let app = app();
    let id = create_one(&app).await;
    let answer = send(
        &app,
        reset(&id).query("b", "1").query("a", "1").query("b", "2"),
    )
    .await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    assert_eq!(field_names(&answer), ["a", "b"]);
    let answer = send(
        &app,
        get("/webhooks")
            .query("companyId", COMPANY)
            .query("page", "2"),
    )
    .await;
    assert_eq!(field_names(&answer), ["page"]);
    assert_untouched(&app, &id);
}

#[tokio::test]
async fn a_grace_period_in_the_query_of_rotate_secret_is_400_not_ignored() {
    let app = app();
    let id = create_one(&app).await;
    let secret = stored(&app, &id).unwrap().secret;
    let answer = send(&app, rotate(&id).query("gracePeriodSeconds", "999999999")).await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    assert_eq!(
        answer.field_errors(),
        [(
            "gracePeriodSeconds".to_owned(),
            "gracePeriodSeconds goes in the JSON body, not the query".to_owned()
        )]
    );
    assert_eq!(stored(&app, &id).unwrap().secret, secret, "not rotated");
}

#[tokio::test]
async fn list_shows_only_the_keys_own_webhooks() {
    let app = app();
    let mine = create_one(&app).await;
    let theirs = id_of(&create_as(&app, OTHER_TOKEN, SEED_BODY).await);
    for (token, id) in [(TOKEN, &mine), (OTHER_TOKEN, &theirs)] {
        let answer = send(&app, get("/webhooks").token(token)).await;
        assert_eq!(answer.json["data"]["total"], 1);
        assert_eq!(answer.json["data"]["data"][0]["id"], id.as_str());
    }
    let answer = send(&app, get("/webhooks").token(READ_ONLY_TOKEN)).await;
    assert_eq!(answer.json["data"], json!({"data": [], "total": 0}));
}

// --- PATCH /webhooks/{id} ------------------------------------------------------------------

#[tokio::test]
async fn patch_takes_application_json_and_application_merge_patch_json() {
    let app = app();
    let id = create_one(&app).await;
    for content_type in [
        "application/json",
        "application/merge-patch+json",
        "application/merge-patch+json; charset=utf-8",
        "Application/JSON",
    ] {
        let answer = send(
            &app,
            patch(&path(&id), r#"{"name":"n"}"#).header("content-type", content_type),
        )
        .await;
        assert_success(&answer, 200);
    }
}

#[tokio::test]
async fn patch_with_another_content_type_is_415() {
    let app = app();
    let id = create_one(&app).await;
    for content_type in [
        "text/plain",
        "application/json-patch+json",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
    ] {
        let answer = send(
            &app,
            patch(&path(&id), r#"{"name":"n"}"#).header("content-type", content_type),
        )
        .await;
        assert_error(&answer, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    let answer = send(
        &app,
        patch(&path(&id), r#"{"name":"n"}"#).without_header("content-type"),
    )
    .await;
    assert_error(&answer, 415, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(stored(&app, &id).unwrap().webhook.version, 1);
}

#[tokio::test]
async fn patch_with_an_empty_object_is_400() {
    let app = app();
    let id = create_one(&app).await;
    for body in ["{}", "", "[]", "null", "{"] {
        let answer = send(&app, patch(&path(&id), body)).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn patch_fields_follow_their_create_rules() {
    let app = app();
    let id = create_one(&app).await;
    for (body, field) in [
        (json!({"url": "http://api.example.com/h"}), "url"),
        (json!({"url": "https://user:pw@api.example.com/h"}), "url"),
        (json!({"url": "https://10.0.0.1/h"}), "url"),
        (json!({"url": 5}), "url"),
        (json!({"events": []}), "events"),
        (json!({"events": ["interview.created"]}), "events"),
        (json!({"events": ["ping", "ping"]}), "events"),
        (json!({"name": " "}), "name"),
        (json!({"name": "a".repeat(256)}), "name"),
        (json!({"description": "bell\u{7}"}), "description"),
        (json!({"description": "a".repeat(1001)}), "description"),
        (
            json!({"headers": [{"name": "Host", "value": "x"}]}),
            "headers[0].name",
        ),
        (
            json!({"headers": [{"name": "X-A", "value": " padded"}]}),
            "headers[0].value",
        ),
        (json!({"isActive": "yes"}), "isActive"),
        (
            json!({"headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]}),
            "headers[1].name",
        ),
        (
            json!({"headers": [{"name": "X-A", "value": "1", "masked": true}]}),
            "headers[0].masked",
        ),
    ] {
        let answer = send(&app, patch(&path(&id), &body.to_string())).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(field_names(&answer), [field], "{body}");
    }
    assert_eq!(stored(&app, &id).unwrap().webhook.version, 1);
}

#[tokio::test]
async fn patch_changes_each_field_it_names_and_leaves_the_others() {
    let app = app();
    let id = create_one(&app).await;
    let before = send(&app, get(&path(&id))).await.json["data"].clone();
    let changes = [
        ("url", json!("https://hooks.example.org/new")),
        ("events", json!(["ping", "interview.failed"])),
        ("name", json!("Renamed")),
        ("description", json!("New\tdescription\nwith lines")),
        ("isActive", json!(false)),
    ];
    let mut expected = before.clone();
    for (field, value) in changes {
        let body = json!({ field: value.clone() }).to_string();
        let answer = send(&app, patch(&path(&id), &body)).await;
        assert_success(&answer, 200);
        expected[field] = value;
        let mut data = answer.json["data"].clone();
        expected["updatedAt"] = data["updatedAt"].clone();
        assert_eq!(data, expected, "after changing {field}");
        data = send(&app, get(&path(&id))).await.json["data"].clone();
        assert_eq!(data, expected, "{field} as read back");
    }
}

#[tokio::test]
async fn patch_with_null_clears_name_and_description() {
    let app = app();
    let id = create_one(&app).await;
    let answer = send(
        &app,
        patch(&path(&id), r#"{"name":null,"description":null}"#),
    )
    .await;
    assert_success(&answer, 200);
    assert_eq!(answer.json["data"]["name"], Value::Null);
    assert_eq!(answer.json["data"]["description"], Value::Null);
    let record = stored(&app, &id).unwrap().webhook;
    assert_eq!((record.name, record.description), (None, None));
}

#[tokio::test]
async fn patch_with_null_for_the_other_fields_is_400() {
    let app = app();
    let id = create_one(&app).await;
    for field in ["url", "events", "headers", "isActive"] {
        let answer = send(&app, patch(&path(&id), &json!({ field: null }).to_string())).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(field_names(&answer), [field]);
    }
    assert_eq!(stored(&app, &id).unwrap().webhook.version, 1);
}

#[tokio::test]
async fn patch_of_a_field_that_cannot_change_is_400_naming_it() {
    let app = app();
    let id = create_one(&app).await;
    for (field, value) in [
        ("companyId", json!(COMPANY)),
        ("id", json!(Uuid::new_v4().to_string())),
        ("signingSecret", json!("a".repeat(64))),
        ("maxRetries", json!(5)),
        ("timeoutMs", json!(1000)),
        ("apiKeyId", json!("someone")),
        ("createdAt", json!("2020-01-01T00:00:00Z")),
    ] {
        let answer = send(
            &app,
            patch(&path(&id), &json!({ field: value }).to_string()),
        )
        .await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(
            answer.field_errors(),
            [(field.to_owned(), format!("{field} cannot be changed"))]
        );
        assert_eq!(
            answer.json["error"]["message"],
            format!("{field} cannot be changed")
        );
    }
    assert_eq!(stored(&app, &id).unwrap().webhook.version, 1);
}

#[tokio::test]
async fn patch_with_an_unknown_field_is_400() {
    let app = app();
    let id = create_one(&app).await;
    let answer = send(&app, patch(&path(&id), r#"{"name":"n","colour":"red"}"#)).await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    assert_eq!(field_names(&answer), ["colour"]);
    assert_eq!(stored(&app, &id).unwrap().webhook.version, 1);
}

#[tokio::test]
async fn patch_reports_every_field_error_at_once() {
    let app = app();
    let id = create_one(&app).await;
    let body = json!({
        "url": "ftp://x",
        "events": [],
        "name": "",
        "isActive": 1,
        "companyId": COMPANY,
        "colour": "red",
    });
    let answer = send(&app, patch(&path(&id), &body.to_string())).await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    let fields = field_names(&answer);
    for field in ["url", "events", "name", "isActive", "companyId", "colour"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    assert_eq!(answer.json["error"]["message"], answer.field_errors()[0].1);
}

#[tokio::test]
async fn patch_with_a_stale_if_match_is_412_and_changes_nothing() {
    let app = app();
    let id = create_one(&app).await;
    let stale = send(&app, get(&path(&id)))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    send(&app, patch(&path(&id), r#"{"name":"first"}"#)).await;
    let before = stored(&app, &id).unwrap();
    for (if_match, body) in [
        (stale.as_str(), r#"{"name":"second"}"#),
        (
            stale.as_str(),
            r#"{"headers":[{"name":"X-A","value":"b"}]}"#,
        ),
        ("\"999\"", r#"{"name":"second"}"#),
        ("W/\"2\"", r#"{"name":"second"}"#),
        ("garbage", r#"{"name":"second"}"#),
    ] {
        let answer = send(&app, patch(&path(&id), body).header("if-match", if_match)).await;
        assert_error(&answer, 412, "PRECONDITION_FAILED");
        assert_eq!(stored(&app, &id).unwrap(), before, "{if_match} {body}");
    }
}

#[tokio::test]
async fn patch_with_the_current_if_match_is_200() {
    let app = app();
    let id = create_one(&app).await;
    let current = send(&app, get(&path(&id)))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let answer = send(
        &app,
        patch(&path(&id), r#"{"name":"n"}"#).header("if-match", &current),
    )
    .await;
    assert_success(&answer, 200);
    let next = answer.header("etag").unwrap().to_owned();
    let answer = send(
        &app,
        patch(&path(&id), r#"{"headers":[]}"#).header("if-match", &next),
    )
    .await;
    assert_success(&answer, 200);
}

#[tokio::test]
async fn patch_with_if_match_star_is_200() {
    let app = app();
    let id = create_one(&app).await;
    let answer = send(
        &app,
        patch(&path(&id), r#"{"name":"n"}"#).header("if-match", "*"),
    )
    .await;
    assert_success(&answer, 200);
}

#[tokio::test]
async fn patch_moves_updated_at_and_never_created_at() {
    let app = app();
    let template = create_one(&app).await;
    let long_ago = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let id = insert_copy(&app, &template, |w| {
        w.created_at = long_ago;
        w.updated_at = long_ago;
    })
    .await;
    let before = send(&app, get(&path(&id))).await.json["data"].clone();
    assert_eq!(before["createdAt"], "2023-11-14T22:13:20Z");
    let answer = send(&app, patch(&path(&id), r#"{"name":"n"}"#)).await;
    let after = &answer.json["data"];
    assert_eq!(after["createdAt"], before["createdAt"]);
    assert_ne!(after["updatedAt"], before["updatedAt"]);
    let updated = time::OffsetDateTime::parse(
        after["updatedAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!((OffsetDateTime::now_utc() - updated).whole_seconds().abs() <= 2);
    assert!(after["updatedAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn patch_headers_replace_the_whole_list_and_their_values_go_to_the_secret() {
    let app = app();
    let id = create_one(&app).await;
    let body = json!({"headers": [
        {"name": "X-First", "value": "first-value"},
        {"name": "X-Second", "value": "second value"},
    ]});
    let answer = send(&app, patch(&path(&id), &body.to_string())).await;
    assert_success(&answer, 200);
    assert_eq!(
        answer.json["data"]["headers"],
        json!([{"name": "X-First", "isMasked": true}, {"name": "X-Second", "isMasked": true}])
    );
    let record = stored(&app, &id).unwrap();
    assert_eq!(record.webhook.header_names, ["X-First", "X-Second"]);
    let on_record = format!("{:?}", record.webhook);
    assert!(!on_record.contains("first-value") && !on_record.contains("second value"));
    let document: Value =
        serde_json::from_str(&app.secrets().document_of(&record.secret).unwrap()).unwrap();
    assert_eq!(
        document["headers"],
        json!([
            {"name": "X-First", "value": "first-value"},
            {"name": "X-Second", "value": "second value"},
        ])
    );
    let answer = send(&app, patch(&path(&id), r#"{"headers":[]}"#)).await;
    assert_eq!(answer.json["data"]["headers"], json!([]));
    let record = stored(&app, &id).unwrap();
    assert!(record.webhook.header_names.is_empty());
    let document: Value =
        serde_json::from_str(&app.secrets().document_of(&record.secret).unwrap()).unwrap();
    assert_eq!(document["headers"], json!([]));
}

#[tokio::test]
async fn patch_headers_keep_the_signing_secret() {
    let app = app();
    let created = create_as(&app, TOKEN, SEED_BODY).await;
    let id = id_of(&created);
    send(
        &app,
        patch(&path(&id), r#"{"headers":[{"name":"X-A","value":"b"}]}"#),
    )
    .await;
    let record = stored(&app, &id).unwrap();
    let document: Value =
        serde_json::from_str(&app.secrets().document_of(&record.secret).unwrap()).unwrap();
    assert_eq!(document["signingSecret"], created["signingSecret"]);
}

#[tokio::test]
async fn patch_without_headers_leaves_header_names_and_values_alone() {
    let app = app();
    let id = create_one(&app).await;
    send(&app, patch(&path(&id), r#"{"name":"n"}"#)).await;
    let record = stored(&app, &id).unwrap();
    assert_eq!(record.webhook.header_names, ["Authorization"]);
    let document: Value =
        serde_json::from_str(&app.secrets().document_of(&record.secret).unwrap()).unwrap();
    assert_eq!(
        document["headers"],
        json!([{"name": "Authorization", "value": "Bearer your-internal-token"}])
    );
}

#[tokio::test]
async fn patch_body_over_512_kib_is_413() {
    let app = app();
    let id = create_one(&app).await;
    let body = format!(r#"{{"description":"{}"}}"#, "a".repeat(512 * 1024));
    let answer = send(&app, patch(&path(&id), &body)).await;
    assert_error(&answer, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(stored(&app, &id).unwrap().webhook.version, 1);
}

#[tokio::test]
async fn patch_body_of_exactly_512_kib_is_read() {
    let app = app();
    let id = create_one(&app).await;
    let mut body = r#"{"name":"n"}"#.to_owned();
    body.push_str(&" ".repeat(512 * 1024 - body.len()));
    let answer = send(&app, patch(&path(&id), &body)).await;
    assert_success(&answer, 200);
}

// --- DELETE /webhooks/{id} -----------------------------------------------------------------

#[tokio::test]
async fn delete_answers_204_without_a_body() {
    let app = app();
    let id = create_one(&app).await;
    let response = handle(&app, delete(&path(&id)).build()).await;
    assert_eq!(response.status(), 204);
    assert!(response.body().is_empty(), "{:?}", response.body());
    assert!(response.headers().get("x-request-id").is_some());
}

#[tokio::test]
async fn delete_removes_the_record_and_its_secret() {
    let app = app();
    let id = create_one(&app).await;
    let arn = stored(&app, &id).unwrap().secret.arn;
    assert!(app.secrets().document(&arn).is_some());
    assert_eq!(send(&app, delete(&path(&id))).await.status, 204);
    assert!(stored(&app, &id).is_none());
    assert!(app.secrets().document(&arn).is_none());
    assert!(app.secrets().is_empty());
    assert_not_found(&send(&app, get(&path(&id))).await, &id);
    assert_eq!(send(&app, get("/webhooks")).await.json["data"]["total"], 0);
}

#[tokio::test]
async fn delete_gives_the_place_back_so_a_key_at_its_limit_can_create_again() {
    let app = app_with(Settings {
        max_webhooks_per_key: 1,
        ..Settings::default()
    });
    let id = create_one(&app).await;
    let refused = send(&app, post(SEED_BODY)).await;
    assert_error(&refused, 409, "WEBHOOK_LIMIT_REACHED");
    assert_eq!(app.webhooks().count_for(KEY_ID), 1);
    assert_eq!(send(&app, delete(&path(&id))).await.status, 204);
    assert_eq!(app.webhooks().count_for(KEY_ID), 0);
    assert_success(&send(&app, post(SEED_BODY)).await, 201);
    assert_eq!(app.webhooks().count_for(KEY_ID), 1);
}

#[tokio::test]
async fn a_second_delete_is_404() {
    let app = app();
    let id = create_one(&app).await;
    assert_eq!(send(&app, delete(&path(&id))).await.status, 204);
    assert_not_found(&send(&app, delete(&path(&id))).await, &id);
    assert_eq!(app.webhooks().count_for(KEY_ID), 0);
}

#[tokio::test]
async fn delete_with_a_stale_if_match_is_412_and_deletes_nothing() {
    let app = app();
    let id = create_one(&app).await;
    let stale = send(&app, get(&path(&id)))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let current = send(&app, patch(&path(&id), r#"{"name":"n"}"#))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let answer = send(&app, delete(&path(&id)).header("if-match", &stale)).await;
    assert_error(&answer, 412, "PRECONDITION_FAILED");
    assert!(stored(&app, &id).is_some());
    assert_eq!(app.secrets().len(), 1);
    assert_eq!(app.webhooks().count_for(KEY_ID), 1);
    let answer = send(&app, delete(&path(&id)).header("if-match", &current)).await;
    assert_eq!(answer.status, 204, "{}", answer.raw);
}

#[tokio::test]
async fn delete_with_if_match_star_is_204() {
    let app = app();
    let id = create_one(&app).await;
    let answer = send(&app, delete(&path(&id)).header("if-match", "*")).await;
    assert_eq!(answer.status, 204, "{}", answer.raw);
}

// --- POST /webhooks/{id}/reset-circuit -----------------------------------------------------

#[tokio::test]
async fn reset_circuit_closes_the_circuit_and_activates_the_webhook() {
    let app = app();
    let template = create_one(&app).await;
    let opened = OffsetDateTime::now_utc() - Duration::from_secs(600);
    let id = insert_copy(&app, &template, |w| {
        w.consecutive_failures = 7;
        w.circuit_opened_at = Some(opened.replace_nanosecond(0).unwrap());
        w.is_active = false;
    })
    .await;
    let before = send(&app, get(&path(&id))).await;
    assert_eq!(before.json["data"]["consecutiveFailures"], 7);
    assert!(before.json["data"]["circuitOpenedAt"].is_string());
    let answer = send(&app, reset(&id)).await;
    assert_success(&answer, 200);
    let data = &answer.json["data"];
    assert_eq!(data["consecutiveFailures"], 0);
    assert_eq!(data["circuitOpenedAt"], Value::Null);
    assert_eq!(data["isActive"], true);
    assert_eq!(keys_of(data), VIEW_FIELDS);
    let record = stored(&app, &id).unwrap().webhook;
    assert_eq!(
        (
            record.consecutive_failures,
            record.circuit_opened_at,
            record.is_active
        ),
        (0, None, true)
    );
}

#[tokio::test]
async fn reset_circuit_reactivates_a_webhook_patched_inactive() {
    let app = app();
    let id = create_one(&app).await;
    let patched = send(&app, patch(&path(&id), r#"{"isActive":false}"#)).await;
    assert_eq!(patched.json["data"]["isActive"], false);
    let answer = send(&app, reset(&id)).await;
    assert_eq!(answer.json["data"]["isActive"], true);
    assert_eq!(
        send(&app, get(&path(&id))).await.json["data"]["isActive"],
        true
    );
}

#[tokio::test]
async fn reset_circuit_takes_no_body_or_an_empty_object() {
    let app = app();
    let id = create_one(&app).await;
    for request in [
        reset(&id),
        reset(&id).body(Body::Text(String::new())),
        reset(&id)
            .header("content-type", "application/json")
            .body(Body::Text(String::new())),
        reset(&id)
            .header("content-type", "application/json")
            .body(Body::Text("{}".into())),
        reset(&id)
            .header("content-type", "application/json; charset=utf-8")
            .body(Body::Text(" { } ".into())),
    ] {
        assert_success(&send(&app, request).await, 200);
    }
}

#[tokio::test]
async fn reset_circuit_refuses_any_other_body_with_400() {
    let app = app();
    let template = create_one(&app).await;
    let id = insert_copy(&app, &template, |w| w.consecutive_failures = 3).await;
    for body in [
        r#"{"force":true}"#,
        "[]",
        "null",
        "0",
        "\"\"",
        "not json",
        "{",
    ] {
        let answer = send(
            &app,
            reset(&id)
                .header("content-type", "application/json")
                .body(Body::Text(body.into())),
        )
        .await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
    }
    assert_eq!(stored(&app, &id).unwrap().webhook.consecutive_failures, 3);
}

#[tokio::test]
async fn reset_circuit_replayed_with_its_idempotency_key_answers_200_replayed() {
    let app = app();
    let id = create_one(&app).await;
    let first = send(&app, reset(&id).header("idempotency-key", "reset-1")).await;
    assert_success(&first, 200);
    assert_eq!(first.header("idempotent-replayed"), None);
    let version = stored(&app, &id).unwrap().webhook.version;
    let again = send(&app, reset(&id).header("idempotency-key", "reset-1")).await;
    assert_success(&again, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json["data"], first.json["data"]);
    assert_eq!(stored(&app, &id).unwrap().webhook.version, version);
    assert_strong_etag_and_no_store(&again);
}

// --- Idempotency ---------------------------------------------------------------------------

#[tokio::test]
async fn an_idempotency_key_is_scoped_per_route() {
    let app = app();
    let key = "shared-key-1";
    let created = send(&app, post(SEED_BODY).header("idempotency-key", key)).await;
    assert_success(&created, 201);
    let id = id_of(&created.json["data"]);
    let reset_answer = send(&app, reset(&id).header("idempotency-key", key)).await;
    assert_success(&reset_answer, 200);
    assert_eq!(reset_answer.header("idempotent-replayed"), None);
    let other = create_one(&app).await;
    let other_reset = send(&app, reset(&other).header("idempotency-key", key)).await;
    assert_success(&other_reset, 200);
    assert_eq!(other_reset.header("idempotent-replayed"), None);
    assert_eq!(other_reset.json["data"]["id"], other.as_str());
    let replayed = send(&app, post(SEED_BODY).header("idempotency-key", key)).await;
    assert_eq!(replayed.status, 201, "{}", replayed.raw);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.json["data"]["id"], id.as_str());
    assert_eq!(app.webhooks().len(), 2);
}

#[tokio::test]
async fn an_idempotency_key_is_scoped_per_api_key_on_reset_circuit() {
    let app = app();
    let mine = create_one(&app).await;
    let theirs = id_of(&create_as(&app, OTHER_TOKEN, SEED_BODY).await);
    let a = send(&app, reset(&mine).header("idempotency-key", "k")).await;
    let b = send(
        &app,
        reset(&theirs)
            .header("idempotency-key", "k")
            .token(OTHER_TOKEN),
    )
    .await;
    assert_success(&a, 200);
    assert_success(&b, 200);
    assert_eq!(b.header("idempotent-replayed"), None);
    assert_eq!(b.json["data"]["id"], theirs.as_str());
}

/// Each POST on a webhook with its idempotency key, as first sent and as replayed.
fn keyed_actions(id: &str) -> Vec<(&'static str, RequestBuilder)> {
    vec![
        (
            "reset-circuit",
            reset(id).header("idempotency-key", "again-1"),
        ),
        ("test", test_ping(id).header("idempotency-key", "again-2")),
        (
            "rotate-secret",
            rotate(id).header("idempotency-key", "again-3"),
        ),
    ]
}

#[tokio::test]
async fn a_replay_after_the_webhook_was_deleted_is_404_on_every_action() {
    let app = app();
    let id = create_one(&app).await;
    for (_, request) in keyed_actions(&id) {
        assert_success(&send(&app, request).await, 200);
    }
    assert_eq!(send(&app, delete(&path(&id))).await.status, 204);

    for (name, request) in keyed_actions(&id) {
        let answer = send(&app, request).await;
        assert_not_found(&answer, &id);
        assert_eq!(answer.header("idempotent-replayed"), None, "{name}");
    }
}

#[tokio::test]
async fn a_replay_for_a_company_the_key_lost_is_403_on_every_action() {
    let app = app();
    let id = create_for_company(&app).await;
    for (_, request) in keyed_actions(&id) {
        assert_success(&send(&app, request).await, 200);
    }
    let version = stored(&app, &id).unwrap().webhook.version;

    // The same key (same apiKeyId, so the same idempotency scope) after it lost the company.
    for (name, request) in keyed_actions(&id) {
        let answer = send(&app, request.token(MOVED_TOKEN)).await;
        assert_error(&answer, 403, "RESOURCE_ACCESS_DENIED");
        assert_eq!(answer.header("idempotent-replayed"), None, "{name}");
    }
    assert_eq!(stored(&app, &id).unwrap().webhook.version, version);
}

#[tokio::test]
async fn a_rotation_replayed_after_a_newer_rotation_is_412_and_hands_out_no_secret() {
    let app = app();
    let id = create_one(&app).await;
    let keyed = || rotate(&id).header("idempotency-key", "rotation-1");
    let first = send(&app, keyed()).await;
    assert_success(&first, 200);
    let first_secret = first.json["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let newer = send(&app, rotate(&id)).await;
    assert_success(&newer, 200);
    let record = stored(&app, &id).unwrap();

    let replayed = send(&app, keyed()).await;

    assert_error(&replayed, 412, "PRECONDITION_FAILED");
    assert!(!replayed.raw.contains(&first_secret));
    assert_eq!(stored(&app, &id).unwrap(), record, "nothing changed");
}

#[tokio::test]
async fn a_rotation_replayed_after_a_header_change_answers_its_still_current_secret() {
    let app = app();
    let id = create_one(&app).await;
    let keyed = || rotate(&id).header("idempotency-key", "rotation-2");
    let first = send(&app, keyed()).await;
    assert_success(&first, 200);
    // New header values move the record to another secret version, same signing secret.
    let headers = r#"{"headers":[{"name":"X-New","value":"v"}]}"#;
    assert_success(&send(&app, patch(&path(&id), headers)).await, 200);

    let replayed = send(&app, keyed()).await;

    assert_success(&replayed, 200);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        replayed.json["data"]["signingSecret"],
        first.json["data"]["signingSecret"]
    );
    assert_eq!(
        replayed.json["data"]["headers"],
        json!([{"name": "X-New", "isMasked": true}])
    );
}

// --- Rate limits ---------------------------------------------------------------------------

fn assert_rate_headers(answer: &Answer) {
    for name in RATE_HEADERS {
        let value = answer.header(name);
        assert!(
            value.is_some_and(|v| v.parse::<i64>().is_ok()),
            "{name} missing on {}: {}",
            answer.status,
            answer.raw
        );
    }
}

fn assert_no_rate_headers(answer: &Answer) {
    for name in RATE_HEADERS {
        assert_eq!(answer.header(name), None, "{name} on {}", answer.raw);
    }
}

fn rate(answer: &Answer, name: &str) -> i64 {
    answer
        .header(&format!("x-ratelimit-{name}"))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_authenticated_answer_carries_the_rate_headers() {
    let app = app();
    let id = create_one(&app).await;
    let unknown = Uuid::new_v4().to_string();
    let requests = [
        post(SEED_BODY),
        get("/webhooks"),
        get(&path(&id)),
        patch(&path(&id), r#"{"name":"n"}"#),
        reset(&id),
        get(&path(&unknown)),
        get("/webhooks").query("companyId", "x"),
        get("/webhooks").query("companyId", OTHER_COMPANY),
        patch(&path(&id), r#"{"name":"n"}"#).header("content-type", "text/plain"),
        patch(&path(&id), r#"{"name":"n"}"#).header("if-match", "\"999\""),
        patch(&path(&id), &"a".repeat(600 * 1024)),
        get("/webhooks").token(WRITE_ONLY_TOKEN),
        delete(&path(&id)).token(READ_ONLY_TOKEN),
        delete(&path(&id)),
    ];
    for request in requests {
        let answer = send(&app, request).await;
        assert_rate_headers(&answer);
    }
}

#[tokio::test]
async fn the_rate_headers_count_down_and_reset_at_the_windows_end() {
    away_from_a_minute_edge().await;
    let app = app();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for remaining in [2, 1, 0] {
        let answer = send(&app, get("/webhooks").token(MINUTE_TOKEN)).await;
        assert_success(&answer, 200);
        assert_eq!(rate(&answer, "limit-minute"), 3);
        assert_eq!(rate(&answer, "remaining-minute"), remaining);
        assert_eq!(rate(&answer, "limit-hour"), 1000);
        assert_eq!(rate(&answer, "remaining-hour"), 997 + remaining);
        let minute_reset = rate(&answer, "reset-minute");
        assert_eq!(minute_reset % 60, 0);
        assert!(minute_reset > now && minute_reset <= now + 60);
        let hour_reset = rate(&answer, "reset-hour");
        assert_eq!(hour_reset % 3600, 0);
        assert!(hour_reset > now && hour_reset <= now + 3600);
    }
}

#[tokio::test]
async fn unauthenticated_answers_carry_no_rate_headers() {
    let app = app();
    for request in [
        get("/webhooks").without_header("authorization"),
        get("/webhooks").token(UNKNOWN_TOKEN),
        get("/webhooks").token(REVOKED_TOKEN),
        get("/webhooks").token(EXPIRED_TOKEN),
        get("/webhooks").token(SUSPENDED_TOKEN),
        post(SEED_BODY).header("authorization", "Basic abc"),
    ] {
        let answer = send(&app, request).await;
        assert_eq!(answer.status, 401, "{}", answer.raw);
        assert_no_rate_headers(&answer);
    }
}

#[tokio::test]
async fn the_fourth_request_in_a_minute_is_429_with_retry_after_and_details() {
    away_from_a_minute_edge().await;
    let app = app();
    for _ in 0..3 {
        assert_success(&send(&app, get("/webhooks").token(MINUTE_TOKEN)).await, 200);
    }
    let answer = send(&app, get("/webhooks").token(MINUTE_TOKEN)).await;
    assert_error(&answer, 429, "RATE_LIMIT_EXCEEDED");
    let reset = rate(&answer, "reset-minute");
    assert_eq!(
        answer.json["error"]["details"],
        json!({"limit": 3, "remaining": 0, "reset": reset, "window": "minute"})
    );
    let retry_after: i64 = answer.header("retry-after").unwrap().parse().unwrap();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        (reset - now - retry_after).abs() <= 1,
        "{reset} {now} {retry_after}"
    );
    assert_rate_headers(&answer);
    assert_eq!(rate(&answer, "remaining-minute"), 0);
}

#[tokio::test]
async fn the_fourth_request_in_an_hour_is_429_with_window_hour() {
    away_from_a_minute_edge().await;
    let app = app();
    for _ in 0..3 {
        assert_success(&send(&app, get("/webhooks").token(HOUR_TOKEN)).await, 200);
    }
    let answer = send(&app, get("/webhooks").token(HOUR_TOKEN)).await;
    assert_error(&answer, 429, "RATE_LIMIT_EXCEEDED");
    let reset = rate(&answer, "reset-hour");
    assert_eq!(
        answer.json["error"]["details"],
        json!({"limit": 3, "remaining": 0, "reset": reset, "window": "hour"})
    );
    let retry_after: i64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (reset - now - retry_after).abs() <= 1,
        "{reset} {now} {retry_after}"
    );
    assert_eq!(rate(&answer, "remaining-hour"), 0);
}

#[tokio::test]
async fn a_request_over_the_limit_changes_nothing() {
    away_from_a_minute_edge().await;
    let app = app();
    let id = id_of(&create_as(&app, MINUTE_TOKEN, SEED_BODY).await);
    send(&app, get(&path(&id)).token(MINUTE_TOKEN)).await;
    send(&app, get(&path(&id)).token(MINUTE_TOKEN)).await;
    let before = stored(&app, &id).unwrap();
    for request in [
        post(SEED_BODY),
        post(SEED_BODY).header("idempotency-key", "over-the-limit"),
        patch(&path(&id), r#"{"name":"n"}"#),
        patch(&path(&id), r#"{"headers":[]}"#),
        reset(&id),
        delete(&path(&id)),
    ] {
        let answer = send(&app, request.token(MINUTE_TOKEN)).await;
        assert_error(&answer, 429, "RATE_LIMIT_EXCEEDED");
    }
    assert_eq!(app.webhooks().len(), 1);
    assert_eq!(app.webhooks().count_for("minute-limited"), 1);
    assert_eq!(stored(&app, &id).unwrap(), before);
    assert_eq!(app.secrets().len(), 1);
}

#[tokio::test]
async fn requests_without_a_valid_key_are_counted_nowhere() {
    away_from_a_minute_edge().await;
    let app = app();
    for token in [UNKNOWN_TOKEN, REVOKED_TOKEN, SUSPENDED_TOKEN, "sk_bad"] {
        for _ in 0..5 {
            let answer = send(&app, get("/webhooks").token(token)).await;
            assert_eq!(answer.status, 401);
        }
    }
    assert_eq!(
        app.webhooks().calls(),
        0,
        "a store call without a valid key"
    );
    for _ in 0..3 {
        assert_success(&send(&app, get("/webhooks").token(MINUTE_TOKEN)).await, 200);
    }
}

#[tokio::test]
async fn each_key_has_its_own_count() {
    away_from_a_minute_edge().await;
    let app = app();
    for _ in 0..4 {
        send(&app, get("/webhooks").token(MINUTE_TOKEN)).await;
    }
    let answer = send(&app, get("/webhooks").token(MINUTE_TOKEN)).await;
    assert_error(&answer, 429, "RATE_LIMIT_EXCEEDED");
    let answer = send(&app, get("/webhooks").token(HOUR_TOKEN)).await;
    assert_success(&answer, 200);
    assert_eq!(rate(&answer, "remaining-hour"), 2);
}

#[tokio::test]
async fn a_key_with_the_default_limits_gets_60_a_minute_and_2000_an_hour() {
    away_from_a_minute_edge().await;
    let app = app();
    app.keys().insert(
        &ApiToken::parse(DEFAULT_LIMITS_TOKEN).unwrap(),
        ApiKey {
            rate_limits: RateLimits::default(),
            ..key("default-limits", BOTH)
        },
    );
    for remaining in (0..60).rev() {
        let answer = send(&app, get("/webhooks").token(DEFAULT_LIMITS_TOKEN)).await;
        assert_success(&answer, 200);
        assert_eq!(rate(&answer, "limit-minute"), 60);
        assert_eq!(rate(&answer, "limit-hour"), 2000);
        assert_eq!(rate(&answer, "remaining-minute"), remaining);
    }
    let answer = send(&app, get("/webhooks").token(DEFAULT_LIMITS_TOKEN)).await;
    assert_error(&answer, 429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(answer.json["error"]["details"]["limit"], 60);
}

// --- Findings ------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_id_is_404_whatever_if_match_says() {
    let app = app();
    create_one(&app).await;
    let unknown = Uuid::new_v4().to_string();
    for if_match in ["\"1\"", "\"999\"", "*", "garbage", "W/\"1\""] {
        for request in [
            patch(&path(&unknown), r#"{"name":"n"}"#),
            patch(&path(&unknown), r#"{"headers":[]}"#),
            delete(&path(&unknown)),
        ] {
            let answer = send(&app, request.header("if-match", if_match)).await;
            assert_eq!(answer.status, 404, "If-Match: {if_match}: {}", answer.raw);
            assert_not_found(&answer, &unknown);
        }
    }
}

#[tokio::test]
async fn reset_circuit_body_over_512_kib_is_413() {
    let app = app();
    let id = create_one(&app).await;
    for (content_type, body) in [
        (
            "application/json",
            format!("{{{}}}", " ".repeat(600 * 1024)),
        ),
        ("application/json", " ".repeat(600 * 1024)),
        ("text/plain", " ".repeat(600 * 1024)),
    ] {
        let answer = send(
            &app,
            reset(&id)
                .header("content-type", content_type)
                .body(Body::Text(body)),
        )
        .await;
        assert_error(&answer, 413, "PAYLOAD_TOO_LARGE");
    }
}
