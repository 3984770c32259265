//! DELIVERY-LOG.md's routes, rule by rule, through the handler with in-memory stores, the
//! in-memory delivery log and deliveries queue: the list and its cursors, one delivery and its
//! payload, resend, recover, the test ping as a delivery; with WEBHOOKS-API.md's order of
//! checks, ownership, scopes, rate limits and `Idempotency-Key`.

use crate::support;

use instaview_webhooks::delivery::DeliveryBody;
use instaview_webhooks::domain::{
    ApiKey, ApiToken, EventType, RateLimits, READ_WEBHOOKS, WRITE_WEBHOOKS,
};
use instaview_webhooks::http::handle;
use instaview_webhooks::store::delivery_log::{
    delivery_id, Attempt, Delivery, DeliveryStatus, EventId, LoggedEvent, RecoverJob,
};
use instaview_webhooks::store::StoreError;
use lambda_http::http::Method;
use lambda_http::Body;
use serde_json::{json, Value};
use support::receiver::{Receiver, Reply};
use support::*;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// A second key with both scopes, owning nothing of the first key's.
const OTHER_TOKEN: &str = "sk_TestOtherWriteKey0123456789abcdefg";
/// A key with only `write:webhooks`.
const WRITE_ONLY_TOKEN: &str = "sk_TestWriteOnlyKey0123456789abcdefgh";
/// The first key (same `apiKeyId`) after its companies changed: `OTHER_COMPANY` only.
const MOVED_TOKEN: &str = "sk_TestMovedCompanyKey0123456789abcde";
/// A key allowed 3 requests a minute.
const MINUTE_TOKEN: &str = "sk_TestMinuteLimitKey0123456789abcdef";

const BOTH: &[&str] = &[WRITE_WEBHOOKS, READ_WEBHOOKS];

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

fn app() -> MemoryApp {
    let app = memory_app();
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
    app
}

async fn send(app: &MemoryApp, request: RequestBuilder) -> Answer {
    parse(handle(app, request.build()).await)
}

/// Creates a webhook of `COMPANY` for `url` with `events`, as `token`; answers its id.
async fn create_with(app: &MemoryApp, token: &str, url: &str, events: &[&str]) -> String {
    let body = json!({"url": url, "events": events, "companyId": COMPANY});
    let answer = send(app, post(&body.to_string()).token(token)).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    answer.json["data"]["id"].as_str().unwrap().to_owned()
}

async fn create(app: &MemoryApp) -> String {
    create_with(
        app,
        TOKEN,
        "https://api.example.com/hooks",
        &["interview.completed", "analysis.completed"],
    )
    .await
}

fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap()
}

fn company() -> Uuid {
    uuid(COMPANY)
}

/// An event `n` of `company` that happened `n` minutes after a base time within the window
/// `recover` may reach.
fn event(n: i64, company: Option<Uuid>) -> LoggedEvent {
    let at = base_time() + Duration::minutes(n);
    LoggedEvent {
        id: EventId::parse(&format!("evt-{n}")).unwrap(),
        event: EventType::InterviewCompleted,
        company_id: company,
        occurred_at: at,
        received_at: at,
        data: json!({"interviewId": format!("int-{n}"), "score": n}),
    }
}

/// A whole minute a day ago: inside every window.
fn base_time() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc() - Duration::days(1);
    now.replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap()
}

/// The delivery of `event` to `webhook` with `status` and its attempts.
fn delivery_of(event: &LoggedEvent, webhook: Uuid, status: DeliveryStatus) -> Delivery {
    let attempts: Vec<Attempt> = match status {
        DeliveryStatus::Skipped => Vec::new(),
        DeliveryStatus::Delivered => vec![Attempt {
            attempt: 1,
            at: event.received_at + Duration::seconds(1),
            outcome: "delivered".into(),
            http_status: Some(200),
            duration_ms: Some(42),
            reason: None,
        }],
        DeliveryStatus::Failed | DeliveryStatus::Pending => (1..=2)
            .map(|n| Attempt {
                attempt: n,
                at: event.received_at + Duration::seconds(i64::from(n)),
                outcome: "failed".into(),
                http_status: Some(500),
                duration_ms: Some(7),
                reason: Some("the endpoint answered 500".into()),
            })
            .collect(),
    };
    Delivery {
        id: delivery_id(&event.id, webhook),
        webhook_id: webhook,
        event_id: event.id.clone(),
        event: event.event,
        status,
        created_at: event.received_at,
        last_attempt_at: attempts.last().map(|a| a.at),
        last_http_status: attempts.last().and_then(|a| a.http_status),
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| event.received_at + Duration::minutes(5)),
        attempts,
    }
}

/// Stores event `n` and its delivery to `webhook`; answers the delivery.
fn seed(app: &MemoryApp, webhook: &str, n: i64, status: DeliveryStatus) -> Delivery {
    let event = event(n, Some(company()));
    let delivery = delivery_of(&event, uuid(webhook), status);
    app.delivery_log().insert_event(event);
    app.delivery_log().insert_delivery(delivery.clone());
    delivery
}

fn deliveries(id: &str) -> RequestBuilder {
    get(&format!("/webhooks/{id}/deliveries"))
}

fn one(id: &str, delivery: &str) -> RequestBuilder {
    get(&format!("/webhooks/{id}/deliveries/{delivery}"))
}

fn resend(id: &str, delivery: &str) -> RequestBuilder {
    request(
        Method::POST,
        &format!("/webhooks/{id}/deliveries/{delivery}/resend"),
    )
}

fn recover(id: &str, body: &Value) -> RequestBuilder {
    post(&body.to_string()).path(&format!("/webhooks/{id}/recover"))
}

