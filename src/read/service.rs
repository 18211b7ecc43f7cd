//! The read service: one remote-read request from decoded `ReadRequest` to SAMPLES results
//! or chunk frames. It owns the whole read and reaches storage only through
//! [`Storage`](super::storage::Storage); it knows neither HTTP nor the AWS SDK.
//!
//! One [`ReadService`] per app (held by the app state): it carries the read options and the
//! app's [`ColumnKnowledge`]. Per request:
//! 1. [`ReadService::check`]: what needs no storage (matcher sizes), before any call.
//! 2. [`ReadService::plan`]: route each query to its table (routing labels or the default
//!    destination), get the table's dimensions, plan the SQL under the byte budget
//!    (`sql::plan`, `sql::render_checked`). Every request error surfaces here, before a
//!    byte of the answer exists. A streamed request whose tables can hold native
//!    histograms is answered with SAMPLES when the client accepts them (XOR chunks carry
//!    floats only).
//! 3. [`ReadService::samples`] (one `QueryResult` per query, in order, the queries run
//!    `concurrency` at a time under one [`SampleBudget`]) or [`ReadService::stream`]
//!    (a task sending one query after another as frames of XOR chunks into a bounded
//!    channel, page by page, so memory stays bounded by a page and a frame).
//!
//! A query that fails because the table's columns changed since they were fetched (a
//! selected column no longer exists, or two series collide on a dimension the list lacks)
//! is planned again with freshly fetched columns, once, as long as nothing of it was sent.
//! A table without `measure_value::double` (Timestream adds it with the first number
//! written) is planned without it: its special values and native histograms are read, and
//! a table without those either costs no query.
//!
//! Special values (`crate::special`): a table that holds them has the `__name__` dimension.
//! It is not a label column: the planner adds the special-value rows to the query instead,
//! and only then, so a table without the column (upstream-written, or no NaN yet) is read
//! exactly as before.

use std::collections::BTreeSet;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{FutureExt, SinkExt};

use super::assemble::{Grouper, Layout, OrderedGrouper};
use super::columns::{ColumnKnowledge, TableRef};
use super::error::ReadError;
use super::regex::RegexOptions;
use super::sql::{self, Order, Plan, PlanOptions, METRIC_NAME_LABEL};
use super::storage::{Cursor, Page, Storage};
use crate::config::Config;
use crate::histogram;
use crate::remote::chunked::FrameBuilder;
use crate::remote::pb::{
    label_matcher::Type as MatcherType, read_request::ResponseType, Query, QueryResult,
    ReadRequest, ReadResponse,
};
use crate::special;

/// Samples of one series held before they are sent as chunks (streamed mode).
const SEGMENT_SAMPLES: usize = 120 * 8;
/// Frames buffered between the query task and the consumer (each ≤ 1 MiB).
const CHANNEL_FRAMES: usize = 2;

/// Where reads go and how matchers are evaluated.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Database of queries without a database routing matcher.
    pub default_database: String,
    /// Table of queries without a table routing matcher.
    pub default_table: String,
    /// Label whose equality matcher names the database.
    pub database_label: Option<String>,
    /// Label whose equality matcher names the table.
    pub table_label: Option<String>,
    /// Regex translation options.
    pub regex: RegexOptions,
    /// Most samples per request (0 = unlimited).
    pub max_samples: u64,
    /// Queries of one SAMPLES request run at a time (at least 1).
    pub concurrency: usize,
}

impl ReadOptions {
    /// The options `config` asks for.
    pub fn from_config(config: &Config) -> ReadOptions {
        ReadOptions {
            default_database: config.destination.default_database.clone(),
            default_table: config.destination.default_table.clone(),
            database_label: config.destination.database_label.clone(),
            table_label: config.destination.table_label.clone(),
            regex: RegexOptions {
                dot_matches_newline: config.read.dot_matches_newline,
            },
            max_samples: config.read.max_samples,
            concurrency: config.read.concurrency.max(1),
        }
    }
}

/// The samples one read request may still return, shared by all its queries (issue 13:
/// each query of a SAMPLES read once had the whole `--read.max-samples` to itself, so a
/// request of 1,000 queries could hold 1,000 × the cap). Taken as rows arrive, before
/// they are grouped, so no more than the cap is ever held.
#[derive(Debug)]
pub struct SampleBudget {
    max: u64,
    used: AtomicU64,
}

