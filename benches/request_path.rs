//! The request path in process, on the in-memory stores: what one warm `POST /webhooks` costs
//! in CPU, with no network. `make bench` runs it; docs/PERFORMANCE.md has the figures.
//!
//! - `handle/*`: `http::handle` on a warm app (pepper read, key cached): route, authenticate
//!   (HMAC + cache hit), content type, parse and validate the body, generate the signing
//!   secret, build the secret document and the record, serialise the 201, and the JSON log line
//!   (the production subscriber, writing to a sink instead of stdout).
//! - `lambda_event/*`: the same from the API Gateway v2 event's JSON to the response's JSON, as
//!   the Lambda runtime sees it (event deserialisation and response serialisation added).
//! - `parse_validate/*`, `pieces/*`: the steps alone, to show where the time goes.
//!
//! The in-memory stores keep every record and secret, and count webhooks against the key's
//! limit (100). So the create benches time each call on its own and start a fresh, warmed app
//! every [`CREATES_PER_APP`] creates (outside the timing): no run ever meets the limit, and the
//! maps stay small, as they would be in a real container whose state lives in DynamoDB.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::custom_header::MAX_HEADERS_TOTAL_CHARS;
use instaview_webhooks::domain::{
    ApiKey, ApiKeyStatus, ApiToken, NewWebhook, RateLimits, SigningSecret, UrlPolicy,
    WRITE_WEBHOOKS,
};
use instaview_webhooks::http::{created_body, handle};
use instaview_webhooks::service::{App, Created};
use instaview_webhooks::store::memory::{MemoryApiKeys, MemorySecrets, MemoryWebhooks};
use instaview_webhooks::store::SecretDocument;
use instaview_webhooks::telemetry;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use time::macros::datetime;
use uuid::Uuid;

/// The token of the benchmark's key; the seed event's (local.env's `DEV_API_TOKEN`).
const TOKEN: &str = "sk_LocalDevWriteKey0123456789abcdefghij";
const KEY_ID: &str = "0b7d5a52-6f0e-4c1b-9a43-3c3f1f0b2a11";
const COMPANY: &str = "3f1c2a9e-8b4d-4e6f-9a7b-1c2d3e4f5a6b";

/// Creates per app before a fresh one is built (below the default limit of 100 per key).
const CREATES_PER_APP: u64 = 64;

/// The documentation's example request (the seed).
const SEED_BODY: &str = r#"{
"url": "https://api.example.com/webhooks/instaview",
"name": "Production Webhook",
"description": "Receives interview completion notifications",
"events": ["interview.completed", "analysis.completed"],
"headers": [
{ "name": "Authorization", "value": "Bearer your-internal-token" }
]
}"#;

/// The seed as API Gateway (HTTP API, payload 2.0) delivers it.
const SEED_EVENT: &str = include_str!("../events/http-api/create-seed-example.201.json");

/// The largest valid body: every field at its limit, 50 headers with 254-character names and
/// values that fill the headers' total of 32,000 characters.
fn max_body() -> String {
    let url = format!("https://api.example.com/{}", "p".repeat(2048 - 24));
    assert_eq!(url.len(), 2048);
    let headers: Vec<_> = (0..50)
        .map(|i| {
            let name = format!("X-Custom-{i:02}-{}", "n".repeat(255 - 13));
            let value_len = MAX_HEADERS_TOTAL_CHARS / 50 - name.len();
            let value: String = (0..value_len)
                .map(|j| char::from(b'!' + ((i + j) % 94) as u8))
                .collect();
            serde_json::json!({ "name": name, "value": value })
        })
        .collect();
    serde_json::json!({
        "url": url,
        "name": "N".repeat(255),
        "description": "D".repeat(1000),
        "events": [
            "analysis.completed", "analysis.failed", "ping",
            "interview.completed", "interview.failed", "interview.started"
        ],
        "companyId": COMPANY,
        "headers": headers,
    })
    .to_string()
}

type MemoryApp = App<MemoryApiKeys, MemoryWebhooks, MemorySecrets>;

fn token() -> ApiToken {
    ApiToken::parse(TOKEN).expect("a well-formed token")
}

