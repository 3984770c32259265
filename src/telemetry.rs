//! Structured JSON logs, one line per request.
//!
//! Only this crate follows `LOG_LEVEL`; every dependency is capped at `info`. The Lambda runtime
//! logs whole raw events (Authorization header and body included) at TRACE, and SDKs log request
//! bodies at TRACE: letting them through would put tokens and secrets in the logs.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// The filter: `info` for everything, `level` for this crate (an unknown level means `info`).
/// A static `Targets` filter, not `EnvFilter`: nothing outside can widen it, and it needs no
/// regex engine in the binary.
pub fn filter(level: &str) -> Targets {
    let level = level.parse::<LevelFilter>().unwrap_or(LevelFilter::INFO);
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("instaview_webhooks", level)
}

/// Installs the JSON subscriber for the process, writing to stdout (CloudWatch).
pub fn init() {
    let level = crate::config::log_level(crate::config::process_env);
    // A second call (tests) keeps the first subscriber, which is what we want.
    let _ = tracing::subscriber::set_global_default(subscriber(filter(&level), std::io::stdout));
}

/// The subscriber, writing to `writer` (tests capture it).
pub fn subscriber<W>(filter: Targets, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer)
        .finish()
        .with(filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn dependencies_stay_at_info_whatever_the_level() {
        let filter = filter("trace");
        assert!(filter.would_enable("instaview_webhooks::service", &Level::TRACE));
        assert!(!filter.would_enable("lambda_runtime::layers::api_response", &Level::TRACE));
        assert!(!filter.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(filter.would_enable("lambda_runtime", &Level::INFO));
    }

    #[test]
    fn unknown_level_means_info() {
        let filter = filter("loud");
        assert!(filter.would_enable("instaview_webhooks", &Level::INFO));
        assert!(!filter.would_enable("instaview_webhooks", &Level::DEBUG));
    }
}
