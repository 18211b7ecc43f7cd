//! What the read service knows of each table's columns, per app (held by the app state,
//! never process-global: two apps in one process, e.g. two test routers, share nothing).
//!
//! **Dimension lists.** The dimension columns of each table, per credential identity (the
//! whole-credential key, so a wrong secret never plans from another caller's list), from
//! the storage's `describe` (Timestream: `DESCRIBE`), or, where that is not understood or
//! not allowed, from the column names of `SELECT * … LIMIT 0`. A refusal is remembered per
//! table and identity, so a refresh does not cost a refused call each time. A list is
//! refreshed:
//! - when older than [`COLUMNS_TTL`] (counted from the start of the fetch that made it);
//! - when forced: the storage said a selected column does not exist, or two series
//!   collided (a dimension the list lacks);
//! - on demand, when a matcher names a label the list does not know. A matcher on an
//!   unknown label is decided locally (`l="x"` selects nothing, `l!=""` becomes "absent"),
//!   so that decision must not rest on a list fetched before the label's first write.
//!   On-demand refreshes are rate-limited per table to one per [`MIN_REFRESH`] (a label
//!   that never exists cannot buy a DESCRIBE per query) and only that: the first fill or a
//!   TTL refresh a moment ago does not delay one.
//!
//! - before every read, not rate-limited, while the table has no `measure_value::double`:
//!   Timestream adds that column with the first number written, and until then the planner
//!   must not name it (a table that only got special values or native histograms is read
//!   without it). A rate limit here made a write followed by a read within a second answer
//!   empty (Prometheus reads right after its first writes); such a table costs one DESCRIBE
//!   per read instead, as much as the failing SELECT every read of it cost before.
//!
//! One refresh per table runs at a time; reads waiting for it use its result instead of
//! fetching again (a refresh that started after a read decided to refresh saw everything
//! that read would see).
//!
//! The entries live in a `moka` cache bounded to [`MAX_TABLES`] (least recently used goes
//! first) and dropped after [`IDLE`] without a read. The 60 s freshness is a rule applied
//! at use, not the cache's expiry: an entry also carries the single-flight gate and the
//! remembered refusal, which outlive one list.
//!
//! **Write notes.** Writes through this app note the tables they gave special values
//! (`crate::special`: the `__name__` dimension) or native histograms (`crate::histogram`:
//! the `__histogram__` dimension). A read of a noted table asks for those dimensions, so a
//! list that lacks them is refreshed at once instead of after [`COLUMNS_TTL`]. Notes are
//! facts about a table, whoever wrote it, so they are keyed by table alone.

use std::collections::BTreeSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::ReadError;
use super::storage::{Cursor, Described, Page, Storage};
use crate::histogram;
use crate::special;

/// Column lists older than this are fetched again before use.
pub const COLUMNS_TTL: Duration = Duration::from_secs(60);
/// Least time between two on-demand refreshes of one table's columns.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Most (identity, table) entries kept, and most tables noted per kind of write.
pub const MAX_TABLES: u64 = 4096;
/// An entry no read used for this long is dropped (its list would be refetched anyway).
pub const IDLE: Duration = Duration::from_secs(600);

/// The column knowledge of one app. `K` is the caller's identity (the connector uses
/// `crate::timestream::client::CredentialKey`).
pub struct ColumnKnowledge<K> {
    tables: moka::sync::Cache<(K, String, String), Arc<Table>>,
    /// (database, table) written with special values.
    specials: moka::sync::Cache<(String, String), ()>,
    /// (database, table) written with native histograms.
    histograms: moka::sync::Cache<(String, String), ()>,
}

impl<K> std::fmt::Debug for ColumnKnowledge<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnKnowledge")
            .field("tables", &self.tables.entry_count())
            .finish_non_exhaustive()
    }
}

fn lru<K, V>(idle: Option<Duration>) -> moka::sync::Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    // LRU rather than moka's default TinyLFU: its admission filter could refuse a new
    // table's entry, and a refused entry has no gate and no list (a DESCRIBE per read).
    let b = moka::sync::Cache::builder()
        .max_capacity(MAX_TABLES)
        .eviction_policy(moka::policy::EvictionPolicy::lru());
    match idle {
        Some(d) => b.time_to_idle(d).build(),
        None => b.build(),
    }
}

impl<K> Default for ColumnKnowledge<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        ColumnKnowledge::new()
    }
}

