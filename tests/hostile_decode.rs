//! Hostile bodies fed straight to the snappy + protobuf decoders of WriteRequest and
//! ReadRequest (the code `/write` and `/read` run first): arbitrary bytes, mutated and
//! truncated valid bodies, huge declared lengths in the snappy header and in protobuf
//! length prefixes. Properties: never a panic, always a typed error or a message, and
//! memory bounded by the configured cap — the snappy output buffer never exceeds the
//! decompressed-bytes cap (its declared length is checked before allocating), and the
//! decoded message stays within a fixed factor of the decompressed size.
//!
//! The `cap` allocator (stats feature) counts every byte allocated during one decode;
//! tests in this binary are serialised so the count is the decoder's alone.

use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

use cap::Cap;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use prost::Message;
use timestream_prometheus_connector::http::read::{
    MAX_MATCHERS_PER_REQUEST, MAX_QUERIES_PER_REQUEST,
};
use timestream_prometheus_connector::remote::codec::{
    compress, decode_write_request, decode_write_request_view, decompress, CodecError,
};
use timestream_prometheus_connector::remote::pb::{
    label_matcher::Type as MT, Label, LabelMatcher, Query, ReadHints, ReadRequest, Sample,
    TimeSeries, WriteRequest,
};
use timestream_prometheus_connector::remote::view::read_request_counts;

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// Tests of this binary run one at a time: the allocation counters are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bytes allocated while running `f` (every allocation and growth counted in full, so
/// it bounds both the peak of live memory and the largest single allocation).
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOC.total_allocated();
    let out = f();
    (out, ALLOC.total_allocated() - before)
}

/// Decompressed-bytes cap used by the properties (small, so bombs are cheap to build).
const LIMIT: usize = 64 * 1024;

/// Worst bytes allocated per decompressed byte while prost decodes: the largest struct
/// (`Histogram`, `Query`, `TimeSeries`) built from its 2-byte empty encoding, doubled for
/// `Vec` growth. Measured by `amplification_is_bounded_and_reported` below.
const MAX_AMPLIFICATION: usize = 512;

fn decode_read_request(body: &[u8], limit: usize) -> Result<ReadRequest, String> {
    // Same steps as `http::read`: decompress with the cap, count queries and matchers
    // without decoding, then prost.
    let raw = decompress(body, limit).map_err(|e| e.to_string())?;
    let counts = read_request_counts(&raw).map_err(|e| e.to_string())?;
    if counts.queries > MAX_QUERIES_PER_REQUEST || counts.matchers > MAX_MATCHERS_PER_REQUEST {
        return Err(format!("too many: {counts:?}"));
    }
    ReadRequest::decode(raw.as_slice()).map_err(|e| e.to_string())
}

/// Checks every property for one hostile body.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    // The decompressed length snappy would allocate, if its header parses.
    let declared = snap::raw::decompress_len(body).ok();
    let (w, used) = measure(|| decode_write_request(body, LIMIT));
    match &w {
        Err(CodecError::TooLarge { declared: d, limit }) => {
            prop_assert_eq!(*limit, LIMIT);
            prop_assert_eq!(Some(*d), declared);
            prop_assert!(*d > LIMIT);
            // Refused before any buffer of that size existed.
            prop_assert!(used < 4096, "allocated {used} bytes before refusing");
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(_) => {}
    }
    if let Some(d) = declared {
        if d > LIMIT {
            prop_assert!(
                matches!(w, Err(CodecError::TooLarge { .. })),
                "declared {d} > cap yet {w:?}"
            );
        }
    }
    // The snappy buffer is the only allocation sized by the body's claims; everything
    // prost builds is proportional to bytes actually present.
    let bound = LIMIT + MAX_AMPLIFICATION * declared.unwrap_or(0).min(LIMIT) + 64 * 1024;
    prop_assert!(used <= bound, "allocated {used} > bound {bound}");

    // The borrowing decoder /write uses: same refusals, same bound.
    let (v, used) = measure(|| {
        decompress(body, LIMIT).and_then(|raw| decode_write_request_view(&raw).map(|_| ()))
    });
    prop_assert_eq!(v.is_ok(), w.is_ok(), "view and prost disagree");
    prop_assert!(used <= bound, "view: allocated {used} > bound {bound}");

    let (r, used) = measure(|| decode_read_request(body, LIMIT));
    if let Err(msg) = &r {
        prop_assert!(!msg.is_empty());
    }
    prop_assert!(used <= bound, "read: allocated {used} > bound {bound}");
    Ok(())
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,8}",
        any::<String>(),
        Just("\u{0}'\"\\".to_string())
    ]
}

