//! Prometheus 3.x as a Remote-Write 2.0 sender (`protobuf_message:
//! io.prometheus.write.v2.Request`): A scrapes the awkward exporter every second and
//! remote-writes 2.0 through a recording proxy to the connector; B reads everything back
//! through remote read. On the wire every write request is 2.0 and every answer a 204
//! whose `X-Prometheus-Remote-Write-*-Written` headers equal what the request carried;
//! Prometheus counts no failed sample; PromQL answers from B equal A's own TSDB bit for
//! bit, as with 1.0 (integration/promql.rs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use prost::Message;
use timestream_prometheus_connector::remote::codec::decompress;
use timestream_prometheus_connector::remote::pb_v2::Request;

use crate::harness::exporter::Exporter;
use crate::harness::*;

const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// One write request through the proxy, as seen on the wire.
#[derive(Clone, Debug)]
struct Seen {
    content_type: Option<String>,
    version: Option<String>,
    /// Float samples, histograms and exemplars in the body (decoded with prost).
    sent: [u64; 3],
    status: u16,
    /// The three `-Written` headers of the answer.
    written: [Option<u64>; 3],
}

#[derive(Clone)]
struct Proxy {
    target: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const WRITTEN: [&str; 3] = [
    "x-prometheus-remote-write-samples-written",
    "x-prometheus-remote-write-histograms-written",
    "x-prometheus-remote-write-exemplars-written",
];

async fn forward(State(p): State<Proxy>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |h: &HeaderMap, n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(String::from);
    let sent = decompress(&body, 64 << 20)
        .ok()
        .and_then(|raw| Request::decode(raw.as_slice()).ok())
        .map_or([0; 3], |r| {
            r.timeseries.iter().fold([0; 3], |[s, h, e], t| {
                [
                    s + t.samples.len() as u64,
                    h + t.histograms.len() as u64,
                    e + t.exemplars.len() as u64,
                ]
            })
        });
    let mut req = http_client().post(format!("{}/write", p.target)).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let Ok(resp) = req.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = resp.status();
    let rh = resp.headers().clone();
    p.seen.lock().unwrap().push(Seen {
        content_type: header(&headers, "content-type"),
        version: header(&headers, "x-prometheus-remote-write-version"),
        sent,
        status: status.as_u16(),
        written: WRITTEN.map(|n| header(&rh, n).and_then(|v| v.parse().ok())),
    });
    let body = resp.bytes().await.unwrap_or_default();
    let mut out = (status, body).into_response();
    for (k, v) in &rh {
        out.headers_mut().insert(k, v.clone());
    }
    out
}

const QUERIES: &[&str] = &[
    "it_gauge",
    r#"it_gauge{kind="quote\"d"}"#,
    r#"it_gauge{kind="ünïcødé ✓ 日本"}"#,
    r#"it_gauge{optional=""}"#,
    r#"it_gauge{kind=~"a|ab"}"#,
    "it_wave",
    "rate(it_requests_total[5s])",
    "sum by (code) (rate(it_requests_total[10s]))",
    "histogram_quantile(0.9, sum by (le) (rate(it_latency_seconds_bucket[10s])))",
    "count_over_time(it_wave[10s])",
    r#"up{job="exporter"}"#,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_3_remote_write_2_0_is_stored_exactly_and_answered_with_the_written_headers() {
    let Some((prom, version)) =
        clients::require_prometheus(3, "remote write 2.0 from Prometheus 3.x")
    else {
        return;
    };
    let dir = TestDir::new("rw2");
    let d = dir.path();
    let exporter = Exporter::start().await;
    let store_port = free_port();
    let args = local_store_args(d, store_port, &["--log.level=debug"]);
    let connector = Connector::start("connector", free_port(), &args, None, d).await;
    let proxy = Proxy {
        target: connector.url(""),
        seen: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(axum::routing::post(forward))
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let auth =
        format!("    basic_auth:\n      username: {ACCESS_KEY}\n      password: {SECRET_KEY}\n");
    let a_port = free_port();
    let a_config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: ["{exporter}"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{a_port}"]
remote_write:
  - url: "http://{proxy_addr}/write"
    protobuf_message: io.prometheus.write.v2.Request
{auth}    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
        exporter = exporter.addr,
    );
    let b_config = format!(
        "global:\n  scrape_interval: 1m\nremote_read:\n  - url: \"{read}\"\n    read_recent: true\n{auth}",
        read = connector.url("/read"),
    );
    let a = Prometheus::start(&prom, "prometheus-a", a_port, &a_config, d).await;
    let b = Prometheus::start(&prom, "prometheus-b", free_port(), &b_config, d).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let t_eval = (now_secs() - 2.0).floor() + 0.437;
    a.wait_remote_write_past(t_eval).await;

    // Prometheus' own account: everything sent, nothing failed (a 2xx lacking the
    // headers or with lower counts would count failed samples).
    let sent = a
        .own_metric_max("prometheus_remote_storage_samples_total")
        .await
        .unwrap_or(0.0);
    assert!(sent > 100.0, "Prometheus {version} sent {sent} samples");
    for m in [
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_histograms_failed_total",
        "prometheus_remote_storage_exemplars_failed_total",
        "prometheus_remote_storage_samples_retried_total",
    ] {
        assert_eq!(a.own_metric_max(m).await, Some(0.0), "{m}");
    }
    // On the wire: 2.0 requests, 204 answers whose headers count what was sent.
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(s.content_type.as_deref(), Some(V2), "{s:?}");
        assert_eq!(s.version.as_deref(), Some("2.0.0"), "{s:?}");
        assert_eq!(s.status, 204, "{s:?}");
        assert_eq!(s.written, s.sent.map(Some), "{s:?}");
    }
    // Stored exactly: B (remote read) answers as A's own TSDB.
    let mut failures = Vec::new();
    for q in QUERIES {
        let (from_a, from_b) = (
            normalise(&a.instant(q, t_eval).await),
            normalise(&b.instant(q, t_eval).await),
        );
        if from_a["result"].as_array().is_none_or(|r| r.is_empty()) {
            failures.push(format!("instant {q}: A returned nothing"));
        }
        if from_a != from_b {
            failures.push(format!("instant {q}:\n  A: {from_a}\n  B: {from_b}"));
        }
        let (start, end) = (t_eval - 12.25, t_eval - 0.5);
        let (from_a, from_b) = (
            normalise(&a.range(q, start, end, 0.75).await),
            normalise(&b.range(q, start, end, 0.75).await),
        );
        if from_a != from_b {
            failures.push(format!("range {q}:\n  A: {from_a}\n  B: {from_b}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    clients::note(&format!(
        "remote write 2.0: Prometheus {version} sent {sent} samples in {} requests, all 204 with exact headers, 0 failed; {} queries × 2 equal",
        seen.len(),
        QUERIES.len()
    ));
}