/// One table of one identity, as a read holds it (planning and re-planning use the same
/// entry even if the cache dropped it meanwhile).
#[derive(Clone)]
pub struct TableRef {
    /// Database name.
    pub database: String,
    /// Table name.
    pub table: String,
    entry: Arc<Table>,
}

#[derive(Default)]
struct Table {
    state: Mutex<TableState>,
    /// Held while the table's columns are being fetched.
    gate: tokio::sync::Mutex<()>,
}

/// A table's columns as reads plan from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    /// The dimension columns.
    pub dimensions: Arc<BTreeSet<String>>,
    /// The table has `measure_value::double` (some number was written to it).
    pub double: bool,
}

#[derive(Clone)]
struct Columns {
    dims: Arc<BTreeSet<String>>,
    double: bool,
    /// When the fetch that produced `dims` started (anything written before is in it).
    fetched: Instant,
}

#[derive(Default)]
struct TableState {
    columns: Option<Columns>,
    /// Start of the last refresh made because a matcher named an unknown label.
    last_on_demand: Option<Instant>,
    /// `describe` was refused: columns come from `SELECT * … LIMIT 0` without asking again.
    describe_refused: bool,
}

impl Table {
    /// The state, also after a panic elsewhere while it was held: the state stays
    /// consistent, and refusing every later read would turn one panic into an outage.
    fn state(&self) -> std::sync::MutexGuard<'_, TableState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why the columns are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Nothing cached yet, or older than [`COLUMNS_TTL`].
    Missing,
    /// The storage said a selected column does not exist, or series collided.
    Forced,
    /// A matcher names a label the cached list lacks.
    OnDemand,
}

fn on_demand_allowed(e: &TableState, now: Instant) -> bool {
    e.last_on_demand
        .is_none_or(|t| now.saturating_duration_since(t) >= MIN_REFRESH)
}

/// What to do with an entry (`None`: use the cached list as it is).
fn refresh_reason(e: &TableState, wanted: &[&str], force: bool, now: Instant) -> Option<Refresh> {
    let Some(c) = &e.columns else {
        return Some(Refresh::Missing);
    };
    if force {
        return Some(Refresh::Forced);
    }
    if now.saturating_duration_since(c.fetched) > COLUMNS_TTL {
        return Some(Refresh::Missing);
    }
    if !c.double {
        return Some(Refresh::OnDemand);
    }
    let unknown = wanted.iter().any(|w| !c.dims.contains(*w));
    (unknown && on_demand_allowed(e, now)).then_some(Refresh::OnDemand)
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl<K> ColumnKnowledge<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Empty knowledge.
    pub fn new() -> Self {
        ColumnKnowledge {
            tables: lru(Some(IDLE)),
            specials: lru(None),
            histograms: lru(None),
        }
    }

    /// Records that `database.table` now holds special values (after a successful write):
    /// reads of that table refresh a column list that lacks `__name__`.
    pub fn note_special_values_written(&self, database: &str, table: &str) {
        self.specials
            .insert((database.to_string(), table.to_string()), ());
    }

    /// Records that `database.table` now holds native histograms (after a successful
    /// write): reads of that table refresh a column list that lacks `__histogram__` (or
    /// `__name__`, which histogram records carry too).
    pub fn note_histograms_written(&self, database: &str, table: &str) {
        self.note_special_values_written(database, table);
        self.histograms
            .insert((database.to_string(), table.to_string()), ());
    }

    /// The entry of `identity`'s `database.table`.
    pub fn table(&self, identity: &K, database: &str, table: &str) -> TableRef {
        let key = (identity.clone(), database.to_string(), table.to_string());
        TableRef {
            database: key.1.clone(),
            table: key.2.clone(),
            entry: self.tables.get_with(key, Arc::default),
        }
    }

    /// (identity, table) entries held now (moka settles evictions in batches; this runs
    /// its pending work first).
    pub fn tables_held(&self) -> u64 {
        self.tables.run_pending_tasks();
        self.tables.entry_count()
    }

    /// The table's columns: cached, or refreshed when stale, when `labels` (label names
    /// the query's matchers use) or a write note name a dimension the list lacks, or the
    /// table had no `measure_value::double` (rate-limited), or when `force`.
    pub async fn dimensions<S: Storage>(
        &self,
        storage: &S,
        t: &TableRef,
        labels: &[&str],
        force: bool,
    ) -> Result<TableColumns, ReadError> {
        let mut wanted: Vec<&str> = labels.to_vec();
        let key = (t.database.clone(), t.table.clone());
        if self.specials.contains_key(&key) {
            wanted.push(special::NAME_DIMENSION);
        }
        if self.histograms.contains_key(&key) {
            wanted.push(histogram::KIND_DIMENSION);
        }
        dimensions(storage, t, &wanted, force).await
    }
}

