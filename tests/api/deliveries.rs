//! `POST /webhooks/{id}/test` and `/rotate-secret` (DELIVERY.md), through the handler with
//! in-memory stores and a real receiver on 127.0.0.1: what the receiver gets is checked on the
//! receiving side, with the `standardwebhooks` crate (a library we did not write).

use crate::support;

use std::time::Duration;

use instaview_webhooks::config::Settings;
use instaview_webhooks::delivery::{Sender, SigningKey};
use instaview_webhooks::domain::{SigningSecret, UrlPolicy};
use instaview_webhooks::http::handle;
use lambda_http::http::Method;
use lambda_http::{Context, RequestExt};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use support::receiver::{FixedResolver, Received, Receiver, Reply};
use support::*;
use uuid::Uuid;

async fn send(app: &MemoryApp, request: RequestBuilder) -> Answer {
    parse(handle(app, request.build()).await)
}

/// Creates a webhook for `url` with `events` and one custom header; returns its id and secret.
async fn create_for(app: &MemoryApp, url: &str, events: &[&str]) -> (String, String) {
    let body = json!({
        "url": url,
        "events": events,
        "headers": [{"name": "X-Customer-Auth", "value": "Bearer receiver-token-7"}],
    });
    let answer = send(app, post(&body.to_string())).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    let data = &answer.json["data"];
    (
        data["id"].as_str().unwrap().to_owned(),
        data["signingSecret"].as_str().unwrap().to_owned(),
    )
}

fn action(id: &str, name: &str, body: &str) -> RequestBuilder {
    post(body).path(&format!("/webhooks/{id}/{name}"))
}

fn test_ping(id: &str) -> RequestBuilder {
    action(id, "test", "")
}

fn local_url(receiver: &Receiver) -> String {
    format!("http://127.0.0.1:{}/hooks", receiver.address.port())
}

/// True when the `standardwebhooks` crate verifies `received` with `secret`.
fn verifies(secret: &str, received: &Received) -> bool {
    let key = SigningKey::from_secret(&SigningSecret::from_stored(secret.to_owned())).unwrap();
    let verifier = standardwebhooks::Webhook::new(key.to_whsec().expose_secret()).unwrap();
    verifier.verify(&received.body, &received.headers).is_ok()
}

fn signatures(received: &Received) -> Vec<String> {
    received.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

// --- POST /webhooks/{id}/test ----------------------------------------------------------------

#[tokio::test]
async fn a_test_ping_reaches_the_receiver_signed_with_its_custom_headers() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(204)).await;
    let (id, secret) = create_for(&app, &local_url(&receiver), &["ping"]).await;

    let answer = send(&app, test_ping(&id)).await;

    assert_eq!(answer.status, 200, "{}", answer.raw);
    let data = &answer.json["data"];
    let keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "success",
            "deliveryId",
            "httpStatus",
            "durationMs",
            "message"
        ]
    );
    assert_eq!(data["success"], true);
    assert_eq!(data["httpStatus"], 204);
    assert!(data["durationMs"].is_u64());
    assert_eq!(data["message"], "Webhook test succeeded");
    let delivery_id = data["deliveryId"].as_str().unwrap();
    assert!(Uuid::try_parse(delivery_id).is_ok());

    let got = receiver.next().await;
    assert!(verifies(&secret, &got), "the signature verifies");
    assert!(!verifies(&"0".repeat(64), &got), "another secret does not");
    assert_eq!(got.headers["webhook-id"], delivery_id);
    assert_eq!(got.headers["x-customer-auth"], "Bearer receiver-token-7");
    assert_eq!(got.headers["content-type"], "application/json");
    assert!(got.headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("InstaView-Webhooks/"));
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["event", "timestamp", "deliveryId", "data"]);
    assert_eq!(body["event"], "ping");
    assert_eq!(body["deliveryId"], delivery_id);
    assert_eq!(body["data"], json!({"webhookId": id}));
}

