//! Remote-write translation: a decoded `WriteRequest` → a plan of Timestream WriteRecords
//! batches ([`plan`]; `timestream::writer::send` sends it). Pure: no I/O, no SDK types; the
//! plan borrows the request's strings and samples, so nothing is copied per sample here: a
//! batch is a few runs of a series' samples ([`Run`]), decoded from the body when walked
//! (the SDK records are built per batch by `timestream::writer`). The plan's memory grows
//! with series and batches, not samples (issue 13). The input is anything [`WriteInput`]:
//! the server's zero-copy view of the body (`remote::view`), or prost's owned
//! `WriteRequest` (tests, tools).
//!
//! Rules (issue 3): one record per sample; MeasureName = `__name__`; dimensions = the other
//! labels minus empty values and routing labels; what Timestream cannot store is skipped and
//! counted (or refused with `fail_on_long_label`). NaN (stale markers included) and ±Inf
//! become special-value records (issue 14, `crate::special`,
//! `documentation/special-values.md`); with `special_values` off they are skipped and counted
//! (or refused with `fail_on_invalid_sample_value`, stale markers excepted) as upstream does.
//!
//! Batching: series are sorted by (destination, metric name, dimensions) and their samples
//! cut into batches of at most 100 records in that order, so neighbours in a batch share
//! as much as possible; the writer moves what they share into CommonAttributes.

use std::cmp::Ordering;
use std::hash::BuildHasher;
use std::ops::Range;

use crate::config::DestinationConfig;
use crate::histogram;
use crate::remote::pb::{Label, Sample, TimeSeries, WriteRequest};
use crate::remote::view::{
    histogram_timestamp, HistogramsRef, LabelRef, SampleWalk, SamplesRef, WriteRequestView,
};
use crate::special;

/// Prometheus' metric-name label.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// Records per WriteRecords call (Timestream quota).
pub const MAX_RECORDS_PER_CALL: usize = 100;
/// Longest dimension name Timestream stores (bytes).
pub const MAX_DIMENSION_NAME_BYTES: usize = 60;
/// Longest measure name Timestream stores (bytes).
pub const MAX_MEASURE_NAME_BYTES: usize = 256;
/// Longest dimension value Timestream stores (bytes).
pub const MAX_DIMENSION_VALUE_BYTES: usize = 2048;
/// Most dimensions per record.
pub const MAX_DIMENSIONS: usize = 128;
/// Largest record Timestream stores (bytes, as its write metering counts them).
pub const MAX_RECORD_BYTES: usize = 2048;
/// A series with more labels than this (empty values not counted) is skipped as
/// `too_many_labels` (refused with `fail_on_long_label`) before its labels are looked at
/// further: at most 128 of them could become dimensions, and the decoder need not keep
/// more than this plus one per series (issue 13: a body of one series with 10^6 labels).
pub const MAX_SERIES_LABELS: usize = 256;

/// `dims` plus `__name__` = the metric name, sorted by name: the dimensions of a series'
/// special-value and histogram records.
fn with_name_dimension<'a>(dims: &[Dim<'a>], name: &'a str) -> Vec<Dim<'a>> {
    let mut d = Vec::with_capacity(dims.len() + 1);
    d.extend_from_slice(dims);
    let at = d.partition_point(|x| x.name < special::NAME_DIMENSION);
    d.insert(
        at,
        Dim {
            name: special::NAME_DIMENSION,
            value: name,
        },
    );
    d
}
/// Prometheus' stale-marker NaN (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = special::STALE_NAN_BITS;

/// Why a sample was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// NaN (other than a stale marker), +Inf or -Inf.
    NonFinite = 0,
    /// Prometheus' staleness marker.
    StaleMarker,
    /// Metric name longer than 256 bytes.
    LongMetricName,
    /// Label name longer than 60 bytes.
    LongLabelName,
    /// Label value longer than 2048 bytes.
    LongLabelValue,
    /// Label name reserved by Timestream (`time`, `measure_name*`, `measure_value*`, `ts_*`) or empty.
    ReservedLabelName,
    /// More than 128 labels.
    TooManyLabels,
    /// A native histogram sample with `--write.native-histograms=false` (upstream never
    /// stored these; classic histograms arrive as ordinary series and are stored).
    NativeHistogram,
    /// The metric is named like the measure that holds special values (`__special_value__`)
    /// or native histograms (`__native_histogram__`); only while those are written.
    ReservedMetricName,
    /// A native histogram whose stored text or record exceeds Timestream's 2 KiB limits.
    HistogramTooLarge,
    /// A custom-bucket native histogram without the bounds of its buckets (no reader could
    /// interpret it: Prometheus panics on one).
    InvalidHistogram,
}

impl IgnoreReason {
    /// Every reason, in index order.
    pub const ALL: [IgnoreReason; 11] = [
        IgnoreReason::NonFinite,
        IgnoreReason::StaleMarker,
        IgnoreReason::LongMetricName,
        IgnoreReason::LongLabelName,
        IgnoreReason::LongLabelValue,
        IgnoreReason::ReservedLabelName,
        IgnoreReason::TooManyLabels,
        IgnoreReason::NativeHistogram,
        IgnoreReason::ReservedMetricName,
        IgnoreReason::HistogramTooLarge,
        IgnoreReason::InvalidHistogram,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::NonFinite => "non_finite_value",
            IgnoreReason::StaleMarker => "stale_marker",
            IgnoreReason::LongMetricName => "long_metric_name",
            IgnoreReason::LongLabelName => "long_label_name",
            IgnoreReason::LongLabelValue => "long_label_value",
            IgnoreReason::ReservedLabelName => "reserved_label_name",
            IgnoreReason::TooManyLabels => "too_many_labels",
            IgnoreReason::NativeHistogram => "native_histogram",
            IgnoreReason::ReservedMetricName => "reserved_metric_name",
            IgnoreReason::HistogramTooLarge => "histogram_too_large",
            IgnoreReason::InvalidHistogram => "invalid_histogram",
        }
    }
}

/// Translation options.
#[derive(Debug, Clone)]
pub struct PlanOptions<'c> {
    /// Destinations and routing labels.
    pub destination: &'c DestinationConfig,
    /// Refuse (400) unstorable series instead of skipping them.
    pub fail_on_long_label: bool,
    /// Refuse (400) NaN/±Inf that would be skipped (only when `special_values` is off).
    pub fail_on_invalid_sample_value: bool,
    /// Write NaN (stale markers included) and ±Inf as special-value records.
    pub special_values: bool,
    /// Write native histogram samples as `__native_histogram__` records (`crate::histogram`).
    pub native_histograms: bool,
}

/// Why a request is refused as a whole (→ 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A series with samples has no `__name__`.
    #[error(
        "series {labels} has no __name__ label (the metric name is Timestream's measure name)"
    )]
    MissingMetricName {
        /// The series' labels, Prometheus notation.
        labels: String,
    },
    /// Unstorable name/value with `--fail-on-long-label=true`.
    #[error("series {series} cannot be stored in Timestream: {detail}")]
    Unstorable {
        /// Series, Prometheus notation.
        series: String,
        /// What is wrong.
        detail: String,
    },
    /// NaN/±Inf with `--fail-on-invalid-sample-value=true`.
    #[error("series {series} has the non-finite sample value {value} at {timestamp_ms} ms, which Timestream cannot store")]
    InvalidSampleValue {
        /// Series, Prometheus notation.
        series: String,
        /// The value.
        value: f64,
        /// Its timestamp.
        timestamp_ms: i64,
    },
    /// A label name appears twice in a series.
    #[error("series {series} repeats the label name {name:?}")]
    DuplicateLabel {
        /// Series, Prometheus notation.
        series: String,
        /// The name.
        name: String,
    },
    /// No routing label and no default.
    #[error("series {series} has no {label:?} label and no {flag} is configured")]
    NoDestination {
        /// Series, Prometheus notation.
        series: String,
        /// Routing label.
        label: String,
        /// The flag that would have helped.
        flag: &'static str,
    },
}

/// One dimension (borrowed from the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dim<'a> {
    /// Label name.
    pub name: &'a str,
    /// Label value (never empty).
    pub value: &'a str,
}

/// A database/table pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'a> {
    /// Database name.
    pub database: &'a str,
    /// Table name.
    pub table: &'a str,
}

/// A series that will be written.
#[derive(Debug, Clone)]
pub struct PlannedSeries<'a> {
    /// Index into `WritePlan::destinations`.
    pub destination: u32,
    /// Metric name (MeasureName).
    pub name: &'a str,
    /// Values of `job` and `instance` ("" when absent): the target labels Prometheus puts on
    /// every scraped series, so the best first sort key for sharing attributes in a batch.
    pub target: [&'a str; 2],
    /// Sort key: hashes of the target, the metric name and the dimensions. Series of one
    /// target and metric end up adjacent just as with a lexicographic sort, but comparing
    /// three integers is far cheaper than comparing long, mostly equal label strings.
    pub key: [u64; 3],
    /// Dimensions sorted by name.
    pub dims: Vec<Dim<'a>>,
    /// Dimensions of the series' special-value records: `dims` plus `__name__` = the metric
    /// name, sorted by name (empty when the series has no special value to write).
    pub special_dims: Vec<Dim<'a>>,
    /// All samples of the series, left in the body (the plan's runs select the ones written).
    pub samples: SamplesRef<'a>,
    /// The native histograms of the series. A series' histograms are planned as a series of
    /// their own (no samples; `dims` then holds `__name__`); records of such a series refer
    /// to a histogram by the offset of its field in the series message.
    pub histograms: HistogramsRef<'a>,
    /// The histograms written, as offsets for [`HistogramsRef::at`] (runs of a histogram
    /// series index this list).
    pub hist_offsets: Vec<u32>,
    /// Records written as DOUBLE (finite samples).
    pub doubles: u32,
    /// Records written as VARCHAR (special values, or the histograms of a histogram series).
    pub varchars: u32,
}

