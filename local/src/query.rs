//! Query execution and pagination.
//!
//! A query runs once; its rendered rows are kept (as serialized JSON rows) in a bounded cache keyed
//! by NextToken so that later pages never re-run the statement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::sql;
use crate::store::{now_ns, Store};

const PAGE_BYTES: usize = 1 << 20;
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Upper bound of rendered result bytes kept for pagination across all open queries.
const CACHE_BYTES: usize = 1 << 30;
const MAX_QUERY_LEN: usize = 256 * 1024;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct QueryIn {
    pub query_string: Option<String>,
    /// Accepted for wire compatibility; idempotency by token is not modelled.
    #[allow(dead_code)]
    pub client_token: Option<String>,
    pub next_token: Option<String>,
    pub max_rows: Option<i64>,
}

struct Result_ {
    query_id: String,
    query_string: String,
    columns: Value,
    rows: Vec<String>,
    bytes: usize,
}

struct Cursor {
    result: Arc<Result_>,
    pos: usize,
    created: Instant,
}

#[derive(Default)]
pub struct QueryCache {
    cursors: Mutex<HashMap<String, Cursor>>,
}

fn new_id() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..26)
        .map(|_| A[rand::random_range(0..A.len())] as char)
        .collect()
}

impl QueryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cursor>> {
        self.cursors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a token for `result` continuing at `pos`. `served` is where the page just served
    /// started: tokens for earlier pages of the same result are dropped (the one just used stays
    /// valid so that a retried request gets the same page).
    fn insert(&self, result: Arc<Result_>, pos: usize, served: usize) -> String {
        let token = format!("{}-{}", new_id(), uuid::Uuid::new_v4().simple());
        let mut c = self.lock();
        let now = Instant::now();
        c.retain(|_, cur| {
            now.duration_since(cur.created) < TOKEN_TTL
                && !(Arc::ptr_eq(&cur.result, &result) && cur.pos < served)
        });
        // Evict the oldest results while the distinct cached results exceed the budget.
        loop {
            let mut seen: HashMap<*const Result_, (usize, Instant)> = HashMap::new();
            for cur in c.values() {
                let e = seen
                    .entry(Arc::as_ptr(&cur.result))
                    .or_insert((cur.result.bytes, cur.created));
                e.1 = e.1.max(cur.created);
            }
            let total: usize = seen.values().map(|(b, _)| *b).sum();
            if total + result.bytes <= CACHE_BYTES || seen.is_empty() {
                break;
            }
            let oldest = seen
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(p, _)| *p)
                .expect("not empty");
            c.retain(|_, cur| Arc::as_ptr(&cur.result) != oldest);
        }
        c.insert(
            token.clone(),
            Cursor {
                result,
                pos,
                created: now,
            },
        );
        token
    }

    pub fn cancel(&self, query_id: &str) -> bool {
        let mut c = self.lock();
        let before = c.len();
        c.retain(|_, cur| cur.result.query_id != query_id);
        before != c.len()
    }
}

