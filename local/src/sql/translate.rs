//! Name resolution, type checking and SQLite emission.
//!
//! Every expression is translated into SQL text plus its Timestream type. Constants stay
//! symbolic until needed, so calls such as `from_milliseconds(1700000000000)`, `now() - 1h` or
//! `ago(15m)` fold into one bound parameter and comparisons against `time` remain plain
//! column-versus-parameter predicates that SQLite can serve from an index.

use super::lexer::Pos;
use super::parser::{
    parse, parse_describe, BinOp, Expr, Lit, OrderItem, Select, SelectItem, TableRef,
};
use super::render::days_from_civil;
use super::{Catalog, CatalogError, Column, CompiledQuery, QueryError, ScalarType};
use rusqlite::types::Value;

use ScalarType as Ty;

mod calls;

const TABLE_ALIAS: &str = "\"_t\"";

fn verr(pos: Pos, msg: impl std::fmt::Display) -> QueryError {
    QueryError::Validation(format!("line {pos}: {msg}"))
}

fn type_name(t: Ty) -> &'static str {
    match t {
        Ty::Varchar => "varchar",
        Ty::Double => "double",
        Ty::Bigint => "bigint",
        Ty::Boolean => "boolean",
        Ty::Timestamp => "timestamp",
        Ty::Date => "date",
        Ty::Time => "time",
        Ty::IntervalDayToSecond => "interval day to second",
        Ty::IntervalYearToMonth => "interval year to month",
        Ty::Integer => "integer",
        Ty::Unknown => "unknown",
    }
}

fn is_numeric(t: Ty) -> bool {
    matches!(t, Ty::Integer | Ty::Bigint | Ty::Double)
}

fn is_integral(t: Ty) -> bool {
    matches!(t, Ty::Integer | Ty::Bigint)
}

/// The common supertype of two types, if they can be compared or combined.
fn common(a: Ty, b: Ty) -> Option<Ty> {
    match (a, b) {
        (Ty::Unknown, x) | (x, Ty::Unknown) => Some(x),
        (x, y) if x == y => Some(x),
        (Ty::Double, y) | (y, Ty::Double) if is_numeric(y) => Some(Ty::Double),
        (Ty::Bigint, y) | (y, Ty::Bigint) if is_numeric(y) => Some(Ty::Bigint),
        _ => None,
    }
}

#[derive(Debug, Clone)]
enum S {
    Const(Value),
    Sql(String),
}

/// A translated expression.
#[derive(Debug, Clone)]
struct T {
    s: S,
    ty: Ty,
}

impl T {
    fn c(v: Value, ty: Ty) -> T {
        T { s: S::Const(v), ty }
    }
    fn sql(s: String, ty: Ty) -> T {
        T { s: S::Sql(s), ty }
    }
    fn int(&self) -> Option<i64> {
        match self.s {
            S::Const(Value::Integer(i)) => Some(i),
            _ => None,
        }
    }
    fn num(&self) -> Option<f64> {
        match self.s {
            S::Const(Value::Integer(i)) => Some(i as f64),
            S::Const(Value::Real(f)) => Some(f),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self.s, S::Const(Value::Null))
    }
    fn text(&self) -> Option<&str> {
        match &self.s {
            S::Const(Value::Text(t)) => Some(t),
            _ => None,
        }
    }
}

struct Cx<'a> {
    cols: &'a [Column],
    params: Vec<Value>,
    now_ns: i64,
}

