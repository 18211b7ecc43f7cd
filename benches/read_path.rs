//! Criterion benchmarks of the CPU part of the remote-read path:
//! - rows → series: Timestream SDK pages of 1,000 rows (5 dimensions, some sparse,
//!   Timestream's time and double renderings), handed over as the read service gets them
//!   (`Page::each_row` of `timestream::query::TimestreamPage`: borrowed cells, no copy) and
//!   grouped by the hash-indexed `Grouper` (SAMPLES) and by the `OrderedGrouper`
//!   (streamed), in rows per second;
//! - series → XOR chunks → frames (streamed encoding), in samples per second;
//! - matchers → SQL (planning and rendering with a regex translation).
//!
//! The two grouper benchmarks report this thread's CPU time (from
//! /proc/thread-self/schedstat), not wall time, so that other processes sharing
//! the machine do not inflate them; the others report wall time.
//!
//! Run: `cargo bench -p timestream-prometheus-connector --bench read_path`

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_timestreamquery::operation::query::QueryOutput;
use aws_sdk_timestreamquery::types::{ColumnInfo, Datum, Row};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use timestream_prometheus_connector::read::assemble::{
    compare_labels, Grouper, Layout, OrderedGrouper,
};
use timestream_prometheus_connector::read::sql::{plan, render, Plan, PlanOptions};
use timestream_prometheus_connector::read::storage::Page;
use timestream_prometheus_connector::remote::chunked::FrameBuilder;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type, Label, LabelMatcher, Query, Sample,
};
use timestream_prometheus_connector::timestream::query::TimestreamPage;

const SERIES: usize = 10_000;
const SAMPLES: usize = 100;

const COLUMNS: [&str; 8] = [
    "instance",
    "job",
    "cpu",
    "mode",
    "region",
    "measure_name",
    "time",
    "measure_value::double",
];

fn timestamp(ms: i64) -> String {
    // 2023-11-14 22:13:20 UTC + ms, rendered as Timestream does.
    let base = 1_700_000_000_000i64;
    let t = ms - base;
    let secs = 20 + t / 1000;
    format!(
        "2023-11-14 {:02}:{:02}:{:02}.{:03}000000",
        22 + secs / 3600,
        (13 + secs / 60) % 60,
        secs % 60,
        t % 1000
    )
}

/// 1,000,000 rows: 10,000 series × 100 samples, in arrival order series by series
/// interleaved (as an unordered query returns them) or ordered (for the streamed path).
fn rows(interleaved: bool) -> Vec<Row> {
    let d = |s: &str| Datum::builder().scalar_value(s).build();
    let null = || Datum::builder().null_value(true).build();
    let mut out = Vec::with_capacity(SERIES * SAMPLES);
    let base = 1_700_000_000_000i64;
    let mut push = |s: usize, k: usize| {
        let t = base + (k as i64) * 15_000;
        let v = (s * 31 + k) as f64 * 0.37;
        out.push(
            Row::builder()
                .set_data(Some(vec![
                    d(&format!("host-{:04}.example.internal:9100", s / 40)),
                    d("node"),
                    d(&format!("{}", s % 8)),
                    d(["idle", "user", "system", "iowait", "irq"][s % 5]),
                    if s.is_multiple_of(3) {
                        null()
                    } else {
                        d("eu-west-1")
                    },
                    d(&format!("node_cpu_seconds_total_{}", s / 400)),
                    d(&timestamp(t)),
                    d(&format!("{v:?}").replace('e', "E")),
                ]))
                .build()
                .unwrap(),
        );
    };
    if interleaved {
        for k in 0..SAMPLES {
            for s in 0..SERIES {
                push(s, k);
            }
        }
    } else {
        // Series in Prometheus label-set order, as the streamed query's ORDER BY returns them.
        let labels = |s: usize| -> Vec<Label> {
            let mut l = vec![
                ("__name__", format!("node_cpu_seconds_total_{}", s / 400)),
                ("cpu", format!("{}", s % 8)),
                (
                    "instance",
                    format!("host-{:04}.example.internal:9100", s / 40),
                ),
                ("job", "node".to_string()),
                (
                    "mode",
                    ["idle", "user", "system", "iowait", "irq"][s % 5].to_string(),
                ),
            ];
            if !s.is_multiple_of(3) {
                l.push(("region", "eu-west-1".to_string()));
            }
            l.into_iter()
                .map(|(n, v)| Label {
                    name: n.into(),
                    value: v,
                })
                .collect()
        };
        let mut order: Vec<(Vec<Label>, usize)> = (0..SERIES).map(|s| (labels(s), s)).collect();
        order.sort_by(|a, b| compare_labels(&a.0, &b.0));
        for (_, s) in order {
            for k in 0..SAMPLES {
                push(s, k);
            }
        }
    }
    out
}

