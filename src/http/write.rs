//! `POST /write` (and `/api/v1/write`): protocol negotiation → credentials → decode
//! (size-capped) → plan → send → status. Remote write 1.0 and 2.0 share everything after
//! decoding: both decoders yield the same borrowed view, so there is one planner and one
//! status mapping. Success only when every accepted sample is stored; transient failures
//! → 503 so the sender retries the whole request (identical re-writes are no-ops in
//! Timestream); permanent ones → 4xx with what was and was not written.
//!
//! Negotiation (`Content-Type`, remote-write 2.0 spec): `application/x-protobuf` without
//! `proto=` or with `proto=prometheus.WriteRequest` → 1.0, `proto=io.prometheus.write.v2.Request`
//! → 2.0. No `Content-Type` at all, or curl's default `application/x-www-form-urlencoded`, is
//! read as 1.0 (what `/write` always accepted; hand-made requests rely on it). Any other
//! media type or `proto=`, and any `Content-Encoding` but snappy, → 415 naming what is
//! accepted (vmagent's first `zstd` request relies on that 415 to fall back to snappy 1.0).
//!
//! 2.0 answers carry `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`
//! (Prometheus 3.x drops a batch whose 2xx lacks them). "Written" counts what this request
//! settled for good: stored, or skipped by a documented rule and counted in
//! `timestream_connector_ignored_samples_by_reason_total` (unstorable names, special values
//! with `--write.special-values=false`, native histograms, and exemplars, which Timestream
//! has no place for). Reporting those as
//! not written would make Prometheus log an error and count failed samples for every batch
//! of data it can never store, while retrying would not help; `--fail-on-long-label` and
//! `--fail-on-invalid-sample-value` turn the skips into 400s for those who want the sender
//! to see them. A request refused as a whole (400/413) reports 0 of everything.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::auth::Creds;
use super::limits::{self, Limits};
use super::AppState;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::remote::codec::{decompress, CodecError, Window, WriteBody};
use crate::remote::view::WindowLimits;
use crate::special;
use crate::timestream::client::RequestCredentials;
use crate::timestream::error::FailureKind;
use crate::timestream::writer::{self, WriteOutcome, WriterOptions};
use crate::write::{IgnoreReason, PlanError, PlanOptions, PlanStats, WritePlan, MAX_SERIES_LABELS};

/// `proto=` of a remote-write 1.0 body.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// `proto=` of a remote-write 2.0 body.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// Response headers of a 2.0 request.
pub const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
/// See [`SAMPLES_WRITTEN`].
pub const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
/// See [`SAMPLES_WRITTEN`].
pub const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";

const ACCEPTED: &str = "/write accepts snappy-compressed (Content-Encoding: snappy) \
    Content-Type: application/x-protobuf (remote write 1.0), \
    application/x-protobuf;proto=prometheus.WriteRequest (1.0) or \
    application/x-protobuf;proto=io.prometheus.write.v2.Request (2.0)";

/// The remote-write protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

impl Protocol {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "1.0",
            Protocol::V2 => "2.0",
        }
    }
}

/// Picks the protocol from `Content-Type` and `Content-Encoding` (see the module doc).
pub fn negotiate(headers: &HeaderMap) -> Result<Protocol, ApiError> {
    if let Err(e) = limits::check_content_encoding(headers, "write") {
        return Err(ApiError::UnsupportedMediaType(format!("{e}. {ACCEPTED}")));
    }
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Protocol::V1);
    };
    let unsupported = |what: String| {
        Err(ApiError::UnsupportedMediaType(format!(
            "{what}; {ACCEPTED}"
        )))
    };
    let Ok(ct) = ct.to_str() else {
        return unsupported("the Content-Type is not ASCII".into());
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.is_empty() || media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Ok(Protocol::V1);
    }
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return unsupported(format!("Content-Type {media:?} is not supported"));
    }
    match limits::content_type_proto(headers) {
        None => Ok(Protocol::V1),
        Some(p) if p.eq_ignore_ascii_case(PROTO_V1) => Ok(Protocol::V1),
        Some(p) if p.eq_ignore_ascii_case(PROTO_V2) => Ok(Protocol::V2),
        Some(p) => unsupported(format!("proto={p:?} is not a remote-write message")),
    }
}

/// What a request settled for good (see the module doc), for the 2.0 response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
    /// Exemplars.
    pub exemplars: u64,
}

