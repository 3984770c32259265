//! Shared test fixtures: API keys, requests, response parsing.
#![allow(dead_code)]

use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::{ApiKey, ApiKeyStatus, ApiToken, RateLimits, WRITE_WEBHOOKS};
use instaview_webhooks::service::App;
use instaview_webhooks::store::memory::{MemoryApiKeys, MemorySecrets, MemoryWebhooks};
use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;
use time::macros::datetime;
use uuid::Uuid;

pub mod fault_proxy;
pub mod moto;
pub mod receiver;
pub mod requests;

/// Log lines written while a test runs: a `MakeWriter` for `telemetry::subscriber`.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub const TOKEN: &str = "sk_TestWriteKey0123456789abcdefghijkl";
pub const READ_ONLY_TOKEN: &str = "sk_TestReadOnlyKey0123456789abcdefgh";
pub const SUSPENDED_TOKEN: &str = "sk_TestSuspendedKey0123456789abcdefg";
pub const REVOKED_TOKEN: &str = "sk_TestRevokedKey0123456789abcdefghi";
pub const EXPIRED_TOKEN: &str = "sk_TestExpiredKey0123456789abcdefghi";
pub const UNKNOWN_TOKEN: &str = "sk_TestUnknownKey0123456789abcdefghi";
pub const KEY_ID: &str = "0b7d5a52-6f0e-4c1b-9a43-3c3f1f0b2a11";
pub const COMPANY: &str = "3f1c2a9e-8b4d-4e6f-9a7b-1c2d3e4f5a6b";
pub const OTHER_COMPANY: &str = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a";

/// The documentation's example request.
pub const SEED_BODY: &str = r#"{
"url": "https://api.example.com/webhooks/instaview",
"name": "Production Webhook",
"description": "Receives interview completion notifications",
"events": ["interview.completed", "analysis.completed"],
"headers": [
{ "name": "Authorization", "value": "Bearer your-internal-token" }
]
}"#;

/// The seed's `data` fields, in its order.
pub const SEED_FIELDS: [&str; 16] = [
    "id",
    "apiKeyId",
    "companyId",
    "url",
    "name",
    "description",
    "headers",
    "events",
    "isActive",
    "maxRetries",
    "timeoutMs",
    "consecutiveFailures",
    "circuitOpenedAt",
    "signingSecret",
    "createdAt",
    "updatedAt",
];

/// An error answer in the contract's envelope, with the given status and code.
pub fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.raw);
    assert_eq!(answer.code(), code, "{}", answer.raw);
    assert_eq!(answer.json["success"], false);
    assert_eq!(answer.json["data"], Value::Null);
    assert!(answer.json["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(answer.json["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(answer
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty()));
}

/// The view's fields: the create's, without `signingSecret`, in the same order.
pub const VIEW_FIELDS: [&str; 15] = [
    "id",
    "apiKeyId",
    "companyId",
    "url",
    "name",
    "description",
    "headers",
    "events",
    "isActive",
    "maxRetries",
    "timeoutMs",
    "consecutiveFailures",
    "circuitOpenedAt",
    "createdAt",
    "updatedAt",
];

pub fn key(id: &str, scopes: &[&str]) -> ApiKey {
    ApiKey {
        id: id.into(),
        name: "test key".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        company_ids: vec![Uuid::parse_str(COMPANY).unwrap()],
        status: ApiKeyStatus::Active,
        suspended_at: None,
        suspend_reason: None,
        expires_at: None,
        created_at: datetime!(2024-01-01 0:00 UTC),
        rate_limits: GENEROUS_LIMITS,
    }
}

/// Limits no test reaches unless it means to (rate-limit tests use their own keys).
pub const GENEROUS_LIMITS: RateLimits = RateLimits {
    per_minute: 1_000_000,
    per_hour: 1_000_000,
};

pub type MemoryApp = App<MemoryApiKeys, MemoryWebhooks, MemorySecrets>;

/// An app on in-memory stores with one key of each kind.
pub fn memory_app() -> MemoryApp {
    memory_app_with(Settings::default())
}