fn ids(answer: &Answer) -> Vec<String> {
    answer.json["data"]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no list in {}", answer.raw))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

fn next_cursor(answer: &Answer) -> Option<String> {
    answer.json["data"]["nextCursor"]
        .as_str()
        .map(str::to_owned)
}

fn assert_success(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{}", answer.raw);
    assert_eq!(answer.json["success"], true, "{}", answer.raw);
    assert_eq!(answer.json["error"], Value::Null);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
}

fn field_names(answer: &Answer) -> Vec<String> {
    answer.field_errors().into_iter().map(|(f, _)| f).collect()
}

fn keys_of(data: &Value) -> Vec<&str> {
    data.as_object()
        .unwrap_or_else(|| panic!("not an object: {data}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_delivery_not_found(answer: &Answer, as_sent: &str) {
    assert_error(answer, 404, "RESOURCE_NOT_FOUND");
    assert_eq!(answer.json["error"]["message"], "Delivery not found");
    assert_eq!(
        answer.json["error"]["details"],
        json!({"resourceType": "Delivery", "resourceId": as_sent})
    );
}

fn assert_webhook_not_found(answer: &Answer, as_sent: &str) {
    assert_error(answer, 404, "RESOURCE_NOT_FOUND");
    assert_eq!(
        answer.json["error"]["details"],
        json!({"resourceType": "WebhookConfig", "resourceId": as_sent})
    );
}

/// Every page of `request`'s list, following `nextCursor` to its end.
async fn all_pages(app: &MemoryApp, make: impl Fn() -> RequestBuilder) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = make();
        if let Some(cursor) = &cursor {
            request = request.query("cursor", cursor);
        }
        let answer = send(app, request).await;
        assert_success(&answer, 200);
        pages.push(ids(&answer));
        match next_cursor(&answer) {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 100, "the list never ends");
    }
}

// --- GET /webhooks/{id}/deliveries ------------------------------------------------------------

#[tokio::test]
async fn the_list_is_newest_first_in_pages_of_the_default_20_and_ends_with_a_null_cursor() {
    let app = app();
    let id = create(&app).await;
    let other = create(&app).await;
    let seeded: Vec<Delivery> = (0..25)
        .map(|n| seed(&app, &id, n, DeliveryStatus::Delivered))
        .collect();
    seed(&app, &other, 100, DeliveryStatus::Delivered);

    let first = send(&app, deliveries(&id)).await;
    assert_success(&first, 200);
    assert_eq!(keys_of(&first.json["data"]), ["data", "nextCursor"]);
    assert_eq!(ids(&first).len(), 20);

    let pages = all_pages(&app, || deliveries(&id)).await;
    let listed: Vec<String> = pages.concat();
    let mut expected = seeded.clone();
    expected.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
    let expected: Vec<String> = expected.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(listed, expected, "every delivery once, newest first");
    assert_eq!(pages[0].len(), 20);

    let by_ten = all_pages(&app, || deliveries(&id).query("limit", "10")).await;
    assert_eq!(by_ten.concat(), expected);
    assert!(by_ten.iter().all(|page| page.len() <= 10));
    assert_eq!(by_ten.len(), 3);
}

#[tokio::test]
async fn a_summary_has_the_specs_fields_in_order_with_nulls_where_nothing_happened() {
    let app = app();
    let id = create(&app).await;
    let skipped = seed(&app, &id, 1, DeliveryStatus::Skipped);
    let failed = seed(&app, &id, 2, DeliveryStatus::Failed);

    let answer = send(&app, deliveries(&id)).await;

    assert_success(&answer, 200);
    let list = answer.json["data"]["data"].as_array().unwrap();
    for summary in list {
        assert_eq!(keys_of(summary), SUMMARY_FIELDS);
    }
    assert_eq!(
        list[0],
        json!({
            "id": failed.id.to_string(),
            "webhookId": id,
            "eventId": "evt-2",
            "event": "interview.completed",
            "status": "failed",
            "attemptCount": 2,
            "createdAt": rfc3339(failed.created_at),
            "lastAttemptAt": rfc3339(failed.last_attempt_at.unwrap()),
            "lastHttpStatus": 500,
            "nextAttemptAt": null,
        })
    );
    assert_eq!(list[1]["id"], skipped.id.to_string());
    assert_eq!(list[1]["status"], "skipped");
    assert_eq!(list[1]["attemptCount"], 0);
    assert_eq!(list[1]["lastAttemptAt"], Value::Null);
    assert_eq!(list[1]["lastHttpStatus"], Value::Null);
    assert!(list[1]["createdAt"].as_str().unwrap().ends_with('Z'));
}

fn rfc3339(at: OffsetDateTime) -> String {
    instaview_webhooks::domain::time_format::rfc3339(at)
}

#[tokio::test]
async fn the_filters_combine_with_and_and_their_cursors_follow_them_across_pages() {
    let app = app();
    let id = create(&app).await;
    let mut failed_in_window = Vec::new();
    for n in 0..30 {
        let status = match n % 3 {
            0 => DeliveryStatus::Failed,
            1 => DeliveryStatus::Skipped,
            _ => DeliveryStatus::Delivered,
        };
        let delivery = seed(&app, &id, n, status);
        if status == DeliveryStatus::Failed && (6..24).contains(&n) {
            failed_in_window.push(delivery);
        }
    }
    let ping = {
        let event = LoggedEvent {
            event: EventType::Ping,
            ..event(12, None)
        };
        let event = LoggedEvent {
            id: EventId::parse("ping-12").unwrap(),
            ..event
        };
        let delivery = delivery_of(&event, uuid(&id), DeliveryStatus::Failed);
        app.delivery_log().insert_event(event);
        app.delivery_log().insert_delivery(delivery.clone());
        delivery
    };
    let since = rfc3339(base_time() + Duration::minutes(6));
    let until = rfc3339(base_time() + Duration::minutes(24));
    let filtered = || {
        deliveries(&id)
            .query("status", "failed")
            .query("event", "interview.completed")
            .query("since", &since)
            .query("until", &until)
            .query("limit", "4")
    };

    let pages = all_pages(&app, filtered).await;

    failed_in_window.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
    let expected: Vec<String> = failed_in_window.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(pages.concat(), expected);
    assert!(pages.iter().all(|page| page.len() <= 4));
    // An offset's `+` sent unencoded arrives as a space, and still reads as the same time.
    let offset_since = rfc3339(base_time() + Duration::minutes(6)).replace('Z', " 00:00");
    let same = all_pages(&app, || {
        deliveries(&id)
            .query("status", "failed")
            .query("event", "interview.completed")
            .query("since", &offset_since)
            .query("until", &until)
            .query("limit", "4")
    })
    .await;
    assert_eq!(same.concat(), expected);
    let pings = send(&app, deliveries(&id).query("event", "ping")).await;
    assert_eq!(ids(&pings), [ping.id.to_string()]);
    let skipped = send(
        &app,
        deliveries(&id)
            .query("status", "skipped")
            .query("limit", "100"),
    )
    .await;
    assert_eq!(ids(&skipped).len(), 10);
}

#[tokio::test]
async fn a_cursor_of_another_webhook_another_filter_set_or_tampered_is_400_on_cursor() {
    let app = app();
    let id = create(&app).await;
    let other = create(&app).await;
    let foreign_key_webhook = create_with(
        &app,
        OTHER_TOKEN,
        "https://other.example.com/hooks",
        &["ping"],
    )
    .await;
    for n in 0..5 {
        seed(&app, &id, n, DeliveryStatus::Failed);
        seed(&app, &other, n, DeliveryStatus::Failed);
        seed(&app, &foreign_key_webhook, n, DeliveryStatus::Failed);
    }
    let page = send(&app, deliveries(&id).query("limit", "2")).await;
    let cursor = next_cursor(&page).expect("more follow");
    let filtered = send(
        &app,
        deliveries(&id)
            .query("limit", "2")
            .query("status", "failed"),
    )
    .await;
    let filtered_cursor = next_cursor(&filtered).expect("more follow");
    let mut tampered = cursor.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut cases = vec![
        (
            deliveries(&other).query("cursor", &cursor),
            "another webhook's",
        ),
        (
            deliveries(&id)
                .query("cursor", &cursor)
                .query("status", "failed"),
            "another filter set",
        ),
        (
            deliveries(&id).query("cursor", &filtered_cursor),
            "a filtered list's, without its filter",
        ),
        (
            deliveries(&id)
                .query("cursor", &cursor)
                .query("since", "2020-01-01T00:00:00Z"),
            "with a since added",
        ),
        (deliveries(&id).query("cursor", &tampered), "tampered"),
        (deliveries(&id).query("cursor", "not-a-cursor"), "made up"),
        (deliveries(&id).query("cursor", ""), "empty"),
        (deliveries(&id).query("cursor", "%%%"), "not base64url"),
        (
            deliveries(&id).query("cursor", &"A".repeat(5000)),
            "too long",
        ),
        (
            deliveries(&foreign_key_webhook)
                .query("cursor", &cursor)
                .token(OTHER_TOKEN),
            "another key's webhook",
        ),
    ];
    // A cursor cut short, and one whose position was swapped for another.
    cases.push((deliveries(&id).query("cursor", &cursor[..40]), "cut short"));
    for (request, case) in cases {
        let answer = send(&app, request).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(field_names(&answer), ["cursor"], "{case}: {}", answer.raw);
    }
    // The same cursor, as returned, still works.
    let next = send(
        &app,
        deliveries(&id).query("cursor", &cursor).query("limit", "2"),
    )
    .await;
    assert_success(&next, 200);
    assert_eq!(ids(&next).len(), 2);
    assert!(ids(&next).iter().all(|d| !ids(&page).contains(d)));
}

#[tokio::test]
async fn every_query_error_is_answered_at_once() {
    let app = app();
    let id = create(&app).await;
    let answer = send(
        &app,
        deliveries(&id)
            .query("status", "lost")
            .query("event", "interview.done")
            .query("since", "yesterday")
            .query("until", "2026-13-01T00:00:00Z")
            .query("limit", "0")
            .query("companyId", COMPANY)
            .query("page", "2"),
    )
    .await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    assert_eq!(
        field_names(&answer),
        [
            "companyId",
            "page",
            "status",
            "event",
            "since",
            "until",
            "limit"
        ]
    );
    let messages: Vec<String> = answer.field_errors().into_iter().map(|(_, m)| m).collect();
    assert!(messages[2].contains("pending, delivered, failed, skipped"));
    assert!(messages[3].contains("interview.completed"));
    assert!(messages[6].contains("1 to 100"));

    for (name, value) in [
        ("limit", "101"),
        ("limit", "-1"),
        ("limit", "1.5"),
        ("limit", "+5"),
        ("limit", ""),
        ("status", "FAILED"),
        ("since", "2026-12-01"),
    ] {
        let answer = send(&app, deliveries(&id).query(name, value)).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(field_names(&answer), [name], "{name}={value}");
    }
    let reversed = send(
        &app,
        deliveries(&id)
            .query("since", "2026-12-02T00:00:00Z")
            .query("until", "2026-12-01T00:00:00Z"),
    )
    .await;
    assert_eq!(field_names(&reversed), ["until"]);
    let equal = send(
        &app,
        deliveries(&id)
            .query("since", "2026-12-01T00:00:00Z")
            .query("until", "2026-12-01T00:00:00Z"),
    )
    .await;
    assert_eq!(field_names(&equal), ["until"]);
    let twice = send(
        &app,
        deliveries(&id)
            .query("status", "failed")
            .query("status", "skipped"),
    )
    .await;
    assert_eq!(field_names(&twice), ["status"]);
    // Query errors come before the webhook is looked up.
    let unknown = send(
        &app,
        deliveries(&Uuid::new_v4().to_string()).query("limit", "0"),
    )
    .await;
    assert_error(&unknown, 400, "VALIDATION_ERROR");
    for request in [
        one(&id, &Uuid::new_v4().to_string()).query("x", "1"),
        resend(&id, &Uuid::new_v4().to_string()).query("x", "1"),
        recover(&id, &json!({"since": rfc3339(base_time())})).query("x", "1"),
    ] {
        let answer = send(&app, request).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        assert_eq!(field_names(&answer), ["x"]);
    }
}

// --- Ownership ---------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_malformed_or_other_webhooks_delivery_is_404_delivery() {
    let app = app();
    let id = create(&app).await;
    let other = create(&app).await;
    let theirs = seed(&app, &other, 1, DeliveryStatus::Failed);
    let unknown = Uuid::new_v4().to_string();
    for as_sent in [
        unknown.as_str(),
        "not-a-uuid",
        &theirs.id.to_string(),
        &theirs.id.simple().to_string(),
    ] {
        assert_delivery_not_found(&send(&app, one(&id, as_sent)).await, as_sent);
        assert_delivery_not_found(&send(&app, resend(&id, as_sent)).await, as_sent);
    }
    // Under its own webhook it is found, in any case.
    let upper = theirs.id.to_string().to_uppercase();
    let found = send(&app, one(&other, &upper)).await;
    assert_success(&found, 200);
    assert_eq!(found.json["data"]["id"], theirs.id.to_string());
    assert_eq!(app.pipeline().jobs().len(), 0);
}

