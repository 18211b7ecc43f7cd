//! Zero-copy decoder of a remote-write 2.0 `io.prometheus.write.v2.Request` into the same
//! [`WriteRequestView`] the 1.0 decoder yields, so both protocols share one write planner
//! and one status mapping. The symbol table is a `Vec<&str>` into the decompressed body (or,
//! for a body of very many short symbols, their offsets in it);
//! each series' `labels_refs` are resolved into borrowed [`LabelRef`]s (no string is
//! copied); its samples and native histograms stay in the body (the series keeps the byte
//! range of its samples, as the 1.0 view does).
//!
//! Acceptance is prost's (`pb_v2::Request::decode`) plus the 2.0 rules prost cannot check:
//! `symbols[0]` is `""` (when there are symbols), every ref (labels, exemplar labels,
//! metadata help/unit) indexes the table, and `labels_refs` lists have even length. A
//! proptest holds the decoder to that on valid, arbitrary and damaged input. Wire rules are
//! prost 0.14's, as in the 1.0 view: varints of at most 10 bytes (the 10th < 2), keys ≤
//! u32::MAX with wire type 0..=5 and tag ≥ 1, a known field with the wrong wire type is an
//! error, packed and unpacked repeated numbers both accepted, unknown fields skipped within
//! prost's group recursion limit, a `uint32` ref is the varint truncated to 32 bits.
//!
//! Errors are the decoder's own (what, in which field, at which byte offset of the
//! decompressed body): the body is never decoded a second time.
//!
//! Used, validated, or ignored: labels and float samples are used; native histograms are
//! validated and counted (the planner reports them as skipped, reason `native_histogram`);
//! exemplars and metadata are validated and counted/ignored (Timestream has no place for
//! them); the per-series `created_timestamp` of rc.3 senders and the per-sample/histogram
//! `start_timestamp` of rc.4 senders are accepted and ignored. Series without float
//! samples add nothing to the view (the planner would skip them), so a body of millions
//! of empty series costs no memory per series.

use super::view::{LabelRef, Span, WindowLimits, WriteRequestView};

/// prost's recursion budget at the top message (`prost::RECURSION_LIMIT`).
const RECURSION_LIMIT: u32 = 100;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// What is wrong with a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A length, varint or fixed-size value runs past the end of its message.
    #[error("truncated value")]
    Truncated,
    /// A varint longer than 10 bytes or over 64 bits.
    #[error("invalid varint")]
    Varint,
    /// A field key with tag 0, wire type 6/7 or over 32 bits.
    #[error("invalid field key")]
    Key,
    /// A known field sent with another wire type than its declared one.
    #[error("wrong wire type {0}")]
    WireType(u8),
    /// An end-group key without its start, or for another field.
    #[error("unbalanced group")]
    Group,
    /// Groups nested deeper than prost's recursion limit.
    #[error("groups nested too deeply")]
    Recursion,
    /// A string that is not UTF-8.
    #[error("invalid UTF-8")]
    Utf8,
    /// A packed run of doubles whose length is not a multiple of 8.
    #[error("packed doubles not a multiple of 8 bytes")]
    PackedDoubles,
    /// `symbols[0]` is not the empty string.
    #[error("symbols[0] must be the empty string")]
    FirstSymbol,
    /// A `labels_refs` list of odd length.
    #[error("odd number of label references ({0})")]
    OddRefs(usize),
    /// A ref past the end of the symbol table.
    #[error("symbol reference {reference} out of range ({symbols} symbols)")]
    RefOutOfRange {
        /// The ref.
        reference: u32,
        /// Symbols in the request.
        symbols: usize,
    },
    /// More labels or samples than a 32-bit index holds.
    #[error("too many labels or samples")]
    TooMany,
}

/// A malformed `io.prometheus.write.v2.Request`: what, where (message field) and the byte
/// offset in the decompressed body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} in {field} at byte {offset}")]
pub struct DecodeError {
    /// The message field being read, e.g. `TimeSeries.labels_refs`.
    pub field: &'static str,
    /// Byte offset in the decompressed body.
    pub offset: usize,
    /// What is wrong.
    pub problem: Problem,
}

type R<T> = Result<T, DecodeError>;

/// Names the field of an error raised below it (the innermost name wins).
trait At<T> {
    fn at(self, field: &'static str) -> R<T>;
}

impl<T> At<T> for R<T> {
    #[inline]
    fn at(self, field: &'static str) -> R<T> {
        self.map_err(|mut e| {
            if e.field.is_empty() {
                e.field = field;
            }
            e
        })
    }
}

/// Reads `buf[pos..end]`; offsets stay those of the whole body, for error messages.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    #[cold]
    fn fail(&self, offset: usize, problem: Problem) -> DecodeError {
        DecodeError {
            field: "",
            offset,
            problem,
        }
    }

    #[inline]
    fn done(&self) -> bool {
        self.pos >= self.end
    }

