//! Structured JSON logs, one line per request.
//!
//! Only this crate follows `LOG_LEVEL`; every dependency is capped at `info`. The Lambda runtime
//! logs whole raw events (Authorization header and body included) at TRACE, and SDKs log request
//! bodies at TRACE: letting them through would put tokens and secrets in the logs.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The filter: `info` for everything, `level` for this crate.
pub fn filter(level: &str) -> EnvFilter {
    let level = match level.to_ascii_lowercase().as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => l.to_owned(),
        _ => "info".to_owned(),
    };
    EnvFilter::new(format!("info,instaview_webhooks={level}"))
}

/// Installs the JSON subscriber for the process, writing to stdout (CloudWatch).
pub fn init() {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    // A second call (tests) keeps the first subscriber, which is what we want.
    let _ = tracing::subscriber::set_global_default(subscriber(filter(&level), std::io::stdout));
}

/// The subscriber, writing to `writer` (tests capture it).
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}
