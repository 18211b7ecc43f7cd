//! The one HTTP-facing error type of the connector and its single, exhaustive status
//! mapping. Every handler (write and read) returns `Result<_, ApiError>`. Remote-write
//! senders retry 5xx and drop 4xx (except 429, which Prometheus only retries when
//! configured to), so the variant decides whether Prometheus tries again.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::timestream::error::{Failure, FailureKind};

/// Why a permanent backend failure happened; picks the 4xx status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermanentKind {
    /// The service refused the data or query as invalid → 400.
    Invalid,
    /// Unknown, wrong or insufficient credentials → 403.
    AccessDenied,
    /// Database or table missing → 404.
    NotFound,
}

/// Realm announced in `WWW-Authenticate`.
pub const AUTH_REALM: &str = "timestream-prometheus-connector";

/// Every way a request can fail, as seen by the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or its data can never be stored → 400.
    #[error("{0}")]
    BadRequest(String),
    /// No or malformed `Authorization: Basic` header → 401 with `WWW-Authenticate`.
    #[error("the request must carry an Authorization: Basic header with an AWS access key id as user name and the secret access key as password (secret:session-token for temporary credentials)")]
    Unauthorized,
    /// Body larger than allowed, compressed or decompressed → 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Content-Type or Content-Encoding not supported → 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Timestream failed in a way that may pass on retry (throttling, 5xx, network) → 503.
    #[error("{0}")]
    BackendTransient(String),
    /// Timestream refused for good → 400/403/404 by kind, with what was (not) stored.
    #[error("{message}")]
    BackendPermanent {
        /// Which 4xx.
        kind: PermanentKind,
        /// Human-readable detail (what was rejected, counts).
        message: String,
    },
    /// A bug or an unexpected condition → 500 with a generic body; details only in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BackendTransient(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BackendPermanent { kind, .. } => match kind {
                PermanentKind::Invalid => StatusCode::BAD_REQUEST,
                PermanentKind::AccessDenied => StatusCode::FORBIDDEN,
                PermanentKind::NotFound => StatusCode::NOT_FOUND,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Builds the error for a classified backend failure, with a prefix saying what was done.
    pub fn from_failure(context: &str, f: &Failure) -> ApiError {
        let message = format!("{context}: {f}");
        match f.kind {
            FailureKind::Transient => ApiError::BackendTransient(message),
            FailureKind::Invalid => ApiError::BackendPermanent {
                kind: PermanentKind::Invalid,
                message,
            },
            FailureKind::AccessDenied => ApiError::BackendPermanent {
                kind: PermanentKind::AccessDenied,
                message,
            },
            FailureKind::NotFound => ApiError::BackendPermanent {
                kind: PermanentKind::NotFound,
                message,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; see the connector's log\n".to_string()
            }
            other => format!("{other}\n"),
        };
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Basic realm=\"timestream-prometheus-connector\", charset=\"UTF-8\"",
                ),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Prometheus honours Retry-After on 5xx; a short pause spreads retries out.
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Crate-local result type for handlers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ApiError::BadRequest("x".into()).status(), 400);
        assert_eq!(ApiError::Unauthorized.status(), 401);
        assert_eq!(ApiError::PayloadTooLarge("x".into()).status(), 413);
        assert_eq!(ApiError::UnsupportedMediaType("x".into()).status(), 415);
        assert_eq!(ApiError::BackendTransient("x".into()).status(), 503);
        assert_eq!(ApiError::Internal("x".into()).status(), 500);
        let f = Failure {
            kind: FailureKind::NotFound,
            code: "ResourceNotFoundException".into(),
            message: "table t".into(),
        };
        assert_eq!(ApiError::from_failure("write", &f).status(), 404);
    }

    #[test]
    fn unauthorized_carries_challenge() {
        let r = ApiError::Unauthorized.into_response();
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
