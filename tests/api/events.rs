//! Every sample API Gateway event under `events/` gets the answer its file name states.
//!
//! File names are `<case>.<status>[.<ERROR_CODE>].json`. Each event is parsed the way the Lambda
//! runtime parses it (`lambda_http::request::from_str`) and answered by the real handler, backed
//! by in-memory stores that hold the two development keys from `local.env` and one webhook of
//! the write key with a fixed id, [`SEEDED_WEBHOOK_ID`] (the events for `/webhooks/{id}` name it).
//!
//! Every file gets an app of its own, seeded afresh: no event sees what another one did, so the
//! order of the files never matters (the `DELETE` of the seeded webhook cannot break its `GET`).
//! The delivery log starts with the deliveries `events/README.md` lists (of the seeded webhook,
//! and of a second, active one, [`ACTIVE_WEBHOOK_ID`], that resend and recover can act on).

use crate::support;

use std::path::{Path, PathBuf};

use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::custom_header::{HeaderName, HeaderValue};
use instaview_webhooks::domain::{
    ApiKey, ApiToken, CustomHeader, EventType, SigningSecret, Webhook, READ_WEBHOOKS,
    WRITE_WEBHOOKS,
};
use instaview_webhooks::http::handle;
use instaview_webhooks::service::App;
use instaview_webhooks::store::delivery_log::{
    delivery_id, Attempt, Delivery, DeliveryStatus, EventId, LoggedEvent,
};
use instaview_webhooks::store::memory::{MemoryApiKeys, MemorySecrets, MemoryWebhooks};
use instaview_webhooks::store::{SecretDocument, SecretStore, StoredWebhook, WebhookWrites};
use lambda_http::http::Method;
use serde_json::Value;
use support::SEED_FIELDS;
use time::macros::datetime;
use uuid::Uuid;

/// Fewer files than this means the directory was emptied or moved, not that all is well.
const MIN_EVENT_FILES: usize = 50;

const DEV_WRITE_KEY_ID: &str = "dev-write-key";
const DEV_READONLY_KEY_ID: &str = "dev-readonly-key";

/// The webhook every app starts with: the development write key's, in `DEV_COMPANY_ID`, at
/// version 3 (`ETag: "3"`), its circuit open. `events/README.md` names it too.
const SEEDED_WEBHOOK_ID: &str = "5eeded00-7e57-4000-8000-000000000001";
/// The seeded webhook's `ETag`.
const SEEDED_ETAG: &str = "\"3\"";
/// A second webhook of the write key, active with its circuit closed (resend and recover act
/// on it; the seeded one's circuit is open).
const ACTIVE_WEBHOOK_ID: &str = "5eeded00-7e57-4000-8000-000000000002";
/// The seeded deliveries, `(event id, webhook id, status, delivery id)`: each id is
/// `delivery_id(event, webhook)`, written out because the event files name them.
const SEEDED_DELIVERIES: [(&str, &str, DeliveryStatus, &str); 4] = [
    (
        "evt_seeded_0001",
        SEEDED_WEBHOOK_ID,
        DeliveryStatus::Failed,
        "b93a7d18-0adb-8511-90d3-d90966d64565",
    ),
    (
        "evt_seeded_0002",
        SEEDED_WEBHOOK_ID,
        DeliveryStatus::Skipped,
        "c39158c5-3378-8fb3-8f80-051e1ed259f9",
    ),
    (
        "evt_seeded_0001",
        ACTIVE_WEBHOOK_ID,
        DeliveryStatus::Failed,
        "d528ed39-782d-8fc7-b5a8-952fdbaf8760",
    ),
    (
        "evt_seeded_0003",
        ACTIVE_WEBHOOK_ID,
        DeliveryStatus::Pending,
        "b0e32e0b-9cf0-83fc-8629-238186f1d708",
    ),
];
/// A delivery's fields as listed, in order.
const SUMMARY_FIELDS: [&str; 10] = [
    "id",
    "webhookId",
    "eventId",
    "event",
    "status",
    "attemptCount",
    "createdAt",
    "lastAttemptAt",
    "lastHttpStatus",
    "nextAttemptAt",
];

