//! Function calls: the checks every call shares, then one small translator per function,
//! found by name in [`FUNCTIONS`], which lists the dialect's functions family by family.
//!
//! A translator gets its arguments already translated. Like the rest of the translator it
//! folds constant arguments into one constant (so `ago(15m)` stays one bound parameter and a
//! `time` predicate can use the index) and otherwise emits a call of SQLite or of a `ts_*`
//! function registered by `functions.rs`.

use rusqlite::types::Value;

use super::{
    common, is_aggregate, is_integral, is_numeric, overflow, type_name, verr, Cx, QueryError, Ty, T,
};
use crate::sql::functions;
use crate::sql::javaregex;
use crate::sql::lexer::Pos;

/// A call as written, apart from its arguments.
pub(super) struct Call<'a> {
    pub name: &'a str,
    pub distinct: bool,
    /// `count(*)`.
    pub star: bool,
    pub pos: Pos,
}

/// Translates one function: the call and its translated arguments, in order.
type Translator = fn(&Call, Vec<T>, &mut Cx) -> Result<T, QueryError>;

/// Every function of the dialect, by family, with the names it answers to.
const FUNCTIONS: &[(&[&str], Translator)] = &[
    // Aggregates (`is_aggregate` names the same five).
    (&["count"], count),
    (&["sum"], sum),
    (&["avg"], avg),
    (&["min", "max"], min_max),
    // Time: the query's evaluation instant.
    (&["now", "current_timestamp"], now),
    (&["ago"], ago),
    // Time: between timestamps and numbers since the epoch.
    (&["from_milliseconds", "from_nanoseconds"], from_epoch),
    (&["from_unixtime"], from_unixtime),
    (&["to_milliseconds", "to_nanoseconds"], to_epoch),
    (&["to_unixtime"], to_unixtime),
    // Time: bins, fields and calendar arithmetic.
    (&["bin"], bin),
    (
        &[
            "year",
            "quarter",
            "month",
            "week",
            "week_of_year",
            "day",
            "day_of_month",
            "day_of_week",
            "dow",
            "day_of_year",
            "doy",
            "hour",
            "minute",
            "second",
            "millisecond",
        ],
        timestamp_field,
    ),
    (&["date_add", "date_diff"], date_add_or_diff),
    (&["date_trunc"], date_trunc),
    (&["parse_duration"], parse_duration),
    // Strings and regular expressions.
    (&["length"], length),
    (&["lower", "upper"], lower_upper),
    (&["concat"], concat),
    (&["regexp_like"], regexp_like),
    // Conditional.
    (&["coalesce", "greatest", "least"], coalesce_greatest_least),
    // Math.
    (&["abs"], abs),
    (
        &["round", "floor", "ceil", "ceiling", "sqrt", "ln", "exp"],
        math,
    ),
];

/// Translates a call. `in_agg`: the call stands inside an aggregate's arguments.
#[inline(never)]
pub(super) fn translate(
    call: &Call,
    args: Vec<T>,
    cx: &mut Cx,
    in_agg: bool,
) -> Result<T, QueryError> {
    let (name, pos) = (call.name, call.pos);
    // These come before the name lookup, as in Timestream: `nosuch(*)` is a `(*)` error.
    let agg = is_aggregate(name);
    if agg && in_agg {
        return Err(verr(
            pos,
            format!("Cannot nest aggregations inside aggregation '{name}'"),
        ));
    }
    if call.star && name != "count" {
        return Err(verr(pos, format!("'{name}(*)' is not supported")));
    }
    if call.distinct && !agg {
        return Err(verr(
            pos,
            format!("DISTINCT is not supported for non-aggregation function '{name}'"),
        ));
    }
    let Some((_, translator)) = FUNCTIONS.iter().find(|(names, _)| names.contains(&name)) else {
        return Err(verr(pos, format!("Function '{name}' not registered")));
    };
    translator(call, args, cx)
}

