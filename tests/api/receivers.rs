//! The README's Python snippet (docs/receivers/verify_delivery.py) verifies a real delivery:
//! a test ping sent by the handler to a receiver on 127.0.0.1, checked with the Standard
//! Webhooks library and with plain HMAC, during a rotation too. A tampered body is refused.

use crate::support;

use std::path::Path;
use std::process::Command;

use instaview_webhooks::http::handle;
use serde_json::json;
use support::receiver::{Received, Receiver, Reply};
use support::*;

fn python() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `make venv` (or `make test`) to install standardwebhooks",
        python.display()
    );
    python
}

/// Runs the snippet on what the receiver got; true when both checks verified it.
fn snippet_verifies(secret: &str, received: &Received, body: &[u8]) -> bool {
    let dir = std::env::temp_dir().join(format!("receivers-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let headers: serde_json::Map<String, serde_json::Value> = received
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap())))
        .collect();
    std::fs::write(dir.join("body"), body).unwrap();
    std::fs::write(
        dir.join("headers.json"),
        serde_json::to_vec(&headers).unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/receivers/verify_delivery.py");
    let output = Command::new(python())
        .arg(script)
        .arg(dir.join("body"))
        .arg(dir.join("headers.json"))
        .env("SIGNING_SECRET", secret)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    output.status.success()
}

async fn send(app: &MemoryApp, request: RequestBuilder) -> Answer {
    parse(handle(app, request.build()).await)
}

#[tokio::test]
async fn the_readme_python_snippet_verifies_a_real_delivery_and_refuses_a_tampered_one() {
    let app = memory_app();
    let mut receiver = Receiver::start(Reply::status(200)).await;
    let url = format!("http://127.0.0.1:{}/hooks", receiver.address.port());
    let created = send(
        &app,
        post(&json!({"url": url, "events": ["ping"]}).to_string()),
    )
    .await;
    let id = created.json["data"]["id"].as_str().unwrap().to_owned();
    let old = created.json["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let test = || post("").path(&format!("/webhooks/{id}/test"));

    send(&app, test()).await;
    let got = receiver.next().await;
    assert!(snippet_verifies(&old, &got, &got.body));
    let mut tampered = got.body.to_vec();
    tampered[0] = b' ';
    assert!(!snippet_verifies(&old, &got, &tampered));
    assert!(!snippet_verifies(&"ab".repeat(32), &got, &got.body));

    // During a rotation either secret verifies the same delivery.
    let rotated = send(
        &app,
        post("").path(&format!("/webhooks/{id}/rotate-secret")),
    )
    .await;
    let new = rotated.json["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    send(&app, test()).await;
    let got = receiver.next().await;
    assert!(snippet_verifies(&new, &got, &got.body));
    assert!(snippet_verifies(&old, &got, &got.body));
}

#[test]
fn the_readme_shows_the_python_snippet_as_it_is_tested() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let script = std::fs::read_to_string(root.join("docs/receivers/verify_delivery.py")).unwrap();
    let block = |from: &str, to: &str| {
        let start = script.find(from).unwrap();
        let end = start + script[start..].find(to).unwrap();
        script[start..end].trim().to_owned()
    };
    for function in [
        block(
            "def verify_with_library",
            "# --- README: Python, plain HMAC",
        ),
        block("def verify_with_hmac", "# --- end of the README"),
    ] {
        assert!(
            readme.contains(&function),
            "README.md must show this code as tested:\n{function}"
        );
    }
}
