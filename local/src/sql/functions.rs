//! SQLite functions called by compiled queries (Timestream semantics SQLite lacks).

use super::javaregex;
use super::render::{civil_from_days, days_from_civil, format_double, format_timestamp};
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn user_err(msg: impl Into<String>) -> Error {
    Error::UserFunctionError(msg.into().into())
}

pub fn register(conn: &Connection) -> Result<()> {
    let det = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("regexp_like", 2, det, |ctx: &Context<'_>| {
        if ctx.get_raw(0) == ValueRef::Null || ctx.get_raw(1) == ValueRef::Null {
            return Ok(None);
        }
        let re = ctx.get_or_create_aux(1, |vr| -> std::result::Result<_, String> {
            let p = vr.as_str().map_err(|e| e.to_string())?;
            javaregex::compile_cached(p).map_err(|e| format!("Invalid regex pattern: {e}"))
        })?;
        let s = text(ctx, 0)?;
        Ok(Some(re.find(&s)))
    })?;
    for n in [2, 3] {
        conn.create_scalar_function("ts_like", n, det, |ctx: &Context<'_>| {
            if (0..ctx.len()).any(|i| ctx.get_raw(i) == ValueRef::Null) {
                return Ok(None);
            }
            let esc = if ctx.len() == 3 {
                Some(text(ctx, 2)?)
            } else {
                None
            };
            // Per-statement cache on the (normally constant) pattern; the escape it was built
            // with is kept alongside, since only the pattern argument keys the cache.
            let cached = ctx.get_or_create_aux(1, |vr| -> std::result::Result<_, String> {
                let p = vr.as_str().map_err(|e| e.to_string())?;
                Ok((esc.clone(), like_cached(p, esc.as_deref())?))
            })?;
            let re = if cached.0 == esc {
                cached.1.clone()
            } else {
                like_cached(&text(ctx, 1)?, esc.as_deref()).map_err(user_err)?
            };
            Ok(Some(re.is_match(&text(ctx, 0)?)))
        })?;
    }
    conn.create_scalar_function("ts_bin", 2, det, |ctx: &Context<'_>| {
        let (Some(t), Some(iv)) = (ctx.get::<Option<i64>>(0)?, ctx.get::<Option<i64>>(1)?) else {
            return Ok(None);
        };
        Ok((iv > 0).then(|| t - t.rem_euclid(iv)))
    })?;
    conn.create_scalar_function("ts_floordiv", 2, det, |ctx: &Context<'_>| {
        let (Some(a), Some(b)) = (ctx.get::<Option<i64>>(0)?, ctx.get::<Option<i64>>(1)?) else {
            return Ok(None);
        };
        if b == 0 {
            return Err(user_err("Division by zero"));
        }
        Ok(Some(a.div_euclid(b)))
    })?;
    conn.create_scalar_function("ts_idiv", 2, det, |ctx: &Context<'_>| {
        let (Some(a), Some(b)) = (ctx.get::<Option<i64>>(0)?, ctx.get::<Option<i64>>(1)?) else {
            return Ok(None);
        };
        if b == 0 {
            return Err(user_err("Division by zero"));
        }
        a.checked_div(b)
            .map(Some)
            .ok_or_else(|| user_err("bigint division overflow"))
    })?;
    conn.create_scalar_function("ts_imod", 2, det, |ctx: &Context<'_>| {
        let (Some(a), Some(b)) = (ctx.get::<Option<i64>>(0)?, ctx.get::<Option<i64>>(1)?) else {
            return Ok(None);
        };
        if b == 0 {
            return Err(user_err("Division by zero"));
        }
        Ok(Some(a.wrapping_rem(b)))
    })?;
    conn.create_scalar_function("ts_mod", 2, det, |ctx: &Context<'_>| {
        let (Some(a), Some(b)) = (ctx.get::<Option<f64>>(0)?, ctx.get::<Option<f64>>(1)?) else {
            return Ok(None);
        };
        Ok(Some(a % b).filter(|v| !v.is_nan()))
    })?;
    conn.create_scalar_function("ts_date_trunc", 2, det, |ctx: &Context<'_>| {
        let (Some(u), Some(t)) = (ctx.get::<Option<String>>(0)?, ctx.get::<Option<i64>>(1)?) else {
            return Ok(None);
        };
        date_trunc(&u.to_ascii_lowercase(), t)
            .map(Some)
            .ok_or_else(|| user_err(format!("'{u}' is not a valid Timestamp field")))
    })?;
    conn.create_scalar_function("ts_parse_duration", 1, det, |ctx: &Context<'_>| {
        let Some(s) = ctx.get::<Option<String>>(0)? else {
            return Ok(None);
        };
        parse_duration(&s)
            .map(Some)
            .ok_or_else(|| user_err(format!("Invalid duration: {s}")))
    })?;
    conn.create_scalar_function("ts_field", 2, det, |ctx: &Context<'_>| {
        let (Some(u), Some(t)) = (ctx.get::<Option<String>>(0)?, ctx.get::<Option<i64>>(1)?) else {
            return Ok(None);
        };
        Ok(field(&u, t))
    })?;
    conn.create_scalar_function("ts_date_add", 3, det, |ctx: &Context<'_>| {
        let (Some(u), Some(n), Some(t)) = (
            ctx.get::<Option<String>>(0)?,
            ctx.get::<Option<i64>>(1)?,
            ctx.get::<Option<i64>>(2)?,
        ) else {
            return Ok(None);
        };
        date_add(&u, n, t)
            .map(Some)
            .ok_or_else(|| user_err("Out of range for timestamp"))
    })?;
    conn.create_scalar_function("ts_date_diff", 3, det, |ctx: &Context<'_>| {
        let (Some(u), Some(a), Some(b)) = (
            ctx.get::<Option<String>>(0)?,
            ctx.get::<Option<i64>>(1)?,
            ctx.get::<Option<i64>>(2)?,
        ) else {
            return Ok(None);
        };
        date_diff(&u, a, b)
            .map(Some)
            .ok_or_else(|| user_err("Out of range for bigint"))
    })?;
    conn.create_scalar_function("ts_lower", 1, det, |ctx: &Context<'_>| {
        Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase()))
    })?;
    conn.create_scalar_function("ts_upper", 1, det, |ctx: &Context<'_>| {
        Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_uppercase()))
    })?;
    for n in [2, 3] {
        conn.create_scalar_function("ts_math", n, det, math)?;
    }
    conn.create_scalar_function("ts_cast", 3, det, |ctx: &Context<'_>| {
        let from = text(ctx, 1)?;
        let to = text(ctx, 2)?;
        cast(ctx.get_raw(0), &from, &to).map_err(user_err)
    })?;
    Ok(())
}

