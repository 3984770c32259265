//! Round trips to AWS per request, counted against the emulator: an interceptor on the
//! function's own SDK clients records every HTTP request they send (each attempt, retries
//! included), by operation, and when each answer came back.
//!
//! Every authenticated request makes one rate count (`UpdateItem` on the key's hour item).
//! - cold create (first request of a container): pepper, key, rate count, secret,
//!   transaction = 5;
//! - warm create: the rate count, then CreateSecret and TransactWriteItems = 3 (pepper kept,
//!   key cached);
//! - `API_KEY_CACHE_TTL_SECONDS=0`: the key is read on every request = 4;
//! - after the TTL: the key is read again, once;
//! - warm `GET /webhooks/{id}`: GetItem beside the rate count = 2 calls, one round trip;
//! - warm `GET /webhooks`: one Query beside the rate count = 2 calls, one round trip;
//! - `PATCH` without headers: the rate count, then one conditional UpdateItem;
//! - `PATCH` with headers: the rate count, GetItem, GetSecretValue, PutSecretValue, UpdateItem;
//! - `DELETE`: the rate count, one TransactWriteItems, one DeleteSecret;
//! - `reset-circuit`: the rate count, then one conditional UpdateItem.
//! - `test` (ping): the rate count, GetItem, GetSecretValue, then the delivery to the receiver
//!   (a receiver of this file on 127.0.0.1 logs the delivery's arrival among the calls), then
//!   its event and delivery in the delivery log (one BatchWriteItem: the ping is listed);
//! - `rotate-secret`: the rate count, GetItem, GetSecretValue, PutSecretValue, UpdateItem (one
//!   secret write, one record write);
//! - with an `Idempotency-Key`: a ping adds the claim (PutItem) and its completion (UpdateItem
//!   after the delivery); a rotation adds the claim, writes the record and the claim's completion
//!   in one TransactWriteItems, and reads the record back (GetItem: a transaction answers no
//!   attributes). Their replays send nothing and write no secret.

use crate::support::{self, requests};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use instaview_webhooks::http::handle;
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use lambda_http::http::Method;
use serde_json::json;
use support::moto::{AwsApp, AwsEnv};
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Every request the clients put on the wire: (operation, attempt); and, in order, each
/// request's going out (`true`) and each answer's coming back (`false`).
#[derive(Clone, Debug, Default)]
struct Calls {
    sent: Arc<Mutex<Vec<(String, u32)>>>,
    wire: Arc<Mutex<Vec<bool>>>,
    /// When the last answer came back.
    /// When the answer of the last `GetSecretValue` came back.
    secret_answer: Arc<Mutex<Option<Instant>>>,
}

impl Calls {
    /// The calls since the last `take`, as operation names; a retry appears twice.
    fn take(&self) -> Vec<String> {
        self.wire.lock().unwrap().clear();
        std::mem::take(&mut *self.sent.lock().unwrap())
            .into_iter()
            .map(|(operation, _)| operation)
            .collect()
    }

    /// The calls since the last `take`, sorted (for calls made side by side), and how many
    /// were on the wire at once at most.
    fn take_side_by_side(&self) -> (Vec<String>, usize) {
        let (mut in_flight, mut most) = (0usize, 0usize);
        for &out in self.wire.lock().unwrap().iter() {
            if out {
                in_flight += 1;
                most = most.max(in_flight);
            } else {
                in_flight = in_flight.saturating_sub(1);
            }
        }
        let mut calls = self.take();
        calls.sort();
        (calls, most)
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "RoundTripCounter"
    }

    /// Runs once per attempt, just before the request goes out. Both services speak the AWS JSON
    /// protocol, which names the operation in `X-Amz-Target` (`DynamoDB_20120810.GetItem`,
    /// `secretsmanager.CreateSecret`); `amz-sdk-request` numbers the attempt.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request().headers();
        let operation = headers
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        let attempt = headers
            .get("amz-sdk-request")
            .and_then(|v| v.strip_prefix("attempt="))
            .and_then(|v| v.split(';').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        self.sent.lock().unwrap().push((operation, attempt));
        self.wire.lock().unwrap().push(true);
        Ok(())
    }

    /// Runs once per attempt, when its answer has come back.
    fn read_before_deserialization(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.wire.lock().unwrap().push(false);
        let last_sent = self.sent.lock().unwrap().last().map(|(op, _)| op.clone());
        if last_sent.as_deref() == Some("GetSecretValue") {
            *self.secret_answer.lock().unwrap() = Some(Instant::now());
        }
        Ok(())
    }
}