impl Cx<'_> {
    /// SQL text for `t`; constants become bound parameters (NULL stays a keyword).
    fn emit(&mut self, t: &T) -> String {
        match &t.s {
            S::Const(Value::Null) => "NULL".into(),
            S::Const(v) => {
                self.params.push(v.clone());
                format!("?{}", self.params.len())
            }
            S::Sql(s) => s.clone(),
        }
    }

    fn column(&self, name: &str, pos: Pos) -> Result<&Column, QueryError> {
        self.cols
            .iter()
            .find(|c| c.name == name)
            .or_else(|| {
                let mut it = self
                    .cols
                    .iter()
                    .filter(|c| c.name.eq_ignore_ascii_case(name));
                match (it.next(), it.next()) {
                    (Some(c), None) => Some(c),
                    _ => None,
                }
            })
            .ok_or_else(|| verr(pos, format!("Column '{name}' does not exist")))
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column of the table's view, as SQLite must name it (see [`super::storage_name`]).
fn view_column(c: &Column) -> String {
    format!(
        "{TABLE_ALIAS}.{}",
        quote_ident(&super::storage_name(&c.name))
    )
}

pub fn is_aggregate(name: &str) -> bool {
    matches!(name, "count" | "sum" | "avg" | "min" | "max")
}

fn contains_aggregate(e: &Expr) -> Option<&Expr> {
    if let Expr::Func { name, .. } = e {
        if is_aggregate(name) {
            return Some(e);
        }
    }
    e.children().into_iter().find_map(contains_aggregate)
}

/// The schema of a table named in a query, or Timestream's error for a missing one.
fn lookup(t: &TableRef, catalog: &dyn Catalog) -> Result<super::TableSchema, QueryError> {
    let Some(db) = &t.database else {
        return Err(verr(
            t.pos,
            "Schema must be specified when session schema is not set",
        ));
    };
    match catalog.table(db, &t.table) {
        Ok(s) => Ok(s),
        Err(CatalogError::DatabaseNotFound) => Err(QueryError::Validation(format!(
            "Requested database '{db}' not found for identifier '{db}.{}' at line {}",
            t.table, t.pos
        ))),
        Err(CatalogError::TableNotFound) => Err(QueryError::Validation(format!(
            "Requested table '{}' not found for identifier '{db}.{}' at line {}",
            t.table, t.table, t.pos
        ))),
        Err(CatalogError::Internal(m)) => Err(QueryError::Internal(m)),
    }
}

/// `DESCRIBE`: one row per column with Timestream's three result columns. The schema lists
/// dimensions first, then `measure_name`, `time` and the measure columns (storage contract).
fn describe(schema: &super::TableSchema) -> Result<CompiledQuery, QueryError> {
    let name_at = schema.columns.iter().position(|c| c.name == "measure_name");
    let mut params = Vec::with_capacity(schema.columns.len() * 3);
    let mut rows = Vec::with_capacity(schema.columns.len());
    for (i, c) in schema.columns.iter().enumerate() {
        let kind = match c.name.as_str() {
            "measure_name" => "MEASURE_NAME",
            "time" => "TIMESTAMP",
            n if n.starts_with("measure_value::") => "MEASURE_VALUE",
            _ if name_at.is_some_and(|m| i < m) => "DIMENSION",
            _ => "MULTI",
        };
        let n = params.len();
        rows.push(format!("(?{}, ?{}, ?{})", n + 1, n + 2, n + 3));
        params.push(Value::Text(c.name.clone()));
        params.push(Value::Text(c.ty.as_str().to_ascii_lowercase()));
        params.push(Value::Text(kind.to_string()));
    }
    let sql = if rows.is_empty() {
        "SELECT NULL, NULL, NULL WHERE 0".to_string()
    } else {
        format!(
            "SELECT column1, column2, column3 FROM (VALUES {})",
            rows.join(", ")
        )
    };
    let columns = ["Column", "Type", "Timestream attribute type"]
        .into_iter()
        .map(|n| Column {
            name: n.to_string(),
            ty: Ty::Varchar,
        })
        .collect();
    Ok(CompiledQuery {
        sql,
        params,
        columns,
    })
}

pub fn compile(
    query: &str,
    catalog: &dyn Catalog,
    now_ns: i64,
) -> Result<CompiledQuery, QueryError> {
    if let Some(t) = parse_describe(query)? {
        return describe(&lookup(&t, catalog)?);
    }
    let q = parse(query)?;
    let schema = match &q.from {
        None => None,
        Some(t) => Some(lookup(t, catalog)?),
    };
    let no_cols: Vec<Column> = Vec::new();
    let cols = schema.as_ref().map(|s| &s.columns[..]).unwrap_or(&no_cols);
    let mut cx = Cx {
        cols,
        params: Vec::new(),
        now_ns,
    };
    let mut out = select(&q, &mut cx, schema.as_ref().map(|s| s.relation.as_str()))?;
    out.params = cx.params;
    Ok(out)
}

/// One output column before emission.
struct OutCol {
    name: String,
    expr: Expr,
    t: T,
}

fn select(q: &Select, cx: &mut Cx, relation: Option<&str>) -> Result<CompiledQuery, QueryError> {
    let (outs, aliases) = select_list(q, cx, relation)?;
    if let Some(w) = &q.where_ {
        if let Some(a) = contains_aggregate(w) {
            return Err(verr(
                w.pos(),
                format!(
                    "WHERE clause cannot contain aggregations, window functions or grouping operations: [{}]",
                    a.key()
                ),
            ));
        }
    }
    let group_exprs = group_by_exprs(&q.group_by, &outs)?;
    let select_aggregates = outs.iter().any(|o| contains_aggregate(&o.expr).is_some());
    // HAVING alone makes the query an aggregation (all rows one group), as in Trino.
    let aggregated = !q.group_by.is_empty() || select_aggregates || q.having.is_some();
    let keys: Vec<String> = group_exprs.iter().map(Expr::key).collect();
    if aggregated {
        for o in &outs {
            check_grouped(&o.expr, &keys)?;
        }
    }

    // Clauses are emitted in SQL order: constants are bound as `?n` in the order they appear.
    let mut sql = String::from("SELECT ");
    if q.distinct {
        sql.push_str("DISTINCT ");
    }
    let mut columns = Vec::with_capacity(outs.len());
    for (i, o) in outs.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let s = cx.emit(&o.t);
        sql.push_str(&format!("{s} AS \"_c{i}\""));
        columns.push(Column {
            name: o.name.clone(),
            ty: o.t.ty,
        });
    }
    if aggregated && q.group_by.is_empty() && !select_aggregates {
        // Only HAVING aggregates, but SQLite decides by the select list alone whether a query
        // is an aggregate (and refuses HAVING in one that is not): a trailing count(*) makes
        // it one. No output column maps to it; the query has at most one row.
        sql.push_str(", count(*)");
    }
    if let Some(rel) = relation {
        sql.push_str(&format!(" FROM {rel} AS {TABLE_ALIAS}"));
    }
    if let Some(w) = &q.where_ {
        let s = condition(w, "WHERE", cx)?;
        sql.push_str(&format!(" WHERE {s}"));
    }
    if !group_exprs.is_empty() {
        let mut parts = Vec::new();
        for g in &group_exprs {
            let t = expr(g, cx, false)?;
            parts.push(cx.emit(&t));
        }
        sql.push_str(&format!(" GROUP BY {}", parts.join(", ")));
    }
    if let Some(h) = &q.having {
        if aggregated {
            check_grouped(h, &keys)?;
        }
        let s = condition(h, "HAVING", cx)?;
        sql.push_str(&format!(" HAVING {s}"));
    }
    if !q.order_by.is_empty() {
        let mut parts = Vec::new();
        for item in &q.order_by {
            parts.push(order_item(
                item, q.distinct, &outs, &aliases, cx, aggregated, &keys,
            )?);
        }
        sql.push_str(&format!(" ORDER BY {}", parts.join(", ")));
    }
    if let Some(n) = q.limit {
        sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as u64)));
    }
    Ok(CompiledQuery {
        sql,
        params: Vec::new(),
        columns,
    })
}