/// Timestream's error for arguments that match no signature of the function.
fn bad_args(name: &str, args: &[T], pos: Pos, expected: &str) -> QueryError {
    let got: Vec<&str> = args.iter().map(|a| type_name(a.ty)).collect();
    verr(
        pos,
        format!(
            "Unexpected parameters ({}) for function {name}. Expected: {expected}",
            got.join(", ")
        ),
    )
}

/// The SQL of the only argument, after checking there is one and `ok` accepts its type (or it
/// is an untyped NULL); otherwise Timestream's error listing the expected signature `sig`.
fn single(
    call: &Call,
    a: &[T],
    cx: &mut Cx,
    sig: &str,
    ok: fn(Ty) -> bool,
) -> Result<String, QueryError> {
    if a.len() != 1 || !(ok(a[0].ty) || a[0].ty == Ty::Unknown) {
        return Err(bad_args(call.name, a, call.pos, sig));
    }
    Ok(cx.emit(&a[0]))
}

fn distinct_keyword(call: &Call) -> &'static str {
    if call.distinct {
        "DISTINCT "
    } else {
        ""
    }
}

// ---- Aggregates ----

fn count(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    if call.star {
        return Ok(T::sql("count(*)".into(), Ty::Bigint));
    }
    let s = single(call, &a, cx, "count(t)", |_| true)?;
    let dist = distinct_keyword(call);
    Ok(T::sql(format!("count({dist}{s})"), Ty::Bigint))
}

fn sum(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let s = single(call, &a, cx, "sum(bigint), sum(double)", is_numeric)?;
    let ty = if a[0].ty == Ty::Double {
        Ty::Double
    } else {
        Ty::Bigint
    };
    let dist = distinct_keyword(call);
    Ok(T::sql(format!("sum({dist}{s})"), ty))
}

fn avg(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let s = single(call, &a, cx, "avg(bigint), avg(double)", is_numeric)?;
    let dist = distinct_keyword(call);
    Ok(T::sql(format!("avg({dist}{s})"), Ty::Double))
}

fn min_max(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let name = call.name;
    let s = single(call, &a, cx, &format!("{name}(t) t:orderable"), |t| {
        !matches!(t, Ty::Boolean)
    })?;
    let dist = distinct_keyword(call);
    Ok(T::sql(format!("{name}({dist}{s})"), a[0].ty))
}

// ---- Time: the evaluation instant ----

fn now(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    if !a.is_empty() {
        return Err(bad_args(call.name, &a, call.pos, "now()"));
    }
    Ok(T::c(Value::Integer(cx.now_ns), Ty::Timestamp))
}

fn ago(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let s = single(call, &a, cx, "ago(interval day to second)", |t| {
        t == Ty::IntervalDayToSecond
    })?;
    let now = cx.now_ns;
    Ok(match a[0].int() {
        Some(iv) => T::c(
            Value::Integer(now.checked_sub(iv).ok_or_else(|| overflow(call.pos))?),
            Ty::Timestamp,
        ),
        None => {
            let n = cx.emit(&T::c(Value::Integer(now), Ty::Timestamp));
            T::sql(format!("({n} - {s})"), Ty::Timestamp)
        }
    })
}

// ---- Time: between timestamps and numbers since the epoch ----

fn from_epoch(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let (name, pos) = (call.name, call.pos);
    let mult: i64 = if name == "from_milliseconds" {
        1_000_000
    } else {
        1
    };
    if a.len() != 1 || !(is_integral(a[0].ty) || a[0].ty == Ty::Unknown) {
        return Err(bad_args(name, &a, pos, &format!("{name}(bigint)")));
    }
    if a[0].is_null() {
        return Ok(T::c(Value::Null, Ty::Timestamp));
    }
    Ok(match a[0].int() {
        Some(v) => T::c(
            Value::Integer(v.checked_mul(mult).ok_or_else(|| overflow(pos))?),
            Ty::Timestamp,
        ),
        None => {
            let s = cx.emit(&a[0]);
            T::sql(
                if mult == 1 {
                    s
                } else {
                    format!("({s} * {mult})")
                },
                Ty::Timestamp,
            )
        }
    })
}

