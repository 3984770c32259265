//! Timestamps on the wire and in storage: RFC 3339, UTC, with a `Z`.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Formats `at` as RFC 3339 in UTC with a `Z`, in whole seconds as the documentation shows
/// them (e.g. `2024-01-15T10:30:00Z`).
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_utc_with_z() {
        assert_eq!(
            rfc3339(datetime!(2024-01-15 10:30 UTC)),
            "2024-01-15T10:30:00Z"
        );
        assert_eq!(
            rfc3339(datetime!(2024-01-15 12:30 +02:00)),
            "2024-01-15T10:30:00Z"
        );
    }

    #[test]
    fn drops_fractions_of_a_second() {
        assert_eq!(
            rfc3339(datetime!(2024-01-15 10:30:00.987654 UTC)),
            "2024-01-15T10:30:00Z"
        );
    }

    #[test]
    fn round_trips() {
        let at = datetime!(2024-01-15 10:30:05 UTC);
        assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at));
    }
}
