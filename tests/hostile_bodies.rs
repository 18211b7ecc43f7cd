//! A corpus of nasty bodies and headers sent over HTTP to a running connector, on
//! /write and /read: each must get a 4xx with a readable message (or, where the data is
//! merely unstorable, a 2xx that stores nothing), within bounded memory, and the server
//! must keep serving — a normal write and read succeed after the corpus.
//!
//! The whole test process runs under the `cap` allocator with a hard limit: a request
//! that made the connector allocate without bound would abort the test.

mod common;

use std::alloc::System;
use std::time::{Duration, Instant};

use cap::Cap;
use common::*;
use prost::Message;
use timestream_prometheus_connector::remote::codec::compress;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest, ReadResponse,
};

/// Whole-process allocation limit (connector, store and test together).
const MEMORY_LIMIT: usize = 1536 * 1024 * 1024;

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, MEMORY_LIMIT);

/// Compressed-body cap of the connector under test.
const MAX_REQUEST: usize = 1024 * 1024;
/// Decompressed-body cap of the connector under test.
const MAX_DECOMPRESSED: usize = 16 * 1024 * 1024;

/// One hostile request.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, &'static str)>,
    /// Acceptable statuses.
    want: &'static [u16],
}

fn case(name: &'static str, body: Vec<u8>, want: &'static [u16]) -> Case {
    Case {
        name,
        body,
        headers: vec![],
        want,
    }
}

fn varint(n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    prost::encoding::encode_varint(n, &mut v);
    v
}

/// Length-delimited field `tag` (already shifted, wire type 2) holding `inner`.
fn field(tag: u8, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(varint(inner.len() as u64));
    v.extend_from_slice(inner);
    v
}

fn label(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut l = field(0x0a, name);
    l.extend(field(0x12, value));
    field(0x0a, &l)
}

/// A WriteRequest of one series `{__name__="hostile"}` plus `labels` (raw encodings),
/// one sample.
fn write_body(extra_labels: &[u8]) -> Vec<u8> {
    let mut ts = label(b"__name__", b"hostile");
    ts.extend_from_slice(extra_labels);
    // Sample {value: 1.0 (field 1, fixed64), timestamp: now (field 2, varint)}
    let mut s = vec![0x09];
    s.extend(1.0f64.to_le_bytes());
    s.push(0x10);
    s.extend(varint(now_ms() as u64));
    ts.extend(field(0x12, &s));
    field(0x0a, &ts)
}

/// Bodies hostile to any protobuf endpoint (valid snappy unless said otherwise).
fn common_corpus(valid_proto: &[u8]) -> Vec<Case> {
    let mut huge_snappy = varint(u32::MAX as u64);
    huge_snappy.extend([0u8; 16]);
    let mut over_cap = varint(MAX_DECOMPRESSED as u64 + 1);
    over_cap.extend([0u8; 16]);
    // Real snappy data that decompresses beyond the cap: a decompression bomb.
    let bomb = compress(&vec![0u8; MAX_DECOMPRESSED + 4096]);
    assert!(
        bomb.len() < MAX_REQUEST,
        "bomb must pass the compressed cap"
    );
    // Field 1 claiming 2^62 bytes.
    let mut huge_prefix = vec![0x0a];
    huge_prefix.extend(varint(1 << 62));
    huge_prefix.extend([0u8; 8]);
    // 100 000 nested start-group tags of an unknown field (15): recursion bomb.
    let nested = vec![0x7bu8; 100_000];
    // A 1 MiB + 1 body (over --web.max-request-bytes), sent as is.
    let too_big = vec![0u8; MAX_REQUEST + 1];
    vec![
        case("empty body", vec![], &[400]),
        case("not snappy", b"this is not snappy at all".to_vec(), &[400]),
        case(
            "truncated snappy",
            compress(valid_proto)[..valid_proto.len() / 2 + 1].to_vec(),
            &[400],
        ),
        case(
            "truncated protobuf",
            compress(&valid_proto[..valid_proto.len() - 3]),
            &[400],
        ),
        case("snappy declares 4 GiB", huge_snappy, &[413]),
        case("snappy declares cap + 1", over_cap, &[413]),
        case("decompression bomb", bomb, &[413]),
        case(
            "protobuf length prefix 2^62",
            compress(&huge_prefix),
            &[400],
        ),
        case("100k nested groups", compress(&nested), &[400]),
        case("random bytes compressed", compress(&[0xff; 4096]), &[400]),
        case("body over max-request-bytes", too_big, &[413]),
    ]
}