/// The handler.
#[tracing::instrument(skip_all, fields(request_type = "remote_write"))]
pub async fn handle(
    State(state): State<AppState>,
    Creds(creds): Creds,
    limits: Option<Extension<Limits>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protocol = match negotiate(&headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    state
        .metrics
        .remote_write_requests
        .with_label_values(&[protocol.as_str()])
        .inc();
    let mut written = Written::default();
    let result = write(&state, creds, limits, body, protocol, &mut written).await;
    match protocol {
        Protocol::V1 => result.into_response(),
        Protocol::V2 => {
            let mut resp = match result {
                // The 2.0 spec's success status.
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => e.into_response(),
            };
            let h = resp.headers_mut();
            for (name, n) in [
                (SAMPLES_WRITTEN, written.samples),
                (HISTOGRAMS_WRITTEN, written.histograms),
                (EXEMPLARS_WRITTEN, written.exemplars),
            ] {
                h.insert(name, HeaderValue::from(n));
            }
            resp
        }
    }
}

/// How much of a body is decoded and planned at a time. A window of minimal series (19
/// bytes each) keeps about 3 MiB of view and plan; Prometheus' batches (2,000 samples by
/// default) fit in one window of ordinary series, so only larger bodies have windows
/// read twice (checked, then sent; issue 13).
const WINDOW: WindowLimits = WindowLimits {
    series: 8192,
    labels: 65_536,
    series_labels: MAX_SERIES_LABELS + 1,
};

/// What planning the whole request found: its counts, records and exemplars.
#[derive(Default)]
struct Totals {
    stats: PlanStats,
    records: usize,
    exemplars: u64,
}

impl Totals {
    fn add(&mut self, stats: &PlanStats, records: usize, exemplars: u64) {
        self.stats.add(stats);
        self.records += records;
        self.exemplars += exemplars;
    }
}

/// One request's decoding and planning: its body, options, and whether it is large
/// enough to be decoded under `block_in_place`.
struct Windows<'a> {
    body: WriteBody<'a>,
    opts: PlanOptions<'a>,
    large: bool,
    body_len: usize,
    protocol: Protocol,
    metrics: &'a Metrics,
}

impl<'a> Windows<'a> {
    fn window(&self, from: usize) -> Result<Window<'a>, ApiError> {
        limits::cpu_heavy(self.large, || self.body.window(from, WINDOW))
            .map_err(|e| refuse_body(e, self.body_len, self.protocol))
    }

    fn plan<'w>(&'w self, w: &'w Window<'a>) -> Result<WritePlan<'w>, PlanError> {
        limits::cpu_heavy(self.large, || crate::write::plan(&w.view, &self.opts))
    }

    fn refused(&self, e: PlanError, received: u64) -> ApiError {
        self.metrics.received_samples.inc_by(received);
        tracing::info!(error = %e, "write request refused");
        ApiError::WriteRefused {
            reason: e,
            received,
        }
    }

    /// Plans the first window, and checks the rest of the request as it would be planned
    /// (`write::check`, keeping nothing per series), so that what refuses the request (a
    /// malformed byte, a series without a name) refuses it before anything is written,
    /// wherever it is. Returns the whole request's counts and the first window's plan.
    fn plan_all<'w>(&'w self, first: &'w Window<'a>) -> Result<(Totals, WritePlan<'w>), ApiError> {
        let mut totals = Totals::default();
        let mut received = first.view.sample_count() as u64;
        let first_plan = self.plan(first);
        if let Ok(p) = &first_plan {
            totals.add(&p.stats, p.record_count(), first.exemplars);
        }
        let mut refusal = None;
        let mut next = first.next;
        while let Some(from) = next {
            let w = self.window(from)?;
            next = w.next;
            received += w.view.sample_count() as u64;
            if first_plan.is_ok() && refusal.is_none() {
                match limits::cpu_heavy(self.large, || crate::write::check(&w.view, &self.opts)) {
                    Ok((stats, records)) => totals.add(&stats, records, w.exemplars),
                    Err(e) => refusal = Some(e),
                }
            }
        }
        match (first_plan, refusal) {
            (Ok(p), None) => Ok((totals, p)),
            (Err(e), _) | (Ok(_), Some(e)) => Err(self.refused(e, received)),
        }
    }
}

fn refuse_body(e: CodecError, bytes: usize, protocol: Protocol) -> ApiError {
    tracing::info!(error = %e, bytes, protocol = protocol.as_str(), "undecodable write request");
    ApiError::from(e)
}