/// The value of one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RecordValue<'a> {
    /// A sample value: a DOUBLE when finite, a special value's text otherwise.
    Number(f64),
    /// A native histogram's wire message (stored as `crate::histogram` text).
    Histogram(&'a [u8]),
}

impl RecordValue<'_> {
    /// Whether the record is written as VARCHAR (special values and histograms).
    pub fn is_varchar(&self) -> bool {
        match self {
            RecordValue::Number(v) => !v.is_finite(),
            RecordValue::Histogram(_) => true,
        }
    }
}

/// A record as it is written.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'p, 'a> {
    /// Measure name.
    pub measure_name: &'a str,
    /// Dimensions, sorted by name.
    pub dims: &'p [Dim<'a>],
    /// Time, milliseconds.
    pub timestamp: i64,
    /// Value.
    pub value: RecordValue<'a>,
}

impl<'a> PlannedSeries<'a> {
    /// Whether this is the histogram part of a series.
    pub fn is_histograms(&self) -> bool {
        !self.hist_offsets.is_empty()
    }

    /// The record of one of this series' samples.
    pub fn sample_record(&self, s: Sample) -> RecordParts<'_, 'a> {
        let finite = s.value.is_finite();
        RecordParts {
            measure_name: if finite {
                self.name
            } else {
                special::MEASURE_NAME
            },
            dims: if finite {
                &self.dims
            } else {
                &self.special_dims
            },
            timestamp: s.timestamp,
            value: RecordValue::Number(s.value),
        }
    }

    /// The record of histogram `i` (an index into `hist_offsets`) of a histogram series.
    pub fn histogram_record(&self, i: u32) -> RecordParts<'_, 'a> {
        let h = self.histograms.at(self.hist_offsets[i as usize]);
        RecordParts {
            measure_name: histogram::MEASURE_NAME,
            dims: &self.dims,
            timestamp: histogram_timestamp(h),
            value: RecordValue::Histogram(h),
        }
    }
}

/// Consecutive records of one series in one batch. For a series of samples: those of its
/// samples whose cursor ([`SamplesRef::walk`]) is in `from..to` and that are special values
/// (`special`) or finite numbers (not `special`). For a histogram series: its histograms
/// `from..to` (indices into `hist_offsets`; `special`, as they are VARCHAR too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Index into `WritePlan::series`.
    pub series: u32,
    /// First cursor of the run.
    pub from: u32,
    /// Cursor past the run.
    pub to: u32,
    /// Records in the run.
    pub records: u32,
    /// VARCHAR records (special values, histograms) rather than DOUBLE ones.
    pub special: bool,
}

/// The records of a [`Run`], each with its cursor.
#[derive(Debug, Clone)]
pub struct RunRecords<'p, 'a> {
    series: &'p PlannedSeries<'a>,
    special: bool,
    cursor: RunCursor<'a>,
}

#[derive(Debug, Clone)]
enum RunCursor<'a> {
    Samples(SampleWalk<'a>),
    Histograms(Range<u32>),
}

impl<'p, 'a> RunRecords<'p, 'a> {
    fn new(series: &'p PlannedSeries<'a>, run: &Run) -> Self {
        let cursor = if series.is_histograms() {
            RunCursor::Histograms(run.from..run.to)
        } else {
            RunCursor::Samples(series.samples.walk(run.from..run.to))
        };
        RunRecords {
            series,
            special: run.special,
            cursor,
        }
    }
}

impl<'p, 'a> Iterator for RunRecords<'p, 'a> {
    type Item = (u32, RecordParts<'p, 'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.cursor {
            RunCursor::Histograms(r) => {
                let i = r.next()?;
                Some((i, self.series.histogram_record(i)))
            }
            RunCursor::Samples(walk) => loop {
                let (at, s) = walk.next()?;
                // A run holds one kind of record; the series' others are in another run.
                if s.value.is_finite() != self.special {
                    return Some((at, self.series.sample_record(s)));
                }
            },
        }
    }
}

/// One WriteRecords call.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// Index into `WritePlan::destinations`.
    pub destination: u32,
    /// Range of `WritePlan::runs`.
    pub runs: Range<usize>,
    /// Records in the call.
    pub len: usize,
    /// Metric name shared by every record, if any.
    pub common_name: Option<&'a str>,
    /// Timestamp shared by every record, if any.
    pub common_time: Option<i64>,
    /// Dimensions every record has (sorted by name).
    pub common_dims: Vec<Dim<'a>>,
    /// Whether every record is a special value (`Some(true)`: VARCHAR), none is
    /// (`Some(false)`: DOUBLE), or the batch mixes both (`None`).
    pub common_special: Option<bool>,
}

/// Counts of what the request contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Samples in the request.
    pub received: u64,
    /// Samples that will be written.
    pub accepted: u64,
    /// Skipped samples by `IgnoreReason as usize`.
    pub ignored: [u64; IgnoreReason::ALL.len()],
    /// Samples written as special values, by `special::Kind as usize` (part of `accepted`).
    pub specials: [u64; special::Kind::ALL.len()],
    /// Native histogram samples written (part of `accepted`; a histogram repeated
    /// byte for byte right after itself in a series is one record, counted once per copy).
    pub histograms: u64,
}

impl PlanStats {
    /// Skipped samples in total.
    pub fn ignored_total(&self) -> u64 {
        self.ignored.iter().sum()
    }

    /// Adds the counts of another part of the request (a window of it).
    pub fn add(&mut self, o: &PlanStats) {
        // Destructured: a new count cannot be left out of the sum.
        let PlanStats {
            received,
            accepted,
            ignored,
            specials,
            histograms,
        } = o;
        self.received += received;
        self.accepted += accepted;
        self.histograms += histograms;
        for (a, b) in self.ignored.iter_mut().zip(ignored) {
            *a += b;
        }
        for (a, b) in self.specials.iter_mut().zip(specials) {
            *a += b;
        }
    }
}

/// The translated request. Its size grows with series and batches, never with samples:
/// records are described by runs of a series' samples, which stay in the body.
#[derive(Debug, Clone, Default)]
pub struct WritePlan<'a> {
    /// Distinct destinations.
    pub destinations: Vec<Destination<'a>>,
    /// Series to write, sorted.
    pub series: Vec<PlannedSeries<'a>>,
    /// The records in batch order, as runs of one series each (a run never spans two
    /// batches).
    pub runs: Vec<Run>,
    /// WriteRecords calls.
    pub batches: Vec<Batch<'a>>,
    /// Counts.
    pub stats: PlanStats,
}

impl<'a> WritePlan<'a> {
    /// Records to write (every batch's).
    pub fn record_count(&self) -> usize {
        self.batches.iter().map(|b| b.len).sum()
    }

    /// The records of one run, with their cursors.
    pub fn run_records(&self, run: &Run) -> RunRecords<'_, 'a> {
        RunRecords::new(&self.series[run.series as usize], run)
    }

    /// The records of one batch, as they are written, in order.
    pub fn batch_records<'p>(
        &'p self,
        batch: &Batch<'_>,
    ) -> impl Iterator<Item = RecordParts<'p, 'a>> + 'p {
        self.runs[batch.runs.clone()]
            .iter()
            .flat_map(move |r| self.run_records(r).map(|(_, p)| p))
    }

    /// Every record, in batch order.
    pub fn records(&self) -> impl Iterator<Item = RecordParts<'_, 'a>> + '_ {
        self.runs
            .iter()
            .flat_map(move |r| self.run_records(r).map(|(_, p)| p))
    }

    /// The run that holds record `i` of `batch`, and the record's place in it.
    pub fn batch_run(&self, batch: &Batch<'_>, mut i: usize) -> Option<(&Run, usize)> {
        for run in &self.runs[batch.runs.clone()] {
            if i < run.records as usize {
                return Some((run, i));
            }
            i -= run.records as usize;
        }
        None
    }

    /// The metric name and timestamp of record `i` of `batch`, for error messages.
    pub fn record(&self, batch: &Batch<'_>, i: usize) -> Option<(&'a str, i64)> {
        let (run, j) = self.batch_run(batch, i)?;
        let (_, parts) = self.run_records(run).nth(j)?;
        Some((self.series[run.series as usize].name, parts.timestamp))
    }

    /// Native histogram records in `batch`.
    pub fn histograms_in(&self, batch: &Batch<'_>) -> u64 {
        self.runs[batch.runs.clone()]
            .iter()
            .filter(|r| self.series[r.series as usize].is_histograms())
            .map(|r| u64::from(r.records))
            .sum()
    }
}

/// A label as the planner reads it.
pub trait LabelPair {
    /// Label name.
    fn name(&self) -> &str;
    /// Label value.
    fn value(&self) -> &str;
}

