//! Secrets never reach the logs: every outcome runs with distinctive token, signing secret and
//! header values while the production subscriber (at its most verbose) writes to a buffer.

use crate::support;

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

const HEADER_VALUE: &str = "Bearer hv-9f3b2c1d8e7a6b5c4d3e2f1a0b9c8d7e";

fn body_with_header(value: &str) -> String {
    format!(
        r#"{{"url":"https://api.example.com/hook","events":["ping"],"headers":[{{"name":"Authorization","value":"{value}"}}]}}"#
    )
}

#[test]
fn logs_and_error_answers_hold_no_token_signing_secret_or_header_value_in_any_outcome() {
    let captured = CapturedLogs::default();
    let subscriber = telemetry::subscriber(telemetry::filter("trace"), captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (answers, token, suspended_token, read_only_token) = runtime.block_on(async {
        let env = AwsEnv::new().await;
        let (_, token) = env.create_key(&[WRITE_WEBHOOKS]).await;
        let (_, read_only) = env.create_key(&["read:webhooks"]).await;
        let (suspended_key, suspended) = env.create_key(&[WRITE_WEBHOOKS]).await;
        env.admin()
            .suspend_key(&suspended_key.id, "Unpaid invoice")
            .await
            .unwrap();
        let token = token.expose().to_owned();
        let app = env.app(Settings {
            max_webhooks_per_key: 3,
            ..Settings::default()
        });
        let body = body_with_header(HEADER_VALUE);
        let mut answers = Vec::new();
        let requests = vec![
            // 201, then 201 replayed (the secret read back), then 409 reused, 409 limit.
            post(&body)
                .token(&token)
                .header("idempotency-key", "leak-1"),
            post(&body)
                .token(&token)
                .header("idempotency-key", "leak-1"),
            post(&body.replace("ping", "interview.started"))
                .token(&token)
                .header("idempotency-key", "leak-1"),
            post(&body).token(&token),
            post(&body).token(&token),
            post(&body).token(&token),
            // 400 with the header value inside an invalid header, and the token in a body.
            post(&body_with_header(&format!("{HEADER_VALUE} "))).token(&token),
            post(&format!("{{\"url\": \"{token}")).token(&token),
            // 401 unknown, malformed, suspended; 403 scope, 403 company.
            post(&body).token(UNKNOWN_TOKEN),
            post(&body).header("authorization", &format!("Basic {token}")),
            post(&body).token(suspended.expose()),
            post(&body).token(read_only.expose()),
            post(&body.replacen('{', &format!("{{\"companyId\":\"{OTHER_COMPANY}\","), 1))
                .token(&token),
            // 404, 405, 413, 415.
            post(&body).token(&token).path("/x"),
            post(&body).token(&token).method(Method::PUT),
            post(&format!("{body}{}", " ".repeat(600 * 1024))).token(&token),
            post(&body)
                .token(&token)
                .header("content-type", "text/plain"),
        ];
        for request in requests {
            answers.push(parse(handle(&app, request.build()).await));
        }

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
        answers.push(parse(
            handle(&failing, post(&body).token(&token).build()).await,
        ));
        (
            answers,
            token,
            suspended.expose().to_owned(),
            read_only.expose().to_owned(),
        )
    });

    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [
            201, 201, 409, 201, 201, 409, 400, 400, 401, 401, 401, 403, 403, 404, 405, 413, 415,
            503
        ]
    );
    let secrets: Vec<&str> = answers
        .iter()
        .filter_map(|a| a.json["data"]["signingSecret"].as_str())
        .collect();
    assert_eq!(secrets.len(), 4);

    let hex_value = HEADER_VALUE.split(' ').nth(1).unwrap();
    let credentials = [
        token.as_str(),
        suspended_token.as_str(),
        read_only_token.as_str(),
        UNKNOWN_TOKEN,
        hex_value,
    ];
    for answer in &answers {
        for needle in credentials {
            assert!(
                !answer.raw.contains(needle),
                "{needle} in an answer: {}",
                answer.raw
            );
        }
        if answer.status != 201 {
            for secret in &secrets {
                assert!(
                    !answer.raw.contains(secret),
                    "a signing secret in an error: {}",
                    answer.raw
                );
            }
        }
    }

    let logs = captured.text();
    let request_lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("status").is_some())
        .collect();
    assert_eq!(
        request_lines.len(),
        answers.len(),
        "one line per request:\n{logs}"
    );
    for line in &request_lines {
        for field in ["request_id", "route", "status", "latency_ms"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
    assert!(request_lines
        .iter()
        .any(|l| l.get("webhook_id").is_some() && l.get("api_key_id").is_some()));
    for needle in credentials.iter().copied().chain(secrets.iter().copied()) {
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
