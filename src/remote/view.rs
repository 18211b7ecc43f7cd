//! Zero-copy decoder of a remote-write 1.0 `WriteRequest`: label names and values are
//! `&str` into the decompressed body (validated as UTF-8), samples are copied into one
//! array per request. prost allocated two `String`s per label, which was most of the decode
//! cost (issue 7).
//!
//! Equivalence with prost (`WriteRequest::decode`) is the contract, checked by a proptest:
//! the same bytes are accepted and yield the same series, labels and samples, and what
//! prost refuses is refused with prost's own error (the error path re-runs prost, so the
//! 400 body says exactly what it said before). Rules mirrored from prost 0.14: varints of
//! at most 10 bytes (the 10th < 2), keys ≤ u32::MAX with wire type 0..=5 and tag ≥ 1, a known
//! field with the wrong wire type is an error, the last occurrence of a scalar wins, unknown
//! fields of every wire type are skipped (groups nested up to prost's recursion limit of 100
//! counted from the top message). Metadata, exemplars and native histograms are not used by
//! the write path (histograms are only counted, so they can be reported as skipped); they are
//! validated without allocating, by checks that mirror prost's rules for their fields
//! (prost itself would allocate a few hundred bytes per empty histogram: a 3 MiB body of
//! them cost gigabytes). Metadata entries go through prost one at a time (bounded by the
//! entry's own size).

use prost::Message;

use super::pb::{Sample, WriteRequest};

/// prost's recursion budget at the top message (`prost::RECURSION_LIMIT`).
const RECURSION_LIMIT: u32 = 100;

/// One label, borrowed from the decompressed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    /// Label name.
    pub name: &'a str,
    /// Label value.
    pub value: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) labels: (u32, u32),
    pub(super) samples: (u32, u32),
}

/// A decoded `WriteRequest` whose strings borrow the body it was decoded from. The
/// remote-write 2.0 decoder (`view_v2`) fills the same type, so both protocols share one
/// write pipeline.
#[derive(Debug, Default)]
pub struct WriteRequestView<'a> {
    pub(super) labels: Vec<LabelRef<'a>>,
    pub(super) samples: Vec<Sample>,
    pub(super) series: Vec<Span>,
    pub(super) histograms: u64,
}

/// One series of a [`WriteRequestView`].
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'v, 'a> {
    /// Labels in wire order.
    pub labels: &'v [LabelRef<'a>],
    /// Samples in wire order.
    pub samples: &'v [Sample],
}

/// Malformed input; the caller asks prost for the precise reason (cold path).
#[derive(Debug)]
struct Malformed;

type R<T> = Result<T, Malformed>;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    #[inline]
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    fn varint(&mut self) -> R<u64> {
        // Most varints on this path (keys, lengths) are one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[cold]
    fn varint_slow(&mut self) -> R<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(Malformed)?;
            self.pos += 1;
            if i == 9 && b >= 2 {
                return Err(Malformed);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    /// (tag, wire type), refusing what prost's `decode_key` refuses.
    #[inline]
    fn key(&mut self) -> R<(u32, u8)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(Malformed);
        }
        let wire_type = (key & 7) as u8;
        let tag = (key >> 3) as u32;
        if wire_type > 5 || tag == 0 {
            return Err(Malformed);
        }
        Ok((tag, wire_type))
    }

    #[inline]
    fn advance(&mut self, n: u64) -> R<()> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(Malformed);
        }
        self.pos += n as usize;
        Ok(())
    }

    /// A length-delimited payload; the length is checked against what is left, never
    /// used to allocate.
    #[inline]
    fn bytes(&mut self) -> R<&'a [u8]> {
        let len = self.varint()?;
        let start = self.pos;
        self.advance(len)?;
        Ok(&self.buf[start..self.pos])
    }

    #[inline]
    fn str(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }

    #[inline]
    fn fixed64(&mut self) -> R<[u8; 8]> {
        let start = self.pos;
        self.advance(8)?;
        Ok(self.buf[start..self.pos].try_into().expect("8 bytes"))
    }

    /// prost's `skip_field`, including its recursion budget `ctx`.
    fn skip(&mut self, wire_type: u8, tag: u32, ctx: u32) -> R<()> {
        if ctx == 0 {
            return Err(Malformed);
        }
        match wire_type {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            5 => self.advance(4),
            2 => {
                let len = self.varint()?;
                self.advance(len)
            }
            3 => loop {
                let (inner_tag, inner_wire_type) = self.key()?;
                if inner_wire_type == 4 {
                    return if inner_tag == tag {
                        Ok(())
                    } else {
                        Err(Malformed)
                    };
                }
                self.skip(inner_wire_type, inner_tag, ctx - 1)?;
            },
            _ => Err(Malformed),
        }
    }
}

