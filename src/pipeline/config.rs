//! The pipeline functions' settings, read from the environment once per container (through
//! [`crate::config::Vars`], with the API's [`ConfigError`]).

use std::time::Duration;

use crate::config::{process_env, ConfigError, Vars};
use crate::domain::UrlPolicy;

use super::keys::DEFAULT_KEY_CACHE_TTL;
use super::retry::RetryPolicy;

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
    /// `DELIVER_TO_LOOPBACK_ONLY`, as for the API's test ping (default false; `local.env` sets
    /// it, so that a local stack or a test run never delivers off the machine).
    pub loopback_only_deliveries: bool,
}

impl PipelineConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(process_env)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(lookup);
        let retry = vars.parsed(
            "RETRY_DELAYS_SECONDS",
            RetryPolicy::default(),
            "must be whole seconds separated by commas",
            RetryPolicy::parse,
        )?;
        let recover_rate = vars.parsed(
            "RECOVER_RATE_PER_SECOND",
            crate::pipeline::deliver::DEFAULT_RECOVER_RATE,
            "must be a whole number of at least 1",
            |text| text.parse().ok().filter(|rate| *rate >= 1),
        )?;
        Ok(Self {
            key_cache_ttl: vars.seconds("API_KEY_CACHE_TTL_SECONDS", DEFAULT_KEY_CACHE_TTL)?,
            recover_rate,
            delivery_log_table: vars.required("DELIVERY_LOG_TABLE_NAME")?,
            webhooks_table: vars.required("WEBHOOKS_TABLE_NAME")?,
            api_keys_table: vars.required("API_KEYS_TABLE_NAME")?,
            deliveries_queue_url: vars.required("DELIVERIES_QUEUE_URL")?,
            events_dlq_url: vars.get("EVENTS_DLQ_URL"),
            retry,
            url_policy: UrlPolicy {
                allow_localhost: vars.switch("ALLOW_LOCALHOST_URLS")?,
            },
            loopback_only_deliveries: vars.switch("DELIVER_TO_LOOPBACK_ONLY")?,
        })
    }

    /// `EVENTS_DLQ_URL`, which the fan-out cannot do without.
    pub fn require_events_dlq_url(&self) -> Result<&str, ConfigError> {
        self.events_dlq_url
            .as_deref()
            .ok_or(ConfigError::missing("EVENTS_DLQ_URL"))
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

    #[test]
    fn a_missing_or_malformed_setting_names_its_variable() {
        let error = PipelineConfig::from_lookup(lookup(&REQUIRED[..3])).unwrap_err();
        assert_eq!(error, ConfigError::missing("DELIVERIES_QUEUE_URL"));
        for (name, value) in [
            ("RETRY_DELAYS_SECONDS", "soon"),
            ("ALLOW_LOCALHOST_URLS", "maybe"),
            ("API_KEY_CACHE_TTL_SECONDS", "-1"),
            ("DELIVER_TO_LOOPBACK_ONLY", "yes"),
        ] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push((name, value));
            let pairs: &'static [(&str, &str)] = Box::leak(pairs.into_boxed_slice());
            let error = PipelineConfig::from_lookup(lookup(pairs)).unwrap_err();
            assert_eq!(error.variable(), name, "{name}={value}");
        }
    }

    #[test]
    fn deliveries_stay_on_the_machine_only_when_asked() {
        let config = PipelineConfig::from_lookup(lookup(REQUIRED)).unwrap();
        assert!(!config.loopback_only_deliveries);
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("DELIVER_TO_LOOPBACK_ONLY", "1"));
        let pairs: &'static [(&str, &str)] = Box::leak(pairs.into_boxed_slice());
        let config = PipelineConfig::from_lookup(lookup(pairs)).unwrap();
        assert!(config.loopback_only_deliveries);
    }

    #[test]
    fn the_fan_out_needs_its_dead_letter_queue() {
        let config = PipelineConfig::from_lookup(lookup(REQUIRED)).unwrap();
        assert_eq!(
            config.require_events_dlq_url(),
            Err(ConfigError::missing("EVENTS_DLQ_URL"))
        );
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("EVENTS_DLQ_URL", "http://dlq"));
        let pairs: &'static [(&str, &str)] = Box::leak(pairs.into_boxed_slice());
        let config = PipelineConfig::from_lookup(lookup(pairs)).unwrap();
        assert_eq!(config.require_events_dlq_url(), Ok("http://dlq"));
    }
}
