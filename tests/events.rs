//! Every sample API Gateway event under `events/` gets the answer its file name states.
//!
//! File names are `<case>.<status>[.<ERROR_CODE>].json`. Each event is parsed the way the Lambda
//! runtime parses it (`lambda_http::request::from_str`) and answered by the real handler, backed
//! by in-memory stores that hold the two development keys from `local.env`.

mod support;

use std::path::{Path, PathBuf};

use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::{ApiKey, ApiToken, READ_WEBHOOKS, WRITE_WEBHOOKS};
use instaview_webhooks::http::handle;
use instaview_webhooks::service::App;
use instaview_webhooks::store::memory::{MemoryApiKeys, MemorySecrets, MemoryWebhooks};
use serde_json::Value;
use support::SEED_FIELDS;
use uuid::Uuid;

/// Fewer files than this means the directory was emptied or moved, not that all is well.
const MIN_EVENT_FILES: usize = 20;

const DEV_WRITE_KEY_ID: &str = "dev-write-key";
const DEV_READONLY_KEY_ID: &str = "dev-readonly-key";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dev_key(id: &str, scopes: &[&str], company: Uuid) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        company_ids: vec![company],
        ..support::key(id, scopes)
    }
}

/// The handler over in-memory stores holding the write and the read-only development keys.
fn dev_app() -> App<MemoryApiKeys, MemoryWebhooks, MemorySecrets> {
    let env = support::moto::local_env();
    let get = |name: &str| {
        env.get(name)
            .unwrap_or_else(|| panic!("local.env has no {name}"))
            .as_str()
    };
    let company = Uuid::parse_str(get("DEV_COMPANY_ID")).expect("DEV_COMPANY_ID is a UUID");
    let token = |name: &str| {
        ApiToken::parse(get(name)).unwrap_or_else(|| panic!("{name} is not a well-formed token"))
    };
    let keys = MemoryApiKeys::default();
    keys.insert(
        &token("DEV_API_TOKEN"),
        dev_key(DEV_WRITE_KEY_ID, &[WRITE_WEBHOOKS, READ_WEBHOOKS], company),
    );
    keys.insert(
        &token("DEV_READONLY_API_TOKEN"),
        dev_key(DEV_READONLY_KEY_ID, &["read:webhooks"], company),
    );
    App::new(
        keys,
        MemoryWebhooks::default(),
        MemorySecrets::default(),
        Settings::default(),
    )
}

/// Every `*.json` below `dir`, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                // The events published upstream are not named for their answer; they have
                // their own test (tests/published_events.rs).
                if !path.ends_with("published") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `(status, error code)` from `<case>.<status>[.<ERROR_CODE>].json`.
fn expected_outcome(path: &Path) -> Result<(u16, Option<String>), String> {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json"))
        .ok_or("file name is not UTF-8 or does not end in .json")?;
    let parts: Vec<&str> = stem.split('.').collect();
    let (status, code) = match parts.as_slice() {
        [_case, status] => (status, None),
        [_case, status, code] => (status, Some((*code).to_owned())),
        _ => return Err("name is not <case>.<status>[.<ERROR_CODE>].json".into()),
    };
    let status = status
        .parse::<u16>()
        .map_err(|_| format!("`{status}` in the name is not an HTTP status"))?;
    Ok((status, code))
}

/// What is wrong with the answer to one event; empty when it matches its name.
async fn check_event(
    app: &App<MemoryApiKeys, MemoryWebhooks, MemorySecrets>,
    path: &Path,
) -> Vec<String> {
    let (status, code) = match expected_outcome(path) {
        Ok(expected) => expected,
        Err(problem) => return vec![problem],
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return vec![format!("cannot read: {e}")],
    };
    let request = match lambda_http::request::from_str(&text) {
        Ok(request) => request,
        Err(e) => return vec![format!("not an event lambda_http accepts: {e}")],
    };
    let response = handle(app, request).await;

    let mut problems = Vec::new();
    let body: Value = match serde_json::from_slice(response.body().as_ref()) {
        Ok(body) => body,
        Err(e) => return vec![format!("answer body is not JSON: {e}")],
    };
    let got_status = response.status().as_u16();
    let got_code = body.pointer("/error/code").and_then(Value::as_str);
    if got_status != status {
        // The other checks would only repeat this one.
        let message = body.pointer("/error/message").and_then(Value::as_str);
        return vec![format!(
            "status {got_status} ({got_code:?}: {message:?}), the name says {status}"
        )];
    }
    if let Some(code) = &code {
        if got_code != Some(code.as_str()) {
            problems.push(format!("error.code {got_code:?}, the name says {code}"));
        }
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    if content_type != Some("application/json") {
        problems.push(format!(
            "content-type {content_type:?}, expected application/json"
        ));
    }
    if !response.headers().contains_key("x-request-id") {
        problems.push("no x-request-id header".into());
    }
    if body.get("success") != Some(&Value::Bool((200..300).contains(&status))) && status != 204 {
        problems.push(format!("success is {:?}", body.get("success")));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match got_status {
        201 => match body.get("data").and_then(Value::as_object) {
            Some(data) => {
                let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                if keys != SEED_FIELDS {
                    problems.push(format!(
                        "data keys {keys:?}, the seed's are {SEED_FIELDS:?}"
                    ));
                }
                let location = data
                    .get("id")
                    .and_then(Value::as_str)
                    .map(|id| format!("/webhooks/{id}"));
                if header("location") != location {
                    problems.push(format!(
                        "location {:?}, expected {location:?}",
                        header("location")
                    ));
                }
                if header("cache-control").as_deref() != Some("no-store") {
                    problems.push(format!(
                        "cache-control {:?}, expected no-store",
                        header("cache-control")
                    ));
                }
            }
            None => problems.push("a 201 without an object in data".into()),
        },
        401 if !header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")) => {
            problems.push("a 401 without WWW-Authenticate: Bearer".into());
        }
        405 if header("allow").is_none() => {
            problems.push("405 without an Allow header".to_string());
        }
        _ => {}
    }
    problems
}

#[tokio::test]
async fn every_sample_event_gets_the_outcome_its_name_states() {
    let events_dir = manifest_dir().join("events");
    let files = json_files(&events_dir);
    assert!(
        files.len() >= MIN_EVENT_FILES,
        "found {} event files under {}, expected at least {MIN_EVENT_FILES}",
        files.len(),
        events_dir.display()
    );

    let app = dev_app();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.strip_prefix(manifest_dir()).unwrap_or(path).display();
        for problem in check_event(&app, path).await {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} sample events did not get the outcome their name states:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
}