/// An app on in-memory stores with one write key, warmed: pepper read and key cached, as in a
/// container after its first request.
fn warm_app(rt: &tokio::runtime::Runtime) -> MemoryApp {
    let keys = MemoryApiKeys::default();
    keys.insert(
        &token(),
        ApiKey {
            id: KEY_ID.into(),
            name: "bench key".into(),
            scopes: vec![WRITE_WEBHOOKS.into()],
            company_ids: vec![Uuid::parse_str(COMPANY).unwrap()],
            status: ApiKeyStatus::Active,
            suspended_at: None,
            suspend_reason: None,
            expires_at: None,
            created_at: datetime!(2024-01-01 0:00 UTC),
            rate_limits: RateLimits::default(),
        },
    );
    let app = App::new(
        keys,
        MemoryWebhooks::default(),
        MemorySecrets::default(),
        Settings::default(),
    );
    rt.block_on(app.authenticate(&token())).expect("the key");
    assert_eq!(app.keys().lookups(), 1);
    app
}

/// A request as lambda_http presents it (as `tests/support` builds them).
fn request(body: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("https://api.instaview.sk/webhooks")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::Text(body.to_owned()))
        .unwrap()
        .with_raw_http_path("/webhooks")
}

/// Times `create` alone, `iters` times, on warm apps replaced every [`CREATES_PER_APP`] creates.
/// Building the input and dropping the output are outside the timing.
fn time_creates<I, O>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    mut input: impl FnMut() -> I,
    mut create: impl FnMut(&MemoryApp, I) -> O,
    check: impl Fn(&O),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut app = warm_app(rt);
    for i in 0..iters {
        if i > 0 && i % CREATES_PER_APP == 0 {
            app = warm_app(rt);
        }
        let input = input();
        let started = Instant::now();
        let output = black_box(create(&app, input));
        total += started.elapsed();
        check(&output);
    }
    total
}

fn created_201(response: &Response<Body>) {
    assert_eq!(response.status(), StatusCode::CREATED);
}

fn handle_benches(c: &mut Criterion) {
    let rt = current_thread();
    let max = max_body();
    let mut group = c.benchmark_group("handle");
    for (name, body) in [("seed_body", SEED_BODY), ("max_body", max.as_str())] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                time_creates(
                    &rt,
                    iters,
                    || request(body),
                    |app, request| rt.block_on(handle(app, request)),
                    created_201,
                )
            })
        });
    }
    group.finish();
}