/// The select list translated, `*` expanded to the table's columns, with each item's alias
/// (`None` for `*` and unaliased items; ORDER BY may name an alias).
fn select_list(
    q: &Select,
    cx: &mut Cx,
    relation: Option<&str>,
) -> Result<(Vec<OutCol>, Vec<Option<String>>), QueryError> {
    let mut outs: Vec<OutCol> = Vec::new();
    let mut aliases: Vec<Option<String>> = Vec::new();
    for item in &q.items {
        match item {
            SelectItem::Star(pos) => {
                if relation.is_none() {
                    return Err(verr(
                        *pos,
                        "SELECT * not allowed in queries without FROM clause",
                    ));
                }
                for c in cx.cols.iter().cloned() {
                    let e = Expr::Col {
                        name: c.name.clone(),
                        pos: *pos,
                    };
                    let t = T::sql(view_column(&c), c.ty);
                    outs.push(OutCol {
                        name: c.name,
                        expr: e,
                        t,
                    });
                    aliases.push(None);
                }
            }
            SelectItem::Expr { e, alias } => {
                let t = expr(e, cx, false)?;
                let name = match (alias, e) {
                    (Some(a), _) => a.clone(),
                    (None, Expr::Col { name, pos, .. }) => cx.column(name, *pos)?.name.clone(),
                    (None, _) => format!("_col{}", outs.len()),
                };
                outs.push(OutCol {
                    name,
                    expr: e.clone(),
                    t,
                });
                aliases.push(alias.clone());
            }
        }
    }
    Ok((outs, aliases))
}

