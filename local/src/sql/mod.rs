//! Timestream SQL engine: parses the Timestream (Trino-derived) dialect, checks names and types
//! against the store's catalog and emits an SQLite query over the table's view.
//!
//! Supported: `SELECT [DISTINCT] *|expr [AS alias], ... [FROM "db"."table" [alias]]
//! [WHERE ..] [GROUP BY expr|ordinal, ..] [HAVING ..] [ORDER BY expr|alias|ordinal
//! [ASC|DESC] [NULLS FIRST|LAST], ..] [LIMIT n|ALL]`; operators `= <> != < > <= >=`, `AND OR NOT`,
//! `+ - * / % ||`, `[NOT] BETWEEN`, `[NOT] IN (..)`, `IS [NOT] NULL`, `[NOT] LIKE .. [ESCAPE ..]`,
//! `CASE`, `CAST`; literals (strings with `''`, numbers, `TRUE/FALSE/NULL`, `TIMESTAMP '..'`,
//! `INTERVAL '5' MINUTE`, `1h`/`10ms`/...); `measure_value::<type>` bare or quoted; aggregates
//! count/sum/avg/min/max (incl. DISTINCT); time functions now/current_timestamp, ago, bin,
//! date_trunc, date_add, date_diff, from_/to_milliseconds, from_/to_nanoseconds,
//! from_/to_unixtime, parse_duration, calendar fields (year..millisecond); regexp_like with
//! java.util.regex semantics (see `javaregex`); coalesce, greatest, least, abs, round, floor,
//! ceil, sqrt, ln, exp, length, lower, upper, concat.
//!
//! Semantics kept from Trino: integer literals are INTEGER, decimals DOUBLE; `/` on integers
//! truncates and fails on zero; NULLs sort last; LIKE is case-sensitive; unaliased expressions
//! are named `_colN`. Every literal reaches SQLite as a bound parameter; constant time
//! expressions (`from_milliseconds(..)`, `now() - 1h`, `ago(..)`) are folded so `time` is compared
//! as a plain column against constants and SQLite can use the indexes.
//! Not supported (Validation error): joins, subqueries, WITH, set operations, window functions,
//! SHOW statements (parsed only to authorize them).

mod functions;
mod javaregex;
mod lexer;
mod parser;
mod render;
mod translate;

#[cfg(test)]
mod tests;

pub use render::render;

/// Timestream `ColumnInfo.Type.ScalarType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    Varchar,
    Double,
    Bigint,
    Boolean,
    Timestamp,
    Date,
    Time,
    IntervalDayToSecond,
    IntervalYearToMonth,
    Integer,
    Unknown,
}

impl ScalarType {
    /// The wire name, as in `ColumnInfo.Type.ScalarType`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScalarType::Varchar => "VARCHAR",
            ScalarType::Double => "DOUBLE",
            ScalarType::Bigint => "BIGINT",
            ScalarType::Boolean => "BOOLEAN",
            ScalarType::Timestamp => "TIMESTAMP",
            ScalarType::Date => "DATE",
            ScalarType::Time => "TIME",
            ScalarType::IntervalDayToSecond => "INTERVAL_DAY_TO_SECOND",
            ScalarType::IntervalYearToMonth => "INTERVAL_YEAR_TO_MONTH",
            ScalarType::Integer => "INTEGER",
            ScalarType::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ScalarType,
}

/// What the store tells the engine about one Timestream table.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// SQLite relation (a view) exposing the table, safe to paste into SQL as-is (e.g. `"v_12"`).
    pub relation: String,
    /// Columns in Timestream's `SELECT *` order: dimensions (order of first appearance), then
    /// `measure_name`, `time`, then the measure value columns ever written.
    pub columns: Vec<Column>,
}

pub trait Catalog {
    fn table(&self, database: &str, table: &str) -> Result<TableSchema, CatalogError>;
}

#[derive(Debug)]
pub enum CatalogError {
    DatabaseNotFound,
    TableNotFound,
    Internal(String),
}