fn write_corpus() -> Vec<Case> {
    let valid = write_body(&label(b"job", b"ok"));
    let mut v = common_corpus(&valid);
    v.push(case(
        "invalid UTF-8 in label value",
        compress(&write_body(&label(b"job", b"\xff\xfe"))),
        &[400],
    ));
    v.push(case(
        "invalid UTF-8 in label name",
        compress(&write_body(&label(b"j\xc3\x28b", b"x"))),
        &[400],
    ));
    // 10^6 labels in one series: more than Timestream's 128 dimensions, so the series
    // is refused (400) or skipped and counted (2xx); either way nothing unbounded.
    let many: Vec<u8> = label(b"l", b"v").repeat(1_000_000);
    v.push(case(
        "10^6 labels",
        compress(&write_body(&many)),
        &[200, 204, 400],
    ));
    v.push(case(
        "10^6 empty series",
        compress(&[0x0a, 0x00].repeat(1_000_000)),
        &[200, 204, 400],
    ));
    let mut gz = case("Content-Encoding gzip", compress(&valid), &[415]);
    gz.headers.push(("Content-Encoding", "gzip"));
    v.push(gz);
    // 2.0's schema reserves 1.0's field numbers: an empty 2.0 request, nothing written.
    let mut rw2 = case(
        "1.0 body labelled remote write 2.0",
        compress(&valid),
        &[204],
    );
    rw2.headers.push((
        "Content-Type",
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    ));
    v.push(rw2);
    v
}

fn read_body(matchers: Vec<LabelMatcher>) -> Vec<u8> {
    ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: now_ms(),
            matchers,
            hints: None,
        }],
        accepted_response_types: vec![],
    }
    .encode_to_vec()
}

