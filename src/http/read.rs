//! `POST /read` (and `/api/v1/read`): the HTTP face of the read service
//! (`crate::read::service`). It checks the Content-Type/Content-Encoding, decodes the body
//! (size-capped, counted before prost sees it), picks the response type the client asked
//! for, builds the caller's storage (`crate::timestream::query`, with the client of its
//! credential), and hands the request to the app's `ReadService`, which plans every query
//! (all request errors answer 4xx before any byte is sent) and reads.
//!
//! Responses: SAMPLES as a snappy protobuf ReadResponse (one QueryResult per query, in
//! order); STREAMED_XOR_CHUNKS as the service's frames, streamed as they come. The handler
//! waits for the first frame, so an error before it still gets its status; an error after
//! it aborts the body, so the client sees a failed transfer and never a short answer with
//! a 200.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use prost::Message;

use super::auth::Creds;
use super::limits::{check_content_encoding, content_type_proto};
use super::AppState;
use crate::error::ApiError;
use crate::read::error::ReadError;
use crate::remote::codec::{compress, decompress};
use crate::remote::pb::{read_request::ResponseType, ReadRequest};
use crate::remote::view::read_request_counts;
use crate::timestream::client::RequestCredentials;
use crate::timestream::query::TimestreamStorage;

/// Content type of a streamed remote-read answer.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

fn fail(state: &AppState, started: Instant, e: ReadError) -> Response {
    state
        .metrics
        .read_errors
        .with_label_values(&[e.code()])
        .inc();
    state
        .metrics
        .read_duration
        .observe(started.elapsed().as_secs_f64());
    let e = ApiError::from(e);
    if e.status().is_server_error() {
        tracing::warn!(error = %e, "remote read failed");
    } else {
        tracing::info!(error = %e, "remote read refused");
    }
    e.into_response()
}

/// The response type: the first accepted one we support; none listed = SAMPLES.
fn negotiate(req: &ReadRequest) -> Result<ResponseType, ReadError> {
    if req.accepted_response_types.is_empty() {
        return Ok(ResponseType::Samples);
    }
    req.accepted_response_types
        .iter()
        .find_map(|t| ResponseType::try_from(*t).ok())
        .ok_or_else(|| {
            ReadError::UnsupportedResponseType(format!("{:?}", req.accepted_response_types))
        })
}

/// The body's media type. Prometheus' own read handler ignores the request Content-Type,
/// and real clients differ: Prometheus sends `application/x-protobuf`, vmctl in stream mode
/// sends the *response* type `application/x-streamed-protobuf;
/// proto=prometheus.ChunkedReadResponse`, some send none. So the media type is not judged;
/// only a `proto=` naming a message no read client sends (e.g. a remote-write body posted
/// here) is 415, and a Content-Encoding other than snappy is 415 as on `/write` (absent is
/// taken as snappy). Whatever passes must still decode as a snappy `ReadRequest` (else 400).
fn check_media_type(headers: &HeaderMap) -> Result<(), ReadError> {
    check_content_encoding(headers, "read").map_err(ReadError::UnsupportedMediaType)?;
    if let Some(proto) = content_type_proto(headers) {
        if !READ_PROTOS.iter().any(|p| proto.eq_ignore_ascii_case(p)) {
            return Err(ReadError::UnsupportedMediaType(format!(
                "Content-Type names proto={proto:?}; remote read bodies are {} \
                 (or name the streamed response, {})",
                READ_PROTOS[0], READ_PROTOS[1]
            )));
        }
    }
    Ok(())
}

/// `proto=` values a read request may carry: the request message itself, or the
/// streamed response message (what vmctl sends in stream mode).
const READ_PROTOS: [&str; 2] = ["prometheus.ReadRequest", "prometheus.ChunkedReadResponse"];

