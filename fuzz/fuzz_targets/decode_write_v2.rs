//! Snappy + protobuf decoding of a remote-write 2.0 body as `/write` does it: never a
//! panic, a body whose snappy header declares more than the cap is refused, and the
//! borrowing 2.0 decoder accepts exactly what prost accepts under the 2.0 rules
//! (`symbols[0] == ""`, refs in range, even `labels_refs`) and reads the same labels,
//! samples, histogram and exemplar counts. Its errors name a field and an offset inside
//! the body. Decoded in small windows (as `/write` decodes large bodies) it reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use timestream_prometheus_connector::remote::codec::{decompress, CodecError, WriteBody};
use timestream_prometheus_connector::remote::pb_v2::Request;
use timestream_prometheus_connector::remote::view_v2;

#[path = "../shared/windows.rs"]
mod windows;
use windows::windows_agree;

const LIMIT: usize = 1 << 20;

/// Per kept series: labels, samples, number of native histograms.
type Series<'a> = Vec<(Vec<(&'a str, &'a str)>, Vec<(i64, u64)>, usize)>;

/// The contract on prost's output: `None` where the 2.0 rules refuse the request.
fn reference(req: &Request) -> Option<(Series<'_>, u64, u64)> {
    let syms = &req.symbols;
    if syms.first().is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let resolve = |refs: &[u32]| -> Option<Vec<(&str, &str)>> {
        if refs.len() % 2 == 1 {
            return None;
        }
        refs.chunks(2)
            .map(|p| {
                Some((
                    syms.get(p[0] as usize)?.as_str(),
                    syms.get(p[1] as usize)?.as_str(),
                ))
            })
            .collect()
    };
    let (mut series, mut histograms, mut exemplars) = (Vec::new(), 0, 0);
    for ts in &req.timeseries {
        let labels = resolve(&ts.labels_refs)?;
        for e in &ts.exemplars {
            resolve(&e.labels_refs)?;
        }
        if let Some(m) = &ts.metadata {
            syms.get(m.help_ref as usize)?;
            syms.get(m.unit_ref as usize)?;
        }
        histograms += ts.histograms.len() as u64;
        exemplars += ts.exemplars.len() as u64;
        // The view keeps series that carry samples or native histograms.
        if !ts.samples.is_empty() || !ts.histograms.is_empty() {
            let samples = ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            series.push((labels, samples, ts.histograms.len()));
        }
    }
    Some((series, histograms, exemplars))
}

fn differential(raw: &[u8]) {
    let prost = Request::decode(raw).ok();
    let want = prost.as_ref().and_then(reference);
    let whole = view_v2::decode(raw);
    windows_agree(WriteBody::v2(raw), whole.as_ref().ok().map(|r| &r.view));
    match (want, whole) {
        (None, Err(e)) => {
            assert!(e.offset <= raw.len(), "{e}");
            assert!(!e.field.is_empty(), "{e}");
        }
        (Some((series, histograms, exemplars)), Ok(v)) => {
            let got: Series<'_> = v
                .view
                .iter()
                .map(|s| {
                    (
                        s.labels.iter().map(|l| (l.name, l.value)).collect(),
                        {
                            let samples: Vec<_> = s
                                .samples
                                .iter()
                                .map(|s| (s.timestamp, s.value.to_bits()))
                                .collect();
                            assert_eq!(s.samples.len(), samples.len());
                            samples
                        },
                        s.histograms.iter().count(),
                    )
                })
                .collect();
            assert_eq!(got, series);
            assert_eq!(v.view.histogram_count(), histograms);
            assert_eq!(v.exemplars, exemplars);
        }
        (w, v) => panic!(
            "decoders disagree: reference ok={} view {:?}",
            w.is_some(),
            v.err()
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let declared = snap::raw::decompress_len(data).ok();
    let r = decompress(data, LIMIT);
    if declared.is_some_and(|d| d > LIMIT) {
        assert!(matches!(r, Err(CodecError::TooLarge { .. })));
    }
    differential(data);
    if let Ok(raw) = r {
        differential(&raw);
    }
});