/// Runs (or continues) a query. Blocking: call from a blocking thread.
pub fn run(store: &Store, cache: &QueryCache, req: QueryIn) -> Result<String, ApiError> {
    let qs = req
        .query_string
        .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'queryString' failed to satisfy constraint: Member must not be null"))?;
    if qs.len() > MAX_QUERY_LEN {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'queryString' failed to satisfy constraint: Member must have length less than or equal to {MAX_QUERY_LEN}"
        )));
    }
    if qs.trim().is_empty() {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'queryString' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if let Some(m) = req.max_rows {
        if !(1..=1000).contains(&m) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{m}' at 'maxRows' failed to satisfy constraint: Member must have value between 1 and 1000"
            )));
        }
    }
    let max_rows = req.max_rows.map(|m| m as usize);
    let (result, pos) = match &req.next_token {
        Some(tok) => {
            let c = cache.lock();
            let cur = c
                .get(tok)
                .filter(|cur| cur.created.elapsed() < TOKEN_TTL)
                .ok_or_else(|| ApiError::validation("Invalid pagination token."))?;
            if cur.result.query_string != qs {
                return Err(ApiError::validation(
                    "Invalid pagination token: the query string differs from the one the token was issued for.",
                ));
            }
            (cur.result.clone(), cur.pos)
        }
        None => (Arc::new(execute(store, &qs)?), 0),
    };
    // Page: at most max_rows rows and about 1 MB (always at least one row when rows remain).
    let mut end = pos;
    let mut bytes = 0;
    while end < result.rows.len() {
        if max_rows.is_some_and(|m| end - pos >= m) {
            break;
        }
        let b = result.rows[end].len() + 1;
        if end > pos && bytes + b > PAGE_BYTES {
            break;
        }
        bytes += b;
        end += 1;
    }
    let next_token = if end < result.rows.len() {
        Some(cache.insert(result.clone(), end, pos))
    } else {
        None
    };
    // Rows are already JSON: splice them into the body instead of building a Value tree.
    let status = json!({
        "ProgressPercentage": if next_token.is_some() { (end as f64) * 100.0 / (result.rows.len() as f64) } else { 100.0 },
        "CumulativeBytesScanned": result.bytes as i64,
        // Timestream meters at least 10 MB per query.
        "CumulativeBytesMetered": (result.bytes as i64).max(10_000_000),
    });
    let mut body = String::with_capacity(bytes + 512);
    body.push_str("{\"QueryId\":");
    body.push_str(&Value::String(result.query_id.clone()).to_string());
    body.push_str(",\"Rows\":[");
    body.push_str(&result.rows[pos..end].join(","));
    body.push_str("],\"ColumnInfo\":");
    body.push_str(&result.columns.to_string());
    body.push_str(",\"QueryStatus\":");
    body.push_str(&status.to_string());
    if let Some(t) = next_token {
        body.push_str(",\"NextToken\":");
        body.push_str(&Value::String(t).to_string());
    }
    body.push('}');
    Ok(body)
}

fn execute(store: &Store, qs: &str) -> Result<Result_, ApiError> {
    let compiled = {
        let cat = store.catalog.read().unwrap_or_else(|e| e.into_inner());
        sql::compile(qs, &*cat, now_ns())
    }
    .map_err(|e| match e {
        sql::QueryError::Validation(m) => ApiError::validation(m),
        sql::QueryError::Internal(m) => ApiError::internal(m),
    })?;
    let conn = store.reader()?;
    let r = collect(&conn, qs, &compiled);
    store.give_back(conn);
    r
}

fn collect(
    conn: &rusqlite::Connection,
    qs: &str,
    compiled: &sql::CompiledQuery,
) -> Result<Result_, ApiError> {
    // Failures the query itself causes (division by zero, a bad CAST, a run-time regex)
    // are the caller's fault: Timestream answers them as ValidationException.
    let map_err = |e: rusqlite::Error| match sql::runtime_error(&e) {
        sql::QueryError::Validation(m) => ApiError::validation(m),
        sql::QueryError::Internal(_) => {
            tracing::warn!(error = %e, "query failed in SQLite");
            ApiError::internal(format!("The query failed: {e}"))
        }
    };
    let mut st = conn.prepare(&compiled.sql).map_err(map_err)?;
    let mut rows = st
        .query(rusqlite::params_from_iter(compiled.params.iter()))
        .map_err(map_err)?;
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut buf = String::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        buf.clear();
        buf.push_str("{\"Data\":[");
        for (i, col) in compiled.columns.iter().enumerate() {
            if i > 0 {
                buf.push(',');
            }
            let v = row.get_ref(i).map_err(map_err)?;
            match sql::render(col.ty, v) {
                sql::Datum::Null => buf.push_str("{\"NullValue\":true}"),
                sql::Datum::Scalar(s) => {
                    buf.push_str("{\"ScalarValue\":");
                    buf.push_str(&serde_json::to_string(&s).unwrap_or_else(|_| "\"\"".into()));
                    buf.push('}');
                }
            }
        }
        buf.push_str("]}");
        total += buf.len();
        if total > CACHE_BYTES {
            // Results are kept whole for pagination; refuse rather than exhaust memory.
            return Err(ApiError {
                code: "QueryExecutionException",
                status: 400,
                message: format!(
                    "The query result exceeds the {} MiB timestream-local keeps per query; narrow the query.",
                    CACHE_BYTES >> 20
                ),
                extra: None,
            });
        }
        out.push(buf.clone());
    }
    let columns: Vec<Value> = compiled
        .columns
        .iter()
        .map(|c| json!({"Name": c.name, "Type": {"ScalarType": c.ty.as_str()}}))
        .collect();
    Ok(Result_ {
        query_id: new_id(),
        query_string: qs.to_string(),
        columns: Value::Array(columns),
        rows: out,
        bytes: total,
    })
}
