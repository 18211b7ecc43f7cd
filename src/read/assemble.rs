//! Timestream rows → Prometheus series.
//!
//! Rows arrive as cells (`Option<&str>`, None = NULL) in the column order of the
//! query's ColumnInfo. Two groupers:
//! - [`Grouper`] (any row order): a hash of the label set indexes the series,
//!   so grouping is linear in rows; samples and series are sorted at the end.
//! - [`OrderedGrouper`] (rows ordered by series then time, see
//!   `sql::Order::SeriesThenTime`): emits each series as soon as the next one
//!   starts, and long series in segments, so memory stays bounded.
//!
//! Special values (`crate::special`) arrive as rows whose `measure_value::double` is NULL
//! and whose `measure_value::varchar` holds the value's text; the query already names them
//! after their metric, so they fall into their series like any sample. Should a series hold
//! a number and a special value at one timestamp (a re-sent sample), the number is kept.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::error::ReadError;
use super::sql::METRIC_NAME_LABEL;
use crate::histogram;
use crate::remote::pb::{Histogram, Label, Sample, TimeSeries};
use crate::special;

/// Where a label's value comes from.
#[derive(Debug, Clone)]
enum Src {
    Column(usize),
    /// A label every series of the query carries (e.g. a routing label).
    Constant(Box<str>),
}

/// Which cell holds what.
#[derive(Debug, Clone)]
pub struct Layout {
    /// (label name, source), sorted by label name.
    slots: Vec<(String, Src)>,
    time: usize,
    value: Option<usize>,
    /// `measure_value::varchar`, where special values are (when selected).
    special: Option<usize>,
    columns: usize,
    /// Columns of the `Src::Column` slots, in slot order: the cells that tell
    /// series apart (constant slots are the same on every row).
    keys: Vec<usize>,
}

impl Layout {
    /// From the result's column names: `measure_name` → `__name__`, `time`,
    /// `measure_value::double`; every other column is a dimension (label).
    pub fn new<S: AsRef<str>>(columns: &[S]) -> Result<Layout, ReadError> {
        Layout::with_constants(columns, &[])
    }

    /// As [`Layout::new`], plus labels with a fixed value on every series.
    pub fn with_constants<S: AsRef<str>>(
        columns: &[S],
        constants: &[(String, String)],
    ) -> Result<Layout, ReadError> {
        let mut slots = Vec::new();
        let (mut time, mut value, mut name, mut special) = (None, None, None, None);
        for (i, c) in columns.iter().enumerate() {
            match c.as_ref() {
                "time" => time = Some(i),
                "measure_value::double" => value = Some(i),
                "measure_value::varchar" => special = Some(i),
                "measure_name" => {
                    name = Some(i);
                    slots.push((METRIC_NAME_LABEL.to_string(), Src::Column(i)));
                }
                other if other.starts_with("measure_value::") => {}
                other => slots.push((other.to_string(), Src::Column(i))),
            }
        }
        for (n, v) in constants {
            if !v.is_empty() && !slots.iter().any(|(s, _)| s == n) {
                slots.push((n.clone(), Src::Constant(v.as_str().into())));
            }
        }
        let missing = |c: &str| ReadError::Internal(format!("query result has no {c} column"));
        name.ok_or_else(|| missing("measure_name"))?;
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        let keys = slots
            .iter()
            .filter_map(|(_, s)| match s {
                Src::Column(c) => Some(*c),
                Src::Constant(_) => None,
            })
            .collect();
        Ok(Layout {
            keys,
            slots,
            time: time.ok_or_else(|| missing("time"))?,
            // A table without doubles is read without the column; then the rows must carry
            // special values.
            value: match (value, special) {
                (None, None) => return Err(missing("measure_value::double")),
                (v, _) => v,
            },
            special,
            columns: columns.len(),
        })
    }

