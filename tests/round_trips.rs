//! Round trips to AWS per request, counted against the emulator: an interceptor on the
//! function's own SDK clients records every HTTP request they send (each attempt, retries
//! included), by operation.
//!
//! - cold (first request of a container): pepper, key, secret, transaction = 4;
//! - warm: CreateSecret then TransactWriteItems = 2 (pepper kept, key cached);
//! - `API_KEY_CACHE_TTL_SECONDS=0`: the key is read on every request = 3;
//! - after the TTL: the key is read again, once.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use instaview_webhooks::http::handle;
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use support::moto::{AwsApp, AwsEnv};
use support::*;

/// Every request the clients put on the wire: (operation, attempt).
#[derive(Clone, Debug, Default)]
struct Calls(Arc<Mutex<Vec<(String, u32)>>>);

impl Calls {
    /// The calls since the last `take`, as operation names; a retry appears twice.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .map(|(operation, _)| operation)
            .collect()
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
        self.0.lock().unwrap().push((operation, attempt));
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
        DynamoWebhooks::new(dynamodb, &env.resources.webhooks_table),
        SecretsManagerStore::new(
            secretsmanager,
            &env.secret_prefix,
            None,
            &env.resources.pepper_secret_id,
        ),
        settings,
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

const COLD: [&str; 4] = [
    "GetSecretValue",
    "GetItem",
    "CreateSecret",
    "TransactWriteItems",
];
const WARM: [&str; 2] = ["CreateSecret", "TransactWriteItems"];
const KEY_NOT_CACHED: [&str; 3] = ["GetItem", "CreateSecret", "TransactWriteItems"];

#[tokio::test]
async fn a_cold_create_costs_four_calls_and_a_warm_one_two() {
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
async fn requests_refused_before_the_store_make_no_write() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let (app, calls) = counted_app(&env, Settings::default());

    // No token at all: no call.
    let anonymous = post(SEED_BODY).without_header("authorization");
    assert!(calls_of(&app, &calls, anonymous, 401).await.is_empty());
    // An unknown token: the pepper, then a lookup that finds nothing (not cached, so every
    // unknown token costs one GetItem).
    let unknown = || post(SEED_BODY).token(UNKNOWN_TOKEN);
    let made = calls_of(&app, &calls, unknown(), 401).await;
    assert_eq!(made, ["GetSecretValue", "GetItem"], "unknown token, cold");
    assert_eq!(calls_of(&app, &calls, unknown(), 401).await, ["GetItem"]);
    // A valid key and an invalid body: the key only, then nothing once it is cached.
    let invalid = || post("{}").token(token.expose());
    assert_eq!(calls_of(&app, &calls, invalid(), 400).await, ["GetItem"]);
    assert!(calls_of(&app, &calls, invalid(), 400).await.is_empty());
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
    assert_eq!(made, ["PutItem", "CreateSecret", "TransactWriteItems"]);

    // The replay: the claim is refused with the old item (or, where the emulator does not
    // return it, read back with a GetItem), then the record and its secret are read.
    let replay = calls_of(&app, &calls, create("order-1"), 201).await;
    let expected: [&[&str]; 2] = [
        &["PutItem", "GetItem", "GetSecretValue"],
        &["PutItem", "GetItem", "GetItem", "GetSecretValue"],
    ];
    assert!(expected.iter().any(|e| *e == replay), "replay: {replay:?}");
}
