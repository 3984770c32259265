//! Settings read from the environment once per container. Every environment variable a
//! function reads is read here or in [`crate::pipeline::config`], through [`Vars`], so that a
//! missing or malformed one is one kind of error ([`ConfigError`], naming the variable) and
//! every reading is testable without touching the process environment (`from_lookup`).
//!
//! - [`Config`]: the API function (`create-webhook`).
//! - [`crate::pipeline::PipelineConfig`]: the fan-out and delivery functions.
//! - [`ReconcileConfig`]: the scheduled reconciler.
//! - [`log_level`]: every function's `LOG_LEVEL` ([`crate::telemetry`]).
//!
//! The operator's tool (`webhooks-admin`) takes the same names as flags whose defaults clap
//! reads from the environment (`#[arg(env = ...)]` in `src/bin/webhooks-admin.rs`), so that
//! `--help` shows each flag with its variable and a flag wins over the environment.

use std::time::Duration;

use crate::domain::UrlPolicy;
use crate::reconcile::{Options, DEFAULT_MIN_SECRET_AGE};

/// A setting is missing or malformed; the function refuses to start. The message names the
/// variable and what it must be, never the value found (a value may be a secret's name).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {variable} {requirement}")]
pub struct ConfigError {
    variable: &'static str,
    requirement: &'static str,
}

/// The message itself: a binary's `main` prints its error with `Debug`, and the function's
/// init failure in the logs should read as the sentence.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl ConfigError {
    /// `variable` is unset or blank and has no default.
    pub fn missing(variable: &'static str) -> Self {
        Self {
            variable,
            requirement: "must be set",
        }
    }

    /// `variable` is set to something else than `requirement` allows ("must be ...").
    pub fn invalid(variable: &'static str, requirement: &'static str) -> Self {
        Self {
            variable,
            requirement,
        }
    }

    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        self.variable
    }
}

/// The process environment as a lookup (what every `from_env` passes to its `from_lookup`).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// lambda_http's own switch `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` (set: the stage is never
/// put in front of the path), which `http::lambda_event` mirrors with lambda_http's path logic.
/// Read per event, as lambda_http reads it; any value counts, as there.
pub fn ignore_stage_in_path() -> bool {
    std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some()
}

/// The environment as the readers see it: a lookup in which a blank value counts as unset,
/// and one way to read each kind of value.
pub struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn new(lookup: F) -> Self {
        Self(lookup)
    }

    /// The value, trimmed; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::missing(name))
    }

    /// A switch: `true` or `1`, `false` or `0`; unset means false, so that every switch is
    /// off (the safe side) unless a deployment turns it on.
    pub fn switch(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).as_deref() {
            Some("true" | "1") => Ok(true),
            None | Some("false" | "0") => Ok(false),
            Some(_) => Err(ConfigError::invalid(name, "must be true or false")),
        }
    }

    /// Whole seconds; `default` when unset.
    pub fn seconds(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        self.parsed(name, default, "must be a whole number of seconds", |text| {
            text.parse().ok().map(Duration::from_secs)
        })
    }

    /// A value `parse` accepts (`requirement` says which, for the error); `default` when unset.
    pub fn parsed<T>(
        &self,
        name: &'static str,
        default: T,
        requirement: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse(&text).ok_or(ConfigError::invalid(name, requirement)),
        }
    }
}

/// Everything the function needs to know about its deployment.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table of webhook records (`WEBHOOKS_TABLE_NAME`).
    pub webhooks_table: String,
    /// DynamoDB table of API key records (`API_KEYS_TABLE_NAME`).
    pub api_keys_table: String,
    /// Secrets Manager id (name or ARN) of the API key pepper (`PEPPER_SECRET_ID`).
    pub pepper_secret_id: String,
    /// Name prefix of the per-webhook secrets (`WEBHOOK_SECRET_PREFIX`).
    pub secret_prefix: String,
    /// KMS key for the per-webhook secrets; the account's default key when unset
    /// (`WEBHOOK_SECRET_KMS_KEY_ID`).
    pub kms_key_id: Option<String>,
    /// DynamoDB table of the delivery log (`DELIVERY_LOG_TABLE_NAME`): the delivery routes
    /// read it, resend marks it, the test ping is recorded in it.
    pub delivery_log_table: String,
    /// The deliveries queue (`DELIVERIES_QUEUE_URL`): where resend and recover go.
    pub deliveries_queue_url: String,
    pub settings: Settings,
}

