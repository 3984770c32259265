//! The reconciler (src/reconcile.rs) against the local AWS emulator: each orphan state is made
//! by hand, then reconciled; and a fault run (creates and a delete whose undo or secret
//! deletion fails, through the fault proxy) is cleaned up by one reconcile.
//!
//! Ages are judged against the run's clock (`run_at`), so "older than the safe age" needs no
//! waiting.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_secretsmanager::types::Tag;
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::{READ_WEBHOOKS, WRITE_WEBHOOKS};
use instaview_webhooks::http::handle;
use instaview_webhooks::reconcile::{Options, Reconciler, Report, DEFAULT_MIN_SECRET_AGE};
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use lambda_http::http::Method;
use support::fault_proxy::{Fault, FaultProxy};
use support::moto::{endpoint, sdk_config_for, AwsApp, AwsEnv};
use support::*;
use time::OffsetDateTime;
use uuid::Uuid;

type Item = HashMap<String, AttributeValue>;

fn reconciler(env: &AwsEnv) -> Reconciler {
    Reconciler {
        dynamodb: env.dynamodb.clone(),
        secretsmanager: env.secretsmanager.clone(),
        webhooks_table: env.resources.webhooks_table.clone(),
        secret_prefix: env.secret_prefix.clone(),
    }
}

/// Past the default safe age: every secret made so far counts as old.
fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + DEFAULT_MIN_SECRET_AGE + Duration::from_secs(60)
}

