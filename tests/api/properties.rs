//! Property tests: no input, however hostile, panics the handler or earns a 5xx, and every
//! rule holds for generated values, not only for the examples in the unit tests.

use crate::support;

use instaview_webhooks::domain::{NewWebhook, UrlPolicy, WebhookPatch, WebhookUrl};
use instaview_webhooks::http::handle;
use instaview_webhooks::service::parse_webhook_id;
use lambda_http::http::Method;
use lambda_http::{Body, RequestExt};
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

// --- The parsers of the other routes: list query, PATCH body, path id ----------------------

/// Answers `request` through the handler, checking that it is an envelope and never a 5xx.
fn answer_of(app: &MemoryApp, rt: &tokio::runtime::Runtime, request: RequestBuilder) -> Answer {
    let answer = parse(rt.block_on(handle(app, request.build())));
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
    answer
}

/// A query parameter name: mostly `companyId` and near misses, sometimes anything.
fn query_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("companyId".to_string()),
        1 => Just("companyid".to_string()),
        1 => Just("CompanyId".to_string()),
        1 => Just("limit".to_string()),
        2 => "\\PC{0,12}",
    ]
}

/// A query parameter value: mostly UUID-like, sometimes anything.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(COMPANY.to_string()),
        1 => Just(COMPANY.to_uppercase()),
        1 => Just(OTHER_COMPANY.to_string()),
        2 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).braced().to_string()),
        2 => "\\PC{0,40}",
    ]
}

/// A PATCH body's field name: the changeable ones, the fixed ones, sometimes anything.
fn patch_field() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["url", "events", "name", "description", "headers", "isActive"])
            .prop_map(str::to_string),
        1 => prop::sample::select(vec!["companyId", "id", "signingSecret", "maxRetries", "timeoutMs"])
            .prop_map(str::to_string),
        1 => ".{0,10}",
    ]
}

/// Values for a PATCH body that are often valid, so that accepted patches are common.
fn patch_value(field: &str) -> BoxedStrategy<Value> {
    let anything = json_value().boxed();
    let likely = match field {
        "url" => prop_oneof![
            4 => "https://[a-z]{1,10}\\.example\\.com(/[a-z0-9]{0,8})?".prop_map(Value::String),
            1 => Just(json!("http://localhost:8080/h")),
            1 => "(https?|ftp)://\\PC{0,20}".prop_map(Value::String),
        ]
        .boxed(),
        "events" => prop::collection::vec(
            prop_oneof![
                12 => prop::sample::select(instaview_webhooks::domain::EventType::ALL.to_vec())
                    .prop_map(|e| e.as_str().to_string()),
                1 => ".{0,20}",
            ],
            0..5,
        )
        .prop_map(|events| json!(events))
        .boxed(),
        "name" | "description" => prop_oneof![
            1 => Just(Value::Null),
            4 => "\\PC{0,40}".prop_map(Value::String),
            1 => ".{0,40}".prop_map(Value::String),
        ]
        .boxed(),
        "headers" => prop::collection::vec(
            (
                prop_oneof![4 => "X-[A-Za-z0-9-]{1,12}", 1 => "[!-~]{1,12}", 1 => "\\PC{0,12}"],
                prop_oneof![4 => "[!-~]([ -~]{0,20}[!-~])?", 1 => "\\PC{0,12}"],
            )
                .prop_map(|(name, value)| json!({"name": name, "value": value})),
            0..4,
        )
        .prop_map(Value::Array)
        .boxed(),
        "isActive" => any::<bool>().prop_map(Value::Bool).boxed(),
        _ => return anything,
    };
    prop_oneof![8 => likely, 1 => anything].boxed()
}

/// A PATCH body of plausible fields and values.
fn patch_body() -> impl Strategy<Value = Value> {
    prop::collection::vec(patch_field(), 0..5)
        .prop_flat_map(|fields| {
            let values: Vec<_> = fields.iter().map(|f| patch_value(f)).collect();
            (Just(fields), values)
        })
        .prop_map(|(fields, values)| Value::Object(fields.into_iter().zip(values).collect()))
}

/// An accepted patch written back as JSON (what a client would send to get it).
fn patch_as_json(patch: &WebhookPatch) -> Value {
    let mut body = serde_json::Map::new();
    if let Some(url) = &patch.url {
        body.insert("url".into(), json!(url.as_str()));
    }
    if let Some(events) = &patch.events {
        let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
        body.insert("events".into(), json!(names));
    }
    if let Some(name) = &patch.name {
        body.insert("name".into(), json!(name));
    }
    if let Some(description) = &patch.description {
        body.insert("description".into(), json!(description));
    }
    if let Some(headers) = &patch.headers {
        let headers: Vec<Value> = headers
            .iter()
            .map(|h| json!({"name": h.name(), "value": h.expose_value()}))
            .collect();
        body.insert("headers".into(), json!(headers));
    }
    if let Some(active) = patch.is_active {
        body.insert("isActive".into(), json!(active));
    }
    Value::Object(body)
}