impl SampleBudget {
    /// A budget of `max` samples (0 = unlimited).
    pub fn new(max: u64) -> SampleBudget {
        SampleBudget {
            max,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `n` samples; an error once the request's total passes the cap.
    pub fn take(&self, n: u64) -> Result<(), ReadError> {
        if self.max == 0 {
            return Ok(());
        }
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.max {
            return Err(too_many(self.max));
        }
        Ok(())
    }

    /// Returns samples taken by an attempt whose rows were dropped (a re-planned query).
    pub fn give_back(&self, n: u64) {
        if self.max > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Samples taken so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The read service of one app. `K` is the caller's identity, the key of the column
/// knowledge (the connector uses the whole-credential `CredentialKey`).
pub struct ReadService<K> {
    options: ReadOptions,
    columns: ColumnKnowledge<K>,
}

/// Frames of a streamed answer, in order; an `Err` ends the answer as failed.
pub type Frames = mpsc::Receiver<Result<Bytes, ReadError>>;

/// A planned request: the response type it gets and one planned query per query.
pub struct ReadPlan {
    response_type: ResponseType,
    queries: Vec<Prepared>,
}

impl ReadPlan {
    /// SAMPLES or STREAMED_XOR_CHUNKS, as decided by [`ReadService::plan`].
    pub fn response_type(&self) -> ResponseType {
        self.response_type
    }
}

/// A planned Prometheus query.
struct Prepared {
    table: TableRef,
    query: Query,
    constants: Vec<(String, String)>,
    plan: Plan,
    order: Order,
    /// The table has the `__histogram__` dimension of histogram records.
    histograms: bool,
}

impl Prepared {
    /// Whether the query can return native histograms: its table has the `__histogram__`
    /// dimension that only histogram records carry (`crate::histogram`).
    fn may_return_histograms(&self) -> bool {
        self.histograms && matches!(&self.plan, Plan::Select(s) if s.specials)
    }

    /// The same query answered in another row order (no new planning or column lookup:
    /// the order only changes the ORDER BY).
    fn reorder(&mut self, order: Order) {
        self.order = order;
        if let Plan::Select(s) = &mut self.plan {
            s.order = order;
        }
    }
}

impl<K> ReadService<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A service with empty column knowledge.
    pub fn new(options: ReadOptions) -> Self {
        ReadService {
            options,
            columns: ColumnKnowledge::new(),
        }
    }

    /// The service `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        ReadService::new(ReadOptions::from_config(config))
    }

    /// The options.
    pub fn options(&self) -> &ReadOptions {
        &self.options
    }

    /// The app's column knowledge.
    pub fn columns(&self) -> &ColumnKnowledge<K> {
        &self.columns
    }

    /// After a successful write of special values to `database.table`: see
    /// [`ColumnKnowledge::note_special_values_written`].
    pub fn note_special_values_written(&self, database: &str, table: &str) {
        self.columns.note_special_values_written(database, table);
    }

    /// After a successful write of native histograms to `database.table`: see
    /// [`ColumnKnowledge::note_histograms_written`].
    pub fn note_histograms_written(&self, database: &str, table: &str) {
        self.columns.note_histograms_written(database, table);
    }

    /// Checks that need no storage, so a request they refuse costs no call: each
    /// matcher's size.
    pub fn check(&self, req: &ReadRequest) -> Result<(), ReadError> {
        req.queries.iter().try_for_each(sql::check_matcher_sizes)
    }

    /// Plans every query of `req` for `identity`, to be answered as `requested`
    /// (STREAMED_XOR_CHUNKS becomes SAMPLES where histograms may come back and the client
    /// accepts SAMPLES). All request errors surface here.
    pub async fn plan<S: Storage>(
        &self,
        storage: &S,
        identity: &K,
        req: &ReadRequest,
        requested: ResponseType,
    ) -> Result<ReadPlan, ReadError> {
        self.check(req)?;
        let order = match requested {
            ResponseType::Samples => Order::None,
            ResponseType::StreamedXorChunks => Order::SeriesThenTime,
        };
        let mut queries = Vec::with_capacity(req.queries.len());
        for q in &req.queries {
            queries.push(self.prepare(storage, identity, q, order).await?);
        }
        // XOR chunks hold floats only: when a query's table can hold native histograms and
        // the client also accepts SAMPLES (Prometheus 3.x lists both), it gets SAMPLES,
        // which carry them (documentation/native-histograms.md). Decided before any row is
        // read.
        let samples_accepted = req
            .accepted_response_types
            .contains(&(ResponseType::Samples as i32));
        let response_type = if requested == ResponseType::StreamedXorChunks
            && samples_accepted
            && queries.iter().any(Prepared::may_return_histograms)
        {
            for p in &mut queries {
                p.reorder(Order::None);
            }
            ResponseType::Samples
        } else {
            requested
        };
        Ok(ReadPlan {
            response_type,
            queries,
        })
    }

    /// Route, fetch columns, plan and render one query.
    async fn prepare<S: Storage>(
        &self,
        storage: &S,
        identity: &K,
        query: &Query,
        order: Order,
    ) -> Result<Prepared, ReadError> {
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
        let table = self.columns.table(identity, &db, &table);
        // A routing label that selected a destination is not a column.
        let routing: Vec<&String> = o.database_label.iter().chain(&o.table_label).collect();
        let labels: Vec<&str> = q
            .matchers
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| *n != METRIC_NAME_LABEL && !routing.iter().any(|r| r == n))
            .collect();
        let cols = self
            .columns
            .dimensions(storage, &table, &labels, false)
            .await?;
        let (known, specials, histograms) = self.label_columns(&cols.dimensions);
        let opts = PlanOptions {
            regex: o.regex,
            order: Some(order),
            specials,
            no_double: !cols.double,
        };
        let mut plan = sql::plan(&q, &table.database, &table.table, &known, &opts)?;
        if let Plan::Select(s) = &mut plan {
            s.constant_labels = constants.iter().map(|c| c.0.clone()).collect();
            sql::render_checked(s)?;
        }
        Ok(Prepared {
            table,
            query: q,
            constants,
            plan,
            order,
            histograms,
        })
    }

    /// The label columns among a table's dimensions, whether it has the special-value
    /// dimension, and whether it has the histogram marker (neither is a label).
    fn label_columns(&self, dims: &BTreeSet<String>) -> (BTreeSet<String>, bool, bool) {
        let mut known = dims.clone();
        for r in [&self.options.database_label, &self.options.table_label]
            .into_iter()
            .flatten()
        {
            known.remove(r.as_str());
        }
        let specials = known.remove(special::NAME_DIMENSION);
        let histograms = known.remove(histogram::KIND_DIMENSION);
        (known, specials, histograms)
    }

    /// Re-plan after the storage reported a missing column or series collided (a column
    /// list older than the data).
    async fn replan<S: Storage>(&self, storage: &S, p: &Prepared) -> Result<Plan, ReadError> {
        let cols = self
            .columns
            .dimensions(storage, &p.table, &[], true)
            .await?;
        let (known, specials, _) = self.label_columns(&cols.dimensions);
        let opts = PlanOptions {
            regex: self.options.regex,
            order: Some(p.order),
            specials,
            no_double: !cols.double,
        };
        let mut plan = sql::plan(&p.query, &p.table.database, &p.table.table, &known, &opts)?;
        if let Plan::Select(s) = &mut plan {
            s.constant_labels = p.constants.iter().map(|c| c.0.clone()).collect();
        }
        Ok(plan)
    }

    /// Answers a plan as SAMPLES: one QueryResult per query, in order, `concurrency`
    /// queries at a time, their rows taken from one budget of `max_samples` as they arrive.
    pub async fn samples<S: Storage>(
        &self,
        storage: &S,
        plan: &ReadPlan,
    ) -> Result<ReadResponse, ReadError> {
        let budget = SampleBudget::new(self.options.max_samples);
        let mut results = Vec::with_capacity(plan.queries.len());
        for group in plan.queries.chunks(self.options.concurrency.max(1)) {
            let runs = group
                .iter()
                .map(|p| self.query_samples(storage, p, &budget));
            results.extend(futures::future::try_join_all(runs).await?);
        }
        Ok(ReadResponse { results })
    }

    /// One query as one QueryResult, its rows taken from the request's shared `budget`.
    async fn query_samples<S: Storage>(
        &self,
        storage: &S,
        p: &Prepared,
        budget: &SampleBudget,
    ) -> Result<QueryResult, ReadError> {
        let mut plan = p.plan.clone();
        for attempt in 0..2 {
            let Plan::Select(s) = &plan else {
                return Ok(QueryResult::default());
            };
            let mut cursor = storage.query(sql::render_checked(s)?);
            let mut grouper: Option<Grouper> = None;
            let mut count = 0u64;
            let res: Result<(), ReadError> = async {
                while let Some(page) = cursor.next().await? {
                    // Before the rows are grouped: a request never holds more than the cap.
                    budget.take(page.len() as u64)?;
                    count += page.len() as u64;
                    let g = match &mut grouper {
                        Some(g) => g,
                        None => grouper.insert(Grouper::new(Layout::with_constants(
                            page.columns(),
                            &p.constants,
                        )?)),
                    };
                    page.each_row(|cells| g.push(cells))?;
                }
                Ok(())
            }
            .await;
            match res {
                Err(e) if no_double_measure(&e) => {
                    budget.give_back(count);
                    return Ok(QueryResult::default());
                }
                Err(e) if attempt == 0 && retry_with_fresh_columns(&e) => {
                    budget.give_back(count);
                    plan = self.replan(storage, p).await?;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            let series = grouper.map(Grouper::finish).unwrap_or_default();
            // Two samples at one timestamp in a series means a dimension column
            // we did not select (a list older than the data): refresh and rerun.
            let dup = series.iter().any(|s| {
                s.samples
                    .windows(2)
                    .any(|w| w[0].timestamp == w[1].timestamp)
            });
            if dup && attempt == 0 {
                budget.give_back(count);
                plan = self.replan(storage, p).await?;
                continue;
            }
            return Ok(QueryResult { timeseries: series });
        }
        Err(ReadError::Internal("query plan kept changing".into()))
    }

    /// Answers a plan as frames of XOR chunks (one series per frame; a long series goes on
    /// in the next frames), from a task that sends them into a bounded channel, query after
    /// query, page by page. The first item tells whether the read started well (an `Err`
    /// before any frame is the request's error); an `Err` after frames means the answer
    /// failed part-way. `done` is called once when the task ends, with its error if any
    /// (a panic of the task is reported as an internal error, never as a short answer).
    pub fn stream<S>(
        self: &Arc<Self>,
        storage: S,
        plan: ReadPlan,
        done: impl FnOnce(Option<&ReadError>) + Send + 'static,
    ) -> Frames
    where
        S: Storage + 'static,
    {
        let (tx, rx) = mpsc::channel::<Result<Bytes, ReadError>>(CHANNEL_FRAMES);
        let service = self.clone();
        tokio::spawn(async move {
            let mut tx = tx;
            let max = service.options.max_samples;
            let mut budget = if max == 0 { u64::MAX } else { max };
            let work = async {
                for (i, p) in plan.queries.iter().enumerate() {
                    service
                        .query_frames(&storage, i, p, &mut budget, &mut tx)
                        .await?;
                }
                Ok(())
            };
            // A panic here would close the channel like a finished answer: the client
            // would take a short body for a whole one. It becomes an error instead.
            let outcome = std::panic::AssertUnwindSafe(work)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(ReadError::Internal(
                        "the streamed read task panicked".into(),
                    ))
                });
            done(outcome.as_ref().err());
            if let Err(e) = outcome {
                // Before the first frame this becomes the status; after it, it fails the
                // answer.
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    /// One query as frames, sent page by page (awaiting the channel, so memory stays
    /// bounded by a page and a frame); its rows are taken from `budget`.
    async fn query_frames<S: Storage>(
        &self,
        storage: &S,
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
            let mut cursor = storage.query(sql::render_checked(s)?);
            let mut grouper: Option<OrderedGrouper> = None;
            let mut frames = FrameBuilder::new(index as i64);
            let mut count = 0u64;
            let mut outbox: Vec<Bytes> = Vec::new();
            let res: Result<(), ReadError> = async {
                while let Some(page) = cursor.next().await? {
                    let g = match &mut grouper {
                        Some(g) => g,
                        None => grouper.insert(OrderedGrouper::new(
                            Layout::with_constants(page.columns(), &p.constants)?,
                            SEGMENT_SAMPLES,
                        )),
                    };
                    page.each_row(|cells| {
                        if let Some(seg) = g.push(cells)? {
                            outbox.extend(frames.push(&seg.labels, &seg.samples));
                        }
                        Ok(())
                    })?;
                    count += page.len() as u64;
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
                    plan = self.replan(storage, p).await?;
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

fn column_missing(e: &ReadError) -> bool {
    matches!(e, ReadError::Validation(m) if m.contains("Column") && m.contains("does not exist"))
}

/// Timestream has a `measure_value::double` column only once a double was written, and
/// the plan names it only when the column list had it (which a storage that lists no
/// measure columns may get wrong): the answer is empty, not an error.
fn no_double_measure(e: &ReadError) -> bool {
    column_missing(e)
        && matches!(e, ReadError::Validation(m) if m.contains("measure_value::double"))
}

/// Errors that a stale column list explains: a selected column that no longer
/// exists, or two series merged because a new dimension was not selected.
fn retry_with_fresh_columns(e: &ReadError) -> bool {
    column_missing(e) || matches!(e, ReadError::SeriesCollision(_))
}

fn too_many(max: u64) -> ReadError {
    ReadError::InvalidMatcher(format!(
        "the request selects more than {max} samples (--read.max-samples); narrow the matchers or the time range"
    ))
}
