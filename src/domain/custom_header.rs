//! Custom headers a customer asks us to send with every delivery (typically their own auth).

use secrecy::{ExposeSecret, SecretString};

use super::field_error::echo;
use super::text::length_within;

/// The most custom headers one webhook may have.
pub const MAX_HEADERS: usize = 50;
/// Header name length limits, in characters.
pub const MAX_HEADER_NAME_CHARS: u64 = 255;
/// Header value length limits, in characters.
pub const MAX_HEADER_VALUE_CHARS: u64 = 4096;

/// The most bytes one Secrets Manager secret value may hold (an AWS quota). The in-memory
/// secret store enforces it too, so that tests see what AWS would refuse.
pub const MAX_SECRET_BYTES: usize = 65_536;

/// The most characters the names and values of one webhook's custom headers may have together.
/// 50 headers of 4,096 characters would not fit one secret, so the total is bounded such that
/// the secret document always fits [`MAX_SECRET_BYTES`] (see [`WORST_CASE_SECRET_BYTES`]).
pub const MAX_HEADERS_TOTAL_CHARS: usize = 32_000;

/// The longest RFC 3339 timestamp the secret document holds (`previousExpiresAt`), with
/// nanoseconds and an offset: `9999-12-31T23:59:59.999999999+00:00`.
const MAX_TIMESTAMP_BYTES: usize = 35;

/// Bytes of the largest secret document the header rules allow, as compact JSON:
/// `{"signingSecret", "headers": [{"name", "value"}], "previousSigningSecret", "previousExpiresAt"}`
/// with both signing secrets (64 hex characters each) and the longest timestamp. Names are
/// `tchar`s, never escaped; a value character is visible ASCII, space or tab, and escapes to at
/// most 2 bytes (`\"`, `\\`, `\t`), so the worst case has one-character names and the rest
/// of the total in values.
pub const WORST_CASE_SECRET_BYTES: usize = {
    let skeleton =
        r#"{"signingSecret":"","headers":[],"previousSigningSecret":"","previousExpiresAt":""}"#
            .len();
    // One entry plus its comma; the last has none, which this overcounts by a byte.
    let per_header = r#"{"name":"","value":""},"#.len();
    skeleton + 2 * 64 + MAX_TIMESTAMP_BYTES + MAX_HEADERS * per_header + 2 * MAX_HEADERS_TOTAL_CHARS
};

const _: () = assert!(WORST_CASE_SECRET_BYTES < MAX_SECRET_BYTES);

/// Names the sender itself controls: framing, hop-by-hop and our own signature headers.
/// Letting a customer set them would break delivery or let them forge our signatures.
/// Written in [`fold`]ed form.
const RESERVED_NAMES: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "http2-settings",
    "content-md5",
    "content-range",
];

/// Prefixes of names reserved for InstaView, the Standard Webhooks headers and AWS.
const RESERVED_PREFIXES: &[&str] = &["x-instaview-", "webhook-", "x-amz-", "x-amzn-"];

/// A validated custom header. The value is a secret: it is often a bearer token for the
/// customer's endpoint, so it is never logged, returned or stored outside the secret store.
#[derive(Clone, Debug)]
pub struct CustomHeader {
    name: String,
    value: SecretString,
}

impl CustomHeader {
    /// Builds a header from already validated parts.
    pub fn new(name: HeaderName, value: HeaderValue) -> Self {
        Self {
            name: name.0,
            value: value.0,
        }
    }

    /// The name as the client spelled it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value; call only where it must leave the process (the secret store).
    pub fn expose_value(&self) -> &str {
        self.value.expose_secret()
    }
}

/// A header name: an RFC 9110 token that is not reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderName(String);

