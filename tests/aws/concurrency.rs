//! Concurrency against the local AWS emulator (its own moto server,
//! `moto::server("concurrency")`, so the load cannot starve the binary's other tests). The apps
//! use the tests' patient clients: the emulator serves one request at a time, and these tests
//! are about the handler's shared state and the limit's atomicity, not about timeouts (the
//! fault tests cover those).

use crate::support::{self, requests};

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use support::moto::{self, AwsEnv};
use support::*;

/// A test's slice of this module's own moto server.
async fn own_env() -> AwsEnv {
    AwsEnv::on(moto::server("concurrency")).await
}

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
    let env = own_env().await;
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
    let env = own_env().await;
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

/// The key's count and its records as the index holds them, sampled while a run goes on.
async fn count_and_records(env: &AwsEnv, api_key_id: &str) -> (i64, usize) {
    let quota = requests::quota(env, api_key_id).await;
    let records = env
        .dynamodb
        .query()
        .table_name(&env.resources.webhooks_table)
        .index_name("byApiKey")
        .key_condition_expression("apiKeyId = :key")
        .expression_attribute_values(
            ":key",
            aws_sdk_dynamodb::types::AttributeValue::S(api_key_id.to_owned()),
        )
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .expect("count the key's records")
        .count() as usize;
    (quota, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_mixed_creates_and_deletes_at_a_limit_of_twenty_end_exact_and_never_go_over_it()
{
    const LIMIT: usize = 20;
    let started = Instant::now();
    let env = Arc::new(own_env().await);
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let token = token.expose().to_owned();
    let app = Arc::new(env.patient_app(Settings {
        max_webhooks_per_key: LIMIT as u32,
        ..Settings::default()
    }));
    // The key starts at its limit.
    let live = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..LIMIT {
        let answer = requests::send(&*app, post(SEED_BODY).token(&token)).await;
        assert_eq!(answer.status, 201, "{}", answer.raw);
        let id = answer.json["data"]["id"].as_str().unwrap().to_owned();
        live.lock().unwrap().push(id);
    }
    let over_limit = requests::send(&*app, post(SEED_BODY).token(&token)).await;
    assert_eq!(over_limit.code(), "WEBHOOK_LIMIT_REACHED");

    // A watcher samples the count and the indexed records while the run goes on.
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = tokio::spawn({
        let (env, running, key_id) = (env.clone(), running.clone(), key.id.clone());
        async move {
            let (mut samples, mut max_quota, mut max_records) = (0, 0, 0);
            while running.load(Ordering::SeqCst) {
                let (quota, records) = count_and_records(&env, &key_id).await;
                (max_quota, max_records) = (max_quota.max(quota), max_records.max(records));
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (samples, max_quota, max_records)
        }
    });

    // 80 creates and 80 deletes alternating, then 40 creates (so that the run ends pressing on
    // the limit), one started every 15 ms whatever the others
    // do (so that up to a few dozen run at once, around the limit, without queueing the whole
    // run in the serial emulator). A delete takes a webhook the client knows to exist: one of
    // the first twenty, or one a create of the run answered 201 for.
    let creates_left = Arc::new(AtomicUsize::new(120));
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let (app, token, live) = (app.clone(), token.clone(), live.clone());
            let creates_left = creates_left.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(15 * i)).await;
                if i % 2 == 0 || i >= 160 {
                    let answer = requests::send(&*app, post(SEED_BODY).token(&token)).await;
                    if answer.status == 201 {
                        let id = answer.json["data"]["id"].as_str().unwrap().to_owned();
                        live.lock().unwrap().push(id);
                    }
                    creates_left.fetch_sub(1, Ordering::SeqCst);
                    return ("create", answer.status, answer.code().to_owned());
                }
                // A delete that finds no webhook for 200 ms is skipped, so that deletes do not
                // queue up and take every webhook the last creates make.
                for _ in 0..20 {
                    let next = {
                        let mut live = live.lock().unwrap();
                        let len = live.len();
                        (len > 0).then(|| live.swap_remove((i as usize * 7) % len))
                    };
                    if let Some(id) = next {
                        let answer =
                            requests::send(&*app, requests::delete_webhook(&token, &id)).await;
                        return ("delete", answer.status, answer.code().to_owned());
                    }
                    if creates_left.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                ("delete skipped: nothing to delete", 0, String::new())
            })
        })
        .collect();
    let mut outcomes: BTreeMap<(&str, u16, String), usize> = BTreeMap::new();
    for task in tasks {
        *outcomes.entry(task.await.expect("task")).or_default() += 1;
    }
    running.store(false, Ordering::SeqCst);
    let (samples, max_quota, max_records) = watcher.await.expect("watcher");

    let created = outcomes
        .get(&("create", 201, String::new()))
        .copied()
        .unwrap_or(0);
    let deleted = outcomes
        .get(&("delete", 204, String::new()))
        .copied()
        .unwrap_or(0);
    let expected: HashSet<String> = live.lock().unwrap().iter().cloned().collect();
    let stored: HashSet<String> = env
        .webhook_records()
        .await
        .iter()
        .map(|r| r["id"].as_s().unwrap().clone())
        .collect();
    let secrets: HashSet<String> = env
        .secret_names()
        .await
        .into_iter()
        .map(|name| name.strip_prefix(&env.secret_prefix).unwrap().to_owned())
        .collect();
    let quota = requests::quota(&env, &key.id).await;
    println!(
        "concurrency[mixed]: {outcomes:?}; {} left = {LIMIT} + {created} - {deleted}; quota \
         {quota}, {} records, {} secrets; {samples} samples, max count {max_quota}, max \
         records {max_records}; {:.1}s",
        expected.len(),
        stored.len(),
        secrets.len(),
        started.elapsed().as_secs_f64()
    );
    for ((what, status, code), n) in &outcomes {
        let allowed = matches!(
            (*what, *status, code.as_str()),
            ("create", 201, "")
                | ("create", 409, "WEBHOOK_LIMIT_REACHED")
                | ("delete", 204, "")
                | ("delete skipped: nothing to delete", 0, "")
        );
        assert!(allowed, "{n} × {what} {status} {code}");
    }
    assert!(created > 0 && deleted > 0, "{outcomes:?}");
    assert_eq!(expected.len(), LIMIT + created - deleted);
    assert_eq!(
        stored, expected,
        "exactly the webhooks the client was told exist"
    );
    assert_eq!(
        secrets, expected,
        "each with its secret, and no other secret"
    );
    assert_eq!(quota, expected.len() as i64, "the count is exact");
    assert!(samples > 0);
    assert!(
        max_quota <= LIMIT as i64 && max_records <= LIMIT,
        "over the limit: count {max_quota}, records {max_records}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_header_patches_of_one_webhook_end_in_one_consistent_state() {
    let env = own_env().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
    let token = token.expose().to_owned();
    let app = Arc::new(env.patient_app(Settings::default()));
    let created = requests::send(&*app, post(SEED_BODY).token(&token)).await;
    assert_eq!(created.status, 201, "{}", created.raw);
    let id = created.json["data"]["id"].as_str().unwrap().to_owned();
    let signing_secret = created.json["data"]["signingSecret"].clone();
    let before = requests::record(&env, &id).await.unwrap();

    // Sixteen lists, each unique in its names and values.
    let lists: Vec<Vec<(String, String)>> = (0..16)
        .map(|i| {
            (0..=i % 3)
                .map(|j| (format!("X-Writer-{i}-{j}"), format!("writer {i} value {j}")))
                .collect()
        })
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(lists.len()));
    let tasks: Vec<_> = lists
        .iter()
        .cloned()
        .map(|headers| {
            let (app, token, id, barrier) =
                (app.clone(), token.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                let request =
                    requests::patch_webhook(&token, &id, &requests::headers_body(&headers));
                barrier.wait().await;
                (headers, requests::send(&*app, request).await)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    let mut tally: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for (headers, answer) in &answers {
        *tally
            .entry((answer.status, answer.code().to_owned()))
            .or_default() += 1;
        match answer.status {
            // A 200 answers its own list.
            200 => {
                let names: Vec<&str> = answer.json["data"]["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h["name"].as_str().unwrap())
                    .collect();
                let asked: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, asked);
            }
            503 => assert_eq!(answer.code(), "SERVICE_UNAVAILABLE"),
            status => panic!("a PATCH answered {status}: {}", answer.raw),
        }
    }

    let after = requests::record(&env, &id).await.unwrap();
    let document = requests::document_of(&env, &after).await.expect("document");
    let names = requests::strings(&after, "headerNames");
    let stored = requests::document_headers(&document);
    let successes = tally.get(&(200, String::new())).copied().unwrap_or(0);
    let writes = requests::n(&after, "version").unwrap() - requests::n(&before, "version").unwrap();
    let versions = env
        .secretsmanager
        .list_secret_version_ids()
        .secret_id(requests::s(&after, "secretArn").unwrap())
        .send()
        .await
        .unwrap()
        .versions()
        .to_vec();
    let pointed = requests::s(&after, "secretVersion").unwrap();
    let labels: Vec<String> = versions
        .iter()
        .find(|v| v.version_id() == Some(pointed))
        .map(|v| v.version_stages().to_vec())
        .unwrap_or_default();
    println!(
        "concurrency[patches]: answers {tally:?}; {writes} record writes, {} secret \
         versions; final names {names:?}; the record's version has labels {labels:?}",
        versions.len()
    );
    assert!(successes >= 1, "{tally:?}");
    assert_eq!(
        names,
        requests::document_names(&document),
        "record and secret in step"
    );
    assert!(
        lists.contains(&stored),
        "the secret holds one of the sixteen lists: {stored:?}"
    );
    assert_eq!(document["signingSecret"], signing_secret);
    assert!(writes as usize >= successes, "each 200 moved the record");
    for field in ["url", "events", "name", "secretArn", "createdAt"] {
        assert_eq!(after.get(field), before.get(field), "{field}");
    }
}