/// Rows on one page (Timestream pages hold up to 1 MB; these rows are ~150 bytes).
const PAGE_ROWS: usize = 1000;

/// `rows` as the SDK's pages.
fn pages(rows: Vec<Row>) -> Vec<TimestreamPage> {
    let columns: Vec<ColumnInfo> = COLUMNS
        .iter()
        .map(|c| ColumnInfo::builder().name(*c).build())
        .collect();
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let page: Vec<Row> = rows.by_ref().take(PAGE_ROWS).collect();
        let q = QueryOutput::builder()
            .query_id("bench")
            .set_rows(Some(page))
            .set_column_info(Some(columns.clone()))
            .build()
            .unwrap();
        out.push(TimestreamPage::new(q));
    }
    out
}

/// CPU time this thread has run, in ns (Linux schedstat; 0 where unavailable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `f` `iters` times and returns the thread CPU time it took.
fn cpu_time<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let t0 = thread_cpu_ns();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    Duration::from_nanos(thread_cpu_ns() - t0)
}

fn rows_to_series(c: &mut Criterion) {
    let mut g = c.benchmark_group("rows_to_series");
    g.sample_size(10);
    g.throughput(Throughput::Elements((SERIES * SAMPLES) as u64));
    let unordered = pages(rows(true));
    g.bench_function("grouper_1M_rows", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let mut grouper = Grouper::new(Layout::new(unordered[0].columns()).unwrap());
                for p in &unordered {
                    p.each_row(|cells| grouper.push(cells)).unwrap();
                }
                let series = grouper.finish();
                assert_eq!(series.len(), SERIES);
                series
            })
        })
    });
    drop(unordered);
    let ordered = pages(rows(false));
    g.bench_function("ordered_grouper_1M_rows", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let mut grouper =
                    OrderedGrouper::new(Layout::new(ordered[0].columns()).unwrap(), 960);
                let mut n = 0usize;
                for p in &ordered {
                    p.each_row(|cells| {
                        n += grouper.push(cells)?.map_or(0, |s| s.samples.len());
                        Ok(())
                    })
                    .unwrap();
                }
                n += grouper.finish().map_or(0, |s| s.samples.len());
                assert_eq!(n, SERIES * SAMPLES);
            })
        })
    });
    g.finish();
}

fn xor_frames(c: &mut Criterion) {
    let labels: Vec<Vec<Label>> = (0..1000)
        .map(|s| {
            vec![
                Label {
                    name: "__name__".into(),
                    value: "node_cpu_seconds_total".into(),
                },
                Label {
                    name: "instance".into(),
                    value: format!("host-{s:04}:9100"),
                },
            ]
        })
        .collect();
    let samples: Vec<Sample> = (0..SAMPLES)
        .map(|k| Sample {
            timestamp: 1_700_000_000_000 + k as i64 * 15_000,
            value: k as f64 * 0.37 + 1e6,
        })
        .collect();
    let mut g = c.benchmark_group("series_to_frames");
    g.throughput(Throughput::Elements((labels.len() * SAMPLES) as u64));
    g.bench_function("xor_chunks_and_frames_100k_samples", |b| {
        b.iter(|| {
            let mut fb = FrameBuilder::new(0);
            let mut bytes = 0usize;
            for l in &labels {
                bytes += fb.push(l, &samples).iter().map(|f| f.len()).sum::<usize>();
            }
            bytes + fb.flush().map_or(0, |f| f.len())
        })
    });
    g.finish();
}

fn matchers_to_sql(c: &mut Criterion) {
    let known: BTreeSet<String> = COLUMNS[..5].iter().map(|s| s.to_string()).collect();
    let m = |t: Type, n: &str, v: &str| LabelMatcher {
        r#type: t as i32,
        name: n.into(),
        value: v.into(),
    };
    let q = Query {
        start_timestamp_ms: 1_700_000_000_000,
        end_timestamp_ms: 1_700_003_600_000,
        matchers: vec![
            m(Type::Eq, "__name__", "node_cpu_seconds_total"),
            m(
                Type::Re,
                "instance",
                "host-(00[0-9]{2}|1[0-9]+)\\.example\\.internal:9100",
            ),
            m(Type::Nre, "mode", "(?i)idle|iowait"),
            m(Type::Neq, "region", "us-east-1"),
        ],
        hints: None,
    };
    c.bench_function("matchers_to_sql", |b| {
        b.iter(
            || match plan(&q, "db", "table", &known, &PlanOptions::default()).unwrap() {
                Plan::Select(s) => render(&s),
                Plan::Empty => unreachable!(),
            },
        )
    });
}

criterion_group!(benches, rows_to_series, xor_frames, matchers_to_sql);
criterion_main!(benches);