type DevApp = App<MemoryApiKeys, MemoryWebhooks, MemorySecrets>;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dev_key(id: &str, scopes: &[&str], company: Uuid) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        company_ids: vec![company],
        ..support::key(id, scopes)
    }
}

/// A fresh handler over in-memory stores holding the write and the read-only development keys
/// and the seeded webhook.
async fn dev_app() -> DevApp {
    let env = support::moto::local_env();
    let get = |name: &str| {
        env.get(name)
            .unwrap_or_else(|| panic!("local.env has no {name}"))
            .as_str()
    };
    let company = Uuid::parse_str(get("DEV_COMPANY_ID")).expect("DEV_COMPANY_ID is a UUID");
    let token = |name: &str| {
        ApiToken::parse(get(name)).unwrap_or_else(|| panic!("{name} is not a well-formed token"))
    };
    let keys = MemoryApiKeys::default();
    keys.insert(
        &token("DEV_API_TOKEN"),
        dev_key(DEV_WRITE_KEY_ID, &[WRITE_WEBHOOKS, READ_WEBHOOKS], company),
    );
    keys.insert(
        &token("DEV_READONLY_API_TOKEN"),
        dev_key(DEV_READONLY_KEY_ID, &["read:webhooks"], company),
    );
    let app = App::new(
        keys,
        MemoryWebhooks::default(),
        MemorySecrets::default(),
        Settings::default(),
    );
    seed_webhook(&app, company).await;
    seed_active_webhook(&app, company).await;
    seed_deliveries(&app, company);
    app
}

/// Stores [`ACTIVE_WEBHOOK_ID`]: the write key's, in `DEV_COMPANY_ID`, active, circuit closed.
async fn seed_active_webhook(app: &DevApp, company: Uuid) {
    let id = Uuid::parse_str(ACTIVE_WEBHOOK_ID).unwrap();
    let webhook = Webhook {
        id,
        api_key_id: DEV_WRITE_KEY_ID.to_owned(),
        company_id: Some(company),
        url: "https://api.example.com/webhooks/active".to_owned(),
        name: Some("Active Webhook".to_owned()),
        description: None,
        header_names: Vec::new(),
        events: vec![EventType::InterviewCompleted, EventType::Ping],
        is_active: true,
        max_retries: 3,
        timeout_ms: 30_000,
        consecutive_failures: 0,
        circuit_opened_at: None,
        created_at: datetime!(2026-01-01 10:00 UTC),
        updated_at: datetime!(2026-01-01 10:00 UTC),
        version: 1,
    };
    let document = SecretDocument {
        signing_secret: SigningSecret::from_stored("ac".repeat(32)),
        previous: None,
        headers: Vec::new(),
    };
    let secret = app
        .secrets()
        .create_webhook_secret(id, DEV_WRITE_KEY_ID, &document)
        .await
        .expect("the in-memory secret store takes the active webhook's secret");
    let limit = app.settings().max_webhooks_per_key;
    app.webhooks()
        .insert(&StoredWebhook { webhook, secret }, limit, None)
        .await
        .expect("the in-memory store takes the active webhook");
}

/// Stores [`SEEDED_DELIVERIES`] and their events (of `DEV_COMPANY_ID`), an hour apart.
fn seed_deliveries(app: &DevApp, company: Uuid) {
    for (n, (event_id, webhook_id, status, id)) in SEEDED_DELIVERIES.into_iter().enumerate() {
        let at = datetime!(2026-01-02 08:00 UTC) + time::Duration::hours(n as i64);
        let event = LoggedEvent {
            id: EventId::parse(event_id).unwrap(),
            event: EventType::InterviewCompleted,
            company_id: Some(company),
            occurred_at: at,
            received_at: at,
            data: serde_json::json!({"interviewId": format!("int_{event_id}")}),
        };
        let webhook_id = Uuid::parse_str(webhook_id).unwrap();
        assert_eq!(
            delivery_id(&event.id, webhook_id).to_string(),
            id,
            "a seeded delivery's id is its event's and webhook's"
        );
        let attempts: Vec<Attempt> = match status {
            DeliveryStatus::Skipped => Vec::new(),
            _ => vec![Attempt {
                attempt: 1,
                at: at + time::Duration::seconds(1),
                outcome: "failed".into(),
                http_status: Some(500),
                duration_ms: Some(120),
                reason: Some("the endpoint answered 500".into()),
            }],
        };
        app.delivery_log().insert_delivery(Delivery {
            id: Uuid::parse_str(id).unwrap(),
            webhook_id,
            event_id: event.id.clone(),
            event: event.event,
            status,
            created_at: at,
            last_attempt_at: attempts.last().map(|a| a.at),
            last_http_status: attempts.last().and_then(|a| a.http_status),
            next_attempt_at: (status == DeliveryStatus::Pending)
                .then(|| at + time::Duration::minutes(5)),
            attempts,
        });
        app.delivery_log().insert_event(event);
    }
}

