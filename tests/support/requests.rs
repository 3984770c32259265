//! Requests to the webhook routes other than create, and reads of what they stored, for the
//! moto-backed tests (`aws`: `api`, `faults`, `concurrency`, `round_trips`).
#![allow(dead_code)]

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use instaview_webhooks::service::App;
use instaview_webhooks::store::{ApiKeyStore, SecretStore, WebhookStore};
use lambda_http::http::Method;
use lambda_http::Body;
use serde_json::Value;

use crate::support::moto::AwsEnv;
use crate::support::{parse, post, Answer, RequestBuilder};

pub type Item = HashMap<String, AttributeValue>;

/// A request without a body (`GET`, `DELETE`, `POST …/reset-circuit`).
pub fn bodiless(token: &str, method: Method, path: &str) -> RequestBuilder {
    post("")
        .token(token)
        .method(method)
        .path(path)
        .without_header("content-type")
        .body(Body::Empty)
}

pub fn get_one(token: &str, id: &str) -> RequestBuilder {
    bodiless(token, Method::GET, &format!("/webhooks/{id}"))
}

pub fn list(token: &str) -> RequestBuilder {
    bodiless(token, Method::GET, "/webhooks")
}

pub fn patch_webhook(token: &str, id: &str, body: &Value) -> RequestBuilder {
    post(&body.to_string())
        .token(token)
        .method(Method::PATCH)
        .path(&format!("/webhooks/{id}"))
}

pub fn delete_webhook(token: &str, id: &str) -> RequestBuilder {
    bodiless(token, Method::DELETE, &format!("/webhooks/{id}"))
}

pub fn reset_circuit(token: &str, id: &str) -> RequestBuilder {
    bodiless(
        token,
        Method::POST,
        &format!("/webhooks/{id}/reset-circuit"),
    )
}

pub async fn send<K, W, S, L, Q>(app: &App<K, W, S, L, Q>, request: RequestBuilder) -> Answer
where
    K: ApiKeyStore,
    W: WebhookStore,
    S: SecretStore,
    L: instaview_webhooks::store::delivery_log::DeliveryLog,
    Q: instaview_webhooks::store::delivery_log::PipelineQueue,
{
    parse(instaview_webhooks::http::handle(app, request.build()).await)
}

/// `{"headers": [{"name", "value"}, …]}` for a PATCH.
pub fn headers_body(headers: &[(String, String)]) -> Value {
    let list: Vec<Value> = headers
        .iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    serde_json::json!({ "headers": list })
}

pub fn s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

pub fn n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// The strings of a list attribute (`headerNames`, `events`).
pub fn strings(item: &Item, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

/// The item under `id` as stored (records, tombstones, counters), strongly consistent.
pub async fn item(env: &AwsEnv, id: &str) -> Option<Item> {
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

/// The live webhook record `id` (not a tombstone).
pub async fn record(env: &AwsEnv, id: &str) -> Option<Item> {
    item(env, id).await.filter(|i| !i.contains_key("fence"))
}

/// The per-key webhook count (0 when the key never had one).
pub async fn quota(env: &AwsEnv, api_key_id: &str) -> i64 {
    item(env, &format!("quota#{api_key_id}"))
        .await
        .and_then(|i| n(&i, "webhookCount"))
        .unwrap_or(0)
}

/// The secret document at `version` of secret `arn`; `None` if the secret or version is gone.
pub async fn secret_document(env: &AwsEnv, arn: &str, version: Option<&str>) -> Option<Value> {
    let answer = env
        .secretsmanager
        .get_secret_value()
        .secret_id(arn)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await;
    match answer {
        Ok(value) => Some(serde_json::from_str(value.secret_string()?).expect("JSON document")),
        Err(error) => {
            let service = error.as_service_error();
            assert!(
                service.is_some_and(|e| e.is_resource_not_found_exception()),
                "reading {arn} at {version:?}: {error:?}"
            );
            None
        }
    }
}

/// The secret document a record points at (its `secretArn` at its `secretVersion`).
pub async fn document_of(env: &AwsEnv, record: &Item) -> Option<Value> {
    let arn = s(record, "secretArn").expect("record has secretArn");
    secret_document(env, arn, s(record, "secretVersion")).await
}

/// `(name, value)` of each header of a secret document.
pub fn document_headers(document: &Value) -> Vec<(String, String)> {
    document["headers"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|h| {
                    (
                        h["name"].as_str().unwrap_or_default().to_owned(),
                        h["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The header names of a secret document, in its order.
pub fn document_names(document: &Value) -> Vec<String> {
    document_headers(document)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}