#[tokio::test]
async fn another_keys_webhook_is_404_webhook_config_on_every_delivery_route() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
    let did = delivery.id.to_string();
    let window = json!({"since": rfc3339(base_time())});
    for request in [
        deliveries(&id),
        one(&id, &did),
        resend(&id, &did),
        recover(&id, &window),
    ] {
        let answer = send(&app, request.token(OTHER_TOKEN)).await;
        assert_webhook_not_found(&answer, &id);
    }
    for request in [
        deliveries("nope"),
        one("nope", &did),
        resend("nope", &did),
        recover("nope", &window),
    ] {
        assert_webhook_not_found(&send(&app, request).await, "nope");
    }
    assert_eq!(app.pipeline().jobs().len(), 0);
    assert_eq!(app.delivery_log().delivery(delivery.id).unwrap(), delivery);
}

#[tokio::test]
async fn a_webhook_of_a_company_the_key_lost_is_listed_and_read_but_not_resent_or_recovered() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
    let did = delivery.id.to_string();

    let listed = send(&app, deliveries(&id).token(MOVED_TOKEN)).await;
    assert_success(&listed, 200);
    assert_eq!(ids(&listed), [did.as_str()]);
    // Its payload holds the lost company's data.
    let read = send(&app, one(&id, &did).token(MOVED_TOKEN)).await;
    assert_error(&read, 403, "RESOURCE_ACCESS_DENIED");
    for request in [
        resend(&id, &did),
        recover(&id, &json!({"since": rfc3339(base_time())})),
    ] {
        let answer = send(&app, request.token(MOVED_TOKEN)).await;
        assert_error(&answer, 403, "RESOURCE_ACCESS_DENIED");
    }
    assert_eq!(app.pipeline().jobs().len(), 0);
    assert_eq!(app.delivery_log().delivery(delivery.id).unwrap(), delivery);
}

