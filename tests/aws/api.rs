//! What each route of the webhooks API leaves in DynamoDB and Secrets Manager, read back from
//! the local emulator (moto) with the tests' own clients, as an operator would: create → GET →
//! PATCH (fields, then headers) → reset-circuit → DELETE → DELETE again; the list through the
//! `byApiKey` index; the per-key, per-hour rate counter.

use crate::support::{self, requests};

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use lambda_http::RequestExt;
use requests::*;
use serde_json::json;
use support::moto::AwsEnv;
use support::*;

const READ_WEBHOOKS: &str = "read:webhooks";

/// The attributes of a webhook record; none of them may survive on a tombstone.
const WEBHOOK_FIELDS: [&str; 17] = [
    "apiKeyId",
    "companyId",
    "url",
    "name",
    "description",
    "headerNames",
    "events",
    "isActive",
    "maxRetries",
    "timeoutMs",
    "consecutiveFailures",
    "circuitOpenedAt",
    "secretArn",
    "secretVersion",
    "version",
    "createdAt",
    "updatedAt",
];

#[tokio::test]
async fn each_call_from_create_to_a_second_delete_stores_exactly_what_it_answers() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS, READ_WEBHOOKS]).await;
    let token = token.expose();
    let app = env.app(Settings::default());

    // Create: one record, one secret, the count at 1.
    let created = send(&app, post(SEED_BODY).token(token)).await;
    assert_eq!(created.status, 201, "{}", created.raw);
    let id = created.json["data"]["id"].as_str().unwrap().to_owned();
    let signing_secret = created.json["data"]["signingSecret"].as_str().unwrap();
    let at_create = record(&env, &id).await.expect("record after create");
    assert_eq!(n(&at_create, "version"), Some(1));
    assert_eq!(quota(&env, &key.id).await, 1);
    let arn = s(&at_create, "secretArn").unwrap().to_owned();
    let created_version = s(&at_create, "secretVersion")
        .expect("secretVersion")
        .to_owned();

    // GET: answers the record, changes nothing.
    let got = send(&app, get_one(token, &id)).await;
    assert_eq!(got.status, 200, "{}", got.raw);
    assert_eq!(got.header("etag"), Some("\"1\""));
    assert_eq!(got.json["data"]["url"], s(&at_create, "url").unwrap());
    assert_eq!(
        got.json["data"]["headers"],
        json!([{"name": "Authorization", "isMasked": true}])
    );
    assert!(got.json["data"].get("signingSecret").is_none());
    assert_eq!(record(&env, &id).await, Some(at_create.clone()));

    // PATCH of fields: they change in the record, the secret stays where it was.
    let fields = json!({
        "url": "https://hooks.example.com/patched",
        "events": ["ping"],
        "name": "Renamed",
        "description": null,
        "isActive": false,
    });
    let patched = send(&app, patch_webhook(token, &id, &fields)).await;
    assert_eq!(patched.status, 200, "{}", patched.raw);
    let after_fields = record(&env, &id).await.unwrap();
    assert_eq!(
        s(&after_fields, "url"),
        Some("https://hooks.example.com/patched")
    );
    assert_eq!(strings(&after_fields, "events"), ["ping"]);
    assert_eq!(s(&after_fields, "name"), Some("Renamed"));
    assert!(after_fields["description"].is_null(), "description cleared");
    assert_eq!(after_fields["isActive"], AttributeValue::Bool(false));
    assert_eq!(n(&after_fields, "version"), Some(2));
    assert_eq!(patched.header("etag"), Some("\"2\""));
    assert_eq!(s(&after_fields, "createdAt"), s(&at_create, "createdAt"));
    assert_eq!(
        s(&after_fields, "secretVersion"),
        Some(created_version.as_str())
    );
    assert_eq!(strings(&after_fields, "headerNames"), ["Authorization"]);

    // PATCH of headers: names in the record, values in a new version of the secret that the
    // record points at; the signing secret is carried over; no value in the record.
    let headers = vec![
        ("X-Tenant".to_owned(), "tenant-value-7f3a".to_owned()),
        ("X-Api-Token".to_owned(), "token-value-91bc".to_owned()),
    ];
    let patched = send(&app, patch_webhook(token, &id, &headers_body(&headers))).await;
    assert_eq!(patched.status, 200, "{}", patched.raw);
    assert_eq!(
        patched.json["data"]["headers"],
        json!([{"name": "X-Tenant", "isMasked": true}, {"name": "X-Api-Token", "isMasked": true}])
    );
    let after_headers = record(&env, &id).await.unwrap();
    let new_version = s(&after_headers, "secretVersion").unwrap();
    assert_ne!(
        new_version, created_version,
        "the record moved to a new version"
    );
    assert_eq!(s(&after_headers, "secretArn"), Some(arn.as_str()));
    assert_eq!(
        strings(&after_headers, "headerNames"),
        ["X-Tenant", "X-Api-Token"]
    );
    assert_eq!(n(&after_headers, "version"), Some(3));
    let document = document_of(&env, &after_headers).await.expect("document");
    assert_eq!(document_headers(&document), headers);
    assert_eq!(document["signingSecret"], signing_secret);
    let everything = format!("{after_headers:?}");
    for (_, value) in &headers {
        assert!(
            !everything.contains(value.as_str()),
            "header value in the record"
        );
    }
    assert!(
        !everything.contains(signing_secret),
        "signing secret in the record"
    );
    let old = secret_document(&env, &arn, Some(&created_version)).await;
    assert_eq!(
        old.as_ref().map(document_names),
        Some(vec!["Authorization".to_owned()]),
        "the old version is still the old document"
    );

    // reset-circuit: a tripped circuit (written as the delivery side would) closes.
    env.dynamodb
        .update_item()
        .table_name(&env.resources.webhooks_table)
        .key("id", AttributeValue::S(id.clone()))
        .update_expression("SET consecutiveFailures = :n, circuitOpenedAt = :at")
        .expression_attribute_values(":n", AttributeValue::N("7".into()))
        .expression_attribute_values(":at", AttributeValue::S("2026-11-27T10:00:00Z".into()))
        .send()
        .await
        .unwrap();
    let reset = send(&app, reset_circuit(token, &id)).await;
    assert_eq!(reset.status, 200, "{}", reset.raw);
    let after_reset = record(&env, &id).await.unwrap();
    assert_eq!(n(&after_reset, "consecutiveFailures"), Some(0));
    assert!(after_reset["circuitOpenedAt"].is_null());
    assert_eq!(after_reset["isActive"], AttributeValue::Bool(true));
    assert_eq!(n(&after_reset, "version"), Some(4));
    assert_eq!(
        s(&after_reset, "secretVersion"),
        s(&after_headers, "secretVersion")
    );
    assert_eq!(
        quota(&env, &key.id).await,
        1,
        "no call but create and delete counts"
    );

    // DELETE: no record (at most a tombstone with none of its fields), no secret (not even
    // one scheduled for deletion), the count back to 0.
    let deleted = send(&app, delete_webhook(token, &id)).await;
    assert_eq!((deleted.status, deleted.raw.as_str()), (204, ""));
    assert_eq!(record(&env, &id).await, None);
    if let Some(tombstone) = item(&env, &id).await {
        for field in WEBHOOK_FIELDS {
            assert!(!tombstone.contains_key(field), "tombstone keeps {field}");
        }
        let expires = n(&tombstone, "expiresAt").expect("the tombstone expires by TTL");
        assert!(expires > time::OffsetDateTime::now_utc().unix_timestamp());
    }
    assert!(env.secret_names().await.is_empty(), "secret left");
    let gone = env
        .secretsmanager
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await;
    assert!(
        gone.as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "the secret is gone at once, not scheduled: {gone:?}"
    );
    assert_eq!(quota(&env, &key.id).await, 0);
    assert_eq!(send(&app, get_one(token, &id)).await.status, 404);
    assert_eq!(send(&app, list(token)).await.json["data"]["total"], 0);

    // A second DELETE: 404, and the count stays at 0.
    let again = send(&app, delete_webhook(token, &id)).await;
    assert_eq!((again.status, again.code()), (404, "RESOURCE_NOT_FOUND"));
    assert_eq!(quota(&env, &key.id).await, 0);
}