const LEN: u8 = 2;

impl<'a> WriteRequestView<'a> {
    /// Decodes an uncompressed `WriteRequest`; errors are prost's, for the same inputs.
    pub fn decode(buf: &'a [u8]) -> Result<Self, prost::DecodeError> {
        let mut view = WriteRequestView::default();
        match view.decode_inner(buf) {
            Ok(()) => Ok(view),
            Err(Malformed) => Err(match WriteRequest::decode(buf) {
                Err(e) => e,
                // Unreachable if the two decoders agree (the proptest says they do); a
                // request is still refused rather than half-read.
                #[allow(deprecated)]
                Ok(_) => prost::DecodeError::new("malformed prometheus.WriteRequest"),
            }),
        }
    }

    fn decode_inner(&mut self, buf: &'a [u8]) -> R<()> {
        // Sized from the body (never from a declared length): ~28 bytes per label on the
        // wire for node_exporter-like series.
        self.labels.reserve(buf.len() / 32);
        let mut r = Reader::new(buf);
        while !r.done() {
            let start = r.pos;
            let (tag, wire_type) = r.key()?;
            match tag {
                1 => {
                    if wire_type != LEN {
                        return Err(Malformed);
                    }
                    let body = r.bytes()?;
                    self.decode_series(body)?;
                }
                3 => {
                    // Metadata: unused, but refused when prost would refuse it.
                    if wire_type != LEN {
                        return Err(Malformed);
                    }
                    r.bytes()?;
                    WriteRequest::decode(&buf[start..r.pos]).map_err(|_| Malformed)?;
                }
                _ => r.skip(wire_type, tag, RECURSION_LIMIT)?,
            }
        }
        Ok(())
    }

    fn decode_series(&mut self, body: &'a [u8]) -> R<()> {
        const CTX: u32 = RECURSION_LIMIT - 1;
        let (l0, s0) = (self.labels.len(), self.samples.len());
        let mut r = Reader::new(body);
        while !r.done() {
            let (tag, wire_type) = r.key()?;
            match tag {
                1..=4 if wire_type != LEN => return Err(Malformed),
                1 => {
                    let label = decode_label(r.bytes()?, CTX - 1)?;
                    self.labels.push(label);
                }
                2 => {
                    let sample = decode_sample(r.bytes()?)?;
                    self.samples.push(sample);
                }
                3 => check_exemplar(r.bytes()?)?,
                4 => {
                    check_histogram(r.bytes()?)?;
                    self.histograms += 1;
                }
                _ => r.skip(wire_type, tag, CTX)?,
            }
        }
        let n = |x: usize| u32::try_from(x).map_err(|_| Malformed);
        self.series.push(Span {
            labels: (n(l0)?, n(self.labels.len())?),
            samples: (n(s0)?, n(self.samples.len())?),
        });
        Ok(())
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether there is no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Samples in all series.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Native histogram samples in all series (decoded only far enough to be counted).
    pub fn histogram_count(&self) -> u64 {
        self.histograms
    }

    /// The `i`-th series (panics if `i >= len()`, like slice indexing).
    pub fn series(&self, i: usize) -> SeriesView<'_, 'a> {
        let s = self.series[i];
        SeriesView {
            labels: &self.labels[s.labels.0 as usize..s.labels.1 as usize],
            samples: &self.samples[s.samples.0 as usize..s.samples.1 as usize],
        }
    }

    /// Every series in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SeriesView<'_, 'a>> + '_ {
        (0..self.series.len()).map(|i| self.series(i))
    }
}