fn arb_write_request() -> impl Strategy<Value = WriteRequest> {
    let label = (arb_string(), arb_string()).prop_map(|(name, value)| Label { name, value });
    let sample =
        (any::<f64>(), any::<i64>()).prop_map(|(value, timestamp)| Sample { value, timestamp });
    let series = (
        prop::collection::vec(label, 0..6),
        prop::collection::vec(sample, 0..4),
    )
        .prop_map(|(labels, samples)| TimeSeries {
            labels,
            samples,
            ..Default::default()
        });
    prop::collection::vec(series, 0..5).prop_map(|timeseries| WriteRequest {
        timeseries,
        ..Default::default()
    })
}

fn arb_read_request() -> impl Strategy<Value = ReadRequest> {
    let matcher = (0i32..6, arb_string(), arb_string()).prop_map(|(t, name, value)| LabelMatcher {
        r#type: t,
        name,
        value,
    });
    let query = (
        any::<i64>(),
        any::<i64>(),
        prop::collection::vec(matcher, 0..5),
        any::<bool>(),
    )
        .prop_map(|(s, e, matchers, h)| Query {
            start_timestamp_ms: s,
            end_timestamp_ms: e,
            matchers,
            hints: h.then(|| ReadHints {
                step_ms: 1,
                func: "rate".into(),
                start_ms: s,
                end_ms: e,
                grouping: vec!["job".into()],
                by: true,
                range_ms: 5,
            }),
        });
    (
        prop::collection::vec(query, 0..4),
        prop::collection::vec(-2i32..3, 0..3),
    )
        .prop_map(|(queries, accepted_response_types)| ReadRequest {
            queries,
            accepted_response_types,
        })
}

/// A valid protobuf body (write or read), as raw protobuf bytes.
fn arb_valid_proto() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        arb_write_request().prop_map(|r| r.encode_to_vec()),
        arb_read_request().prop_map(|r| r.encode_to_vec()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// Overwrite with a 10-byte varint of a huge value (a length prefix claiming GiBs).
    HugeVarint(usize, u64),
}

fn apply(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let at = |i: usize| if v.is_empty() { 0 } else { i % (v.len() + 1) };
        match m {
            Mutation::Flip(i, x) => {
                if !v.is_empty() {
                    let i = i % v.len();
                    v[i] ^= x | 1;
                }
            }
            Mutation::Truncate(i) => {
                let i = at(*i);
                v.truncate(i);
            }
            Mutation::Insert(i, bytes) => {
                let i = at(*i);
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::HugeVarint(i, n) => {
                let i = at(*i);
                let mut buf = Vec::new();
                prost::encoding::encode_varint(*n, &mut buf);
                v.splice(i..i, buf);
            }
        }
    }
    v
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                Just(u64::MAX),
                Just(1u64 << 32),
                Just(1u64 << 31),
                any::<u64>()
            ]
        )
            .prop_map(|(i, n)| Mutation::HugeVarint(i, n)),
    ]
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    })
}

