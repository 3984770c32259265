//! Concurrency against the local AWS emulator (its own moto, so the load cannot starve the
//! other integration tests). The apps use the tests' patient clients: the emulator serves one
//! request at a time, and these tests are about the handler's shared state and the limit's
//! atomicity, not about timeouts (the fault tests cover those).

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use support::moto::AwsEnv;
use support::*;

/// The ids and signing secrets of the created webhooks among `answers`.
fn created(answers: &[Answer]) -> (HashSet<String>, HashSet<String>) {
    let created = answers.iter().filter(|a| a.status == 201);
    let field = |a: &Answer, name: &str| a.json["data"][name].as_str().unwrap().to_owned();
    (
        created.clone().map(|a| field(a, "id")).collect(),
        created.map(|a| field(a, "signingSecret")).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_against_a_limit_of_fifty_admit_exactly_fifty() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let app = Arc::new(env.patient_app(Settings {
        max_webhooks_per_key: 50,
        ..Settings::default()
    }));
    let answers = create_concurrently(app, token.expose(), 200).await;
    let mut outcomes = BTreeMap::new();
    for answer in &answers {
        *outcomes
            .entry((answer.status, answer.code().to_owned()))
            .or_insert(0) += 1;
    }
    let admitted = outcomes.get(&(201, String::new()));
    let refused = outcomes.get(&(409, "WEBHOOK_LIMIT_REACHED".to_owned()));
    assert_eq!((admitted, refused), (Some(&50), Some(&150)), "{outcomes:?}");
    let (ids, secrets) = created(&answers);
    assert_eq!((ids.len(), secrets.len()), (50, 50));

    let stored: HashSet<String> = env
        .webhook_records()
        .await
        .iter()
        .map(|r| r["id"].as_s().unwrap().clone())
        .collect();
    assert_eq!(stored, ids, "exactly the admitted webhooks are stored");
    let quota = env
        .webhook_items()
        .await
        .into_iter()
        .find(|i| i["id"].as_s().unwrap() == &format!("quota#{}", key.id))
        .unwrap();
    assert_eq!(quota["webhookCount"].as_n().unwrap(), "50");
    let secret_names: HashSet<String> = env.secret_names().await.into_iter().collect();
    let expected: HashSet<String> = ids
        .iter()
        .map(|id| format!("{}{id}", env.secret_prefix))
        .collect();
    assert_eq!(
        secret_names, expected,
        "refused creates leave no secret, admitted ones keep theirs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_give_two_hundred_distinct_webhooks_and_secrets() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let app = Arc::new(env.patient_app(Settings {
        max_webhooks_per_key: 1000,
        ..Settings::default()
    }));
    let answers = create_concurrently(app, token.expose(), 200).await;
    assert!(answers.iter().all(|a| a.status == 201));
    let (ids, secrets) = created(&answers);
    assert_eq!((ids.len(), secrets.len()), (200, 200));
    assert_eq!(env.webhook_records().await.len(), 200);
    assert_eq!(env.secret_names().await.len(), 200);
}
