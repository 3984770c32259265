//! Coverage-guided fuzzing of the request body parser and the URL policy: no input may panic.
#![no_main]

use instaview_webhooks::domain::{NewWebhook, UrlPolicy, WebhookUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for policy in [
        UrlPolicy { allow_localhost: true },
        UrlPolicy { allow_localhost: false },
    ] {
        let _ = NewWebhook::parse(data, policy);
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = WebhookUrl::parse(text, policy);
        }
    }
});
