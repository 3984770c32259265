//! Property tests: no input, however hostile, panics the handler or earns a 5xx, and every
//! rule holds for generated values, not only for the examples in the unit tests.

mod support;

use instaview_webhooks::domain::{NewWebhook, UrlPolicy, WebhookUrl};
use instaview_webhooks::http::handle;
use lambda_http::Body;
use proptest::prelude::*;
use serde_json::{json, Value};
use support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `body` as the request body and returns the status, checking the envelope.
fn status_for(app: &MemoryApp, rt: &tokio::runtime::Runtime, body: Body) -> u16 {
    let answer = parse(rt.block_on(handle(app, post("").body(body).build())));
    assert!(
        answer.status < 500,
        "5xx for a client's input: {}",
        answer.raw
    );
    assert!(
        answer.json.is_object(),
        "not a JSON envelope: {}",
        answer.raw
    );
    answer.status
}

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("url".to_string()),
                    Just("events".to_string()),
                    Just("name".to_string()),
                    Just("description".to_string()),
                    Just("companyId".to_string()),
                    Just("headers".to_string()),
                    Just("value".to_string()),
                    ".{0,10}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_give_5xx(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (app, rt) = (memory_app(), runtime());
        let status = status_for(&app, &rt, Body::Binary(bytes));
        prop_assert!(matches!(status, 201 | 400), "{status}");
    }

    #[test]
    fn arbitrary_json_never_panics_or_gives_5xx(value in json_value()) {
        let (app, rt) = (memory_app(), runtime());
        let status = status_for(&app, &rt, Body::Text(value.to_string()));
        prop_assert!(matches!(status, 201 | 400 | 403), "{status}");
    }

    #[test]
    fn arbitrary_field_values_in_a_valid_shape_never_panic(
        url in ".{0,64}",
        name in ".{0,64}",
        description in ".{0,64}",
        header_name in ".{0,32}",
        header_value in ".{0,64}",
        company in ".{0,40}",
        events in prop::collection::vec(".{0,20}", 0..8),
    ) {
        let (app, rt) = (memory_app(), runtime());
        let body = json!({
            "url": url, "name": name, "description": description, "companyId": company,
            "events": events, "headers": [{"name": header_name, "value": header_value}],
        });
        status_for(&app, &rt, Body::Text(body.to_string()));
    }

    #[test]
    fn valid_requests_are_created(
        path in "[a-z0-9/]{0,40}",
        name in "[A-Za-z0-9 ]{0,40}[A-Za-z]",
        header_values in prop::collection::vec("[!-~]([ -~]{0,30}[!-~])?", 0..10),
    ) {
        let (app, rt) = (memory_app(), runtime());
        let headers: Vec<Value> = header_values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"name": format!("X-Custom-{i}"), "value": v}))
            .collect();
        let body = json!({
            "url": format!("https://hooks.example.com/{path}"),
            "name": name, "events": ["ping"], "headers": headers,
        });
        prop_assert_eq!(status_for(&app, &rt, Body::Text(body.to_string())), 201);
    }

    #[test]
    fn url_parser_never_panics(input in "\\PC{0,100}") {
        let _ = WebhookUrl::parse(&input, UrlPolicy::default());
    }

    #[test]
    fn accepted_urls_are_https_or_local_http(input in "(https?|HTTPS?|ftp)://[a-z0-9.:\\[\\]@%-]{0,30}(/[a-z]{0,5})?") {
        if WebhookUrl::parse(&input, UrlPolicy::default()).is_ok() {
            let lower = input.to_ascii_lowercase();
            prop_assert!(lower.starts_with("https://") || lower.starts_with("http://localhost")
                || lower.starts_with("http://127.0.0.1") || lower.starts_with("http://[::1]"), "{}", input);
        }
        if WebhookUrl::parse(&input, UrlPolicy { allow_localhost: false }).is_ok() {
            prop_assert!(input.to_ascii_lowercase().starts_with("https://"));
        }
    }
}

#[test]
fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let (app, rt) = (memory_app(), runtime());
    for depth in [100, 1_000, 100_000] {
        let body = format!("{{\"url\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(status_for(&app, &rt, Body::Text(body)), 400);
    }
}

#[test]
fn huge_numbers_are_a_400() {
    let (app, rt) = (memory_app(), runtime());
    for number in [
        "1e400",
        "-1e400",
        &"9".repeat(10_000),
        "18446744073709551616",
    ] {
        let body = format!(
            "{{\"url\":\"https://a.example.com\",\"events\":[\"ping\"],\"name\":{number}}}"
        );
        assert_eq!(status_for(&app, &rt, Body::Text(body)), 400, "{number:.20}");
    }
}

#[test]
fn invalid_utf8_and_lone_surrogates_are_a_400() {
    let (app, rt) = (memory_app(), runtime());
    let mut bytes = br#"{"url":"https://a.example.com","events":["ping"],"name":""#.to_vec();
    bytes.extend_from_slice(&[0xc3, 0x28, b'"', b'}']);
    assert_eq!(status_for(&app, &rt, Body::Binary(bytes)), 400);
    for escape in [r"\ud800", r"\udfff", r"\ud800\u0041", r"\u0000"] {
        let body =
            format!(r#"{{"url":"https://a.example.com","events":["ping"],"name":"a{escape}"}}"#);
        assert_eq!(status_for(&app, &rt, Body::Text(body)), 400, "{escape}");
    }
}

#[test]
fn ten_thousand_headers_are_a_400_with_a_bounded_answer() {
    let (app, rt) = (memory_app(), runtime());
    let headers: Vec<Value> = (0..10_000)
        .map(|i| json!({"name": format!("X-H{i}"), "value": "v"}))
        .collect();
    let body = json!({"url": "https://a.example.com", "events": ["ping"], "headers": headers});
    let answer = parse(rt.block_on(handle(&app, post(&body.to_string()).build())));
    assert_eq!(answer.status, 400);
    assert!(
        answer.raw.len() < 4096,
        "answer of {} bytes",
        answer.raw.len()
    );
}

#[test]
fn parser_rejects_everything_the_rules_forbid_without_panicking_on_edge_sizes() {
    for size in [0usize, 1, 2047, 2048, 2049, 512 * 1024] {
        let body = "a".repeat(size);
        assert!(NewWebhook::parse(body.as_bytes(), UrlPolicy::default()).is_err());
    }
}