fn from_unixtime(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let pos = call.pos;
    let s = single(call, &a, cx, "from_unixtime(double)", is_numeric)?;
    if a[0].is_null() {
        return Ok(T::c(Value::Null, Ty::Timestamp));
    }
    Ok(if let Some(v) = a[0].int() {
        T::c(
            Value::Integer(v.checked_mul(1_000_000_000).ok_or_else(|| overflow(pos))?),
            Ty::Timestamp,
        )
    } else if let Some(f) = a[0].num() {
        let ns = (f * 1e9).round();
        if !ns.is_finite() || ns.abs() > 9.2e18 {
            return Err(overflow(pos));
        }
        T::c(Value::Integer(ns as i64), Ty::Timestamp)
    } else if is_integral(a[0].ty) {
        T::sql(format!("({s} * 1000000000)"), Ty::Timestamp)
    } else {
        T::sql(
            format!("CAST(round({s} * 1000000000.0) AS INTEGER)"),
            Ty::Timestamp,
        )
    })
}

fn to_epoch(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let name = call.name;
    let s = single(
        call,
        &a,
        cx,
        &format!("{name}(timestamp), {name}(interval day to second)"),
        |t| matches!(t, Ty::Timestamp | Ty::IntervalDayToSecond),
    )?;
    let div: i64 = if name == "to_milliseconds" {
        1_000_000
    } else {
        1
    };
    Ok(match a[0].int() {
        Some(v) => T::c(Value::Integer(v.div_euclid(div)), Ty::Bigint),
        None if div == 1 => T::sql(s, Ty::Bigint),
        None => T::sql(format!("ts_floordiv({s}, {div})"), Ty::Bigint),
    })
}

fn to_unixtime(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let s = single(call, &a, cx, "to_unixtime(timestamp)", |t| {
        t == Ty::Timestamp
    })?;
    Ok(match a[0].int() {
        Some(v) => T::c(Value::Real(v as f64 / 1e9), Ty::Double),
        None => T::sql(format!("(CAST({s} AS REAL) / 1000000000.0)"), Ty::Double),
    })
}

// ---- Time: bins, fields and calendar arithmetic ----

fn bin(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let pos = call.pos;
    if a.len() != 2
        || !matches!(a[0].ty, Ty::Timestamp | Ty::Unknown)
        || a[1].ty != Ty::IntervalDayToSecond
    {
        return Err(bad_args(
            call.name,
            &a,
            pos,
            "bin(timestamp, interval day to second)",
        ));
    }
    let Some(iv) = a[1].int() else {
        return Err(verr(pos, "bin() needs a constant interval"));
    };
    if iv <= 0 {
        return Err(verr(pos, "bin() interval must be positive"));
    }
    Ok(match a[0].int() {
        Some(t) => T::c(Value::Integer(t - t.rem_euclid(iv)), Ty::Timestamp),
        None if a[0].is_null() => T::c(Value::Null, Ty::Timestamp),
        None => {
            let s = cx.emit(&a[0]);
            T::sql(format!("ts_bin({s}, {iv})"), Ty::Timestamp)
        }
    })
}

/// `year(t)`, `hour(t)` and the other fields of a timestamp, by the function's name.
fn timestamp_field(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let name = call.name;
    let s = single(call, &a, cx, &format!("{name}(timestamp)"), |t| {
        t == Ty::Timestamp
    })?;
    Ok(match a[0].int() {
        Some(v) => T::c(
            Value::Integer(functions::field(name, v).unwrap_or(0)),
            Ty::Bigint,
        ),
        None => T::sql(format!("ts_field('{name}', {s})"), Ty::Bigint),
    })
}