// --- GET /webhooks/{id}/deliveries/{deliveryId} ----------------------------------------------

#[tokio::test]
async fn one_delivery_adds_its_attempts_oldest_first_and_the_exact_body_the_receiver_got() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 3, DeliveryStatus::Failed);
    let event = app.delivery_log().event(&delivery.event_id).unwrap();

    let answer = send(&app, one(&id, &delivery.id.to_string())).await;

    assert_success(&answer, 200);
    let data = &answer.json["data"];
    let mut fields = SUMMARY_FIELDS.to_vec();
    fields.extend(["attempts", "payload"]);
    assert_eq!(keys_of(data), fields);
    assert_eq!(data["status"], "failed");
    let attempts = data["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(
            keys_of(attempt),
            [
                "attempt",
                "at",
                "outcome",
                "httpStatus",
                "durationMs",
                "reason"
            ]
        );
        assert_eq!(attempt["attempt"], i + 1);
    }
    assert_eq!(attempts[0]["reason"], "the endpoint answered 500");
    assert_eq!(attempts[0]["httpStatus"], 500);
    let body = DeliveryBody::new(event.event, event.occurred_at, delivery.id, &event.data);
    let sent: Value = serde_json::from_str(body.as_str()).unwrap();
    assert_eq!(data["payload"], sent);
    assert_eq!(
        keys_of(&data["payload"]),
        ["event", "timestamp", "deliveryId", "data"]
    );
    assert_eq!(data["payload"]["deliveryId"], delivery.id.to_string());
    assert_eq!(data["payload"]["data"]["interviewId"], "int-3");
}

