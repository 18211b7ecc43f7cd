//! Sends a `WritePlan` to Timestream ([`send`]): one WriteRecords call per batch, up to
//! `concurrency` calls in flight per request, SDK records built just before each call from
//! the batch's runs of samples (so memory stays bounded), what the batch shares moved into
//! CommonAttributes. Returns a `WriteOutcome`
//! that says how many samples were stored and why the others were not; it never decides
//! an HTTP status (that is `http::write`'s job).

use std::time::Instant;

use aws_sdk_timestreamwrite::operation::write_records::WriteRecordsError;
use aws_sdk_timestreamwrite::types::{Dimension, MeasureValueType, Record, TimeUnit};
use futures::stream::{self, StreamExt};

use super::error::{classify, Failure, FailureKind};
use crate::histogram;
use crate::metrics::Metrics;
use crate::special;
use crate::write::{own_dims, Batch, Dim, RecordValue, WritePlan};

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// WriteRecords calls in flight per request.
    pub concurrency: usize,
    /// Move shared attributes into CommonAttributes.
    pub common_attributes: bool,
}

/// Rejected records kept per failed call (for the answer's examples; all are counted).
pub const MAX_REJECTED_KEPT: usize = 3;

/// A record Timestream refused (from RejectedRecordsException).
#[derive(Debug, Clone)]
pub struct RejectedSample {
    /// Metric name of the record.
    pub metric: String,
    /// Sample timestamp (ms).
    pub timestamp_ms: i64,
    /// Timestream's reason.
    pub reason: String,
}

/// A failed call.
#[derive(Debug, Clone)]
pub struct BatchFailure {
    /// Classified error.
    pub failure: Failure,
    /// Database of the call.
    pub database: String,
    /// Table of the call.
    pub table: String,
    /// Samples in the call.
    pub samples_in_call: u64,
    /// Samples of the call that were not stored.
    pub samples_not_written: u64,
    /// Native histograms among `samples_not_written`.
    pub histograms_not_written: u64,
    /// The first [`MAX_REJECTED_KEPT`] rejected records (empty unless the error is
    /// RejectedRecordsException); `samples_not_written` counts them all.
    pub rejected: Vec<RejectedSample>,
    /// Index of the call's batch in the plan.
    pub batch: usize,
}

/// What happened to a request's samples.
#[derive(Debug, Clone, Default)]
pub struct WriteOutcome {
    /// Samples sent.
    pub samples_attempted: u64,
    /// Samples Timestream stored (native histograms included).
    pub samples_written: u64,
    /// Native histograms among `samples_written`.
    pub histograms_written: u64,
    /// Calls that failed (after SDK retries).
    pub failed_calls: usize,
    /// The failed calls the answer describes: the first [`MAX_FAILURES_KEPT`] to end, and
    /// the first of each [`FailureKind`] (empty exactly when no call failed). A body of
    /// 10^5 refused records must not hold 10^3 failures with their messages (issue 13).
    pub failures: Vec<BatchFailure>,
}

/// Failed calls kept in full in a [`WriteOutcome`] (besides the first of each kind).
pub const MAX_FAILURES_KEPT: usize = 3;

impl WriteOutcome {
    /// Whether any failure may pass on retry.
    pub fn has_transient(&self) -> bool {
        self.failures.iter().any(|f| f.failure.kind.is_transient())
    }

    /// Adds the outcome of another part of the request (a window of it).
    pub fn merge(&mut self, o: WriteOutcome) {
        // Destructured: a new field cannot be left out of the merge.
        let WriteOutcome {
            samples_attempted,
            samples_written,
            histograms_written,
            failed_calls,
            failures,
        } = o;
        self.samples_attempted += samples_attempted;
        self.samples_written += samples_written;
        self.histograms_written += histograms_written;
        // Calls `o` counted but did not keep are counted here as they are.
        self.failed_calls += failed_calls - failures.len();
        for f in failures {
            self.add_failure(f);
        }
    }

