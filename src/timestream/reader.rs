//! The AWS side of remote read: the per-table column cache, routing a query to
//! its table, running the planned SQL with pagination to the end, and feeding
//! rows to the groupers of `crate::read::assemble`.
//!
//! Column cache: the dimension columns of each table, from `DESCRIBE` (or, where
//! DESCRIBE is not understood or not allowed, the ColumnInfo of `SELECT * … LIMIT 0`;
//! a refusal is remembered per table and identity). It is
//! refreshed when older than [`COLUMNS_TTL`], when Timestream says a selected
//! column does not exist, and on demand when a matcher names a label the cache
//! does not know: a matcher on an unknown label is decided locally (`l="x"` selects
//! nothing, `l!=""` becomes "absent"), so that decision must not rest on a list
//! fetched before the label's first write. On-demand refreshes are rate-limited
//! per table to one per [`MIN_REFRESH`] (a label that never exists cannot buy a
//! DESCRIBE per query) and only that: the first fill or a TTL refresh a moment ago
//! does not delay one. One refresh per table runs at a time; queries waiting for
//! it use its result instead of fetching again.
//!
//! Special values (`crate::special`): a table that holds them has the `__name__` dimension.
//! It is not a label column: the planner adds the special-value rows to the query instead,
//! and only then, so a table without the column (upstream-written, or no NaN yet) is read
//! exactly as before. Writes in this process note the tables they gave special values, so
//! the first one is seen at once, not after the cache expires.

use std::collections::HashSet;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_timestreamquery::operation::query::QueryOutput;
use aws_sdk_timestreamquery::types::Row;
use aws_sdk_timestreamquery::Client;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;

use crate::histogram;
use crate::read::assemble::{Grouper, Layout, OrderedGrouper};
use crate::read::error::ReadError;
use crate::read::regex::RegexOptions;
use crate::read::sql::{self, Order, Plan, PlanOptions, METRIC_NAME_LABEL};
use crate::remote::chunked::FrameBuilder;
use crate::remote::pb::{label_matcher::Type as MatcherType, Query, QueryResult};
use crate::special;
use crate::timestream::client::CredentialKey;
use crate::timestream::error::classify;

/// Column lists older than this are fetched again before use.
pub const COLUMNS_TTL: Duration = Duration::from_secs(60);
/// Least time between two on-demand refreshes of one table's columns.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Tables whose columns are kept (the cache is cleared when it is full).
const MAX_TABLES: usize = 4096;
/// Samples of one series held before they are sent as chunks (streamed mode).
const SEGMENT_SAMPLES: usize = 120 * 8;

/// Where reads go and how matchers are evaluated.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub default_database: String,
    pub default_table: String,
    pub database_label: Option<String>,
    pub table_label: Option<String>,
    pub regex: RegexOptions,
    /// Most samples per request (0 = unlimited).
    pub max_samples: u64,
}

/// The samples one read request may still return, shared by all its queries (issue 13:
/// each query of a SAMPLES read once had the whole `--read.max-samples` to itself, so a
/// request of 1,000 queries could hold 1,000 × the cap). Taken as rows arrive, before
/// they are grouped, so no more than the cap is ever held.
#[derive(Debug)]
pub struct SampleBudget {
    max: u64,
    used: std::sync::atomic::AtomicU64,
}

