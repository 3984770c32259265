//! Integration tests against the local AWS emulator (moto), started by the tests themselves.
//! They read back what was stored, as an operator would.

use crate::support;

use std::net::TcpListener;

use hmac::{Hmac, Mac};
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use instaview_webhooks::http::handle;
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use serde_json::Value;
use sha2::Sha256;
use support::moto::{sdk_config_for, AwsEnv};
use support::*;

async fn create_via<K, W, S, L, Q>(app: &App<K, W, S, L, Q>, token: &str, body: &str) -> Answer
where
    K: instaview_webhooks::store::ApiKeyStore,
    W: instaview_webhooks::store::WebhookStore,
    S: instaview_webhooks::store::SecretStore,
    L: instaview_webhooks::store::delivery_log::DeliveryLog,
    Q: instaview_webhooks::store::delivery_log::PipelineQueue,
{
    parse(handle(app, post(body).token(token).build()).await)
}

fn attr_s<'a>(
    item: &'a std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    name: &str,
) -> &'a str {
    item[name].as_s().unwrap()
}

#[tokio::test]
async fn stores_the_webhook_record_without_any_secret_material() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let answer = create_via(&env.app(Settings::default()), token.expose(), SEED_BODY).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    let data = &answer.json["data"];

    let items: Vec<_> = env.webhook_records().await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(attr_s(item, "id"), data["id"].as_str().unwrap());
    assert_eq!(attr_s(item, "apiKeyId"), key.id);
    assert_eq!(
        attr_s(item, "url"),
        "https://api.example.com/webhooks/instaview"
    );
    assert_eq!(attr_s(item, "name"), "Production Webhook");
    assert_eq!(
        attr_s(item, "createdAt"),
        data["createdAt"].as_str().unwrap()
    );
    assert!(item["companyId"].is_null());
    assert_eq!(item["isActive"].as_bool().unwrap(), &true);
    assert_eq!(item["maxRetries"].as_n().unwrap(), "3");
    assert!(attr_s(item, "secretArn").starts_with("arn:aws:secretsmanager:"));
    let header_names: Vec<&str> = item["headerNames"]
        .as_l()
        .unwrap()
        .iter()
        .map(|v| v.as_s().unwrap().as_str())
        .collect();
    assert_eq!(header_names, ["Authorization"]);

    let everything = format!("{item:?}");
    let secret = data["signingSecret"].as_str().unwrap();
    assert!(!everything.contains(secret), "signing secret in the record");
    assert!(
        !everything.contains("your-internal-token"),
        "header value in the record"
    );
}

#[tokio::test]
async fn stores_signing_secret_and_header_values_in_one_tagged_secret() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let answer = create_via(&env.app(Settings::default()), token.expose(), SEED_BODY).await;
    let id = answer.json["data"]["id"].as_str().unwrap();
    let name = format!("{}{id}", env.secret_prefix);
    assert_eq!(env.secret_names().await, vec![name.clone()]);

    let value = env
        .secretsmanager
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let document: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    assert_eq!(
        document["signingSecret"],
        answer.json["data"]["signingSecret"]
    );
    assert_eq!(
        document["headers"],
        serde_json::json!([{"name": "Authorization", "value": "Bearer your-internal-token"}])
    );

    let described = env
        .secretsmanager
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(tags.contains(&("webhookId", id)), "{tags:?}");
    assert!(tags.contains(&("apiKeyId", key.id.as_str())), "{tags:?}");
    let item = env
        .webhook_items()
        .await
        .into_iter()
        .find(|i| attr_s(i, "id") == id)
        .unwrap();
    assert_eq!(attr_s(&item, "secretArn"), described.arn().unwrap());
}