fn date_add_or_diff(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let (name, pos) = (call.name, call.pos);
    let add = name == "date_add";
    let sig = if add {
        "date_add(varchar, bigint, timestamp)"
    } else {
        "date_diff(varchar, timestamp, timestamp)"
    };
    let ok = a.len() == 3
        && a[0].ty == Ty::Varchar
        && if add {
            is_integral(a[1].ty) && a[2].ty == Ty::Timestamp
        } else {
            a[1].ty == Ty::Timestamp && a[2].ty == Ty::Timestamp
        };
    if !ok {
        return Err(bad_args(name, &a, pos, sig));
    }
    let unit = constant_unit(&a[0], pos, name)?;
    if functions::date_add(&unit, 0, 0).is_none() {
        return Err(verr(
            pos,
            format!("'{unit}' is not a valid Timestamp field"),
        ));
    }
    let ty = if add { Ty::Timestamp } else { Ty::Bigint };
    Ok(if let (Some(x), Some(y)) = (a[1].int(), a[2].int()) {
        let v = if add {
            functions::date_add(&unit, x, y)
        } else {
            functions::date_diff(&unit, x, y)
        };
        T::c(Value::Integer(v.ok_or_else(|| overflow(pos))?), ty)
    } else {
        let u = cx.emit(&T::c(Value::Text(unit), Ty::Varchar));
        let (x, y) = (cx.emit(&a[1]), cx.emit(&a[2]));
        T::sql(format!("ts_{name}({u}, {x}, {y})"), ty)
    })
}

fn date_trunc(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let pos = call.pos;
    if a.len() != 2 || a[0].ty != Ty::Varchar || !matches!(a[1].ty, Ty::Timestamp | Ty::Unknown) {
        return Err(bad_args(
            call.name,
            &a,
            pos,
            "date_trunc(varchar, timestamp)",
        ));
    }
    let unit = constant_unit(&a[0], pos, call.name)?;
    if functions::date_trunc(&unit, 0).is_none() {
        return Err(verr(
            pos,
            format!("'{unit}' is not a valid Timestamp field"),
        ));
    }
    Ok(match a[1].int() {
        Some(t) => T::c(
            Value::Integer(functions::date_trunc(&unit, t).unwrap_or(t)),
            Ty::Timestamp,
        ),
        None => {
            let u = cx.emit(&T::c(Value::Text(unit), Ty::Varchar));
            let s = cx.emit(&a[1]);
            T::sql(format!("ts_date_trunc({u}, {s})"), Ty::Timestamp)
        }
    })
}

/// The unit argument of `date_add`, `date_diff`, `date_trunc`: it must be a constant, so an
/// unknown unit is a compile-time error rather than one per row.
fn constant_unit(unit: &T, pos: Pos, name: &str) -> Result<String, QueryError> {
    unit.text()
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| verr(pos, format!("{name}() needs a constant unit")))
}

fn parse_duration(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let s = single(call, &a, cx, "parse_duration(varchar)", |t| {
        t == Ty::Varchar
    })?;
    let Some(text) = a[0].text() else {
        return Ok(T::sql(
            format!("ts_parse_duration({s})"),
            Ty::IntervalDayToSecond,
        ));
    };
    let ns = functions::parse_duration(text)
        .ok_or_else(|| verr(call.pos, format!("Invalid duration: {text}")))?;
    // The text was bound by `single` above but is folded away: drop that parameter.
    cx.params.pop();
    Ok(T::c(Value::Integer(ns), Ty::IntervalDayToSecond))
}

// ---- Strings and regular expressions ----

fn length(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let s = single(call, &a, cx, "length(varchar)", |t| t == Ty::Varchar)?;
    Ok(T::sql(format!("length({s})"), Ty::Bigint))
}

fn lower_upper(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let name = call.name;
    let s = single(call, &a, cx, &format!("{name}(varchar)"), |t| {
        t == Ty::Varchar
    })?;
    Ok(T::sql(format!("ts_{name}({s})"), Ty::Varchar))
}

