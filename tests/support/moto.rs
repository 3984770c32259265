//! The local AWS emulator (moto) for integration tests: one server per test binary (and one per
//! name for tests that must not share it, `server("concurrency")`), on a free port, started on
//! first use and ended with the test process: moto_server.py exits when its stdin closes, which
//! happens when the process ends however it ends (on Linux, `PR_SET_PDEATHSIG` kills it too).
//! Every test gets its own table names and secret prefix, so tests never see each other's data.

use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use instaview_webhooks::admin::{Admin, KeySpec, Resources};
use instaview_webhooks::config::Settings;
use instaview_webhooks::domain::{ApiKey, ApiToken};
use instaview_webhooks::service::App;
use instaview_webhooks::store::dynamodb::{DynamoApiKeys, DynamoDeliveryLog, DynamoWebhooks};
use instaview_webhooks::store::memory_log::MemoryPipelineQueue;
use instaview_webhooks::store::secrets_manager::SecretsManagerStore;
use uuid::Uuid;

/// The servers started so far, by name; each lives as long as the process.
static SERVERS: Mutex<BTreeMap<&'static str, &'static str>> = Mutex::new(BTreeMap::new());

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
    server("shared")
}

/// The endpoint of the moto server called `name`, started on first use: for tests whose load
/// would starve the binary's other tests of the one shared server (it serves one request at a
/// time).
pub fn server(name: &'static str) -> &'static str {
    let mut servers = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    servers
        .entry(name)
        .or_insert_with(|| Box::leak(start().into_boxed_str()))
}

/// The command that starts moto: `scripts/moto_server.py` (moto serving one request at a
/// time, see there why) with the project's virtualenv Python.
fn moto_command() -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run `make venv` (or `make test`, which does it) to install moto, \
         or point MOTO_PYTHON at a Python that has moto[server]",
        python.display()
    );
    let mut command = Command::new(python);
    command.arg(root.join("scripts/moto_server.py"));
    command
}

fn start() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (sender, receiver) = std::sync::mpsc::channel();
    // The server is the child of a thread that lives as long as the process: PR_SET_PDEATHSIG
    // fires when the spawning *thread* ends, and this one only ends with the process.
    std::thread::spawn(move || {
        let mut command = moto_command();
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EXIT_WITH_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The server is the child of a thread that lives as long as the process: PR_SET_PDEATHSIG
        // fires when the spawning *thread* ends, and this one only ends with the process.
        #[cfg(target_os = "linux")]
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
                // Held open until the process ends (`wait` would close it first): its end is
                // moto_server.py's signal to exit.
                let _stdin = child.stdin.take();
                child.wait().ok();
            }
            Err(error) => {
                sender.send(Err(format!("cannot start moto: {error}"))).ok();
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

/// SDK configuration for `endpoint` with local.env's region and dummy credentials, and the
/// function's own timeouts.
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    sdk_config_with(endpoint, instaview_webhooks::aws::timeouts()).await
}

/// The same with generous timeouts: for the tests' own reads, which must not fail just because
/// a loaded emulator is slow.
pub async fn patient_sdk_config_for(endpoint: &str) -> SdkConfig {
    let patient = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(60))
        .build();
    sdk_config_with(endpoint, patient).await
}

async fn sdk_config_with(
    endpoint: &str,
    timeouts: aws_config::timeout::TimeoutConfig,
) -> SdkConfig {
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
        .timeout_config(timeouts)
        .retry_config(instaview_webhooks::aws::retries())
        .load()
        .await
}

/// SDK configuration for this binary's moto server.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_for(endpoint()).await
}

/// The function as `main` wires it, but for the deliveries queue (these tests run no pipeline:
/// the jobs queued are kept in memory, to be looked at).
pub type AwsApp =
    App<DynamoApiKeys, DynamoWebhooks, SecretsManagerStore, DynamoDeliveryLog, MemoryPipelineQueue>;

/// One test's private slice of the emulator: its own tables, pepper and secret prefix.
/// `dynamodb` and `secretsmanager` are the test's own (patient) clients; `app()` builds the
/// function's clients with the function's timeouts.
pub struct AwsEnv {
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub resources: Resources,
    pub secret_prefix: String,
}

impl AwsEnv {
    /// Creates the tables and pepper under names unique to this test (from local.env's names),
    /// on this binary's moto server.
    pub async fn new() -> Self {
        Self::on(endpoint()).await
    }