/// The app as `main` wires it (the function's timeouts and retries), with both clients counted.
fn counted_app(env: &AwsEnv, settings: Settings) -> (AwsApp, Calls) {
    let calls = Calls::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&env.sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let secretsmanager = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&env.sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let app = App::new(
        DynamoApiKeys::new(dynamodb.clone(), &env.resources.api_keys_table),
        DynamoWebhooks::new(dynamodb.clone(), &env.resources.webhooks_table),
        SecretsManagerStore::new(
            secretsmanager,
            &env.secret_prefix,
            None,
            &env.resources.pepper_secret_id,
        ),
        settings,
    )
    .with_delivery_log(
        instaview_webhooks::store::dynamodb::DynamoDeliveryLog::new(
            dynamodb,
            &env.resources.delivery_log_table,
        ),
        instaview_webhooks::store::memory_log::MemoryPipelineQueue::default(),
    );
    (app, calls)
}

fn with_cache_ttl(seconds: u64) -> Settings {
    Settings {
        api_key_cache_ttl: Duration::from_secs(seconds),
        ..Settings::default()
    }
}

/// Sends `request`, expects `status`, and returns the calls it made.
async fn calls_of(
    app: &AwsApp,
    calls: &Calls,
    request: RequestBuilder,
    status: u16,
) -> Vec<String> {
    let answer = parse(handle(app, request.build()).await);
    assert_eq!(answer.status, status, "{}", answer.raw);
    calls.take()
}

/// The rate count: one UpdateItem on the key's item for the hour.
const RATE: &str = "UpdateItem";
const COLD: [&str; 5] = [
    "GetSecretValue",
    "GetItem",
    RATE,
    "CreateSecret",
    "TransactWriteItems",
];
const WARM: [&str; 3] = [RATE, "CreateSecret", "TransactWriteItems"];
const KEY_NOT_CACHED: [&str; 4] = ["GetItem", RATE, "CreateSecret", "TransactWriteItems"];

#[tokio::test]
async fn a_cold_create_costs_five_calls_and_a_warm_one_two_plus_the_rate_count() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let (app, calls) = counted_app(&env, Settings::default());
    let create = || post(SEED_BODY).token(token.expose());

    assert_eq!(calls_of(&app, &calls, create(), 201).await, COLD, "cold");
    for n in 2..=5 {
        assert_eq!(
            calls_of(&app, &calls, create(), 201).await,
            WARM,
            "create {n}"
        );
    }
}

#[tokio::test]
async fn with_the_key_cache_off_every_create_reads_the_key_but_the_pepper_once() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let (app, calls) = counted_app(&env, with_cache_ttl(0));
    let create = || post(SEED_BODY).token(token.expose());

    assert_eq!(calls_of(&app, &calls, create(), 201).await, COLD, "cold");
    for n in 2..=4 {
        let made = calls_of(&app, &calls, create(), 201).await;
        assert_eq!(made, KEY_NOT_CACHED, "create {n}");
    }
}

#[tokio::test]
async fn the_key_is_read_again_once_its_cache_entry_expires() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let (app, calls) = counted_app(&env, with_cache_ttl(1));
    let create = || post(SEED_BODY).token(token.expose());

    assert_eq!(calls_of(&app, &calls, create(), 201).await, COLD, "cold");
    assert_eq!(calls_of(&app, &calls, create(), 201).await, WARM, "cached");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let made = calls_of(&app, &calls, create(), 201).await;
    assert_eq!(made, KEY_NOT_CACHED, "after the TTL");
    assert_eq!(
        calls_of(&app, &calls, create(), 201).await,
        WARM,
        "cached again"
    );
}

#[tokio::test]
async fn requests_refused_before_the_store_make_no_call_but_the_rate_count() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let (app, calls) = counted_app(&env, Settings::default());

    // No token at all: no call.
    let anonymous = post(SEED_BODY).without_header("authorization");
    assert!(calls_of(&app, &calls, anonymous, 401).await.is_empty());
    // An unknown token: the pepper, then a lookup that finds nothing; the miss is remembered
    // like a found key, so the same token again costs nothing. Nothing is counted.
    let unknown = || post(SEED_BODY).token(UNKNOWN_TOKEN);
    let made = calls_of(&app, &calls, unknown(), 401).await;
    assert_eq!(made, ["GetSecretValue", "GetItem"], "unknown token, cold");
    assert!(calls_of(&app, &calls, unknown(), 401).await.is_empty());
    // A valid key and an invalid body: the key and the rate count (counted after
    // authentication), then only the rate count once the key is cached.
    let invalid = || post("{}").token(token.expose());
    assert_eq!(
        calls_of(&app, &calls, invalid(), 400).await,
        ["GetItem", RATE]
    );
    assert_eq!(calls_of(&app, &calls, invalid(), 400).await, [RATE]);
}

