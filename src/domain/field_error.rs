//! A problem with one field of a request, as reported in `details.fields`.

use serde::Serialize;

/// One rule a request broke: the field's path (`headers[2].value`) and a human sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Most field errors listed in `details.fields`; the rest are counted in `omitted`, so that a
/// body of many bad keys cannot earn a huge answer.
pub const MAX_LISTED_FIELD_ERRORS: usize = 100;

/// `details` of a validation error: at most [`MAX_LISTED_FIELD_ERRORS`] errors, and how many
/// more there were.
pub fn bounded_details(fields: &[FieldError]) -> serde_json::Value {
    let listed = &fields[..fields.len().min(MAX_LISTED_FIELD_ERRORS)];
    let mut details = serde_json::json!({ "fields": listed });
    if fields.len() > listed.len() {
        details["omitted"] = (fields.len() - listed.len()).into();
    }
    details
}