impl LabelPair for Label {
    fn name(&self) -> &str {
        &self.name
    }
    fn value(&self) -> &str {
        &self.value
    }
}

impl LabelPair for LabelRef<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn value(&self) -> &str {
        self.value
    }
}

/// What [`plan`] reads: series of labels and samples, by index.
pub trait WriteInput {
    /// The label type.
    type Label: LabelPair;
    /// Number of series.
    fn series_count(&self) -> usize;
    /// Labels of series `i` (wire order).
    fn series_labels(&self, i: usize) -> &[Self::Label];
    /// Samples of series `i`.
    fn series_samples(&self, i: usize) -> SamplesRef<'_>;
    /// Native histogram samples in the whole request.
    fn histogram_count(&self) -> u64;
    /// Native histograms of series `i`, as wire bytes (none for inputs that do not keep
    /// them: their histograms are counted as skipped, `native_histogram`).
    fn series_histograms(&self, _i: usize) -> HistogramsRef<'_> {
        HistogramsRef::default()
    }
}

impl WriteInput for WriteRequest {
    type Label = Label;
    fn series_count(&self) -> usize {
        self.timeseries.len()
    }
    fn series_labels(&self, i: usize) -> &[Label] {
        &self.timeseries[i].labels
    }
    fn series_samples(&self, i: usize) -> SamplesRef<'_> {
        SamplesRef::decoded(&self.timeseries[i].samples)
    }
    fn histogram_count(&self) -> u64 {
        self.timeseries
            .iter()
            .map(|t| t.histograms.len() as u64)
            .sum()
    }
}

impl<'b> WriteInput for WriteRequestView<'b> {
    type Label = LabelRef<'b>;
    fn series_count(&self) -> usize {
        self.len()
    }
    fn series_labels(&self, i: usize) -> &[LabelRef<'b>] {
        self.series(i).labels
    }
    fn series_samples(&self, i: usize) -> SamplesRef<'_> {
        self.series(i).samples
    }
    fn histogram_count(&self) -> u64 {
        WriteRequestView::histogram_count(self)
    }
    fn series_histograms(&self, i: usize) -> HistogramsRef<'_> {
        self.series(i).histograms
    }
}

/// Prometheus notation of a series (`name{a="b"}`), for messages.
pub fn series_to_string(ts: &TimeSeries) -> String {
    labels_to_string(&ts.labels)
}

/// Prometheus notation of a series given its labels, bounded in length.
pub fn labels_to_string<L: LabelPair>(labels: &[L]) -> String {
    // Bounded: this text goes into error bodies and log lines, and a request can carry
    // a million labels or megabyte-long names.
    const MAX_SHOWN_LABELS: usize = 32;
    let mut name = "";
    let mut rest = String::new();
    let (mut shown, mut hidden) = (0usize, 0usize);
    for l in labels {
        let (l_name, l_value) = (l.name(), l.value());
        if l_name == METRIC_NAME_LABEL {
            name = l_value;
        } else if shown == MAX_SHOWN_LABELS {
            hidden += 1;
        } else {
            shown += 1;
            if !rest.is_empty() {
                rest.push_str(", ");
            }
            rest.extend(l_name.chars().take(100));
            rest.push_str("=\"");
            for c in l_value.chars().take(200) {
                match c {
                    '"' => rest.push_str("\\\""),
                    '\\' => rest.push_str("\\\\"),
                    '\n' => rest.push_str("\\n"),
                    c => rest.push(c),
                }
            }
            rest.push('"');
        }
    }
    if hidden > 0 {
        rest.push_str(&format!(", … {hidden} more labels"));
    }
    let name: String = name.chars().take(300).collect();
    format!("{name}{{{rest}}}")
}

fn reserved_name(name: &str) -> bool {
    name.is_empty()
        || name == "time"
        || name.starts_with("measure_name")
        || name.starts_with("measure_value")
        || name.starts_with("ts_")
}

fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Checks a series' names; `Some((reason, detail))` when Timestream cannot store it.
fn unstorable(name: &str, dims: &[Dim<'_>]) -> Option<(IgnoreReason, String)> {
    if name.len() > MAX_MEASURE_NAME_BYTES {
        return Some((
            IgnoreReason::LongMetricName,
            format!(
                "the metric name is {} bytes long; Timestream's limit is {MAX_MEASURE_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    if dims.len() > MAX_DIMENSIONS {
        return Some((
            IgnoreReason::TooManyLabels,
            format!(
                "it has {} labels; Timestream's limit is {MAX_DIMENSIONS} dimensions",
                dims.len()
            ),
        ));
    }
    for d in dims {
        if d.name.len() > MAX_DIMENSION_NAME_BYTES {
            return Some((
                IgnoreReason::LongLabelName,
                format!(
                    "the label name {:?} is {} bytes long; Timestream's limit is {MAX_DIMENSION_NAME_BYTES}",
                    d.name,
                    d.name.len()
                ),
            ));
        }
        if reserved_name(d.name) {
            return Some((
                IgnoreReason::ReservedLabelName,
                format!(
                    "the label name {:?} is reserved by Timestream (time, measure_name*, measure_value*, ts_*)",
                    d.name
                ),
            ));
        }
        if d.value.len() > MAX_DIMENSION_VALUE_BYTES {
            return Some((
                IgnoreReason::LongLabelValue,
                format!(
                    "the value of label {:?} is {} bytes long; Timestream's limit is {MAX_DIMENSION_VALUE_BYTES}",
                    d.name,
                    d.value.len()
                ),
            ));
        }
    }
    None
}

/// Fixed seed: the same request is always planned into the same batches.
const KEY_HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x7153_a7e1);

fn cmp_series(a: &PlannedSeries<'_>, b: &PlannedSeries<'_>) -> Ordering {
    a.destination
        .cmp(&b.destination)
        .then_with(|| a.key.cmp(&b.key))
        // Only on a hash collision: the order stays total and deterministic.
        .then_with(|| a.target.cmp(&b.target))
        .then_with(|| a.name.cmp(b.name))
        .then_with(|| a.dims.cmp(&b.dims))
}

/// Translates a request into batches. Errors only for what must refuse the whole request.
pub fn plan<'a, R: WriteInput + ?Sized>(
    req: &'a R,
    opts: &PlanOptions<'a>,
) -> Result<WritePlan<'a>, PlanError> {
    let mut plan = WritePlan::default();
    let repeated_histograms = plan_each_series(req, opts, &mut plan, |_| {})?;
    plan.series.sort_unstable_by(cmp_series);
    let runs = runs_in_batch_order(&plan.series);
    (plan.runs, plan.batches) = cut_batches(&plan.series, &runs);
    plan.stats.accepted = plan.record_count() as u64 + repeated_histograms;
    Ok(plan)
}

/// What [`plan`] would answer, keeping nothing per series: the same refusal, or the same
/// counts and number of records. For the parts of a large request that are checked before
/// any is written, without holding their plans.
pub fn check<R: WriteInput + ?Sized>(
    req: &R,
    opts: &PlanOptions<'_>,
) -> Result<(PlanStats, usize), PlanError> {
    let mut plan = WritePlan::default();
    let mut records = 0usize;
    let repeated_histograms = plan_each_series(req, opts, &mut plan, |p| {
        for s in p.series.drain(..) {
            records += (s.doubles + s.varchars) as usize;
        }
    })?;
    plan.stats.accepted = records as u64 + repeated_histograms;
    Ok((plan.stats, records))
}

/// Plans every series of `req` into `plan` (unsorted, no batches), calling `each` after
/// each one. Returns the histograms that repeat the one before them.
fn plan_each_series<'a, R: WriteInput + ?Sized>(
    req: &'a R,
    opts: &PlanOptions<'a>,
    plan: &mut WritePlan<'a>,
    mut each: impl FnMut(&mut WritePlan<'a>),
) -> Result<u64, PlanError> {
    let histograms = req.histogram_count();
    plan.stats.received += histograms;
    // What is not planned below (the flag is off, or the input does not keep them).
    let mut unplanned_histograms = histograms;
    let mut repeated_histograms = 0u64;
    for i in 0..req.series_count() {
        let hist = if opts.native_histograms {
            req.series_histograms(i)
        } else {
            HistogramsRef::default()
        };
        unplanned_histograms -= u64::from(hist.count).min(unplanned_histograms);
        repeated_histograms += plan_series(
            plan,
            req.series_labels(i),
            req.series_samples(i),
            hist,
            opts,
        )?;
        each(plan);
    }
    plan.stats.ignored[IgnoreReason::NativeHistogram as usize] += unplanned_histograms;
    Ok(repeated_histograms)
}

/// Plans one series: its labels, then its histograms and samples; what is written goes to
/// `plan.series` (up to two entries: the histograms, the samples), what is not is counted
/// in `plan.stats`. Returns the histograms that repeat the one before them (one record,
/// counted as accepted once per copy).
fn plan_series<'a, L: LabelPair>(
    plan: &mut WritePlan<'a>,
    labels: &'a [L],
    samples: SamplesRef<'a>,
    hist: HistogramsRef<'a>,
    opts: &PlanOptions<'a>,
) -> Result<u64, PlanError> {
    let n_samples = samples.len() as u64;
    plan.stats.received += n_samples;
    // Skips and refusals of the whole series count its histograms too.
    let n_all = n_samples + u64::from(hist.count);
    if n_all == 0 {
        return Ok(0);
    }
    let series = match resolve_labels(labels, opts)? {
        Resolved::Write(s) => s,
        Resolved::Skip(reason) => {
            plan.stats.ignored[reason as usize] += n_all;
            return Ok(0);
        }
    };
    let hist_part = plan_histograms(&series, hist, labels, opts, &mut plan.stats)?;
    let (finite, specials) = count_samples(&series, samples, labels, opts, &mut plan.stats)?;
    if finite + specials + hist_part.offsets.len() == 0 {
        return Ok(hist_part.repeats);
    }
    let SeriesLabels {
        name,
        dims,
        destination,
    } = series;
    let destination = match plan.destinations.iter().position(|x| *x == destination) {
        Some(i) => i,
        None => {
            plan.destinations.push(destination);
            plan.destinations.len() - 1
        }
    } as u32;
    let target = [
        dims.iter()
            .find(|d| d.name == "job")
            .map_or("", |d| d.value),
        dims.iter()
            .find(|d| d.name == "instance")
            .map_or("", |d| d.value),
    ];
    let key = [
        KEY_HASHER.hash_one(target),
        KEY_HASHER.hash_one(name),
        KEY_HASHER.hash_one(&dims),
    ];
    if !hist_part.offsets.is_empty() {
        plan.series.push(PlannedSeries {
            destination,
            name,
            target,
            key,
            dims: hist_part.dims,
            special_dims: Vec::new(),
            samples: SamplesRef::default(),
            histograms: hist,
            varchars: hist_part.offsets.len() as u32,
            doubles: 0,
            hist_offsets: hist_part.offsets,
        });
    }
    if finite + specials > 0 {
        let special_dims = if specials > 0 {
            with_name_dimension(&dims, name)
        } else {
            Vec::new()
        };
        plan.series.push(PlannedSeries {
            destination,
            name,
            target,
            key,
            dims,
            special_dims,
            samples,
            histograms: HistogramsRef::default(),
            hist_offsets: Vec::new(),
            doubles: finite as u32,
            varchars: specials as u32,
        });
    }
    Ok(hist_part.repeats)
}

