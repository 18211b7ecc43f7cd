//! Zero-copy decoder of a remote-write 1.0 `WriteRequest`: label names and values are
//! `&str` into the decompressed body (validated as UTF-8); samples and native histograms
//! stay in the body, each series keeping the byte range they are in ([`SamplesRef`],
//! [`HistogramsRef`]), and are decoded again when walked. prost allocated two `String`s per
//! label, which was most of the decode cost (issue 7); a copied sample took 16 bytes, 8 × an
//! empty 2-byte one (issue 13).
//!
//! Equivalence with prost (`WriteRequest::decode`) is the contract, checked by a proptest:
//! the same bytes are accepted and yield the same series, labels and samples, and what
//! prost refuses is refused. The refusal is the view's own [`ViewError`] (the message and
//! field being read, the byte offset in the decompressed body, what was wrong): a rejected
//! body is never decoded a second time (issue 13: re-running prost only for its error text
//! made a 197 KB body of empty native histograms cost 1 GB). Rules mirrored from prost
//! 0.14: varints of at most 10 bytes (the 10th < 2), keys ≤ u32::MAX with wire type 0..=5
//! and tag ≥ 1, a known field with the wrong wire type is an error, the last occurrence of a
//! scalar wins, unknown fields of every wire type are skipped (groups nested up to prost's
//! recursion limit of 100 counted from the top message). Metadata, exemplars and native
//! histograms are not used by the write path (histograms are only counted, so they can be
//! reported as skipped); they are validated in place, without allocating, by checks that
//! mirror prost's rules for their fields (prost itself would allocate a few hundred bytes per
//! empty histogram: a 3 MiB body of them cost gigabytes).

use super::pb::Sample;

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

/// What the view keeps of one series: its labels (a range of the label array) and the
/// series message, in which its samples are the byte range `samples` (from the first
/// sample's field key to the end of the last one).
#[derive(Debug, Clone, Copy)]
pub(super) struct Span<'a> {
    pub(super) labels: (u32, u32),
    pub(super) series: &'a [u8],
    pub(super) samples: (u32, u32),
    pub(super) sample_count: u32,
    pub(super) histogram_count: u32,
}

/// How much of a body one window of [`WriteRequestView::decode_window`] (or of the 2.0
/// decoder's) keeps: what the view holds per series and per label is several times the
/// wire size of a minimal series, so a large body is decoded, planned and sent a bounded
/// window at a time (issue 13: a body of 19-byte series cost 26× its size when it was
/// decoded whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// The window ends once it holds this many series...
    pub series: usize,
    /// ...or this many labels (checked between series).
    pub labels: usize,
    /// Labels kept per series (with a non-empty value); the rest are validated only.
    pub series_labels: usize,
}

impl WindowLimits {
    /// No limit: the whole body in one window, every label kept.
    pub const WHOLE: WindowLimits = WindowLimits {
        series: usize::MAX,
        labels: usize::MAX,
        series_labels: usize::MAX,
    };
}

/// The float samples of one series. From the body they are the byte range of the series
/// message that holds them (other fields that sit between two samples are skipped on each
/// walk); the decoder validated every field in it, so a walk cannot fail. prost's owned
/// request lends its decoded array instead (tests, tools).
///
/// Walks yield a *cursor* with each sample: its field's byte offset in the range (or its
/// index in the array). A cursor range selects the samples from one cursor to another, so a
/// write plan can describe any run of a series' samples in a few bytes.
#[derive(Debug, Clone, Copy)]
pub struct SamplesRef<'a> {
    src: SampleSource<'a>,
    count: u32,
}

#[derive(Debug, Clone, Copy)]
enum SampleSource<'a> {
    /// `Sample` fields (field 2 of the series message, in 1.0 and 2.0) among others.
    Wire(&'a [u8]),
    Decoded(&'a [Sample]),
}

impl Default for SamplesRef<'_> {
    fn default() -> Self {
        SamplesRef {
            src: SampleSource::Decoded(&[]),
            count: 0,
        }
    }
}

/// Field number of `samples` in the series message of 1.0 and 2.0.
const SAMPLES_FIELD: u32 = 2;

impl<'a> SamplesRef<'a> {
    /// Samples decoded elsewhere (prost's `TimeSeries::samples`).
    pub fn decoded(samples: &'a [Sample]) -> Self {
        SamplesRef {
            src: SampleSource::Decoded(samples),
            count: samples.len() as u32,
        }
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The cursor past the last sample.
    pub fn end(&self) -> u32 {
        match self.src {
            SampleSource::Wire(b) => b.len() as u32,
            SampleSource::Decoded(s) => s.len() as u32,
        }
    }

    /// Every sample, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = Sample> + 'a {
        self.walk(0..self.end()).map(|(_, s)| s)
    }

    /// (cursor, sample) for the samples whose cursor is in `range`, in wire order. `range`
    /// must start at a cursor a walk yielded (or 0) and end at one or at [`SamplesRef::end`].
    pub fn walk(&self, range: std::ops::Range<u32>) -> SampleWalk<'a> {
        SampleWalk {
            src: self.src,
            pos: range.start as usize,
            end: range.end as usize,
        }
    }
}

