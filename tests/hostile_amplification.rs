//! Amplification: the extra memory one request makes the connector allocate, for every
//! shape of body known to amplify (valid and malformed), must stay within
//! `FACTOR` × its decompressed size plus a fixed `ALLOWANCE` (issue 13), and the work
//! before the first AWS call must be quick.
//!
//! Each request goes through the real router (`app`) in this process, against an
//! in-process timestream-local store. A counting allocator keeps the live bytes and their
//! high-water mark, reset when a request starts. Tests run one at a time: the counter is
//! process-wide (the store's allocations count too).
//!
//! `AMPLIFICATION_REPORT=1` prints every shape's numbers (the table in
//! documentation/security.md comes from it).

mod common;

use std::alloc::System;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request};
use base64::Engine;
use common::*;
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};
use prost::Message;
use timestream_prometheus_connector::app;
use timestream_prometheus_connector::remote::codec::compress;
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as T, LabelMatcher, Query, ReadRequest,
};
use tower::ServiceExt;

/// Counts the live bytes allocated since its last reset and their high-water mark: exact,
/// where a sampler thread could miss a short peak on a loaded machine.
#[global_allocator]
static ALLOC: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Extra live bytes allowed per decompressed byte.
const FACTOR: usize = 4;
/// Fixed allowance per request: buffers of the HTTP stack and runtime, the SDK call, a
/// regex's parse tree and HIR at the matcher cap, prost's structs at the count caps.
const ALLOWANCE: usize = 8 << 20;
/// Wall-clock bound for a request refused before any AWS call (generous for debug
/// builds on a loaded 2-core machine; the amplified shapes took seconds).
const REFUSAL_TIME: Duration = Duration::from_millis(1500);

/// Decompressed size of the write shapes.
const WRITE_BYTES: usize = 1 << 20;

/// Tests of this binary run one at a time: the allocation counter is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Peak live bytes above the level at the start while `f` runs.
async fn peak_of<F: std::future::Future>(f: F) -> (F::Output, usize) {
    ALLOC.reset_peak_memory();
    let out = f.await;
    (out, ALLOC.get_peak_memory())
}

fn varint(n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    prost::encoding::encode_varint(n, &mut v);
    v
}

fn key(tag: u32, wire_type: u8) -> Vec<u8> {
    varint(u64::from(tag << 3 | u32::from(wire_type)))
}

fn len_field(tag: u32, body: &[u8]) -> Vec<u8> {
    [key(tag, 2), varint(body.len() as u64), body.to_vec()].concat()
}

/// `{__name__="amp"}` as a series' label field.
fn name_label() -> Vec<u8> {
    len_field(
        1,
        &[len_field(1, b"__name__"), len_field(2, b"amp")].concat(),
    )
}

/// One series: its name label then `n` copies of `element`, then `tail` (a malformed
/// suffix, or nothing), filling about `WRITE_BYTES`.
fn one_series(element: &[u8], tail: &[u8]) -> Vec<u8> {
    let n = WRITE_BYTES / element.len();
    let body = [name_label(), element.repeat(n), tail.to_vec()].concat();
    len_field(1, &body)
}

/// A truncated field: a length-delimited key with no length after it.
const CUT: &[u8] = &[0x22];

struct Shape {
    name: String,
    route: &'static str,
    /// `Content-Type` of the request.
    content_type: &'static str,
    /// Uncompressed body.
    raw: Vec<u8>,
    /// Refused before any AWS call (so it must also be quick).
    refused: bool,
}

const PROTOBUF: &str = "application/x-protobuf";
const RW2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn write(name: &str, raw: Vec<u8>, refused: bool) -> Shape {
    Shape {
        name: name.to_string(),
        route: "/write",
        content_type: PROTOBUF,
        raw,
        refused,
    }
}

/// The symbols `""`, `__name__`, `amp` of a 2.0 request.
fn v2_symbols() -> Vec<u8> {
    [
        len_field(4, b""),
        len_field(4, b"__name__"),
        len_field(4, b"amp"),
    ]
    .concat()
}

