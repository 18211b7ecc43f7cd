//! The one HTTP-facing error of the connector and its single, exhaustive mapping to status,
//! headers and body ([`ApiError::answer`]). Each layer has its own error type and knows no
//! HTTP: `remote::codec::CodecError`, `write::PlanError`, `read::error::ReadError`,
//! `timestream::error::Failure`; they convert into [`ApiError`], and the mapping matches
//! their variants (nested, without a catch-all) so a new variant anywhere cannot compile
//! without a decided status. The standalone server, the Lambda adapter and the limit
//! layers (`http::limits`) all answer through it.
//!
//! Remote-write senders retry 5xx and drop 4xx (except 429, which Prometheus only retries
//! when configured to), so the status decides whether Prometheus tries again.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::read::error::ReadError;
use crate::remote::codec::CodecError;
use crate::timestream::error::{Failure, FailureKind};
use crate::write::PlanError;

/// Realm announced in `WWW-Authenticate`.
pub const AUTH_REALM: &str = "timestream-prometheus-connector";

/// Body of a 500 whose detail goes to the log only (it may quote rows or internals).
const INTERNAL_BODY: &str = "internal error; see the connector's log";
/// Body of the 500 answered for a panicking handler.
const PANIC_BODY: &str = "internal error: the connector failed while handling this request \
                          (logged); it keeps running, retry the request";

/// Every way a request can fail, as seen by the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed in a way found outside the layers below (bad URI, unknown
    /// Lambda path, misconfigured Lambda function).
    #[error("{0}")]
    BadRequest(String),
    /// No or malformed `Authorization: Basic` header.
    #[error("the request must carry an Authorization: Basic header with an AWS access key id as user name and the secret access key as password (secret:session-token for temporary credentials)")]
    Unauthorized,
    /// Content-Type or Content-Encoding not supported.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A remote-write body that failed snappy or protobuf decoding, or is too large.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The write planner refused the request as a whole; nothing was written.
    #[error("{reason}; none of the {received} samples were written")]
    WriteRefused {
        /// Why.
        reason: PlanError,
        /// Samples the request carried.
        received: u64,
    },
    /// A remote read failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Timestream failed; the kind picks retry (503) or the 4xx of the cause.
    #[error("{message}")]
    Backend {
        /// How to react.
        kind: FailureKind,
        /// What was done and what failed (counts of what was and was not stored).
        message: String,
    },
    /// `--web.max-concurrent-requests` are already being handled.
    #[error("overloaded: {max} remote write/read requests are already being handled (--web.max-concurrent-requests); nothing of this request was written, retry later")]
    Overloaded {
        /// The configured bound.
        max: usize,
    },
    /// The request ran past `--web.request-timeout`.
    #[error("request timed out after {0:?} (--web.request-timeout); part of it may have been written, retry the whole request")]
    TimedOut(Duration),
    /// The shutdown deadline passed while the request ran.
    #[error("the connector is shutting down; part of this request may have been written, retry the whole request")]
    ShuttingDown,
    /// No route for the path.
    #[error("not found")]
    UnknownRoute,
    /// A handler panicked (the message is the panic's; it goes to the log only).
    #[error("a request handler panicked: {0}")]
    Panicked(String),
    /// The answer is larger than a Lambda response can carry.
    #[error("the answer exceeds {limit} bytes, more than an AWS Lambda response can carry; ask for a shorter time range or fewer series, or run the connector as a server")]
    LambdaResponseTooLarge {
        /// The byte limit.
        limit: usize,
    },
    /// A streamed answer failed after it started; only a buffered (Lambda) answer can still
    /// turn this into a status.
    #[error("the answer failed part-way: {0}; retry the request")]
    FailedPartWay(String),
}