/// Iterator of [`SamplesRef::walk`].
#[derive(Debug, Clone)]
pub struct SampleWalk<'a> {
    src: SampleSource<'a>,
    pos: usize,
    end: usize,
}

impl Iterator for SampleWalk<'_> {
    type Item = (u32, Sample);

    #[inline]
    fn next(&mut self) -> Option<(u32, Sample)> {
        match self.src {
            SampleSource::Decoded(s) => {
                let i = self.pos;
                if i >= self.end {
                    return None;
                }
                self.pos += 1;
                Some((i as u32, s[i]))
            }
            SampleSource::Wire(b) => loop {
                let at = self.pos;
                if at >= self.end {
                    return None;
                }
                // A sample of up to 127 bytes (key 0x12, a one-byte length): all of them
                // but those padded with unknown fields.
                if let [0x12, len @ 0..=0x7f, ..] = b[at..self.end] {
                    let start = at + 2;
                    self.pos = start + len as usize;
                    return Some((at as u32, sample_of(&b[start..self.pos])));
                }
                let mut fields = Fields::new(&b[at..self.end]);
                let f = fields.next()?;
                self.pos = at + fields.pos;
                if f.tag == SAMPLES_FIELD && f.wire_type == LEN {
                    return Some((at as u32, sample_of(f.bytes)));
                }
            },
        }
    }
}

/// A `Sample` message the decoder validated: the last `value` and `timestamp` win, as in
/// prost; other fields (2.0's `start_timestamp`, unknown ones) are skipped.
#[inline]
fn sample_of(m: &[u8]) -> Sample {
    // As Prometheus writes it: value (key 0x09, 8 bytes), then timestamp (key 0x10, a varint
    // that ends the message).
    if m.len() >= 11 && m.len() <= 20 && m[0] == 0x09 && m[9] == 0x10 {
        let (ts, last) = m[10..].split_at(m.len() - 11);
        if last[0] < 0x80 && ts.iter().all(|&b| b >= 0x80) {
            let mut t = 0u64;
            for (i, &b) in m[10..].iter().enumerate() {
                t |= u64::from(b & 0x7f) << (7 * i);
            }
            let v: [u8; 8] = m[1..9].try_into().expect("8 bytes");
            return Sample {
                value: f64::from_le_bytes(v),
                timestamp: t as i64,
            };
        }
    }
    let mut s = Sample::default();
    for f in Fields::new(m) {
        match (f.tag, f.wire_type) {
            (1, FIXED64) => s.value = f64::from_bits(f.varint),
            (2, VARINT) => s.timestamp = f.varint as i64,
            _ => {}
        }
    }
    s
}

/// The native histograms of one series, kept as the series message they are in (no
/// allocation per histogram: a 2-byte empty histogram must not cost more than its bytes).
/// The message was validated by the decoder, so walking it again cannot fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistogramsRef<'a> {
    /// The whole `TimeSeries` message.
    pub series: &'a [u8],
    /// Field number of `histograms` in that message (4 in 1.0, 3 in 2.0).
    pub field: u32,
    /// How many histograms the series holds.
    pub count: u32,
}

impl<'a> HistogramsRef<'a> {
    /// Each histogram as (offset of its field key in the series message, message bytes).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let field = self.field;
        let count = self.count;
        Fields::new(self.series)
            .filter(move |f| count > 0 && f.tag == field && f.wire_type == LEN)
            .map(|f| (f.at as u32, f.bytes))
    }

    /// The histogram message whose field key is at `offset` (from [`HistogramsRef::iter`]).
    pub fn at(&self, offset: u32) -> &'a [u8] {
        Fields::new(&self.series[offset as usize..])
            .next()
            .map_or(&[][..], |f| f.bytes)
    }
}

/// One field of a validated message: tag, wire type, where its key starts, and its
/// payload (the bytes of a LEN field, empty otherwise) or varint value.
pub(crate) struct Field<'a> {
    pub(crate) tag: u32,
    pub(crate) wire_type: u8,
    pub(crate) at: usize,
    pub(crate) bytes: &'a [u8],
    pub(crate) varint: u64,
}

/// Top-level fields of a message the decoder already validated (groups skipped whole).
/// Stops at the first malformed byte instead of failing: it is never given unchecked input.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Some(b)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let mut depth = 0u32;
        loop {
            if self.pos >= self.buf.len() {
                return None;
            }
            let at = self.pos;
            let key = self.varint()?;
            let (tag, wire_type) = ((key >> 3) as u32, (key & 7) as u8);
            let (mut bytes, mut varint) = (&[][..], 0);
            match wire_type {
                VARINT => varint = self.varint()?,
                FIXED64 => varint = u64::from_le_bytes(self.take(8)?.try_into().ok()?),
                LEN => {
                    let n = self.varint()?;
                    bytes = self.take(usize::try_from(n).ok()?)?;
                }
                FIXED32 => varint = u64::from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
                SGROUP => {
                    depth += 1;
                    continue;
                }
                EGROUP => {
                    depth = depth.checked_sub(1)?;
                    continue;
                }
                _ => return None,
            }
            if depth == 0 {
                return Some(Field {
                    tag,
                    wire_type,
                    at,
                    bytes,
                    varint,
                });
            }
        }
    }
}