/// The GROUP BY keys as expressions: an ordinal (`GROUP BY 1`) stands for that select item.
fn group_by_exprs(group_by: &[Expr], outs: &[OutCol]) -> Result<Vec<Expr>, QueryError> {
    let mut group_exprs: Vec<Expr> = Vec::new();
    for g in group_by {
        if let Expr::Lit {
            v: Lit::Int(n),
            pos,
        } = g
        {
            let idx: usize = n.parse().unwrap_or(0);
            if idx == 0 || idx > outs.len() {
                return Err(verr(
                    *pos,
                    format!("GROUP BY position {n} is not in select list"),
                ));
            }
            group_exprs.push(outs[idx - 1].expr.clone());
        } else {
            if let Some(a) = contains_aggregate(g) {
                return Err(verr(
                    g.pos(),
                    format!(
                        "GROUP BY clause cannot contain aggregations or window functions: [{}]",
                        a.key()
                    ),
                ));
            }
            group_exprs.push(g.clone());
        }
    }
    Ok(group_exprs)
}

/// The SQL of a WHERE or HAVING condition, which must be boolean.
fn condition(e: &Expr, clause: &str, cx: &mut Cx) -> Result<String, QueryError> {
    let t = expr(e, cx, false)?;
    if !matches!(t.ty, Ty::Boolean | Ty::Unknown) {
        return Err(verr(
            e.pos(),
            format!(
                "{clause} clause must evaluate to a boolean: actual type {}",
                type_name(t.ty)
            ),
        ));
    }
    Ok(cx.emit(&t))
}

#[allow(clippy::too_many_arguments)]
fn order_item(
    item: &OrderItem,
    distinct: bool,
    outs: &[OutCol],
    aliases: &[Option<String>],
    cx: &mut Cx,
    aggregated: bool,
    keys: &[String],
) -> Result<String, QueryError> {
    let dir = if item.desc { "DESC" } else { "ASC" };
    // Trino sorts NULLs last in both directions unless told otherwise.
    let nulls_first = item.nulls_first.unwrap_or(false);
    let mut target: Option<usize> = None;
    match &item.e {
        Expr::Lit {
            v: Lit::Int(n),
            pos,
        } => {
            let idx: usize = n.parse().unwrap_or(0);
            if idx == 0 || idx > outs.len() {
                return Err(verr(
                    *pos,
                    format!("ORDER BY position {n} is not in select list"),
                ));
            }
            target = Some(idx - 1);
        }
        Expr::Col { name, pos, .. } => {
            let hits: Vec<usize> = (0..outs.len())
                .filter(|&i| {
                    aliases[i]
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(name))
                })
                .collect();
            if hits.len() > 1 {
                return Err(verr(*pos, format!("'{name}' is ambiguous")));
            }
            target = hits.first().copied();
        }
        _ => {}
    }
    if target.is_none() {
        let k = item.e.key();
        target = outs.iter().position(|o| o.expr.key() == k);
    }
    if target.is_none() && distinct {
        return Err(verr(
            item.e.pos(),
            "For SELECT DISTINCT, ORDER BY expressions must appear in select list",
        ));
    }
    let (sql, ty, not_null) = match target {
        Some(i) => (
            format!("\"_c{i}\""),
            outs[i].t.ty,
            is_not_null_col(&outs[i].expr),
        ),
        None => {
            if aggregated {
                check_grouped(&item.e, keys)?;
            }
            let t = expr(&item.e, cx, false)?;
            let s = cx.emit(&t);
            (s, t.ty, is_not_null_col(&item.e))
        }
    };
    let _ = ty;
    // Columns that are never NULL keep a plain ORDER BY so SQLite can sort by index.
    if not_null || nulls_first != item.desc {
        Ok(format!("{sql} {dir}"))
    } else {
        Ok(format!(
            "{sql} {dir} NULLS {}",
            if nulls_first { "FIRST" } else { "LAST" }
        ))
    }
}

fn is_not_null_col(e: &Expr) -> bool {
    matches!(e, Expr::Col { name, .. } if name == "time" || name == "measure_name")
}

fn check_grouped(e: &Expr, keys: &[String]) -> Result<(), QueryError> {
    if keys.iter().any(|k| *k == e.key()) {
        return Ok(());
    }
    match e {
        Expr::Func { name, .. } if is_aggregate(name) => Ok(()),
        Expr::Col { name, pos, .. } => Err(verr(
            *pos,
            format!("'{name}' must be an aggregate expression or appear in GROUP BY clause"),
        )),
        _ => e
            .children()
            .into_iter()
            .try_for_each(|c| check_grouped(c, keys)),
    }
}

pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = match s.split_once(' ') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || d == 0 || d > 31 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if super::render::civil_from_days(days) != (y, m, d) {
        return None;
    }
    let mut ns: i64 = 0;
    if let Some(t) = time {
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, b),
            None => (t, ""),
        };
        let mut tp = hms.split(':');
        let h: i64 = tp.next()?.parse().ok()?;
        let mi: i64 = tp.next()?.parse().ok()?;
        let se: i64 = tp.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        if tp.next().is_some() || h > 23 || mi > 59 || se > 59 {
            return None;
        }
        if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let f: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().ok()?
        };
        ns = (h * 3600 + mi * 60 + se) * 1_000_000_000 + f;
    }
    days.checked_mul(86_400_000_000_000)?.checked_add(ns)
}

fn literal(v: &Lit, pos: Pos) -> Result<T, QueryError> {
    Ok(match v {
        Lit::Null => T::c(Value::Null, Ty::Unknown),
        Lit::Bool(b) => T::c(Value::Integer(i64::from(*b)), Ty::Boolean),
        Lit::Int(s) => {
            let i: i64 = s
                .parse()
                .map_err(|_| verr(pos, format!("Invalid numeric literal: {s}")))?;
            let ty = if i32::try_from(i).is_ok() {
                Ty::Integer
            } else {
                Ty::Bigint
            };
            T::c(Value::Integer(i), ty)
        }
        Lit::Decimal(s) => {
            let f: f64 = s
                .parse()
                .map_err(|_| verr(pos, format!("Invalid numeric literal: {s}")))?;
            if !f.is_finite() {
                return Err(verr(pos, format!("Invalid numeric literal: {s}")));
            }
            T::c(Value::Real(f), Ty::Double)
        }
        Lit::Str(s) => T::c(Value::Text(s.clone()), Ty::Varchar),
        Lit::Interval(ns) => T::c(Value::Integer(*ns), Ty::IntervalDayToSecond),
        Lit::Timestamp(s) => {
            let ns = parse_timestamp(s)
                .ok_or_else(|| verr(pos, format!("Value cannot be cast to timestamp: {s}")))?;
            T::c(Value::Integer(ns), Ty::Timestamp)
        }
    })
}

fn cannot_apply(pos: Pos, op: &str, a: Ty, b: Ty) -> QueryError {
    verr(
        pos,
        format!(
            "'{op}' cannot be applied to {}, {}",
            type_name(a),
            type_name(b)
        ),
    )
}

fn overflow(pos: Pos) -> QueryError {
    verr(pos, "Numeric value out of range")
}

fn expr(e: &Expr, cx: &mut Cx, in_agg: bool) -> Result<T, QueryError> {
    let t = expr_inner(e, cx, in_agg)?;
    // Timestream rejects any operation that produces a time before 1970.
    if t.ty == Ty::Timestamp && t.int().is_some_and(|v| v < 0) {
        return Err(verr(e.pos(), "Negative timestamps are not supported"));
    }
    Ok(t)
}

fn expr_inner(e: &Expr, cx: &mut Cx, in_agg: bool) -> Result<T, QueryError> {
    // Children first, then a non-recursive combine step: keeps the per-level stack small.
    let child_agg = in_agg || matches!(e, Expr::Func { name, .. } if is_aggregate(name));
    let children = e.children();
    let mut kids = Vec::with_capacity(children.len());
    for c in children {
        kids.push(expr(c, cx, child_agg)?);
    }
    combine(e, kids, cx, in_agg)
}

/// The translated children of one node, handed out in the order of [`Expr::children`].
struct Operands(std::vec::IntoIter<T>);

impl Operands {
    fn next(&mut self) -> Result<T, QueryError> {
        self.0
            .next()
            .ok_or_else(|| QueryError::Internal("translator: operand missing".into()))
    }

    /// The next operand if the node has this optional part (a CASE operand, an ESCAPE).
    fn next_if(&mut self, present: bool) -> Result<Option<T>, QueryError> {
        present.then(|| self.next()).transpose()
    }
}

