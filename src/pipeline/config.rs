//! The pipeline functions' settings, read from the environment once per container.

use std::time::Duration;

use crate::domain::UrlPolicy;

use super::keys::DEFAULT_KEY_CACHE_TTL;
use super::retry::RetryPolicy;

/// A setting is missing or malformed; the function refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: String) -> Self {
        Self(message)
    }
}

/// What the fan-out and delivery functions need to know about their deployment.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// `WEBHOOKS_TABLE_NAME`.
    pub webhooks_table: String,
    /// `API_KEYS_TABLE_NAME` (fan-out: the companies of a key).
    pub api_keys_table: String,
    /// `DELIVERY_LOG_TABLE_NAME`: events, deliveries and their attempts.
    pub delivery_log_table: String,
    /// `RECOVER_RATE_PER_SECOND` (deliver), default 10: recover's sends per second per webhook.
    pub recover_rate: u32,
    /// `DELIVERIES_QUEUE_URL`: where fan-out queues deliveries and deliver queues retries.
    pub deliveries_queue_url: String,
    /// `EVENTS_DLQ_URL`: where fan-out moves malformed events (fan-out only).
    pub events_dlq_url: Option<String>,
    /// `RETRY_DELAYS_SECONDS`, default `5,300,1800`.
    pub retry: RetryPolicy,
    /// `ALLOW_LOCALHOST_URLS`, as for the API.
    pub url_policy: UrlPolicy,
    /// `API_KEY_CACHE_TTL_SECONDS`, as for the API (default 60; 0 reads a key for every check):
    /// how long a key read by fan-out or deliver is reused.
    pub key_cache_ttl: Duration,
}

impl PipelineConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required =
            |name: &str| get(name).ok_or_else(|| ConfigError::new(format!("{name} must be set")));
        let retry = match get("RETRY_DELAYS_SECONDS") {
            None => RetryPolicy::default(),
            Some(text) => RetryPolicy::parse(&text).ok_or_else(|| {
                ConfigError::new(
                    "RETRY_DELAYS_SECONDS must be whole seconds separated by commas".into(),
                )
            })?,
        };
        let allow_localhost = match get("ALLOW_LOCALHOST_URLS").as_deref() {
            Some("true") | Some("1") => true,
            None | Some("false") | Some("0") => false,
            Some(_) => {
                return Err(ConfigError::new(
                    "ALLOW_LOCALHOST_URLS must be true or false".into(),
                ))
            }
        };
        let key_cache_ttl = match get("API_KEY_CACHE_TTL_SECONDS") {
            None => DEFAULT_KEY_CACHE_TTL,
            Some(text) => Duration::from_secs(text.trim().parse().map_err(|_| {
                ConfigError::new(
                    "API_KEY_CACHE_TTL_SECONDS must be a whole number of seconds".into(),
                )
            })?),
        };
        let recover_rate = match get("RECOVER_RATE_PER_SECOND") {
            None => crate::pipeline::deliver::DEFAULT_RECOVER_RATE,
            Some(text) => text
                .trim()
                .parse()
                .ok()
                .filter(|rate| *rate >= 1)
                .ok_or_else(|| {
                    ConfigError::new(
                        "RECOVER_RATE_PER_SECOND must be a whole number of at least 1".into(),
                    )
                })?,
        };
        Ok(Self {
            key_cache_ttl,
            recover_rate,
            delivery_log_table: required("DELIVERY_LOG_TABLE_NAME")?,
            webhooks_table: required("WEBHOOKS_TABLE_NAME")?,
            api_keys_table: required("API_KEYS_TABLE_NAME")?,
            deliveries_queue_url: required("DELIVERIES_QUEUE_URL")?,
            events_dlq_url: get("EVENTS_DLQ_URL"),
            retry,
            url_policy: UrlPolicy { allow_localhost },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const REQUIRED: &[(&str, &str)] = &[
        ("WEBHOOKS_TABLE_NAME", "w"),
        ("API_KEYS_TABLE_NAME", "k"),
        ("DELIVERY_LOG_TABLE_NAME", "l"),
        ("DELIVERIES_QUEUE_URL", "http://q"),
    ];

    #[test]
    fn recover_paces_at_ten_a_second_unless_told() {
        let config = PipelineConfig::from_lookup(lookup(REQUIRED)).unwrap();
        assert_eq!(config.recover_rate, 10);
        assert_eq!(config.delivery_log_table, "l");
        let mut bad = REQUIRED.to_vec();
        bad.push(("RECOVER_RATE_PER_SECOND", "0"));
        let bad: &'static [(&str, &str)] = Box::leak(bad.into_boxed_slice());
        let error = PipelineConfig::from_lookup(lookup(bad)).unwrap_err();
        assert!(
            error.to_string().contains("RECOVER_RATE_PER_SECOND"),
            "{error}"
        );
    }

    #[test]
    fn retry_delays_default_to_the_specification() {
        let config = PipelineConfig::from_lookup(lookup(REQUIRED)).unwrap();
        assert_eq!(config.retry, RetryPolicy::default());
        assert!(!config.url_policy.allow_localhost);
        assert_eq!(config.key_cache_ttl, Duration::from_secs(60));
    }

    #[test]
    fn the_key_cache_follows_the_apis_setting() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("API_KEY_CACHE_TTL_SECONDS", "0"));
        let pairs: &'static [(&str, &str)] = Box::leak(pairs.into_boxed_slice());
        let config = PipelineConfig::from_lookup(lookup(pairs)).unwrap();
        assert_eq!(config.key_cache_ttl, Duration::ZERO);
        let mut bad = REQUIRED.to_vec();
        bad.push(("API_KEY_CACHE_TTL_SECONDS", "-1"));
        let bad: &'static [(&str, &str)] = Box::leak(bad.into_boxed_slice());
        assert!(PipelineConfig::from_lookup(lookup(bad)).is_err());
    }

    #[test]
    fn retry_delays_can_be_shortened_and_are_checked() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("RETRY_DELAYS_SECONDS", "1,1,1"));
        let pairs: &'static [(&str, &str)] = Box::leak(pairs.into_boxed_slice());
        let config = PipelineConfig::from_lookup(lookup(pairs)).unwrap();
        assert_eq!(config.retry, RetryPolicy::parse("1,1,1").unwrap());
        let mut bad = REQUIRED.to_vec();
        bad.push(("RETRY_DELAYS_SECONDS", "soon"));
        let bad: &'static [(&str, &str)] = Box::leak(bad.into_boxed_slice());
        assert!(PipelineConfig::from_lookup(lookup(bad)).is_err());
    }

    #[test]
    fn a_missing_queue_is_an_error() {
        assert!(PipelineConfig::from_lookup(lookup(&REQUIRED[..3])).is_err());
    }
}
