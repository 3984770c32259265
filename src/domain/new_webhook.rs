//! A request to create a webhook, parsed once at the edge into types that cannot be invalid.

use std::collections::HashSet;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::custom_header::{
    CustomHeader, HeaderName, HeaderValue, MAX_HEADERS, MAX_HEADERS_TOTAL_CHARS,
};
use super::event_type::EventType;
use super::field_error::{echo, FieldError};
use super::strict_json;
use super::text::{has_control_chars, length_within};
use super::webhook_url::{UrlPolicy, WebhookUrl};

/// Limits of the text fields, in characters.
pub const MAX_NAME_CHARS: u64 = 255;
pub const MAX_DESCRIPTION_CHARS: u64 = 1000;

const FIELDS: [&str; 6] = [
    "url",
    "events",
    "name",
    "description",
    "companyId",
    "headers",
];

/// The most unknown-field errors one request collects; the rest are counted in one more error.
/// A body of 512 KiB holds tens of thousands of keys, and each error costs memory and answer.
pub const MAX_UNKNOWN_FIELD_ERRORS: usize = 100;

/// A valid request to create a webhook.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub url: WebhookUrl,
    pub events: Vec<EventType>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub company_id: Option<Uuid>,
    pub headers: Vec<CustomHeader>,
}

impl NewWebhook {
    /// Parses a request body, collecting every field error in the order of the documentation's
    /// fields (unknown fields last), so that the first error is stable for a given body.
    pub fn parse(body: &[u8], policy: UrlPolicy) -> Result<Self, Vec<FieldError>> {
        let object = json_object(body)?;

        let mut errors = Errors::default();
        let url = errors.required(&object, "url", |v| {
            let text = as_str(v, "url")?;
            WebhookUrl::parse(text, policy)
        });
        let events = errors.required(&object, "events", parse_events);
        let name = errors.optional(&object, "name", parse_name);
        let description = errors.optional(&object, "description", parse_description);
        let company_id = errors.optional(&object, "companyId", parse_company_id);
        let mut unknown = UnknownFields::default();
        let headers = match object.get("headers") {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(value) => parse_headers(value, &mut errors.0, &mut unknown),
        };
        unknown.check(&mut errors.0, "", &object, &FIELDS);
        unknown.finish(&mut errors.0);

        match (url, events, name, description, company_id, headers) {
            (
                Some(url),
                Some(events),
                Some(name),
                Some(description),
                Some(company_id),
                Some(headers),
            ) if errors.0.is_empty() => Ok(Self {
                url,
                events,
                name,
                description,
                company_id,
                headers,
            }),
            _ => Err(errors.0),
        }
    }
}

/// A request body that must be one JSON object (no duplicate keys).
pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, Vec<FieldError>> {
    let body_error = |message: &str| vec![FieldError::new("body", message)];
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(body_error("request body must not be empty"));
    }
    let value = strict_json::from_slice(body).map_err(|err| {
        body_error(&format!(
            "request body must be valid JSON ({})",
            json_error_summary(&err)
        ))
    })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(body_error("request body must be a JSON object")),
    }
}

/// What serde_json says went wrong, without echoing the input back.
fn json_error_summary(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        _ if err.to_string().starts_with("duplicate key") => "duplicate key",
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "invalid value",
        Category::Io => "unreadable input",
    };
    format!("{what} at line {} column {}", err.line(), err.column())
}

/// Reports keys no rule knows, at most [`MAX_UNKNOWN_FIELD_ERRORS`] of them one by one (named
/// through [`echo`]), and the rest as one count.
#[derive(Default)]
pub(super) struct UnknownFields {
    reported: usize,
    omitted: usize,
}

impl UnknownFields {
    /// Reports the keys of `object` that are not in `known`; `prefix` is the object's path with
    /// its trailing dot (`headers[0].`), empty at the top level.
    pub(super) fn check(
        &mut self,
        errors: &mut Vec<FieldError>,
        prefix: &str,
        object: &Map<String, Value>,
        known: &[&str],
    ) {
        for key in object.keys().filter(|key| !known.contains(&key.as_str())) {
            if self.reported < MAX_UNKNOWN_FIELD_ERRORS {
                let field = format!("{prefix}{}", echo(key));
                errors.push(FieldError::new(
                    &field,
                    format!("{field} is not a known field"),
                ));
                self.reported += 1;
            } else {
                self.omitted += 1;
            }
        }
    }