fn text(ctx: &Context<'_>, i: usize) -> Result<String> {
    match ctx.get_raw(i) {
        ValueRef::Text(t) => Ok(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Ok(n.to_string()),
        ValueRef::Real(f) => Ok(format_double(f)),
        ValueRef::Blob(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Null => Ok(String::new()),
    }
}

fn math(ctx: &Context<'_>) -> Result<Value> {
    let name = text(ctx, 0)?;
    let x = ctx.get_raw(1);
    let int_in = matches!(x, ValueRef::Integer(_));
    let v = match x {
        ValueRef::Null => return Ok(Value::Null),
        ValueRef::Integer(i) => i as f64,
        ValueRef::Real(f) => f,
        _ => return Err(user_err("numeric argument expected")),
    };
    let out = match name.as_str() {
        "round" => {
            let d = if ctx.len() == 3 {
                ctx.get::<Option<i64>>(2)?
            } else {
                Some(0)
            };
            let Some(d) = d else { return Ok(Value::Null) };
            if int_in && d >= 0 {
                return Ok(Value::Integer(v as i64));
            }
            let m = 10f64.powi(d.clamp(-300, 300) as i32);
            (v * m).round() / m
        }
        "floor" => v.floor(),
        "ceil" => v.ceil(),
        "sqrt" => v.sqrt(),
        "ln" => v.ln(),
        "exp" => v.exp(),
        _ => return Err(user_err(format!("unknown math function {name}"))),
    };
    if int_in && matches!(name.as_str(), "floor" | "ceil" | "round") {
        return Ok(Value::Integer(out as i64));
    }
    Ok(if out.is_nan() {
        Value::Null
    } else {
        Value::Real(out)
    })
}

/// Timestream/Trino CAST between scalar types (values in storage representation).
fn cast(v: ValueRef<'_>, from: &str, to: &str) -> std::result::Result<Value, String> {
    if v == ValueRef::Null {
        return Ok(Value::Null);
    }
    let s = match v {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        _ => None,
    };
    let num = match v {
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Real(f) => Some(f),
        _ => None,
    };
    let fail = || format!("Cannot cast '{}' to {to}", s.clone().unwrap_or_default());
    Ok(match to {
        "VARCHAR" => Value::Text(match (from, v) {
            ("DOUBLE", _) => format_double(num.unwrap_or(0.0)),
            ("BOOLEAN", ValueRef::Integer(i)) => (i != 0).to_string(),
            ("TIMESTAMP", ValueRef::Integer(i)) => format_timestamp(i),
            (_, ValueRef::Integer(i)) => i.to_string(),
            (_, ValueRef::Real(f)) => format_double(f),
            _ => s.clone().unwrap_or_default(),
        }),
        "DOUBLE" => match (&s, num) {
            (Some(t), _) => Value::Real(match t.trim() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                x => x.parse::<f64>().map_err(|_| fail())?,
            }),
            (None, Some(f)) => Value::Real(f),
            _ => return Err(fail()),
        },
        "BIGINT" | "INTEGER" => {
            let i = match (&s, v) {
                (Some(t), _) => t.trim().parse::<i64>().map_err(|_| fail())?,
                (None, ValueRef::Integer(i)) => i,
                (None, ValueRef::Real(f)) => {
                    let r = f.round();
                    if !r.is_finite() || r.abs() > 9.2e18 {
                        return Err(format!("Out of range for {to}: {}", format_double(f)));
                    }
                    r as i64
                }
                _ => return Err(fail()),
            };
            if to == "INTEGER" && i32::try_from(i).is_err() {
                return Err(format!("Out of range for integer: {i}"));
            }
            Value::Integer(i)
        }
        "BOOLEAN" => match (&s, num) {
            (Some(t), _) => match t.trim().to_ascii_lowercase().as_str() {
                "true" => Value::Integer(1),
                "false" => Value::Integer(0),
                _ => return Err(fail()),
            },
            (None, Some(f)) => Value::Integer(i64::from(f != 0.0)),
            _ => return Err(fail()),
        },
        "TIMESTAMP" => match &s {
            Some(t) => Value::Integer(
                super::translate::parse_timestamp(t)
                    .ok_or_else(|| format!("Value cannot be cast to timestamp: {t}"))?,
            ),
            None => return Err(fail()),
        },
        _ => return Err(format!("Cannot cast to {to}")),
    })
}

const NS_DAY: i64 = 86_400_000_000_000;

/// Fixed-length units in nanoseconds.
fn fixed_unit(unit: &str) -> Option<i64> {
    Some(match unit {
        "millisecond" => 1_000_000,
        "second" => 1_000_000_000,
        "minute" => 60_000_000_000,
        "hour" => 3_600_000_000_000,
        "day" => NS_DAY,
        "week" => 7 * NS_DAY,
        _ => return None,
    })
}

fn months(unit: &str) -> Option<i64> {
    Some(match unit {
        "month" => 1,
        "quarter" => 3,
        "year" => 12,
        _ => return None,
    })
}

/// `date_add(unit, n, ts)`; month-based units clamp the day to the target month's length.
pub fn date_add(unit: &str, n: i64, t: i64) -> Option<i64> {
    if let Some(m) = fixed_unit(unit) {
        return t.checked_add(n.checked_mul(m)?);
    }
    let k = n.checked_mul(months(unit)?)?;
    let days = t.div_euclid(NS_DAY);
    let tod = t.rem_euclid(NS_DAY);
    let (y, m, d) = civil_from_days(days);
    let total = (y * 12 + i64::from(m) - 1).checked_add(k)?;
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    let last = (days_from_civil(
        ny + i64::from(nm == 12),
        if nm == 12 { 1 } else { nm + 1 },
        1,
    ) - days_from_civil(ny, nm, 1)) as u32;
    days_from_civil(ny, nm, d.min(last))
        .checked_mul(NS_DAY)?
        .checked_add(tod)
}

/// `date_diff(unit, a, b)`: whole units from a to b (truncated toward zero).
pub fn date_diff(unit: &str, a: i64, b: i64) -> Option<i64> {
    if let Some(m) = fixed_unit(unit) {
        return Some(b.checked_sub(a)? / m);
    }
    let per = months(unit)?;
    let (ya, ma, _) = civil_from_days(a.div_euclid(NS_DAY));
    let (yb, mb, _) = civil_from_days(b.div_euclid(NS_DAY));
    let mut n = (yb * 12 + i64::from(mb)) - (ya * 12 + i64::from(ma));
    // Not a whole month yet when the end lies before the same point of its month.
    if n > 0 && date_add("month", n, a)? > b {
        n -= 1;
    } else if n < 0 && date_add("month", n, a)? < b {
        n += 1;
    }
    Some(n / per)
}

/// Calendar fields of a timestamp (ISO day of week: Monday = 1).
pub fn field(name: &str, t: i64) -> Option<i64> {
    let days = t.div_euclid(NS_DAY);
    let tod = t.rem_euclid(NS_DAY);
    let (y, m, d) = civil_from_days(days);
    Some(match name {
        "year" => y,
        "quarter" => (i64::from(m) - 1) / 3 + 1,
        "month" => i64::from(m),
        "day" | "day_of_month" => i64::from(d),
        "day_of_week" | "dow" => (days + 3).rem_euclid(7) + 1,
        "day_of_year" | "doy" => days - days_from_civil(y, 1, 1) + 1,
        "week" | "week_of_year" => {
            // ISO week: the week with the year's first Thursday is week 1.
            let dow = (days + 3).rem_euclid(7); // Monday = 0
            let thursday = days - dow + 3;
            let (ty, _, _) = civil_from_days(thursday);
            (thursday - days_from_civil(ty, 1, 1)) / 7 + 1
        }
        "hour" => tod / 3_600_000_000_000,
        "minute" => tod / 60_000_000_000 % 60,
        "second" => tod / 1_000_000_000 % 60,
        "millisecond" => tod / 1_000_000 % 1000,
        _ => return None,
    })
}

/// `parse_duration('42.8ms')`: a decimal number and a unit (ns, us, ms, s, m, h, d).
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = (s[..split].trim(), s[split..].trim());
    let mult: i64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => NS_DAY,
        _ => return None,
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let v = num.parse::<f64>().ok()? * mult as f64;
    (v.is_finite() && v < 9.2e18).then(|| v.round() as i64)
}