    #[inline]
    fn varint(&mut self) -> R<u64> {
        // Keys, lengths and most refs are one byte.
        if self.pos < self.end {
            let b = self.buf[self.pos];
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
            if self.pos >= self.end {
                return Err(self.fail(start, Problem::Truncated));
            }
            let b = self.buf[self.pos];
            self.pos += 1;
            if i == 9 && b >= 2 {
                return Err(self.fail(start, Problem::Varint));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.fail(start, Problem::Varint))
    }

    /// (tag, wire type), refusing what prost's `decode_key` refuses.
    #[inline]
    fn key(&mut self) -> R<(u32, u8)> {
        let start = self.pos;
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        if key > u64::from(u32::MAX) || wire_type > 5 || key >> 3 == 0 {
            return Err(self.fail(start, Problem::Key));
        }
        Ok(((key >> 3) as u32, wire_type))
    }

    #[inline]
    fn advance(&mut self, n: u64, start: usize) -> R<()> {
        if n > (self.end - self.pos) as u64 {
            return Err(self.fail(start, Problem::Truncated));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// A length-delimited payload as a reader of its own; the length is checked against
    /// what is left, never used to allocate.
    #[inline]
    fn sub(&mut self) -> R<Reader<'a>> {
        let start = self.pos;
        let len = self.varint()?;
        let payload = self.pos;
        self.advance(len, start)?;
        Ok(Reader {
            buf: self.buf,
            pos: payload,
            end: self.pos,
        })
    }

    #[inline]
    fn str(&mut self) -> R<&'a str> {
        let s = self.sub()?;
        std::str::from_utf8(&self.buf[s.pos..s.end]).map_err(|_| self.fail(s.pos, Problem::Utf8))
    }

    #[inline]
    fn f64(&mut self) -> R<f64> {
        let start = self.pos;
        self.advance(8, start)?;
        let bytes: [u8; 8] = self.buf[start..self.pos].try_into().expect("8 bytes");
        Ok(f64::from_le_bytes(bytes))
    }

    /// A scalar field (or one element of an unpacked repeated one) of wire type `want`.
    #[inline]
    fn scalar(&mut self, wire_type: u8, want: u8) -> R<()> {
        match (wire_type, want) {
            (VARINT, VARINT) => self.varint().map(drop),
            (FIXED64, FIXED64) => self.f64().map(drop),
            _ => Err(self.fail(self.pos, Problem::WireType(wire_type))),
        }
    }

    /// A repeated number, packed or not (prost accepts both).
    fn repeated(&mut self, wire_type: u8, want: u8) -> R<()> {
        if wire_type != LEN {
            return self.scalar(wire_type, want);
        }
        let mut packed = self.sub()?;
        if want == FIXED64 {
            // prost reads 8 bytes per element and fails unless the run ends on a boundary.
            if (packed.end - packed.pos) % 8 != 0 {
                return Err(self.fail(packed.pos, Problem::PackedDoubles));
            }
            return Ok(());
        }
        while !packed.done() {
            packed.varint()?;
        }
        Ok(())
    }

    /// prost's `skip_field`, including its recursion budget `ctx`.
    fn skip(&mut self, wire_type: u8, tag: u32, ctx: u32) -> R<()> {
        let start = self.pos;
        if ctx == 0 {
            return Err(self.fail(start, Problem::Recursion));
        }
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.advance(8, start),
            5 => self.advance(4, start),
            LEN => {
                let len = self.varint()?;
                self.advance(len, start)
            }
            3 => loop {
                let at = self.pos;
                let (inner_tag, inner_wire_type) = self.key()?;
                if inner_wire_type == 4 {
                    return if inner_tag == tag {
                        Ok(())
                    } else {
                        Err(self.fail(at, Problem::Group))
                    };
                }
                self.skip(inner_wire_type, inner_tag, ctx - 1)?;
            },
            _ => Err(self.fail(start, Problem::Group)),
        }
    }

    /// Walks the fields of a message: `field` consumes a known field and returns true;
    /// unknown fields are skipped within the recursion budget `ctx`.
    fn fields(
        mut self,
        ctx: u32,
        mut field: impl FnMut(&mut Reader<'a>, u32, u8) -> R<bool>,
    ) -> R<()> {
        while !self.done() {
            let (tag, wire_type) = self.key()?;
            if !field(&mut self, tag, wire_type)? {
                self.skip(wire_type, tag, ctx)?;
            }
        }
        Ok(())
    }

    /// A length-delimited field: wrong wire type → error.
    #[inline]
    fn message(&mut self, wire_type: u8) -> R<Reader<'a>> {
        if wire_type != LEN {
            return Err(self.fail(self.pos, Problem::WireType(wire_type)));
        }
        self.sub()
    }
}

/// What a 2.0 request holds besides the series the planner reads.
#[derive(Debug)]
pub struct RequestV2<'a> {
    /// Series with float samples, labels resolved (the type the 1.0 decoder yields).
    pub view: WriteRequestView<'a>,
    /// Exemplars in all series (validated, not stored).
    pub exemplars: u64,
}

/// The symbol table and the running state of one window's decode.
struct Decoder<'s, 'a> {
    buf: &'a [u8],
    /// The symbol table: one of the two is empty ([`Symbols`]); slices here, so a lookup
    /// costs what indexing a `Vec<&str>` did.
    strs: &'s [&'a str],
    offsets: &'s [u32],
    out: RequestV2<'a>,
    /// Labels kept per series (the rest are resolved and checked only).
    series_labels: usize,
}

/// Resolves `labels_refs` pairs, carrying a name across packed runs and unpacked
/// elements (prost concatenates them all into one list).
struct Pairs<'a> {
    name: Option<&'a str>,
    count: usize,
}

