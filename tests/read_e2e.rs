//! End-to-end remote read: fixtures written through the connector's /write into
//! timestream-local, read back through /read with the real SDK in between. Expected
//! answers are computed here from the fixture with an independent evaluation of
//! Prometheus' matcher semantics (the `regex` crate with `^(?s:…)$`), never from
//! the code under test. Streamed answers are decoded by a decoder written here.

mod common;

use std::collections::BTreeMap;

use common::*;
use prost::Message;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, read_request::ResponseType, ChunkedReadResponse, LabelMatcher, Query,
    ReadHints, ReadRequest, ReadResponse, TimeSeries,
};

type Labels = BTreeMap<String, String>;
/// A decoded series: labels and (timestamp, value bits).
type Series = (Labels, Vec<(i64, u64)>);

fn m(t: T, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn q(start: i64, end: i64, matchers: Vec<LabelMatcher>) -> Query {
    Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers,
        hints: None,
    }
}

async fn post_read(env: &Env, req: &ReadRequest) -> reqwest::Response {
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    env.http
        .post(format!("{}/api/v1/read", env.url))
        .basic_auth(AKID, Some(SECRET))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("connector answers")
}

fn series_of(ts: &TimeSeries) -> Series {
    let labels: Vec<(String, String)> = ts
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    assert!(
        labels.windows(2).all(|w| w[0].0 < w[1].0),
        "labels not sorted: {labels:?}"
    );
    assert!(
        labels.iter().all(|(_, v)| !v.is_empty()),
        "empty label value"
    );
    let samples: Vec<(i64, u64)> = ts
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value.to_bits()))
        .collect();
    assert!(
        samples.windows(2).all(|w| w[0].0 < w[1].0),
        "samples not sorted"
    );
    (labels.into_iter().collect(), samples)
}

/// SAMPLES answer, one Vec<Series> per query.
async fn read_samples(env: &Env, queries: Vec<Query>) -> Vec<Vec<Series>> {
    let req = ReadRequest {
        queries,
        accepted_response_types: vec![ResponseType::Samples as i32],
    };
    let resp = post_read(env, &req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["content-encoding"], "snappy");
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let rr = ReadResponse::decode(raw.as_slice()).unwrap();
    assert_eq!(rr.results.len(), req.queries.len());
    rr.results
        .iter()
        .map(|r| r.timeseries.iter().map(series_of).collect())
        .collect()
}

// ---- streamed: frame reader and XOR decoder written independently of src/ ----

fn uvarint(b: &[u8], pos: &mut usize) -> u64 {
    let (mut x, mut s) = (0u64, 0);
    loop {
        let c = b[*pos];
        *pos += 1;
        x |= u64::from(c & 0x7f) << s;
        if c < 0x80 {
            return x;
        }
        s += 7;
    }
}

struct Bits<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> u64 {
        let v = (self.b[self.pos / 8] >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        u64::from(v)
    }
    fn read(&mut self, n: u32) -> u64 {
        (0..n).fold(0, |a, _| (a << 1) | self.bit())
    }
    fn byte_uvarint(&mut self) -> u64 {
        let (mut x, mut s) = (0u64, 0);
        loop {
            let c = self.read(8);
            x |= (c & 0x7f) << s;
            if c < 0x80 {
                return x;
            }
            s += 7;
        }
    }
}

fn xor_decode(data: &[u8]) -> Vec<(i64, u64)> {
    let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let mut r = Bits {
        b: &data[2..],
        pos: 0,
    };
    let (mut t, mut v, mut delta, mut lead, mut trail) = (0i64, 0u64, 0i64, 0u32, 0u32);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i == 0 {
            let u = r.byte_uvarint();
            t = ((u >> 1) as i64) ^ -((u & 1) as i64);
            v = r.read(64);
        } else {
            if i == 1 {
                delta = r.byte_uvarint() as i64;
            } else {
                let mut ones = 0;
                while ones < 4 && r.bit() == 1 {
                    ones += 1;
                }
                let width = [0u32, 14, 17, 20, 64][ones];
                let mut dod = r.read(width) as i64;
                if width > 0 && width < 64 && dod > (1 << (width - 1)) {
                    dod -= 1 << width;
                }
                delta += dod;
            }
            t += delta;
            if r.bit() == 1 {
                if r.bit() == 1 {
                    lead = r.read(5) as u32;
                    let mut sig = r.read(6) as u32;
                    if sig == 0 {
                        sig = 64;
                    }
                    trail = 64 - lead - sig;
                }
                v ^= r.read(64 - lead - trail) << trail;
            }
        }
        out.push((t, v));
    }
    out
}