#[tokio::test]
async fn an_idempotent_create_adds_its_claim_and_a_replay_reads_back() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let (app, calls) = counted_app(&env, Settings::default());
    let create = |key: &str| {
        post(SEED_BODY)
            .token(token.expose())
            .header("idempotency-key", key)
    };

    // Warm the container first, so that only the request's own calls are counted.
    calls_of(&app, &calls, post(SEED_BODY).token(token.expose()), 201).await;
    let made = calls_of(&app, &calls, create("order-1"), 201).await;
    assert_eq!(
        made,
        [RATE, "PutItem", "CreateSecret", "TransactWriteItems"]
    );

    // The replay: the claim is refused with the old item (or, where the emulator does not
    // return it, read back with a GetItem), then the record and its secret are read.
    let replay = calls_of(&app, &calls, create("order-1"), 201).await;
    let expected: [&[&str]; 2] = [
        &[RATE, "PutItem", "GetItem", "GetSecretValue"],
        &[RATE, "PutItem", "GetItem", "GetItem", "GetSecretValue"],
    ];
    assert!(expected.iter().any(|e| *e == replay), "replay: {replay:?}");
}

/// A warm container of a key with both scopes, and one webhook of it.
async fn warm_with_one_webhook() -> (AwsEnv, AwsApp, Calls, String, String) {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS, "read:webhooks"]).await;
    let token = token.expose().to_owned();
    let (app, calls) = counted_app(&env, Settings::default());
    let created = parse(handle(&app, post(SEED_BODY).token(&token).build()).await);
    assert_eq!(created.status, 201, "{}", created.raw);
    let id = created.json["data"]["id"].as_str().unwrap().to_owned();
    calls.take();
    (env, app, calls, token, id)
}

/// Sends `request`, expects `status`, and returns its calls (sorted) and how many of them were
/// on the wire at once.
async fn side_by_side(
    app: &AwsApp,
    calls: &Calls,
    request: RequestBuilder,
    status: u16,
) -> (Vec<String>, usize) {
    let answer = parse(handle(app, request.build()).await);
    assert_eq!(answer.status, status, "{}", answer.raw);
    calls.take_side_by_side()
}

#[tokio::test]
async fn a_warm_get_is_one_round_trip_its_read_beside_the_rate_count() {
    let (_env, app, calls, token, id) = warm_with_one_webhook().await;
    for n in 1..=3 {
        let made = side_by_side(&app, &calls, requests::get_one(&token, &id), 200).await;
        assert_eq!(made, (vec!["GetItem".into(), RATE.into()], 2), "GET {n}");
    }
}

#[tokio::test]
async fn a_warm_list_is_one_query_beside_the_rate_count() {
    let (_env, app, calls, token, _) = warm_with_one_webhook().await;
    for _ in 0..4 {
        calls_of(&app, &calls, post(SEED_BODY).token(&token), 201).await;
    }
    for n in 1..=3 {
        let made = side_by_side(&app, &calls, requests::list(&token), 200).await;
        assert_eq!(made, (vec!["Query".into(), RATE.into()], 2), "list {n}");
    }
}

#[tokio::test]
async fn a_patch_without_headers_is_one_conditional_write_after_the_rate_count() {
    let (_env, app, calls, token, id) = warm_with_one_webhook().await;
    for (n, body) in [
        json!({"name": "Renamed"}),
        json!({"url": "https://hooks.example.com/x", "events": ["ping"], "isActive": false}),
        json!({"description": null}),
    ]
    .iter()
    .enumerate()
    {
        let made = calls_of(
            &app,
            &calls,
            requests::patch_webhook(&token, &id, body),
            200,
        )
        .await;
        assert_eq!(made, [RATE, "UpdateItem"], "PATCH {n}");
    }
    let reset = calls_of(&app, &calls, requests::reset_circuit(&token, &id), 200).await;
    assert_eq!(reset, [RATE, "UpdateItem"], "reset-circuit");
}