/// A `Label`; `ctx` is prost's recursion budget for its fields.
fn decode_label(body: &[u8], ctx: u32) -> R<LabelRef<'_>> {
    let mut label = LabelRef {
        name: "",
        value: "",
    };
    let mut r = Reader::new(body);
    while !r.done() {
        let (tag, wire_type) = r.key()?;
        match tag {
            1 | 2 if wire_type != LEN => return Err(Malformed),
            1 => label.name = r.str()?,
            2 => label.value = r.str()?,
            _ => r.skip(wire_type, tag, ctx)?,
        }
    }
    Ok(label)
}

fn decode_sample(body: &[u8]) -> R<Sample> {
    const CTX: u32 = RECURSION_LIMIT - 2;
    let mut sample = Sample::default();
    let mut r = Reader::new(body);
    while !r.done() {
        let (tag, wire_type) = r.key()?;
        match (tag, wire_type) {
            (1, 1) => sample.value = f64::from_le_bytes(r.fixed64()?),
            (2, 0) => sample.timestamp = r.varint()? as i64,
            (1 | 2, _) => return Err(Malformed),
            _ => r.skip(wire_type, tag, CTX)?,
        }
    }
    Ok(sample)
}

/// Element counts of a `ReadRequest`, read from its wire structure without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequestCounts {
    /// `queries` entries.
    pub queries: usize,
    /// `matchers` entries over all queries.
    pub matchers: usize,
}

/// Counts the queries and matchers of an uncompressed `ReadRequest` without allocating:
/// prost builds a ~200-byte `Query` (a ~56-byte `LabelMatcher`) from each 2-byte empty one,
/// so the caller checks the counts before handing the bytes to prost. `None` when the wire
/// structure is malformed: prost refuses such bytes too, but only after allocating for
/// everything before the fault, so the caller refuses them without prost.
pub fn read_request_counts(buf: &[u8]) -> Option<ReadRequestCounts> {
    let mut counts = ReadRequestCounts {
        queries: 0,
        matchers: 0,
    };
    let mut r = Reader::new(buf);
    while !r.done() {
        let (tag, wire_type) = r.key().ok()?;
        if tag != 1 {
            r.skip(wire_type, tag, RECURSION_LIMIT).ok()?;
            continue;
        }
        if wire_type != LEN {
            return None;
        }
        counts.queries += 1;
        let mut q = Reader::new(r.bytes().ok()?);
        while !q.done() {
            let (tag, wire_type) = q.key().ok()?;
            if tag == 3 && wire_type == LEN {
                counts.matchers += 1;
                q.bytes().ok()?;
            } else {
                q.skip(wire_type, tag, RECURSION_LIMIT - 1).ok()?;
            }
        }
    }
    Some(counts)
}

/// Wire types of the scalar fields below.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;

/// A scalar field (or one element of an unpacked repeated field) as prost reads it.
#[inline]
fn scalar(r: &mut Reader<'_>, wire_type: u8, want: u8) -> R<()> {
    match (wire_type, want) {
        (VARINT, VARINT) => r.varint().map(drop),
        (FIXED64, FIXED64) => r.fixed64().map(drop),
        _ => Err(Malformed),
    }
}

/// A repeated numeric field, packed (one length-delimited run) or not, as prost accepts both.
fn repeated(r: &mut Reader<'_>, wire_type: u8, want: u8) -> R<()> {
    if wire_type != LEN {
        return scalar(r, wire_type, want);
    }
    let packed = r.bytes()?;
    if want == FIXED64 {
        // prost reads 8 bytes per element and fails unless the run ends on a boundary.
        return if packed.len() % 8 == 0 {
            Ok(())
        } else {
            Err(Malformed)
        };
    }
    let mut p = Reader::new(packed);
    while !p.done() {
        p.varint()?;
    }
    Ok(())
}

/// Walks the fields of a message nobody keeps: `field` consumes a known field and returns
/// true; unknown fields are skipped within prost's recursion budget `ctx`.
fn check_fields<'a>(
    body: &'a [u8],
    ctx: u32,
    mut field: impl FnMut(&mut Reader<'a>, u32, u8) -> R<bool>,
) -> R<()> {
    let mut r = Reader::new(body);
    while !r.done() {
        let (tag, wire_type) = r.key()?;
        if !field(&mut r, tag, wire_type)? {
            r.skip(wire_type, tag, ctx)?;
        }
    }
    Ok(())
}

