//! Snappy + protobuf decoding of a remote-write body as `/write` does it: never a panic,
//! a body whose snappy header declares more than the cap is refused, and the borrowing
//! decoder `/write` uses (`decode_write_request_view`) accepts exactly what prost accepts
//! and reads the same labels, samples and histogram count. The view keeps only what the
//! write path uses, and reads the same in small windows (as `/write` decodes large bodies): series with samples or native histograms, labels with a non-empty value (Prometheus treats
//! an empty value as an absent label); prost's answer is filtered the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use timestream_prometheus_connector::remote::codec::{
    decode_write_request, decode_write_request_view, decompress, CodecError, WriteBody,
};
use timestream_prometheus_connector::remote::pb::WriteRequest;

#[path = "../shared/windows.rs"]
mod windows;
use windows::windows_agree;

const LIMIT: usize = 1 << 20;

fn differential(raw: &[u8]) {
    let view = decode_write_request_view(raw);
    windows_agree(Ok(WriteBody::v1(raw)), view.as_ref().ok());
    let full = WriteRequest::decode(raw);
    let (view, full) = match (view, full) {
        (Ok(v), Ok(f)) => (v, f),
        (Err(_), Err(_)) => return,
        (v, f) => panic!(
            "decoders disagree: view ok={} prost ok={}",
            v.is_ok(),
            f.is_ok()
        ),
    };
    let histograms: u64 = full
        .timeseries
        .iter()
        .map(|t| t.histograms.len() as u64)
        .sum();
    let kept: Vec<_> = full
        .timeseries
        .iter()
        .filter(|t| !t.samples.is_empty() || !t.histograms.is_empty())
        .collect();
    assert_eq!(view.len(), kept.len());
    for (v, f) in view.iter().zip(kept) {
        let vl: Vec<(&str, &str)> = v.labels.iter().map(|l| (l.name, l.value)).collect();
        let fl: Vec<(&str, &str)> = f
            .labels
            .iter()
            .filter(|l| !l.value.is_empty())
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(vl, fl);
        let vs: Vec<(i64, u64)> = v
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(v.samples.len(), vs.len());
        let fs: Vec<(i64, u64)> = f
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(vs, fs);
        assert_eq!(v.histograms.iter().count(), f.histograms.len());
    }
    assert_eq!(view.histogram_count(), histograms);
}

fuzz_target!(|data: &[u8]| {
    let declared = snap::raw::decompress_len(data).ok();
    let r = decode_write_request(data, LIMIT);
    if declared.is_some_and(|d| d > LIMIT) {
        assert!(matches!(r, Err(CodecError::TooLarge { .. })));
    }
    // The body itself as protobuf (most fuzz inputs are not valid snappy) and, when it
    // is snappy, its decompressed form.
    differential(data);
    if let Ok(raw) = decompress(data, LIMIT) {
        differential(&raw);
    }
});