    /// The same on the moto server at `endpoint` (see [`server`]).
    pub async fn on(endpoint: &str) -> Self {
        let env = local_env();
        let suffix = &Uuid::new_v4().simple().to_string()[..12];
        let sdk = sdk_config_for(endpoint).await;
        let patient = patient_sdk_config_for(endpoint).await;
        let this = Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&patient),
            secretsmanager: aws_sdk_secretsmanager::Client::new(&patient),
            sdk,
            resources: Resources {
                webhooks_table: format!("{}-{suffix}", env["WEBHOOKS_TABLE_NAME"]),
                api_keys_table: format!("{}-{suffix}", env["API_KEYS_TABLE_NAME"]),
                pepper_secret_id: format!("{}-{suffix}", env["PEPPER_SECRET_ID"]),
                delivery_log_table: format!("{}-{suffix}", env["DELIVERY_LOG_TABLE_NAME"]),
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
                rate_limits: super::GENEROUS_LIMITS,
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
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk);
        App::new(
            DynamoApiKeys::new(dynamodb.clone(), &self.resources.api_keys_table),
            DynamoWebhooks::new(dynamodb.clone(), &self.resources.webhooks_table),
            SecretsManagerStore::new(
                aws_sdk_secretsmanager::Client::new(&self.sdk),
                &self.secret_prefix,
                None,
                &self.resources.pepper_secret_id,
            ),
            settings,
        )
        .with_delivery_log(
            DynamoDeliveryLog::new(dynamodb, &self.resources.delivery_log_table),
            MemoryPipelineQueue::default(),
        )
    }

    /// The app on the test's patient clients: for tests about the handler's logic under load,
    /// which the serial emulator would otherwise turn into timeouts.
    pub fn patient_app(&self, settings: Settings) -> AwsApp {
        App::new(
            DynamoApiKeys::new(self.dynamodb.clone(), &self.resources.api_keys_table),
            DynamoWebhooks::new(self.dynamodb.clone(), &self.resources.webhooks_table),
            SecretsManagerStore::new(
                self.secretsmanager.clone(),
                &self.secret_prefix,
                None,
                &self.resources.pepper_secret_id,
            ),
            // Many concurrent requests queue at the emulator, which serves one at a time:
            // give their writes time, so that only a real failure answers 503.
            Settings {
                write_budget: std::time::Duration::from_secs(120),
                ..settings
            },
        )
        .with_delivery_log(
            DynamoDeliveryLog::new(self.dynamodb.clone(), &self.resources.delivery_log_table),
            MemoryPipelineQueue::default(),
        )
    }

    /// Webhook records only (not the per-key counters or idempotency claims beside them).
    pub async fn webhook_records(
        &self,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.webhook_items()
            .await
            .into_iter()
            .filter(|item| !item.contains_key("fence"))
            .filter(|item| {
                item.get("id")
                    .and_then(|id| id.as_s().ok())
                    .is_some_and(|id| !id.contains('#'))
            })
            .collect()
    }

    /// Names of every secret under this test's prefix, including those only scheduled for
    /// deletion: a secret that was never handed out must be deleted without a recovery window
    /// (the contract), so "no secret left" checks that too.
    pub async fn secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut pages = self
            .secretsmanager
            .list_secrets()
            .include_planned_deletion(true)
            .into_paginator()
            .send();
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

    /// Every item in this test's webhooks table but the rate counters, which every counted
    /// request leaves by design.
    pub async fn webhook_items(
        &self,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.all_items()
            .await
            .into_iter()
            .filter(|item| {
                !item
                    .get("id")
                    .and_then(|id| id.as_s().ok())
                    .is_some_and(|id| id.starts_with("rate#"))
            })
            .collect()
    }

    /// Every item in this test's webhooks table.
    pub async fn all_items(&self) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let pages: Result<Vec<_>, _> = self
            .dynamodb
            .scan()
            .table_name(&self.resources.webhooks_table)
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        pages.expect("scan webhooks")
    }

    /// Every attempt in this test's delivery log, one item each, as the attempt records of the
    /// webhooks table used to be: `id` `attempt#<deliveryId>#<n>`, `deliveryId`, `webhookId`,
    /// the attempt's own fields and the delivery's `expiresAt`.
    pub async fn attempt_items(
        &self,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let pages: Result<Vec<_>, _> = self
            .dynamodb
            .scan()
            .table_name(&self.resources.delivery_log_table)
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        let mut attempts = Vec::new();
        for item in pages.expect("scan the delivery log") {
            let Some(delivery) = item.get("deliveryId").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            for (name, value) in &item {
                let (Some(n), Ok(map)) = (name.strip_prefix("attempt#"), value.as_m()) else {
                    continue;
                };
                let mut record = map.clone();
                record.insert(
                    "id".into(),
                    AttributeValue::S(format!("attempt#{delivery}#{n}")),
                );
                record.insert("deliveryId".into(), AttributeValue::S(delivery.clone()));
                for copied in ["webhookId", "expiresAt", "event"] {
                    if let Some(v) = item.get(copied) {
                        record.insert(copied.into(), v.clone());
                    }
                }
                attempts.push(record);
            }
        }
        attempts
    }
}
