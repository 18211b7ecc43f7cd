//! The Lambda request path: API Gateway event (already an `http::Request` thanks to
//! lambda_http) → stage prefix removed → the standalone router, with header-based dispatch
//! for paths it does not know → response body buffered (a Lambda answer is one JSON
//! document) and checked against Lambda's response size limit.

use axum::body::Body as AxumBody;
use axum::extract::Request;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use tower::ServiceExt;

use crate::error::ApiError;

/// Header Prometheus sets on every remote-write request.
pub const WRITE_VERSION_HEADER: &str = "x-prometheus-remote-write-version";
/// Header Prometheus sets on every remote-read request.
pub const READ_VERSION_HEADER: &str = "x-prometheus-remote-read-version";

/// Largest body we hand back to Lambda. A synchronous invocation's response is capped at
/// 6 MB of JSON and binary bodies travel base64-encoded (4/3 larger), so anything above
/// this would be refused by Lambda with an opaque 502 at the API Gateway.
pub const MAX_RESPONSE_BODY_BYTES: usize = 4_400_000;

/// The routes of the standalone router plus the Lambda-only dispatch by header.
pub fn dispatching_router(inner: Router) -> Router {
    let target = inner.clone();
    inner.fallback(move |req: Request| {
        let target = target.clone();
        async move { dispatch_by_header(target, req).await }
    })
}

/// A router that answers every request with 400 and `message` (the function is up but
/// misconfigured: answering beats a crash loop, and the caller learns what to fix).
pub fn misconfigured_router(message: String) -> Router {
    Router::new().fallback(move || {
        let message = message.clone();
        async move { ApiError::BadRequest(message) }
    })
}

/// Upstream's Lambda chose the handler by header alone; we do so for paths the router does
/// not know (e.g. an API Gateway `$default` route or a custom path).
async fn dispatch_by_header(target: Router, mut req: Request) -> Response {
    let headers = req.headers();
    let path = if headers.contains_key(WRITE_VERSION_HEADER) {
        "/write"
    } else if headers.contains_key(READ_VERSION_HEADER) {
        "/read"
    } else {
        return ApiError::BadRequest(format!(
            "{} is not a known path and the request carries neither the \
             {WRITE_VERSION_HEADER} nor the {READ_VERSION_HEADER} header, so it is \
             neither a Prometheus remote write nor a remote read; send it to /write or /read",
            req.uri().path()
        ))
        .into_response();
    };
    match with_path(req.uri(), path) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return ApiError::BadRequest(format!("bad request URI: {e}")).into_response(),
    }
    match target.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// `uri` with its path replaced (query kept).
fn with_path(uri: &Uri, path: &str) -> Result<Uri, axum::http::Error> {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse()?);
    Ok(Uri::from_parts(parts)?)
}

/// The stage name an API Gateway put in front of the path, if any (`$default` has none).
fn stage_of(req: &lambda_http::Request) -> Option<String> {
    let stage = match req.request_context_ref()? {
        RequestContext::ApiGatewayV1(c) => c.stage.clone(),
        RequestContext::ApiGatewayV2(c) => c.stage.clone(),
        _ => None,
    }?;
    (!stage.is_empty() && stage != "$default").then_some(stage)
}

/// Removes a leading `/<stage>` segment: lambda_http puts the stage into REST (v1) paths and
/// HTTP APIs (v2) deliver it in `rawPath`, while the routes are declared without it.
pub fn strip_stage(path: &str, stage: Option<&str>) -> String {
    if let Some(stage) = stage {
        let prefix = format!("/{stage}");
        if let Some(rest) = path.strip_prefix(&prefix) {
            if rest.starts_with('/') {
                return rest.to_string();
            }
            if rest.is_empty() {
                return "/".to_string();
            }
        }
    }
    path.to_string()
}

