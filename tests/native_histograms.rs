//! Native histograms (issue 16) end to end: written through /write into timestream-local with
//! the real SDK, read back through /read. Histograms are compared as prost's encoding of the
//! decoded message, so float fields compare bit for bit (NaN included).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use prost::Message;
use timestream_prometheus_connector::remote::pb::{
    histogram::{Count, ResetHint, ZeroCount},
    label_matcher::Type as T,
    read_request::ResponseType,
    BucketSpan, Histogram, LabelMatcher, Query, ReadRequest, ReadResponse, TimeSeries,
    WriteRequest,
};

fn by_name(name: &str, start: i64, end: i64) -> Query {
    Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers: vec![LabelMatcher {
            r#type: T::Eq as i32,
            name: "__name__".into(),
            value: name.into(),
        }],
        hints: None,
    }
}

/// POSTs a read; (content type, body decompressed when it is SAMPLES).
async fn post_read(
    env: &Env,
    queries: Vec<Query>,
    accepted: Vec<ResponseType>,
) -> (String, Vec<u8>) {
    let req = ReadRequest {
        queries,
        accepted_response_types: accepted.into_iter().map(|t| t as i32).collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let resp = env
        .http
        .post(format!("{}/read", env.url))
        .basic_auth(AKID, Some(SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    if ct == "application/x-protobuf" {
        (ct, snap::raw::Decoder::new().decompress_vec(&body).unwrap())
    } else {
        (ct, body)
    }
}

fn samples_response(body: &[u8]) -> Vec<TimeSeries> {
    ReadResponse::decode(body)
        .unwrap()
        .results
        .remove(0)
        .timeseries
}

fn bytes_of(hs: &[Histogram]) -> Vec<Vec<u8>> {
    hs.iter().map(|h| h.encode_to_vec()).collect()
}

fn spans(max: usize) -> impl Strategy<Value = Vec<BucketSpan>> {
    prop::collection::vec(
        (-5i32..5, 0u32..4).prop_map(|(offset, length)| BucketSpan { offset, length }),
        0..max,
    )
}

/// A valid histogram: integer (deltas) or float (absolute counts), exponential schema or
/// custom buckets (−53 with custom values); bucket counts follow the spans.
fn histogram() -> impl Strategy<Value = Histogram> {
    let float = any::<bool>();
    let schema = prop_oneof![(-4i32..=8), Just(-53)];
    let f = prop_oneof![
        any::<f64>(),
        (0.0f64..1e6),
        Just(f64::NAN),
        Just(f64::from_bits(0x7ff0_0000_0000_0002))
    ];
    (
        float,
        schema,
        (spans(4), spans(4)),
        (f.clone(), f.clone(), f.clone(), f),
        (any::<u64>(), any::<u64>()),
        0i32..4,
        prop::collection::vec(-50i64..50, 24),
    )
        .prop_map(
            |(float, schema, (pos, neg), (sum, zt, zc, cnt), (ci, zci), reset, pool)| {
                let n = |s: &[BucketSpan]| s.iter().map(|x| x.length as usize).sum::<usize>();
                let (np, nn) = (n(&pos), if schema == -53 { 0 } else { n(&neg) });
                let mut h = Histogram {
                    sum,
                    schema,
                    reset_hint: reset,
                    positive_spans: pos.clone(),
                    ..Default::default()
                };
                if schema == -53 {
                    // Custom buckets: no negative side, no zero bucket; bucket indices from 0
                    // and a bound for every bucket but the last (+Inf).
                    for s in &mut h.positive_spans {
                        s.offset = s.offset.abs();
                    }
                    let extent: i64 = h
                        .positive_spans
                        .iter()
                        .map(|s| i64::from(s.offset) + i64::from(s.length))
                        .sum();
                    h.custom_values = (0..extent.max(0) as usize)
                        .map(|i| i as f64 * 0.5 + pool[i % pool.len()] as f64 * 1e-3)
                        .collect();
                } else {
                    h.zero_threshold = zt.abs();
                    h.negative_spans = neg;
                }
                if float {
                    h.count = Some(Count::CountFloat(cnt));
                    h.zero_count = (schema != -53).then_some(ZeroCount::ZeroCountFloat(zc));
                    h.positive_counts = (0..np).map(|i| pool[i % 24].abs() as f64 + 0.25).collect();
                    h.negative_counts = (0..nn).map(|i| pool[(i + 7) % 24].abs() as f64).collect();
                } else {
                    h.count = Some(Count::CountInt(ci));
                    h.zero_count = (schema != -53).then_some(ZeroCount::ZeroCountInt(zci));
                    h.positive_deltas = (0..np).map(|i| pool[i % 24]).collect();
                    h.negative_deltas = (0..nn).map(|i| pool[(i + 3) % 24]).collect();
                }
                h
            },
        )
}

/// Property: any valid histogram (integer and float, random schema, spans, buckets, zero
/// bucket, reset hint) written through /write comes back through /read exactly, in
/// `TimeSeries.histograms`, next to the series' float samples.
#[test]
fn any_histogram_round_trips_exactly() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = rt.block_on(start());
    let t0 = now_ms() - 3_600_000;
    let case = AtomicUsize::new(0);
    let mut runner = TestRunner::new(PtConfig {
        cases: 24,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&prop::collection::vec(histogram(), 1..8), |hs| {
            let name = format!("hist{}", case.fetch_add(1, Ordering::Relaxed));
            let hs: Vec<Histogram> = hs
                .into_iter()
                .enumerate()
                .map(|(i, mut h)| {
                    h.timestamp = t0 + 10 * i as i64;
                    h
                })
                .collect();
            let mut ts = series(&[("__name__", &name), ("job", "h")], &[(1.5, t0 + 5)]);
            ts.histograms = hs.clone();
            rt.block_on(async {
                let (st, body) = env.write(&request(vec![ts])).await;
                prop_assert!(st < 300, "write {st}: {body}");
                let (ct, body) = post_read(&env, vec![by_name(&name, t0, t0 + 1000)], vec![]).await;
                prop_assert_eq!(ct, "application/x-protobuf");
                let got = samples_response(&body);
                prop_assert_eq!(got.len(), 1);
                prop_assert_eq!(got[0].samples.len(), 1);
                prop_assert_eq!(bytes_of(&got[0].histograms), bytes_of(&hs));
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(env.shutdown());
}

fn sample_histogram(t: i64) -> Histogram {
    Histogram {
        count: Some(Count::CountInt(6)),
        sum: 7.5,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: Some(ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![
            BucketSpan {
                offset: 0,
                length: 2,
            },
            BucketSpan {
                offset: 3,
                length: 1,
            },
        ],
        positive_deltas: vec![1, 1, -1],
        reset_hint: ResetHint::No as i32,
        timestamp: t,
        ..Default::default()
    }
}

/// Prometheus 3.x asks for [STREAMED_XOR_CHUNKS, SAMPLES]: a table that can hold histograms
/// answers SAMPLES with them; a client that accepts only streamed chunks gets the floats.
/// A table that never held a histogram still streams, special values included.
#[tokio::test]
async fn streamed_requests_that_accept_samples_get_histograms_as_samples() {
    let env = start_with(EnvOptions {
        tables: vec![(DB.into(), TABLE.into()), (DB.into(), "plain".into())],
        args: vec!["--max-write-retries=2".into(), "--table-label=tbl".into()],
        ..EnvOptions::default()
    })
    .await;
    let t0 = now_ms() - 600_000;
    let mut ts = series(&[("__name__", "lat"), ("job", "a")], &[(2.0, t0)]);
    ts.histograms = vec![sample_histogram(t0 + 1), sample_histogram(t0 + 2)];
    let plain = series(
        &[("__name__", "up"), ("job", "a"), ("tbl", "plain")],
        &[(1.0, t0), (f64::NAN, t0 + 1)],
    );
    let (st, body) = env.write(&request(vec![ts, plain])).await;
    assert_eq!(st, 200, "{body}");
    let both = vec![ResponseType::StreamedXorChunks, ResponseType::Samples];

    let (ct, body) = post_read(&env, vec![by_name("lat", t0 - 1, t0 + 10)], both.clone()).await;
    assert_eq!(ct, "application/x-protobuf", "fell back to SAMPLES");
    let got = samples_response(&body);
    assert_eq!(got.len(), 1);
    let names: Vec<&str> = got[0].labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["__name__", "job"],
        "the marker dimension is not a label"
    );
    assert_eq!(got[0].samples.len(), 1);
    assert_eq!(
        bytes_of(&got[0].histograms),
        bytes_of(&[sample_histogram(t0 + 1), sample_histogram(t0 + 2)])
    );

    let (ct, body) = post_read(
        &env,
        vec![by_name("lat", t0 - 1, t0 + 10)],
        vec![ResponseType::StreamedXorChunks],
    )
    .await;
    assert!(ct.starts_with("application/x-streamed-protobuf"), "{ct}");
    assert!(!body.is_empty(), "the float sample is streamed");

    let mut q = by_name("up", t0 - 1, t0 + 10);
    q.matchers.push(LabelMatcher {
        r#type: T::Eq as i32,
        name: "tbl".into(),
        value: "plain".into(),
    });
    let (ct, _) = post_read(&env, vec![q], both).await;
    assert!(
        ct.starts_with("application/x-streamed-protobuf"),
        "a table without histograms still streams: {ct}"
    );
    env.shutdown().await;
}

/// Oversized histograms are counted, never truncated; the flag off restores skipping; what
/// SQL users see is one VARCHAR row per histogram under `__native_histogram__`.
#[tokio::test]
async fn limits_flag_and_sql_view() {
    let env = start().await;
    let t0 = now_ms() - 600_000;
    let mut big = sample_histogram(t0 + 3);
    big.positive_spans = vec![BucketSpan {
        offset: 0,
        length: 1500,
    }];
    big.positive_deltas = vec![1; 1500];
    // (A float too; a table of histograms alone is read too, see
    // `tables_without_numbers_read_their_histograms_and_special_values`.)
    let mut ts = series(&[("__name__", "lat"), ("job", "a")], &[(3.0, t0)]);
    ts.histograms = vec![sample_histogram(t0 + 1), big];
    let (st, body) = env.write(&request(vec![ts])).await;
    assert_eq!(st, 200, "{body}");
    let m = env.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            "timestream_connector_ignored_samples_by_reason_total{reason=\"histogram_too_large\"}"
        ),
        1.0
    );
    let rows = query_rows(
        &env.store.url(),
        &format!(
            "SELECT \"__name__\", \"__histogram__\", measure_value::varchar FROM \"{DB}\".\"{TABLE}\" WHERE measure_name = '__native_histogram__'"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["__name__"], "lat");
    assert_eq!(rows[0]["__histogram__"], "native");
    let text = &rows[0]["measure_value::varchar"];
    assert!(text.starts_with('H'), "{text}");
    let (ct, body) = post_read(&env, vec![by_name("lat", t0, t0 + 10)], vec![]).await;
    assert_eq!(ct, "application/x-protobuf");
    let got = samples_response(&body);
    assert_eq!(
        bytes_of(&got[0].histograms),
        bytes_of(&[sample_histogram(t0 + 1)])
    );
    env.shutdown().await;

    let env = start_with(EnvOptions {
        args: vec!["--write.native-histograms=false".into()],
        ..EnvOptions::default()
    })
    .await;
    let mut ts = series(&[("__name__", "lat"), ("job", "a")], &[(1.0, t0)]);
    ts.histograms = vec![sample_histogram(t0 + 1)];
    let req: WriteRequest = request(vec![ts]);
    let (st, body) = env.write(&req).await;
    assert_eq!(st, 200, "{body}");
    let m = env.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            "timestream_connector_ignored_samples_by_reason_total{reason=\"native_histogram\"}"
        ),
        1.0
    );
    let (_, body) = post_read(&env, vec![by_name("lat", t0, t0 + 10)], vec![]).await;
    let got = samples_response(&body);
    assert_eq!(got.len(), 1, "{m}");
    assert!(got[0].histograms.is_empty());
    env.shutdown().await;
}

/// Tables that never got a number have no `measure_value::double` column: one that only got
/// histograms, one that got histograms and special values (stale markers, NaN, +Inf), and
/// one of each kind in one request. They read what they hold, bit for bit, and still do
/// after their first number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_numbers_read_their_histograms_and_special_values() {
    let env = start_with(EnvOptions {
        tables: vec![
            (DB.into(), TABLE.into()),
            (DB.into(), "hist".into()),
            (DB.into(), "mixed".into()),
        ],
        args: vec!["--max-write-retries=2".into(), "--table-label=tbl".into()],
        ..EnvOptions::default()
    })
    .await;
    let t0 = now_ms() - 600_000;
    const STALE: u64 = 0x7ff0_0000_0000_0002;
    let hist_series = |tbl: &str| {
        let mut ts = series(&[("__name__", "lat"), ("job", "a"), ("tbl", tbl)], &[]);
        ts.histograms = vec![sample_histogram(t0 + 1), sample_histogram(t0 + 2)];
        ts
    };
    let specials = [
        (f64::from_bits(STALE), t0),
        (f64::NAN, t0 + 1),
        (f64::INFINITY, t0 + 2),
    ];
    let req = request(vec![
        hist_series("hist"),
        hist_series("mixed"),
        series(
            &[("__name__", "up"), ("job", "a"), ("tbl", "mixed")],
            &specials,
        ),
    ]);
    let (st, body) = env.write(&req).await;
    assert_eq!(st, 200, "{body}");
    let in_table = |name: &str, tbl: &str| {
        let mut q = by_name(name, t0 - 1, t0 + 100);
        q.matchers.push(LabelMatcher {
            r#type: T::Eq as i32,
            name: "tbl".into(),
            value: tbl.into(),
        });
        q
    };
    let bits = |s: &[(f64, i64)]| -> Vec<(i64, u64)> {
        s.iter().map(|(v, t)| (*t, v.to_bits())).collect()
    };
    // (histograms of lat in hist, of lat in mixed, samples of up in mixed), read as SAMPLES
    // alone and as Prometheus 3.x asks (streamed chunks or SAMPLES).
    let read = |accepted: Vec<ResponseType>| {
        let env = &env;
        let q = vec![
            in_table("lat", "hist"),
            in_table("lat", "mixed"),
            in_table("up", "mixed"),
        ];
        async move {
            let (ct, body) = post_read(env, q, accepted).await;
            assert_eq!(ct, "application/x-protobuf");
            let r = ReadResponse::decode(body.as_slice()).unwrap().results;
            let one = |i: usize| -> (Vec<Vec<u8>>, Vec<(i64, u64)>) {
                let ts = &r[i].timeseries;
                (
                    ts.iter().flat_map(|s| bytes_of(&s.histograms)).collect(),
                    ts.iter()
                        .flat_map(|s| s.samples.iter().map(|x| (x.timestamp, x.value.to_bits())))
                        .collect(),
                )
            };
            (one(0), one(1), one(2))
        }
    };
    let hs = bytes_of(&[sample_histogram(t0 + 1), sample_histogram(t0 + 2)]);
    for accepted in [
        vec![ResponseType::Samples],
        vec![ResponseType::StreamedXorChunks, ResponseType::Samples],
    ] {
        let got = read(accepted).await;
        assert_eq!(got.0, (hs.clone(), vec![]), "histograms alone");
        assert_eq!(
            got.1,
            (hs.clone(), vec![]),
            "histograms beside special values"
        );
        assert_eq!(
            got.2,
            (vec![], bits(&specials)),
            "special values beside histograms"
        );
    }
    // A client that accepts streamed chunks only gets the floats: the special values.
    let (ct, body) = post_read(
        &env,
        vec![in_table("up", "mixed")],
        vec![ResponseType::StreamedXorChunks],
    )
    .await;
    assert!(ct.starts_with("application/x-streamed-protobuf"), "{ct}");
    assert!(!body.is_empty(), "the special values are streamed");

    // The first numbers: everything still reads (the column lists notice the new column at
    // most one rate-limited refresh later).
    let numbers = [(2.5, t0 + 50)];
    let req = request(vec![
        series(
            &[("__name__", "lat"), ("job", "a"), ("tbl", "hist")],
            &numbers,
        ),
        series(
            &[("__name__", "up"), ("job", "a"), ("tbl", "mixed")],
            &numbers,
        ),
    ]);
    let (st, body) = env.write(&req).await;
    assert_eq!(st, 200, "{body}");
    let mut up = specials.to_vec();
    up.extend(numbers);
    let want = (
        (hs.clone(), bits(&numbers)),
        (hs.clone(), vec![]),
        (vec![], bits(&up)),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = read(vec![ResponseType::Samples]).await;
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let got = read(vec![ResponseType::StreamedXorChunks, ResponseType::Samples]).await;
    assert_eq!(got, want);
    env.shutdown().await;
}
