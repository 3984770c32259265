//! A request to change a webhook (`PATCH /webhooks/{id}`), parsed once at the edge.
//!
//! Each field follows its create rule; `name` and `description` may be `null` to clear them;
//! every error is collected, in the order of the fields below, unknown fields last.

use serde_json::Value;

use super::custom_header::CustomHeader;
use super::event_type::EventType;
use super::field_error::FieldError;
use super::new_webhook::{
    as_str, json_object, parse_description, parse_events, parse_headers, parse_name, Errors,
    UnknownFields,
};
use super::webhook_url::{UrlPolicy, WebhookUrl};

/// The fields a PATCH may change, in the documentation's order.
const CHANGEABLE: [&str; 6] = [
    "url",
    "events",
    "name",
    "description",
    "headers",
    "isActive",
];

/// Fields of the webhook that exist but are not the client's to change.
const FIXED: [&str; 10] = [
    "id",
    "apiKeyId",
    "companyId",
    "signingSecret",
    "maxRetries",
    "timeoutMs",
    "consecutiveFailures",
    "circuitOpenedAt",
    "createdAt",
    "updatedAt",
];

/// A valid change: `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<WebhookUrl>,
    pub events: Option<Vec<EventType>>,
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    /// Replaces the whole list (values go to the webhook's secret).
    pub headers: Option<Vec<CustomHeader>>,
    pub is_active: Option<bool>,
}

impl WebhookPatch {
    pub fn parse(body: &[u8], policy: UrlPolicy) -> Result<Self, Vec<FieldError>> {
        let object = json_object(body)?;
        if object.is_empty() {
            return Err(vec![FieldError::new(
                "body",
                "request body must change at least one of url, events, name, description, headers, isActive",
            )]);
        }
        let mut errors = Errors::default();
        let not_null = |field: &str, errors: &mut Errors| match object.get(field) {
            Some(Value::Null) => {
                errors.push(field, format!("{field} cannot be null"));
                None
            }
            other => other,
        };
        let url = not_null("url", &mut errors).and_then(|v| {
            as_str(v, "url")
                .and_then(|text| WebhookUrl::parse(text, policy))
                .map_err(|msg| errors.push("url", msg))
                .ok()
        });
        let events = not_null("events", &mut errors)
            .and_then(|v| parse_events(v).map_err(|m| errors.push("events", m)).ok());
        let name = errors.optional(&object, "name", parse_name);
        let description = errors.optional(&object, "description", parse_description);
        let mut unknown = UnknownFields::default();
        let headers = not_null("headers", &mut errors)
            .and_then(|v| parse_headers(v, &mut errors.0, &mut unknown));
        let is_active = not_null("isActive", &mut errors).and_then(|v| {
            v.as_bool()
                .ok_or_else(|| errors.push("isActive", "isActive must be true or false".into()))
                .ok()
        });
        for key in object.keys().filter(|key| FIXED.contains(&key.as_str())) {
            errors.push(key, format!("{key} cannot be changed"));
        }
        let known: Vec<&str> = CHANGEABLE.iter().chain(FIXED.iter()).copied().collect();
        unknown.check(&mut errors.0, "", &object, &known);
        unknown.finish(&mut errors.0);
        if !errors.0.is_empty() {
            return Err(errors.0);
        }
        Ok(Self {
            url,
            events,
            name: object.contains_key("name").then(|| name.flatten()),
            description: object
                .contains_key("description")
                .then(|| description.flatten()),
            headers,
            is_active,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: UrlPolicy = UrlPolicy {
        allow_localhost: true,
    };

    fn parse(value: Value) -> Result<WebhookPatch, Vec<FieldError>> {
        WebhookPatch::parse(value.to_string().as_bytes(), POLICY)
    }

    fn fields(value: Value) -> Vec<String> {
        parse(value)
            .expect_err("patch should be refused")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn an_empty_object_is_refused() {
        assert_eq!(fields(json!({})), ["body"]);
    }

    #[test]
    fn each_field_follows_its_create_rule() {
        assert_eq!(fields(json!({"url": "http://api.example.com/"})), ["url"]);
        assert_eq!(fields(json!({"events": []})), ["events"]);
        assert_eq!(fields(json!({"name": " "})), ["name"]);
        assert_eq!(fields(json!({"description": "a\u{7}"})), ["description"]);
        assert_eq!(
            fields(json!({"headers": [{"name": "Host", "value": "x"}]})),
            ["headers[0].name"]
        );
        assert_eq!(fields(json!({"isActive": "yes"})), ["isActive"]);
    }

    #[test]
    fn null_clears_name_and_description() {
        let patch = parse(json!({"name": null, "description": null})).unwrap();
        assert_eq!(patch.name, Some(None));
        assert_eq!(patch.description, Some(None));
        assert!(patch.url.is_none() && patch.events.is_none() && patch.headers.is_none());
    }

    #[test]
    fn absent_fields_are_left_alone() {
        let patch = parse(json!({"isActive": false})).unwrap();
        assert_eq!(patch.is_active, Some(false));
        assert_eq!(patch.name, None);
        assert_eq!(patch.description, None);
    }

    #[test]
    fn null_for_the_other_fields_is_refused() {
        assert_eq!(
            fields(json!({"url": null, "events": null, "headers": null, "isActive": null})),
            ["url", "events", "headers", "isActive"]
        );
    }

    #[test]
    fn fixed_fields_cannot_be_changed() {
        let errors = parse(json!({"companyId": null, "maxRetries": 5})).unwrap_err();
        assert_eq!(errors[0].message, "companyId cannot be changed");
        assert_eq!(errors[1].message, "maxRetries cannot be changed");
    }

    #[test]
    fn unknown_fields_are_refused_with_every_other_error() {
        assert_eq!(
            fields(json!({"url": "ftp://x", "colour": "red", "name": ""})),
            ["url", "name", "colour"]
        );
    }

    #[test]
    fn headers_replace_the_whole_list() {
        let patch = parse(json!({"headers": []})).unwrap();
        assert_eq!(patch.headers.map(|h| h.len()), Some(0));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [&b""[..], b"[]", b"{", b"{\"a\":1,\"a\":2}"] {
            assert!(WebhookPatch::parse(body, POLICY).is_err());
        }
    }
}