/// A 2.0 series of `{__name__="amp"}` and one empty sample: 8 bytes.
const V2_MINIMAL: [u8; 8] = [0x2a, 0x06, 0x0a, 0x02, 0x01, 0x02, 0x12, 0x00];

/// A shape whose cost would be per element (series, label, symbol, ref), built at about
/// `size` bytes: (name, content type, body).
type Scalable = (&'static str, &'static str, Vec<u8>);

/// Every shape that could cost per series or per label, at about `size` bytes: what the
/// view and the plan keep per series and per label (decoded, planned and sent a window at
/// a time) must not grow with the body.
fn scalable_shapes(size: usize) -> Vec<Scalable> {
    // `{__name__="amp"}` and one empty sample: 19 bytes (21 with the series' header).
    let minimal = len_field(1, &[name_label(), len_field(2, &[])].concat());
    // 100 labels of two-letter names and one-letter values besides the name: 820 bytes.
    let labels: Vec<u8> = (0..100u8)
        .flat_map(|i| {
            let n = [b'a' + i / 26, b'a' + i % 26];
            len_field(1, &[len_field(1, &n), len_field(2, b"v")].concat())
        })
        .collect();
    let wide = len_field(1, &[name_label(), labels, len_field(2, &[])].concat());
    // One series of 8-byte labels (skipped as too many labels; the view keeps 257).
    let label = len_field(1, &[len_field(1, b"a"), len_field(2, b"b")].concat());
    let one = [
        name_label(),
        label.repeat(size / label.len()),
        len_field(2, &[]),
    ];
    // 2.0: empty symbols (2 bytes each) and one series that uses the first three; one
    // series of one-byte refs (every pair `__name__`="amp").
    let symbols = [
        v2_symbols(),
        len_field(4, b"").repeat(size / 2),
        V2_MINIMAL.to_vec(),
    ];
    let refs = len_field(
        5,
        &[len_field(1, &[1, 2].repeat(size / 2)), len_field(2, &[])].concat(),
    );
    vec![
        (
            "minimal series",
            PROTOBUF,
            minimal.repeat(size / minimal.len()),
        ),
        (
            "series of 100 short labels",
            PROTOBUF,
            wide.repeat(size / wide.len()),
        ),
        (
            "one series of 8-byte labels",
            PROTOBUF,
            len_field(1, &one.concat()),
        ),
        (
            "2.0 minimal series",
            RW2,
            [v2_symbols(), V2_MINIMAL.repeat(size / V2_MINIMAL.len())].concat(),
        ),
        ("2.0 empty symbols", RW2, symbols.concat()),
        (
            "2.0 one series of one-byte refs",
            RW2,
            [v2_symbols(), refs].concat(),
        ),
    ]
}

