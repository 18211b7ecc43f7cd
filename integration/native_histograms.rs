//! Native histograms through real Prometheus 3.x (issue 16). Prometheus A scrapes a target
//! exposing a native (exponential) histogram in the protobuf exposition format and a classic
//! histogram in text that A converts to a native histogram with custom buckets
//! (`convert_classic_histograms_to_nhcb`), and remote-writes them with
//! `send_native_histograms: true`. Prometheus B answers every query from remote read alone
//! (3.x asks for STREAMED_XOR_CHUNKS or SAMPLES; the connector answers SAMPLES, which carry
//! histograms). `histogram_quantile`, `histogram_count`, `histogram_sum`,
//! `histogram_fraction` and `rate`, instant and range, must answer the same JSON from A's own
//! TSDB and from B.
//!
//! The custom-bucket histogram is checked at the connector's /read (schema −53 and its bounds
//! come back), not through B: Prometheus 3.5.3's remote-read client drops custom bounds from
//! SAMPLES answers and B then panics serving the query ("index 1 out of bounds for custom
//! bounds of length 0"); fixed upstream after 3.5 by prometheus/prometheus#17794. Remote
//! write 1.0 cannot carry custom buckets at all (Prometheus later drops them from 1.0,
//! prometheus/prometheus#17146), so the custom-bucket check runs with 2.0 only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prost::Message;

use crate::harness::*;
use timestream_prometheus_connector::remote::pb;

const QUERIES: &[&str] = &[
    "nh_latency_seconds",
    "histogram_count(nh_latency_seconds)",
    "histogram_sum(nh_latency_seconds)",
    "histogram_quantile(0.9, nh_latency_seconds)",
    "histogram_fraction(0, 1.2, nh_latency_seconds)",
    "rate(nh_latency_seconds[5s])",
    "histogram_quantile(0.5, rate(nh_latency_seconds[5s]))",
    "histogram_count(rate(nh_latency_seconds[5s]))",
];

// The protobuf exposition format (io.prometheus.client, metrics.proto), the fields used here.
#[derive(Clone, PartialEq, Message)]
struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    help: Option<String>,
    #[prost(int32, optional, tag = "3")]
    r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    metric: Vec<Metric>,
}

#[derive(Clone, PartialEq, Message)]
struct Metric {
    #[prost(message, repeated, tag = "1")]
    label: Vec<LabelPair>,
    #[prost(message, optional, tag = "7")]
    histogram: Option<ExpoHistogram>,
}

#[derive(Clone, PartialEq, Message)]
struct LabelPair {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ExpoHistogram {
    #[prost(uint64, optional, tag = "1")]
    sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    sample_sum: Option<f64>,
    #[prost(sint32, optional, tag = "5")]
    schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    zero_count: Option<u64>,
    #[prost(message, repeated, tag = "12")]
    positive_span: Vec<Span>,
    #[prost(sint64, repeated, tag = "13")]
    positive_delta: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct Span {
    #[prost(sint32, optional, tag = "1")]
    offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    length: Option<u32>,
}

/// A native histogram that grows with every scrape: 4 buckets of schema 3 and a zero bucket.
async fn native(State(n): State<Arc<AtomicU64>>) -> impl IntoResponse {
    let n = n.fetch_add(1, Ordering::Relaxed) + 1;
    let buckets = [n, 2 * n, 3 * n, n];
    let mut deltas = Vec::new();
    let mut prev = 0i64;
    for b in buckets {
        deltas.push(b as i64 - prev);
        prev = b as i64;
    }
    let family = MetricFamily {
        name: Some("nh_latency_seconds".into()),
        help: Some("A native histogram.".into()),
        r#type: Some(4), // HISTOGRAM
        metric: vec![Metric {
            label: vec![LabelPair {
                name: Some("path".into()),
                value: Some("/api".into()),
            }],
            histogram: Some(ExpoHistogram {
                sample_count: Some(buckets.iter().sum::<u64>() + n),
                sample_sum: Some(1.25 * n as f64),
                schema: Some(3),
                zero_threshold: Some(1e-3),
                zero_count: Some(n),
                positive_span: vec![Span {
                    offset: Some(-2),
                    length: Some(4),
                }],
                positive_delta: deltas,
            }),
        }],
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        )],
        family.encode_length_delimited_to_vec(),
    )
}

/// A classic histogram in the text format (A converts it to custom buckets).
async fn classic(State(n): State<Arc<AtomicU64>>) -> String {
    let n = n.fetch_add(1, Ordering::Relaxed) + 1;
    format!(
        "# TYPE ch_size_bytes histogram\n\
         ch_size_bytes_bucket{{le=\"1\"}} {}\n\
         ch_size_bytes_bucket{{le=\"5\"}} {}\n\
         ch_size_bytes_bucket{{le=\"10\"}} {}\n\
         ch_size_bytes_bucket{{le=\"+Inf\"}} {}\n\
         ch_size_bytes_sum {}\n\
         ch_size_bytes_count {}\n",
        n,
        3 * n,
        4 * n,
        5 * n,
        20 * n,
        5 * n
    )
}

/// The NHCB histogram A converted from the classic one comes back with its custom bounds.
async fn check_nhcb(connector: &Connector, t: f64) {
    let stored = read_samples(connector, "ch_size_bytes", t).await;
    let h = stored
        .iter()
        .flat_map(|s| &s.histograms)
        .last()
        .unwrap_or_else(|| panic!("no ch_size_bytes histogram read back: {stored:?}"));
    assert_eq!(h.schema, -53, "{h:?}");
    assert_eq!(h.custom_values, [1.0, 5.0, 10.0], "{h:?}");
}