/// One node, given its translated children: type checks, constant folding and SQL.
#[inline(never)]
fn combine(e: &Expr, kids: Vec<T>, cx: &mut Cx, in_agg: bool) -> Result<T, QueryError> {
    let mut kids = Operands(kids.into_iter());
    match e {
        Expr::Col { name, pos, .. } => {
            let c = cx.column(name, *pos)?;
            Ok(T::sql(view_column(c), c.ty))
        }
        Expr::Lit { v, pos } => literal(v, *pos),
        Expr::Neg { pos, .. } => negate(kids.next()?, *pos, cx),
        Expr::Not { pos, .. } => {
            let t = kids.next()?;
            boolean_operand(&t, *pos, "NOT")?;
            let s = cx.emit(&t);
            Ok(T::sql(format!("(NOT {s})"), Ty::Boolean))
        }
        Expr::Bin { op, pos, .. } => {
            let a = kids.next()?;
            let b = kids.next()?;
            binary(*op, a, b, *pos, cx)
        }
        Expr::Between { neg, pos, .. } => {
            let t = kids.next()?;
            let low = kids.next()?;
            let high = kids.next()?;
            between(t, low, high, *neg, *pos, cx)
        }
        Expr::In { list, neg, pos, .. } => {
            let t = kids.next()?;
            let items = list.iter().map(|_| kids.next()).collect::<Result<_, _>>()?;
            in_list(t, items, *neg, *pos, cx)
        }
        Expr::IsNull { neg, .. } => {
            let t = kids.next()?;
            let s = cx.emit(&t);
            let not = if *neg { "NOT " } else { "" };
            Ok(T::sql(format!("({s} IS {not}NULL)"), Ty::Boolean))
        }
        Expr::Like { esc, neg, pos, .. } => {
            let t = kids.next()?;
            let pattern = kids.next()?;
            let escape = kids.next_if(esc.is_some())?;
            like(t, pattern, escape, *neg, *pos, cx)
        }
        Expr::Func {
            name,
            args,
            distinct,
            star,
            pos,
        } => {
            let a: Vec<T> = args.iter().map(|_| kids.next()).collect::<Result<_, _>>()?;
            let call = calls::Call {
                name,
                distinct: *distinct,
                star: *star,
                pos: *pos,
            };
            calls::translate(&call, a, cx, in_agg)
        }
        Expr::Case {
            operand,
            whens,
            else_,
            pos,
        } => {
            let operand = kids.next_if(operand.is_some())?;
            let arms = whens
                .iter()
                .map(|(w, _)| Ok((w.pos(), kids.next()?, kids.next()?)))
                .collect::<Result<_, QueryError>>()?;
            let else_ = kids.next_if(else_.is_some())?;
            case(operand, arms, else_, *pos, cx)
        }
        Expr::Cast { ty, pos, .. } => cast(kids.next()?, *ty, *pos, cx),
    }
}

/// Unary minus; constants fold (an overflowing `-(-9223372036854775808)` is an error).
fn negate(t: T, pos: Pos, cx: &mut Cx) -> Result<T, QueryError> {
    if !(is_numeric(t.ty) || t.ty == Ty::IntervalDayToSecond || t.ty == Ty::Unknown) {
        return Err(verr(
            pos,
            format!("'-' cannot be applied to {}", type_name(t.ty)),
        ));
    }
    match t.s {
        S::Const(Value::Integer(i)) => Ok(T::c(
            Value::Integer(i.checked_neg().ok_or_else(|| overflow(pos))?),
            t.ty,
        )),
        S::Const(Value::Real(f)) => Ok(T::c(Value::Real(-f), t.ty)),
        _ => {
            let s = cx.emit(&t);
            Ok(T::sql(format!("(-{s})"), t.ty))
        }
    }
}

fn between(t: T, low: T, high: T, neg: bool, pos: Pos, cx: &mut Cx) -> Result<T, QueryError> {
    for o in [&low, &high] {
        if common(t.ty, o.ty).is_none() {
            return Err(cannot_apply(pos, "BETWEEN", t.ty, o.ty));
        }
    }
    let (ts, ls, hs) = (cx.emit(&t), cx.emit(&low), cx.emit(&high));
    let not = if neg { "NOT " } else { "" };
    Ok(T::sql(
        format!("({ts} {not}BETWEEN {ls} AND {hs})"),
        Ty::Boolean,
    ))
}

fn in_list(t: T, items: Vec<T>, neg: bool, pos: Pos, cx: &mut Cx) -> Result<T, QueryError> {
    for v in &items {
        if common(t.ty, v.ty).is_none() {
            return Err(cannot_apply(pos, "IN", t.ty, v.ty));
        }
    }
    let ts = cx.emit(&t);
    let vs: Vec<String> = items.iter().map(|v| cx.emit(v)).collect();
    let not = if neg { "NOT " } else { "" };
    Ok(T::sql(
        format!("({ts} {not}IN ({}))", vs.join(", ")),
        Ty::Boolean,
    ))
}

