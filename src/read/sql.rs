//! Prometheus matchers → a typed Timestream query, rendered to SQL text by
//! [`render`], the only function that writes identifiers and literals into SQL
//! (identifiers double-quoted with `"` doubled, literals single-quoted with `'`
//! doubled; backslashes are not escapes in Timestream SQL).

use std::collections::BTreeSet;

use regex_syntax::hir::{Class, HirKind};

use super::error::ReadError;
use super::regex::{self, RegexOptions};
use crate::histogram;
use crate::remote::pb::{label_matcher::Type as MatcherType, LabelMatcher, Query};
use crate::special;

/// Timestream's QueryString limit (256 KiB).
pub const MAX_QUERY_BYTES: usize = 256 * 1024;

/// The Prometheus label that maps to Timestream's `measure_name`.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// A column of a single-measure Timestream table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    MeasureName,
    Time,
    MeasureValueDouble,
    Dimension(String),
    /// The metric name of a special-value row (the `__name__` dimension, `crate::special`).
    SpecialName,
    /// The metric name of any row: `coalesce("__name__", measure_name)`.
    MetricName,
}

impl Column {
    /// The Prometheus label name this column carries (None for time/value).
    pub fn label_name(&self) -> Option<&str> {
        match self {
            Column::MeasureName | Column::SpecialName | Column::MetricName => {
                Some(METRIC_NAME_LABEL)
            }
            Column::Dimension(d) => Some(d),
            _ => None,
        }
    }
}

/// A boolean condition over columns. Values are unescaped here; [`render`] escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    Eq(Column, String),
    Ne(Column, String),
    IsNull(Column),
    IsNotNull(Column),
    /// `regexp_like(col, java_pattern)`; the pattern is already anchored.
    RegexpLike(Column, String),
    Not(Box<Predicate>),
    Or(Vec<Predicate>),
    And(Vec<Predicate>),
    /// `time >= from_milliseconds(start) AND time <= from_milliseconds(end)`.
    TimeRange {
        start_ms: i64,
        end_ms: i64,
    },
}

/// How rows must be ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// No ORDER BY: the caller groups by hash and sorts client-side.
    None,
    /// Series in Prometheus label-set order, then time: lets the caller emit a
    /// series as soon as the next one starts.
    SeriesThenTime,
}

/// One Timestream query answering one Prometheus query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    pub database: String,
    pub table: String,
    /// Dimension columns to return (all the table's known dimensions).
    pub dimensions: Vec<String>,
    /// ANDed conditions.
    pub predicates: Vec<Predicate>,
    pub order: Order,
    /// Labels the caller adds to every series (not columns): they take part in
    /// the series order.
    pub constant_labels: Vec<String>,
    /// The table holds special-value rows (it has the `__name__` dimension): select them
    /// too and merge them into their series.
    pub specials: bool,
    /// The table has no `measure_value::double` column (no number was ever written to
    /// it): the SQL must not name it, and only special-value rows can match.
    pub no_double: bool,
}

/// What a Prometheus query needs from Timestream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The matchers or time range exclude every series: no call needed.
    Empty,
    Select(Select),
}

/// Options of the matcher translation.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    pub regex: RegexOptions,
    pub order: Option<Order>,
    /// The table has the special-value name dimension (see [`Select::specials`]).
    pub specials: bool,
    /// The table lacks `measure_value::double` (see [`Select::no_double`]).
    pub no_double: bool,
}

fn ident(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(&name.replace('"', "\"\""));
    out.push('"');
}

fn literal(out: &mut String, value: &str) {
    out.push('\'');
    out.push_str(&value.replace('\'', "''"));
    out.push('\'');
}

fn column(out: &mut String, c: &Column) {
    match c {
        Column::MeasureName => out.push_str("measure_name"),
        Column::Time => out.push_str("time"),
        Column::MeasureValueDouble => out.push_str("\"measure_value::double\""),
        Column::Dimension(d) => ident(out, d),
        Column::SpecialName => ident(out, special::NAME_DIMENSION),
        Column::MetricName => {
            out.push_str("coalesce(");
            ident(out, special::NAME_DIMENSION);
            out.push_str(", measure_name)");
        }
    }
}

