//! Prometheus A scrapes the awkward exporter (and itself) every second and
//! remote-writes through the connector over TLS with basic auth; Prometheus B has no
//! targets and reads everything through the connector's remote read. Every query
//! below must give the same answer from A's own TSDB and from B, values bit-exact
//! (Prometheus renders sample values with the shortest round-tripping decimal, so
//! equal strings mean equal f64 bits).
//!
//! Run twice: with Prometheus 2.x (Debian stable; reads with SAMPLES) and with
//! Prometheus 3.x (Debian unstable; reads with STREAMED_XOR_CHUNKS and uses only the
//! first series of each frame, so a server packing several series per frame loses
//! data). A and B are the same version (PromQL itself differs between majors). B reads
//! through a recording proxy that checks which response type was asked for and served.

use std::time::Duration;

use crate::harness::exporter::Exporter;
use crate::harness::proxy::{ReadProxy, SAMPLES, STREAMED_XOR_CHUNKS};
use crate::harness::tls::TestPki;
use crate::harness::*;

/// (query, A must return a non-empty answer)
const QUERIES: &[(&str, bool)] = &[
    ("it_gauge", true),
    (r#"it_gauge{kind="quote\"d"}"#, true),
    (r#"it_gauge{kind="back\\slash"}"#, true),
    (r#"it_gauge{kind="new\nline"}"#, true),
    (r#"it_gauge{kind="it's"}"#, true),
    (r#"it_gauge{kind="ünïcødé ✓ 日本"}"#, true),
    (r#"it_gauge{optional=""}"#, true),
    (r#"it_gauge{optional!=""}"#, true),
    (r#"it_gauge{optional!="yes"}"#, true),
    (r#"it_gauge{optional=~"y.*"}"#, true),
    (r#"it_gauge{optional=~"|yes"}"#, true),
    (r#"it_gauge{optional!~"yes"}"#, true),
    (r#"it_gauge{optional!~""}"#, true),
    // Anchoring: "prom" must not match "prometheus", "a" must not match "ab".
    (r#"it_gauge{kind=~"prom"}"#, true),
    (r#"it_gauge{kind=~"a"}"#, true),
    (r#"it_gauge{kind=~"a|ab"}"#, true),
    (r#"it_gauge{kind!~"a.*|p.*"}"#, true),
    (r#"it_gauge{kind=~"(?i)A.*"}"#, true),
    (r#"it_gauge{kind=~".*\\\\.*"}"#, true),
    (r#"it_gauge{kind=~"new.line"}"#, false),
    (r#"it_gauge{kind=~"[[:alpha:]]+"}"#, true),
    (r#"it_gauge{kind=~"\\w+"}"#, true),
    (r#"it_gauge{kind=~"ü.+"}"#, true),
    (r#"it_gauge{kind=~".+'.+"}"#, true),
    (r#"it_gauge{kind=~"(?s).*line"}"#, true),
    (r#"it_gauge{kind=~"[^a-z]+"}"#, false),
    // Labels no series has: "" and != match everything, = matches nothing.
    (r#"it_gauge{nonexistent_label=""}"#, true),
    (r#"it_gauge{nonexistent_label!="x"}"#, true),
    (r#"it_gauge{nonexistent_label="x"}"#, false),
    (r#"it_gauge{nonexistent_label=~"x.*"}"#, false),
    (r#"{__name__=~"it_.*", kind="a"}"#, true),
    (r#"{__name__=~"it_gauge|it_wave"}"#, true),
    (r#"{__name__!~"it_.*|up|scrape_.*", job="exporter"}"#, false),
    ("it_wave", true),
    (r#"it_wave{shape="sin"} * 3"#, true),
    ("rate(it_requests_total[5s])", true),
    ("sum by (code) (rate(it_requests_total[10s]))", true),
    ("sum by (method) (it_requests_total)", true),
    (r#"it_requests_total{optional!="x"}"#, true),
    (
        "histogram_quantile(0.9, sum by (le) (rate(it_latency_seconds_bucket[10s])))",
        true,
    ),
    ("it_latency_seconds_sum / it_latency_seconds_count", true),
    ("count_over_time(it_wave[10s])", true),
    ("max_over_time(it_gauge[7s])", true),
    (r#"up{job="exporter"}"#, true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_through_remote_read_equals_own_tsdb_prometheus_2() {
    parity(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_through_remote_read_equals_own_tsdb_prometheus_3_streamed() {
    parity(3).await;
}

async fn parity(major: u32) {
    let test = format!("promql parity with Prometheus {major}.x");
    let Some((prom, version)) = clients::require_prometheus(major, &test) else {
        return;
    };
    let dir = TestDir::new(&format!("promql{major}"));
    let d = dir.path();
    let pki = TestPki::generate(d);
    let exporter = Exporter::start().await;

    let store_port = free_port();
    let mut args = local_store_args(d, store_port, &["--log.level=debug"]);
    if major < 3 {
        // Prometheus 2.x regexes: `.` does not match a newline.
        args.push("--read.dot-matches-newline=false".to_string());
    }
    let connector = Connector::start("connector", free_port(), &args, Some(&pki), d).await;
    // B → recording proxy (TLS, same certificate) → connector (TLS).
    let proxy = ReadProxy::start(&connector.url(""), Some(&pki), Some(&pki)).await;

    let remote_common = format!(
        r#"    basic_auth:
      username: {ACCESS_KEY}
      password: {SECRET_KEY}
    tls_config:
      ca_file: {ca}
      server_name: localhost
"#,
        ca = pki.ca_cert.display()
    );
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
  - url: "{write}"
{remote_common}    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
        exporter = exporter.addr,
        write = connector.url("/write"),
    );
    let b_config = format!(
        r#"global:
  scrape_interval: 1m
remote_read:
  - url: "{read}"
    read_recent: true
{remote_common}"#,
        read = proxy.url("/read"),
    );
    let a = Prometheus::start(&prom, "prometheus-a", a_port, &a_config, d).await;
    let b = Prometheus::start(&prom, "prometheus-b", free_port(), &b_config, d).await;

    // Let A collect a history worth querying.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        exporter.scrapes() >= 10,
        "A scraped only {}",
        exporter.scrapes()
    );

    // Evaluate at a non-whole second in the past, once A has delivered everything up
    // to well beyond it.
    let t_eval = (now_secs() - 2.0).floor() + 0.437;
    a.wait_remote_write_past(t_eval).await;

    let mut failures = Vec::new();
    for (query, expect_data) in QUERIES {
        let from_a = normalise(&a.instant(query, t_eval).await);
        let from_b = normalise(&b.instant(query, t_eval).await);
        if *expect_data && is_empty(&from_a) {
            failures.push(format!(
                "instant {query}: A returned nothing (bad test fixture)"
            ));
        }
        if from_a != from_b {
            failures.push(format!("instant {query}:\n  A: {from_a}\n  B: {from_b}"));
        }
        // A range that starts and ends between whole seconds.
        let (start, end) = (t_eval - 12.25, t_eval - 0.5);
        let from_a = normalise(&a.range(query, start, end, 0.75).await);
        let from_b = normalise(&b.range(query, start, end, 0.75).await);
        if from_a != from_b {
            failures.push(format!("range {query}:\n  A: {from_a}\n  B: {from_b}"));
        }
    }
    // What B asked for and got, as seen on the wire.
    let records = proxy.records();
    let reads = records
        .iter()
        .filter(|r| r.accepted_response_types.is_some())
        .count();
    let streamed = records.iter().filter(|r| r.streamed()).count();
    let max_series_per_frame = records
        .iter()
        .map(|r| r.max_series_per_frame)
        .max()
        .unwrap_or(0);
    let wire = format!(
        "Prometheus {version}: {} read requests, {streamed} answered streamed, at most \
         {max_series_per_frame} series in one frame; accepted types {:?}",
        records.len(),
        records
            .iter()
            .map(|r| r.accepted_response_types.clone())
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(
        failures.is_empty(),
        "{} of {} evaluations differ ({} queries, each instant and range; {wire}):\n{}",
        failures.len(),
        QUERIES.len() * 2,
        QUERIES.len(),
        failures.join("\n")
    );
    assert!(reads > 0 && reads == records.len(), "{wire}: {records:?}");
    assert!(
        records.iter().all(|r| r.status == 200),
        "{wire}: {records:?}"
    );
    if major >= 3 {
        // Prometheus ≥ 2.55 asks for streamed chunks first and falls back to samples.
        for r in &records {
            assert_eq!(
                r.accepted_response_types.as_deref(),
                Some(&[STREAMED_XOR_CHUNKS, SAMPLES][..]),
                "{wire}: {r:?}"
            );
            assert!(r.streamed(), "{wire}: not answered streamed: {r:?}");
        }
    } else {
        assert_eq!(streamed, 0, "{wire}: 2.x must be answered with samples");
    }
    clients::note(&format!(
        "promql parity: {} queries × 2 equal; {wire}",
        QUERIES.len()
    ));
    drop(connector);
}