    /// Counts a failed call, and keeps it if the answer may need it.
    pub fn add_failure(&mut self, f: BatchFailure) {
        self.failed_calls += 1;
        let new_kind = !self
            .failures
            .iter()
            .any(|k| k.failure.kind == f.failure.kind);
        if self.failures.len() < MAX_FAILURES_KEPT || new_kind {
            self.failures.push(f);
        }
    }
}

fn dimension(d: &Dim<'_>) -> Dimension {
    Dimension::builder()
        .name(d.name)
        .value(d.value)
        .build()
        .expect("name and value are set")
}

/// The shortest decimal string that parses back to the identical f64 ("1e300", "5e-324",
/// "-0.0", "0.1"). Timestream parses exponent notation for DOUBLE measures.
pub fn format_value(v: f64, buf: &mut ryu::Buffer) -> &str {
    buf.format_finite(v)
}

/// The measure value text and type of a record: the shortest round-trip decimal as DOUBLE,
/// or a special value's (`crate::special`) or native histogram's (`crate::histogram`) text
/// as VARCHAR.
fn measure_value<'b>(
    v: RecordValue<'_>,
    buf: &'b mut ryu::Buffer,
) -> (std::borrow::Cow<'b, str>, MeasureValueType) {
    match v {
        RecordValue::Number(v) if v.is_finite() => {
            (format_value(v, buf).into(), MeasureValueType::Double)
        }
        RecordValue::Number(v) => (special::encode(v), MeasureValueType::Varchar),
        RecordValue::Histogram(h) => (
            histogram::encode(&histogram::parse(h)).into(),
            MeasureValueType::Varchar,
        ),
    }
}

/// Builds the SDK input of one batch: (CommonAttributes, Records).
pub fn build_records(
    plan: &WritePlan<'_>,
    batch: &Batch<'_>,
    common_attributes: bool,
) -> (Option<Record>, Vec<Record>) {
    let mut vbuf = ryu::Buffer::new();
    let mut tbuf = itoa::Buffer::new();
    let mut records = Vec::with_capacity(batch.len);
    if !common_attributes {
        for p in plan.batch_records(batch) {
            let (value, ty) = measure_value(p.value, &mut vbuf);
            let mut b = Record::builder()
                .measure_name(p.measure_name)
                .measure_value(value)
                .measure_value_type(ty)
                .time(tbuf.format(p.timestamp))
                .time_unit(TimeUnit::Milliseconds);
            for d in p.dims {
                b = b.dimensions(dimension(d));
            }
            records.push(b.build());
        }
        return (None, records);
    }
    let mut common = Record::builder().time_unit(TimeUnit::Milliseconds);
    match batch.common_special {
        Some(false) => common = common.measure_value_type(MeasureValueType::Double),
        Some(true) => common = common.measure_value_type(MeasureValueType::Varchar),
        None => {}
    }
    if let Some(n) = batch.common_name {
        common = common.measure_name(n);
    }
    if let Some(t) = batch.common_time {
        common = common.time(tbuf.format(t));
    }
    for d in &batch.common_dims {
        common = common.dimensions(dimension(d));
    }
    for p in plan.batch_records(batch) {
        let (value, ty) = measure_value(p.value, &mut vbuf);
        let mut b = Record::builder().measure_value(value);
        if batch.common_special.is_none() {
            b = b.measure_value_type(ty);
        }
        if batch.common_name.is_none() {
            b = b.measure_name(p.measure_name);
        }
        if batch.common_time.is_none() {
            b = b.time(tbuf.format(p.timestamp));
        }
        for d in own_dims(p.dims, &batch.common_dims) {
            b = b.dimensions(dimension(d));
        }
        records.push(b.build());
    }
    (Some(common.build()), records)
}

