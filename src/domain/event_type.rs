//! The event types a webhook can subscribe to.

/// An event InstaView sends to webhooks. The wire names are the documentation's, spelled exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    AnalysisCompleted,
    AnalysisFailed,
    Ping,
    InterviewCompleted,
    InterviewFailed,
    InterviewStarted,
    /// Operational (DELIVERY-LOG.md, "Telling the owner"): a webhook's circuit opened.
    WebhookCircuitOpened,
    /// Operational: a delivery's retries were exhausted, or its receiver answered `410 Gone`.
    DeliveryFailed,
}

impl EventType {
    /// Every event type, in the documentation's order.
    pub const ALL: [EventType; 8] = [
        EventType::AnalysisCompleted,
        EventType::AnalysisFailed,
        EventType::Ping,
        EventType::InterviewCompleted,
        EventType::InterviewFailed,
        EventType::InterviewStarted,
        EventType::WebhookCircuitOpened,
        EventType::DeliveryFailed,
    ];

    /// The operational types: only the pipeline emits them (never accepted on the events
    /// queue), about the deliveries of the others.
    pub fn is_operational(self) -> bool {
        matches!(
            self,
            EventType::WebhookCircuitOpened | EventType::DeliveryFailed
        )
    }

    /// Whether the platform may publish this type on the events queue: neither the test
    /// route's `ping` nor an operational type.
    pub fn is_published(self) -> bool {
        self != EventType::Ping && !self.is_operational()
    }

    /// The wire name, e.g. `interview.completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AnalysisCompleted => "analysis.completed",
            EventType::AnalysisFailed => "analysis.failed",
            EventType::Ping => "ping",
            EventType::InterviewCompleted => "interview.completed",
            EventType::InterviewFailed => "interview.failed",
            EventType::InterviewStarted => "interview.started",
            EventType::WebhookCircuitOpened => "webhook.circuit_opened",
            EventType::DeliveryFailed => "delivery.failed",
        }
    }

    /// Parses an exact wire name; no case folding or trimming, since the names are identifiers.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == name)
    }

    /// The allowed names joined for error messages.
    pub fn allowed_list() -> String {
        Self::ALL.map(EventType::as_str).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_event_type() {
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
        }
    }

    #[test]
    fn rejects_event_type_in_other_case_or_with_spaces() {
        assert_eq!(EventType::parse("Interview.Completed"), None);
        assert_eq!(EventType::parse(" ping"), None);
        assert_eq!(EventType::parse("interview_completed"), None);
        assert_eq!(EventType::parse(""), None);
    }
}
