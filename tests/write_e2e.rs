//! Remote write end to end: connector over HTTP → real SDK → timestream-local, read back
//! with the real timestreamquery client.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use common::*;
use timestream_local::FaultOptions;

fn parse_stored_value(row: &BTreeMap<String, String>) -> f64 {
    row["measure_value::double"]
        .parse()
        .expect("stored double parses")
}

#[tokio::test]
async fn values_and_labels_are_stored_bit_for_bit() {
    let env = start().await;
    let t0 = now_ms() - 60_000;
    let values = [
        5e-324,
        -0.0,
        0.1,
        1e300,
        9007199254740993.0, // 2^53 + 1 (rounds to 2^53 as f64; must come back as that f64)
        -1.7976931348623157e308,
        1.0 / 3.0,
        123456.789e-20,
        0.0,
    ];
    let samples: Vec<(f64, i64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, t0 + i as i64))
        .collect();
    let sent: Vec<(f64, i64)> = samples
        .iter()
        .map(|&(v, t)| {
            (
                if v.to_bits() == (-0.0f64).to_bits() {
                    7.25e-300
                } else {
                    v
                },
                t,
            )
        })
        .collect();
    let tricky = [
        "unicodé ✓ 日本 🙂",
        "say \"hi\"",
        r"back\slash\\",
        "line1\nline2\r\n\ttab",
        "it's",
        "=,{}",
    ];
    let mut ts = vec![series(
        &[("__name__", "exact_values"), ("job", "bits")],
        &sent,
    )];
    for (i, v) in tricky.iter().enumerate() {
        let idx = i.to_string();
        ts.push(series(
            &[
                ("__name__", "tricky_labels"),
                ("idx", &idx),
                ("text", v),
                ("empty", ""),
            ],
            &[(i as f64, t0)],
        ));
    }
    // prost (like Prometheus' gogo encoder) omits a double equal to 0, so -0.0 would never be
    // on the wire; patch its bits into the encoded message to test the receiving side.
    let mut raw = prost::Message::encode_to_vec(&request(ts));
    let sentinel = 7.25e-300f64.to_le_bytes();
    let pos = raw
        .windows(9)
        .position(|w| w[0] == 0x09 && w[1..] == sentinel)
        .expect("sentinel encoded");
    raw[pos + 1..pos + 9].copy_from_slice(&(-0.0f64).to_le_bytes());
    let body = timestream_prometheus_connector::remote::codec::compress(&raw);
    let (status, body) = env.post_raw("/write", body, Some((AKID, SECRET))).await;
    assert_eq!(status, 200, "{body}");

    let rows = query_rows(
        &env.store.url(),
        &format!(
            r#"SELECT * FROM "{DB}"."{TABLE}" WHERE measure_name = 'exact_values' ORDER BY time"#
        ),
    )
    .await;
    assert_eq!(rows.len(), values.len());
    for (row, (want, _)) in rows.iter().zip(&samples) {
        let got = parse_stored_value(row);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{want:e} came back as {}",
            row["measure_value::double"]
        );
        assert_eq!(row["job"], "bits");
    }
    // Millisecond timestamps survive: distinct and in order.
    let times: BTreeSet<_> = rows.iter().map(|r| r["time"].clone()).collect();
    assert_eq!(times.len(), values.len());

    let rows = query_rows(
        &env.store.url(),
        &format!(r#"SELECT * FROM "{DB}"."{TABLE}" WHERE measure_name = 'tricky_labels'"#),
    )
    .await;
    assert_eq!(rows.len(), tricky.len());
    for row in &rows {
        let idx: usize = row["idx"].parse().unwrap();
        assert_eq!(row["text"], tricky[idx]);
        assert_eq!(parse_stored_value(row), idx as f64);
        assert!(
            !row.contains_key("empty"),
            "empty label must not become a dimension: {row:?}"
        );
    }
    env.shutdown().await;
}