/// What the client gets for an error: decided once per variant in [`ApiError::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// `Retry-After: 1`: Prometheus honours it on 5xx; a short pause spreads retries out.
    pub retry_after: bool,
    /// `WWW-Authenticate: Basic realm=...`, so a client knows which credentials to send.
    pub challenge: bool,
    /// `None`: the error's own text. `Some(text)`: this text instead, and the error's own
    /// text goes to the log only.
    pub fixed_body: Option<&'static str>,
}

impl Answer {
    const fn says(status: StatusCode) -> Answer {
        Answer {
            status,
            retry_after: false,
            challenge: false,
            fixed_body: None,
        }
    }

    const fn retry_later(self) -> Answer {
        Answer {
            retry_after: true,
            ..self
        }
    }

    const fn challenge(self) -> Answer {
        Answer {
            challenge: true,
            ..self
        }
    }

    const fn hiding_detail(self, body: &'static str) -> Answer {
        Answer {
            fixed_body: Some(body),
            ..self
        }
    }
}

impl ApiError {
    /// The one mapping of every error to status, headers and body. Exhaustive on purpose,
    /// down to the variants of the layer errors: no catch-all arm.
    pub fn answer(&self) -> Answer {
        use ApiError as E;
        use StatusCode as S;
        let unavailable = Answer::says(S::SERVICE_UNAVAILABLE).retry_later();
        match self {
            E::BadRequest(_)
            | E::WriteRefused { .. }
            | E::Codec(
                CodecError::Snappy(_) | CodecError::Protobuf { .. } | CodecError::RemoteWrite2(_),
            )
            | E::Read(
                ReadError::InvalidMatcher(_)
                | ReadError::InvalidRegex { .. }
                | ReadError::UnsupportedRegex { .. }
                | ReadError::QueryTooLarge { .. }
                | ReadError::UnsupportedResponseType(_)
                | ReadError::Decode(_)
                | ReadError::Validation(_),
            )
            | E::Backend {
                kind: FailureKind::Invalid,
                ..
            } => Answer::says(S::BAD_REQUEST),
            E::Unauthorized => Answer::says(S::UNAUTHORIZED).challenge(),
            E::Read(ReadError::AccessDenied(_))
            | E::Backend {
                kind: FailureKind::AccessDenied,
                ..
            } => Answer::says(S::FORBIDDEN),
            E::Backend {
                kind: FailureKind::NotFound,
                ..
            }
            | E::UnknownRoute => Answer::says(S::NOT_FOUND),
            // A declared (or actual) size over --web.max-decompressed-bytes is refused like
            // an over-long body.
            E::Codec(CodecError::TooLarge { .. }) | E::Read(ReadError::TooLarge(_)) => {
                Answer::says(S::PAYLOAD_TOO_LARGE)
            }
            E::UnsupportedMediaType(_) | E::Read(ReadError::UnsupportedMediaType(_)) => {
                Answer::says(S::UNSUPPORTED_MEDIA_TYPE)
            }
            E::Backend {
                kind: FailureKind::Transient,
                ..
            }
            | E::Read(ReadError::Unavailable(_))
            | E::Overloaded { .. }
            | E::TimedOut(_)
            | E::ShuttingDown
            | E::FailedPartWay(_) => unavailable,
            E::Read(ReadError::Internal(_) | ReadError::SeriesCollision(_)) => {
                Answer::says(S::INTERNAL_SERVER_ERROR).hiding_detail(INTERNAL_BODY)
            }
            E::Panicked(_) => Answer::says(S::INTERNAL_SERVER_ERROR).hiding_detail(PANIC_BODY),
            // Not a bug but a limit of the deployment; the text says what to do.
            E::LambdaResponseTooLarge { .. } => Answer::says(S::INTERNAL_SERVER_ERROR),
            // Nobody is left to read it (the answer cannot reach a closed connection); 499
            // in nginx' tradition keeps it apart from failures in logs and metrics.
            E::Read(ReadError::ClientGone) => {
                Answer::says(S::from_u16(499).expect("499 is within the valid status range"))
            }
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.answer().status
    }

    /// Builds the error for a classified backend failure, with a prefix saying what was done.
    pub fn from_failure(context: &str, f: &Failure) -> ApiError {
        ApiError::Backend {
            kind: f.kind,
            message: format!("{context}: {f}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let answer = self.answer();
        let body = match answer.fixed_body {
            Some(text) => {
                tracing::error!(error = %self, "internal error");
                format!("{text}\n")
            }
            None => format!("{self}\n"),
        };
        let mut resp = (answer.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if answer.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Basic realm=\"timestream-prometheus-connector\", charset=\"UTF-8\"",
                ),
            );
        }
        if answer.retry_after {
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
    use crate::remote::codec::ProtobufError;

    /// The expected status of every variant, written out independently of `answer`. The
    /// match has no catch-all: adding a variant (here or in a layer error) does not compile
    /// until its status is decided here too, and `every_variant_is_mapped` checks one
    /// example of each against the real mapping.
    fn expected(e: &ApiError) -> (u16, usize) {
        use ApiError as E;
        use ReadError as R;
        match e {
            E::BadRequest(_) => (400, 0),
            E::Unauthorized => (401, 1),
            E::UnsupportedMediaType(_) => (415, 2),
            E::Codec(CodecError::Snappy(_)) => (400, 3),
            E::Codec(CodecError::TooLarge { .. }) => (413, 4),
            E::Codec(CodecError::Protobuf { .. }) => (400, 5),
            E::Codec(CodecError::RemoteWrite2(_)) => (400, 6),
            E::WriteRefused { .. } => (400, 7),
            E::Read(R::InvalidMatcher(_)) => (400, 8),
            E::Read(R::InvalidRegex { .. }) => (400, 9),
            E::Read(R::UnsupportedRegex { .. }) => (400, 10),
            E::Read(R::QueryTooLarge { .. }) => (400, 11),
            E::Read(R::UnsupportedResponseType(_)) => (400, 12),
            E::Read(R::Decode(_)) => (400, 13),
            E::Read(R::TooLarge(_)) => (413, 14),
            E::Read(R::UnsupportedMediaType(_)) => (415, 15),
            E::Read(R::Validation(_)) => (400, 16),
            E::Read(R::AccessDenied(_)) => (403, 17),
            E::Read(R::Unavailable(_)) => (503, 18),
            E::Read(R::SeriesCollision(_)) => (500, 19),
            E::Read(R::ClientGone) => (499, 20),
            E::Read(R::Internal(_)) => (500, 21),
            E::Backend {
                kind: FailureKind::Transient,
                ..
            } => (503, 22),
            E::Backend {
                kind: FailureKind::Invalid,
                ..
            } => (400, 23),
            E::Backend {
                kind: FailureKind::AccessDenied,
                ..
            } => (403, 24),
            E::Backend {
                kind: FailureKind::NotFound,
                ..
            } => (404, 25),
            E::Overloaded { .. } => (503, 26),
            E::TimedOut(_) => (503, 27),
            E::ShuttingDown => (503, 28),
            E::UnknownRoute => (404, 29),
            E::Panicked(_) => (500, 30),
            E::LambdaResponseTooLarge { .. } => (500, 31),
            E::FailedPartWay(_) => (503, 32),
        }
    }

    /// One example per arm of `expected`, in its order.
    fn examples() -> Vec<ApiError> {
        let s = || "SECRET-DETAIL".to_string();
        let backend = |kind| ApiError::Backend { kind, message: s() };
        let prost_err = <crate::remote::pb::ReadRequest as prost::Message>::decode(&[0xff][..])
            .expect_err("not a message");
        let v2_err = crate::remote::codec::decode_write_request_v2(&[0xff])
            .err()
            .map(|e| match e {
                CodecError::RemoteWrite2(d) => d,
                other => panic!("{other:?}"),
            })
            .expect("not a 2.0 request");
        vec![
            ApiError::BadRequest(s()),
            ApiError::Unauthorized,
            ApiError::UnsupportedMediaType(s()),
            CodecError::Snappy(s()).into(),
            CodecError::TooLarge {
                declared: 2,
                limit: 1,
            }
            .into(),
            CodecError::Protobuf {
                message: "prometheus.WriteRequest",
                source: ProtobufError::Prost(prost_err),
            }
            .into(),
            CodecError::RemoteWrite2(v2_err).into(),
            ApiError::WriteRefused {
                reason: PlanError::MissingMetricName { labels: s() },
                received: 3,
            },
            ReadError::InvalidMatcher(s()).into(),
            ReadError::InvalidRegex {
                pattern: s(),
                reason: s(),
            }
            .into(),
            ReadError::UnsupportedRegex {
                pattern: s(),
                construct: s(),
            }
            .into(),
            ReadError::QueryTooLarge { len: 2, limit: 1 }.into(),
            ReadError::UnsupportedResponseType(s()).into(),
            ReadError::Decode(s()).into(),
            ReadError::TooLarge(s()).into(),
            ReadError::UnsupportedMediaType(s()).into(),
            ReadError::Validation(s()).into(),
            ReadError::AccessDenied(s()).into(),
            ReadError::Unavailable(s()).into(),
            ReadError::SeriesCollision(s()).into(),
            ReadError::ClientGone.into(),
            ReadError::Internal(s()).into(),
            backend(FailureKind::Transient),
            backend(FailureKind::Invalid),
            backend(FailureKind::AccessDenied),
            backend(FailureKind::NotFound),
            ApiError::Overloaded { max: 4 },
            ApiError::TimedOut(Duration::from_secs(25)),
            ApiError::ShuttingDown,
            ApiError::UnknownRoute,
            ApiError::Panicked(s()),
            ApiError::LambdaResponseTooLarge { limit: 10 },
            ApiError::FailedPartWay(s()),
        ]
    }

    #[tokio::test]
    async fn every_variant_is_mapped() {
        let examples = examples();
        let arms: Vec<usize> = examples.iter().map(|e| expected(e).1).collect();
        assert_eq!(
            arms,
            (0..arms.len()).collect::<Vec<_>>(),
            "one example per arm of `expected`, in order"
        );
        for e in examples {
            let (want, _) = expected(&e);
            let answer = e.answer();
            let shown = e.to_string();
            assert_eq!(answer.status.as_u16(), want, "{e:?}");
            let resp = e.into_response();
            assert_eq!(resp.status().as_u16(), want);
            let h = resp.headers();
            assert_eq!(
                h.get(header::CONTENT_TYPE).unwrap(),
                "text/plain; charset=utf-8"
            );
            // Every 503 asks for a retry after a pause; nothing else does.
            assert_eq!(
                h.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap()),
                (want == 503).then_some("1"),
                "{shown}"
            );
            assert_eq!(h.contains_key(header::WWW_AUTHENTICATE), want == 401);
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            match answer.fixed_body {
                // Internals stay in the log.
                Some(text) => {
                    assert_eq!(body, format!("{text}\n"));
                    assert!(!body.contains("SECRET-DETAIL"), "{body}");
                }
                None => assert_eq!(body, format!("{shown}\n")),
            }
        }
    }

    #[test]
    fn backend_failures_keep_their_context() {
        let f = Failure {
            kind: FailureKind::NotFound,
            code: "ResourceNotFoundException".into(),
            message: "table t".into(),
        };
        let e = ApiError::from_failure("write", &f);
        assert_eq!(e.status(), 404);
        assert_eq!(e.to_string(), "write: ResourceNotFoundException: table t");
    }

    #[test]
    fn unauthorized_carries_challenge() {
        let r = ApiError::Unauthorized.into_response();
        let challenge = r.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert_eq!(
            challenge.to_str().unwrap(),
            format!("Basic realm=\"{AUTH_REALM}\", charset=\"UTF-8\"")
        );
    }
}