/// The `timestamp` (field 15) of a validated `Histogram` message (the last one wins, as in
/// prost; 0 when absent).
pub fn histogram_timestamp(h: &[u8]) -> i64 {
    Fields::new(h)
        .filter(|f| f.tag == 15 && f.wire_type == VARINT)
        .last()
        .map_or(0, |f| f.varint as i64)
}

/// A decoded `WriteRequest` whose strings borrow the body it was decoded from. The
/// remote-write 2.0 decoder (`view_v2`) fills the same type, so both protocols share one
/// write pipeline.
#[derive(Debug)]
pub struct WriteRequestView<'a> {
    pub(super) labels: Vec<LabelRef<'a>>,
    pub(super) series: Vec<Span<'a>>,
    /// Float samples in all series.
    pub(super) samples: usize,
    pub(super) histograms: u64,
    /// Field number of `histograms` in the series message (4 in 1.0, 3 in 2.0).
    pub(super) histogram_field: u32,
}

impl WriteRequestView<'_> {
    /// An empty view of a message whose series keep their histograms in field `histogram_field`.
    pub(super) fn new(histogram_field: u32) -> Self {
        WriteRequestView {
            labels: Vec::new(),
            series: Vec::new(),
            samples: 0,
            histograms: 0,
            histogram_field,
        }
    }
}

/// One series of a [`WriteRequestView`].
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'v, 'a> {
    /// Labels in wire order.
    pub labels: &'v [LabelRef<'a>],
    /// Samples in wire order (left in the body).
    pub samples: SamplesRef<'a>,
    /// Native histograms.
    pub histograms: HistogramsRef<'a>,
}

/// Why the view refused a body: what was wrong, where (byte offset in the uncompressed
/// message) and in which field. Built only on the error path; costs nothing per element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}{}", field_suffix(*.field))]
pub struct ViewError {
    /// What was wrong (e.g. "length past the end of the message").
    pub reason: &'static str,
    /// Offset of the faulty byte in the uncompressed message.
    pub offset: usize,
    /// The innermost message field being read (`TimeSeries.labels`), when known.
    pub field: Option<&'static str>,
}

fn field_suffix(field: Option<&'static str>) -> String {
    match field {
        Some(f) => format!(" (in {f})"),
        None => String::new(),
    }
}

type R<T> = Result<T, ViewError>;

/// Names the field being read on an error that has no field yet (the innermost wins).
#[inline]
fn within<T>(r: R<T>, field: &'static str) -> R<T> {
    r.map_err(|mut e| {
        e.field.get_or_insert(field);
        e
    })
}

/// A cursor over one message; `base` is its offset in the whole body (for errors).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    /// Where the last key started (errors about its field point there).
    key_at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
            key_at: 0,
        }
    }

    #[cold]
    fn err(&self, reason: &'static str) -> ViewError {
        self.err_at(self.pos, reason)
    }

    #[cold]
    fn err_at(&self, pos: usize, reason: &'static str) -> ViewError {
        ViewError {
            reason,
            offset: self.base + pos,
            field: None,
        }
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
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err_at(start, "varint cut short by the end of the message"));
            };
            self.pos += 1;
            if i == 9 && b >= 2 {
                return Err(self.err_at(start, "varint longer than 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.err_at(start, "varint longer than 64 bits"))
    }

    /// (tag, wire type), refusing what prost's `decode_key` refuses.
    #[inline]
    fn key(&mut self) -> R<(u32, u8)> {
        let start = self.pos;
        self.key_at = start;
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(self.err_at(start, "field key over 32 bits"));
        }
        let wire_type = (key & 7) as u8;
        let tag = (key >> 3) as u32;
        if wire_type > 5 {
            return Err(self.err_at(start, "invalid wire type"));
        }
        if tag == 0 {
            return Err(self.err_at(start, "field number 0"));
        }
        Ok((tag, wire_type))
    }

    #[inline]
    fn advance(&mut self, n: u64) -> R<()> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(self.err("length past the end of the message"));
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

    /// A length-delimited embedded message, as a reader that reports absolute offsets.
    #[inline]
    fn message(&mut self) -> R<Reader<'a>> {
        let len = self.varint()?;
        let start = self.pos;
        self.advance(len)?;
        Ok(Reader {
            buf: &self.buf[start..self.pos],
            pos: 0,
            base: self.base + start,
            key_at: 0,
        })
    }

    #[inline]
    fn str(&mut self) -> R<&'a str> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|e| {
            let start = self.pos - b.len();
            self.err_at(start + e.valid_up_to(), "string is not valid UTF-8")
        })
    }

    #[inline]
    fn fixed64(&mut self) -> R<[u8; 8]> {
        let start = self.pos;
        self.advance(8)?;
        let mut v = [0u8; 8];
        v.copy_from_slice(&self.buf[start..self.pos]);
        Ok(v)
    }

    /// prost's `skip_field`, including its recursion budget `ctx`.
    fn skip(&mut self, wire_type: u8, tag: u32, ctx: u32) -> R<()> {
        if ctx == 0 {
            return Err(self.err("groups nested deeper than the recursion limit of 100"));
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
                let at = self.pos;
                let (inner_tag, inner_wire_type) = self.key()?;
                if inner_wire_type == 4 {
                    return if inner_tag == tag {
                        Ok(())
                    } else {
                        Err(self.err_at(at, "end of group does not match its start"))
                    };
                }
                self.skip(inner_wire_type, inner_tag, ctx - 1)?;
            },
            _ => Err(self.err("end of group without a start")),
        }
    }

    /// Error for a known field sent with another wire type than its declared one.
    #[cold]
    fn wrong_wire_type(&self) -> ViewError {
        self.err_at(self.key_at, "field has the wrong wire type")
    }
}