    /// Adds the count of the unknown keys not reported one by one, if any.
    pub(super) fn finish(self, errors: &mut Vec<FieldError>) {
        if self.omitted > 0 {
            errors.push(FieldError::new(
                "body",
                format!("{} more fields are not known", self.omitted),
            ));
        }
    }
}

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<FieldError>);

impl Errors {
    pub(super) fn push(&mut self, field: &str, message: String) {
        self.0.push(FieldError::new(field, message));
    }

    /// A required field: absent or `null` is an error.
    pub(super) fn required<T>(
        &mut self,
        object: &Map<String, Value>,
        field: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        match object.get(field) {
            None | Some(Value::Null) => {
                self.push(field, format!("{field} is required"));
                None
            }
            Some(value) => parse(value).map_err(|msg| self.push(field, msg)).ok(),
        }
    }

    /// An optional field: absent or `null` is `None`.
    pub(super) fn optional<T>(
        &mut self,
        object: &Map<String, Value>,
        field: &str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match object.get(field) {
            None | Some(Value::Null) => Some(None),
            Some(value) => parse(value)
                .map(Some)
                .map_err(|msg| self.push(field, msg))
                .ok(),
        }
    }
}

pub(super) fn as_str<'a>(value: &'a Value, field: &str) -> Result<&'a str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{field} must be a string"))
}