fn predicate(out: &mut String, p: &Predicate) {
    match p {
        Predicate::Eq(c, v) | Predicate::Ne(c, v) => {
            column(out, c);
            out.push_str(if matches!(p, Predicate::Eq(..)) {
                " = "
            } else {
                " <> "
            });
            literal(out, v);
        }
        Predicate::IsNull(c) => {
            column(out, c);
            out.push_str(" IS NULL");
        }
        Predicate::IsNotNull(c) => {
            column(out, c);
            out.push_str(" IS NOT NULL");
        }
        Predicate::RegexpLike(c, re) => {
            out.push_str("regexp_like(");
            column(out, c);
            out.push_str(", ");
            literal(out, re);
            out.push(')');
        }
        Predicate::Not(inner) => {
            out.push_str("NOT (");
            predicate(out, inner);
            out.push(')');
        }
        Predicate::Or(items) | Predicate::And(items) => {
            let op = if matches!(p, Predicate::Or(_)) {
                " OR "
            } else {
                " AND "
            };
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(op);
                }
                predicate(out, item);
            }
            out.push(')');
        }
        Predicate::TimeRange { start_ms, end_ms } => {
            out.push_str(&format!(
                "time >= from_milliseconds({start_ms}) AND time <= from_milliseconds({end_ms})"
            ));
        }
    }
}

/// ORDER BY that sorts rows like Prometheus sorts label sets (`labels.Compare`)
/// and then by time. Labels are compared pairwise in name order; an absent label
/// sorts after a present one unless no later label is present (then the set is
/// a prefix and sorts first), hence a rank 1 (present) / 2 (absent, more labels
/// follow) / 0 (absent, nothing follows) before each value. `measure_name` and
/// constant labels (added to every series, not columns) are always present.
fn order_by_series(out: &mut String, dimensions: &[String], constants: &[String], name: Column) {
    // (label name, column; None = constant label)
    let mut labels: Vec<(&str, Option<Column>)> = dimensions
        .iter()
        .map(|d| (d.as_str(), Some(Column::Dimension(d.clone()))))
        .chain([(METRIC_NAME_LABEL, Some(name.clone()))])
        .chain(constants.iter().map(|c| (c.as_str(), None)))
        .collect();
    labels.sort_by(|a, b| a.0.cmp(b.0));
    out.push_str(" ORDER BY ");
    for (i, (_, col)) in labels.iter().enumerate() {
        let Some(c) = col else { continue };
        if *c != name {
            let later = &labels[i + 1..];
            out.push_str("CASE WHEN ");
            column(out, c);
            out.push_str(" IS NOT NULL THEN 1");
            if later
                .iter()
                .any(|(_, l)| l.is_none() || l.as_ref() == Some(&name))
            {
                out.push_str(" ELSE 2 END, ");
            } else if later.is_empty() {
                out.push_str(" ELSE 0 END, ");
            } else {
                out.push_str(" WHEN ");
                for (k, (_, l)) in later.iter().enumerate() {
                    if k > 0 {
                        out.push_str(" OR ");
                    }
                    if let Some(l) = l {
                        column(out, l);
                    }
                    out.push_str(" IS NOT NULL");
                }
                out.push_str(" THEN 2 ELSE 0 END, ");
            }
        }
        column(out, c);
        out.push_str(", ");
    }
    out.push_str("time");
}

/// The one place SQL text is produced.
pub fn render(s: &Select) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("SELECT ");
    for d in &s.dimensions {
        ident(&mut out, d);
        out.push_str(", ");
    }
    if s.specials {
        // A special-value row's metric is its `__name__`; ordinary rows have none.
        column(&mut out, &Column::MetricName);
        if s.no_double {
            out.push_str(" AS measure_name, time, \"measure_value::varchar\" FROM ");
        } else {
            out.push_str(
                " AS measure_name, time, \"measure_value::double\", \"measure_value::varchar\" FROM ",
            );
        }
    } else {
        out.push_str("measure_name, time, \"measure_value::double\" FROM ");
    }
    ident(&mut out, &s.database);
    out.push('.');
    ident(&mut out, &s.table);
    out.push_str(" WHERE ");
    let mut first = true;
    if !s.specials {
        // With special values the planner puts this test into the ordinary-row branch.
        out.push_str("\"measure_value::double\" IS NOT NULL");
        first = false;
    }
    for p in &s.predicates {
        if !first {
            out.push_str(" AND ");
        }
        first = false;
        predicate(&mut out, p);
    }
    if s.order == Order::SeriesThenTime {
        let name = if s.specials {
            Column::MetricName
        } else {
            Column::MeasureName
        };
        order_by_series(&mut out, &s.dimensions, &s.constant_labels, name);
    }
    out
}

