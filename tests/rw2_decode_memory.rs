//! Remote write 2.0 decoder on hostile bodies: never a panic, always a typed error, and
//! memory bounded by a fixed factor of the decompressed size. The deepest legal
//! amplification (bodies made only of 2-byte empty elements, or of 1-byte refs) is
//! measured and printed; bodies of millions of empty series, samples, histograms,
//! exemplars or metadata cost nothing per element, because the view keeps only series
//! with samples or histograms, and leaves samples and histograms in the body.
//!
//! The `cap` allocator (stats feature) counts every byte allocated during one decode;
//! tests in this binary are serialised so the count is the decoder's alone.

use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

use cap::Cap;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use prost::Message;
use timestream_prometheus_connector::remote::codec::{
    compress, decode_write_request_v2, decompress, to_v2,
};
use timestream_prometheus_connector::remote::pb::{Label, Sample, TimeSeries, WriteRequest};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bytes allocated while running `f` (every allocation and growth counted in full).
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOC.total_allocated();
    let out = f();
    (out, ALLOC.total_allocated() - before)
}

/// The same bound the 1.0 view is held to (tests/hostile_decode.rs): 16-32 bytes kept per
/// 1-2 wire bytes at worst, doubled by at most one Vec growth.
const MAX_FACTOR: f64 = 40.0;

fn key(tag: u32, wire_type: u8) -> Vec<u8> {
    let mut v = Vec::new();
    prost::encoding::encode_varint(u64::from(tag << 3 | u32::from(wire_type)), &mut v);
    v
}

fn len_field(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut v = key(tag, 2);
    prost::encoding::encode_varint(body.len() as u64, &mut v);
    v.extend_from_slice(body);
    v
}

#[test]
fn amplification_is_bounded_and_reported() {
    let _serial = serial();
    let n = 1_000_000usize;
    let syms = len_field(4, b"");
    let a_sample = len_field(2, &[key(2, 0), vec![1]].concat());
    let in_one_series = |inner: Vec<u8>| [syms.clone(), len_field(5, &inner)].concat();
    let cases: Vec<(&str, Vec<u8>, f64)> = vec![
        // (what, body, most bytes allocated per body byte)
        (
            "empty TimeSeries",
            [syms.clone(), [0x2a, 0x00].repeat(n)].concat(),
            0.01,
        ),
        // 4 bytes kept per 2-byte symbol (its offset), plus a growth of the table.
        ("empty symbols", [0x22, 0x00].repeat(n), 2.5),
        (
            "sample-less series of one label each",
            [
                syms.clone(),
                [0x2a, 0x04, 0x0a, 0x02, 0x00, 0x00].repeat(n / 3),
            ]
            .concat(),
            0.01,
        ),
        (
            "one series of 10^6 refs (packed)",
            in_one_series([len_field(1, &vec![0; n]), a_sample.clone()].concat()),
            17.5,
        ),
        (
            "one series of 10^6 refs (unpacked)",
            in_one_series([[0x08, 0x00].repeat(n / 2), a_sample.clone()].concat()),
            17.5,
        ),
        ("empty Samples", in_one_series([0x12, 0x00].repeat(n)), 0.01),
        (
            "empty Histograms",
            in_one_series([0x1a, 0x00].repeat(n)),
            0.01,
        ),
        (
            "empty Exemplars",
            in_one_series([0x22, 0x00].repeat(n)),
            0.01,
        ),
        (
            "empty Metadata",
            in_one_series([0x2a, 0x00].repeat(n)),
            0.01,
        ),
    ];
    for (what, raw, max) in &cases {
        let (r, used) = measure(|| decode_write_request_v2(raw).map(|r| r.view.len()));
        assert!(r.is_ok(), "{what}: {r:?}");
        let factor = used as f64 / raw.len() as f64;
        eprintln!(
            "{what}: {} bytes decompressed → {used} bytes allocated by the 2.0 decoder ({factor:.2}×)",
            raw.len()
        );
        assert!(factor <= *max, "{what}: {factor:.2}× > {max}×");
    }
}

/// Decompressed-bytes cap of the properties (small, so bombs are cheap to build).
const LIMIT: usize = 64 * 1024;

fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let declared = snap::raw::decompress_len(body).ok();
    let (r, used) = measure(|| {
        decompress(body, LIMIT)
            .and_then(|raw| decode_write_request_v2(&raw).map(|r| r.view.sample_count()))
    });
    if let Err(e) = &r {
        prop_assert!(!e.to_string().is_empty());
    }
    let bound = LIMIT + (MAX_FACTOR as usize) * declared.unwrap_or(0).min(LIMIT) + 64 * 1024;
    prop_assert!(used <= bound, "allocated {used} > bound {bound}");
    Ok(())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    })
}

fn arb_request() -> impl Strategy<Value = WriteRequest> {
    prop::collection::vec(
        (
            prop::collection::vec(("[a-z_]{1,8}", "[ -~]{0,12}"), 0..6),
            prop::collection::vec((any::<f64>(), any::<i64>()), 0..4),
        ),
        0..12,
    )
    .prop_map(|series| WriteRequest {
        timeseries: series
            .into_iter()
            .map(|(labels, samples)| TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: samples
                    .into_iter()
                    .map(|(value, timestamp)| Sample { value, timestamp })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

#[test]
fn arbitrary_and_mutated_bodies_never_panic_and_stay_bounded() {
    let _serial = serial();
    runner(512)
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            check_body(&bytes)?;
            check_body(&compress(&bytes))
        })
        .unwrap();
    let mutated = (
        arb_request(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    );
    runner(512)
        .run(&mutated, |(req, edits)| {
            let mut raw = to_v2(&req).encode_to_vec();
            check_body(&compress(&raw))?;
            for (at, byte, op) in edits {
                if raw.is_empty() {
                    raw.push(byte);
                    continue;
                }
                let i = at.index(raw.len());
                match op {
                    0 => raw[i] = byte,
                    1 => raw.insert(i, byte),
                    _ => raw.truncate(i),
                }
            }
            check_body(&compress(&raw))
        })
        .unwrap();
}