/// The settings the request path needs (no AWS names).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// URL rules (`ALLOW_LOCALHOST_URLS`: loopback targets only when set to true; unset means
    /// false, so that a deployment is safe by default. `local.env` sets it for development).
    pub url_policy: UrlPolicy,
    /// How long a key record is reused before it is read again (`API_KEY_CACHE_TTL_SECONDS`,
    /// default 60; 0 disables the cache).
    pub api_key_cache_ttl: Duration,
    /// Most webhooks one API key may have (`MAX_WEBHOOKS_PER_API_KEY`, default 100).
    pub max_webhooks_per_key: u32,
    /// Deliver (test pings) only to loopback addresses (`DELIVER_TO_LOOPBACK_ONLY`, default
    /// false; `local.env` sets it, so that a local stack or a test run never calls out).
    pub loopback_only_deliveries: bool,
    /// Time allowed for the writes of one create before it gives up and undoes them
    /// ([`crate::time_budget::WRITE_BUDGET`]; tests against a loaded emulator allow more).
    pub write_budget: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url_policy: UrlPolicy::default(),
            api_key_cache_ttl: Duration::from_secs(60),
            max_webhooks_per_key: 100,
            loopback_only_deliveries: false,
            write_budget: crate::time_budget::WRITE_BUDGET,
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(process_env)
    }

    /// Reads the configuration through `lookup` (testable without touching the environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        let allow_localhost = vars.switch("ALLOW_LOCALHOST_URLS")?;
        let loopback_only_deliveries = vars.switch("DELIVER_TO_LOOPBACK_ONLY")?;
        let api_key_cache_ttl =
            vars.seconds("API_KEY_CACHE_TTL_SECONDS", Duration::from_secs(60))?;
        let max_webhooks_per_key = vars.parsed(
            "MAX_WEBHOOKS_PER_API_KEY",
            100,
            "must be a positive whole number",
            |text| text.parse::<u32>().ok().filter(|n| *n > 0),
        )?;
        Ok(Self {
            webhooks_table: vars.required("WEBHOOKS_TABLE_NAME")?,
            api_keys_table: vars.required("API_KEYS_TABLE_NAME")?,
            pepper_secret_id: vars.required("PEPPER_SECRET_ID")?,
            secret_prefix: vars
                .get("WEBHOOK_SECRET_PREFIX")
                .unwrap_or_else(|| "instaview/webhooks/".into()),
            kms_key_id: vars.get("WEBHOOK_SECRET_KMS_KEY_ID"),
            delivery_log_table: vars.required("DELIVERY_LOG_TABLE_NAME")?,
            deliveries_queue_url: vars.required("DELIVERIES_QUEUE_URL")?,
            settings: Settings {
                url_policy: UrlPolicy { allow_localhost },
                api_key_cache_ttl,
                max_webhooks_per_key,
                loopback_only_deliveries,
                write_budget: crate::time_budget::WRITE_BUDGET,
            },
        })
    }
}

/// What the scheduled reconciler needs to know about its deployment (`src/bin/reconcile.rs`).
#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    /// `WEBHOOKS_TABLE_NAME`, as for the API.
    pub webhooks_table: String,
    /// `WEBHOOK_SECRET_PREFIX`, as for the API but required: the reconciler deletes secrets
    /// under it, so it never falls back to a default.
    pub secret_prefix: String,
    /// `RECONCILE_MIN_SECRET_AGE_SECONDS` (default [`DEFAULT_MIN_SECRET_AGE`]) and
    /// `RECONCILE_DRY_RUN` (a switch, default false: report without changing anything).
    pub options: Options,
}