#[tokio::test]
async fn an_event_gone_with_its_ttl_leaves_the_delivery_with_a_null_payload() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 3, DeliveryStatus::Delivered);
    app.delivery_log().expire_event(&delivery.event_id);

    let answer = send(&app, one(&id, &delivery.id.to_string())).await;

    assert_success(&answer, 200);
    assert_eq!(answer.json["data"]["payload"], Value::Null);
    assert_eq!(answer.json["data"]["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_payload_of_a_company_the_key_no_longer_holds_is_403_and_one_without_a_company_is_shown()
{
    let app = app();
    // A webhook without a company gets every company's events.
    let body =
        json!({"url": "https://api.example.com/all", "events": ["interview.completed", "ping"]});
    let created = send(&app, post(&body.to_string())).await;
    let id = created.json["data"]["id"].as_str().unwrap().to_owned();
    let of_company = seed(&app, &id, 1, DeliveryStatus::Delivered);
    let ping_event = LoggedEvent {
        id: EventId::parse("ping-2").unwrap(),
        event: EventType::Ping,
        company_id: None,
        data: json!({"webhookId": id}),
        ..event(2, None)
    };
    let ping = delivery_of(&ping_event, uuid(&id), DeliveryStatus::Delivered);
    app.delivery_log().insert_event(ping_event);
    app.delivery_log().insert_delivery(ping.clone());

    let denied = send(
        &app,
        one(&id, &of_company.id.to_string()).token(MOVED_TOKEN),
    )
    .await;
    let shown = send(&app, one(&id, &ping.id.to_string()).token(MOVED_TOKEN)).await;

    assert_error(&denied, 403, "RESOURCE_ACCESS_DENIED");
    assert_success(&shown, 200);
    assert_eq!(shown.json["data"]["payload"]["event"], "ping");
    assert_eq!(
        shown.json["data"]["payload"]["data"],
        json!({"webhookId": id})
    );
    assert_success(&send(&app, one(&id, &of_company.id.to_string())).await, 200);
}

// --- POST .../resend -------------------------------------------------------------------------

#[tokio::test]
async fn a_resend_is_202_with_the_summary_pending_and_one_job_for_the_next_attempt() {
    let app = app();
    let id = create(&app).await;
    for status in [
        DeliveryStatus::Failed,
        DeliveryStatus::Skipped,
        DeliveryStatus::Delivered,
    ] {
        let n = app.delivery_log().deliveries_of(uuid(&id)).len() as i64;
        let delivery = seed(&app, &id, n, status);
        let before = app.pipeline().resends().len();

        let answer = send(&app, resend(&id, &delivery.id.to_string())).await;

        assert_success(&answer, 202);
        let data = &answer.json["data"];
        assert_eq!(keys_of(data), SUMMARY_FIELDS);
        assert_eq!(data["id"], delivery.id.to_string());
        assert_eq!(data["status"], "pending");
        assert_eq!(data["attemptCount"], delivery.attempts.len());
        let jobs = app.pipeline().resends();
        assert_eq!(jobs.len(), before + 1);
        let job = jobs.last().unwrap();
        assert_eq!(job.delivery.id, delivery.id);
        assert_eq!(job.delivery.status, DeliveryStatus::Pending);
        assert_eq!(job.attempt, delivery.attempts.len() as u32 + 1);
        assert_eq!(job.event.id, delivery.event_id);
        let stored = app.delivery_log().delivery(delivery.id).unwrap();
        assert_eq!(stored.status, DeliveryStatus::Pending);
    }
}

#[tokio::test]
async fn a_pending_delivery_is_409_delivery_pending() {
    let app = app();
    let id = create(&app).await;
    let pending = seed(&app, &id, 1, DeliveryStatus::Pending);
    let answer = send(&app, resend(&id, &pending.id.to_string())).await;
    assert_error(&answer, 409, "DELIVERY_PENDING");
    // A resend in flight is pending too: a second one is refused.
    let failed = seed(&app, &id, 2, DeliveryStatus::Failed);
    assert_success(&send(&app, resend(&id, &failed.id.to_string())).await, 202);
    let again = send(&app, resend(&id, &failed.id.to_string())).await;
    assert_error(&again, 409, "DELIVERY_PENDING");
    assert_eq!(app.pipeline().resends().len(), 1);
}

/// Turns webhook `id`'s record into what `change` makes of it (states only the pipeline
/// reaches, such as an open circuit).
fn change_record(
    app: &MemoryApp,
    id: &str,
    change: impl FnOnce(&mut instaview_webhooks::domain::Webhook),
) {
    let mut stored = app.webhooks().get_record(uuid(id)).unwrap();
    change(&mut stored.webhook);
    app.webhooks().put_record(stored);
}

#[tokio::test]
async fn an_inactive_webhook_or_an_open_circuit_is_409_webhook_not_delivering_for_resend_and_recover(
) {
    let app = app();
    for (case, change) in [
        (
            "inactive",
            Box::new(|w: &mut instaview_webhooks::domain::Webhook| w.is_active = false)
                as Box<dyn FnOnce(&mut instaview_webhooks::domain::Webhook)>,
        ),
        (
            "circuit open",
            Box::new(|w: &mut instaview_webhooks::domain::Webhook| {
                w.consecutive_failures = 10;
                w.circuit_opened_at = Some(OffsetDateTime::now_utc());
            }),
        ),
    ] {
        let id = create(&app).await;
        let delivery = seed(&app, &id, 1, DeliveryStatus::Skipped);
        change_record(&app, &id, change);
        for request in [
            resend(&id, &delivery.id.to_string()),
            recover(&id, &json!({"since": rfc3339(base_time())})),
        ] {
            let answer = send(&app, request).await;
            assert_error(&answer, 409, "WEBHOOK_NOT_DELIVERING");
            let message = answer.json["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("activate it or reset its circuit"),
                "{case}: {message}"
            );
        }
        assert_eq!(
            app.delivery_log().delivery(delivery.id).unwrap().status,
            DeliveryStatus::Skipped,
            "{case}"
        );
        // After reset-circuit (which also activates), both go through.
        let reset = request(Method::POST, &format!("/webhooks/{id}/reset-circuit"));
        assert_eq!(send(&app, reset).await.status, 200);
        assert_success(
            &send(&app, resend(&id, &delivery.id.to_string())).await,
            202,
        );
    }
    assert_eq!(app.pipeline().resends().len(), 2);
    assert_eq!(app.pipeline().recovers().len(), 0);
}

#[tokio::test]
async fn a_resend_whose_job_cannot_be_queued_is_503_and_gives_the_mark_back() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
    app.pipeline().fail_with(StoreError::Unavailable {
        operation: "queue resend",
        kind: "ThrottlingException".into(),
    });

    let answer = send(
        &app,
        resend(&id, &delivery.id.to_string()).header("idempotency-key", "resend-1"),
    )
    .await;

    assert_error(&answer, 503, "SERVICE_UNAVAILABLE");
    assert!(answer.header("retry-after").is_some());
    assert!(!answer.raw.contains("Throttling"));
    assert_eq!(app.delivery_log().delivery(delivery.id).unwrap(), delivery);
    // Nothing happened: the same request, retried once the queue is back, goes through.
    app.pipeline().recover();
    let retried = send(
        &app,
        resend(&id, &delivery.id.to_string()).header("idempotency-key", "resend-1"),
    )
    .await;
    assert_success(&retried, 202);
    assert_eq!(retried.header("idempotent-replayed"), None);
    assert_eq!(app.pipeline().resends().len(), 1);
}

#[tokio::test]
async fn a_delivery_whose_event_expired_cannot_be_resent() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
    app.delivery_log().expire_event(&delivery.event_id);
    let answer = send(&app, resend(&id, &delivery.id.to_string())).await;
    assert_error(&answer, 409, "EVENT_EXPIRED");
    assert_eq!(app.delivery_log().delivery(delivery.id).unwrap(), delivery);
    assert_eq!(app.pipeline().jobs().len(), 0);
}

#[tokio::test]
async fn a_resend_replays_under_its_idempotency_key_scoped_by_the_delivery_id() {
    let app = app();
    let id = create(&app).await;
    let first = seed(&app, &id, 1, DeliveryStatus::Failed);
    let second = seed(&app, &id, 2, DeliveryStatus::Failed);
    let with_key = |d: &Delivery| resend(&id, &d.id.to_string()).header("idempotency-key", "k-1");

    let answer = send(&app, with_key(&first)).await;
    let replay = send(&app, with_key(&first)).await;
    // The same key on another delivery is another scope: a resend of its own.
    let other = send(&app, with_key(&second)).await;

    assert_success(&answer, 202);
    assert_success(&replay, 202);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json["data"], answer.json["data"]);
    assert_success(&other, 202);
    assert_eq!(other.header("idempotent-replayed"), None);
    assert_eq!(other.json["data"]["id"], second.id.to_string());
    let jobs: Vec<Uuid> = app
        .pipeline()
        .resends()
        .iter()
        .map(|j| j.delivery.id)
        .collect();
    assert_eq!(jobs, [first.id, second.id]);
    // The delivery id's spelling does not make another scope.
    let upper = resend(&id, &first.id.to_string().to_uppercase()).header("idempotency-key", "k-1");
    assert_eq!(
        send(&app, upper).await.header("idempotent-replayed"),
        Some("true")
    );
    // A body on the same key is another request.
    let with_body = with_key(&first)
        .header("content-type", "application/json")
        .body(Body::Text("{}".into()));
    assert_error(&send(&app, with_body).await, 409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.pipeline().resends().len(), 2);
}

