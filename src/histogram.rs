//! The stored form of a native histogram sample (issue 16,
//! `documentation/native-histograms.md`). A histogram sample is one VARCHAR record under the
//! reserved measure [`MEASURE_NAME`], with the series' labels as dimensions plus the metric
//! name in `__name__` (as special values, `crate::special`), at the sample's timestamp. Its
//! value is [`PREFIX`] followed by the standard base64 of the protobuf `Histogram` message of
//! remote write (prost's canonical encoding) with the timestamp cleared: every field is kept
//! exactly (integer or float counts, schema, custom values, zero bucket, spans, deltas or
//! counts, reset hint), and the timestamp lives in the record's time.

use base64::Engine;
use prost::Message;

use crate::remote::pb::Histogram;

/// Measure name of every native-histogram record.
pub const MEASURE_NAME: &str = "__native_histogram__";
/// First character of every stored histogram text: the empty histogram's encoding is zero
/// bytes, and Timestream refuses an empty measure value.
pub const PREFIX: &str = "H";
/// Dimension every histogram record carries (value [`KIND_VALUE`]), so the read path knows
/// from a table's columns alone whether it can hold histograms (`http::read` answers SAMPLES
/// then). Not a label: reads never return it.
pub const KIND_DIMENSION: &str = "__histogram__";
/// Value of [`KIND_DIMENSION`].
pub const KIND_VALUE: &str = "native";
/// Longest VARCHAR measure value Timestream stores (characters).
pub const MAX_VALUE_CHARS: usize = 2048;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The histogram of a validated wire message (the decoder checked it, so this cannot fail;
/// an unknown field such as 2.0's `start_timestamp` is dropped, as it is not stored).
pub fn parse(wire: &[u8]) -> Histogram {
    Histogram::decode(wire).unwrap_or_default()
}

/// Prometheus' schema of native histograms with custom buckets.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Whether a reader can interpret `h`: a custom-bucket histogram must carry the bound of
/// every bucket it has (bucket `i` ends at `custom_values[i]`, the last at +Inf) and no
/// negative buckets. Prometheus 3.5's remote write 1.0 sends such histograms without their
/// bounds; stored, they would make every Prometheus that reads them back panic serving the
/// query, so they are skipped and counted instead.
pub fn interpretable(h: &Histogram) -> bool {
    if h.schema != CUSTOM_BUCKETS_SCHEMA {
        return true;
    }
    if !h.negative_spans.is_empty() {
        return false;
    }
    // Highest bucket index: spans are offsets from the end of the previous span.
    let mut next = 0i64;
    let mut highest: Option<i64> = None;
    for s in &h.positive_spans {
        let start = next + i64::from(s.offset);
        if s.length > 0 {
            highest = Some(start + i64::from(s.length) - 1);
        }
        next = start + i64::from(s.length);
    }
    highest.is_none_or(|i| i >= 0 && i <= h.custom_values.len() as i64)
}

/// Length in characters of the stored text of `h` (without building it).
pub fn stored_len(h: &Histogram) -> usize {
    let n = without_timestamp_len(h);
    PREFIX.len() + n.div_ceil(3) * 4
}

fn without_timestamp_len(h: &Histogram) -> usize {
    // The timestamp field costs its key and varint only when non-zero.
    let ts = if h.timestamp != 0 {
        1 + prost::encoding::encoded_len_varint(h.timestamp as u64)
    } else {
        0
    };
    h.encoded_len() - ts
}

/// The stored text of `h` (its timestamp is not part of it).
pub fn encode(h: &Histogram) -> String {
    let mut bare = h.clone();
    bare.timestamp = 0;
    let bytes = bare.encode_to_vec();
    let mut out = String::with_capacity(PREFIX.len() + bytes.len().div_ceil(3) * 4);
    out.push_str(PREFIX);
    B64.encode_string(&bytes, &mut out);
    out
}

/// The histogram [`encode`] wrote, at `timestamp_ms` (None for any other text).
pub fn decode(text: &str, timestamp_ms: i64) -> Option<Histogram> {
    let b64 = text.strip_prefix(PREFIX)?;
    let bytes = B64.decode(b64).ok()?;
    let mut h = Histogram::decode(bytes.as_slice()).ok()?;
    h.timestamp = timestamp_ms;
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::pb::histogram::{Count, ResetHint, ZeroCount};
    use crate::remote::pb::BucketSpan;

    #[test]
    fn empty_and_full_histograms_round_trip_and_lengths_agree() {
        let empty = Histogram::default();
        assert_eq!(encode(&empty), "H");
        assert_eq!(stored_len(&empty), 1);
        let h = Histogram {
            count: Some(Count::CountFloat(12.5)),
            sum: -3.25,
            schema: -53,
            zero_threshold: 0.0,
            zero_count: Some(ZeroCount::ZeroCountFloat(0.0)),
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 3,
            }],
            positive_counts: vec![1.0, f64::NAN, 2.5],
            custom_values: vec![0.1, 0.5, 1.0],
            reset_hint: ResetHint::Gauge as i32,
            timestamp: 1_700_000_000_123,
            ..Default::default()
        };
        let text = encode(&h);
        assert_eq!(text.len(), stored_len(&h));
        let back = decode(&text, h.timestamp).unwrap();
        assert_eq!(back.encode_to_vec(), h.encode_to_vec());
        assert_eq!(decode("+Inf", 0), None);
        assert_eq!(decode("StaleNaN", 0), None);
    }

    #[test]
    fn custom_bucket_histograms_need_their_bounds() {
        let span = |offset, length| BucketSpan { offset, length };
        let nhcb = |spans: Vec<BucketSpan>, bounds: Vec<f64>| Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: spans,
            custom_values: bounds,
            ..Default::default()
        };
        // What Prometheus 3.5.3 sends over remote write 1.0: 4 buckets, no bounds.
        assert!(!interpretable(&nhcb(vec![span(0, 4)], vec![])));
        // Buckets 0..=3: three bounds and +Inf.
        assert!(interpretable(&nhcb(vec![span(0, 4)], vec![1.0, 5.0, 10.0])));
        assert!(!interpretable(&nhcb(
            vec![span(0, 2), span(1, 2)],
            vec![1.0, 5.0, 10.0]
        )));
        assert!(interpretable(&nhcb(vec![span(0, 1)], vec![])));
        assert!(interpretable(&nhcb(vec![], vec![])));
        assert!(interpretable(&Histogram::default()));
    }

    /// The example of documentation/native-histograms.md ("Size and cost"): a client_golang
    /// histogram of schema 3 with 12 buckets in 2 spans is 51 bytes of protobuf, 69 stored
    /// characters.
    #[test]
    fn documented_size_of_a_typical_histogram() {
        let h = Histogram {
            count: Some(Count::CountInt(1000)),
            sum: 123.456,
            schema: 3,
            zero_threshold: 2.938735877055719e-39,
            zero_count: Some(ZeroCount::ZeroCountInt(2)),
            positive_spans: vec![
                BucketSpan {
                    offset: -5,
                    length: 8,
                },
                BucketSpan {
                    offset: 2,
                    length: 4,
                },
            ],
            positive_deltas: vec![3, 10, 25, 40, 12, -30, -20, -5, 1, -8, -2, 1],
            timestamp: 1_700_000_000_000,
            ..Default::default()
        };
        let mut bare = h.clone();
        bare.timestamp = 0;
        assert_eq!(bare.encoded_len(), 51);
        assert_eq!(stored_len(&h), 69);
        assert_eq!(encode(&h).len(), 69);
    }
}