/// What a series' labels make of it: its metric name, dimensions and destination.
struct SeriesLabels<'a> {
    name: &'a str,
    /// Sorted by name.
    dims: Vec<Dim<'a>>,
    destination: Destination<'a>,
}

/// Whether a series is written, or skipped whole for a reason.
enum Resolved<'a> {
    Write(SeriesLabels<'a>),
    Skip(IgnoreReason),
}

/// Reads a series' labels: `__name__`, the routing labels, the other ones as dimensions
/// (empty values dropped: Prometheus treats them as absent labels, Timestream refuses them).
/// Refuses the request for what no flag lets through (no metric name, a repeated label, no
/// destination); skips the series (or refuses, with `fail_on_long_label`) when Timestream
/// cannot store its names or its metric name is reserved.
fn resolve_labels<'a, L: LabelPair>(
    labels: &'a [L],
    opts: &PlanOptions<'a>,
) -> Result<Resolved<'a>, PlanError> {
    let cfg = opts.destination;
    let db_label = cfg.database_label.as_deref();
    let table_label = cfg.table_label.as_deref();
    let (mut name, mut database, mut table) = (None, None, None);
    let mut dims: Vec<Dim<'a>> = Vec::with_capacity(labels.len().min(MAX_SERIES_LABELS + 1));
    let mut kept = 0usize;
    for l in labels {
        let (n, v) = (l.name(), l.value());
        if v.is_empty() {
            continue;
        }
        kept += 1;
        if kept > MAX_SERIES_LABELS {
            let detail = format!(
                "it has more than {MAX_SERIES_LABELS} labels; Timestream stores at most {MAX_DIMENSIONS} dimensions"
            );
            if !opts.fail_on_long_label {
                tracing::debug!(reason = IgnoreReason::TooManyLabels.as_str(), %detail, "series skipped");
            }
            return skip_or_refuse(opts, labels, IgnoreReason::TooManyLabels, detail);
        }
        if n == METRIC_NAME_LABEL {
            name = Some(v);
        } else if Some(n) == db_label {
            database = Some(v);
        } else if Some(n) == table_label {
            table = Some(v);
        } else {
            dims.push(Dim { name: n, value: v });
        }
    }
    let Some(name) = name else {
        return Err(PlanError::MissingMetricName {
            labels: labels_to_string(labels),
        });
    };
    // Senders must sort labels; checking is cheaper than trusting.
    if !dims.windows(2).all(|w| w[0].name < w[1].name) {
        dims.sort_unstable_by(|a, b| a.name.cmp(b.name));
        if let Some(w) = dims.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(PlanError::DuplicateLabel {
                series: labels_to_string(labels),
                name: w[0].name.to_string(),
            });
        }
    }
    if let Some((reason, detail)) = unstorable(name, &dims) {
        if !opts.fail_on_long_label {
            tracing::debug!(series = %labels_to_string(labels), reason = reason.as_str(), %detail, "series skipped");
        }
        return skip_or_refuse(opts, labels, reason, detail);
    }
    let route = |value: Option<&'a str>,
                 default: &'a str,
                 label: Option<&str>,
                 flag: &'static str| match value {
        Some(v) => Ok(v),
        None if !default.is_empty() => Ok(default),
        None => Err(PlanError::NoDestination {
            series: labels_to_string(labels),
            label: label.unwrap_or_default().to_string(),
            flag,
        }),
    };
    let destination = Destination {
        database: route(
            database,
            &cfg.default_database,
            db_label,
            "--default-database",
        )?,
        table: route(table, &cfg.default_table, table_label, "--default-table")?,
    };
    let reserved = if opts.special_values && name == special::MEASURE_NAME {
        Some("NaN/±Inf samples (--write.special-values)")
    } else if opts.native_histograms && name == histogram::MEASURE_NAME {
        Some("native histograms (--write.native-histograms)")
    } else {
        None
    };
    if let Some(what) = reserved {
        // Its numbers would share a measure with VARCHAR records, which Timestream
        // refuses (one type per measure name and table).
        let detail = format!("the metric name {name:?} is reserved for {what}");
        return skip_or_refuse(opts, labels, IgnoreReason::ReservedMetricName, detail);
    }
    Ok(Resolved::Write(SeriesLabels {
        name,
        dims,
        destination,
    }))
}

/// A series Timestream cannot store: skipped, or the request refused with
/// `--fail-on-long-label`.
fn skip_or_refuse<'a, L: LabelPair>(
    opts: &PlanOptions<'_>,
    labels: &[L],
    reason: IgnoreReason,
    detail: String,
) -> Result<Resolved<'a>, PlanError> {
    if opts.fail_on_long_label {
        return Err(PlanError::Unstorable {
            series: labels_to_string(labels),
            detail,
        });
    }
    Ok(Resolved::Skip(reason))
}

/// The histogram part of a series: the dimensions of its records, the histograms written
/// (offsets for [`HistogramsRef::at`]), and the copies of a histogram that follow it
/// (written once).
#[derive(Default)]
struct HistogramPart<'a> {
    dims: Vec<Dim<'a>>,
    offsets: Vec<u32>,
    repeats: u64,
}

/// Native histograms: one VARCHAR record each, with the `__histogram__` and `__name__`
/// dimensions (`documentation/native-histograms.md`). One that no reader could interpret,
/// or that would exceed Timestream's 2 KiB limits, is counted and skipped (or, when too
/// large, refuses the request with `fail_on_long_label`).
fn plan_histograms<'a, L: LabelPair>(
    series: &SeriesLabels<'a>,
    hist: HistogramsRef<'a>,
    labels: &[L],
    opts: &PlanOptions<'_>,
    stats: &mut PlanStats,
) -> Result<HistogramPart<'a>, PlanError> {
    let mut part = HistogramPart::default();
    if hist.count == 0 {
        return Ok(part);
    }
    let dims = &series.dims;
    if dims.len() + 2 > MAX_DIMENSIONS {
        if opts.fail_on_long_label {
            return Err(PlanError::Unstorable {
                series: labels_to_string(labels),
                detail: format!(
                    "its native histograms need two dimensions more than its {} labels; Timestream's limit is {MAX_DIMENSIONS}",
                    dims.len()
                ),
            });
        }
        stats.ignored[IgnoreReason::TooManyLabels as usize] += u64::from(hist.count);
        return Ok(part);
    }
    part.dims = with_name_dimension(dims, series.name);
    // `__histogram__` sorts before `__name__`; both before any label but `_*`.
    let at = part
        .dims
        .partition_point(|x| x.name < histogram::KIND_DIMENSION);
    part.dims.insert(
        at,
        Dim {
            name: histogram::KIND_DIMENSION,
            value: histogram::KIND_VALUE,
        },
    );
    // Timestream's record size: 8 bytes of time, the names and values of the
    // dimensions, the measure name and the value.
    let fixed = 8
        + histogram::MEASURE_NAME.len()
        + part
            .dims
            .iter()
            .map(|d| d.name.len() + d.value.len())
            .sum::<usize>();
    let mut last: Option<&[u8]> = None;
    for (offset, bytes) in hist.iter() {
        if last == Some(bytes) {
            // The same histogram again: the same record, written once.
            stats.histograms += 1;
            part.repeats += 1;
            continue;
        }
        let parsed = histogram::parse(bytes);
        if !histogram::interpretable(&parsed) {
            stats.ignored[IgnoreReason::InvalidHistogram as usize] += 1;
            continue;
        }
        let len = histogram::stored_len(&parsed);
        if len > histogram::MAX_VALUE_CHARS || fixed + len > MAX_RECORD_BYTES {
            if opts.fail_on_long_label {
                return Err(PlanError::Unstorable {
                    series: labels_to_string(labels),
                    detail: format!(
                        "a native histogram at {} ms is {len} characters stored, in a record of {} bytes; Timestream's limits are {} characters and {MAX_RECORD_BYTES} bytes",
                        histogram_timestamp(bytes),
                        fixed + len,
                        histogram::MAX_VALUE_CHARS
                    ),
                });
            }
            stats.ignored[IgnoreReason::HistogramTooLarge as usize] += 1;
            continue;
        }
        last = Some(bytes);
        stats.histograms += 1;
        part.offsets.push(offset);
    }
    Ok(part)
}

