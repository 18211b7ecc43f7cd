//! Property: any label value (unicode, quotes, backslashes, newlines, SQL and
//! regex metacharacters) written through /write and selected with `=` — or with
//! `=~` on the RE2-escaped value — returns exactly that series, never its
//! neighbours whose values differ by a prefix or suffix.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use prost::Message;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest, ReadResponse,
};

async fn select(env: &Env, t0: i64, name: &str, ty: T, value: &str) -> Vec<Vec<(String, String)>> {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: t0,
            end_timestamp_ms: t0 + 10,
            matchers: vec![
                LabelMatcher {
                    r#type: T::Eq as i32,
                    name: "__name__".into(),
                    value: name.into(),
                },
                LabelMatcher {
                    r#type: ty as i32,
                    name: "v".into(),
                    value: value.into(),
                },
            ],
            hints: None,
        }],
        accepted_response_types: vec![],
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
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let raw = snap::raw::Decoder::new().decompress_vec(&bytes).unwrap();
    let rr = ReadResponse::decode(raw.as_slice()).unwrap();
    rr.results[0]
        .timeseries
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn equality_selects_exactly_the_written_series() {
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
    // Printable unicode plus the characters that break naive SQL and regex handling.
    let value = prop::string::string_regex("[\\PC'\"\\\\\\n\\t%_.*+?()\\[\\]{}|^$]{1,24}").unwrap();
    runner
        .run(&value, |v| {
            let name = format!("prop{}", case.fetch_add(1, Ordering::Relaxed));
            let neighbours = [
                v.clone(),
                format!("{v}x"),
                format!("x{v}"),
                format!("{v}\n"),
            ];
            let series_list = neighbours
                .iter()
                .enumerate()
                .map(|(i, n)| series(&[("__name__", &name), ("v", n)], &[(i as f64, t0)]))
                .collect();
            rt.block_on(async {
                let (st, body) = env.write(&request(series_list)).await;
                prop_assert!(st < 300, "write {st}: {body}");
                let want = vec![vec![
                    ("__name__".to_string(), name.clone()),
                    ("v".to_string(), v.clone()),
                ]];
                let got = select(&env, t0, &name, T::Eq, &v).await;
                prop_assert_eq!(&got, &want, "= {:?}", v);
                let got = select(&env, t0, &name, T::Re, &regex::escape(&v)).await;
                prop_assert_eq!(&got, &want, "=~ {:?}", v);
                let got = select(&env, t0, &name, T::Neq, &v).await;
                prop_assert_eq!(got.len(), 3, "!= {:?}", v);
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(env.shutdown());
}

/// Property (issue 14): any f64 bit pattern written through /write comes back through
/// /read with the same bits: finite values as DOUBLE, NaN (any payload), staleness markers
/// and ±Inf as special values. Except -0.0, which timestream-local stores as 0.0.
#[test]
fn any_f64_bit_pattern_round_trips() {
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
    // Half of the patterns in the NaN/Inf exponent range, where payloads matter.
    let bits = prop_oneof![
        any::<u64>(),
        any::<u64>().prop_map(|b| b | 0x7ff0_0000_0000_0000),
        Just(0x7ff0_0000_0000_0002u64),
        Just(0x7ff0_0000_0000_0000u64),
        Just(0xfff0_0000_0000_0000u64),
    ]
    .prop_filter("-0.0 is not kept by the store", |b| {
        *b != 0x8000_0000_0000_0000
    });
    runner
        .run(&prop::collection::vec(bits, 1..60), |values| {
            let name = format!("bits{}", case.fetch_add(1, Ordering::Relaxed));
            let samples: Vec<(f64, i64)> = values
                .iter()
                .enumerate()
                .map(|(i, b)| (f64::from_bits(*b), t0 + i as i64))
                .collect();
            rt.block_on(async {
                let (st, body) = env
                    .write(&request(vec![series(&[("__name__", &name)], &samples)]))
                    .await;
                prop_assert!(st < 300, "write {st}: {body}");
                let req = ReadRequest {
                    queries: vec![Query {
                        start_timestamp_ms: t0,
                        end_timestamp_ms: t0 + 100,
                        matchers: vec![LabelMatcher {
                            r#type: T::Eq as i32,
                            name: "__name__".into(),
                            value: name.clone(),
                        }],
                        hints: None,
                    }],
                    accepted_response_types: vec![],
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
                prop_assert_eq!(resp.status(), 200);
                let raw = snap::raw::Decoder::new()
                    .decompress_vec(&resp.bytes().await.unwrap())
                    .unwrap();
                let rr = ReadResponse::decode(raw.as_slice()).unwrap();
                let got: Vec<u64> = rr.results[0]
                    .timeseries
                    .iter()
                    .flat_map(|s| s.samples.iter().map(|x| x.value.to_bits()))
                    .collect();
                prop_assert_eq!(&got, &values);
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(env.shutdown());
}

/// Property (issue 14): with special values stored next to numbers, any combination of
/// `__name__` matchers (=, !=, =~, !~) selects exactly the series and samples Prometheus
/// would, numbers and special values alike; the reserved measure itself is never a metric.
#[test]
fn name_matchers_select_numbers_and_special_values_like_prometheus() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = rt.block_on(start());
    let t0 = now_ms() - 3_600_000;
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    // (metric, job, samples): numbers only, special values only, and both.
    type Universe<'s> = Vec<(&'s str, &'s str, Vec<(f64, i64)>)>;
    let universe: Universe<'_> = vec![
        ("a", "j1", vec![(1.0, t0), (f64::NAN, t0 + 1)]),
        ("a", "j2", vec![(stale, t0 + 2)]),
        ("ab", "j1", vec![(2.0, t0), (f64::INFINITY, t0 + 3)]),
        ("b", "j2", vec![(3.0, t0 + 1)]),
        ("A", "j1", vec![(f64::NEG_INFINITY, t0)]),
        ("ba", "j2", vec![(4.0, t0), (stale, t0 + 4)]),
        ("x:y", "j1", vec![(5.0, t0 + 2), (f64::NAN, t0 + 3)]),
        ("__special_value_", "j2", vec![(f64::INFINITY, t0 + 1)]),
    ];
    let req = request(
        universe
            .iter()
            .map(|(n, j, s)| series(&[("__name__", n), ("job", j)], s))
            .collect(),
    );
    let (st, body) = rt.block_on(env.write(&req));
    assert_eq!(st, 200, "{body}");
    let patterns = [
        "a",
        "a.*",
        ".*b",
        "ab|b",
        "(?i)a",
        ".*",
        ".+",
        "",
        "__special_value__",
        "__special_value_",
        "_.*",
        "[ab]+",
        "x:y",
        "b.?",
    ];
    let matcher = (
        prop::sample::select(vec![T::Eq, T::Neq, T::Re, T::Nre]),
        prop::sample::select(patterns.to_vec()),
    );
    let job = prop::option::of(prop::sample::select(vec!["j1", "j2"]));
    let mut runner = TestRunner::new(PtConfig {
        cases: 48,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(
            &(prop::collection::vec(matcher, 1..3), job),
            |(name_matchers, job)| {
                let mut matchers: Vec<LabelMatcher> = name_matchers
                    .iter()
                    .map(|(ty, v)| LabelMatcher {
                        r#type: *ty as i32,
                        name: "__name__".into(),
                        value: v.to_string(),
                    })
                    .collect();
                if let Some(j) = job {
                    matchers.push(LabelMatcher {
                        r#type: T::Eq as i32,
                        name: "job".into(),
                        value: j.into(),
                    });
                }
                // Prometheus' semantics, on the universe.
                let accepts = |ty: T, pattern: &str, v: &str| {
                    let re = || {
                        regex::Regex::new(&format!("^(?s:{pattern})$"))
                            .unwrap()
                            .is_match(v)
                    };
                    match ty {
                        T::Eq => v == pattern,
                        T::Neq => v != pattern,
                        T::Re => re(),
                        T::Nre => !re(),
                    }
                };
                let mut want: Vec<(String, String, Vec<u64>)> = universe
                    .iter()
                    .filter(|(n, j, _)| {
                        name_matchers.iter().all(|(ty, p)| accepts(*ty, p, n))
                            && job.is_none_or(|x| x == *j)
                    })
                    .map(|(n, j, s)| {
                        let mut s = s.clone();
                        s.sort_by_key(|x| x.1);
                        (
                            n.to_string(),
                            j.to_string(),
                            s.iter().map(|x| x.0.to_bits()).collect(),
                        )
                    })
                    .collect();
                want.sort();
                let got = rt.block_on(async {
                    let req = ReadRequest {
                        queries: vec![Query {
                            start_timestamp_ms: t0,
                            end_timestamp_ms: t0 + 10,
                            matchers: matchers.clone(),
                            hints: None,
                        }],
                        accepted_response_types: vec![],
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
                    assert_eq!(resp.status(), 200);
                    let raw = snap::raw::Decoder::new()
                        .decompress_vec(&resp.bytes().await.unwrap())
                        .unwrap();
                    ReadResponse::decode(raw.as_slice()).unwrap()
                });
                let mut got: Vec<(String, String, Vec<u64>)> = got.results[0]
                    .timeseries
                    .iter()
                    .map(|s| {
                        let l = |k: &str| {
                            s.labels
                                .iter()
                                .find(|l| l.name == k)
                                .map(|l| l.value.clone())
                                .unwrap_or_default()
                        };
                        (
                            l("__name__"),
                            l("job"),
                            s.samples.iter().map(|x| x.value.to_bits()).collect(),
                        )
                    })
                    .collect();
                got.sort();
                prop_assert_eq!(got, want, "{:?}", matchers);
                Ok(())
            },
        )
        .unwrap();
    rt.block_on(env.shutdown());
}