/// Every seeded delivery as it is now.
fn seeded_deliveries(app: &DevApp) -> Vec<Option<Delivery>> {
    SEEDED_DELIVERIES
        .iter()
        .map(|(_, _, _, id)| app.delivery_log().delivery(Uuid::parse_str(id).unwrap()))
        .collect()
}

/// An event as it would be sent now: a `recover` body's window is written relative to the
/// file's request time (`timeEpoch`, `requestTimeEpoch`), and is moved by as much as that time
/// is behind now, so that its `since` stays within the 30 days `recover` reaches back.
fn as_sent_now(text: &str) -> String {
    let Ok(mut event) = serde_json::from_str::<Value>(text) else {
        return text.to_owned();
    };
    let path = event
        .get("rawPath")
        .or_else(|| event.get("path"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !path.trim_end_matches('/').ends_with("/recover") {
        return text.to_owned();
    }
    let sent_ms = event
        .pointer("/requestContext/timeEpoch")
        .or_else(|| event.pointer("/requestContext/requestTimeEpoch"))
        .and_then(Value::as_i64);
    let body = event.get("body").and_then(Value::as_str).map(str::to_owned);
    let (Some(sent_ms), Some(body)) = (sent_ms, body) else {
        return text.to_owned();
    };
    let Ok(mut body) = serde_json::from_str::<Value>(&body) else {
        return text.to_owned();
    };
    let sent = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(sent_ms) * 1_000_000)
        .expect("a request time");
    let shift = time::OffsetDateTime::now_utc() - sent;
    for field in ["since", "until"] {
        let moved = body
            .get(field)
            .and_then(Value::as_str)
            .and_then(instaview_webhooks::domain::time_format::parse_rfc3339)
            .map(|at| instaview_webhooks::domain::time_format::rfc3339(at + shift));
        if let Some(moved) = moved {
            body[field] = Value::String(moved);
        }
    }
    event["body"] = Value::String(body.to_string());
    event.to_string()
}

/// Stores the webhook of [`SEEDED_WEBHOOK_ID`] through the stores, as a create would: its
/// secret first (with one custom header), then the record, counted against the key's limit.
async fn seed_webhook(app: &DevApp, company: Uuid) {
    let id = Uuid::parse_str(SEEDED_WEBHOOK_ID).unwrap();
    let webhook = Webhook {
        id,
        api_key_id: DEV_WRITE_KEY_ID.to_owned(),
        company_id: Some(company),
        url: "https://api.example.com/webhooks/instaview".to_owned(),
        name: Some("Seeded Webhook".to_owned()),
        description: Some("The webhook the sample events for /webhooks/{id} act on".to_owned()),
        header_names: vec!["Authorization".to_owned()],
        events: vec![EventType::InterviewCompleted, EventType::AnalysisCompleted],
        is_active: true,
        max_retries: 3,
        timeout_ms: 30_000,
        // An open circuit, so that reset-circuit has something to close.
        consecutive_failures: 10,
        circuit_opened_at: Some(datetime!(2026-01-02 08:30 UTC)),
        created_at: datetime!(2026-01-01 10:00 UTC),
        updated_at: datetime!(2026-01-02 08:30 UTC),
        // Changed twice since its creation: `If-Match: "2"` is stale.
        version: 3,
    };
    let document = SecretDocument {
        signing_secret: SigningSecret::from_stored("5e".repeat(32)),
        previous: None,
        headers: vec![CustomHeader::new(
            HeaderName::parse("Authorization").unwrap(),
            HeaderValue::parse("Bearer seeded-internal-token").unwrap(),
        )],
    };
    let secret = app
        .secrets()
        .create_webhook_secret(id, DEV_WRITE_KEY_ID, &document)
        .await
        .expect("the in-memory secret store takes the seeded secret");
    let limit = app.settings().max_webhooks_per_key;
    app.webhooks()
        .insert(&StoredWebhook { webhook, secret }, limit, None)
        .await
        .expect("the in-memory store takes the seeded webhook");
}

/// Every `*.json` below `dir`, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                // The events published upstream are not named for their answer; they have
                // their own test (tests/api/published_events.rs).
                if !path.ends_with("published") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `(status, error code)` from `<case>.<status>[.<ERROR_CODE>].json`.
fn expected_outcome(path: &Path) -> Result<(u16, Option<String>), String> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json"))
        .ok_or("file name is not UTF-8 or does not end in .json")?;
    let parts: Vec<&str> = stem.split('.').collect();
    let (status, code) = match parts.as_slice() {
        [_case, status] => (status, None),
        [_case, status, code] => (status, Some((*code).to_owned())),
        _ => return Err("name is not <case>.<status>[.<ERROR_CODE>].json".into()),
    };
    let status = status
        .parse::<u16>()
        .map_err(|_| format!("`{status}` in the name is not an HTTP status"))?;
    Ok((status, code))
}

