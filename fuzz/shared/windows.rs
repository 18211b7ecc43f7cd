//! Shared by the two remote-write targets: a body decoded in small windows, one after
//! another (as `/write` decodes a large body), reads as it does decoded whole.

use timestream_prometheus_connector::remote::codec::{CodecError, WriteBody};
use timestream_prometheus_connector::remote::view::{WindowLimits, WriteRequestView};

/// Labels and samples of every kept series, in order (histograms counted).
fn flat(v: &WriteRequestView<'_>) -> Vec<(Vec<(String, String)>, Vec<(i64, u64)>, usize)> {
    v.iter()
        .map(|s| {
            (
                s.labels
                    .iter()
                    .map(|l| (l.name.into(), l.value.into()))
                    .collect(),
                s.samples
                    .iter()
                    .map(|x| (x.timestamp, x.value.to_bits()))
                    .collect(),
                s.histograms.iter().count(),
            )
        })
        .collect()
}

/// Decoded in small windows one after another (as `/write` decodes a large body), the body
/// reads the same as decoded whole, and is refused exactly when the whole decode refuses it.
pub fn windows_agree(
    body: Result<WriteBody<'_>, CodecError>,
    whole: Option<&WriteRequestView<'_>>,
) {
    let limits = WindowLimits {
        series: 2,
        labels: 3,
        series_labels: usize::MAX,
    };
    let mut got = Vec::new();
    let windows = body.and_then(|b| {
        let mut from = Some(0);
        while let Some(at) = from {
            let w = b.window(at, limits)?;
            assert!(w.view.len() <= limits.series);
            got.extend(flat(&w.view));
            from = w.next;
        }
        Ok(())
    });
    match (whole, windows) {
        (Some(v), Ok(())) => assert_eq!(flat(v), got),
        (None, Err(_)) => {}
        (v, w) => panic!("whole ok={} windows ok={}", v.is_some(), w.is_ok()),
    }
}