fn eq(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: T::Eq as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn read_corpus() -> Vec<Case> {
    let valid = read_body(vec![eq("__name__", "hostile")]);
    let mut streamed = ReadRequest::decode(valid.as_slice()).unwrap();
    streamed.accepted_response_types = vec![1];
    // A just-created table has no measure_value::double column yet: empty, not 400.
    let mut v = vec![
        case("valid query, fresh table", compress(&valid), &[200]),
        case(
            "streamed query, fresh table",
            compress(&streamed.encode_to_vec()),
            &[200],
        ),
    ];
    v.extend(common_corpus(&valid));
    // Query{matchers: [{type: EQ, name: "\xff", value: "x"}]}
    let mut m = field(0x12, b"\xff");
    m.extend(field(0x1a, b"x"));
    let bad_utf8 = field(0x0a, &field(0x1a, &m));
    v.push(case(
        "invalid UTF-8 in matcher name",
        compress(&bad_utf8),
        &[400],
    ));
    v.push(case(
        "unknown matcher type",
        compress(&read_body(vec![LabelMatcher {
            r#type: 9,
            name: "job".into(),
            value: "x".into(),
        }])),
        &[400],
    ));
    v.push(case(
        "invalid regex",
        compress(&read_body(vec![LabelMatcher {
            r#type: T::Re as i32,
            name: "job".into(),
            value: "(unclosed".into(),
        }])),
        &[400],
    ));
    v.push(case(
        "only unsupported response types",
        compress(
            &ReadRequest {
                queries: vec![],
                accepted_response_types: vec![7],
            }
            .encode_to_vec(),
        ),
        &[400],
    ));
    // 10^5 matchers on the metric name: refused (the SQL would exceed Timestream's
    // 256 KiB QueryString limit) without harm.
    let many: Vec<LabelMatcher> = (0..100_000)
        .map(|i| LabelMatcher {
            r#type: T::Neq as i32,
            name: "__name__".into(),
            value: format!("value-{i}"),
        })
        .collect();
    v.push(case("10^5 matchers", compress(&read_body(many)), &[400]));
    // Like /write: an encoding the connector cannot read is 415, not a snappy error.
    let mut gz = case("gzip body", b"\x1f\x8b\x08\x00garbage".to_vec(), &[415]);
    gz.headers.push(("Content-Encoding", "gzip"));
    v.push(gz);
    v
}

async fn send(env: &Env, path: &str, c: &Case) -> (u16, String) {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ]
    .iter()
    .chain(&c.headers)
    {
        // insert, not append: a case's header replaces the default one.
        headers.insert(*k, v.parse().unwrap());
    }
    let r = env
        .http
        .post(format!("{}{path}", env.url))
        .basic_auth(AKID, Some(SECRET))
        .headers(headers)
        .timeout(Duration::from_secs(60));
    let resp = r.body(c.body.clone()).send().await.unwrap_or_else(|e| {
        panic!("{path} {}: connector did not answer: {e}", c.name);
    });
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn run_corpus(env: &Env, path: &str, corpus: Vec<Case>) {
    for c in corpus {
        let started = Instant::now();
        let before = ALLOC.allocated();
        let (status, body) = send(env, path, &c).await;
        eprintln!(
            "{path} {:<34} {:>8} bytes → {status} in {:?}, process peak {} MiB (+{} MiB live after), {}-byte answer: {:.200}",
            c.name,
            c.body.len(),
            started.elapsed(),
            ALLOC.max_allocated() >> 20,
            ALLOC.allocated().saturating_sub(before) >> 20,
            body.len(),
            body.trim()
        );
        assert!(
            c.want.contains(&status),
            "{path} {}: status {status}, want one of {:?}: {body}",
            c.name,
            c.want
        );
        if status >= 400 {
            // Readable: a sentence, not an empty body or binary, and short whatever the
            // request held (error text echoes series, and 10^6 labels once made a 7 MB
            // answer and log line).
            assert!(
                body.len() <= 16 * 1024,
                "{path} {}: {}-byte error body",
                c.name,
                body.len()
            );
            let text = body.trim();
            assert!(
                text.len() >= 10 && text.chars().any(char::is_alphabetic),
                "{path} {}: unreadable error body {body:?}",
                c.name
            );
        }
    }
}

fn start_options() -> EnvOptions {
    EnvOptions {
        args: vec![
            "--max-write-retries=2".into(),
            format!("--web.max-request-bytes={MAX_REQUEST}"),
            format!("--web.max-decompressed-bytes={MAX_DECOMPRESSED}"),
        ],
        ..EnvOptions::default()
    }
}

async fn normal_write_and_read(env: &Env, value: f64) {
    let t = now_ms();
    let (st, body) = env
        .write(&request(vec![series(
            &[("__name__", "after_corpus"), ("job", "ok")],
            &[(value, t)],
        )]))
        .await;
    assert_eq!(st, 200, "normal write after the corpus: {body}");
    let resp = env
        .http
        .post(format!("{}/read", env.url))
        .basic_auth(AKID, Some(SECRET))
        .body(compress(&read_body(vec![eq("__name__", "after_corpus")])))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&resp.bytes().await.unwrap())
        .unwrap();
    let rr = ReadResponse::decode(raw.as_slice()).unwrap();
    let values: Vec<f64> = rr.results[0]
        .timeseries
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.value))
        .collect();
    assert!(values.contains(&value), "{values:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_corpus_gets_4xx_and_server_keeps_serving() {
    let env = start_with(start_options()).await;
    run_corpus(&env, "/write", write_corpus()).await;
    normal_write_and_read(&env, 1.5).await;
    // Nothing hostile was stored.
    let rows = env.rows(DB, TABLE).await;
    assert!(
        rows.iter()
            .all(|r| r.get("measure_name").map(String::as_str) == Some("after_corpus")),
        "{rows:?}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_corpus_gets_4xx_and_server_keeps_serving() {
    let env = start_with(start_options()).await;
    run_corpus(&env, "/read", read_corpus()).await;
    normal_write_and_read(&env, 2.5).await;
    env.shutdown().await;
}