const LEN: u8 = 2;

impl<'a> WriteRequestView<'a> {
    /// Decodes an uncompressed `WriteRequest`; refuses exactly what prost refuses (with
    /// the view's own error, never by decoding the body again).
    pub fn decode(buf: &'a [u8]) -> Result<Self, ViewError> {
        Ok(Self::decode_window(buf, 0, WindowLimits::WHOLE)?.0)
    }

    /// Decodes the series of `buf` from byte `from` (0, or where the previous window ended)
    /// until `limits` are reached, and returns them with where the next window starts
    /// (`None`: the body ends in this window, which then validated all of it from `from`).
    /// The rest of the body is not looked at: a caller that wants all or nothing decodes
    /// every window before using one.
    pub fn decode_window(
        buf: &'a [u8],
        from: usize,
        limits: WindowLimits,
    ) -> Result<(Self, Option<usize>), ViewError> {
        let mut view = WriteRequestView::new(4);
        let next = view.decode_inner(buf, from, limits)?;
        Ok((view, next))
    }

    fn decode_inner(
        &mut self,
        buf: &'a [u8],
        from: usize,
        limits: WindowLimits,
    ) -> R<Option<usize>> {
        // Sized from the body (never from a declared length): ~28 bytes per label on the
        // wire for node_exporter-like series.
        self.labels
            .reserve(((buf.len() - from) / 32).min(limits.labels));
        let mut r = Reader::new(buf);
        r.pos = from;
        while !r.done() {
            if self.series.len() >= limits.series || self.labels.len() >= limits.labels {
                return Ok(Some(r.pos));
            }
            let (tag, wire_type) = r.key()?;
            match tag {
                1 if wire_type != LEN => {
                    return within(Err(r.wrong_wire_type()), "WriteRequest.timeseries")
                }
                3 if wire_type != LEN => {
                    return within(Err(r.wrong_wire_type()), "WriteRequest.metadata")
                }
                1 => {
                    let series = within(r.message(), "WriteRequest.timeseries")?;
                    self.decode_series(series, limits.series_labels)?;
                }
                // Metadata: unused, but refused when prost would refuse it.
                3 => check_metadata(within(r.message(), "WriteRequest.metadata")?)?,
                _ => within(r.skip(wire_type, tag, RECURSION_LIMIT), "WriteRequest")?,
            }
        }
        Ok(None)
    }

    /// One series; keeps at most `max_labels` of its labels (the rest are validated).
    fn decode_series(&mut self, mut r: Reader<'a>, max_labels: usize) -> R<()> {
        const CTX: u32 = RECURSION_LIMIT - 1;
        let l0 = self.labels.len();
        let (mut samples, mut histograms) = (0u32, 0u32);
        // Byte range of the samples in the series message: first key to last end.
        let (mut first, mut last) = (0usize, 0usize);
        while !r.done() {
            let (tag, wire_type) = within(r.key(), "TimeSeries")?;
            match tag {
                1..=4 if wire_type != LEN => return within(Err(r.wrong_wire_type()), "TimeSeries"),
                1 => {
                    let label = decode_label(within(r.message(), "TimeSeries.labels")?, CTX - 1)?;
                    // Prometheus treats an empty value as an absent label (the write plan
                    // drops it): not kept, so 2-byte empty labels cost nothing.
                    if !label.value.is_empty() && self.labels.len() - l0 < max_labels {
                        self.labels.push(label);
                    }
                }
                2 => {
                    if samples == 0 {
                        first = r.key_at;
                    }
                    check_sample(within(r.message(), "TimeSeries.samples")?)?;
                    samples = samples.checked_add(1).ok_or_else(|| too_many(&r))?;
                    last = r.pos;
                }
                3 => check_exemplar(within(r.message(), "TimeSeries.exemplars")?)?,
                4 => {
                    check_histogram(within(r.message(), "TimeSeries.histograms")?)?;
                    self.histograms += 1;
                    histograms = histograms.saturating_add(1);
                }
                _ => within(r.skip(wire_type, tag, CTX), "TimeSeries")?,
            }
        }
        // A series without samples or histograms writes nothing: not kept, so 2-byte empty
        // series cost nothing.
        if samples == 0 && histograms == 0 {
            self.labels.truncate(l0);
            return Ok(());
        }
        self.samples += samples as usize;
        let n = |x: usize| u32::try_from(x).map_err(|_| too_many(&r));
        self.series.push(Span {
            labels: (n(l0)?, n(self.labels.len())?),
            series: r.buf,
            samples: (n(first)?, n(last)?),
            sample_count: samples,
            histogram_count: histograms,
        });
        Ok(())
    }