#[tokio::test]
async fn a_receiver_error_is_a_failed_test_with_its_status() {
    let app = memory_app();
    let receiver = Receiver::start(Reply::status(500)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;

    let data = send(&app, test_ping(&id)).await.json["data"].clone();

    assert_eq!(data["success"], false);
    assert_eq!(data["httpStatus"], 500);
    assert!(data["durationMs"].is_u64());
    assert_eq!(
        data["message"],
        "Webhook test failed: the endpoint answered 500"
    );
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_fails_the_test() {
    let app = memory_app();
    let receiver =
        Receiver::start(Reply::status(307).with("location", "http://127.0.0.1:9/")).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;

    let data = send(&app, test_ping(&id)).await.json["data"].clone();

    assert_eq!(data["success"], false);
    assert_eq!(data["httpStatus"], 307);
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_a_timeout_within_the_functions_deadline() {
    let app = memory_app();
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let (id, _) = create_for(&app, &format!("http://127.0.0.1:{port}/"), &["ping"]).await;
    // The function has 2.5 s left: the test keeps 1.5 s to answer, so it waits about 1 s.
    let mut context = Context::default();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    context.deadline = u64::try_from(now_ms + 2_500).unwrap();
    let request = test_ping(&id).build().with_lambda_context(context);

    let started = std::time::Instant::now();
    let answer = parse(handle(&app, request).await);

    assert!(started.elapsed() < Duration::from_secs(5));
    let data = &answer.json["data"];
    assert_eq!(data["success"], false);
    assert_eq!(data["httpStatus"], Value::Null);
    assert_eq!(data["durationMs"], Value::Null);
    assert_eq!(data["message"], "Webhook test failed: connection timed out");
}

/// `cargo lambda watch` (make run) sends every invocation `Lambda-Runtime-Deadline-Ms: 600000`,
/// ten minutes after the epoch. Taken at its word, the ping would have no time at all and answer
/// "connection timed out" while the receiver got it (issue 15.1); the time-budget module takes
/// it for what it is, not a deadline, and gives the ping the function's own timeout.
#[tokio::test]
async fn a_test_ping_under_cargo_lambda_watchs_constant_deadline_succeeds() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let watch_context = || {
        let mut context = Context::default();
        context.deadline = 600_000;
        context
    };
    let keyed = || {
        test_ping(&id)
            .header("idempotency-key", "watch-ping")
            .build()
            .with_lambda_context(watch_context())
    };

    let answer = parse(handle(&app, keyed()).await);

    assert_eq!(answer.status, 200, "{}", answer.raw);
    let data = &answer.json["data"];
    assert_eq!(data["success"], true, "{}", answer.raw);
    assert_eq!(data["httpStatus"], 200);
    assert_eq!(data["message"], "Webhook test succeeded");
    let got = receiver.next().await;
    assert_eq!(
        got.headers["webhook-id"],
        data["deliveryId"].as_str().unwrap()
    );
    // The result stored under the idempotency key is the true one.
    let replayed = parse(handle(&app, keyed()).await);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.json["data"], answer.json["data"]);
}

#[tokio::test]
async fn connection_refused_is_a_failed_test_without_a_status() {
    let app = memory_app();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (id, _) = create_for(&app, &format!("http://127.0.0.1:{closed}/"), &["ping"]).await;

    let data = send(&app, test_ping(&id)).await.json["data"].clone();

    assert_eq!(data["success"], false);
    assert_eq!(data["httpStatus"], Value::Null);
    assert_eq!(data["message"], "Webhook test failed: connection refused");
    assert!(Uuid::try_parse(data["deliveryId"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_at_delivery_is_refused_without_a_request() {
    // Registered as a public name; at delivery it resolves to loopback (DNS rebinding).
    let policy = UrlPolicy {
        allow_localhost: false,
    };
    let receiver = Receiver::start(Reply::status(200)).await;
    let resolver = FixedResolver::with("hooks.example.com", &["127.0.0.1"]);
    let settings = Settings {
        url_policy: policy,
        ..Settings::default()
    };
    let app = memory_app_with(settings).with_sender(Sender::with_parts(
        policy,
        resolver.clone(),
        rustls::RootCertStore::empty(),
    ));
    let url = format!("https://hooks.example.com:{}/in", receiver.address.port());
    let (id, _) = create_for(&app, &url, &["ping"]).await;

    let data = send(&app, test_ping(&id)).await.json["data"].clone();

    assert_eq!(data["success"], false);
    assert_eq!(data["message"], "Webhook test failed: address not allowed");
    assert_eq!(data["httpStatus"], Value::Null);
    assert_eq!(
        receiver
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn a_webhook_not_subscribed_to_ping_sends_nothing_and_says_to_add_it() {
    let app = memory_app();
    let receiver = Receiver::start(Reply::status(200)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["interview.completed"]).await;

    let data = send(&app, test_ping(&id)).await.json["data"].clone();

    assert_eq!(data["success"], false);
    assert_eq!(data["deliveryId"], Value::Null);
    assert_eq!(data["httpStatus"], Value::Null);
    assert!(data["message"].as_str().unwrap().contains("add ping"));
    assert_eq!(
        receiver
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn an_inactive_webhook_sends_nothing() {
    let app = memory_app();
    let receiver = Receiver::start(Reply::status(200)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let patch = post(r#"{"isActive": false}"#)
        .method(Method::PATCH)
        .path(&format!("/webhooks/{id}"));
    assert_eq!(send(&app, patch).await.status, 200);

    let data = send(&app, test_ping(&id)).await.json["data"].clone();

    assert_eq!(data["success"], false);
    assert_eq!(data["deliveryId"], Value::Null);
    assert_eq!(
        data["message"],
        "No delivery was created: the webhook is disabled"
    );
}

#[tokio::test]
async fn a_webhook_whose_circuit_is_open_sends_nothing() {
    let app = memory_app();
    let receiver = Receiver::start(Reply::status(200)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    // The pipeline opens circuits; here the record is given an open circuit directly.
    let uuid = Uuid::try_parse(&id).unwrap();
    let mut stored = app.webhooks().get_record(uuid).unwrap();
    stored.webhook.consecutive_failures = 10;
    stored.webhook.circuit_opened_at = Some(time::OffsetDateTime::now_utc());
    app.webhooks().put_record(stored);

    let data = send(&app, test_ping(&id)).await.json["data"].clone();

    assert_eq!(data["success"], false);
    assert_eq!(data["deliveryId"], Value::Null);
    assert_eq!(
        data["message"],
        "No delivery was created: its circuit breaker is open"
    );
}

#[tokio::test]
async fn a_test_never_changes_the_webhook() {
    let app = memory_app();
    let receiver = Receiver::start(Reply::status(500)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let get = || {
        post("")
            .method(Method::GET)
            .path(&format!("/webhooks/{id}"))
    };
    let before = send(&app, get()).await;

    send(&app, test_ping(&id)).await;

    let after = send(&app, get()).await;
    assert_eq!(after.json["data"]["consecutiveFailures"], 0);
    assert_eq!(after.header("etag"), before.header("etag"));
}

#[tokio::test]
async fn a_test_retried_with_its_idempotency_key_answers_again_without_sending() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let keyed = || test_ping(&id).header("idempotency-key", "ping-1");

    let first = send(&app, keyed()).await;
    let second = send(&app, keyed()).await;

    assert_eq!(second.status, 200);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.json["data"], first.json["data"]);
    receiver.next().await;
    assert_eq!(
        receiver
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn a_test_takes_no_body() {
    let app = memory_app();
    let (id, _) = create_for(&app, "https://api.example.com/hooks", &["ping"]).await;
    let answer = send(&app, action(&id, "test", r#"{"event":"x"}"#)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.code(), "VALIDATION_ERROR");
}

#[tokio::test]
async fn testing_another_keys_webhook_is_not_found() {
    let app = memory_app();
    let (id, _) = create_for(&app, "https://api.example.com/hooks", &["ping"]).await;
    let answer = send(&app, test_ping(&id).token(READ_ONLY_TOKEN)).await;
    assert_eq!(answer.status, 403, "a read-only key lacks write:webhooks");
    let answer = send(&app, test_ping(&Uuid::new_v4().to_string())).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.code(), "RESOURCE_NOT_FOUND");
}

// --- POST /webhooks/{id}/rotate-secret -------------------------------------------------------

#[tokio::test]
async fn rotation_answers_the_view_and_a_new_secret_once() {
    let app = memory_app();
    let (id, old) = create_for(&app, "https://api.example.com/hooks", &["ping"]).await;

    let answer = send(&app, action(&id, "rotate-secret", "")).await;

    assert_eq!(answer.status, 200, "{}", answer.raw);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let data = &answer.json["data"];
    let keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected: Vec<&str> = SEED_FIELDS
        .iter()
        .copied()
        .filter(|f| *f != "signingSecret")
        .collect();
    expected.extend(["signingSecret", "previousSecretExpiresAt"]);
    assert_eq!(keys, expected);
    let new = data["signingSecret"].as_str().unwrap();
    assert_eq!(new.len(), 64);
    assert_ne!(new, old);
    let expires = time::OffsetDateTime::parse(
        data["previousSecretExpiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_a_day = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    assert!((expires - in_a_day).abs() < time::Duration::seconds(5));
}

#[tokio::test]
async fn during_the_grace_period_deliveries_carry_both_signatures_the_new_first() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, old) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let rotated = send(&app, action(&id, "rotate-secret", "")).await;
    let new = rotated.json["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();

    send(&app, test_ping(&id)).await;

    let got = receiver.next().await;
    let both = signatures(&got);
    assert_eq!(both.len(), 2);
    assert!(verifies(&new, &got));
    assert!(verifies(&old, &got));
    // The new secret's signature comes first.
    let mut only_first = got.headers.clone();
    only_first.insert("webhook-signature", both[0].parse().unwrap());
    let first = Received {
        headers: only_first,
        body: got.body.clone(),
        sni: None,
    };
    assert!(verifies(&new, &first));
    assert!(!verifies(&old, &first));
}

#[tokio::test]
async fn a_grace_period_of_zero_signs_with_the_new_secret_alone() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, old) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let rotated = send(
        &app,
        action(&id, "rotate-secret", r#"{"gracePeriodSeconds": 0}"#),
    )
    .await;
    assert_eq!(rotated.json["data"]["previousSecretExpiresAt"], Value::Null);
    let new = rotated.json["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();

    send(&app, test_ping(&id)).await;

    let got = receiver.next().await;
    assert_eq!(signatures(&got).len(), 1);
    assert!(verifies(&new, &got));
    assert!(!verifies(&old, &got));
}

#[tokio::test]
async fn rotating_again_drops_the_oldest_secret() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, first) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let rotate = || action(&id, "rotate-secret", "");
    let second = send(&app, rotate()).await.json["data"]["signingSecret"].clone();
    let third = send(&app, rotate()).await.json["data"]["signingSecret"].clone();

    send(&app, test_ping(&id)).await;

    let got = receiver.next().await;
    assert_eq!(signatures(&got).len(), 2);
    assert!(verifies(third.as_str().unwrap(), &got));
    assert!(verifies(second.as_str().unwrap(), &got));
    assert!(!verifies(&first, &got));
}

#[tokio::test]
async fn rotation_keeps_the_custom_headers_and_stores_no_secret_in_the_record() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, _) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let rotated = send(&app, action(&id, "rotate-secret", "")).await;
    let new = rotated.json["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();

    send(&app, test_ping(&id)).await;

    let got = receiver.next().await;
    assert_eq!(got.headers["x-customer-auth"], "Bearer receiver-token-7");
    let stored = app
        .webhooks()
        .get_record(Uuid::try_parse(&id).unwrap())
        .unwrap();
    assert!(!format!("{stored:?}").contains(&new));
    let document = app.secrets().document_of(&stored.secret).unwrap();
    assert!(document.contains(&new));
}

#[tokio::test]
async fn a_rotation_retried_with_its_idempotency_key_answers_the_same_new_secret() {
    let app = memory_app();
    let (id, _) = create_for(&app, "https://api.example.com/hooks", &["ping"]).await;
    let keyed = |body: &str| action(&id, "rotate-secret", body).header("idempotency-key", "rot-1");

    let first = send(&app, keyed("")).await;
    let again = send(&app, keyed("")).await;
    let other_body = send(&app, keyed(r#"{"gracePeriodSeconds": 60}"#)).await;

    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.json["data"]["signingSecret"],
        first.json["data"]["signingSecret"]
    );
    assert_eq!(
        again.json["data"]["previousSecretExpiresAt"],
        first.json["data"]["previousSecretExpiresAt"]
    );
    assert_eq!(other_body.status, 409);
    assert_eq!(other_body.code(), "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test]
async fn rotation_with_a_stale_if_match_is_412_and_changes_nothing() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, old) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let uuid = Uuid::try_parse(&id).unwrap();
    let before = app.webhooks().get_record(uuid).unwrap();

    let stale = send(
        &app,
        action(&id, "rotate-secret", "").header("if-match", "\"999\""),
    )
    .await;

    assert_eq!(stale.status, 412, "{}", stale.raw);
    assert_eq!(stale.code(), "PRECONDITION_FAILED");
    assert_eq!(app.webhooks().get_record(uuid).unwrap(), before);
    send(&app, test_ping(&id)).await;
    let got = receiver.next().await;
    assert_eq!(signatures(&got).len(), 1, "no second secret signs");
    assert!(verifies(&old, &got));
}

#[tokio::test]
async fn rotation_with_the_current_if_match_rotates_and_answers_the_next_etag() {
    let app = memory_app();
    let (id, _) = create_for(&app, "https://api.example.com/hooks", &["ping"]).await;
    let get = post("")
        .method(Method::GET)
        .path(&format!("/webhooks/{id}"));
    let etag = send(&app, get).await.header("etag").unwrap().to_owned();

    let first = send(
        &app,
        action(&id, "rotate-secret", "").header("if-match", &etag),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.raw);
    let next = first.header("etag").unwrap().to_owned();
    assert_ne!(next, etag);
    let again = send(
        &app,
        action(&id, "rotate-secret", "").header("if-match", &etag),
    )
    .await;
    assert_eq!(
        again.status, 412,
        "the tag the first rotation used is stale now"
    );
    let second = send(
        &app,
        action(&id, "rotate-secret", "").header("if-match", &next),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.raw);
}

/// Five clients rotate at once, each with the tag it read: one rotation lands, the others are
/// told that it did (412), so nobody holds a secret that never signs (issue 15.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_concurrent_rotations_with_one_if_match_give_one_200_and_four_412s() {
    let app = std::sync::Arc::new(memory_app());
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let (id, old) = create_for(&app, &local_url(&receiver), &["ping"]).await;
    let get = post("")
        .method(Method::GET)
        .path(&format!("/webhooks/{id}"));
    let etag = send(&app, get).await.header("etag").unwrap().to_owned();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(5));

    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let request = action(&id, "rotate-secret", r#"{"gracePeriodSeconds": 0}"#)
                .header("if-match", &etag)
                .build();
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                parse(handle(&*app, request).await)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }

    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        4,
        "{statuses:?}"
    );
    for refused in answers.iter().filter(|a| a.status == 412) {
        assert_eq!(refused.code(), "PRECONDITION_FAILED");
        assert!(!refused.raw.contains("signingSecret"));
    }
    let winner = answers.iter().find(|a| a.status == 200).unwrap();
    let secret = winner.json["data"]["signingSecret"].as_str().unwrap();
    send(&app, test_ping(&id)).await;
    let got = receiver.next().await;
    assert!(verifies(secret, &got), "the surviving secret signs");
    assert!(!verifies(&old, &got), "grace 0: the old one no longer does");
}

#[tokio::test]
async fn rotation_refuses_bad_bodies() {
    let app = memory_app();
    let (id, _) = create_for(&app, "https://api.example.com/hooks", &["ping"]).await;
    for body in [
        r#"{"gracePeriodSeconds": 604801}"#,
        r#"{"gracePeriodSeconds": -1}"#,
        r#"{"gracePeriodSeconds": "60"}"#,
        r#"{"other": 1}"#,
        "[]",
        "{",
    ] {
        let answer = send(&app, action(&id, "rotate-secret", body)).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.code(), "VALIDATION_ERROR");
    }
    let text = action(&id, "rotate-secret", r#"{"gracePeriodSeconds": 1}"#)
        .header("content-type", "text/plain");
    assert_eq!(send(&app, text).await.status, 415);
}

#[tokio::test]
async fn rotation_needs_the_write_scope_and_an_own_webhook() {
    let app = memory_app();
    let (id, _) = create_for(&app, "https://api.example.com/hooks", &["ping"]).await;
    let answer = send(
        &app,
        action(&id, "rotate-secret", "").token(READ_ONLY_TOKEN),
    )
    .await;
    assert_eq!(answer.status, 403);
    let answer = send(&app, action("not-an-id", "rotate-secret", "")).await;
    assert_eq!(answer.status, 404);
    let answer = send(&app, action(&id, "rotate-secret", "").method(Method::GET)).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("POST"));
}