#[tokio::test]
async fn uses_the_configured_kms_key_for_webhook_secrets() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let kms_key = "alias/instaview-webhooks";
    let app = App::new(
        DynamoApiKeys::new(env.dynamodb.clone(), &env.resources.api_keys_table),
        DynamoWebhooks::new(env.dynamodb.clone(), &env.resources.webhooks_table),
        SecretsManagerStore::new(
            env.secretsmanager.clone(),
            &env.secret_prefix,
            Some(kms_key.into()),
            &env.resources.pepper_secret_id,
        ),
        Settings::default(),
    );
    let answer = create_via(&app, token.expose(), SEED_BODY).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    let name = format!(
        "{}{}",
        env.secret_prefix,
        answer.json["data"]["id"].as_str().unwrap()
    );
    let described = env
        .secretsmanager
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(described.kms_key_id(), Some(kms_key));
}

#[tokio::test]
async fn api_key_is_stored_and_found_by_hmac_sha256_of_the_token_with_the_pepper() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let pepper = env
        .secretsmanager
        .get_secret_value()
        .secret_id(&env.resources.pepper_secret_id)
        .send()
        .await
        .unwrap();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(pepper.secret_string().unwrap().as_bytes()).unwrap();
    mac.update(token.expose().as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());

    let items = env
        .dynamodb
        .scan()
        .table_name(&env.resources.api_keys_table)
        .send()
        .await
        .unwrap();
    let items = items.items();
    assert_eq!(items.len(), 1);
    assert_eq!(attr_s(&items[0], "keyHash"), expected);
    assert_eq!(attr_s(&items[0], "apiKeyId"), key.id);
    assert!(
        !format!("{:?}", items[0]).contains(token.expose()),
        "plain token stored"
    );

    let answer = create_via(&env.app(Settings::default()), token.expose(), SEED_BODY).await;
    assert_eq!(answer.json["data"]["apiKeyId"], key.id.as_str());
}

#[tokio::test]
async fn setup_is_idempotent() {
    let env = AwsEnv::new().await;
    let report = env.admin().setup().await.unwrap();
    assert!(report.created.is_empty(), "{report:?}");
    // The three tables (webhooks, API keys, delivery log) and the pepper.
    assert_eq!(report.existing.len(), 4);
}

#[tokio::test]
async fn suspended_and_revoked_keys_are_refused() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    env.admin()
        .suspend_key(&key.id, "Unpaid invoice")
        .await
        .unwrap();
    // A fresh container (no cached key), as after the cache TTL.
    let answer = create_via(&env.app(Settings::default()), token.expose(), SEED_BODY).await;
    assert_eq!(answer.code(), "API_KEY_SUSPENDED", "{}", answer.raw);
    assert_eq!(answer.json["error"]["details"]["reason"], "Unpaid invoice");

    env.admin().revoke_key(&key.id).await.unwrap();
    let answer = create_via(&env.app(Settings::default()), token.expose(), SEED_BODY).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.code(), "INVALID_API_KEY");
    let listed = env.admin().list_keys().await.unwrap();
    assert_eq!(listed[0].status.as_str(), "revoked");
}

#[tokio::test]
async fn key_without_scope_or_foreign_company_creates_nothing() {
    let env = AwsEnv::new().await;
    let (_, read_only) = env.create_key(&["read:webhooks"]).await;
    let (_, writer) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let app = env.app(Settings::default());
    assert_eq!(
        create_via(&app, read_only.expose(), SEED_BODY).await.status,
        403
    );
    let foreign = SEED_BODY.replacen('{', &format!("{{\"companyId\":\"{OTHER_COMPANY}\","), 1);
    assert_eq!(
        create_via(&app, writer.expose(), &foreign).await.code(),
        "RESOURCE_ACCESS_DENIED"
    );
    assert!(env.webhook_items().await.is_empty());
    assert!(env.secret_names().await.is_empty());
}

/// An endpoint where nothing listens: connections are refused at once.
fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn dynamodb_unreachable_after_the_secret_is_created_answers_503_and_leaves_no_secret() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let broken = aws_sdk_dynamodb::Client::new(&sdk_config_for(&closed_endpoint()).await);
    let app = App::new(
        DynamoApiKeys::new(env.dynamodb.clone(), &env.resources.api_keys_table),
        DynamoWebhooks::new(broken, &env.resources.webhooks_table),
        env.secrets_store(),
        Settings::default(),
    );
    let answer = create_via(&app, token.expose(), SEED_BODY).await;
    assert_eq!(answer.status, 503, "{}", answer.raw);
    assert_eq!(answer.code(), "SERVICE_UNAVAILABLE");
    assert!(answer.header("retry-after").is_some());
    assert!(
        env.secret_names().await.is_empty(),
        "orphan secret left behind"
    );
    assert!(env.webhook_items().await.is_empty());
}

