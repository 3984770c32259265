//! The local AWS emulator (moto) for integration tests: one server per test binary, on a free
//! port, started on first use and killed with the test process. Every test gets its own table
//! names and secret prefix, so tests never see each other's data.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use instaview_webhooks::admin::{Admin, KeySpec, Resources};
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::{ApiKey, ApiToken};
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoWebhooks};
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use uuid::Uuid;

static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The settings of `local.env`, the one file the Makefile, the tests and the admin tool share.
pub fn local_env() -> HashMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("local.env");
    dotenvy::from_path_iter(&path)
        .expect("local.env is readable")
        .map(|item| item.expect("local.env is well formed"))
        .collect()
}

/// The endpoint of this test binary's moto server, started on first use.
pub fn endpoint() -> &'static str {
    ENDPOINT.get_or_init(start)
}

fn moto_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    panic!(
        "moto_server not found: run `make venv` (or `make test`, which does it), \
         or point MOTO_SERVER at a moto_server binary"
    );
}

fn start() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let binary = moto_binary();
    let (sender, receiver) = std::sync::mpsc::channel();
    // The server is the child of a thread that lives as long as the process: PR_SET_PDEATHSIG
    // fires when the spawning *thread* ends, and this one only ends with the process.
    std::thread::spawn(move || {
        let mut command = Command::new(&binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(mut child) => {
                sender.send(Ok(())).ok();
                child.wait().ok();
            }
            Err(error) => {
                sender
                    .send(Err(format!("cannot start {}: {error}", binary.display())))
                    .ok();
            }
        }
    });
    receiver
        .recv()
        .expect("moto thread answers")
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto_server did not start listening on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("http://127.0.0.1:{port}")
}

/// SDK configuration for `endpoint` with local.env's region and dummy credentials.
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    let env = local_env();
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(env["AWS_REGION"].clone()))
        .credentials_provider(Credentials::new(
            &env["AWS_ACCESS_KEY_ID"],
            &env["AWS_SECRET_ACCESS_KEY"],
            None,
            None,
            "local.env",
        ))
        .timeout_config(instaview_webhooks::aws::timeouts())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}

/// SDK configuration for this binary's moto server.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_for(endpoint()).await
}

pub type AwsApp = App<DynamoApiKeys, DynamoWebhooks, SecretsManagerStore>;

/// One test's private slice of the emulator: its own tables, pepper and secret prefix.
pub struct AwsEnv {
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub resources: Resources,
    pub secret_prefix: String,
}

impl AwsEnv {
    /// Creates the tables and pepper under names unique to this test (from local.env's names).
    pub async fn new() -> Self {
        let env = local_env();
        let suffix = &Uuid::new_v4().simple().to_string()[..12];
        let sdk = sdk_config().await;
        let this = Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            secretsmanager: aws_sdk_secretsmanager::Client::new(&sdk),
            sdk,
            resources: Resources {
                webhooks_table: format!("{}-{suffix}", env["WEBHOOKS_TABLE_NAME"]),
                api_keys_table: format!("{}-{suffix}", env["API_KEYS_TABLE_NAME"]),
                pepper_secret_id: format!("{}-{suffix}", env["PEPPER_SECRET_ID"]),
            },
            secret_prefix: format!("{}{suffix}/", env["WEBHOOK_SECRET_PREFIX"]),
        };
        this.admin().setup().await.expect("setup against moto");
        this
    }

    pub fn admin(&self) -> Admin {
        Admin {
            dynamodb: self.dynamodb.clone(),
            secretsmanager: self.secretsmanager.clone(),
            resources: self.resources.clone(),
        }
    }

    /// Creates a key with `scopes` for the test company; returns it with its token.
    pub async fn create_key(&self, scopes: &[&str]) -> (ApiKey, ApiToken) {
        let created = self
            .admin()
            .create_key(KeySpec {
                name: "integration test".into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                company_ids: vec![Uuid::parse_str(super::COMPANY).unwrap()],
                expires_at: None,
                token: None,
            })
            .await
            .expect("create key");
        (created.key, created.token)
    }

    pub fn secrets_store(&self) -> SecretsManagerStore {
        SecretsManagerStore::new(
            self.secretsmanager.clone(),
            &self.secret_prefix,
            None,
            &self.resources.pepper_secret_id,
        )
    }

    /// The app wired to this test's resources, as `main` wires it.
    pub fn app(&self, settings: Settings) -> AwsApp {
        App::new(
            DynamoApiKeys::new(self.dynamodb.clone(), &self.resources.api_keys_table),
            DynamoWebhooks::new(self.dynamodb.clone(), &self.resources.webhooks_table),
            self.secrets_store(),
            settings,
        )
    }

    /// Names of every secret under this test's prefix.
    pub async fn secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut pages = self.secretsmanager.list_secrets().into_paginator().send();
        while let Some(page) = pages.next().await {
            for secret in page.expect("list secrets").secret_list() {
                if let Some(name) = secret.name() {
                    if name.starts_with(&self.secret_prefix) {
                        names.push(name.to_owned());
                    }
                }
            }
        }
        names
    }

    /// Every webhook item in this test's table.
    pub async fn webhook_items(
        &self,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.dynamodb
            .scan()
            .table_name(&self.resources.webhooks_table)
            .send()
            .await
            .expect("scan webhooks")
            .items
            .unwrap_or_default()
    }
}
