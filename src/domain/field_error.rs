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
