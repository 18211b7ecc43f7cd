//! Criterion benchmark of the CPU part of the remote-write path per sample: snappy + protobuf
//! decode (the server's zero-copy view; prost's owned decode for comparison), translation
//! into a batch plan, and building the SDK records of every batch, on a
//! node_exporter-like request (2,500 series × 8 labels, one sample each, as Prometheus
//! sends with max_samples_per_send raised to 2,500).
//!
//! The same request as a remote-write 2.0 body (symbols table, refs; laid out as
//! Prometheus 3.x lays it out) is decoded and planned too, to compare the protocols per
//! sample: `decode_plan` (1.0) vs `decode_plan_v2`.
//!
//! Run: `cargo bench -p timestream-prometheus-connector --bench write_path`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use timestream_prometheus_connector::config::DestinationConfig;
use timestream_prometheus_connector::histogram;
use timestream_prometheus_connector::remote::codec::{
    decode_write_request, decode_write_request_v2, decode_write_request_view, decompress,
    encode_write_request, encode_write_request_v2,
};
use timestream_prometheus_connector::remote::pb::histogram::{Count, ZeroCount};
use timestream_prometheus_connector::remote::pb::{
    BucketSpan, Histogram, Label, Sample, TimeSeries, WriteRequest,
};
use timestream_prometheus_connector::timestream::writer::build_records;
use timestream_prometheus_connector::write::{self, PlanOptions, RecordValue};

const SERIES: usize = 2_500;

/// node_exporter-like: a few hosts, many metric families, per-family label shapes.
fn payload() -> WriteRequest {
    let families: [(&str, &str, &[&str]); 6] = [
        (
            "node_cpu_seconds_total",
            "cpu",
            &["0", "1", "2", "3", "4", "5", "6", "7"],
        ),
        (
            "node_network_receive_bytes_total",
            "device",
            &["eth0", "eth1", "lo", "docker0"],
        ),
        (
            "node_filesystem_avail_bytes",
            "mountpoint",
            &["/", "/boot", "/var", "/home"],
        ),
        (
            "node_disk_io_time_seconds_total",
            "device",
            &["nvme0n1", "nvme1n1", "sda"],
        ),
        ("node_memory_MemAvailable_bytes", "kind", &["total"]),
        (
            "node_scrape_collector_duration_seconds",
            "collector",
            &["cpu", "diskstats", "filesystem", "meminfo", "netdev"],
        ),
    ];
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let t = 1_700_000_000_000i64;
    let mut timeseries = Vec::with_capacity(SERIES);
    let mut i = 0usize;
    'outer: for host in 0.. {
        let instance = format!(
            "ip-10-0-{}-{}.eu-west-1.compute.internal:9100",
            host / 250,
            host % 250
        );
        for (name, key, values) in families {
            for v in values {
                for mode in if name == "node_cpu_seconds_total" {
                    &modes[..]
                } else {
                    &modes[..1]
                } {
                    if i == SERIES {
                        break 'outer;
                    }
                    let mut labels = vec![
                        ("__name__", name.to_string()),
                        ("cluster", "prod-eu-1".to_string()),
                        ("env", "production".to_string()),
                        ("instance", instance.clone()),
                        ("job", "node-exporter".to_string()),
                        (key, v.to_string()),
                        ("mode", mode.to_string()),
                        ("region", "eu-west-1".to_string()),
                    ];
                    labels.sort();
                    timeseries.push(TimeSeries {
                        labels: labels
                            .into_iter()
                            .map(|(n, v)| Label {
                                name: n.to_string(),
                                value: v,
                            })
                            .collect(),
                        samples: vec![Sample {
                            value: (i as f64) * 1234.567 + 0.125,
                            timestamp: t + (host as i64) * 37,
                        }],
                        ..Default::default()
                    });
                    i += 1;
                }
            }
        }
    }
    WriteRequest {
        timeseries,
        ..Default::default()
    }
}