#[test]
fn arbitrary_bytes_never_panic() {
    let _serial = serial();
    runner(2000)
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |b| {
            check_body(&b)
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_behind_a_valid_snappy_header() {
    let _serial = serial();
    // Compressed garbage: gets past snappy, exercises the protobuf decoders.
    runner(2000)
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |b| {
            check_body(&compress(&b))
        })
        .unwrap();
}

#[test]
fn mutated_valid_bodies() {
    let _serial = serial();
    let strat = (
        arb_valid_proto(),
        prop::collection::vec(arb_mutation(), 1..4),
        any::<bool>(),
    );
    runner(1500)
        .run(&strat, |(proto, muts, after_compress)| {
            // Mutate the protobuf (then compress: valid snappy, hostile protobuf) or the
            // compressed body (hostile snappy).
            let body = if after_compress {
                apply(compress(&proto), &muts)
            } else {
                compress(&apply(proto, &muts))
            };
            check_body(&body)
        })
        .unwrap();
}

#[test]
fn truncated_valid_bodies() {
    let _serial = serial();
    runner(500)
        .run(
            &(arb_valid_proto(), any::<prop::sample::Index>()),
            |(proto, i)| {
                let full = compress(&proto);
                let cut = i.index(full.len().max(1));
                check_body(&full[..cut])?;
                let cut = i.index(proto.len().max(1));
                check_body(&compress(&proto[..cut]))
            },
        )
        .unwrap();
}

#[test]
fn huge_declared_snappy_lengths() {
    let _serial = serial();
    // The snappy header is a varint of the decompressed length: claim anything up to
    // u32::MAX (snap's format limit) in front of valid or garbage data.
    let strat = (
        prop_oneof![
            (LIMIT as u64 + 1)..=u32::MAX as u64,
            Just(u32::MAX as u64),
            Just(u64::MAX)
        ],
        prop::collection::vec(any::<u8>(), 0..64),
    );
    runner(500)
        .run(&strat, |(n, rest)| {
            let mut body = Vec::new();
            prost::encoding::encode_varint(n, &mut body);
            body.extend(rest);
            check_body(&body)?;
            let (r, used) = measure(|| decode_write_request(&body, LIMIT));
            prop_assert!(r.is_err());
            prop_assert!(used < 4096, "allocated {used} for a {n}-byte claim");
            Ok(())
        })
        .unwrap();
}

#[test]
fn huge_protobuf_length_prefixes() {
    let _serial = serial();
    // Field 1 (timeseries / queries), wire type 2, with a length far beyond the data,
    // nested a few levels deep: prost must refuse without reserving that length.
    let strat = (
        prop::collection::vec(
            prop_oneof![Just(0x0au8), Just(0x12), Just(0x1a), Just(0x22)],
            1..5,
        ),
        prop_oneof![
            Just(u64::MAX),
            Just(1u64 << 40),
            Just(u32::MAX as u64),
            1000u64..1 << 33
        ],
        prop::collection::vec(any::<u8>(), 0..32),
    );
    runner(500)
        .run(&strat, |(tags, len, tail)| {
            let mut proto = Vec::new();
            for t in &tags {
                proto.push(*t);
                prost::encoding::encode_varint(len, &mut proto);
            }
            proto.extend(tail);
            let body = compress(&proto);
            check_body(&body)?;
            let (w, used) = measure(|| decode_write_request(&body, LIMIT));
            prop_assert!(matches!(w, Err(CodecError::Protobuf { .. })), "{w:?}");
            prop_assert!(used < 64 * 1024, "allocated {used} for a {len}-byte prefix");
            Ok(())
        })
        .unwrap();
}

#[test]
fn valid_bodies_round_trip_within_the_cap() {
    let _serial = serial();
    runner(300)
        .run(&arb_write_request(), |req| {
            let body = compress(&req.encode_to_vec());
            let got = decode_write_request(&body, LIMIT);
            if req.encoded_len() <= LIMIT {
                // Compare encodings: NaN values make `==` on messages useless.
                prop_assert_eq!(got.unwrap().encode_to_vec(), req.encode_to_vec());
            } else {
                let too_large = matches!(got, Err(CodecError::TooLarge { .. }));
                prop_assert!(too_large);
            }
            Ok(())
        })
        .unwrap();
}

/// Deepest legal amplification: bodies made only of empty sub-messages (2 bytes each
/// on the wire) decode to whole structs. Measures the factor the bound above relies
/// on and prints it (see documentation/security.md).
#[test]
fn amplification_is_bounded_and_reported() {
    let _serial = serial();
    let n = 20_000usize;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // WriteRequest{timeseries: n × {}}
    cases.push(("empty TimeSeries", [0x0a, 0x00].repeat(n)));
    // One TimeSeries holding n empty labels / samples / exemplars / histograms.
    for (what, tag) in [
        ("empty Label", 0x0a),
        ("empty Sample", 0x12),
        ("empty Exemplar", 0x1a),
        ("empty Histogram", 0x22),
    ] {
        let inner = [tag, 0x00].repeat(n);
        let mut p = vec![0x0a];
        prost::encoding::encode_varint(inner.len() as u64, &mut p);
        p.extend(inner);
        cases.push((what, p));
    }
    let mut worst = 0.0f64;
    for (what, proto) in &cases {
        let body = compress(proto);
        let (r, used) = measure(|| decode_write_request(&body, 1 << 20));
        assert!(r.is_ok(), "{what}: {r:?}");
        let factor = used as f64 / proto.len() as f64;
        let (v, vused) = measure(|| {
            decompress(&body, 1 << 20).and_then(|raw| decode_write_request_view(&raw).map(|_| ()))
        });
        assert!(v.is_ok(), "{what}: view {v:?}");
        // /write's decoder keeps only labels and series spans: samples, exemplars and
        // native histograms are checked in place and cost nothing per element (prost
        // built a ~200-byte struct per 2-byte empty histogram; the view copied each sample
        // into 16 bytes until issue 13): what remains is the decompressed buffer (1×) and
        // the label array reserved from the body size (1×). Labels stay within a small
        // factor (element size, doubled by Vec growth).
        let vfactor = vused as f64 / proto.len() as f64;
        if what.contains("Exemplar") || what.contains("Histogram") || what.contains("Sample") {
            assert!(
                vfactor < 2.5,
                "{what}: view allocated {vused} bytes ({vfactor:.1}×)"
            );
        }
        assert!(vfactor <= 40.0, "{what}: view allocated {vfactor:.0}×");
        eprintln!(
            "{what}: view decoder (/write) {vused} bytes ({:.0}×)",
            vused as f64 / proto.len() as f64
        );
        worst = worst.max(vused as f64 / proto.len() as f64);
        eprintln!(
            "{what}: {} bytes decompressed → {used} bytes allocated ({factor:.0}×)",
            proto.len()
        );
        worst = worst.max(factor);
    }
    // /read counts queries and matchers before prost decodes: a body of 20,000 empty
    // queries (or 20,001 matchers) is refused having allocated little more than the
    // decompressed buffer; prost alone would have built ~200 bytes per query.
    let one_query_of_matchers = {
        let inner = [0x1a, 0x00].repeat(MAX_MATCHERS_PER_REQUEST + 1);
        let mut p = vec![0x0a];
        prost::encoding::encode_varint(inner.len() as u64, &mut p);
        p.extend(inner);
        p
    };
    for (what, rq) in [
        ("empty Query", [0x0a, 0x00].repeat(n)),
        ("empty LabelMatcher", one_query_of_matchers),
    ] {
        let body = compress(&rq);
        let (r, used) = measure(|| decode_read_request(&body, 1 << 20));
        assert!(r.is_err(), "{what}: over the caps");
        let factor = used as f64 / rq.len() as f64;
        eprintln!(
            "{what}: {} bytes → {used} bytes allocated ({factor:.1}×)",
            rq.len()
        );
        assert!(factor < 1.5, "{what}: {factor:.1}×");
        let (prost_only, pused) = measure(|| ReadRequest::decode(rq.as_slice()).map(|_| ()));
        assert!(prost_only.is_ok());
        eprintln!(
            "{what}: prost alone {pused} bytes ({:.0}×)",
            pused as f64 / rq.len() as f64
        );
        worst = worst.max(pused as f64 / rq.len() as f64);
    }
    // At the caps, what prost builds stays small in absolute terms.
    let at_caps = ReadRequest {
        queries: vec![
            Query {
                matchers: vec![
                    LabelMatcher::default();
                    MAX_MATCHERS_PER_REQUEST / MAX_QUERIES_PER_REQUEST
                ],
                ..Default::default()
            };
            MAX_QUERIES_PER_REQUEST
        ],
        accepted_response_types: vec![],
    }
    .encode_to_vec();
    let (r, used) = measure(|| decode_read_request(&compress(&at_caps), 1 << 20));
    assert!(r.is_ok());
    eprintln!(
        "at the caps: {} bytes → {used} bytes allocated",
        at_caps.len()
    );
    assert!(used < 4 << 20, "{used}");
    assert!(
        worst <= MAX_AMPLIFICATION as f64,
        "decoded structs use {worst:.0}× the decompressed size"
    );
    // And the matcher type enum path: unknown types decode (as i32) and are left to the
    // planner, which refuses them.
    let q = ReadRequest {
        queries: vec![Query {
            matchers: vec![LabelMatcher {
                r#type: MT::Nre as i32 + 7,
                name: "a".into(),
                value: "b".into(),
            }],
            ..Default::default()
        }],
        accepted_response_types: vec![],
    };
    assert!(decode_read_request(&compress(&q.encode_to_vec()), LIMIT).is_ok());
}