/// An `Exemplar` (labels, value, timestamp), accepted exactly when prost accepts it.
fn check_exemplar(body: &[u8]) -> R<()> {
    const CTX: u32 = RECURSION_LIMIT - 2;
    check_fields(body, CTX, |r, tag, wire_type| {
        match tag {
            1 if wire_type != LEN => return Err(Malformed),
            1 => decode_label(r.bytes()?, CTX - 1).map(drop)?,
            2 => scalar(r, wire_type, FIXED64)?,
            3 => scalar(r, wire_type, VARINT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A native `Histogram`, accepted exactly when prost accepts it (types.proto field numbers).
fn check_histogram(body: &[u8]) -> R<()> {
    check_fields(body, RECURSION_LIMIT - 2, |r, tag, wire_type| {
        match tag {
            // count_int, schema (sint32), zero_count_int, reset_hint, timestamp
            1 | 4 | 6 | 14 | 15 => scalar(r, wire_type, VARINT)?,
            // count_float, sum, zero_threshold, zero_count_float
            2 | 3 | 5 | 7 => scalar(r, wire_type, FIXED64)?,
            // negative_spans, positive_spans: BucketSpan {offset sint32, length uint32}
            8 | 11 if wire_type != LEN => return Err(Malformed),
            8 | 11 => check_fields(
                r.bytes()?,
                RECURSION_LIMIT - 3,
                |r, tag, wire_type| match tag {
                    1 | 2 => scalar(r, wire_type, VARINT).map(|()| true),
                    _ => Ok(false),
                },
            )?,
            // negative_deltas, positive_deltas (sint64)
            9 | 12 => repeated(r, wire_type, VARINT)?,
            // negative_counts, positive_counts, custom_values (double)
            10 | 13 | 16 => repeated(r, wire_type, FIXED64)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::pb::histogram::{Count, ZeroCount};
    use crate::remote::pb::{BucketSpan, Exemplar, Histogram, Label, MetricMetadata, TimeSeries};
    use proptest::prelude::*;

    /// What the write path reads of a prost request: labels and samples of every series.
    type Flat = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;

    fn flat_prost(req: &WriteRequest) -> Flat {
        req.timeseries
            .iter()
            .map(|t| {
                (
                    t.labels
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    // Bits, so NaN payloads (stale markers) compare exactly.
                    t.samples
                        .iter()
                        .map(|s| (s.value.to_bits(), s.timestamp))
                        .collect(),
                )
            })
            .collect()
    }

    fn flat_view(v: &WriteRequestView<'_>) -> Flat {
        v.iter()
            .map(|t| {
                (
                    t.labels
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect(),
                    t.samples
                        .iter()
                        .map(|s| (s.value.to_bits(), s.timestamp))
                        .collect(),
                )
            })
            .collect()
    }

    /// Both decoders agree: both refuse (with the same message) or both yield the same.
    fn check_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        match (WriteRequest::decode(bytes), WriteRequestView::decode(bytes)) {
            (Ok(p), Ok(v)) => prop_assert_eq!(flat_prost(&p), flat_view(&v)),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (p, v) => prop_assert!(false, "prost {:?} vs view {:?}", p.is_ok(), v.is_ok()),
        }
        Ok(())
    }

    fn label() -> impl Strategy<Value = Label> {
        ("[a-z_\u{e9}]{0,6}", ".{0,8}").prop_map(|(name, value)| Label { name, value })
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (any::<u64>(), any::<i64>()).prop_map(|(bits, timestamp)| Sample {
            value: f64::from_bits(bits),
            timestamp,
        })
    }

    fn spans() -> impl Strategy<Value = Vec<BucketSpan>> {
        prop::collection::vec(
            (any::<i32>(), any::<u32>()).prop_map(|(offset, length)| BucketSpan { offset, length }),
            0..3,
        )
    }

    /// Every field of a native histogram, so damaged bytes reach each branch of the checks.
    fn histogram() -> impl Strategy<Value = Histogram> {
        (
            (any::<bool>(), any::<u64>(), any::<f64>(), any::<i32>()),
            (spans(), prop::collection::vec(any::<i64>(), 0..3)),
            (spans(), prop::collection::vec(any::<f64>(), 0..3)),
            (
                any::<i32>(),
                any::<i64>(),
                prop::collection::vec(any::<f64>(), 0..2),
            ),
        )
            .prop_map(
                |((int, n, f, schema), (ns, nd), (ps, pc), (hint, ts, custom))| Histogram {
                    count: Some(if int {
                        Count::CountInt(n)
                    } else {
                        Count::CountFloat(f)
                    }),
                    sum: f,
                    schema,
                    zero_threshold: f,
                    zero_count: Some(if int {
                        ZeroCount::ZeroCountFloat(f)
                    } else {
                        ZeroCount::ZeroCountInt(n)
                    }),
                    negative_spans: ns,
                    negative_deltas: nd,
                    positive_spans: ps,
                    positive_counts: pc,
                    reset_hint: hint,
                    timestamp: ts,
                    custom_values: custom,
                    ..Default::default()
                },
            )
    }

    fn series() -> impl Strategy<Value = TimeSeries> {
        (
            prop::collection::vec(label(), 0..6),
            prop::collection::vec(sample(), 0..4),
            prop::collection::vec(label(), 0..2),
            (any::<f64>(), any::<i64>()),
            prop::collection::vec(histogram(), 0..2),
        )
            .prop_map(
                |(labels, samples, ex, (value, timestamp), histograms)| TimeSeries {
                    labels,
                    samples,
                    exemplars: if ex.is_empty() {
                        vec![]
                    } else {
                        vec![Exemplar {
                            labels: ex,
                            value,
                            timestamp,
                        }]
                    },
                    histograms,
                },
            )
    }

    fn request() -> impl Strategy<Value = WriteRequest> {
        (
            prop::collection::vec(series(), 0..8),
            prop::collection::vec(".{0,6}", 0..2),
        )
            .prop_map(|(timeseries, help)| WriteRequest {
                timeseries,
                metadata: help
                    .into_iter()
                    .map(|help| MetricMetadata {
                        r#type: 1,
                        metric_family_name: "m".into(),
                        help,
                        unit: String::new(),
                    })
                    .collect(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn same_as_prost_on_valid_requests(req in request()) {
            let bytes = req.encode_to_vec();
            let v = WriteRequestView::decode(&bytes).unwrap();
            prop_assert_eq!(flat_view(&v), flat_prost(&req));
            prop_assert_eq!(v.sample_count(), req.timeseries.iter().map(|t| t.samples.len()).sum::<usize>());
            prop_assert_eq!(v.histogram_count() as usize, req.timeseries.iter().map(|t| t.histograms.len()).sum::<usize>());
        }

        #[test]
        fn same_as_prost_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            check_agree(&bytes)?;
        }

        /// Valid requests with a few bytes overwritten, inserted or cut off reach the
        /// deeper branches (bad UTF-8, wrong wire types, lengths past the end).
        #[test]
        fn same_as_prost_on_damaged_requests(
            req in request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let mut bytes = req.encode_to_vec();
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i),
                }
            }
            check_agree(&bytes)?;
        }
    }

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
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let label = [len_field(1, b"__name__"), len_field(2, b"up")].concat();
        let mut unknown = Vec::new();
        unknown.extend(key(9, 0));
        unknown.extend([0x96, 0x01]);
        unknown.extend(key(10, 1));
        unknown.extend([0; 8]);
        unknown.extend(key(11, 5));
        unknown.extend([0; 4]);
        unknown.extend(len_field(12, b"xyz"));
        unknown.extend(key(13, 3));
        unknown.extend(key(14, 0));
        unknown.push(1);
        unknown.extend(key(13, 4));
        let series = [
            unknown.clone(),
            len_field(1, &[label.clone(), unknown.clone()].concat()),
            len_field(
                2,
                &[unknown.clone(), key(1, 1), 1.5f64.to_le_bytes().to_vec()].concat(),
            ),
        ]
        .concat();
        let req = [unknown.clone(), len_field(1, &series), unknown].concat();
        check_agree(&req).unwrap();
        let v = WriteRequestView::decode(&req).unwrap();
        assert_eq!(v.len(), 1);
        let s = v.series(0);
        assert_eq!(
            s.labels,
            [LabelRef {
                name: "__name__",
                value: "up"
            }]
        );
        assert_eq!(s.samples[0].value, 1.5);
        // Mismatched end group, a lone end group, wire types 6 and 7, tag 0.
        for bad in [
            [key(13, 3), key(14, 4)].concat(),
            key(13, 4),
            key(13, 6),
            key(13, 7),
            vec![0x00],
        ] {
            assert!(WriteRequestView::decode(&bad).is_err());
            check_agree(&bad).unwrap();
        }
    }

    #[test]
    fn group_nesting_limit_is_prosts() {
        // 99 and 100 nested groups at the top level, then inside a label (depth 2).
        for depth in [97usize, 98, 99, 100, 101] {
            let open: Vec<u8> = (0..depth).flat_map(|_| key(20, 3)).collect();
            let close: Vec<u8> = (0..depth).flat_map(|_| key(20, 4)).collect();
            let inner = [open, key(21, 0), vec![1], close].concat();
            check_agree(&inner).unwrap();
            let in_label = len_field(1, &len_field(1, &inner));
            check_agree(&in_label).unwrap();
            let in_sample = len_field(1, &len_field(2, &inner));
            check_agree(&in_sample).unwrap();
        }
    }

    #[test]
    fn invalid_utf8_and_wrong_wire_types_are_refused() {
        let bad_utf8 = len_field(1, &len_field(1, &len_field(2, &[0xff, 0xfe])));
        let e = WriteRequestView::decode(&bad_utf8).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        // In metadata and exemplars too, as prost refuses them.
        let bad_meta = len_field(3, &len_field(2, &[0xc3]));
        assert!(WriteRequestView::decode(&bad_meta).is_err());
        let bad_exemplar = len_field(1, &len_field(3, &len_field(1, &len_field(1, &[0x80]))));
        assert!(WriteRequestView::decode(&bad_exemplar).is_err());
        // Sample value as a varint; timestamp as fixed64; label as a varint.
        for bad in [
            len_field(1, &len_field(2, &[key(1, 0), vec![1]].concat())),
            len_field(1, &len_field(2, &[key(2, 1), vec![0; 8]].concat())),
            len_field(1, &[key(1, 0), vec![1]].concat()),
            [key(1, 0), vec![1]].concat(),
        ] {
            assert!(WriteRequestView::decode(&bad).is_err());
            check_agree(&bad).unwrap();
        }
    }

    #[test]
    fn declared_lengths_past_the_end_do_not_allocate() {
        // A label claiming 2^62 bytes.
        let mut b = key(1, 2);
        prost::encoding::encode_varint(1 << 62, &mut b);
        assert!(WriteRequestView::decode(&b).is_err());
        check_agree(&b).unwrap();
        // Over-long varints.
        let b = [key(9, 0), vec![0xff; 10], vec![0x01]].concat();
        check_agree(&b).unwrap();
        let b = [key(9, 0), vec![0xff; 9], vec![0x01]].concat();
        check_agree(&b).unwrap();
        assert!(WriteRequestView::decode(&b).is_ok());
    }

    #[test]
    fn last_scalar_wins_and_histogram_only_series_have_no_samples() {
        let sample = [
            key(1, 1),
            1.0f64.to_le_bytes().to_vec(),
            key(1, 1),
            2.0f64.to_le_bytes().to_vec(),
            key(2, 0),
            vec![5],
            key(2, 0),
            vec![7],
        ]
        .concat();
        let label = [len_field(1, b"a"), len_field(1, b"b"), len_field(2, b"v")].concat();
        let req = len_field(1, &[len_field(1, &label), len_field(2, &sample)].concat());
        check_agree(&req).unwrap();
        let v = WriteRequestView::decode(&req).unwrap();
        let s = v.series(0);
        assert_eq!((s.samples[0].value, s.samples[0].timestamp), (2.0, 7));
        assert_eq!(s.labels[0].name, "b");
        // A series with only a (valid, empty) histogram: decoded, no samples.
        let req = len_field(1, &[len_field(1, &label), len_field(4, &[])].concat());
        check_agree(&req).unwrap();
        let v = WriteRequestView::decode(&req).unwrap();
        assert!(v.series(0).samples.is_empty());
    }

    #[test]
    fn histogram_and_exemplar_fields_are_checked_like_prost() {
        let hist = |body: Vec<u8>| len_field(1, &len_field(4, &body));
        let exemplar = |body: Vec<u8>| len_field(1, &len_field(3, &body));
        let cases = [
            // Packed doubles: a whole number of 8-byte values, or not.
            hist(len_field(13, &[0; 16])),
            hist(len_field(13, &[0; 15])),
            hist(len_field(16, &[0; 7])),
            // Unpacked double and sint64 elements; one with the wrong wire type.
            hist([key(10, 1), vec![0; 8], key(9, 0), vec![3]].concat()),
            hist([key(10, 0), vec![1]].concat()),
            hist([key(12, 5), vec![0; 4]].concat()),
            // Packed varints: complete, cut at the run's end, over-long.
            hist(len_field(9, &[0x96, 0x01, 0x05])),
            hist(len_field(9, &[0x96, 0x01, 0x85])),
            hist(len_field(12, &[0xff; 11])),
            // Spans: fields of the right and wrong wire types, spans not length-delimited.
            hist(len_field(
                8,
                &[key(1, 0), vec![3], key(2, 0), vec![4]].concat(),
            )),
            hist(len_field(11, &[key(2, 1), vec![0; 8]].concat())),
            hist([key(8, 0), vec![1]].concat()),
            // oneof count / zero_count and scalars with wrong wire types.
            hist(
                [
                    key(1, 0),
                    vec![1],
                    key(2, 1),
                    vec![0; 8],
                    key(6, 0),
                    vec![2],
                ]
                .concat(),
            ),
            hist([key(2, 0), vec![1]].concat()),
            hist([key(15, 1), vec![0; 8]].concat()),
            hist([key(14, 0), vec![0xff; 10], vec![0x01]].concat()),
            // Exemplars: labels, value, timestamp, bad UTF-8, wrong wire types.
            exemplar(
                [
                    len_field(1, &len_field(1, b"trace_id")),
                    key(2, 1),
                    vec![0; 8],
                    key(3, 0),
                    vec![9],
                ]
                .concat(),
            ),
            exemplar(len_field(1, &len_field(2, &[0xc3]))),
            exemplar([key(2, 0), vec![1]].concat()),
            exemplar([key(1, 0), vec![1]].concat()),
        ];
        for c in &cases {
            check_agree(c).unwrap();
        }
        // Counted, and a series of only histograms still decodes.
        let two = len_field(
            1,
            &[
                len_field(4, &[]),
                len_field(4, &[key(15, 0), vec![1]].concat()),
            ]
            .concat(),
        );
        let v = WriteRequestView::decode(&two).unwrap();
        assert_eq!(v.histogram_count(), 2);
        assert_eq!(v.sample_count(), 0);
    }

    #[test]
    fn read_request_counts_match_prost_and_refuse_what_prost_refuses() {
        use crate::remote::pb::{LabelMatcher, Query, ReadRequest};
        let q = |m: usize| Query {
            matchers: vec![LabelMatcher::default(); m],
            ..Default::default()
        };
        let req = ReadRequest {
            queries: vec![q(2), q(0), q(3)],
            accepted_response_types: vec![0, 1],
        };
        let bytes = req.encode_to_vec();
        assert_eq!(
            read_request_counts(&bytes),
            Some(ReadRequestCounts {
                queries: 3,
                matchers: 5
            })
        );
        // Every cut of a valid request that the counter calls malformed, prost refuses too.
        for cut in 0..bytes.len() {
            if read_request_counts(&bytes[..cut]).is_none() {
                assert!(ReadRequest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        // 2-byte empty queries: counted, nothing decoded.
        let bomb = [0x0a, 0x00].repeat(50_000);
        assert_eq!(read_request_counts(&bomb).unwrap().queries, 50_000);
    }
}