/// `LIKE` runs as `ts_like` (SQLite's LIKE folds ASCII case; Trino's does not). A constant
/// pattern is checked here, so a bad pattern or escape fails the query, not each row.
fn like(
    t: T,
    pattern: T,
    escape: Option<T>,
    neg: bool,
    pos: Pos,
    cx: &mut Cx,
) -> Result<T, QueryError> {
    for o in std::iter::once(&t)
        .chain(std::iter::once(&pattern))
        .chain(escape.iter())
    {
        if !matches!(o.ty, Ty::Varchar | Ty::Unknown) {
            return Err(cannot_apply(pos, "LIKE", t.ty, o.ty));
        }
    }
    if let Some(ps) = pattern.text() {
        // A run-time escape (not a constant) is left to `ts_like`, as is an absent one.
        let esc_char = escape.as_ref().and_then(T::text);
        super::functions::like_regex(ps, esc_char).map_err(|m| verr(pos, m))?;
    }
    let mut args = vec![cx.emit(&t), cx.emit(&pattern)];
    if let Some(es) = &escape {
        args.push(cx.emit(es));
    }
    let not = if neg { "NOT " } else { "" };
    Ok(T::sql(
        format!("({not}ts_like({}))", args.join(", ")),
        Ty::Boolean,
    ))
}

/// `CASE [operand] WHEN … THEN … [ELSE …] END`. `arms`: each WHEN's position, its condition
/// (or the value compared with the operand) and its result. All results share one type.
fn case(
    operand: Option<T>,
    arms: Vec<(Pos, T, T)>,
    else_: Option<T>,
    pos: Pos,
    cx: &mut Cx,
) -> Result<T, QueryError> {
    let mixed = |t: &T| {
        verr(
            pos,
            format!(
                "All CASE results must be the same type: {}",
                type_name(t.ty)
            ),
        )
    };
    let mut ty = Ty::Unknown;
    for (when_pos, when, then) in &arms {
        match &operand {
            Some(o) => {
                if common(o.ty, when.ty).is_none() {
                    return Err(cannot_apply(*when_pos, "=", o.ty, when.ty));
                }
            }
            None => boolean_operand(when, *when_pos, "WHEN")?,
        }
        ty = common(ty, then.ty).ok_or_else(|| mixed(then))?;
    }
    if let Some(x) = &else_ {
        ty = common(ty, x.ty).ok_or_else(|| mixed(x))?;
    }
    let mut s = String::from("(CASE");
    if let Some(o) = &operand {
        s += &format!(" {}", cx.emit(o));
    }
    for (_, when, then) in &arms {
        let (ws, ts) = (cx.emit(when), cx.emit(then));
        s += &format!(" WHEN {ws} THEN {ts}");
    }
    if let Some(x) = &else_ {
        s += &format!(" ELSE {}", cx.emit(x));
    }
    s += " END)";
    Ok(T::sql(s, ty))
}

fn boolean_operand(t: &T, pos: Pos, what: &str) -> Result<(), QueryError> {
    if matches!(t.ty, Ty::Boolean | Ty::Unknown) {
        Ok(())
    } else {
        Err(verr(
            pos,
            format!("{what} operand must be boolean, got {}", type_name(t.ty)),
        ))
    }
}

fn cast(t: T, to: Ty, pos: Pos, cx: &mut Cx) -> Result<T, QueryError> {
    if t.ty == to || t.ty == Ty::Unknown {
        let s = cx.emit(&t);
        return Ok(T::sql(s, to));
    }
    let ok = match to {
        Ty::Varchar => !matches!(t.ty, Ty::IntervalDayToSecond),
        Ty::Double | Ty::Bigint | Ty::Integer => {
            is_numeric(t.ty) || matches!(t.ty, Ty::Varchar | Ty::Boolean)
        }
        Ty::Boolean => is_numeric(t.ty) || t.ty == Ty::Varchar,
        Ty::Timestamp => t.ty == Ty::Varchar,
        _ => false,
    };
    if !ok {
        return Err(verr(
            pos,
            format!("Cannot cast {} to {}", type_name(t.ty), type_name(to)),
        ));
    }
    let s = cx.emit(&t);
    let (from, to_s) = (
        cx.emit(&T::c(Value::Text(t.ty.as_str().into()), Ty::Varchar)),
        cx.emit(&T::c(Value::Text(to.as_str().into()), Ty::Varchar)),
    );
    Ok(T::sql(format!("ts_cast({s}, {from}, {to_s})"), to))
}

