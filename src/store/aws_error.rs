//! Sorting AWS SDK errors into "retry later" and "broken", without keeping their text.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::StoreError;

/// Service error codes that mean "too much traffic" rather than "bad request".
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// Classifies an SDK error. Only the error *code* is kept (e.g. `ThrottlingException`): the
/// SDK's messages can carry resource names and ARNs, which must not reach logs or clients.
pub fn classify<E>(operation: &'static str, error: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata,
{
    let unavailable = |kind: &str| StoreError::Unavailable {
        operation,
        kind: kind.to_owned(),
    };
    match error {
        SdkError::TimeoutError(_) => unavailable("timeout"),
        SdkError::DispatchFailure(_) => unavailable("connection failure"),
        SdkError::ResponseError(_) => unavailable("unreadable response"),
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("UnknownError");
            if context.raw().status().is_server_error() || THROTTLING_CODES.contains(&code) {
                unavailable(code)
            } else {
                StoreError::Failed {
                    operation,
                    kind: code.to_owned(),
                }
            }
        }
        _ => StoreError::Failed {
            operation,
            kind: "request construction failure".to_owned(),
        },
    }
}