fn write_shapes() -> Vec<Shape> {
    let mut v = Vec::new();
    // Each element in a valid body, and the same body with one bad byte at its end (the
    // view refuses it; the old code then decoded it all again with prost).
    let elements: [(&str, Vec<u8>); 4] = [
        ("empty histograms", len_field(4, &[])),
        ("empty exemplars", len_field(3, &[])),
        ("empty labels", len_field(1, &[])),
        ("empty samples", len_field(2, &[])),
    ];
    for (name, el) in elements {
        v.push(write(name, one_series(&el, &[]), false));
        v.push(write(
            &format!("{name}, malformed"),
            one_series(&el, CUT),
            true,
        ));
    }
    // Distinct minimal native histograms (only a timestamp, 1 or 2, alternating: a
    // histogram equal to the one before it is one record, so these are all planned).
    let hist = [len_field(4, &[0x78, 1]), len_field(4, &[0x78, 2])].concat();
    v.push(write(
        "distinct minimal histograms",
        one_series(&hist, &[]),
        false,
    ));
    v.push(write(
        "distinct minimal histograms, malformed",
        one_series(&hist, CUT),
        true,
    ));
    // One histogram holding only empty bucket spans (positive_spans, field 11).
    let spans = |tail: &[u8]| {
        let n = WRITE_BYTES / 2;
        let h = [len_field(11, &[]).repeat(n), tail.to_vec()].concat();
        len_field(1, &[name_label(), len_field(4, &h)].concat())
    };
    v.push(write("empty bucket spans", spans(&[]), false));
    v.push(write("empty bucket spans, malformed", spans(&[0x5a]), true));
    // Series with nothing in them.
    let series = len_field(1, &[]).repeat(WRITE_BYTES / 2);
    v.push(write("empty series", series.clone(), false));
    v.push(write(
        "empty series, malformed",
        [series, vec![0x0a]].concat(),
        true,
    ));
    // Per-element shapes, each with a malformed end: a cut series in 1.0, and in 2.0 a last
    // series that refers to symbol 9 of 3 (found when that series is decoded).
    for (name, content_type, body) in scalable_shapes(WRITE_BYTES) {
        let bad: &[u8] = match content_type {
            RW2 => &[0x2a, 0x04, 0x0a, 0x02, 0x01, 0x09],
            _ => &[0x0a],
        };
        let shape = |name: String, raw, refused| Shape {
            name,
            content_type,
            ..write("", raw, refused)
        };
        v.push(shape(name.to_string(), body.clone(), false));
        v.push(shape(
            format!("{name}, malformed"),
            [body, bad.to_vec()].concat(),
            true,
        ));
    }
    // Metadata entries (decoded one at a time).
    let meta = len_field(3, &[]).repeat(WRITE_BYTES / 2);
    v.push(write("empty metadata", meta.clone(), false));
    v.push(write(
        "empty metadata, malformed",
        [meta, vec![0x1a]].concat(),
        true,
    ));
    // Unknown fields as groups nested 99 deep (prost's limit is 100), repeated; then one
    // group too deep at the end.
    let nest = |depth: usize| {
        let open: Vec<u8> = (0..depth).flat_map(|_| key(20, 3)).collect();
        let close: Vec<u8> = (0..depth).flat_map(|_| key(20, 4)).collect();
        [open, key(21, 0), vec![1], close].concat()
    };
    let deep = nest(99);
    let deep = deep.repeat(WRITE_BYTES / deep.len());
    v.push(write("deep group nesting", deep.clone(), false));
    v.push(write(
        "deep group nesting, malformed",
        [deep, nest(101)].concat(),
        true,
    ));
    v
}

fn read(name: &str, req: Vec<u8>, refused: bool) -> Shape {
    Shape {
        name: name.to_string(),
        route: "/read",
        content_type: PROTOBUF,
        raw: req,
        refused,
    }
}

fn query(matchers: Vec<LabelMatcher>) -> Query {
    Query {
        start_timestamp_ms: 0,
        end_timestamp_ms: now_ms(),
        matchers,
        hints: None,
    }
}

fn request_of(queries: Vec<Query>) -> Vec<u8> {
    ReadRequest {
        queries,
        accepted_response_types: vec![],
    }
    .encode_to_vec()
}