async fn send_batch(
    client: &aws_sdk_timestreamwrite::Client,
    plan: &WritePlan<'_>,
    batch_index: usize,
    opts: WriterOptions,
    metrics: &Metrics,
) -> Result<(u64, u64), BatchFailure> {
    let batch = &plan.batches[batch_index];
    let dest = plan.destinations[batch.destination as usize];
    let n = batch.len as u64;
    let h = plan.histograms_in(batch);
    let (common, records) = build_records(plan, batch, opts.common_attributes);
    metrics.write_requests.inc();
    metrics.batch_records.observe(n as f64);
    let started = Instant::now();
    let result = client
        .write_records()
        .database_name(dest.database)
        .table_name(dest.table)
        .set_common_attributes(common)
        .set_records(Some(records))
        .send()
        .await;
    metrics
        .write_duration
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(_) => {
            metrics.records_written.inc_by(n);
            Ok((n, h))
        }
        Err(err) => {
            let failure = classify(&err);
            metrics
                .write_errors
                .with_label_values(&[failure.code.as_str()])
                .inc();
            let mut rejected = Vec::new();
            let mut not_written = n;
            let mut hist_not_written = h;
            let mut not_written_listed = 0u64;
            let mut hist_not_written_listed = 0u64;
            if let Some(WriteRecordsError::RejectedRecordsException(rr)) = err.as_service_error() {
                // Partial success: the records not listed were stored (SPEC §2.3).
                for r in rr.rejected_records() {
                    let idx = r.record_index();
                    if idx < 0 || idx as u64 >= n {
                        continue;
                    }
                    not_written_listed += 1;
                    let run = plan.batch_run(batch, idx as usize).map(|(run, _)| run);
                    if run.is_some_and(|r| plan.series[r.series as usize].is_histograms()) {
                        hist_not_written_listed += 1;
                    }
                    // Only a few are kept for the answer (it shows three per call): a
                    // batch of 100 rejected records must not hold 100 owned reasons, nor
                    // a request of 10^5 rejected samples 10^5 of them.
                    if rejected.len() >= MAX_REJECTED_KEPT {
                        continue;
                    }
                    let Some((metric, timestamp_ms)) = plan.record(batch, idx as usize) else {
                        continue;
                    };
                    rejected.push(RejectedSample {
                        metric: metric.to_string(),
                        timestamp_ms,
                        reason: r.reason().unwrap_or("no reason given").to_string(),
                    });
                }
                if not_written_listed > 0 {
                    not_written = not_written_listed;
                    hist_not_written = hist_not_written_listed;
                    metrics.records_written.inc_by(n - not_written);
                }
            }
            let f = BatchFailure {
                failure,
                database: dest.database.to_string(),
                table: dest.table.to_string(),
                samples_in_call: n,
                samples_not_written: not_written,
                histograms_not_written: hist_not_written,
                batch: batch_index,
                rejected,
            };
            if f.failure.kind == FailureKind::Transient {
                tracing::warn!(database = %f.database, table = %f.table, code = %f.failure.code,
                    error = %f.failure.message, records = n, "WriteRecords failed; request will be answered 503");
            } else {
                tracing::warn!(database = %f.database, table = %f.table, code = %f.failure.code,
                    error = %f.failure.message, records = n, not_written, "WriteRecords refused");
            }
            Err(f)
        }
    }
}