fn binary(op: BinOp, a: T, b: T, pos: Pos, cx: &mut Cx) -> Result<T, QueryError> {
    let sym = op.symbol();
    match op {
        BinOp::And | BinOp::Or => {
            if !matches!(a.ty, Ty::Boolean | Ty::Unknown)
                || !matches!(b.ty, Ty::Boolean | Ty::Unknown)
            {
                return Err(cannot_apply(pos, sym, a.ty, b.ty));
            }
            let (x, y) = (cx.emit(&a), cx.emit(&b));
            Ok(T::sql(format!("({x} {sym} {y})"), Ty::Boolean))
        }
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let shown = if op == BinOp::Ne { "<>" } else { sym };
            if common(a.ty, b.ty).is_none() {
                return Err(cannot_apply(pos, shown, a.ty, b.ty));
            }
            let (x, y) = (cx.emit(&a), cx.emit(&b));
            Ok(T::sql(format!("({x} {shown} {y})"), Ty::Boolean))
        }
        BinOp::Concat => {
            if !matches!(a.ty, Ty::Varchar | Ty::Unknown)
                || !matches!(b.ty, Ty::Varchar | Ty::Unknown)
            {
                return Err(cannot_apply(pos, sym, a.ty, b.ty));
            }
            if let (Some(x), Some(y)) = (a.text(), b.text()) {
                return Ok(T::c(Value::Text(format!("{x}{y}")), Ty::Varchar));
            }
            let (x, y) = (cx.emit(&a), cx.emit(&b));
            Ok(T::sql(format!("({x} || {y})"), Ty::Varchar))
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => arith(op, a, b, pos, cx),
    }
}

fn arith(op: BinOp, a: T, b: T, pos: Pos, cx: &mut Cx) -> Result<T, QueryError> {
    use Ty::{IntervalDayToSecond as Iv, Timestamp as Ts};
    let sym = op.symbol();
    let ty = match (op, a.ty, b.ty) {
        (_, x, y) if is_numeric(x) && is_numeric(y) => common(x, y).unwrap_or(Ty::Double),
        (BinOp::Add, Ts, Iv) | (BinOp::Add, Iv, Ts) | (BinOp::Sub, Ts, Iv) => Ts,
        (BinOp::Sub, Ts, Ts) => Iv,
        (BinOp::Add | BinOp::Sub, Iv, Iv) => Iv,
        (BinOp::Mul, Iv, y) if is_integral(y) => Iv,
        (BinOp::Mul, x, Iv) if is_integral(x) => Iv,
        (BinOp::Div, Iv, y) if is_integral(y) => Iv,
        (_, Ty::Unknown, y) if is_numeric(y) || y == Iv || y == Ts => y,
        (_, x, Ty::Unknown) if is_numeric(x) || x == Iv || x == Ts => x,
        (_, Ty::Unknown, Ty::Unknown) => Ty::Unknown,
        _ => return Err(cannot_apply(pos, sym, a.ty, b.ty)),
    };
    if a.is_null() || b.is_null() {
        return Ok(T::c(Value::Null, ty));
    }
    let integral = !matches!(ty, Ty::Double) && a.ty != Ty::Double && b.ty != Ty::Double;
    // Fold constants (so `now() - 1h` becomes one parameter).
    if integral {
        if let (Some(x), Some(y)) = (a.int(), b.int()) {
            let v = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div | BinOp::Mod => {
                    if y == 0 {
                        return Err(verr(pos, "Division by zero"));
                    }
                    if op == BinOp::Div {
                        x.checked_div(y)
                    } else {
                        x.checked_rem(y)
                    }
                }
                _ => None,
            };
            let v = v.ok_or_else(|| overflow(pos))?;
            if ty == Ty::Integer && i32::try_from(v).is_err() {
                return Err(verr(pos, "integer arithmetic overflow"));
            }
            return Ok(T::c(Value::Integer(v), ty));
        }
    } else if let (Some(x), Some(y)) = (a.num(), b.num()) {
        let v = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
            _ => x % y,
        };
        // SQLite cannot carry NaN; fall back to run-time evaluation for it.
        if !v.is_nan() {
            return Ok(T::c(Value::Real(v), Ty::Double));
        }
    }
    let (x, y) = (cx.emit(&a), cx.emit(&b));
    Ok(T::sql(
        match op {
            BinOp::Mod if !integral => format!("ts_mod({x}, {y})"),
            BinOp::Div if integral => format!("ts_idiv({x}, {y})"),
            BinOp::Mod if integral => format!("ts_imod({x}, {y})"),
            _ => format!("({x} {sym} {y})"),
        },
        ty,
    ))
}