/// The series of `metric` from the connector's /read, as SAMPLES.
async fn read_samples(connector: &Connector, metric: &str, t: f64) -> Vec<pb::TimeSeries> {
    let end = (t * 1000.0) as i64;
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: end - 60_000,
            end_timestamp_ms: end,
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: metric.into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![pb::read_request::ResponseType::Samples as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let resp = http_client()
        .post(connector.url("/read"))
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&resp.bytes().await.unwrap())
        .unwrap();
    pb::ReadResponse::decode(raw.as_slice())
        .unwrap()
        .results
        .remove(0)
        .timeseries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_nhcb_histograms_match_own_tsdb_prometheus_3_remote_write_1() {
    histograms(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_nhcb_histograms_match_own_tsdb_prometheus_3_remote_write_2() {
    histograms(true, false).await;
}

/// A table that holds native histograms and nothing else (no number was ever written, so
/// Timestream gave it no `measure_value::double` column): A's `write_relabel_configs` keeps
/// only `nh_latency_seconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_only_native_histograms_matches_own_tsdb_prometheus_3() {
    histograms(false, true).await;
}

/// `only`: A remote-writes the native histogram alone.
async fn histograms(rw2: bool, only: bool) {
    let test = format!(
        "native histograms with Prometheus 3.x, remote write 2.0: {rw2}, histograms only: {only}"
    );
    let test = test.as_str();
    let Some((prom, version)) = clients::require_prometheus(3, test) else {
        return;
    };
    clients::note(&format!("{test}: {version}"));
    let dir = TestDir::new(match (rw2, only) {
        (_, true) => "native_histograms_only",
        (true, false) => "native_histograms2",
        (false, false) => "native_histograms1",
    });
    let d = dir.path();
    let app = Router::new()
        .route("/native", get(native))
        .route("/classic", get(classic))
        .with_state(Arc::new(AtomicU64::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });

    let store_port = free_port();
    let args = local_store_args(d, store_port, &[]);
    let connector = Connector::start("connector", free_port(), &args, None, d).await;
    let auth =
        format!("    basic_auth:\n      username: {ACCESS_KEY}\n      password: {SECRET_KEY}\n");
    let a_config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: native
    metrics_path: /native
    scrape_protocols: [PrometheusProto]
    static_configs:
      - targets: ["{target_addr}"]
  - job_name: classic
    metrics_path: /classic
    scrape_protocols: [PrometheusText0.0.4]
    convert_classic_histograms_to_nhcb: true
    static_configs:
      - targets: ["{target_addr}"]
remote_write:
  - url: "{write}"
    send_native_histograms: true
{protocol}{auth}{keep}    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
        write = connector.url("/write"),
        protocol = if rw2 {
            "    protobuf_message: io.prometheus.write.v2.Request\n"
        } else {
            ""
        },
        keep = if only {
            "    write_relabel_configs:\n      - source_labels: [__name__]\n        regex: nh_latency_seconds\n        action: keep\n"
        } else {
            ""
        },
    );
    let b_config = format!(
        "global:\n  scrape_interval: 1m\nremote_read:\n  - url: \"{read}\"\n    read_recent: true\n{auth}",
        read = connector.url("/read"),
    );
    let flags = ["--enable-feature=native-histograms"];
    let a = Prometheus::start_with(&prom, "prometheus-a", free_port(), &a_config, &flags, d).await;
    let b = Prometheus::start_with(&prom, "prometheus-b", free_port(), &b_config, &flags, d).await;

    tokio::time::sleep(Duration::from_secs(12)).await;
    let t_eval = (now_secs() - 1.5).floor() + 0.437;
    a.wait_remote_write_past(t_eval).await;

    for q in ["nh_latency_seconds", "ch_size_bytes"] {
        // (A's own TSDB: both are native histograms there.)
        let got = a.instant(q, t_eval).await;
        assert!(
            got["result"][0]["histogram"].is_array(),
            "A holds {q} as a native histogram: {got}"
        );
    }
    // What the connector itself answers (SAMPLES): the custom bounds A sent are there.
    if only {
        // The premise: the store holds histogram rows and nothing else.
        let q = query_client(&format!("http://127.0.0.1:{store_port}")).await;
        let from = format!(r#"FROM "{DATABASE}"."{TABLE}""#);
        let all = count_rows(&q, &format!("SELECT count(*) {from}")).await;
        let hs = count_rows(
            &q,
            &format!("SELECT count(*) {from} WHERE measure_name = '__native_histogram__'"),
        )
        .await;
        assert!(all > 0 && all == hs, "{all} rows, {hs} histograms");
    } else if rw2 {
        check_nhcb(&connector, t_eval).await;
    } else {
        // 3.5.3 sends custom-bucket histograms over 1.0 without their bounds: skipped and
        // counted, not stored (a Prometheus reading them back would panic).
        let stored = read_samples(&connector, "ch_size_bytes", t_eval).await;
        assert!(stored.iter().all(|s| s.histograms.is_empty()), "{stored:?}");
        let metrics = http_client()
            .get(connector.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line =
            "timestream_connector_ignored_samples_by_reason_total{reason=\"invalid_histogram\"} ";
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 5.0, "{n}");
    }
    same_answers(&a, &b, QUERIES, t_eval - 8.0, t_eval, true).await;
    drop(connector);
}