/// The path's segments after `/webhooks` (any stage before it ignored, one trailing slash
/// allowed): `[]` for the collection, `[id]` for one webhook, `[id, action]` for an action.
fn segments_after_webhooks(path: &str) -> Option<Vec<&str>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.split('/').skip_while(|s| *s != "webhooks");
    segments.next()?;
    Some(segments.collect())
}

/// The `Allow` the API documents for a path: a webhook's deliveries and one delivery are read,
/// every other action under `/webhooks/{id}/` is a `POST`.
fn documented_allow(segments: &[&str]) -> Option<&'static str> {
    match segments {
        [] => Some("GET, POST"),
        [_] => Some("GET, PATCH, DELETE"),
        [_, "deliveries"] | [_, "deliveries", _] => Some("GET"),
        [_, "deliveries", _, "resend"] => Some("POST"),
        [_, _] => Some("POST"),
        _ => None,
    }
}

/// The fields of the webhook view, in order: the create answer's without `signingSecret`.
fn view_fields() -> Vec<&'static str> {
    SEED_FIELDS
        .into_iter()
        .filter(|f| *f != "signingSecret")
        .collect()
}

/// What is wrong with one webhook view.
fn view_problems(view: &Value, what: &str) -> Vec<String> {
    let Some(view) = view.as_object() else {
        return vec![format!("{what} is not an object")];
    };
    let keys: Vec<&str> = view.keys().map(String::as_str).collect();
    if keys != view_fields() {
        return vec![format!(
            "{what} keys {keys:?}, the view's are {:?}",
            view_fields()
        )];
    }
    Vec::new()
}

