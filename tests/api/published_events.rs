//! The API Gateway request events published with `aws_lambda_events`
//! (aws-lambda-rust-runtime, `lambda-events/src/fixtures/example-apigw-*request*.json`, copied
//! into `events/published/`) never make the function panic: each goes through
//! `http::lambda_event::request_from_event` and is answered from the contract's table, once with
//! its path and method as they are and once rewritten to a create.

use crate::support;

use std::path::PathBuf;

use instaview_webhooks::http::handle;
use instaview_webhooks::http::lambda_event::{
    rejection_response, request_from_event, EventResponse, PayloadVersion,
};
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use support::{memory_app, MemoryApp, SEED_BODY, TOKEN};

/// Files in the upstream fixtures directory matching `example-apigw-*request*.json`.
const PUBLISHED_EVENTS: usize = 23;

/// The statuses of the contract's table that an unauthenticated or misrouted request gets.
const CONTRACT_ERRORS: [u16; 7] = [400, 401, 403, 404, 405, 413, 415];

fn published() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events/published");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            (name, serde_json::from_str(&text).expect("fixture is JSON"))
        })
        .collect()
}

/// What the function answers an event, as `main` does it: convert, handle or reject, shape.
async fn answer(app: &MemoryApp, event: &Value) -> (PayloadVersion, Response<Body>) {
    let (version, request) = request_from_event(event);
    let response = match request {
        Ok(request) => handle(app, request).await,
        Err(rejected) => rejection_response(&rejected, "test-request"),
    };
    (version, response)
}

fn body_json(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).expect("answer body is JSON")
}

/// Removes every spelling of `name` from a header map (made when `null`) and sets it once.
fn set_header(map: &mut Value, name: &str, value: Value) {
    if map.is_null() {
        *map = json!({});
    }
    if let Some(map) = map.as_object_mut() {
        map.retain(|key, _| !key.eq_ignore_ascii_case(name));
        map.insert(name.to_owned(), value);
    }
}

/// The event turned into `POST /webhooks` with the write token and the seed's body.
fn rewritten_to_a_create(event: &Value) -> Value {
    let mut event = event.clone();
    let headers = [
        ("authorization", format!("Bearer {TOKEN}")),
        ("content-type", "application/json".to_owned()),
    ];
    if event.get("httpMethod").is_some() {
        event["httpMethod"] = json!("POST");
        event["path"] = json!("/webhooks");
        for (name, value) in &headers {
            set_header(&mut event["headers"], name, json!(value));
            set_header(&mut event["multiValueHeaders"], name, json!([value]));
        }
    } else {
        event["rawPath"] = json!("/webhooks");
        event["requestContext"]["http"]["method"] = json!("POST");
        for (name, value) in &headers {
            set_header(&mut event["headers"], name, json!(value));
        }
    }
    // A create takes no query parameters (an unknown one is a 400 on every route).
    for field in ["queryStringParameters", "multiValueQueryStringParameters"] {
        if event.get(field).is_some() {
            event[field] = Value::Null;
        }
    }
    if event.get("rawQueryString").is_some() {
        event["rawQueryString"] = json!("");
    }
    event["body"] = json!(SEED_BODY);
    event["isBase64Encoded"] = json!(false);
    event
}

#[test]
fn every_published_event_is_in_the_events_directory() {
    assert_eq!(published().len(), PUBLISHED_EVENTS);
}

#[tokio::test]
async fn published_events_as_they_are_get_an_answer_from_the_contract_table() {
    let app = memory_app();
    for (name, event) in published() {
        let (version, response) = answer(&app, &event).await;
        let status = response.status().as_u16();
        assert!(CONTRACT_ERRORS.contains(&status), "{name}: {status}");
        let body = body_json(&response);
        assert_eq!(body["success"], false, "{name}");
        assert!(body["error"]["code"].is_string(), "{name}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let shaped = serde_json::to_value(EventResponse::new(version, response)).unwrap();
        assert_eq!(shaped["statusCode"], status, "{name}");
    }
}

#[tokio::test]
async fn published_events_rewritten_to_a_create_are_created_unless_refused() {
    let app = memory_app();
    let mut created = 0;
    for (name, event) in published() {
        let (version, response) = answer(&app, &rewritten_to_a_create(&event)).await;
        let status = response.status().as_u16();
        let body = body_json(&response);
        match version {
            PayloadVersion::V1 | PayloadVersion::V2 if status == 201 => created += 1,
            _ => {
                assert_eq!(status, 400, "{name}: {body}");
                assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{name}");
            }
        }
    }
    assert!(
        created >= 10,
        "only {created} published events became a create"
    );
}

#[test]
fn the_console_event_whose_host_is_not_an_authority_is_refused_not_panicked_on() {
    let (_, event) = published()
        .into_iter()
        .find(|(name, _)| name == "example-apigw-console-request.json")
        .expect("the console fixture");
    let text = event.to_string();
    assert!(
        std::panic::catch_unwind(|| lambda_http::request::from_str(&text)).is_err(),
        "lambda_http no longer panics on this event; the guard may be simplified"
    );
    let (version, request) = request_from_event(&event);
    assert_eq!(version, PayloadVersion::V1);
    let rejected = request.expect_err("refused");
    assert_eq!(
        rejected.to_string(),
        "The request's Host header is not a valid host"
    );
}

/// The guard mirrors lambda_http's conversion: where it lets an event through, lambda_http
/// converts it without panicking and builds the same request.
#[test]
fn accepted_events_convert_in_lambda_http_to_the_same_request() {
    for (name, event) in published()
        .iter()
        .flat_map(|(name, event)| [(name, event.clone()), (name, rewritten_to_a_create(event))])
    {
        let Ok(ours) = request_from_event(&event).1 else {
            continue;
        };
        let text = event.to_string();
        let theirs = std::panic::catch_unwind(|| lambda_http::request::from_str(&text))
            .unwrap_or_else(|_| panic!("{name}: accepted, but lambda_http panics on it"))
            .unwrap_or_else(|e| panic!("{name}: accepted, but lambda_http refuses it: {e}"));
        assert_eq!(ours.uri(), theirs.uri(), "{name}");
        assert_eq!(ours.method(), theirs.method(), "{name}");
        assert_eq!(ours.headers(), theirs.headers(), "{name}");
        assert_eq!(ours.body().as_ref(), theirs.body().as_ref(), "{name}");
    }
}