/// node_exporter-like series: `n` series over a few metric names, 8 labels each.
fn node_like(
    n: usize,
    t: i64,
    instance: &str,
) -> Vec<timestream_prometheus_connector::remote::pb::TimeSeries> {
    let names = [
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
        "node_filesystem_avail_bytes",
    ];
    (0..n)
        .map(|i| {
            let name = names[i % names.len()];
            let cpu = (i / 8).to_string();
            let mode = [
                "idle", "user", "system", "iowait", "irq", "nice", "softirq", "steal",
            ][i % 8];
            let dev = format!("dev{}", i % 5);
            series(
                &[
                    ("__name__", name),
                    ("cpu", &cpu),
                    ("device", &dev),
                    ("env", "prod"),
                    ("instance", instance),
                    ("job", "node"),
                    ("mode", mode),
                    ("region", "eu-west-1"),
                ],
                &[(i as f64 * 1.5, t), (i as f64 * 1.5 + 1.0, t + 15_000)],
            )
        })
        .collect()
}

#[tokio::test]
async fn large_requests_are_split_and_sent_concurrently() {
    let env = start_with(EnvOptions {
        args: vec![
            "--max-write-retries=2".into(),
            "--write.concurrency=16".into(),
        ],
        ..Default::default()
    })
    .await;
    let t = now_ms() - 120_000;
    let ts = node_like(1_200, t, "host-a:9100"); // 2,400 samples → ≥24 calls
    let expected: usize = ts.iter().map(|s| s.samples.len()).sum();
    // 150 ms per call: sequentially ≥ 3.6 s; with 16 in flight about 2 rounds.
    env.faults().set(FaultOptions {
        latency_ms: 150,
        ..Default::default()
    });
    let started = Instant::now();
    let (status, body) = env.write(&request(ts.clone())).await;
    let took = started.elapsed();
    env.faults().clear();
    assert_eq!(status, 200, "{body}");
    // Concurrency seen at the store, not inferred from wall time.
    let most = env.faults().max_in_flight("WriteRecords");
    assert!(
        (2..=16).contains(&most),
        "took {took:?}; at most 16 calls may overlap and several must, saw {most}"
    );

    let m = env.metrics_text().await;
    let calls = metric_value(&m, "timestream_connector_write_requests_total");
    assert!(
        calls >= (expected as f64 / 100.0).ceil(),
        "{calls} calls for {expected} samples"
    );
    assert_eq!(
        metric_value(&m, "timestream_connector_records_written_total"),
        expected as f64
    );
    // Every batch within the API limit.
    assert_eq!(
        metric_value(
            &m,
            "timestream_connector_write_batch_records_bucket{le=\"100\"}"
        ),
        metric_value(&m, "timestream_connector_write_batch_records_count")
    );
    let rows = env.rows(DB, TABLE).await;
    assert_eq!(rows.len(), expected);
    // Each stored row has all 7 dimensions of its series.
    for r in rows.iter().take(50) {
        for d in ["cpu", "device", "env", "instance", "job", "mode", "region"] {
            assert!(r.contains_key(d), "{r:?}");
        }
    }
    env.shutdown().await;
}

/// A body of more than 1 MiB decompressed is decoded and planned with the worker handed
/// over (`block_in_place`, multi-threaded runtime as in the server): every sample stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_one_mib_are_decoded_off_the_worker_and_fully_stored() {
    let env = start().await;
    let t = now_ms() - 120_000;
    let ts = node_like(6_000, t, "host-big:9100");
    let expected: usize = ts.iter().map(|s| s.samples.len()).sum();
    let raw = prost::Message::encode_to_vec(&request(ts));
    assert!(
        raw.len() >= timestream_prometheus_connector::http::limits::BLOCKING_DECODE_BYTES,
        "fixture of {} bytes must take the large-body path",
        raw.len()
    );
    let (status, body) = env
        .write(&request(node_like(6_000, t, "host-big:9100")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.rows(DB, TABLE).await.len(), expected);
    env.shutdown().await;
}

fn canonical(rows: Vec<BTreeMap<String, String>>) -> BTreeSet<Vec<(String, String)>> {
    rows.into_iter().map(|r| r.into_iter().collect()).collect()
}

