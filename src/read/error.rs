//! The read layer's error enum. It knows no HTTP: `crate::error::ApiError::answer` decides
//! the status of each variant; `code` labels the by-error-code metric.

use crate::remote::codec::CodecError;

/// Everything that can make a remote-read request fail.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A matcher that cannot be evaluated (unknown type, bad label name).
    #[error("invalid matcher: {0}")]
    InvalidMatcher(String),
    /// The regex does not parse as RE2 (what Prometheus itself would reject).
    #[error("invalid regex {pattern:?}: {reason}")]
    InvalidRegex { pattern: String, reason: String },
    /// Valid RE2 that has no exact Java equivalent we can emit.
    #[error("unsupported regex construct {construct} in {pattern:?}")]
    UnsupportedRegex { pattern: String, construct: String },
    /// The generated SQL exceeds Timestream's QueryString limit.
    #[error("query too large: the generated SQL reaches {len} bytes, Timestream accepts at most {limit}; use fewer or simpler matchers")]
    QueryTooLarge { len: usize, limit: usize },
    /// None of the accepted response types is supported.
    #[error("none of the accepted response types is supported: {0}")]
    UnsupportedResponseType(String),
    /// The request body could not be decoded.
    #[error("invalid read request: {0}")]
    Decode(String),
    /// The body is (or declares to decompress to) more than the configured cap.
    #[error("read request too large: {0}")]
    TooLarge(String),
    /// A Content-Encoding or Content-Type we cannot read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Timestream rejected the query (ValidationException): the message is the service's.
    #[error("Timestream rejected the query: {0}")]
    Validation(String),
    /// Timestream refused the credentials.
    #[error("access denied by Timestream: {0}")]
    AccessDenied(String),
    /// Throttling or a server-side failure that persisted through the SDK's retries.
    #[error("Timestream is unavailable, retry later: {0}")]
    Unavailable(String),
    /// Rows of one series overlap in time: the column cache missed a dimension.
    #[error("series overlap in the query result: {0}")]
    SeriesCollision(String),
    /// The client closed the connection while the answer was being streamed.
    #[error("the client went away")]
    ClientGone,
    /// Anything unexpected (malformed rows, SDK construction failures).
    #[error("internal error while reading: {0}")]
    Internal(String),
}

impl ReadError {
    /// Short stable code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::InvalidMatcher(_) => "invalid_matcher",
            ReadError::InvalidRegex { .. } => "invalid_regex",
            ReadError::UnsupportedRegex { .. } => "unsupported_regex",
            ReadError::QueryTooLarge { .. } => "query_too_large",
            ReadError::UnsupportedResponseType(_) => "unsupported_response_type",
            ReadError::Decode(_) => "decode",
            ReadError::TooLarge(_) => "too_large",
            ReadError::UnsupportedMediaType(_) => "unsupported_media_type",
            ReadError::Validation(_) => "validation",
            ReadError::AccessDenied(_) => "access_denied",
            ReadError::Unavailable(_) => "unavailable",
            ReadError::SeriesCollision(_) => "series_collision",
            ReadError::ClientGone => "client_gone",
            ReadError::Internal(_) => "internal",
        }
    }
}

/// A body that does not decompress: too large (by its declared size) or not snappy/protobuf.
impl From<CodecError> for ReadError {
    fn from(e: CodecError) -> ReadError {
        match e {
            CodecError::TooLarge { .. } => ReadError::TooLarge(e.to_string()),
            CodecError::Snappy(_) | CodecError::Protobuf { .. } | CodecError::RemoteWrite2(_) => {
                ReadError::Decode(e.to_string())
            }
        }
    }
}
