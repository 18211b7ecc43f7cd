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