    /// Number of series with at least one sample (series without samples write nothing
    /// and are not kept; labels with an empty value, which Prometheus treats as absent,
    /// are not kept either).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether there is no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Samples in all series.
    pub fn sample_count(&self) -> usize {
        self.samples
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
            samples: SamplesRef {
                src: SampleSource::Wire(&s.series[s.samples.0 as usize..s.samples.1 as usize]),
                count: s.sample_count,
            },
            histograms: HistogramsRef {
                series: s.series,
                field: self.histogram_field,
                count: s.histogram_count,
            },
        }
    }

    /// Every series in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = SeriesView<'_, 'a>> + '_ {
        (0..self.series.len()).map(|i| self.series(i))
    }
}

/// A `Label`; `ctx` is prost's recursion budget for its fields.
fn decode_label(mut r: Reader<'_>, ctx: u32) -> R<LabelRef<'_>> {
    let mut label = LabelRef {
        name: "",
        value: "",
    };
    while !r.done() {
        let (tag, wire_type) = within(r.key(), "Label")?;
        match tag {
            1 | 2 if wire_type != LEN => return within(Err(r.wrong_wire_type()), "Label"),
            1 => label.name = within(r.str(), "Label.name")?,
            2 => label.value = within(r.str(), "Label.value")?,
            _ => within(r.skip(wire_type, tag, ctx), "Label")?,
        }
    }
    Ok(label)
}

/// A `Sample`, accepted exactly when prost accepts it (the write plan decodes it again
/// from the body with [`sample_of`]).
fn check_sample(r: Reader<'_>) -> R<()> {
    check_fields(r, RECURSION_LIMIT - 2, "Sample", |r, tag, wire_type| {
        match tag {
            1 => within(scalar(r, wire_type, FIXED64), "Sample.value")?,
            2 => within(scalar(r, wire_type, VARINT), "Sample.timestamp")?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// Error for a series with more samples than a 32-bit count holds (or a series message
/// longer than a 32-bit offset reaches).
#[cold]
fn too_many(r: &Reader<'_>) -> ViewError {
    ViewError {
        reason: "more than 2^32 labels or samples",
        offset: r.base,
        field: Some("WriteRequest.timeseries"),
    }
}

/// Element counts of a `ReadRequest`, read from its wire structure without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequestCounts {
    /// `queries` entries.
    pub queries: usize,
    /// `matchers` entries over all queries.
    pub matchers: usize,
    /// `accepted_response_types` entries.
    pub response_types: usize,
}

/// Validates an uncompressed `ReadRequest` exactly as prost would decode it, and counts its
/// queries, matchers and accepted response types, without allocating: prost builds a
/// ~200-byte `Query` (a ~56-byte `LabelMatcher`, a 4-byte response type) from each 2-byte
/// empty one (1-byte type), so the caller checks the counts before handing the bytes to
/// prost. What this refuses, prost refuses (with its error, never by decoding a second
/// time); what it accepts, prost decodes without error.
pub fn read_request_counts(buf: &[u8]) -> Result<ReadRequestCounts, ViewError> {
    let mut counts = ReadRequestCounts {
        queries: 0,
        matchers: 0,
        response_types: 0,
    };
    let mut r = Reader::new(buf);
    while !r.done() {
        let (tag, wire_type) = within(r.key(), "ReadRequest")?;
        match tag {
            1 if wire_type != LEN => {
                return within(Err(r.wrong_wire_type()), "ReadRequest.queries")
            }
            1 => {
                counts.queries += 1;
                counts.matchers += check_query(within(r.message(), "ReadRequest.queries")?)?;
            }
            2 => {
                counts.response_types += within(
                    repeated_count(&mut r, wire_type, VARINT),
                    "ReadRequest.accepted_response_types",
                )?;
            }
            _ => within(r.skip(wire_type, tag, RECURSION_LIMIT), "ReadRequest")?,
        }
    }
    Ok(counts)
}

/// A `Query`; returns its number of matchers.
fn check_query(r: Reader<'_>) -> R<usize> {
    const CTX: u32 = RECURSION_LIMIT - 1;
    let mut matchers = 0;
    check_fields(r, CTX, "Query", |r, tag, wire_type| {
        match tag {
            // start_timestamp_ms, end_timestamp_ms
            1 | 2 => within(scalar(r, wire_type, VARINT), "Query.timestamp")?,
            3 | 4 if wire_type != LEN => return within(Err(r.wrong_wire_type()), "Query"),
            3 => {
                matchers += 1;
                check_matcher(within(r.message(), "Query.matchers")?)?;
            }
            4 => check_hints(within(r.message(), "Query.hints")?)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(matchers)
}

/// A `LabelMatcher` (type, name, value).
fn check_matcher(r: Reader<'_>) -> R<()> {
    check_fields(
        r,
        RECURSION_LIMIT - 2,
        "LabelMatcher",
        |r, tag, wire_type| {
            match tag {
                1 => within(scalar(r, wire_type, VARINT), "LabelMatcher.type")?,
                2 | 3 => within(string(r, wire_type), "LabelMatcher.name/value")?,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )
}

/// `ReadHints` (step_ms, func, start_ms, end_ms, grouping, by, range_ms).
fn check_hints(r: Reader<'_>) -> R<()> {
    check_fields(r, RECURSION_LIMIT - 2, "ReadHints", |r, tag, wire_type| {
        match tag {
            1 | 3 | 4 | 6 | 7 => within(scalar(r, wire_type, VARINT), "ReadHints")?,
            2 | 5 => within(string(r, wire_type), "ReadHints.func/grouping")?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// Wire types of the scalar fields below.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const FIXED32: u8 = 5;

/// A scalar field (or one element of an unpacked repeated field) as prost reads it.
#[inline]
fn scalar(r: &mut Reader<'_>, wire_type: u8, want: u8) -> R<()> {
    match (wire_type, want) {
        (VARINT, VARINT) => r.varint().map(drop),
        (FIXED64, FIXED64) => r.fixed64().map(drop),
        _ => Err(r.wrong_wire_type()),
    }
}

/// A `string` field: length-delimited, valid UTF-8.
#[inline]
fn string(r: &mut Reader<'_>, wire_type: u8) -> R<()> {
    if wire_type != LEN {
        return Err(r.wrong_wire_type());
    }
    r.str().map(drop)
}

/// A repeated numeric field, packed (one length-delimited run) or not, as prost accepts
/// both; returns the number of elements.
fn repeated_count(r: &mut Reader<'_>, wire_type: u8, want: u8) -> R<usize> {
    if wire_type != LEN {
        return scalar(r, wire_type, want).map(|()| 1);
    }
    let mut p = r.message()?;
    if want == FIXED64 {
        // prost reads 8 bytes per element and fails unless the run ends on a boundary.
        return if p.buf.len() % 8 == 0 {
            Ok(p.buf.len() / 8)
        } else {
            Err(p.err_at(p.buf.len() - p.buf.len() % 8, "packed doubles cut short"))
        };
    }
    let mut n = 0;
    while !p.done() {
        p.varint()?;
        n += 1;
    }
    Ok(n)
}

fn repeated(r: &mut Reader<'_>, wire_type: u8, want: u8) -> R<()> {
    repeated_count(r, wire_type, want).map(drop)
}

/// Walks the fields of a message nobody keeps: `field` consumes a known field and returns
/// true; unknown fields are skipped within prost's recursion budget `ctx`. `name` is the
/// message's, for errors.
fn check_fields<'a>(
    mut r: Reader<'a>,
    ctx: u32,
    name: &'static str,
    mut field: impl FnMut(&mut Reader<'a>, u32, u8) -> R<bool>,
) -> R<()> {
    while !r.done() {
        let (tag, wire_type) = within(r.key(), name)?;
        if !field(&mut r, tag, wire_type)? {
            within(r.skip(wire_type, tag, ctx), name)?;
        }
    }
    Ok(())
}

/// A `MetricMetadata` (type, metric_family_name, help, unit), accepted exactly when
/// prost accepts it.
fn check_metadata(r: Reader<'_>) -> R<()> {
    check_fields(
        r,
        RECURSION_LIMIT - 1,
        "MetricMetadata",
        |r, tag, wire_type| {
            match tag {
                1 => within(scalar(r, wire_type, VARINT), "MetricMetadata.type")?,
                2 | 4 | 5 => within(string(r, wire_type), "MetricMetadata")?,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )
}

/// An `Exemplar` (labels, value, timestamp), accepted exactly when prost accepts it.
fn check_exemplar(r: Reader<'_>) -> R<()> {
    const CTX: u32 = RECURSION_LIMIT - 2;
    check_fields(r, CTX, "Exemplar", |r, tag, wire_type| {
        match tag {
            1 if wire_type != LEN => return within(Err(r.wrong_wire_type()), "Exemplar.labels"),
            1 => decode_label(within(r.message(), "Exemplar.labels")?, CTX - 1).map(drop)?,
            2 => within(scalar(r, wire_type, FIXED64), "Exemplar.value")?,
            3 => within(scalar(r, wire_type, VARINT), "Exemplar.timestamp")?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A native `Histogram`, accepted exactly when prost accepts it (types.proto field numbers).
fn check_histogram(r: Reader<'_>) -> R<()> {
    check_fields(r, RECURSION_LIMIT - 2, "Histogram", |r, tag, wire_type| {
        match tag {
            // count_int, schema (sint32), zero_count_int, reset_hint, timestamp
            1 | 4 | 6 | 14 | 15 => within(scalar(r, wire_type, VARINT), "Histogram")?,
            // count_float, sum, zero_threshold, zero_count_float
            2 | 3 | 5 | 7 => within(scalar(r, wire_type, FIXED64), "Histogram")?,
            // negative_spans, positive_spans: BucketSpan {offset sint32, length uint32}
            8 | 11 if wire_type != LEN => {
                return within(Err(r.wrong_wire_type()), "Histogram.spans")
            }
            8 | 11 => check_fields(
                within(r.message(), "Histogram.spans")?,
                RECURSION_LIMIT - 3,
                "BucketSpan",
                |r, tag, wire_type| match tag {
                    1 | 2 => within(scalar(r, wire_type, VARINT), "BucketSpan").map(|()| true),
                    _ => Ok(false),
                },
            )?,
            // negative_deltas, positive_deltas (sint64)
            9 | 12 => within(repeated(r, wire_type, VARINT), "Histogram.deltas")?,
            // negative_counts, positive_counts, custom_values (double)
            10 | 13 | 16 => within(repeated(r, wire_type, FIXED64), "Histogram.counts")?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::remote::pb::histogram::{Count, ZeroCount};
    use crate::remote::pb::WriteRequest;
    use crate::remote::pb::{BucketSpan, Exemplar, Histogram, Label, MetricMetadata, TimeSeries};
    use proptest::prelude::*;
    use prost::Message;

    /// What the write path reads of a prost request: labels and samples of every series.
    /// Histograms as prost's canonical encoding of their decoded message.
    type Flat = Vec<(Vec<(String, String)>, Vec<(u64, i64)>, Vec<Vec<u8>>)>;

    /// (Series without samples and labels with empty values are left out, as the view
    /// does not keep them.)
    fn flat_prost(req: &WriteRequest) -> Flat {
        req.timeseries
            .iter()
            .filter(|t| !t.samples.is_empty() || !t.histograms.is_empty())
            .map(|t| {
                (
                    t.labels
                        .iter()
                        .filter(|l| !l.value.is_empty())
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    // Bits, so NaN payloads (stale markers) compare exactly.
                    t.samples
                        .iter()
                        .map(|s| (s.value.to_bits(), s.timestamp))
                        .collect(),
                    t.histograms.iter().map(|h| h.encode_to_vec()).collect(),
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
                    t.histograms
                        .iter()
                        .map(|(_, h)| {
                            let parsed = crate::histogram::parse(h);
                            assert_eq!(parsed.timestamp, histogram_timestamp(h));
                            parsed.encode_to_vec()
                        })
                        .collect(),
                )
            })
            .collect()
    }

    /// Both decoders agree: both refuse (each with its own message; the view's names a
    /// byte inside the body) or both yield the same.
    fn check_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        match (WriteRequest::decode(bytes), WriteRequestView::decode(bytes)) {
            (Ok(p), Ok(v)) => prop_assert_eq!(flat_prost(&p), flat_view(&v)),
            (Err(_), Err(e)) => {
                prop_assert!(e.offset <= bytes.len(), "{e} in {} bytes", bytes.len())
            }
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

    /// `bytes` with each edit applied: (where, byte, 0 = overwrite / 1 = insert / 2 = cut).
    pub(in crate::remote) fn damage(
        mut bytes: Vec<u8>,
        edits: &[(prop::sample::Index, u8, u8)],
    ) -> Vec<u8> {
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(*byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = *byte,
                1 => bytes.insert(i, *byte),
                _ => bytes.truncate(i),
            }
        }
        bytes
    }

    fn spans() -> impl Strategy<Value = Vec<BucketSpan>> {
        prop::collection::vec(
            (any::<i32>(), any::<u32>()).prop_map(|(offset, length)| BucketSpan { offset, length }),
            0..3,
        )
    }

    /// Every field of a native histogram, so damaged bytes reach each branch of the checks.
    pub(in crate::remote) fn histogram() -> impl Strategy<Value = Histogram> {
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

        /// Windows of any size, one after another, hold what the whole view holds, and
        /// a damaged body is refused by some window exactly when the whole view refuses it.
        #[test]
        fn windows_read_what_the_whole_view_reads(
            req in request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..2),
            series in 1usize..4,
            labels in 1usize..6,
        ) {
            let bytes = damage(req.encode_to_vec(), &edits);
            let limits = WindowLimits { series, labels, series_labels: usize::MAX };
            let mut from = Some(0);
            let mut got = Ok(Flat::new());
            while let (Some(at), Ok(flat)) = (from, got.as_mut()) {
                match WriteRequestView::decode_window(&bytes, at, limits) {
                    Ok((v, next)) => {
                        prop_assert!(v.len() <= series);
                        flat.extend(flat_view(&v));
                        from = next;
                    }
                    Err(e) => got = Err(e),
                }
            }
            match (WriteRequestView::decode(&bytes), got) {
                (Ok(whole), Ok(windows)) => prop_assert_eq!(flat_view(&whole), windows),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "whole {:?}, windows {:?}", a.map(|v| v.len()), b.map(|f| f.len())),
            }
        }

        /// Valid requests with a few bytes overwritten, inserted or cut off reach the
        /// deeper branches (bad UTF-8, wrong wire types, lengths past the end).
        #[test]
        fn same_as_prost_on_damaged_requests(
            req in request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let bytes = damage(req.encode_to_vec(), &edits);
            check_agree(&bytes)?;
        }
    }

    #[test]
    fn a_window_keeps_the_first_labels_of_a_series_up_to_its_cap() {
        let labels: Vec<Label> = (0..10)
            .map(|i| Label {
                name: format!("l{i}"),
                value: if i == 3 { String::new() } else { "v".into() },
            })
            .collect();
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: labels.clone(),
                samples: vec![crate::remote::pb::Sample::default()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        let limits = WindowLimits {
            series_labels: 5,
            ..WindowLimits::WHOLE
        };
        let (v, next) = WriteRequestView::decode_window(&bytes, 0, limits).unwrap();
        assert_eq!(next, None);
        let names: Vec<_> = v.series(0).labels.iter().map(|l| l.name).collect();
        // The empty value is not kept, nor counted.
        assert_eq!(names, ["l0", "l1", "l2", "l4", "l5"]);
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
        assert_eq!(s.samples.iter().next().unwrap().value, 1.5);
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
        let first = s.samples.iter().next().unwrap();
        assert_eq!((first.value, first.timestamp), (2.0, 7));
        assert_eq!(s.labels[0].name, "b");
        // A series with only a (valid, empty) histogram: kept, its histogram in place.
        let req = len_field(1, &[len_field(1, &label), len_field(4, &[])].concat());
        check_agree(&req).unwrap();
        let v = WriteRequestView::decode(&req).unwrap();
        assert_eq!(v.len(), 1);
        assert!(v.series(0).samples.is_empty());
        assert_eq!(v.series(0).histograms.iter().count(), 1);
        assert_eq!(v.histogram_count(), 1);
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
            Ok(ReadRequestCounts {
                queries: 3,
                matchers: 5,
                response_types: 2,
            })
        );
        // Every cut of a valid request: the validator and prost agree.
        for cut in 0..bytes.len() {
            check_read_agree(&bytes[..cut]).unwrap();
        }
        // 2-byte empty queries: counted, nothing decoded.
        let bomb = [0x0a, 0x00].repeat(50_000);
        assert_eq!(read_request_counts(&bomb).unwrap().queries, 50_000);
        // A packed run of response types is counted element by element.
        let types = [vec![0x12, 0x05], vec![1; 5]].concat();
        assert_eq!(read_request_counts(&types).unwrap().response_types, 5);
    }

    /// The ReadRequest validator accepts exactly what prost decodes.
    fn check_read_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        use crate::remote::pb::ReadRequest;
        match (ReadRequest::decode(bytes), read_request_counts(bytes)) {
            (Ok(p), Ok(c)) => {
                prop_assert_eq!(p.queries.len(), c.queries);
                prop_assert_eq!(p.accepted_response_types.len(), c.response_types);
                prop_assert_eq!(
                    p.queries.iter().map(|q| q.matchers.len()).sum::<usize>(),
                    c.matchers
                );
            }
            (Err(_), Err(e)) => prop_assert!(e.offset <= bytes.len(), "{e}"),
            (p, v) => prop_assert!(false, "prost {:?} vs validator {:?}", p, v),
        }
        Ok(())
    }

    fn read_request() -> impl Strategy<Value = crate::remote::pb::ReadRequest> {
        use crate::remote::pb::{LabelMatcher, Query, ReadHints, ReadRequest};
        let matcher =
            (0i32..5, "[a-z_\u{e9}]{0,4}", ".{0,6}").prop_map(|(t, name, value)| LabelMatcher {
                r#type: t,
                name,
                value,
            });
        let hints = (
            any::<i64>(),
            ".{0,4}",
            prop::collection::vec(".{0,3}", 0..3),
            any::<bool>(),
        )
            .prop_map(|(n, func, grouping, by)| ReadHints {
                step_ms: n,
                func,
                start_ms: n,
                end_ms: n,
                grouping,
                by,
                range_ms: n,
            });
        let query = (
            any::<i64>(),
            any::<i64>(),
            prop::collection::vec(matcher, 0..4),
            prop::option::of(hints),
        )
            .prop_map(|(s, e, matchers, hints)| Query {
                start_timestamp_ms: s,
                end_timestamp_ms: e,
                matchers,
                hints,
            });
        (
            prop::collection::vec(query, 0..4),
            prop::collection::vec(-1i32..3, 0..3),
        )
            .prop_map(|(queries, accepted_response_types)| ReadRequest {
                queries,
                accepted_response_types,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn read_validator_same_as_prost_on_damaged_requests(
            req in read_request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
        ) {
            let bytes = damage(req.encode_to_vec(), &edits);
            check_read_agree(&bytes)?;
        }

        #[test]
        fn read_validator_same_as_prost_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            check_read_agree(&bytes)?;
        }
    }

    #[test]
    fn errors_name_the_field_and_offset() {
        // A series of one empty histogram then a key cut short (0x22: histograms, LEN).
        let series = [len_field(4, &[]), vec![0x22]].concat();
        let req = len_field(1, &series);
        let e = WriteRequestView::decode(&req).unwrap_err();
        assert_eq!(e.offset, req.len(), "{e}");
        assert!(e.to_string().contains("TimeSeries.histograms"), "{e}");
        // Bad UTF-8 in a label value: the offset of the bad byte.
        let label = [len_field(1, b"a"), len_field(2, &[b'o', b'k', 0xff])].concat();
        let req = len_field(1, &len_field(1, &label));
        let e = WriteRequestView::decode(&req).unwrap_err();
        assert_eq!(&req[e.offset..e.offset + 1], &[0xff], "{e}");
        assert!(e.to_string().contains("Label.value"), "{e}");
    }
}