    /// The label value of slot `j` in `row` (empty values are absent labels).
    #[inline]
    fn cell<'a>(&'a self, row: &[Option<&'a str>], j: usize) -> Option<&'a str> {
        match &self.slots[j].1 {
            Src::Column(c) => row[*c].filter(|v| !v.is_empty()),
            Src::Constant(v) => Some(v),
        }
    }

    fn labels(&self, values: &[Option<Box<str>>]) -> Vec<Label> {
        self.slots
            .iter()
            .zip(values)
            .filter_map(|((name, _), v)| {
                v.as_ref().map(|v| Label {
                    name: name.clone(),
                    value: v.to_string(),
                })
            })
            .collect()
    }

    /// Labels from the values of the key columns (`keys` order) plus the constants.
    fn labels_from_keys(&self, values: &[Option<Box<str>>]) -> Vec<Label> {
        let mut k = values.iter();
        self.slots
            .iter()
            .filter_map(|(name, src)| {
                let v: &str = match src {
                    Src::Column(_) => k.next()?.as_deref()?,
                    Src::Constant(v) => v,
                };
                Some(Label {
                    name: name.clone(),
                    value: v.to_string(),
                })
            })
            .collect()
    }

    /// The key cell `c` of `row` (empty values are absent labels).
    #[inline]
    fn key<'a>(row: &[Option<&'a str>], c: usize) -> Option<&'a str> {
        row[c].filter(|v| !v.is_empty())
    }

    fn point(&self, row: &[Option<&str>], times: &mut TimeCache) -> Result<Point, ReadError> {
        if row.len() != self.columns {
            return Err(ReadError::Internal(format!(
                "row has {} cells, expected {}",
                row.len(),
                self.columns
            )));
        }
        let t = row[self.time].ok_or_else(|| ReadError::Internal("NULL time".into()))?;
        let timestamp = times
            .parse(t)
            .ok_or_else(|| ReadError::Internal(format!("unparsable time {t:?}")))?;
        let value = match (
            self.value.and_then(|c| row[c]),
            self.special.and_then(|c| row[c]),
        ) {
            (Some(v), _) => parse_value(v)
                .ok_or_else(|| ReadError::Internal(format!("unparsable value {v:?}")))?,
            (None, Some(v)) => match special::decode(v) {
                Some(v) => v,
                // Native histograms share the special values' column (`crate::histogram`).
                None => {
                    return histogram::decode(v, timestamp)
                        .map(|h| Point::Histogram(Box::new(h)))
                        .ok_or_else(|| {
                            let shown: String = v.chars().take(40).collect();
                            ReadError::Internal(format!("unknown VARCHAR value {shown:?}"))
                        })
                }
            },
            (None, None) => return Err(ReadError::Internal("NULL measure value".into())),
        };
        Ok(Point::Sample(Sample { timestamp, value }))
    }
}

/// One row's value: a sample, or a native histogram.
enum Point {
    Sample(Sample),
    /// Boxed: rows are mostly samples.
    Histogram(Box<Histogram>),
}

impl Layout {}

/// [`parse_time_ms`] with the start of the last minute seen remembered: rows of a
/// page mostly share `YYYY-MM-DD HH:MM`, so only seconds and fraction are parsed.
/// Same results as [`parse_time_ms`] (the prefix was validated when it was cached).
#[derive(Debug, Default, Clone)]
pub struct TimeCache {
    prefix: [u8; 16],
    minute_ms: i64,
    set: bool,
}

impl TimeCache {
    #[inline]
    pub fn parse(&mut self, s: &str) -> Option<i64> {
        let b = s.as_bytes();
        if self.set && b.len() >= 19 && b[..16] == self.prefix {
            return seconds_ms(b).map(|r| self.minute_ms + r);
        }
        let t = parse_time_ms(s)?;
        self.prefix.copy_from_slice(&b[..16]);
        self.minute_ms = t - seconds_ms(b)?;
        self.set = true;
        Some(t)
    }
}

/// `:SS[.fffffffff]` from byte 16 of a time string → milliseconds into the minute.
#[inline]
fn seconds_ms(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[16] != b':' {
        return None;
    }
    let (s1, s2) = (b[17].wrapping_sub(b'0'), b[18].wrapping_sub(b'0'));
    if s1 > 9 || s2 > 9 {
        return None;
    }
    let sec = i64::from(s1 * 10 + s2);
    if sec > 60 {
        return None;
    }
    let mut ms = 0i64;
    if b.len() > 19 {
        if b[19] != b'.' || b.len() == 20 {
            return None;
        }
        let frac = &b[20..];
        if !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for k in 0..3 {
            ms = ms * 10 + frac.get(k).map_or(0, |c| i64::from(c - b'0'));
        }
    }
    Some(sec * 1000 + ms)
}