/// What is wrong with the answer to one event; empty when it matches its name.
async fn check_event(path: &Path) -> Vec<String> {
    let (status, code) = match expected_outcome(path) {
        Ok(expected) => expected,
        Err(problem) => return vec![problem],
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return vec![format!("cannot read: {e}")],
    };
    let request = match lambda_http::request::from_str(&as_sent_now(&text)) {
        Ok(request) => request,
        Err(e) => return vec![format!("not an event lambda_http accepts: {e}")],
    };
    let method = request.method().clone();
    let request_path = request.uri().path().to_owned();
    // `None` outside `/webhooks` (those paths only ever get a 404).
    let segments = segments_after_webhooks(&request_path);
    let path_id = segments.as_ref().and_then(|s| s.first().copied());
    let seeded_id = Uuid::parse_str(SEEDED_WEBHOOK_ID).unwrap();

    let app = dev_app().await;
    let seeded_before = app.webhooks().get_record(seeded_id);
    let active_id = Uuid::parse_str(ACTIVE_WEBHOOK_ID).unwrap();
    let active_before = app.webhooks().get_record(active_id);
    let deliveries_before = seeded_deliveries(&app);
    let response = handle(&app, request).await;
    let got_status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    let mut problems = Vec::new();
    if !response.headers().contains_key("x-request-id") {
        problems.push("no x-request-id header".into());
    }
    if got_status == 204 {
        if status != 204 {
            return vec![format!("status 204, the name says {status}")];
        }
        // `204 No Content`: no body at all, not even an empty JSON document.
        if !response.body().as_ref().is_empty() {
            problems.push(format!(
                "a 204 with a body of {} bytes",
                response.body().as_ref().len()
            ));
        }
        if method == Method::DELETE {
            if let Some(id) = path_id.and_then(|s| Uuid::parse_str(s).ok()) {
                if app.webhooks().get_record(id).is_some() {
                    problems.push("a 204 to a DELETE, but the webhook is still there".into());
                }
            }
        }
        return problems;
    }

    let body: Value = match serde_json::from_slice(response.body().as_ref()) {
        Ok(body) => body,
        Err(e) => return vec![format!("answer body is not JSON: {e}")],
    };
    let got_code = body.pointer("/error/code").and_then(Value::as_str);
    if got_status != status {
        // The other checks would only repeat this one.
        let message = body.pointer("/error/message").and_then(Value::as_str);
        return vec![format!(
            "status {got_status} ({got_code:?}: {message:?}), the name says {status}"
        )];
    }
    if let Some(code) = &code {
        if got_code != Some(code.as_str()) {
            problems.push(format!("error.code {got_code:?}, the name says {code}"));
        }
    }
    let content_type = header("content-type");
    if content_type.as_deref() != Some("application/json") {
        problems.push(format!(
            "content-type {content_type:?}, expected application/json"
        ));
    }
    if body.get("success") != Some(&Value::Bool((200..300).contains(&status))) {
        problems.push(format!("success is {:?}", body.get("success")));
    }
    // A refusal changes nothing.
    if !(200..300).contains(&got_status) {
        if app.webhooks().get_record(seeded_id) != seeded_before
            || app.webhooks().get_record(active_id) != active_before
        {
            problems.push(format!(
                "a {got_status} answer, but a seeded webhook changed"
            ));
        }
        if seeded_deliveries(&app) != deliveries_before {
            problems.push(format!(
                "a {got_status} answer, but a seeded delivery changed"
            ));
        }
        if !app.pipeline().jobs().is_empty() {
            problems.push(format!("a {got_status} answer, but a job was queued"));
        }
    }
    let section = segments.as_ref().and_then(|s| s.get(1)).copied();
    let delivery_segment = segments.as_ref().and_then(|s| s.get(2)).copied();
    let no_store = |problems: &mut Vec<String>| {
        if header("cache-control").as_deref() != Some("no-store") {
            problems.push(format!(
                "cache-control {:?}, expected no-store",
                header("cache-control")
            ));
        }
    };
    match got_status {
        201 => match body.get("data").and_then(Value::as_object) {
            Some(data) => {
                let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                if keys != SEED_FIELDS {
                    problems.push(format!(
                        "data keys {keys:?}, the seed's are {SEED_FIELDS:?}"
                    ));
                }
                let location = data
                    .get("id")
                    .and_then(Value::as_str)
                    .map(|id| format!("/webhooks/{id}"));
                if header("location") != location {
                    problems.push(format!(
                        "location {:?}, expected {location:?}",
                        header("location")
                    ));
                }
                no_store(&mut problems);
            }
            None => problems.push("a 201 without an object in data".into()),
        },
        // The list: `{"data": [view, ...], "total": N}`.
        200 if segments.as_ref().is_some_and(Vec::is_empty) => {
            let list = body.pointer("/data/data").and_then(Value::as_array);
            let total = body.pointer("/data/total").and_then(Value::as_u64);
            match (list, total) {
                (Some(list), Some(total)) => {
                    if total != list.len() as u64 {
                        problems.push(format!("total {total} for {} webhooks", list.len()));
                    }
                    for (i, view) in list.iter().enumerate() {
                        problems.extend(view_problems(view, &format!("data.data[{i}]")));
                    }
                }
                _ => problems.push("a list answer without data.data and data.total".into()),
            }
            no_store(&mut problems);
        }
        // A page of deliveries: `{"data": [summary, ...], "nextCursor": ...}`.
        200 if section == Some("deliveries") && delivery_segment.is_none() => {
            let data = body.get("data").unwrap_or(&Value::Null);
            let keys: Vec<&str> = data
                .as_object()
                .map_or(vec![], |d| d.keys().map(String::as_str).collect());
            if keys != ["data", "nextCursor"] {
                problems.push(format!("deliveries page keys {keys:?}"));
            }
            for (i, summary) in data
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let keys: Vec<&str> = summary
                    .as_object()
                    .map_or(vec![], |d| d.keys().map(String::as_str).collect());
                if keys != SUMMARY_FIELDS {
                    problems.push(format!("data.data[{i}] keys {keys:?}"));
                }
                if summary.get("webhookId").and_then(Value::as_str) != path_id {
                    problems.push(format!("data.data[{i}] is not the path's webhook's"));
                }
            }
            no_store(&mut problems);
        }
        // One delivery: the summary, its attempts and its payload.
        200 if section == Some("deliveries") => {
            let data = body.get("data").unwrap_or(&Value::Null);
            let keys: Vec<&str> = data
                .as_object()
                .map_or(vec![], |d| d.keys().map(String::as_str).collect());
            let mut expected = SUMMARY_FIELDS.to_vec();
            expected.extend(["attempts", "payload"]);
            if keys != expected {
                problems.push(format!("delivery keys {keys:?}, expected {expected:?}"));
            }
            let id = data.get("id").and_then(Value::as_str);
            if id.map(str::to_ascii_lowercase) != delivery_segment.map(str::to_ascii_lowercase) {
                problems.push(format!("data.id {id:?} is not the path's delivery id"));
            }
            no_store(&mut problems);
        }
        // A resend: the delivery, now pending, and one job queued.
        202 if section == Some("deliveries") => {
            let data = body.get("data").unwrap_or(&Value::Null);
            if data.get("status").and_then(Value::as_str) != Some("pending") {
                problems.push(format!("a resend answered status {:?}", data.get("status")));
            }
            if app.pipeline().resends().len() != 1 {
                problems.push("a resend that queued no job".into());
            }
            no_store(&mut problems);
        }
        // A recover: its window, `queued: null`, and one job queued.
        202 if section == Some("recover") => {
            let data = body.get("data").and_then(Value::as_object);
            let keys: Vec<&str> = data.map_or(vec![], |d| d.keys().map(String::as_str).collect());
            if keys != ["since", "until", "queued"] {
                problems.push(format!("recover answer keys {keys:?}"));
            }
            if app.pipeline().recovers().len() != 1 {
                problems.push("a recover that queued no job".into());
            }
            no_store(&mut problems);
        }
        // A test ping's result (the seeded webhook's circuit is open: nothing is sent).
        200 if segments.as_ref().and_then(|s| s.get(1)) == Some(&"test") => {
            let data = body.get("data").and_then(Value::as_object);
            let keys: Vec<&str> = data.map_or(vec![], |d| d.keys().map(String::as_str).collect());
            if keys
                != [
                    "success",
                    "deliveryId",
                    "httpStatus",
                    "durationMs",
                    "message",
                ]
            {
                problems.push(format!("test result keys {keys:?}"));
            }
            no_store(&mut problems);
        }
        // A rotation: the view's fields, then the new secret and the previous one's expiry.
        200 if segments.as_ref().and_then(|s| s.get(1)) == Some(&"rotate-secret") => {
            let data = body.get("data").and_then(Value::as_object);
            let keys: Vec<&str> = data.map_or(vec![], |d| d.keys().map(String::as_str).collect());
            let mut expected: Vec<&str> = SEED_FIELDS
                .iter()
                .copied()
                .filter(|f| *f != "signingSecret")
                .collect();
            expected.extend(["signingSecret", "previousSecretExpiresAt"]);
            if keys != expected {
                problems.push(format!("rotation keys {keys:?}, expected {expected:?}"));
            }
            if header("etag").is_none() {
                problems.push("a rotation without an ETag".into());
            }
            no_store(&mut problems);
        }
        // One webhook's view, with its ETag; a change moves the ETag.
        200 => {
            let data = body.get("data").unwrap_or(&Value::Null);
            problems.extend(view_problems(data, "data"));
            let id = data.get("id").and_then(Value::as_str);
            if id.map(str::to_ascii_lowercase) != path_id.map(str::to_ascii_lowercase) {
                problems.push(format!("data.id {id:?} is not the path's id"));
            }
            match header("etag") {
                None => problems.push("a webhook's view without an ETag".into()),
                Some(etag) if method != Method::GET && etag == SEEDED_ETAG => {
                    problems.push(format!("a change answered the seed's ETag {etag}"));
                }
                Some(_) => {}
            }
            if segments.as_ref().and_then(|s| s.get(1)) == Some(&"reset-circuit") {
                let closed = [
                    ("consecutiveFailures", Value::from(0)),
                    ("circuitOpenedAt", Value::Null),
                    ("isActive", Value::Bool(true)),
                ];
                for (field, expected) in closed {
                    if data.get(field) != Some(&expected) {
                        problems.push(format!(
                            "reset-circuit answered {field} {:?}, expected {expected}",
                            data.get(field)
                        ));
                    }
                }
            }
            no_store(&mut problems);
        }
        401 if !header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")) => {
            problems.push("a 401 without WWW-Authenticate: Bearer".into());
        }
        404 if code.as_deref() == Some("RESOURCE_NOT_FOUND") => {
            let details = body.pointer("/error/details");
            // An event of a known webhook names a delivery no webhook of it has.
            let delivery = delivery_segment.filter(|_| {
                path_id.is_some_and(|id| id == SEEDED_WEBHOOK_ID || id == ACTIVE_WEBHOOK_ID)
            });
            let expected = match delivery {
                Some(id) => Some(serde_json::json!({"resourceType": "Delivery", "resourceId": id})),
                None => path_id.map(
                    |id| serde_json::json!({"resourceType": "WebhookConfig", "resourceId": id}),
                ),
            };
            if details != expected.as_ref() {
                problems.push(format!("error.details {details:?}, expected {expected:?}"));
            }
        }
        405 => {
            let expected = segments.as_deref().and_then(documented_allow);
            if header("allow").as_deref() != expected {
                problems.push(format!(
                    "Allow {:?}, the path's is {expected:?}",
                    header("allow")
                ));
            }
        }
        _ => {}
    }
    problems
}