#[tokio::test]
async fn a_patch_of_headers_reads_the_record_and_its_secret_then_writes_a_version_and_the_record() {
    let (_env, app, calls, token, id) = warm_with_one_webhook().await;
    let headers = [("X-New".to_owned(), "new value".to_owned())];
    let body = requests::headers_body(&headers);
    let made = calls_of(
        &app,
        &calls,
        requests::patch_webhook(&token, &id, &body),
        200,
    )
    .await;
    assert_eq!(
        made,
        [
            RATE,
            "GetItem",
            "GetSecretValue",
            "PutSecretValue",
            "UpdateItem"
        ]
    );
}

#[tokio::test]
async fn a_delete_is_one_transaction_and_one_secret_deletion_after_the_rate_count() {
    let (_env, app, calls, token, id) = warm_with_one_webhook().await;
    let made = calls_of(&app, &calls, requests::delete_webhook(&token, &id), 204).await;
    assert_eq!(made, [RATE, "TransactWriteItems", "DeleteSecret"]);
}

/// Wall-clock latencies of warm requests against moto, for docs/PERFORMANCE.md (run with
/// `--nocapture`). They are moto's (Python, one call at a time, on this machine), not AWS's;
/// only the assertion on the statuses is a test.
#[tokio::test]
async fn warm_latencies_against_moto_are_measured() {
    const N: usize = 20;
    let (_env, app, calls, token, _) = warm_with_one_webhook().await;
    let mut table: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut timed = |label: &'static str, latency: Duration| match table
        .iter_mut()
        .find(|(l, _)| *l == label)
    {
        Some((_, list)) => list.push(latency),
        None => table.push((label, vec![latency])),
    };
    let mut ids = Vec::new();
    for _ in 0..N {
        let started = Instant::now();
        let created = parse(handle(&app, post(SEED_BODY).token(&token).build()).await);
        timed("POST /webhooks (warm create)", started.elapsed());
        assert_eq!(created.status, 201);
        ids.push(created.json["data"]["id"].as_str().unwrap().to_owned());
    }
    let headers = requests::headers_body(&[("X-New".to_owned(), "new value".to_owned())]);
    let rename = json!({"name": "Renamed"});
    for id in &ids {
        let steps: [(&'static str, RequestBuilder, u16); 6] = [
            ("GET /webhooks/{id}", requests::get_one(&token, id), 200),
            (
                "GET /webhooks (21 down to 2 webhooks)",
                requests::list(&token),
                200,
            ),
            (
                "PATCH /webhooks/{id} (fields)",
                requests::patch_webhook(&token, id, &rename),
                200,
            ),
            (
                "PATCH /webhooks/{id} (headers)",
                requests::patch_webhook(&token, id, &headers),
                200,
            ),
            (
                "POST /webhooks/{id}/reset-circuit",
                requests::reset_circuit(&token, id),
                200,
            ),
            (
                "DELETE /webhooks/{id}",
                requests::delete_webhook(&token, id),
                204,
            ),
        ];
        for (label, request, status) in steps {
            let started = Instant::now();
            let answer = parse(handle(&app, request.build()).await);
            timed(label, started.elapsed());
            assert_eq!(answer.status, status, "{label}: {}", answer.raw);
        }
    }
    calls.take();
    for (label, mut latencies) in table {
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "round_trips[latency]: {label}: median {:.2} ms, p90 {:.2} ms, max {:.2} ms ({} requests)",
            ms(latencies[latencies.len() / 2]),
            ms(latencies[latencies.len() * 9 / 10]),
            ms(*latencies.last().unwrap()),
            latencies.len()
        );
    }
}

// --- POST /webhooks/{id}/test and /rotate-secret ----------------------------------------------

/// What the delivery is called among the AWS calls: [`TimedReceiver`] logs it there when the
/// request's first byte arrives, so that its place in the sequence is checked too.
const DELIVERY: &str = "delivery (first byte at the receiver)";

/// A receiver on 127.0.0.1 for one request per connection (the sender opens one per attempt):
/// it notes when the request's first byte arrives, reads the head and the `content-length`
/// body, answers 204 and closes. Each request is reported as (first byte, whole request).
struct TimedReceiver {
    address: SocketAddr,
    arrivals: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
}

