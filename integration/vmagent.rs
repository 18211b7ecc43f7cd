//! vmagent (VictoriaMetrics' agent, Debian unstable) scrapes the awkward exporter every
//! second and remote-writes to the connector with basic auth. vmagent first sends its
//! own protocol (zstd-compressed, `X-VictoriaMetrics-Remote-Write-Version: 1`); the
//! connector must refuse that with 415 (a 2xx would lose the data silently), after which
//! vmagent re-sends the same block as snappy remote write 1.0 and keeps to it. Every
//! sample the exporter served must be in the store, exactly once: none lost to the
//! protocol switch, none doubled by the re-send.

use std::time::Duration;

use crate::harness::clients::{self, Client};
use crate::harness::exporter::Exporter;
use crate::harness::*;

/// Every metric name the exporter serves (vmagent adds `up` and `scrape_*` series of
/// its own, which the exporter did not serve).
const EXPORTER_NAMES: &str = "'it_gauge', 'it_wave', 'it_requests_total', \
     'it_latency_seconds_bucket', 'it_latency_seconds_sum', 'it_latency_seconds_count'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmagent_falls_back_from_zstd_to_snappy_and_loses_nothing() {
    let Some(vmagent) = clients::require(Client::Vmagent, "vmagent remote write") else {
        return;
    };
    let dir = TestDir::new("vmagent");
    let d = dir.path();
    let exporter = Exporter::start().await;

    let store_port = free_port();
    let args = local_store_args(d, store_port, &["--log.level=debug"]);
    let connector = Connector::start("connector", free_port(), &args, None, d).await;

    let scrape = d.join("vmagent-scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: exporter\n    \
             static_configs:\n      - targets: [\"{}\"]\n",
            exporter.addr
        ),
    )
    .unwrap();
    let vm_port = free_port();
    let vmagent_args = vec![
        format!("-promscrape.config={}", scrape.display()),
        format!("-remoteWrite.url={}", connector.url("/write")),
        format!("-remoteWrite.basicAuth.username={ACCESS_KEY}"),
        format!("-remoteWrite.basicAuth.password={SECRET_KEY}"),
        format!(
            "-remoteWrite.tmpDataPath={}",
            d.join("vmagent-data").display()
        ),
        "-remoteWrite.flushInterval=1s".to_string(),
        format!("-httpListenAddr=127.0.0.1:{vm_port}"),
        "-loggerLevel=INFO".to_string(),
    ];
    let mut agent = Proc::spawn("vmagent", &vmagent, &vmagent_args, d);
    let agent_metrics = format!("http://127.0.0.1:{vm_port}/metrics");

    // Let vmagent scrape and ship for a while, then freeze what the exporter served.
    tokio::time::sleep(Duration::from_secs(12)).await;
    exporter.stop();
    let served = exporter.served_samples();
    assert!(
        exporter.scrapes() >= 8,
        "vmagent scraped only {} times; log: {}",
        exporter.scrapes(),
        agent.log.display()
    );

    let store = query_client(&format!("http://127.0.0.1:{store_port}")).await;
    let sql = format!(
        r#"SELECT count(*) FROM "{DATABASE}"."{TABLE}" WHERE measure_name IN ({EXPORTER_NAMES})"#
    );
    // vmagent flushes every second; give it time to ship the last blocks.
    for _ in 0..150 {
        if count_rows(&store, &sql).await >= served {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A little longer: anything shipped twice would show up as more rows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = count_rows(&store, &sql).await;

    let page = get_text(&agent_metrics, None).await;
    let connector_page = get_text(&connector.url("/metrics"), None).await;
    agent.kill();
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();

    assert_eq!(
        stored,
        served,
        "samples stored vs served by the exporter ({} scrapes)",
        exporter.scrapes()
    );
    // The protocol probe happened and was refused by the connector with 415 ...
    let refused = metric_sum(
        &connector_page,
        "timestream_connector_http_requests_total",
        &[r#"handler="/write""#, r#"code="415""#],
    );
    let accepted = metric_sum(
        &connector_page,
        "timestream_connector_http_requests_total",
        &[r#"handler="/write""#, r#"code="200""#],
    ) + metric_sum(
        &connector_page,
        "timestream_connector_http_requests_total",
        &[r#"handler="/write""#, r#"code="204""#],
    );
    assert!(
        refused >= 1.0,
        "the connector never answered vmagent's zstd body with 415"
    );
    assert!(accepted >= 1.0, "no write was accepted");
    // ... and vmagent saw it, said so, and switched to Prometheus' protocol.
    assert!(
        metric_sum(
            &page,
            "vmagent_remotewrite_requests_total",
            &[r#"status_code="415""#]
        ) >= 1.0,
        "vmagent did not count a 415"
    );
    assert!(
        log.contains("Downgrading protocol from VictoriaMetrics to Prometheus remote write"),
        "vmagent did not downgrade its protocol; log: {}",
        agent.log.display()
    );
    // vmagent dropped nothing on its side either.
    for dropped in [
        "vmagent_remotewrite_packets_dropped_total",
        "vmagent_remotewrite_samples_dropped_total",
    ] {
        assert_eq!(metric_sum(&page, dropped, &[]), 0.0, "{dropped}");
    }
    clients::note(&format!(
        "vmagent: {served} samples served in {} scrapes, {stored} stored; \
         {refused} zstd request(s) refused with 415, {accepted} snappy accepted",
        exporter.scrapes()
    ));
    drop(connector);
}