/// Render and enforce Timestream's QueryString limit.
pub fn render_checked(s: &Select) -> Result<String, ReadError> {
    let sql = render(s);
    if sql.len() > MAX_QUERY_BYTES {
        return Err(ReadError::QueryTooLarge {
            len: sql.len(),
            limit: MAX_QUERY_BYTES,
        });
    }
    Ok(sql)
}

/// Labels named by matchers that are not known columns (candidates for a
/// column-cache refresh before planning).
pub fn unknown_labels<'a>(query: &'a Query, known: &BTreeSet<String>) -> Vec<&'a str> {
    query
        .matchers
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| *n != METRIC_NAME_LABEL && !known.contains(*n))
        .collect()
}

/// A matcher on an existing column: no constraint, excludes everything, or a predicate.
enum Outcome {
    Always,
    Never,
    Where(Predicate),
}

/// A regex whose HIR is `(?s:.)*` / `(?s:.)+`: no regex call needed.
fn any_repetition(hir: &regex_syntax::hir::Hir) -> Option<u32> {
    let HirKind::Repetition(rep) = hir.kind() else {
        return None;
    };
    let HirKind::Class(Class::Unicode(cls)) = rep.sub.kind() else {
        return None;
    };
    let mut c = cls.clone();
    c.negate();
    (rep.max.is_none() && c.iter().next().is_none()).then_some(rep.min)
}