/// Creates a webhook through the function's handler; its id and signing secret.
async fn create(app: &AwsApp, token: &str) -> (String, String) {
    let answer = parse(handle(app, post(SEED_BODY).token(token).build()).await);
    assert_eq!(answer.status, 201, "{}", answer.raw);
    (
        answer.json["data"]["id"].as_str().unwrap().to_owned(),
        answer.json["data"]["signingSecret"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

async fn item(env: &AwsEnv, id: &str) -> Option<Item> {
    env.dynamodb
        .get_item()
        .table_name(&env.resources.webhooks_table)
        .key("id", AttributeValue::S(id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
}

fn attr_s<'a>(item: &'a Item, name: &str) -> &'a str {
    item[name].as_s().unwrap()
}

fn attr_n(item: &Item, name: &str) -> i64 {
    item[name].as_n().unwrap().parse().unwrap()
}

async fn put(env: &AwsEnv, item: Item) {
    env.dynamodb
        .put_item()
        .table_name(&env.resources.webhooks_table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put item");
}

/// Deletes a secret the way an operator or a lost write would leave it: gone at once.
async fn delete_secret(env: &AwsEnv, id: &str) {
    env.secretsmanager
        .delete_secret()
        .secret_id(format!("{}{id}", env.secret_prefix))
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete secret");
}

/// Both orphan counts, read independently of the reconciler: secrets under the prefix without
/// a live webhook record, and active records whose secret (or pinned version) is missing.
async fn orphan_counts(env: &AwsEnv) -> (Vec<String>, Vec<String>) {
    let records = env.webhook_records().await;
    let live: HashSet<&str> = records.iter().map(|r| attr_s(r, "id")).collect();
    let orphan_secrets = env
        .secret_names()
        .await
        .into_iter()
        .filter_map(|name| {
            // Only webhook secrets: the prefix and a webhook id.
            let id = name.strip_prefix(&env.secret_prefix).unwrap().to_owned();
            let webhook = Uuid::try_parse(&id).is_ok();
            (webhook && !live.contains(id.as_str())).then_some(id)
        })
        .collect();
    let mut unsignable = Vec::new();
    for record in &records {
        if !*record["isActive"].as_bool().unwrap() {
            continue;
        }
        let mut read = env
            .secretsmanager
            .get_secret_value()
            .secret_id(attr_s(record, "secretArn"));
        if let Some(version) = record.get("secretVersion") {
            read = read.version_id(version.as_s().unwrap());
        }
        if read.send().await.is_err() {
            unsignable.push(attr_s(record, "id").to_owned());
        }
    }
    (orphan_secrets, unsignable)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn deactivated(report: &Report) -> Vec<String> {
    sorted(
        report
            .records_without_secret
            .iter()
            .filter(|u| u.deactivated)
            .map(|u| u.webhook_id.clone())
            .collect(),
    )
}

/// Every orphan state, made by hand in moto:
/// - a secret without a record (made directly, as a create whose record write and undo both
///   failed leaves it), and one whose record is a tombstone (a delete whose secret deletion
///   failed);
/// - a record whose secret is missing, and one whose pinned secret version is gone (beside one
///   whose pinned version is merely unlabelled, which must stay as it is);
/// - an expired idempotency claim and an expired fence (TTL had not removed them), beside a
///   live claim and a live tombstone.
///
/// A run at once keeps the young orphan secrets (a create may still be writing their record),
/// deactivates the unsignable records and deletes the expired items; a dry run past the safe
/// age changes nothing; a run past it deletes the orphan secrets. A healthy webhook is never
/// touched, and no report holds a secret.
#[tokio::test]
async fn each_orphan_state_made_by_hand_is_reconciled() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS, READ_WEBHOOKS]).await;
    let app = env.app(Settings::default());
    let (healthy, healthy_secret) = create(&app, token.expose()).await;
    let (no_secret, no_secret_signing) = create(&app, token.expose()).await;
    let (no_version, _) = create(&app, token.expose()).await;
    let (tombstoned, _) = create(&app, token.expose()).await;
    let (deprecated, _) = create(&app, token.expose()).await;

    // A secret without any record, as the app names and tags it.
    let stray = Uuid::new_v4().to_string();
    env.secretsmanager
        .create_secret()
        .name(format!("{}{stray}", env.secret_prefix))
        .secret_string(r#"{"signingSecret":"00","headers":[]}"#)
        .tags(Tag::builder().key("webhookId").value(&stray).build())
        .tags(Tag::builder().key("apiKeyId").value(&key.id).build())
        .send()
        .await
        .expect("create stray secret");
    // A secret of another prefix (another stack) is never judged.
    let foreign = format!("{}other/{}", env.secret_prefix, Uuid::new_v4());
    env.secretsmanager
        .create_secret()
        .name(&foreign)
        .secret_string("{}")
        .send()
        .await
        .expect("create foreign secret");
    // A record whose secret is gone.
    delete_secret(&env, &no_secret).await;
    // A record that pins a version its secret does not have.
    env.dynamodb
        .update_item()
        .table_name(&env.resources.webhooks_table)
        .key("id", AttributeValue::S(no_version.clone()))
        .update_expression("SET secretVersion = :v")
        .expression_attribute_values(":v", AttributeValue::S(Uuid::new_v4().to_string()))
        .send()
        .await
        .expect("unpin version");
    // A record that pins a version with no staging label any more (two later values, as two
    // PATCHes whose record update failed would leave): still readable, so still signable.
    // (moto lists unlabelled versions in ListSecrets; AWS does not, and the reconciler then
    // asks ListSecretVersionIds with deprecated versions, the path `no_version` takes here.)
    for value in ["{}", "{ }"] {
        env.secretsmanager
            .put_secret_value()
            .secret_id(format!("{}{deprecated}", env.secret_prefix))
            .secret_string(value)
            .send()
            .await
            .expect("put secret value");
    }
    // A tombstone whose secret deletion failed.
    let now = OffsetDateTime::now_utc().unix_timestamp();
    put(
        &env,
        HashMap::from([
            ("id".to_owned(), AttributeValue::S(tombstoned.clone())),
            ("fence".to_owned(), AttributeValue::Bool(true)),
            ("deletedBy".to_owned(), AttributeValue::S(key.id.clone())),
            (
                "expiresAt".to_owned(),
                AttributeValue::N((now + 3600).to_string()),
            ),
        ]),
    )
    .await;
    // Expired and live claims and fences.
    let claim = |id: &str, expires: i64| {
        HashMap::from([
            ("id".to_owned(), AttributeValue::S(id.to_owned())),
            ("status".to_owned(), AttributeValue::S("completed".into())),
            (
                "expiresAt".to_owned(),
                AttributeValue::N(expires.to_string()),
            ),
        ])
    };
    let expired_claim = format!("idempotency#{}#{}", key.id, "a".repeat(64));
    let live_claim = format!("idempotency#{}#{}", key.id, "b".repeat(64));
    put(&env, claim(&expired_claim, now - 60)).await;
    put(&env, claim(&live_claim, now + 86_400)).await;
    let expired_fence = Uuid::new_v4().to_string();
    put(
        &env,
        HashMap::from([
            ("id".to_owned(), AttributeValue::S(expired_fence.clone())),
            ("fence".to_owned(), AttributeValue::Bool(true)),
            (
                "expiresAt".to_owned(),
                AttributeValue::N((now - 60).to_string()),
            ),
        ]),
    )
    .await;
    let healthy_before = item(&env, &healthy).await.unwrap();
    let deprecated_before = item(&env, &deprecated).await.unwrap();

    // At once: young orphan secrets stay; the rest is handled.
    let first = reconciler(&env).run(&Options::default()).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert!(first.orphan_secrets_deleted.is_empty(), "{first:?}");
    assert_eq!(
        sorted(first.orphan_secrets_kept.clone()),
        sorted(vec![stray.clone(), tombstoned.clone()])
    );
    assert_eq!(
        deactivated(&first),
        sorted(vec![no_secret.clone(), no_version.clone()])
    );
    let reasons: HashMap<&str, &str> = first
        .records_without_secret
        .iter()
        .map(|u| (u.webhook_id.as_str(), u.reason))
        .collect();
    assert_eq!(reasons[no_secret.as_str()], "secret missing");
    assert_eq!(
        reasons[no_version.as_str()],
        "pinned secret version missing"
    );
    assert!(first
        .records_without_secret
        .iter()
        .all(|u| u.api_key_id.as_deref() == Some(key.id.as_str())));
    assert_eq!(first.expired_claims_deleted, 1);
    assert_eq!(first.expired_fences_deleted, vec![expired_fence.clone()]);
    assert!(item(&env, &expired_claim).await.is_none());
    assert!(item(&env, &expired_fence).await.is_none());
    assert!(item(&env, &live_claim).await.is_some());
    assert!(item(&env, &tombstoned).await.is_some());
    for id in [&no_secret, &no_version] {
        let record = item(&env, id).await.unwrap();
        assert!(!*record["isActive"].as_bool().unwrap(), "{id} deactivated");
        assert_eq!(attr_n(&record, "version"), 2, "{id}: version bumped once");
    }
    // The API shows the deactivation (and the new ETag).
    let shown = parse(
        handle(
            &app,
            post("")
                .method(Method::GET)
                .path(&format!("/webhooks/{no_secret}"))
                .token(token.expose())
                .build(),
        )
        .await,
    );
    assert_eq!(shown.status, 200, "{}", shown.raw);
    assert_eq!(shown.json["data"]["isActive"], false);

    // A dry run past the safe age reports the orphan secrets and deletes nothing.
    let names_before = sorted(env.secret_names().await);
    let dry = reconciler(&env)
        .run_at(
            &Options {
                dry_run: true,
                ..Options::default()
            },
            later(),
        )
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(
        sorted(dry.orphan_secrets_deleted.clone()),
        sorted(vec![stray.clone(), tombstoned.clone()])
    );
    assert_eq!(sorted(env.secret_names().await), names_before);

    // Past the safe age: the orphan secrets go; the deactivated records are reported again
    // but not changed again.
    let second = reconciler(&env)
        .run_at(&Options::default(), later())
        .await
        .unwrap();
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!(
        sorted(second.orphan_secrets_deleted.clone()),
        sorted(vec![stray.clone(), tombstoned.clone()])
    );
    assert!(deactivated(&second).is_empty(), "{second:?}");
    assert_eq!(second.records_without_secret.len(), 2);
    assert_eq!(second.active_records_without_secret(), 0);
    for id in [&no_secret, &no_version] {
        assert_eq!(attr_n(&item(&env, id).await.unwrap(), "version"), 2);
    }
    let names: HashSet<String> = env.secret_names().await.into_iter().collect();
    let expected: HashSet<String> = [&healthy, &no_version, &deprecated]
        .iter()
        .map(|id| format!("{}{id}", env.secret_prefix))
        .chain([foreign.clone()])
        .collect();
    assert_eq!(names, expected);

    // The healthy webhook is as it was, and still readable with its secret.
    assert_eq!(item(&env, &healthy).await.unwrap(), healthy_before);
    assert_eq!(item(&env, &deprecated).await.unwrap(), deprecated_before);
    let (orphans, unsignable) = orphan_counts(&env).await;
    assert!(orphans.is_empty(), "{orphans:?}");
    assert!(unsignable.is_empty(), "{unsignable:?}");

    // Reports carry ids and counts, never a secret.
    for report in [&first, &dry, &second] {
        let text = serde_json::to_string(report).unwrap();
        assert!(!text.contains(&healthy_secret) && !text.contains(&no_secret_signing));
        assert!(!text.contains("signingSecret"));
    }
}

/// A fault run, not a hand-made state: creates whose record write fails and whose undo cannot
/// delete the secret (Secrets Manager answers 500 to DeleteSecret), a delete whose secret
/// deletion fails, and a secret lost behind a record. Afterwards both orphan counts are above
/// zero; one reconcile brings both to 0, and a second finds nothing to do.
#[tokio::test]
async fn after_a_fault_run_one_reconcile_brings_both_orphan_counts_to_zero() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS, READ_WEBHOOKS]).await;
    let moto = endpoint();
    let dynamodb_proxy = FaultProxy::start(moto, 11).await;
    let secrets_proxy = FaultProxy::start(moto, 12).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config_for(dynamodb_proxy.endpoint()).await);
    let secrets =
        aws_sdk_secretsmanager::Client::new(&sdk_config_for(secrets_proxy.endpoint()).await);
    let app: AwsApp = App::new(
        DynamoApiKeys::new(dynamodb.clone(), &env.resources.api_keys_table),
        DynamoWebhooks::new(dynamodb.clone(), &env.resources.webhooks_table),
        SecretsManagerStore::new(
            secrets,
            &env.secret_prefix,
            None,
            &env.resources.pepper_secret_id,
        ),
        Settings::default(),
    )
    .with_delivery_log(
        instaview_webhooks::store::dynamodb::DynamoDeliveryLog::new(
            dynamodb,
            &env.resources.delivery_log_table,
        ),
        instaview_webhooks::store::memory_log::MemoryPipelineQueue::default(),
    );
    let token = token.expose();
    let (kept, _) = create(&app, token).await;
    let (deleted, _) = create(&app, token).await;
    let (lost_secret, _) = create(&app, token).await;

    // Creates: the record write fails, and so do its undo and the secret's deletion.
    dynamodb_proxy.always("TransactWriteItems", Fault::ServerError);
    secrets_proxy.always("DeleteSecret", Fault::ServerError);
    for _ in 0..3 {
        let answer = parse(handle(&app, post(SEED_BODY).token(token).build()).await);
        assert_eq!(answer.status, 503, "{}", answer.raw);
    }
    // A delete whose tombstone lands but whose secret cannot be deleted.
    dynamodb_proxy.clear();
    let answer = parse(
        handle(
            &app,
            post("")
                .method(Method::DELETE)
                .path(&format!("/webhooks/{deleted}"))
                .token(token)
                .build(),
        )
        .await,
    );
    assert_eq!(answer.status, 503, "{}", answer.raw);
    secrets_proxy.clear();
    // And a secret lost behind its record.
    delete_secret(&env, &lost_secret).await;

    let (orphans, unsignable) = orphan_counts(&env).await;
    assert_eq!(
        orphans.len(),
        4,
        "3 failed creates and 1 failed delete: {orphans:?}"
    );
    assert!(orphans.contains(&deleted));
    assert_eq!(unsignable, vec![lost_secret.clone()]);

    // One run, past the safe age (the fault run is over: nothing is in flight).
    let report = reconciler(&env)
        .run_at(&Options::default(), later())
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        sorted(report.orphan_secrets_deleted.clone()),
        sorted(orphans)
    );
    assert_eq!(deactivated(&report), vec![lost_secret.clone()]);
    let (orphans, unsignable) = orphan_counts(&env).await;
    assert_eq!(
        (orphans.len(), unsignable.len()),
        (0, 0),
        "{orphans:?} {unsignable:?}"
    );
    // The healthy webhook still answers, with its secret.
    let shown = parse(
        handle(
            &env.app(Settings::default()),
            post("")
                .method(Method::GET)
                .path(&format!("/webhooks/{kept}"))
                .token(token)
                .build(),
        )
        .await,
    );
    assert_eq!(shown.status, 200, "{}", shown.raw);
    assert_eq!(shown.json["data"]["isActive"], true);

    // Nothing left for a second run.
    let again = reconciler(&env)
        .run_at(&Options::default(), later())
        .await
        .unwrap();
    assert!(again.orphan_secrets_deleted.is_empty(), "{again:?}");
    assert!(deactivated(&again).is_empty(), "{again:?}");
    assert!(
        again.errors.is_empty() && again.skipped.is_empty(),
        "{again:?}"
    );
}

