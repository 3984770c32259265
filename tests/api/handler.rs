//! The contract, row by row, against the handler with in-memory stores.

use crate::support;

use std::time::Duration;

use base64::Engine as _;
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::UrlPolicy;
use instaview_webhooks::http::handle;
use instaview_webhooks::store::StoreError;
use lambda_http::http::Method;
use lambda_http::Body;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

async fn send(app: &MemoryApp, request: support::RequestBuilder) -> Answer {
    parse(handle(app, request.build()).await)
}

async fn create(body: &str) -> Answer {
    send(&memory_app(), post(body)).await
}

fn body_with(key: &str, value: Value) -> String {
    let mut body: Value = serde_json::from_str(SEED_BODY).unwrap();
    body[key] = value;
    body.to_string()
}

// --- Success -----------------------------------------------------------------------------

#[tokio::test]
async fn creates_the_documentation_example_with_201_and_its_exact_fields() {
    let answer = create(SEED_BODY).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    let keys: Vec<&str> = answer
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["success", "data", "error", "timestamp"]);
    assert_eq!(answer.json["success"], true);
    assert_eq!(answer.json["error"], Value::Null);
    let data = answer.json["data"].as_object().unwrap();
    let fields: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(fields, SEED_FIELDS);
    assert_eq!(data["apiKeyId"], KEY_ID);
    assert_eq!(data["companyId"], Value::Null);
    assert_eq!(data["url"], "https://api.example.com/webhooks/instaview");
    assert_eq!(data["name"], "Production Webhook");
    assert_eq!(
        data["description"],
        "Receives interview completion notifications"
    );
    assert_eq!(
        data["headers"],
        json!([{"name": "Authorization", "isMasked": true}])
    );
    assert_eq!(
        data["events"],
        json!(["interview.completed", "analysis.completed"])
    );
    assert_eq!(data["isActive"], true);
    assert_eq!(data["maxRetries"], 3);
    assert_eq!(data["timeoutMs"], 30000);
    assert_eq!(data["consecutiveFailures"], 0);
    assert_eq!(data["circuitOpenedAt"], Value::Null);
    assert_eq!(data["createdAt"], data["updatedAt"]);
    let created_at = data["createdAt"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(
        created_at,
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    assert!(created_at.ends_with('Z'));
}

#[tokio::test]
async fn webhook_id_is_a_new_uuid_v4_and_location_points_at_it() {
    let answer = create(SEED_BODY).await;
    let id = answer.json["data"]["id"].as_str().unwrap();
    let uuid = Uuid::parse_str(id).unwrap();
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(
        answer.header("location"),
        Some(format!("/webhooks/{id}").as_str())
    );
}

#[tokio::test]
async fn created_response_is_not_cacheable_and_carries_a_request_id() {
    let answer = create(SEED_BODY).await;
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(answer.header("x-request-id").is_some());
}

#[tokio::test]
async fn signing_secret_is_64_lowercase_hex_and_new_each_time() {
    let app = memory_app();
    let a = send(&app, post(SEED_BODY)).await;
    let b = send(&app, post(SEED_BODY)).await;
    let secret = a.json["data"]["signingSecret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    assert!(secret
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    assert_ne!(secret, b.json["data"]["signingSecret"].as_str().unwrap());
    assert_ne!(a.json["data"]["id"], b.json["data"]["id"]);
}

#[tokio::test]
async fn header_values_are_never_returned() {
    let answer = create(SEED_BODY).await;
    assert!(!answer.raw.contains("your-internal-token"));
}

#[tokio::test]
async fn omitted_optional_fields_are_null_and_headers_empty() {
    let answer = create(r#"{"url":"https://a.example.com/h","events":["ping"]}"#).await;
    assert_eq!(answer.status, 201);
    let data = &answer.json["data"];
    assert_eq!(data["name"], Value::Null);
    assert_eq!(data["description"], Value::Null);
    assert_eq!(data["companyId"], Value::Null);
    assert_eq!(data["headers"], json!([]));
}

#[tokio::test]
async fn company_id_is_returned_lowercase() {
    let answer = create(&body_with("companyId", json!(COMPANY.to_uppercase()))).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    assert_eq!(answer.json["data"]["companyId"], COMPANY);
}

#[tokio::test]
async fn stores_record_without_secret_material_and_secret_with_it() {
    let app = memory_app();
    let answer = send(&app, post(SEED_BODY)).await;
    let id = Uuid::parse_str(answer.json["data"]["id"].as_str().unwrap()).unwrap();
    let stored = app.webhooks().get_record(id).unwrap();
    let (webhook, secret_ref) = (stored.webhook, stored.secret);
    assert_eq!(webhook.header_names, vec!["Authorization"]);
    let record = format!("{webhook:?}");
    assert!(!record.contains("your-internal-token"));
    let document: Value =
        serde_json::from_str(&app.secrets().document(&secret_ref.arn).unwrap()).unwrap();
    assert_eq!(
        document["signingSecret"],
        answer.json["data"]["signingSecret"]
    );
    assert_eq!(
        document["headers"][0]["value"],
        "Bearer your-internal-token"
    );
}

// --- Routing -------------------------------------------------------------------------------

#[tokio::test]
async fn accepts_a_trailing_slash() {
    let answer = send(&memory_app(), post(SEED_BODY).path("/webhooks/")).await;
    assert_eq!(answer.status, 201);
}

#[tokio::test]
async fn unknown_path_is_404() {
    for path in [
        "/",
        "/hooks",
        "/webhooks/123/unknown",
        "/webhooks//",
        "/prod/webhooks",
        "/WEBHOOKS",
    ] {
        let answer = send(&memory_app(), post(SEED_BODY).path(path)).await;
        assert_error(&answer, 404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn other_methods_on_webhooks_are_405_with_allow_get_post() {
    for method in [
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::HEAD,
    ] {
        let answer = send(&memory_app(), post(SEED_BODY).method(method.clone())).await;
        assert_error(&answer, 405, "METHOD_NOT_ALLOWED");
        assert_eq!(answer.header("allow"), Some("GET, POST"), "{method}");
    }
}

#[tokio::test]
async fn routing_comes_before_authentication() {
    let answer = send(
        &memory_app(),
        post("").without_header("authorization").method(Method::PUT),
    )
    .await;
    assert_error(&answer, 405, "METHOD_NOT_ALLOWED");
}

// --- Authentication and authorisation ------------------------------------------------------

#[tokio::test]
async fn missing_authorization_is_401_with_www_authenticate() {
    let answer = send(
        &memory_app(),
        post(SEED_BODY).without_header("authorization"),
    )
    .await;
    assert_error(&answer, 401, "INVALID_API_KEY");
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn non_bearer_authorization_is_401() {
    for value in [
        TOKEN.to_string(),
        format!("Basic {TOKEN}"),
        "Bearer".into(),
        format!("Token {TOKEN}"),
    ] {
        let answer = send(
            &memory_app(),
            post(SEED_BODY).header("authorization", &value),
        )
        .await;
        assert_error(&answer, 401, "INVALID_API_KEY");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
}

#[tokio::test]
async fn two_authorization_headers_are_401() {
    let request = post(SEED_BODY).add_header("authorization", &format!("Bearer {READ_ONLY_TOKEN}"));
    assert_error(&send(&memory_app(), request).await, 401, "INVALID_API_KEY");
}

#[tokio::test]
async fn token_of_wrong_shape_is_401() {
    for token in [
        "sk_your_key_here",
        "pk_0123456789abcdefghijklmn",
        "sk_short",
    ] {
        let answer = send(&memory_app(), post(SEED_BODY).token(token)).await;
        assert_error(&answer, 401, "INVALID_API_KEY");
    }
}

#[tokio::test]
async fn unknown_revoked_or_expired_key_is_401_invalid_api_key() {
    for token in [UNKNOWN_TOKEN, REVOKED_TOKEN, EXPIRED_TOKEN] {
        let answer = send(&memory_app(), post(SEED_BODY).token(token)).await;
        assert_error(&answer, 401, "INVALID_API_KEY");
    }
}

#[tokio::test]
async fn suspended_key_is_401_with_when_and_why() {
    let answer = send(&memory_app(), post(SEED_BODY).token(SUSPENDED_TOKEN)).await;
    assert_error(&answer, 401, "API_KEY_SUSPENDED");
    assert_eq!(
        answer.json["error"]["details"],
        json!({"suspendedAt": "2024-06-01T12:00:00Z", "reason": "Unpaid invoice"})
    );
}

#[tokio::test]
async fn key_without_write_webhooks_is_403_insufficient_permissions() {
    let answer = send(&memory_app(), post(SEED_BODY).token(READ_ONLY_TOKEN)).await;
    assert_error(&answer, 403, "INSUFFICIENT_PERMISSIONS");
    assert_eq!(
        answer.json["error"]["message"],
        "Required scope write:webhooks not found"
    );
}

#[tokio::test]
async fn authentication_comes_before_the_body() {
    let request = post("not json")
        .token(READ_ONLY_TOKEN)
        .header("content-type", "text/plain");
    assert_error(
        &send(&memory_app(), request).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
    );
    let request = post("not json").without_header("authorization");
    assert_error(&send(&memory_app(), request).await, 401, "INVALID_API_KEY");
}

#[tokio::test]
async fn foreign_company_is_403_resource_access_denied() {
    let answer = create(&body_with("companyId", json!(OTHER_COMPANY))).await;
    assert_error(&answer, 403, "RESOURCE_ACCESS_DENIED");
}

#[tokio::test]
async fn key_records_are_cached_per_container() {
    let app = memory_app();
    send(&app, post(SEED_BODY)).await;
    send(&app, post(SEED_BODY)).await;
    assert_eq!(app.keys().lookups(), 1);
}

#[tokio::test]
async fn key_cache_can_be_switched_off() {
    let app = memory_app_with(Settings {
        api_key_cache_ttl: Duration::ZERO,
        ..Settings::default()
    });
    send(&app, post(SEED_BODY)).await;
    send(&app, post(SEED_BODY)).await;
    assert_eq!(app.keys().lookups(), 2);
}

// --- Body -------------------------------------------------------------------------------

#[tokio::test]
async fn content_type_must_be_application_json() {
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "application/json; charset=latin1",
        "",
    ] {
        let answer = send(
            &memory_app(),
            post(SEED_BODY).header("content-type", content_type),
        )
        .await;
        assert_error(&answer, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    let answer = send(
        &memory_app(),
        post(SEED_BODY).without_header("content-type"),
    )
    .await;
    assert_error(&answer, 415, "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn content_type_parameters_are_allowed() {
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/json; charset=\"utf-8\"",
    ] {
        let answer = send(
            &memory_app(),
            post(SEED_BODY).header("content-type", content_type),
        )
        .await;
        assert_eq!(answer.status, 201, "{content_type}");
    }
}

#[tokio::test]
async fn body_over_512_kib_is_413() {
    let padding = " ".repeat(512 * 1024);
    let body = format!("{SEED_BODY}{padding}");
    assert_error(&create(&body).await, 413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn body_of_exactly_512_kib_is_read() {
    let padding = " ".repeat(512 * 1024 - SEED_BODY.len());
    let body = format!("{SEED_BODY}{padding}");
    assert_eq!(body.len(), 512 * 1024);
    assert_eq!(create(&body).await.status, 201);
}

#[tokio::test]
async fn base64_encoded_body_of_a_rest_api_event_is_decoded() {
    let event = json!({
        "resource": "/webhooks",
        "path": "/webhooks",
        "httpMethod": "POST",
        "headers": {"Authorization": format!("Bearer {TOKEN}"), "Content-Type": "application/json"},
        "multiValueHeaders": {
            "Authorization": [format!("Bearer {TOKEN}")],
            "Content-Type": ["application/json"]
        },
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourcePath": "/webhooks",
            "httpMethod": "POST",
            "path": "/prod/webhooks",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "accountId": "123456789012",
            "identity": {"sourceIp": "203.0.113.10"}
        },
        "body": base64::engine::general_purpose::STANDARD.encode(SEED_BODY),
        "isBase64Encoded": true
    });
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let answer = parse(handle(&memory_app(), request).await);
    assert_eq!(answer.status, 201, "{}", answer.raw);
    assert_eq!(
        answer.header("x-request-id"),
        Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    );
}

#[tokio::test]
async fn empty_body_is_400() {
    let answer = create("").await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    assert_eq!(
        answer.field_errors(),
        vec![("body".into(), "request body must not be empty".into())]
    );
}

#[tokio::test]
async fn malformed_json_non_object_and_invalid_utf8_are_400() {
    for body in ["{", "[1]", "\"x\"", "{\"url\":}", "nul"] {
        assert_error(&create(body).await, 400, "VALIDATION_ERROR");
    }
    let answer = send(
        &memory_app(),
        post("").body(Body::Binary(vec![b'{', 0xff, b'}'])),
    )
    .await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn every_field_error_is_collected_and_the_first_is_the_message() {
    let answer = create(r#"{"url":"ftp://x","events":[],"name":"","headers":[{"name":"Host","value":"v"}],"extra":1}"#).await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    let fields: Vec<String> = answer.field_errors().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        ["url", "events", "name", "headers[0].name", "extra"]
    );
    assert_eq!(
        answer.json["error"]["message"],
        answer.field_errors()[0].1.as_str()
    );
}

#[tokio::test]
async fn validation_errors_create_nothing() {
    let app = memory_app();
    send(&app, post(&body_with("url", json!("http://example.com")))).await;
    assert!(app.webhooks().is_empty());
    assert!(app.secrets().is_empty());
}

#[tokio::test]
async fn localhost_urls_follow_the_configuration() {
    let body = body_with("url", json!("http://localhost:3000/hook"));
    assert_eq!(create(&body).await.status, 201);
    let strict = memory_app_with(Settings {
        url_policy: UrlPolicy {
            allow_localhost: false,
        },
        ..Settings::default()
    });
    assert_error(&send(&strict, post(&body)).await, 400, "VALIDATION_ERROR");
}

// --- AWS failures -------------------------------------------------------------------------

fn unavailable() -> StoreError {
    StoreError::Unavailable {
        operation: "test",
        kind: "ThrottlingException".into(),
    }
}

fn failed() -> StoreError {
    StoreError::Failed {
        operation: "test",
        kind: "AccessDeniedException".into(),
    }
}

#[tokio::test]
async fn throttled_secret_store_is_503_with_retry_after_and_nothing_stored() {
    let app = memory_app();
    app.secrets().fail_create_with(unavailable());
    let answer = send(&app, post(SEED_BODY)).await;
    assert_error(&answer, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(answer.header("retry-after"), Some("2"));
    assert!(app.webhooks().is_empty() && app.secrets().is_empty());
}

#[tokio::test]
async fn failed_record_write_deletes_the_secret_and_answers_503() {
    let app = memory_app();
    app.webhooks().fail_with(unavailable());
    let answer = send(&app, post(SEED_BODY)).await;
    assert_error(&answer, 503, "SERVICE_UNAVAILABLE");
    assert!(app.webhooks().is_empty());
    assert!(
        app.secrets().is_empty(),
        "the secret of an unstored webhook must be deleted"
    );
}

#[tokio::test]
async fn unexpected_store_failure_is_500_and_leaves_nothing() {
    let app = memory_app();
    app.webhooks().fail_with(failed());
    let answer = send(&app, post(SEED_BODY)).await;
    assert_error(&answer, 500, "INTERNAL_ERROR");
    assert!(app.secrets().is_empty());
}

#[tokio::test]
async fn key_store_outage_is_503() {
    let app = memory_app();
    app.keys().fail_with(unavailable());
    assert_error(
        &send(&app, post(SEED_BODY)).await,
        503,
        "SERVICE_UNAVAILABLE",
    );
}

#[tokio::test]
async fn errors_show_no_internals() {
    let app = memory_app();
    app.webhooks().fail_with(failed());
    let answer = send(&app, post(SEED_BODY)).await;
    for internal in ["AccessDenied", "arn:", "memory/", "test"] {
        assert!(
            !answer.raw.contains(internal),
            "{internal} in {}",
            answer.raw
        );
    }
}

// --- Idempotent retries and the per-key limit ----------------------------------------------

#[tokio::test]
async fn retry_with_the_same_idempotency_key_and_body_answers_the_original_201() {
    let app = memory_app();
    let first = send(&app, post(SEED_BODY).header("idempotency-key", "retry-1")).await;
    let again = send(&app, post(SEED_BODY).header("idempotency-key", "retry-1")).await;
    assert_eq!(first.status, 201);
    assert_eq!(again.status, 201, "{}", again.raw);
    assert_eq!(again.json["data"], first.json["data"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(app.webhooks().len(), 1);
    assert_eq!(app.secrets().len(), 1);
}

#[tokio::test]
async fn same_idempotency_key_with_another_body_is_409_idempotency_key_reused() {
    let app = memory_app();
    send(&app, post(SEED_BODY).header("idempotency-key", "retry-1")).await;
    let other = body_with("name", json!("Another"));
    let answer = send(&app, post(&other).header("idempotency-key", "retry-1")).await;
    assert_error(&answer, 409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.webhooks().len(), 1);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_api_key() {
    let app = memory_app();
    let keys = app.keys();
    let second = instaview_webhooks::domain::ApiToken::parse(UNKNOWN_TOKEN).unwrap();
    keys.insert(&second, key("second-key", &["write:webhooks"]));
    let a = send(&app, post(SEED_BODY).header("idempotency-key", "k")).await;
    let b = send(
        &app,
        post(SEED_BODY)
            .header("idempotency-key", "k")
            .token(UNKNOWN_TOKEN),
    )
    .await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_ne!(a.json["data"]["id"], b.json["data"]["id"]);
}

#[tokio::test]
async fn invalid_idempotency_key_is_400() {
    for value in ["a b", &"k".repeat(256)] {
        let answer = send(
            &memory_app(),
            post(SEED_BODY).header("idempotency-key", value),
        )
        .await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(answer.field_errors()[0].0, "Idempotency-Key");
    }
    let twice = post(SEED_BODY)
        .header("idempotency-key", "a")
        .add_header("idempotency-key", "b");
    assert_error(&send(&memory_app(), twice).await, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn idempotency_key_with_non_utf8_bytes_is_400() {
    let mut request = post(SEED_BODY).build();
    request.headers_mut().insert(
        "idempotency-key",
        lambda_http::http::HeaderValue::from_bytes(b"\xd7\xf8\x9b").unwrap(),
    );
    let answer = parse(handle(&memory_app(), request).await);
    assert_error(&answer, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn a_failed_create_releases_its_idempotency_key() {
    let app = memory_app();
    app.secrets().fail_create_with(unavailable());
    let failed = send(&app, post(SEED_BODY).header("idempotency-key", "k")).await;
    assert_eq!(failed.status, 503);
    app.secrets().recover();
    let retry = send(&app, post(SEED_BODY).header("idempotency-key", "k")).await;
    assert_eq!(retry.status, 201, "{}", retry.raw);
    assert_eq!(retry.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn creation_past_the_per_key_limit_is_409_and_leaves_nothing() {
    let app = memory_app_with(Settings {
        max_webhooks_per_key: 2,
        ..Settings::default()
    });
    assert_eq!(send(&app, post(SEED_BODY)).await.status, 201);
    assert_eq!(send(&app, post(SEED_BODY)).await.status, 201);
    let answer = send(&app, post(SEED_BODY)).await;
    assert_error(&answer, 409, "WEBHOOK_LIMIT_REACHED");
    assert_eq!(answer.json["error"]["details"]["limit"], 2);
    assert_eq!(app.webhooks().len(), 2);
    assert_eq!(
        app.secrets().len(),
        2,
        "the refused webhook's secret is deleted"
    );
}

#[tokio::test]
async fn concurrent_creates_through_one_container_give_distinct_ids_and_secrets() {
    let app = std::sync::Arc::new(memory_app_with(Settings {
        max_webhooks_per_key: 1000,
        ..Settings::default()
    }));
    let answers = create_concurrently(app.clone(), TOKEN, 200).await;
    assert!(answers.iter().all(|a| a.status == 201));
    let distinct = |name: &str| {
        answers
            .iter()
            .map(|a| a.json["data"][name].as_str().unwrap().to_owned())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    assert_eq!((distinct("id"), distinct("signingSecret")), (200, 200));
    assert_eq!((app.webhooks().len(), app.secrets().len()), (200, 200));
}
