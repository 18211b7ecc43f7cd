//! Nothing Prometheus scraped may be lost when the connector is SIGKILLed and
//! restarted mid-stream, or when Timestream throttles for a while: the connector must
//! answer with a status that makes Prometheus keep the data in its WAL and retry
//! (5xx), and identical re-writes must be no-ops. Afterwards the number of stored
//! exporter samples equals the number Prometheus holds, exactly. With Prometheus 2.x and
//! 3.x as the sender.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::exporter::Exporter;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sample_lost_across_connector_sigkill_and_backend_throttling_prometheus_2() {
    durability(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sample_lost_across_connector_sigkill_and_backend_throttling_prometheus_3() {
    durability(3).await;
}

async fn durability(major: u32) {
    let test = format!("durability with Prometheus {major}.x");
    let Some((prom, _)) = clients::require_prometheus(major, &test) else {
        return;
    };
    let dir = TestDir::new(&format!("durability{major}"));
    let d = dir.path();
    let exporter = Exporter::start().await;
    let store = start_store(d).await;
    create_destination(&store.url()).await;

    let port = free_port();
    let args = vec![
        format!("--write-base-endpoint={}", store.url()),
        format!("--query-base-endpoint={}", store.url()),
        format!("--default-database={DATABASE}"),
        format!("--default-table={TABLE}"),
        // Keep the connector's own retries short so throttling reaches Prometheus.
        "--max-write-retries=2".to_string(),
    ];
    let mut connector = Connector::start("connector-1", port, &args, None, d).await;

    let a_port = free_port();
    let config = format!(
        r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: ["{exporter}"]
remote_write:
  - url: "http://127.0.0.1:{port}/write"
    basic_auth:
      username: {ACCESS_KEY}
      password: {SECRET_KEY}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
        exporter = exporter.addr
    );
    let a = Prometheus::start(&prom, "prometheus-a", a_port, &config, d).await;

    tokio::time::sleep(Duration::from_secs(6)).await;
    // 1. The connector dies without warning; Prometheus keeps scraping and retrying.
    connector.proc.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    connector = Connector::start("connector-2", port, &args, None, d).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // 2. Timestream throttles every call for a while.
    store.faults().set(timestream_local::FaultOptions {
        throttle_rate: 1.0,
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    store.faults().clear();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let t_end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor()
        - 1.0;
    a.wait_remote_write_past(t_end).await;

    // Every exporter series is finite, so everything A holds must be in the store.
    // A range selector returns every raw sample A holds for the exporter.
    let raw = a.instant(r#"{job="exporter"}[10m]"#, t_end).await;
    let in_prometheus: u64 = raw["result"]
        .as_array()
        .expect("a matrix")
        .iter()
        .map(|s| s["values"].as_array().map_or(0, |v| v.len() as u64))
        .sum();
    let client = query_client(&store.url()).await;
    let in_store = count_rows(
        &client,
        &format!(
            r#"SELECT count(*) FROM "{DATABASE}"."{TABLE}" WHERE "job" = 'exporter' AND time <= from_milliseconds({})"#,
            (t_end * 1000.0) as i64
        ),
    )
    .await;
    assert!(
        in_prometheus > 100,
        "too little data to prove anything: {in_prometheus}"
    );
    assert_eq!(
        in_store, in_prometheus,
        "samples stored in Timestream vs scraped by Prometheus up to {t_end}"
    );
    // The throttled window really produced retries on Prometheus' side.
    let retried = a
        .own_metric_max("prometheus_remote_storage_samples_retried_total")
        .await
        .unwrap_or(0.0);
    let failed_sends = a
        .own_metric_max("prometheus_remote_storage_samples_failed_total")
        .await
        .unwrap_or(0.0);
    assert_eq!(
        failed_sends, 0.0,
        "Prometheus dropped samples as unrecoverable"
    );
    assert!(retried > 0.0, "the faults never made Prometheus retry");
    drop(connector);
}