#[tokio::test]
async fn a_resend_takes_no_body() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
    let answer = send(
        &app,
        resend(&id, &delivery.id.to_string())
            .header("content-type", "application/json")
            .body(Body::Text(r#"{"now": true}"#.into())),
    )
    .await;
    assert_error(&answer, 400, "VALIDATION_ERROR");
    let empty_object = resend(&id, &delivery.id.to_string())
        .header("content-type", "application/json")
        .body(Body::Text("{}".into()));
    assert_success(&send(&app, empty_object).await, 202);
}

// --- POST /webhooks/{id}/recover ---------------------------------------------------------------

#[tokio::test]
async fn a_recover_is_202_with_its_window_and_queued_null_and_one_job() {
    let app = app();
    let id = create(&app).await;
    let since = base_time();
    let until = since + Duration::hours(2);

    let answer = send(
        &app,
        recover(
            &id,
            &json!({"since": rfc3339(since), "until": rfc3339(until)}),
        ),
    )
    .await;

    assert_success(&answer, 202);
    assert_eq!(
        answer.json["data"],
        json!({"since": rfc3339(since), "until": rfc3339(until), "queued": null})
    );
    assert_eq!(
        app.pipeline().recovers(),
        [RecoverJob {
            webhook_id: uuid(&id),
            since,
            until
        }]
    );
}

#[tokio::test]
async fn a_recover_without_until_or_with_one_in_the_future_ends_now() {
    let app = app();
    let id = create(&app).await;
    let since = base_time();
    for body in [
        json!({"since": rfc3339(since)}),
        json!({"since": rfc3339(since), "until": null}),
        json!({"since": rfc3339(since), "until": "2999-01-01T00:00:00Z"}),
    ] {
        let before = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let answer = send(&app, recover(&id, &body)).await;
        let after = OffsetDateTime::now_utc();
        assert_success(&answer, 202);
        let job = app.pipeline().recovers().pop().unwrap();
        assert!(job.until >= before && job.until <= after, "{body}");
        assert_eq!(answer.json["data"]["until"], rfc3339(job.until));
    }
}

#[tokio::test]
async fn a_recover_body_is_strict_with_every_field_error_at_once() {
    let app = app();
    let id = create(&app).await;
    let too_old = rfc3339(OffsetDateTime::now_utc() - Duration::days(31));
    let cases = [
        (json!({}), vec!["since"]),
        (json!({"since": too_old}), vec!["since"]),
        (json!({"since": "2026-12-01"}), vec!["since"]),
        (json!({"since": 1_700_000_000}), vec!["since"]),
        (
            json!({"since": rfc3339(base_time()), "until": rfc3339(base_time())}),
            vec!["until"],
        ),
        (
            json!({"since": rfc3339(base_time() + Duration::hours(1)), "until": rfc3339(base_time())}),
            vec!["until"],
        ),
        (
            json!({"since": "x", "until": "y", "webhookId": id, "limit": 5}),
            vec!["since", "until", "limit", "webhookId"],
        ),
    ];
    for (body, fields) in cases {
        let answer = send(&app, recover(&id, &body)).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
        let mut got = field_names(&answer);
        let mut fields: Vec<String> = fields.into_iter().map(String::from).collect();
        got.sort();
        fields.sort();
        assert_eq!(got, fields, "{body}");
    }
    for body in ["", "[]", "{\"since\": ", r#"{"since": "a", "since": "b"}"#] {
        let answer = send(&app, post(body).path(&format!("/webhooks/{id}/recover"))).await;
        assert_error(&answer, 400, "VALIDATION_ERROR");
    }
    let text = post(r#"{"since": "2026-12-01T00:00:00Z"}"#)
        .path(&format!("/webhooks/{id}/recover"))
        .header("content-type", "text/plain");
    assert_error(&send(&app, text).await, 415, "UNSUPPORTED_MEDIA_TYPE");
    let big = post(&format!(r#"{{"since": "{}"}}"#, "x".repeat(600 * 1024)))
        .path(&format!("/webhooks/{id}/recover"));
    assert_error(&send(&app, big).await, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(app.pipeline().jobs().len(), 0);
}

#[tokio::test]
async fn a_recover_replays_under_its_idempotency_key() {
    let app = app();
    let id = create(&app).await;
    let body = json!({"since": rfc3339(base_time())});
    let with_key = || recover(&id, &body).header("idempotency-key", "recover-1");

    let answer = send(&app, with_key()).await;
    let replay = send(&app, with_key()).await;

    assert_success(&answer, 202);
    assert_eq!(replay.status, 202);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json["data"], answer.json["data"]);
    assert_eq!(app.pipeline().recovers().len(), 1);
    let other_body = recover(
        &id,
        &json!({"since": rfc3339(base_time() + Duration::minutes(1))}),
    )
    .header("idempotency-key", "recover-1");
    assert_error(&send(&app, other_body).await, 409, "IDEMPOTENCY_KEY_REUSED");
    // A failed queue leaves nothing behind, the key included.
    app.pipeline().fail_with(StoreError::Unavailable {
        operation: "queue recover",
        kind: "timeout".into(),
    });
    let failed = send(
        &app,
        recover(&id, &body).header("idempotency-key", "recover-2"),
    )
    .await;
    assert_error(&failed, 503, "SERVICE_UNAVAILABLE");
    app.pipeline().recover();
    let retried = send(
        &app,
        recover(&id, &body).header("idempotency-key", "recover-2"),
    )
    .await;
    assert_success(&retried, 202);
    assert_eq!(retried.header("idempotent-replayed"), None);
    assert_eq!(app.pipeline().recovers().len(), 2);
}

// --- Routes, scopes, rate limits ---------------------------------------------------------------

#[tokio::test]
async fn other_methods_on_the_delivery_paths_are_405_with_their_allow() {
    let app = app();
    let id = create(&app).await;
    let did = Uuid::new_v4();
    for (path, allow, methods) in [
        (
            format!("/webhooks/{id}/deliveries"),
            "GET",
            vec![Method::POST, Method::PUT, Method::DELETE, Method::PATCH],
        ),
        (
            format!("/webhooks/{id}/deliveries/{did}"),
            "GET",
            vec![Method::POST, Method::DELETE],
        ),
        (
            format!("/webhooks/{id}/deliveries/{did}/resend"),
            "POST",
            vec![Method::GET, Method::PUT],
        ),
        (
            format!("/webhooks/{id}/recover/"),
            "POST",
            vec![Method::GET, Method::DELETE],
        ),
    ] {
        for method in methods {
            let answer = send(&app, request(method.clone(), &path)).await;
            assert_error(&answer, 405, "METHOD_NOT_ALLOWED");
            assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
        }
    }
    for path in [
        format!("/webhooks/{id}/deliveries/{did}/resend/now"),
        format!("/webhooks/{id}/deliveries//resend"),
        format!("/webhooks/{id}/recovery"),
    ] {
        assert_error(&send(&app, get(&path)).await, 404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn reads_need_read_webhooks_and_resend_and_recover_need_write_webhooks() {
    let app = app();
    let id = create(&app).await;
    let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
    let did = delivery.id.to_string();
    for request in [deliveries(&id), one(&id, &did)] {
        let answer = send(&app, request.token(WRITE_ONLY_TOKEN)).await;
        assert_error(&answer, 403, "INSUFFICIENT_PERMISSIONS");
        assert_eq!(
            answer.json["error"]["message"],
            "Required scope read:webhooks not found"
        );
    }
    for request in [
        resend(&id, &did),
        recover(&id, &json!({"since": rfc3339(base_time())})),
    ] {
        let answer = send(&app, request.token(READ_ONLY_TOKEN)).await;
        assert_error(&answer, 403, "INSUFFICIENT_PERMISSIONS");
        assert_eq!(
            answer.json["error"]["message"],
            "Required scope write:webhooks not found"
        );
    }
    for request in [deliveries(&id), one(&id, &did)] {
        let answer = send(&app, request.without_header("authorization")).await;
        assert_error(&answer, 401, "INVALID_API_KEY");
    }
    assert_eq!(app.pipeline().jobs().len(), 0);
}

#[tokio::test]
async fn the_delivery_routes_count_against_the_rate_limit_and_carry_its_headers() {
    let second = OffsetDateTime::now_utc().second();
    if second >= 57 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(61 - second))).await;
    }
    let app = app();
    // The create is the key's first request of the minute.
    let id = create_with(
        &app,
        MINUTE_TOKEN,
        "https://api.example.com/hooks",
        &["interview.completed"],
    )
    .await;
    let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
    let did = delivery.id.to_string();
    for request in [deliveries(&id), one(&id, &did)] {
        let answer = send(&app, request.token(MINUTE_TOKEN)).await;
        assert!(answer.status < 300, "{}", answer.raw);
        assert_eq!(answer.header("x-ratelimit-limit-minute"), Some("3"));
    }
    let answer = send(&app, resend(&id, &did).token(MINUTE_TOKEN)).await;
    assert_error(&answer, 429, "RATE_LIMIT_EXCEEDED");
    assert!(answer.header("retry-after").is_some());
    // Refused before anything happened.
    assert_eq!(app.pipeline().resends().len(), 0);
    assert_eq!(app.delivery_log().delivery(delivery.id).unwrap(), delivery);
}

/// An API Gateway event of `version` ("1.0": REST, "2.0": HTTP API) for `method path`.
fn gateway_event(
    version: &str,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&str>,
) -> String {
    let headers = json!({
        "authorization": format!("Bearer {TOKEN}"),
        "content-type": "application/json",
        "host": "api.example.com",
    });
    let event = if version == "1.0" {
        let mut parameters = serde_json::Map::new();
        let mut multi = serde_json::Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap();
            parameters.insert(name.into(), value.into());
            multi.insert(name.into(), json!([value]));
        }
        json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "queryStringParameters": if parameters.is_empty() { Value::Null } else { Value::Object(parameters) },
            "multiValueQueryStringParameters": if multi.is_empty() { Value::Null } else { Value::Object(multi) },
            "requestContext": {
                "resourcePath": "/{proxy+}",
                "httpMethod": method,
                "path": format!("/prod{path}"),
                "stage": "prod",
                "requestId": "rest-request",
                "accountId": "123456789012",
                "apiId": "abc",
                "identity": {"sourceIp": "203.0.113.7"}
            },
            "body": body,
            "isBase64Encoded": false
        })
    } else {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": format!("/prod{path}"),
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc",
                "domainName": "api.example.com",
                "http": {"method": method, "path": format!("/prod{path}"), "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
                "requestId": "http-request",
                "routeKey": "$default",
                "stage": "prod",
                "time": "04/Dec/2026:03:00:00 +0000",
                "timeEpoch": 1796353200000u64
            },
            "body": body,
            "isBase64Encoded": false
        })
    };
    event.to_string()
}

