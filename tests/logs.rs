//! Secrets never reach the logs: every outcome runs with distinctive token, signing secret and
//! header values while the production subscriber (at its most verbose) writes to a buffer.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::WRITE_WEBHOOKS;
use instaview_webhooks::http::handle;
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::telemetry;
use lambda_http::http::Method;
use serde_json::Value;
use support::moto::{sdk_config_for, AwsEnv};
use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const HEADER_VALUE: &str = "Bearer hv-9f3b2c1d8e7a6b5c4d3e2f1a0b9c8d7e";

fn body_with_header(value: &str) -> String {
    format!(
        r#"{{"url":"https://api.example.com/hook","events":["ping"],"headers":[{{"name":"Authorization","value":"{value}"}}]}}"#
    )
}

#[test]
fn logs_hold_no_token_signing_secret_or_header_value_in_any_outcome() {
    let captured = Captured::default();
    let subscriber = telemetry::subscriber(telemetry::filter("trace"), captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (secrets, token) = runtime.block_on(async {
        let env = AwsEnv::new().await;
        let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
        let token = token.expose().to_owned();
        let app = env.app(Settings::default());
        let mut secrets = Vec::new();
        let send = |request: support::RequestBuilder| {
            let app = &app;
            async move { parse(handle(app, request.build()).await) }
        };

        // 201, twice (the second served from the key cache).
        for _ in 0..2 {
            let answer = send(post(&body_with_header(HEADER_VALUE)).token(&token)).await;
            assert_eq!(answer.status, 201, "{}", answer.raw);
            secrets.push(
                answer.json["data"]["signingSecret"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        // 400 with the header value inside an invalid header.
        let invalid = format!("{HEADER_VALUE} ");
        assert_eq!(
            send(post(&body_with_header(&invalid)).token(&token))
                .await
                .status,
            400
        );
        // 400 with the token in a malformed body.
        assert_eq!(
            send(post(&format!("{{\"url\": \"{token}")).token(&token))
                .await
                .status,
            400
        );
        // 401 for an unknown key, 401 for a malformed one, 405, 404, 415.
        assert_eq!(send(post("{}").token(UNKNOWN_TOKEN)).await.status, 401);
        assert_eq!(
            send(post("{}").header("authorization", &format!("Basic {token}")))
                .await
                .status,
            401
        );
        assert_eq!(
            send(post("{}").token(&token).method(Method::GET))
                .await
                .status,
            405
        );
        assert_eq!(send(post("{}").token(&token).path("/x")).await.status, 404);
        assert_eq!(
            send(
                post("{}")
                    .token(&token)
                    .header("content-type", "text/plain")
            )
            .await
            .status,
            415
        );

        // 503: the record cannot be written, the secret is undone.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let broken =
            aws_sdk_dynamodb::Client::new(&sdk_config_for(&format!("http://{closed}")).await);
        let failing = App::new(
            DynamoApiKeys::new(env.dynamodb.clone(), &env.resources.api_keys_table),
            DynamoWebhooks::new(broken, &env.resources.webhooks_table),
            env.secrets_store(),
            Settings::default(),
        );
        let answer = parse(
            handle(
                &failing,
                post(&body_with_header(HEADER_VALUE)).token(&token).build(),
            )
            .await,
        );
        assert_eq!(answer.status, 503);
        (secrets, token)
    });

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    let request_lines: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("status").is_some())
        .collect();
    assert_eq!(request_lines.len(), 10, "one line per request:\n{logs}");
    for line in &request_lines {
        for field in ["request_id", "route", "status", "latency_ms"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
    assert!(request_lines
        .iter()
        .any(|l| l.get("webhook_id").is_some() && l.get("api_key_id").is_some()));

    let hex_value = HEADER_VALUE.split(' ').nth(1).unwrap();
    let mut forbidden = vec![token.as_str(), hex_value, UNKNOWN_TOKEN];
    forbidden.extend(secrets.iter().map(String::as_str));
    for needle in forbidden {
        assert!(
            !logs.contains(needle),
            "a secret reached the logs: {needle}\n{logs}"
        );
    }
    for internal in ["arn:aws", "instaview-local-", "Connection refused"] {
        assert!(
            !logs.contains(internal),
            "internals reached the logs: {internal}\n{logs}"
        );
    }
}