async fn dimensions<S: Storage>(
    storage: &S,
    t: &TableRef,
    wanted: &[&str],
    force: bool,
) -> Result<TableColumns, ReadError> {
    let decided = Instant::now();
    {
        let e = t.entry.state();
        if let (None, Some(cols)) = (refresh_reason(&e, wanted, force, decided), &e.columns) {
            return Ok(cols.known());
        }
    }
    let _fetching = t.entry.gate.lock().await;
    let (started, refused) = {
        let mut e = t.entry.state();
        // A refresh that started after our decision (while we waited for the gate) saw
        // everything we would see.
        if let Some(cols) = e.columns.as_ref().filter(|c| c.fetched >= decided) {
            return Ok(cols.known());
        }
        let now = Instant::now();
        match refresh_reason(&e, wanted, force, now) {
            None => {
                if let Some(cols) = &e.columns {
                    return Ok(cols.known());
                }
            }
            Some(Refresh::OnDemand) => e.last_on_demand = Some(now),
            Some(Refresh::Missing | Refresh::Forced) => {}
        }
        (now, e.describe_refused)
    };
    let (dims, double) = fetch(storage, t, refused).await?;
    let cols = Columns {
        dims: Arc::new(dims),
        double,
        fetched: started,
    };
    let known = cols.known();
    t.entry.state().columns = Some(cols);
    Ok(known)
}

impl Columns {
    fn known(&self) -> TableColumns {
        TableColumns {
            dimensions: self.dims.clone(),
            double: self.double,
        }
    }
}

