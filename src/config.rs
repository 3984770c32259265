//! Settings read from the environment once per container.

use std::time::Duration;

use crate::domain::UrlPolicy;

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

/// A setting is missing or malformed; the function refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (testable without touching the environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required =
            |name: &str| get(name).ok_or_else(|| ConfigError(format!("{name} must be set")));
        let allow_localhost = match get("ALLOW_LOCALHOST_URLS").as_deref() {
            Some("true") | Some("1") => true,
            None | Some("false") | Some("0") => false,
            Some(_) => {
                return Err(ConfigError(
                    "ALLOW_LOCALHOST_URLS must be true or false".into(),
                ))
            }
        };
        let loopback_only_deliveries = match get("DELIVER_TO_LOOPBACK_ONLY").as_deref() {
            Some("true") | Some("1") => true,
            None | Some("false") | Some("0") => false,
            Some(_) => {
                return Err(ConfigError(
                    "DELIVER_TO_LOOPBACK_ONLY must be true or false".into(),
                ))
            }
        };
        let ttl = match get("API_KEY_CACHE_TTL_SECONDS") {
            None => 60,
            Some(v) => v.parse::<u64>().map_err(|_| {
                ConfigError("API_KEY_CACHE_TTL_SECONDS must be a whole number of seconds".into())
            })?,
        };
        let max_webhooks_per_key = match get("MAX_WEBHOOKS_PER_API_KEY") {
            None => 100,
            Some(v) => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError("MAX_WEBHOOKS_PER_API_KEY must be a positive whole number".into())
            })?,
        };
        Ok(Self {
            webhooks_table: required("WEBHOOKS_TABLE_NAME")?,
            api_keys_table: required("API_KEYS_TABLE_NAME")?,
            pepper_secret_id: required("PEPPER_SECRET_ID")?,
            secret_prefix: get("WEBHOOK_SECRET_PREFIX")
                .unwrap_or_else(|| "instaview/webhooks/".into()),
            kms_key_id: get("WEBHOOK_SECRET_KMS_KEY_ID"),
            settings: Settings {
                url_policy: UrlPolicy { allow_localhost },
                api_key_cache_ttl: Duration::from_secs(ttl),
                max_webhooks_per_key,
                loopback_only_deliveries,
                write_budget: crate::time_budget::WRITE_BUDGET,
            },
        })
    }
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

    const REQUIRED: [(&str, &str); 3] = [
        ("WEBHOOKS_TABLE_NAME", "w"),
        ("API_KEYS_TABLE_NAME", "k"),
        ("PEPPER_SECRET_ID", "p"),
    ];

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
}