impl SampleBudget {
    /// A budget of `max` samples (0 = unlimited).
    pub fn new(max: u64) -> SampleBudget {
        SampleBudget {
            max,
            used: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes `n` samples; an error once the request's total passes the cap.
    pub fn take(&self, n: u64) -> Result<(), ReadError> {
        if self.max == 0 {
            return Ok(());
        }
        let before = self.used.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if before.saturating_add(n) > self.max {
            return Err(too_many(self.max));
        }
        Ok(())
    }

    /// Returns samples taken by an attempt whose rows were dropped (a re-planned query).
    pub fn give_back(&self, n: u64) {
        if self.max > 0 {
            self.used.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Samples taken so far.
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Counts Query pages (the upstream `timestream_connector_read_requests_total`).
pub type PageCounter = prometheus::IntCounter;

#[derive(Clone)]
struct Columns {
    dims: Arc<BTreeSet<String>>,
    /// When the fetch that produced `dims` started (anything written before is in it).
    fetched: Instant,
}

/// One table's cache entry.
#[derive(Default)]
struct Entry {
    columns: Option<Columns>,
    /// Start of the last refresh made because a matcher named an unknown label.
    last_on_demand: Option<Instant>,
    /// Held while the table's columns are being fetched.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// DESCRIBE was refused (AccessDenied: the policy grants `Select` but not
    /// `DescribeTable`): columns come from `SELECT * … LIMIT 0` without asking again.
    describe_refused: bool,
}

/// (scope, credential, database, table).
type CacheKey = (usize, CredentialKey, String, String);

fn cache() -> &'static Mutex<HashMap<CacheKey, Entry>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Entry>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// (database, table) pairs this process wrote special values to.
fn special_tables() -> &'static Mutex<HashSet<(String, String)>> {
    static TABLES: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    TABLES.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Records that `database.table` now holds special values (called after a successful
/// write): reads of that table refresh a column list that lacks `__name__`.
pub fn note_special_values_written(database: &str, table: &str) {
    let Ok(mut t) = special_tables().lock() else {
        return;
    };
    let key = (database.to_string(), table.to_string());
    if !t.contains(&key) {
        if t.len() >= MAX_TABLES {
            t.clear();
        }
        t.insert(key);
    }
}

/// (database, table) pairs this process wrote native histograms to.
fn histogram_tables() -> &'static Mutex<HashSet<(String, String)>> {
    static TABLES: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    TABLES.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Records that `database.table` now holds native histograms (after a successful write):
/// reads of that table refresh a column list that lacks `__histogram__`.
pub fn note_histograms_written(database: &str, table: &str) {
    note_special_values_written(database, table);
    let Ok(mut t) = histogram_tables().lock() else {
        return;
    };
    let key = (database.to_string(), table.to_string());
    if !t.contains(&key) {
        if t.len() >= MAX_TABLES {
            t.clear();
        }
        t.insert(key);
    }
}

fn histograms_written(database: &str, table: &str) -> bool {
    histogram_tables()
        .lock()
        .is_ok_and(|t| t.contains(&(database.to_string(), table.to_string())))
}

fn special_values_written(database: &str, table: &str) -> bool {
    special_tables()
        .lock()
        .is_ok_and(|t| t.contains(&(database.to_string(), table.to_string())))
}

/// Why the columns are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Nothing cached yet, or older than [`COLUMNS_TTL`].
    Missing,
    /// Timestream said a selected column does not exist, or series collided.
    Forced,
    /// A matcher names a label the cached list lacks.
    OnDemand,
}

fn on_demand_allowed(e: &Entry, now: Instant) -> bool {
    e.last_on_demand
        .is_none_or(|t| now.saturating_duration_since(t) >= MIN_REFRESH)
}

/// What to do with an entry (`None`: use the cached list as it is).
fn refresh_reason(e: &Entry, wanted: &[&str], force: bool, now: Instant) -> Option<Refresh> {
    let Some(c) = &e.columns else {
        return Some(Refresh::Missing);
    };
    if force {
        return Some(Refresh::Forced);
    }
    if now.saturating_duration_since(c.fetched) > COLUMNS_TTL {
        return Some(Refresh::Missing);
    }
    let unknown = wanted.iter().any(|w| !c.dims.contains(*w));
    (unknown && on_demand_allowed(e, now)).then_some(Refresh::OnDemand)
}

fn column_missing(e: &ReadError) -> bool {
    matches!(e, ReadError::Validation(m) if m.contains("Column") && m.contains("does not exist"))
}

/// Timestream has a `measure_value::double` column only once a double was written:
/// a table without it (e.g. just created) holds no Prometheus sample, so the
/// answer is empty, not an error.
fn no_double_measure(e: &ReadError) -> bool {
    column_missing(e)
        && matches!(e, ReadError::Validation(m) if m.contains("measure_value::double"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// One query session: a client, the identity it stands for, and the page counter.
pub struct Reader {
    pub client: Client,
    /// Distinguishes callers in the column cache: the whole credential (key id and a
    /// salted digest of the secret), so a wrong secret never reads another caller's entry.
    pub identity: CredentialKey,
    /// Distinguishes backends in the column cache (one value per app instance).
    pub scope: usize,
    pub options: ReadOptions,
    pub pages: PageCounter,
}

/// A planned Prometheus query.
pub struct Prepared {
    key: CacheKey,
    query: Query,
    constants: Vec<(String, String)>,
    plan: Plan,
    order: Order,
    /// The table has the `__histogram__` dimension of histogram records.
    histograms: bool,
}

impl Prepared {
    /// Whether the query can return native histograms: its table has the `__histogram__`
    /// dimension that only histogram records carry (`crate::histogram`). XOR chunks cannot
    /// carry histograms, so a client that also accepts SAMPLES gets SAMPLES.
    pub fn may_return_histograms(&self) -> bool {
        self.histograms && matches!(&self.plan, Plan::Select(s) if s.specials)
    }

    /// The same query answered in another row order (no new planning or column lookup:
    /// the order only changes the ORDER BY).
    pub fn reorder(&mut self, order: Order) {
        self.order = order;
        if let Plan::Select(s) = &mut self.plan {
            s.order = order;
        }
    }
}

/// Follows NextToken to the end of one query (pages may be empty).
struct Pager<'r> {
    reader: &'r Reader,
    sql: &'r str,
    token: Option<String>,
    done: bool,
}

impl Pager<'_> {
    async fn next(&mut self) -> Result<Option<QueryOutput>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let out = self
            .reader
            .client
            .query()
            .query_string(self.sql)
            .set_next_token(self.token.take())
            .send()
            .await
            .map_err(|e| ReadError::from(classify(&e)))?;
        self.reader.pages.inc();
        match out.next_token() {
            Some(t) if !t.is_empty() => self.token = Some(t.to_string()),
            _ => self.done = true,
        }
        Ok(Some(out))
    }
}

fn column_names(out: &QueryOutput) -> Vec<String> {
    out.column_info()
        .iter()
        .map(|c| c.name().unwrap_or_default().to_string())
        .collect()
}

impl Reader {
    fn pager<'r>(&'r self, sql: &'r str) -> Pager<'r> {
        Pager {
            reader: self,
            sql,
            token: None,
            done: false,
        }
    }

    /// Runs `sql` to the last page, calling `on_page(columns, rows)` per page.
    async fn pages(
        &self,
        sql: &str,
        mut on_page: impl FnMut(&[String], &[Row]) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let mut pager = self.pager(sql);
        while let Some(out) = pager.next().await? {
            on_page(&column_names(&out), out.rows())?;
        }
        Ok(())
    }

    async fn fetch_columns(&self, key: &CacheKey) -> Result<BTreeSet<String>, ReadError> {
        let (db, table) = (&key.2, &key.3);
        let target = format!("{}.{}", ident(db), ident(table));
        let refused = cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .is_some_and(|e| e.describe_refused);
        if !refused {
            if let Some(dims) = self.describe(key, &target).await? {
                return Ok(dims);
            }
        }
        let mut dims = BTreeSet::new();
        self.pages(&format!("SELECT * FROM {target} LIMIT 0"), |cols, _| {
            for c in cols {
                if c != "measure_name" && c != "time" && !c.starts_with("measure_value::") {
                    dims.insert(c.clone());
                }
            }
            Ok(())
        })
        .await?;
        Ok(dims)
    }

    /// The dimensions from `DESCRIBE`, or `None` when the fallback must answer: DESCRIBE not
    /// understood, or refused (a policy may grant `Select` without `DescribeTable`, which AWS
    /// documents as the action of the SQL command; see GETTING_STARTED). A refusal is
    /// remembered for the table so that each refresh does not cost a refused call.
    async fn describe(
        &self,
        key: &CacheKey,
        target: &str,
    ) -> Result<Option<BTreeSet<String>>, ReadError> {
        let mut dims = BTreeSet::new();
        let described = self
            .pages(&format!("DESCRIBE {target}"), |cols, rows| {
                let find = |n: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(n));
                let (Some(name), Some(kind)) = (find("Column"), find("Timestream attribute type"))
                else {
                    return Err(ReadError::Internal("unexpected DESCRIBE columns".into()));
                };
                for r in rows {
                    let cell = |i: usize| r.data().get(i).and_then(|d| d.scalar_value());
                    if let (Some(n), Some("DIMENSION")) = (cell(name), cell(kind)) {
                        dims.insert(n.to_string());
                    }
                }
                Ok(())
            })
            .await;
        match described {
            Ok(()) => Ok(Some(dims)),
            // DESCRIBE not understood: fall back to ColumnInfo.
            Err(ReadError::Validation(_)) | Err(ReadError::Internal(_)) => Ok(None),
            // Only IAM's refusal of the action: bad or expired keys fail the fallback too.
            Err(ReadError::AccessDenied(m)) if m.starts_with("AccessDeniedException") => {
                tracing::debug!(
                    database = %key.2,
                    table = %key.3,
                    reason = %m,
                    "DESCRIBE refused; this table's columns come from SELECT * … LIMIT 0 from now on"
                );
                cache()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(key.clone())
                    .or_default()
                    .describe_refused = true;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The table's dimensions: cached, refreshed when stale, or when `wanted`
    /// names unknown labels (rate-limited), or when `force`.
    async fn columns(
        &self,
        key: &CacheKey,
        wanted: &[&str],
        force: bool,
    ) -> Result<Arc<BTreeSet<String>>, ReadError> {
        let decided = Instant::now();
        let gate = {
            let mut c = cache().lock().unwrap_or_else(PoisonError::into_inner);
            if c.len() >= MAX_TABLES && !c.contains_key(key) {
                c.clear();
            }
            let e = c.entry(key.clone()).or_default();
            match (refresh_reason(e, wanted, force, decided), &e.columns) {
                (None, Some(cols)) => return Ok(cols.dims.clone()),
                _ => e.gate.clone(),
            }
        };
        let _fetching = gate.lock().await;
        let started = {
            let mut c = cache().lock().unwrap_or_else(PoisonError::into_inner);
            let e = c.entry(key.clone()).or_default();
            // A refresh that started after our decision (while we waited for the
            // gate) saw everything we would see.
            if let Some(cols) = e.columns.as_ref().filter(|c| c.fetched >= decided) {
                return Ok(cols.dims.clone());
            }
            let now = Instant::now();
            match refresh_reason(e, wanted, force, now) {
                None => {
                    if let Some(cols) = &e.columns {
                        return Ok(cols.dims.clone());
                    }
                }
                Some(Refresh::OnDemand) => e.last_on_demand = Some(now),
                Some(Refresh::Missing | Refresh::Forced) => {}
            }
            now
        };
        let dims = Arc::new(self.fetch_columns(key).await?);
        // A poisoned lock (a panic elsewhere while holding it) is recovered, not
        // reported: the map stays consistent, and refusing every later read would turn
        // one panic into an outage.
        cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .columns = Some(Columns {
            dims: dims.clone(),
            fetched: started,
        });
        Ok(dims)
    }

    /// Route, fetch columns, plan and render (all request errors surface here,
    /// before any response byte is sent).
    pub async fn prepare(&self, query: &Query, order: Order) -> Result<Prepared, ReadError> {
        let o = &self.options;
        let mut q = query.clone();
        let mut constants = Vec::new();
        let mut route = |label: &Option<String>, default: &str| -> Result<String, ReadError> {
            let Some(label) = label else {
                return Ok(default.to_string());
            };
            let pos = q.matchers.iter().position(|m| {
                &m.name == label && m.r#type == MatcherType::Eq as i32 && !m.value.is_empty()
            });
            if let Some(p) = pos {
                let m = q.matchers.remove(p);
                constants.push((m.name, m.value.clone()));
                return Ok(m.value);
            }
            if default.is_empty() {
                return Err(ReadError::InvalidMatcher(format!(
                    "reads need an equality matcher on the routing label {label:?} (no default destination is configured)"
                )));
            }
            // Series in the default destination do not carry the routing label:
            // other matchers on it see "" (the planner treats it as unknown).
            Ok(default.to_string())
        };
        let db = route(&o.database_label, &o.default_database)?;
        let table = route(&o.table_label, &o.default_table)?;
        // A routing label that selected a destination is not a column.
        let routing: Vec<&String> = o.database_label.iter().chain(&o.table_label).collect();
        let key = (self.scope, self.identity.clone(), db, table);
        let mut wanted: Vec<&str> = q
            .matchers
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| *n != METRIC_NAME_LABEL && !routing.iter().any(|r| r == n))
            .collect();
        if special_values_written(&key.2, &key.3) {
            wanted.push(special::NAME_DIMENSION);
        }
        if histograms_written(&key.2, &key.3) {
            wanted.push(histogram::KIND_DIMENSION);
        }
        let mut known = (*self.columns(&key, &wanted, false).await?).clone();
        for r in &routing {
            known.remove(r.as_str());
        }
        let specials = known.remove(special::NAME_DIMENSION);
        // A marker of histogram records, not a label.
        let histograms = known.remove(histogram::KIND_DIMENSION);
        let opts = PlanOptions {
            regex: o.regex,
            order: Some(order),
            specials,
        };
        let mut plan = sql::plan(&q, &key.2, &key.3, &known, &opts)?;
        if let Plan::Select(s) = &mut plan {
            s.constant_labels = constants.iter().map(|c| c.0.clone()).collect();
            sql::render_checked(s)?;
        }
        Ok(Prepared {
            key,
            query: q,
            constants,
            plan,
            order,
            histograms,
        })
    }

    /// Re-plan after Timestream reported a missing column (stale cache).
    async fn replan(&self, p: &Prepared) -> Result<Plan, ReadError> {
        let mut known = (*self.columns(&p.key, &[], true).await?).clone();
        let routing = [&self.options.database_label, &self.options.table_label];
        for r in routing.into_iter().flatten() {
            known.remove(r.as_str());
        }
        let specials = known.remove(special::NAME_DIMENSION);
        known.remove(histogram::KIND_DIMENSION);
        let opts = PlanOptions {
            regex: self.options.regex,
            order: Some(p.order),
            specials,
        };
        let mut plan = sql::plan(&p.query, &p.key.2, &p.key.3, &known, &opts)?;
        if let Plan::Select(s) = &mut plan {
            s.constant_labels = p.constants.iter().map(|c| c.0.clone()).collect();
        }
        Ok(plan)
    }

    /// Answer a prepared query as one QueryResult (SAMPLES), taking its rows from the
    /// request's shared `budget` as they arrive.
    pub async fn samples(
        &self,
        p: &Prepared,
        budget: &SampleBudget,
    ) -> Result<QueryResult, ReadError> {
        let mut plan = p.plan.clone();
        for attempt in 0..2 {
            let Plan::Select(s) = &plan else {
                return Ok(QueryResult::default());
            };
            let sql = sql::render_checked(s)?;
            let mut grouper: Option<Grouper> = None;
            let mut count = 0u64;
            let res = self
                .pages(&sql, |cols, rows| {
                    // Before the rows are grouped: a request never holds more than the cap.
                    budget.take(rows.len() as u64)?;
                    count += rows.len() as u64;
                    let g = match &mut grouper {
                        Some(g) => g,
                        None => grouper
                            .insert(Grouper::new(Layout::with_constants(cols, &p.constants)?)),
                    };
                    let mut cells: Vec<Option<&str>> = Vec::with_capacity(cols.len());
                    for r in rows {
                        cells.clear();
                        cells.extend(r.data().iter().map(|d| d.scalar_value()));
                        g.push(&cells)?;
                    }
                    Ok(())
                })
                .await;
            match res {
                Err(e) if no_double_measure(&e) => {
                    budget.give_back(count);
                    return Ok(QueryResult::default());
                }
                Err(e) if attempt == 0 && retry_with_fresh_columns(&e) => {
                    budget.give_back(count);
                    plan = self.replan(p).await?;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            let series = grouper.map(Grouper::finish).unwrap_or_default();
            // Two samples at one timestamp in a series means a dimension column
            // we did not select (cache older than the data): refresh and rerun.
            let dup = series.iter().any(|s| {
                s.samples
                    .windows(2)
                    .any(|w| w[0].timestamp == w[1].timestamp)
            });
            if dup && attempt == 0 {
                budget.give_back(count);
                plan = self.replan(p).await?;
                continue;
            }
            return Ok(QueryResult { timeseries: series });
        }
        Err(ReadError::Internal("query plan kept changing".into()))
    }

    /// Answer a prepared query as frames of XOR chunks, sent page by page
    /// (awaiting the channel, so memory stays bounded by a page and a frame).
    pub async fn stream(
        &self,
        index: usize,
        p: &Prepared,
        budget: &mut u64,
        tx: &mut mpsc::Sender<Result<Bytes, ReadError>>,
    ) -> Result<(), ReadError> {
        let mut plan = p.plan.clone();
        let mut sent_any = false;
        let max = self.options.max_samples;
        for attempt in 0..2 {
            let Plan::Select(s) = &plan else {
                return Ok(());
            };
            let sql = sql::render_checked(s)?;
            let mut grouper: Option<OrderedGrouper> = None;
            let mut frames = FrameBuilder::new(index as i64);
            let mut count = 0u64;
            let mut pager = self.pager(&sql);
            let mut outbox: Vec<Bytes> = Vec::new();
            let res: Result<(), ReadError> = async {
                while let Some(out) = pager.next().await? {
                    let cols = column_names(&out);
                    let g = match &mut grouper {
                        Some(g) => g,
                        None => grouper.insert(OrderedGrouper::new(
                            Layout::with_constants(&cols, &p.constants)?,
                            SEGMENT_SAMPLES,
                        )),
                    };
                    let mut cells: Vec<Option<&str>> = Vec::with_capacity(cols.len());
                    for r in out.rows() {
                        cells.clear();
                        cells.extend(r.data().iter().map(|d| d.scalar_value()));
                        if let Some(seg) = g.push(&cells)? {
                            outbox.extend(frames.push(&seg.labels, &seg.samples));
                        }
                    }
                    count += out.rows().len() as u64;
                    if max > 0 && count > *budget {
                        return Err(too_many(max));
                    }
                    for f in outbox.drain(..) {
                        sent_any = true;
                        tx.send(Ok(f)).await.map_err(|_| ReadError::ClientGone)?;
                    }
                }
                Ok(())
            }
            .await;
            match res {
                Err(e) if !sent_any && no_double_measure(&e) => return Ok(()),
                Err(e) if attempt == 0 && !sent_any && retry_with_fresh_columns(&e) => {
                    plan = self.replan(p).await?;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            if let Some(seg) = grouper.and_then(OrderedGrouper::finish) {
                outbox.extend(frames.push(&seg.labels, &seg.samples));
            }
            outbox.extend(frames.flush());
            for f in outbox {
                tx.send(Ok(f)).await.map_err(|_| ReadError::ClientGone)?;
            }
            if max > 0 {
                *budget -= count;
            }
            return Ok(());
        }
        Err(ReadError::Internal("query plan kept changing".into()))
    }
}

/// Errors that a stale column cache explains: a selected column that no longer
/// exists, or two series merged because a new dimension was not selected.
fn retry_with_fresh_columns(e: &ReadError) -> bool {
    column_missing(e) || matches!(e, ReadError::SeriesCollision(_))
}

fn too_many(max: u64) -> ReadError {
    ReadError::InvalidMatcher(format!(
        "the request selects more than {max} samples (--read.max-samples); narrow the matchers or the time range"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dims: &[&str], age: Duration, on_demand_ago: Option<Duration>, now: Instant) -> Entry {
        Entry {
            columns: Some(Columns {
                dims: Arc::new(dims.iter().map(|d| d.to_string()).collect()),
                fetched: now - age,
            }),
            last_on_demand: on_demand_ago.map(|a| now - a),
            ..Default::default()
        }
    }

    #[test]
    fn unknown_label_refreshes_a_list_filled_a_moment_ago() {
        let now = Instant::now() + Duration::from_secs(3600);
        let e = entry(&["job"], Duration::from_millis(5), None, now);
        assert_eq!(refresh_reason(&e, &["job"], false, now), None);
        assert_eq!(
            refresh_reason(&e, &["job", "new"], false, now),
            Some(Refresh::OnDemand)
        );
    }

    #[test]
    fn on_demand_refreshes_are_rate_limited_per_table() {
        let now = Instant::now() + Duration::from_secs(3600);
        let recent = Some(MIN_REFRESH / 2);
        let e = entry(&["job"], Duration::from_millis(5), recent, now);
        assert_eq!(refresh_reason(&e, &["never"], false, now), None);
        let e = entry(&["job"], MIN_REFRESH, Some(MIN_REFRESH), now);
        assert_eq!(
            refresh_reason(&e, &["never"], false, now),
            Some(Refresh::OnDemand)
        );
        // The rate limit does not hold back a TTL refresh or a forced one.
        let e = entry(&["job"], COLUMNS_TTL * 2, recent, now);
        assert_eq!(refresh_reason(&e, &[], false, now), Some(Refresh::Missing));
        let e = entry(&["job"], Duration::ZERO, recent, now);
        assert_eq!(refresh_reason(&e, &[], true, now), Some(Refresh::Forced));
        assert_eq!(
            refresh_reason(&Entry::default(), &[], false, now),
            Some(Refresh::Missing)
        );
    }
}