/// STREAMED_XOR_CHUNKS answer (requested as Prometheus ≥ 2.55 does), series of
/// consecutive frames with equal labels merged, grouped per query index.
async fn read_streamed(env: &Env, queries: Vec<Query>) -> Vec<Vec<Series>> {
    let n = queries.len();
    let req = ReadRequest {
        queries,
        accepted_response_types: vec![
            ResponseType::StreamedXorChunks as i32,
            ResponseType::Samples as i32,
        ],
    };
    let resp = post_read(env, &req).await;
    let status = resp.status();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        ct,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let mut out: Vec<Vec<Series>> = vec![Vec::new(); n];
    let mut pos = 0;
    let mut last_index = 0;
    while pos < body.len() {
        let len = uvarint(&body, &mut pos) as usize;
        let crc = u32::from_be_bytes(body[pos..pos + 4].try_into().unwrap());
        let msg = &body[pos + 4..pos + 4 + len];
        assert_eq!(crc, crc32c::crc32c(msg), "frame checksum");
        assert!(len <= 1024 * 1024, "frame over 1 MiB");
        pos += 4 + len;
        let frame = ChunkedReadResponse::decode(msg).unwrap();
        let idx = frame.query_index as usize;
        assert!(idx >= last_index, "frames out of query order");
        last_index = idx;
        // Prometheus' client (storage/remote/codec.go) reads chunked_series[0] of each
        // frame and nothing else: decode exactly that, and insist there is nothing else.
        assert_eq!(
            frame.chunked_series.len(),
            1,
            "a frame must carry exactly one series"
        );
        if let Some(cs) = frame.chunked_series.into_iter().next() {
            let labels: Labels = cs
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let mut samples = Vec::new();
            for c in &cs.chunks {
                assert_eq!(c.r#type, 1, "XOR encoding");
                let s = xor_decode(&c.data);
                assert!(s.len() <= 120 && !s.is_empty());
                assert_eq!((s[0].0, s[s.len() - 1].0), (c.min_time_ms, c.max_time_ms));
                samples.extend(s);
            }
            match out[idx].last_mut() {
                Some((l, s)) if *l == labels => s.extend(samples),
                _ => out[idx].push((labels, samples)),
            }
        }
    }
    out
}

// ---- the fixture and the independent oracle ----

const OPTIONAL: &[&str] = &["env", "zone", "path"];

/// Fixture series: label pairs and (value, timestamp) samples.
type Fixture = Vec<(Vec<(&'static str, &'static str)>, Vec<(f64, i64)>)>;

fn fixture(t0: i64) -> Fixture {
    let s = |k: i64| {
        vec![
            (k as f64 + 0.5, t0 + k),
            (-(k as f64) * 1e300, t0 + 1000 + k),
            (0.1 * k as f64, t0 + 2000),
        ]
    };
    vec![
        (
            vec![("__name__", "m"), ("job", "api"), ("env", "prod")],
            s(1),
        ),
        (
            vec![
                ("__name__", "m"),
                ("job", "api"),
                ("env", "dev"),
                ("zone", "eu-1"),
            ],
            s(2),
        ),
        (
            vec![
                ("__name__", "m"),
                ("job", "it's \"quoted\""),
                ("env", "prod"),
            ],
            s(3),
        ),
        (
            vec![
                ("__name__", "m"),
                ("job", "back\\slash"),
                ("path", "C:\\x\\y"),
            ],
            s(4),
        ),
        (vec![("__name__", "m"), ("job", "multi\nline")], s(5)),
        (
            vec![
                ("__name__", "m"),
                ("job", "ünïcödé 日本"),
                ("zone", "Ωmega"),
            ],
            s(6),
        ),
        (vec![("__name__", "m"), ("job", "prometheus")], s(7)),
        (vec![("__name__", "m"), ("job", "prom")], s(8)),
        (vec![("__name__", "m")], s(9)),
        (
            vec![("__name__", "m"), ("job", "PROM"), ("env", "Prod")],
            s(10),
        ),
        (vec![("__name__", "other"), ("job", "api")], s(11)),
        (
            vec![("__name__", "m"), ("job", "a.b"), ("zone", "k")],
            s(12),
        ),
        (
            vec![
                ("__name__", "m"),
                ("job", "Kelvin\u{212A}"),
                ("env", "x'); DROP TABLE metrics; --"),
            ],
            s(13),
        ),
        (
            vec![("__name__", "m"), ("job", "%_like"), ("env", "")],
            s(14),
        ),
    ]
}

/// Prometheus semantics, evaluated directly on the fixture.
fn oracle(fx: &Fixture, matchers: &[LabelMatcher], start: i64, end: i64) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for (labels, samples) in fx {
        let map: Labels = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let ok = matchers.iter().all(|mt| {
            let v = map.get(&mt.name).map(String::as_str).unwrap_or("");
            let re = || {
                regex::Regex::new(&format!("^(?s:{})$", mt.value))
                    .unwrap()
                    .is_match(v)
            };
            match T::try_from(mt.r#type).unwrap() {
                T::Eq => v == mt.value,
                T::Neq => v != mt.value,
                T::Re => re(),
                T::Nre => !re(),
            }
        });
        let samples: Vec<(i64, u64)> = samples
            .iter()
            .filter(|(_, t)| *t >= start && *t <= end)
            .map(|(v, t)| (*t, v.to_bits()))
            .collect();
        if ok && !samples.is_empty() {
            let mut samples = samples;
            samples.sort();
            out.push((map, samples));
        }
    }
    out.sort();
    out
}

/// Equality with a short report (series counts, first differing sample).
fn same(got: &[Series], want: &[Series]) {
    assert_eq!(got.len(), want.len(), "series count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "labels");
        assert_eq!(
            g.1.len(),
            w.1.len(),
            "sample count of {:?}",
            w.0.get("__name__")
        );
        if let Some(i) = (0..g.1.len()).find(|&i| g.1[i] != w.1[i]) {
            panic!("sample {i}: got {:?} want {:?}", g.1[i], w.1[i]);
        }
    }
}