pub fn memory_app_with(settings: Settings) -> MemoryApp {
    let keys = MemoryApiKeys::default();
    let token = |t: &str| ApiToken::parse(t).unwrap();
    keys.insert(
        &token(TOKEN),
        key(KEY_ID, &[WRITE_WEBHOOKS, "read:webhooks"]),
    );
    keys.insert(
        &token(READ_ONLY_TOKEN),
        key("read-only", &["read:webhooks"]),
    );
    keys.insert(
        &token(SUSPENDED_TOKEN),
        ApiKey {
            status: ApiKeyStatus::Suspended,
            suspended_at: Some(datetime!(2024-06-01 12:00 UTC)),
            suspend_reason: Some("Unpaid invoice".into()),
            ..key("suspended", &[WRITE_WEBHOOKS])
        },
    );
    keys.insert(
        &token(REVOKED_TOKEN),
        ApiKey {
            status: ApiKeyStatus::Revoked,
            ..key("revoked", &[WRITE_WEBHOOKS])
        },
    );
    keys.insert(
        &token(EXPIRED_TOKEN),
        ApiKey {
            expires_at: Some(datetime!(2024-02-01 0:00 UTC)),
            ..key("expired", &[WRITE_WEBHOOKS])
        },
    );
    App::new(
        keys,
        MemoryWebhooks::default(),
        MemorySecrets::default(),
        settings,
    )
}

/// A request as lambda_http presents it, with the stage-less path set.
pub struct RequestBuilder {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Body,
    query: Vec<(String, String)>,
}

/// A request of `method` on `path` with the write key's token, no body and no content type.
pub fn request(method: Method, path: &str) -> RequestBuilder {
    RequestBuilder {
        method,
        path: path.into(),
        headers: vec![("authorization".into(), format!("Bearer {TOKEN}"))],
        body: Body::Empty,
        query: Vec::new(),
    }
}

/// `GET path` with the write key's token.
pub fn get(path: &str) -> RequestBuilder {
    request(Method::GET, path)
}

/// `PATCH path` with a JSON `body` and the write key's token.
pub fn patch(path: &str, body: &str) -> RequestBuilder {
    request(Method::PATCH, path)
        .header("content-type", "application/json")
        .body(Body::Text(body.into()))
}

/// `DELETE path` with the write key's token.
pub fn delete(path: &str) -> RequestBuilder {
    request(Method::DELETE, path)
}

pub fn post(body: &str) -> RequestBuilder {
    RequestBuilder {
        method: Method::POST,
        path: "/webhooks".into(),
        headers: vec![
            ("authorization".into(), format!("Bearer {TOKEN}")),
            ("content-type".into(), "application/json".into()),
        ],
        body: Body::Text(body.into()),
        query: Vec::new(),
    }
}

impl RequestBuilder {
    /// Adds a query parameter, as API Gateway hands it over (and to the URI).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }

    /// Sets a header, replacing any of the same name.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header, keeping others of the same name.
    pub fn add_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    pub fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    pub fn build(self) -> Request {
        let mut uri = format!("https://api.instaview.sk{}", self.path);
        if !self.query.is_empty() {
            let pairs: Vec<String> = self
                .query
                .iter()
                .map(|(n, v)| format!("{}={}", percent(n), percent(v)))
                .collect();
            uri = format!("{uri}?{}", pairs.join("&"));
        }
        let mut builder = lambda_http::http::Request::builder()
            .method(self.method)
            .uri(uri);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(self.body)
            .unwrap()
            .with_raw_http_path(self.path);
        if self.query.is_empty() {
            return request;
        }
        let mut map: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (name, value) in self.query {
            map.entry(name).or_default().push(value);
        }
        request.with_query_string_parameters(map)
    }
}

/// Percent-encodes everything but unreserved characters (for a URI's query).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `count` creates of the seed's body through one app at the same time, as the tasks of
/// one container would, and returns the answers.
pub async fn create_concurrently<K, W, S, L, Q>(
    app: std::sync::Arc<App<K, W, S, L, Q>>,
    token: &str,
    count: usize,
) -> Vec<Answer>
where
    K: instaview_webhooks::store::ApiKeyStore + 'static,
    W: instaview_webhooks::store::WebhookStore + 'static,
    S: instaview_webhooks::store::SecretStore + 'static,
    L: instaview_webhooks::store::delivery_log::DeliveryLog + 'static,
    Q: instaview_webhooks::store::delivery_log::PipelineQueue + 'static,
{
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (app, request) = (app.clone(), post(SEED_BODY).token(token).build());
            tokio::spawn(
                async move { parse(instaview_webhooks::http::handle(&*app, request).await) },
            )
        })
        .collect();
    let mut answers = Vec::with_capacity(count);
    for task in tasks {
        answers.push(task.await.expect("request task"));
    }
    answers
}

/// A response, parsed.
pub struct Answer {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub json: Value,
    pub raw: String,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.json["error"]["details"]["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| {
                        (
                            f["field"].as_str().unwrap().to_owned(),
                            f["message"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn parse(response: Response<Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let raw = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        Body::Empty => String::new(),
        _ => String::new(),
    };
    let json = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
        raw,
    }
}