/// Sorts a series' samples by what becomes of them: (finite numbers, special values) to
/// write. NaN and ±Inf are special values when `special_values` is on and the `__name__`
/// dimension fits; otherwise they are counted as skipped (or refuse the request, per flag;
/// stale markers never do).
fn count_samples<L: LabelPair>(
    series: &SeriesLabels<'_>,
    samples: SamplesRef<'_>,
    labels: &[L],
    opts: &PlanOptions<'_>,
    stats: &mut PlanStats,
) -> Result<(usize, usize), PlanError> {
    let dims = series.dims.len();
    let mut finite = 0usize;
    let mut specials = 0usize;
    for s in samples.iter() {
        if s.value.is_finite() {
            finite += 1;
        } else if opts.special_values && dims < MAX_DIMENSIONS {
            specials += 1;
            if let Some(k) = special::Kind::of(s.value) {
                stats.specials[k as usize] += 1;
            }
        } else if opts.special_values {
            // The `__name__` dimension would be one more than Timestream stores.
            if opts.fail_on_long_label {
                return Err(PlanError::Unstorable {
                    series: labels_to_string(labels),
                    detail: format!(
                        "its NaN/±Inf samples need a dimension more than its {dims} labels; Timestream's limit is {MAX_DIMENSIONS}"
                    ),
                });
            }
            stats.ignored[IgnoreReason::TooManyLabels as usize] += 1;
        } else if is_stale_marker(s.value) {
            stats.ignored[IgnoreReason::StaleMarker as usize] += 1;
        } else if opts.fail_on_invalid_sample_value {
            return Err(PlanError::InvalidSampleValue {
                series: labels_to_string(labels),
                value: s.value,
                timestamp_ms: s.timestamp,
            });
        } else {
            stats.ignored[IgnoreReason::NonFinite as usize] += 1;
        }
    }
    Ok((finite, specials))
}

/// The records of the sorted series in the order they are batched, one run per series and
/// kind: per destination, the numbers first, then the special values and histograms
/// (VARCHAR: they share a measure type, so they batch together), each in series order.
fn runs_in_batch_order(series: &[PlannedSeries<'_>]) -> Vec<Run> {
    let mut runs = Vec::with_capacity(series.len());
    let mut from = 0;
    while from < series.len() {
        let dest = series[from].destination;
        let to = from
            + series[from..]
                .iter()
                .take_while(|s| s.destination == dest)
                .count();
        for special in [false, true] {
            for (i, s) in series.iter().enumerate().take(to).skip(from) {
                let records = if special { s.varchars } else { s.doubles };
                if records == 0 {
                    continue;
                }
                let end = if s.is_histograms() {
                    s.hist_offsets.len() as u32
                } else {
                    s.samples.end()
                };
                runs.push(Run {
                    series: i as u32,
                    from: 0,
                    to: end,
                    records,
                    special,
                });
            }
        }
        from = to;
    }
    runs
}

/// A batch is only cut early (before 100 records) once it holds this many: below that, an
/// extra call's CommonAttributes would cost more than repeating the attribute per record.
pub const MIN_BATCH_BEFORE_EARLY_CUT: usize = 50;

/// The batch being filled by [`cut_batches`], and its last record's series and kind.
struct OpenBatch<'a> {
    batch: Batch<'a>,
    last_series: u32,
    last_special: bool,
}

impl<'a> OpenBatch<'a> {
    fn new(runs_start: usize, series: u32, destination: u32, p: &RecordParts<'_, 'a>) -> Self {
        let special = p.value.is_varchar();
        OpenBatch {
            batch: Batch {
                destination,
                runs: runs_start..runs_start,
                len: 1,
                common_name: Some(p.measure_name),
                common_time: Some(p.timestamp),
                common_dims: p.dims.to_vec(),
                common_special: Some(special),
            },
            last_series: series,
            last_special: special,
        }
    }

    /// Adds the record unless the batch is full, the record goes elsewhere, or the batch
    /// holds enough records to be cut where the record would take something out of what
    /// they share (so the next batch can share it again).
    fn admit(&mut self, series: u32, destination: u32, p: &RecordParts<'_, 'a>) -> bool {
        let b = &mut self.batch;
        if b.len >= MAX_RECORDS_PER_CALL || destination != b.destination {
            return false;
        }
        let special = p.value.is_varchar();
        let name_lost = b.common_name.is_some_and(|n| n != p.measure_name);
        let time_lost = b.common_time.is_some_and(|x| x != p.timestamp);
        let dims_lost = (series != self.last_series || special != self.last_special)
            && !all_shared(&b.common_dims, p.dims);
        let kind_lost = b.common_special.is_some_and(|k| k != special);
        if (name_lost || time_lost || dims_lost || kind_lost) && b.len >= MIN_BATCH_BEFORE_EARLY_CUT
        {
            return false;
        }
        if name_lost {
            b.common_name = None;
        }
        if time_lost {
            b.common_time = None;
        }
        if dims_lost {
            retain_shared(&mut b.common_dims, p.dims);
        }
        if kind_lost {
            b.common_special = None;
        }
        self.last_series = series;
        self.last_special = special;
        b.len += 1;
        true
    }
}

/// Cuts the runs of records into batches of ≤100 with one destination each, tracking what
/// every record of the batch shares. A batch is cut early (at ≥50 records) where the next
/// record would take something out of the shared set (a dimension, the metric name, the
/// timestamp), so the next batch can share it again. A run cut by a batch's end becomes two
/// runs, so each batch is a range of the runs returned.
fn cut_batches<'a>(series: &[PlannedSeries<'a>], runs: &[Run]) -> (Vec<Run>, Vec<Batch<'a>>) {
    let records: usize = runs.iter().map(|r| r.records as usize).sum();
    let mut batches = Vec::with_capacity(records / MAX_RECORDS_PER_CALL + 1);
    let mut out = Vec::with_capacity(runs.len() + records / MAX_RECORDS_PER_CALL + 1);
    let mut open: Option<OpenBatch<'a>> = None;
    for run in runs {
        let s = &series[run.series as usize];
        let mut piece = Run { records: 0, ..*run };
        for (cursor, p) in RunRecords::new(s, run) {
            if let Some(b) = open.as_mut() {
                if b.admit(run.series, s.destination, &p) {
                    piece.records += 1;
                    continue;
                }
                if piece.records > 0 {
                    out.push(Run {
                        to: cursor,
                        ..piece
                    });
                }
                piece = Run {
                    from: cursor,
                    records: 0,
                    ..*run
                };
                let mut done = open.take().expect("open").batch;
                done.runs.end = out.len();
                batches.push(done);
            }
            open = Some(OpenBatch::new(out.len(), run.series, s.destination, &p));
            piece.records += 1;
        }
        if piece.records > 0 {
            out.push(piece);
        }
    }
    if let Some(b) = open {
        let mut done = b.batch;
        done.runs.end = out.len();
        batches.push(done);
    }
    (out, batches)
}

/// Whether every dimension of `common` is in `other` with the same value (both sorted).
fn all_shared(common: &[Dim<'_>], other: &[Dim<'_>]) -> bool {
    let mut j = 0;
    common.iter().all(|d| {
        while j < other.len() && other[j].name < d.name {
            j += 1;
        }
        j < other.len() && other[j] == *d
    })
}

/// Keeps the dimensions of `common` that `other` has with the same value (both sorted by name).
fn retain_shared(common: &mut Vec<Dim<'_>>, other: &[Dim<'_>]) {
    let mut j = 0;
    common.retain(|d| {
        while j < other.len() && other[j].name < d.name {
            j += 1;
        }
        j < other.len() && other[j] == *d
    });
}