fn re(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: T::Re as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn read_shapes() -> Vec<Shape> {
    let mut v = Vec::new();
    // Empty queries: at the count cap (each one is a Timestream call: refused by the
    // planner here, as an empty matcher list selects everything and the store answers) and over it.
    v.push(read(
        "1,000 empty queries",
        [0x0a, 0x00].repeat(1000),
        false,
    ));
    v.push(read(
        "20,000 empty queries",
        [0x0a, 0x00].repeat(20_000),
        true,
    ));
    // Empty matchers in one query: at the cap and over it, and malformed.
    let matchers = |n: usize, tail: &[u8]| {
        len_field(1, &[len_field(3, &[]).repeat(n), tail.to_vec()].concat())
    };
    v.push(read("20,000 empty matchers", matchers(20_000, &[]), true));
    v.push(read("20,001 empty matchers", matchers(20_001, &[]), true));
    v.push(read(
        "20,000 empty matchers, malformed",
        matchers(20_000, &[0x1a]),
        true,
    ));
    // Accepted response types: a packed run of one-byte enums.
    let types = len_field(2, &vec![0u8; WRITE_BYTES]);
    v.push(read(
        "1 MiB of accepted response types",
        [len_field(1, &[]), types.clone()].concat(),
        true,
    ));
    v.push(read(
        "1 MiB of accepted response types, malformed",
        [types, vec![0x12]].concat(),
        true,
    ));
    // Regexes whose translation expands.
    // (name, pattern, refused)
    let regexes: Vec<(&str, String, bool)> = vec![
        ("\\pL × 20,000", "\\pL".repeat(20_000), true),
        ("\\pL × 5,000", "\\pL".repeat(5_000), true),
        (
            "(?i) over 60,000 letters",
            format!("(?i){}", "k".repeat(60_000)),
            true,
        ),
        (
            "(?i) over 16,000 letters",
            format!("(?i){}", "k".repeat(16_000)),
            false,
        ),
        ("\\p{Greek}{1000}", "\\p{Greek}{1000}".to_string(), false),
        (
            "(\\p{Greek}{1000}){1000}",
            "(\\p{Greek}{1000}){1000}".to_string(),
            false,
        ),
        ("[\\pL\\pN] × 3,000", "[\\pL\\pN]".repeat(3_000), true),
        ("[\\pL\\pN] × 40", "[\\pL\\pN]".repeat(40), true),
        (
            "250 nested groups",
            format!("{}a{}", "(".repeat(250), ")".repeat(250)),
            false,
        ),
        (
            "5,000 nested groups",
            format!("{}a{}", "(".repeat(5000), ")".repeat(5000)),
            true,
        ),
        // Refused: each class is costed alone (an upper bound), although regex-syntax
        // would merge the alternation into one class.
        (
            "1,500 alternated classes",
            vec!["\\p{Greek}"; 1_500].join("|"),
            true,
        ),
        (
            "5,000 alternated classes",
            vec!["\\p{Greek}"; 5_000].join("|"),
            true,
        ),
    ];
    for (name, r, refused) in regexes {
        v.push(read(
            &format!("regex {name}"),
            request_of(vec![query(vec![re("__name__", &r)])]),
            refused,
        ));
    }
    // Many matchers, each far below the SQL limit, together far above it.
    let many: Vec<LabelMatcher> = (0..200)
        .map(|_| re("__name__", &"\\pL".repeat(50)))
        .collect();
    v.push(read(
        "200 matchers of \\pL × 50",
        request_of(vec![query(many)]),
        true,
    ));
    // One long equality value (over the matcher cap) and the same split in many.
    v.push(read(
        "1 MiB equality value",
        request_of(vec![query(vec![LabelMatcher {
            r#type: T::Eq as i32,
            name: "__name__".into(),
            value: "x".repeat(WRITE_BYTES),
        }])]),
        true,
    ));
    let many_eq: Vec<LabelMatcher> = (0..100)
        .map(|_| LabelMatcher {
            r#type: T::Neq as i32,
            name: "__name__".into(),
            value: "x".repeat(10_000),
        })
        .collect();
    v.push(read(
        "100 inequality values of 10 kB",
        request_of(vec![query(many_eq)]),
        true,
    ));
    v
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{AKID}:{SECRET}"))
    )
}