/// From the event's JSON bytes to the response's JSON bytes: what the runtime adds around
/// `handle` (minus its HTTP calls to the Runtime API).
fn lambda_event_benches(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("lambda_event");
    group.bench_function("seed_event_to_response_json", |b| {
        b.iter_custom(|iters| {
            time_creates(
                &rt,
                iters,
                || SEED_EVENT.as_bytes(),
                |app, event| {
                    let request = lambda_http::request::from_reader(event).expect("an event");
                    let response = rt.block_on(handle(app, request));
                    let (parts, body) = response.into_parts();
                    let mut out = ApiGatewayV2httpResponse::default();
                    out.status_code = i64::from(parts.status.as_u16());
                    out.headers = parts.headers;
                    out.body = Some(body);
                    serde_json::to_vec(&out).expect("response JSON")
                },
                |json| assert!(json.starts_with(br#"{"statusCode":201"#)),
            )
        })
    });
    group.finish();
}

fn piece_benches(c: &mut Criterion) {
    let rt = current_thread();
    let max = max_body();
    let policy = UrlPolicy::default();

    let mut group = c.benchmark_group("parse_validate");
    for (name, body) in [("seed_body", SEED_BODY), ("max_body", max.as_str())] {
        NewWebhook::parse(body.as_bytes(), policy).expect("a valid body");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| NewWebhook::parse(black_box(body.as_bytes()), policy))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("pieces");
    let app = warm_app(&rt);
    let token = token();
    group.bench_function("authenticate_cache_hit", |b| {
        b.iter(|| rt.block_on(app.authenticate(black_box(&token))).unwrap())
    });
    assert_eq!(app.keys().lookups(), 1, "the key cache was hit every time");

    group.bench_function("signing_secret_generate", |b| {
        b.iter(SigningSecret::try_generate)
    });

    for (name, body) in [("seed_body", SEED_BODY), ("max_body", max.as_str())] {
        let created = create_one(&rt, body);
        let document = SecretDocument {
            signing_secret: created.signing_secret.clone(),
            previous: None,
            headers: NewWebhook::parse(body.as_bytes(), policy).unwrap().headers,
        };
        group.bench_function(BenchmarkId::new("secret_document", name), |b| {
            b.iter(|| black_box(&document).to_json())
        });
        group.bench_function(BenchmarkId::new("serialise_201", name), |b| {
            b.iter(|| created_body(black_box(&created)))
        });
    }

    // The request's log line, with the production subscriber (JSON, to a sink here).
    group.bench_function("log_line", |b| {
        b.iter(|| {
            tracing::info!(
                request_id = "Jqvv19V8/h15WQ==",
                route = "/webhooks",
                method = "POST",
                status = 201u16,
                latency_ms = 0.012f64,
                api_key_id = Some(KEY_ID),
                webhook_id = Some("fd182f1a-d1c0-45fd-b535-6105c21e4852"),
                error_code = None::<&str>,
                "request handled"
            )
        })
    });
    group.finish();
}

fn create_one(rt: &tokio::runtime::Runtime, body: &str) -> Created {
    let app = warm_app(rt);
    let key = rt.block_on(app.authenticate(&token())).unwrap();
    let request = NewWebhook::parse(body.as_bytes(), app.settings().url_policy).unwrap();
    rt.block_on(app.create_webhook(&key, request, None))
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The function's own log subscriber (JSON, `info`), writing to a sink: formatting the request's
/// log line is part of the request's cost, writing it to stdout is not measured.
fn production_logging() {
    tracing::subscriber::set_global_default(telemetry::subscriber(
        telemetry::filter("info"),
        std::io::sink,
    ))
    .expect("the only subscriber");
}

fn benches(c: &mut Criterion) {
    production_logging();
    handle_benches(c);
    lambda_event_benches(c);
    piece_benches(c);
}

criterion_group! {
    name = request_path;
    config = Criterion::default().measurement_time(Duration::from_secs(4));
    targets = benches
}

/// What `criterion_main!` does, then the medians of this run (criterion prints the mean-based
/// estimate; the targets are stated as medians).
fn main() {
    let started = SystemTime::now();
    request_path();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|arg| arg == "--bench") {
        print_medians(started);
    }
}

/// Prints the median of every benchmark measured since `started`, from criterion's
/// `<group>/<id>/new/estimates.json`, and checks the target for the seed's body.
fn print_medians(started: SystemTime) {
    let root = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"));
    let mut found = Vec::new();
    collect_estimates(&root, started, &mut found);
    found.sort_by_key(|found| found.0);
    println!("\nmedians of this run ({}):", root.display());
    for (_, id, median_ns) in &found {
        println!("  {id:55} {:>12}", human(*median_ns));
    }
    if let Some((_, _, seed)) = found.iter().find(|(_, id, _)| id == "handle/seed_body") {
        let verdict = if *seed < 25_000.0 { "met" } else { "MISSED" };
        println!("target: handle/seed_body median under 25 µs: {verdict}");
    }
}

fn collect_estimates(dir: &Path, started: SystemTime, found: &mut Vec<(SystemTime, String, f64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|name| name == "new") {
            let estimates = path.join("estimates.json");
            let modified = std::fs::metadata(&estimates).and_then(|m| m.modified());
            let (Ok(modified), Some(id), Some(median)) = (
                modified,
                json_field(&path.join("benchmark.json"), &["full_id"])
                    .and_then(|v| v.as_str().map(str::to_owned)),
                json_field(&estimates, &["median", "point_estimate"]).and_then(|v| v.as_f64()),
            ) else {
                continue;
            };
            if modified >= started {
                found.push((modified, id, median));
            }
        } else if path.is_dir() {
            collect_estimates(&path, started, found);
        }
    }
}

fn json_field(file: &Path, path: &[&str]) -> Option<serde_json::Value> {
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    for key in path {
        value = value.get(*key)?.clone();
    }
    Some(value)
}

fn human(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.1} ns"),
    }
}