/// Serves one event with `router`. Never fails: every problem is an HTTP answer, so the
/// caller sees a status instead of a Lambda function error.
pub async fn handle(router: Router, req: lambda_http::Request) -> Response<lambda_http::Body> {
    let stage = stage_of(&req);
    let (mut parts, body) = req.into_parts();
    let path = strip_stage(parts.uri.path(), stage.as_deref());
    if path != parts.uri.path() {
        match with_path(&parts.uri, &path) {
            Ok(uri) => parts.uri = uri,
            Err(e) => {
                return into_lambda(
                    ApiError::BadRequest(format!("bad request URI: {e}")).into_response(),
                )
                .await
            }
        }
    }
    let body = match body {
        lambda_http::Body::Empty => AxumBody::empty(),
        lambda_http::Body::Text(s) => AxumBody::from(s),
        lambda_http::Body::Binary(b) => AxumBody::from(b),
        // Body is non-exhaustive upstream; an unknown variant still has its bytes.
        other => AxumBody::from(other.to_vec()),
    };
    let resp = match router.oneshot(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    into_lambda(resp).await
}

/// Buffers the body. A body that fails part-way (a streamed remote-read answer whose query
/// failed after the first frame) becomes a whole 503, which a buffered answer can express
/// honestly, instead of the panic lambda_http's own buffering would turn it into.
async fn into_lambda(resp: Response) -> Response<lambda_http::Body> {
    let (parts, body) = resp.into_parts();
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let failure = loop {
        match stream.next().await {
            None => break None,
            Some(Ok(chunk)) => {
                if buf.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
                    tracing::warn!(status = %parts.status, limit = MAX_RESPONSE_BODY_BYTES,
                        "answer too large for a Lambda response");
                    break Some(ApiError::LambdaResponseTooLarge {
                        limit: MAX_RESPONSE_BODY_BYTES,
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                tracing::warn!(status = %parts.status, error = %e, "answer failed part-way");
                break Some(ApiError::FailedPartWay(e.to_string()));
            }
        }
    };
    let (parts, bytes) = match failure {
        None => (parts, buf),
        Some(e) => {
            let (p, b) = e.into_response().into_parts();
            let bytes = axum::body::to_bytes(b, usize::MAX)
                .await
                .unwrap_or_default();
            (p, bytes.to_vec())
        }
    };
    // Binary variant: lambda_http still decides text or base64 from Content-Type and
    // Content-Encoding (text/* stays text; snappy protobuf goes out base64-encoded).
    Response::from_parts(parts, lambda_http::Body::Binary(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    #[test]
    fn stage_prefix_is_removed_once() {
        assert_eq!(strip_stage("/dev/write", Some("dev")), "/write");
        assert_eq!(strip_stage("/dev", Some("dev")), "/");
        assert_eq!(strip_stage("/write", Some("dev")), "/write");
        assert_eq!(
            strip_stage("/development/write", Some("dev")),
            "/development/write"
        );
        assert_eq!(strip_stage("/write/write", Some("write")), "/write");
        assert_eq!(strip_stage("/dev/write", None), "/dev/write");
    }

    fn echo_router() -> Router {
        // Stands in for the connector's router: answers with the path it was reached on.
        Router::new()
            .route("/write", post(|| async { "write" }))
            .route("/read", post(|| async { "read" }))
    }

    /// Serves one request through `handle` (the router is used as given).
    async fn call(router: Router, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut b = Request::builder().method("POST").uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req: lambda_http::Request = b.body(lambda_http::Body::Empty).unwrap();
        let resp = handle(router, req).await;
        let status = resp.status().as_u16();
        (status, String::from_utf8_lossy(resp.body()).into_owned())
    }

    #[tokio::test]
    async fn unknown_paths_go_by_header_known_paths_by_route() {
        let r = dispatching_router(echo_router());
        assert_eq!(call(r.clone(), "/write", &[]).await, (200, "write".into()));
        assert_eq!(
            call(r.clone(), "/", &[(WRITE_VERSION_HEADER, "0.1.0")]).await,
            (200, "write".into())
        );
        assert_eq!(
            call(
                r.clone(),
                "/prometheus?x=1",
                &[(READ_VERSION_HEADER, "0.1.0")]
            )
            .await,
            (200, "read".into())
        );
        // A known path wins over the header.
        assert_eq!(
            call(r.clone(), "/read", &[(WRITE_VERSION_HEADER, "0.1.0")]).await,
            (200, "read".into())
        );
        let (status, body) = call(r, "/other", &[]).await;
        assert_eq!(status, 400);
        assert!(
            body.contains(WRITE_VERSION_HEADER) && body.contains(READ_VERSION_HEADER),
            "{body}"
        );
    }

    #[tokio::test]
    async fn oversized_answers_become_a_clear_error() {
        let big = Router::new().route(
            "/read",
            post(|| async { vec![7u8; MAX_RESPONSE_BODY_BYTES + 1] }),
        );
        let (status, body) = call(big, "/read", &[]).await;
        assert_eq!(status, 500);
        assert!(body.contains("AWS Lambda"), "{body}");
        let fits = Router::new().route("/read", post(|| async { vec![7u8; 1000] }));
        let (status, body) = call(fits, "/read", &[]).await;
        assert_eq!((status, body.len()), (200, 1000));
    }

    #[tokio::test]
    async fn a_body_failing_part_way_becomes_503() {
        let failing = Router::new().route(
            "/read",
            post(|| async {
                let chunks: Vec<Result<&'static [u8], std::io::Error>> =
                    vec![Ok(b"frame"), Err(std::io::Error::other("query failed"))];
                AxumBody::from_stream(futures::stream::iter(chunks))
            }),
        );
        let (status, body) = call(failing, "/read", &[]).await;
        assert_eq!(status, 503);
        assert!(body.contains("query failed"), "{body}");
    }

    #[tokio::test]
    async fn misconfigured_answers_everything_with_400() {
        for path in ["/write", "/read", "/", "/-/healthy"] {
            let (status, body) = call(
                misconfigured_router("default_database is not set".into()),
                path,
                &[],
            )
            .await;
            assert_eq!(status, 400);
            assert!(body.contains("default_database"));
        }
    }
}
