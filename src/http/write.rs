//! `POST /write` (and `/api/v1/write`): credentials → decode (size-capped) → plan → send →
//! status. 200 only when every accepted sample is stored; transient failures → 503 so
//! Prometheus retries the whole request (identical re-writes are no-ops in Timestream);
//! permanent ones → 4xx with what was and was not written.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;

use super::auth::Creds;
use super::limits::{self, Limits};
use super::AppState;
use crate::error::{ApiError, PermanentKind};
use crate::remote::codec::{decode_write_request_view, decompress, CodecError};
use crate::special;
use crate::timestream::error::FailureKind;
use crate::timestream::reader::note_special_values_written;
use crate::timestream::writer::{write_plan, WriteOutcome, WriterOptions};
use crate::write::{plan_write, IgnoreReason, PlanOptions};

/// Content type of a remote-write 2.0 body, which we do not decode (yet): 415 lets a
/// sender fall back to 1.0.
const RW2_PROTO: &str = "io.prometheus.write.v2.request";

fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    limits::check_content_encoding(headers, "write")?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if ct.contains(RW2_PROTO) {
            return Err(ApiError::UnsupportedMediaType(
                "remote write 2.0 (io.prometheus.write.v2.Request) is not supported; send prometheus.WriteRequest (1.0)".into(),
            ));
        }
    }
    Ok(())
}

/// The handler.
#[tracing::instrument(skip_all, fields(request_type = "remote_write"))]
pub async fn handle(
    State(state): State<AppState>,
    Creds(creds): Creds,
    limits: Option<Extension<Limits>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    check_media_type(&headers)?;
    let refuse = |e: CodecError| {
        tracing::info!(error = %e, bytes = body.len(), "undecodable write request");
        limits::codec_error(e)
    };
    let limit = state.config.max_decompressed_bytes;
    let raw = if limits::decode_off_worker(&body) {
        let b = body.clone();
        limits::blocking(move || decompress(&b, limit)).await
    } else {
        decompress(&body, limit)
    }
    .map_err(refuse)?;
    // Labels borrow `raw` from here on (no copy per label); the plan borrows `req`.
    let req = decode_write_request_view(&raw).map_err(refuse)?;
    drop(body);
    let cfg = &state.config;
    let metrics = &state.metrics;
    let opts = PlanOptions {
        destination: &cfg.destination,
        fail_on_long_label: cfg.write.fail_on_long_label,
        fail_on_invalid_sample_value: cfg.write.fail_on_invalid_sample_value,
        special_values: cfg.write.special_values,
    };
    let plan = match plan_write(&req, &opts) {
        Ok(p) => p,
        Err(e) => {
            let received = req.sample_count() as u64;
            metrics.received_samples.inc_by(received);
            tracing::info!(error = %e, "write request refused");
            return Err(ApiError::BadRequest(format!(
                "{e}; none of the {received} samples were written"
            )));
        }
    };
    metrics.received_samples.inc_by(plan.stats.received);
    for r in IgnoreReason::ALL {
        metrics.add_ignored(r.as_str(), plan.stats.ignored[r as usize]);
    }
    for k in special::Kind::ALL {
        metrics.add_special(k.as_str(), plan.stats.specials[k as usize]);
    }
    if plan.stats.ignored_total() > 0 {
        tracing::debug!(
            ignored = plan.stats.ignored_total(),
            received = plan.stats.received,
            "samples skipped"
        );
    }
    if plan.records.is_empty() {
        return Ok(StatusCode::OK);
    }
    let clients = state.clients.get(&creds);
    let client = clients.write_client().await.map_err(|f| {
        ApiError::from_failure(
            "Timestream endpoint discovery failed; no sample was written",
            &f,
        )
    })?;
    // Global bound on WriteRecords calls across requests (absent only outside `app`).
    let want = cfg.write.concurrency.min(plan.batches.len()).max(1);
    let slots = match &limits {
        Some(Extension(l)) => Some(l.write_slots(want).await),
        None => None,
    };
    let outcome = write_plan(
        &client,
        &plan,
        WriterOptions {
            concurrency: slots.as_ref().map_or(want, |s| s.count()),
            common_attributes: cfg.write.common_attributes,
        },
        metrics,
    )
    .await;
    if plan.stats.specials.iter().any(|&n| n > 0) && outcome.samples_written > 0 {
        // The first special value of a table creates its `__name__` column: reads in this
        // process look for it now instead of after the column cache expires.
        for d in &plan.destinations {
            note_special_values_written(d.database, d.table);
        }
    }
    outcome_to_result(&outcome, plan.stats.ignored_total())
}

/// Maps what happened to the status Prometheus should see.
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
            outcome.failures.len(),
            first.database,
            first.table,
            first.failure
        );
        return Err(ApiError::BackendTransient(msg));
    }
    // All permanent: the clearest status for the most telling cause.
    let kind = if outcome
        .failures
        .iter()
        .any(|f| f.failure.kind == FailureKind::AccessDenied)
    {
        PermanentKind::AccessDenied
    } else if outcome
        .failures
        .iter()
        .any(|f| f.failure.kind == FailureKind::NotFound)
    {
        PermanentKind::NotFound
    } else {
        PermanentKind::Invalid
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
    if outcome.failures.len() > 3 {
        let _ = write!(msg, "{} more failed calls.", outcome.failures.len() - 3);
    }
    Err(ApiError::BackendPermanent {
        kind,
        message: msg.trim_end().to_string(),
    })
}