impl HeaderName {
    /// Checks the name rules; the error is a message naming the problem (without `headers[i]`).
    pub fn parse(name: &str) -> Result<Self, String> {
        if !length_within(name, 1, MAX_HEADER_NAME_CHARS) {
            return Err(format!("must be 1 to {MAX_HEADER_NAME_CHARS} characters"));
        }
        if !name.bytes().all(is_tchar) {
            return Err(
                "must be a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)".into(),
            );
        }
        if is_reserved(name) {
            return Err(format!("{} is a reserved header name", echo(name)));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a receiver may see it (see [`fold`]): two names with the same folded form
    /// are the same header.
    pub fn folded(&self) -> String {
        fold(&self.0)
    }
}

/// A header value: visible ASCII with inner spaces or tabs, nothing that could split a header.
#[derive(Clone, Debug)]
pub struct HeaderValue(SecretString);

impl HeaderValue {
    /// Checks the value rules. The message never repeats the value, which is a secret.
    pub fn parse(value: &str) -> Result<Self, String> {
        if !length_within(value, 1, MAX_HEADER_VALUE_CHARS) {
            return Err(format!("must be 1 to {MAX_HEADER_VALUE_CHARS} characters"));
        }
        let allowed = |b: u8| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b);
        if !value.bytes().all(allowed) {
            return Err("must contain only visible ASCII characters, spaces and tabs".into());
        }
        if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
            return Err("must not start or end with whitespace".into());
        }
        Ok(Self(SecretString::from(value)))
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name lowercased and with `_` folded to `-`. CGI, WSGI and Rack receivers see
/// `X_A` and `X-A` as one variable (`HTTP_X_A`), so `Content_Length` is `Content-Length` there.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// True when the sender, not the customer, owns this header name (compared [`fold`]ed).
pub fn is_reserved(name: &str) -> bool {
    let name = fold(name);
    RESERVED_NAMES.contains(&name.as_str())
        || RESERVED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_token_header_names() {
        for name in [
            "Authorization",
            "X-Api-Key",
            "x_custom",
            "A",
            "!#$%&'*+-.^_`|~09az",
        ] {
            assert!(HeaderName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn header_name_of_255_characters_is_accepted_and_256_rejected() {
        assert!(HeaderName::parse(&"a".repeat(255)).is_ok());
        assert!(HeaderName::parse(&"a".repeat(256)).is_err());
        assert!(HeaderName::parse("").is_err());
    }

    #[test]
    fn rejects_header_names_with_separators_spaces_or_non_ascii() {
        for name in [
            "X Api",
            "X:Api",
            "X-Api\r\n",
            "(x)",
            "x/y",
            "x@y",
            "é",
            "x\"",
            "x,y",
            "x;y",
            "x=y",
            "x\0",
        ] {
            assert!(HeaderName::parse(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn rejects_every_reserved_header_name_in_any_case() {
        for name in RESERVED_NAMES {
            assert!(HeaderName::parse(name).is_err(), "{name}");
            assert!(HeaderName::parse(&name.to_uppercase()).is_err(), "{name}");
        }
    }

    #[test]
    fn rejects_reserved_header_prefixes() {
        for name in [
            "X-InstaView-Signature",
            "x-instaview-anything",
            "Webhook-Signature",
            "webhook-id",
            "X-Amz-Date",
            "x-amzn-trace-id",
        ] {
            assert!(HeaderName::parse(name).is_err(), "{name}");
        }
    }

    #[test]
    fn rejects_reserved_header_names_spelled_with_underscores() {
        for name in [
            "Content_Length",
            "content_type",
            "Transfer_Encoding",
            "X_InstaView_Signature",
            "x-instaview_anything",
            "Webhook_Id",
            "X_Amz_Date",
            "X_Amzn_Trace_Id",
            "Proxy_Authorization",
        ] {
            assert!(HeaderName::parse(name).is_err(), "{name}");
        }
    }

    #[test]
    fn rejects_proxy_connection_http2_settings_content_md5_and_content_range() {
        for name in [
            "Proxy-Connection",
            "HTTP2-Settings",
            "Content-MD5",
            "Content-Range",
        ] {
            assert_eq!(
                HeaderName::parse(name).unwrap_err(),
                format!("{name} is a reserved header name")
            );
        }
    }

    #[test]
    fn folded_name_treats_underscore_and_hyphen_alike() {
        let folded = |name| HeaderName::parse(name).unwrap().folded();
        assert_eq!(folded("X_Api_Key"), folded("x-api-key"));
        assert_ne!(folded("X-Api-Key"), folded("X-ApiKey"));
    }

    #[test]
    fn accepts_names_that_only_resemble_reserved_ones() {
        for name in [
            "X-InstaView",
            "Webhook",
            "X-Amz",
            "Hostname",
            "Content-Type-Hint",
            "Authorization",
        ] {
            assert!(HeaderName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn reserved_header_message_names_the_header() {
        assert_eq!(
            HeaderName::parse("Host").unwrap_err(),
            "Host is a reserved header name"
        );
    }

    #[test]
    fn header_value_of_4096_characters_is_accepted_and_4097_rejected() {
        assert!(HeaderValue::parse(&"v".repeat(4096)).is_ok());
        assert!(HeaderValue::parse(&"v".repeat(4097)).is_err());
        assert!(HeaderValue::parse("").is_err());
    }

    #[test]
    fn header_value_allows_inner_spaces_and_tabs() {
        assert!(HeaderValue::parse("Bearer abc").is_ok());
        assert!(HeaderValue::parse("a\tb").is_ok());
    }

    #[test]
    fn rejects_header_values_with_cr_lf_nul_or_non_ascii() {
        for value in [
            "a\r\nX-Evil: 1",
            "a\nb",
            "a\rb",
            "a\0b",
            "é",
            "a\u{7f}",
            "\u{1}",
        ] {
            assert!(HeaderValue::parse(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn rejects_header_values_with_leading_or_trailing_whitespace() {
        for value in [" a", "a ", "\ta", "a\t", " "] {
            assert!(HeaderValue::parse(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn header_value_error_does_not_repeat_the_value() {
        let err = HeaderValue::parse("secret-token\n").unwrap_err();
        assert!(!err.contains("secret-token"));
    }

    #[test]
    fn custom_header_debug_hides_the_value() {
        let header = CustomHeader::new(
            HeaderName::parse("Authorization").unwrap(),
            HeaderValue::parse("Bearer hunter2").unwrap(),
        );
        assert!(!format!("{header:?}").contains("hunter2"));
    }
}
