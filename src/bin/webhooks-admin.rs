//! `webhooks-admin`: set up the tables and pepper, manage API keys, publish events, and
//! reconcile.
//! Works against real AWS and the local emulator alike (it honours `AWS_ENDPOINT_URL`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use instaview_webhooks::admin::{Admin, CreatedKey, KeySpec, Resources};
use instaview_webhooks::domain::time_format::{parse_rfc3339, rfc3339};
use instaview_webhooks::domain::{ApiKey, ApiToken, RateLimits};
use instaview_webhooks::pipeline::Event;
use instaview_webhooks::reconcile::{self, Reconciler};
use serde_json::json;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "webhooks-admin",
    version,
    about = "Operate the InstaView webhooks API"
)]
struct Cli {
    /// Read settings from this KEY=VALUE file first (variables already set win), e.g. local.env.
    #[arg(long, global = true)]
    env_file: Option<PathBuf>,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Names {
    /// DynamoDB table of webhooks.
    #[arg(long, env = "WEBHOOKS_TABLE_NAME")]
    webhooks_table: String,
    /// DynamoDB table of API keys.
    #[arg(long, env = "API_KEYS_TABLE_NAME")]
    api_keys_table: String,
    /// Secrets Manager name or ARN of the API key pepper.
    #[arg(long, env = "PEPPER_SECRET_ID")]
    pepper_secret_id: String,
    /// DynamoDB table of the delivery log (events, deliveries, attempts).
    #[arg(long, env = "DELIVERY_LOG_TABLE_NAME")]
    delivery_log_table: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create the tables and the pepper secret where missing (idempotent).
    Setup(Names),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(Keys),
    /// Sweep what failed requests left behind: delete secrets without a record (older than
    /// --min-age-seconds), deactivate records whose secret is missing, delete expired claims
    /// and fences. Prints a report of ids and counts (never a secret).
    Reconcile {
        /// DynamoDB table of webhooks.
        #[arg(long, env = "WEBHOOKS_TABLE_NAME")]
        webhooks_table: String,
        /// Name prefix of the webhook secrets (the function's WEBHOOK_SECRET_PREFIX).
        #[arg(long, env = "WEBHOOK_SECRET_PREFIX")]
        secret_prefix: String,
        /// A secret without a record is deleted only from this age on (in-flight creates are
        /// younger).
        #[arg(long, default_value_t = reconcile::DEFAULT_MIN_SECRET_AGE.as_secs())]
        min_age_seconds: u64,
        /// Report what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Publish events to the event pipeline, as InstaView's platform does.
    #[command(subcommand)]
    Events(Events),
}

#[derive(Subcommand)]
enum Events {
    /// Publish one event to the events queue; every subscribed webhook gets a delivery.
    Publish {
        /// The events queue (the stack output EventsQueueUrl).
        #[arg(long, env = "EVENTS_QUEUE_URL")]
        queue_url: String,
        /// The event type, e.g. interview.completed.
        #[arg(long)]
        event: String,
        /// The company the event belongs to.
        #[arg(long)]
        company: Uuid,
        /// The event's data, a JSON value (e.g. '{"interviewId":"int_123"}').
        #[arg(long, default_value = "{}")]
        data: String,
        /// When it happened, RFC 3339 (default: now).
        #[arg(long)]
        occurred_at: Option<String>,
        /// The event's id (default: a new UUID). Publishing the same id again is the same
        /// event: its deliveries keep their ids and are not sent again.
        #[arg(long)]
        event_id: Option<String>,
    },
}

/// Checks the event as the fan-out will, then sends it; prints the queue's message id.
async fn publish(
    queue_url: String,
    event: String,
    company: Uuid,
    data: String,
    occurred_at: Option<String>,
    event_id: Option<String>,
) -> Result<(String, String), String> {
    let event_id = event_id.unwrap_or_else(|| Uuid::new_v4().to_string());
    let data: serde_json::Value =
        serde_json::from_str(&data).map_err(|e| format!("--data must be JSON: {e}"))?;
    let occurred_at = occurred_at.unwrap_or_else(|| {
        rfc3339(
            time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap(),
        )
    });
    let body = json!({
        "eventId": event_id,
        "event": event,
        "companyId": company.to_string(),
        "data": data,
        "occurredAt": occurred_at,
    })
    .to_string();
    // The fan-out's own checks, the size cap included: an event it would refuse is not sent.
    let body = Event::parse(&body)
        .map_err(|e| format!("not a valid event: {e}; nothing was sent"))?
        .to_json();
    let sdk = instaview_webhooks::aws::sdk_config().await;
    let output = aws_sdk_sqs::Client::new(&sdk)
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_sqs::error::ProvideErrorMetadata;
            format!(
                "sqs.SendMessage failed: {}",
                e.code().unwrap_or("connection or timeout error")
            )
        })?;
    Ok((event_id, output.message_id.unwrap_or_default()))
}

