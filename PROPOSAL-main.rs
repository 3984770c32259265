// PROPOSAL (not compiled): src/main.rs on raw events. The same change is made in src/main.rs on
// branch `hardening`; this file explains it for the hand merge.
//
// Why: `lambda_http::run(service_fn(...))` deserialises each event into lambda_http's
// `LambdaRequest` and converts it with `expect`/`unwrap` (lambda_http 1.3.2, src/request.rs):
//   - `Url::parse(format!("{scheme}://{host}{path}")).unwrap()` (Host header / domainName,
//     X-Forwarded-Proto) and `Url::parse(format!("http://localhost{path}")).unwrap()`;
//   - `builder.body(..).expect("failed to build request")`: the URI must parse as `http::Uri`
//     (the console fixture's Host `1234567890.execute-api.{dns_suffix}` fails here: InvalidUri;
//     a raw query string with a space or a URI over 65,534 bytes too);
//   - `Body::from_maybe_encoded` (aws_lambda_events): `expect` on an invalid base64 body.
// `query.parse().unwrap()` is Infallible and the cookie header is guarded upstream.
// `http_event::request_from_event` checks each of these as lambda_http computes it and answers
// 400 VALIDATION_ERROR instead; accepted events go through lambda_http's own conversion
// (`LambdaRequest::ApiGatewayV1/V2(..).into()`), so the handler sees the same `Request` as today
// (tests/published_events.rs compares URI, method, headers and body with lambda_http's).
//
// Response: lambda_http's `LambdaResponse::from_response` is `pub(crate)`, so
// `http_event::EventResponse::new(version, response)` builds the same shapes from the public
// aws_lambda_events types: v1 (REST) `ApiGatewayProxyResponse` with the headers in
// `multiValueHeaders` only; v2 (HTTP API) `ApiGatewayV2httpResponse` with `headers` and
// `Set-Cookie` moved to `cookies`; an unrecognised event gets the v1 type with single-valued
// `headers`, which both formats read. What `lambda_http::Adapter` added to the request (the
// `x-amzn-trace-id` header from the context and the Lambda context extension) is
// `http_event::with_lambda_context`.
//
// The handler future is boxed: inside lambda_runtime's own futures it is deeper than rustc's
// default layout recursion limit ("queries overflow the depth limit").

//! The Lambda entry point: build the SDK clients once, then serve requests.

use instaview_webhooks::config::Config;
use instaview_webhooks::http_event::{
    rejection_response, request_from_event, with_lambda_context, EventResponse,
};
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use instaview_webhooks::{aws, http, telemetry};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Error};
use serde_json::Value;

// One event at a time per execution environment: a single thread does the work with fewer
// context switches and less CPU per request (docs/PERFORMANCE.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let secretsmanager = aws_sdk_secretsmanager::Client::new(&sdk);
    let app = App::new(
        DynamoApiKeys::new(dynamodb.clone(), config.api_keys_table),
        DynamoWebhooks::new(dynamodb, config.webhooks_table),
        SecretsManagerStore::new(
            secretsmanager,
            config.secret_prefix,
            config.kms_key_id,
            config.pepper_secret_id,
        ),
        config.settings,
    );
    let app = &app;
    // Raw events rather than `lambda_http::run`, whose conversion to a request panics on some
    // events (a Host that is not an authority, a bad base64 body); see `http_event`.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let LambdaEvent { payload, context } = event;
        let (version, request) = request_from_event(&payload);
        let response = match request {
            Ok(request) => {
                // Boxed: the handler future nested in the runtime's is deeper than rustc lays
                // out by default.
                Box::pin(http::handle(app, with_lambda_context(request, context))).await
            }
            Err(rejected) => {
                tracing::info!(
                    request_id = %context.request_id,
                    status = 400u16,
                    error_code = "VALIDATION_ERROR",
                    cause = %rejected,
                    "event refused before routing"
                );
                rejection_response(&rejected, &context.request_id)
            }
        };
        Ok::<_, std::convert::Infallible>(EventResponse::new(version, response))
    }))
    .await
}