/// `date_trunc(unit, ts)` on nanoseconds; None for an unknown unit.
pub fn date_trunc(unit: &str, t: i64) -> Option<i64> {
    let floor = |m: i64| t - t.rem_euclid(m);
    Some(match unit {
        "millisecond" => floor(1_000_000),
        "second" => floor(1_000_000_000),
        "minute" => floor(60_000_000_000),
        "hour" => floor(3_600_000_000_000),
        "day" => floor(NS_DAY),
        "week" => {
            // 1970-01-01 was a Thursday; weeks start on Monday (1970-01-05 = day 4).
            let off = 4 * NS_DAY;
            (t - off) - (t - off).rem_euclid(7 * NS_DAY) + off
        }
        "month" | "quarter" | "year" => {
            let (y, m, _) = civil_from_days(t.div_euclid(NS_DAY));
            let m = match unit {
                "month" => m,
                "quarter" => (m - 1) / 3 * 3 + 1,
                _ => 1,
            };
            days_from_civil(y, m, 1) * NS_DAY
        }
        _ => return None,
    })
}

/// Trino LIKE (`%`, `_`, optional escape; case-sensitive; whole-string) as an anchored regex.
pub fn like_regex(pattern: &str, esc: Option<&str>) -> std::result::Result<regex::Regex, String> {
    let esc = match esc {
        None => None,
        Some(e) => {
            let mut it = e.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => Some(c),
                _ => return Err("Escape string must be a single character".into()),
            }
        }
    };
    let mut re = String::from(r"(?s)\A");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == esc {
            match chars.next() {
                Some(n) if n == '%' || n == '_' || Some(n) == esc => {
                    re += &regex::escape(n.encode_utf8(&mut [0; 4]));
                }
                _ => {
                    return Err(
                        "Escape character must be followed by '%', '_' or the escape character"
                            .into(),
                    )
                }
            }
        } else if c == '%' {
            re += ".*";
        } else if c == '_' {
            re += ".";
        } else {
            re += &regex::escape(c.encode_utf8(&mut [0; 4]));
        }
    }
    re += r"\z";
    regex::Regex::new(&re).map_err(|e| e.to_string())
}

fn like_cached(pattern: &str, esc: Option<&str>) -> std::result::Result<Arc<regex::Regex>, String> {
    type Cache = Mutex<HashMap<(String, Option<String>), Arc<regex::Regex>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (pattern.to_string(), esc.map(str::to_string));
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(r.clone());
    }
    let r = Arc::new(like_regex(pattern, esc)?);
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if c.len() >= 4096 {
        c.clear();
    }
    c.insert(key, r.clone());
    Ok(r)
}