#[derive(Debug)]
pub struct CompiledQuery {
    /// SQLite SELECT.
    pub sql: String,
    /// Bound positionally (?1, ?2, ...).
    pub params: Vec<rusqlite::types::Value>,
    /// Result ColumnInfo, in order.
    pub columns: Vec<Column>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Timestream answers these as ValidationException (HTTP 400) with exactly this message,
    /// e.g. "line 1:52: Column 'foo' does not exist".
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Internal(String),
}

/// Cell value in Timestream's wire format: `{"ScalarValue": s}` or `{"NullValue": true}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Scalar(String),
    Null,
}

/// Compiles a Timestream query. `now_ns`: the query's evaluation instant (for now()/ago()),
/// nanoseconds since the epoch.
pub fn compile(
    query: &str,
    catalog: &dyn Catalog,
    now_ns: i64,
) -> Result<CompiledQuery, QueryError> {
    translate::compile(query, catalog, now_ns)
}

/// The kind of a statement and the resource it names, for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `SELECT … FROM db.table` (`Some`) or a SELECT of values only (`None`).
    Select(Option<(String, String)>),
    Describe(String, String),
    ShowDatabases,
    ShowTables(Option<String>),
    ShowMeasures(String, String),
}

/// Classifies a query without compiling it (no catalog needed).
pub fn statement(query: &str) -> Result<Statement, QueryError> {
    if let Some(t) = parser::parse_describe(query)? {
        let db = t
            .database
            .ok_or_else(|| QueryError::Validation("DESCRIBE needs database.table".into()))?;
        return Ok(Statement::Describe(db, t.table));
    }
    if let Some(s) = parser::parse_show(query)? {
        return Ok(match s {
            parser::Show::Databases => Statement::ShowDatabases,
            parser::Show::Tables(d) => Statement::ShowTables(d),
            parser::Show::Measures(d, t) => Statement::ShowMeasures(d, t),
        });
    }
    let q = parser::parse(query)?;
    match q.from {
        None => Ok(Statement::Select(None)),
        Some(t) => {
            let db = t.database.ok_or_else(|| {
                QueryError::Validation(
                    "Schema must be specified when session schema is not set".into(),
                )
            })?;
            Ok(Statement::Select(Some((db, t.table))))
        }
    }
}

/// Classifies an error SQLite raised while running compiled SQL: failures caused by the query
/// or its data (division by zero, a failed CAST, an invalid run-time regex, integer overflow in
/// `sum`) are the caller's fault and come back as `Validation` with the engine's message, as
/// Timestream answers them with a 4xx; anything else is `Internal`.
pub fn runtime_error(e: &rusqlite::Error) -> QueryError {
    const USER: &[&str] = &[
        "Division by zero",
        "Cannot cast",
        "Out of range",
        "Value cannot be cast",
        "Invalid regex pattern",
        "Escape ",
        "bigint division overflow",
        "integer overflow",
        "Invalid duration",
    ];
    let msg = match e {
        rusqlite::Error::UserFunctionError(m) => Some(m.to_string()),
        rusqlite::Error::SqliteFailure(_, Some(m)) => Some(m.clone()),
        _ => None,
    };
    match msg {
        Some(m)
            if USER.iter().any(|p| m.starts_with(p))
                || m.contains("is not a valid Timestamp field") =>
        {
            QueryError::Validation(m)
        }
        _ => QueryError::Internal(e.to_string()),
    }
}

/// The name under which the store's view exposes the Timestream column `name`.
///
/// Timestream keeps column names apart case-sensitively (its quotas page: column names are
/// unique across dimensions and measures, compared case-sensitively), but SQLite resolves
/// identifiers ASCII-case-insensitively: a view with columns `"Label"` and `"label"` would
/// answer both names with one of them. This encoding is injective even after ASCII case
/// folding and keeps the name readable: every ASCII capital is preceded by `^` and a `^` is
/// doubled (`Label` → `^Label`, `a^b` → `a^^b`); a name without capitals or `^` is unchanged.
/// Folding `^Label` gives `^label`, which still says where the capital was, so two distinct
/// Timestream names never meet in SQLite.
pub fn storage_name(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.bytes().any(|b| b.is_ascii_uppercase() || b == b'^') {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() || c == '^' {
            out.push('^');
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// Registers the SQLite functions compiled SQL may call. The store calls it on every connection.
pub fn register_functions(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    functions::register(conn)
}