fn http_request(route: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(route)
        .header(header::AUTHORIZATION, basic())
        .header(header::CONTENT_ENCODING, "snappy")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

struct Measured {
    status: u16,
    peak: usize,
    elapsed: Duration,
}

async fn measure(router: &axum::Router, route: &str, content_type: &str, raw: &[u8]) -> Measured {
    let req = http_request(route, content_type, compress(raw));
    let started = Instant::now();
    let (status, peak) = peak_of(async {
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
        status
    })
    .await;
    Measured {
        status,
        peak,
        elapsed: started.elapsed(),
    }
}

async fn env() -> Env {
    start_with(EnvOptions {
        args: vec![
            "--max-write-retries=1".into(),
            "--max-read-retries=1".into(),
            "--web.max-request-bytes=16777216".into(),
            "--web.max-decompressed-bytes=16777216".into(),
            "--log.level=error".into(),
            // A debug build takes tens of seconds over the thousands of refused calls of
            // some valid shapes; cut short, their peak would be measured short too.
            "--web.request-timeout=120s".into(),
        ],
        ..EnvOptions::default()
    })
    .await
}

/// Runs every shape, prints a line each, and returns the failures.
async fn run(shapes: Vec<Shape>) -> Vec<String> {
    let env = env().await;
    let router = app(env.state.clone());
    // Warm up: clients built, columns cached, lazily initialised statics allocated.
    for route in ["/write", "/read"] {
        let warm = match route {
            "/write" => one_series(&len_field(4, &[]), &[])[..64].to_vec(),
            _ => request_of(vec![query(vec![re("__name__", "x")])]),
        };
        let _ = measure(&router, route, PROTOBUF, &warm).await;
        let _ = measure(&router, route, PROTOBUF, &warm).await;
    }
    let report = std::env::var_os("AMPLIFICATION_REPORT").is_some();
    let mut failures = Vec::new();
    for s in shapes {
        let m = measure(&router, s.route, s.content_type, &s.raw).await;
        let bound = FACTOR * s.raw.len() + ALLOWANCE;
        let line = format!(
            "{} {}: {} bytes decompressed → status {}, peak {} bytes ({:.1}×; bound {bound}), {} ms",
            s.route,
            s.name,
            s.raw.len(),
            m.status,
            m.peak,
            m.peak as f64 / s.raw.len() as f64,
            m.elapsed.as_millis()
        );
        if report {
            eprintln!("{line}");
        }
        if m.peak > bound {
            failures.push(format!("over the memory bound: {line}"));
        }
        if s.refused && !(400..500).contains(&m.status) {
            failures.push(format!("not refused: {line}"));
        }
        if s.refused && m.elapsed > REFUSAL_TIME {
            failures.push(format!("slow refusal: {line}"));
        }
        if s.refused && m.status >= 500 {
            failures.push(format!("server error: {line}"));
        }
    }
    env.shutdown().await;
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_shapes_stay_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let failures = run(write_shapes()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_shapes_stay_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let failures = run(read_shapes()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fixed allowance must not hide a cost per element: the per-element shapes at 1 MiB
/// and at 4 MiB, and the peak may grow by at most `FACTOR` × the 3 MiB added (a view and
/// plan of the whole body grew by ~21 bytes per byte for 1.0 minimal series).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_series_cost_does_not_grow_with_the_body() {
    let _serial = SERIAL.lock().await;
    let env = env().await;
    let router = app(env.state.clone());
    let small = scalable_shapes(WRITE_BYTES);
    let large = scalable_shapes(4 * WRITE_BYTES);
    // Warm up, as `run` does.
    for _ in 0..2 {
        let _ = measure(&router, "/write", PROTOBUF, &small[0].2).await;
    }
    let mut failures = Vec::new();
    for ((name, content_type, s), (_, _, l)) in small.into_iter().zip(large) {
        // The first request of a shape also grows caches once (the store's among them):
        // measured twice at the small size, the second one counts.
        let _ = measure(&router, "/write", content_type, &s).await;
        let m1 = measure(&router, "/write", content_type, &s).await;
        let m2 = measure(&router, "/write", content_type, &l).await;
        let slope = m2.peak.saturating_sub(m1.peak) as f64 / (l.len() - s.len()) as f64;
        let line = format!(
            "{name}: {} bytes → peak {} (status {}); {} bytes → peak {} (status {}); {slope:.2} bytes per added byte",
            s.len(), m1.peak, m1.status, l.len(), m2.peak, m2.status
        );
        eprintln!("{line}");
        if slope > FACTOR as f64 || m1.status == 503 || m2.status == 503 {
            failures.push(line);
        }
    }
    env.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