/// The dimensions and whether `measure_value::double` exists, from `describe`, else from
/// the columns of an empty `SELECT *`.
async fn fetch<S: Storage>(
    storage: &S,
    t: &TableRef,
    describe_refused: bool,
) -> Result<(BTreeSet<String>, bool), ReadError> {
    if !describe_refused {
        match storage.describe(&t.database, &t.table).await? {
            Described::Columns { dimensions, double } => return Ok((dimensions, double)),
            Described::NotUnderstood => {}
            Described::Refused(reason) => {
                tracing::debug!(
                    database = %t.database,
                    table = %t.table,
                    %reason,
                    "DESCRIBE refused; this table's columns come from SELECT * … LIMIT 0 from now on"
                );
                t.entry.state().describe_refused = true;
            }
        }
    }
    let sql = format!(
        "SELECT * FROM {}.{} LIMIT 0",
        ident(&t.database),
        ident(&t.table)
    );
    let mut cursor = storage.query(sql);
    let mut dims = BTreeSet::new();
    let mut double = false;
    while let Some(page) = cursor.next().await? {
        for c in page.columns() {
            double |= c == "measure_value::double";
            if c != "measure_name" && c != "time" && !c.starts_with("measure_value::") {
                dims.insert(c.clone());
            }
        }
    }
    Ok((dims, double))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        dims: &[&str],
        age: Duration,
        on_demand_ago: Option<Duration>,
        now: Instant,
    ) -> TableState {
        TableState {
            columns: Some(Columns {
                dims: Arc::new(dims.iter().map(|d| d.to_string()).collect()),
                double: true,
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
    fn a_list_without_the_double_column_is_refreshed_before_every_read() {
        let now = Instant::now() + Duration::from_secs(3600);
        let mut e = entry(&["job"], Duration::from_millis(5), None, now);
        e.columns.as_mut().unwrap().double = false;
        assert_eq!(refresh_reason(&e, &[], false, now), Some(Refresh::OnDemand));
        // Not rate-limited: a number written a moment after the last refresh is read at once.
        e.last_on_demand = Some(now - MIN_REFRESH / 2);
        assert_eq!(refresh_reason(&e, &[], false, now), Some(Refresh::OnDemand));
        e.columns.as_mut().unwrap().double = true;
        assert_eq!(refresh_reason(&e, &[], false, now), None);
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
            refresh_reason(&TableState::default(), &[], false, now),
            Some(Refresh::Missing)
        );
    }

    /// A storage that knows one table of `dims` and counts what it was asked.
    struct Fake {
        dims: Vec<&'static str>,
        refuse_describe: bool,
        describes: std::sync::atomic::AtomicUsize,
        selects: std::sync::atomic::AtomicUsize,
    }

    struct FakeCursor(Option<Vec<String>>);

    struct FakePage(Vec<String>);

    impl Page for FakePage {
        fn columns(&self) -> &[String] {
            &self.0
        }
        fn len(&self) -> usize {
            0
        }
        fn each_row<F>(&self, _: F) -> Result<(), ReadError>
        where
            F: FnMut(&[Option<&str>]) -> Result<(), ReadError>,
        {
            Ok(())
        }
    }

    impl Cursor for FakeCursor {
        type Page = FakePage;
        async fn next(&mut self) -> Result<Option<FakePage>, ReadError> {
            Ok(self.0.take().map(FakePage))
        }
    }

    impl Storage for Fake {
        type Cursor = FakeCursor;
        fn query(&self, sql: String) -> FakeCursor {
            assert!(
                sql.starts_with("SELECT * FROM") && sql.ends_with("LIMIT 0"),
                "{sql}"
            );
            self.selects
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut cols: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
            cols.extend(["measure_name", "time", "measure_value::double"].map(String::from));
            FakeCursor(Some(cols))
        }
        async fn describe(&self, _: &str, _: &str) -> Result<Described, ReadError> {
            self.describes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Long enough for concurrent readers to pile up behind the gate.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(if self.refuse_describe {
                Described::Refused("AccessDeniedException: not allowed".into())
            } else {
                Described::Columns {
                    dimensions: self.dims.iter().map(|d| d.to_string()).collect(),
                    double: true,
                }
            })
        }
    }

    fn fake(refuse_describe: bool) -> Fake {
        Fake {
            dims: vec!["job", "instance"],
            refuse_describe,
            describes: Default::default(),
            selects: Default::default(),
        }
    }

    fn count(c: &std::sync::atomic::AtomicUsize) -> usize {
        c.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_refused_describe_is_not_asked_again_for_that_table_and_identity() {
        let s = fake(true);
        let k: ColumnKnowledge<&str> = ColumnKnowledge::new();
        let t = k.table(&"alice", "db", "t");
        let dims = k.dimensions(&s, &t, &[], false).await.unwrap();
        assert_eq!(
            *dims.dimensions,
            ["instance", "job"].map(String::from).into()
        );
        assert!(dims.double);
        assert_eq!((count(&s.describes), count(&s.selects)), (1, 1));
        // A forced refresh fetches again, straight from the fallback.
        k.dimensions(&s, &t, &[], true).await.unwrap();
        assert_eq!((count(&s.describes), count(&s.selects)), (1, 2));
        // Another identity (or table) asks for itself.
        let other = k.table(&"bob", "db", "t");
        k.dimensions(&s, &other, &[], false).await.unwrap();
        assert_eq!((count(&s.describes), count(&s.selects)), (2, 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_of_one_table_share_one_fetch() {
        let s = fake(false);
        let k: ColumnKnowledge<&str> = ColumnKnowledge::new();
        let reads = (0..16).map(|_| {
            let t = k.table(&"alice", "db", "t");
            let (k, s) = (&k, &s);
            async move { k.dimensions(s, &t, &["job"], false).await.unwrap() }
        });
        let all = futures::future::join_all(reads).await;
        assert!(all.iter().all(|d| d.dimensions.contains("job")));
        assert_eq!((count(&s.describes), count(&s.selects)), (1, 0));
    }

    #[tokio::test]
    async fn a_write_note_refreshes_a_list_that_lacks_its_dimension() {
        let s = fake(false);
        let k: ColumnKnowledge<&str> = ColumnKnowledge::new();
        let t = k.table(&"alice", "db", "t");
        k.dimensions(&s, &t, &[], false).await.unwrap();
        k.dimensions(&s, &t, &[], false).await.unwrap();
        assert_eq!(count(&s.describes), 1);
        // Another table's note changes nothing here; this table's does.
        k.note_special_values_written("db", "other");
        k.dimensions(&s, &t, &[], false).await.unwrap();
        assert_eq!(count(&s.describes), 1);
        k.note_special_values_written("db", "t");
        k.dimensions(&s, &t, &[], false).await.unwrap();
        assert_eq!(count(&s.describes), 2);
    }

    #[test]
    fn the_table_entries_are_bounded() {
        let k: ColumnKnowledge<u32> = ColumnKnowledge::new();
        for i in 0..(MAX_TABLES as u32 + 500) {
            let _ = k.table(&i, "db", "t");
        }
        assert!(k.tables_held() <= MAX_TABLES, "{}", k.tables_held());
    }
}
