//! Timestream error responses (awsJson1_0 shape: `__type` + `Message`, code also in `x-amzn-ErrorType`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

const NS: &str = "com.amazonaws.timestream.v20181101#";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
    /// Extra members merged into the body (RejectedRecords).
    pub extra: Option<Value>,
}

impl ApiError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        ApiError {
            code,
            status,
            message: message.into(),
            extra: None,
        }
    }
    pub fn validation(m: impl Into<String>) -> Self {
        Self::new("ValidationException", 400, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", 404, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new("ConflictException", 409, m)
    }
    pub fn throttling(m: impl Into<String>) -> Self {
        Self::new("ThrottlingException", 429, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new("InternalServerException", 500, m)
    }
    /// Timestream documents AccessDeniedException with HTTP status 400 (API reference,
    /// "Errors" of every operation).
    pub fn access_denied(m: impl Into<String>) -> Self {
        Self::new("AccessDeniedException", 400, m)
    }
    pub fn unrecognized_client() -> Self {
        Self::new(
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        )
    }
    pub fn invalid_signature(m: impl Into<String>) -> Self {
        Self::new("InvalidSignatureException", 403, m)
    }
    pub fn incomplete_signature(m: impl Into<String>) -> Self {
        Self::new("IncompleteSignatureException", 403, m)
    }
    pub fn missing_auth() -> Self {
        Self::new(
            "MissingAuthenticationTokenException",
            403,
            "Missing Authentication Token",
        )
    }
    pub fn rejected(records: Value) -> Self {
        ApiError {
            code: "RejectedRecordsException",
            status: 419,
            message: "One or more records have been rejected. See RejectedRecords for details."
                .into(),
            extra: Some(json!({ "RejectedRecords": records })),
        }
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "__type": format!("{NS}{}", self.code),
            "Message": self.message,
        });
        if let (Some(Value::Object(extra)), Value::Object(b)) = (&self.extra, &mut body) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = self.body().to_string();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        if let Ok(v) = HeaderValue::from_str(self.code) {
            h.insert("x-amzn-errortype", v);
        }
        resp
    }
}