/// Sends every batch of `plan`, at most `opts.concurrency` at a time.
pub async fn send(
    client: &aws_sdk_timestreamwrite::Client,
    plan: &WritePlan<'_>,
    opts: WriterOptions,
    metrics: &Metrics,
) -> WriteOutcome {
    let mut outcome = WriteOutcome {
        samples_attempted: plan.record_count() as u64,
        ..Default::default()
    };
    // Indices, not references, keep the closure free of higher-ranked lifetimes.
    let mut results = stream::iter(0..plan.batches.len())
        .map(|i| send_batch(client, plan, i, opts, metrics))
        .buffer_unordered(opts.concurrency.max(1));
    while let Some(r) = results.next().await {
        match r {
            Ok((n, h)) => {
                outcome.samples_written += n;
                outcome.histograms_written += h;
            }
            Err(f) => {
                outcome.samples_written += f.samples_in_call - f.samples_not_written;
                outcome.histograms_written +=
                    plan.histograms_in(&plan.batches[f.batch]) - f.histograms_not_written;
                outcome.add_failure(f);
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DestinationConfig;
    use crate::remote::pb::{Label, Sample, TimeSeries, WriteRequest};
    use crate::write::{plan, PlanOptions};

    #[test]
    fn an_outcome_keeps_few_failures_but_counts_all_and_the_first_of_each_kind() {
        let f = |kind, batch| BatchFailure {
            failure: Failure {
                kind,
                code: "c".into(),
                message: "m".into(),
            },
            database: "d".into(),
            table: "t".into(),
            samples_in_call: 100,
            samples_not_written: 100,
            histograms_not_written: 0,
            rejected: Vec::new(),
            batch,
        };
        let mut o = WriteOutcome::default();
        for i in 0..1000 {
            o.add_failure(f(FailureKind::Invalid, i));
        }
        o.add_failure(f(FailureKind::AccessDenied, 1000));
        o.add_failure(f(FailureKind::Transient, 1001));
        o.add_failure(f(FailureKind::Transient, 1002));
        assert_eq!(o.failed_calls, 1003);
        let kept: Vec<_> = o.failures.iter().map(|f| f.batch).collect();
        assert_eq!(kept, [0, 1, 2, 1000, 1001]);
        assert!(o.has_transient());
    }

    #[test]
    fn values_round_trip_bit_for_bit() {
        let mut b = ryu::Buffer::new();
        for v in [
            5e-324,
            -0.0,
            0.1,
            1e300,
            9007199254740993.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            -123.456,
            1.0 / 3.0,
        ] {
            let s = format_value(v, &mut b).to_string();
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(format_value(1e-7, &mut b), "1e-7");
    }

    #[test]
    fn common_and_plain_records_describe_the_same_rows() {
        let ts: Vec<_> = (0..5)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "m".into(),
                    },
                    Label {
                        name: "i".into(),
                        value: i.to_string(),
                    },
                    Label {
                        name: "job".into(),
                        value: "j".into(),
                    },
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: 10,
                }],
                ..Default::default()
            })
            .collect();
        let req = WriteRequest {
            timeseries: ts,
            ..Default::default()
        };
        let d = DestinationConfig {
            default_database: "d".into(),
            default_table: "t".into(),
            database_label: None,
            table_label: None,
        };
        let p = plan(
            &req,
            &PlanOptions {
                destination: &d,
                fail_on_long_label: false,
                fail_on_invalid_sample_value: false,
                special_values: true,
                native_histograms: true,
            },
        )
        .unwrap();
        let b = &p.batches[0];
        let (common, recs) = build_records(&p, b, true);
        let (none, plain) = build_records(&p, b, false);
        assert!(none.is_none());
        let common = common.unwrap();
        for (r, full) in recs.iter().zip(&plain) {
            let mut dims: Vec<_> = common
                .dimensions()
                .iter()
                .chain(r.dimensions())
                .map(|d| (d.name().to_string(), d.value().to_string()))
                .collect();
            dims.sort();
            let mut fdims: Vec<_> = full
                .dimensions()
                .iter()
                .map(|d| (d.name().to_string(), d.value().to_string()))
                .collect();
            fdims.sort();
            assert_eq!(dims, fdims);
            assert_eq!(
                r.measure_name().or(common.measure_name()),
                full.measure_name()
            );
            assert_eq!(r.time().or(common.time()), full.time());
            assert_eq!(r.measure_value(), full.measure_value());
        }
        assert_eq!(common.dimensions().len(), 1);
    }
}