/// 2,500 series of one native histogram each (client_golang-like: schema 3, 12 buckets in 2
/// spans, the example of documentation/native-histograms.md), as Prometheus 3.x sends them.
fn histogram_payload() -> WriteRequest {
    let t = 1_700_000_000_000i64;
    let timeseries = (0..SERIES)
        .map(|i| {
            let label = |n: &str, v: String| Label {
                name: n.into(),
                value: v,
            };
            let n = i as i64;
            TimeSeries {
                labels: vec![
                    label(
                        "__name__",
                        format!("http_request_duration_seconds_{}", i % 10),
                    ),
                    label("handler", format!("/api/v1/h{}", i % 50)),
                    label("instance", format!("10.0.{}.{}:9100", i / 250, i % 250)),
                    label("job", "api".into()),
                    label("method", ["GET", "POST"][i % 2].into()),
                ],
                histograms: vec![Histogram {
                    count: Some(Count::CountInt(1000 + i as u64)),
                    sum: 123.456 + n as f64,
                    schema: 3,
                    zero_threshold: 2.938735877055719e-39,
                    zero_count: Some(ZeroCount::ZeroCountInt(2)),
                    positive_spans: vec![
                        BucketSpan {
                            offset: -5,
                            length: 8,
                        },
                        BucketSpan {
                            offset: 2,
                            length: 4,
                        },
                    ],
                    positive_deltas: vec![3, 10, 25, 40, 12, -30, -20, -5, 1, -8, -2, 1 + n % 3],
                    timestamp: t + n,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let req = payload();
    let body = encode_write_request(&req);
    let dest = DestinationConfig {
        default_database: "prometheusDatabase".into(),
        default_table: "prometheusMetricsTable".into(),
        database_label: None,
        table_label: None,
    };
    let opts = PlanOptions {
        destination: &dest,
        fail_on_long_label: false,
        fail_on_invalid_sample_value: false,
        special_values: true,
        native_histograms: true,
    };
    let samples = req
        .timeseries
        .iter()
        .map(|t| t.samples.len())
        .sum::<usize>() as u64;

    let body_v2 = encode_write_request_v2(&req);
    eprintln!(
        "1.0 body: {} bytes ({} decompressed); 2.0 body: {} bytes ({} decompressed)",
        body.len(),
        decompress(&body, 64 << 20).unwrap().len(),
        body_v2.len(),
        decompress(&body_v2, 64 << 20).unwrap().len()
    );

    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(samples));
    // What the server does: decompress, then the borrowed view.
    g.bench_function("decode", |b| {
        b.iter(|| {
            let raw = decompress(&body, 64 << 20).unwrap();
            decode_write_request_view(&raw).unwrap().sample_count()
        })
    });
    g.bench_function("decompress", |b| {
        b.iter(|| decompress(&body, 64 << 20).unwrap().len())
    });
    g.bench_function("decode_prost", |b| {
        b.iter(|| decode_write_request(&body, 64 << 20).unwrap())
    });
    let raw = decompress(&body, 64 << 20).unwrap();
    let view = decode_write_request_view(&raw).unwrap();
    g.bench_function("plan", |b| {
        b.iter(|| write::plan(&view, &opts).unwrap().record_count())
    });
    g.bench_function("build_records", |b| {
        let plan = write::plan(&view, &opts).unwrap();
        b.iter(|| {
            let mut n = 0;
            for batch in &plan.batches {
                n += build_records(&plan, batch, true).1.len();
            }
            n
        })
    });
    g.bench_function("decode_plan_build", |b| {
        b.iter(|| {
            let raw = decompress(&body, 64 << 20).unwrap();
            let req = decode_write_request_view(&raw).unwrap();
            let plan = write::plan(&req, &opts).unwrap();
            let mut n = 0;
            for batch in &plan.batches {
                n += build_records(&plan, batch, true).1.len();
            }
            n
        })
    });
    // Remote write 2.0 against 1.0, same data: decode alone, then decode + plan.
    g.bench_function("decode_v2", |b| {
        b.iter(|| {
            let raw = decompress(&body_v2, 64 << 20).unwrap();
            decode_write_request_v2(&raw).unwrap().view.sample_count()
        })
    });
    g.bench_function("decode_plan", |b| {
        b.iter(|| {
            let raw = decompress(&body, 64 << 20).unwrap();
            let req = decode_write_request_view(&raw).unwrap();
            write::plan(&req, &opts).unwrap().record_count()
        })
    });
    g.bench_function("decode_plan_v2", |b| {
        b.iter(|| {
            let raw = decompress(&body_v2, 64 << 20).unwrap();
            let req = decode_write_request_v2(&raw).unwrap();
            write::plan(&req.view, &opts).unwrap().record_count()
        })
    });
    g.finish();

    // Native histograms: decode, plan (each histogram parsed for its size) and build the
    // records (each histogram's stored text), per histogram sample.
    let hreq = histogram_payload();
    let hbody = encode_write_request(&hreq);
    let hraw = decompress(&hbody, 64 << 20).unwrap();
    {
        let view = decode_write_request_view(&hraw).unwrap();
        let plan = write::plan(&view, &opts).unwrap();
        let bytes: usize = plan
            .records()
            .map(|p| {
                let RecordValue::Histogram(h) = p.value else {
                    unreachable!()
                };
                8 + p.measure_name.len()
                    + p.dims
                        .iter()
                        .map(|d| d.name.len() + d.value.len())
                        .sum::<usize>()
                    + histogram::stored_len(&histogram::parse(h))
            })
            .sum();
        eprintln!(
            "native histograms: {} records, {:.1} bytes written per histogram sample (Timestream's metering), body {} bytes ({} decompressed)",
            plan.record_count(),
            bytes as f64 / plan.record_count() as f64,
            hbody.len(),
            hraw.len()
        );
    }
    let mut g = c.benchmark_group("remote_write_histograms");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("decode_plan_build", |b| {
        b.iter(|| {
            let raw = decompress(&hbody, 64 << 20).unwrap();
            let req = decode_write_request_view(&raw).unwrap();
            let plan = write::plan(&req, &opts).unwrap();
            let mut n = 0;
            for batch in &plan.batches {
                n += build_records(&plan, batch, true).1.len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