impl<'a> Decoder<'_, 'a> {
    #[inline]
    fn symbol(&self, r: &mut Reader<'a>) -> R<&'a str> {
        let start = r.pos;
        // prost reads a uint32 as the varint truncated to 32 bits.
        let reference = r.varint()? as u32;
        if let Some(&symbol) = self.strs.get(reference as usize) {
            return Ok(symbol);
        }
        if let Some(&at) = self.offsets.get(reference as usize) {
            // Checked when the table was read; read again rather than kept.
            return Reader {
                buf: self.buf,
                pos: at as usize,
                end: self.buf.len(),
            }
            .str();
        }
        Err(r.fail(
            start,
            Problem::RefOutOfRange {
                reference,
                symbols: self.symbol_count(),
            },
        ))
    }

    fn symbol_count(&self) -> usize {
        self.strs.len() + self.offsets.len()
    }

    /// One `labels_refs` field occurrence (packed or a single unpacked element); each
    /// complete pair goes to `out` (exemplar labels are only checked).
    #[inline]
    fn refs(
        &self,
        r: &mut Reader<'a>,
        wire_type: u8,
        pairs: &mut Pairs<'a>,
        mut out: Option<&mut Vec<LabelRef<'a>>>,
        limit: usize,
    ) -> R<()> {
        // `out` takes complete pairs while it is shorter than `limit`.
        let mut one = |d: &Self, r: &mut Reader<'a>, out: &mut Option<&mut Vec<LabelRef<'a>>>| {
            let s = d.symbol(r)?;
            pairs.count += 1;
            match pairs.name.take() {
                None => pairs.name = Some(s),
                Some(name) => {
                    if let Some(out) = out {
                        if out.len() < limit {
                            out.push(LabelRef { name, value: s });
                        }
                    }
                }
            }
            Ok(())
        };
        match wire_type {
            LEN => {
                let mut packed = r.sub()?;
                if let Some(out) = out.as_mut() {
                    // At most one pair per two bytes: no growth chain on a long run.
                    let room = limit.saturating_sub(out.len());
                    out.reserve(((packed.end - packed.pos) / 2).min(room));
                }
                while !packed.done() {
                    one(self, &mut packed, &mut out)?;
                }
                Ok(())
            }
            VARINT => one(self, r, &mut out),
            _ => Err(r.fail(r.pos, Problem::WireType(wire_type))),
        }
    }

    fn series(&mut self, mut r: Reader<'a>) -> R<()> {
        const CTX: u32 = RECURSION_LIMIT - 1;
        let start = r.pos;
        let l0 = self.out.view.labels.len();
        let (mut samples, mut histograms) = (0u32, 0u32);
        // Byte range of the samples in the series message: first key to last end.
        let (mut first, mut last) = (0usize, 0usize);
        let mut pairs = Pairs {
            name: None,
            count: 0,
        };
        // Metadata is a singular message: prost merges repeated occurrences, so the refs
        // checked are the last ones seen (0 when absent from a present message).
        let mut metadata: Option<(u32, u32, usize)> = None;
        while !r.done() {
            let at = r.pos;
            let (tag, wire_type) = r.key().at("TimeSeries")?;
            match tag {
                1 => {
                    let mut labels = std::mem::take(&mut self.out.view.labels);
                    let limit = l0.saturating_add(self.series_labels);
                    let res = self.refs(&mut r, wire_type, &mut pairs, Some(&mut labels), limit);
                    self.out.view.labels = labels;
                    res.at("TimeSeries.labels_refs")?;
                }
                2 => {
                    const F: &str = "TimeSeries.samples";
                    if samples == 0 {
                        first = at;
                    }
                    sample(r.message(wire_type).at(F)?).at(F)?;
                    samples = samples
                        .checked_add(1)
                        .ok_or_else(|| r.fail(start, Problem::TooMany))
                        .at("TimeSeries")?;
                    last = r.pos;
                }
                3 => {
                    const F: &str = "TimeSeries.histograms";
                    histogram(r.message(wire_type).at(F)?).at(F)?;
                    self.out.view.histograms += 1;
                    histograms = histograms.saturating_add(1);
                }
                4 => {
                    const F: &str = "TimeSeries.exemplars";
                    self.exemplar(r.message(wire_type).at(F)?).at(F)?;
                    self.out.exemplars += 1;
                }
                5 => {
                    let m = r.message(wire_type).at("TimeSeries.metadata")?;
                    let (mut help, mut unit) = metadata.map_or((0, 0), |(h, u, _)| (h, u));
                    let at = m.pos;
                    m.fields(CTX - 1, |r, tag, wire_type| {
                        match tag {
                            1 => r.scalar(wire_type, VARINT)?,
                            3 => help = r.varint_of(wire_type)? as u32,
                            4 => unit = r.varint_of(wire_type)? as u32,
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })
                    .at("TimeSeries.metadata")?;
                    metadata = Some((help, unit, at));
                }
                6 => r
                    .scalar(wire_type, VARINT)
                    .at("TimeSeries.created_timestamp")?,
                _ => r.skip(wire_type, tag, CTX).at("TimeSeries")?,
            }
        }
        if pairs.count % 2 == 1 {
            return Err(r.fail(start, Problem::OddRefs(pairs.count))).at("TimeSeries.labels_refs");
        }
        if let Some((help, unit, at)) = metadata {
            for reference in [help, unit] {
                if reference as usize >= self.symbol_count() {
                    return Err(r.fail(
                        at,
                        Problem::RefOutOfRange {
                            reference,
                            symbols: self.symbol_count(),
                        },
                    ))
                    .at("TimeSeries.metadata");
                }
            }
        }
        let view = &mut self.out.view;
        if samples == 0 && histograms == 0 {
            // Nothing for the planner: keep no span and drop the labels.
            view.labels.truncate(l0);
            return Ok(());
        }
        view.samples += samples as usize;
        let n = |x: usize| {
            u32::try_from(x)
                .map_err(|_| r.fail(start, Problem::TooMany))
                .at("TimeSeries")
        };
        view.series.push(Span {
            labels: (n(l0)?, n(view.labels.len())?),
            series: &r.buf[start..r.end],
            // Relative to the series message.
            samples: (
                n(first.saturating_sub(start))?,
                n(last.saturating_sub(start))?,
            ),
            sample_count: samples,
            histogram_count: histograms,
        });
        Ok(())
    }

    /// An `Exemplar`: labels (refs checked like the series'), value, timestamp.
    fn exemplar(&self, r: Reader<'a>) -> R<()> {
        let start = r.pos;
        let mut pairs = Pairs {
            name: None,
            count: 0,
        };
        r.fields(RECURSION_LIMIT - 2, |r, tag, wire_type| {
            match tag {
                1 => self.refs(r, wire_type, &mut pairs, None, 0)?,
                2 => r.scalar(wire_type, FIXED64)?,
                3 => r.scalar(wire_type, VARINT)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if pairs.count % 2 == 1 {
            return Err(DecodeError {
                field: "Exemplar.labels_refs",
                offset: start,
                problem: Problem::OddRefs(pairs.count),
            });
        }
        Ok(())
    }
}

impl<'a> Reader<'a> {
    /// A varint-typed scalar's value.
    #[inline]
    fn varint_of(&mut self, wire_type: u8) -> R<u64> {
        if wire_type != VARINT {
            return Err(self.fail(self.pos, Problem::WireType(wire_type)));
        }
        self.varint()
    }
}

/// A `Sample` (value, timestamp; `start_timestamp` of rc.4 is checked and ignored),
/// accepted exactly when prost accepts it. The write plan decodes it again from the body.
fn sample(r: Reader<'_>) -> R<()> {
    r.fields(RECURSION_LIMIT - 2, |r, tag, wire_type| {
        match (tag, wire_type) {
            (1, FIXED64) => r.f64().map(drop)?,
            (2 | 3, VARINT) => r.varint().map(drop)?,
            (1..=3, _) => return Err(r.fail(r.pos, Problem::WireType(wire_type))),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A native `Histogram`, accepted exactly when prost accepts it (field numbers of the 2.0
/// proto: those of 1.0 plus `start_timestamp = 17`).
fn histogram(r: Reader<'_>) -> R<()> {
    r.fields(RECURSION_LIMIT - 2, |r, tag, wire_type| {
        match tag {
            // count_int, schema (sint32), zero_count_int, reset_hint, timestamp, start_timestamp
            1 | 4 | 6 | 14 | 15 | 17 => r.scalar(wire_type, VARINT)?,
            // count_float, sum, zero_threshold, zero_count_float
            2 | 3 | 5 | 7 => r.scalar(wire_type, FIXED64)?,
            // negative_spans, positive_spans: BucketSpan {offset sint32, length uint32}
            8 | 11 => r
                .message(wire_type)?
                .fields(RECURSION_LIMIT - 3, |r, tag, wire_type| match tag {
                    1 | 2 => r.scalar(wire_type, VARINT).map(|()| true),
                    _ => Ok(false),
                })?,
            // negative_deltas, positive_deltas (sint64)
            9 | 12 => r.repeated(wire_type, VARINT)?,
            // negative_counts, positive_counts, custom_values (double)
            10 | 13 | 16 => r.repeated(wire_type, FIXED64)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A 2.0 body whose framing and symbol table are checked: its series are decoded a
/// window at a time ([`BodyV2::window`]).
#[derive(Debug)]
pub struct BodyV2<'a> {
    buf: &'a [u8],
    symbols: Symbols<'a>,
}

/// The symbol table.
#[derive(Debug)]
enum Symbols<'a> {
    /// Each symbol as a `&str`: the table is no larger than the body (what senders send).
    Strs(Vec<&'a str>),
    /// Each symbol as the offset of its length in the body, read and checked again at
    /// each use: for bodies whose symbols are so many and short that a 16-byte `&str` each
    /// would cost more than the body (up to 8 × an empty symbol's 2 bytes; issue 13).
    /// 4 bytes each, and about 7 ns more per label than a `&str` (criterion `decode_v2`
    /// doubled with offsets for every body).
    Offsets(Vec<u32>),
}

/// Decodes an uncompressed `io.prometheus.write.v2.Request` whole.
pub fn decode(buf: &[u8]) -> Result<RequestV2<'_>, DecodeError> {
    Ok(BodyV2::new(buf)?.window(0, WindowLimits::WHOLE)?.0)
}

impl<'a> BodyV2<'a> {
    /// Checks the top level's framing and reads the symbol table (series may refer to
    /// symbols that come after them, so the table is read before any series).
    pub fn new(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::with_table(buf, None)
    }

    /// [`BodyV2::new`], the symbol table kept as `&str`s (`Some(true)`), as offsets
    /// (`Some(false)`), or as its size decides (`None`).
    fn with_table(buf: &'a [u8], as_strs: Option<bool>) -> Result<Self, DecodeError> {
        // Pass 1: the top level's framing, and the symbol count (the table is then
        // allocated once, at its exact size; symbols may come before or after the series).
        let mut count = 0usize;
        Reader::new(buf)
            .fields(RECURSION_LIMIT, |r, tag, wire_type| {
                match tag {
                    4 => {
                        r.message(wire_type).at("Request.symbols")?;
                    }
                    5 => {
                        r.message(wire_type).at("Request.timeseries")?;
                    }
                    _ => return Ok(false),
                }
                if tag == 4 {
                    count += 1;
                }
                Ok(true)
            })
            .at("Request")?;
        // Pass 2: the symbols (framing known good: only UTF-8 can fail).
        let as_strs =
            as_strs.unwrap_or(count.saturating_mul(std::mem::size_of::<&str>()) <= buf.len());
        let mut strs = Vec::with_capacity(if as_strs { count } else { 0 });
        let mut offsets = Vec::with_capacity(if as_strs { 0 } else { count });
        let mut first = None;
        Reader::new(buf).fields(RECURSION_LIMIT, |r, tag, wire_type| {
            if tag != 4 {
                return Ok(false);
            }
            debug_assert_eq!(wire_type, LEN);
            let at = r.pos;
            let s = r.str().at("Request.symbols")?;
            first.get_or_insert((s, at));
            if as_strs {
                strs.push(s);
            } else {
                let at = u32::try_from(at).map_err(|_| r.fail(at, Problem::TooMany))?;
                offsets.push(at);
            }
            Ok(true)
        })?;
        if let Some((s, at)) = first {
            if !s.is_empty() {
                return Err(DecodeError {
                    field: "Request.symbols",
                    offset: at,
                    problem: Problem::FirstSymbol,
                });
            }
        }
        let symbols = if as_strs {
            Symbols::Strs(strs)
        } else {
            Symbols::Offsets(offsets)
        };
        Ok(BodyV2 { buf, symbols })
    }

    /// The series from byte `from` (0, or where the previous window ended) until `limits`
    /// are reached, and where the next window starts (`None`: the body ends here).
    pub fn window(
        &self,
        from: usize,
        limits: WindowLimits,
    ) -> Result<(RequestV2<'a>, Option<usize>), DecodeError> {
        let (strs, offsets): (&[&str], &[u32]) = match &self.symbols {
            Symbols::Strs(s) => (s, &[]),
            Symbols::Offsets(o) => (&[], o),
        };
        let mut d = Decoder {
            buf: self.buf,
            strs,
            offsets,
            out: RequestV2 {
                view: WriteRequestView::new(3),
                exemplars: 0,
            },
            series_labels: limits.series_labels,
        };
        let mut r = Reader::new(self.buf);
        r.pos = from;
        while !r.done() {
            let view = &d.out.view;
            if view.series.len() >= limits.series || view.labels.len() >= limits.labels {
                return Ok((d.out, Some(r.pos)));
            }
            // Framing errors were found by pass 1.
            let (tag, wire_type) = r.key().at("Request")?;
            if tag == 5 {
                let body = r.sub().at("Request.timeseries")?;
                d.series(body)?;
            } else {
                r.skip(wire_type, tag, RECURSION_LIMIT).at("Request")?;
            }
        }
        Ok((d.out, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::pb_v2::{
        Exemplar, Histogram, Metadata, Request, Sample as Sample2, TimeSeries,
    };
    use proptest::prelude::*;
    use prost::Message;

    /// What the planner reads: labels and samples of every series with samples, plus the
    /// counts of histograms and exemplars.
    #[allow(clippy::type_complexity)]
    type Flat = (
        Vec<(Vec<(String, String)>, Vec<(u64, i64)>, Vec<Vec<u8>>)>,
        u64,
        u64,
    );

    /// The contract, stated on prost's decoding: the 2.0 rules on top of prost's, and what
    /// the view must then hold.
    fn reference(req: &Request) -> Option<Flat> {
        let syms = &req.symbols;
        if syms.first().is_some_and(|s| !s.is_empty()) {
            return None;
        }
        let resolve = |refs: &[u32]| -> Option<Vec<(String, String)>> {
            if refs.len() % 2 == 1 {
                return None;
            }
            refs.chunks(2)
                .map(|p| {
                    Some((
                        syms.get(p[0] as usize)?.clone(),
                        syms.get(p[1] as usize)?.clone(),
                    ))
                })
                .collect()
        };
        let mut series = Vec::new();
        let (mut histograms, mut exemplars) = (0, 0);
        for ts in &req.timeseries {
            let labels = resolve(&ts.labels_refs)?;
            for e in &ts.exemplars {
                resolve(&e.labels_refs)?;
            }
            if let Some(m) = &ts.metadata {
                for r in [m.help_ref, m.unit_ref] {
                    syms.get(r as usize)?;
                }
            }
            histograms += ts.histograms.len() as u64;
            exemplars += ts.exemplars.len() as u64;
            if !ts.samples.is_empty() || !ts.histograms.is_empty() {
                let samples = ts
                    .samples
                    .iter()
                    .map(|s| (s.value.to_bits(), s.timestamp))
                    .collect();
                // As 1.0 histograms (the write path drops 2.0's start_timestamp).
                let hists = ts
                    .histograms
                    .iter()
                    .map(|h| {
                        crate::remote::pb::Histogram::decode(h.encode_to_vec().as_slice())
                            .unwrap()
                            .encode_to_vec()
                    })
                    .collect();
                series.push((labels, samples, hists));
            }
        }
        Some((series, histograms, exemplars))
    }

    fn flat(v: &RequestV2<'_>) -> Flat {
        let series = v
            .view
            .iter()
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
                        .map(|(_, h)| crate::histogram::parse(h).encode_to_vec())
                        .collect(),
                )
            })
            .collect();
        (series, v.view.histogram_count(), v.exemplars)
    }

    /// The view accepts exactly what prost + the 2.0 rules accept, with the same content.
    fn check_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        let want = Request::decode(bytes).ok().and_then(|r| reference(&r));
        match (want, decode(bytes)) {
            (Some(w), Ok(v)) => prop_assert_eq!(w, flat(&v)),
            (None, Err(e)) => {
                prop_assert!(e.offset <= bytes.len(), "{e}");
                prop_assert!(!e.field.is_empty(), "{e}");
            }
            (w, v) => prop_assert!(false, "reference {:?} vs view {:?}", w.is_some(), v.err()),
        }
        Ok(())
    }

    fn sample() -> impl Strategy<Value = Sample2> {
        (any::<u64>(), any::<i64>(), any::<i64>()).prop_map(|(bits, timestamp, start)| Sample2 {
            value: f64::from_bits(bits),
            timestamp,
            start_timestamp: start,
        })
    }

    /// The 1.0 generator's histograms (the message is the same on the wire), with the
    /// rc.4 `start_timestamp` set.
    fn histogram() -> impl Strategy<Value = Histogram> {
        crate::remote::view::tests::histogram().prop_map(|h| Histogram {
            start_timestamp: h.timestamp,
            ..Histogram::decode(h.encode_to_vec().as_slice()).unwrap()
        })
    }

    /// Refs mostly in range of `n` symbols, sometimes one past it; lengths sometimes odd.
    fn refs(n: usize) -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec(
            prop_oneof![20 => 0..n.max(1) as u32, 1 => Just(n as u32), 1 => any::<u32>()],
            0..8,
        )
        .prop_flat_map(|v| (Just(v), prop::bool::weighted(0.9)))
        .prop_map(|(mut v, even)| {
            if even && v.len() % 2 == 1 {
                v.pop();
            }
            v
        })
    }

    fn series(n: usize) -> impl Strategy<Value = TimeSeries> {
        (
            refs(n),
            prop::collection::vec(sample(), 0..3),
            prop::collection::vec(histogram(), 0..2),
            prop::collection::vec((refs(n), any::<f64>(), any::<i64>()), 0..2),
            prop::option::of((0..8i32, 0..n as u32 + 1, 0..n as u32 + 1)),
            any::<i64>(),
        )
            .prop_map(
                |(labels_refs, samples, histograms, ex, meta, created)| TimeSeries {
                    labels_refs,
                    samples,
                    histograms,
                    exemplars: ex
                        .into_iter()
                        .map(|(labels_refs, value, timestamp)| Exemplar {
                            labels_refs,
                            value,
                            timestamp,
                        })
                        .collect(),
                    metadata: meta.map(|(t, help_ref, unit_ref)| Metadata {
                        r#type: t,
                        help_ref,
                        unit_ref,
                    }),
                    created_timestamp: created,
                },
            )
    }

    fn request() -> impl Strategy<Value = Request> {
        (
            prop::collection::vec("[a-z_\u{e9}]{0,6}", 0..8),
            prop::bool::weighted(0.95),
        )
            .prop_flat_map(|(mut symbols, empty_first)| {
                if empty_first {
                    symbols.insert(0, String::new());
                }
                let n = symbols.len();
                (Just(symbols), prop::collection::vec(series(n), 0..6))
            })
            .prop_map(|(symbols, timeseries)| Request {
                symbols,
                timeseries,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn same_as_prost_on_valid_requests(req in request()) {
            let bytes = req.encode_to_vec();
            check_agree(&bytes)?;
        }

        #[test]
        fn same_as_prost_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            check_agree(&bytes)?;
        }

        #[test]
        fn same_as_prost_on_damaged_requests(
            req in request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let bytes = crate::remote::view::tests::damage(req.encode_to_vec(), &edits);
            check_agree(&bytes)?;
        }

        /// Windows of any size, one after another, hold what the whole decode holds, and
        /// a damaged body is refused (with the same error) exactly when it refuses it.
        #[test]
        fn windows_read_what_the_whole_decode_reads(
            req in request(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..2),
            series in 1usize..4,
            labels in 1usize..6,
        ) {
            let bytes = crate::remote::view::tests::damage(req.encode_to_vec(), &edits);
            let limits = WindowLimits { series, labels, series_labels: usize::MAX };
            let windows = || -> R<Flat> {
                let body = BodyV2::new(&bytes)?;
                let mut all: Flat = (Vec::new(), 0, 0);
                let mut from = Some(0);
                while let Some(at) = from {
                    let (w, next) = body.window(at, limits)?;
                    assert!(w.view.len() <= series);
                    let (s, h, e) = flat(&w);
                    all.0.extend(s);
                    all.1 += h;
                    all.2 += e;
                    from = next;
                }
                Ok(all)
            };
            match (decode(&bytes), windows()) {
                (Ok(whole), Ok(w)) => prop_assert_eq!(flat(&whole), w),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "whole {:?}, windows {:?}", a.map(|v| v.view.len()), b.map(|f| f.0.len())),
            }
            // Both forms of the symbol table read the same, and refuse the same.
            let read = |as_strs| {
                BodyV2::with_table(&bytes, Some(as_strs))
                    .and_then(|b| b.window(0, WindowLimits::WHOLE))
                    .map(|(r, _)| flat(&r))
            };
            prop_assert_eq!(read(true), read(false));
        }
    }

    #[test]
    fn a_window_keeps_the_first_labels_of_a_series_up_to_its_cap() {
        // Symbols "", a, b, c, d; one series of the pairs a=b, c=d, a=d, c=b, one sample.
        let syms: Vec<u8> = ["", "a", "b", "c", "d"]
            .iter()
            .flat_map(|s| len_field(4, s.as_bytes()))
            .collect();
        let series = len_field(
            5,
            &[len_field(1, &[1, 2, 3, 4, 1, 4, 3, 2]), len_field(2, &[])].concat(),
        );
        let bytes = [syms, series].concat();
        let limits = WindowLimits {
            series_labels: 3,
            ..WindowLimits::WHOLE
        };
        let (w, next) = BodyV2::new(&bytes).unwrap().window(0, limits).unwrap();
        assert_eq!(next, None);
        let labels: Vec<_> = w
            .view
            .series(0)
            .labels
            .iter()
            .map(|l| (l.name, l.value))
            .collect();
        assert_eq!(labels, [("a", "b"), ("c", "d"), ("a", "d")]);
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

    fn symbols(s: &[&str]) -> Vec<u8> {
        s.iter().flat_map(|s| len_field(4, s.as_bytes())).collect()
    }

    fn one_sample(value: f64, ts: u8) -> Vec<u8> {
        len_field(
            2,
            &[key(1, 1), value.to_le_bytes().to_vec(), key(2, 0), vec![ts]].concat(),
        )
    }

    #[test]
    fn labels_resolve_to_the_symbols_and_samples_are_kept() {
        let series = [len_field(1, &[1, 2, 3, 4]), one_sample(1.5, 7)].concat();
        let body = [
            symbols(&["", "__name__", "up", "job", "a"]),
            len_field(5, &series),
        ]
        .concat();
        check_agree(&body).unwrap();
        let v = decode(&body).unwrap();
        assert_eq!(v.view.len(), 1);
        let s = v.view.series(0);
        assert_eq!(
            s.labels,
            [
                LabelRef {
                    name: "__name__",
                    value: "up"
                },
                LabelRef {
                    name: "job",
                    value: "a"
                }
            ]
        );
        let first = s.samples.iter().next().unwrap();
        assert_eq!((first.value, first.timestamp), (1.5, 7));
        // The strings are the body's own bytes, not copies.
        let range = body.as_ptr_range();
        assert!(range.contains(&s.labels[0].name.as_ptr()));
        // Symbols after the series, refs unpacked and split across fields: same result.
        let unpacked = [
            key(1, 0),
            vec![1],
            len_field(1, &[2, 3]),
            key(1, 0),
            vec![4],
        ]
        .concat();
        let body2 = [
            len_field(5, &[unpacked, one_sample(1.5, 7)].concat()),
            symbols(&["", "__name__", "up", "job", "a"]),
        ]
        .concat();
        check_agree(&body2).unwrap();
        assert_eq!(flat(&decode(&body2).unwrap()), flat(&v));
    }

    #[test]
    fn refused_with_the_field_and_offset() {
        let syms = symbols(&["", "__name__", "up"]);
        let cases: Vec<(Vec<u8>, &str, Problem)> = vec![
            (
                [symbols(&["x", "__name__"]), len_field(5, &[])].concat(),
                "Request.symbols",
                Problem::FirstSymbol,
            ),
            (
                [
                    syms.clone(),
                    len_field(5, &[len_field(1, &[1, 2, 1]), one_sample(1.0, 1)].concat()),
                ]
                .concat(),
                "TimeSeries.labels_refs",
                Problem::OddRefs(3),
            ),
            (
                [syms.clone(), len_field(5, &len_field(1, &[1, 3]))].concat(),
                "TimeSeries.labels_refs",
                Problem::RefOutOfRange {
                    reference: 3,
                    symbols: 3,
                },
            ),
            (
                [
                    syms.clone(),
                    len_field(5, &len_field(4, &len_field(1, &[1]))),
                ]
                .concat(),
                "Exemplar.labels_refs",
                Problem::OddRefs(1),
            ),
            (
                [
                    syms.clone(),
                    len_field(5, &len_field(5, &[key(3, 0), vec![9]].concat())),
                ]
                .concat(),
                "TimeSeries.metadata",
                Problem::RefOutOfRange {
                    reference: 9,
                    symbols: 3,
                },
            ),
            (
                [syms.clone(), len_field(4, &[0xff])].concat(),
                "Request.symbols",
                Problem::Utf8,
            ),
            (
                [
                    syms.clone(),
                    len_field(5, &len_field(2, &[key(1, 0), vec![1]].concat())),
                ]
                .concat(),
                "TimeSeries.samples",
                Problem::WireType(0),
            ),
            (
                [syms.clone(), key(5, 0), vec![1]].concat(),
                "Request.timeseries",
                Problem::WireType(0),
            ),
            (
                [syms.clone(), key(5, 2), vec![100]].concat(),
                "Request.timeseries",
                Problem::Truncated,
            ),
        ];
        for (body, field, problem) in cases {
            check_agree(&body).unwrap();
            let e = decode(&body).unwrap_err();
            assert_eq!((e.field, &e.problem), (field, &problem), "{e}");
            assert!(
                e.offset >= syms.len().min(e.offset) && e.offset < body.len(),
                "{e}"
            );
            assert!(e.to_string().contains(field), "{e}");
        }
        // The out-of-range ref is pinned to its byte.
        let body = [syms.clone(), len_field(5, &len_field(1, &[1, 3]))].concat();
        assert_eq!(decode(&body).unwrap_err().offset, body.len() - 1);
    }

    #[test]
    fn both_timestamp_layouts_histograms_exemplars_and_metadata_are_accepted() {
        let syms = symbols(&["", "__name__", "up", "trace_id", "abc", "help"]);
        // rc.3: created_timestamp on the series; rc.4: start_timestamp on sample/histogram.
        let rc3 = [
            len_field(1, &[1, 2]),
            one_sample(2.0, 9),
            key(6, 0),
            vec![0x7f],
            len_field(4, &[len_field(1, &[3, 4]), key(2, 1), vec![0; 8]].concat()),
            len_field(5, &[key(1, 0), vec![1], key(3, 0), vec![5]].concat()),
        ]
        .concat();
        let rc4 = [
            len_field(1, &[1, 2]),
            len_field(
                2,
                &[
                    key(1, 1),
                    3.0f64.to_le_bytes().to_vec(),
                    key(2, 0),
                    vec![9],
                    key(3, 0),
                    vec![5],
                ]
                .concat(),
            ),
        ]
        .concat();
        let hist = [
            len_field(1, &[1, 2]),
            len_field(3, &[key(15, 0), vec![9], key(17, 0), vec![5]].concat()),
        ]
        .concat();
        let body = [
            syms,
            len_field(5, &rc3),
            len_field(5, &rc4),
            len_field(5, &hist),
        ]
        .concat();
        check_agree(&body).unwrap();
        let v = decode(&body).unwrap();
        assert_eq!(v.view.len(), 3, "the histogram-only series is kept");
        assert_eq!(v.view.sample_count(), 2);
        assert_eq!(v.view.histogram_count(), 1);
        let h: Vec<_> = v.view.series(2).histograms.iter().collect();
        assert_eq!(h.len(), 1);
        assert_eq!(crate::remote::view::histogram_timestamp(h[0].1), 9);
        assert_eq!(v.exemplars, 1);
        // Wrong wire types for the timestamps are refused like prost refuses them.
        for bad in [
            len_field(5, &[key(6, 1), vec![0; 8]].concat()),
            len_field(5, &len_field(2, &[key(3, 1), vec![0; 8]].concat())),
            len_field(5, &len_field(3, &[key(17, 5), vec![0; 4]].concat())),
        ] {
            check_agree(&bad).unwrap();
            assert!(decode(&bad).is_err());
        }
    }

    #[test]
    fn a_1_0_body_reads_as_an_empty_request_and_empty_series_cost_nothing() {
        use crate::remote::pb::{Label, Sample as S1, TimeSeries as T1, WriteRequest};
        let v1 = WriteRequest {
            timeseries: vec![T1 {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![S1 {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let v = decode(&v1).unwrap();
        assert!(v.view.is_empty());
        // 100,000 empty series, and series with labels but no sample: no span kept.
        let body = [
            symbols(&["", "a"]),
            [0x2a, 0x00].repeat(100_000),
            len_field(5, &len_field(1, &[1, 1])),
        ]
        .concat();
        let v = decode(&body).unwrap();
        assert!(v.view.is_empty());
        assert_eq!(
            v.view.labels.capacity(),
            4,
            "labels of sample-less series are dropped"
        );
    }

    #[test]
    fn group_nesting_limit_is_prosts() {
        for depth in [96usize, 97, 98, 99, 100, 101] {
            let open: Vec<u8> = (0..depth).flat_map(|_| key(20, 3)).collect();
            let close: Vec<u8> = (0..depth).flat_map(|_| key(20, 4)).collect();
            let inner = [open, key(21, 0), vec![1], close].concat();
            check_agree(&inner).unwrap();
            for nested in [
                len_field(5, &inner),
                len_field(5, &len_field(2, &inner)),
                len_field(5, &len_field(3, &len_field(8, &inner))),
                len_field(5, &len_field(5, &inner)),
            ] {
                check_agree(&[symbols(&[""]), nested].concat()).unwrap();
            }
        }
    }
}