fn concat(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    if a.len() < 2 || a.iter().any(|x| !matches!(x.ty, Ty::Varchar | Ty::Unknown)) {
        return Err(bad_args(
            call.name,
            &a,
            call.pos,
            "concat(varchar, varchar...)",
        ));
    }
    let parts: Vec<String> = a.iter().map(|x| cx.emit(x)).collect();
    Ok(T::sql(format!("({})", parts.join(" || ")), Ty::Varchar))
}

fn regexp_like(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    if a.len() != 2 || a.iter().any(|x| !matches!(x.ty, Ty::Varchar | Ty::Unknown)) {
        return Err(bad_args(
            call.name,
            &a,
            call.pos,
            "regexp_like(varchar, varchar)",
        ));
    }
    // A constant pattern is checked now, so a bad one fails the query before any row is read.
    if let Some(p) = a[1].text() {
        javaregex::compile_cached(p)
            .map_err(|m| verr(call.pos, format!("Invalid regex pattern: {m}")))?;
    }
    let (x, y) = (cx.emit(&a[0]), cx.emit(&a[1]));
    Ok(T::sql(format!("regexp_like({x}, {y})"), Ty::Boolean))
}

// ---- Conditional ----

fn coalesce_greatest_least(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let (name, pos) = (call.name, call.pos);
    if a.is_empty() || (name != "coalesce" && a.len() < 2) {
        return Err(bad_args(name, &a, pos, &format!("{name}(t, t...)")));
    }
    let mut ty = Ty::Unknown;
    for x in &a {
        ty =
            common(ty, x.ty).ok_or_else(|| bad_args(name, &a, pos, &format!("{name}(t, t...)")))?;
    }
    let parts: Vec<String> = a.iter().map(|x| cx.emit(x)).collect();
    // SQLite's scalar max/min are greatest/least; its coalesce wants two arguments at least.
    let f = match name {
        "greatest" => "max",
        "least" => "min",
        _ => "coalesce",
    };
    let parts = if f == "coalesce" && parts.len() == 1 {
        vec![parts[0].clone(), "NULL".into()]
    } else {
        parts
    };
    Ok(T::sql(format!("{f}({})", parts.join(", ")), ty))
}

// ---- Math ----

fn abs(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let s = single(call, &a, cx, "abs(double), abs(bigint)", is_numeric)?;
    Ok(T::sql(format!("abs({s})"), a[0].ty))
}

/// `round`, `floor`, `ceil(ing)`, `sqrt`, `ln`, `exp`: all run by `ts_math`, which takes the
/// function's name; only `round` takes a second argument (the number of decimals).
fn math(call: &Call, a: Vec<T>, cx: &mut Cx) -> Result<T, QueryError> {
    let name = call.name;
    if a.is_empty()
        || a.len() > 2
        || !is_numeric(a[0].ty)
        || (a.len() == 2 && (name != "round" || !is_integral(a[1].ty)))
    {
        return Err(bad_args(name, &a, call.pos, &format!("{name}(double)")));
    }
    let parts: Vec<String> = a.iter().map(|x| cx.emit(x)).collect();
    let ty = match name {
        "sqrt" | "ln" | "exp" => Ty::Double,
        _ => a[0].ty,
    };
    let f = if name == "ceiling" { "ceil" } else { name };
    Ok(T::sql(format!("ts_math('{f}', {})", parts.join(", ")), ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name is in one row only, and the aggregates are exactly the ones `is_aggregate`
    /// knows (the nesting and DISTINCT checks rely on it).
    #[test]
    fn every_function_has_one_translator_and_aggregates_agree() {
        let mut names: Vec<&str> = FUNCTIONS
            .iter()
            .flat_map(|(n, _)| n.iter().copied())
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a name is listed twice");
        let aggregates: Vec<&str> = names.iter().copied().filter(|n| is_aggregate(n)).collect();
        assert_eq!(aggregates, ["avg", "count", "max", "min", "sum"]);
    }
}
