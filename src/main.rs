//! The Lambda entry point: build the SDK clients once, then serve requests.

use instaview_webhooks::config::Config;
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use instaview_webhooks::{aws, http, telemetry};
use lambda_http::{run, service_fn, Error, Request};

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
    run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(http::handle(app, request).await)
    }))
    .await
}