/// An empty prefix would make every secret of the account look like an orphan: refused.
#[tokio::test]
async fn an_empty_prefix_is_refused() {
    let env = AwsEnv::new().await;
    let mut reconciler = reconciler(&env);
    reconciler.secret_prefix.clear();
    assert!(reconciler.run(&Options::default()).await.is_err());
}

/// `webhooks-admin reconcile --dry-run --json` against the emulator: reports the orphan secret
/// and an unsignable record as JSON, and changes nothing.
#[tokio::test]
async fn the_admin_command_reports_without_changing_in_a_dry_run() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let app = env.app(Settings::default());
    let (record, _) = create(&app, token.expose()).await;
    delete_secret(&env, &record).await;
    let stray = Uuid::new_v4().to_string();
    env.secretsmanager
        .create_secret()
        .name(format!("{}{stray}", env.secret_prefix))
        .secret_string("{}")
        .send()
        .await
        .expect("create stray secret");
    let local = support::moto::local_env();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhooks-admin"))
        .args(["--json", "reconcile", "--dry-run", "--min-age-seconds", "0"])
        .env_clear()
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_REGION", &local["AWS_REGION"])
        .env("AWS_ACCESS_KEY_ID", &local["AWS_ACCESS_KEY_ID"])
        .env("AWS_SECRET_ACCESS_KEY", &local["AWS_SECRET_ACCESS_KEY"])
        .env("WEBHOOKS_TABLE_NAME", &env.resources.webhooks_table)
        .env("WEBHOOK_SECRET_PREFIX", &env.secret_prefix)
        .output()
        .await
        .expect("run webhooks-admin");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["orphanSecretsDeleted"], serde_json::json!([stray]));
    assert_eq!(report["recordsWithoutSecret"][0]["webhookId"], record);
    assert_eq!(report["recordsWithoutSecret"][0]["deactivated"], true);
    // One JSON log line per action, on stderr.
    let actions: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .filter(|line: &serde_json::Value| line.get("action").is_some())
        .collect();
    let named = |action: &str| {
        actions
            .iter()
            .filter(|l| l["action"] == action && l["dryRun"] == true)
            .count()
    };
    assert_eq!(named("delete_orphan_secret"), 1, "{actions:?}");
    assert_eq!(named("deactivate_unsignable_record"), 1, "{actions:?}");
    assert_eq!(named("reconcile_summary"), 1, "{actions:?}");
    // Nothing changed.
    assert!(env
        .secret_names()
        .await
        .contains(&format!("{}{stray}", env.secret_prefix)));
    let stored = item(&env, &record).await.unwrap();
    assert!(*stored["isActive"].as_bool().unwrap());
    assert_eq!(attr_n(&stored, "version"), 1);
}