async fn create_one(app: &support::moto::AwsApp, token: &str, body: &str) -> String {
    let answer = send(app, post(body).token(token)).await;
    assert_eq!(answer.status, 201, "{}", answer.raw);
    answer.json["data"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_list_reads_the_index_and_returns_exactly_the_keys_live_webhooks_oldest_first() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS, READ_WEBHOOKS]).await;
    let (_, other_token) = env.create_key(&[WRITE_WEBHOOKS, READ_WEBHOOKS]).await;
    let (token, other_token) = (token.expose(), other_token.expose());
    let app = env.app(Settings::default());
    let body = |n: usize, company: bool| {
        let mut body = json!({"url": format!("https://hooks.example.com/{n}"), "events": ["ping"]});
        if company {
            body["companyId"] = json!(COMPANY);
        }
        body.to_string()
    };
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(create_one(&app, token, &body(n, n == 1)).await);
    }
    let foreign = create_one(&app, other_token, &body(9, false)).await;
    // One of the key's webhooks is deleted: its tombstone must not be listed.
    let deleted = ids.remove(3);
    assert_eq!(
        send(&app, delete_webhook(token, &deleted)).await.status,
        204
    );

    // Creation times that run against the order of the ids, two of them equal (then the id
    // decides), so that "oldest first" is what orders the answer.
    let mut by_id = ids.clone();
    by_id.sort();
    let times = [
        "2026-03-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
    ];
    for (id, at) in by_id.iter().zip(times) {
        env.dynamodb
            .update_item()
            .table_name(&env.resources.webhooks_table)
            .key("id", AttributeValue::S(id.clone()))
            .update_expression("SET createdAt = :at")
            .expression_attribute_values(":at", AttributeValue::S(at.into()))
            .send()
            .await
            .unwrap();
    }
    let expected_order = vec![by_id[1].clone(), by_id[2].clone(), by_id[0].clone()];

    let listed = send(&app, list(token)).await;
    assert_eq!(listed.status, 200, "{}", listed.raw);
    assert_eq!(listed.json["data"]["total"], 3);
    let listed_ids: Vec<String> = listed.json["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed_ids, expected_order, "oldest first, then by id");
    assert!(!listed_ids.contains(&foreign) && !listed_ids.contains(&deleted));

    // The index itself holds exactly the key's live records: no tombstone, counter or rate
    // item (they carry no apiKeyId).
    let indexed = env
        .dynamodb
        .query()
        .table_name(&env.resources.webhooks_table)
        .index_name("byApiKey")
        .key_condition_expression("apiKeyId = :key")
        .expression_attribute_values(":key", AttributeValue::S(key.id.clone()))
        .send()
        .await
        .unwrap();
    let indexed: HashSet<String> = indexed
        .items()
        .iter()
        .map(|i| s(i, "id").unwrap().to_owned())
        .collect();
    assert_eq!(indexed, ids.iter().cloned().collect::<HashSet<_>>());

    // With companyId: only that company's webhook.
    let query: std::collections::HashMap<String, String> =
        [("companyId".to_owned(), COMPANY.to_owned())].into();
    let request = list(token).build().with_query_string_parameters(query);
    let filtered = parse(instaview_webhooks::http::handle(&app, request).await);
    assert_eq!(filtered.status, 200, "{}", filtered.raw);
    let filtered: Vec<&str> = filtered.json["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(filtered, [ids[1].as_str()]);

    // The other key sees only its own.
    let theirs = send(&app, list(other_token)).await;
    assert_eq!(theirs.json["data"]["total"], 1);
    assert_eq!(theirs.json["data"]["data"][0]["id"], foreign.as_str());
}

#[tokio::test]
async fn every_authenticated_request_counts_in_one_rate_item_per_key_and_hour_that_expires() {
    let env = AwsEnv::new().await;
    let (key, token) = env.create_key(&[WRITE_WEBHOOKS, READ_WEBHOOKS]).await;
    let token = token.expose();
    let app = env.app(Settings::default());
    let hour = |now: time::OffsetDateTime| now.unix_timestamp() - now.unix_timestamp() % 3600;
    let started = time::OffsetDateTime::now_utc();
    let created = send(&app, post(SEED_BODY).token(token)).await;
    let id = created.json["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(send(&app, get_one(token, &id)).await.status, 200);
    assert_eq!(send(&app, list(token)).await.status, 200);
    assert_eq!(send(&app, post("{}").token(token)).await.status, 400);
    // Not counted: no valid key.
    assert_eq!(send(&app, list(UNKNOWN_TOKEN)).await.status, 401);
    let ended = time::OffsetDateTime::now_utc();

    let rate_items: Vec<Item> = env
        .all_items()
        .await
        .into_iter()
        .filter(|i| s(i, "id").is_some_and(|id| id.starts_with("rate#")))
        .collect();
    let total: i64 = rate_items.iter().filter_map(|i| n(i, "hourCount")).sum();
    assert_eq!(total, 4, "four requests of the key, one count each");
    for item in &rate_items {
        let id = s(item, "id").unwrap();
        let hour_start: i64 = id
            .strip_prefix(&format!("rate#{}#", key.id))
            .unwrap_or_else(|| panic!("{id} is not this key's"))
            .parse()
            .unwrap();
        assert!((hour(started)..=hour(ended)).contains(&hour_start), "{id}");
        assert_eq!(
            n(item, "expiresAt"),
            Some(hour_start + 2 * 3600),
            "expires an hour after its window ends"
        );
        assert!(!item.contains_key("apiKeyId"), "not in the index");
    }
    if hour(started) == hour(ended) {
        assert_eq!(rate_items.len(), 1);
    }
    let ttl = env
        .dynamodb
        .describe_time_to_live()
        .table_name(&env.resources.webhooks_table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));
    assert_eq!(
        ttl.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );
}

#[tokio::test]
async fn a_record_written_before_versions_were_pinned_is_pinned_by_its_first_header_patch() {
    let env = AwsEnv::new().await;
    let (_, token) = env.create_key(&[WRITE_WEBHOOKS, READ_WEBHOOKS]).await;
    let token = token.expose();
    let app = env.app(Settings::default());
    let id = create_one(&app, token, SEED_BODY).await;
    // As an older release wrote it: no secretVersion (the current version is meant).
    env.dynamodb
        .update_item()
        .table_name(&env.resources.webhooks_table)
        .key("id", AttributeValue::S(id.clone()))
        .update_expression("REMOVE secretVersion")
        .send()
        .await
        .unwrap();
    assert_eq!(send(&app, get_one(token, &id)).await.status, 200);

    let headers = vec![("X-Pinned".to_owned(), "pinned value".to_owned())];
    let patched = send(&app, patch_webhook(token, &id, &headers_body(&headers))).await;
    assert_eq!(patched.status, 200, "{}", patched.raw);
    let after = record(&env, &id).await.unwrap();
    assert!(s(&after, "secretVersion").is_some(), "pinned now");
    assert_eq!(strings(&after, "headerNames"), ["X-Pinned"]);
    let document = document_of(&env, &after).await.expect("document");
    assert_eq!(document_headers(&document), headers);
}
