//! Classification of AWS SDK failures into what the caller can do about them: retry later
//! (transient) or never (permanent, with the reason). Decided by the Timestream error code,
//! not the HTTP status (SPEC §2.3: statuses are not documented, codes are). Used by both the
//! write and the read path. Knows nothing of HTTP responses.

use aws_sdk_timestreamwrite::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What went wrong, grouped by how a client should react.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Throttling, 5xx, timeouts, connection errors: the same call may succeed later.
    Transient,
    /// The request is invalid for this destination (validation, rejected records).
    Invalid,
    /// The credentials are unknown, wrong, or not allowed.
    AccessDenied,
    /// The database or table does not exist.
    NotFound,
}

impl FailureKind {
    /// Whether retrying the identical request may succeed.
    pub fn is_transient(self) -> bool {
        self == FailureKind::Transient
    }
}

/// A classified failure of one SDK call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// How to react.
    pub kind: FailureKind,
    /// The service error code (e.g. `ThrottlingException`), or a fixed word for
    /// failures without one (`timeout`, `dispatch`, `response`, `construction`).
    pub code: String,
    /// The service's message (never contains credentials: AWS does not echo secrets).
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Failure {}

/// A failed query, as the read layer reports it: a missing database or table is a query
/// naming something that does not exist, reported like any invalid query.
impl From<Failure> for crate::read::error::ReadError {
    fn from(f: Failure) -> Self {
        use crate::read::error::ReadError;
        match f.kind {
            FailureKind::Transient => ReadError::Unavailable(f.to_string()),
            FailureKind::Invalid | FailureKind::NotFound => ReadError::Validation(f.to_string()),
            FailureKind::AccessDenied => ReadError::AccessDenied(f.to_string()),
        }
    }
}

/// Maps a Timestream error code to its kind.
pub fn kind_of_code(code: &str, http_status: Option<u16>) -> FailureKind {
    match code {
        "ThrottlingException"
        | "InternalServerException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "InvalidEndpointException"
        | "TooManyRequestsException" => FailureKind::Transient,
        "ResourceNotFoundException" => FailureKind::NotFound,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidClientTokenId"
        | "ExpiredTokenException" => FailureKind::AccessDenied,
        "ValidationException"
        | "RejectedRecordsException"
        | "ConflictException"
        | "ServiceQuotaExceededException"
        | "QueryExecutionException" => FailureKind::Invalid,
        _ => match http_status {
            Some(s) if s >= 500 || s == 429 || s == 408 => FailureKind::Transient,
            Some(401) | Some(403) => FailureKind::AccessDenied,
            Some(404) => FailureKind::NotFound,
            Some(s) if (400..500).contains(&s) => FailureKind::Invalid,
            // No status and no code: we never heard a definite "no" from the service.
            _ => FailureKind::Transient,
        },
    }
}

/// Classifies any SDK error (write or query: both crates re-export the same smithy types).
pub fn classify<E, R>(err: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("unknown").to_string();
            let status = se.raw().status_code();
            let kind = kind_of_code(&code, Some(status));
            Failure {
                kind,
                code,
                message: se.err().message().unwrap_or_default().to_string(),
            }
        }
        SdkError::TimeoutError(_) => Failure {
            kind: FailureKind::Transient,
            code: "timeout".into(),
            message: "the call to Timestream timed out".into(),
        },
        SdkError::DispatchFailure(_) => Failure {
            kind: FailureKind::Transient,
            code: "dispatch".into(),
            message: format!("could not reach Timestream: {}", DisplayErrorContext(err)),
        },
        SdkError::ResponseError(r) => Failure {
            kind: FailureKind::Transient,
            code: "response".into(),
            message: format!(
                "unreadable response from Timestream (HTTP {}): {}",
                r.raw().status_code(),
                DisplayErrorContext(err)
            ),
        },
        SdkError::ConstructionFailure(_) => Failure {
            // Missing credentials from the default chain land here: not fixable by retrying
            // the same request, and the operator must act.
            kind: FailureKind::AccessDenied,
            code: "construction".into(),
            message: format!("could not build the request: {}", DisplayErrorContext(err)),
        },
        other => Failure {
            kind: FailureKind::Transient,
            code: "unknown".into(),
            message: DisplayErrorContext(other).to_string(),
        },
    }
}

/// HTTP status of a raw SDK response (abstracts over the response type parameter).
pub trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_over_statuses() {
        assert_eq!(
            kind_of_code("ThrottlingException", Some(400)),
            FailureKind::Transient
        );
        assert_eq!(
            kind_of_code("RejectedRecordsException", Some(419)),
            FailureKind::Invalid
        );
        assert_eq!(
            kind_of_code("UnrecognizedClientException", Some(400)),
            FailureKind::AccessDenied
        );
        assert_eq!(
            kind_of_code("ResourceNotFoundException", Some(400)),
            FailureKind::NotFound
        );
        assert_eq!(kind_of_code("Whatever", Some(503)), FailureKind::Transient);
        assert_eq!(kind_of_code("Whatever", Some(400)), FailureKind::Invalid);
    }
}