/// Decode → plan → send, the same for both protocols; fills `written` as it goes.
async fn write(
    state: &AppState,
    creds: RequestCredentials,
    limits: Option<Extension<Limits>>,
    body: Bytes,
    protocol: Protocol,
    written: &mut Written,
) -> Result<StatusCode, ApiError> {
    let body_len = body.len();
    let limit = state.config.max_decompressed_bytes;
    let large = limits::decode_off_worker(&body);
    let raw = if large {
        let b = body.clone();
        limits::blocking(move || decompress(&b, limit)).await
    } else {
        decompress(&body, limit)
    }
    .map_err(|e| refuse_body(e, body_len, protocol))?;
    drop(body);
    // Labels borrow `raw` from here on (no copy per label); a plan borrows its window.
    let wb = limits::cpu_heavy(large, || match protocol {
        Protocol::V1 => Ok(WriteBody::v1(&raw)),
        Protocol::V2 => WriteBody::v2(&raw),
    })
    .map_err(|e| refuse_body(e, body_len, protocol))?;
    let cfg = &state.config;
    let windows = Windows {
        body: wb,
        opts: PlanOptions {
            destination: &cfg.destination,
            fail_on_long_label: cfg.write.fail_on_long_label,
            fail_on_invalid_sample_value: cfg.write.fail_on_invalid_sample_value,
            special_values: cfg.write.special_values,
            native_histograms: cfg.write.native_histograms,
        },
        large,
        body_len,
        protocol,
        metrics: &state.metrics,
    };
    let first = windows.window(0)?;
    let (totals, first_plan) = windows.plan_all(&first)?;
    count_planned(&state.metrics, &totals, written);
    if totals.records == 0 {
        return Ok(StatusCode::OK);
    }
    let clients = state.clients.get(&creds);
    let client = clients.write_client().await.map_err(|f| {
        ApiError::from_failure(
            "Timestream endpoint discovery failed; no sample was written",
            &f,
        )
    })?;
    let outcome = send_all(state, &client, limits, &windows, &first, first_plan).await?;
    // Histograms stored count as histograms (2.0 headers); copies of a histogram that were
    // one record count once that record is stored.
    written.samples += outcome.samples_written - outcome.histograms_written;
    written.histograms += outcome.histograms_written;
    if outcome.histograms_written > 0 && outcome.failures.is_empty() {
        written.histograms += totals.stats.accepted - totals.records as u64;
    }
    outcome_to_result(&outcome, totals.stats.ignored_total())
}

/// The request's counts into the metrics, and what is settled before any write (skipped
/// samples and histograms, exemplars) into `written`.
fn count_planned(metrics: &Metrics, totals: &Totals, written: &mut Written) {
    let stats = &totals.stats;
    metrics.received_samples.inc_by(stats.received);
    for r in IgnoreReason::ALL {
        metrics.add_ignored(r.as_str(), stats.ignored[r as usize]);
    }
    for k in special::Kind::ALL {
        metrics.add_special(k.as_str(), stats.specials[k as usize]);
    }
    if stats.ignored_total() > 0 {
        tracing::debug!(
            ignored = stats.ignored_total(),
            received = stats.received,
            "samples skipped"
        );
    }
    // Settled by a skip rule whatever happens to the rest.
    let histograms = stats.ignored[IgnoreReason::NativeHistogram as usize]
        + stats.ignored[IgnoreReason::HistogramTooLarge as usize]
        + stats.ignored[IgnoreReason::InvalidHistogram as usize];
    *written = Written {
        samples: stats.ignored_total() - histograms,
        histograms,
        exemplars: totals.exemplars,
    };
}

/// Sends the request a window at a time: the first window's plan, then each further
/// window decoded and planned again, sent before the next is decoded.
async fn send_all(
    state: &AppState,
    client: &aws_sdk_timestreamwrite::Client,
    limits: Option<Extension<Limits>>,
    windows: &Windows<'_>,
    first: &Window<'_>,
    first_plan: WritePlan<'_>,
) -> Result<WriteOutcome, ApiError> {
    let mut outcome = send_plan(state, client, &limits, &first_plan).await;
    drop(first_plan);
    let mut next = first.next;
    while let Some(from) = next {
        let w = windows.window(from)?;
        next = w.next;
        // Checked before without error: the same window plans the same way.
        let plan = windows.plan(&w).map_err(|e| windows.refused(e, 0))?;
        outcome.merge(send_plan(state, client, &limits, &plan).await);
    }
    Ok(outcome)
}

/// Sends one window's plan under the global bound on WriteRecords calls.
async fn send_plan(
    state: &AppState,
    client: &aws_sdk_timestreamwrite::Client,
    limits: &Option<Extension<Limits>>,
    plan: &WritePlan<'_>,
) -> WriteOutcome {
    if plan.record_count() == 0 {
        return WriteOutcome::default();
    }
    let cfg = &state.config;
    // Global bound on WriteRecords calls across requests (absent only outside `app`).
    let want = cfg.write.concurrency.min(plan.batches.len()).max(1);
    let slots = match limits {
        Some(Extension(l)) => Some(l.write_slots(want).await),
        None => None,
    };
    let o = writer::send(
        client,
        plan,
        WriterOptions {
            concurrency: slots.as_ref().map_or(want, |s| s.count()),
            common_attributes: cfg.write.common_attributes,
        },
        &state.metrics,
    )
    .await;
    note_new_columns(state, plan, &o);
    o
}

