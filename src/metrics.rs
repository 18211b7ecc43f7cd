//! All metrics of the connector in one registry (held by the app state, so tests get a
//! fresh one). The six upstream names are kept exactly (SPEC §1.4) so existing dashboards
//! keep working; the labelled ones are ours.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Label of `special_samples_total`.
pub const KIND_LABEL: &str = "kind";
/// Label of `ignored_samples_by_reason`.
pub const REASON_LABEL: &str = "reason";
/// Label of `write_errors`.
pub const CODE_LABEL: &str = "code";
/// Label of per-route metrics.
pub const HANDLER_LABEL: &str = "handler";
/// Label of `remote_write_requests`: `1.0` or `2.0`.
pub const PROTOCOL_LABEL: &str = "protocol";

/// The connector's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Names of the families above (empty vectors are not in the exposition, so the
    /// documentation check needs the list).
    names: Vec<String>,
    /// Upstream: samples not sent (unstorable names, non-finite values, stale markers).
    pub ignored_samples: IntCounter,
    /// Upstream: samples received in write requests.
    pub received_samples: IntCounter,
    /// Upstream: WriteRecords calls.
    pub write_requests: IntCounter,
    /// Upstream: duration of each WriteRecords call (including SDK retries).
    pub write_duration: Histogram,
    /// Upstream: Query result pages fetched (incremented by the read path).
    pub read_requests: IntCounter,
    /// Upstream: duration of each remote-read request (observed by the read path).
    pub read_duration: Histogram,
    /// Ignored samples by reason.
    pub ignored_by_reason: IntCounterVec,
    /// Samples sent as special-value records (NaN, stale marker, ±Inf), by kind.
    pub special_samples: IntCounterVec,
    /// Failed remote-read requests by error code (`ReadError::code`).
    pub read_errors: IntCounterVec,
    /// Failed WriteRecords calls by Timestream error code.
    pub write_errors: IntCounterVec,
    /// Records Timestream accepted.
    pub records_written: IntCounter,
    /// Records per WriteRecords call.
    pub batch_records: Histogram,
    /// Bytes of each WriteRecords request body (per attempt).
    pub write_request_bytes: Histogram,
    /// Remote write/read requests being handled.
    pub requests_in_flight: IntGauge,
    /// HTTP requests by handler and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request duration by handler.
    pub http_duration: HistogramVec,
    /// Remote write/read requests answered 503 because too many were in flight.
    pub requests_shed: IntCounter,
    /// Remote write/read requests answered 503 because they exceeded the request timeout.
    pub request_timeouts: IntCounter,
    /// Remote write/read requests answered 503 because the shutdown deadline passed.
    pub requests_cut_at_shutdown: IntCounter,
    /// WriteRecords call slots held by requests (bounded by --write.max-inflight-calls).
    pub write_call_slots_in_use: IntGauge,
    /// Remote-write requests by protocol version, once negotiated from the Content-Type.
    pub remote_write_requests: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric in a new registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let ignored_samples = IntCounter::new(
            "timestream_connector_ignored_samples_total",
            "Samples that were not sent to Timestream (unstorable names, non-finite values, stale markers).",
        )
        .expect("valid metric");
        let received_samples = IntCounter::new(
            "timestream_connector_received_samples_total",
            "Samples received in remote-write requests.",
        )
        .expect("valid metric");
        let write_requests = IntCounter::new(
            "timestream_connector_write_requests_total",
            "WriteRecords calls made to Timestream.",
        )
        .expect("valid metric");
        let write_duration = Histogram::with_opts(HistogramOpts::new(
            "timestream_connector_write_duration_seconds",
            "Duration of WriteRecords calls, SDK retries included.",
        ))
        .expect("valid metric");
        let read_requests = IntCounter::new(
            "timestream_connector_read_requests_total",
            "Query result pages fetched from Timestream.",
        )
        .expect("valid metric");
        let read_duration = Histogram::with_opts(HistogramOpts::new(
            "timestream_connector_read_duration_seconds",
            "Duration of remote-read requests.",
        ))
        .expect("valid metric");
        let ignored_by_reason = IntCounterVec::new(
            Opts::new(
                "timestream_connector_ignored_samples_by_reason_total",
                "Samples not sent to Timestream, by reason.",
            ),
            &[REASON_LABEL],
        )
        .expect("valid metric");
        let special_samples = IntCounterVec::new(
            Opts::new(
                "timestream_connector_special_samples_total",
                "Samples sent as special-value records (NaN, staleness marker, +Inf, -Inf), by kind.",
            ),
            &[KIND_LABEL],
        )
        .expect("valid metric");
        let read_errors = IntCounterVec::new(
            Opts::new(
                "timestream_connector_read_errors_total",
                "Failed remote-read requests, by error code.",
            ),
            &[CODE_LABEL],
        )
        .expect("valid metric");
        let write_errors = IntCounterVec::new(
            Opts::new(
                "timestream_connector_write_errors_total",
                "Failed WriteRecords calls (after SDK retries), by Timestream error code.",
            ),
            &[CODE_LABEL],
        )
        .expect("valid metric");
        let records_written = IntCounter::new(
            "timestream_connector_records_written_total",
            "Records Timestream accepted.",
        )
        .expect("valid metric");
        let batch_records = Histogram::with_opts(
            HistogramOpts::new(
                "timestream_connector_write_batch_records",
                "Records per WriteRecords call.",
            )
            .buckets(vec![1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 99.0, 100.0]),
        )
        .expect("valid metric");
        let write_request_bytes = Histogram::with_opts(
            HistogramOpts::new(
                "timestream_connector_write_request_bytes",
                "Size of WriteRecords request bodies sent to Timestream (each attempt).",
            )
            .buckets(prometheus::exponential_buckets(1024.0, 2.0, 8).expect("valid buckets")),
        )
        .expect("valid metric");
        let requests_in_flight = IntGauge::new(
            "timestream_connector_requests_in_flight",
            "Remote write and read requests being handled.",
        )
        .expect("valid metric");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "timestream_connector_http_requests_total",
                "HTTP requests by handler and status code.",
            ),
            &[HANDLER_LABEL, CODE_LABEL],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "timestream_connector_http_request_duration_seconds",
                "HTTP request duration by handler.",
            ),
            &[HANDLER_LABEL],
        )
        .expect("valid metric");

        let requests_shed = IntCounter::new(
            "timestream_connector_requests_shed_total",
            "Remote write/read requests answered 503 at once because --web.max-concurrent-requests were in flight.",
        )
        .expect("valid metric");
        let request_timeouts = IntCounter::new(
            "timestream_connector_request_timeouts_total",
            "Remote write/read requests answered 503 because they took longer than --web.request-timeout, and streamed reads cut at --read.stream-timeout.",
        )
        .expect("valid metric");
        let requests_cut_at_shutdown = IntCounter::new(
            "timestream_connector_requests_cut_at_shutdown_total",
            "Remote write/read requests answered 503 because --web.shutdown-timeout passed.",
        )
        .expect("valid metric");
        let write_call_slots_in_use = IntGauge::new(
            "timestream_connector_write_call_slots_in_use",
            "WriteRecords call slots held by requests (at most --write.max-inflight-calls).",
        )
        .expect("valid metric");
        let remote_write_requests = IntCounterVec::new(
            Opts::new(
                "timestream_connector_remote_write_requests_total",
                "Remote-write requests by protocol version (1.0: prometheus.WriteRequest, 2.0: io.prometheus.write.v2.Request), counted once the Content-Type is accepted.",
            ),
            &[PROTOCOL_LABEL],
        )
        .expect("valid metric");
        // Both series exist from the start, so a rate over them is defined before traffic.
        for v in ["1.0", "2.0"] {
            remote_write_requests.with_label_values(&[v]);
        }

        let mut names = Vec::new();
        for c in [
            Box::new(ignored_samples.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(received_samples.clone()),
            Box::new(write_requests.clone()),
            Box::new(write_duration.clone()),
            Box::new(read_requests.clone()),
            Box::new(read_duration.clone()),
            Box::new(ignored_by_reason.clone()),
            Box::new(special_samples.clone()),
            Box::new(write_errors.clone()),
            Box::new(read_errors.clone()),
            Box::new(records_written.clone()),
            Box::new(batch_records.clone()),
            Box::new(write_request_bytes.clone()),
            Box::new(requests_in_flight.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(requests_shed.clone()),
            Box::new(request_timeouts.clone()),
            Box::new(requests_cut_at_shutdown.clone()),
            Box::new(write_call_slots_in_use.clone()),
            Box::new(remote_write_requests.clone()),
        ] {
            names.extend(c.desc().iter().map(|d| d.fq_name.clone()));
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            names,
            ignored_samples,
            received_samples,
            write_requests,
            write_duration,
            read_requests,
            read_duration,
            ignored_by_reason,
            special_samples,
            write_errors,
            read_errors,
            records_written,
            batch_records,
            write_request_bytes,
            requests_in_flight,
            http_requests,
            http_duration,
            requests_shed,
            request_timeouts,
            requests_cut_at_shutdown,
            write_call_slots_in_use,
            remote_write_requests,
        }
    }

    /// Counts samples written as special values (NaN, stale marker, ±Inf), by kind.
    pub fn add_special(&self, kind: &str, n: u64) {
        if n > 0 {
            self.special_samples.with_label_values(&[kind]).inc_by(n);
        }
    }

    /// Counts ignored samples under the upstream total and by reason.
    pub fn add_ignored(&self, reason: &str, n: u64) {
        if n > 0 {
            self.ignored_samples.inc_by(n);
            self.ignored_by_reason
                .with_label_values(&[reason])
                .inc_by(n);
        }
    }

    /// The registry, for extra collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The name of every metric family this struct registers.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names_are_exposed() {
        let m = Metrics::new();
        m.add_ignored("non_finite", 2);
        m.received_samples.inc();
        m.write_requests.inc();
        m.write_duration.observe(0.1);
        m.read_requests.inc();
        m.read_duration.observe(0.1);
        let text = m.encode();
        for name in [
            "timestream_connector_ignored_samples_total 2",
            "timestream_connector_received_samples_total 1",
            "timestream_connector_write_requests_total 1",
            "timestream_connector_write_duration_seconds_count 1",
            "timestream_connector_read_requests_total 1",
            "timestream_connector_read_duration_seconds_count 1",
            "timestream_connector_ignored_samples_by_reason_total{reason=\"non_finite\"} 2",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