/// Timestream's `YYYY-MM-DD HH:MM:SS[.fffffffff]` (UTC) → Unix milliseconds
/// (sub-millisecond digits are truncated toward the past).
pub fn parse_time_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi) = (num(11..13)?, num(14..16)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    let rest = seconds_ms(b)?;
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + rest)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A `measure_value::double` string (Java rendering, e.g. `35.0`, `1.0E300`,
/// `-Infinity`) → the exact f64. Rust's parser is correctly rounded, so the
/// shortest round-trip strings written by the connector come back bit-exact.
pub fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Prometheus `labels.Compare`: pairwise by name then value, then by length.
pub fn compare_labels(a: &[Label], b: &[Label]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.name.cmp(&y.name).then_with(|| x.value.cmp(&y.value)) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// The map is keyed by an already-computed hash.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const NONE: u32 = u32::MAX;

/// A series' label values, one per layout slot (None = absent).
type LabelValues = Box<[Option<Box<str>>]>;

struct Buf {
    /// Values of the layout's key columns (None = absent).
    values: LabelValues,
    samples: Vec<Sample>,
    /// Native histograms (`crate::histogram`), in row order.
    histograms: Vec<Histogram>,
    sorted: bool,
    /// Holds a special value (then equal timestamps are resolved in `finish`).
    special: bool,
    /// Next series with the same hash (collision chain).
    next: u32,
}

/// Groups rows in any order into series by a hash of their label set.
pub struct Grouper {
    layout: Layout,
    state: foldhash::fast::RandomState,
    index: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    series: Vec<Buf>,
    times: TimeCache,
    /// Series of the previous row: rows of one series often come together.
    last: u32,
}

impl Grouper {
    pub fn new(layout: Layout) -> Grouper {
        Grouper {
            layout,
            state: foldhash::fast::RandomState::default(),
            index: HashMap::default(),
            series: Vec::new(),
            times: TimeCache::default(),
            last: NONE,
        }
    }

    /// Number of series seen so far.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no row has been pushed.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn hash(&self, row: &[Option<&str>]) -> u64 {
        let mut h = self.state.build_hasher();
        for &c in &self.layout.keys {
            match Layout::key(row, c) {
                Some(v) => {
                    h.write_u8(1);
                    h.write(v.as_bytes());
                    h.write_u8(0xff);
                }
                None => h.write_u8(0),
            }
        }
        h.finish()
    }

    #[inline]
    fn same(keys: &[usize], buf: &Buf, row: &[Option<&str>]) -> bool {
        keys.iter()
            .zip(buf.values.iter())
            .all(|(&c, v)| v.as_deref() == Layout::key(row, c))
    }

    /// Add one row.
    pub fn push(&mut self, row: &[Option<&str>]) -> Result<(), ReadError> {
        let point = self.layout.point(row, &mut self.times)?;
        let keys = &self.layout.keys;
        let id = match self.series.get(self.last as usize) {
            Some(b) if Grouper::same(keys, b, row) => self.last,
            _ => self.find_or_insert(row)?,
        };
        self.last = id;
        let buf = &mut self.series[id as usize];
        let sample = match point {
            Point::Sample(s) => s,
            Point::Histogram(h) => {
                buf.histograms.push(*h);
                return Ok(());
            }
        };
        if let Some(last) = buf.samples.last() {
            buf.sorted &= last.timestamp <= sample.timestamp;
        }
        buf.special |= !sample.value.is_finite();
        buf.samples.push(sample);
        Ok(())
    }

    fn find_or_insert(&mut self, row: &[Option<&str>]) -> Result<u32, ReadError> {
        let h = self.hash(row);
        let keys = &self.layout.keys;
        let head = self.index.get(&h).copied().unwrap_or(NONE);
        let mut id = head;
        while id != NONE {
            let b = &self.series[id as usize];
            if Grouper::same(keys, b, row) {
                return Ok(id);
            }
            id = b.next;
        }
        let id = u32::try_from(self.series.len())
            .ok()
            .filter(|&i| i != NONE)
            .ok_or_else(|| ReadError::Internal("too many series".into()))?;
        let values = keys
            .iter()
            .map(|&c| Layout::key(row, c).map(Box::from))
            .collect();
        self.series.push(Buf {
            values,
            samples: Vec::new(),
            histograms: Vec::new(),
            sorted: true,
            special: false,
            next: head,
        });
        self.index.insert(h, id);
        Ok(id)
    }

    /// All series: labels sorted by name, samples by time, series by label set.
    pub fn finish(self) -> Vec<TimeSeries> {
        let layout = self.layout;
        let mut out: Vec<TimeSeries> = self
            .series
            .into_iter()
            .map(|mut b| {
                if !b.sorted {
                    b.samples.sort_by_key(|s| s.timestamp);
                }
                if b.special {
                    b.samples.dedup_by(|later, kept| keep_number(kept, later));
                }
                // Stable: of two histograms at one timestamp (a re-sent sample that
                // Timestream kept under another series' record), the first row wins.
                b.histograms.sort_by_key(|h| h.timestamp);
                b.histograms.dedup_by_key(|h| h.timestamp);
                TimeSeries {
                    labels: layout.labels_from_keys(&b.values),
                    samples: b.samples,
                    histograms: b.histograms,
                    ..Default::default()
                }
            })
            .collect();
        out.sort_by(|a, b| compare_labels(&a.labels, &b.labels));
        out
    }
}

/// Whether `later` (same series, not earlier than `kept`) is dropped as a duplicate: at one
/// timestamp a number wins over a special value, which can only be a re-sent sample.
/// Two numbers are left alone (the caller's duplicate check explains those).
fn keep_number(kept: &mut Sample, later: &Sample) -> bool {
    if kept.timestamp != later.timestamp || (kept.value.is_finite() && later.value.is_finite()) {
        return false;
    }
    if !kept.value.is_finite() && later.value.is_finite() {
        *kept = *later;
    }
    true
}

/// A piece of a series from [`OrderedGrouper`]: consecutive segments with the
/// same labels belong to the same series and are in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub labels: Vec<Label>,
    pub samples: Vec<Sample>,
}