#[tokio::test]
async fn secrets_manager_unreachable_answers_503_and_stores_nothing() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let app = env.app(Settings::default());
    // One webhook while all is well; then a container that cannot reach Secrets Manager.
    assert_eq!(
        create_via(&app, token.expose(), SEED_BODY).await.status,
        201
    );
    let broken = aws_sdk_secretsmanager::Client::new(&sdk_config_for(&closed_endpoint()).await);
    let app_broken = App::new(
        DynamoApiKeys::new(env.dynamodb.clone(), &env.resources.api_keys_table),
        DynamoWebhooks::new(env.dynamodb.clone(), &env.resources.webhooks_table),
        SecretsManagerStore::new(
            broken,
            &env.secret_prefix,
            None,
            &env.resources.pepper_secret_id,
        ),
        Settings::default(),
    );
    let answer = create_via(&app_broken, token.expose(), SEED_BODY).await;
    assert_eq!(answer.status, 503, "{}", answer.raw);
    let webhooks = env.webhook_records().await.len();
    assert_eq!(webhooks, 1, "only the first webhook exists");
    assert_eq!(env.secret_names().await.len(), 1);
}

#[tokio::test]
async fn idempotent_retry_answers_the_same_webhook_and_secret_read_back_from_secrets_manager() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let request = |body: &str| {
        post(body)
            .token(token.expose())
            .header("idempotency-key", "order-42")
            .build()
    };
    let first = parse(handle(&env.app(Settings::default()), request(SEED_BODY)).await);
    // A new container: nothing cached, the answer must come from DynamoDB and Secrets Manager.
    let again = parse(handle(&env.app(Settings::default()), request(SEED_BODY)).await);
    assert_eq!(first.status, 201, "{}", first.raw);
    assert_eq!(again.status, 201, "{}", again.raw);
    assert_eq!(again.json["data"], first.json["data"]);
    assert_eq!(env.secret_names().await.len(), 1);
    let webhooks: Vec<_> = env.webhook_records().await;
    assert_eq!(webhooks.len(), 1);

    let claim = env
        .webhook_items()
        .await
        .into_iter()
        .find(|i| attr_s(i, "id").starts_with("idempotency#"))
        .unwrap();
    let everything = format!("{claim:?}");
    assert!(!everything.contains(first.json["data"]["signingSecret"].as_str().unwrap()));
    assert!(!everything.contains("your-internal-token"));
    assert!(
        claim["expiresAt"].as_n().is_ok(),
        "claims expire through DynamoDB TTL"
    );

    let other = SEED_BODY.replace("Production Webhook", "Other");
    let reused = parse(handle(&env.app(Settings::default()), request(&other)).await);
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test]
async fn a_running_request_holds_its_idempotency_key() {
    use instaview_webhooks::domain::{ClaimOutcome, IdempotencyClaim, IdempotencyKey};
    use instaview_webhooks::store::IdempotencyClaims;
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    // The first request has claimed the key and is still creating.
    let claim = IdempotencyClaim::new(
        &key.id,
        "POST /webhooks",
        &IdempotencyKey::parse("busy").unwrap(),
        SEED_BODY.as_bytes(),
    );
    let store = DynamoWebhooks::new(env.dynamodb.clone(), &env.resources.webhooks_table);
    assert_eq!(
        store
            .claim(&claim, time::OffsetDateTime::now_utc())
            .await
            .unwrap(),
        ClaimOutcome::Claimed
    );
    let request = post(SEED_BODY)
        .token(token.expose())
        .header("idempotency-key", "busy")
        .build();
    let answer = parse(handle(&env.app(Settings::default()), request).await);
    assert_eq!(answer.status, 409);
    assert_eq!(answer.code(), "REQUEST_IN_PROGRESS");
    assert!(env.secret_names().await.is_empty());
}