#[tokio::test]
async fn every_sample_event_gets_the_outcome_its_name_states() {
    let events_dir = manifest_dir().join("events");
    let files = json_files(&events_dir);
    assert!(
        files.len() >= MIN_EVENT_FILES,
        "found {} event files under {}, expected at least {MIN_EVENT_FILES}",
        files.len(),
        events_dir.display()
    );

    let mut failures = Vec::new();
    for path in &files {
        let name = path.strip_prefix(manifest_dir()).unwrap_or(path).display();
        for problem in check_event(path).await {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} sample events did not get the outcome their name states:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
}

#[test]
fn the_allow_checked_is_the_paths() {
    let allow = |path: &str| segments_after_webhooks(path).and_then(|s| documented_allow(&s));
    assert_eq!(allow("/webhooks"), Some("GET, POST"));
    assert_eq!(allow("/prod/webhooks/"), Some("GET, POST"));
    assert_eq!(
        allow(&format!("/webhooks/{SEEDED_WEBHOOK_ID}")),
        Some("GET, PATCH, DELETE")
    );
    assert_eq!(allow("/webhooks/x/reset-circuit/"), Some("POST"));
    assert_eq!(allow("/webhooks/x/deliveries"), Some("GET"));
    assert_eq!(allow("/webhooks/x/deliveries/y/"), Some("GET"));
    assert_eq!(allow("/webhooks/x/deliveries/y/resend"), Some("POST"));
    assert_eq!(allow("/webhooks/x/recover"), Some("POST"));
    assert_eq!(allow("/hooks"), None);
}