#[derive(Subcommand)]
enum Keys {
    /// Create a key and print its token once.
    Create {
        #[command(flatten)]
        names: Names,
        /// A name for people.
        #[arg(long)]
        name: String,
        /// A scope, e.g. write:webhooks (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A company id the key may act for (repeatable).
        #[arg(long = "company")]
        companies: Vec<Uuid>,
        /// Expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
        /// Use this token instead of a random one (local development fixtures only).
        #[arg(long, env = "WEBHOOKS_ADMIN_FIXED_TOKEN", hide = true)]
        token: Option<String>,
        /// Requests a minute (default 60).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit_minute: Option<u32>,
        /// Requests an hour (default 2000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit_hour: Option<u32>,
    },
    /// Change a key's rate limits.
    Update {
        #[command(flatten)]
        names: Names,
        api_key_id: String,
        /// Requests a minute.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit_minute: Option<u32>,
        /// Requests an hour.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit_hour: Option<u32>,
    },
    /// List keys (never their tokens).
    List(Names),
    /// Suspend a key.
    Suspend {
        #[command(flatten)]
        names: Names,
        api_key_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Revoke a key for good.
    Revoke {
        #[command(flatten)]
        names: Names,
        api_key_id: String,
    },
}

fn key_json(key: &ApiKey) -> serde_json::Value {
    json!({
        "apiKeyId": key.id,
        "name": key.name,
        "scopes": key.scopes,
        "companyIds": key.company_ids.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        "status": key.status.as_str(),
        "createdAt": rfc3339(key.created_at),
        "expiresAt": key.expires_at.map(rfc3339),
        "suspendedAt": key.suspended_at.map(rfc3339),
        "suspendReason": key.suspend_reason,
        "rateLimitPerMinute": key.rate_limits.per_minute,
        "rateLimitPerHour": key.rate_limits.per_hour,
    })
}

fn print_key(key: &ApiKey, as_json: bool) {
    if as_json {
        println!("{}", key_json(key));
    } else {
        println!(
            "{}  {}  {}  scopes={}  companies={}",
            key.id,
            key.status.as_str(),
            key.name,
            key.scopes.join(","),
            key.company_ids
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
}

fn print_reconcile_report(report: &reconcile::Report) {
    let verb = if report.dry_run { "would " } else { "" };
    println!(
        "read {} webhook records and {} secrets{}",
        report.records,
        report.secrets,
        if report.dry_run { " (dry run)" } else { "" }
    );
    for id in &report.orphan_secrets_deleted {
        println!("{verb}delete secret without record  {id}");
    }
    for id in &report.orphan_secrets_kept {
        println!(
            "keep secret without record (younger than {} s)  {id}",
            report.min_secret_age_seconds
        );
    }
    for record in &report.records_without_secret {
        let done = if record.deactivated {
            format!("{verb}deactivate")
        } else {
            "report".to_owned()
        };
        println!(
            "{done} record without secret  {}  apiKeyId={}  ({})",
            record.webhook_id,
            record.api_key_id.as_deref().unwrap_or("?"),
            record.reason
        );
    }
    println!(
        "{verb}delete {} expired idempotency claims",
        report.expired_claims_deleted
    );
    for id in &report.expired_fences_deleted {
        println!("{verb}delete expired fence  {id}");
    }
    for line in &report.skipped {
        println!("skipped  {line}");
    }
    for line in &report.errors {
        println!("error    {line}");
    }
}

async fn admin(names: Names) -> Admin {
    let sdk = instaview_webhooks::aws::sdk_config().await;
    Admin {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        secretsmanager: aws_sdk_secretsmanager::Client::new(&sdk),
        resources: Resources {
            webhooks_table: names.webhooks_table,
            api_keys_table: names.api_keys_table,
            pepper_secret_id: names.pepper_secret_id,
            delivery_log_table: names.delivery_log_table,
        },
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let as_json = cli.json;
    match cli.command {
        Command::Setup(names) => {
            let report = admin(names)
                .await
                .setup()
                .await
                .map_err(|e| e.to_string())?;
            if as_json {
                println!("{}", json!(report));
            } else {
                for item in &report.created {
                    println!("created  {item}");
                }
                for item in &report.existing {
                    println!("exists   {item}");
                }
            }
        }
        Command::Keys(Keys::Create {
            names,
            name,
            scopes,
            companies,
            expires_at,
            token,
            rate_limit_minute,
            rate_limit_hour,
        }) => {
            let expires_at = match expires_at {
                None => None,
                Some(text) => Some(parse_rfc3339(&text).ok_or("--expires-at must be RFC 3339")?),
            };
            let token = match token {
                None => None,
                Some(text) => Some(
                    ApiToken::parse(&text)
                        .ok_or("--token must be sk_ and 16-128 base62 characters")?,
                ),
            };
            let spec = KeySpec {
                name,
                scopes,
                company_ids: companies,
                expires_at,
                token,
                rate_limits: {
                    let defaults = RateLimits::default();
                    RateLimits {
                        per_minute: rate_limit_minute.unwrap_or(defaults.per_minute),
                        per_hour: rate_limit_hour.unwrap_or(defaults.per_hour),
                    }
                },
            };
            let CreatedKey { key, token } = admin(names)
                .await
                .create_key(spec)
                .await
                .map_err(|e| e.to_string())?;
            if as_json {
                let mut out = key_json(&key);
                out["token"] = json!(token.expose());
                println!("{out}");
            } else {
                print_key(&key, false);
                println!("token: {}", token.expose());
                println!("Store the token now: it is not shown again.");
            }
        }
        Command::Keys(Keys::List(names)) => {
            let keys = admin(names)
                .await
                .list_keys()
                .await
                .map_err(|e| e.to_string())?;
            if as_json {
                println!("{}", json!(keys.iter().map(key_json).collect::<Vec<_>>()));
            } else {
                keys.iter().for_each(|k| print_key(k, false));
            }
        }
        Command::Keys(Keys::Suspend {
            names,
            api_key_id,
            reason,
        }) => {
            let key = admin(names)
                .await
                .suspend_key(&api_key_id, &reason)
                .await
                .map_err(|e| e.to_string())?;
            print_key(&key, as_json);
        }
        Command::Keys(Keys::Update {
            names,
            api_key_id,
            rate_limit_minute,
            rate_limit_hour,
        }) => {
            let key = admin(names)
                .await
                .set_rate_limits(&api_key_id, rate_limit_minute, rate_limit_hour)
                .await
                .map_err(|e| e.to_string())?;
            print_key(&key, as_json);
        }
        Command::Events(Events::Publish {
            queue_url,
            event,
            company,
            data,
            occurred_at,
            event_id,
        }) => {
            let (event_id, message_id) =
                publish(queue_url, event, company, data, occurred_at, event_id).await?;
            if as_json {
                println!(
                    "{}",
                    json!({ "eventId": event_id, "messageId": message_id })
                );
            } else {
                println!("published {event_id}");
            }
        }
        Command::Reconcile {
            webhooks_table,
            secret_prefix,
            min_age_seconds,
            dry_run,
        } => {
            // One JSON line per action on stderr (stdout carries the report).
            let _ =
                tracing::subscriber::set_global_default(instaview_webhooks::telemetry::subscriber(
                    instaview_webhooks::telemetry::filter("info"),
                    std::io::stderr,
                ));
            let sdk = instaview_webhooks::aws::sdk_config().await;
            let reconciler = Reconciler {
                dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
                secretsmanager: aws_sdk_secretsmanager::Client::new(&sdk),
                webhooks_table,
                secret_prefix,
            };
            let options = reconcile::Options {
                min_secret_age: std::time::Duration::from_secs(min_age_seconds),
                dry_run,
            };
            let report = reconciler.run(&options).await.map_err(|e| e.to_string())?;
            if as_json {
                println!("{}", json!(report));
            } else {
                print_reconcile_report(&report);
            }
            if !report.errors.is_empty() {
                return Err(format!(
                    "{} item(s) could not be handled; run again",
                    report.errors.len()
                ));
            }
        }
        Command::Keys(Keys::Revoke { names, api_key_id }) => {
            let key = admin(names)
                .await
                .revoke_key(&api_key_id)
                .await
                .map_err(|e| e.to_string())?;
            print_key(&key, as_json);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // The env file must be read before clap looks at the environment.
    let env_file = std::env::args()
        .skip_while(|arg| arg != "--env-file")
        .nth(1)
        .or_else(|| {
            std::env::args().find_map(|arg| arg.strip_prefix("--env-file=").map(str::to_owned))
        });
    if let Some(path) = env_file {
        if let Err(error) = dotenvy::from_path(&path) {
            eprintln!("webhooks-admin: cannot read {path}: {error}");
            return ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => Err(error.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("webhooks-admin: {error}");
            ExitCode::FAILURE
        }
    }
}