impl TimedReceiver {
    /// Starts it; when `log` is given, each first byte also appends [`DELIVERY`] to the calls.
    async fn start(log: Option<Calls>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        assert!(address.ip().is_loopback());
        let (report, arrivals) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (report, log) = (report.clone(), log.clone());
                tokio::spawn(async move {
                    if let Some(arrival) = receive(&stream, log.as_ref()).await {
                        let _ = report.send(arrival);
                    }
                });
            }
        });
        Self { address, arrivals }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.address.port())
    }

    /// The next request: when its first byte arrived, and the request.
    async fn next(&mut self) -> (Instant, Vec<u8>) {
        tokio::time::timeout(Duration::from_secs(5), self.arrivals.recv())
            .await
            .expect("the receiver got a request")
            .unwrap()
    }

    fn nothing_more(&mut self) -> bool {
        self.arrivals.try_recv().is_err()
    }
}

/// Reads one HTTP/1.1 request from `stream`, answers 204, and returns when its first byte came.
async fn receive(stream: &TcpStream, log: Option<&Calls>) -> Option<(Instant, Vec<u8>)> {
    let mut request = Vec::new();
    let mut first = None;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        stream.readable().await.ok()?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => {
                if first.is_none() {
                    first = Some(Instant::now());
                    if let Some(calls) = log {
                        calls.sent.lock().unwrap().push((DELIVERY.to_owned(), 0));
                    }
                }
                request.extend_from_slice(&chunk[..n]);
                if complete(&request) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
    let answer = b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n";
    let mut written = 0;
    while written < answer.len() {
        stream.writable().await.ok()?;
        match stream.try_write(&answer[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
    Some((first?, request))
}

/// True once `request` holds its head and the `content-length` bytes of body after it.
fn complete(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// Deliveries go only to loopback addresses in these tests (and localhost URLs are allowed).
fn loopback_only() -> Settings {
    let settings = Settings {
        loopback_only_deliveries: true,
        ..Settings::default()
    };
    assert!(settings.url_policy.allow_localhost);
    settings
}

/// A warm container (loopback deliveries only) with one webhook subscribed to `ping` whose URL
/// is the receiver's; returns the app, its calls, the token, the webhook's id and the receiver.
async fn warm_with_a_local_webhook(env: &AwsEnv) -> (AwsApp, Calls, String, String, TimedReceiver) {
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS, "read:webhooks"]).await;
    let token = token.expose().to_owned();
    let (app, calls) = counted_app(env, loopback_only());
    let receiver = TimedReceiver::start(Some(calls.clone())).await;
    let body = json!({
        "url": receiver.url(),
        "name": "Round trips",
        "events": ["ping"],
        "headers": [{"name": "X-Customer-Auth", "value": "Bearer receiver-token-7"}],
    });
    let created = parse(handle(&app, post(&body.to_string()).token(&token).build()).await);
    assert_eq!(created.status, 201, "{}", created.raw);
    let id = created.json["data"]["id"].as_str().unwrap().to_owned();
    calls.take();
    (app, calls, token, id, receiver)
}

fn test_ping(token: &str, id: &str) -> RequestBuilder {
    requests::bodiless(token, Method::POST, &format!("/webhooks/{id}/test"))
}

fn rotate_secret(token: &str, id: &str) -> RequestBuilder {
    requests::bodiless(
        token,
        Method::POST,
        &format!("/webhooks/{id}/rotate-secret"),
    )
}

#[tokio::test]
async fn a_warm_test_ping_reads_the_record_and_its_secret_then_delivers() {
    let env = AwsEnv::new().await;
    let (app, calls, token, id, mut receiver) = warm_with_a_local_webhook(&env).await;
    for n in 1..=3 {
        let answer = parse(handle(&app, test_ping(&token, &id).build()).await);
        assert_eq!(answer.status, 200, "{}", answer.raw);
        assert_eq!(answer.json["data"]["success"], true, "{}", answer.raw);
        assert_eq!(answer.json["data"]["httpStatus"], 204, "{}", answer.raw);
        assert_eq!(
            calls.take(),
            [
                RATE,
                "GetItem",
                "GetSecretValue",
                DELIVERY,
                "BatchWriteItem"
            ],
            "test ping {n}"
        );
        let (_, request) = receiver.next().await;
        assert!(request.starts_with(b"POST /hooks HTTP/1.1\r\n"));
        assert!(receiver.nothing_more(), "one delivery per ping");
    }
}

#[tokio::test]
async fn a_warm_rotation_is_one_secret_write_and_one_record_write() {
    let (_env, app, calls, token, id) = warm_with_one_webhook().await;
    for n in 1..=3 {
        let made = calls_of(&app, &calls, rotate_secret(&token, &id), 200).await;
        assert_eq!(
            made,
            [
                RATE,
                "GetItem",
                "GetSecretValue",
                "PutSecretValue",
                "UpdateItem"
            ],
            "rotation {n}"
        );
    }
}

/// Time from the test ping's request to the receiver's first byte, and to the whole answer,
/// against moto, for docs/PERFORMANCE.md (run with `--nocapture`). moto's and a debug build's
/// times, not AWS's or Lambda's; only the statuses are a test.
#[tokio::test]
async fn test_ping_latency_against_moto_is_measured() {
    const N: usize = 30;
    let env = AwsEnv::new().await;
    let (app, calls, token, id, mut receiver) = warm_with_a_local_webhook(&env).await;
    // One ping first, so that the sender (and its root store) exists, as in a warm container.
    let answer = parse(handle(&app, test_ping(&token, &id).build()).await);
    assert_eq!(answer.json["data"]["success"], true, "{}", answer.raw);
    receiver.next().await;
    let (mut to_first_byte, mut to_answer, mut secret_to_first_byte) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..N {
        let started = Instant::now();
        let answer = parse(handle(&app, test_ping(&token, &id).build()).await);
        let answered = started.elapsed();
        assert_eq!(answer.json["data"]["success"], true, "{}", answer.raw);
        let (first_byte, _) = receiver.next().await;
        to_first_byte.push(first_byte - started);
        to_answer.push(answered);
        // GetSecretValue's answer is the last AWS answer before the delivery (the ping's
        // record in the delivery log is written after it).
        let secret_read = calls.secret_answer.lock().unwrap().unwrap();
        secret_to_first_byte.push(first_byte - secret_read);
        let made = calls.take();
        assert_eq!(&made[made.len() - 2..], [DELIVERY, "BatchWriteItem"]);
    }
    for (label, mut latencies) in [
        (
            "test ping: request to the receiver's first byte",
            to_first_byte,
        ),
        ("test ping: request to the whole answer", to_answer),
        (
            "test ping: GetSecretValue's answer to the receiver's first byte",
            secret_to_first_byte,
        ),
    ] {
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "round_trips[ping]: {label}: min {:.2} ms, median {:.2} ms, p90 {:.2} ms, max {:.2} ms ({N} pings)",
            ms(latencies[0]),
            ms(latencies[N / 2]),
            ms(latencies[N * 9 / 10]),
            ms(latencies[N - 1]),
        );
    }
}

/// The sequences behind `make iam-proof`'s test and rotate-secret paths (which send a key).
#[tokio::test]
async fn with_an_idempotency_key_a_ping_and_a_rotation_add_their_claim_and_replays_send_nothing() {
    let env = AwsEnv::new().await;
    let (app, calls, token, id, mut receiver) = warm_with_a_local_webhook(&env).await;
    let ping = || test_ping(&token, &id).header("idempotency-key", "ping-1");
    let made = calls_of(&app, &calls, ping(), 200).await;
    assert_eq!(
        made,
        [
            RATE,
            "PutItem",
            "GetItem",
            "GetSecretValue",
            DELIVERY,
            "BatchWriteItem",
            "UpdateItem"
        ],
        "ping with a claim"
    );
    receiver.next().await;
    let replay = calls_of(&app, &calls, ping(), 200).await;
    assert!(!replay.iter().any(|c| c == DELIVERY), "replay: {replay:?}");
    let expected: [&[&str]; 2] = [&[RATE, "PutItem"], &[RATE, "PutItem", "GetItem"]];
    assert!(
        expected.iter().any(|e| *e == replay),
        "ping replay: {replay:?}"
    );
    assert!(receiver.nothing_more(), "a replay delivers nothing");

    let rotate = || rotate_secret(&token, &id).header("idempotency-key", "rotate-1");
    let made = calls_of(&app, &calls, rotate(), 200).await;
    assert_eq!(
        made,
        [
            RATE,
            "PutItem",
            "GetItem",
            "GetSecretValue",
            "PutSecretValue",
            "TransactWriteItems",
            "GetItem"
        ],
        "rotation with a claim"
    );
    let replay = calls_of(&app, &calls, rotate(), 200).await;
    let expected: [&[&str]; 2] = [
        &[RATE, "PutItem", "GetItem", "GetSecretValue"],
        &[RATE, "PutItem", "GetItem", "GetItem", "GetSecretValue"],
    ];
    assert!(
        expected.iter().any(|e| *e == replay),
        "rotation replay: {replay:?}"
    );
}