#[tokio::test]
async fn the_routes_answer_rest_v1_and_http_api_v2_events_alike() {
    for version in ["1.0", "2.0"] {
        let app = app();
        let id = create(&app).await;
        for n in 0..3 {
            seed(&app, &id, n, DeliveryStatus::Failed);
        }
        let delivery = seed(&app, &id, 3, DeliveryStatus::Failed);
        let did = delivery.id.to_string();
        let since = rfc3339(base_time());
        let cases = [
            (
                "GET",
                format!("/webhooks/{id}/deliveries"),
                "limit=2&status=failed".to_owned(),
                None,
                200,
            ),
            (
                "GET",
                format!("/webhooks/{id}/deliveries/{did}/"),
                String::new(),
                None,
                200,
            ),
            (
                "POST",
                format!("/webhooks/{id}/deliveries/{did}/resend"),
                String::new(),
                None,
                202,
            ),
            (
                "POST",
                format!("/webhooks/{id}/recover"),
                String::new(),
                Some(json!({"since": since}).to_string()),
                202,
            ),
            (
                "GET",
                format!("/webhooks/{id}/deliveries"),
                "limit=0".to_owned(),
                None,
                400,
            ),
            (
                "DELETE",
                format!("/webhooks/{id}/recover"),
                String::new(),
                None,
                405,
            ),
        ];
        for (method, path, query, body, status) in cases {
            let event = gateway_event(version, method, &path, &query, body.as_deref());
            let request = lambda_http::request::from_str(&event).unwrap();
            let answer = parse(handle(&app, request).await);
            assert_eq!(
                answer.status, status,
                "{version} {method} {path}: {}",
                answer.raw
            );
            if status == 200 && method == "GET" && query.contains("limit=2") {
                assert_eq!(ids(&answer).len(), 2);
                assert!(next_cursor(&answer).is_some());
            }
        }
        assert_eq!(app.pipeline().jobs().len(), 2, "{version}");
    }
}

// --- The test ping is a delivery ---------------------------------------------------------------

