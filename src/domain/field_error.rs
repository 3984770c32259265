//! A problem with one field of a request, as reported in `details.fields`.

use serde::Serialize;
use serde_json::{json, Value};

/// The most field errors an answer lists; the rest are only counted (`details.omitted`).
pub const MAX_DETAILED_FIELDS: usize = 100;

/// The most characters of a client-sent name (an unknown key, a header name) an answer repeats.
pub const MAX_ECHOED_CHARS: usize = 64;

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

/// A client-sent name made fit to repeat in an answer: control and bidirectional-formatting
/// characters dropped, and cut to at most [`MAX_ECHOED_CHARS`] characters, the last one `…`
/// when something was cut. A key can be anything, a pasted token included, and answers must
/// stay small; characters are counted, so no UTF-8 character is ever split.
pub fn echo(name: &str) -> String {
    let mut chars = name
        .chars()
        .filter(|&c| !c.is_control() && !is_bidi_format(c));
    let mut echoed: String = chars.by_ref().take(MAX_ECHOED_CHARS).collect();
    if chars.next().is_some() {
        echoed.pop();
        echoed.push('…');
    }
    echoed
}

/// Invisible characters that reorder or hide text when it is displayed (Unicode `Cf`
/// bidirectional controls, zero-width characters and the byte-order mark).
fn is_bidi_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `details` of a validation answer: the first [`MAX_DETAILED_FIELDS`] errors as
/// `{"fields": [...]}`, plus `"omitted": N` when N more were left out, so the answer stays
/// small whatever the request.
pub fn bounded_details(fields: &[FieldError]) -> Value {
    let shown = &fields[..fields.len().min(MAX_DETAILED_FIELDS)];
    let mut details = json!({ "fields": shown });
    let omitted = fields.len() - shown.len();
    if omitted > 0 {
        details["omitted"] = omitted.into();
    }
    details
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_keeps_short_names_as_they_are() {
        assert_eq!(echo("secret"), "secret");
        assert_eq!(echo(&"k".repeat(64)), "k".repeat(64));
    }

    #[test]
    fn echo_cuts_long_names_to_64_characters_with_an_ellipsis() {
        let echoed = echo(&"k".repeat(200));
        assert_eq!(echoed.chars().count(), MAX_ECHOED_CHARS);
        assert_eq!(echoed, format!("{}…", "k".repeat(63)));
    }

    #[test]
    fn echo_counts_characters_and_never_splits_one() {
        let echoed = echo(&"é".repeat(100));
        assert_eq!(echoed, format!("{}…", "é".repeat(63)));
        let echoed = echo(&"𝄞".repeat(65));
        assert_eq!(echoed.chars().count(), 64);
    }

    #[test]
    fn echo_drops_control_and_bidi_characters() {
        assert_eq!(echo("a\nb\r\u{0}c\u{1b}[31m\u{7f}d"), "abc[31md");
        assert_eq!(echo("x\u{202e}y\u{200b}z\u{feff}"), "xyz");
    }

    #[test]
    fn bounded_details_lists_at_most_100_fields_and_counts_the_rest() {
        let fields: Vec<_> = (0..250)
            .map(|i| FieldError::new(format!("k{i}"), "k is not a known field"))
            .collect();
        let details = bounded_details(&fields);
        assert_eq!(
            details["fields"].as_array().unwrap().len(),
            MAX_DETAILED_FIELDS
        );
        assert_eq!(details["fields"][0]["field"], "k0");
        assert_eq!(details["omitted"], 150);
    }

    #[test]
    fn bounded_details_has_no_omitted_count_when_nothing_is_left_out() {
        let fields = vec![FieldError::new("url", "url is required")];
        assert_eq!(
            bounded_details(&fields),
            json!({"fields": [{"field": "url", "message": "url is required"}]})
        );
    }
}