/// Groups rows that arrive ordered by series (Prometheus order) then time.
pub struct OrderedGrouper {
    layout: Layout,
    /// Emit a segment once the current series holds this many samples.
    max_samples: usize,
    current: Option<(LabelValues, Vec<Label>, Vec<Sample>)>,
    /// Timestamp of the current series' last sample (also once its segment was sent).
    last_time: Option<i64>,
    times: TimeCache,
}

impl OrderedGrouper {
    pub fn new(layout: Layout, max_samples: usize) -> OrderedGrouper {
        OrderedGrouper {
            layout,
            max_samples: max_samples.max(1),
            current: None,
            last_time: None,
            times: TimeCache::default(),
        }
    }

    /// Add one row; returns a segment when the previous series is complete or
    /// the current one reached `max_samples`.
    pub fn push(&mut self, row: &[Option<&str>]) -> Result<Option<Segment>, ReadError> {
        let sample = match self.layout.point(row, &mut self.times)? {
            Point::Sample(s) => s,
            // XOR chunks hold floats only. Clients that also accept SAMPLES get SAMPLES for
            // tables that can hold histograms (`http::read`); a client that accepts only
            // streamed chunks gets the series' floats (documentation/native-histograms.md).
            Point::Histogram(_) => return Ok(None),
        };
        let n = self.layout.slots.len();
        if let Some((values, labels, samples)) = &mut self.current {
            if (0..n).all(|j| values[j].as_deref() == self.layout.cell(row, j)) {
                if self.last_time == Some(sample.timestamp)
                    && !(sample.value.is_finite()
                        && samples.last().is_none_or(|l| l.value.is_finite()))
                {
                    // A number and a special value at one timestamp: keep the number (a
                    // special value already sent in a segment stays).
                    if let Some(l) = samples.last_mut() {
                        keep_number(l, &sample);
                    }
                    return Ok(None);
                }
                if self.last_time.is_some_and(|l| l >= sample.timestamp) {
                    return Err(ReadError::SeriesCollision(format!(
                        "two rows of one series at or out of time order ({} ms)",
                        sample.timestamp
                    )));
                }
                self.last_time = Some(sample.timestamp);
                samples.push(sample);
                if samples.len() >= self.max_samples {
                    return Ok(Some(Segment {
                        labels: labels.clone(),
                        samples: std::mem::take(samples),
                    }));
                }
                return Ok(None);
            }
        }
        let values: LabelValues = (0..n)
            .map(|j| self.layout.cell(row, j).map(Box::from))
            .collect();
        let labels = self.layout.labels(&values);
        self.last_time = Some(sample.timestamp);
        let done = self.current.replace((values, labels, vec![sample]));
        match done {
            Some((_, prev, samples)) => {
                // Streamed series must come in Prometheus order; anything else
                // would make the client's merge silently wrong.
                let new = &self.current.as_ref().map(|c| &c.1);
                if new.is_some_and(|l| compare_labels(&prev, l) != Ordering::Less) {
                    return Err(ReadError::Internal(
                        "Timestream returned series out of label order".into(),
                    ));
                }
                Ok((!samples.is_empty()).then_some(Segment {
                    labels: prev,
                    samples,
                }))
            }
            None => Ok(None),
        }
    }