/// `budget`: bytes of SQL still available; a regex's translation stops past it.
fn matcher_predicate(
    m: &LabelMatcher,
    col: Column,
    nullable: bool,
    opts: &PlanOptions,
    budget: usize,
) -> Result<Outcome, ReadError> {
    let ty = MatcherType::try_from(m.r#type)
        .map_err(|_| ReadError::InvalidMatcher(format!("unknown matcher type {}", m.r#type)))?;
    // `l=""`-style matchers also select series without the label (NULL column).
    let or_null = |p: Predicate| {
        if nullable {
            Predicate::Or(vec![Predicate::IsNull(col.clone()), p])
        } else {
            p
        }
    };
    Ok(match ty {
        MatcherType::Eq if m.value.is_empty() => {
            if nullable {
                Outcome::Where(Predicate::IsNull(col))
            } else {
                Outcome::Never
            }
        }
        MatcherType::Eq => Outcome::Where(Predicate::Eq(col, m.value.clone())),
        MatcherType::Neq if m.value.is_empty() => {
            if nullable {
                Outcome::Where(Predicate::IsNotNull(col))
            } else {
                Outcome::Always
            }
        }
        MatcherType::Neq => Outcome::Where(or_null(Predicate::Ne(col.clone(), m.value.clone()))),
        MatcherType::Re | MatcherType::Nre => {
            let hir = regex::parse_within(&m.value, opts.regex, budget)?;
            let positive = ty == MatcherType::Re;
            match (any_repetition(&hir), positive) {
                (Some(0), true) => return Ok(Outcome::Always),
                (Some(0), false) => return Ok(Outcome::Never),
                (Some(1), true) if nullable => {
                    return Ok(Outcome::Where(Predicate::IsNotNull(col)))
                }
                (Some(1), true) => return Ok(Outcome::Always),
                (Some(1), false) if nullable => return Ok(Outcome::Where(Predicate::IsNull(col))),
                (Some(1), false) => return Ok(Outcome::Never),
                _ => {}
            }
            let t = regex::translate_hir(&hir, &m.value, budget)?;
            let like = Predicate::RegexpLike(col.clone(), t.java);
            // NULL stands for "": included exactly when the matcher matches "".
            match (positive, t.matches_empty) {
                (true, true) => Outcome::Where(or_null(like)),
                (true, false) => Outcome::Where(like),
                (false, true) => Outcome::Where(Predicate::Not(Box::new(like))),
                (false, false) => Outcome::Where(or_null(Predicate::Not(Box::new(like)))),
            }
        }
    })
}

/// Whether the matcher accepts the empty value (= a series without the label).
pub fn matches_empty(m: &LabelMatcher, opts: RegexOptions) -> Result<bool, ReadError> {
    let ty = MatcherType::try_from(m.r#type)
        .map_err(|_| ReadError::InvalidMatcher(format!("unknown matcher type {}", m.r#type)))?;
    Ok(match ty {
        MatcherType::Eq => m.value.is_empty(),
        MatcherType::Neq => !m.value.is_empty(),
        MatcherType::Re => regex::matches_empty(&regex::parse(&m.value, opts)?),
        MatcherType::Nre => !regex::matches_empty(&regex::parse(&m.value, opts)?),
    })
}

/// The effective time range: start/end of the query, narrowed (never widened)
/// by hints, start clamped to 0 (Timestream has no negative times).
pub fn time_range(q: &Query) -> Option<(i64, i64)> {
    let mut start = q.start_timestamp_ms;
    let mut end = q.end_timestamp_ms;
    if let Some(h) = &q.hints {
        if h.start_ms > start {
            start = h.start_ms;
        }
        if h.end_ms != 0 && h.end_ms < end {
            end = h.end_ms;
        }
    }
    let start = start.max(0);
    (start <= end).then_some((start, end))
}

/// Upper bound of the rendered time range predicate and its " AND ".
const TIME_RANGE_BYTES: usize = 100;

/// Refuses (400) a matcher whose name or value is longer than
/// [`MAX_MATCHER_VALUE_BYTES`](regex::MAX_MATCHER_VALUE_BYTES), before anything is
/// planned from it.
pub fn check_matcher_sizes(query: &Query) -> Result<(), ReadError> {
    const MAX: usize = regex::MAX_MATCHER_VALUE_BYTES;
    for m in &query.matchers {
        if m.name.len() > MAX || m.value.len() > MAX {
            return Err(ReadError::InvalidMatcher(format!(
                "a label matcher of {} bytes (name {} bytes, value {} bytes); names and values \
                 of at most {MAX} bytes are accepted",
                m.name.len() + m.value.len(),
                m.name.len(),
                m.value.len(),
            )));
        }
    }
    Ok(())
}

/// Adds the rendered size of one more ANDed predicate to `used`; past Timestream's
/// query limit the plan stops here.
fn charge(used: &mut usize, scratch: &mut String, p: &Predicate) -> Result<(), ReadError> {
    scratch.clear();
    predicate(scratch, p);
    *used += " AND ".len() + scratch.len();
    if *used > MAX_QUERY_BYTES {
        return Err(ReadError::QueryTooLarge {
            len: *used,
            limit: MAX_QUERY_BYTES,
        });
    }
    Ok(())
}

/// Plan one Prometheus query against a table whose dimension columns are `known`.
pub fn plan(
    query: &Query,
    database: &str,
    table: &str,
    known: &BTreeSet<String>,
    opts: &PlanOptions,
) -> Result<Plan, ReadError> {
    check_matcher_sizes(query)?;
    let mut predicates = Vec::new();
    // With special values: the `__name__` matchers, once on measure_name (ordinary rows)
    // and once on the `__name__` dimension (special rows).
    let (mut ordinary, mut specials) = (
        vec![Predicate::IsNotNull(Column::MeasureValueDouble)],
        // Native histograms (`crate::histogram`) are named like special values.
        vec![Predicate::Or(vec![
            Predicate::Eq(Column::MeasureName, special::MEASURE_NAME.to_string()),
            Predicate::Eq(Column::MeasureName, histogram::MEASURE_NAME.to_string()),
        ])],
    );
    let mut never = false;
    // The SQL is bounded by Timestream's limit as it is planned: the SELECT, FROM and
    // ORDER BY first, then each predicate as it is made; a regex gets only the room left
    // (issue 13: 20,000 × `\pL` once built 200 MB of SQL before the final check).
    let mut used = render(&Select {
        database: database.to_string(),
        table: table.to_string(),
        dimensions: known.iter().cloned().collect(),
        predicates: vec![],
        order: opts.order.unwrap_or(Order::None),
        constant_labels: Vec::new(),
        specials: opts.specials,
        no_double: opts.no_double,
    })
    .len()
        + TIME_RANGE_BYTES;
    let mut scratch = String::new();
    for m in &query.matchers {
        if m.name.is_empty() {
            return Err(ReadError::InvalidMatcher("empty label name".into()));
        }
        let budget = MAX_QUERY_BYTES.saturating_sub(used);
        let outcome = if m.name == METRIC_NAME_LABEL {
            let o = matcher_predicate(m, Column::MeasureName, false, opts, budget)?;
            if let (true, Outcome::Where(p)) = (opts.specials, &o) {
                charge(&mut used, &mut scratch, p)?;
                ordinary.push(p.clone());
                // The same matcher on a non-nullable column: same outcome kind; both
                // copies count against the SQL budget.
                let budget = MAX_QUERY_BYTES.saturating_sub(used);
                if let Outcome::Where(q) =
                    matcher_predicate(m, Column::SpecialName, false, opts, budget)?
                {
                    charge(&mut used, &mut scratch, &q)?;
                    specials.push(q);
                }
                continue;
            }
            o
        } else if known.contains(&m.name) {
            matcher_predicate(m, Column::Dimension(m.name.clone()), true, opts, budget)?
        } else {
            // No series has this label: it behaves as "" everywhere.
            if matches_empty(m, opts.regex)? {
                Outcome::Always
            } else {
                Outcome::Never
            }
        };
        match outcome {
            Outcome::Always => {}
            Outcome::Never => never = true,
            Outcome::Where(p) => {
                charge(&mut used, &mut scratch, &p)?;
                predicates.push(p);
            }
        }
    }
    let Some((start_ms, end_ms)) = time_range(query) else {
        return Ok(Plan::Empty);
    };
    // Without `measure_value::double` only special-value rows exist (if any).
    if never || (opts.no_double && !opts.specials) {
        return Ok(Plan::Empty);
    }
    if opts.specials {
        let rows = if opts.no_double {
            Predicate::And(specials)
        } else {
            Predicate::Or(vec![Predicate::And(ordinary), Predicate::And(specials)])
        };
        predicates.insert(0, rows);
    }
    predicates.push(Predicate::TimeRange { start_ms, end_ms });
    Ok(Plan::Select(Select {
        database: database.to_string(),
        table: table.to_string(),
        dimensions: known.iter().cloned().collect(),
        predicates,
        order: opts.order.unwrap_or(Order::None),
        constant_labels: Vec::new(),
        specials: opts.specials,
        no_double: opts.no_double,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::pb::ReadHints;

    fn m(ty: MatcherType, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: ty as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    fn q(matchers: Vec<LabelMatcher>) -> Query {
        Query {
            start_timestamp_ms: 1_000,
            end_timestamp_ms: 2_500,
            matchers,
            hints: None,
        }
    }

    fn known(cols: &[&str]) -> BTreeSet<String> {
        cols.iter().map(|s| s.to_string()).collect()
    }

    fn sql(matchers: Vec<LabelMatcher>, cols: &[&str]) -> Option<String> {
        match plan(
            &q(matchers),
            "db",
            "t",
            &known(cols),
            &PlanOptions::default(),
        )
        .unwrap()
        {
            Plan::Empty => None,
            Plan::Select(s) => Some(render(&s)),
        }
    }

    const BASE: &str = "SELECT \"job\", measure_name, time, \"measure_value::double\" FROM \"db\".\"t\" WHERE \"measure_value::double\" IS NOT NULL";
    const TIME: &str = "time >= from_milliseconds(1000) AND time <= from_milliseconds(2500)";

    #[test]
    fn equality_and_escaping() {
        let s = sql(
            vec![
                m(MatcherType::Eq, "__name__", "up"),
                m(MatcherType::Eq, "job", "it's \"x\"\\"),
            ],
            &["job"],
        )
        .unwrap();
        assert_eq!(
            s,
            format!("{BASE} AND measure_name = 'up' AND \"job\" = 'it''s \"x\"\\' AND {TIME}")
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        let s = sql(vec![m(MatcherType::Eq, "we\"ird", "v")], &["we\"ird"]).unwrap();
        assert!(s.contains("\"we\"\"ird\" = 'v'"), "{s}");
    }

    #[test]
    fn empty_matching_matchers_include_null() {
        let s = sql(vec![m(MatcherType::Eq, "job", "")], &["job"]).unwrap();
        assert!(
            s.ends_with(&format!("AND \"job\" IS NULL AND {TIME}")),
            "{s}"
        );
        let s = sql(vec![m(MatcherType::Neq, "job", "x")], &["job"]).unwrap();
        assert!(s.contains("(\"job\" IS NULL OR \"job\" <> 'x')"), "{s}");
        let s = sql(vec![m(MatcherType::Neq, "job", "")], &["job"]).unwrap();
        assert!(s.contains("\"job\" IS NOT NULL"), "{s}");
        let s = sql(vec![m(MatcherType::Re, "job", "a|")], &["job"]).unwrap();
        assert!(
            s.contains("(\"job\" IS NULL OR regexp_like(\"job\", '\\A(?:"),
            "{s}"
        );
        let s = sql(vec![m(MatcherType::Nre, "job", "a")], &["job"]).unwrap();
        assert!(
            s.contains("(\"job\" IS NULL OR NOT (regexp_like(\"job\", '\\A(?:a)\\z')))"),
            "{s}"
        );
        let s = sql(vec![m(MatcherType::Nre, "job", "a?")], &["job"]).unwrap();
        assert!(s.contains("AND NOT (regexp_like(\"job\""), "{s}");
        assert!(!s.contains("IS NULL OR NOT"), "{s}");
    }

    #[test]
    fn trivial_regexes_need_no_regex_call() {
        assert_eq!(
            sql(vec![m(MatcherType::Re, "job", ".*")], &["job"]).unwrap(),
            format!("{BASE} AND {TIME}")
        );
        assert!(sql(vec![m(MatcherType::Re, "job", ".+")], &["job"])
            .unwrap()
            .contains("\"job\" IS NOT NULL"));
        assert_eq!(sql(vec![m(MatcherType::Nre, "job", ".*")], &["job"]), None);
        assert_eq!(
            sql(vec![m(MatcherType::Eq, "__name__", "")], &["job"]),
            None
        );
        assert!(sql(vec![m(MatcherType::Re, "__name__", ".+")], &["job"]).is_some());
    }

    #[test]
    fn unknown_labels_decided_locally() {
        // Matches "" → no-op; otherwise nothing can match.
        assert!(sql(vec![m(MatcherType::Eq, "nope", "")], &["job"]).is_some());
        assert!(sql(vec![m(MatcherType::Neq, "nope", "x")], &["job"]).is_some());
        assert!(sql(vec![m(MatcherType::Re, "nope", "x|")], &["job"]).is_some());
        assert!(sql(vec![m(MatcherType::Nre, "nope", "x")], &["job"]).is_some());
        assert_eq!(sql(vec![m(MatcherType::Eq, "nope", "x")], &["job"]), None);
        assert_eq!(sql(vec![m(MatcherType::Neq, "nope", "")], &["job"]), None);
        assert_eq!(sql(vec![m(MatcherType::Re, "nope", "x+")], &["job"]), None);
        assert_eq!(sql(vec![m(MatcherType::Nre, "nope", "x*")], &["job"]), None);
        assert!(!sql(vec![m(MatcherType::Neq, "nope", "x")], &["job"])
            .unwrap()
            .contains("nope"));
    }

    #[test]
    fn invalid_input_is_the_clients_fault() {
        let bad = LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        let e = plan(
            &q(vec![bad]),
            "db",
            "t",
            &known(&[]),
            &PlanOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ReadError::InvalidMatcher(_)), "{e:?}");
        let e = plan(
            &q(vec![m(MatcherType::Re, "job", "(")]),
            "db",
            "t",
            &known(&["job"]),
            &PlanOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ReadError::InvalidRegex { .. }), "{e:?}");
    }

    #[test]
    fn time_range_is_millisecond_exact_and_hints_only_narrow() {
        let mut query = q(vec![]);
        query.start_timestamp_ms = -5;
        query.end_timestamp_ms = 1_234_567;
        assert_eq!(time_range(&query), Some((0, 1_234_567)));
        query.hints = Some(ReadHints {
            start_ms: 10,
            end_ms: 2_000_000,
            ..Default::default()
        });
        assert_eq!(time_range(&query), Some((10, 1_234_567)));
        query.hints = Some(ReadHints {
            start_ms: -100,
            end_ms: 999,
            ..Default::default()
        });
        assert_eq!(time_range(&query), Some((0, 999)));
        query.start_timestamp_ms = 5_000;
        query.end_timestamp_ms = 4_000;
        assert_eq!(time_range(&query), None);
    }

    #[test]
    fn order_by_series_ranks_absent_labels() {
        let s = Select {
            database: "db".into(),
            table: "t".into(),
            dimensions: vec!["b".into(), "A".into(), "c".into()],
            predicates: vec![],
            order: Order::SeriesThenTime,
            constant_labels: vec![],
            specials: false,
            no_double: false,
        };
        let sql = render(&s);
        let order = sql.split(" ORDER BY ").nth(1).unwrap();
        assert_eq!(
            order,
            "CASE WHEN \"A\" IS NOT NULL THEN 1 ELSE 2 END, \"A\", measure_name, \
             CASE WHEN \"b\" IS NOT NULL THEN 1 WHEN \"c\" IS NOT NULL THEN 2 ELSE 0 END, \"b\", \
             CASE WHEN \"c\" IS NOT NULL THEN 1 ELSE 0 END, \"c\", time"
        );
    }

    #[test]
    fn special_values_add_one_branch_with_the_same_name_matchers() {
        let opts = PlanOptions {
            specials: true,
            order: Some(Order::SeriesThenTime),
            ..PlanOptions::default()
        };
        let query = q(vec![
            m(MatcherType::Nre, "__name__", "a.*"),
            m(MatcherType::Eq, "job", "x"),
        ]);
        let Plan::Select(s) = plan(&query, "db", "t", &known(&["job"]), &opts).unwrap() else {
            panic!("empty plan");
        };
        assert_eq!(
            render(&s),
            "SELECT \"job\", coalesce(\"__name__\", measure_name) AS measure_name, time, \
             \"measure_value::double\", \"measure_value::varchar\" FROM \"db\".\"t\" WHERE \
             ((\"measure_value::double\" IS NOT NULL AND NOT (regexp_like(measure_name, '\\A(?:a(?:(?s:.))*)\\z'))) \
             OR ((measure_name = '__special_value__' OR measure_name = '__native_histogram__') AND NOT (regexp_like(\"__name__\", '\\A(?:a(?:(?s:.))*)\\z')))) \
             AND \"job\" = 'x' AND time >= from_milliseconds(1000) AND time <= from_milliseconds(2500) \
             ORDER BY coalesce(\"__name__\", measure_name), \
             CASE WHEN \"job\" IS NOT NULL THEN 1 ELSE 0 END, \"job\", time"
                .replace("\\\\", "\\")
        );
        // A name matcher that matches every name leaves both branches unconstrained; one
        // that matches none still empties the plan.
        let all = q(vec![m(MatcherType::Re, "__name__", ".*")]);
        let Plan::Select(s) = plan(&all, "db", "t", &known(&[]), &opts).unwrap() else {
            panic!("empty plan");
        };
        assert!(render(&s).contains(
            "WHERE ((\"measure_value::double\" IS NOT NULL) OR ((measure_name = '__special_value__' OR measure_name = '__native_histogram__'))) AND time"
        ));
        let none = q(vec![m(MatcherType::Eq, "__name__", "")]);
        assert_eq!(
            plan(&none, "db", "t", &known(&[]), &opts).unwrap(),
            Plan::Empty
        );
        // Without the column, the SQL is what it always was.
        let plain = PlanOptions {
            order: Some(Order::SeriesThenTime),
            ..PlanOptions::default()
        };
        let Plan::Select(s) = plan(&query, "db", "t", &known(&["job"]), &plain).unwrap() else {
            panic!("empty plan");
        };
        assert!(render(&s).starts_with(
            "SELECT \"job\", measure_name, time, \"measure_value::double\" FROM \"db\".\"t\" WHERE \"measure_value::double\" IS NOT NULL AND NOT (regexp_like(measure_name"
        ));
    }

    #[test]
    fn a_table_without_doubles_is_read_without_naming_the_column() {
        let query = q(vec![
            m(MatcherType::Nre, "__name__", "a.*"),
            m(MatcherType::Eq, "job", "x"),
        ]);
        let only_specials = PlanOptions {
            specials: true,
            no_double: true,
            order: Some(Order::SeriesThenTime),
            ..PlanOptions::default()
        };
        let Plan::Select(s) = plan(&query, "db", "t", &known(&["job"]), &only_specials).unwrap()
        else {
            panic!("empty plan");
        };
        assert_eq!(
            render(&s),
            "SELECT \"job\", coalesce(\"__name__\", measure_name) AS measure_name, time, \
             \"measure_value::varchar\" FROM \"db\".\"t\" WHERE \
             ((measure_name = '__special_value__' OR measure_name = '__native_histogram__') AND NOT (regexp_like(\"__name__\", '\\A(?:a(?:(?s:.))*)\\z'))) \
             AND \"job\" = 'x' AND time >= from_milliseconds(1000) AND time <= from_milliseconds(2500) \
             ORDER BY coalesce(\"__name__\", measure_name), \
             CASE WHEN \"job\" IS NOT NULL THEN 1 ELSE 0 END, \"job\", time"
                .replace("\\\\", "\\")
        );
        // SAMPLES order (also the fallback when histograms may come back): no ORDER BY.
        let samples = PlanOptions {
            order: Some(Order::None),
            ..only_specials
        };
        let Plan::Select(s) = plan(&query, "db", "t", &known(&["job"]), &samples).unwrap() else {
            panic!("empty plan");
        };
        let sql = render(&s);
        assert!(
            !sql.contains("measure_value::double") && !sql.contains("ORDER BY"),
            "{sql}"
        );
        // Neither numbers nor special values: nothing to ask.
        let nothing = PlanOptions {
            specials: false,
            ..only_specials
        };
        assert_eq!(
            plan(&query, "db", "t", &known(&["job"]), &nothing).unwrap(),
            Plan::Empty
        );
    }

    /// Tables that have the double column (upstream-written ones among them) are read with
    /// the SQL they always were, byte for byte.
    #[test]
    fn tables_with_doubles_keep_their_sql() {
        let query = q(vec![
            m(MatcherType::Eq, "__name__", "up"),
            m(MatcherType::Re, "job", "a|b"),
        ]);
        for (order, want) in [
            (
                Order::None,
                "SELECT \"job\", measure_name, time, \"measure_value::double\" FROM \"db\".\"t\" \
                 WHERE \"measure_value::double\" IS NOT NULL AND measure_name = 'up' AND \
                 regexp_like(\"job\", '\\A(?:[ab])\\z') AND time >= from_milliseconds(1000) \
                 AND time <= from_milliseconds(2500)",
            ),
            (
                Order::SeriesThenTime,
                "SELECT \"job\", measure_name, time, \"measure_value::double\" FROM \"db\".\"t\" \
                 WHERE \"measure_value::double\" IS NOT NULL AND measure_name = 'up' AND \
                 regexp_like(\"job\", '\\A(?:[ab])\\z') AND time >= from_milliseconds(1000) \
                 AND time <= from_milliseconds(2500) ORDER BY measure_name, \
                 CASE WHEN \"job\" IS NOT NULL THEN 1 ELSE 0 END, \"job\", time",
            ),
        ] {
            let opts = PlanOptions {
                order: Some(order),
                ..PlanOptions::default()
            };
            let Plan::Select(s) = plan(&query, "db", "t", &known(&["job"]), &opts).unwrap() else {
                panic!("empty plan");
            };
            assert_eq!(render(&s), want.replace("\\\\", "\\"));
        }
    }

    #[test]
    fn oversized_sql_is_rejected() {
        let s = Select {
            database: "db".into(),
            table: "t".into(),
            dimensions: vec![],
            predicates: vec![Predicate::Eq(
                Column::MeasureName,
                "x".repeat(MAX_QUERY_BYTES),
            )],
            order: Order::None,
            constant_labels: vec![],
            specials: false,
            no_double: false,
        };
        assert!(matches!(
            render_checked(&s),
            Err(ReadError::QueryTooLarge { .. })
        ));
    }
}