fn decode(body: &[u8], limit: usize) -> Result<ReadRequest, ReadError> {
    let raw = decompress(body, limit)?;
    // Validated and counted before prost decodes anything: prost allocates ~100× the bytes
    // of empty queries or matchers, so a 3 MiB body could otherwise cost gigabytes; and a
    // body prost would refuse is refused here, with the field and offset, so prost never
    // builds structs for a body it then drops.
    let counts = read_request_counts(&raw)
        .map_err(|e| ReadError::Decode(format!("not a prometheus.ReadRequest: {e}")))?;
    // Every query costs at least one Timestream call: a small body must not buy an
    // unbounded number of them.
    if counts.queries > MAX_QUERIES_PER_REQUEST {
        return Err(ReadError::Decode(format!(
            "{} queries in one read request; at most {MAX_QUERIES_PER_REQUEST} are accepted",
            counts.queries
        )));
    }
    if counts.matchers > MAX_MATCHERS_PER_REQUEST {
        return Err(ReadError::Decode(format!(
            "{} label matchers in one read request; at most {MAX_MATCHERS_PER_REQUEST} are accepted",
            counts.matchers
        )));
    }
    if counts.response_types > MAX_RESPONSE_TYPES_PER_REQUEST {
        return Err(ReadError::Decode(format!(
            "{} accepted response types in one read request; at most \
             {MAX_RESPONSE_TYPES_PER_REQUEST} are accepted (there are two)",
            counts.response_types
        )));
    }
    // Validated above: prost does not fail here (if it did, the request is refused all the
    // same, and nothing decodes the body again).
    ReadRequest::decode(raw.as_slice())
        .map_err(|e| ReadError::Decode(format!("not a prometheus.ReadRequest: {e}")))
}

/// The handler.
#[tracing::instrument(skip_all, fields(request_type = "remote_read"))]
pub async fn handle(
    State(state): State<AppState>,
    Creds(creds): Creds,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    if let Err(e) = check_media_type(&headers) {
        return fail(&state, started, e);
    }
    match serve(&state, &creds, body, started).await {
        Ok(r) => r,
        Err(e) => fail(&state, started, e),
    }
}

/// Most queries one ReadRequest may carry (Prometheus sends one per selector).
pub const MAX_QUERIES_PER_REQUEST: usize = 1000;
/// Most label matchers over all queries of one ReadRequest (a selector has a handful).
pub const MAX_MATCHERS_PER_REQUEST: usize = 20_000;
/// Most entries of `accepted_response_types` (Prometheus lists one or two; each decodes to
/// 4 bytes from 1 on the wire).
pub const MAX_RESPONSE_TYPES_PER_REQUEST: usize = 64;

async fn serve(
    state: &AppState,
    creds: &RequestCredentials,
    body: Bytes,
    started: Instant,
) -> Result<Response, ReadError> {
    let limit = state.config.max_decompressed_bytes;
    let req = if super::limits::decode_off_worker(&body) {
        super::limits::blocking(move || decode(&body, limit)).await?
    } else {
        decode(&body, limit)?
    };
    let requested = negotiate(&req)?;
    // Before any AWS call: an oversized matcher is a 400 at once.
    state.read.check(&req)?;
    let client = state.clients.get(creds).query_client().await?;
    let storage = TimestreamStorage::new(client, state.metrics.read_requests.clone());
    let plan = state
        .read
        .plan(&storage, &creds.cache_key(), &req, requested)
        .await?;
    match plan.response_type() {
        ResponseType::Samples => {
            let answer = state.read.samples(&storage, &plan).await?;
            let body = compress(&answer.encode_to_vec());
            state
                .metrics
                .read_duration
                .observe(started.elapsed().as_secs_f64());
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/x-protobuf"),
                    (header::CONTENT_ENCODING, "snappy"),
                ],
                body,
            )
                .into_response())
        }
        ResponseType::StreamedXorChunks => {
            let metrics = state.metrics.clone();
            let mut frames = state.read.stream(storage, plan, move |failed| {
                metrics
                    .read_duration
                    .observe(started.elapsed().as_secs_f64());
                if let Some(e) = failed {
                    metrics.read_errors.with_label_values(&[e.code()]).inc();
                    tracing::warn!(error = %e, "streamed remote read failed");
                }
            });
            // Wait for the first frame: errors before it still get a proper status.
            let first = match frames.next().await {
                // Already counted when the read ended.
                Some(Err(e)) => return Ok(ApiError::from(e).into_response()),
                Some(Ok(f)) => Some(f),
                None => None,
            };
            // An error after the first frame aborts the body: the client sees a failed
            // transfer, never a short answer with a 200.
            let stream = futures::stream::iter(first.map(Ok)).chain(frames);
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(STREAMED_CONTENT_TYPE),
            );
            Ok(resp)
        }
    }
}