impl ReconcileConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(process_env)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        Ok(Self {
            webhooks_table: vars.required("WEBHOOKS_TABLE_NAME")?,
            secret_prefix: vars.required("WEBHOOK_SECRET_PREFIX")?,
            options: Options {
                min_secret_age: vars
                    .seconds("RECONCILE_MIN_SECRET_AGE_SECONDS", DEFAULT_MIN_SECRET_AGE)?,
                dry_run: vars.switch("RECONCILE_DRY_RUN")?,
            },
        })
    }
}

/// `LOG_LEVEL`, this crate's log level (default `info`). Never an error: an unknown level
/// means `info` ([`crate::telemetry::filter`]), so that a typo cannot stop a function.
pub fn log_level(lookup: impl Fn(&str) -> Option<String>) -> String {
    Vars::new(lookup)
        .get("LOG_LEVEL")
        .unwrap_or_else(|| "info".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    const REQUIRED: [(&str, &str); 5] = [
        ("WEBHOOKS_TABLE_NAME", "w"),
        ("API_KEYS_TABLE_NAME", "k"),
        ("PEPPER_SECRET_ID", "p"),
        ("DELIVERY_LOG_TABLE_NAME", "l"),
        ("DELIVERIES_QUEUE_URL", "http://q"),
    ];

    #[test]
    fn the_delivery_log_and_its_queue_are_required() {
        let config = Config::from_lookup(env(&REQUIRED)).unwrap();
        assert_eq!(config.delivery_log_table, "l");
        assert_eq!(config.deliveries_queue_url, "http://q");
        let error = Config::from_lookup(env(&REQUIRED[..4])).unwrap_err();
        assert_eq!(error.variable(), "DELIVERIES_QUEUE_URL");
    }

    #[test]
    fn defaults_refuse_localhost_and_cache_keys_for_a_minute() {
        let config = Config::from_lookup(env(&REQUIRED)).unwrap();
        assert!(!config.settings.url_policy.allow_localhost);
        assert_eq!(config.settings.api_key_cache_ttl, Duration::from_secs(60));
        assert_eq!(config.kms_key_id, None);
    }

    #[test]
    fn localhost_urls_can_be_switched_on_for_development() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("ALLOW_LOCALHOST_URLS", "true"));
        let config = Config::from_lookup(env(&pairs)).unwrap();
        assert!(config.settings.url_policy.allow_localhost);
    }

    #[test]
    fn missing_table_name_is_an_error() {
        assert!(Config::from_lookup(env(&REQUIRED[1..])).is_err());
    }

    #[test]
    fn malformed_values_are_errors() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("ALLOW_LOCALHOST_URLS", "maybe"));
        assert!(Config::from_lookup(env(&pairs)).is_err());
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("API_KEY_CACHE_TTL_SECONDS", "-1"));
        assert!(Config::from_lookup(env(&pairs)).is_err());
    }

    #[test]
    fn a_missing_or_blank_required_variable_is_named() {
        let error = Config::from_lookup(env(&REQUIRED[1..])).unwrap_err();
        assert_eq!(error, ConfigError::missing("WEBHOOKS_TABLE_NAME"));
        assert_eq!(
            error.to_string(),
            "configuration: WEBHOOKS_TABLE_NAME must be set"
        );
        let mut pairs = REQUIRED.to_vec();
        pairs[2] = ("PEPPER_SECRET_ID", "  ");
        let error = Config::from_lookup(env(&pairs)).unwrap_err();
        assert_eq!(error.variable(), "PEPPER_SECRET_ID");
    }

    #[test]
    fn each_malformed_value_names_its_variable() {
        for (name, value) in [
            ("ALLOW_LOCALHOST_URLS", "maybe"),
            ("DELIVER_TO_LOOPBACK_ONLY", "yes"),
            ("API_KEY_CACHE_TTL_SECONDS", "1m"),
            ("MAX_WEBHOOKS_PER_API_KEY", "0"),
            ("MAX_WEBHOOKS_PER_API_KEY", "many"),
        ] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push((name, value));
            let error = Config::from_lookup(env(&pairs)).unwrap_err();
            assert_eq!(error.variable(), name, "{name}={value}");
            assert!(error.to_string().contains(name), "{error}");
            assert!(!error.to_string().contains(value), "{error}");
        }
    }

    #[test]
    fn the_loopback_only_switch_is_read_with_the_rest() {
        let config = Config::from_lookup(env(&REQUIRED)).unwrap();
        assert!(!config.settings.loopback_only_deliveries);
        for on in ["true", "1"] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push(("DELIVER_TO_LOOPBACK_ONLY", on));
            let config = Config::from_lookup(env(&pairs)).unwrap();
            assert!(config.settings.loopback_only_deliveries, "{on}");
        }
    }

    #[test]
    fn numbers_and_names_are_read_trimmed() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("API_KEY_CACHE_TTL_SECONDS", " 0 "));
        pairs.push(("MAX_WEBHOOKS_PER_API_KEY", "7"));
        pairs.push(("WEBHOOK_SECRET_PREFIX", "p/"));
        let config = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(config.settings.api_key_cache_ttl, Duration::ZERO);
        assert_eq!(config.settings.max_webhooks_per_key, 7);
        assert_eq!(config.secret_prefix, "p/");
        assert_eq!(config.webhooks_table, "w");
    }

    const RECONCILE: [(&str, &str); 2] = [
        ("WEBHOOKS_TABLE_NAME", "w"),
        ("WEBHOOK_SECRET_PREFIX", "instaview/webhooks/"),
    ];

    #[test]
    fn the_reconciler_defaults_to_the_safe_age_and_changes_things() {
        let config = ReconcileConfig::from_lookup(env(&RECONCILE)).unwrap();
        assert_eq!(config.webhooks_table, "w");
        assert_eq!(config.secret_prefix, "instaview/webhooks/");
        assert_eq!(config.options.min_secret_age, DEFAULT_MIN_SECRET_AGE);
        assert!(!config.options.dry_run);
    }

    #[test]
    fn the_reconcilers_age_and_dry_run_are_read_and_checked() {
        let mut pairs = RECONCILE.to_vec();
        pairs.push(("RECONCILE_MIN_SECRET_AGE_SECONDS", "60"));
        pairs.push(("RECONCILE_DRY_RUN", "true"));
        let config = ReconcileConfig::from_lookup(env(&pairs)).unwrap();
        assert_eq!(config.options.min_secret_age, Duration::from_secs(60));
        assert!(config.options.dry_run);
        for (name, value) in [
            ("RECONCILE_MIN_SECRET_AGE_SECONDS", "-1"),
            ("RECONCILE_DRY_RUN", "maybe"),
        ] {
            let mut pairs = RECONCILE.to_vec();
            pairs.push((name, value));
            let error = ReconcileConfig::from_lookup(env(&pairs)).unwrap_err();
            assert_eq!(error.variable(), name);
        }
    }

    #[test]
    fn the_reconciler_needs_its_secret_prefix() {
        // No default: the reconciler deletes secrets under the prefix.
        let error = ReconcileConfig::from_lookup(env(&RECONCILE[..1])).unwrap_err();
        assert_eq!(error, ConfigError::missing("WEBHOOK_SECRET_PREFIX"));
    }

    #[test]
    fn the_log_level_defaults_to_info() {
        assert_eq!(log_level(env(&[])), "info");
        assert_eq!(log_level(env(&[("LOG_LEVEL", " ")])), "info");
        assert_eq!(log_level(env(&[("LOG_LEVEL", "debug")])), "debug");
    }

    /// Every `std::env::var` of the crate is in a configuration module, so that a newcomer
    /// finds every setting (and its error) in one place.
    #[test]
    fn no_other_module_reads_the_environment() {
        // Only this module reads the environment (lambda_http's own switch too, for
        // src/http/lambda_event.rs: `ignore_stage_in_path`).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut pending = vec![root.join("src")];
        let mut readers = Vec::new();
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                if ["env::var(", "env::var_os(", "env::vars("]
                    .iter()
                    .any(|call| text.contains(call))
                {
                    let relative = path.strip_prefix(root).unwrap();
                    readers.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        readers.sort();
        assert_eq!(readers, ["src/config.rs"]);
    }
}