fn sorted(mut v: Vec<Series>) -> Vec<Series> {
    v.sort();
    v
}

async fn write_fixture(env: &Env, t0: i64) -> Fixture {
    let fx = fixture(t0);
    let req = request(fx.iter().map(|(l, s)| series(l, s)).collect());
    let (status, body) = env.write(&req).await;
    assert!(status < 300, "write failed: {status} {body}");
    fx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_matches_prometheus_semantics() {
    let env = start().await;
    let t0 = now_ms() - 3_600_000;
    let fx = write_fixture(&env, t0).await;
    let name = || m(T::Eq, "__name__", "m");
    let selectors: Vec<Vec<LabelMatcher>> = vec![
        vec![name()],
        vec![name(), m(T::Eq, "job", "api")],
        vec![name(), m(T::Eq, "job", "it's \"quoted\"")],
        vec![name(), m(T::Eq, "job", "back\\slash")],
        vec![name(), m(T::Eq, "path", "C:\\x\\y")],
        vec![name(), m(T::Eq, "job", "multi\nline")],
        vec![name(), m(T::Eq, "job", "ünïcödé 日本")],
        vec![name(), m(T::Eq, "env", "x'); DROP TABLE metrics; --")],
        vec![name(), m(T::Eq, "env", "")],
        vec![name(), m(T::Neq, "env", "prod")],
        vec![name(), m(T::Neq, "env", "")],
        vec![name(), m(T::Neq, "zone", "eu-1"), m(T::Eq, "env", "")],
        vec![name(), m(T::Re, "job", "prom")],
        vec![name(), m(T::Re, "job", "prom.*")],
        vec![name(), m(T::Re, "job", ".*")],
        vec![name(), m(T::Re, "job", ".+")],
        vec![name(), m(T::Re, "env", ".*")],
        vec![name(), m(T::Re, "env", ".+")],
        vec![name(), m(T::Re, "env", "prod|")],
        vec![name(), m(T::Re, "env", "x?")],
        vec![name(), m(T::Nre, "env", "prod")],
        vec![name(), m(T::Nre, "env", ".*")],
        vec![name(), m(T::Nre, "env", ".+")],
        vec![name(), m(T::Nre, "env", "p.*|")],
        vec![name(), m(T::Re, "job", "api|prom")],
        vec![name(), m(T::Re, "job", "(?i)prom")],
        vec![name(), m(T::Re, "job", "(?i)kelvink")],
        vec![name(), m(T::Re, "job", "[[:alpha:]]+")],
        vec![name(), m(T::Re, "job", "[[:^alpha:]]*.*")],
        vec![name(), m(T::Re, "job", "[a-c].*")],
        vec![name(), m(T::Re, "job", "[^a-z].*")],
        vec![name(), m(T::Re, "job", "a\\.b")],
        vec![name(), m(T::Re, "job", "a.b")],
        vec![name(), m(T::Re, "job", "multi.line")],
        vec![name(), m(T::Re, "job", "^prom$")],
        vec![name(), m(T::Re, "job", "p(r)o(m)")],
        vec![name(), m(T::Re, "job", "(?P<x>ap)i")],
        vec![name(), m(T::Re, "job", "it's.*")],
        vec![name(), m(T::Re, "job", ".*\\\\.*")],
        vec![name(), m(T::Re, "job", "\\p{Han}+|.*日本")],
        vec![name(), m(T::Re, "job", "ü.*")],
        vec![name(), m(T::Re, "job", "%_.*")],
        vec![name(), m(T::Re, "job", "pro{1,2}m.*")],
        vec![name(), m(T::Re, "zone", "Ω.*|k")],
        vec![m(T::Re, "__name__", ".+")],
        // vmctl's default selector: every series of the table, as Prometheus' TSDB does.
        vec![m(T::Re, "__name__", ".*")],
        vec![m(T::Re, "__name__", ".*"), m(T::Re, "job", ".*")],
        vec![m(T::Re, "__name__", "m|other"), m(T::Eq, "job", "api")],
        vec![m(T::Neq, "__name__", "m")],
        vec![m(T::Re, "__name__", "o.*")],
        vec![name(), m(T::Eq, "nosuchlabel", "")],
        vec![name(), m(T::Neq, "nosuchlabel", "x")],
        vec![name(), m(T::Eq, "nosuchlabel", "x")],
        vec![name(), m(T::Re, "nosuchlabel", "x|")],
        vec![name(), m(T::Nre, "nosuchlabel", ".*")],
        vec![m(T::Eq, "__name__", "nosuchmetric")],
    ];
    let (start, end) = (t0, t0 + 3000);
    for sel in &selectors {
        let want = oracle(&fx, sel, start, end);
        let got = read_samples(&env, vec![q(start, end, sel.clone())]).await;
        assert_eq!(sorted(got[0].clone()), want, "SAMPLES for {sel:?}");
        // Series come sorted like Prometheus label sets in the streamed answer.
        let streamed = read_streamed(&env, vec![q(start, end, sel.clone())]).await;
        let labels_order: Vec<Vec<(String, String)>> = streamed[0]
            .iter()
            .map(|(l, _)| l.clone().into_iter().collect())
            .collect();
        let mut prom_order = labels_order.clone();
        prom_order.sort_by(|a, b| {
            for (x, y) in a.iter().zip(b) {
                let o = x.0.cmp(&y.0).then(x.1.cmp(&y.1));
                if o.is_ne() {
                    return o;
                }
            }
            a.len().cmp(&b.len())
        });
        assert_eq!(labels_order, prom_order, "streamed order for {sel:?}");
        assert_eq!(sorted(streamed[0].clone()), want, "STREAMED for {sel:?}");
    }
    // Sanity: the matrix exercises both empty and non-empty answers.
    let sizes: Vec<usize> = selectors
        .iter()
        .map(|s| oracle(&fx, s, start, end).len())
        .collect();
    assert!(sizes.contains(&0) && sizes.iter().any(|&n| n > 5));
    let _ = OPTIONAL;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_query_requests_get_one_result_per_query_in_order() {
    let env = start().await;
    let t0 = now_ms() - 3_600_000;
    let fx = write_fixture(&env, t0).await;
    let sels = [
        vec![m(T::Eq, "__name__", "m"), m(T::Eq, "job", "api")],
        vec![m(T::Eq, "__name__", "nosuchmetric")],
        vec![m(T::Eq, "__name__", "other")],
        vec![m(T::Eq, "__name__", "m"), m(T::Re, "job", "prom.*")],
    ];
    let ranges = [
        (t0, t0 + 3000),
        (t0, t0 + 3000),
        (t0 + 1000, t0 + 1999),
        (t0 + 2000, t0 + 2000),
    ];
    let queries: Vec<Query> = sels
        .iter()
        .zip(ranges)
        .map(|(s, (a, b))| q(a, b, s.clone()))
        .collect();
    let want: Vec<Vec<Series>> = sels
        .iter()
        .zip(ranges)
        .map(|(s, (a, b))| oracle(&fx, s, a, b))
        .collect();
    assert!(want[0].len() == 2 && want[1].is_empty() && want[2].len() == 1 && want[3].len() == 2);
    let got: Vec<Vec<Series>> = read_samples(&env, queries.clone())
        .await
        .into_iter()
        .map(sorted)
        .collect();
    assert_eq!(got, want);
    let got: Vec<Vec<Series>> = read_streamed(&env, queries)
        .await
        .into_iter()
        .map(sorted)
        .collect();
    assert_eq!(got, want);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_bounds_are_millisecond_exact_and_hints_only_narrow() {
    let env = start().await;
    let t0 = now_ms() - 3_600_000;
    let times: Vec<i64> = vec![t0 - 1, t0, t0 + 1, t0 + 998, t0 + 999, t0 + 1000, t0 + 1001];
    let samples: Vec<(f64, i64)> = times.iter().map(|&t| ((t - t0) as f64, t)).collect();
    let (st, body) = env
        .write(&request(vec![series(&[("__name__", "ms")], &samples)]))
        .await;
    assert!(st < 300, "{body}");
    let sel = vec![m(T::Eq, "__name__", "ms")];
    let ts = |r: &Vec<Vec<Series>>| -> Vec<i64> {
        r[0].iter().flat_map(|s| s.1.iter().map(|x| x.0)).collect()
    };
    let got = read_samples(&env, vec![q(t0, t0 + 999, sel.clone())]).await;
    assert_eq!(ts(&got), vec![t0, t0 + 1, t0 + 998, t0 + 999]);
    let got = read_streamed(&env, vec![q(t0 + 1, t0 + 1000, sel.clone())]).await;
    assert_eq!(ts(&got), vec![t0 + 1, t0 + 998, t0 + 999, t0 + 1000]);
    // Hints narrower than the range narrow it; wider hints do not widen it.
    let mut narrowed = q(t0 - 10, t0 + 2000, sel.clone());
    narrowed.hints = Some(ReadHints {
        start_ms: t0 + 1,
        end_ms: t0 + 998,
        ..Default::default()
    });
    let mut wide = q(t0, t0 + 1, sel.clone());
    wide.hints = Some(ReadHints {
        start_ms: t0 - 100,
        end_ms: t0 + 5000,
        ..Default::default()
    });
    let got = read_samples(&env, vec![narrowed, wide]).await;
    assert_eq!(
        got[0][0].1.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![t0 + 1, t0 + 998]
    );
    assert_eq!(
        got[1][0].1.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![t0, t0 + 1]
    );
    // Negative start is clamped, inverted ranges are empty.
    let got = read_samples(&env, vec![q(-5_000, t0, sel.clone()), q(t0 + 10, t0, sel)]).await;
    assert_eq!(
        got[0][0].1.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![t0 - 1, t0]
    );
    assert!(got[1].is_empty());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_beyond_1000_rows_and_values_bit_exact() {
    let env = start().await;
    let t0 = now_ms() - 3_600_000;
    // Long label values make rows big, so the store pages (~1 MB per page).
    let long = "v".repeat(1500);
    // -0.0 is left out: timestream-local currently stores it as 0.0 (before the read path).
    let specials = [
        0.1,
        1.0 / 3.0,
        1e300,
        -1e-300,
        5e-324,
        f64::MAX,
        2.5e-308,
        123_456_789.123_456_79,
    ];
    let mut ts = Vec::new();
    let mut want: Vec<Series> = Vec::new();
    for k in 0..4 {
        let inst = format!("{long}{k}");
        let samples: Vec<(f64, i64)> = (0..3000)
            .map(|i| {
                (
                    specials[i as usize % specials.len()] * (k + 1) as f64,
                    t0 + i * 7,
                )
            })
            .collect();
        ts.push(series(
            &[("__name__", "big"), ("instance", &inst)],
            &samples,
        ));
        want.push((
            [
                ("__name__".to_string(), "big".to_string()),
                ("instance".to_string(), inst.clone()),
            ]
            .into_iter()
            .collect(),
            // f64::MAX * 2 = +Inf comes back too, as a special value (issue 14).
            samples.iter().map(|(v, t)| (*t, v.to_bits())).collect(),
        ));
    }
    want.sort();
    let (st, body) = env.write(&request(ts)).await;
    assert!(st < 300, "{body}");
    // Query pages, counted by this app alone (the column knowledge is the app's too).
    let pages = || env.state.metrics.read_requests.get();
    assert_eq!(pages(), 0);
    // 4 series × 3,000 rows of ~1.6 KB (~19 MB): timestream-local cuts pages at 1 MiB, so
    // the data query spans DATA_PAGES pages in either row order.
    const DATA_PAGES: u64 = 19;
    let sel = vec![m(T::Eq, "__name__", "big")];
    let got = read_samples(&env, vec![q(t0, t0 + 3000 * 7, sel.clone())]).await;
    same(&sorted(got[0].clone()), &want);
    // The app's first read of the table also fetched its columns (one DESCRIBE page).
    assert_eq!(pages(), 1 + DATA_PAGES);
    let got = read_streamed(&env, vec![q(t0, t0 + 3000 * 7, sel)]).await;
    same(&sorted(got[0].clone()), &want);
    assert_eq!(pages(), 1 + 2 * DATA_PAGES);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_right_status() {
    let env = start().await;
    let t0 = now_ms() - 3_600_000;
    write_fixture(&env, t0).await;
    let post = |queries: Vec<Query>, types: Vec<i32>| {
        let req = ReadRequest {
            queries,
            accepted_response_types: types,
        };
        let env = &env;
        async move {
            let r = post_read(env, &req).await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let name = || m(T::Eq, "__name__", "m");
    // Invalid RE2 → 400 naming the problem.
    let (s, body) = post(
        vec![q(t0, t0 + 10, vec![name(), m(T::Re, "job", "a(")])],
        vec![],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("a("), "{body}");
    let (s, body) = post(
        vec![q(t0, t0 + 10, vec![name(), m(T::Re, "job", "x**")])],
        vec![1, 0],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    // Unknown matcher type.
    let bad = LabelMatcher {
        r#type: 7,
        name: "job".into(),
        value: "x".into(),
    };
    let (s, _) = post(vec![q(t0, t0 + 10, vec![name(), bad])], vec![]).await;
    assert_eq!(s, 400);
    // No supported response type.
    let (s, _) = post(vec![q(t0, t0 + 10, vec![name()])], vec![5]).await;
    assert_eq!(s, 400);
    // Undecodable body.
    let r = env
        .http
        .post(format!("{}/read", env.url))
        .basic_auth(AKID, Some(SECRET))
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Missing credentials.
    let r = env
        .http
        .post(format!("{}/read", env.url))
        .body(vec![])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Throttling that outlasts the SDK's retries → 503, for both response types.
    env.faults().set(timestream_local::FaultOptions {
        throttle_rate: 1.0,
        operations: vec!["Query".into()],
        ..Default::default()
    });
    let (s, body) = post(vec![q(t0, t0 + 10, vec![name()])], vec![0]).await;
    assert_eq!(s, 503, "{body}");
    let (s, body) = post(vec![q(t0, t0 + 10, vec![name()])], vec![1, 0]).await;
    assert_eq!(s, 503, "{body}");
    env.faults().clear();
    let text = env.metrics_text().await;
    // Counted per app (not per process): exactly this test's failures.
    for (code, n) in [("unavailable", 2.0), ("invalid_regex", 2.0)] {
        assert_eq!(
            metric_value(
                &text,
                &format!("timestream_connector_read_errors_total{{code=\"{code}\"}}")
            ),
            n,
            "{text}"
        );
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_is_a_client_error_with_timestreams_message() {
    let env = start_with(EnvOptions {
        tables: vec![],
        ..Default::default()
    })
    .await;
    let req = ReadRequest {
        queries: vec![q(0, 10, vec![m(T::Eq, "__name__", "m")])],
        accepted_response_types: vec![],
    };
    let r = post_read(&env, &req).await;
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body.contains(TABLE) || body.contains(DB), "{body}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_routing_reads_the_routed_table_and_restores_the_labels() {
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
    let routed = [
        ("__name__", "r"),
        ("k", "v"),
        ("tsdb", "other"),
        ("tstable", "tbl2"),
    ];
    let routed_b = [
        ("__name__", "r"),
        ("a", "1"),
        ("tsdb", "other"),
        ("tstable", "tbl2"),
    ];
    let req = request(vec![
        series(&routed, &[(1.0, t)]),
        series(&routed_b, &[(3.0, t)]),
        series(&[("__name__", "r"), ("k", "v")], &[(2.0, t)]),
    ]);
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 200, "{body}");
    let lab = |p: &[(&str, &str)]| -> Labels {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let sel = vec![
        m(T::Eq, "__name__", "r"),
        m(T::Eq, "tsdb", "other"),
        m(T::Eq, "tstable", "tbl2"),
    ];
    let want = vec![
        (lab(&routed_b), vec![(t, 3.0f64.to_bits())]),
        (lab(&routed), vec![(t, 1.0f64.to_bits())]),
    ];
    let got = read_samples(&env, vec![q(t, t, sel.clone())]).await;
    assert_eq!(sorted(got[0].clone()), sorted(want.clone()));
    // Streamed: the routing labels take part in the series order.
    let got = read_streamed(&env, vec![q(t, t, sel)]).await;
    assert_eq!(got[0], want);
    // Without routing matchers: the default destination, whose series lack the labels.
    let got = read_samples(&env, vec![q(t, t, vec![m(T::Eq, "__name__", "r")])]).await;
    assert_eq!(
        got[0],
        vec![(
            lab(&[("__name__", "r"), ("k", "v")]),
            vec![(t, 2.0f64.to_bits())]
        )]
    );
    let got = read_samples(
        &env,
        vec![q(
            t,
            t,
            vec![m(T::Eq, "__name__", "r"), m(T::Re, "tsdb", "o.*")],
        )],
    )
    .await;
    assert!(got[0].is_empty());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_2_dot_semantics_on_request() {
    let env = start_with(EnvOptions {
        args: vec!["--read.dot-matches-newline=false".into()],
        ..Default::default()
    })
    .await;
    let t0 = now_ms() - 3_600_000;
    write_fixture(&env, t0).await;
    let sel = |re: &str| vec![m(T::Eq, "__name__", "m"), m(T::Re, "job", re)];
    let got = read_samples(&env, vec![q(t0, t0 + 3000, sel("multi.line"))]).await;
    assert!(
        got[0].is_empty(),
        "`.` must not match a newline in 2.x mode"
    );
    let got = read_samples(&env, vec![q(t0, t0 + 3000, sel("(?s)multi.line"))]).await;
    assert_eq!(got[0].len(), 1);
    let got = read_samples(&env, vec![q(t0, t0 + 3000, sel("a.b"))]).await;
    assert_eq!(got[0].len(), 1);
    env.shutdown().await;
}

/// A failure after the first frame must not look like a complete answer: the
/// status is already 200, so the body is aborted and the client sees an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_error_after_first_frame_aborts_the_body() {
    let env = start_with(EnvOptions {
        args: vec!["--read.max-samples=1500".into()],
        ..Default::default()
    })
    .await;
    let t0 = now_ms() - 3_600_000;
    let samples: Vec<(f64, i64)> = (0..1000).map(|i| (i as f64, t0 + i)).collect();
    let (st, body) = env
        .write(&request(vec![
            series(&[("__name__", "a")], &samples),
            series(&[("__name__", "b")], &samples),
        ]))
        .await;
    assert!(st < 300, "{body}");
    let queries = vec![
        q(t0, t0 + 1000, vec![m(T::Eq, "__name__", "a")]),
        q(t0, t0 + 1000, vec![m(T::Eq, "__name__", "b")]),
    ];
    // Each query alone fits the cap; together they exceed it, after query 0 was sent.
    let req = ReadRequest {
        queries: queries.clone(),
        accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
    };
    let resp = post_read(&env, &req).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body must be aborted");
    // The same request as SAMPLES is refused whole.
    let req = ReadRequest {
        queries,
        accepted_response_types: vec![],
    };
    let resp = post_read(&env, &req).await;
    assert_eq!(resp.status(), 400);
    // One query alone is answered completely.
    let got = read_streamed(
        &env,
        vec![q(t0, t0 + 1000, vec![m(T::Eq, "__name__", "a")])],
    )
    .await;
    assert_eq!(got[0][0].1.len(), 1000);
    env.shutdown().await;
}

// ---- special values (issue 14) and label names differing only in case ----

const STALE: u64 = 0x7ff0_0000_0000_0002;
const PROM_NAN: u64 = 0x7ff8_0000_0000_0001;

fn special_fixture(t0: i64) -> Fixture {
    let f = f64::from_bits;
    vec![
        // A series that ends: numbers, then the staleness marker.
        (
            vec![("__name__", "up"), ("job", "gone")],
            vec![(1.0, t0), (1.0, t0 + 1000), (f(STALE), t0 + 2000)],
        ),
        // A summary quantile with no observations: only NaN.
        (
            vec![("__name__", "rpc"), ("quantile", "0.99")],
            vec![(f(PROM_NAN), t0), (f(PROM_NAN), t0 + 1000)],
        ),
        // Every kind, other NaN payloads included, between numbers.
        (
            vec![("__name__", "x"), ("job", "api")],
            vec![
                (0.5, t0),
                (f64::INFINITY, t0 + 1),
                (f64::NEG_INFINITY, t0 + 2),
                (f64::NAN, t0 + 3),
                (-f64::NAN, t0 + 4),
                (f(0x7ff0_0000_dead_beef), t0 + 5),
                (f(0xfff8_0000_0000_0001), t0 + 6),
                (2.5, t0 + 7),
                (f(STALE), t0 + 8),
                (3.5, t0 + 9),
            ],
        ),
        (
            vec![("__name__", "x"), ("job", "db")],
            vec![(f64::INFINITY, t0 + 3), (7.0, t0 + 4)],
        ),
        (vec![("__name__", "xy")], vec![(f64::NEG_INFINITY, t0)]),
        // Label names that differ only in case.
        (
            vec![("__name__", "c"), ("Label", "upper")],
            vec![(1.0, t0), (f64::INFINITY, t0 + 1)],
        ),
        (
            vec![("__name__", "c"), ("label", "lower")],
            vec![(2.0, t0), (f(STALE), t0 + 1)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_values_come_back_bit_exact_with_prometheus_matcher_semantics() {
    let env = start().await;
    let t0 = now_ms() - 3_600_000;
    let fx = special_fixture(t0);
    // The ordinary fixture shares the table: its rows and the special ones must not mix.
    let mut all = write_fixture(&env, t0).await;
    let req = request(fx.iter().map(|(l, s)| series(l, s)).collect());
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 200, "{body}");
    all.extend(fx.iter().cloned());
    let metrics = env.metrics_text().await;
    for (kind, n) in [
        ("nan", 6.0),
        ("stale_nan", 3.0),
        ("pos_inf", 3.0),
        ("neg_inf", 2.0),
    ] {
        assert_eq!(
            metric_value(
                &metrics,
                &format!("timestream_connector_special_samples_total{{kind=\"{kind}\"}}")
            ),
            n,
            "{kind}"
        );
    }
    assert_eq!(
        metric_value(&metrics, "timestream_connector_ignored_samples_total"),
        0.0
    );
    let selectors: Vec<Vec<LabelMatcher>> = vec![
        vec![m(T::Eq, "__name__", "x")],
        vec![m(T::Eq, "__name__", "x"), m(T::Eq, "job", "api")],
        vec![m(T::Eq, "__name__", "up")],
        vec![m(T::Eq, "__name__", "rpc")],
        vec![m(T::Re, "__name__", "x.*")],
        vec![m(T::Re, "__name__", "x|up|m")],
        vec![m(T::Re, "__name__", ".+")],
        vec![m(T::Re, "__name__", ".*"), m(T::Eq, "job", "api")],
        vec![m(T::Nre, "__name__", "x.*|m")],
        vec![m(T::Neq, "__name__", "x"), m(T::Re, "job", "a.*|gone")],
        vec![m(T::Re, "__name__", "__special_value__")],
        vec![m(T::Eq, "__name__", "__special_value__")],
        vec![m(T::Re, "__name__", "(?i)X")],
        vec![m(T::Eq, "__name__", "c")],
        vec![m(T::Eq, "__name__", "c"), m(T::Eq, "label", "lower")],
        vec![m(T::Eq, "__name__", "c"), m(T::Eq, "Label", "upper")],
        vec![m(T::Eq, "__name__", "c"), m(T::Eq, "label", "")],
        vec![m(T::Eq, "__name__", "c"), m(T::Re, "LABEL", ".+")],
        vec![m(T::Eq, "quantile", "0.99")],
    ];
    for (start, end) in [(t0, t0 + 3000), (t0 + 2, t0 + 5)] {
        for sel in &selectors {
            let want = oracle(&all, sel, start, end);
            let got = read_samples(&env, vec![q(start, end, sel.clone())]).await;
            assert_eq!(sorted(got[0].clone()), want, "SAMPLES for {sel:?}");
            let streamed = read_streamed(&env, vec![q(start, end, sel.clone())]).await;
            assert_eq!(sorted(streamed[0].clone()), want, "STREAMED for {sel:?}");
        }
    }
    // The matrix covers series made only of special values and mixed ones.
    let x = oracle(&all, &selectors[0], t0, t0 + 3000);
    assert_eq!(x.len(), 2);
    assert_eq!(x[0].1.len(), 10);

    // SQL users: the metric's own measure holds only its numbers.
    let url = env.store.url();
    let avg = query_rows(
        &url,
        &format!(
            r#"SELECT avg(measure_value::double) AS a, count(*) AS n FROM "{DB}"."{TABLE}" WHERE measure_name = 'x'"#
        ),
    )
    .await;
    assert_eq!(avg[0]["n"], "4");
    assert_eq!(
        avg[0]["a"].parse::<f64>().unwrap(),
        (0.5 + 2.5 + 3.5 + 7.0) / 4.0
    );
    // The documented layout: one reserved measure, the metric in `__name__`.
    let rows = query_rows(
        &url,
        &format!(
            r#"SELECT "__name__", job, measure_value::varchar AS v FROM "{DB}"."{TABLE}" WHERE measure_name = '__special_value__' AND "__name__" = 'x' ORDER BY time, job"#
        ),
    )
    .await;
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["job"].as_str(), r["v"].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("api", "+Inf"),
            ("api", "-Inf"),
            ("api", "NaN:0x7ff8000000000000"),
            ("db", "+Inf"),
            ("api", "NaN:0xfff8000000000000"),
            ("api", "NaN:0x7ff00000deadbeef"),
            ("api", "NaN:0xfff8000000000001"),
            ("api", "StaleNaN"),
        ]
    );
    assert!(rows.iter().all(|r| r["__name__"] == "x"));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_values_off_counts_them_as_ignored_and_stores_nothing_new() {
    let env = start_with(EnvOptions {
        args: vec!["--write.special-values=false".into()],
        ..EnvOptions::default()
    })
    .await;
    let t0 = now_ms() - 3_600_000;
    let fx = special_fixture(t0);
    let req = request(fx.iter().map(|(l, s)| series(l, s)).collect());
    let (status, body) = env.write(&req).await;
    assert_eq!(status, 200, "{body}");
    let metrics = env.metrics_text().await;
    let reason = |r: &str| {
        metric_value(
            &metrics,
            &format!("timestream_connector_ignored_samples_by_reason_total{{reason=\"{r}\"}}"),
        )
    };
    assert_eq!(reason("non_finite_value"), 11.0);
    assert_eq!(reason("stale_marker"), 3.0);
    assert_eq!(
        metric_value(&metrics, "timestream_connector_ignored_samples_total"),
        14.0
    );
    let rows = env.rows(DB, TABLE).await;
    assert_eq!(rows.len(), 8, "only the numbers");
    assert!(rows
        .iter()
        .all(|r| !r.contains_key("__name__") && !r.contains_key("measure_value::varchar")));
    // Reads see only the numbers, as before.
    let numbers: Fixture = fx
        .iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter().copied().filter(|(v, _)| v.is_finite()).collect(),
            )
        })
        .collect();
    for sel in [
        vec![m(T::Re, "__name__", ".+")],
        vec![m(T::Eq, "__name__", "c")],
    ] {
        let want = oracle(&numbers, &sel, t0, t0 + 3000);
        let got = read_samples(&env, vec![q(t0, t0 + 3000, sel.clone())]).await;
        assert_eq!(sorted(got[0].clone()), want, "{sel:?}");
    }
    // And --fail-on-invalid-sample-value keeps its upstream meaning there.
    let strict = start_with(EnvOptions {
        args: vec![
            "--write.special-values=false".into(),
            "--fail-on-invalid-sample-value=true".into(),
        ],
        ..EnvOptions::default()
    })
    .await;
    let (status, body) = strict.write(&req).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("non-finite"), "{body}");
    strict.shutdown().await;
    env.shutdown().await;
}

/// A table that only ever got special values has no `measure_value::double` column: it is
/// read without it (it once answered nothing until a number was written), and once a number
/// arrives everything reads together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_only_special_values_reads_them_before_and_after_its_first_number() {
    let env = start().await;
    let t0 = now_ms() - 600_000;
    let f = f64::from_bits;
    let mut fx: Fixture = vec![
        // A series whose every sample is a staleness marker (a target that went away).
        (
            vec![("__name__", "up"), ("job", "gone")],
            vec![(f(STALE), t0), (f(STALE), t0 + 1000)],
        ),
        (
            vec![("__name__", "rpc"), ("quantile", "0.99")],
            vec![(f(PROM_NAN), t0), (f64::INFINITY, t0 + 1)],
        ),
        (
            vec![("__name__", "x"), ("job", "api")],
            vec![
                (f64::NEG_INFINITY, t0),
                (f64::NAN, t0 + 1),
                (f(0x7ff0_0000_dead_beef), t0 + 2),
                (f(STALE), t0 + 3),
            ],
        ),
    ];
    let (status, body) = env
        .write(&request(fx.iter().map(|(l, s)| series(l, s)).collect()))
        .await;
    assert_eq!(status, 200, "{body}");
    let cols = query_rows(&env.store.url(), &format!(r#"DESCRIBE "{DB}"."{TABLE}""#)).await;
    assert!(
        !cols
            .iter()
            .any(|r| r.values().any(|v| v == "measure_value::double")),
        "the store must lack the double column for this test to mean anything: {cols:?}"
    );
    let selectors: Vec<Vec<LabelMatcher>> = vec![
        vec![m(T::Eq, "__name__", "up")],
        vec![m(T::Re, "__name__", ".+")],
        vec![m(T::Nre, "__name__", "up"), m(T::Eq, "zone", "")],
        vec![m(T::Eq, "job", "api")],
        vec![m(T::Eq, "quantile", "0.99")],
        vec![m(T::Eq, "__name__", "none")],
    ];
    let check = |fx: Fixture| {
        let env = &env;
        let selectors = &selectors;
        async move {
            for sel in selectors {
                let want = oracle(&fx, sel, t0 - 1, t0 + 5000);
                let got = read_samples(env, vec![q(t0 - 1, t0 + 5000, sel.clone())]).await;
                if sorted(got[0].clone()) != want {
                    return Err(format!("SAMPLES for {sel:?}: {:?} != {want:?}", got[0]));
                }
                let got = read_streamed(env, vec![q(t0 - 1, t0 + 5000, sel.clone())]).await;
                if sorted(got[0].clone()) != want {
                    return Err(format!("STREAMED for {sel:?}: {:?} != {want:?}", got[0]));
                }
            }
            Ok(())
        }
    };
    check(fx.clone()).await.unwrap();
    assert_eq!(
        oracle(&fx, &selectors[1], t0 - 1, t0 + 5000).len(),
        3,
        "the matrix reads every series"
    );

    // The first number: the table gets the column; its number reads with the rest (at most
    // one on-demand column refresh, rate-limited to one a second, after the last one).
    let number = (vec![("__name__", "x"), ("job", "api")], vec![(4.5, t0 + 4)]);
    let plain = (vec![("__name__", "n")], vec![(1.0, t0 + 10)]);
    let (status, body) = env
        .write(&request(vec![
            series(&number.0, &number.1),
            series(&plain.0, &plain.1),
        ]))
        .await;
    assert_eq!(status, 200, "{body}");
    fx[2].1.push(number.1[0]);
    fx.push(plain);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match check(fx.clone()).await {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    env.shutdown().await;
}