/// The dimensions of `dims` not in `common` (both sorted by name; `common` ⊆ `dims`).
pub fn own_dims<'s, 'a>(
    dims: &'s [Dim<'a>],
    common: &'s [Dim<'a>],
) -> impl Iterator<Item = &'s Dim<'a>> + 's {
    let mut j = 0;
    dims.iter().filter(move |d| {
        while j < common.len() && common[j].name < d.name {
            j += 1;
        }
        !(j < common.len() && common[j] == **d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::pb::Label;
    use prost::Message;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    fn dest() -> DestinationConfig {
        DestinationConfig {
            default_database: "db".into(),
            default_table: "tb".into(),
            database_label: None,
            table_label: None,
        }
    }

    fn opts(d: &DestinationConfig) -> PlanOptions<'_> {
        PlanOptions {
            destination: d,
            fail_on_long_label: false,
            fail_on_invalid_sample_value: false,
            special_values: false,
            native_histograms: true,
        }
    }

    fn req(ts: Vec<TimeSeries>) -> WriteRequest {
        WriteRequest {
            timeseries: ts,
            ..Default::default()
        }
    }

    #[test]
    fn one_record_per_finite_sample_and_counts() {
        let d = dest();
        let r = req(vec![series(
            &[("__name__", "up"), ("job", "a"), ("empty", "")],
            &[
                (1.0, 1),
                (f64::NAN, 2),
                (f64::from_bits(STALE_NAN_BITS), 3),
                (f64::INFINITY, 4),
                (2.0, 5),
            ],
        )]);
        let p = plan(&r, &opts(&d)).unwrap();
        assert_eq!(p.record_count(), 2);
        assert_eq!(p.stats.received, 5);
        assert_eq!(p.stats.accepted, 2);
        assert_eq!(p.stats.ignored[IgnoreReason::NonFinite as usize], 2);
        assert_eq!(p.stats.ignored[IgnoreReason::StaleMarker as usize], 1);
        assert_eq!(
            p.series[0].dims,
            vec![Dim {
                name: "job",
                value: "a"
            }]
        );
    }

    #[test]
    fn native_histograms_are_counted_as_ignored_from_both_decoders() {
        let d = dest();
        let mut r = req(vec![series(
            &[("__name__", "h"), ("job", "a")],
            &[(1.0, 1)],
        )]);
        r.timeseries[0].histograms = vec![Default::default(); 3];
        let off = PlanOptions {
            native_histograms: false,
            ..opts(&d)
        };
        let p = plan(&r, &off).unwrap();
        assert_eq!(p.stats.received, 4);
        assert_eq!(p.stats.accepted, 1);
        assert_eq!(p.stats.ignored[IgnoreReason::NativeHistogram as usize], 3);
        let bytes = prost::Message::encode_to_vec(&r);
        let view = WriteRequestView::decode(&bytes).unwrap();
        let pv = plan(&view, &off).unwrap();
        assert_eq!(pv.stats, p.stats);
        // prost's owned request keeps no wire bytes: its histograms stay skipped.
        assert_eq!(plan(&r, &opts(&d)).unwrap().stats, p.stats);
        assert_eq!(IgnoreReason::NativeHistogram.as_str(), "native_histogram");
    }

    #[test]
    fn native_histograms_become_one_varchar_record_each_and_oversized_ones_are_counted() {
        use crate::remote::pb::histogram::Count;
        use crate::remote::pb::Histogram;
        let d = dest();
        let mut r = req(vec![series(
            &[("__name__", "h"), ("job", "a")],
            &[(1.0, 1)],
        )]);
        let h = |t: i64, buckets: usize| Histogram {
            count: Some(Count::CountInt(buckets as u64)),
            positive_deltas: vec![1; buckets],
            timestamp: t,
            ..Default::default()
        };
        // 5: a copy of 4 (one record); 6: a 1,600-byte message, over 2,048 characters.
        r.timeseries[0].histograms = vec![h(2, 3), h(3, 0), h(4, 10), h(4, 10), h(6, 1600)];
        let bytes = prost::Message::encode_to_vec(&r);
        let view = WriteRequestView::decode(&bytes).unwrap();
        let p = plan(&view, &opts(&d)).unwrap();
        assert_eq!(p.stats.received, 6);
        assert_eq!(p.stats.accepted, 5);
        assert_eq!(p.stats.histograms, 4);
        assert_eq!(p.stats.ignored[IgnoreReason::HistogramTooLarge as usize], 1);
        assert_eq!(p.record_count(), 4);
        let hist: Vec<_> = p
            .records()
            .filter(|x| matches!(x.value, RecordValue::Histogram(_)))
            .collect();
        assert_eq!(hist.len(), 3);
        for (x, (t, n)) in hist.iter().zip([(2, 3), (3, 0), (4, 10)]) {
            assert_eq!(x.measure_name, histogram::MEASURE_NAME);
            assert_eq!(x.timestamp, t);
            let names: Vec<_> = x.dims.iter().map(|d| (d.name, d.value)).collect();
            assert_eq!(
                names,
                [("__histogram__", "native"), ("__name__", "h"), ("job", "a")]
            );
            let RecordValue::Histogram(b) = x.value else {
                unreachable!()
            };
            assert_eq!(histogram::parse(b), h(t, n));
        }
        // Refused with --fail-on-long-label, naming the limit.
        let strict = PlanOptions {
            fail_on_long_label: true,
            ..opts(&d)
        };
        let e = plan(&view, &strict).unwrap_err().to_string();
        assert!(e.contains("native histogram at 6 ms"), "{e}");
        assert_eq!(
            IgnoreReason::HistogramTooLarge.as_str(),
            "histogram_too_large"
        );
    }

    #[test]
    fn missing_name_is_refused_naming_it() {
        let d = dest();
        let r = req(vec![series(&[("job", "a")], &[(1.0, 1)])]);
        let e = plan(&r, &opts(&d)).unwrap_err();
        assert!(e.to_string().contains("__name__"));
        // Without samples nothing is written, so nothing is wrong.
        let r = req(vec![series(&[("job", "a")], &[])]);
        assert_eq!(plan(&r, &opts(&d)).unwrap().record_count(), 0);
    }

    #[test]
    fn unstorable_series_skipped_or_refused() {
        let d = dest();
        let long = "l".repeat(61);
        for labels in [
            vec![("__name__", "m"), (long.as_str(), "v")],
            vec![("__name__", "m"), ("time", "v")],
            vec![("__name__", "m"), ("ts_x", "v")],
            vec![("__name__", "m"), ("measure_value::double", "v")],
            vec![("__name__", "m"), ("measure_name", "v")],
        ] {
            let r = req(vec![series(&labels, &[(1.0, 1), (2.0, 2)])]);
            let p = plan(&r, &opts(&d)).unwrap();
            assert_eq!(p.record_count(), 0);
            assert_eq!(p.stats.ignored_total(), 2);
            let mut o = opts(&d);
            o.fail_on_long_label = true;
            assert!(matches!(plan(&r, &o), Err(PlanError::Unstorable { .. })));
        }
        let name = "m".repeat(257);
        let r = req(vec![series(&[("__name__", &name)], &[(1.0, 1)])]);
        let p = plan(&r, &opts(&d)).unwrap();
        assert_eq!(p.stats.ignored[IgnoreReason::LongMetricName as usize], 1);
        let ok = "m".repeat(256);
        let l60 = "l".repeat(60);
        let r = req(vec![series(&[("__name__", &ok), (&l60, "v")], &[(1.0, 1)])]);
        assert_eq!(plan(&r, &opts(&d)).unwrap().record_count(), 1);
    }

    #[test]
    fn a_series_of_more_than_max_series_labels_is_skipped_before_other_checks() {
        let d = dest();
        let names: Vec<String> = (0..=MAX_SERIES_LABELS)
            .map(|i| format!("l{i:03}"))
            .collect();
        let mut labels: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        // No `__name__` and a repeated label: refusals the cap comes before.
        labels.push(("l000", "v"));
        // Empty values are not counted: one label fewer would be planned (and refused).
        let mut under = labels[2..].to_vec();
        under.push(("e", ""));
        let over = req(vec![series(&labels, &[(1.0, 1), (2.0, 2)])]);
        let p = plan(&over, &opts(&d)).unwrap();
        assert_eq!(p.record_count(), 0);
        assert_eq!(p.stats.ignored[IgnoreReason::TooManyLabels as usize], 2);
        let mut o = opts(&d);
        o.fail_on_long_label = true;
        match plan(&over, &o) {
            Err(PlanError::Unstorable { detail, .. }) => {
                assert!(detail.contains("more than 256 labels"), "{detail}")
            }
            r => panic!("{r:?}"),
        }
        let under = req(vec![series(&under, &[(1.0, 1)])]);
        assert!(matches!(
            plan(&under, &opts(&d)),
            Err(PlanError::MissingMetricName { .. })
        ));
        // The view keeps one label more than the cap: enough to plan the same.
        let bytes = over.encode_to_vec();
        let limits = crate::remote::view::WindowLimits {
            series_labels: MAX_SERIES_LABELS + 1,
            ..crate::remote::view::WindowLimits::WHOLE
        };
        let (view, _) = WriteRequestView::decode_window(&bytes, 0, limits).unwrap();
        assert_eq!(view.series(0).labels.len(), MAX_SERIES_LABELS + 1);
        assert_eq!(plan(&view, &opts(&d)).unwrap().stats, p.stats);
    }

    #[test]
    fn invalid_value_refused_with_flag_but_stale_markers_never() {
        let d = dest();
        let mut o = opts(&d);
        o.fail_on_invalid_sample_value = true;
        let r = req(vec![series(
            &[("__name__", "m")],
            &[(f64::from_bits(STALE_NAN_BITS), 1)],
        )]);
        assert!(plan(&r, &o).is_ok());
        let r = req(vec![series(
            &[("__name__", "m")],
            &[(f64::NEG_INFINITY, 1)],
        )]);
        assert!(matches!(
            plan(&r, &o),
            Err(PlanError::InvalidSampleValue { .. })
        ));
    }

    #[test]
    fn routing_labels_pick_destination_and_are_not_dimensions() {
        let d = DestinationConfig {
            default_database: "db".into(),
            default_table: "tb".into(),
            database_label: Some("_db".into()),
            table_label: Some("_tb".into()),
        };
        let r = req(vec![
            series(
                &[("__name__", "a"), ("_db", "x"), ("_tb", "y"), ("k", "v")],
                &[(1.0, 1)],
            ),
            series(&[("__name__", "a"), ("k", "v")], &[(1.0, 1)]),
        ]);
        let p = plan(&r, &opts(&d)).unwrap();
        assert_eq!(p.destinations.len(), 2);
        assert_eq!(p.batches.len(), 2);
        for s in &p.series {
            assert_eq!(
                s.dims,
                vec![Dim {
                    name: "k",
                    value: "v"
                }]
            );
        }
        let dests: Vec<_> = p
            .destinations
            .iter()
            .map(|d| (d.database, d.table))
            .collect();
        assert!(dests.contains(&("x", "y")) && dests.contains(&("db", "tb")));
        let nd = DestinationConfig {
            default_database: String::new(),
            ..d.clone()
        };
        let r = req(vec![series(&[("__name__", "a")], &[(1.0, 1)])]);
        assert!(matches!(
            plan(&r, &opts(&nd)),
            Err(PlanError::NoDestination { .. })
        ));
    }

    #[test]
    fn batches_of_at_most_100_with_shared_attributes() {
        let d = dest();
        let mut ts = Vec::new();
        for i in 0..250 {
            let cpu = i.to_string();
            ts.push(series(
                &[
                    ("__name__", "cpu"),
                    ("cpu", &cpu),
                    ("instance", "h:9100"),
                    ("job", "node"),
                ],
                &[(i as f64, 1000)],
            ));
        }
        ts.push(series(
            &[("__name__", "up"), ("instance", "h:9100"), ("job", "node")],
            &[(1.0, 1000), (1.0, 2000)],
        ));
        let r = req(ts);
        let p = plan(&r, &opts(&d)).unwrap();
        assert_eq!(p.record_count(), 252);
        // Series are grouped by (target, metric) in hash order, so whether "up" comes
        // before or after "cpu" is not fixed; what the batching promises is.
        let sizes: Vec<_> = p.batches.iter().map(|b| b.len).collect();
        assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
        assert!(sizes.len() <= 4, "{sizes:?}");
        let shared = [
            Dim {
                name: "instance",
                value: "h:9100",
            },
            Dim {
                name: "job",
                value: "node",
            },
        ];
        for b in &p.batches {
            assert_eq!(
                b.common_dims[..2],
                shared[..],
                "every series shares the target"
            );
        }
        // At most one batch mixes the two metrics: at least 150 of the 250 "cpu" records
        // travel in batches whose CommonAttributes carry the name and the time.
        let cpu_only: usize = p
            .batches
            .iter()
            .filter(|b| b.common_name == Some("cpu") && b.common_time == Some(1000))
            .map(|b| b.len)
            .sum();
        assert!(cpu_only >= 150, "{sizes:?}");
        let up = p
            .batches
            .iter()
            .find(|b| (0..b.len).any(|i| p.record(b, i).unwrap().0 == "up"))
            .unwrap();
        assert_eq!(up.common_time, None, "two timestamps");
        // Every record's own dims + common dims = its series' dims.
        for b in &p.batches {
            for r in &p.runs[b.runs.clone()] {
                let s = &p.series[r.series as usize];
                let own: Vec<_> = own_dims(&s.dims, &b.common_dims).copied().collect();
                let mut all = own.clone();
                all.extend(b.common_dims.iter().copied());
                all.sort();
                assert_eq!(all, s.dims);
                assert!(own.iter().all(|d| !b.common_dims.contains(d)));
            }
        }
    }

    #[test]
    fn series_of_one_target_are_kept_together() {
        let d = dest();
        let mut ts = Vec::new();
        // Two targets, 60 series each over 3 names; a label ("a_cpu") sorting before
        // "instance" must not interleave the targets.
        for inst in ["h1:9100", "h2:9100"] {
            for i in 0..60 {
                let cpu = i.to_string();
                let name = ["m1", "m2", "m3"][i % 3];
                ts.push(series(
                    &[
                        ("__name__", name),
                        ("a_cpu", &cpu),
                        ("instance", inst),
                        ("job", "node"),
                    ],
                    &[(1.0, if inst == "h1:9100" { 1000 } else { 1007 })],
                ));
            }
        }
        let r = req(ts);
        let p = plan(&r, &opts(&d)).unwrap();
        let sizes: Vec<_> = p.batches.iter().map(|b| b.len).collect();
        assert_eq!(sizes, vec![60, 60]);
        for b in &p.batches {
            assert!(b.common_time.is_some());
            assert!(b.common_dims.iter().any(|d| d.name == "instance"));
        }
    }

    /// The server plans from the zero-copy view of the body; it must plan exactly what
    /// prost's owned request plans (same series, records, batches, stats and errors).
    #[test]
    fn view_and_prost_requests_plan_the_same() {
        let d = DestinationConfig {
            default_database: "db".into(),
            default_table: String::new(),
            database_label: Some("_db".into()),
            table_label: Some("_tb".into()),
        };
        let mut ts = Vec::new();
        for i in 0..180 {
            let cpu = (i % 7).to_string();
            let inst = format!("h{}:9100", i % 3);
            ts.push(series(
                &[
                    ("__name__", ["a", "b"][i % 2]),
                    ("cpu", &cpu),
                    ("instance", &inst),
                    ("job", "node"),
                    ("_tb", ["t1", "t2"][i % 2]),
                    ("x", if i % 5 == 0 { "" } else { "y" }),
                ],
                &[(i as f64, 1000 + (i % 4) as i64), (f64::NAN, 5)],
            ));
        }
        ts.push(series(&[("__name__", "m"), ("time", "v")], &[(1.0, 1)]));
        ts.push(series(
            &[("b", "1"), ("__name__", "m"), ("_tb", "t")],
            &[(1.0, 1)],
        ));
        let ok = req(ts);
        let bad = [
            req(vec![series(&[("job", "a")], &[(1.0, 1)])]),
            req(vec![series(&[("__name__", "m")], &[(1.0, 1)])]),
            req(vec![series(
                &[("__name__", "m"), ("b", "1"), ("b", "2"), ("_tb", "t")],
                &[(1.0, 1)],
            )]),
        ];
        // Runs are compared by what they hold: their cursors are indices in prost's
        // arrays and byte offsets in the body.
        let summary = |p: &WritePlan<'_>| {
            let batches: Vec<_> = p
                .batches
                .iter()
                .map(|b| {
                    let records: Vec<_> = p
                        .batch_records(b)
                        .map(|r| (r.measure_name, r.dims.to_vec(), r.timestamp, r.value))
                        .collect();
                    let runs: Vec<_> = p.runs[b.runs.clone()]
                        .iter()
                        .map(|r| (r.series, r.records, r.special))
                        .collect();
                    let b = Batch {
                        runs: 0..0,
                        ..b.clone()
                    };
                    format!("{b:?} {runs:?} {records:?}")
                })
                .collect();
            format!(
                "{:?} {:?} {:?}",
                p.destinations,
                p.series
                    .iter()
                    .map(|s| (s.destination, s.name, s.target, &s.dims, s.samples.len()))
                    .collect::<Vec<_>>(),
                batches,
            ) + &format!("{:?}", p.stats)
        };
        for (r, special_values) in std::iter::once(&ok)
            .chain(bad.iter())
            .flat_map(|r| [(r, false), (r, true)])
        {
            let bytes = r.encode_to_vec();
            let view = WriteRequestView::decode(&bytes).unwrap();
            let o = PlanOptions {
                special_values,
                ..opts(&d)
            };
            match (plan(r, &o), plan(&view, &o)) {
                (Ok(a), Ok(b)) => {
                    assert!(a.record_count() > 100);
                    assert_eq!(summary(&a), summary(&b));
                    // `check` answers what `plan` does, from both inputs.
                    let counts = (a.stats.clone(), a.record_count());
                    assert_eq!(check(r, &o), Ok(counts.clone()));
                    assert_eq!(check(&view, &o), Ok(counts));
                }
                (Err(a), Err(b)) => {
                    assert_eq!(check(r, &o), Err(a.clone()));
                    assert_eq!(check(&view, &o), Err(a.clone()));
                    assert_eq!(a, b);
                }
                (a, b) => panic!("{:?} vs {:?}", a.is_ok(), b.is_ok()),
            }
        }
    }

    /// Runs of samples cut by batches hold exactly the records one per sample would: every
    /// finite sample of the destination's series in series order, then every special
    /// value, none twice, none lost; the plan holds O(series + batches) runs.
    #[test]
    fn runs_hold_every_record_once_in_batch_order() {
        let d = dest();
        let mut ts = Vec::new();
        for i in 0..7 {
            let samples: Vec<(f64, i64)> = (0..(40 + 97 * i))
                .map(|j| {
                    let v = if (j + i) % 9 == 0 { f64::NAN } else { j as f64 };
                    (v, 1000 + (j / 60) as i64)
                })
                .collect();
            let n = format!("m{}", i % 3);
            let k = i.to_string();
            ts.push(series(&[("__name__", &n), ("k", &k)], &samples));
        }
        let r = req(ts);
        let bytes = r.encode_to_vec();
        let view = WriteRequestView::decode(&bytes).unwrap();
        for special_values in [false, true] {
            let o = PlanOptions {
                special_values,
                ..opts(&d)
            };
            for p in [plan(&r, &o).unwrap(), plan(&view, &o).unwrap()] {
                let mut want = Vec::new();
                for special in [false, true] {
                    for s in &p.series {
                        for x in s.samples.iter() {
                            let written = special_values || x.value.is_finite();
                            if written && x.value.is_finite() != special {
                                want.push((s.name, x.timestamp, x.value.to_bits()));
                            }
                        }
                    }
                }
                let got: Vec<_> = p
                    .batches
                    .iter()
                    .flat_map(|b| {
                        assert!(b.len <= MAX_RECORDS_PER_CALL);
                        assert_eq!(
                            p.runs[b.runs.clone()]
                                .iter()
                                .map(|r| r.records as usize)
                                .sum::<usize>(),
                            b.len
                        );
                        assert_eq!(p.batch_records(b).count(), b.len);
                        p.batch_records(b).map(|x| {
                            let RecordValue::Number(v) = x.value else {
                                unreachable!()
                            };
                            let name = match x.measure_name {
                                special::MEASURE_NAME => x.dims[0].value,
                                n => n,
                            };
                            (name, x.timestamp, v.to_bits())
                        })
                    })
                    .collect();
                assert_eq!(got, want);
                assert_eq!(p.record_count(), want.len());
                assert!(p.runs.len() <= 2 * p.series.len() + p.batches.len());
                // Record i of a batch, as the writer looks up a rejected one.
                let b = &p.batches[p.batches.len() / 2];
                let all: Vec<_> = p.batch_records(b).map(|x| x.timestamp).collect();
                for (i, t) in all.iter().enumerate() {
                    assert_eq!(p.record(b, i).unwrap().1, *t);
                }
                assert_eq!(p.record(b, all.len()), None);
            }
        }
    }

    fn with_specials(d: &DestinationConfig) -> PlanOptions<'_> {
        PlanOptions {
            special_values: true,
            native_histograms: true,
            ..opts(d)
        }
    }

    #[test]
    fn special_values_become_varchar_records_with_the_metric_in_name_dimension() {
        let d = dest();
        let odd_nan = f64::from_bits(0x7ff8_dead_beef_0001);
        let r = req(vec![
            series(
                &[("__name__", "q"), ("zone", "z"), ("job", "a")],
                &[
                    (1.0, 1),
                    (f64::from_bits(STALE_NAN_BITS), 2),
                    (f64::INFINITY, 3),
                    (2.0, 4),
                ],
            ),
            series(
                &[("__name__", "r"), ("job", "a")],
                &[(f64::NEG_INFINITY, 1), (odd_nan, 2), (f64::NAN, 3)],
            ),
        ]);
        let p = plan(&r, &with_specials(&d)).unwrap();
        assert_eq!(p.stats.received, 7);
        assert_eq!(p.stats.accepted, 7);
        assert_eq!(p.stats.ignored_total(), 0);
        assert_eq!(p.stats.specials, [2, 1, 1, 1]);
        type Parts<'s> = Vec<(&'s str, Vec<(&'s str, &'s str)>, u64)>;
        let parts: Parts<'_> = p
            .records()
            .map(|parts| {
                let dims = parts.dims.iter().map(|d| (d.name, d.value)).collect();
                let RecordValue::Number(v) = parts.value else {
                    panic!("no histogram here")
                };
                (parts.measure_name, dims, v.to_bits())
            })
            .collect();
        // The numbers come first, then the special values of the same destination.
        let numbers: Vec<u64> = parts
            .iter()
            .take_while(|p| p.0 == "q")
            .map(|p| p.2)
            .collect();
        assert_eq!(numbers, [1f64.to_bits(), 2f64.to_bits()]);
        let mut specials: Vec<_> = parts[2..].to_vec();
        specials.sort_by_key(|p| p.2);
        assert!(specials.iter().all(|p| p.0 == special::MEASURE_NAME));
        let q_dims = vec![("__name__", "q"), ("job", "a"), ("zone", "z")];
        let r_dims = vec![("__name__", "r"), ("job", "a")];
        assert_eq!(
            specials,
            vec![
                (
                    special::MEASURE_NAME,
                    q_dims.clone(),
                    f64::INFINITY.to_bits()
                ),
                (special::MEASURE_NAME, q_dims, STALE_NAN_BITS),
                (special::MEASURE_NAME, r_dims.clone(), f64::NAN.to_bits()),
                (special::MEASURE_NAME, r_dims.clone(), odd_nan.to_bits()),
                (special::MEASURE_NAME, r_dims, f64::NEG_INFINITY.to_bits()),
            ]
        );
        // One batch of 7 mixes both kinds; alone, the special values share name and type.
        assert_eq!(p.batches.len(), 1);
        assert_eq!(p.batches[0].common_special, None);
        assert_eq!(p.batches[0].common_name, None);
        let r2 = req(vec![series(
            &[("__name__", "r"), ("job", "a")],
            &[(f64::NAN, 1), (f64::INFINITY, 2)],
        )]);
        let p2 = plan(&r2, &with_specials(&d)).unwrap();
        assert_eq!(p2.batches[0].common_special, Some(true));
        assert_eq!(p2.batches[0].common_name, Some(special::MEASURE_NAME));
        assert_eq!(p2.batches[0].common_dims.len(), 2, "__name__ and job");
    }

    #[test]
    fn special_values_off_skips_them_as_upstream() {
        let d = dest();
        let r = req(vec![series(
            &[("__name__", "q")],
            &[(f64::NAN, 1), (f64::from_bits(STALE_NAN_BITS), 2), (1.0, 3)],
        )]);
        let p = plan(&r, &opts(&d)).unwrap();
        assert_eq!(p.stats.accepted, 1);
        assert_eq!(p.stats.specials, [0; 4]);
        assert_eq!(p.stats.ignored[IgnoreReason::NonFinite as usize], 1);
        assert_eq!(p.stats.ignored[IgnoreReason::StaleMarker as usize], 1);
        // With special values on, fail-on-invalid-sample-value has nothing to refuse.
        let o = PlanOptions {
            fail_on_invalid_sample_value: true,
            ..with_specials(&d)
        };
        assert_eq!(plan(&r, &o).unwrap().stats.accepted, 3);
    }

    #[test]
    fn special_values_of_a_series_with_128_labels_are_counted_not_sent() {
        let d = dest();
        let names: Vec<String> = (0..MAX_DIMENSIONS).map(|i| format!("l{i:03}")).collect();
        let mut labels: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        labels.push(("__name__", "wide"));
        let r = req(vec![series(&labels, &[(1.0, 1), (f64::NAN, 2)])]);
        let p = plan(&r, &with_specials(&d)).unwrap();
        assert_eq!(p.record_count(), 1);
        assert!(!p.records().next().unwrap().value.is_varchar());
        assert_eq!(p.stats.ignored[IgnoreReason::TooManyLabels as usize], 1);
        assert_eq!(p.stats.specials, [0; 4]);
        let strict = PlanOptions {
            fail_on_long_label: true,
            ..with_specials(&d)
        };
        assert!(matches!(
            plan(&r, &strict),
            Err(PlanError::Unstorable { .. })
        ));
        // One label fewer: the special value fits.
        let r = req(vec![series(&labels[1..], &[(f64::NAN, 2)])]);
        assert_eq!(plan(&r, &with_specials(&d)).unwrap().record_count(), 1);
    }

    #[test]
    fn the_special_measure_name_is_not_a_metric_name_while_specials_are_written() {
        let d = dest();
        let r = req(vec![series(
            &[("__name__", special::MEASURE_NAME)],
            &[(1.0, 1), (f64::NAN, 2)],
        )]);
        let p = plan(&r, &with_specials(&d)).unwrap();
        assert_eq!(p.record_count(), 0);
        assert_eq!(
            p.stats.ignored[IgnoreReason::ReservedMetricName as usize],
            2
        );
        assert_eq!(plan(&r, &opts(&d)).unwrap().record_count(), 1);
    }

    #[test]
    fn unsorted_and_duplicate_labels() {
        let d = dest();
        let r = req(vec![series(
            &[("__name__", "m"), ("b", "1"), ("a", "2")],
            &[(1.0, 1)],
        )]);
        let p = plan(&r, &opts(&d)).unwrap();
        assert_eq!(p.series[0].dims[0].name, "a");
        let r = req(vec![series(
            &[("__name__", "m"), ("b", "1"), ("b", "2")],
            &[(1.0, 1)],
        )]);
        assert!(matches!(
            plan(&r, &opts(&d)),
            Err(PlanError::DuplicateLabel { .. })
        ));
    }
}