pub(super) fn parse_events(value: &Value) -> Result<Vec<EventType>, String> {
    let items = value
        .as_array()
        .ok_or("events must be an array of event type strings")?;
    if items.is_empty() || items.len() > EventType::ALL.len() {
        return Err(format!(
            "events must contain 1 to {} event types",
            EventType::ALL.len()
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        let name = item
            .as_str()
            .ok_or("events must be an array of event type strings")?;
        let event = EventType::parse(name).ok_or_else(|| {
            format!(
                "events contains an unknown event type; allowed values are: {}",
                EventType::allowed_list()
            )
        })?;
        if events.contains(&event) {
            return Err(format!("events must not contain {} twice", event.as_str()));
        }
        events.push(event);
    }
    Ok(events)
}

pub(super) fn parse_name(value: &Value) -> Result<String, String> {
    let name = as_str(value, "name")?;
    if !length_within(name, 1, MAX_NAME_CHARS) {
        return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.trim().is_empty() {
        return Err("name must not be blank".into());
    }
    if has_control_chars(name, &[]) {
        return Err("name must not contain control characters".into());
    }
    Ok(name.to_owned())
}

pub(super) fn parse_description(value: &Value) -> Result<String, String> {
    let description = as_str(value, "description")?;
    if !length_within(description, 0, MAX_DESCRIPTION_CHARS) {
        return Err(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if has_control_chars(description, &['\n', '\t']) {
        return Err(
            "description must not contain control characters other than newline and tab".into(),
        );
    }
    Ok(description.to_owned())
}

pub(super) fn parse_company_id(value: &Value) -> Result<Uuid, String> {
    const MESSAGE: &str = "companyId must be a UUID such as 550e8400-e29b-41d4-a716-446655440000";
    let text = as_str(value, "companyId")?;
    // Only the hyphenated form: the braced, URN and simple forms are accepted by the uuid crate
    // but would come back to the client in another spelling than they sent.
    if text.len() != 36 {
        return Err(MESSAGE.into());
    }
    Uuid::try_parse(text).map_err(|_| MESSAGE.to_string())
}

pub(super) fn parse_headers(
    value: &Value,
    errors: &mut Vec<FieldError>,
    unknown: &mut UnknownFields,
) -> Option<Vec<CustomHeader>> {
    let Some(items) = value.as_array() else {
        errors.push(FieldError::new("headers", "headers must be an array"));
        return None;
    };
    if items.len() > MAX_HEADERS {
        errors.push(FieldError::new(
            "headers",
            format!("headers must contain at most {MAX_HEADERS} headers"),
        ));
        // Each header is still checked below only for the first MAX_HEADERS, so an oversized
        // request cannot make us build a huge error list.
    }
    let before = errors.len();
    let mut headers = Vec::with_capacity(items.len().min(MAX_HEADERS));
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate().take(MAX_HEADERS) {
        let at = format!("headers[{i}]");
        let Some(object) = item.as_object() else {
            errors.push(FieldError::new(
                &at,
                format!("{at} must be an object with name and value"),
            ));
            continue;
        };
        let name = match object.get("name") {
            None | Some(Value::Null) => Err(format!("{at}.name is required")),
            Some(Value::String(name)) => {
                HeaderName::parse(name).map_err(|msg| format!("{at}.name {msg}"))
            }
            Some(_) => Err(format!("{at}.name must be a string")),
        };
        let value = match object.get("value") {
            None | Some(Value::Null) => Err(format!("{at}.value is required")),
            Some(Value::String(value)) => {
                HeaderValue::parse(value).map_err(|msg| format!("{at}.value {msg}"))
            }
            Some(_) => Err(format!("{at}.value must be a string")),
        };
        let name = name
            .map_err(|msg| errors.push(FieldError::new(format!("{at}.name"), msg)))
            .ok();
        if let Some(name) = &name {
            if !seen.insert(name.folded()) {
                errors.push(FieldError::new(
                    format!("{at}.name"),
                    format!(
                        "{at}.name repeats an earlier header name (names are case-insensitive and _ is the same as -)"
                    ),
                ));
            }
        }
        let value = value
            .map_err(|msg| errors.push(FieldError::new(format!("{at}.value"), msg)))
            .ok();
        unknown.check(errors, &format!("{at}."), object, &["name", "value"]);
        if let (Some(name), Some(value)) = (name, value) {
            headers.push(CustomHeader::new(name, value));
        }
    }
    // The total is checked on the headers that passed; the limit keeps the secret document
    // within Secrets Manager's size (see `MAX_HEADERS_TOTAL_CHARS`). Names and values are
    // ASCII, so bytes are characters.
    let total: usize = headers
        .iter()
        .map(|h| h.name().len() + h.expose_value().len())
        .sum();
    if total > MAX_HEADERS_TOTAL_CHARS {
        errors.push(FieldError::new(
            "headers",
            format!(
                "headers must have at most {MAX_HEADERS_TOTAL_CHARS} characters of names and values in total"
            ),
        ));
    }
    (errors.len() == before && items.len() <= MAX_HEADERS).then_some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: UrlPolicy = UrlPolicy {
        allow_localhost: true,
    };

    fn parse(value: Value) -> Result<NewWebhook, Vec<FieldError>> {
        NewWebhook::parse(value.to_string().as_bytes(), POLICY)
    }

    fn errors(value: Value) -> Vec<FieldError> {
        parse(value).expect_err("request should be refused")
    }

    fn fields(value: Value) -> Vec<String> {
        errors(value).into_iter().map(|e| e.field).collect()
    }

    fn minimal() -> Value {
        json!({"url": "https://api.example.com/hook", "events": ["ping"]})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut body = minimal();
        body[key] = value;
        body
    }

    #[test]
    fn accepts_the_documentation_example() {
        let webhook = parse(json!({
            "url": "https://api.example.com/webhooks/instaview",
            "name": "Production Webhook",
            "description": "Receives interview completion notifications",
            "events": ["interview.completed", "analysis.completed"],
            "headers": [{ "name": "Authorization", "value": "Bearer your-internal-token" }]
        }))
        .unwrap();
        assert_eq!(
            webhook.url.as_str(),
            "https://api.example.com/webhooks/instaview"
        );
        assert_eq!(
            webhook.events,
            vec![EventType::InterviewCompleted, EventType::AnalysisCompleted]
        );
        assert_eq!(webhook.name.as_deref(), Some("Production Webhook"));
        assert_eq!(webhook.headers.len(), 1);
        assert_eq!(
            webhook.headers[0].expose_value(),
            "Bearer your-internal-token"
        );
    }

    #[test]
    fn accepts_minimal_request_with_optional_fields_absent_or_null() {
        let webhook = parse(minimal()).unwrap();
        assert!(webhook.name.is_none() && webhook.description.is_none());
        assert!(webhook.company_id.is_none() && webhook.headers.is_empty());
        let mut body = minimal();
        for key in ["name", "description", "companyId", "headers"] {
            body[key] = Value::Null;
        }
        assert!(parse(body).is_ok());
    }

    #[test]
    fn rejects_empty_body() {
        let errs = NewWebhook::parse(b"", POLICY).unwrap_err();
        assert_eq!(
            errs,
            vec![FieldError::new("body", "request body must not be empty")]
        );
        assert!(NewWebhook::parse(b"  \n", POLICY).is_err());
    }

    #[test]
    fn rejects_malformed_json_without_echoing_it() {
        let errs = NewWebhook::parse(b"{\"url\": \"sk_secret", POLICY).unwrap_err();
        assert_eq!(errs[0].field, "body");
        assert!(errs[0]
            .message
            .starts_with("request body must be valid JSON"));
        assert!(!errs[0].message.contains("sk_secret"));
    }

    #[test]
    fn rejects_non_object_body() {
        for body in ["[]", "\"x\"", "1", "null", "true"] {
            let errs = NewWebhook::parse(body.as_bytes(), POLICY).unwrap_err();
            assert_eq!(
                errs[0].message, "request body must be a JSON object",
                "{body}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_keys() {
        let body = br#"{"url":"https://a.example.com","url":"https://10.0.0.1","events":["ping"]}"#;
        let errs = NewWebhook::parse(body, POLICY).unwrap_err();
        assert!(errs[0].message.contains("duplicate key"));
    }

    #[test]
    fn rejects_unknown_fields() {
        let errs = errors(with("secret", json!("x")));
        assert_eq!(
            errs,
            vec![FieldError::new("secret", "secret is not a known field")]
        );
        assert_eq!(fields(with("isActive", json!(false))), vec!["isActive"]);
    }

    #[test]
    fn unknown_field_names_are_echoed_cut_to_64_characters() {
        let key = format!("sk_{}", "a".repeat(197));
        let errs = errors(with(&key, json!(1)));
        let cut = format!("sk_{}…", "a".repeat(60));
        assert_eq!(
            errs,
            vec![FieldError::new(&cut, format!("{cut} is not a known field"))]
        );
        let errs = errors(with(
            "headers",
            json!([{"name": "X-A", "value": "v", "\u{1b}[2J": 1}]),
        ));
        assert_eq!(errs[0].field, "headers[0].[2J");
    }

    #[test]
    fn a_512_kib_body_of_unknown_keys_gives_a_bounded_error_list() {
        let mut body = String::from(r#"{"url":"https://a.example.com","events":["ping"]"#);
        let mut keys = 0;
        while body.len() < 512 * 1024 - 20 {
            body.push_str(&format!(r#","k{keys}":0"#));
            keys += 1;
        }
        body.push('}');
        let errs = NewWebhook::parse(body.as_bytes(), POLICY).unwrap_err();
        assert_eq!(errs.len(), MAX_UNKNOWN_FIELD_ERRORS + 1);
        assert_eq!(
            errs.last().unwrap(),
            &FieldError::new(
                "body",
                format!(
                    "{} more fields are not known",
                    keys - MAX_UNKNOWN_FIELD_ERRORS
                )
            )
        );
        let details = crate::domain::field_error::bounded_details(&errs).to_string();
        assert!(details.len() < 16 * 1024, "{}", details.len());
    }

    #[test]
    fn unknown_keys_in_header_objects_share_the_bound() {
        let mut header = serde_json::Map::new();
        header.insert("name".into(), json!("X-A"));
        header.insert("value".into(), json!("v"));
        for i in 0..1000 {
            header.insert(format!("k{i}"), json!(0));
        }
        let errs = errors(with("headers", json!([header, {"name": "X-B", "zz": 1}])));
        assert_eq!(errs.len(), MAX_UNKNOWN_FIELD_ERRORS + 2);
        assert_eq!(errs[MAX_UNKNOWN_FIELD_ERRORS].field, "headers[1].value");
        assert_eq!(
            errs.last().unwrap().message,
            "901 more fields are not known"
        );
    }

    #[test]
    fn url_is_required_and_must_be_a_string() {
        assert_eq!(
            errors(json!({"events": ["ping"]})),
            vec![FieldError::new("url", "url is required")]
        );
        assert_eq!(fields(with("url", json!(1))), vec!["url"]);
        assert_eq!(fields(with("url", Value::Null)), vec!["url"]);
    }

    #[test]
    fn events_are_required_non_empty_and_at_most_six() {
        assert_eq!(
            fields(json!({"url": "https://a.example.com"})),
            vec!["events"]
        );
        assert_eq!(fields(with("events", json!([]))), vec!["events"]);
        assert_eq!(fields(with("events", json!("ping"))), vec!["events"]);
        assert_eq!(fields(with("events", json!([1]))), vec!["events"]);
        let all: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        assert!(parse(with("events", json!(all))).is_ok());
        let mut seven = all.clone();
        seven.push("ping");
        assert_eq!(fields(with("events", json!(seven))), vec!["events"]);
    }

    #[test]
    fn rejects_duplicate_events() {
        let errs = errors(with("events", json!(["ping", "ping"])));
        assert_eq!(errs[0].message, "events must not contain ping twice");
    }

    #[test]
    fn unknown_event_error_lists_the_allowed_values() {
        let errs = errors(with("events", json!(["interview.created"])));
        for event in EventType::ALL {
            assert!(errs[0].message.contains(event.as_str()));
        }
    }

    #[test]
    fn events_keep_request_order() {
        let webhook = parse(with("events", json!(["ping", "analysis.failed"]))).unwrap();
        assert_eq!(
            webhook.events,
            vec![EventType::Ping, EventType::AnalysisFailed]
        );
    }

    #[test]
    fn name_of_255_characters_is_accepted_and_256_rejected() {
        assert!(parse(with("name", json!("n".repeat(255)))).is_ok());
        assert!(parse(with("name", json!("ü".repeat(255)))).is_ok());
        assert_eq!(fields(with("name", json!("n".repeat(256)))), vec!["name"]);
    }

    #[test]
    fn rejects_empty_blank_or_control_character_names() {
        for name in ["", "   ", "a\nb", "a\u{0}b", "a\u{7f}", "\u{85}"] {
            assert_eq!(fields(with("name", json!(name))), vec!["name"], "{name:?}");
        }
        assert_eq!(fields(with("name", json!(5))), vec!["name"]);
    }

    #[test]
    fn description_of_1000_characters_is_accepted_and_1001_rejected() {
        assert!(parse(with("description", json!("d".repeat(1000)))).is_ok());
        assert_eq!(
            fields(with("description", json!("d".repeat(1001)))),
            vec!["description"]
        );
        assert!(parse(with("description", json!(""))).is_ok());
    }

    #[test]
    fn description_allows_newline_and_tab_but_no_other_control_characters() {
        assert!(parse(with("description", json!("line 1\n\tline 2"))).is_ok());
        for text in ["a\rb", "a\u{0}", "a\u{1b}[31m"] {
            assert_eq!(
                fields(with("description", json!(text))),
                vec!["description"]
            );
        }
    }

    #[test]
    fn company_id_must_be_a_hyphenated_uuid_and_is_lowercased() {
        let webhook = parse(with(
            "companyId",
            json!("550E8400-E29B-41D4-A716-446655440000"),
        ))
        .unwrap();
        assert_eq!(
            webhook.company_id.unwrap().to_string(),
            "550e8400-e29b-41d4-a716-446655440000"
        );
        for id in [
            "company-uuid",
            "550e8400e29b41d4a716446655440000",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
            "",
        ] {
            assert_eq!(
                fields(with("companyId", json!(id))),
                vec!["companyId"],
                "{id}"
            );
        }
    }

    #[test]
    fn fifty_headers_are_accepted_and_fifty_one_rejected() {
        let headers = |n: usize| {
            json!((0..n)
                .map(|i| json!({"name": format!("X-H{i}"), "value": "v"}))
                .collect::<Vec<_>>())
        };
        assert!(parse(with("headers", headers(50))).is_ok());
        assert_eq!(fields(with("headers", headers(51))), vec!["headers"]);
    }

    /// 50 headers with one-character names and values filling the rest of the total, all `"`
    /// (escaped to 2 bytes): the largest secret document the rules let through.
    fn worst_case_headers(total_chars: usize) -> Value {
        let names: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+.^_`|~"
            .chars()
            .collect();
        assert!(names.len() >= MAX_HEADERS);
        let value_chars = total_chars - MAX_HEADERS;
        json!((0..MAX_HEADERS)
            .map(|i| {
                let len = value_chars / MAX_HEADERS + usize::from(i < value_chars % MAX_HEADERS);
                json!({"name": names[i].to_string(), "value": "\"".repeat(len)})
            })
            .collect::<Vec<_>>())
    }

    #[test]
    fn headers_over_the_total_character_limit_are_rejected_naming_the_limit() {
        assert!(parse(with("headers", worst_case_headers(MAX_HEADERS_TOTAL_CHARS))).is_ok());
        let errs = errors(with(
            "headers",
            worst_case_headers(MAX_HEADERS_TOTAL_CHARS + 1),
        ));
        assert_eq!(
            errs,
            vec![FieldError::new(
                "headers",
                "headers must have at most 32000 characters of names and values in total"
            )]
        );
    }

    #[test]
    fn worst_case_accepted_headers_fit_in_one_secrets_manager_secret() {
        use crate::domain::custom_header::{MAX_SECRET_BYTES, WORST_CASE_SECRET_BYTES};
        let webhook = parse(with("headers", worst_case_headers(MAX_HEADERS_TOTAL_CHARS))).unwrap();
        // Built as `store::secret_document` builds it, with rotation's two extra fields.
        let headers: Vec<Value> = webhook
            .headers
            .iter()
            .map(|h| json!({"name": h.name(), "value": h.expose_value()}))
            .collect();
        let document = json!({
            "signingSecret": "f".repeat(64),
            "headers": headers,
            "previousSigningSecret": "f".repeat(64),
            "previousExpiresAt": "9999-12-31T23:59:59.999999999+00:00",
        })
        .to_string();
        assert!(
            document.len() <= WORST_CASE_SECRET_BYTES,
            "{}",
            document.len()
        );
        assert!(document.len() < MAX_SECRET_BYTES, "{}", document.len());
    }

    #[test]
    fn ten_thousand_headers_give_one_bounded_error_list() {
        let many: Vec<Value> = (0..10_000)
            .map(|_| json!({"name": "Host", "value": "v"}))
            .collect();
        let errs = errors(with("headers", json!(many)));
        assert!(errs.len() <= MAX_HEADERS * 3 + 1);
    }

    #[test]
    fn header_names_are_unique_case_insensitively() {
        let errs = errors(with(
            "headers",
            json!([{"name": "X-Token", "value": "a"}, {"name": "x-token", "value": "b"}]),
        ));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "headers[1].name");
    }

    #[test]
    fn header_names_are_unique_with_underscore_folded_to_hyphen() {
        let errs = errors(with(
            "headers",
            json!([{"name": "X-A", "value": "a"}, {"name": "x_a", "value": "b"}]),
        ));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "headers[1].name");
    }

    #[test]
    fn header_objects_need_name_and_value_and_nothing_else() {
        assert_eq!(
            fields(with("headers", json!([{"name": "X-A"}]))),
            vec!["headers[0].value"]
        );
        assert_eq!(
            fields(with("headers", json!([{"value": "v"}]))),
            vec!["headers[0].name"]
        );
        assert_eq!(
            fields(with(
                "headers",
                json!([{"name": "X-A", "value": "v", "isMasked": false}])
            )),
            vec!["headers[0].isMasked"]
        );
        assert_eq!(
            fields(with("headers", json!(["X-A: v"]))),
            vec!["headers[0]"]
        );
        assert_eq!(
            fields(with("headers", json!({"X-A": "v"}))),
            vec!["headers"]
        );
        assert_eq!(
            fields(with("headers", json!([{"name": 1, "value": 2}]))),
            vec!["headers[0].name", "headers[0].value"]
        );
    }

    #[test]
    fn header_errors_name_the_exact_entry() {
        let errs = errors(with(
            "headers",
            json!([
                {"name": "X-Ok", "value": "fine"},
                {"name": "Content-Type", "value": "text/plain"},
                {"name": "X-Bad", "value": "a\r\nb"}
            ]),
        ));
        let got: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(got, vec!["headers[1].name", "headers[2].value"]);
        assert_eq!(
            errs[0].message,
            "headers[1].name Content-Type is a reserved header name"
        );
    }

    #[test]
    fn collects_every_field_error_in_documentation_order() {
        let errs = errors(json!({
            "zzz": 1,
            "headers": [{"name": "Host", "value": " x"}],
            "companyId": "nope",
            "description": 7,
            "name": "",
            "events": ["nope"],
            "url": "http://example.com"
        }));
        let got: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "url",
                "events",
                "name",
                "description",
                "companyId",
                "headers[0].name",
                "headers[0].value",
                "zzz"
            ]
        );
        assert_eq!(
            errs[0].message,
            "url must use https (http is only allowed for localhost)"
        );
    }
}