#[tokio::test]
async fn common_attributes_store_the_same_rows_as_plain_records() {
    let t = now_ms() - 60_000;
    let mut ts = node_like(300, t, "host-b:9100");
    // Mixed names, times and label sets in one request.
    ts.push(series(
        &[("__name__", "up"), ("job", "x")],
        &[(1.0, t + 1), (0.0, t + 2)],
    ));
    ts.push(series(&[("__name__", "solo")], &[(42.0, t + 3)]));
    let req = request(ts);

    let mut results = Vec::new();
    for common in ["true", "false"] {
        let env = start_with(EnvOptions {
            args: vec![format!("--write.common-attributes={common}")],
            ..Default::default()
        })
        .await;
        let (status, body) = env.write(&req).await;
        assert_eq!(status, 200, "common={common}: {body}");
        results.push(canonical(env.rows(DB, TABLE).await));
        env.shutdown().await;
    }
    assert_eq!(results[0].len(), 603);
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn label_routing_picks_database_and_table() {
    let env = start_with(EnvOptions {
        args: vec![
            "--database-label=tsdb".into(),
            "--table-label=tstable".into(),
        ],
        tables: vec![(DB.into(), TABLE.into()), ("other".into(), "tbl2".into())],
        ..Default::default()
    })
    .await;
    let t = now_ms() - 30_000;
    let req = request(vec![
        series(
            &[
                ("__name__", "routed"),
                ("k", "v"),
                ("tsdb", "other"),
                ("tstable", "tbl2"),
            ],
            &[(1.0, t)],
        ),
        series(&[("__name__", "default"), ("k", "v")], &[(2.0, t)]),
    ]);
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 200, "{body}");
    let routed = env.rows("other", "tbl2").await;
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0]["measure_name"], "routed");
    assert!(!routed[0].contains_key("tsdb") && !routed[0].contains_key("tstable"));
    let default = env.rows(DB, TABLE).await;
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["measure_name"], "default");

    // A label naming a table that does not exist → 404 with the name in the body.
    let req = request(vec![series(
        &[("__name__", "m"), ("tsdb", "other"), ("tstable", "missing")],
        &[(1.0, t)],
    )]);
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("missing"), "{body}");
    env.shutdown().await;
}

#[tokio::test]
async fn skipped_samples_are_counted_and_the_rest_stored() {
    // The upstream behaviour for NaN/±Inf (special values on: tests/read_e2e.rs).
    let env = start_with(EnvOptions {
        args: vec![
            "--max-write-retries=2".into(),
            "--write.special-values=false".into(),
        ],
        ..EnvOptions::default()
    })
    .await;
    let t = now_ms() - 30_000;
    let long_label = "l".repeat(61);
    let req = request(vec![
        series(
            &[("__name__", "mixed")],
            &[
                (1.0, t),
                (f64::NAN, t + 1),
                (f64::from_bits(0x7ff0_0000_0000_0002), t + 2),
                (f64::INFINITY, t + 3),
                (2.0, t + 4),
            ],
        ),
        series(
            &[("__name__", "m"), (long_label.as_str(), "v")],
            &[(1.0, t)],
        ),
        series(&[("__name__", "m"), ("time", "v")], &[(1.0, t)]),
        series(&[("__name__", "empty_series")], &[]),
    ]);
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.rows(DB, TABLE).await.len(), 2);
    let m = env.metrics_text().await;
    assert_eq!(
        metric_value(&m, "timestream_connector_received_samples_total"),
        7.0
    );
    assert_eq!(
        metric_value(&m, "timestream_connector_ignored_samples_total"),
        5.0
    );
    for (reason, n) in [
        ("non_finite_value", 2.0),
        ("stale_marker", 1.0),
        ("long_label_name", 1.0),
        ("reserved_label_name", 1.0),
    ] {
        assert_eq!(
            metric_value(
                &m,
                &format!(
                    "timestream_connector_ignored_samples_by_reason_total{{reason=\"{reason}\"}}"
                )
            ),
            n,
            "{reason}"
        );
    }
    env.shutdown().await;
}