#[test]
fn the_patch_body_strategy_yields_accepted_and_refused_patches() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = patch_body();
    let accepted = (0..1000)
        .filter(|_| {
            let body = strategy.new_tree(&mut runner).unwrap().current();
            WebhookPatch::parse(body.to_string().as_bytes(), UrlPolicy::default()).is_ok()
        })
        .count();
    assert!(
        (150..=900).contains(&accepted),
        "{accepted} of 1000 accepted"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn list_query_never_panics_and_accepts_only_one_company_id_uuid(
        params in prop::collection::vec((query_name(), query_value()), 0..4),
    ) {
        let (app, rt) = (memory_app(), runtime());
        let mut request = get("/webhooks");
        for (name, value) in &params {
            request = request.query(name, value);
        }
        let answer = answer_of(&app, &rt, request);
        let is_uuid = |v: &str| v.len() == 36 && uuid::Uuid::try_parse(v).is_ok();
        let expected = match params.as_slice() {
            [] => 200,
            [(name, value)] if name == "companyId" && is_uuid(value) => {
                if value.eq_ignore_ascii_case(COMPANY) { 200 } else { 403 }
            }
            _ => 400,
        };
        prop_assert_eq!(answer.status, expected, "{:?}: {}", params, answer.raw);
        if expected == 400 {
            prop_assert_eq!(answer.code(), "VALIDATION_ERROR");
        }
    }

    #[test]
    fn patch_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = WebhookPatch::parse(&bytes, UrlPolicy::default());
    }

    #[test]
    fn patch_parser_never_panics_on_arbitrary_json(value in json_value()) {
        let _ = WebhookPatch::parse(value.to_string().as_bytes(), UrlPolicy::default());
    }

    #[test]
    fn every_accepted_patch_revalidates(body in patch_body()) {
        let policy = UrlPolicy::default();
        let Ok(patch) = WebhookPatch::parse(body.to_string().as_bytes(), policy) else {
            return Ok(());
        };
        let object = body.as_object().unwrap();
        prop_assert!(!object.is_empty());
        for field in object.keys() {
            prop_assert!(
                ["url", "events", "name", "description", "headers", "isActive"].contains(&field.as_str()),
                "accepted a patch of {}", field
            );
        }
        // The patch, written back, is accepted again and means the same.
        let again = patch_as_json(&patch);
        let reparsed = WebhookPatch::parse(again.to_string().as_bytes(), policy);
        prop_assert!(reparsed.is_ok(), "{} refused: {:?}", again, reparsed.err());
        prop_assert_eq!(patch_as_json(&reparsed.unwrap()), again.clone());
        // Each value passes the create rule: a create of the patched seed is accepted.
        let mut create: Value = serde_json::from_str(SEED_BODY).unwrap();
        for (field, value) in again.as_object().unwrap() {
            if field != "isActive" {
                create[field] = value.clone();
            }
        }
        let created = NewWebhook::parse(create.to_string().as_bytes(), policy);
        prop_assert!(created.is_ok(), "{} refused by create: {:?}", create, created.err());
    }

    #[test]
    fn every_refused_patch_answers_400_and_changes_nothing(body in patch_body()) {
        let (app, rt) = (memory_app(), runtime());
        let created = answer_of(&app, &rt, post(SEED_BODY));
        let id = created.json["data"]["id"].as_str().unwrap().to_owned();
        let accepted = WebhookPatch::parse(body.to_string().as_bytes(), UrlPolicy::default()).is_ok();
        let answer = answer_of(&app, &rt, patch(&format!("/webhooks/{id}"), &body.to_string()));
        let record = app.webhooks().get_record(uuid::Uuid::parse_str(&id).unwrap()).unwrap();
        if accepted {
            prop_assert_eq!(answer.status, 200, "{}", answer.raw);
            prop_assert_eq!(record.webhook.version, 2);
        } else {
            prop_assert_eq!(answer.status, 400, "{}", answer.raw);
            prop_assert_eq!(record.webhook.version, 1);
        }
    }

    #[test]
    fn path_ids_accept_every_hyphenated_uuid_in_any_case(n in any::<u128>(), upper in any::<bool>()) {
        let uuid = uuid::Uuid::from_u128(n);
        let text = if upper { uuid.to_string().to_uppercase() } else { uuid.to_string() };
        prop_assert_eq!(parse_webhook_id(&text).unwrap(), uuid);
    }

    #[test]
    fn path_ids_refuse_the_other_uuid_forms(n in any::<u128>()) {
        let uuid = uuid::Uuid::from_u128(n);
        for text in [
            uuid.simple().to_string(),
            uuid.braced().to_string(),
            uuid.urn().to_string(),
            format!(" {uuid}"),
            format!("{uuid} "),
        ] {
            prop_assert!(parse_webhook_id(&text).is_err(), "{}", text);
        }
    }

    #[test]
    fn path_ids_accept_only_hyphenated_uuids_and_never_panic(text in "\\PC{0,80}|[0-9a-fA-F-]{36}") {
        if let Ok(uuid) = parse_webhook_id(&text) {
            prop_assert_eq!(text.to_ascii_lowercase(), uuid.to_string());
        }
    }

    #[test]
    fn the_404_echoes_the_id_as_sent_cut_to_64_characters(id in "[^/]{1,100}") {
        let (app, rt) = (memory_app(), runtime());
        for method in [Method::GET, Method::DELETE] {
            // The URI stays simple; the path as API Gateway hands it over carries the id.
            let request = lambda_http::http::Request::builder()
                .method(method)
                .uri("https://api.instaview.sk/webhooks/x")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::Empty)
                .unwrap()
                .with_raw_http_path(format!("/webhooks/{id}"));
            let answer = parse(rt.block_on(handle(&app, request)));
            prop_assert_eq!(answer.status, 404, "{}", answer.raw);
            prop_assert_eq!(answer.code(), "RESOURCE_NOT_FOUND");
            let echoed = answer.json["error"]["details"]["resourceId"].as_str().unwrap();
            if id.chars().count() <= 64 {
                prop_assert_eq!(echoed, id.as_str());
            } else {
                let cut: String = id.chars().take(64).collect();
                prop_assert_eq!(echoed, format!("{cut}…"));
            }
        }
    }
}