    /// The last segment, if any samples are pending.
    pub fn finish(self) -> Option<Segment> {
        self.current
            .filter(|c| !c.2.is_empty())
            .map(|(_, labels, samples)| Segment { labels, samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parsing() {
        assert_eq!(parse_time_ms("1970-01-01 00:00:00.001000000"), Some(1));
        assert_eq!(parse_time_ms("1970-01-01 00:00:00.000000000"), Some(0));
        assert_eq!(
            parse_time_ms("2022-07-07 17:42:32.939000000"),
            Some(1_657_215_752_939)
        );
        assert_eq!(
            parse_time_ms("2022-07-07 17:42:32"),
            Some(1_657_215_752_000)
        );
        assert_eq!(
            parse_time_ms("2000-02-29 23:59:59.999999999"),
            Some(951_868_799_999)
        );
        assert_eq!(
            parse_time_ms("2262-04-11 23:47:16.854775807"),
            Some(9_223_372_036_854)
        );
        for bad in [
            "",
            "2022-07-07",
            "2022-07-07T17:42:32",
            "2022-13-07 17:42:32",
            "2022-07-07 17:42:32.",
            "2022-07-07 17:42:32.9x",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_cache_agrees_with_parse_time_ms() {
        // Valid and invalid strings that share (or nearly share) a cached minute.
        let inputs = [
            "2022-07-07 17:42:32.939000000",
            "2022-07-07 17:42:59.999999999",
            "2022-07-07 17:42:60",
            "2022-07-07 17:42:61.000000000",
            "2022-07-07 17:42:3x.000000000",
            "2022-07-07 17:42:33.",
            "2022-07-07 17:42:33.12a",
            "2022-07-07 17:42:33.1",
            "2022-07-07 17:42:33",
            "2022-07-07 17:42-33.000000000",
            "2022-07-07 17:43:00.000000000",
            "2022-07-07 17:42:32.939000000",
            "2022-07-07 17:42",
            "2022-02-30 23:59:01.5",
            "2022-13-07 17:42:32.000000000",
            "2022-13-07 17:42:33.000000000",
            "1969-12-31 23:59:59.999",
            "0000-03-01 00:00:00",
            "9999-12-31 23:59:59.999999999",
        ];
        let mut cache = TimeCache::default();
        for round in 0..2 {
            for s in inputs {
                assert_eq!(cache.parse(s), parse_time_ms(s), "{s} (round {round})");
            }
        }
        // Every second and millisecond of one minute, through the cache.
        let mut cache = TimeCache::default();
        for ms in 0..60_000 {
            let s = format!("2023-11-14 22:13:{:02}.{:03}456789", ms / 1000, ms % 1000);
            assert_eq!(cache.parse(&s), Some(1_699_999_980_000 + ms), "{s}");
        }
    }

    #[test]
    fn values_are_bit_exact() {
        for v in [
            35.0,
            1e300,
            -1.5e-7,
            0.1,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
            1.6554878837710001e9,
        ] {
            let java_like = format!("{v:E}").replace('e', "E");
            assert_eq!(
                parse_value(&java_like).unwrap().to_bits(),
                v.to_bits(),
                "{java_like}"
            );
            assert_eq!(parse_value(&v.to_string()).unwrap().to_bits(), v.to_bits());
        }
        assert_eq!(parse_value("1.0E300"), Some(1e300));
        assert_eq!(parse_value("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("abc"), None);
    }

    fn ts(ms: i64) -> String {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        // Inverse of days_from_civil, only for tests near the epoch.
        assert!(days < 28, "test helper handles January 1970 only");
        format!(
            "1970-01-{:02} {:02}:{:02}:{:02}.{:03}000000",
            days + 1,
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000
        )
    }

    fn rows() -> (Layout, Vec<Vec<Option<String>>>) {
        let layout = Layout::new(&[
            "job",
            "Zone",
            "measure_name",
            "time",
            "measure_value::double",
        ])
        .unwrap();
        let r = |job: Option<&str>, zone: Option<&str>, name: &str, t: i64, v: &str| {
            vec![
                job.map(String::from),
                zone.map(String::from),
                Some(name.to_string()),
                Some(ts(t)),
                Some(v.to_string()),
            ]
        };
        let rows = vec![
            r(Some("a"), None, "up", 3, "1.0"),
            r(Some("b"), Some("z"), "up", 1, "2.0"),
            r(Some("a"), None, "up", 1, "3.0"),
            r(Some(""), None, "up", 5, "4.0"),
            r(None, None, "up", 2, "5.0E-7"),
            r(Some("a"), Some(""), "up", 2, "6.0"),
        ];
        (layout, rows)
    }

    fn cells(r: &[Option<String>]) -> Vec<Option<&str>> {
        r.iter().map(|c| c.as_deref()).collect()
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    #[test]
    fn grouper_groups_sorts_and_drops_empty_labels() {
        let (layout, rows) = rows();
        let mut g = Grouper::new(layout);
        for r in &rows {
            g.push(&cells(r)).unwrap();
        }
        let out = g.finish();
        type Summary = Vec<(Vec<Label>, Vec<(i64, f64)>)>;
        let summary: Summary = out
            .iter()
            .map(|s| {
                (
                    s.labels.clone(),
                    s.samples.iter().map(|x| (x.timestamp, x.value)).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    l(&[("Zone", "z"), ("__name__", "up"), ("job", "b")]),
                    vec![(1, 2.0)]
                ),
                (l(&[("__name__", "up")]), vec![(2, 5.0e-7), (5, 4.0)]),
                (
                    l(&[("__name__", "up"), ("job", "a")]),
                    vec![(1, 3.0), (2, 6.0), (3, 1.0)]
                ),
            ]
        );
    }

    #[test]
    fn grouper_adds_constant_labels_in_name_order() {
        let layout = Layout::with_constants(
            &["job", "measure_name", "time", "measure_value::double"],
            &[
                ("db".to_string(), "prod".to_string()),
                ("zz".to_string(), "last".to_string()),
                (
                    "job".to_string(),
                    "ignored: a column has this name".to_string(),
                ),
            ],
        )
        .unwrap();
        let mut g = Grouper::new(layout);
        for (job, t) in [(Some("a"), 2), (None, 1), (Some("a"), 1), (Some(""), 3)] {
            g.push(&[job, Some("up"), Some(&ts(t)), Some("1.5")])
                .unwrap();
        }
        let out = g.finish();
        let labels: Vec<Vec<Label>> = out.iter().map(|s| s.labels.clone()).collect();
        assert_eq!(
            labels,
            vec![
                l(&[
                    ("__name__", "up"),
                    ("db", "prod"),
                    ("job", "a"),
                    ("zz", "last")
                ]),
                l(&[("__name__", "up"), ("db", "prod"), ("zz", "last")]),
            ]
        );
        let times: Vec<Vec<i64>> = out
            .iter()
            .map(|s| s.samples.iter().map(|x| x.timestamp).collect())
            .collect();
        assert_eq!(times, vec![vec![1, 2], vec![1, 3]]);
    }

    #[test]
    fn ordered_grouper_matches_grouper_on_sorted_rows() {
        let (layout, rows) = rows();
        let mut g = Grouper::new(layout.clone());
        for r in &rows {
            g.push(&cells(r)).unwrap();
        }
        let expected = g.finish();
        // Feed the rows in the expected order, as the ORDER BY would.
        let mut sorted: Vec<&Vec<Option<String>>> = Vec::new();
        for s in &expected {
            for sample in &s.samples {
                sorted.push(
                    rows.iter()
                        .find(|r| {
                            r[3].as_deref() == Some(ts(sample.timestamp).as_str()) && {
                                let mut g1 = Grouper::new(layout.clone());
                                g1.push(&cells(r)).unwrap();
                                g1.finish()[0].labels == s.labels
                            }
                        })
                        .unwrap(),
                );
            }
        }
        for max in [1, 2, 100] {
            let mut og = OrderedGrouper::new(layout.clone(), max);
            let mut segs = Vec::new();
            for r in &sorted {
                segs.extend(og.push(&cells(r)).unwrap());
            }
            segs.extend(og.finish());
            let mut merged: Vec<TimeSeries> = Vec::new();
            for s in segs {
                match merged.last_mut() {
                    Some(last) if last.labels == s.labels => last.samples.extend(s.samples),
                    _ => merged.push(TimeSeries {
                        labels: s.labels,
                        samples: s.samples,
                        ..Default::default()
                    }),
                }
            }
            assert_eq!(merged, expected, "max_samples {max}");
        }
    }

    #[test]
    fn ordered_grouper_rejects_out_of_order_series() {
        let (layout, rows) = rows();
        let mut og = OrderedGrouper::new(layout, 100);
        assert_eq!(og.push(&cells(&rows[0])).unwrap(), None); // {__name__=up, job=a}
                                                              // {Zone=z, __name__=up, job=b} sorts before it ("Zone" < "__name__").
        assert!(og.push(&cells(&rows[1])).is_err());
        let mut og = OrderedGrouper::new(super::tests::rows().0, 100);
        og.push(&cells(&rows[2])).unwrap(); // job=a at t=1
        assert!(og.push(&cells(&rows[4])).is_err()); // {__name__=up} < {__name__=up, job=a}
    }

    #[test]
    fn special_rows_merge_into_their_series_and_a_number_wins_a_shared_timestamp() {
        let layout = Layout::new(&[
            "measure_name",
            "time",
            "measure_value::double",
            "measure_value::varchar",
        ])
        .unwrap();
        let rows = [
            (3, None, Some("StaleNaN")),
            (1, Some("1.0"), None),
            (2, None, Some("+Inf")),
            (2, Some("2.0"), None),
            (4, None, Some("NaN:0x7ff8000000000000")),
        ];
        let mut g = Grouper::new(layout.clone());
        for (t, d, v) in rows {
            g.push(&[Some("x"), Some(&ts(t)), d, v]).unwrap();
        }
        let got: Vec<(i64, u64)> = g.finish()[0]
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        let want = vec![
            (1, 1f64.to_bits()),
            (2, 2f64.to_bits()),
            (3, special::STALE_NAN_BITS),
            (4, f64::NAN.to_bits()),
        ];
        assert_eq!(got, want);
        // In time order (as the streamed query sorts), with the tie either way round.
        for tie in [
            [(2, None, Some("+Inf")), (2, Some("2.0"), None)],
            [(2, Some("2.0"), None), (2, None, Some("+Inf"))],
        ] {
            let mut og = OrderedGrouper::new(layout.clone(), 100);
            let ordered = [(1, Some("1.0"), None)].into_iter().chain(tie).chain([
                (3, None, Some("StaleNaN")),
                (4, None, Some("NaN:0x7ff8000000000000")),
            ]);
            for (t, d, v) in ordered {
                assert_eq!(og.push(&[Some("x"), Some(&ts(t)), d, v]).unwrap(), None);
            }
            let seg = og.finish().unwrap();
            let got: Vec<(i64, u64)> = seg
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            assert_eq!(got, want);
        }
        // Text that no version of the connector writes is an error, not a guess.
        let mut g = Grouper::new(layout);
        assert!(g
            .push(&[Some("x"), Some(&ts(1)), None, Some("nan")])
            .is_err());
        assert!(g.push(&[Some("x"), Some(&ts(1)), None, None]).is_err());
    }

    #[test]
    fn layout_requires_core_columns() {
        assert!(Layout::new(&["job", "time", "measure_value::double"]).is_err());
        // A table without doubles is read without that column, never without both.
        assert!(Layout::new(&["measure_name", "time", "measure_value::varchar"]).is_ok());
        assert!(Layout::new(&["measure_name", "time", "measure_value::bigint"]).is_err());
        assert!(Layout::new(&[
            "measure_name",
            "time",
            "measure_value::double",
            "measure_value::bigint"
        ])
        .is_ok());
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        let (layout, _) = rows();
        let mut g = Grouper::new(layout);
        assert!(g.push(&[Some("a")]).is_err());
        assert!(g
            .push(&[None, None, Some("up"), Some("garbage"), Some("1")])
            .is_err());
        assert!(g
            .push(&[None, None, Some("up"), Some(&ts(1)), Some("x")])
            .is_err());
        assert!(g.push(&[None, None, Some("up"), None, Some("1")]).is_err());
    }
}