/// Tells the read service what a window's writes created: the first special value or
/// histogram of a table creates its `__name__` column, so reads through this app look for
/// it now instead of after the column cache expires.
fn note_new_columns(state: &AppState, plan: &WritePlan<'_>, o: &WriteOutcome) {
    if o.histograms_written > 0 {
        for d in &plan.destinations {
            state.read.note_histograms_written(d.database, d.table);
        }
    }
    let varchar = plan.stats.specials.iter().sum::<u64>() + plan.stats.histograms;
    if varchar > 0 && o.samples_written > 0 {
        for d in &plan.destinations {
            state.read.note_special_values_written(d.database, d.table);
        }
    }
}

pub fn outcome_to_result(outcome: &WriteOutcome, ignored: u64) -> Result<StatusCode, ApiError> {
    if outcome.failures.is_empty() {
        return Ok(StatusCode::OK);
    }
    let not_written = outcome.samples_attempted - outcome.samples_written;
    let mut msg = format!(
        "wrote {} of {} samples to Timestream; {} not written",
        outcome.samples_written, outcome.samples_attempted, not_written
    );
    if ignored > 0 {
        let _ = write!(msg, " ({ignored} more skipped as unstorable)");
    }
    msg.push_str(". ");
    if outcome.has_transient() {
        let first = outcome
            .failures
            .iter()
            .find(|f| f.failure.kind.is_transient())
            .expect("has_transient");
        let _ = write!(
            msg,
            "{} WriteRecords call(s) failed after retries, e.g. on {}.{}: {}; retry the request",
            outcome.failed_calls, first.database, first.table, first.failure
        );
        return Err(ApiError::Backend {
            kind: FailureKind::Transient,
            message: msg,
        });
    }
    // All permanent: the clearest status for the most telling cause.
    let kind = if outcome
        .failures
        .iter()
        .any(|f| f.failure.kind == FailureKind::AccessDenied)
    {
        FailureKind::AccessDenied
    } else if outcome
        .failures
        .iter()
        .any(|f| f.failure.kind == FailureKind::NotFound)
    {
        FailureKind::NotFound
    } else {
        FailureKind::Invalid
    };
    for f in outcome.failures.iter().take(3) {
        let _ = write!(
            msg,
            "{}.{}: {} ({} samples not written)",
            f.database, f.table, f.failure, f.samples_not_written
        );
        for r in f.rejected.iter().take(3) {
            let _ = write!(
                msg,
                "; rejected {} at {} ms: {}",
                r.metric, r.timestamp_ms, r.reason
            );
        }
        msg.push_str(". ");
    }
    if outcome.failed_calls > 3 {
        let _ = write!(msg, "{} more failed calls.", outcome.failed_calls - 3);
    }
    Err(ApiError::Backend {
        kind,
        message: msg.trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(ct: Option<&str>, enc: Option<&str>) -> Result<Protocol, u16> {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        if let Some(enc) = enc {
            h.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_str(enc).unwrap(),
            );
        }
        negotiate(&h).map_err(|e| e.status().as_u16())
    }

    #[test]
    fn content_type_picks_the_protocol_and_everything_else_is_415() {
        use Protocol::*;
        for (ct, want) in [
            (None, Ok(V1)),
            (Some(""), Ok(V1)),
            (Some("application/x-protobuf"), Ok(V1)),
            (Some("application/x-www-form-urlencoded"), Ok(V1)),
            (
                Some("application/x-protobuf;proto=prometheus.WriteRequest"),
                Ok(V1),
            ),
            (
                Some("APPLICATION/X-PROTOBUF ; proto = \"prometheus.WriteRequest\""),
                Ok(V1),
            ),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                Ok(V2),
            ),
            (
                Some("application/x-protobuf; Proto=io.prometheus.write.v2.request"),
                Ok(V2),
            ),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
                Err(415),
            ),
            (
                Some("application/x-protobuf;proto=prometheus.ReadRequest"),
                Err(415),
            ),
            (Some("application/json"), Err(415)),
            (Some("image/png"), Err(415)),
            (Some("text/plain; charset=utf-8"), Err(415)),
            (Some("application/octet-stream"), Err(415)),
        ] {
            assert_eq!(negotiated(ct, None), want, "{ct:?}");
            assert_eq!(negotiated(ct, Some("snappy")), want, "{ct:?} + snappy");
        }
        for enc in ["gzip", "deflate", "zstd", "identity", ""] {
            for ct in [None, Some("application/x-protobuf")] {
                assert_eq!(negotiated(ct, Some(enc)), Err(415), "{ct:?} + {enc:?}");
            }
            let e = negotiate(&{
                let mut h = HeaderMap::new();
                h.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_str(enc).unwrap(),
                );
                h
            })
            .unwrap_err();
            assert!(e.to_string().contains(PROTO_V2), "{e}");
        }
    }
}