#[tokio::test]
async fn the_test_ping_is_listed_as_a_delivery_with_its_attempt_under_its_derived_id() {
    let app = app();
    let mut receiver = Receiver::start(Reply::status(204)).await;
    let url = format!("http://127.0.0.1:{}/hooks", receiver.address.port());
    let id = create_with(&app, TOKEN, &url, &["ping"]).await;

    let tested = send(&app, request(Method::POST, &format!("/webhooks/{id}/test"))).await;

    assert_eq!(tested.status, 200, "{}", tested.raw);
    let delivery_id = tested.json["data"]["deliveryId"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = receiver.next().await;
    assert_eq!(got.headers["webhook-id"], delivery_id.as_str());
    let listed = send(&app, deliveries(&id).query("event", "ping")).await;
    assert_eq!(ids(&listed), [delivery_id.as_str()]);
    let summary = &listed.json["data"]["data"][0];
    assert_eq!(summary["status"], "delivered");
    assert_eq!(summary["attemptCount"], 1);
    assert_eq!(summary["lastHttpStatus"], 204);
    let stored = app.delivery_log().delivery(uuid(&delivery_id)).unwrap();
    assert_eq!(
        stored.id,
        instaview_webhooks::store::delivery_log::delivery_id(&stored.event_id, uuid(&id))
    );
    let one = send(&app, one(&id, &delivery_id)).await;
    assert_success(&one, 200);
    let payload = &one.json["data"]["payload"];
    let received: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        *payload, received,
        "the payload is the body the receiver got"
    );
    let attempt = &one.json["data"]["attempts"][0];
    assert_eq!(attempt["outcome"], "delivered");
    assert_eq!(attempt["httpStatus"], 204);
    assert_eq!(attempt["reason"], Value::Null);
}

#[tokio::test]
async fn a_failed_ping_is_recorded_failed_with_its_reason() {
    let app = app();
    let receiver = Receiver::start(Reply::status(500)).await;
    let url = format!("http://127.0.0.1:{}/hooks", receiver.address.port());
    let id = create_with(&app, TOKEN, &url, &["ping"]).await;
    let tested = send(&app, request(Method::POST, &format!("/webhooks/{id}/test"))).await;
    assert_eq!(tested.json["data"]["success"], false);
    let delivery_id = tested.json["data"]["deliveryId"].as_str().unwrap();
    let stored = app.delivery_log().delivery(uuid(delivery_id)).unwrap();
    assert_eq!(stored.status, DeliveryStatus::Failed);
    assert_eq!(stored.attempts[0].outcome, "failed");
    assert_eq!(
        stored.attempts[0].reason.as_deref(),
        Some("the endpoint answered 500")
    );
}

#[tokio::test]
async fn a_ping_that_cannot_be_recorded_still_answers_its_result() {
    let app = app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let url = format!("http://127.0.0.1:{}/hooks", receiver.address.port());
    let id = create_with(&app, TOKEN, &url, &["ping"]).await;
    app.delivery_log()
        .fail_record_with(StoreError::Unavailable {
            operation: "record ping",
            kind: "ProvisionedThroughputExceededException".into(),
        });

    let tested = send(&app, request(Method::POST, &format!("/webhooks/{id}/test"))).await;

    assert_eq!(tested.status, 200, "{}", tested.raw);
    assert_eq!(tested.json["data"]["success"], true);
    let delivery_id = tested.json["data"]["deliveryId"].as_str().unwrap();
    assert_eq!(receiver.next().await.headers["webhook-id"], delivery_id);
    assert!(app.delivery_log().delivery(uuid(delivery_id)).is_none());
}

#[tokio::test]
async fn a_ping_not_sent_records_nothing() {
    let app = app();
    let id = create(&app).await;
    let tested = send(&app, request(Method::POST, &format!("/webhooks/{id}/test"))).await;
    assert_eq!(tested.status, 200);
    assert_eq!(tested.json["data"]["deliveryId"], Value::Null);
    assert!(app.delivery_log().deliveries_of(uuid(&id)).is_empty());
}

// --- Logs ----------------------------------------------------------------------------------------

const HEADER_VALUE: &str = "Bearer hv-5d4c3b2a19f8e7d6c5b4a3f2e1d0c9b8";

#[test]
fn the_delivery_routes_log_and_answer_no_token_signing_secret_or_header_value() {
    let captured = CapturedLogs::default();
    let subscriber = instaview_webhooks::telemetry::subscriber(
        instaview_webhooks::telemetry::filter("trace"),
        captured.clone(),
    );
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (answers, signing_secret) = runtime.block_on(async {
        let app = app();
        let mut receiver = Receiver::start(Reply::status(500)).await;
        let body = json!({
            "url": format!("http://127.0.0.1:{}/hooks", receiver.address.port()),
            "events": ["ping", "interview.completed"],
            "companyId": COMPANY,
            "headers": [{"name": "X-Customer-Auth", "value": HEADER_VALUE}],
        });
        let created = send(&app, post(&body.to_string())).await;
        let id = created.json["data"]["id"].as_str().unwrap().to_owned();
        let signing_secret = created.json["data"]["signingSecret"]
            .as_str()
            .unwrap()
            .to_owned();
        let delivery = seed(&app, &id, 1, DeliveryStatus::Failed);
        let did = delivery.id.to_string();
        app.delivery_log()
            .fail_record_with(StoreError::Unavailable {
                operation: "record ping",
                kind: "ThrottlingException".into(),
            });
        app.pipeline().fail_with(StoreError::Unavailable {
            operation: "queue resend",
            kind: "ThrottlingException".into(),
        });
        let mut answers = Vec::new();
        for request in [
            request(Method::POST, &format!("/webhooks/{id}/test")),
            resend(&id, &did),
            recover(&id, &json!({"since": rfc3339(base_time())})),
            deliveries(&id).query("cursor", &signing_secret),
            one(&id, &did),
            deliveries(&id),
        ] {
            answers.push(send(&app, request).await.raw);
        }
        receiver.next().await;
        (answers, signing_secret)
    });
    let logs = captured.text();
    assert!(
        logs.contains("could not be recorded in the delivery log"),
        "{logs}"
    );
    for secret in [
        TOKEN,
        signing_secret.as_str(),
        HEADER_VALUE,
        "hv-5d4c3b2a19f8",
    ] {
        assert!(!logs.contains(secret), "a log line holds {secret}");
        for answer in &answers {
            assert!(
                !answer.contains(secret),
                "an answer holds {secret}: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn with_delivery_log_puts_another_log_and_queue_under_the_same_app() {
    use instaview_webhooks::store::memory_log::{MemoryDeliveryLog, MemoryPipelineQueue};
    let app = app();
    let id = create(&app).await;
    let log = MemoryDeliveryLog::default();
    let event = event(1, Some(company()));
    let delivery = delivery_of(&event, uuid(&id), DeliveryStatus::Failed);
    log.insert_event(event);
    log.insert_delivery(delivery.clone());
    let app = app.with_delivery_log(log, MemoryPipelineQueue::default());

    let listed = parse(handle(&app, deliveries(&id).build()).await);
    let resent = parse(handle(&app, resend(&id, &delivery.id.to_string()).build()).await);

    assert_success(&listed, 200);
    assert_eq!(ids(&listed), [delivery.id.to_string()]);
    assert_success(&resent, 202);
    assert_eq!(app.pipeline().resends().len(), 1);
}
