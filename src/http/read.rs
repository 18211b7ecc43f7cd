//! `POST /read` (and `/api/v1/read`): credentials → decode (size-capped) → plan every
//! query (all request errors answer 4xx before any byte is sent) → run → respond.
//!
//! Response types: SAMPLES (snappy protobuf ReadResponse, one QueryResult per query in
//! order) or STREAMED_XOR_CHUNKS when the request lists it before SAMPLES. Streamed
//! answers are produced page by page by a task feeding a bounded channel; an error
//! after the first frame aborts the body, so the client sees a failed transfer and
//! never a short answer with a 200.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};
use prost::Message;

use super::auth::Creds;
use super::limits::{check_content_encoding, content_type_proto};
use super::AppState;
use crate::error::ApiError;
use crate::read::error::ReadError;
use crate::read::regex::RegexOptions;
use crate::read::sql::Order;
use crate::remote::codec::{compress, decompress};
use crate::remote::pb::{read_request::ResponseType, ReadRequest, ReadResponse};
use crate::remote::view::read_request_counts;
use crate::timestream::client::{ClientCache, RequestCredentials};
use crate::timestream::reader::{ReadOptions, Reader, SampleBudget};

/// Content type of a streamed remote-read answer.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Frames buffered between the query task and the socket (each ≤ 1 MiB).
const CHANNEL_FRAMES: usize = 2;

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

/// A number distinguishing this app's backend in the process-wide column cache, unique
/// over the process' life: an address would be reused by the next app after this one is
/// dropped (tests start many), which would inherit this one's cached columns and
/// refresh rate limit.
fn scope_of(clients: &Arc<ClientCache>) -> usize {
    static SCOPES: Mutex<Vec<(Weak<ClientCache>, usize)>> = Mutex::new(Vec::new());
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    // Recovered if poisoned: a fresh scope per request would miss the column cache
    // every time (a DESCRIBE per read).
    let mut scopes = SCOPES.lock().unwrap_or_else(PoisonError::into_inner);
    scopes.retain(|(w, _)| w.strong_count() > 0);
    if let Some((_, id)) = scopes
        .iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(clients)))
    {
        return *id;
    }
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    scopes.push((Arc::downgrade(clients), id));
    id
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
    let kind = negotiate(&req)?;
    // Before any AWS call: an oversized matcher is a 400 at once.
    for q in &req.queries {
        crate::read::sql::check_matcher_sizes(q)?;
    }
    let cfg = &state.config;
    let client = state.clients.get(creds).query_client().await?;
    let reader = Reader {
        client,
        identity: creds.cache_key(),
        scope: scope_of(&state.clients),
        options: ReadOptions {
            default_database: cfg.destination.default_database.clone(),
            default_table: cfg.destination.default_table.clone(),
            database_label: cfg.destination.database_label.clone(),
            table_label: cfg.destination.table_label.clone(),
            regex: RegexOptions {
                dot_matches_newline: cfg.read.dot_matches_newline,
            },
            max_samples: cfg.read.max_samples,
        },
        pages: state.metrics.read_requests.clone(),
    };
    let order = match kind {
        ResponseType::Samples => Order::None,
        ResponseType::StreamedXorChunks => Order::SeriesThenTime,
    };
    let mut prepared = Vec::with_capacity(req.queries.len());
    for q in &req.queries {
        prepared.push(reader.prepare(q, order).await?);
    }
    // XOR chunks hold floats only: when a query's table can hold native histograms and the
    // client also accepts SAMPLES (Prometheus 3.x lists both), it gets SAMPLES, which carry
    // them (documentation/native-histograms.md). Decided before any row is read.
    let samples_accepted = req
        .accepted_response_types
        .contains(&(ResponseType::Samples as i32));
    let kind = if kind == ResponseType::StreamedXorChunks
        && samples_accepted
        && prepared.iter().any(|p| p.may_return_histograms())
    {
        for p in &mut prepared {
            p.reorder(Order::None);
        }
        ResponseType::Samples
    } else {
        kind
    };
    match kind {
        ResponseType::Samples => {
            // One budget for every query of the request, taken as rows arrive.
            let budget = SampleBudget::new(cfg.read.max_samples);
            let concurrency = cfg.read.concurrency.max(1);
            let mut results = Vec::with_capacity(prepared.len());
            for group in prepared.chunks(concurrency) {
                let runs = group.iter().map(|p| reader.samples(p, &budget));
                results.extend(futures::future::try_join_all(runs).await?);
            }
            let body = compress(&ReadResponse { results }.encode_to_vec());
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
            let (tx, mut rx) = mpsc::channel::<Result<Bytes, ReadError>>(CHANNEL_FRAMES);
            let st = state.clone();
            tokio::spawn(async move {
                let mut tx = tx;
                let mut budget = if reader.options.max_samples == 0 {
                    u64::MAX
                } else {
                    reader.options.max_samples
                };
                let work = async {
                    for (i, p) in prepared.iter().enumerate() {
                        reader.stream(i, p, &mut budget, &mut tx).await?;
                    }
                    Ok(())
                };
                // A panic here would close the channel like a finished answer: the client
                // would take a short body for a whole one. It becomes an error instead.
                let outcome = std::panic::AssertUnwindSafe(work)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Err(ReadError::Internal(
                            "the streamed read task panicked".into(),
                        ))
                    });
                st.metrics
                    .read_duration
                    .observe(started.elapsed().as_secs_f64());
                if let Err(e) = outcome {
                    st.metrics.read_errors.with_label_values(&[e.code()]).inc();
                    tracing::warn!(error = %e, "streamed remote read failed");
                    // Before the first frame this becomes the status; after it, it
                    // aborts the body.
                    let _ = tx.send(Err(e)).await;
                }
            });
            // Wait for the first frame: errors before it still get a proper status.
            let first = match rx.next().await {
                // Already counted by the task.
                Some(Err(e)) => return Ok(ApiError::from(e).into_response()),
                Some(Ok(f)) => Some(f),
                None => None,
            };
            let stream = futures::stream::iter(first.map(Ok)).chain(rx);
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(STREAMED_CONTENT_TYPE),
            );
            Ok(resp)
        }
    }
}
