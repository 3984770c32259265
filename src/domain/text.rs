//! Small text rules shared by several fields.

use validator::ValidateLength;

/// True when `text` has between `min` and `max` characters (Unicode scalar values),
/// the unit the documentation's "Maximum N characters" counts in.
pub fn length_within(text: &str, min: u64, max: u64) -> bool {
    text.validate_length(Some(min), Some(max), None)
}

/// True when `text` holds a control character other than those in `allowed`.
pub fn has_control_chars(text: &str, allowed: &[char]) -> bool {
    text.chars()
        .any(|c| c.is_control() && !allowed.contains(&c))
}
